#include "executor/devices.hpp"

#include <fstream>
#include <thread>

namespace moeplan::executor {

CpuInfo query_cpu() {
  CpuInfo info;
  info.logical_cpus = static_cast<int>(std::thread::hardware_concurrency());
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (info.model_name.empty() && line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) info.model_name = line.substr(colon + 2);
    }
  }
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  info.avx2 = __builtin_cpu_supports("avx2");
  info.avx512f = __builtin_cpu_supports("avx512f");
#endif
  return info;
}

kernels::DeviceQuery query_gpus() { return kernels::query_devices(); }

std::string cuda_executor_unavailable(const kernels::DeviceQuery& gpus) {
  if (!gpus.cuda_built)
    return "--device cuda: this moeplan was built without CUDA (configure with -DMOEPLAN_CUDA=ON where the CUDA toolkit "
           "is installed); use --device cpu";
  if (gpus.gpus.empty()) return "--device cuda: no CUDA device is visible (" + gpus.status + "); use --device cpu";
  return "--device cuda: the executor has no CUDA backend yet (" + gpus.gpus.front().name +
         " found; the backend interface is executor/backend.hpp); use --device cpu";
}

}  // namespace moeplan::executor
