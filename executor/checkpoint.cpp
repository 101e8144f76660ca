// Checkpoint layouts per model family (names and shapes as transformers 5 saves them; see checkpoint.hpp for the
// sources) and the check of an opened checkpoint against its layout.
#include "executor/checkpoint.hpp"

#include <algorithm>
#include <set>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moeplan::executor {

const char* tensor_role_name(TensorRole r) {
  switch (r) {
    case TensorRole::embed: return "embed";
    case TensorRole::final_norm: return "final_norm";
    case TensorRole::lm_head: return "lm_head";
    case TensorRole::input_norm: return "input_norm";
    case TensorRole::post_attn_norm: return "post_attn_norm";
    case TensorRole::q_proj: return "q_proj";
    case TensorRole::k_proj: return "k_proj";
    case TensorRole::v_proj: return "v_proj";
    case TensorRole::o_proj: return "o_proj";
    case TensorRole::q_bias: return "q_bias";
    case TensorRole::k_bias: return "k_bias";
    case TensorRole::v_bias: return "v_bias";
    case TensorRole::o_bias: return "o_bias";
    case TensorRole::q_norm: return "q_norm";
    case TensorRole::k_norm: return "k_norm";
    case TensorRole::router: return "router";
    case TensorRole::experts_gate_up: return "experts_gate_up";
    case TensorRole::experts_down: return "experts_down";
    case TensorRole::expert_gate: return "expert_gate";
    case TensorRole::expert_up: return "expert_up";
    case TensorRole::expert_down: return "expert_down";
    case TensorRole::expert_gate_scale: return "expert_gate_scale";
    case TensorRole::expert_up_scale: return "expert_up_scale";
    case TensorRole::expert_down_scale: return "expert_down_scale";
    case TensorRole::shared_gate: return "shared_gate";
    case TensorRole::shared_up: return "shared_up";
    case TensorRole::shared_down: return "shared_down";
    case TensorRole::dense_gate: return "dense_gate";
    case TensorRole::dense_up: return "dense_up";
    case TensorRole::dense_down: return "dense_down";
  }
  return "?";
}

const std::vector<std::string>& layout_model_types() {
  static const std::vector<std::string> kTypes = {"llama4", "qwen3_moe", "mixtral"};
  return kTypes;
}

const ExpectedTensor* CheckpointLayout::find(int layer, TensorRole role, int expert) const {
  for (const auto& t : tensors)
    if (t.layer == layer && t.role == role && t.expert == expert) return &t;
  return nullptr;
}

std::int64_t CheckpointLayout::elements() const {
  std::int64_t n = 0;
  for (const auto& t : tensors) {
    std::int64_t e = 1;
    for (const auto d : t.shape) e *= d;
    n += e;
  }
  return n;
}

namespace {

bool is_scale(TensorRole r) {
  return r == TensorRole::expert_gate_scale || r == TensorRole::expert_up_scale || r == TensorRole::expert_down_scale;
}

// Appends tensors of one layout; `dtype` is the checkpoint's float dtype.
class Builder {
 public:
  Builder(CheckpointLayout& layout, Dtype dtype) : layout_(layout), dtype_(dtype) {}

  void add(std::string name, std::vector<std::int64_t> shape, TensorRole role, int layer, std::int64_t fan_in,
           int expert = -1, std::optional<Dtype> dtype = std::nullopt) {
    layout_.tensors.push_back({std::move(name), dtype.value_or(dtype_), std::move(shape), role, layer, expert, fan_in});
  }
  // A Linear weight [out, in].
  void linear(std::string name, std::int64_t out, std::int64_t in, TensorRole role, int layer, int expert = -1) {
    add(std::move(name), {out, in}, role, layer, in, expert);
  }
  // A 1-D weight (norm) [size].
  void vec(std::string name, std::int64_t size, TensorRole role, int layer) { add(std::move(name), {size}, role, layer, size); }

