// The row and element-wise ops of the CUDA backend (executor/backend_cuda.cpp): SwiGLU product, residual add, row
// scaling, gather / scatter-add of rows by token (the permutation around the expert GEMMs), the scale epilogue of the
// tensor-core GEMMs, embedding rows with dequantisation, and a generic attention for head sizes the tiled kernels
// do not take. Twins (kernels/gpu_ops.hpp): silu_mul_ref, add_ref, scale_rows_ref, widen_indices_ref,
// gather_rows_ref, scatter_add_rows_ref, gemm_epilogue_ref, embed_rows_ref, attention_ref.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_layout.hpp"
#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

namespace {

constexpr int BLOCK_THREADS = 256;
constexpr int GENERIC_THREADS = 128;        // attention_generic: threads per (query, head)
constexpr int GENERIC_DIMS_PER_THREAD = 8;  // so head_dim <= 1024

unsigned blocks_for(long long n) { return static_cast<unsigned>((n + BLOCK_THREADS - 1) / BLOCK_THREADS); }

__global__ void silu_mul_kernel(const float* gate, const float* up, float* out, long long n) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = gate[i] / (1.f + expf(-gate[i])) * up[i];
}

__global__ void add_kernel(const float* a, const float* b, float* out, long long n) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

// x: [rows, cols]; one thread per element.
__global__ void scale_rows_kernel(float* x, long long rows, long long cols, const float* row_scale) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i < rows * cols) x[i] *= row_scale[i / cols];
}

__global__ void widen_indices_kernel(const std::int32_t* in, long long n, long long* out) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = in[i];
}

// x_sorted [rows, hidden]: one block row per sorted row (blockIdx.y), threads over hidden.
__global__ void gather_rows_kernel(const float* x, long long hidden, const long long* row_token,
                                   const float* row_scale, float* x_sorted) {
  const long long r = blockIdx.y, h = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (h < hidden) x_sorted[r * hidden + h] = x[row_token[r] * hidden + h] * (row_scale ? row_scale[r] : 1.f);
}

// One thread per hidden column, walking the rows in order: two rows of one token add in row order, with no atomics.
__global__ void scatter_add_rows_kernel(const float* y_sorted, long long hidden, const long long* row_token,
                                        const float* row_scale, long long rows, float* y) {
  const long long h = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (h >= hidden) return;
  for (long long r = 0; r < rows; ++r)
    y[row_token[r] * hidden + h] += y_sorted[r * hidden + h] * (row_scale ? row_scale[r] : 1.f);
}

// acc, y: [m, n]; one thread per element.
__global__ void gemm_epilogue_kernel(const float* acc, long long m, long long n, const float* x_scale,
                                     const float* w_scale, float* y, bool accumulate) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= m * n) return;
  const float v = acc[i] * (x_scale ? x_scale[i / n] : 1.f) * (w_scale ? w_scale[i % n] : 1.f);
  y[i] = accumulate ? y[i] + v : v;
}

// kernels/weights.hpp's exact conversions, on the device.
__device__ float decode_element(TableDtype dtype, const void* data, long long i) {
  switch (dtype) {
    case TableDtype::f32: return static_cast<const float*>(data)[i];
    case TableDtype::bf16: return __uint_as_float(static_cast<unsigned>(static_cast<const unsigned short*>(data)[i]) << 16);
    case TableDtype::f16: return __half2float(__ushort_as_half(static_cast<const unsigned short*>(data)[i]));
    case TableDtype::fp8_e4m3: {
      const unsigned bits = static_cast<const unsigned char*>(data)[i];
      if ((bits & 0x7fu) == 0x7fu) return __int_as_float(0x7fc00000);  // NaN
      const int exponent = (bits >> 3) & 0xf, mantissa = bits & 0x7;
      const float magnitude = exponent == 0 ? ldexpf(static_cast<float>(mantissa), -9)
                                            : ldexpf(static_cast<float>(8 + mantissa), exponent - 10);
      return (bits & 0x80u) ? -magnitude : magnitude;
    }
  }
  return 0.f;
}

