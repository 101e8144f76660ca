// Parsing of HF config.json for the supported families. Each family builder lists every tensor the published
// checkpoint stores, with the shapes of transformers' modeling_<family>.py (cited per family below).
#include "model/config.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace moeplan::model {

using nlohmann::json;

const char* module_name(Module m) {
  switch (m) {
    case Module::embedding: return "embedding";
    case Module::lm_head: return "lm_head";
    case Module::attention: return "attention";
    case Module::router: return "router";
    case Module::routed_experts: return "routed_experts";
    case Module::shared_experts: return "shared_experts";
    case Module::dense_mlp: return "dense_mlp";
    case Module::norms: return "norms";
    case Module::vision: return "vision";
    case Module::mtp: return "mtp";
  }
  return "?";
}

const char* attention_kind_name(AttentionKind k) {
  switch (k) {
    case AttentionKind::global: return "global";
    case AttentionKind::chunked: return "chunked";
    case AttentionKind::sliding: return "sliding";
    case AttentionKind::mla: return "mla";
  }
  return "?";
}

int ModelConfig::count_layers(MlpKind kind) const {
  return static_cast<int>(std::count_if(layers.begin(), layers.end(), [&](const LayerSpec& l) { return l.mlp == kind; }));
}
int ModelConfig::count_layers(AttentionKind kind) const {
  return static_cast<int>(
      std::count_if(layers.begin(), layers.end(), [&](const LayerSpec& l) { return l.attention == kind; }));
}

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> kTypes = {"llama4", "llama", "mixtral", "qwen3_moe", "deepseek_v3", "gpt_oss"};
  return kTypes;
}

namespace {

// Reads fields of one JSON object with errors that name the file and the field.
class Fields {
 public:
  Fields(const json& j, std::string origin) : j_(j), origin_(std::move(origin)) {}

  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  std::int64_t integer(const char* key) const {
    if (!has(key)) throw InputError(origin_ + ": missing field '" + key + "' (required for this model_type)");
    return positive(key, j_.at(key));
  }
  std::int64_t integer_or(const char* key, std::int64_t fallback) const { return has(key) ? integer(key) : fallback; }
  // Like integer_or but 0 is allowed (e.g. first_k_dense_replace).
  std::int64_t count_or(const char* key, std::int64_t fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number_integer() || v.get<std::int64_t>() < 0)
      throw InputError(origin_ + ": field '" + key + "' must be a non-negative integer, got " + v.dump());
    return v.get<std::int64_t>() == 0 ? 0 : positive(key, v);
  }
  // A token count (context length): positive, up to 2^40.
  std::int64_t context_or(const char* key, std::int64_t fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number_integer() || v.get<std::int64_t>() <= 0 || v.get<std::int64_t>() > (std::int64_t{1} << 40))
      throw InputError(origin_ + ": field '" + key + "' must be a positive token count, got " + v.dump());
    return v.get<std::int64_t>();
  }
  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_.at(key).is_boolean()) throw InputError(origin_ + ": field '" + key + "' must be true or false, got " + j_.at(key).dump());
    return j_.at(key).get<bool>();
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    if (!j_.at(key).is_string()) throw InputError(origin_ + ": field '" + key + "' must be a string, got " + j_.at(key).dump());
    return j_.at(key).get<std::string>();
  }
  std::vector<std::int64_t> int_list(const char* key) const {
    std::vector<std::int64_t> out;
    if (!has(key)) return out;
    if (!j_.at(key).is_array()) throw InputError(origin_ + ": field '" + key + "' must be a list of integers");
    for (const auto& v : j_.at(key)) {
      if (!v.is_number_integer()) throw InputError(origin_ + ": field '" + key + "' must be a list of integers, found " + v.dump());
      out.push_back(v.get<std::int64_t>());
    }
    return out;
  }
  std::vector<std::string> string_list(const char* key) const {
    std::vector<std::string> out;
    if (!has(key)) return out;
    if (!j_.at(key).is_array()) throw InputError(origin_ + ": field '" + key + "' must be a list of strings");
    for (const auto& v : j_.at(key)) {
      if (!v.is_string()) throw InputError(origin_ + ": field '" + key + "' must be a list of strings, found " + v.dump());
      out.push_back(v.get<std::string>());
    }
    return out;
  }
  const std::string& origin() const { return origin_; }

 private:
  std::int64_t positive(const char* key, const json& v) const {
    if (!v.is_number_integer() || v.get<std::int64_t>() <= 0)
      throw InputError(origin_ + ": field '" + key + "' must be a positive integer, got " + v.dump());
    // No real transformer dimension comes near 2^20 (a million); the bound keeps every product of three
    // dimensions (a weight group's rows x cols x count) inside int64.
    if (v.get<std::int64_t>() > kMaxDimension)
      throw InputError(origin_ + ": field '" + key + "' = " + v.dump() + " is implausibly large (limit 2^20)");
    return v.get<std::int64_t>();
  }
  static constexpr std::int64_t kMaxDimension = std::int64_t{1} << 20;
  const json& j_;
  std::string origin_;
};

