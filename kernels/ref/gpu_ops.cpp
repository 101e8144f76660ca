// References of the CUDA executor's ops (kernels/gpu_ops.hpp): plain loops in the order the kernels split the work,
// reusing the existing references (attention_ref, silu_mul_fused_ref) where the math is the same.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/activation.hpp"
#include "kernels/gpu_ops.hpp"
#include "kernels/weights.hpp"

namespace moeplan::kernels {

namespace {
// x_sorted[r, :] = x[row_token[r], :] * (row_scale ? row_scale[r] : 1): the one gather loop, for int32 (the
// permute's row order) and int64 (the backend interface's) token indices.
template <class Index>
void gather_rows(const float* x, std::int64_t hidden, const Index* row_token, const float* row_scale,
                 std::int64_t rows, float* x_sorted) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float s = row_scale ? row_scale[r] : 1.0f;
    const std::int64_t t = row_token[r];
    for (std::int64_t c = 0; c < hidden; ++c) x_sorted[r * hidden + c] = x[t * hidden + c] * s;
  }
}
}  // namespace

void moe_permute_ref(const std::int32_t* ids, const float* weights, std::int64_t pairs, std::int64_t k,
                     std::int64_t experts, void* workspace, std::int64_t* expert_offsets, std::int32_t* row_token,
                     float* row_weight, std::int32_t* pair_row) {
  const std::int64_t chunks = gpu::permute_chunks(pairs);
  auto* counts = static_cast<std::int32_t*>(workspace);  // [chunks, experts]
  std::int32_t* bases = counts + chunks * experts;        // [chunks, experts]
  // 1. histogram: pairs per (chunk, expert)
  for (std::int64_t i = 0; i < chunks * experts; ++i) counts[i] = 0;
  for (std::int64_t i = 0; i < pairs; ++i) {
    if (ids[i] < 0 || ids[i] >= experts)
      throw std::invalid_argument("moe_permute: expert id " + std::to_string(ids[i]) + " outside [0, " +
                                  std::to_string(experts) + ")");
    ++counts[(i / gpu::kPermuteChunk) * experts + ids[i]];
  }
  // 2. offsets: exclusive scan over (expert, chunk), expert-major, so each expert's rows are contiguous and each
  //    chunk's rows of that expert follow the earlier chunks'
  std::int64_t row = 0;
  for (std::int64_t e = 0; e < experts; ++e) {
    expert_offsets[e] = row;
    for (std::int64_t c = 0; c < chunks; ++c) {
      bases[c * experts + e] = static_cast<std::int32_t>(row);
      row += counts[c * experts + e];
    }
  }
  expert_offsets[experts] = row;
  // 3. scatter: each pair to the next free row of its (chunk, expert), in pair order
  for (std::int64_t i = 0; i < pairs; ++i) {
    const std::int32_t dest = bases[(i / gpu::kPermuteChunk) * experts + ids[i]]++;
    row_token[dest] = static_cast<std::int32_t>(i / k);
    row_weight[dest] = weights ? weights[i] : 1.0f;
    pair_row[i] = dest;
  }
}

void moe_gather_ref(const float* x, std::int64_t hidden, const std::int32_t* row_token, const float* row_scale,
                    std::int64_t rows, float* x_sorted) {
  gather_rows(x, hidden, row_token, row_scale, rows, x_sorted);
}

void moe_combine_ref(const float* y_sorted, std::int64_t hidden, const std::int32_t* pair_row,
                     const float* pair_weight, std::int64_t tokens, std::int64_t k, float* y) {
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t c = 0; c < hidden; ++c) {
      // the token's k expert outputs, slot by slot, added to what y holds (the residual or the shared expert)
      float sum = y[t * hidden + c];
      for (std::int64_t s = 0; s < k; ++s) {
        const std::int32_t row = pair_row[t * k + s];
        if (row < 0) continue;  // a dropped pair
        sum += y_sorted[row * hidden + c] * (pair_weight ? pair_weight[t * k + s] : 1.0f);
      }
      y[t * hidden + c] = sum;
    }
}

void convert_bf16_ref(const float* x, std::int64_t n, std::uint16_t* out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(x[i]);
}

void quantize_fp8_per_token_ref(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* q,
                                float* scale) {
  for (std::int64_t r = 0; r < rows; ++r) {
    // 1. the row's largest magnitude maps onto e4m3's largest finite value
    float amax = 0.f;
    for (std::int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(x[r * cols + c]));
    const float s = amax > 0.f ? amax / gpu::kFp8E4m3Max : 1.0f;
    scale[r] = s;
    // 2. each element divided by the scale, rounded to the nearest e4m3 code
    for (std::int64_t c = 0; c < cols; ++c) q[r * cols + c] = float_to_fp8_e4m3(x[r * cols + c] / s);
  }
}

