// common/numeric: an integer count as a double, for the formulas that mix counts (tokens, experts, GPUs) with
// measures (seconds, bytes): one explicit conversion, so that -Wconversion stays quiet and the formulas stay short.
#pragma once
#include <cstdint>
#include <vector>

namespace moeplan {

inline constexpr double to_double(std::int64_t v) { return static_cast<double>(v); }

// Whether every size is at least 1 and each larger than the one before: the rule for a list of CUDA-graph batch
// sizes, wherever one is read (data/engines.yaml, data/validation/public_points.yaml, --cuda-graph-batch-sizes).
inline bool positive_ascending(const std::vector<std::int64_t>& sizes) {
  for (std::size_t i = 0; i < sizes.size(); ++i)
    if (sizes[i] < 1 || (i > 0 && sizes[i] <= sizes[i - 1])) return false;
  return true;
}

}  // namespace moeplan