 private:
  CheckpointLayout& layout_;
  Dtype dtype_;
};

Dtype float_dtype(const model::ModelConfig& c) {
  if (c.torch_dtype == "fp16") return Dtype::f16;
  if (c.torch_dtype == "fp32") return Dtype::f32;
  return Dtype::bf16;
}

bool has_attention_bias(const model::LayerSpec& l) {
  return std::any_of(l.weights.begin(), l.weights.end(), [](const model::WeightGroup& w) {
    return w.module == model::Module::attention && w.role == model::Role::bias;
  });
}

// q/k/v/o projections (nn.Linear, [out, in]); Qwen3's attention_bias adds all four biases (transformers 5
// Qwen3MoeAttention passes bias=config.attention_bias to o_proj too).
void attention(Builder& b, const model::ModelConfig& c, const std::string& l, int i, bool bias) {
  const std::int64_t q_out = c.num_heads * c.head_dim, kv_out = c.num_kv_heads * c.head_dim;
  b.linear(l + "self_attn.q_proj.weight", q_out, c.hidden, TensorRole::q_proj, i);
  b.linear(l + "self_attn.k_proj.weight", kv_out, c.hidden, TensorRole::k_proj, i);
  b.linear(l + "self_attn.v_proj.weight", kv_out, c.hidden, TensorRole::v_proj, i);
  b.linear(l + "self_attn.o_proj.weight", c.hidden, q_out, TensorRole::o_proj, i);
  if (bias) {
    b.add(l + "self_attn.q_proj.bias", {q_out}, TensorRole::q_bias, i, c.hidden);
    b.add(l + "self_attn.k_proj.bias", {kv_out}, TensorRole::k_bias, i, c.hidden);
    b.add(l + "self_attn.v_proj.bias", {kv_out}, TensorRole::v_bias, i, c.hidden);
    b.add(l + "self_attn.o_proj.bias", {c.hidden}, TensorRole::o_bias, i, q_out);
  }
}

void norms(Builder& b, const model::ModelConfig& c, const std::string& l, int i) {
  b.vec(l + "input_layernorm.weight", c.hidden, TensorRole::input_norm, i);
  b.vec(l + "post_attention_layernorm.weight", c.hidden, TensorRole::post_attn_norm, i);
}

// gate/up [inter, H], down [H, inter] under `prefix` with the given projection names.
void swiglu(Builder& b, const model::ModelConfig& c, const std::string& prefix, std::int64_t inter, int i,
            const char* gate, const char* up, const char* down, TensorRole gate_role, TensorRole up_role,
            TensorRole down_role, int expert = -1) {
  b.linear(prefix + gate + ".weight", inter, c.hidden, gate_role, i, expert);
  b.linear(prefix + up + ".weight", inter, c.hidden, up_role, i, expert);
  b.linear(prefix + down + ".weight", c.hidden, inter, down_role, i, expert);
}

void build_llama4(Builder& b, CheckpointLayout& layout, const model::ModelConfig& c) {
  const std::string root = layout.options.multimodal_prefix ? "language_model." : "";
  const std::string m = root + "model.";
  layout.experts = layout.options.fp8_experts ? ExpertStorage::per_expert : ExpertStorage::fused;
  layout.ignored_prefixes = {"vision_model.", "multi_modal_projector."};
  b.linear(m + "embed_tokens.weight", c.vocab, c.hidden, TensorRole::embed, -1);
  for (const auto& spec : c.layers) {
    const int i = spec.index;
    const std::string l = m + "layers." + std::to_string(i) + ".";
    attention(b, c, l, i, false);  // Llama 4 qk-norm (Scout) is weightless (Llama4TextL2Norm)
    norms(b, c, l, i);
    const std::string ff = l + "feed_forward.";
    if (spec.mlp == model::MlpKind::dense) {
      swiglu(b, c, ff, c.dense_intermediate, i, "gate_proj", "up_proj", "down_proj", TensorRole::dense_gate,
             TensorRole::dense_up, TensorRole::dense_down);
      continue;
    }
    const std::int64_t e = c.num_experts, inter = c.moe_intermediate;
    b.linear(ff + "router.weight", e, c.hidden, TensorRole::router, i);
    if (layout.options.fp8_experts) {
      for (int x = 0; x < e; ++x) {
        const std::string p = ff + "experts." + std::to_string(x) + ".";
        const std::pair<const char*, TensorRole> projections[] = {
            {"gate_proj", TensorRole::expert_gate}, {"up_proj", TensorRole::expert_up}, {"down_proj", TensorRole::expert_down}};
        for (const auto& [proj, role] : projections) {
          const bool down = role == TensorRole::expert_down;
          const std::int64_t out = down ? c.hidden : inter, in = down ? inter : c.hidden;
          const TensorRole scale = down ? TensorRole::expert_down_scale
                                   : role == TensorRole::expert_gate ? TensorRole::expert_gate_scale
                                                                     : TensorRole::expert_up_scale;
          b.add(p + proj + ".weight", {out, in}, role, i, in, x, Dtype::f8_e4m3);
          b.add(p + proj + ".weight_scale", {out, 1}, scale, i, in, x, Dtype::bf16);
        }
      }
    } else {
      // Stored input-major for torch.bmm(x, W): gate_up [E, H, 2I], down [E, I, H].
      b.add(ff + "experts.gate_up_proj", {e, c.hidden, 2 * inter}, TensorRole::experts_gate_up, i, c.hidden);
      b.add(ff + "experts.down_proj", {e, inter, c.hidden}, TensorRole::experts_down, i, inter);
    }
    swiglu(b, c, ff + "shared_expert.", c.shared_intermediate, i, "gate_proj", "up_proj", "down_proj",
           TensorRole::shared_gate, TensorRole::shared_up, TensorRole::shared_down);
  }
  b.vec(m + "norm.weight", c.hidden, TensorRole::final_norm, -1);
  if (!c.tie_word_embeddings) b.linear(root + "lm_head.weight", c.vocab, c.hidden, TensorRole::lm_head, -1);
}

void build_qwen3_moe(Builder& b, const model::ModelConfig& c) {
  b.linear("model.embed_tokens.weight", c.vocab, c.hidden, TensorRole::embed, -1);
  for (const auto& spec : c.layers) {
    const int i = spec.index;
    const std::string l = "model.layers." + std::to_string(i) + ".";
    attention(b, c, l, i, has_attention_bias(spec));
    b.vec(l + "self_attn.q_norm.weight", c.head_dim, TensorRole::q_norm, i);
    b.vec(l + "self_attn.k_norm.weight", c.head_dim, TensorRole::k_norm, i);
    norms(b, c, l, i);
    if (spec.mlp == model::MlpKind::dense) {
      swiglu(b, c, l + "mlp.", c.dense_intermediate, i, "gate_proj", "up_proj", "down_proj", TensorRole::dense_gate,
             TensorRole::dense_up, TensorRole::dense_down);
      continue;
    }
    b.linear(l + "mlp.gate.weight", c.num_experts, c.hidden, TensorRole::router, i);
    for (int x = 0; x < c.num_experts; ++x)
      swiglu(b, c, l + "mlp.experts." + std::to_string(x) + ".", c.moe_intermediate, i, "gate_proj", "up_proj",
             "down_proj", TensorRole::expert_gate, TensorRole::expert_up, TensorRole::expert_down, x);
  }
  b.vec("model.norm.weight", c.hidden, TensorRole::final_norm, -1);
  if (!c.tie_word_embeddings) b.linear("lm_head.weight", c.vocab, c.hidden, TensorRole::lm_head, -1);
}

void build_mixtral(Builder& b, const model::ModelConfig& c) {
  b.linear("model.embed_tokens.weight", c.vocab, c.hidden, TensorRole::embed, -1);
  for (const auto& spec : c.layers) {
    const int i = spec.index;
    const std::string l = "model.layers." + std::to_string(i) + ".";
    attention(b, c, l, i, false);
    norms(b, c, l, i);
    b.linear(l + "block_sparse_moe.gate.weight", c.num_experts, c.hidden, TensorRole::router, i);
    for (int x = 0; x < c.num_experts; ++x)  // w1 = gate, w3 = up, w2 = down (MixtralBlockSparseTop2MLP)
      swiglu(b, c, l + "block_sparse_moe.experts." + std::to_string(x) + ".", c.moe_intermediate, i, "w1", "w3", "w2",
             TensorRole::expert_gate, TensorRole::expert_up, TensorRole::expert_down, x);
  }
  b.vec("model.norm.weight", c.hidden, TensorRole::final_norm, -1);
  if (!c.tie_word_embeddings) b.linear("lm_head.weight", c.vocab, c.hidden, TensorRole::lm_head, -1);
}

// The dtype check: FP8 weights must be F8_E4M3; every other tensor (scales included) any float dtype.
bool dtype_ok(const ExpectedTensor& t, Dtype found) {
  if (t.dtype == Dtype::f8_e4m3) return found == Dtype::f8_e4m3;
  return is_float_dtype(found);
}

// Scales may be stored [out, 1] (compressed-tensors) or [out].
bool shape_ok(const ExpectedTensor& t, const std::vector<std::int64_t>& found) {
  if (found == t.shape) return true;
  return is_scale(t.role) && found.size() == 1 && found[0] == t.shape[0];
}

}  // namespace

