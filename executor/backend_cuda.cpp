// executor/backend_cuda: the CUDA backend (see backend_cuda.hpp and backend.hpp): device memory from cudaMalloc,
// every op enqueued on one non-blocking stream through the launchers of kernels/gpu_ops.hpp, matmuls through
// cuBLASLt (kernels::cuda::DenseGemm) in the weight's dtype. Plain C++: the CUDA runtime calls it needs are the
// host-callable ones of kernels/gpu_runtime.hpp. Activations stay fp32 on the device; BF16 and FP8 GEMMs convert
// their input into a scratch buffer first.
#include <algorithm>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/error.hpp"
#include "executor/backend_cuda.hpp"
#include "kernels/device_query.hpp"
#include "kernels/gpu_ops.hpp"
#include "kernels/gpu_runtime.hpp"

namespace moeplan::executor {

namespace {

namespace cu = kernels::cuda;

// Device memory that grows to the largest size asked for and is reused by the ops that follow on the one stream
// (stream order makes the reuse safe). The outgrown block goes to `retire`, which frees it unless a captured step may
// still name it.
class Scratch {
 public:
  using Retire = std::function<void(void*)>;
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { cu::device_free(p_); }
  void* get(std::size_t bytes, const std::function<void*(std::size_t)>& alloc, const Retire& retire) {
    if (bytes > bytes_) {
      void* grown = alloc(bytes);
      retire(p_);
      p_ = grown;
      bytes_ = bytes;
    }
    return p_;
  }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

std::size_t bytes_of(std::int64_t count, std::size_t size) { return static_cast<std::size_t>(count) * size; }

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    cu::set_device(device_);
    stream_ = cu::stream_create();
    gemm_ = std::make_unique<cu::DenseGemm>();
    const float one = 1.f;
    unit_scale_ = static_cast<float*>(cu::device_alloc(sizeof(float)));
    cu::copy_to_device(unit_scale_, &one, sizeof(float), stream_);
    const kernels::DeviceQuery q = kernels::query_devices();
    name_ = device_ < static_cast<int>(q.gpus.size()) ? q.gpus[static_cast<std::size_t>(device_)].name : "?";
    sm_count_ = device_ < static_cast<int>(q.gpus.size()) ? q.gpus[static_cast<std::size_t>(device_)].multiprocessors : 0;
  }
  ~CudaBackend() override {
    if (capture_) {  // destroyed while capturing (an exception on the way): end the capture, drop the graph
      try {
        capture_->exec = cu::graph_end_capture(stream_);
      } catch (...) {
      }
      capture_.reset();
    }
    try {
      cu::stream_synchronize(stream_);
    } catch (...) {  // a destructor must not throw; the frees below still run
    }
    for (auto& [key, r] : resident_) {
      if (!r.owned) continue;
      cu::device_free(r.data);
      cu::device_free(r.scales);
    }
    for (auto& g : groups_) {
      cu::device_free(g.data);
      cu::device_free(g.scales);
    }
    for (void* p : retired_) cu::device_free(p);
    for (auto& [begin, end] : spans_) {
      cu::event_destroy(begin);
      cu::event_destroy(end);
    }
    cu::device_free(unit_scale_);
    gemm_.reset();
    cu::stream_destroy(stream_);
  }
  DeviceKind kind() const override { return DeviceKind::cuda; }
  std::string description() const override { return "cuda " + name_ + ", device " + std::to_string(device_); }

  // While capturing, the zero-fill is enqueued on the stream (so every replay repeats it) and a release is held
  // until the graph is destroyed.
  void* allocate(std::size_t bytes) override {
    return capture_ ? cu::device_alloc_on(bytes, stream_) : cu::device_alloc(bytes);
  }
  void release(void* p) noexcept override {
    if (capture_ && p) {
      try {
        capture_->released.push_back(p);
      } catch (...) {  // out of memory while recording: keep the block alive rather than free what the graph names
      }
      return;
    }
    cu::device_free(p);
  }
  void upload(void* dst, const void* src, std::size_t bytes) override {
    not_capturing("upload");
    cu::copy_to_device(dst, src, bytes, stream_);
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    not_capturing("download");
    cu::copy_to_host(dst, src, bytes, stream_);
  }
  void copy(void* dst, const void* src, std::size_t bytes) override { cu::copy_on_device(dst, src, bytes, stream_); }
  void synchronize() override {
    not_capturing("synchronize");
    cu::stream_synchronize(stream_);
  }
  std::size_t free_memory_bytes() override {
    std::size_t free_bytes = 0, total_bytes = 0;
    cu::memory_info(&free_bytes, &total_bytes);
    return free_bytes;
  }

