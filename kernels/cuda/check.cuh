// Checked CUDA calls: every runtime call goes through MOEPLAN_CUDA_CHECK, which throws with file, line and the
// CUDA error string (library code throws; app/ decides the exit code).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace moeplan::kernels::cuda {
// The exception every checked call throws: where, which call, and the library's message.
[[noreturn]] inline void throw_call_error(const char* file, int line, const char* call, const char* message) {
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + call + ": " + message);
}
}  // namespace moeplan::kernels::cuda

#define MOEPLAN_CUDA_CHECK(call)                                                                         \
  do {                                                                                                   \
    const cudaError_t moeplan_err_ = (call);                                                             \
    if (moeplan_err_ != cudaSuccess)                                                                     \
      ::moeplan::kernels::cuda::throw_call_error(__FILE__, __LINE__, #call, cudaGetErrorString(moeplan_err_)); \
  } while (0)

// The launchers' check after a kernel launch: a bad configuration surfaces here, not at the next synchronisation.
#define MOEPLAN_CUDA_CHECK_LAUNCH() MOEPLAN_CUDA_CHECK(cudaGetLastError())
