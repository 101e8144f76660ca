// executor/expert_dispatch: the host-side bookkeeping of expert-parallel dispatch, shared by every backend and
// communicator. The permutation itself (token -> expert order, rows per expert) is kernels::build_expert_dispatch
// (kernels/router.hpp, reference in kernels/ref/router.cpp); this file adds what expert parallelism needs around it:
// which rows go to which rank, how the rows a rank receives from every source regroup by its local experts, and the
// counts and offsets of an all-to-all with a different length per peer (the ncclSend/ncclRecv pairs of executor/nccl).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/router.hpp"

namespace moeplan::executor {

// Rows [first, second) of `dispatch` that belong to expert group g, the experts [g * per, (g + 1) * per): rows are
// sorted by expert, so a group's rows are contiguous.
std::pair<std::int64_t, std::int64_t> group_rows(const kernels::ExpertDispatch& dispatch, std::int64_t per, std::int64_t g);

// Rows of each of group g's `per` experts in `dispatch`: [per].
std::vector<std::int64_t> group_expert_counts(const kernels::ExpertDispatch& dispatch, std::int64_t per, std::int64_t g);

// How the rows a rank received regroup by its local experts. counts[r][e]: rows source rank r sent for local expert
// e (every source sends its rows expert by expert, e = 0 .. per-1); received rows are numbered in arrival order,
// source 0's first.
struct ReceivedRows {
  std::vector<std::int64_t> first_of;        // [sources + 1]: source r's rows are received rows [first_of[r], first_of[r+1])
  std::vector<std::int64_t> row_of;          // [R]: grouped row i (expert by expert, sources in order) is received row row_of[i]
  std::vector<std::int64_t> expert_offsets;  // [per + 1]: local expert e's grouped rows are [expert_offsets[e], [e+1])
  std::int64_t rows() const { return first_of.back(); }
};
// Throws std::invalid_argument when the sources disagree on the number of experts or a count is negative.
ReceivedRows group_by_local_expert(const std::vector<std::vector<std::int64_t>>& counts);

// offsets[i] = counts[0] + ... + counts[i-1]: [counts.size() + 1] (an all-to-all's displacements; the last entry is
// the total). Throws std::invalid_argument on a negative count.
std::vector<std::int64_t> exclusive_offsets(const std::vector<std::int64_t>& counts);

}  // namespace moeplan::executor
