// CUDA activation conversions for the tensor-core GEMMs: fp32 -> BF16 (round to nearest even), and fp32 -> FP8
// e4m3 with one scale per token (row max / 448; saturating, round to nearest even through cuda_fp8.h).
// Twins: convert_bf16_ref, quantize_fp8_per_token_ref (kernels/ref/gpu_ops.cpp); both should match bit for bit.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <stdexcept>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

namespace {

constexpr int BLOCK_THREADS = 256;

__global__ void convert_bf16_kernel(const float* __restrict__ x, long long n, std::uint16_t* __restrict__ out) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(x[i]));
}

// x: [rows, cols]; q: [rows, cols]; scale: [rows]. One block per row.
__global__ void quantize_fp8_kernel(const float* __restrict__ x, long long cols, std::uint8_t* __restrict__ q,
                                    float* __restrict__ scale) {
  __shared__ float partial[BLOCK_THREADS];
  const float* row = x + blockIdx.x * cols;
  // 1. the row's largest magnitude (tree reduction)
  float amax = 0.f;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) amax = fmaxf(amax, fabsf(row[c]));
  partial[threadIdx.x] = amax;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) partial[threadIdx.x] = fmaxf(partial[threadIdx.x], partial[threadIdx.x + stride]);
    __syncthreads();
  }
  // 2. the scale that maps it onto 448, and each element divided by it, rounded to e4m3
  const float s = partial[0] > 0.f ? partial[0] / gpu::kFp8E4m3Max : 1.0f;
  if (threadIdx.x == 0) scale[blockIdx.x] = s;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x)
    q[blockIdx.x * cols + c] = __nv_cvt_float_to_fp8(row[c] / s, __NV_SATFINITE, __NV_E4M3);
}

}  // namespace

void convert_bf16(const float* x, std::int64_t n, std::uint16_t* out, Stream stream) {
  if (n < 0) throw std::invalid_argument("cuda::convert_bf16: n >= 0 required");
  if (n == 0) return;
  convert_bf16_kernel<<<static_cast<unsigned>(gpu::ceil_div(n, BLOCK_THREADS)), BLOCK_THREADS, 0, as_stream(stream)>>>(
      x, n, out);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void quantize_fp8_per_token(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* q, float* scale,
                            Stream stream) {
  if (rows < 0 || cols < 1) throw std::invalid_argument("cuda::quantize_fp8_per_token: rows >= 0, cols >= 1 required");
  if (rows == 0) return;
  quantize_fp8_kernel<<<static_cast<unsigned>(rows), BLOCK_THREADS, 0, as_stream(stream)>>>(x, cols, q, scale);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

}  // namespace moeplan::kernels::cuda
