// executor/devices: which backends this machine offers (CPU always; CUDA devices when built and present).
#pragma once
#include <string>

#include "kernels/device_query.hpp"

namespace moeplan::executor {

struct CpuInfo {
  std::string model_name;   // /proc/cpuinfo "model name"
  int logical_cpus = 0;
  bool avx2 = false, avx512f = false;  // detected at run time (never -march=native)
};

CpuInfo query_cpu();
kernels::DeviceQuery query_gpus();

}  // namespace moeplan::executor