namespace {

void check_grouped_shape(const GroupedGemmShape& s, const std::int64_t* expert_offsets) {
  if (s.rows < 0 || s.experts < 1 || s.n < 1 || s.k < 1)
    throw std::invalid_argument("grouped_gemm: rows, experts, n and k must be positive");
  if (s.fuse_swiglu && s.n % 2 != 0) throw std::invalid_argument("grouped_gemm: fused SwiGLU needs an even n");
  if (expert_offsets && (expert_offsets[0] != 0 || expert_offsets[s.experts] != s.rows))
    throw std::invalid_argument("grouped_gemm: expert_offsets must run from 0 to rows");
}

// The loop both references share: acc[r, n] = dot(e, r, n) for every row r of every expert e, then y from acc
// (through SwiGLU when fused: silu_mul_fused_ref's layout, gate columns first).
template <class Dot>
void grouped_gemm_loops(const std::int64_t* expert_offsets, const GroupedGemmShape& s, const Dot& dot, float* y) {
  check_grouped_shape(s, expert_offsets);
  std::vector<float> acc(static_cast<std::size_t>(s.rows * s.n));
  for (std::int64_t e = 0; e < s.experts; ++e)
    for (std::int64_t r = expert_offsets[e]; r < expert_offsets[e + 1]; ++r)
      for (std::int64_t n = 0; n < s.n; ++n) acc[static_cast<std::size_t>(r * s.n + n)] = dot(e, r, n);
  if (s.fuse_swiglu) {
    silu_mul_fused_ref(acc.data(), s.rows, s.n / 2, y);
    return;
  }
  for (std::size_t i = 0; i < acc.size(); ++i) y[i] = acc[i];
}

}  // namespace

void grouped_gemm_bf16_ref(const std::uint16_t* x_sorted, const std::uint16_t* w, const std::int64_t* expert_offsets,
                           const GroupedGemmShape& s, float* y) {
  // one output: the dot product of row r with expert e's weight row n, in double
  const auto dot = [&](std::int64_t e, std::int64_t r, std::int64_t n) {
    const std::uint16_t* w_row = w + (e * s.n + n) * s.k;
    double sum = 0;
    for (std::int64_t c = 0; c < s.k; ++c)
      sum += static_cast<double>(bf16_to_float(x_sorted[r * s.k + c])) * bf16_to_float(w_row[c]);
    return static_cast<float>(sum);
  };
  grouped_gemm_loops(expert_offsets, s, dot, y);
}

void grouped_gemm_fp8_ref(const std::uint8_t* x_q, const float* x_scale, const std::uint8_t* w_q,
                          const float* w_scale, gpu::Fp8ScaleLayout layout, const std::int64_t* expert_offsets,
                          const GroupedGemmShape& s, float* y) {
  // one output: both operands dequantised element by element (exact in double), summed, times the token's scale
  const auto dot = [&](std::int64_t e, std::int64_t r, std::int64_t n) {
    const std::uint8_t* w_row = w_q + (e * s.n + n) * s.k;
    double sum = 0;
    for (std::int64_t c = 0; c < s.k; ++c) {
      const double ws = w_scale[gpu::fp8_weight_scale_index(layout, s.n, s.k, e, n, c)];
      sum += static_cast<double>(fp8_e4m3_to_float(x_q[r * s.k + c])) * fp8_e4m3_to_float(w_row[c]) * ws;
    }
    return static_cast<float>(sum * x_scale[r]);
  };
  grouped_gemm_loops(expert_offsets, s, dot, y);
}

void check_decode_params(const DecodeAttentionParams& p, const gpu::PagedKvLayout& l) {
  if (p.seqs < 0 || p.q_heads < 1 || p.kv_heads < 1 || p.q_heads % p.kv_heads != 0)
    throw std::invalid_argument("paged_attention_decode: q_heads must be a positive multiple of kv_heads");
  if (p.q_heads / p.kv_heads > kDecodeMaxGroup)
    throw std::invalid_argument("paged_attention_decode: at most " + std::to_string(kDecodeMaxGroup) +
                                " query heads per KV head");
  if (p.head_dim != 32 && p.head_dim != 64 && p.head_dim != 128 && p.head_dim != 256)
    throw std::invalid_argument("paged_attention_decode: head_dim must be 32, 64, 128 or 256");
  if (p.mask != AttentionMask::causal && p.mask != AttentionMask::chunked)
    throw std::invalid_argument("paged_attention_decode: the mask must be causal or chunked");
  if (p.mask == AttentionMask::chunked && p.chunk_tokens < 1)
    throw std::invalid_argument("paged_attention_decode: chunked attention needs chunk_tokens >= 1");
  if (l.page_tokens < 1 || l.kv_heads != p.kv_heads || l.head_dim != p.head_dim || l.max_pages_per_seq < 1)
    throw std::invalid_argument("paged_attention_decode: the page layout does not match the heads");
}