  // Timing spans: a pair of events recorded on the stream (created once, reused after spans_clear); the time
  // between them is the device's, with no host synchronisation between the ops.
  std::size_t span_begin() override {
    not_capturing("a timing span");
    if (spans_used_ == spans_.size()) {
      spans_.emplace_back(cu::event_create(), nullptr);
      spans_.back().second = cu::event_create();
    }
    cu::event_record(spans_[spans_used_].first, stream_);
    return spans_used_++;
  }
  void span_end(std::size_t span) override { cu::event_record(spans_.at(span).second, stream_); }
  double span_seconds(std::size_t span) override {
    const auto& [begin, end] = spans_.at(span);
    return 1e-3 * static_cast<double>(cu::event_elapsed_ms(begin, end));
  }
  void spans_clear() override { spans_used_ = 0; }

  kernels::WeightView resident(const kernels::WeightView& host) override {
    if (const auto it = resident_.find(key_of(host)); it != resident_.end()) return view_of(host, it->second);
    const std::size_t scale_bytes = host.row_scales ? bytes_of(host.rows, sizeof(float)) : 0;
    return place(host, {cu::device_alloc(static_cast<std::size_t>(kernels::weight_bytes(host))),
                        scale_bytes ? static_cast<float*>(cu::device_alloc(scale_bytes)) : nullptr, true});
  }

  // Same-shaped weights of one dtype laid out one after the other in one allocation (the grouped GEMM's [E, N, K]),
  // their row scales likewise ([E, N], the per-channel scale layout); FP8 weights without row scales get unit ones,
  // so that the grouped FP8 GEMM takes them too (multiplying by 1 is exact: the results do not change). Each view
  // is registered as resident, so resident() of one of them finds it. A group whose first weight is resident
  // already (or of another shape) is made resident weight by weight.
  std::vector<kernels::WeightView> resident_group(const kernels::WeightView* hosts, std::size_t count) override {
    bool uniform = count > 1 && !resident_.count(key_of(hosts[0]));
    for (std::size_t i = 1; uniform && i < count; ++i)
      uniform = hosts[i].dtype == hosts[0].dtype && hosts[i].rows == hosts[0].rows && hosts[i].cols == hosts[0].cols &&
                (hosts[i].row_scales != nullptr) == (hosts[0].row_scales != nullptr) &&
                !resident_.count(key_of(hosts[i]));
    if (!uniform) return Backend::resident_group(hosts, count);
    const std::size_t bytes = static_cast<std::size_t>(kernels::weight_bytes(hosts[0]));
    const bool unit_scales = hosts[0].dtype == kernels::WeightDtype::fp8_e4m3 && !hosts[0].row_scales;
    const std::size_t scale_bytes = (hosts[0].row_scales || unit_scales) ? bytes_of(hosts[0].rows, sizeof(float)) : 0;
    auto* block = static_cast<unsigned char*>(cu::device_alloc(bytes * count));
    auto* scales = scale_bytes ? static_cast<unsigned char*>(cu::device_alloc(scale_bytes * count)) : nullptr;
    groups_.push_back({block, reinterpret_cast<float*>(scales)});
    if (unit_scales) {
      const std::vector<float> ones(static_cast<std::size_t>(hosts[0].rows) * count, 1.f);
      cu::copy_to_device(scales, ones.data(), scale_bytes * count, stream_);
    }
    std::vector<kernels::WeightView> views;
    for (std::size_t i = 0; i < count; ++i)
      views.push_back(place(hosts[i], {block + i * bytes,
                                       scales ? reinterpret_cast<float*>(scales + i * scale_bytes) : nullptr, false}));
    return views;
  }

