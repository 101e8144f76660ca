// Reference elementwise ops: silu(gate) * up in double, add and scale in fp32 (exact as written).
#include <cmath>

#include "kernels/activation.hpp"

namespace moeplan::kernels {

void silu_mul_ref(const float* gate, const float* up, float* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    // silu(g) = g * sigmoid(g) = g / (1 + exp(-g)), times the up projection
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void silu_mul_fused_ref(const float* gate_up, std::int64_t rows, std::int64_t inter, float* out) {
  // Each row holds its gate half then its up half.
  for (std::int64_t r = 0; r < rows; ++r)
    silu_mul_ref(gate_up + r * 2 * inter, gate_up + r * 2 * inter + inter, out + r * inter, inter);
}

void add_ref(const float* a, const float* b, float* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void scale_ref(const float* x, float s, float* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = x[i] * s;
}

}  // namespace moeplan::kernels
