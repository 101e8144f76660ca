// Reference RMSNorm: readable loops, fp32 (double accumulation of the mean square for a stable spec).
#include <cmath>

#include "kernels/norm.hpp"

namespace moeplan::kernels {

void rmsnorm_ref(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps) {
  for (std::int64_t t = 0; t < tokens; ++t) {
    const float* row = x + t * hidden;
    // 1. mean of squares over the hidden dimension
    double sum_sq = 0;
    for (std::int64_t i = 0; i < hidden; ++i) sum_sq += static_cast<double>(row[i]) * row[i];
    const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(hidden) + eps);
    // 2. scale each element by 1/rms and the learned weight
    for (std::int64_t i = 0; i < hidden; ++i) y[t * hidden + i] = static_cast<float>(row[i] * inv_rms) * w[i];
  }
}

void rms_normalize_ref(const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * dim;
    // 1. mean of squares over the row
    double sum_sq = 0;
    for (std::int64_t i = 0; i < dim; ++i) sum_sq += static_cast<double>(row[i]) * row[i];
    const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + eps);
    // 2. scale by 1/rms (no learned weight)
    for (std::int64_t i = 0; i < dim; ++i) y[r * dim + i] = static_cast<float>(row[i] * inv_rms);
  }
}

}  // namespace moeplan::kernels
