#include "executor/devices.hpp"

#include <fstream>
#include <thread>

namespace moeplan::executor {

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
