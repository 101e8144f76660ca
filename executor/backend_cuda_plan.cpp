// executor/backend_cuda_plan: the CUDA backend's host-side choices (see backend_cuda.hpp), built in every
// configuration so that the CPU tests check them.
#include "executor/backend_cuda.hpp"

#include <vector>

#include "common/error.hpp"
#include "executor/backend_cpu.hpp"
#include "kernels/gpu_ops.hpp"
#include "kernels/matmul.hpp"

namespace moeplan::executor {

CudaMatmulPlan plan_cuda_matmul(const kernels::WeightView& w, bool accumulate) {
  using Path = CudaMatmulPlan::Path;
  CudaMatmulPlan plan;
  std::string shape = "[";  // appended: GCC 12's -Wrestrict misfires on "literal" + std::string chains
  shape.append(std::to_string(w.rows)).append(" x ").append(std::to_string(w.cols)).append("]");
  switch (w.dtype) {
    case kernels::WeightDtype::bf16: plan.path = Path::bf16; break;
    case kernels::WeightDtype::f32: plan.path = Path::f32; break;
    case kernels::WeightDtype::fp8_e4m3:
      // cuBLASLt's FP8 GEMM takes N and K in multiples of 16 (its TN layout's alignment)
      if (w.rows % 16 != 0 || w.cols % 16 != 0) {
        plan.problem = "the CUDA backend's FP8 GEMM needs both dimensions of a weight to be multiples of 16, not ";
        plan.problem.append(shape);
        return plan;
      }
      plan.path = Path::fp8;
      break;
    case kernels::WeightDtype::f16:
    case kernels::WeightDtype::int8:
      plan.problem = "the CUDA backend has no kernel for ";
      plan.problem.append(kernels::weight_dtype_name(w.dtype)).append(" weights (a ").append(shape).append(" matrix); run it with --device cpu");
      return plan;
  }
  plan.epilogue = accumulate || w.row_scales != nullptr || plan.path == Path::fp8;
  return plan;
}

namespace {

// Whether `experts` views share w[0]'s dtype and shape and lie one after the other: the data as one [E, N, K] array,
// the row scales (all present or all absent) as one [E, N] array.
bool laid_out_as_group(const kernels::WeightView* w, std::int64_t experts) {
  const auto bytes = static_cast<std::size_t>(kernels::weight_bytes(w[0]));
  for (std::int64_t e = 1; e < experts; ++e) {
    const auto* data = static_cast<const unsigned char*>(w[0].data) + static_cast<std::size_t>(e) * bytes;
    const float* scales = w[0].row_scales ? w[0].row_scales + e * w[0].rows : nullptr;
    if (w[e].dtype != w[0].dtype || w[e].rows != w[0].rows || w[e].cols != w[0].cols || w[e].data != data ||
        w[e].row_scales != scales)
      return false;
  }
  return true;
}

}  // namespace

CudaGroupedPath plan_cuda_grouped_matmul(const kernels::WeightView* weights, std::int64_t experts) {
  if (experts < 1 || !laid_out_as_group(weights, experts)) return CudaGroupedPath::per_expert;
  const kernels::WeightView& w = weights[0];
  switch (w.dtype) {
    case kernels::WeightDtype::bf16:
      // the BF16 kernel applies no scales
      return w.row_scales == nullptr && w.cols % 8 == 0 ? CudaGroupedPath::bf16 : CudaGroupedPath::per_expert;
    case kernels::WeightDtype::fp8_e4m3:
      return w.row_scales != nullptr && plan_cuda_matmul(w, false).path == CudaMatmulPlan::Path::fp8
                 ? CudaGroupedPath::fp8
                 : CudaGroupedPath::per_expert;
    case kernels::WeightDtype::f32:
    case kernels::WeightDtype::f16:
    case kernels::WeightDtype::int8: return CudaGroupedPath::per_expert;
  }
  return CudaGroupedPath::per_expert;
}

bool cuda_attention_tiled(std::int64_t head_dim) {
  return head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

void grouped_matmul_per_expert(Backend& b, const float* x_sorted, const std::int64_t* expert_offsets,
                               std::int64_t experts, const kernels::WeightView* weights, float* y_sorted) {
  for (std::int64_t e = 0; e < experts; ++e) {
    const std::int64_t r0 = expert_offsets[e], rows = expert_offsets[e + 1] - r0;
    if (rows > 0) b.matmul(x_sorted + r0 * weights[e].cols, rows, weights[e], y_sorted + r0 * weights[e].rows, false);
  }
}

namespace {

// make_cuda_numerics_cpu_backend: the CPU backend with the CUDA backend's matmul (see backend_cuda.hpp).
class CudaNumericsCpuBackend final : public Backend {
 public:
  explicit CudaNumericsCpuBackend(const kernels::CpuContext& ctx) : cpu_(make_cpu_backend(ctx)) {}
  DeviceKind kind() const override { return DeviceKind::cpu; }
  std::string description() const override { return cpu_->description() + ", matmul inputs rounded as on CUDA"; }
  void* allocate(std::size_t bytes) override { return cpu_->allocate(bytes); }
  void release(void* p) noexcept override { cpu_->release(p); }
  void upload(void* dst, const void* src, std::size_t bytes) override { cpu_->upload(dst, src, bytes); }
  void download(void* dst, const void* src, std::size_t bytes) override { cpu_->download(dst, src, bytes); }
  void copy(void* dst, const void* src, std::size_t bytes) override { cpu_->copy(dst, src, bytes); }
  void synchronize() override {}
  kernels::WeightView resident(const kernels::WeightView& host) override { return host; }

  void matmul(const float* x, std::int64_t M, const kernels::WeightView& w, float* y, bool accumulate) override {
    const CudaMatmulPlan plan = plan_cuda_matmul(w, accumulate);
    if (plan.path == CudaMatmulPlan::Path::none) throw InputError(plan.problem);
    const std::int64_t n = M * w.cols;
    std::vector<float> rounded(x, x + n);
    if (plan.path == CudaMatmulPlan::Path::bf16) {
      std::vector<std::uint16_t> bits(static_cast<std::size_t>(n));
      kernels::convert_bf16_ref(x, n, bits.data());
      for (std::int64_t i = 0; i < n; ++i) rounded[static_cast<std::size_t>(i)] = kernels::bf16_to_float(bits[static_cast<std::size_t>(i)]);
    } else if (plan.path == CudaMatmulPlan::Path::fp8) {
      std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
      std::vector<float> scale(static_cast<std::size_t>(M));
      kernels::quantize_fp8_per_token_ref(x, M, w.cols, codes.data(), scale.data());
      for (std::int64_t i = 0; i < n; ++i)
        rounded[static_cast<std::size_t>(i)] =
            kernels::fp8_e4m3_to_float(codes[static_cast<std::size_t>(i)]) * scale[static_cast<std::size_t>(i / w.cols)];
    }
    kernels::matmul_ref(rounded.data(), M, w, y, accumulate);
  }
  void grouped_matmul(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t experts,
                      const kernels::WeightView* weights, float* y_sorted) override {
    grouped_matmul_per_expert(*this, x_sorted, expert_offsets, experts, weights, y_sorted);
  }
  void attention(const kernels::AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                 const float* v, float* out) override {
    cpu_->attention(p, q, q_pos, k, v, out);
  }
  void rmsnorm(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps) override {
    cpu_->rmsnorm(x, w, y, tokens, hidden, eps);
  }
  void rms_normalize(const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps) override {
    cpu_->rms_normalize(x, y, rows, dim, eps);
  }
  void rope(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
            const float* inv_freq, kernels::RopeLayout layout) override {
    cpu_->rope(x, tokens, heads, head_dim, positions, inv_freq, layout);
  }
  void router_topk(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                   kernels::RouterScoring scoring, std::int32_t* ids, float* weights) override {
    cpu_->router_topk(logits, tokens, experts, k, scoring, ids, weights);
  }
  void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) override { cpu_->silu_mul(gate, up, out, n); }
  void add(const float* a, const float* b, float* out, std::int64_t n) override { cpu_->add(a, b, out, n); }
  void scale_rows(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale) override {
    cpu_->scale_rows(x, rows, cols, row_scale);
  }
  void permute(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
               std::int64_t rows, float* x_sorted) override {
    cpu_->permute(x, hidden, row_token, row_scale, rows, x_sorted);
  }
  void unpermute_add(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                     std::int64_t rows, float* y) override {
    cpu_->unpermute_add(y_sorted, hidden, row_token, row_scale, rows, y);
  }
  void embed(const kernels::WeightView& table, std::int64_t first_row, const std::int32_t* ids, std::int64_t tokens,
             float* out) override {
    cpu_->embed(table, first_row, ids, tokens, out);
  }
  void paged_kv_write(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table,
                      const std::int64_t* row_seq, const std::int64_t* row_pos, std::int64_t count, const float* rows,
                      std::uint16_t* pages) override {
    cpu_->paged_kv_write(layout, page_table, row_seq, row_pos, count, rows, pages);
  }
  void paged_kv_gather(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                       std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages, float* rows) override {
    cpu_->paged_kv_gather(layout, page_table, seq, first_pos, count, pages, rows);
  }
  void paged_attention_decode(const kernels::DecodeAttentionParams& p, const kernels::gpu::PagedKvLayout& layout,
                              const float* q, const std::int32_t* seq_lens, const std::int32_t* page_table,
                              const void* k_pages, const void* v_pages, std::int64_t max_keys, float* out) override {
    cpu_->paged_attention_decode(p, layout, q, seq_lens, page_table, k_pages, v_pages, max_keys, out);
  }

 private:
  std::unique_ptr<Backend> cpu_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_numerics_cpu_backend(const kernels::CpuContext& ctx) {
  return std::make_unique<CudaNumericsCpuBackend>(ctx);
}

}  // namespace moeplan::executor
