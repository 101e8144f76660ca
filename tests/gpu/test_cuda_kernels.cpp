// GPU tests: CUDA kernels against their CPU references. Exits 77 (CTest: skipped) when this build has no CUDA
// or the machine has no device; 0 when every check passes; 1 on a mismatch.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "executor/devices.hpp"
#include "kernels/norm.hpp"
#include "moeplan/config.hpp"

namespace {
constexpr int kSkip = 77;
}

int main() {
  const auto devices = moeplan::executor::query_gpus();
  if (!devices.cuda_built || devices.gpus.empty()) {
    std::printf("skipped: %s\n", devices.status.c_str());
    return kSkip;
  }
#if MOEPLAN_HAVE_CUDA
  // RMSNorm at Maverick's hidden size, seeded inputs; tolerance 1e-5 abs + 1e-4 rel (fp32 reduction order).
  const std::int64_t tokens = 7, hidden = 5120;
  std::mt19937 rng(1234);
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> x(static_cast<std::size_t>(tokens * hidden)), w(static_cast<std::size_t>(hidden));
  for (auto& v : x) v = dist(rng);
  for (auto& v : w) v = dist(rng);
  std::vector<float> ref(x.size()), got(x.size());
  moeplan::kernels::rmsnorm_ref(x.data(), w.data(), ref.data(), tokens, hidden, 1e-5f);
  moeplan::kernels::rmsnorm_cuda_host(x.data(), w.data(), got.data(), tokens, hidden, 1e-5f);
  int bad = 0;
  for (std::size_t i = 0; i < ref.size(); ++i)
    if (std::fabs(got[i] - ref[i]) > 1e-5f + 1e-4f * std::fabs(ref[i])) ++bad;
  std::printf("rmsnorm cuda vs ref: %d of %zu outside tolerance on %s\n", bad, ref.size(), devices.gpus[0].name.c_str());
  return bad == 0 ? 0 : 1;
#else
  return kSkip;
#endif
}