// Helpers that append tensors to a list.
void linear(std::vector<WeightGroup>& w, Module m, Role r, Shard s, std::int64_t rows, std::int64_t cols,
            std::int64_t count = 1) {
  w.push_back({m, r, s, rows, cols, count, true});
}
void vec(std::vector<WeightGroup>& w, Module m, Role r, Shard s, std::int64_t size, std::int64_t count = 1) {
  w.push_back({m, r, s, size, 1, count, false});
}

// Standard GQA attention: q [nh*hd, H], k/v [nkv*hd, H], o [H, nh*hd], optional biases on q/k/v (and o).
void gqa_attention(std::vector<WeightGroup>& w, const ModelConfig& c, bool qkv_bias, bool o_bias) {
  const std::int64_t q_out = c.num_heads * c.head_dim, kv_out = c.num_kv_heads * c.head_dim;
  linear(w, Module::attention, Role::q, Shard::tensor, q_out, c.hidden);
  linear(w, Module::attention, Role::k, Shard::kv_heads, kv_out, c.hidden);
  linear(w, Module::attention, Role::v, Shard::kv_heads, kv_out, c.hidden);
  linear(w, Module::attention, Role::o, Shard::tensor, c.hidden, q_out);
  if (qkv_bias) {
    vec(w, Module::attention, Role::bias, Shard::tensor, q_out);
    vec(w, Module::attention, Role::bias, Shard::kv_heads, kv_out, 2);
  }
  if (o_bias) vec(w, Module::attention, Role::bias, Shard::replicated, c.hidden);
}

// SwiGLU MLP of intermediate size I: gate [I, H], up [I, H], down [H, I].
void swiglu(std::vector<WeightGroup>& w, Module m, Shard s, std::int64_t hidden, std::int64_t inter, std::int64_t count = 1) {
  linear(w, m, Role::gate, s, inter, hidden, count);
  linear(w, m, Role::up, s, inter, hidden, count);
  linear(w, m, Role::down, s, hidden, inter, count);
}

void two_norms(std::vector<WeightGroup>& w, const ModelConfig& c) {
  vec(w, Module::norms, Role::norm, Shard::replicated, c.hidden, 2);  // input_layernorm, post_attention_layernorm
}

// Embedding, final norm and lm_head (unless tied to the embedding).
void add_globals(ModelConfig& c) {
  linear(c.globals, Module::embedding, Role::embed, Shard::vocab, c.vocab, c.hidden);
  vec(c.globals, Module::norms, Role::norm, Shard::replicated, c.hidden);
  if (!c.tie_word_embeddings) linear(c.globals, Module::lm_head, Role::head, Shard::vocab, c.vocab, c.hidden);
}

std::string normalise_dtype(const std::string& d) {
  if (d == "bfloat16" || d.empty()) return "bf16";
  if (d == "float16") return "fp16";
  if (d == "float32") return "fp32";
  return d;
}

// Maximum context from max_position_embeddings (HF) — the model's advertised limit.
void common_dims(ModelConfig& c, const Fields& f) {
  c.hidden = f.integer("hidden_size");
  c.num_layers = f.integer("num_hidden_layers");
  if (c.num_layers > 10000) throw InputError(f.origin() + ": num_hidden_layers = " + std::to_string(c.num_layers) + " is implausibly large");
  c.num_heads = f.integer("num_attention_heads");
  c.num_kv_heads = f.integer_or("num_key_value_heads", c.num_heads);
  c.head_dim = f.has("head_dim") ? f.integer("head_dim") : c.hidden / c.num_heads;
  if (c.head_dim < 1)
    throw InputError(f.origin() + ": num_attention_heads (" + std::to_string(c.num_heads) + ") exceeds hidden_size (" +
                     std::to_string(c.hidden) + "): head_dim would be 0; give head_dim or fewer heads");
  c.vocab = f.integer("vocab_size");
  c.max_context_tokens = f.context_or("max_position_embeddings", 0);
  if (c.num_heads % c.num_kv_heads != 0)
    throw InputError(f.origin() + ": num_attention_heads (" + std::to_string(c.num_heads) +
                     ") must be a multiple of num_key_value_heads (" + std::to_string(c.num_kv_heads) + ")");
}

