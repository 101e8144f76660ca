// executor/devices: which backends this machine offers (CPU always; CUDA devices when built and present), and the
// one function that turns --device into a backend.
#pragma once
#include <memory>
#include <string>

#include "executor/backend.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/device_query.hpp"

namespace moeplan::executor {

kernels::DeviceQuery query_gpus();

// Why `--device cuda` cannot run on this machine with this build, as one line naming the fix (a build without
// CUDA, or no visible device with the query's status); empty when a CUDA device is there.
std::string cuda_executor_unavailable(const kernels::DeviceQuery& gpus);

// The one place `--device` is resolved (run, calibrate and validate call it): "cpu", or "cuda" when this build has
// CUDA and a device is visible. Throws InputError naming --device otherwise (exit 2).
DeviceKind select_device(const std::string& name);
DeviceKind select_device(const std::string& name, const kernels::DeviceQuery& gpus);

// A backend of `kind`: the CPU one on `ctx`, or CUDA device `cuda_device` (make_cuda_backend).
std::unique_ptr<Backend> make_backend(DeviceKind kind, const kernels::CpuContext& ctx, int cuda_device = 0);

}  // namespace moeplan::executor
