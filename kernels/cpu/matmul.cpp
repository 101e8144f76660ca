// Fast matmul and grouped expert matmul: splits the output into (rows, columns) blocks, runs them on the thread
// pool, and leaves each block to the instruction-set kernel of ctx.path (isa_kernels.inc: GEMV for small M,
// packed GEMM otherwise), or, for BF16 weights when the context allows BF16 activations, to the AMX tiles (amx.hpp).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/amx.hpp"
#include "kernels/cpu/isa.hpp"
#include "kernels/matmul.hpp"

namespace moeplan::kernels {

namespace {

// One block of work: rows [m0, m1) and columns [n0, n1) of one matrix (expert) of the output.
struct Block {
  std::int64_t expert = 0;
  std::int64_t m0 = 0, m1 = 0, n0 = 0, n1 = 0;
  bool gemm = false;  // the matrix (all its rows, not only this block's) has more rows than the GEMV takes
};

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
std::int64_t round_up(std::int64_t a, std::int64_t b) { return ceil_div(a, b) * b; }

// Per-thread packing buffer, kept between calls.
float* thread_scratch(std::int64_t floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < static_cast<std::size_t>(floats)) buffer.resize(static_cast<std::size_t>(floats));
  return buffer.data();
}

int thread_count(const CpuContext& ctx) { return ctx.pool ? ctx.pool->size() : 1; }

// Cut an M x N output into blocks for `threads` threads, about 4 per thread so that the dynamic scheduler can even
// out threads that run slower (a shared or busy machine).
//   GEMV (small M): blocks of output columns (weight rows), at most 256 each; every block covers all M rows, so W
//   is read once.
//   GEMM: column blocks of at most NC and at least 256 columns (each block packs x again, so narrow blocks cost
//   packing); when that leaves too few blocks (narrow N, e.g. a router), rows are split as well.
void plan_blocks(const cpu::IsaKernels& isa, std::int64_t expert, std::int64_t M, std::int64_t N, int threads,
                 std::vector<Block>& blocks) {
  if (M <= 0 || N <= 0) return;
  const std::int64_t target = 4 * static_cast<std::int64_t>(threads);
  if (M <= isa.gemv_max_rows) {
    const std::int64_t width = std::clamp<std::int64_t>(round_up(ceil_div(N, target), 4), 4, 256);
    for (std::int64_t n0 = 0; n0 < N; n0 += width) blocks.push_back({expert, 0, M, n0, std::min(N, n0 + width)});
    return;
  }
  const std::int64_t nr = isa.gemm.nr, mr = isa.gemm.mr;
  const std::int64_t width = std::min(isa.gemm.nc, std::max<std::int64_t>(256, round_up(ceil_div(N, target), nr)));
  const std::int64_t column_blocks = ceil_div(N, width);
  const std::int64_t row_parts =
      column_blocks >= target ? 1 : std::clamp<std::int64_t>(ceil_div(target, column_blocks), 1, M / (4 * mr) + 1);
  const std::int64_t height = round_up(ceil_div(M, row_parts), mr);
  for (std::int64_t n0 = 0; n0 < N; n0 += width)
    for (std::int64_t m0 = 0; m0 < M; m0 += height)
      blocks.push_back({expert, m0, std::min(M, m0 + height), n0, std::min(N, n0 + width), true});
}

void check_view(const WeightView& w, const char* what) {
  if (w.rows < 0 || w.cols < 0 || (w.rows * w.cols > 0 && w.data == nullptr))
    throw std::invalid_argument(std::string(what) + ": weight view has negative sizes or no data");
}

// Run the blocks on the pool. x_rows[e], y_rows[e]: expert e's first row of x and of y; weights[e]: its W.
// Blocks of BF16 matrices with more rows than the GEMV takes go to the AMX tiles when ctx.bf16_activations allows
// it and this CPU has them (decided per matrix, so every row of a matmul is rounded alike however it is split).
void run_blocks(const CpuContext& ctx, const cpu::IsaKernels& isa, const std::vector<Block>& blocks,
                const float* const* x_rows, const WeightView* weights, float* const* y_rows, bool accumulate) {
  const bool amx = amx_bf16_active(ctx);
  const auto run_one = [&](std::int64_t i) {
    const Block& b = blocks[static_cast<std::size_t>(i)];
    const WeightView& w = weights[b.expert];
    const float* xb = x_rows[b.expert] + b.m0 * w.cols;
    float* yb = y_rows[b.expert] + b.m0 * w.rows;
    if (amx && b.gemm && w.dtype == WeightDtype::bf16)
      cpu::amx_bf16_matmul_block(xb, b.m1 - b.m0, w, b.n0, b.n1, yb, w.rows, accumulate);
    else
      isa.matmul_block(xb, b.m1 - b.m0, w, b.n0, b.n1, yb, w.rows, accumulate,
                       thread_scratch(isa.matmul_scratch_floats));
  };
  const auto count = static_cast<std::int64_t>(blocks.size());
  if (ctx.pool && count > 1)
    ctx.pool->parallel_for(0, count, run_one);
  else
    for (std::int64_t i = 0; i < count; ++i) run_one(i);
}

}  // namespace