// ---- llama4: transformers models/llama4/modeling_llama4.py (Llama4TextDecoderLayer, Llama4TextMoe,
// Llama4VisionModel). Experts are fused: gate_up_proj [E, H, 2I], down_proj [E, I, H].
void build_llama4_vision(ModelConfig& c, const json& vj, const std::string& origin) {
  const Fields v(vj, origin + " (vision_config)");
  const std::int64_t h = v.integer("hidden_size"), layers = v.integer("num_hidden_layers");
  const std::int64_t inter = v.integer("intermediate_size"), patch = v.integer("patch_size");
  const std::int64_t image = v.integer("image_size"), channels = v.integer_or("num_channels", 3);
  const std::int64_t proj_in = v.integer("projector_input_dim"), proj_out = v.integer("projector_output_dim");
  const std::int64_t vision_out = v.integer_or("vision_output_dim", proj_out);
  auto& w = c.vision;
  const Module m = Module::vision;
  linear(w, m, Role::other, Shard::replicated, h, channels * patch * patch);  // patch_embedding (unfold + linear, no bias)
  vec(w, m, Role::other, Shard::replicated, h);                               // class_embedding
  const std::int64_t patches = (image / patch) * (image / patch) + 1;
  vec(w, m, Role::other, Shard::replicated, patches * h);                     // positional_embedding_vlm
  vec(w, m, Role::norm, Shard::replicated, h, 4);                             // layernorm_pre/post: weight + bias
  // Encoder layers: q/k/v/o with bias, fc1/fc2 with bias, two LayerNorms with bias.
  linear(w, m, Role::other, Shard::replicated, h, h, 4 * layers);
  vec(w, m, Role::bias, Shard::replicated, h, 4 * layers);
  linear(w, m, Role::other, Shard::replicated, inter, h, layers);
  vec(w, m, Role::bias, Shard::replicated, inter, layers);
  linear(w, m, Role::other, Shard::replicated, h, inter, layers);
  vec(w, m, Role::bias, Shard::replicated, h, layers);
  vec(w, m, Role::norm, Shard::replicated, h, 4 * layers);
  // vision_adapter (Llama4VisionPixelShuffleMLP -> Llama4VisionMLP2): fc1 [proj_in, inter], fc2 [proj_out, proj_out].
  linear(w, m, Role::other, Shard::replicated, proj_in, inter);
  linear(w, m, Role::other, Shard::replicated, proj_out, proj_out);
  // multi_modal_projector.linear_1: [text hidden, vision_output_dim], no bias.
  linear(w, m, Role::other, Shard::replicated, c.hidden, vision_out);
}

