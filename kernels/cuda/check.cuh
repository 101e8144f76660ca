// Checked CUDA calls: every runtime call goes through MOEPLAN_CUDA_CHECK, which throws with file, line and the
// CUDA error string (library code throws; app/ decides the exit code).
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define MOEPLAN_CUDA_CHECK(call)                                                                             \
  do {                                                                                                       \
    const cudaError_t moeplan_err_ = (call);                                                                 \
    if (moeplan_err_ != cudaSuccess)                                                                         \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + #call + ": " + \
                               cudaGetErrorString(moeplan_err_));                                            \
  } while (0)
