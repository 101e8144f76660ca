// kernels/norm: RMSNorm. y = w ⊙ x / sqrt(mean(x²) + eps), accumulated in fp32 (Llama, Mixtral, Qwen3,
// DeepSeek-V3, gpt-oss all use this form: transformers' Llama4TextRMSNorm and its peers; docs/executor.md), and its weightless form
// (Llama 4 qk-norm). Included by kernels/cuda/norm.cu: keep this header C++17.
#pragma once
#include <cstdint>

#include "moeplan/config.hpp"

namespace moeplan::kernels {

struct CpuContext;  // kernels/cpu_features.hpp (not included: this header is also compiled by nvcc)

// Plain reference (kernels/ref/norm.cpp), the spec every fast version is checked against.
// x: [tokens, hidden], w: [hidden], y: [tokens, hidden]; y may alias x.
void rmsnorm_ref(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps);

// Fast version (kernels/cpu/norm.cpp): vectorised fp32 sum of squares, threads over tokens.
void rmsnorm(const CpuContext& ctx, const float* x, const float* w, float* y, std::int64_t tokens,
             std::int64_t hidden, float eps);

// The weightless form y = x / sqrt(mean(x²) + eps) over each row: Llama 4's qk-norm (Llama4TextL2Norm), applied to
// every q and k head vector after RoPE (rows = tokens * heads, dim = head_dim, eps 1e-5).
// x: [rows, dim], y: [rows, dim]; y may alias x.
void rms_normalize_ref(const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps);
void rms_normalize(const CpuContext& ctx, const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps);

// The CUDA version (device pointers, a stream) is kernels::cuda::rmsnorm in kernels/gpu_ops.hpp.

}  // namespace moeplan::kernels