void matmul(const CpuContext& ctx, const float* x, std::int64_t M, const WeightView& w, float* y, bool accumulate) {
  check_view(w, "matmul");
  if (M < 0) throw std::invalid_argument("matmul: M must be non-negative");
  if (M == 0 || w.rows == 0) return;
  const cpu::IsaKernels& isa = cpu::isa_kernels(ctx.path);
  std::vector<Block> blocks;
  plan_blocks(isa, 0, M, w.rows, thread_count(ctx), blocks);
  run_blocks(ctx, isa, blocks, &x, &w, &y, accumulate);
}

void grouped_matmul(const CpuContext& ctx, const float* x_sorted, const std::int64_t* expert_offsets,
                    std::int64_t experts, const WeightView* weights, float* y_sorted, bool accumulate) {
  if (experts <= 0) return;
  const std::int64_t N = weights[0].rows, K = weights[0].cols;
  const cpu::IsaKernels& isa = cpu::isa_kernels(ctx.path);
  const int threads = thread_count(ctx);
  std::vector<Block> blocks;
  std::vector<const float*> x_rows(static_cast<std::size_t>(experts));
  std::vector<float*> y_rows(static_cast<std::size_t>(experts));
  for (std::int64_t e = 0; e < experts; ++e) {
    check_view(weights[e], "grouped_matmul");
    if (weights[e].rows != N || weights[e].cols != K)
      throw std::invalid_argument("grouped_matmul: expert " + std::to_string(e) + " has a different shape");
    const std::int64_t first = expert_offsets[e], rows = expert_offsets[e + 1] - first;
    if (rows < 0) throw std::invalid_argument("grouped_matmul: expert_offsets decrease");
    x_rows[static_cast<std::size_t>(e)] = x_sorted + first * K;
    y_rows[static_cast<std::size_t>(e)] = y_sorted + first * N;
    plan_blocks(isa, e, rows, N, threads, blocks);
  }
  run_blocks(ctx, isa, blocks, x_rows.data(), weights, y_rows.data(), accumulate);
}

void dequantize_rows(const CpuContext& ctx, const WeightView& w, std::int64_t row_begin, std::int64_t row_end,
                     float* out) {
  check_view(w, "dequantize_rows");
  if (row_begin < 0 || row_end > w.rows || row_begin > row_end)
    throw std::invalid_argument("dequantize_rows: rows [" + std::to_string(row_begin) + ", " +
                                std::to_string(row_end) + ") outside the matrix");
  const cpu::IsaKernels& isa = cpu::isa_kernels(ctx.path);
  for (std::int64_t r = row_begin; r < row_end; ++r) isa.dequantize_row(w, r, out + (r - row_begin) * w.cols);
}

}  // namespace moeplan::kernels