  // Each expert's gate and up one after the other as one [2 I, K] weight (gate rows, then up rows) and its row scales
  // as [2 I] (unit scales for FP8 without), all experts in one allocation: the grouped kernels' [E, N, K] with N = 2 I,
  // which their fused SwiGLU epilogue reads as gate columns [0, I) and up columns [I, 2 I). Made where the grouped
  // kernels take such a group (BF16 without row scales, FP8 of a shape the FP8 GEMM takes), once per host address.
  std::vector<kernels::WeightView> resident_gate_up(const kernels::WeightView* gate, const kernels::WeightView* up,
                                                    std::size_t count) override {
    if (count == 0) return {};
    if (const auto it = gate_up_.find(key_of(gate[0])); it != gate_up_.end()) return it->second;
    const kernels::WeightView& g0 = gate[0];
    const bool fp8 = g0.dtype == kernels::WeightDtype::fp8_e4m3;
    bool fusable = g0.dtype == kernels::WeightDtype::bf16 ? g0.row_scales == nullptr : fp8;
    for (std::size_t i = 0; fusable && i < count; ++i)
      for (const kernels::WeightView* w : {&gate[i], &up[i]})
        fusable = w->dtype == g0.dtype && w->rows == g0.rows && w->cols == g0.cols &&
                  (w->row_scales != nullptr) == (g0.row_scales != nullptr);
    // the plan of one expert's [2 I, K] (a group of one is laid out by definition)
    const kernels::WeightView probe{g0.dtype, g0.data, 2 * g0.rows, g0.cols, fp8 ? unit_scale_ : nullptr};
    if (fusable) fusable = plan_cuda_grouped_matmul(&probe, 1) != CudaGroupedPath::per_expert;
    std::vector<kernels::WeightView> views;
    if (fusable) views = place_gate_up(gate, up, count);
    gate_up_.emplace(key_of(gate[0]), views);
    return views;
  }
  void grouped_swiglu(const float* x_sorted, const std::int64_t* host_offsets, const std::int64_t* device_offsets,
                      std::int64_t rows, std::int64_t experts, const kernels::WeightView* gate_up,
                      float* out) override {
    const CudaGroupedPath path = plan_cuda_grouped_matmul(gate_up, experts);
    if (path == CudaGroupedPath::per_expert) throw std::logic_error("grouped_swiglu: not resident_gate_up's group");
    const std::int64_t* offsets = device_offsets;
    if (host_offsets) {
      rows = host_offsets[experts];
      if (rows <= 0) return;
      auto* dev = static_cast<std::int64_t*>(scratch(ids_, bytes_of(experts + 1, sizeof(std::int64_t))));
      cu::copy_to_device(dev, host_offsets, bytes_of(experts + 1, sizeof(std::int64_t)), stream_);
      offsets = dev;
    }
    if (rows > 0) grouped_launch(path, x_sorted, offsets, rows, experts, gate_up, out, true);
  }