void build_llama4(ModelConfig& c, const json& root, const std::string& origin) {
  const json& tj = root.contains("text_config") ? root.at("text_config") : root;
  const Fields f(tj, origin + (root.contains("text_config") ? " (text_config)" : ""));
  common_dims(c, f);
  c.num_experts = f.integer("num_local_experts");
  c.experts_per_token = f.integer_or("num_experts_per_tok", 1);
  c.num_shared_experts = 1;
  c.moe_intermediate = f.integer("intermediate_size");
  c.shared_intermediate = c.moe_intermediate;
  c.dense_intermediate = f.integer_or("intermediate_size_mlp", c.moe_intermediate);
  c.router_scoring = "sigmoid-top1-input";
  c.qk_norm = f.boolean_or("use_qk_norm", false);
  c.tie_word_embeddings = Fields(root, origin).boolean_or("tie_word_embeddings", f.boolean_or("tie_word_embeddings", false));
  const std::int64_t chunk = f.count_or("attention_chunk_size", 0);

  std::set<std::int64_t> moe_layers;
  if (f.has("moe_layers")) {
    for (auto i : f.int_list("moe_layers")) {
      if (i < 0 || i >= c.num_layers)
        throw InputError(f.origin() + ": moe_layers names layer " + std::to_string(i) + "; the model has layers 0.." +
                         std::to_string(c.num_layers - 1));
      moe_layers.insert(i);
    }
  } else {
    const std::int64_t step = f.integer_or("interleave_moe_layer_step", 1);
    for (std::int64_t i = step - 1; i < c.num_layers; i += step) moe_layers.insert(i);
  }
  // no_rope_layers[i] == 1 means layer i USES RoPE (and chunked attention); 0 means NoPE + global attention.
  std::vector<std::int64_t> rope_flags = f.int_list("no_rope_layers");
  if (rope_flags.empty()) {
    const std::int64_t interval = f.integer_or("no_rope_layer_interval", 4);
    for (std::int64_t i = 0; i < c.num_layers; ++i) rope_flags.push_back((i + 1) % interval != 0 ? 1 : 0);
  }
  if (static_cast<std::int64_t>(rope_flags.size()) != c.num_layers)
    throw InputError(f.origin() + ": no_rope_layers has " + std::to_string(rope_flags.size()) + " entries for " +
                     std::to_string(c.num_layers) + " layers");

  for (const auto flag : rope_flags)
    if (flag != 0 && flag != 1) throw InputError(f.origin() + ": no_rope_layers entries must be 0 (NoPE) or 1 (RoPE), found " + std::to_string(flag));
  for (int i = 0; i < c.num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    l.rope = rope_flags[static_cast<std::size_t>(i)] != 0;
    l.attention = (l.rope && chunk > 0) ? AttentionKind::chunked : AttentionKind::global;
    l.attention_window_tokens = l.attention == AttentionKind::chunked ? chunk : 0;
    l.mlp = moe_layers.count(i) ? MlpKind::moe : MlpKind::dense;
    gqa_attention(l.weights, c, false, false);  // qk-norm in Llama 4 has no weights (Llama4TextL2Norm)
    two_norms(l.weights, c);
    if (l.mlp == MlpKind::moe) {
      linear(l.weights, Module::router, Role::router, Shard::replicated, c.num_experts, c.hidden);
      swiglu(l.weights, Module::routed_experts, Shard::experts, c.hidden, c.moe_intermediate, c.num_experts);
      swiglu(l.weights, Module::shared_experts, Shard::tensor, c.hidden, c.shared_intermediate);
    } else {
      swiglu(l.weights, Module::dense_mlp, Shard::tensor, c.hidden, c.dense_intermediate);
    }
    c.layers.push_back(std::move(l));
  }
  add_globals(c);
  if (root.contains("vision_config") && root.at("vision_config").is_object())
    build_llama4_vision(c, root.at("vision_config"), origin);
}

// ---- llama (dense): transformers models/llama/modeling_llama.py.
void build_llama(ModelConfig& c, const json& j, const std::string& origin) {
  const Fields f(j, origin);
  common_dims(c, f);
  c.dense_intermediate = f.integer("intermediate_size");
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  const bool attention_bias = f.boolean_or("attention_bias", false), mlp_bias = f.boolean_or("mlp_bias", false);
  for (int i = 0; i < c.num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    gqa_attention(l.weights, c, attention_bias, attention_bias);
    two_norms(l.weights, c);
    swiglu(l.weights, Module::dense_mlp, Shard::tensor, c.hidden, c.dense_intermediate);
    if (mlp_bias) {
      vec(l.weights, Module::dense_mlp, Role::bias, Shard::tensor, c.dense_intermediate, 2);
      vec(l.weights, Module::dense_mlp, Role::bias, Shard::replicated, c.hidden);
    }
    c.layers.push_back(std::move(l));
  }
  add_globals(c);
}

// Sliding-window attention on every layer when the config sets `sliding_window` (Mistral-style).
void apply_sliding_window_all(ModelConfig& c, const Fields& f, bool enabled) {
  if (!enabled || !f.has("sliding_window")) return;
  const std::int64_t window = f.integer("sliding_window");
  for (auto& l : c.layers) {
    l.attention = AttentionKind::sliding;
    l.attention_window_tokens = window;
  }
}

// ---- mixtral: transformers models/mixtral/modeling_mixtral.py (block_sparse_moe.gate [E, H], experts.w1/w2/w3).
void build_mixtral(ModelConfig& c, const json& j, const std::string& origin) {
  const Fields f(j, origin);
  common_dims(c, f);
  c.num_experts = f.integer("num_local_experts");
  c.experts_per_token = f.integer("num_experts_per_tok");
  c.moe_intermediate = f.integer("intermediate_size");
  c.router_scoring = "softmax-topk";
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  for (int i = 0; i < c.num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    l.mlp = MlpKind::moe;
    gqa_attention(l.weights, c, false, false);
    two_norms(l.weights, c);
    linear(l.weights, Module::router, Role::router, Shard::replicated, c.num_experts, c.hidden);
    swiglu(l.weights, Module::routed_experts, Shard::experts, c.hidden, c.moe_intermediate, c.num_experts);
    c.layers.push_back(std::move(l));
  }
  apply_sliding_window_all(c, f, true);
  add_globals(c);
}

