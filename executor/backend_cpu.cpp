// executor/backend_cpu: the CPU backend (see backend_cpu.hpp).
#include "executor/backend_cpu.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <stdexcept>
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

void Backend::expert_dispatch(const std::int32_t* ids, const float* weights, std::int64_t tokens, std::int64_t k,
                              std::int64_t experts, std::int64_t* expert_offsets, std::int64_t* row_token,
                              float* row_weight) {
  std::vector<std::int32_t> host_ids(static_cast<std::size_t>(tokens * k));
  std::vector<float> host_weights(host_ids.size());
  download(host_ids.data(), ids, host_ids.size() * sizeof(std::int32_t));
  download(host_weights.data(), weights, host_weights.size() * sizeof(float));
  const kernels::ExpertDispatch d =
      kernels::build_expert_dispatch(host_ids.data(), host_weights.data(), tokens, k, experts);
  upload(expert_offsets, d.expert_offsets.data(), d.expert_offsets.size() * sizeof(std::int64_t));
  upload(row_token, d.row_token.data(), d.row_token.size() * sizeof(std::int64_t));
  upload(row_weight, d.row_weight.data(), d.row_weight.size() * sizeof(float));
}

void Backend::grouped_matmul_device(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t /*rows*/,
                                    std::int64_t experts, const kernels::WeightView* weights, float* y_sorted) {
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(experts + 1));
  download(offsets.data(), expert_offsets, offsets.size() * sizeof(std::int64_t));
  grouped_matmul(x_sorted, offsets.data(), experts, weights, y_sorted);
}

void Backend::grouped_swiglu(const float*, const std::int64_t*, const std::int64_t*, std::int64_t, std::int64_t,
                             const kernels::WeightView*, float*) {
  throw std::logic_error("this backend has no fused gate-up group (resident_gate_up gave none)");
}

void Backend::begin_capture() { throw std::logic_error("this backend cannot capture a step"); }
std::unique_ptr<Backend::Graph> Backend::end_capture() { throw std::logic_error("this backend cannot capture a step"); }

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

// A captured CPU step: the recorded ops, run in order by replay; memory the capture allocated (zero-filled again
// first, as allocate's is) and released (freed with the graph).
struct CpuGraph final : Backend::Graph {
  std::vector<std::function<void()>> ops;
  std::vector<void*> released;
  ~CpuGraph() override {
    for (void* p : released) std::free(p);
  }
  void replay() override {
    for (const auto& op : ops) op();
  }
};

std::size_t rounded_bytes(std::size_t bytes) { return (bytes + kAlignBytes - 1) / kAlignBytes * kAlignBytes; }

