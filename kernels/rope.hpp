// kernels/rope: rotary position embedding applied in place to q or k, in the two pairings models use. The caller
// computes inv_freq (rope_theta and any rope_scaling, e.g. Llama 3's, are the model's business).
// rope_ref (kernels/ref/rope.cpp) is the spec; rope (kernels/cpu/rope.cpp) is the fast version.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/cpu_features.hpp"

namespace moeplan::kernels {

// Which elements of a head vector form the rotated pairs (i = 0 .. D/2-1, each rotated by angle pos * inv_freq[i]):
//   interleaved  (2i, 2i+1): Llama 4 (HF view_as_complex(x.reshape(..., -1, 2)) times freqs_cis)
//   half         (i, i + D/2): Llama 1-3, Mixtral, Qwen3 (HF rotate_half, "neox" style)
enum class RopeLayout { interleaved, half };

// For each token t, head h and pair (a, b) of the layout, with angle = float(positions[t]) * inv_freq[i] rounded
// to fp32 (as HF forms it), c = cos(angle), s = sin(angle):
//   x[a] <- x[a] * c - x[b] * s,   x[b] <- x[b] * c + x[a] * s
//   x: [tokens, heads, head_dim] (head_dim even); positions: [tokens]; inv_freq: [head_dim / 2]
void rope_ref(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim,
              const std::int64_t* positions, const float* inv_freq, RopeLayout layout);

// Fast version: cos/sin computed once per (token, pair) and shared by all heads; threads over tokens.
void rope(const CpuContext& ctx, float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim,
          const std::int64_t* positions, const float* inv_freq, RopeLayout layout);

// The unscaled frequencies inv_freq[i] = theta^(-2i / head_dim), computed in fp32 as HF does
// (1 / theta ** (arange(0, D, 2) / D)). Models with rope_scaling adjust these before calling rope.
std::vector<float> rope_default_inv_freq(float theta, std::int64_t head_dim);

}  // namespace moeplan::kernels