// ---- qwen3_moe: transformers models/qwen3_moe/modeling_qwen3_moe.py (q_norm/k_norm [head_dim] per layer,
// mlp.gate [E, H], experts gate/up/down; layers in mlp_only_layers or off the decoder_sparse_step are dense).
void build_qwen3_moe(ModelConfig& c, const json& j, const std::string& origin) {
  const Fields f(j, origin);
  common_dims(c, f);
  // Hub configs say num_experts; transformers 5 writes num_local_experts.
  c.num_experts = f.has("num_experts") ? f.integer("num_experts") : f.integer("num_local_experts");
  c.experts_per_token = f.integer("num_experts_per_tok");
  c.moe_intermediate = f.integer("moe_intermediate_size");
  c.dense_intermediate = f.integer_or("intermediate_size", 0);
  c.router_scoring = "softmax-topk";
  c.qk_norm = true;
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  const bool attention_bias = f.boolean_or("attention_bias", false);
  const std::int64_t step = f.integer_or("decoder_sparse_step", 1);
  const auto dense_only = f.int_list("mlp_only_layers");
  for (int i = 0; i < c.num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    const bool is_dense = std::find(dense_only.begin(), dense_only.end(), i) != dense_only.end();
    l.mlp = (!is_dense && (i + 1) % step == 0) ? MlpKind::moe : MlpKind::dense;
    gqa_attention(l.weights, c, attention_bias, false);
    vec(l.weights, Module::norms, Role::norm, Shard::replicated, c.head_dim, 2);  // q_norm, k_norm
    two_norms(l.weights, c);
    if (l.mlp == MlpKind::moe) {
      linear(l.weights, Module::router, Role::router, Shard::replicated, c.num_experts, c.hidden);
      swiglu(l.weights, Module::routed_experts, Shard::experts, c.hidden, c.moe_intermediate, c.num_experts);
    } else {
      swiglu(l.weights, Module::dense_mlp, Shard::tensor, c.hidden, c.dense_intermediate);
    }
    c.layers.push_back(std::move(l));
  }
  apply_sliding_window_all(c, f, f.boolean_or("use_sliding_window", false));
  add_globals(c);
}

// ---- deepseek_v3: transformers models/deepseek_v3/modeling_deepseek_v3.py and DeepSeek's own
// modeling_deepseek.py. MLA: q_a_proj [q_lora, H] + q_a_layernorm, q_b_proj [nh*(nope+rope), q_lora] (or q_proj
// [nh*(nope+rope), H] when q_lora_rank is null), kv_a_proj_with_mqa [kv_lora+rope, H] + kv_a_layernorm,
// kv_b_proj [nh*(nope+v), kv_lora], o_proj [H, nh*v]. MoE: gate [E, H] + e_score_correction_bias [E].
void deepseek_layer(LayerSpec& l, const ModelConfig& c, Module expert_module, Module shared_module, Module dense_module,
                    Module attn_module, Module norm_module, Module router_module) {
  const MlaDims& m = *c.mla;
  const std::int64_t qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim;
  auto& w = l.weights;
  if (m.q_lora_rank > 0) {
    linear(w, attn_module, Role::q_a, Shard::replicated, m.q_lora_rank, c.hidden);
    vec(w, norm_module, Role::norm, Shard::replicated, m.q_lora_rank);
    linear(w, attn_module, Role::q_b, Shard::tensor, c.num_heads * qk_head, m.q_lora_rank);
  } else {
    linear(w, attn_module, Role::q, Shard::tensor, c.num_heads * qk_head, c.hidden);
  }
  linear(w, attn_module, Role::kv_a, Shard::replicated, m.kv_lora_rank + m.qk_rope_head_dim, c.hidden);
  vec(w, norm_module, Role::norm, Shard::replicated, m.kv_lora_rank);
  linear(w, attn_module, Role::kv_b, Shard::tensor, c.num_heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank);
  linear(w, attn_module, Role::o, Shard::tensor, c.hidden, c.num_heads * m.v_head_dim);
  vec(w, norm_module, Role::norm, Shard::replicated, c.hidden, 2);
  if (l.mlp == MlpKind::moe) {
    linear(w, router_module, Role::router, Shard::replicated, c.num_experts, c.hidden);
    vec(w, router_module, Role::bias, Shard::replicated, c.num_experts);  // e_score_correction_bias
    swiglu(w, expert_module, Shard::experts, c.hidden, c.moe_intermediate, c.num_experts);
    if (c.num_shared_experts > 0) swiglu(w, shared_module, Shard::tensor, c.hidden, c.shared_intermediate);
  } else {
    swiglu(w, dense_module, Shard::tensor, c.hidden, c.dense_intermediate);
  }
}