// out [tokens, cols]: block row t (blockIdx.y), threads over the columns.
__global__ void embed_rows_kernel(TableDtype dtype, const void* data, const float* row_scales, long long rows,
                                  long long cols, long long first_row, const int* ids, float* out) {
  const long long t = blockIdx.y, h = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (h >= cols) return;
  const long long row = ids[t] - first_row;
  float value = 0.f;
  if (row >= 0 && row < rows) {
    value = decode_element(dtype, data, row * cols + h);
    if (row_scales) value *= row_scales[row];
  }
  out[t * cols + h] = value;
}

// One block per (query token, query head); thread i holds dimensions i, i + blockDim, ... of q and of the output.
// Keys in order: a block-wide dot product, then the online-softmax update of the running max, sum and output.
__global__ void attention_generic_kernel(AttentionParams p, const float* q, const long long* q_pos, const float* k,
                                         const float* v, float* out) {
  __shared__ float partial[GENERIC_THREADS];
  const long long t = blockIdx.x, h = blockIdx.y, D = p.head_dim;
  const long long g = h / (p.q_heads / p.kv_heads);
  const float* qv = q + (t * p.q_heads + h) * D;
  float qr[GENERIC_DIMS_PER_THREAD], acc[GENERIC_DIMS_PER_THREAD];
  for (int i = 0; i < GENERIC_DIMS_PER_THREAD; ++i) {
    const long long d = threadIdx.x + static_cast<long long>(i) * blockDim.x;
    qr[i] = d < D ? qv[d] : 0.f;
    acc[i] = 0.f;
  }
  const gpu::KeyRows rows = gpu::visible_key_rows(p.mask, p.mask_tokens, p.kv_first_pos, p.kv_tokens, q_pos[t]);
  float running_max = -INFINITY, running_sum = 0.f;
  for (long long j = rows.first; j < rows.last; ++j) {
    const float* kr = k + (j * p.kv_heads + g) * D;
    const float* vr = v + (j * p.kv_heads + g) * D;
    // 1. score = scale * q . k, reduced over the block
    float dot = 0.f;
    for (int i = 0; i < GENERIC_DIMS_PER_THREAD; ++i) {
      const long long d = threadIdx.x + static_cast<long long>(i) * blockDim.x;
      if (d < D) dot += qr[i] * kr[d];
    }
    partial[threadIdx.x] = dot;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
      if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
      __syncthreads();
    }
    const float score = partial[0] * p.scale;
    __syncthreads();  // partial[0] is read before the next key overwrites it
    // 2. online softmax: rescale what was summed so far to the new maximum
    const float new_max = fmaxf(running_max, score);
    const float correction = expf(running_max - new_max), weight = expf(score - new_max);
    running_sum = running_sum * correction + weight;
    for (int i = 0; i < GENERIC_DIMS_PER_THREAD; ++i) {
      const long long d = threadIdx.x + static_cast<long long>(i) * blockDim.x;
      if (d < D) acc[i] = acc[i] * correction + weight * vr[d];
    }
    running_max = new_max;
  }
  float* o = out + (t * p.q_heads + h) * D;
  for (int i = 0; i < GENERIC_DIMS_PER_THREAD; ++i) {
    const long long d = threadIdx.x + static_cast<long long>(i) * blockDim.x;
    if (d < D) o[d] = running_sum > 0.f ? acc[i] / running_sum : 0.f;
  }
}

