#include "model/summary.hpp"

#include <algorithm>

#include "model/kv_cache.hpp"

namespace moeplan::model {

ModelSummary summarize(const ModelConfig& m) {
  ModelSummary s;
  s.name = m.name;
  s.model_type = m.model_type;
  s.layers = static_cast<int>(m.layers.size());
  s.moe_layers = m.count_layers(MlpKind::moe);
  s.dense_layers = m.count_layers(MlpKind::dense);
  s.global_layers = m.count_layers(AttentionKind::global);
  s.chunked_layers = m.count_layers(AttentionKind::chunked);
  s.sliding_layers = m.count_layers(AttentionKind::sliding);
  s.mla_layers = m.count_layers(AttentionKind::mla);
  s.nope_layers = static_cast<int>(std::count_if(m.layers.begin(), m.layers.end(), [](const LayerSpec& l) { return !l.rope; }));
  for (const auto& l : m.layers) s.attention_window_tokens = std::max(s.attention_window_tokens, l.attention_window_tokens);
  std::string a;
  auto part = [&](int n, const std::string& text) {
    if (n == 0) return;
    if (!a.empty()) a += " + ";
    a += std::to_string(n) + " " + text;
  };
  part(s.global_layers, s.nope_layers == s.global_layers && s.nope_layers > 0 ? "global (NoPE)" : "global");
  part(s.chunked_layers, "chunked(" + std::to_string(s.attention_window_tokens) + ")");
  part(s.sliding_layers, "sliding(" + std::to_string(s.attention_window_tokens) + ")");
  part(s.mla_layers, "MLA");
  s.attention_text = a;
  if (m.is_moe()) {
    s.experts_text = std::to_string(m.num_experts) + " routed, top-" + std::to_string(m.experts_per_token);
    if (m.num_shared_experts > 0) s.experts_text += ", +" + std::to_string(m.num_shared_experts) + " shared";
  } else {
    s.experts_text = "dense";
  }
  s.params = count_params(m);
  s.kv_bytes_per_token_bf16 = kv_bytes_per_token_all_layers(m, KvDtype::bf16);
  s.kv_bytes_8k_bf16 = kv_bytes_per_sequence(m, 8192, KvDtype::bf16);
  s.kv_bytes_128k_bf16 = kv_bytes_per_sequence(m, 131072, KvDtype::bf16);
  s.max_context_tokens = m.max_context_tokens;
  return s;
}

}  // namespace moeplan::model