  void matmul(const float* x, std::int64_t M, const kernels::WeightView& w, float* y, bool accumulate) override {
    const CudaMatmulPlan plan = plan_cuda_matmul(w, accumulate);
    if (plan.path == CudaMatmulPlan::Path::none) throw InputError(plan.problem);
    if (M <= 0) return;
    const std::int64_t N = w.rows, K = w.cols;
    float* out = plan.epilogue ? static_cast<float*>(scratch(acc_, bytes_of(M * N, sizeof(float)))) : y;
    const float* x_scale = nullptr;
    switch (plan.path) {
      case CudaMatmulPlan::Path::bf16: {
        auto* xb = static_cast<std::uint16_t*>(scratch(input_, bytes_of(M * K, sizeof(std::uint16_t))));
        cu::convert_bf16(x, M * K, xb, stream_);
        gemm_->run(cu::DenseGemmDtype::bf16, xb, w.data, nullptr, nullptr, out, M, N, K, stream_);
        break;
      }
      case CudaMatmulPlan::Path::fp8: {
        auto* xq = static_cast<std::uint8_t*>(scratch(input_, bytes_of(M * K, 1)));
        auto* xs = static_cast<float*>(scratch(input_scale_, bytes_of(M, sizeof(float))));
        cu::quantize_fp8_per_token(x, M, K, xq, xs, stream_);
        gemm_->run(cu::DenseGemmDtype::fp8_e4m3, xq, w.data, unit_scale_, unit_scale_, out, M, N, K, stream_);
        x_scale = xs;
        break;
      }
      case CudaMatmulPlan::Path::f32:
        gemm_->run(cu::DenseGemmDtype::f32, x, w.data, nullptr, nullptr, out, M, N, K, stream_);
        break;
      case CudaMatmulPlan::Path::none: break;
    }
    if (plan.epilogue) cu::gemm_epilogue(out, M, N, x_scale, w.row_scales, y, accumulate, stream_);
  }
  // Experts laid out as one group (resident_group) run as one grouped GEMM where plan_cuda_grouped_matmul says so:
  // BF16 on the rows converted to BF16; FP8 on the rows quantised per token, the token's scale and each expert's row
  // scales applied per channel. The operands and fp32 accumulation are the per-expert cuBLASLt path's.
  void grouped_matmul(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t experts,
                      const kernels::WeightView* weights, float* y_sorted) override {
    const CudaGroupedPath path = plan_cuda_grouped_matmul(weights, experts);
    if (path == CudaGroupedPath::per_expert) {
      grouped_matmul_per_expert(*this, x_sorted, expert_offsets, experts, weights, y_sorted);
      return;
    }
    const std::int64_t rows = expert_offsets[experts];
    if (rows <= 0) return;
    auto* offsets = static_cast<std::int64_t*>(scratch(ids_, bytes_of(experts + 1, sizeof(std::int64_t))));
    cu::copy_to_device(offsets, expert_offsets, bytes_of(experts + 1, sizeof(std::int64_t)), stream_);
    grouped_launch(path, x_sorted, offsets, rows, experts, weights, y_sorted, false);
  }
  // The offsets where the permutation left them: the grouped kernels read them on the device (a captured step holds
  // the launch; the kernel's grid covers `rows` rows however they split over the experts).
  void grouped_matmul_device(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t rows,
                             std::int64_t experts, const kernels::WeightView* weights, float* y_sorted) override {
    const CudaGroupedPath path = plan_cuda_grouped_matmul(weights, experts);
    if (path == CudaGroupedPath::per_expert) {
      not_capturing("a per-expert grouped matmul (its GEMM sizes come from the host)");
      Backend::grouped_matmul_device(x_sorted, expert_offsets, rows, experts, weights, y_sorted);
      return;
    }
    if (rows > 0) grouped_launch(path, x_sorted, expert_offsets, rows, experts, weights, y_sorted, false);
  }
  bool grouped_offsets_on_device(const kernels::WeightView* weights, std::int64_t experts) const override {
    return plan_cuda_grouped_matmul(weights, experts) != CudaGroupedPath::per_expert;
  }
  // cuda::moe_permute (int32 rows and the pair-to-row map, which the session does not use), its row tokens widened to
  // the int64 indices permute and unpermute_add take.
  void expert_dispatch(const std::int32_t* ids, const float* weights, std::int64_t tokens, std::int64_t k,
                       std::int64_t experts, std::int64_t* expert_offsets, std::int64_t* row_token,
                       float* row_weight) override {
    const std::int64_t pairs = tokens * k;
    void* workspace =
        scratch(permute_ws_, static_cast<std::size_t>(kernels::gpu::permute_workspace_bytes(pairs, experts)));
    auto* rows32 = static_cast<std::int32_t*>(scratch(permute_rows_, bytes_of(2 * pairs, sizeof(std::int32_t))));
    cu::moe_permute(ids, weights, pairs, k, experts, workspace, expert_offsets, rows32, row_weight, rows32 + pairs,
                    stream_);
    cu::widen_indices(rows32, pairs, row_token, stream_);
  }
  void attention(const kernels::AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                 const float* v, float* out) override {
    if (cuda_attention_tiled(p.head_dim)) cu::attention_prefill(p, q, q_pos, k, v, out, stream_);
    else cu::attention_generic(p, q, q_pos, k, v, out, stream_);
  }
  void rmsnorm(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps) override {
    cu::rmsnorm(x, w, y, tokens, hidden, eps, stream_);
  }
  void rms_normalize(const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps) override {
    cu::rmsnorm(x, nullptr, y, rows, dim, eps, stream_);
  }
  void rope(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
            const float* inv_freq, kernels::RopeLayout layout) override {
    cu::rope(x, tokens, heads, head_dim, positions, inv_freq, layout, stream_);
  }
  void router_topk(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                   kernels::RouterScoring scoring, std::int32_t* ids, float* weights) override {
    cu::router_topk(logits, tokens, experts, k, scoring, ids, weights, stream_);
  }
  void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) override {
    cu::silu_mul(gate, up, out, n, stream_);
  }
  void add(const float* a, const float* b, float* out, std::int64_t n) override { cu::add(a, b, out, n, stream_); }
  void scale_rows(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale) override {
    cu::scale_rows(x, rows, cols, row_scale, stream_);
  }
  void permute(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
               std::int64_t rows, float* x_sorted) override {
    cu::gather_rows(x, hidden, row_token, row_scale, rows, x_sorted, stream_);
  }
  void unpermute_add(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                     std::int64_t rows, float* y) override {
    cu::scatter_add_rows(y_sorted, hidden, row_token, row_scale, rows, y, stream_);
  }
  void embed(const kernels::WeightView& table, std::int64_t first_row, const std::int32_t* ids, std::int64_t tokens,
             float* out) override {
    cu::TableDtype dtype = cu::TableDtype::f32;
    switch (table.dtype) {
      case kernels::WeightDtype::f32: dtype = cu::TableDtype::f32; break;
      case kernels::WeightDtype::bf16: dtype = cu::TableDtype::bf16; break;
      case kernels::WeightDtype::f16: dtype = cu::TableDtype::f16; break;
      case kernels::WeightDtype::fp8_e4m3: dtype = cu::TableDtype::fp8_e4m3; break;
      case kernels::WeightDtype::int8:
        throw InputError("the CUDA backend has no kernel for an int8 embedding table; run it with --device cpu");
    }
    if (tokens <= 0) return;
    cu::embed_rows(dtype, table.data, table.row_scales, table.rows, table.cols, first_row, ids, tokens, out, stream_);
  }
  void paged_kv_write(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table,
                      const std::int64_t* row_seq, const std::int64_t* row_pos, std::int64_t count, const float* rows,
                      std::uint16_t* pages) override {
    cu::paged_kv_write(layout, page_table, row_seq, row_pos, count, rows, pages, stream_);
  }
  void paged_kv_gather(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                       std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages, float* rows) override {
    cu::paged_kv_gather(layout, page_table, seq, first_pos, count, pages, rows, stream_);
  }
  // Split over the context as gpu::decode_split_plan says for the longest visible context and this GPU's SMs.
  void paged_attention_decode(const kernels::DecodeAttentionParams& p, const kernels::gpu::PagedKvLayout& layout,
                              const float* q, const std::int32_t* seq_lens, const std::int32_t* page_table,
                              const void* k_pages, const void* v_pages, std::int64_t max_keys, float* out) override {
    const kernels::gpu::DecodeSplit split = kernels::gpu::decode_split_plan(max_keys, p.seqs, p.kv_heads, sm_count_);
    void* workspace =
        scratch(decode_ws_,
                static_cast<std::size_t>(kernels::gpu::decode_workspace_bytes(p.seqs, p.q_heads, p.head_dim, split)));
    cu::paged_attention_decode(p, layout, q, seq_lens, page_table, k_pages, v_pages, out, split, workspace, stream_);
  }

