// Built when CUDA is off: there is nothing to query.
#include "kernels/device_query.hpp"

namespace moeplan::kernels {

DeviceQuery query_devices() {
  DeviceQuery q;
  q.cuda_built = false;
  q.status = "this moeplan was built without CUDA (-DMOEPLAN_CUDA=OFF or no nvcc found)";
  return q;
}

}  // namespace moeplan::kernels
