// CUDA prefill attention, flash-style: a block takes BLOCK_Q queries of one head and walks the union of their
// visible keys in tiles of BLOCK_KEYS rows staged in shared memory (K rows padded by one float so that lane j
// reading row j hits bank j). Each warp owns BLOCK_Q / 4 queries; per tile, lane j scores key j for a query, the
// warp forms the tile's max and sum, and rescales its output (lanes own head_dim / 32 elements) online: scores and
// probabilities never reach global memory. Masks: causal, chunked (Llama 4 attention_chunk_size), sliding window,
// as attention_ref states them; fp32 throughout (tensor-core MMA tiles are future work).
// Twin: attention_ref (kernels/ref/attention.cpp).
#include <cuda_runtime.h>

#include <stdexcept>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

namespace {

constexpr int WARP = 32;
constexpr int WARPS = 4;
constexpr int BLOCK_Q = 16;
constexpr int Q_PER_WARP = BLOCK_Q / WARPS;
constexpr int BLOCK_KEYS = WARP;  // one key per lane when scoring
constexpr unsigned FULL_MASK = 0xffffffffu;

struct PrefillArgs {
  AttentionParams p;
  const float* q;              // [Tq, Hq, D]
  const std::int64_t* q_pos;   // [Tq]
  const float* k;              // [Tk, Hkv, D]
  const float* v;
  float* out;                  // [Tq, Hq, D]
};

__device__ inline float warp_sum(float v) {
  for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(FULL_MASK, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = WARP / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
  return v;
}

constexpr std::size_t smem_bytes(int d) {
  return (static_cast<std::size_t>(BLOCK_Q) * d + static_cast<std::size_t>(BLOCK_KEYS) * (d + 1) +
          static_cast<std::size_t>(BLOCK_KEYS) * d) * sizeof(float);
}

// grid (ceil(Tq / BLOCK_Q), Hq), WARPS * 32 threads, smem_bytes(D) of dynamic shared memory.
template <int DPL>
__global__ void __launch_bounds__(WARPS * WARP) prefill_kernel(PrefillArgs a) {
  constexpr int D = DPL * WARP;
  extern __shared__ float smem[];
  float* sq = smem;                          // [BLOCK_Q][D] scaled queries
  float* sk = sq + BLOCK_Q * D;              // [BLOCK_KEYS][D + 1]
  float* sv = sk + BLOCK_KEYS * (D + 1);     // [BLOCK_KEYS][D]
  __shared__ long long first[BLOCK_Q], last[BLOCK_Q], tile_lo, tile_hi;
  const long long h = blockIdx.y, q0 = blockIdx.x * static_cast<long long>(BLOCK_Q);
  const long long Hq = a.p.q_heads, Hkv = a.p.kv_heads, g = h / (Hq / Hkv);
  const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
  // 1. the block's queries (scaled) and each one's visible key rows; the block walks their union
  for (int i = threadIdx.x; i < BLOCK_Q * D; i += blockDim.x) {
    const long long t = q0 + i / D;
    sq[i] = t < a.p.q_tokens ? a.q[(t * Hq + h) * D + i % D] * a.p.scale : 0.f;
  }
  if (threadIdx.x < BLOCK_Q) {
    const long long t = q0 + threadIdx.x;
    gpu::KeyRows r{0, 0};
    if (t < a.p.q_tokens)
      r = gpu::visible_key_rows(a.p.mask, a.p.mask_tokens, a.p.kv_first_pos, a.p.kv_tokens, a.q_pos[t]);
    first[threadIdx.x] = r.first;
    last[threadIdx.x] = r.last;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    long long lo = a.p.kv_tokens, hi = 0;
    for (int i = 0; i < BLOCK_Q; ++i)
      if (first[i] < last[i]) {
        lo = gpu::min_i64(lo, first[i]);
        hi = gpu::max_i64(hi, last[i]);
      }
    tile_lo = lo;
    tile_hi = hi;
  }
  __syncthreads();
  // 2. online softmax state of the warp's queries
  float m[Q_PER_WARP], l[Q_PER_WARP], acc[Q_PER_WARP][DPL];
#pragma unroll
  for (int t = 0; t < Q_PER_WARP; ++t) {
    m[t] = -INFINITY;
    l[t] = 0.f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[t][i] = 0.f;
  }
  // 3. key tiles
  for (long long k0 = tile_lo; k0 < tile_hi; k0 += BLOCK_KEYS) {
    __syncthreads();  // the previous tile is no longer read
    for (int i = threadIdx.x; i < BLOCK_KEYS * D; i += blockDim.x) {
      const long long row = k0 + i / D;
      const bool in = row < a.p.kv_tokens;
      sk[(i / D) * (D + 1) + i % D] = in ? a.k[(row * Hkv + g) * D + i % D] : 0.f;
      sv[i] = in ? a.v[(row * Hkv + g) * D + i % D] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int t = 0; t < Q_PER_WARP; ++t) {
      const int qi = warp * Q_PER_WARP + t;
      // lane j scores key k0 + j
      const long long key = k0 + lane;
      const bool visible = key >= first[qi] && key < last[qi];
      float dot = 0.f;
      for (int d = 0; d < D; ++d) dot += sq[qi * D + d] * sk[lane * (D + 1) + d];
      const float score = visible ? dot : -INFINITY;
      const float m_new = fmaxf(m[t], warp_max(score));
      if (m_new == -INFINITY) continue;  // nothing visible to this query yet
      const float p = visible ? expf(score - m_new) : 0.f, f = expf(m[t] - m_new);
      l[t] = l[t] * f + warp_sum(p);
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[t][i] *= f;
      for (int j = 0; j < BLOCK_KEYS; ++j) {
        const float pj = __shfl_sync(FULL_MASK, p, j);
#pragma unroll
        for (int i = 0; i < DPL; ++i) acc[t][i] += pj * sv[j * D + lane + WARP * i];
      }
      m[t] = m_new;
    }
  }
  // 4. normalise and write (a query that saw no key gets zeros)
#pragma unroll
  for (int t = 0; t < Q_PER_WARP; ++t) {
    const long long q = q0 + warp * Q_PER_WARP + t;
    if (q >= a.p.q_tokens) continue;
#pragma unroll
    for (int i = 0; i < DPL; ++i) a.out[(q * Hq + h) * D + lane + WARP * i] = l[t] > 0.f ? acc[t][i] / l[t] : 0.f;
  }
}

template <int DPL>
void launch(const PrefillArgs& a, cudaStream_t stream) {
  constexpr std::size_t bytes = smem_bytes(DPL * WARP);
  if (bytes > 48 * 1024)
    MOEPLAN_CUDA_CHECK(cudaFuncSetAttribute(prefill_kernel<DPL>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(bytes)));
  const dim3 grid(static_cast<unsigned>(gpu::ceil_div(a.p.q_tokens, BLOCK_Q)), static_cast<unsigned>(a.p.q_heads));
  prefill_kernel<DPL><<<grid, WARPS * WARP, bytes, stream>>>(a);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention_prefill(const AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                       const float* v, float* out, Stream stream) {
  check_attention_params(p);
  if (p.head_dim != 32 && p.head_dim != 64 && p.head_dim != 128 && p.head_dim != 256)
    throw std::invalid_argument("cuda::attention_prefill: head_dim must be 32, 64, 128 or 256");
  if (p.q_tokens == 0) return;
  const PrefillArgs a{p, q, q_pos, k, v, out};
  const cudaStream_t s = as_stream(stream);
  switch (p.head_dim) {
    case 32: launch<1>(a, s); break;
    case 64: launch<2>(a, s); break;
    case 128: launch<4>(a, s); break;
    default: launch<8>(a, s); break;
  }
}

}  // namespace moeplan::kernels::cuda
