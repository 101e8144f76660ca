// model/kv_cache: bytes of KV cache a sequence needs, layer by layer, from the attention kind of each layer.
//   global  : every token of context            K and V: 2 * kv_heads * head_dim * bytes per token
//   chunked : at most one chunk (Llama 4: 8192)  same per-token size, capped at the chunk
//   sliding : at most the window (gpt-oss: 128)  same per-token size, capped at the window
//   mla     : the compressed latent only          (kv_lora_rank + qk_rope_head_dim) * bytes per token, K and V shared
// Derivation and sources: docs/memory.md.
#pragma once
#include <cstdint>

#include "model/config.hpp"
#include "model/precision.hpp"

namespace moeplan::model {

enum class KvMode {
  model_aware,  // chunked/sliding layers keep only their chunk/window (vLLM hybrid KV manager, SGLang SWA)
  full_length,  // every layer keeps the whole context (runtimes without chunk/window-aware caches)
};
const char* kv_mode_name(KvMode m);

// KV bytes one token adds to one layer, for `kv_heads_kept` KV heads (all heads: model.num_kv_heads).
std::int64_t kv_bytes_per_token_per_layer(const ModelConfig& model, const LayerSpec& layer, KvDtype dtype,
                                          std::int64_t kv_heads_kept);

// Tokens of a `context_tokens`-long sequence a layer keeps in its cache.
std::int64_t kv_tokens_kept(const LayerSpec& layer, std::int64_t context_tokens, KvMode mode);

// KV bytes of one sequence of `context_tokens` tokens over layers [first_layer, last_layer).
std::int64_t kv_bytes_per_sequence(const ModelConfig& model, std::int64_t context_tokens, KvDtype dtype, KvMode mode,
                                   std::int64_t kv_heads_kept, int first_layer, int last_layer);
inline std::int64_t kv_bytes_per_sequence(const ModelConfig& model, std::int64_t context_tokens, KvDtype dtype,
                                          KvMode mode = KvMode::model_aware) {
  return kv_bytes_per_sequence(model, context_tokens, dtype, mode, model.num_kv_heads, 0,
                               static_cast<int>(model.layers.size()));
}

// Bytes per token when every layer keeps the token (the "KV bytes per token" calculators quote).
std::int64_t kv_bytes_per_token_all_layers(const ModelConfig& model, KvDtype dtype);

}  // namespace moeplan::model