void build_deepseek_v3(ModelConfig& c, const json& j, const std::string& origin) {
  const Fields f(j, origin);
  common_dims(c, f);
  MlaDims m;
  m.q_lora_rank = f.count_or("q_lora_rank", 0);
  m.kv_lora_rank = f.integer("kv_lora_rank");
  m.qk_nope_head_dim = f.integer("qk_nope_head_dim");
  m.qk_rope_head_dim = f.integer("qk_rope_head_dim");
  m.v_head_dim = f.integer("v_head_dim");
  c.mla = m;
  c.head_dim = m.qk_nope_head_dim + m.qk_rope_head_dim;
  c.num_kv_heads = c.num_heads;
  c.num_experts = f.integer("n_routed_experts");
  c.experts_per_token = f.integer("num_experts_per_tok");
  c.num_shared_experts = f.count_or("n_shared_experts", 0);
  c.moe_intermediate = f.integer("moe_intermediate_size");
  c.shared_intermediate = c.moe_intermediate * c.num_shared_experts;
  c.dense_intermediate = f.integer("intermediate_size");
  c.router_scoring = "sigmoid-noaux";
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  c.num_mtp_layers = f.count_or("num_nextn_predict_layers", 0);
  const std::int64_t first_dense = f.count_or("first_k_dense_replace", 0);
  const std::int64_t freq = f.integer_or("moe_layer_freq", 1);
  auto is_moe = [&](std::int64_t i) { return i >= first_dense && i % freq == 0; };
  for (int i = 0; i < c.num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    l.attention = AttentionKind::mla;
    l.mlp = is_moe(i) ? MlpKind::moe : MlpKind::dense;
    deepseek_layer(l, c, Module::routed_experts, Module::shared_experts, Module::dense_mlp, Module::attention,
                   Module::norms, Module::router);
    c.layers.push_back(std::move(l));
  }
  add_globals(c);
  // MTP modules as stored in the checkpoint (model.layers.61.*): enorm, hnorm, eh_proj [H, 2H], a full decoder
  // layer, shared_head.norm, and copies of embed_tokens and shared_head.head. Counted, never served by default.
  for (std::int64_t k = 0; k < c.num_mtp_layers; ++k) {
    LayerSpec l;
    l.index = static_cast<int>(c.num_layers + k);
    l.mlp = is_moe(l.index) ? MlpKind::moe : MlpKind::dense;
    deepseek_layer(l, c, Module::mtp, Module::mtp, Module::mtp, Module::mtp, Module::mtp, Module::mtp);
    for (auto& w : l.weights) c.mtp.push_back(w);
    vec(c.mtp, Module::mtp, Role::norm, Shard::replicated, c.hidden, 3);  // enorm, hnorm, shared_head.norm
    linear(c.mtp, Module::mtp, Role::other, Shard::replicated, c.hidden, 2 * c.hidden);  // eh_proj
    linear(c.mtp, Module::mtp, Role::embed, Shard::vocab, c.vocab, c.hidden);  // embed_tokens copy
    linear(c.mtp, Module::mtp, Role::head, Shard::vocab, c.vocab, c.hidden);   // shared_head.head
  }
}

