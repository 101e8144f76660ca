// CUDA token permutation by expert and its inverse. Permute is three kernels, each the twin of a step of
// moe_permute_ref (kernels/ref/gpu_ops.cpp): per-chunk histogram (shared-memory atomics; only counts), offsets (one
// block: expert totals, a scan over experts, chunk bases), scatter (each pair's rank among its chunk's pairs of the
// same expert, so the order is the stable sort's, independent of thread timing). Gather copies rows into sorted
// order; combine adds each token's k expert outputs back, slot by slot (no atomics: deterministic).
#include <cuda_runtime.h>

#include <stdexcept>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

namespace {

constexpr int CHUNK = static_cast<int>(gpu::kPermuteChunk);  // one block of CHUNK threads per chunk of pairs
constexpr int OFFSETS_THREADS = 1024;
constexpr int ROW_THREADS = 256;

// ids: [pairs]; counts: [chunks, experts]. Ids outside [0, experts) are not counted (and not scattered).
__global__ void histogram_kernel(const std::int32_t* __restrict__ ids, long long pairs, int experts,
                                 std::int32_t* __restrict__ counts) {
  extern __shared__ std::int32_t local[];  // [experts]
  for (int e = threadIdx.x; e < experts; e += blockDim.x) local[e] = 0;
  __syncthreads();
  const long long i = blockIdx.x * static_cast<long long>(CHUNK) + threadIdx.x;
  if (i < pairs && ids[i] >= 0 && ids[i] < experts) atomicAdd(&local[ids[i]], 1);
  __syncthreads();
  for (int e = threadIdx.x; e < experts; e += blockDim.x)
    counts[blockIdx.x * static_cast<long long>(experts) + e] = local[e];
}

// counts, bases: [chunks, experts]; expert_offsets: [experts + 1]. One block.
__global__ void offsets_kernel(const std::int32_t* __restrict__ counts, long long chunks, int experts,
                               std::int32_t* __restrict__ bases, std::int64_t* __restrict__ expert_offsets) {
  extern __shared__ std::int64_t first_row[];  // [experts + 1]
  // 1. each expert's total over the chunks
  for (int e = threadIdx.x; e < experts; e += blockDim.x) {
    long long total = 0;
    for (long long c = 0; c < chunks; ++c) total += counts[c * experts + e];
    first_row[e + 1] = total;
  }
  __syncthreads();
  // 2. exclusive scan over experts (sequential: experts <= a few hundred)
  if (threadIdx.x == 0) {
    first_row[0] = 0;
    for (int e = 0; e < experts; ++e) first_row[e + 1] += first_row[e];
  }
  __syncthreads();
  // 3. each chunk's first row within each expert: the expert's first row plus the earlier chunks' counts
  for (int e = threadIdx.x; e < experts; e += blockDim.x) {
    long long row = first_row[e];
    for (long long c = 0; c < chunks; ++c) {
      bases[c * experts + e] = static_cast<std::int32_t>(row);
      row += counts[c * experts + e];
    }
  }
  for (int e = threadIdx.x; e <= experts; e += blockDim.x) expert_offsets[e] = first_row[e];
}

// One block per chunk, one thread per pair.
__global__ void scatter_kernel(const std::int32_t* __restrict__ ids, const float* __restrict__ weights, long long pairs,
                               int k, int experts, const std::int32_t* __restrict__ bases,
                               std::int32_t* __restrict__ row_token, float* __restrict__ row_weight,
                               std::int32_t* __restrict__ pair_row) {
  __shared__ std::int32_t chunk_ids[CHUNK];
  const long long i = blockIdx.x * static_cast<long long>(CHUNK) + threadIdx.x;
  chunk_ids[threadIdx.x] = i < pairs ? ids[i] : -1;
  __syncthreads();
  const std::int32_t e = chunk_ids[threadIdx.x];
  if (i >= pairs) return;
  if (e < 0 || e >= experts) {  // dropped: no row, and combine skips it
    pair_row[i] = -1;
    return;
  }
  // 1. rank among the earlier pairs of this chunk routed to the same expert
  int rank = 0;
  for (int j = 0; j < static_cast<int>(threadIdx.x); ++j) rank += chunk_ids[j] == e;
  // 2. the row: the chunk's base for the expert plus the rank
  const std::int32_t dest = bases[blockIdx.x * static_cast<long long>(experts) + e] + rank;
  row_token[dest] = static_cast<std::int32_t>(i / k);
  row_weight[dest] = weights ? weights[i] : 1.0f;
  pair_row[i] = dest;
}

// x: [tokens, hidden]; x_sorted: [rows, hidden]. One block per row.
__global__ void gather_kernel(const float* __restrict__ x, long long hidden, const std::int32_t* __restrict__ row_token,
                              const float* __restrict__ row_scale, float* __restrict__ x_sorted) {
  const long long r = blockIdx.x;
  const float s = row_scale ? row_scale[r] : 1.0f;
  const float* src = x + row_token[r] * hidden;
  for (long long c = threadIdx.x; c < hidden; c += blockDim.x) x_sorted[r * hidden + c] = src[c] * s;
}

// y_sorted: [tokens * k, hidden]; y: [tokens, hidden]. One block per token.
__global__ void combine_kernel(const float* __restrict__ y_sorted, long long hidden,
                               const std::int32_t* __restrict__ pair_row, const float* __restrict__ pair_weight, int k,
                               float* __restrict__ y) {
  const long long t = blockIdx.x;
  for (long long c = threadIdx.x; c < hidden; c += blockDim.x) {
    float sum = y[t * hidden + c];
    for (int s = 0; s < k; ++s) {
      const std::int32_t row = pair_row[t * k + s];
      if (row < 0) continue;  // a pair moe_permute dropped
      sum += y_sorted[row * hidden + c] * (pair_weight ? pair_weight[t * k + s] : 1.0f);
    }
    y[t * hidden + c] = sum;
  }
}

}  // namespace

