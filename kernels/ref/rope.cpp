// Reference RoPE: every (token, head, pair) rotated on its own, the rotation in double from fp32 cos/sin.
#include <cmath>
#include <stdexcept>

#include "kernels/rope.hpp"

namespace moeplan::kernels {

void rope_ref(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim,
              const std::int64_t* positions, const float* inv_freq, RopeLayout layout) {
  if (head_dim % 2 != 0) throw std::invalid_argument("rope: head_dim must be even");
  const std::int64_t pairs = head_dim / 2;
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t h = 0; h < heads; ++h) {
      float* head = x + (t * heads + h) * head_dim;
      for (std::int64_t i = 0; i < pairs; ++i) {
        // 1. the angle as HF forms it: fp32 position times fp32 frequency, then fp32 cos and sin
        const float angle = static_cast<float>(positions[t]) * inv_freq[i];
        const double c = static_cast<float>(std::cos(static_cast<double>(angle)));
        const double s = static_cast<float>(std::sin(static_cast<double>(angle)));
        // 2. the pair this layout rotates
        const std::int64_t a = layout == RopeLayout::interleaved ? 2 * i : i;
        const std::int64_t b = layout == RopeLayout::interleaved ? 2 * i + 1 : i + pairs;
        // 3. rotate (x_a, x_b) by the angle: the complex product (x_a + i x_b)(c + i s)
        const double xa = head[a], xb = head[b];
        head[a] = static_cast<float>(xa * c - xb * s);
        head[b] = static_cast<float>(xb * c + xa * s);
      }
    }
  }
}

std::vector<float> rope_default_inv_freq(float theta, std::int64_t head_dim) {
  std::vector<float> inv_freq(static_cast<std::size_t>(head_dim / 2));
  for (std::int64_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[static_cast<std::size_t>(i)] = 1.0f / std::pow(theta, exponent);
  }
  return inv_freq;
}

}  // namespace moeplan::kernels
