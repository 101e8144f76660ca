// executor/backend_cuda: the CUDA backend of executor/backend.hpp, and the host-side decisions it makes (which
// kernel takes a matmul of a given weight dtype; which attention kernel a head size gets), which are plain C++
// compiled in every build so that the CPU tests check them. The backend itself (backend_cuda.cpp) is built when
// MOEPLAN_HAVE_CUDA; without it make_cuda_backend (backend_cuda_none.cpp) throws InputError.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "executor/backend.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/weights.hpp"

namespace moeplan::executor {

// How the CUDA backend runs y[M, N] (+)= x[M, K] · dequant(w)^T for a weight of this dtype and shape:
//   bf16   x rounded to BF16 (cuda::convert_bf16), cuBLASLt BF16 GEMM with fp32 accumulation
//   fp8    x quantised per token to e4m3 (cuda::quantize_fp8_per_token), cuBLASLt FP8 GEMM with unit per-tensor
//          scales, then the epilogue multiplies row m by x's scale and column n by w's row scale
//   f32    cuBLASLt fp32 GEMM (CUBLAS_COMPUTE_32F)
//   none   no CUDA kernel: `problem` names the dtype (f16, int8) or the shape (FP8 needs N and K multiples of 16)
// `epilogue`: the GEMM writes a scratch accumulator and cuda::gemm_epilogue applies the scales and the
// accumulation into y (accumulate, a row-scaled weight, or FP8).
struct CudaMatmulPlan {
  enum class Path { bf16, fp8, f32, none };
  Path path = Path::none;
  bool epilogue = false;
  std::string problem;  // set when path is none: one line, no trailing period
};
CudaMatmulPlan plan_cuda_matmul(const kernels::WeightView& w, bool accumulate);

// Whether cuda::attention_prefill's tiled kernel takes this head size (32, 64, 128, 256); other sizes run
// cuda::attention_generic (up to 1024).
bool cuda_attention_tiled(std::int64_t head_dim);

// grouped_matmul expert by expert through b.matmul, as the CPU reference runs it and the CUDA backend does for experts
// that are not BF16 weights laid out as one group (each expert's rows are contiguous in x_sorted [R, K] and y_sorted
// [R, N]; expert_offsets and weights are host arrays). The grouped BF16 GEMM has the same operands (x rounded to BF16)
// and fp32 accumulation, in another summation order.
void grouped_matmul_per_expert(Backend& b, const float* x_sorted, const std::int64_t* expert_offsets,
                               std::int64_t experts, const kernels::WeightView* weights, float* y_sorted);

// The CPU backend computing what the CUDA backend computes, as the reference validate --device cuda compares it with:
// each matmul's input rounded as plan_cuda_matmul says (BF16 through kernels::convert_bf16_ref, FP8 per token through
// kernels::quantize_fp8_per_token_ref and back), then kernels::matmul_ref in fp32; experts one by one; every other op
// the CPU backend's on `ctx`. A weight the CUDA backend refuses is refused here with the same message. The CUDA
// backend differs from it only in the order of fp32 sums and the last bits of its exp/rsqrt.
std::unique_ptr<Backend> make_cuda_numerics_cpu_backend(const kernels::CpuContext& ctx);

// The backend on CUDA device `device` (its current device for the calling thread): device memory, one
// non-blocking stream, cuBLASLt for matmuls. Throws InputError when the build has no CUDA or the device does not
// exist.
std::unique_ptr<Backend> make_cuda_backend(int device);

}  // namespace moeplan::executor
