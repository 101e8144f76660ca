// Fast routing: router_topk runs the reference per-token computation on the pool (E is at most a few hundred, so
// the selection is cheap next to the router matmul); gather_rows and scatter_add_rows move expert rows.
#include <algorithm>

#include "kernels/router.hpp"

namespace moeplan::kernels {

void router_topk(const CpuContext& ctx, const float* logits, std::int64_t tokens, std::int64_t experts,
                 std::int64_t k, RouterScoring scoring, std::int32_t* ids, float* weights) {
  constexpr std::int64_t kTokensPerTask = 64;
  const std::int64_t tasks = (tokens + kTokensPerTask - 1) / kTokensPerTask;
  const auto run = [&](std::int64_t task) {
    const std::int64_t t0 = task * kTokensPerTask, n = std::min(kTokensPerTask, tokens - t0);
    router_topk_ref(logits + t0 * experts, n, experts, k, scoring, ids + t0 * k, weights + t0 * k);
  };
  if (ctx.pool && tasks > 1)
    ctx.pool->parallel_for(0, tasks, run);
  else
    for (std::int64_t task = 0; task < tasks; ++task) run(task);
}

void gather_rows(const CpuContext& ctx, const float* x, std::int64_t hidden, const std::int64_t* row_token,
                 const float* row_scale, std::int64_t rows, float* x_sorted) {
  const auto run = [&](std::int64_t r) {
    const float* src = x + row_token[r] * hidden;
    float* dst = x_sorted + r * hidden;
    if (row_scale) {
      const float s = row_scale[r];
      for (std::int64_t i = 0; i < hidden; ++i) dst[i] = src[i] * s;
    } else {
      std::copy(src, src + hidden, dst);
    }
  };
  if (ctx.pool && rows > 1)
    ctx.pool->parallel_for(0, rows, run);
  else
    for (std::int64_t r = 0; r < rows; ++r) run(r);
}

void scatter_add_rows(const CpuContext& ctx, const float* y_sorted, std::int64_t hidden,
                      const std::int64_t* row_token, const float* row_scale, std::int64_t rows, float* y) {
  // Threads own column ranges, so two rows of the same token never race and every element sums in row order.
  constexpr std::int64_t kColumns = 512;
  const std::int64_t tasks = (hidden + kColumns - 1) / kColumns;
  const auto run = [&](std::int64_t task) {
    const std::int64_t c0 = task * kColumns, c1 = std::min(hidden, c0 + kColumns);
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* src = y_sorted + r * hidden;
      float* dst = y + row_token[r] * hidden;
      const float s = row_scale ? row_scale[r] : 1.0f;
      if (row_scale)
        for (std::int64_t i = c0; i < c1; ++i) dst[i] += src[i] * s;
      else
        for (std::int64_t i = c0; i < c1; ++i) dst[i] += src[i];
    }
  };
  if (ctx.pool && tasks > 1)
    ctx.pool->parallel_for(0, tasks, run);
  else
    for (std::int64_t task = 0; task < tasks; ++task) run(task);
}

}  // namespace moeplan::kernels
