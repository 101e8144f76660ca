// Lists local CUDA devices for `moeplan gpus --local`. No device (or no driver) is a normal answer, not an error.
#include <cuda_runtime.h>

#include "kernels/device_query.hpp"

namespace moeplan::kernels {

DeviceQuery query_devices() {
  DeviceQuery q;
  q.cuda_built = true;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    q.status = std::string("CUDA reports no usable device (") + cudaGetErrorString(err) + ")";
    return q;
  }
  if (count == 0) {
    q.status = "CUDA reports 0 devices";
    return q;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    LocalGpu g;
    g.name = prop.name;
    g.memory_bytes = static_cast<double>(prop.totalGlobalMem);
    g.multiprocessors = prop.multiProcessorCount;
    g.cc_major = prop.major;
    g.cc_minor = prop.minor;
    q.gpus.push_back(g);
  }
  q.status = "ok";
  return q;
}

}  // namespace moeplan::kernels
