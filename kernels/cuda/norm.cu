// CUDA RMSNorm: one block per token; threads stride over the hidden dimension, a shared-memory tree reduction
// forms the mean square. Twins: rmsnorm_ref, and rms_normalize_ref when w is null (kernels/ref/norm.cpp).
#include <cuda_runtime.h>

#include <stdexcept>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

namespace {

constexpr int BLOCK_THREADS = 256;

// x: [tokens, hidden], w: [hidden] or nullptr (all ones), y: [tokens, hidden]
__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                               long long hidden, float eps) {
  __shared__ float partial[BLOCK_THREADS];
  const float* row = x + blockIdx.x * hidden;
  // 1. each thread's share of the sum of squares
  float sum_sq = 0.f;
  for (long long i = threadIdx.x; i < hidden; i += blockDim.x) sum_sq += row[i] * row[i];
  partial[threadIdx.x] = sum_sq;
  __syncthreads();
  // 2. tree reduction in shared memory
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  // 3. scale every element
  const float inv_rms = rsqrtf(partial[0] / static_cast<float>(hidden) + eps);
  for (long long i = threadIdx.x; i < hidden; i += blockDim.x) y[blockIdx.x * hidden + i] = row[i] * inv_rms * (w ? w[i] : 1.f);
}

}  // namespace

void rmsnorm(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps,
             Stream stream) {
  if (tokens < 0 || hidden < 1) throw std::invalid_argument("cuda::rmsnorm: tokens >= 0 and hidden >= 1 required");
  if (tokens == 0) return;
  rmsnorm_kernel<<<static_cast<unsigned>(tokens), BLOCK_THREADS, 0, as_stream(stream)>>>(x, w, y, hidden, eps);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

}  // namespace moeplan::kernels::cuda
