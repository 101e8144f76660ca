// Helpers for the kernel tests: seeded inputs, the tolerance check |got - ref| <= abs + rel * |ref| (NaN matches
// only NaN), and the code paths / pools every fast kernel is run with.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu_features.hpp"
#include "kernels/thread_pool.hpp"

namespace moeplan::test {

inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// n seeded integers uniform in [0, bound): expert ids of a routing.
inline std::vector<std::int32_t> random_ids(std::size_t n, std::int64_t bound, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> dist(0, static_cast<std::int32_t>(bound - 1));
  std::vector<std::int32_t> ids(n);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

struct Tolerance {
  double abs = 0;
  double rel = 0;
};

// "" when every element is within tolerance; otherwise how many are not and the worst one.
inline std::string compare(const float* got, const float* ref, std::size_t n, Tolerance tol) {
  std::size_t bad = 0, worst = 0;
  double worst_excess = -1;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(ref[i]) || std::isnan(got[i])) {
      if (std::isnan(ref[i]) != std::isnan(got[i])) {
        ++bad;
        worst = i;
        worst_excess = 1e300;
      }
      continue;
    }
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double allowed = tol.abs + tol.rel * std::fabs(static_cast<double>(ref[i]));
    if (err > allowed) {
      ++bad;
      if (err - allowed > worst_excess) {
        worst_excess = err - allowed;
        worst = i;
      }
    }
  }
  if (bad == 0) return "";
  std::ostringstream out;
  out.precision(9);
  out << bad << " of " << n << " outside tolerance (abs " << tol.abs << ", rel " << tol.rel << "); worst at " << worst
      << ": got " << got[worst] << ", ref " << ref[worst];
  return out.str();
}

inline std::string compare(const std::vector<float>& got, const std::vector<float>& ref, Tolerance tol) {
  if (got.size() != ref.size()) return "size mismatch";
  return compare(got.data(), ref.data(), got.size(), tol);
}

// A pool of 3 threads (more than this 2-core CI machine has, so blocks really are split and merged).
inline kernels::ThreadPool& test_pool() {
  static kernels::ThreadPool pool(3);
  return pool;
}

// Every code path this CPU runs, each with the test pool, plus the widest one on the calling thread alone.
struct PathCase {
  std::string name;
  kernels::CpuContext ctx;
};
inline std::vector<PathCase> path_cases() {
  std::vector<PathCase> cases;
  for (kernels::CpuPath p : kernels::supported_cpu_paths())
    cases.push_back({std::string(kernels::cpu_path_name(p)) + " x3 threads", {p, &test_pool()}});
  cases.push_back({std::string(kernels::cpu_path_name(kernels::best_cpu_path())) + " single thread",
                   {kernels::best_cpu_path(), nullptr}});
  return cases;
}

}  // namespace moeplan::test
