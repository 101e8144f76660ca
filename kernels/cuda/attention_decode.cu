// CUDA decode attention over a paged KV cache (GQA; causal for global layers, chunked for Llama 4's local layers),
// split over the context (flash-decoding): kernel 1 gives each (split, KV head, sequence) one block of 4 warps that
// walks its slice of the visible keys, one key per warp at a time (lanes own head_dim / 32 elements; K and V rows
// read once for all the query heads sharing the KV head), with an online softmax per query head; the warps' states
// merge in shared memory into the split's (max, sum, output) in the workspace. Kernel 2 merges the splits.
// Twin: paged_attention_decode_ref (kernels/ref/gpu_ops.cpp). fp32 or BF16 KV pages (BF16 widened to fp32 on load).
// Also the row copies between contiguous fp32 K/V rows and fp32 or BF16 pages (paged_kv_write, paged_kv_gather; twins
// paged_kv_write_ref, paged_kv_gather_ref): one block per row, threads over its heads and elements; BF16 pages are
// written rounded to nearest even and gathered widened.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <stdexcept>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

namespace {

constexpr int WARP = 32;
constexpr int WARPS = 4;
constexpr int MAX_GROUP = static_cast<int>(kDecodeMaxGroup);
constexpr int MAX_D = 256;
constexpr unsigned FULL_MASK = 0xffffffffu;

struct DecodeArgs {
  DecodeAttentionParams p;
  gpu::PagedKvLayout layout;
  const float* q;                 // [seqs, Hq, D]
  const std::int32_t* seq_lens;   // [seqs]
  const std::int32_t* page_table; // [seqs, max_pages_per_seq]
  const void* k_pages;            // [pages, page_tokens, Hkv, D] of p.kv_dtype
  const void* v_pages;
  float* out;                     // [seqs, Hq, D]
  float* ws_o;                    // [seqs, Hq, splits, D] unnormalised partial outputs
  float* ws_ml;                   // [seqs, Hq, splits, 2] (max, sum) of each partial
  long long splits, keys_per_split;
};

__device__ inline float warp_sum(float v) {
  for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(FULL_MASK, v, o);
  return v;
}

__device__ inline float kv_float(float x) { return x; }
__device__ inline float kv_float(std::uint16_t bf16) { return __uint_as_float(static_cast<unsigned>(bf16) << 16); }

// Kernel 1. grid (splits, Hkv, seqs), WARPS * 32 threads. DPL = head_dim / 32 elements per lane; KV the page values.
template <int DPL, class KV>
__global__ void __launch_bounds__(WARPS * WARP) decode_split_kernel(DecodeArgs a) {
  const KV* k_pages = static_cast<const KV*>(a.k_pages);
  const KV* v_pages = static_cast<const KV*>(a.v_pages);
  const long long s = blockIdx.z, g = blockIdx.y, split = blockIdx.x;
  const int group = static_cast<int>(a.p.q_heads / a.p.kv_heads), lane = threadIdx.x % WARP,
            warp = threadIdx.x / WARP;
  constexpr int D = DPL * WARP;
  // 1. the visible keys of this sequence's query and this block's slice of them
  const long long q_pos = a.seq_lens[s] - 1;
  const gpu::KeyRows rows = gpu::visible_key_rows(a.p.mask, a.p.chunk_tokens, 0, q_pos + 1, q_pos);
  const long long begin = rows.first + split * a.keys_per_split;
  const long long end = gpu::min_i64(begin + a.keys_per_split, rows.last);
  // 2. the group's queries, pre-scaled, in registers
  float q[MAX_GROUP][DPL], m[MAX_GROUP], l[MAX_GROUP], acc[MAX_GROUP][DPL];
#pragma unroll
  for (int gi = 0; gi < MAX_GROUP; ++gi) {
    m[gi] = -INFINITY;
    l[gi] = 0.f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      acc[gi][i] = 0.f;
      q[gi][i] = gi < group ? a.q[(s * a.p.q_heads + g * group + gi) * D + lane + WARP * i] * a.p.scale : 0.f;
    }
  }
  // 3. one key per warp at a time: its K and V row once, every query head of the group updated online
  for (long long j = begin + warp; j < end; j += WARPS) {
    const long long at = gpu::paged_kv_offset(a.layout, a.page_table, s, j, g);
    float kr[DPL], vr[DPL];
#pragma unroll
    for (int i = 0; i < DPL; ++i) {
      kr[i] = kv_float(k_pages[at + lane + WARP * i]);
      vr[i] = kv_float(v_pages[at + lane + WARP * i]);
    }
#pragma unroll
    for (int gi = 0; gi < MAX_GROUP; ++gi) {
      if (gi >= group) break;
      float dot = 0.f;
#pragma unroll
      for (int i = 0; i < DPL; ++i) dot += q[gi][i] * kr[i];
      dot = warp_sum(dot);
      const float m_new = fmaxf(m[gi], dot);
      const float f = expf(m[gi] - m_new), p = expf(dot - m_new);  // m = -inf: f = 0
      l[gi] = l[gi] * f + p;
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[gi][i] = acc[gi][i] * f + p * vr[i];
      m[gi] = m_new;
    }
  }
  // 4. merge the warps' states and write the split's partial
  __shared__ float sm_m[WARPS][MAX_GROUP], sm_l[WARPS][MAX_GROUP];
  __shared__ float sm_o[WARPS][MAX_GROUP][MAX_D];
#pragma unroll
  for (int gi = 0; gi < MAX_GROUP; ++gi) {
    if (lane == 0) {
      sm_m[warp][gi] = m[gi];
      sm_l[warp][gi] = l[gi];
    }
#pragma unroll
    for (int i = 0; i < DPL; ++i) sm_o[warp][gi][lane + WARP * i] = acc[gi][i];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < group * D; idx += blockDim.x) {
    const int gi = idx / D, d = idx % D;
    float mm = -INFINITY, ll = 0.f, oo = 0.f, fa, fb;
    for (int w = 0; w < WARPS; ++w) {
      mm = gpu::softmax_merge_factors(mm, sm_m[w][gi], &fa, &fb);
      ll = ll * fa + sm_l[w][gi] * fb;
      oo = oo * fa + sm_o[w][gi][d] * fb;
    }
    const long long at = (s * a.p.q_heads + g * group + gi) * a.splits + split;
    a.ws_o[at * D + d] = oo;
    if (d == 0) {
      a.ws_ml[at * 2] = mm;
      a.ws_ml[at * 2 + 1] = ll;
    }
  }
}