// ---- gpt_oss: transformers models/gpt_oss/modeling_gpt_oss.py. Attention with biases and per-head sinks [nh];
// router Linear(H, E) with bias; experts gate_up_proj [E, H, 2I] + bias [E, 2I], down_proj [E, I, H] + bias [E, H].
void build_gpt_oss(ModelConfig& c, const json& j, const std::string& origin) {
  const Fields f(j, origin);
  common_dims(c, f);
  c.num_experts = f.integer("num_local_experts");
  c.experts_per_token = f.has("num_experts_per_tok") ? f.integer("num_experts_per_tok") : f.integer("experts_per_token");
  c.moe_intermediate = f.integer("intermediate_size");
  c.router_scoring = "softmax-topk-after";
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  const std::int64_t window = f.count_or("sliding_window", 0);
  const auto types = f.string_list("layer_types");
  if (!types.empty() && static_cast<std::int64_t>(types.size()) != c.num_layers)
    throw InputError(f.origin() + ": layer_types has " + std::to_string(types.size()) + " entries for " +
                     std::to_string(c.num_layers) + " layers");
  for (int i = 0; i < c.num_layers; ++i) {
    LayerSpec l;
    l.index = i;
    l.mlp = MlpKind::moe;
    // Default when layer_types is absent: even layers sliding, odd layers full (as GptOssConfig does).
    const std::string type = types.empty() ? (i % 2 == 0 ? "sliding_attention" : "full_attention") : types[static_cast<std::size_t>(i)];
    if (type == "sliding_attention" && window > 0) {
      l.attention = AttentionKind::sliding;
      l.attention_window_tokens = window;
    } else if (type != "full_attention" && type != "sliding_attention") {
      throw InputError(f.origin() + ": unknown layer_types entry '" + type + "' (expected sliding_attention or full_attention)");
    }
    gqa_attention(l.weights, c, true, true);
    vec(l.weights, Module::attention, Role::sinks, Shard::tensor, c.num_heads);
    two_norms(l.weights, c);
    linear(l.weights, Module::router, Role::router, Shard::replicated, c.num_experts, c.hidden);
    vec(l.weights, Module::router, Role::bias, Shard::replicated, c.num_experts);
    linear(l.weights, Module::routed_experts, Role::gate, Shard::experts, c.moe_intermediate, c.hidden, c.num_experts);
    linear(l.weights, Module::routed_experts, Role::up, Shard::experts, c.moe_intermediate, c.hidden, c.num_experts);
    linear(l.weights, Module::routed_experts, Role::down, Shard::experts, c.hidden, c.moe_intermediate, c.num_experts);
    vec(l.weights, Module::routed_experts, Role::bias, Shard::experts, 2 * c.moe_intermediate + c.hidden, c.num_experts);
    c.layers.push_back(std::move(l));
  }
  add_globals(c);
}

// quantization_config -> the checkpoint's precision as a moeplan precision spec.
CheckpointQuant read_quant(const json& root) {
  CheckpointQuant q;
  if (!root.contains("quantization_config") || !root.at("quantization_config").is_object()) return q;
  const json& qc = root.at("quantization_config");
  q.method = qc.value("quant_method", std::string("unknown"));
  for (const char* key : {"ignore", "modules_to_not_convert"})
    if (qc.contains(key) && qc.at(key).is_array())
      for (const auto& m : qc.at(key))
        if (m.is_string()) q.ignored_modules.push_back(m.get<std::string>());
  if (q.method == "fp8" && qc.contains("weight_block_size")) {
    q.precision = "fp8-block";  // DeepSeek-V3: 128x128 blocks, all linear layers of the decoder
  } else if (q.method == "mxfp4") {
    q.precision = "mxfp4:experts";  // gpt-oss: only the MoE experts are MXFP4
  } else if (q.method == "compressed-tensors" || q.method == "fbgemm_fp8" || q.method == "fp8") {
    // Which modules are quantised: if everything outside the experts is ignored, it is an experts-only policy.
    bool ignores_attention = false;
    for (const auto& m : q.ignored_modules)
      if (m.find("self_attn") != std::string::npos || m.find("attn") != std::string::npos) ignores_attention = true;
    q.precision = ignores_attention ? "fp8:experts" : "fp8:all-linear";
  }
  return q;
}

// A number field that must be positive and finite when present (rms_norm_eps, rope_theta): a zero epsilon divides
// by zero on an all-zero row, a zero theta gives every RoPE frequency the same angle.
void check_positive_number(const json& j, const char* key, const std::string& origin) {
  if (!j.is_object() || !j.contains(key) || j.at(key).is_null()) return;
  const json& v = j.at(key);
  if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>()))
    throw InputError(origin + ": field '" + key + "' must be a positive number, got " + printable(v.dump()));
}

