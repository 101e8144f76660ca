// Reference matmul and grouped expert matmul: one dot product per output, dequantising each weight element as
// dequant_element (kernels/weights.hpp) defines it, summed in double. The spec the fast kernels are checked against.
#include <stdexcept>
#include <string>

#include "kernels/matmul.hpp"

namespace moeplan::kernels {

namespace {

void check_weight(const WeightView& w, const char* what) {
  if (w.rows < 0 || w.cols < 0 || (w.rows * w.cols > 0 && w.data == nullptr))
    throw std::invalid_argument(std::string(what) + ": weight view has negative sizes or no data");
}

}  // namespace

void matmul_ref(const float* x, std::int64_t M, const WeightView& w, float* y, bool accumulate) {
  check_weight(w, "matmul_ref");
  const std::int64_t N = w.rows, K = w.cols;
  for (std::int64_t m = 0; m < M; ++m) {
    for (std::int64_t n = 0; n < N; ++n) {
      // 1. dot product of x's row m with W's row n, dequantising each weight element
      double sum = 0;
      for (std::int64_t k = 0; k < K; ++k) sum += static_cast<double>(x[m * K + k]) * dequant_element(w, n, k);
      // 2. store (or add to what is there)
      float& out = y[m * N + n];
      out = accumulate ? static_cast<float>(out + sum) : static_cast<float>(sum);
    }
  }
}

void grouped_matmul_ref(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t experts,
                        const WeightView* weights, float* y_sorted, bool accumulate) {
  if (experts <= 0) return;
  const std::int64_t N = weights[0].rows, K = weights[0].cols;
  for (std::int64_t e = 0; e < experts; ++e) {
    if (weights[e].rows != N || weights[e].cols != K)
      throw std::invalid_argument("grouped_matmul_ref: expert " + std::to_string(e) + " has a different shape");
    // Each expert is a plain matmul over its contiguous block of sorted rows.
    const std::int64_t first = expert_offsets[e], rows = expert_offsets[e + 1] - first;
    if (rows < 0) throw std::invalid_argument("grouped_matmul_ref: expert_offsets decrease");
    matmul_ref(x_sorted + first * K, rows, weights[e], y_sorted + first * N, accumulate);
  }
}

}  // namespace moeplan::kernels