  bool can_capture() const override { return true; }
  void begin_capture() override {
    if (capture_) throw std::logic_error("begin_capture: already capturing");
    auto graph = std::make_unique<Captured>(*this);
    cu::graph_begin_capture(stream_);
    capture_ = std::move(graph);
  }
  std::unique_ptr<Graph> end_capture() override {
    if (!capture_) throw std::logic_error("end_capture: not capturing");
    std::unique_ptr<Captured> graph = std::move(capture_);
    graph->exec = cu::graph_end_capture(stream_);
    return graph;
  }

 private:
  // A captured step: the instantiated graph and the memory released while it was captured, freed with it. While any
  // graph lives, an outgrown scratch block is kept (the graph may name it); the last graph to go frees them.
  struct Captured final : Graph {
    explicit Captured(CudaBackend& b) : backend(b) { ++backend.live_graphs_; }
    Captured(const Captured&) = delete;
    Captured& operator=(const Captured&) = delete;
    ~Captured() override {
      // A replay may still be running. A destructor must not throw: the frees below still run.
      try {
        cu::stream_synchronize(backend.stream_);
      } catch (...) {
      }
      cu::graph_destroy(exec);
      for (void* p : released) cu::device_free(p);
      if (--backend.live_graphs_ == 0 && !backend.capture_) {
        for (void* p : backend.retired_) cu::device_free(p);
        backend.retired_.clear();
      }
    }
    void replay() override { cu::graph_launch(exec, backend.stream_); }
    CudaBackend& backend;
    cu::Graph exec = nullptr;
    std::vector<void*> released;
  };
  void not_capturing(const char* what) const {
    if (capture_) throw std::logic_error(std::string(what) + " while capturing a step");
  }
  // Scratch `s` of at least `bytes`; an outgrown block is freed, or kept while a graph may name it.
  void* scratch(Scratch& s, std::size_t bytes) {
    return s.get(
        bytes, [this](std::size_t b) { return allocate(b); },
        [this](void* p) {
          if (!p) return;
          if (capture_ || live_graphs_ > 0)
            retired_.push_back(p);
          else
            cu::device_free(p);
        });
  }
  // One grouped GEMM launch over `rows` rows whose expert offsets are on the device (path bf16 or fp8); with
  // fuse_swiglu, y_sorted [rows, N / 2] = silu(gate) * up of the [N, K] gate-up weights.
  void grouped_launch(CudaGroupedPath path, const float* x_sorted, const std::int64_t* offsets, std::int64_t rows,
                      std::int64_t experts, const kernels::WeightView* weights, float* y_sorted, bool fuse_swiglu) {
    const std::int64_t N = weights[0].rows, K = weights[0].cols;
    const kernels::GroupedGemmShape shape{rows, experts, N, K, fuse_swiglu};
    if (path == CudaGroupedPath::bf16) {
      auto* xb = static_cast<std::uint16_t*>(scratch(input_, bytes_of(rows * K, sizeof(std::uint16_t))));
      cu::convert_bf16(x_sorted, rows * K, xb, stream_);
      cu::grouped_gemm_bf16(xb, static_cast<const std::uint16_t*>(weights[0].data), offsets, shape, y_sorted, stream_);
      return;
    }
    auto* xq = static_cast<std::uint8_t*>(scratch(input_, bytes_of(rows * K, 1)));
    auto* xs = static_cast<float*>(scratch(input_scale_, bytes_of(rows, sizeof(float))));
    cu::quantize_fp8_per_token(x_sorted, rows, K, xq, xs, stream_);
    cu::grouped_gemm_fp8(xq, xs, static_cast<const std::uint8_t*>(weights[0].data), weights[0].row_scales,
                         kernels::gpu::Fp8ScaleLayout::per_channel, offsets, shape, y_sorted, stream_);
  }