namespace {

// A page value as fp32 (BF16 widened exactly), and an fp32 value as a page holds it (BF16: round to nearest even).
float kv_value(const float* pages, std::int64_t i) { return pages[i]; }
float kv_value(const std::uint16_t* pages, std::int64_t i) { return bf16_to_float(pages[i]); }
void kv_store(float x, float* page_value) { *page_value = x; }
void kv_store(float x, std::uint16_t* page_value) { *page_value = float_to_bf16(x); }

template <class KV>
void paged_attention_decode_loops(const DecodeAttentionParams& p, const gpu::PagedKvLayout& layout, const float* q,
                                  const std::int32_t* seq_lens, const std::int32_t* page_table, const KV* k_pages,
                                  const KV* v_pages, float* out) {
  const std::int64_t D = p.head_dim, row = p.kv_heads * D;
  for (std::int64_t s = 0; s < p.seqs; ++s) {
    // 1. the query's position and the first key its mask lets it see
    const std::int64_t q_pos = seq_lens[s] - 1;
    if (q_pos < 0 || q_pos >= layout.max_pages_per_seq * layout.page_tokens)
      throw std::invalid_argument("paged_attention_decode: seq_lens[" + std::to_string(s) + "] outside the page table");
    const std::int64_t first = p.mask == AttentionMask::chunked ? (q_pos / p.chunk_tokens) * p.chunk_tokens : 0;
    // 2. gather the visible keys and values from their pages into contiguous [keys, Hkv, D] fp32 rows
    std::vector<float> k(static_cast<std::size_t>((q_pos + 1 - first) * row)), v(k.size());
    for (std::int64_t pos = first; pos <= q_pos; ++pos)
      for (std::int64_t g = 0; g < p.kv_heads; ++g) {
        const std::int64_t at = gpu::paged_kv_offset(layout, page_table, s, pos, g);
        if (at < 0) throw std::invalid_argument("paged_attention_decode: a visible position has no page");
        for (std::int64_t d = 0; d < D; ++d) {
          k[static_cast<std::size_t>((pos - first) * row + g * D + d)] = kv_value(k_pages, at + d);
          v[static_cast<std::size_t>((pos - first) * row + g * D + d)] = kv_value(v_pages, at + d);
        }
      }
    // 3. one query token against those rows: attention_ref with the cache starting at `first`
    AttentionParams ap;
    ap.q_tokens = 1;
    ap.kv_tokens = q_pos + 1 - first;
    ap.q_heads = p.q_heads;
    ap.kv_heads = p.kv_heads;
    ap.head_dim = D;
    ap.scale = p.scale;
    ap.mask = p.mask;
    ap.mask_tokens = p.mask == AttentionMask::chunked ? p.chunk_tokens : 0;
    ap.kv_first_pos = first;
    attention_ref(ap, q + s * p.q_heads * D, &q_pos, k.data(), v.data(), out + s * p.q_heads * D);
  }
}

// The element offset of head vector g of (seq, pos) in the pages; throws on an unmapped page.
std::int64_t mapped_offset(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                           std::int64_t pos, std::int64_t g) {
  if (pos < 0 || pos >= layout.max_pages_per_seq * layout.page_tokens)
    throw std::invalid_argument("paged KV: position " + std::to_string(pos) + " outside the page table");
  const std::int64_t at = gpu::paged_kv_offset(layout, page_table, seq, pos, g);
  if (at < 0) throw std::invalid_argument("paged KV: position " + std::to_string(pos) + " of sequence " +
                                          std::to_string(seq) + " has no page");
  return at;
}

}  // namespace

void paged_attention_decode_ref(const DecodeAttentionParams& p, const gpu::PagedKvLayout& layout, const float* q,
                                const std::int32_t* seq_lens, const std::int32_t* page_table, const void* k_pages,
                                const void* v_pages, float* out) {
  check_decode_params(p, layout);
  if (p.kv_dtype == KvPageDtype::bf16)
    paged_attention_decode_loops(p, layout, q, seq_lens, page_table, static_cast<const std::uint16_t*>(k_pages),
                                 static_cast<const std::uint16_t*>(v_pages), out);
  else
    paged_attention_decode_loops(p, layout, q, seq_lens, page_table, static_cast<const float*>(k_pages),
                                 static_cast<const float*>(v_pages), out);
}

