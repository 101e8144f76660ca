// common/numeric: an integer count as a double, for the formulas that mix counts (tokens, experts, GPUs) with
// measures (seconds, bytes): one explicit conversion, so that -Wconversion stays quiet and the formulas stay short.
#pragma once
#include <cstdint>

namespace moeplan {

inline constexpr double to_double(std::int64_t v) { return static_cast<double>(v); }

}  // namespace moeplan
