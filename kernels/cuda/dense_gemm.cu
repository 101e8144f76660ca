// Dense GEMM through cuBLASLt, y[M, N] = x[M, K] · W[N, K]^T with fp32 output, BF16, FP8 e4m3 or fp32 operands (FP8 with
// per-tensor scales through CUBLASLT_MATMUL_DESC_A/B_SCALE_POINTER). Row-major y = x W^T is column-major
// y^T = W x^T: A = W (column-major [K, N], transposed), B = x (column-major [K, M]), D = y^T (column-major [N, M]):
// the "TN" form cuBLASLt requires for FP8. Every handle, descriptor and layout is an RAII owner.
// Twin: matmul_ref (kernels/ref/matmul.cpp) on the same BF16 / dequantised FP8 values.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"

// Checked cuBLASLt calls (the status string names the failure).
#define MOEPLAN_CUBLAS_CHECK(call)                                                                      \
  do {                                                                                                  \
    const cublasStatus_t moeplan_status_ = (call);                                                      \
    if (moeplan_status_ != CUBLAS_STATUS_SUCCESS)                                                       \
      ::moeplan::kernels::cuda::throw_call_error(__FILE__, __LINE__, #call,                             \
                                                 cublasLtGetStatusString(moeplan_status_));             \
  } while (0)

namespace moeplan::kernels::cuda {

namespace {

constexpr std::size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt's recommendation for Hopper is 32 MiB

// unique_ptr owners of the cuBLASLt objects.
struct DescFree {
  void operator()(cublasLtMatmulDescOpaque_t* d) const { cublasLtMatmulDescDestroy(d); }
};
struct LayoutFree {
  void operator()(cublasLtMatrixLayoutOpaque_t* l) const { cublasLtMatrixLayoutDestroy(l); }
};
struct PreferenceFree {
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const { cublasLtMatmulPreferenceDestroy(p); }
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, DescFree>;
using MatrixLayout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LayoutFree>;
using Preference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, PreferenceFree>;

MatrixLayout make_layout(cudaDataType_t type, std::int64_t rows, std::int64_t cols) {
  cublasLtMatrixLayout_t l = nullptr;
  MOEPLAN_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, static_cast<std::uint64_t>(rows),
                                                  static_cast<std::uint64_t>(cols), rows));  // column-major, ld = rows
  return MatrixLayout(l);
}

template <class T>
void set_attr(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& value) {
  MOEPLAN_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &value, sizeof(value)));
}

}  // namespace

struct DenseGemm::Impl {
  cublasLtHandle_t handle = nullptr;
  DeviceBuffer<unsigned char> workspace{kWorkspaceBytes};
  Impl() { MOEPLAN_CUBLAS_CHECK(cublasLtCreate(&handle)); }
  ~Impl() { cublasLtDestroy(handle); }
};

DenseGemm::DenseGemm() : impl_(std::make_unique<Impl>()) {}
DenseGemm::~DenseGemm() = default;

void DenseGemm::run(DenseGemmDtype dtype, const void* x, const void* w, const float* x_scale, const float* w_scale,
                    float* y, std::int64_t m, std::int64_t n, std::int64_t k, Stream stream) {
  if (m < 1 || n < 1 || k < 1) throw std::invalid_argument("cuda::DenseGemm: m, n and k must be positive");
  const bool fp8 = dtype == DenseGemmDtype::fp8_e4m3;
  if (fp8 && (k % 16 != 0 || n % 16 != 0 || !x_scale || !w_scale))
    throw std::invalid_argument("cuda::DenseGemm: FP8 needs k and n multiples of 16 and both scale pointers");
  // 1. the operation: fp32 compute and scale type, A transposed
  cublasLtMatmulDesc_t raw = nullptr;
  MOEPLAN_CUBLAS_CHECK(cublasLtMatmulDescCreate(&raw, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const MatmulDesc desc(raw);
  set_attr(raw, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  set_attr(raw, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  if (fp8) {
    set_attr(raw, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, w_scale);
    set_attr(raw, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, x_scale);
  }
  // 2. the layouts (column-major views of the row-major tensors)
  const cudaDataType_t in_type =
      fp8 ? CUDA_R_8F_E4M3 : (dtype == DenseGemmDtype::f32 ? CUDA_R_32F : CUDA_R_16BF);
  const MatrixLayout a = make_layout(in_type, k, n), b = make_layout(in_type, k, m), c = make_layout(CUDA_R_32F, n, m);
  // 3. the heuristic's first algorithm within the workspace
  cublasLtMatmulPreference_t pref_raw = nullptr;
  MOEPLAN_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_raw));
  const Preference pref(pref_raw);
  const std::uint64_t ws_bytes = impl_->workspace.bytes();
  MOEPLAN_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref_raw, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                           &ws_bytes, sizeof(ws_bytes)));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  MOEPLAN_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(impl_->handle, raw, a.get(), b.get(), c.get(), c.get(),
                                                      pref_raw, 1, &result, &found));
  if (found == 0)
    throw std::runtime_error("cuda::DenseGemm: cuBLASLt has no algorithm for " + std::to_string(m) + " x " +
                             std::to_string(n) + " x " + std::to_string(k) + (fp8 ? " FP8" : dtype == DenseGemmDtype::f32 ? " F32" : " BF16"));
  // 4. run
  const float alpha = 1.f, beta = 0.f;
  MOEPLAN_CUBLAS_CHECK(cublasLtMatmul(impl_->handle, raw, &alpha, w, a.get(), x, b.get(), &beta, y, c.get(), y,
                                      c.get(), &result.algo, impl_->workspace.get(), ws_bytes, as_stream(stream)));
}

}  // namespace moeplan::kernels::cuda