// Every op runs at once on the calling thread and ctx's pool, or, while capturing, is recorded with its arguments
// (pointers and values; host arrays copied) to run when the graph is replayed.
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
    const std::size_t rounded = rounded_bytes(bytes);
    void* p = std::aligned_alloc(kAlignBytes, rounded);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, rounded);
    if (capture_) capture_->ops.push_back([p, rounded] { std::memset(p, 0, rounded); });
    return p;
  }
  void release(void* p) noexcept override {
    if (capture_ && p) {
      try {
        capture_->released.push_back(p);
        return;
      } catch (...) {  // out of memory while recording: keep the block alive rather than free what the graph names
        return;
      }
    }
    std::free(p);
  }
  void upload(void* dst, const void* src, std::size_t bytes) override {
    not_capturing("upload");
    copy_bytes(dst, src, bytes);
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    not_capturing("download");
    copy_bytes(dst, src, bytes);
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    issue([=] {
      if (bytes > 0) std::memmove(dst, src, bytes);
    });
  }
  void synchronize() override { not_capturing("synchronize"); }
  kernels::WeightView resident(const kernels::WeightView& host) override { return host; }

  void matmul(const float* x, std::int64_t M, const kernels::WeightView& w, float* y, bool accumulate) override {
    issue([=, this] { kernels::matmul(ctx_, x, M, w, y, accumulate); });
  }
  void grouped_matmul(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t experts,
                      const kernels::WeightView* weights, float* y_sorted) override {
    issue([=, this, offsets = std::vector<std::int64_t>(expert_offsets, expert_offsets + experts + 1),
           views = std::vector<kernels::WeightView>(weights, weights + experts)] {
      kernels::grouped_matmul(ctx_, x_sorted, offsets.data(), experts, views.data(), y_sorted);
    });
  }
  void grouped_matmul_device(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t /*rows*/,
                             std::int64_t experts, const kernels::WeightView* weights, float* y_sorted) override {
    issue([=, this, views = std::vector<kernels::WeightView>(weights, weights + experts)] {
      kernels::grouped_matmul(ctx_, x_sorted, expert_offsets, experts, views.data(), y_sorted);
    });
  }
  bool grouped_offsets_on_device(const kernels::WeightView*, std::int64_t) const override { return true; }
  void expert_dispatch(const std::int32_t* ids, const float* weights, std::int64_t tokens, std::int64_t k,
                       std::int64_t experts, std::int64_t* expert_offsets, std::int64_t* row_token,
                       float* row_weight) override {
    issue([=] {
      const kernels::ExpertDispatch d = kernels::build_expert_dispatch(ids, weights, tokens, k, experts);
      std::copy(d.expert_offsets.begin(), d.expert_offsets.end(), expert_offsets);
      std::copy(d.row_token.begin(), d.row_token.end(), row_token);
      std::copy(d.row_weight.begin(), d.row_weight.end(), row_weight);
    });
  }
  void attention(const kernels::AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                 const float* v, float* out) override {
    issue([=, this] { kernels::attention(ctx_, p, q, q_pos, k, v, out); });
  }
  void rmsnorm(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps) override {
    issue([=, this] { kernels::rmsnorm(ctx_, x, w, y, tokens, hidden, eps); });
  }
  void rms_normalize(const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps) override {
    issue([=, this] { kernels::rms_normalize(ctx_, x, y, rows, dim, eps); });
  }
  void rope(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
            const float* inv_freq, kernels::RopeLayout layout) override {
    issue([=, this] { kernels::rope(ctx_, x, tokens, heads, head_dim, positions, inv_freq, layout); });
  }
  void router_topk(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                   kernels::RouterScoring scoring, std::int32_t* ids, float* weights) override {
    issue([=, this] { kernels::router_topk(ctx_, logits, tokens, experts, k, scoring, ids, weights); });
  }
  void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) override {
    issue([=, this] { kernels::silu_mul(ctx_, gate, up, out, n); });
  }
  void add(const float* a, const float* b, float* out, std::int64_t n) override {
    issue([=, this] { kernels::add(ctx_, a, b, out, n); });
  }
  void scale_rows(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale) override {
    issue([=] { kernels::scale_rows_ref(x, rows, cols, row_scale); });
  }
  void permute(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
               std::int64_t rows, float* x_sorted) override {
    issue([=, this] { kernels::gather_rows(ctx_, x, hidden, row_token, row_scale, rows, x_sorted); });
  }
  void unpermute_add(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                     std::int64_t rows, float* y) override {
    issue([=, this] { kernels::scatter_add_rows(ctx_, y_sorted, hidden, row_token, row_scale, rows, y); });
  }
  void embed(const kernels::WeightView& table, std::int64_t first_row, const std::int32_t* ids, std::int64_t tokens,
             float* out) override {
    issue([=, this] {
      const std::int64_t H = table.cols;
      for (std::int64_t t = 0; t < tokens; ++t) {
        const std::int64_t row = ids[t] - first_row;
        if (row >= 0 && row < table.rows)
          kernels::dequantize_rows(ctx_, table, row, row + 1, out + t * H);
        else
          std::memset(out + t * H, 0, static_cast<std::size_t>(H) * sizeof(float));
      }
    });
  }
  // The paged cache's ops are the references: the CPU session keeps contiguous caches, and these serve the paged
  // session's CPU tests and calibrate's decode curves on the CPU.
  void paged_kv_write(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table,
                      const std::int64_t* row_seq, const std::int64_t* row_pos, std::int64_t count, const float* rows,
                      std::uint16_t* pages) override {
    issue([=] { kernels::paged_kv_write_ref(layout, page_table, row_seq, row_pos, count, rows, pages); });
  }
  void paged_kv_gather(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                       std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages, float* rows) override {
    issue([=] { kernels::paged_kv_gather_ref(layout, page_table, seq, first_pos, count, pages, rows); });
  }
  void paged_attention_decode(const kernels::DecodeAttentionParams& p, const kernels::gpu::PagedKvLayout& layout,
                              const float* q, const std::int32_t* seq_lens, const std::int32_t* page_table,
                              const void* k_pages, const void* v_pages, std::int64_t, float* out) override {
    issue([=] { kernels::paged_attention_decode_ref(p, layout, q, seq_lens, page_table, k_pages, v_pages, out); });
  }

  bool can_capture() const override { return true; }
  void begin_capture() override {
    if (capture_) throw std::logic_error("begin_capture: already capturing");
    capture_ = std::make_unique<CpuGraph>();
  }
  std::unique_ptr<Graph> end_capture() override {
    if (!capture_) throw std::logic_error("end_capture: not capturing");
    return std::move(capture_);
  }

 private:
  template <class F>
  void issue(F&& op) {
    if (capture_)
      capture_->ops.emplace_back(std::forward<F>(op));
    else
      op();
  }
  void not_capturing(const char* what) const {
    if (capture_) throw std::logic_error(std::string(what) + " while capturing a step");
  }
  static void copy_bytes(void* dst, const void* src, std::size_t bytes) {
    if (bytes > 0) std::memcpy(dst, src, bytes);
  }
  kernels::CpuContext ctx_;
  std::unique_ptr<CpuGraph> capture_;  // the step being captured, or null
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const kernels::CpuContext& ctx) { return std::make_unique<CpuBackend>(ctx); }

}  // namespace moeplan::executor
