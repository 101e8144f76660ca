// kernels/attention: softmax attention of one sequence against its KV cache, with grouped-query heads and the
// three masks the supported models use (causal; Llama 4 chunked; sliding window). attention_ref
// (kernels/ref/attention.cpp) is the spec; attention (kernels/cpu/attention.cpp) is the fast version.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/cpu_features.hpp"

namespace moeplan::kernels {

// Which keys a query at absolute position p sees (key positions kp; every mask is causal):
//   causal          kp <= p
//   chunked         kp <= p and floor(kp / C) == floor(p / C), chunks aligned to position 0 (Llama 4, C = 8192):
//                   the keys from C * floor(p / C) to p
//   sliding_window  kp <= p and p - kp < W: the W most recent keys, the query's own included
enum class AttentionMask { causal, chunked, sliding_window };

struct AttentionParams {
  std::int64_t q_tokens = 0;      // Tq
  std::int64_t kv_tokens = 0;     // Tk: rows in the K and V caches
  std::int64_t q_heads = 0;       // Hq, a multiple of kv_heads (GQA: query head h reads KV head h / (Hq / Hkv))
  std::int64_t kv_heads = 0;      // Hkv
  std::int64_t head_dim = 0;      // D, the same for q, k and v
  float scale = 1.0f;             // multiplies q·k before the softmax (usually head_dim^-0.5)
  AttentionMask mask = AttentionMask::causal;
  std::int64_t mask_tokens = 0;   // chunk size C or window W (tokens); ignored for causal
  std::int64_t kv_first_pos = 0;  // absolute position of cache row 0 (0 when the cache holds the whole sequence)
};

// The cache rows [first, last) a query at absolute position q_pos sees; first >= last when it sees none.
struct KeyRange {
  std::int64_t first = 0, last = 0;
};
inline KeyRange visible_keys(const AttentionParams& p, std::int64_t q_pos) {
  std::int64_t lo = 0;  // lowest visible absolute position
  if (p.mask == AttentionMask::chunked) lo = (q_pos / p.mask_tokens) * p.mask_tokens;
  if (p.mask == AttentionMask::sliding_window) lo = q_pos - p.mask_tokens + 1;
  const std::int64_t first = std::max<std::int64_t>(lo - p.kv_first_pos, 0);
  const std::int64_t last = std::min<std::int64_t>(q_pos - p.kv_first_pos + 1, p.kv_tokens);
  return {first, last};
}

// out[t, h, :] = sum_j softmax_j(scale * q[t, h, :] · k[j, g, :]) * v[j, g, :]  over the keys j the mask lets
// query t see (g = h / (Hq / Hkv)). Softmax in fp32 (reference: double) with the maximum subtracted. A query that
// sees no key gets zeros.
//   q: [Tq, Hq, D]; q_pos: [Tq] absolute positions (non-negative); k, v: [Tk, Hkv, D]; out: [Tq, Hq, D]
// Throws std::invalid_argument on inconsistent sizes (Hq not a multiple of Hkv, a non-positive chunk or window).
void attention_ref(const AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                   const float* v, float* out);

// Fast version: online softmax over key blocks, all heads of a query token together (each cache row is read once,
// in order), threads over query tokens and, when there are fewer tokens than threads (decode), over slices of the
// key range whose partial results are merged (split-K / flash-decoding).
void attention(const CpuContext& ctx, const AttentionParams& p, const float* q, const std::int64_t* q_pos,
               const float* k, const float* v, float* out);

// Checks the sizes and mask of p (both versions call it).
void check_attention_params(const AttentionParams& p);

}  // namespace moeplan::kernels
