// common/stats: the median and linear-interpolated quantiles (numpy's default method) of a sample, for error
// summaries of measured-against-predicted rows.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace moeplan {

// The q-quantile of v, q in [0, 1]: between the two nearest order statistics, linearly (0 for an empty sample).
inline double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto i = static_cast<std::size_t>(std::floor(pos));
  if (i + 1 >= v.size()) return v.back();
  return v[i] + (pos - static_cast<double>(i)) * (v[i + 1] - v[i]);
}

// The middle value, or the mean of the two middle values (0 for an empty sample).
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace moeplan
