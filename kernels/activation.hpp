// kernels/activation: the elementwise ops of the MLP and the residual stream: SwiGLU's silu(gate) * up, add and
// scale. *_ref (kernels/ref/activation.cpp) are the spec; the fast versions (kernels/cpu/activation.cpp) are
// vectorised and threaded.
#pragma once
#include <cstdint>

#include "kernels/cpu_features.hpp"

namespace moeplan::kernels {

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). gate, up, out: [n]; out may alias gate or up.
void silu_mul_ref(const float* gate, const float* up, float* out, std::int64_t n);
void silu_mul(const CpuContext& ctx, const float* gate, const float* up, float* out, std::int64_t n);

// The fused layout: gate_up: [rows, 2 * inter], each row its gate half then its up half (HF Llama 4
// experts.gate_up_proj, or the output of one matmul against [W_gate; W_up]); out: [rows, inter] (no aliasing).
void silu_mul_fused_ref(const float* gate_up, std::int64_t rows, std::int64_t inter, float* out);
void silu_mul_fused(const CpuContext& ctx, const float* gate_up, std::int64_t rows, std::int64_t inter, float* out);

// out[i] = a[i] + b[i] (residual add). out may alias a or b.
void add_ref(const float* a, const float* b, float* out, std::int64_t n);
void add(const CpuContext& ctx, const float* a, const float* b, float* out, std::int64_t n);

// out[i] = x[i] * s. out may alias x.
void scale_ref(const float* x, float s, float* out, std::int64_t n);
void scale(const CpuContext& ctx, const float* x, float s, float* out, std::int64_t n);

}  // namespace moeplan::kernels
