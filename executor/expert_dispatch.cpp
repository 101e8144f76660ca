// executor/expert_dispatch: expert-parallel row bookkeeping (see expert_dispatch.hpp).
#include "executor/expert_dispatch.hpp"

#include <stdexcept>
#include <string>

namespace moeplan::executor {

std::pair<std::int64_t, std::int64_t> group_rows(const kernels::ExpertDispatch& dispatch, std::int64_t per, std::int64_t g) {
  const auto& off = dispatch.expert_offsets;
  return {off[static_cast<std::size_t>(g * per)], off[static_cast<std::size_t>((g + 1) * per)]};
}

std::vector<std::int64_t> group_expert_counts(const kernels::ExpertDispatch& dispatch, std::int64_t per, std::int64_t g) {
  std::vector<std::int64_t> counts(static_cast<std::size_t>(per));
  for (std::int64_t e = 0; e < per; ++e) {
    const std::size_t eg = static_cast<std::size_t>(g * per + e);
    counts[static_cast<std::size_t>(e)] = dispatch.expert_offsets[eg + 1] - dispatch.expert_offsets[eg];
  }
  return counts;
}

ReceivedRows group_by_local_expert(const std::vector<std::vector<std::int64_t>>& counts) {
  const std::size_t sources = counts.size(), per = sources > 0 ? counts.front().size() : 0;
  ReceivedRows out;
  out.first_of.assign(sources + 1, 0);
  for (std::size_t r = 0; r < sources; ++r) {
    if (counts[r].size() != per)
      throw std::invalid_argument("group_by_local_expert: source " + std::to_string(r) + " sent counts for " +
                                  std::to_string(counts[r].size()) + " experts, source 0 for " + std::to_string(per));
    std::int64_t n = 0;
    for (const std::int64_t c : counts[r]) {
      if (c < 0) throw std::invalid_argument("group_by_local_expert: a negative row count");
      n += c;
    }
    out.first_of[r + 1] = out.first_of[r] + n;
  }
  // Walk the experts, and for each one every source's rows for it (they follow that source's earlier experts).
  out.row_of.reserve(static_cast<std::size_t>(out.rows()));
  out.expert_offsets.assign(per + 1, 0);
  std::vector<std::int64_t> next(out.first_of.begin(), out.first_of.end() - 1);  // next row of each source
  for (std::size_t e = 0; e < per; ++e) {
    for (std::size_t r = 0; r < sources; ++r)
      for (std::int64_t i = 0; i < counts[r][e]; ++i) out.row_of.push_back(next[r]++);
    out.expert_offsets[e + 1] = static_cast<std::int64_t>(out.row_of.size());
  }
  return out;
}

std::vector<std::int64_t> exclusive_offsets(const std::vector<std::int64_t>& counts) {
  std::vector<std::int64_t> offsets(counts.size() + 1, 0);
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] < 0) throw std::invalid_argument("exclusive_offsets: a negative count");
    offsets[i + 1] = offsets[i] + counts[i];
  }
  return offsets;
}

}  // namespace moeplan::executor