  // resident_gate_up's layout: expert i's gate at block + 2 i bytes, its up right after, the scales alike.
  std::vector<kernels::WeightView> place_gate_up(const kernels::WeightView* gate, const kernels::WeightView* up,
                                                 std::size_t count) {
    const kernels::WeightView& g0 = gate[0];
    const bool fp8 = g0.dtype == kernels::WeightDtype::fp8_e4m3;
    const std::size_t bytes = static_cast<std::size_t>(kernels::weight_bytes(g0));
    const std::size_t scale_bytes = fp8 ? bytes_of(g0.rows, sizeof(float)) : 0;
    auto* block = static_cast<unsigned char*>(cu::device_alloc(2 * bytes * count));
    auto* scales = fp8 ? static_cast<unsigned char*>(cu::device_alloc(2 * scale_bytes * count)) : nullptr;
    groups_.push_back({block, reinterpret_cast<float*>(scales)});
    const std::vector<float> ones(fp8 && !g0.row_scales ? static_cast<std::size_t>(g0.rows) : 0, 1.f);
    std::vector<kernels::WeightView> views;
    for (std::size_t i = 0; i < count; ++i) {
      for (std::size_t half = 0; half < 2; ++half) {
        const kernels::WeightView& h = half == 0 ? gate[i] : up[i];
        const std::size_t at = 2 * i + half;
        cu::copy_to_device(block + at * bytes, h.data, bytes, stream_);
        if (fp8)
          cu::copy_to_device(scales + at * scale_bytes, h.row_scales ? h.row_scales : ones.data(), scale_bytes,
                             stream_);
      }
      views.push_back({g0.dtype, block + 2 * i * bytes, 2 * g0.rows, g0.cols,
                       fp8 ? reinterpret_cast<float*>(scales + 2 * i * scale_bytes) : nullptr});
    }
    return views;
  }