CheckpointLayout checkpoint_layout(const model::ModelConfig& config, const LayoutOptions& options) {
  const auto& types = layout_model_types();
  if (std::find(types.begin(), types.end(), config.model_type) == types.end())
    throw InputError(config.source + ": no checkpoint layout for model_type '" + config.model_type +
                     "'; the executor reads " + join(types, ", "));
  if (config.model_type != "llama4" && (options.fp8_experts || options.multimodal_prefix))
    throw InputError(config.source + ": the FP8 per-expert layout and the language_model. prefix exist only for llama4, not " +
                     config.model_type);
  CheckpointLayout layout;
  layout.model_type = config.model_type;
  layout.options = options;
  Builder b(layout, float_dtype(config));
  if (config.model_type == "llama4") build_llama4(b, layout, config);
  else if (config.model_type == "qwen3_moe") build_qwen3_moe(b, config);
  else build_mixtral(b, config);
  return layout;
}

LayoutOptions detect_layout_options(const Checkpoint& checkpoint, const model::ModelConfig& config) {
  LayoutOptions o;
  if (config.model_type != "llama4") return o;
  o.multimodal_prefix = checkpoint.find("language_model.model.embed_tokens.weight") != nullptr;
  const std::string m = o.multimodal_prefix ? "language_model.model." : "model.";
  for (const auto& l : config.layers)
    if (l.mlp == model::MlpKind::moe) {
      o.fp8_experts =
          checkpoint.find(m + "layers." + std::to_string(l.index) + ".feed_forward.experts.0.gate_proj.weight") != nullptr;
      break;
    }
  return o;
}

