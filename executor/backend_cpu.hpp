// executor/backend_cpu: the CPU backend: host memory and the fast kernels of kernels/cpu, called with the
// arguments the forward pass gives every op (see backend.hpp), so results equal calling the kernels directly.
#pragma once
#include <memory>

#include "executor/backend.hpp"
#include "kernels/cpu_features.hpp"

namespace moeplan::executor {

// `ctx`: the code path and thread pool every kernel call gets (the pool is not owned).
std::unique_ptr<Backend> make_cpu_backend(const kernels::CpuContext& ctx);

}  // namespace moeplan::executor
