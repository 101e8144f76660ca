// model/shape_override: shrink a real HF config (fewer layers and experts, narrower dimensions) while keeping its
// structure, for executor runs that must fit a laptop or time one full-width slice of a big model. The override
// edits the config.json document (the right keys per family, inside text_config for Llama 4) and the result is
// parsed by parse_hf_config like any other config, so nothing downstream knows it was shrunk.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace moeplan::model {

// Each set field replaces the config's value; unset fields keep it. All must be positive.
struct ShapeOverrides {
  std::optional<std::int64_t> layers;              // num_hidden_layers (per-layer lists are cut to match)
  std::optional<std::int64_t> experts;             // routed experts per MoE layer
  std::optional<std::int64_t> experts_per_token;   // top-k
  std::optional<std::int64_t> hidden;              // hidden_size
  std::optional<std::int64_t> intermediate;        // both expert and dense intermediate sizes (unless set below)
  std::optional<std::int64_t> moe_intermediate;    // routed (and Llama 4 shared) expert intermediate size
  std::optional<std::int64_t> dense_intermediate;  // dense-MLP intermediate size (Llama 4 intermediate_size_mlp)
  std::optional<std::int64_t> heads;               // query heads
  std::optional<std::int64_t> kv_heads;            // key/value heads
  std::optional<std::int64_t> head_dim;
  std::optional<std::int64_t> vocab;
  bool empty() const;
};

// "layers=4,experts=8,hidden=512" -> ShapeOverrides. Keys are the field names above. Throws InputError naming the
// bad entry (unknown key with suggestions, repeated key, value not a positive integer).
ShapeOverrides parse_shape_overrides(std::string_view spec);
std::string shape_override_keys();  // "layers, experts, ..." for help texts

// Apply `overrides` to a config.json document of a llama4, qwen3_moe or mixtral model (`origin` names it in
// errors). Per-layer lists follow the new layer count: Llama 4 no_rope_layers / layer_types are cut,
// moe_layers and Qwen3 mlp_only_layers keep the indices below it, Qwen3 max_window_layers is clamped; with a
// smaller vocab, pad/bos/eos token ids past it are dropped (set to null).
// Throws InputError for impossible overrides: zero or negative values, heads not a multiple of kv_heads, experts
// fewer than experts_per_token, hidden not divisible by heads when head_dim is implicit, a dense size for a
// model without dense layers, more layers than a per-layer list has, or fewer layers than it takes to keep every
// kind of layer the original has (MoE and dense MLP, each attention kind, RoPE and NoPE) — the message gives the
// smallest layer count that keeps them.
nlohmann::json apply_shape_overrides(nlohmann::json config, const ShapeOverrides& overrides, const std::string& origin);

}  // namespace moeplan::model
