// Fast RoPE: per token, cos/sin of each pair's angle computed once (as rope_ref forms them) and applied to every
// head in fp32; threads over tokens. Plain loops: the rotation is a few flops per element, far below the cost of
// the matmuls around it, and the compiler vectorises the half layout.
#include <cmath>
#include <stdexcept>
#include <vector>

#include "kernels/rope.hpp"

namespace moeplan::kernels {

void rope(const CpuContext& ctx, float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim,
          const std::int64_t* positions, const float* inv_freq, RopeLayout layout) {
  if (head_dim % 2 != 0) throw std::invalid_argument("rope: head_dim must be even");
  const std::int64_t pairs = head_dim / 2;
  const auto run_token = [&](std::int64_t t) {
    thread_local std::vector<float> cos_sin;
    cos_sin.resize(static_cast<std::size_t>(2 * pairs));
    float* c = cos_sin.data();
    float* s = c + pairs;
    for (std::int64_t i = 0; i < pairs; ++i) {
      const float angle = static_cast<float>(positions[t]) * inv_freq[i];
      c[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      s[i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
    for (std::int64_t h = 0; h < heads; ++h) {
      float* head = x + (t * heads + h) * head_dim;
      if (layout == RopeLayout::half) {
        float* lo = head;
        float* hi = head + pairs;
        for (std::int64_t i = 0; i < pairs; ++i) {
          const float a = lo[i], b = hi[i];
          lo[i] = a * c[i] - b * s[i];
          hi[i] = b * c[i] + a * s[i];
        }
      } else {
        for (std::int64_t i = 0; i < pairs; ++i) {
          const float a = head[2 * i], b = head[2 * i + 1];
          head[2 * i] = a * c[i] - b * s[i];
          head[2 * i + 1] = b * c[i] + a * s[i];
        }
      }
    }
  };
  if (ctx.pool && tokens > 1)
    ctx.pool->parallel_for(0, tokens, run_token);
  else
    for (std::int64_t t = 0; t < tokens; ++t) run_token(t);
}

}  // namespace moeplan::kernels
