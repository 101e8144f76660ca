// model/summary: the headline facts of a model for listings (layers by kind, parameters, KV bytes).
#pragma once
#include <cstdint>
#include <string>

#include "model/config.hpp"
#include "model/params.hpp"

namespace moeplan::model {

struct ModelSummary {
  std::string name, model_type;
  int layers = 0, moe_layers = 0, dense_layers = 0;
  int global_layers = 0, chunked_layers = 0, sliding_layers = 0, mla_layers = 0, nope_layers = 0;
  std::int64_t attention_window_tokens = 0;       // chunk or window size of the capped layers (0 if none)
  std::string attention_text;                     // "12 global (NoPE) + 36 chunked(8192)"
  std::string experts_text;                       // "128 routed, top-1, +1 shared" or "dense"
  ParamCounts params;
  std::int64_t kv_bytes_per_token_bf16 = 0;       // every layer keeping the token, BF16
  std::int64_t kv_bytes_8k_bf16 = 0;              // one sequence of 8,192 tokens, BF16, model-aware
  std::int64_t kv_bytes_128k_bf16 = 0;            // one sequence of 131,072 tokens, BF16, model-aware
  std::int64_t max_context_tokens = 0;
};

ModelSummary summarize(const ModelConfig& model);

}  // namespace moeplan::model
