// executor/checkpoint: which tensors a checkpoint of a given ModelConfig holds (names, shapes, dtypes exactly as
// Hugging Face transformers 5 saves them, plus Meta's FP8 layout of Llama 4), and the check of an opened
// checkpoint against that list before any weight is used.
//
// Saved names, verified on 2026-11-23 by building tiny models with transformers 5.23.0 (tools/.venv) and reading
// the headers of save_pretrained()'s output; transformers 5 fuses MoE experts in memory but its
// revert_weight_conversion (core_model_loading.py) writes the hub layout back:
//   llama4     model.layers.{i}.feed_forward.experts.gate_up_proj [E, H, 2I] (gate = [..., :I], up = [..., I:]) and
//              experts.down_proj [E, I, H] (no ".weight"), feed_forward.router.weight [E, H],
//              feed_forward.shared_expert.{gate,up,down}_proj.weight, dense layers feed_forward.{gate,up,down}_proj.weight;
//              Llama4ForConditionalGeneration saves the same under language_model.model.* / language_model.lm_head.*
//              beside vision_model.* and multi_modal_projector.*.
//   qwen3_moe  model.layers.{i}.mlp.gate.weight [E, H], mlp.experts.{e}.{gate,up,down}_proj.weight (per expert,
//              [I, H] / [H, I]), self_attn.{q,k}_norm.weight [head_dim]; dense layers mlp.{gate,up,down}_proj.weight.
//   mixtral    model.layers.{i}.block_sparse_moe.gate.weight [E, H],
//              block_sparse_moe.experts.{e}.w1 (gate) / w3 (up) [I, H], w2 (down) [H, I] (".weight" suffix).
// Meta's FP8 Maverick (meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8, compressed-tensors, strategy "channel"
// for weights, dynamic per-token activations: vllm-project/vllm issue #16474 prints its quantization args):
// routed experts are unfused, language_model.model.layers.{i}.feed_forward.experts.{e}.{gate,up,down}_proj.weight
// F8_E4M3 [out, in] with .weight_scale (names: vllm-project/tpu-inference tpu_inference/models/jax/llama4.py
// EXPERT_MAPPINGS_UNFUSED and its test "...experts.0.gate_proj.weight_scale"); everything else stays BF16.
// The scale's shape [out, 1] and dtype (the weight's original dtype, BF16, unless a scale_dtype was forced) are
// those compressed-tensors' _initialize_scale_zero_point gives a CHANNEL-strategy Linear
// (src/compressed_tensors/quantization/lifecycle/initialize.py); the check also accepts an F32 or [out] scale,
// since we could not read the FP8 repository's own index here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "executor/safetensors.hpp"
#include "model/config.hpp"

