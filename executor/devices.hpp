// executor/devices: which backends this machine offers (CPU always; CUDA devices when built and present).
#pragma once
#include <string>

#include "kernels/device_query.hpp"

namespace moeplan::executor {

kernels::DeviceQuery query_gpus();

// Why `run --device cuda` cannot run on this machine with this build, as one line naming the fix: a build without
// CUDA, no visible device (the query's status), or the CUDA backend of executor/backend.hpp not being part of
// the executor yet. The caller throws it as an InputError (exit 2).
std::string cuda_executor_unavailable(const kernels::DeviceQuery& gpus);

}  // namespace moeplan::executor