template <class KV>
void launch_split(const DecodeArgs& a, dim3 grid, cudaStream_t s) {
  switch (a.p.head_dim) {
    case 32: decode_split_kernel<1, KV><<<grid, WARPS * WARP, 0, s>>>(a); break;
    case 64: decode_split_kernel<2, KV><<<grid, WARPS * WARP, 0, s>>>(a); break;
    case 128: decode_split_kernel<4, KV><<<grid, WARPS * WARP, 0, s>>>(a); break;
    default: decode_split_kernel<8, KV><<<grid, WARPS * WARP, 0, s>>>(a); break;
  }
}

// Kernel 2. grid (Hq, seqs), head_dim threads: out = merged output / merged sum (0 when no key was visible).
__global__ void decode_merge_kernel(DecodeArgs a) {
  const long long s = blockIdx.y, h = blockIdx.x, D = a.p.head_dim, d = threadIdx.x;
  const long long base = (s * a.p.q_heads + h) * a.splits;
  float mm = -INFINITY, ll = 0.f, oo = 0.f, fa, fb;
  for (long long i = 0; i < a.splits; ++i) {
    mm = gpu::softmax_merge_factors(mm, a.ws_ml[(base + i) * 2], &fa, &fb);
    ll = ll * fa + a.ws_ml[(base + i) * 2 + 1] * fb;
    oo = oo * fa + a.ws_o[(base + i) * D + d] * fb;
  }
  a.out[(s * a.p.q_heads + h) * D + d] = ll > 0.f ? oo / ll : 0.f;
}