namespace moeplan::executor {

// What a tensor is, so the forward pass can look it up by (layer, role[, expert]) instead of by name.
enum class TensorRole {
  embed,            // [V, H]
  final_norm,       // [H]
  lm_head,          // [V, H] (absent when tied to embed)
  input_norm,       // [H]
  post_attn_norm,   // [H]
  q_proj,           // [heads * head_dim, H]
  k_proj,           // [kv_heads * head_dim, H]
  v_proj,           // [kv_heads * head_dim, H]
  o_proj,           // [H, heads * head_dim]
  q_bias, k_bias, v_bias, o_bias,  // Qwen3 with attention_bias only
  q_norm, k_norm,   // [head_dim] (Qwen3)
  router,           // [E, H]
  experts_gate_up,  // Llama 4 fused: [E, H, 2I], input-major; gate = first I columns
  experts_down,     // Llama 4 fused: [E, I, H], input-major
  expert_gate,      // one expert: [I, H]
  expert_up,        // one expert: [I, H]
  expert_down,      // one expert: [H, I]
  expert_gate_scale, expert_up_scale, expert_down_scale,  // FP8 per-output-channel scales: [out, 1]
  shared_gate, shared_up, shared_down,                    // Llama 4 shared expert: [I, H], [I, H], [H, I]
  dense_gate, dense_up, dense_down,                       // dense MLP: [Id, H], [Id, H], [H, Id]
};
const char* tensor_role_name(TensorRole r);

// How the routed experts are stored. fused: Llama 4's HF layout (3-D gate_up_proj/down_proj); per_expert: one
// [out, in] tensor per expert and projection (Qwen3 and Mixtral always; Llama 4 only in Meta's FP8 layout).
enum class ExpertStorage { fused, per_expert };

struct LayoutOptions {
  // Llama 4 only: prefix language_model. (Llama4ForConditionalGeneration, both Meta checkpoints) instead of the
  // Llama4ForCausalLM names.
  bool multimodal_prefix = false;
  // Llama 4 only: Meta's FP8 layout (experts per_expert in F8_E4M3 with weight_scale). Qwen3/Mixtral: refused.
  bool fp8_experts = false;
};

struct ExpectedTensor {
  std::string name;
  Dtype dtype = Dtype::bf16;        // as written by the random writer; the check accepts any float dtype for a
                                    // float tensor (BF16/F16/F32), and exactly F8_E4M3 for FP8 weights
  std::vector<std::int64_t> shape;
  TensorRole role = TensorRole::embed;
  int layer = -1;                   // -1 for embed, final_norm, lm_head
  int expert = -1;                  // per-expert tensors only
  std::int64_t fan_in = 1;          // input features of the product this weight takes part in (random init scale)
};

struct CheckpointLayout {
  std::string model_type;           // "llama4", "qwen3_moe", "mixtral"
  LayoutOptions options;
  ExpertStorage experts = ExpertStorage::per_expert;
  std::vector<std::string> ignored_prefixes;  // tensors under these are not used (vision tower) and not checked
  std::vector<ExpectedTensor> tensors;        // in model order: embed, layers 0.., final norm, lm_head

  // nullptr when the layout has no such tensor (e.g. lm_head when tied, router on a dense layer).
  const ExpectedTensor* find(int layer, TensorRole role, int expert = -1) const;
  std::int64_t elements() const;    // sum over tensors (FP8 scales included)
};

// The model types with a layout: llama4 (llama4_text), qwen3_moe, mixtral.
const std::vector<std::string>& layout_model_types();

// The expected tensors of a checkpoint for `config`. Float tensors take config.torch_dtype (bf16 unless the config
// says float16/float32). Throws InputError for other model types or options that do not apply.
CheckpointLayout checkpoint_layout(const model::ModelConfig& config, const LayoutOptions& options = {});

// The options an existing checkpoint was written with: the language_model. prefix when its embedding has it, and
// the FP8 per-expert layout when its first MoE layer stores experts.0.gate_proj.weight instead of gate_up_proj.
LayoutOptions detect_layout_options(const Checkpoint& checkpoint, const model::ModelConfig& config);

// Unexpected tensors (in the checkpoint, not in the layout, not under an ignored prefix) are an error by default:
// they almost always mean the config does not belong to the checkpoint. allow_unexpected turns them into
// warnings in the report.
struct CheckOptions {
  bool allow_unexpected = false;
};

struct CheckReport {
  CheckpointLayout layout;
  std::int64_t ignored_tensors = 0;   // under ignored_prefixes (vision tower)
  std::vector<std::string> warnings;  // one line each
};

// Check every expected tensor is present with its shape and an acceptable dtype, and (see CheckOptions) that no
// other tensor is. Throws one InputError line naming the first problem's tensor and file, with how many more
// problems there are.
CheckReport check_checkpoint(const Checkpoint& checkpoint, const model::ModelConfig& config,
                             const LayoutOptions& options, const CheckOptions& check = {});
// The same with detect_layout_options().
CheckReport check_checkpoint(const Checkpoint& checkpoint, const model::ModelConfig& config, const CheckOptions& check = {});

}  // namespace moeplan::executor
