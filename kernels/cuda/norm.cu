// CUDA RMSNorm: one block per token; threads stride over the hidden dimension, a shared-memory tree reduction
// forms the mean square. Checked against rmsnorm_ref in tests/gpu.
#include <cuda_runtime.h>

#include <memory>

#include "kernels/cuda/check.cuh"
#include "kernels/norm.hpp"

namespace moeplan::kernels {

namespace {

constexpr int BLOCK_THREADS = 256;

// x: [tokens, hidden], w: [hidden], y: [tokens, hidden]
__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                               long long hidden, float eps) {
  __shared__ float partial[BLOCK_THREADS];
  const float* row = x + blockIdx.x * hidden;
  float sum_sq = 0.f;
  for (long long i = threadIdx.x; i < hidden; i += blockDim.x) sum_sq += row[i] * row[i];
  partial[threadIdx.x] = sum_sq;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const float inv_rms = rsqrtf(partial[0] / static_cast<float>(hidden) + eps);
  for (long long i = threadIdx.x; i < hidden; i += blockDim.x) y[blockIdx.x * hidden + i] = row[i] * inv_rms * w[i];
}

struct DeviceFree {
  void operator()(float* p) const { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<float, DeviceFree>;

DeviceBuffer device_alloc(std::size_t count) {
  float* p = nullptr;
  MOEPLAN_CUDA_CHECK(cudaMalloc(&p, count * sizeof(float)));
  return DeviceBuffer(p);
}

}  // namespace

void rmsnorm_cuda_host(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps) {
  const auto n = static_cast<std::size_t>(tokens * hidden);
  auto dx = device_alloc(n), dw = device_alloc(static_cast<std::size_t>(hidden)), dy = device_alloc(n);
  MOEPLAN_CUDA_CHECK(cudaMemcpy(dx.get(), x, n * sizeof(float), cudaMemcpyHostToDevice));
  MOEPLAN_CUDA_CHECK(cudaMemcpy(dw.get(), w, static_cast<std::size_t>(hidden) * sizeof(float), cudaMemcpyHostToDevice));
  rmsnorm_kernel<<<static_cast<unsigned>(tokens), BLOCK_THREADS>>>(dx.get(), dw.get(), dy.get(), hidden, eps);
  MOEPLAN_CUDA_CHECK(cudaGetLastError());
  MOEPLAN_CUDA_CHECK(cudaMemcpy(y, dy.get(), n * sizeof(float), cudaMemcpyDeviceToHost));
}

}  // namespace moeplan::kernels