ModelConfig parse_config_fields(const json& config, const std::string& name, const std::string& origin) {
  if (!config.is_object()) throw InputError(origin + ": expected a JSON object (an HF config.json)");
  for (const char* key : {"text_config", "vision_config", "quantization_config"})
    if (config.contains(key) && !config.at(key).is_object() && !config.at(key).is_null())
      throw InputError(origin + ": field '" + key + "' must be a JSON object, got " + printable(config.at(key).dump(), 40));
  const Fields root(config, origin);
  std::string type = root.string_or("model_type", "");
  if (type.empty() && root.has("text_config")) type = Fields(config.at("text_config"), origin + " (text_config)").string_or("model_type", "");
  if (type == "llama4_text") type = "llama4";
  const auto& types = supported_model_types();
  if (std::find(types.begin(), types.end(), type) == types.end())
    throw InputError(origin + ": unsupported model_type '" + printable(type) + "'; supported: " + join(types, ", "));
  ModelConfig c;
  c.name = name;
  c.model_type = type;
  c.source = origin;
  const json& dtype_source = config.contains("text_config") ? config.at("text_config") : config;
  // transformers 5 writes "dtype" where earlier versions wrote "torch_dtype".
  const Fields dtypes(dtype_source, origin), outer(config, origin);
  const std::string stored = dtypes.string_or("torch_dtype", dtypes.string_or("dtype",
      outer.string_or("torch_dtype", outer.string_or("dtype", "bfloat16"))));
  c.torch_dtype = normalise_dtype(stored);
  for (const char* key : {"rms_norm_eps", "rope_theta"}) {
    check_positive_number(dtype_source, key, origin);
    if (dtype_source.contains("rope_parameters")) check_positive_number(dtype_source.at("rope_parameters"), key, origin);
  }
  if (type == "llama4") build_llama4(c, config, origin);
  else if (type == "llama") build_llama(c, config, origin);
  else if (type == "mixtral") build_mixtral(c, config, origin);
  else if (type == "qwen3_moe") build_qwen3_moe(c, config, origin);
  else if (type == "deepseek_v3") build_deepseek_v3(c, config, origin);
  else if (type == "gpt_oss") build_gpt_oss(c, config, origin);
  c.checkpoint_quant = read_quant(config);
  // Sum in long double so absurd configs are refused before any int64 accumulation can overflow.
  long double total = 0;
  auto add = [&](const std::vector<WeightGroup>& ws) {
    for (const auto& w : ws) total += static_cast<long double>(w.rows) * w.cols * w.count;
  };
  for (const auto& l : c.layers) add(l.weights);
  add(c.globals);
  add(c.vision);
  add(c.mtp);
  if (total > 1e15L) throw InputError(origin + ": the config describes more than 10^15 parameters; check its sizes");
  if (c.num_experts > 0 && c.experts_per_token > c.num_experts)
    throw InputError(origin + ": " + std::to_string(c.experts_per_token) + " experts per token (top-k) exceed the " +
                     std::to_string(c.num_experts) + " routed experts");
  return c;
}

}  // namespace

ModelConfig parse_hf_config(const json& config, const std::string& name, const std::string& origin) {
  return read_document(printable(origin), [&] { return parse_config_fields(config, name, origin); });
}

std::vector<std::string> builtin_model_names(const std::filesystem::path& data_dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir / "models", ec))
    if (entry.is_directory() && std::filesystem::exists(entry.path() / "config.json"))
      names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

ModelConfig load_model(const std::string& name_or_path, const std::filesystem::path& data_dir) {
  if (name_or_path.empty()) throw InputError("--model is empty; give a built-in name (`moeplan models`) or a path to config.json");
  const auto builtin = data_dir / "models" / name_or_path / "config.json";
  std::error_code ec;
  const bool looks_like_path = name_or_path.find('/') != std::string::npos || name_or_path.ends_with(".json");
  if (!looks_like_path && std::filesystem::exists(builtin, ec))
    return parse_hf_config(parse_json_file(builtin), name_or_path, builtin.string());
  std::filesystem::path p(name_or_path);
  if (std::filesystem::is_directory(p, ec)) p /= "config.json";
  if (std::filesystem::exists(p, ec)) return parse_hf_config(parse_json_file(p), name_or_path, p.string());
  if (looks_like_path) throw InputError("--model " + name_or_path + ": no such file; give a path to an HF config.json");
  throw InputError(unknown_name_message("model", name_or_path, builtin_model_names(data_dir),
                                        "`moeplan models` lists the built-in ones, or pass a path to a config.json"));
}

}  // namespace moeplan::model
