// Fast elementwise ops: the instruction-set loops of ctx.path over chunks of 16 Ki floats spread on the pool.
#include <algorithm>

#include "kernels/activation.hpp"
#include "kernels/cpu/isa.hpp"

namespace moeplan::kernels {

namespace {

constexpr std::int64_t kChunkFloats = 16 * 1024;  // 64 KiB per task: large enough to hide the hand-off

// fn(begin, end) over [0, n) in chunks, on the pool when there is more than one chunk.
template <class Fn>
void for_chunks(const CpuContext& ctx, std::int64_t n, const Fn& fn) {
  const std::int64_t chunks = (n + kChunkFloats - 1) / kChunkFloats;
  const auto run = [&](std::int64_t c) { fn(c * kChunkFloats, std::min(n, (c + 1) * kChunkFloats)); };
  if (ctx.pool && chunks > 1)
    ctx.pool->parallel_for(0, chunks, run);
  else
    for (std::int64_t c = 0; c < chunks; ++c) run(c);
}

}  // namespace

void silu_mul(const CpuContext& ctx, const float* gate, const float* up, float* out, std::int64_t n) {
  const cpu::IsaKernels& isa = cpu::isa_kernels(ctx.path);
  for_chunks(ctx, n, [&](std::int64_t b, std::int64_t e) { isa.silu_mul(gate + b, up + b, out + b, e - b); });
}

void silu_mul_fused(const CpuContext& ctx, const float* gate_up, std::int64_t rows, std::int64_t inter, float* out) {
  const cpu::IsaKernels& isa = cpu::isa_kernels(ctx.path);
  const auto run_row = [&](std::int64_t r) {
    isa.silu_mul(gate_up + r * 2 * inter, gate_up + r * 2 * inter + inter, out + r * inter, inter);
  };
  if (ctx.pool && rows > 1)
    ctx.pool->parallel_for(0, rows, run_row);
  else if (rows == 1)
    silu_mul(ctx, gate_up, gate_up + inter, out, inter);  // one row (decode): split the row itself
  else
    for (std::int64_t r = 0; r < rows; ++r) run_row(r);
}

void add(const CpuContext& ctx, const float* a, const float* b, float* out, std::int64_t n) {
  const cpu::IsaKernels& isa = cpu::isa_kernels(ctx.path);
  for_chunks(ctx, n, [&](std::int64_t lo, std::int64_t hi) { isa.add(a + lo, b + lo, out + lo, hi - lo); });
}

void scale(const CpuContext& ctx, const float* x, float s, float* out, std::int64_t n) {
  const cpu::IsaKernels& isa = cpu::isa_kernels(ctx.path);
  for_chunks(ctx, n, [&](std::int64_t lo, std::int64_t hi) { isa.scale(x + lo, s, out + lo, hi - lo); });
}

}  // namespace moeplan::kernels
