// kernels/device_query: the GPUs this machine can run on. Host-callable; implemented in cuda/device_query.cu
// when CUDA is built, and in device_query_none.cpp otherwise.
#pragma once
#include <string>
#include <vector>

namespace moeplan::kernels {

struct LocalGpu {
  std::string name;
  double memory_bytes = 0;     // total device memory
  int multiprocessors = 0;     // SM count
  int cc_major = 0, cc_minor = 0;
};

struct DeviceQuery {
  bool cuda_built = false;     // this binary was built with CUDA kernels
  std::string status;          // "ok", or why no GPU is listed (no driver, no device, built without CUDA)
  std::vector<LocalGpu> gpus;
};

DeviceQuery query_devices();

}  // namespace moeplan::kernels