namespace {

// Calls f(row_at, page_at) for the head vectors of rows [count, Hkv, D] (row_at: element offset in the rows) and
// their slots in the pages (page_at: paged_kv_offset's): row r is position row_pos[r] of sequence row_seq[r], or
// first_pos + r of `seq` when those are null. Throws on an unmapped slot.
template <class F>
void for_each_slot(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                   const std::int64_t* row_pos, std::int64_t seq, std::int64_t first_pos, std::int64_t count, F f) {
  for (std::int64_t r = 0; r < count; ++r)
    for (std::int64_t g = 0; g < layout.kv_heads; ++g)
      f((r * layout.kv_heads + g) * layout.head_dim,
        mapped_offset(layout, page_table, row_seq ? row_seq[r] : seq, row_pos ? row_pos[r] : first_pos + r, g));
}

template <class KV>
void paged_write_rows(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                      const std::int64_t* row_pos, std::int64_t count, const float* rows, KV* pages) {
  for_each_slot(layout, page_table, row_seq, row_pos, 0, 0, count, [&](std::int64_t row_at, std::int64_t at) {
    for (std::int64_t d = 0; d < layout.head_dim; ++d) kv_store(rows[row_at + d], pages + at + d);
  });
}

template <class KV>
void paged_gather_rows(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                       std::int64_t first_pos, std::int64_t count, const KV* pages, float* rows) {
  for_each_slot(layout, page_table, nullptr, nullptr, seq, first_pos, count, [&](std::int64_t row_at, std::int64_t at) {
    for (std::int64_t d = 0; d < layout.head_dim; ++d) rows[row_at + d] = kv_value(pages, at + d);
  });
}

}  // namespace

void paged_kv_write_ref(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                        const std::int64_t* row_pos, std::int64_t count, const float* rows, float* pages) {
  paged_write_rows(layout, page_table, row_seq, row_pos, count, rows, pages);
}

void paged_kv_write_ref(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                        const std::int64_t* row_pos, std::int64_t count, const float* rows, std::uint16_t* pages) {
  paged_write_rows(layout, page_table, row_seq, row_pos, count, rows, pages);
}

void paged_kv_gather_ref(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                         std::int64_t first_pos, std::int64_t count, const float* pages, float* rows) {
  paged_gather_rows(layout, page_table, seq, first_pos, count, pages, rows);
}

void paged_kv_gather_ref(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                         std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages, float* rows) {
  paged_gather_rows(layout, page_table, seq, first_pos, count, pages, rows);
}

}  // namespace moeplan::kernels

namespace moeplan::kernels {

void scale_rows_ref(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale) {
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) x[r * cols + c] *= row_scale[r];
}

void widen_indices_ref(const std::int32_t* in, std::int64_t n, std::int64_t* out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = in[i];
}

void gather_rows_ref(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                     std::int64_t rows, float* x_sorted) {
  gather_rows(x, hidden, row_token, row_scale, rows, x_sorted);
}

void scatter_add_rows_ref(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token,
                          const float* row_scale, std::int64_t rows, float* y) {
  for (std::int64_t r = 0; r < rows; ++r) {  // in row order: the sum of a token's rows is deterministic
    const float s = row_scale ? row_scale[r] : 1.f;
    for (std::int64_t h = 0; h < hidden; ++h) y[row_token[r] * hidden + h] += y_sorted[r * hidden + h] * s;
  }
}

void gemm_epilogue_ref(const float* acc, std::int64_t m, std::int64_t n, const float* x_scale, const float* w_scale,
                       float* y, bool accumulate) {
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      // the two scales multiply the accumulator in this order, as the kernel does
      const float v = acc[i * n + j] * (x_scale ? x_scale[i] : 1.f) * (w_scale ? w_scale[j] : 1.f);
      y[i * n + j] = accumulate ? y[i * n + j] + v : v;
    }
}

void embed_rows_ref(const WeightView& table, std::int64_t first_row, const std::int32_t* ids, std::int64_t tokens,
                    float* out) {
  const std::int64_t H = table.cols;
  for (std::int64_t t = 0; t < tokens; ++t) {
    const std::int64_t row = ids[t] - first_row;
    for (std::int64_t h = 0; h < H; ++h)
      out[t * H + h] = row >= 0 && row < table.rows ? dequant_element(table, row, h) : 0.f;
  }
}

}  // namespace moeplan::kernels