  // A view's address and shape: the same host matrix made resident twice gives the same device copy.
  struct Key {
    const void* data;
    const float* scales;
    kernels::WeightDtype dtype;
    std::int64_t rows, cols;
    bool operator==(const Key& o) const {
      return data == o.data && scales == o.scales && dtype == o.dtype && rows == o.rows && cols == o.cols;
    }
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const {
      return std::hash<const void*>()(k.data) * 31u + std::hash<const void*>()(k.scales);
    }
  };
  struct Resident {
    void* data = nullptr;
    float* scales = nullptr;
    bool owned = true;  // false: a slice of one of groups_' allocations
  };
  static Key key_of(const kernels::WeightView& h) { return Key{h.data, h.row_scales, h.dtype, h.rows, h.cols}; }
  static kernels::WeightView view_of(const kernels::WeightView& host, const Resident& r) {
    kernels::WeightView view = host;
    view.data = r.data;
    view.row_scales = r.scales;
    return view;
  }
  // Uploads `host` (and its row scales) into the device memory `r` names, registers it, returns its device view.
  kernels::WeightView place(const kernels::WeightView& host, const Resident& r) {
    const std::size_t bytes = static_cast<std::size_t>(kernels::weight_bytes(host));
    if (bytes > 0) cu::copy_to_device(r.data, host.data, bytes, stream_);
    if (host.row_scales) cu::copy_to_device(r.scales, host.row_scales, bytes_of(host.rows, sizeof(float)), stream_);
    resident_.emplace(key_of(host), r);
    return view_of(host, r);
  }

  int device_ = 0;
  std::string name_;
  cu::Stream stream_ = nullptr;
  std::unique_ptr<cu::DenseGemm> gemm_;
  float* unit_scale_ = nullptr;  // 1.0f on the device: the FP8 GEMM's per-tensor scales (the epilogue scales)
  // Weights uploaded once, by host address (a backend serves the weights of models that outlive it).
  std::unordered_map<Key, Resident, KeyHash> resident_;
  std::vector<Resident> groups_;  // resident_group's and resident_gate_up's allocations (weights, scales)
  // resident_gate_up's views by the first gate's host view (empty: not fusable)
  std::unordered_map<Key, std::vector<kernels::WeightView>, KeyHash> gate_up_;
  Scratch acc_, input_, input_scale_, ids_, decode_ws_, permute_ws_, permute_rows_;
  std::unique_ptr<Captured> capture_;  // the step being captured, or null
  int live_graphs_ = 0;                // graphs not yet destroyed
  std::vector<void*> retired_;         // outgrown scratch blocks a live graph may name
  int sm_count_ = 0;
  std::vector<std::pair<cu::Event, cu::Event>> spans_;  // (begin, end) events; the first spans_used_ are in use
  std::size_t spans_used_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) {
  const int count = kernels::cuda::device_count();
  if (count == 0) throw InputError("--device cuda: no CUDA device found; use --device cpu");
  if (device < 0 || device >= count)
    throw InputError("--device cuda: device " + std::to_string(device) + " does not exist (" + std::to_string(count) +
                     " visible)");
  return std::make_unique<CudaBackend>(device);
}

}  // namespace moeplan::executor
