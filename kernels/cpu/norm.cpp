// Fast RMSNorm (weighted and weightless): the instruction-set row kernel of ctx.path, threads over row blocks.
#include <algorithm>

#include "kernels/cpu/isa.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/norm.hpp"

namespace moeplan::kernels {

namespace {

void rms_parallel(const CpuContext& ctx, const float* x, const float* w, float* y, std::int64_t rows,
                  std::int64_t dim, float eps) {
  if (rows <= 0 || dim <= 0) return;
  const cpu::IsaKernels& isa = cpu::isa_kernels(ctx.path);
  // Blocks of rows of about 64 Ki floats: enough work per task to hide the hand-off.
  const std::int64_t block = std::max<std::int64_t>(1, (64 * 1024) / dim);
  const std::int64_t blocks = (rows + block - 1) / block;
  const auto run = [&](std::int64_t b) {
    const std::int64_t r0 = b * block, r1 = std::min(rows, r0 + block);
    isa.rms_rows(x + r0 * dim, w, y + r0 * dim, r1 - r0, dim, eps);
  };
  if (ctx.pool && blocks > 1)
    ctx.pool->parallel_for(0, blocks, run);
  else
    for (std::int64_t b = 0; b < blocks; ++b) run(b);
}

}  // namespace

void rmsnorm(const CpuContext& ctx, const float* x, const float* w, float* y, std::int64_t tokens,
             std::int64_t hidden, float eps) {
  rms_parallel(ctx, x, w, y, tokens, hidden, eps);
}

void rms_normalize(const CpuContext& ctx, const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps) {
  rms_parallel(ctx, x, nullptr, y, rows, dim, eps);
}

}  // namespace moeplan::kernels
