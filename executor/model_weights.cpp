// executor/model_weights: loading, owning and sharding a model's weights (see model_weights.hpp).
#include "executor/model_weights.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json_field.hpp"
#include "executor/weights_dtype.hpp"

namespace moeplan::executor {

namespace {

// llama3 rope scaling (transformers _compute_llama3_parameters): keep high frequencies, divide low ones by
// `factor`, blend in between. The branch is chosen before the blend so low == high (Scout) does not divide by zero.
void llama3_scale(std::vector<float>& inv_freq, const nlohmann::json& s, const std::string& origin) {
  const double factor = json_number_or(s, "factor", 8.0, origin), low = json_number_or(s, "low_freq_factor", 1.0, origin),
               high = json_number_or(s, "high_freq_factor", 4.0, origin);
  const double original = json_number_or(s, "original_max_position_embeddings", 8192.0, origin);
  const double low_wavelen = original / low, high_wavelen = original / high;
  for (float& f : inv_freq) {
    const double wavelen = 2 * M_PI / f;
    if (wavelen < high_wavelen) continue;
    if (wavelen > low_wavelen) {
      f = static_cast<float>(f / factor);
      continue;
    }
    const double smooth = (original / wavelen - low) / (high - low);
    f = static_cast<float>((1 - smooth) * f / factor + smooth * f);
  }
}

kernels::WeightDtype weight_dtype(Dtype dt) { return to_weight_dtype(dt); }

Model::Matrix matrix_from(const TensorView& t) {
  if (t.shape.size() != 2) throw InputError(t.file + ": tensor '" + t.name + "' is not a matrix");
  Model::Matrix m;
  m.dtype = weight_dtype(t.dtype);
  m.rows = t.shape[0];
  m.cols = t.shape[1];
  m.data.assign(t.data, t.data + t.bytes);
  return m;
}

// Rows [begin, end) of columns [c0, c1) of each expert's input-major [E, K, N] tensor, transposed to [N', K].
Model::Matrix transpose_expert(const TensorView& t, std::int64_t e, std::int64_t c0, std::int64_t c1) {
  const std::int64_t K = t.shape[1], N = t.shape[2];
  const std::size_t es = dtype_bytes(t.dtype);
  Model::Matrix m;
  m.dtype = weight_dtype(t.dtype);
  m.rows = c1 - c0;
  m.cols = K;
  m.data.resize(static_cast<std::size_t>(m.rows * K) * es);
  const std::byte* base = t.data + static_cast<std::size_t>(e * K * N) * es;
  for (std::int64_t n = c0; n < c1; ++n)
    for (std::int64_t k = 0; k < K; ++k)
      std::memcpy(m.data.data() + static_cast<std::size_t>((n - c0) * K + k) * es, base + static_cast<std::size_t>(k * N + n) * es, es);
  return m;
}

RuntimeParams read_runtime_fields(const nlohmann::json& config, const model::ModelConfig& m) {
  const std::string& origin = m.source;
  const nlohmann::json* text = json_object_or_null(config, "text_config", origin);
  const nlohmann::json& t = text ? *text : config;
  RuntimeParams p;
  const bool qwen = m.model_type == "qwen3_moe";
  p.llama4 = m.model_type == "llama4";
  p.rms_eps = static_cast<float>(json_number_or(t, "rms_norm_eps", qwen ? 1e-6 : 1e-5, origin));
  double theta = 10000;
  const nlohmann::json* scaling = nullptr;
  if (const nlohmann::json* params = json_object_or_null(t, "rope_parameters", origin)) {  // transformers 5
    theta = json_number_or(*params, "rope_theta", theta, origin);
    scaling = params;
  } else {
    theta = json_number_or(t, "rope_theta", theta, origin);
    scaling = json_object_or_null(t, "rope_scaling", origin);
  }
  p.inv_freq = kernels::rope_default_inv_freq(static_cast<float>(theta), m.head_dim);
  const std::string rope_type =
      scaling ? json_string_or(*scaling, "rope_type", json_string_or(*scaling, "type", "default", origin), origin) : "default";
  if (rope_type == "llama3") llama3_scale(p.inv_freq, *scaling, origin);
  else if (rope_type != "default")
    throw InputError(m.source + ": rope type '" + rope_type + "' is not supported by the executor (llama3 and default are)");
  if (p.llama4) {
    p.rope_layout = kernels::RopeLayout::interleaved;
    p.qk_norm_weightless_after_rope = json_bool_or(t, "use_qk_norm", true, origin);
    p.temperature_tuning = json_bool_or(t, "attn_temperature_tuning", true, origin);
    p.floor_scale = static_cast<float>(json_number_or(t, "floor_scale", 8192.0, origin));
    p.attn_scale = static_cast<float>(json_number_or(t, "attn_scale", 0.1, origin));
    p.scoring = kernels::RouterScoring::sigmoid_topk;
  } else if (qwen) {
    p.qk_norm_weighted_before_rope = true;
    p.scoring = json_bool_or(t, "norm_topk_prob", false, origin) ? kernels::RouterScoring::softmax_topk_renorm : kernels::RouterScoring::softmax_topk;
  } else if (m.model_type == "mixtral") {
    p.scoring = kernels::RouterScoring::softmax_topk_renorm;
  } else {
    throw InputError(m.source + ": the executor runs llama4, qwen3_moe and mixtral; " + m.model_type + " is not supported yet");
  }
  return p;
}

}  // namespace

// A field of the wrong JSON type becomes an InputError naming the file, the field and the type it must have
// (common/json_field); read_document turns any other library type error into an InputError naming the file.
RuntimeParams read_runtime_params(const nlohmann::json& config, const model::ModelConfig& m) {
  return read_document(m.source, [&] { return read_runtime_fields(config, m); });
}

std::shared_ptr<const Model> Model::load(const std::filesystem::path& dir) {
  auto model = std::shared_ptr<Model>(new Model());
  Model& mdl = *model;
  const auto config_path = dir / "config.json";
  const nlohmann::json config = parse_json_file(config_path);
  mdl.config_ = model::parse_hf_config(config, dir.filename().string(), config_path.string());
  mdl.params_ = read_runtime_params(config, mdl.config_);
  const Checkpoint ckpt = Checkpoint::open(dir);
  const CheckReport report = check_checkpoint(ckpt, mdl.config_, CheckOptions{});
  const CheckpointLayout& layout = report.layout;
  const model::ModelConfig& c = mdl.config_;

  auto view = [&](int layer, TensorRole role, int expert = -1) {
    const ExpectedTensor* e = layout.find(layer, role, expert);
    if (!e) throw InputError(ckpt.origin() + ": no " + tensor_role_name(role) + " tensor for layer " + std::to_string(layer));
    return ckpt.view(e->name);
  };
  auto vec = [&](int layer, TensorRole role) { return view(layer, role).to_float(); };
  auto mat = [&](int layer, TensorRole role) { return matrix_from(view(layer, role)); };

  mdl.embed = mat(-1, TensorRole::embed);
  mdl.final_norm = vec(-1, TensorRole::final_norm);
  mdl.lm_head = layout.find(-1, TensorRole::lm_head) ? mat(-1, TensorRole::lm_head) : mdl.embed;
  for (int li = 0; li < static_cast<int>(c.num_layers); ++li) {
    Layer L;
    const auto& spec = c.layers[static_cast<std::size_t>(li)];
    L.input_norm = vec(li, TensorRole::input_norm);
    L.post_norm = vec(li, TensorRole::post_attn_norm);
    L.q = mat(li, TensorRole::q_proj);
    L.k = mat(li, TensorRole::k_proj);
    L.v = mat(li, TensorRole::v_proj);
    L.o = mat(li, TensorRole::o_proj);
    if (layout.find(li, TensorRole::q_bias) || layout.find(li, TensorRole::o_bias))
      throw InputError(ckpt.origin() + ": attention biases are not supported by the executor yet");
    if (mdl.params_.qk_norm_weighted_before_rope) {
      L.q_norm = vec(li, TensorRole::q_norm);
      L.k_norm = vec(li, TensorRole::k_norm);
    }
    L.moe = spec.mlp == model::MlpKind::moe;
    if (!L.moe) {
      L.dense_gate = mat(li, TensorRole::dense_gate);
      L.dense_up = mat(li, TensorRole::dense_up);
      L.dense_down = mat(li, TensorRole::dense_down);
    } else {
      L.router = mat(li, TensorRole::router);
      if (layout.experts == ExpertStorage::fused) {
        const TensorView gu = view(li, TensorRole::experts_gate_up), dn = view(li, TensorRole::experts_down);
        const std::int64_t I = c.moe_intermediate;
        for (std::int64_t e = 0; e < c.num_experts; ++e) {
          L.expert_gate.push_back(transpose_expert(gu, e, 0, I));
          L.expert_up.push_back(transpose_expert(gu, e, I, 2 * I));
          L.expert_down.push_back(transpose_expert(dn, e, 0, c.hidden));
        }
      } else {
        for (int e = 0; e < static_cast<int>(c.num_experts); ++e) {
          const TensorRole roles[3] = {TensorRole::expert_gate, TensorRole::expert_up, TensorRole::expert_down};
          const TensorRole scales[3] = {TensorRole::expert_gate_scale, TensorRole::expert_up_scale, TensorRole::expert_down_scale};
          std::vector<Matrix>* out[3] = {&L.expert_gate, &L.expert_up, &L.expert_down};
          for (int j = 0; j < 3; ++j) {
            Matrix m = matrix_from(view(li, roles[j], e));
            if (layout.find(li, scales[j], e)) m.scales = view(li, scales[j], e).to_float();
            out[j]->push_back(std::move(m));
          }
        }
      }
      if (c.shared_intermediate > 0) {
        L.shared_gate = mat(li, TensorRole::shared_gate);
        L.shared_up = mat(li, TensorRole::shared_up);
        L.shared_down = mat(li, TensorRole::shared_down);
      }
    }
    mdl.layers.push_back(std::move(L));
  }
  mdl.count_weight_bytes();
  return model;
}

void Model::count_weight_bytes() {
  // a tied lm_head is the embedding's copy, counted once where both are held (not on a last pipeline stage alone)
  weight_bytes_ = embed.data.size() + (config_.tie_word_embeddings && !embed.data.empty() ? 0 : lm_head.data.size());
  for (const Layer& L : layers) {
    for (const Matrix* m : {&L.q, &L.k, &L.v, &L.o, &L.router, &L.shared_gate, &L.shared_up, &L.shared_down, &L.dense_gate,
                            &L.dense_up, &L.dense_down})
      weight_bytes_ += m->data.size();
    for (const auto* experts : {&L.expert_gate, &L.expert_up, &L.expert_down})
      for (const Matrix& m : *experts) weight_bytes_ += m.data.size();
  }
}

namespace {
std::size_t elem_bytes(kernels::WeightDtype d) { return static_cast<std::size_t>(kernels::weight_dtype_bytes(d)); }

// Rows [r0, r1) of a matrix (with their scales).
Model::Matrix rows_of(const Model::Matrix& m, std::int64_t r0, std::int64_t r1) {
  Model::Matrix out = m;
  const std::size_t row = static_cast<std::size_t>(m.cols) * elem_bytes(m.dtype);
  out.rows = r1 - r0;
  out.data.assign(m.data.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(r0) * row),
                  m.data.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(r1) * row));
  if (!m.scales.empty()) out.scales.assign(m.scales.begin() + r0, m.scales.begin() + r1);
  return out;
}

