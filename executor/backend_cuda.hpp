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

// How the CUDA backend runs grouped_matmul over `experts` resident views (one projection of a layer's experts):
//   bf16        one cuda::grouped_gemm_bf16 launch on the rows converted to BF16: BF16 weights without row scales,
//               K a multiple of 8 (the kernel's 16-byte loads)
//   fp8         the rows quantised per token (cuda::quantize_fp8_per_token), then one cuda::grouped_gemm_fp8 launch
//               with gpu::Fp8ScaleLayout::per_channel: FP8 weights with row scales, of a shape the per-expert FP8
//               GEMM takes too (N and K multiples of 16, which covers the kernel's K multiple of 8), so whether a
//               model runs does not depend on how its experts were laid out
//   per_expert  grouped_matmul_per_expert: any other dtype or shape, or experts not laid out as one group
// Both grouped paths need every expert of one dtype and shape, laid out one after the other as the kernel's
// [E, N, K] array (resident_group's block), and any row scales likewise as [E, N] (index e * N + n, the per-channel
// layout of gpu::fp8_weight_scale_index).
enum class CudaGroupedPath { bf16, fp8, per_expert };
CudaGroupedPath plan_cuda_grouped_matmul(const kernels::WeightView* weights, std::int64_t experts);

// Whether cuda::attention_prefill's tiled kernel takes this head size (32, 64, 128, 256); other sizes run
// cuda::attention_generic (up to 1024).
bool cuda_attention_tiled(std::int64_t head_dim);

// grouped_matmul expert by expert through b.matmul, as the CPU reference runs it and the CUDA backend does where
// plan_cuda_grouped_matmul says per_expert (each expert's rows are contiguous in x_sorted [R, K] and y_sorted [R, N];
// expert_offsets and weights are host arrays). The grouped GEMMs take the per-expert cuBLASLt path's operands (x
// rounded to BF16, or quantised per token to the same FP8 codes and scales) and accumulate in fp32 in another
// summation order; both FP8 paths multiply each sum by the token's scale and the weight row's scale.
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