CheckReport check_checkpoint(const Checkpoint& checkpoint, const model::ModelConfig& config,
                             const LayoutOptions& options, const CheckOptions& check) {
  CheckReport report;
  report.layout = checkpoint_layout(config, options);
  const auto& layout = report.layout;
  const std::string against = "the " + layout.model_type + " layout of " + config.source;
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const auto& t : layout.tensors) {
    expected.insert(t.name);
    const TensorInfo* info = checkpoint.find(t.name);
    if (!info) {
      problems.push_back(checkpoint.origin() + ": missing tensor " + quoted_name(t.name) + " (" + dtype_name(t.dtype) + " " +
                         shape_text(t.shape) + " in " + against + "); the checkpoint and config.json do not match");
    } else if (!shape_ok(t, info->shape)) {
      problems.push_back(info->file + ": tensor " + quoted_name(t.name) + " has shape " + shape_text(info->shape) + ", expected " +
                         shape_text(t.shape) + " from " + config.source + "; the checkpoint and config.json do not match");
    } else if (!dtype_ok(t, info->dtype)) {
      problems.push_back(info->file + ": tensor " + quoted_name(t.name) + " has dtype " + dtype_name(info->dtype) + ", expected " +
                         (t.dtype == Dtype::f8_e4m3 ? std::string("F8_E4M3") : std::string("BF16, F16 or F32")) +
                         " for " + tensor_role_name(t.role) + "; convert the checkpoint");
    }
  }
  std::vector<const TensorInfo*> unexpected;
  for (const auto& name : checkpoint.names()) {
    if (expected.count(name)) continue;
    const bool ignored = std::any_of(layout.ignored_prefixes.begin(), layout.ignored_prefixes.end(),
                                     [&](const std::string& p) { return name.starts_with(p); });
    if (ignored) ++report.ignored_tensors;
    else unexpected.push_back(checkpoint.find(name));
  }
  if (!unexpected.empty()) {
    const std::string line = unexpected.front()->file + ": unexpected tensor " + quoted_name(unexpected.front()->name) +
                             (unexpected.size() > 1 ? " and " + std::to_string(unexpected.size() - 1) + " more" : "") +
                             " not in " + against;
    if (check.allow_unexpected) report.warnings.push_back(line + " (ignored)");
    else problems.push_back(line + "; the checkpoint and config.json do not match (or allow unexpected tensors)");
  }
  if (!problems.empty())
    throw InputError(problems.front() +
                     (problems.size() > 1 ? " (and " + std::to_string(problems.size() - 1) + " more problems)" : ""));
  return report;
}

CheckReport check_checkpoint(const Checkpoint& checkpoint, const model::ModelConfig& config, const CheckOptions& check) {
  return check_checkpoint(checkpoint, config, detect_layout_options(checkpoint, config), check);
}

}  // namespace moeplan::executor
