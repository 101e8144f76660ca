// kernels/matmul: y = x · dequant(W)^T for fp32 activations and f32/bf16/f16/fp8/int8 weights stored as nn.Linear
// does ([out, in], row-major), and the grouped form the MoE layer uses (one weight matrix per expert, each applied to
// the rows routed to it). The *_ref functions (kernels/ref/matmul.cpp) are the spec; the fast ones
// (kernels/cpu/matmul.cpp) dequantise in registers or into small packed tiles, never a full copy of W.
#pragma once
#include <cstdint>

#include "kernels/cpu_features.hpp"
#include "kernels/weights.hpp"

namespace moeplan::kernels {

// y[m, n] = sum_k x[m, k] * dequant(w)[n, k]          (accumulate: y[m, n] += that sum)
// x: [M, K] with K = w.cols; y: [M, N] with N = w.rows; y must not overlap x. M = 0 does nothing.
void matmul_ref(const float* x, std::int64_t M, const WeightView& w, float* y, bool accumulate = false);

// Fast version. Small M (decode; M <= 16) streams the rows of W, converting in registers, each weight byte read
// once per 4 rows of x, with the rows of W split over the pool; larger M (prefill) packs KC x NC blocks of
// dequant(W) and x and runs a register-blocked FMA micro-kernel, threads splitting N (and M when N is narrow).
void matmul(const CpuContext& ctx, const float* x, std::int64_t M, const WeightView& w, float* y,
            bool accumulate = false);

// Grouped expert matmul over rows already gathered by expert (see kernels/router.hpp: build_expert_dispatch,
// gather_rows, scatter_add_rows, which do the permutation and apply the router weight; this function does not).
//   x_sorted: [R, K]; rows expert_offsets[e] .. expert_offsets[e+1]-1 belong to expert e
//   expert_offsets: [experts + 1], non-decreasing, expert_offsets[0] = 0, expert_offsets[experts] = R
//   weights: [experts] views, all with the same rows (N), cols (K) and dtype
//   y_sorted: [R, N]; y_sorted[r] = x_sorted[r] · dequant(weights[e])^T for the expert e that owns row r
// Experts with no rows are skipped (their weights are not read).
void grouped_matmul_ref(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t experts,
                        const WeightView* weights, float* y_sorted, bool accumulate = false);

// Fast version: one pool job over (expert, block of output columns) items, each running the matmul kernel above.
void grouped_matmul(const CpuContext& ctx, const float* x_sorted, const std::int64_t* expert_offsets,
                    std::int64_t experts, const WeightView* weights, float* y_sorted, bool accumulate = false);

// dequant(w) rows [row_begin, row_end) into out: [row_end - row_begin, K] fp32 (e.g. an embedding lookup of a
// BF16 table, one row per token). Vectorised on ctx.path; single-threaded.
void dequantize_rows(const CpuContext& ctx, const WeightView& w, std::int64_t row_begin, std::int64_t row_end,
                     float* out);

}  // namespace moeplan::kernels
