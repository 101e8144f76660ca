// Fast attention: work items are (query token, key slice); each runs the instruction-set online-softmax kernel
// over its slice for all heads of the token (cache rows are read whole, in order). With one slice per token the
// result is normalised in place; with several (decode, where there are fewer tokens than threads) the slices'
// partial (max, sum, accumulator) triples are merged afterwards, as flash-decoding does.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.hpp"
#include "kernels/cpu/isa.hpp"

namespace moeplan::kernels {

namespace {

float* thread_scratch(std::int64_t floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < static_cast<std::size_t>(floats)) buffer.resize(static_cast<std::size_t>(floats));
  return buffer.data();
}

// Slice s of `slices` equal parts of r.
KeyRange slice_of(KeyRange r, std::int64_t s, std::int64_t slices) {
  const std::int64_t n = std::max<std::int64_t>(r.last - r.first, 0);
  return {r.first + n * s / slices, r.first + n * (s + 1) / slices};
}

constexpr std::int64_t kMinKeysPerSlice = 256;  // below this a slice's fixed cost outweighs the parallelism

}  // namespace

void attention(const CpuContext& ctx, const AttentionParams& p, const float* q, const std::int64_t* q_pos,
               const float* k, const float* v, float* out) {
  check_attention_params(p);
  if (p.q_tokens == 0) return;
  const cpu::IsaKernels& isa = cpu::isa_kernels(ctx.path);
  const std::int64_t D = p.head_dim, Hq = p.q_heads;
  const int threads = ctx.pool ? ctx.pool->size() : 1;
  const std::int64_t scratch_floats = Hq * (D + isa.attention_key_block);
  const auto parallel = [&](std::int64_t n, const auto& fn) {
    if (ctx.pool && n > 1)
      ctx.pool->parallel_for(0, n, fn);
    else
      for (std::int64_t i = 0; i < n; ++i) fn(i);
  };

  // Slices per token: enough items for two per thread, each slice at least kMinKeysPerSlice keys.
  std::int64_t slices = 1;
  if (p.q_tokens < 2 * threads) {
    std::int64_t longest = 0;
    for (std::int64_t t = 0; t < p.q_tokens; ++t) {
      const KeyRange r = visible_keys(p, q_pos[t]);
      longest = std::max(longest, r.last - r.first);
    }
    slices = std::clamp<std::int64_t>(
        std::min((2 * threads + p.q_tokens - 1) / p.q_tokens, longest / kMinKeysPerSlice), 1, 2 * threads);
  }

  if (slices == 1) {
    parallel(p.q_tokens, [&](std::int64_t t) {
      float* buf = thread_scratch(scratch_floats + Hq * (2 + D));
      float *m = buf + scratch_floats, *l = m + Hq, *acc = l + Hq;
      const KeyRange r = visible_keys(p, q_pos[t]);
      isa.attention_partial(p, q, k, v, t, r.first, r.last, m, l, acc, buf);
      // normalise: out = acc / l (zeros when no key was visible)
      for (std::int64_t h = 0; h < Hq; ++h) {
        float* o = out + (t * Hq + h) * D;
        const float inv = l[h] > 0 ? 1.0f / l[h] : 0.0f;
        for (std::int64_t d = 0; d < D; ++d) o[d] = acc[h * D + d] * inv;
      }
    });
    return;
  }

  // Split-K: partial results per (token, slice), then a merge per token.
  const std::int64_t parts = p.q_tokens * slices;
  std::vector<float> part_m(static_cast<std::size_t>(parts * Hq)), part_l(static_cast<std::size_t>(parts * Hq));
  std::vector<float> part_acc(static_cast<std::size_t>(parts * Hq * D));
  parallel(parts, [&](std::int64_t part) {
    const std::int64_t t = part / slices, s = part % slices;
    const KeyRange r = slice_of(visible_keys(p, q_pos[t]), s, slices);
    isa.attention_partial(p, q, k, v, t, r.first, r.last, part_m.data() + part * Hq, part_l.data() + part * Hq,
                          part_acc.data() + part * Hq * D, thread_scratch(scratch_floats));
  });
  parallel(p.q_tokens * Hq, [&](std::int64_t th) {
    const std::int64_t t = th / Hq, h = th % Hq;
    // the largest slice maximum; each slice's sums are rescaled to it
    float m_max = -std::numeric_limits<float>::infinity();
    for (std::int64_t s = 0; s < slices; ++s)
      m_max = std::max(m_max, part_m[static_cast<std::size_t>((t * slices + s) * Hq + h)]);
    float* o = out + (t * Hq + h) * D;
    std::fill(o, o + D, 0.0f);
    if (m_max == -std::numeric_limits<float>::infinity()) return;  // no visible key
    float l_total = 0;
    for (std::int64_t s = 0; s < slices; ++s) {
      const std::int64_t part = t * slices + s;
      const auto at = static_cast<std::size_t>(part * Hq + h);
      if (part_l[at] == 0) continue;
      const float w = std::exp(part_m[at] - m_max);
      l_total += w * part_l[at];
      const float* acc = part_acc.data() + (part * Hq + h) * D;
      for (std::int64_t d = 0; d < D; ++d) o[d] += w * acc[d];
    }
    for (std::int64_t d = 0; d < D; ++d) o[d] /= l_total;
  });
}

}  // namespace moeplan::kernels
