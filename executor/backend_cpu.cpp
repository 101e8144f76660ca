// executor/backend_cpu: the CPU backend (see backend_cpu.hpp).
#include "executor/backend_cpu.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "kernels/activation.hpp"
#include "kernels/matmul.hpp"
#include "kernels/norm.hpp"

namespace moeplan::executor {

const char* device_kind_name(DeviceKind kind) { return kind == DeviceKind::cpu ? "cpu" : "cuda"; }

std::vector<kernels::WeightView> Backend::resident_group(const kernels::WeightView* hosts, std::size_t count) {
  std::vector<kernels::WeightView> views;
  views.reserve(count);
  for (std::size_t i = 0; i < count; ++i) views.push_back(resident(hosts[i]));
  return views;
}

// The wall-clock spans every backend has unless it times on its device (backend.hpp).
std::size_t Backend::span_begin() {
  const auto now = std::chrono::steady_clock::now();
  wall_spans_.emplace_back(now, now);
  return wall_spans_.size() - 1;
}
void Backend::span_end(std::size_t span) {
  synchronize();
  wall_spans_.at(span).second = std::chrono::steady_clock::now();
}
double Backend::span_seconds(std::size_t span) {
  const auto& [begin, end] = wall_spans_.at(span);
  return std::chrono::duration<double>(end - begin).count();
}
void Backend::spans_clear() { wall_spans_.clear(); }

namespace {

constexpr std::size_t kAlignBytes = 64;  // one cache line (and one AVX-512 register)

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const kernels::CpuContext& ctx) : ctx_(ctx) {}
  DeviceKind kind() const override { return DeviceKind::cpu; }
  std::string description() const override {
    return std::string("cpu ") + kernels::cpu_path_name(ctx_.path) + ", " +
           std::to_string(ctx_.pool ? ctx_.pool->size() : 1) + " threads";
  }

  void* allocate(std::size_t bytes) override {
    if (bytes == 0) return nullptr;
    const std::size_t rounded = (bytes + kAlignBytes - 1) / kAlignBytes * kAlignBytes;
    void* p = std::aligned_alloc(kAlignBytes, rounded);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, rounded);
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  void upload(void* dst, const void* src, std::size_t bytes) override { copy_bytes(dst, src, bytes); }
  void download(void* dst, const void* src, std::size_t bytes) override { copy_bytes(dst, src, bytes); }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes > 0) std::memmove(dst, src, bytes);
  }
  void synchronize() override {}
  kernels::WeightView resident(const kernels::WeightView& host) override { return host; }

  void matmul(const float* x, std::int64_t M, const kernels::WeightView& w, float* y, bool accumulate) override {
    kernels::matmul(ctx_, x, M, w, y, accumulate);
  }
  void grouped_matmul(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t experts,
                      const kernels::WeightView* weights, float* y_sorted) override {
    kernels::grouped_matmul(ctx_, x_sorted, expert_offsets, experts, weights, y_sorted);
  }
  void attention(const kernels::AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                 const float* v, float* out) override {
    kernels::attention(ctx_, p, q, q_pos, k, v, out);
  }
  void rmsnorm(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps) override {
    kernels::rmsnorm(ctx_, x, w, y, tokens, hidden, eps);
  }
  void rms_normalize(const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps) override {
    kernels::rms_normalize(ctx_, x, y, rows, dim, eps);
  }
  void rope(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
            const float* inv_freq, kernels::RopeLayout layout) override {
    kernels::rope(ctx_, x, tokens, heads, head_dim, positions, inv_freq, layout);
  }
  void router_topk(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                   kernels::RouterScoring scoring, std::int32_t* ids, float* weights) override {
    kernels::router_topk(ctx_, logits, tokens, experts, k, scoring, ids, weights);
  }
  void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) override {
    kernels::silu_mul(ctx_, gate, up, out, n);
  }
  void add(const float* a, const float* b, float* out, std::int64_t n) override { kernels::add(ctx_, a, b, out, n); }
  void scale_rows(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale) override {
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t i = 0; i < cols; ++i) x[r * cols + i] *= row_scale[r];
  }
  void permute(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
               std::int64_t rows, float* x_sorted) override {
    kernels::gather_rows(ctx_, x, hidden, row_token, row_scale, rows, x_sorted);
  }
  void unpermute_add(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                     std::int64_t rows, float* y) override {
    kernels::scatter_add_rows(ctx_, y_sorted, hidden, row_token, row_scale, rows, y);
  }
  void embed(const kernels::WeightView& table, std::int64_t first_row, const std::int32_t* ids, std::int64_t tokens,
             float* out) override {
    const std::int64_t H = table.cols;
    for (std::int64_t t = 0; t < tokens; ++t) {
      const std::int64_t row = ids[t] - first_row;
      if (row >= 0 && row < table.rows) kernels::dequantize_rows(ctx_, table, row, row + 1, out + t * H);
      else std::memset(out + t * H, 0, static_cast<std::size_t>(H) * sizeof(float));
    }
  }
  // The paged cache's ops are the references: the CPU session keeps contiguous caches, and these serve the paged
  // session's CPU tests and calibrate's decode curves on the CPU.
  void paged_kv_write(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table,
                      const std::int64_t* row_seq, const std::int64_t* row_pos, std::int64_t count, const float* rows,
                      std::uint16_t* pages) override {
    kernels::paged_kv_write_ref(layout, page_table, row_seq, row_pos, count, rows, pages);
  }
  void paged_kv_gather(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                       std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages, float* rows) override {
    kernels::paged_kv_gather_ref(layout, page_table, seq, first_pos, count, pages, rows);
  }
  void paged_attention_decode(const kernels::DecodeAttentionParams& p, const kernels::gpu::PagedKvLayout& layout,
                              const float* q, const std::int32_t* seq_lens, const std::int32_t* page_table,
                              const void* k_pages, const void* v_pages, std::int64_t, float* out) override {
    kernels::paged_attention_decode_ref(p, layout, q, seq_lens, page_table, k_pages, v_pages, out);
  }

 private:
  static void copy_bytes(void* dst, const void* src, std::size_t bytes) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  kernels::CpuContext ctx_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const kernels::CpuContext& ctx) { return std::make_unique<CpuBackend>(ctx); }

}  // namespace moeplan::executor
