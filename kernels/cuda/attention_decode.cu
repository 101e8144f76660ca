// CUDA decode attention over a paged KV cache (GQA; causal for global layers, chunked for Llama 4's local layers),
// split over the context (flash-decoding): kernel 1 gives each (split, KV head, sequence) one block of 4 warps that
// walks its slice of the visible keys, one key per warp at a time (lanes own head_dim / 32 elements; K and V rows
// read once for all the query heads sharing the KV head), with an online softmax per query head; the warps' states
// merge in shared memory into the split's (max, sum, output) in the workspace. Kernel 2 merges the splits.
// Twin: paged_attention_decode_ref (kernels/ref/gpu_ops.cpp). fp32 KV pages.
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
  const float* k_pages;           // [pages, page_tokens, Hkv, D]
  const float* v_pages;
  float* out;                     // [seqs, Hq, D]
  float* ws_o;                    // [seqs, Hq, splits, D] unnormalised partial outputs
  float* ws_ml;                   // [seqs, Hq, splits, 2] (max, sum) of each partial
  long long splits, keys_per_split;
};

__device__ inline float warp_sum(float v) {
  for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(FULL_MASK, v, o);
  return v;
}

// Kernel 1. grid (splits, Hkv, seqs), WARPS * 32 threads. DPL = head_dim / 32 elements per lane.
template <int DPL>
__global__ void __launch_bounds__(WARPS * WARP) decode_split_kernel(DecodeArgs a) {
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
      kr[i] = a.k_pages[at + lane + WARP * i];
      vr[i] = a.v_pages[at + lane + WARP * i];
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

}  // namespace

void paged_attention_decode(const DecodeAttentionParams& p, const gpu::PagedKvLayout& layout, const float* q,
                            const std::int32_t* seq_lens, const std::int32_t* page_table, const float* k_pages,
                            const float* v_pages, float* out, const gpu::DecodeSplit& split, void* workspace,
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
  switch (p.head_dim) {
    case 32: decode_split_kernel<1><<<grid, WARPS * WARP, 0, s>>>(a); break;
    case 64: decode_split_kernel<2><<<grid, WARPS * WARP, 0, s>>>(a); break;
    case 128: decode_split_kernel<4><<<grid, WARPS * WARP, 0, s>>>(a); break;
    default: decode_split_kernel<8><<<grid, WARPS * WARP, 0, s>>>(a); break;
  }
  MOEPLAN_CUDA_CHECK_LAUNCH();
  decode_merge_kernel<<<dim3(static_cast<unsigned>(p.q_heads), static_cast<unsigned>(p.seqs)),
                        static_cast<unsigned>(p.head_dim), 0, s>>>(a);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

}  // namespace moeplan::kernels::cuda
