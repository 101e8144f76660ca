// executor/sampling: greedy and seeded temperature / top-p sampling of one token from logits (see session.hpp).
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "common/splitmix.hpp"
#include "executor/session.hpp"

namespace moeplan::executor {

std::int32_t sample(const float* logits, std::int64_t vocab, float temperature, float top_p, std::uint64_t& rng_state) {
  if (temperature <= 0) return static_cast<std::int32_t>(std::max_element(logits, logits + vocab) - logits);
  const double u = splitmix64_unit(rng_state);  // the same stream on every platform
  std::vector<std::pair<double, std::int32_t>> p(static_cast<std::size_t>(vocab));
  const double mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (std::int64_t i = 0; i < vocab; ++i) {
    p[static_cast<std::size_t>(i)] = {std::exp((logits[i] - mx) / temperature), static_cast<std::int32_t>(i)};
    sum += p[static_cast<std::size_t>(i)].first;
  }
  std::sort(p.begin(), p.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  // Keep the smallest prefix whose mass reaches top_p, then draw within it.
  double kept = 0;
  std::size_t n = 0;
  while (n < p.size() && (n == 0 || kept < top_p * sum)) kept += p[n++].first;
  double target = u * kept, acc = 0;
  for (std::size_t i = 0; i < n; ++i) {
    acc += p[i].first;
    if (acc >= target) return p[i].second;
  }
  return p[n - 1].second;
}

}  // namespace moeplan::executor
