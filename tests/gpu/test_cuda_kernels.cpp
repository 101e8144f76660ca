// GPU tests: the CUDA kernels against their CPU references (cuda_kernel_cases.cu). Exits 77 (CTest: skipped) when
// this build has no CUDA or the machine has no device; 0 when every case passes; 1 when one fails.
#include <cstdio>

#include "kernels/device_query.hpp"
#include "moeplan/config.hpp"
#if MOEPLAN_HAVE_CUDA
#include "cuda_kernel_cases.hpp"
#endif

namespace {
constexpr int kSkip = 77;
}

int main() {
  const auto devices = moeplan::kernels::query_devices();
  if (!devices.cuda_built || devices.gpus.empty()) {
    std::printf("skipped: %s\n", devices.status.c_str());
    return kSkip;
  }
#if MOEPLAN_HAVE_CUDA
  const auto& gpu = devices.gpus[0];
  std::printf("device 0: %s (sm_%d%d, %d SMs)\n", gpu.name.c_str(), gpu.cc_major, gpu.cc_minor, gpu.multiprocessors);
  return moeplan::test::run_cuda_kernel_cases(gpu.multiprocessors, gpu.cc_major, gpu.cc_minor) == 0 ? 0 : 1;
#else
  return kSkip;
#endif
}