void moe_permute(const std::int32_t* ids, const float* weights, std::int64_t pairs, std::int64_t k,
                 std::int64_t experts, void* workspace, std::int64_t* expert_offsets, std::int32_t* row_token,
                 float* row_weight, std::int32_t* pair_row, Stream stream) {
  if (pairs < 0 || k < 1 || experts < 1 || experts > 4096 || pairs > (1ll << 31) - 1)
    throw std::invalid_argument("cuda::moe_permute: need pairs < 2^31, k >= 1 and 1 <= experts <= 4096");
  const std::int64_t chunks = gpu::permute_chunks(pairs);
  auto* counts = static_cast<std::int32_t*>(workspace);
  std::int32_t* bases = counts + chunks * experts;
  const int e = static_cast<int>(experts);
  const cudaStream_t s = as_stream(stream);
  if (chunks > 0) {
    const std::size_t smem = static_cast<std::size_t>(experts) * sizeof(std::int32_t);
    histogram_kernel<<<static_cast<unsigned>(chunks), CHUNK, smem, s>>>(ids, pairs, e, counts);
    MOEPLAN_CUDA_CHECK_LAUNCH();
  }
  offsets_kernel<<<1, OFFSETS_THREADS, (experts + 1) * sizeof(std::int64_t), s>>>(counts, chunks, e, bases,
                                                                                 expert_offsets);
  MOEPLAN_CUDA_CHECK_LAUNCH();
  if (chunks > 0) {
    scatter_kernel<<<static_cast<unsigned>(chunks), CHUNK, 0, s>>>(ids, weights, pairs, static_cast<int>(k), e, bases,
                                                                  row_token, row_weight, pair_row);
    MOEPLAN_CUDA_CHECK_LAUNCH();
  }
}

void moe_gather(const float* x, std::int64_t hidden, const std::int32_t* row_token, const float* row_scale,
                std::int64_t rows, float* x_sorted, Stream stream) {
  if (hidden < 1 || rows < 0) throw std::invalid_argument("cuda::moe_gather: hidden >= 1 and rows >= 0 required");
  if (rows == 0) return;
  gather_kernel<<<static_cast<unsigned>(rows), ROW_THREADS, 0, as_stream(stream)>>>(x, hidden, row_token, row_scale,
                                                                                  x_sorted);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void moe_combine(const float* y_sorted, std::int64_t hidden, const std::int32_t* pair_row, const float* pair_weight,
                 std::int64_t tokens, std::int64_t k, float* y, Stream stream) {
  if (hidden < 1 || tokens < 0 || k < 1) throw std::invalid_argument("cuda::moe_combine: bad sizes");
  if (tokens == 0) return;
  combine_kernel<<<static_cast<unsigned>(tokens), ROW_THREADS, 0, as_stream(stream)>>>(
      y_sorted, hidden, pair_row, pair_weight, static_cast<int>(k), y);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

}  // namespace moeplan::kernels::cuda
