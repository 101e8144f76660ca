// Reference attention: for each query and head, every key tested against the mask one by one, scores in double,
// a two-pass softmax with the maximum subtracted, then the weighted sum of values. The spec for kernels/cpu.
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernels/attention.hpp"

namespace moeplan::kernels {

void check_attention_params(const AttentionParams& p) {
  if (p.q_tokens < 0 || p.kv_tokens < 0 || p.q_heads <= 0 || p.kv_heads <= 0 || p.head_dim <= 0)
    throw std::invalid_argument("attention: sizes must be non-negative and heads, head_dim positive");
  if (p.q_heads % p.kv_heads != 0) throw std::invalid_argument("attention: q_heads must be a multiple of kv_heads");
  if (p.mask != AttentionMask::causal && p.mask_tokens <= 0)
    throw std::invalid_argument("attention: chunked and sliding-window masks need mask_tokens > 0");
}

namespace {

// The mask, stated key by key (kernels use the equivalent range from visible_keys).
bool key_visible(const AttentionParams& p, std::int64_t q_pos, std::int64_t k_pos) {
  if (k_pos > q_pos) return false;  // causal
  switch (p.mask) {
    case AttentionMask::causal: return true;
    case AttentionMask::chunked: return k_pos / p.mask_tokens == q_pos / p.mask_tokens;
    case AttentionMask::sliding_window: return q_pos - k_pos < p.mask_tokens;
  }
  return false;
}

}  // namespace

void attention_ref(const AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                   const float* v, float* out) {
  check_attention_params(p);
  const std::int64_t D = p.head_dim, group = p.q_heads / p.kv_heads;
  std::vector<double> scores(static_cast<std::size_t>(p.kv_tokens));
  for (std::int64_t t = 0; t < p.q_tokens; ++t) {
    for (std::int64_t h = 0; h < p.q_heads; ++h) {
      const std::int64_t g = h / group;  // the KV head this query head reads
      const float* qv = q + (t * p.q_heads + h) * D;
      float* o = out + (t * p.q_heads + h) * D;
      // 1. scores of the visible keys, and their maximum
      double max_score = -std::numeric_limits<double>::infinity();
      bool any = false;
      for (std::int64_t j = 0; j < p.kv_tokens; ++j) {
        if (!key_visible(p, q_pos[t], p.kv_first_pos + j)) continue;
        const float* kv = k + (j * p.kv_heads + g) * D;
        double dot = 0;
        for (std::int64_t d = 0; d < D; ++d) dot += static_cast<double>(qv[d]) * kv[d];
        scores[static_cast<std::size_t>(j)] = p.scale * dot;
        max_score = std::max(max_score, scores[static_cast<std::size_t>(j)]);
        any = true;
      }
      // 2. softmax weights exp(s - max) and their sum
      double sum = 0;
      for (std::int64_t j = 0; j < p.kv_tokens; ++j) {
        if (!key_visible(p, q_pos[t], p.kv_first_pos + j)) continue;
        scores[static_cast<std::size_t>(j)] = std::exp(scores[static_cast<std::size_t>(j)] - max_score);
        sum += scores[static_cast<std::size_t>(j)];
      }
      // 3. weighted sum of the values (zeros when no key is visible)
      for (std::int64_t d = 0; d < D; ++d) {
        double acc = 0;
        for (std::int64_t j = 0; j < p.kv_tokens; ++j) {
          if (!key_visible(p, q_pos[t], p.kv_first_pos + j)) continue;
          acc += scores[static_cast<std::size_t>(j)] * v[(j * p.kv_heads + g) * D + d];
        }
        o[d] = any ? static_cast<float>(acc / sum) : 0.0f;
      }
    }
  }
}

}  // namespace moeplan::kernels
