// model/config: a Hugging Face config.json becomes an exact, hardware-free description of a transformer:
// its layers (dense or MoE MLP; global, chunked, sliding or MLA attention; RoPE or NoPE) and every weight
// tensor with its shape and how it shards under tensor/expert parallelism.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace moeplan::model {

enum class MlpKind { dense, moe };
enum class AttentionKind { global, chunked, sliding, mla };

// Which part of the model a weight belongs to (the per-module parameter breakdown uses these).
enum class Module { embedding, lm_head, attention, router, routed_experts, shared_experts, dense_mlp, norms, vision, mtp };
inline constexpr int kModuleCount = 10;
const char* module_name(Module m);

// The role of one weight inside its module; quantisation mixes (e.g. GGUF q4_k_m) choose formats by role.
enum class Role { q, k, v, o, q_a, q_b, kv_a, kv_b, gate, up, down, router, norm, bias, sinks, embed, head, other };

// How a weight is divided among the GPUs of one pipeline stage.
//   replicated : every GPU holds all of it (norms, routers, MLA down-projections)
//   tensor     : split tp ways (query heads, output projection, dense MLP, shared experts)
//   kv_heads   : split tp ways by KV head, but never below one head per GPU (replicated when tp > KV heads)
//   experts    : routed experts split ep ways, each expert's intermediate split moe_tp = (tp*dp)/ep ways
//   vocab      : split tp ways by vocabulary rows (embedding, lm_head)
enum class Shard { replicated, tensor, kv_heads, experts, vocab };

// `count` weight tensors of shape [rows, cols]; rows = output channels, cols = input features. A vector
// (bias, norm weight, sinks) has cols = 1 and matrix = false: it always stays in the activation dtype.
struct WeightGroup {
  Module module;
  Role role;
  Shard shard;
  std::int64_t rows;
  std::int64_t cols;
  std::int64_t count;
  bool matrix;
  std::int64_t params() const { return rows * cols * count; }
};

struct LayerSpec {
  int index = 0;
  MlpKind mlp = MlpKind::dense;
  AttentionKind attention = AttentionKind::global;
  std::int64_t attention_window_tokens = 0;  // chunk size (chunked) or window (sliding); 0 for global/MLA
  bool rope = true;                          // false: NoPE layer (Llama 4 global layers)
  std::vector<WeightGroup> weights;          // every tensor of this decoder layer
};

struct MlaDims {
  std::int64_t q_lora_rank = 0;  // 0: queries projected directly (no low-rank q)
  std::int64_t kv_lora_rank = 0;
  std::int64_t qk_nope_head_dim = 0;
  std::int64_t qk_rope_head_dim = 0;
  std::int64_t v_head_dim = 0;
};

// The quantisation of the published checkpoint, read from config.json's quantization_config.
struct CheckpointQuant {
  std::string precision;      // a moeplan precision spec, e.g. "fp8-block", "mxfp4:experts", "fp8:experts"; "" = none
  std::string method;         // quant_method as written ("fp8", "mxfp4", "compressed-tensors", ...)
  std::vector<std::string> ignored_modules;  // modules the checkpoint keeps unquantised, as listed
};

struct ModelConfig {
  std::string name;         // built-in name or the config path
  std::string model_type;   // HF model_type (outer one for multimodal wrappers)
  std::string source;       // file it came from
  std::string torch_dtype;  // checkpoint dtype of unquantised tensors (bf16, fp16, fp32)

  std::int64_t hidden = 0;
  std::int64_t num_layers = 0;
  std::int64_t num_heads = 0;       // query heads
  std::int64_t num_kv_heads = 0;    // KV heads (GQA); equals num_heads for MLA
  std::int64_t head_dim = 0;        // per-head dim of q/k/v (MLA: qk_nope + qk_rope for q/k)
  std::int64_t vocab = 0;
  std::int64_t max_context_tokens = 0;  // max_position_embeddings
  bool tie_word_embeddings = false;

  // MoE (zero when the model is dense)
  std::int64_t num_experts = 0;         // routed experts per MoE layer
  std::int64_t experts_per_token = 0;   // top-k
  std::int64_t num_shared_experts = 0;  // shared experts per MoE layer (1 for Llama 4 and DeepSeek-V3)
  std::int64_t moe_intermediate = 0;    // intermediate size of one routed expert
  std::int64_t shared_intermediate = 0; // intermediate size of the shared expert(s), all together
  std::int64_t dense_intermediate = 0;  // intermediate size of dense-MLP layers
  std::string router_scoring;           // "sigmoid-top1-input" (llama4), "softmax-topk" (mixtral, qwen3), "sigmoid-noaux" (deepseek), "softmax-topk-after" (gpt-oss)

  std::optional<MlaDims> mla;
  bool qk_norm = false;                 // per-head q/k RMS norm (Qwen3 with weights; Llama 4 Scout weightless)
  std::int64_t num_mtp_layers = 0;      // DeepSeek-V3 multi-token-prediction modules (not used for serving)

  std::vector<LayerSpec> layers;
  std::vector<WeightGroup> globals;     // embedding, lm_head, final norm
  std::vector<WeightGroup> vision;      // vision encoder + projector (multimodal checkpoints)
  std::vector<WeightGroup> mtp;         // MTP module weights as stored in the checkpoint
  CheckpointQuant checkpoint_quant;

  bool is_moe() const { return num_experts > 0; }
  int count_layers(MlpKind kind) const;
  int count_layers(AttentionKind kind) const;
};

// The families whose config.json we parse.
const std::vector<std::string>& supported_model_types();

// Parse an HF config.json document. `name` labels the result; `origin` names the file in error messages.
ModelConfig parse_hf_config(const nlohmann::json& config, const std::string& name, const std::string& origin);

// The built-in model names (folders of data/models holding a config.json), sorted.
std::vector<std::string> builtin_model_names(const std::filesystem::path& data_dir);

// `name_or_path` is a built-in name or a path to a config.json (or a folder holding one).
// Throws InputError for unknown names (with suggestions), unreadable files or malformed JSON.
ModelConfig load_model(const std::string& name_or_path, const std::filesystem::path& data_dir);

const char* attention_kind_name(AttentionKind k);

}  // namespace moeplan::model
