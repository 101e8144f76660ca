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

}  // namespace moeplan::executor
