#include "executor/devices.hpp"

#include <fstream>
#include <thread>

#include "common/error.hpp"
#include "common/text.hpp"
#include "executor/backend_cpu.hpp"
#include "executor/backend_cuda.hpp"

namespace moeplan::executor {

kernels::DeviceQuery query_gpus() { return kernels::query_devices(); }

std::string cuda_executor_unavailable(const kernels::DeviceQuery& gpus) {
  if (!gpus.cuda_built)
    return "--device cuda: this build has no CUDA (configure with -DMOEPLAN_CUDA=ON where the CUDA toolkit is "
           "installed); use --device cpu";
  if (gpus.gpus.empty()) return "--device cuda: no CUDA device found (" + gpus.status + "); use --device cpu";
  return "";
}

DeviceKind select_device(const std::string& name, const kernels::DeviceQuery& gpus) {
  if (name == "cpu") return DeviceKind::cpu;
  if (name != "cuda") throw InputError("unknown --device '" + printable(name) + "' (use cpu or cuda)");
  if (const std::string why = cuda_executor_unavailable(gpus); !why.empty()) throw InputError(why);
  return DeviceKind::cuda;
}

DeviceKind select_device(const std::string& name) {
  // Query the GPUs only when they are asked for (the query loads the CUDA driver).
  return name == "cuda" ? select_device(name, query_gpus()) : select_device(name, kernels::DeviceQuery{});
}

std::unique_ptr<Backend> make_backend(DeviceKind kind, const kernels::CpuContext& ctx, int cuda_device) {
  if (kind == DeviceKind::cpu) return make_cpu_backend(ctx);
  return make_cuda_backend(cuda_device);
}

}  // namespace moeplan::executor