// An fp32 value as a page holds it: itself, or its BF16 code rounded to nearest even (convert_bf16's rounding).
__device__ inline void kv_store(float x, float* page_value) { *page_value = x; }
__device__ inline void kv_store(float x, std::uint16_t* page_value) {
  *page_value = __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

// grid (count), threads over the row's Hkv * D elements: row r <-> its slot (seq_of(r), pos_of(r)). A write
// (pages_out set) stores rows_in into the pages; a gather reads pages_in into rows_out (an unmapped page gives
// zeros). KV: the page values.
template <class KV>
__global__ void paged_rows_kernel(gpu::PagedKvLayout layout, const std::int32_t* page_table,
                                  const std::int64_t* row_seq, const std::int64_t* row_pos, long long seq,
                                  long long first_pos, const float* rows_in, KV* pages_out, const KV* pages_in,
                                  float* rows_out) {
  const long long r = blockIdx.x, D = layout.head_dim, row = layout.kv_heads * D;
  const long long s = row_seq ? row_seq[r] : seq, pos = row_pos ? row_pos[r] : first_pos + r;
  for (long long i = threadIdx.x; i < row; i += blockDim.x) {
    const long long at = gpu::paged_kv_offset(layout, page_table, s, pos, i / D);
    if (pages_out) {
      if (at >= 0) kv_store(rows_in[r * row + i], pages_out + at + i % D);
    } else {
      rows_out[r * row + i] = at >= 0 ? kv_float(pages_in[at + i % D]) : 0.f;
    }
  }
}

// One launch of paged_rows_kernel: the write's (rows_in, pages_out) or the gather's (pages_in, rows_out).
template <class KV>
void launch_paged_rows(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                       const std::int64_t* row_pos, std::int64_t seq, std::int64_t first_pos, std::int64_t count,
                       const float* rows_in, KV* pages_out, const KV* pages_in, float* rows_out, Stream stream) {
  if (layout.page_tokens < 1 || layout.kv_heads < 1 || layout.head_dim < 1 || layout.max_pages_per_seq < 1 || count < 0)
    throw std::invalid_argument("cuda::paged_kv rows: bad page layout or row count");
  if (count == 0) return;
  const unsigned threads = static_cast<unsigned>(gpu::min_i64(layout.kv_heads * layout.head_dim, 256));
  paged_rows_kernel<KV><<<static_cast<unsigned>(count), threads, 0, as_stream(stream)>>>(
      layout, page_table, row_seq, row_pos, seq, first_pos, rows_in, pages_out, pages_in, rows_out);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

template <class KV>
void write_rows(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                const std::int64_t* row_pos, std::int64_t count, const float* rows, KV* pages, Stream stream) {
  launch_paged_rows<KV>(layout, page_table, row_seq, row_pos, 0, 0, count, rows, pages, nullptr, nullptr, stream);
}

template <class KV>
void gather_rows(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                 std::int64_t first_pos, std::int64_t count, const KV* pages, float* rows, Stream stream) {
  launch_paged_rows<KV>(layout, page_table, nullptr, nullptr, seq, first_pos, count, nullptr, nullptr, pages, rows,
                        stream);
}

}  // namespace

void paged_kv_write(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                    const std::int64_t* row_pos, std::int64_t count, const float* rows, float* pages, Stream stream) {
  write_rows(layout, page_table, row_seq, row_pos, count, rows, pages, stream);
}

void paged_kv_write(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                    const std::int64_t* row_pos, std::int64_t count, const float* rows, std::uint16_t* pages,
                    Stream stream) {
  write_rows(layout, page_table, row_seq, row_pos, count, rows, pages, stream);
}

void paged_kv_gather(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                     std::int64_t first_pos, std::int64_t count, const float* pages, float* rows, Stream stream) {
  gather_rows(layout, page_table, seq, first_pos, count, pages, rows, stream);
}

void paged_kv_gather(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                     std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages, float* rows,
                     Stream stream) {
  gather_rows(layout, page_table, seq, first_pos, count, pages, rows, stream);
}

void paged_attention_decode(const DecodeAttentionParams& p, const gpu::PagedKvLayout& layout, const float* q,
                            const std::int32_t* seq_lens, const std::int32_t* page_table, const void* k_pages,
                            const void* v_pages, float* out, const gpu::DecodeSplit& split, void* workspace,
                            Stream stream) {
  check_decode_params(p, layout);
  if (split.splits < 1 || split.keys_per_split < 1 || split.splits > 65535)
    throw std::invalid_argument("cuda::paged_attention_decode: the split needs 1..65535 slices of >= 1 key");
  if (p.seqs == 0) return;
  DecodeArgs a{p, layout, q, seq_lens, page_table, k_pages, v_pages, out, nullptr, nullptr,
               split.splits, split.keys_per_split};
  a.ws_o = static_cast<float*>(workspace);
  a.ws_ml = a.ws_o + p.seqs * p.q_heads * split.splits * p.head_dim;
  const cudaStream_t s = as_stream(stream);
  const dim3 grid(static_cast<unsigned>(split.splits), static_cast<unsigned>(p.kv_heads),
                  static_cast<unsigned>(p.seqs));
  if (p.kv_dtype == KvPageDtype::bf16) launch_split<std::uint16_t>(a, grid, s);
  else launch_split<float>(a, grid, s);
  MOEPLAN_CUDA_CHECK_LAUNCH();
  decode_merge_kernel<<<dim3(static_cast<unsigned>(p.q_heads), static_cast<unsigned>(p.seqs)),
                        static_cast<unsigned>(p.head_dim), 0, s>>>(a);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

}  // namespace moeplan::kernels::cuda