void check_count(long long n, const char* what) {
  if (n < 0) throw std::invalid_argument(std::string("cuda::") + what + ": sizes must be 0 or more");
}

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, std::int64_t n, Stream stream) {
  check_count(n, "silu_mul");
  if (n == 0) return;
  silu_mul_kernel<<<blocks_for(n), BLOCK_THREADS, 0, as_stream(stream)>>>(gate, up, out, n);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void add(const float* a, const float* b, float* out, std::int64_t n, Stream stream) {
  check_count(n, "add");
  if (n == 0) return;
  add_kernel<<<blocks_for(n), BLOCK_THREADS, 0, as_stream(stream)>>>(a, b, out, n);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void scale_rows(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale, Stream stream) {
  check_count(rows, "scale_rows");
  check_count(cols, "scale_rows");
  if (rows * cols == 0) return;
  scale_rows_kernel<<<blocks_for(rows * cols), BLOCK_THREADS, 0, as_stream(stream)>>>(x, rows, cols, row_scale);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void widen_indices(const std::int32_t* in, std::int64_t n, std::int64_t* out, Stream stream) {
  check_count(n, "widen_indices");
  if (n == 0) return;
  widen_indices_kernel<<<blocks_for(n), BLOCK_THREADS, 0, as_stream(stream)>>>(in, n,
                                                                               reinterpret_cast<long long*>(out));
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void gather_rows(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                 std::int64_t rows, float* x_sorted, Stream stream) {
  check_count(rows, "gather_rows");
  if (rows > 65535) throw std::invalid_argument("cuda::gather_rows: at most 65535 rows per call");
  if (rows == 0 || hidden <= 0) return;
  const dim3 grid(blocks_for(hidden), static_cast<unsigned>(rows));
  gather_rows_kernel<<<grid, BLOCK_THREADS, 0, as_stream(stream)>>>(
      x, hidden, reinterpret_cast<const long long*>(row_token), row_scale, x_sorted);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void scatter_add_rows(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token,
                      const float* row_scale, std::int64_t rows, float* y, Stream stream) {
  check_count(rows, "scatter_add_rows");
  if (rows == 0 || hidden <= 0) return;
  scatter_add_rows_kernel<<<blocks_for(hidden), BLOCK_THREADS, 0, as_stream(stream)>>>(
      y_sorted, hidden, reinterpret_cast<const long long*>(row_token), row_scale, rows, y);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void gemm_epilogue(const float* acc, std::int64_t m, std::int64_t n, const float* x_scale, const float* w_scale,
                   float* y, bool accumulate, Stream stream) {
  check_count(m, "gemm_epilogue");
  check_count(n, "gemm_epilogue");
  if (m * n == 0) return;
  gemm_epilogue_kernel<<<blocks_for(m * n), BLOCK_THREADS, 0, as_stream(stream)>>>(acc, m, n, x_scale, w_scale, y,
                                                                                   accumulate);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void embed_rows(TableDtype dtype, const void* data, const float* row_scales, std::int64_t rows, std::int64_t cols,
                std::int64_t first_row, const std::int32_t* ids, std::int64_t tokens, float* out, Stream stream) {
  check_count(tokens, "embed_rows");
  if (tokens > 65535) throw std::invalid_argument("cuda::embed_rows: at most 65535 tokens per call");
  if (tokens == 0 || cols <= 0) return;
  const dim3 grid(blocks_for(cols), static_cast<unsigned>(tokens));
  embed_rows_kernel<<<grid, BLOCK_THREADS, 0, as_stream(stream)>>>(dtype, data, row_scales, rows, cols, first_row, ids, out);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void attention_generic(const AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                       const float* v, float* out, Stream stream) {
  check_attention_params(p);
  if (p.head_dim > static_cast<std::int64_t>(GENERIC_THREADS) * GENERIC_DIMS_PER_THREAD)
    throw std::invalid_argument("cuda::attention_generic: head_dim must be at most 1024");
  if (p.q_tokens > 2147483647 || p.q_heads > 65535)
    throw std::invalid_argument("cuda::attention_generic: too many query tokens or heads for one launch");
  if (p.q_tokens == 0) return;
  const dim3 grid(static_cast<unsigned>(p.q_tokens), static_cast<unsigned>(p.q_heads));
  attention_generic_kernel<<<grid, GENERIC_THREADS, 0, as_stream(stream)>>>(
      p, q, reinterpret_cast<const long long*>(q_pos), k, v, out);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

}  // namespace moeplan::kernels::cuda
