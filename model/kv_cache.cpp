#include "model/kv_cache.hpp"

#include <algorithm>

namespace moeplan::model {

const char* kv_mode_name(KvMode m) { return m == KvMode::model_aware ? "model-aware" : "full-length"; }

std::int64_t kv_bytes_per_token_per_layer(const ModelConfig& model, const LayerSpec& layer, KvDtype dtype,
                                          std::int64_t kv_heads_kept) {
  const std::int64_t bytes = kv_dtype_bytes(dtype);
  if (layer.attention == AttentionKind::mla) {
    // One latent vector per token, shared by all heads (not divisible by tensor parallelism).
    return (model.mla->kv_lora_rank + model.mla->qk_rope_head_dim) * bytes;
  }
  return 2 * kv_heads_kept * model.head_dim * bytes;
}

std::int64_t kv_tokens_kept(const LayerSpec& layer, std::int64_t context_tokens, KvMode mode) {
  const bool capped = layer.attention == AttentionKind::chunked || layer.attention == AttentionKind::sliding;
  if (mode == KvMode::full_length || !capped) return context_tokens;
  return std::min(context_tokens, layer.attention_window_tokens);
}

std::int64_t kv_bytes_per_sequence(const ModelConfig& model, std::int64_t context_tokens, KvDtype dtype, KvMode mode,
                                   std::int64_t kv_heads_kept, int first_layer, int last_layer) {
  std::int64_t total = 0;
  for (int i = first_layer; i < last_layer; ++i) {
    const auto& layer = model.layers[static_cast<std::size_t>(i)];
    total += kv_bytes_per_token_per_layer(model, layer, dtype, kv_heads_kept) * kv_tokens_kept(layer, context_tokens, mode);
  }
  return total;
}

std::int64_t kv_bytes_per_token_all_layers(const ModelConfig& model, KvDtype dtype) {
  std::int64_t total = 0;
  for (const auto& layer : model.layers) total += kv_bytes_per_token_per_layer(model, layer, dtype, model.num_kv_heads);
  return total;
}

}  // namespace moeplan::model
