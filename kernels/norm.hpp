// kernels/norm: RMSNorm. y = w ⊙ x / sqrt(mean(x²) + eps), accumulated in fp32 (Llama, Mixtral, Qwen3,
// DeepSeek-V3, gpt-oss all use this form; ../shared/reference/llama4-forward.md).
#pragma once
#include <cstdint>

#include "moeplan/config.hpp"

namespace moeplan::kernels {

// Plain reference (kernels/ref/norm.cpp), the spec every fast version is checked against.
// x: [tokens, hidden], w: [hidden], y: [tokens, hidden]; y may alias x.
void rmsnorm_ref(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps);

#if MOEPLAN_HAVE_CUDA
// CUDA version (kernels/cuda/norm.cu). Host pointers in and out: it copies to the device, runs one block per
// token, and copies back; for tests and calibration, not for the executor's hot path.
void rmsnorm_cuda_host(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps);
#endif

}  // namespace moeplan::kernels