// Columns [c0, c1) of every row (input features; per-row scales unchanged).
Model::Matrix cols_of(const Model::Matrix& m, std::int64_t c0, std::int64_t c1) {
  Model::Matrix out = m;
  const std::size_t es = elem_bytes(m.dtype);
  out.cols = c1 - c0;
  out.data.resize(static_cast<std::size_t>(m.rows * out.cols) * es);
  for (std::int64_t r = 0; r < m.rows; ++r)
    std::memcpy(out.data.data() + static_cast<std::size_t>(r * out.cols) * es,
                m.data.data() + static_cast<std::size_t>(r * m.cols + c0) * es, static_cast<std::size_t>(out.cols) * es);
  return out;
}
}  // namespace

std::pair<std::int64_t, std::int64_t> vocab_rows(std::int64_t vocab, int tp, int tp_index) {
  return {vocab * tp_index / tp, vocab * (tp_index + 1) / tp};
}

std::shared_ptr<const Model> Model::sharded(const model::ParallelLayout& layout, int world_rank) const {
  const model::ModelConfig& c = config_;
  const int tp = layout.tp, ep = layout.ep, pp = layout.pp, dp = layout.dp;
  // The simulator's own check, so both accept the same layouts.
  model::validate_layout(c, layout);
  if (world_rank < 0 || world_rank >= pp * tp * dp)
    throw InputError("rank " + std::to_string(world_rank) + " is outside the " + std::to_string(pp * tp * dp) +
                     " ranks of pp * tp * dp");
  if (sharding_.layout.gpus() != 1) throw std::logic_error("Model::sharded: shard the whole model only");
  const int stage = world_rank / (tp * dp), rank = world_rank % (tp * dp);
  const auto [first_layer, last_layer] = model::stage_layers(c, layout, stage);
  // Built from this model's matrices, copying only the rows and columns the rank holds.
  auto out = std::shared_ptr<Model>(new Model());
  out->config_ = config_;
  out->params_ = params_;
  out->sharding_ = {layout, rank, 0, 0, stage, first_layer};
  const bool first = out->sharding_.first_stage(), last = out->sharding_.last_stage();
  if (last) out->final_norm = final_norm;
  const int tp_rank = out->sharding_.tp_index(), moe_tp = out->sharding_.moe_tp();
  // Vocabulary: rows [v0, v1) of the embedding (first stage) and of the lm_head (last stage; a copy of the embedding
  // when tied).
  const auto [v0, v1] = vocab_rows(c.vocab, tp, tp_rank);
  if (first) out->embed = rows_of(embed, v0, v1);
  if (last) out->lm_head = rows_of(lm_head, v0, v1);
  out->sharding_.vocab_begin = v0;
  // KV heads: split tp ways, or, with more ranks than KV heads, each rank keeps (a replica of) the one KV head its
  // query heads attend with: ranks [k * tp / kv, (k + 1) * tp / kv) share KV head k.
  const std::int64_t D = c.head_dim, hq = c.num_heads / tp * D;
  const std::int64_t hkv = (c.num_kv_heads % tp == 0 ? c.num_kv_heads / tp : 1) * D;
  const std::int64_t kv_first = c.num_kv_heads % tp == 0 ? tp_rank * hkv : tp_rank / (tp / c.num_kv_heads) * D;
  // Experts: rank = group * moe_tp + piece; group g holds experts [g * per, (g + 1) * per), piece p the p-th of
  // moe_tp slices of each one's intermediate.
  const std::int64_t group = rank / moe_tp, piece = rank % moe_tp, per = c.is_moe() ? c.num_experts / ep : 0;
  out->sharding_.expert_begin = group * per;
  // Gate and up rows, down columns [part * n, (part + 1) * n) of an MLP with intermediate n * parts.
  auto split_mlp = [](const Matrix& g, const Matrix& u, const Matrix& d, std::int64_t parts, std::int64_t part, Matrix& g_out,
                      Matrix& u_out, Matrix& d_out) {
    const std::int64_t n = g.rows / parts;
    g_out = rows_of(g, part * n, (part + 1) * n);
    u_out = rows_of(u, part * n, (part + 1) * n);
    d_out = cols_of(d, part * n, (part + 1) * n);
  };
  for (int li = first_layer; li < last_layer; ++li) {
    const Layer& full = layers[static_cast<std::size_t>(li)];
    Layer L;
    L.input_norm = full.input_norm;
    L.post_norm = full.post_norm;
    L.q_norm = full.q_norm;
    L.k_norm = full.k_norm;
    L.q = rows_of(full.q, tp_rank * hq, (tp_rank + 1) * hq);
    L.k = rows_of(full.k, kv_first, kv_first + hkv);
    L.v = rows_of(full.v, kv_first, kv_first + hkv);
    L.o = cols_of(full.o, tp_rank * hq, (tp_rank + 1) * hq);
    L.moe = full.moe;
    if (!L.moe) {
      split_mlp(full.dense_gate, full.dense_up, full.dense_down, tp, tp_rank, L.dense_gate, L.dense_up, L.dense_down);
    } else {
      L.router = full.router;
      if (!full.shared_gate.data.empty())
        split_mlp(full.shared_gate, full.shared_up, full.shared_down, tp, tp_rank, L.shared_gate, L.shared_up, L.shared_down);
      for (std::size_t e = static_cast<std::size_t>(group * per); e < static_cast<std::size_t>((group + 1) * per); ++e)
        split_mlp(full.expert_gate[e], full.expert_up[e], full.expert_down[e], moe_tp, piece, L.expert_gate.emplace_back(),
                  L.expert_up.emplace_back(), L.expert_down.emplace_back());
    }
    out->layers.push_back(std::move(L));
  }
  out->count_weight_bytes();
  return out;
}


}  // namespace moeplan::executor
