// kernels/gpu_layout: the host/device arithmetic of the CUDA kernels, in one place so that the CPU tests check the
// very functions the kernels call: paged KV cache addressing, the decode split over the context, the grouped GEMM's
// tile -> expert map, FP8 scale layouts, the token permutation's chunking, and the online-softmax merge. Plain
// C++17 with no CUDA include; MOEPLAN_HOST_DEVICE makes each function __host__ __device__ under nvcc.
#pragma once
#include <math.h>

#include <cstdint>

#include "kernels/attention.hpp"

#if defined(__CUDACC__)
#define MOEPLAN_HOST_DEVICE __host__ __device__ inline
#else
#define MOEPLAN_HOST_DEVICE inline
#endif

namespace moeplan::kernels::gpu {

MOEPLAN_HOST_DEVICE std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
MOEPLAN_HOST_DEVICE std::int64_t min_i64(std::int64_t a, std::int64_t b) { return a < b ? a : b; }
MOEPLAN_HOST_DEVICE std::int64_t max_i64(std::int64_t a, std::int64_t b) { return a > b ? a : b; }

// ---- Attention masks: the cache rows [first, last) a query at absolute position q_pos sees, as visible_keys
// (kernels/attention.hpp) gives them, in a form device code can call.
struct KeyRows {
  std::int64_t first = 0, last = 0;
};
MOEPLAN_HOST_DEVICE KeyRows visible_key_rows(AttentionMask mask, std::int64_t mask_tokens, std::int64_t kv_first_pos,
                                             std::int64_t kv_tokens, std::int64_t q_pos) {
  std::int64_t lo = 0;  // lowest visible absolute position
  if (mask == AttentionMask::chunked) lo = (q_pos / mask_tokens) * mask_tokens;
  if (mask == AttentionMask::sliding_window) lo = q_pos - mask_tokens + 1;
  return {max_i64(lo - kv_first_pos, 0), min_i64(q_pos - kv_first_pos + 1, kv_tokens)};
}

// ---- Paged KV cache (vLLM's PagedAttention layout, one pool per layer for K and one for V).
// k_pages, v_pages: [pages, page_tokens, kv_heads, head_dim] fp32 or BF16. A sequence's token at absolute position p
// lives in page page_table[seq * max_pages_per_seq + p / page_tokens], slot p % page_tokens. Entries for pages the
// sequence never reads (before the current chunk of a chunked layer, or past its length) may be -1.
struct PagedKvLayout {
  std::int64_t page_tokens = 0;        // tokens per page
  std::int64_t kv_heads = 0;           // Hkv
  std::int64_t head_dim = 0;           // D
  std::int64_t max_pages_per_seq = 0;  // columns of the page table
};

// Elements of one page (one of K or V).
MOEPLAN_HOST_DEVICE std::int64_t paged_kv_page_elems(const PagedKvLayout& l) {
  return l.page_tokens * l.kv_heads * l.head_dim;
}
// Element offset of the head vector (position pos, KV head g) of sequence seq; -1 when its page is unmapped.
MOEPLAN_HOST_DEVICE std::int64_t paged_kv_offset(const PagedKvLayout& l, const std::int32_t* page_table,
                                                 std::int64_t seq, std::int64_t pos, std::int64_t g) {
  const std::int32_t page = page_table[seq * l.max_pages_per_seq + pos / l.page_tokens];
  if (page < 0) return -1;
  const std::int64_t slot = pos % l.page_tokens;
  return static_cast<std::int64_t>(page) * paged_kv_page_elems(l) + (slot * l.kv_heads + g) * l.head_dim;
}

// ---- Decode attention: each (sequence, KV head) is split over its visible keys into `splits` slices of
// `keys_per_split` keys (flash-decoding); the slices' partial softmax states are merged by a second kernel.
struct DecodeSplit {
  std::int64_t splits = 1;          // slices per (sequence, KV head)
  std::int64_t keys_per_split = 0;  // keys per slice (the last may hold fewer); a multiple of kDecodeKeyStep
};
constexpr std::int64_t kDecodeKeyStep = 64;       // slices are whole multiples of this many keys
constexpr std::int64_t kDecodeMinKeysPerSplit = 256;  // below this a slice's fixed cost dominates its reads
constexpr std::int64_t kDecodeMaxSplits = 64;

// Enough slices that seqs * kv_heads * splits blocks fill every SM twice (two resident blocks hide the tail), but
// none shorter than kDecodeMinKeysPerSplit keys. max_visible_keys: the most keys any query of the batch sees.
inline DecodeSplit decode_split_plan(std::int64_t max_visible_keys, std::int64_t seqs, std::int64_t kv_heads,
                                     std::int64_t sm_count) {
  const std::int64_t keys = max_i64(max_visible_keys, 1);
  const std::int64_t blocks = max_i64(seqs * kv_heads, 1);
  const std::int64_t wanted = ceil_div(2 * max_i64(sm_count, 1), blocks);
  const std::int64_t by_length = max_i64(keys / kDecodeMinKeysPerSplit, 1);
  const std::int64_t splits = max_i64(min_i64(min_i64(wanted, by_length), kDecodeMaxSplits), 1);
  const std::int64_t per_split = ceil_div(ceil_div(keys, splits), kDecodeKeyStep) * kDecodeKeyStep;
  return {ceil_div(keys, per_split), per_split};
}

// Workspace of the split decode: per (sequence, query head, split) a partial output [D] and its (max, sum) pair,
// fp32. Bytes = seqs * q_heads * splits * (head_dim + 2) * 4.
inline std::int64_t decode_workspace_bytes(std::int64_t seqs, std::int64_t q_heads, std::int64_t head_dim,
                                           const DecodeSplit& split) {
  return seqs * q_heads * split.splits * (head_dim + 2) * static_cast<std::int64_t>(sizeof(float));
}

// ---- Online softmax (flash attention): a slice of keys is summarised by its largest score m, the sum
// l = sum exp(s_j - m) and the unnormalised output o = sum exp(s_j - m) v_j. Two summaries merge exactly:
// m = max(m_a, m_b); l = l_a e^(m_a - m) + l_b e^(m_b - m); o likewise. An empty slice has m = -inf, l = 0.
struct SoftmaxState {
  float max;
  float sum;
};
// The factors that rescale a's and b's (l, o) into the merged state; returns the merged max.
MOEPLAN_HOST_DEVICE float softmax_merge_factors(float max_a, float max_b, float* factor_a, float* factor_b) {
  const float m = max_a > max_b ? max_a : max_b;
  if (!(m > -3.0e38f)) {  // both empty (max -inf)
    *factor_a = 0.f;
    *factor_b = 0.f;
    return m;
  }
  *factor_a = expf(max_a - m);
  *factor_b = expf(max_b - m);
  return m;
}

// ---- Grouped expert GEMM: rows sorted by expert (expert_offsets[E + 1]); the grid's M dimension enumerates
// every expert's row tiles of BLOCK_M rows in expert order. An expert with c rows has ceil(c / BLOCK_M) tiles, so
// the total is at most ceil(R / BLOCK_M) + min(E, R) (each non-empty expert adds at most one partial tile); the
// grid is launched with that bound (no host copy of the offsets) and blocks past the last tile exit.
inline std::int64_t grouped_gemm_max_m_tiles(std::int64_t rows, std::int64_t experts, std::int64_t block_m) {
  return ceil_div(rows, block_m) + min_i64(experts, rows);
}

struct ExpertTile {
  std::int64_t expert = -1;  // -1: past the last tile
  std::int64_t row_begin = 0, row_end = 0;  // rows [row_begin, row_end) of x_sorted, at most BLOCK_M of them
};
// The expert and rows of M tile `tile`. expert_offsets: [experts + 1], non-decreasing from 0.
MOEPLAN_HOST_DEVICE ExpertTile expert_tile_lookup(const std::int64_t* expert_offsets, std::int64_t experts,
                                                  std::int64_t tile, std::int64_t block_m) {
  std::int64_t tiles_before = 0;
  for (std::int64_t e = 0; e < experts; ++e) {
    const std::int64_t rows = expert_offsets[e + 1] - expert_offsets[e];
    const std::int64_t tiles = ceil_div(rows, block_m);
    if (tile < tiles_before + tiles) {
      const std::int64_t begin = expert_offsets[e] + (tile - tiles_before) * block_m;
      return {e, begin, min_i64(begin + block_m, expert_offsets[e + 1])};
    }
    tiles_before += tiles;
  }
  return {};
}

// ---- FP8 weight scales. dequant(W_e)[n, k] = float(q[e, n, k]) * scale, where the scale is
//   per_channel    w_scale[e * N + n]                                   (FBGEMM / Llama 4 FP8 checkpoints)
//   block_128      w_scale[(e * ceil(N/128) + n/128) * ceil(K/128) + k/128]  (DeepSeek-V3 weight_scale_inv)
enum class Fp8ScaleLayout { per_channel, block_128 };
constexpr std::int64_t kFp8ScaleBlock = 128;

MOEPLAN_HOST_DEVICE std::int64_t fp8_weight_scale_count(Fp8ScaleLayout layout, std::int64_t experts, std::int64_t n,
                                                        std::int64_t k) {
  if (layout == Fp8ScaleLayout::per_channel) return experts * n;
  return experts * ceil_div(n, kFp8ScaleBlock) * ceil_div(k, kFp8ScaleBlock);
}
MOEPLAN_HOST_DEVICE std::int64_t fp8_weight_scale_index(Fp8ScaleLayout layout, std::int64_t n_total,
                                                        std::int64_t k_total, std::int64_t e, std::int64_t n,
                                                        std::int64_t k) {
  if (layout == Fp8ScaleLayout::per_channel) return e * n_total + n;
  return (e * ceil_div(n_total, kFp8ScaleBlock) + n / kFp8ScaleBlock) * ceil_div(k_total, kFp8ScaleBlock) +
         k / kFp8ScaleBlock;
}
// Largest finite OCP e4m3fn value: per-token activation scales map each row's max |x| onto it.
constexpr float kFp8E4m3Max = 448.0f;

// ---- Token permutation: the (token, slot) pairs are cut into chunks of kPermuteChunk pairs; each chunk counts
// its pairs per expert (histogram), an exclusive scan over (expert, chunk) gives every chunk's first row within
// each expert, and each chunk writes its rows in pair order. The result equals a stable sort by expert
// (build_expert_dispatch in kernels/router.hpp) without atomics deciding the order.
constexpr std::int64_t kPermuteChunk = 256;
MOEPLAN_HOST_DEVICE std::int64_t permute_chunks(std::int64_t pairs) { return ceil_div(pairs, kPermuteChunk); }
// Workspace: counts, then bases, each [chunks, experts] int32.
inline std::int64_t permute_workspace_bytes(std::int64_t pairs, std::int64_t experts) {
  return 2 * permute_chunks(pairs) * experts * static_cast<std::int64_t>(sizeof(std::int32_t));
}

}  // namespace moeplan::kernels::gpu
