// executor/forward: the forward pass on the CPU kernels (see forward.hpp; semantics in tests/fixtures/oracle/README.md).
#include "executor/forward.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/error.hpp"
#include "common/splitmix.hpp"
#include "common/files.hpp"
#include "executor/weights_dtype.hpp"
#include "kernels/activation.hpp"
#include "kernels/attention.hpp"
#include "kernels/matmul.hpp"
#include "kernels/norm.hpp"
#include "model/shard.hpp"

namespace moeplan::executor {

namespace {

using Clock = std::chrono::steady_clock;
double d(std::int64_t v) { return static_cast<double>(v); }

// llama3 rope scaling (transformers _compute_llama3_parameters): keep high frequencies, divide low ones by
// `factor`, blend in between. The branch is chosen before the blend so low == high (Scout) does not divide by zero.
void llama3_scale(std::vector<float>& inv_freq, const nlohmann::json& s) {
  const double factor = s.value("factor", 8.0), low = s.value("low_freq_factor", 1.0), high = s.value("high_freq_factor", 4.0);
  const double original = s.value("original_max_position_embeddings", 8192.0);
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

struct Timer {
  OpTimes& times;
  const char* name;
  Clock::time_point t0 = Clock::now();
  ~Timer() {
    times.seconds[name] += std::chrono::duration<double>(Clock::now() - t0).count();
    ++times.calls[name];
  }
};

}  // namespace

namespace {

RuntimeParams read_runtime_fields(const nlohmann::json& config, const model::ModelConfig& m) {
  const nlohmann::json& t = config.contains("text_config") ? config.at("text_config") : config;
  RuntimeParams p;
  const bool qwen = m.model_type == "qwen3_moe";
  p.llama4 = m.model_type == "llama4";
  p.rms_eps = static_cast<float>(t.value("rms_norm_eps", qwen ? 1e-6 : 1e-5));
  double theta = 10000;
  nlohmann::json scaling;
  if (t.contains("rope_parameters") && t["rope_parameters"].is_object()) {  // transformers 5
    theta = t["rope_parameters"].value("rope_theta", theta);
    scaling = t["rope_parameters"];
  } else {
    theta = t.value("rope_theta", theta);
    if (t.contains("rope_scaling") && t["rope_scaling"].is_object()) scaling = t["rope_scaling"];
  }
  p.inv_freq = kernels::rope_default_inv_freq(static_cast<float>(theta), m.head_dim);
  const std::string rope_type = scaling.is_object() ? scaling.value("rope_type", scaling.value("type", std::string("default"))) : "default";
  if (rope_type == "llama3") llama3_scale(p.inv_freq, scaling);
  else if (rope_type != "default")
    throw InputError(m.source + ": rope type '" + rope_type + "' is not supported by the executor (llama3 and default are)");
  if (p.llama4) {
    p.rope_layout = kernels::RopeLayout::interleaved;
    p.qk_norm_weightless_after_rope = t.value("use_qk_norm", true);
    p.temperature_tuning = t.value("attn_temperature_tuning", true);
    p.floor_scale = static_cast<float>(t.value("floor_scale", 8192.0));
    p.attn_scale = static_cast<float>(t.value("attn_scale", 0.1));
    p.scoring = kernels::RouterScoring::sigmoid_topk;
  } else if (qwen) {
    p.qk_norm_weighted_before_rope = true;
    p.scoring = t.value("norm_topk_prob", false) ? kernels::RouterScoring::softmax_topk_renorm : kernels::RouterScoring::softmax_topk;
  } else if (m.model_type == "mixtral") {
    p.scoring = kernels::RouterScoring::softmax_topk_renorm;
  } else {
    throw InputError(m.source + ": the executor runs llama4, qwen3_moe and mixtral; " + m.model_type + " is not supported yet");
  }
  return p;
}

}  // namespace

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

std::shared_ptr<const Model> Model::sharded(int tp, int ep, int world_rank, int dp, int pp) const {
  const model::ModelConfig& c = config_;
  // The simulator's own check, so both accept the same layouts.
  const model::ParallelLayout layout{.tp = tp, .ep = ep, .pp = pp, .dp = dp};
  model::validate_layout(c, layout);
  if (world_rank < 0 || world_rank >= pp * tp * dp)
    throw InputError("rank " + std::to_string(world_rank) + " is outside the " + std::to_string(pp * tp * dp) +
                     " ranks of pp * tp * dp");
  if (sharding_.pp != 1 || sharding_.ranks() != 1) throw std::logic_error("Model::sharded: shard the whole model only");
  const int stage = world_rank / (tp * dp), rank = world_rank % (tp * dp);
  const auto [first_layer, last_layer] = model::stage_layers(c, layout, stage);
  // Built from this model's matrices, copying only the rows and columns the rank holds.
  auto out = std::shared_ptr<Model>(new Model());
  out->config_ = config_;
  out->params_ = params_;
  out->sharding_ = {tp, ep, dp, rank, 0, 0, pp, stage, first_layer};
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

// The lowest absolute position that a query at position `next` or later can see in a layer of this kind: chunked
// layers see from the start of their chunk, sliding-window layers the last W positions, global layers everything.
static std::int64_t first_needed_position(const model::LayerSpec& spec, std::int64_t next) {
  if (spec.attention == model::AttentionKind::chunked)
    return (next / spec.attention_window_tokens) * spec.attention_window_tokens;
  if (spec.attention == model::AttentionKind::sliding)
    return std::max<std::int64_t>(next - spec.attention_window_tokens + 1, 0);
  return 0;
}

Session::Session(std::shared_ptr<const Model> model, kernels::CpuContext ctx, std::int64_t sequences, Communicator* comm,
                 Communicator* pipe)
    : model_(std::move(model)), ctx_(ctx), comm_(comm), pipe_(pipe), positions_(static_cast<std::size_t>(sequences), 0) {
  const Model::Sharding& sh = model_->sharding();
  if ((comm_ ? comm_->size() : 1) != sh.ranks() || (comm_ && comm_->rank() != sh.rank))
    throw std::logic_error("Session: the communicator's size and rank must be the model's tp * dp and rank");
  if (sh.pp > 1 && (!pipe_ || pipe_->size() != sh.pp * sh.ranks() || pipe_->rank() != sh.world_rank()))
    throw std::logic_error("Session: a pipeline stage needs the communicator of all pp * tp * dp ranks");
  if (sh.pp == 1) pipe_ = nullptr;
  if (sh.tp > 1) tp_comm_ = sh.dp == 1 ? comm_ : &comm_->sub_group(sh.dp_index() * sh.tp, sh.tp);
  const std::size_t L = model_->layers.size();
  k_.assign(L, std::vector<std::vector<float>>(static_cast<std::size_t>(sequences)));
  v_.assign(L, std::vector<std::vector<float>>(static_cast<std::size_t>(sequences)));
  kv_first_.assign(L, std::vector<std::int64_t>(static_cast<std::size_t>(sequences), 0));
  for (const auto& l : model_->layers)
    if (l.moe) routing_.emplace_back();
}

void Session::fill_cache(std::int64_t context, std::int64_t reserve, std::uint64_t seed) {
  if (context < 0 || reserve < 0) throw InputError("fill_cache: context and reserve must be 0 or more");
  std::uint64_t state = seed;
  for (std::size_t li = 0; li < model_->layers.size(); ++li) {
    const std::int64_t row = model_->layers[li].k.rows;  // Hkv * D on this rank
    // only the positions the next query can see, as a real prefill leaves a chunked or sliding-window layer
    const std::int64_t first = first_needed_position(layer_spec(li), context);
    for (std::size_t s = 0; s < positions_.size(); ++s) {
      kv_first_[li][s] = first;
      for (auto* cache : {&k_[li][s], &v_[li][s]}) {
        cache->clear();
        cache->reserve(static_cast<std::size_t>((context - first + reserve) * row));
        cache->resize(static_cast<std::size_t>((context - first) * row));
        for (float& f : *cache) f = static_cast<float>(2.0 * splitmix64_unit(state) - 1.0);
      }
    }
  }
  for (auto& p : positions_) p = context;
}

const model::LayerSpec& Session::layer_spec(std::size_t li) const {
  return model_->config().layers[static_cast<std::size_t>(model_->sharding().first_layer) + li];
}

std::int64_t Session::cached_rows(std::size_t layer, std::int64_t seq) const {
  return static_cast<std::int64_t>(k_.at(layer).at(static_cast<std::size_t>(seq)).size()) / model_->layers[layer].k.rows;
}

std::int64_t Session::kv_cache_bytes() const {
  std::int64_t floats = 0;
  for (std::size_t li = 0; li < k_.size(); ++li)
    for (std::size_t s = 0; s < k_[li].size(); ++s)
      floats += static_cast<std::int64_t>(k_[li][s].size() + v_[li][s].size());
  return floats * static_cast<std::int64_t>(sizeof(float));
}

std::vector<float> Session::prefill(const std::vector<std::vector<std::int32_t>>& prompts, bool all_logits) {
  if (prompts.size() != positions_.size()) throw InputError("prefill: one prompt per sequence");
  return run(prompts, all_logits);
}

std::vector<float> Session::decode(const std::vector<std::int32_t>& tokens) {
  if (tokens.size() != positions_.size()) throw InputError("decode: one token per sequence");
  std::vector<std::vector<std::int32_t>> step;
  for (auto t : tokens) step.push_back({t});
  return run(step, false);
}

std::vector<float> Session::run(const std::vector<std::vector<std::int32_t>>& tokens, bool all_logits) {
  const Model& M = *model_;
  const model::ModelConfig& c = M.config();
  const std::int64_t H = c.hidden, V = c.vocab;
  // x: [T, H] with the step's tokens grouped by sequence.
  std::vector<std::int64_t> seq_of, pos_of;
  std::vector<std::int32_t> ids;
  for (std::size_t s = 0; s < tokens.size(); ++s)
    for (std::size_t i = 0; i < tokens[s].size(); ++i) {
      if (tokens[s][i] < 0 || tokens[s][i] >= V)
        throw InputError("token id " + std::to_string(tokens[s][i]) + " is outside the vocabulary of " + std::to_string(V));
      seq_of.push_back(static_cast<std::int64_t>(s));
      pos_of.push_back(positions_[s] + static_cast<std::int64_t>(i));
      ids.push_back(tokens[s][i]);
    }
  const std::int64_t T = static_cast<std::int64_t>(ids.size());
  const Model::Sharding& sh = M.sharding();
  std::vector<float> x(static_cast<std::size_t>(T * H));
  if (T == 0 && !pipe_) {  // a data-parallel rank with no sequences still joins every MoE layer's all-to-all
    for (std::size_t li = 0; li < M.layers.size(); ++li) layer_forward(li, x, seq_of, pos_of);
    return {};
  }
  if (!sh.first_stage()) {  // the hidden states from the rank at this position in the stage before
    pipe_->recv(sh.rank_in_stage(sh.stage - 1), x.data(), T * H);
  } else {
    {
      // This rank's vocabulary rows [v0, v1) (all of them on one rank); the other ids' rows stay zero until the
      // tensor-parallel all-reduce adds the rank that holds them.
      Timer tm{times_, "embed"};
      const std::int64_t v0 = sh.vocab_begin, v1 = v0 + M.embed.rows;
      for (std::int64_t t = 0; t < T; ++t) {
        const std::int64_t id = ids[static_cast<std::size_t>(t)];
        if (id >= v0 && id < v1) kernels::dequantize_rows(ctx_, M.embed.view(), id - v0, id - v0 + 1, x.data() + t * H);
      }
    }
    if (tp_comm_ && T > 0) {
      Timer tm{times_, "embed.all_reduce"};
      tp_comm_->all_reduce_sum(x.data(), T * H);
    }
  }
  for (std::size_t li = 0; li < M.layers.size(); ++li) layer_forward(li, x, seq_of, pos_of);
  for (std::size_t s = 0; s < tokens.size(); ++s) positions_[s] += static_cast<std::int64_t>(tokens[s].size());

  // Rows whose logits are wanted: all, or each sequence's last token.
  std::vector<std::int64_t> rows;
  for (std::int64_t t = 0; t < T; ++t)
    if (all_logits || t + 1 == T || seq_of[static_cast<std::size_t>(t + 1)] != seq_of[static_cast<std::size_t>(t)]) rows.push_back(t);
  if (!sh.last_stage()) {  // on to the next stage; the logits come back from the last one
    {
      Timer tm{times_, "pp.send"};
      pipe_->send(sh.rank_in_stage(sh.stage + 1), x.data(), T * H);
    }
    std::vector<float> logits(rows.size() * static_cast<std::size_t>(V));
    pipe_->recv(sh.rank_in_stage(sh.pp - 1), logits.data(), static_cast<std::int64_t>(logits.size()));
    return logits;
  }
  std::vector<float> h(rows.size() * static_cast<std::size_t>(H));
  {
    Timer tm{times_, "final_norm"};
    for (std::size_t r = 0; r < rows.size(); ++r)
      kernels::rmsnorm(ctx_, x.data() + rows[r] * H, M.final_norm.data(), h.data() + static_cast<std::int64_t>(r) * H, 1, H, M.params().rms_eps);
  }
  // This rank's vocabulary slice of the logits: [N, Vr], Vr = lm_head.rows (V on one rank).
  const std::int64_t N = static_cast<std::int64_t>(rows.size()), Vr = M.lm_head.rows;
  std::vector<float> mine(static_cast<std::size_t>(N * Vr));
  {
    Timer tm{times_, "lm_head"};
    kernels::matmul(ctx_, h.data(), N, M.lm_head.view(), mine.data());
  }
  if (!tp_comm_) return return_logits(std::move(mine));
  // All-gather the slices of the tp ranks as [N, slice] blocks, slice = ceil(V / tp) (a rank holding one row fewer
  // leaves its last column unused), then place rank r's columns at its vocabulary rows: logits [N, V].
  Timer tm{times_, "lm_head.all_gather"};
  const int tp = M.sharding().tp;
  const std::int64_t slice = (V + tp - 1) / tp;
  std::vector<float> block(static_cast<std::size_t>(N * slice)), gathered(static_cast<std::size_t>(tp * N * slice));
  for (std::int64_t n = 0; n < N; ++n) std::copy_n(mine.data() + n * Vr, Vr, block.data() + n * slice);
  tp_comm_->all_gather(block.data(), N * slice, gathered.data());
  std::vector<float> logits(static_cast<std::size_t>(N * V));
  for (int r = 0; r < tp; ++r) {
    const auto [r0, r1] = vocab_rows(V, tp, r);
    for (std::int64_t n = 0; n < N; ++n)
      std::copy_n(gathered.data() + (r * N + n) * slice, r1 - r0, logits.data() + n * V + r0);
  }
  return return_logits(std::move(logits));
}

std::vector<float> Session::return_logits(std::vector<float> logits) {
  const Model::Sharding& sh = model_->sharding();
  if (pipe_)
    for (int stage = 0; stage + 1 < sh.pp; ++stage)
      pipe_->send(sh.rank_in_stage(stage), logits.data(), static_cast<std::int64_t>(logits.size()));
  return logits;
}

void Session::layer_forward(std::size_t li, std::vector<float>& x, const std::vector<std::int64_t>& seq_of,
                            const std::vector<std::int64_t>& pos_of) {
  const Model& M = *model_;
  const model::ModelConfig& c = M.config();
  const RuntimeParams& P = M.params();
  const Model::Layer& L = M.layers[li];
  const model::LayerSpec& spec = layer_spec(li);
  const std::int64_t T = static_cast<std::int64_t>(seq_of.size()), H = c.hidden;
  const std::int64_t D = c.head_dim, Hq = L.q.rows / D, Hkv = L.k.rows / D;  // heads on this rank
  if (T == 0) {  // a replica with no sequences: only the all-to-all over all ranks involves it
    if (L.moe && M.sharding().dp > 1) moe_all_to_all(L, nullptr, nullptr, nullptr, 0, nullptr);
    return;
  }
  const bool prefill = T > static_cast<std::int64_t>(positions_.size()) ||
                       std::adjacent_find(seq_of.begin(), seq_of.end()) != seq_of.end();

  // ---- attention
  std::vector<float> xn(x.size());
  {
    Timer tm{times_, "attn.norm"};
    kernels::rmsnorm(ctx_, x.data(), L.input_norm.data(), xn.data(), T, H, P.rms_eps);
  }
  std::vector<float> q(static_cast<std::size_t>(T * Hq * D)), k(static_cast<std::size_t>(T * Hkv * D)), v(k.size());
  {
    Timer tm{times_, "attn.qkv"};
    kernels::matmul(ctx_, xn.data(), T, L.q.view(), q.data());
    kernels::matmul(ctx_, xn.data(), T, L.k.view(), k.data());
    kernels::matmul(ctx_, xn.data(), T, L.v.view(), v.data());
  }
  if (P.qk_norm_weighted_before_rope) {  // Qwen3: RMSNorm with weights over head_dim, before RoPE
    Timer tm{times_, "attn.qk_norm"};
    kernels::rmsnorm(ctx_, q.data(), L.q_norm.data(), q.data(), T * Hq, D, P.rms_eps);
    kernels::rmsnorm(ctx_, k.data(), L.k_norm.data(), k.data(), T * Hkv, D, P.rms_eps);
  }
  if (spec.rope) {
    Timer tm{times_, "attn.rope"};
    kernels::rope(ctx_, q.data(), T, Hq, D, pos_of.data(), P.inv_freq.data(), P.rope_layout);
    kernels::rope(ctx_, k.data(), T, Hkv, D, pos_of.data(), P.inv_freq.data(), P.rope_layout);
  }
  if (P.qk_norm_weightless_after_rope && spec.rope) {  // Llama 4: weightless L2 norm after RoPE, RoPE layers only
    Timer tm{times_, "attn.qk_norm"};
    kernels::rms_normalize(ctx_, q.data(), q.data(), T * Hq, D, P.rms_eps);
    kernels::rms_normalize(ctx_, k.data(), k.data(), T * Hkv, D, P.rms_eps);
  }
  std::vector<float> attn(q.size());
  {
    Timer tm{times_, prefill ? "attn.prefill" : "attn.decode"};
    if (P.temperature_tuning && !spec.rope) {  // Llama 4 NoPE layers: scale queries by position
      for (std::int64_t t = 0; t < T; ++t) {
        const double p = d(pos_of[static_cast<std::size_t>(t)]);
        const float s = static_cast<float>(1.0 + P.attn_scale * std::log(1.0 + std::floor((p + 1.0) / P.floor_scale)));
        for (std::int64_t i = 0; i < Hq * D; ++i) q[static_cast<std::size_t>(t * Hq * D + i)] *= s;
      }
    }
    std::int64_t t0 = 0;
    while (t0 < T) {
      const std::int64_t s = seq_of[static_cast<std::size_t>(t0)];
      std::int64_t t1 = t0;
      while (t1 < T && seq_of[static_cast<std::size_t>(t1)] == s) ++t1;
      auto& kc = k_[li][static_cast<std::size_t>(s)];
      auto& vc = v_[li][static_cast<std::size_t>(s)];
      kc.insert(kc.end(), k.begin() + t0 * Hkv * D, k.begin() + t1 * Hkv * D);
      vc.insert(vc.end(), v.begin() + t0 * Hkv * D, v.begin() + t1 * Hkv * D);
      kernels::AttentionParams ap;
      ap.q_tokens = t1 - t0;
      ap.kv_tokens = static_cast<std::int64_t>(kc.size()) / (Hkv * D);
      ap.q_heads = Hq;
      ap.kv_heads = Hkv;
      ap.head_dim = D;
      ap.scale = static_cast<float>(1.0 / std::sqrt(d(D)));
      if (spec.attention == model::AttentionKind::chunked) {
        ap.mask = kernels::AttentionMask::chunked;
        ap.mask_tokens = spec.attention_window_tokens;
      } else if (spec.attention == model::AttentionKind::sliding) {
        ap.mask = kernels::AttentionMask::sliding_window;
        ap.mask_tokens = spec.attention_window_tokens;
      }
      std::int64_t& first = kv_first_[li][static_cast<std::size_t>(s)];
      ap.kv_first_pos = first;
      kernels::attention(ctx_, ap, q.data() + t0 * Hq * D, pos_of.data() + t0, kc.data(), vc.data(), attn.data() + t0 * Hq * D);
      // Drop the rows no later query can see once they outnumber the rows still needed (each row is moved at most
      // once on average; a sliding-window cache holds at most 2 W rows, a chunked one at most its chunk).
      const std::int64_t dead = first_needed_position(spec, pos_of[static_cast<std::size_t>(t1 - 1)] + 1) - first;
      if (dead > 0 && dead >= ap.kv_tokens - dead) {
        kc.erase(kc.begin(), kc.begin() + dead * Hkv * D);
        vc.erase(vc.begin(), vc.begin() + dead * Hkv * D);
        first += dead;
      }
      t0 = t1;
    }
  }
  std::vector<float> o(static_cast<std::size_t>(T * H));
  {
    Timer tm{times_, "attn.o"};
    kernels::matmul(ctx_, attn.data(), T, L.o.view(), o.data());
  }
  if (tp_comm_) {  // each rank of the replica holds a partial sum over its heads
    Timer tm{times_, "attn.all_reduce"};
    tp_comm_->all_reduce_sum(o.data(), T * H);
  }
  kernels::add(ctx_, x.data(), o.data(), x.data(), T * H);

  // ---- MLP / MoE
  {
    Timer tm{times_, "mlp.norm"};
    kernels::rmsnorm(ctx_, x.data(), L.post_norm.data(), xn.data(), T, H, P.rms_eps);
  }
  std::vector<float> out(static_cast<std::size_t>(T * H), 0.0f);
  auto swiglu = [&](const Model::Matrix& g, const Model::Matrix& u, const Model::Matrix& dn, const char* gu_name,
                    const char* act_name, const char* down_name) {
    const std::int64_t I = g.rows;
    std::vector<float> gv(static_cast<std::size_t>(T * I)), uv(gv.size());
    {
      Timer tm{times_, gu_name};
      kernels::matmul(ctx_, xn.data(), T, g.view(), gv.data());
      kernels::matmul(ctx_, xn.data(), T, u.view(), uv.data());
    }
    {
      Timer tm{times_, act_name};
      kernels::silu_mul(ctx_, gv.data(), uv.data(), gv.data(), T * I);
    }
    Timer tm{times_, down_name};
    kernels::matmul(ctx_, gv.data(), T, dn.view(), out.data(), true);
  };
  if (!L.moe) {
    swiglu(L.dense_gate, L.dense_up, L.dense_down, "mlp.gate_up", "mlp.act", "mlp.down");
  } else {
    const std::int64_t E = c.num_experts, K = c.experts_per_token;
    std::vector<float> logits(static_cast<std::size_t>(T * E));
    {
      Timer tm{times_, "moe.router"};
      kernels::matmul(ctx_, xn.data(), T, L.router.view(), logits.data());
    }
    std::vector<std::int32_t> ids(static_cast<std::size_t>(T * K));
    std::vector<float> weights(ids.size());
    {
      Timer tm{times_, "moe.topk"};
      kernels::router_topk(ctx_, logits.data(), T, E, K, P.scoring, ids.data(), weights.data());
    }
    std::size_t moe_index = 0;
    for (std::size_t j = 0; j < li; ++j) moe_index += M.layers[j].moe ? 1 : 0;
    routing_[moe_index].insert(routing_[moe_index].end(), ids.begin(), ids.end());
    if (!L.shared_gate.data.empty())
      swiglu(L.shared_gate, L.shared_up, L.shared_down, "moe.shared.gate_up", "moe.shared.act", "moe.shared.down");
    if (M.sharding().dp > 1) {
      // The tp ranks of a replica hold the same tokens: each sends its share [t0, t1) to the experts' ranks, and the
      // all-reduce below completes every token.
      const int tp = M.sharding().tp, tp_index = M.sharding().tp_index();
      const std::int64_t t0 = T * tp_index / tp, t1 = T * (tp_index + 1) / tp;
      moe_all_to_all(L, xn.data() + t0 * H, ids.data() + t0 * K, weights.data() + t0 * K, t1 - t0, out.data() + t0 * H);
    } else {
      // This rank's experts [e0, e1): their rows are contiguous in the dispatch (rows are sorted by expert).
      const kernels::ExpertDispatch dispatch = kernels::build_expert_dispatch(ids.data(), weights.data(), T, K, E);
      const std::int64_t e0 = M.sharding().expert_begin, e1 = e0 + static_cast<std::int64_t>(L.expert_gate.size());
      const std::int64_t r0 = dispatch.expert_offsets[static_cast<std::size_t>(e0)];
      std::vector<std::int64_t> offsets(dispatch.expert_offsets.begin() + e0, dispatch.expert_offsets.begin() + e1 + 1);
      for (auto& off : offsets) off -= r0;
      // Llama 4 scales the expert input by the router weight; Qwen3 and Mixtral scale the output.
      const float* row_weight = dispatch.row_weight.data() + r0;
      routed_experts(L, offsets.data(), offsets.back(), dispatch.row_token.data() + r0, P.llama4 ? row_weight : nullptr,
                     P.llama4 ? nullptr : row_weight, xn.data(), out.data());
    }
  }
  if (tp_comm_) {  // partial sums over this rank's MLP or shared-expert columns, expert pieces and tokens
    Timer tm{times_, L.moe ? "moe.all_reduce" : "mlp.all_reduce"};
    tp_comm_->all_reduce_sum(out.data(), T * H);
  }
  kernels::add(ctx_, x.data(), out.data(), x.data(), T * H);
}

void Session::routed_experts(const Model::Layer& L, const std::int64_t* offsets, std::int64_t R, const std::int64_t* row_token,
                             const float* in_scale, const float* out_scale, const float* x, float* y) {
  if (R == 0) return;
  const std::int64_t H = model_->config().hidden, I = L.expert_gate.front().rows;
  const std::int64_t experts = static_cast<std::int64_t>(L.expert_gate.size());
  auto views = [](const std::vector<Model::Matrix>& ms) {
    std::vector<kernels::WeightView> list;
    for (const auto& m : ms) list.push_back(m.view());
    return list;
  };
  // xs, ys: [R, H]; gs, us: [R, I] (I: this rank's piece of the expert intermediate)
  std::vector<float> xs(static_cast<std::size_t>(R * H)), gs(static_cast<std::size_t>(R * I)), us(gs.size()), ys(xs.size());
  {
    Timer tm{times_, "moe.experts.gate_up"};
    kernels::gather_rows(ctx_, x, H, row_token, in_scale, R, xs.data());
    const auto gv = views(L.expert_gate), uv = views(L.expert_up);
    kernels::grouped_matmul(ctx_, xs.data(), offsets, experts, gv.data(), gs.data());
    kernels::grouped_matmul(ctx_, xs.data(), offsets, experts, uv.data(), us.data());
  }
  {
    Timer tm{times_, "moe.experts.act"};
    kernels::silu_mul(ctx_, gs.data(), us.data(), gs.data(), R * I);
  }
  Timer tm{times_, "moe.experts.down"};
  const auto dv = views(L.expert_down);
  kernels::grouped_matmul(ctx_, gs.data(), offsets, experts, dv.data(), ys.data());
  kernels::scatter_add_rows(ctx_, ys.data(), H, row_token, out_scale, R, y);
}

void Session::moe_all_to_all(const Model::Layer& L, const float* xn, const std::int32_t* ids, const float* weights,
                             std::int64_t T, float* out) {
  const Model& M = *model_;
  const std::int64_t H = M.config().hidden, E = M.config().num_experts, K = M.config().experts_per_token;
  const bool llama4 = M.params().llama4;
  const std::size_t ranks = static_cast<std::size_t>(comm_->size());
  // Rank j = group * moe_tp + piece holds piece `piece` of experts [group * per, (group + 1) * per).
  const std::size_t moe_tp = static_cast<std::size_t>(M.sharding().moe_tp()), groups = ranks / moe_tp;
  const std::int64_t per = static_cast<std::int64_t>(L.expert_gate.size());
  const kernels::ExpertDispatch dispatch = kernels::build_expert_dispatch(ids, weights, T, K, E);
  const auto& off = dispatch.expert_offsets;  // rows sorted by expert, so a group's rows are contiguous
  auto group_rows = [&](std::size_t g) {      // rows [first, second) of the dispatch that go to group g
    return std::pair{off[g * static_cast<std::size_t>(per)], off[(g + 1) * static_cast<std::size_t>(per)]};
  };
  // send[j], j = g * moe_tp + piece: [per] row counts of group g's experts (as floats, exact below 2^24), then their
  // rows [n, H] of xn (Llama 4: already scaled by the router weight, which scales the expert input); every piece of
  // a group gets the same rows.
  std::vector<std::vector<float>> recv;
  {
    Timer tm{times_, "moe.dispatch"};
    std::vector<std::vector<float>> send(ranks);
    for (std::size_t g = 0; g < groups; ++g) {
      const auto [rb, re] = group_rows(g);
      std::vector<float>& buf = send[g * moe_tp];
      buf.resize(static_cast<std::size_t>(per + (re - rb) * H));
      for (std::int64_t e = 0; e < per; ++e) {
        const std::size_t eg = g * static_cast<std::size_t>(per) + static_cast<std::size_t>(e);
        buf[static_cast<std::size_t>(e)] = static_cast<float>(off[eg + 1] - off[eg]);
      }
      if (re > rb)
        kernels::gather_rows(ctx_, xn, H, dispatch.row_token.data() + rb, llama4 ? dispatch.row_weight.data() + rb : nullptr,
                             re - rb, buf.data() + per);
      for (std::size_t p = 1; p < moe_tp; ++p) send[g * moe_tp + p] = buf;
    }
    recv = comm_->all_to_all(send);
  }
  // The received rows, source rank by source rank: in [R, H]; rank r's rows start at row first_of[r], expert by
  // expert. Grouped by this rank's expert (rows from rank 0, then rank 1, ... for each expert), grouped row i is
  // in[row_of[i]].
  std::vector<std::int64_t> first_of(ranks + 1, 0), offsets(static_cast<std::size_t>(per + 1), 0);
  auto count = [&](std::size_t r, std::int64_t e) { return static_cast<std::int64_t>(recv[r][static_cast<std::size_t>(e)]); };
  for (std::size_t r = 0; r < ranks; ++r) first_of[r + 1] = first_of[r] + static_cast<std::int64_t>(recv[r].size() - static_cast<std::size_t>(per)) / H;
  const std::int64_t R = first_of[ranks];
  std::vector<float> in(static_cast<std::size_t>(R * H)), res(in.size(), 0.0f);
  std::vector<std::int64_t> row_of;
  row_of.reserve(static_cast<std::size_t>(R));
  for (std::size_t r = 0; r < ranks; ++r) std::copy(recv[r].begin() + per, recv[r].end(), in.begin() + first_of[r] * H);
  std::vector<std::int64_t> read(first_of.begin(), first_of.end() - 1);  // next row of each source rank
  for (std::int64_t e = 0; e < per; ++e) {
    for (std::size_t r = 0; r < ranks; ++r)
      for (std::int64_t i = 0; i < count(r, e); ++i) row_of.push_back(read[r]++);
    offsets[static_cast<std::size_t>(e + 1)] = static_cast<std::int64_t>(row_of.size());
  }
  // res [R, H]: each received row's result (this rank's piece of its expert) in the order it arrived.
  routed_experts(L, offsets.data(), R, row_of.data(), nullptr, nullptr, in.data(), res.data());
  // Send every row's result back to the rank it came from, in the order it came; then sum the moe_tp pieces of each
  // row (in piece order) into y [rows, H], in this rank's dispatch order, and add them into out.
  Timer tm{times_, "moe.combine"};
  std::vector<std::vector<float>> back(ranks);
  for (std::size_t r = 0; r < ranks; ++r) back[r].assign(res.begin() + first_of[r] * H, res.begin() + first_of[r + 1] * H);
  const auto results = comm_->all_to_all(back);
  const std::int64_t rows = static_cast<std::int64_t>(dispatch.row_token.size());
  if (rows == 0) return;
  std::vector<float> y(static_cast<std::size_t>(rows * H), 0.0f);
  for (std::size_t g = 0; g < groups; ++g) {
    const auto [rb, re] = group_rows(g);
    for (std::size_t p = 0; p < moe_tp; ++p)
      kernels::add(ctx_, y.data() + rb * H, results[g * moe_tp + p].data(), y.data() + rb * H, (re - rb) * H);
  }
  kernels::scatter_add_rows(ctx_, y.data(), H, dispatch.row_token.data(), llama4 ? nullptr : dispatch.row_weight.data(), rows, out);
}

std::int32_t sample(const float* logits, std::int64_t vocab, float temperature, float top_p, std::uint64_t& rng_state) {
  if (temperature <= 0) return static_cast<std::int32_t>(std::max_element(logits, logits + vocab) - logits);
  const double u = splitmix64_unit(rng_state);  // the same stream on every platform
  std::vector<std::pair<double, std::int32_t>> p(static_cast<std::size_t>(vocab));
  const double mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (std::int64_t i = 0; i < vocab; ++i) {
    p[static_cast<std::size_t>(i)] = {std::exp((logits[i] - mx) / temperature), static_cast<std::int32_t>(i)};
    sum += p[static_cast<std::size_t>(i)].first;
  }
  std::sort(p.begin(), p.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  // Keep the smallest prefix whose mass reaches top_p, then draw within it.
  double kept = 0;
  std::size_t n = 0;
  while (n < p.size() && (n == 0 || kept < top_p * sum)) kept += p[n++].first;
  double target = u * kept, acc = 0;
  for (std::size_t i = 0; i < n; ++i) {
    acc += p[i].first;
    if (acc >= target) return p[i].second;
  }
  return p[n - 1].second;
}

}  // namespace moeplan::executor
