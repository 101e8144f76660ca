// CUDA RoPE, in place: one thread per (token, head, pair), in both pair layouts (Llama 4 interleaved, "half").
// Twin: rope_ref (kernels/ref/rope.cpp): the same fp32 angle; cosf/sinf (full-range, <= 2 ulp) instead of double.
#include <cuda_runtime.h>

#include <stdexcept>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

namespace {

constexpr int BLOCK_THREADS = 256;

// x: [tokens, heads, head_dim]; positions: [tokens]; inv_freq: [head_dim / 2]
__global__ void rope_kernel(float* __restrict__ x, long long tokens, long long heads, long long head_dim,
                            const std::int64_t* __restrict__ positions, const float* __restrict__ inv_freq,
                            bool interleaved) {
  const long long pairs = head_dim / 2;
  const long long item = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (item >= tokens * heads * pairs) return;
  // 1. which token, head and pair this thread rotates
  const long long i = item % pairs, th = item / pairs, t = th / heads;
  float* head = x + th * head_dim;
  // 2. the angle as HF forms it: fp32 position times fp32 frequency
  const float angle = static_cast<float>(positions[t]) * inv_freq[i];
  const float c = cosf(angle), s = sinf(angle);
  // 3. the pair of this layout, rotated by the angle
  const long long a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + pairs;
  const float xa = head[a], xb = head[b];
  head[a] = xa * c - xb * s;
  head[b] = xb * c + xa * s;
}

}  // namespace

void rope(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
          const float* inv_freq, RopeLayout layout, Stream stream) {
  if (head_dim % 2 != 0 || head_dim < 2 || tokens < 0 || heads < 1)
    throw std::invalid_argument("cuda::rope: head_dim must be even and positive, tokens >= 0, heads >= 1");
  const long long items = tokens * heads * (head_dim / 2);
  if (items == 0) return;
  const auto blocks = static_cast<unsigned>(gpu::ceil_div(items, BLOCK_THREADS));
  rope_kernel<<<blocks, BLOCK_THREADS, 0, as_stream(stream)>>>(x, tokens, heads, head_dim, positions, inv_freq,
                                                                layout == RopeLayout::interleaved);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

}  // namespace moeplan::kernels::cuda
