// executor/backend: the compute interface between the forward pass (executor/session.*) and the kernels: a device,
// memory that lives on it, and the ops the op graph of model/op_graph.hpp names. The CPU backend (backend_cpu.*)
// is always built and is the oracle: it calls the fast kernels of kernels/cpu with the same arguments the forward
// pass always gave them, so its results are bit-identical to calling them directly. A CUDA backend implements the
// same ops on one GPU stream.
//
// Memory and ordering. Every pointer an op takes points into this backend's memory (host memory for the CPU
// backend, device memory for CUDA), except where a comment says "host". Ops run in call order on the backend's one
// stream (the CPU backend runs them at once, on the calling thread and its pool): an op sees the results of every
// op issued before it. `download` waits for the stream; `synchronize` waits without copying (timers call it).
// Communicators (executor/comm.hpp) take pointers into the same memory as the backend the session uses; one may run
// on its own stream (NCCL), so the session synchronises the backend before handing it data.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/attention.hpp"
#include "kernels/gpu_ops.hpp"
#include "kernels/rope.hpp"
#include "kernels/router.hpp"
#include "kernels/weights.hpp"

namespace moeplan::executor {

enum class DeviceKind { cpu, cuda };
const char* device_kind_name(DeviceKind kind);  // "cpu", "cuda"

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind kind() const = 0;
  virtual std::string description() const = 0;  // e.g. "cpu avx2, 2 threads"

  // ---- memory (bytes). allocate returns zero-filled memory (nullptr for 0 bytes); release takes what allocate gave.
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* p) noexcept = 0;
  virtual void upload(void* dst, const void* host_src, std::size_t bytes) = 0;    // host -> device
  virtual void download(void* host_dst, const void* src, std::size_t bytes) = 0;  // device -> host; waits
  // device -> device; the ranges may overlap (memmove).
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void synchronize() = 0;  // every op issued so far has finished
  // Device memory free now (bytes), for refusing a shape before allocating it; 0 where the backend does not know
  // (the CPU backend: host memory is the operating system's to give).
  virtual std::size_t free_memory_bytes() { return 0; }

  // Weights: the view of a host matrix (kernels::WeightView of host memory that outlives the backend's use of it)
  // in this device's memory: the view itself on the CPU; on a GPU, a copy uploaded on first use and kept.
  virtual kernels::WeightView resident(const kernels::WeightView& host) = 0;
  // The resident views of `count` weights of one shape and dtype (one MoE layer's experts), in order. This default
  // makes each resident on its own; a backend whose grouped_matmul reads such a group as one [count, rows, cols]
  // array places them one after the other (the CUDA backend, for its grouped GEMM).
  virtual std::vector<kernels::WeightView> resident_group(const kernels::WeightView* hosts, std::size_t count);

  // ---- op timing: a span brackets the ops issued between span_begin() (which returns its id) and span_end(id);
  // span_seconds(id) waits until the span's ops have finished and returns its duration; spans_clear() forgets
  // every span (ids start again at 0). These defaults time the host's steady clock, span_end waiting for the
  // backend first: the CPU backend's wall time (its ops run at once). The CUDA backend records a pair of events on
  // its stream and reads the time between them, so timing adds no host synchronisation between ops.
  virtual std::size_t span_begin();
  virtual void span_end(std::size_t span);
  virtual double span_seconds(std::size_t span);
  virtual void spans_clear();

  // ---- ops, under the op graph's names (model/op_graph.hpp). Shapes as the kernels/ headers state them.
  // matmul (attn.qkv, attn.o, mlp.*, moe.router, moe.shared.*, lm_head), by the weight's dtype:
  // y[M, N] (+)= x[M, K] · dequant(w)^T.
  virtual void matmul(const float* x, std::int64_t M, const kernels::WeightView& w, float* y, bool accumulate) = 0;
  // moe.experts.*: rows of x_sorted [R, K] grouped by expert (expert_offsets: host, [experts + 1]) times each
  // expert's weights (host array of `experts` resident views); y_sorted [R, N].
  virtual void grouped_matmul(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t experts,
                              const kernels::WeightView* weights, float* y_sorted) = 0;
  // attn.prefill / attn.decode: one sequence's queries q [Tq, Hq, D] at positions q_pos [Tq] against its cache
  // k, v [Tk, Hkv, D] (row 0 at p.kv_first_pos), causal, chunked or sliding-window mask; out [Tq, Hq, D].
  virtual void attention(const kernels::AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                         const float* v, float* out) = 0;
  // attn.norm, mlp.norm, final_norm, attn.qk_norm (Qwen3): y [tokens, hidden] = RMSNorm(x) * w.
  virtual void rmsnorm(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps) = 0;
  // attn.qk_norm (Llama 4): the weightless form over rows of `dim`.
  virtual void rms_normalize(const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps) = 0;
  // attn.rope: x [tokens, heads, head_dim] in place; positions [tokens]; inv_freq [head_dim / 2].
  virtual void rope(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
                    const float* inv_freq, kernels::RopeLayout layout) = 0;
  // moe.topk: logits [tokens, experts] -> ids, weights [tokens, k].
  virtual void router_topk(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                           kernels::RouterScoring scoring, std::int32_t* ids, float* weights) = 0;
  // *.act: out[i] = silu(gate[i]) * up[i].
  virtual void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) = 0;
  // Residual add: out = a + b.
  virtual void add(const float* a, const float* b, float* out, std::int64_t n) = 0;
  // x[r, :] *= row_scale[r] for r < rows (Llama 4's query temperature on NoPE layers); x: [rows, cols].
  virtual void scale_rows(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale) = 0;
  // Permute by expert (kernels::gather_rows): x_sorted[r] = x[row_token[r]] * (row_scale ? row_scale[r] : 1).
  virtual void permute(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                       std::int64_t rows, float* x_sorted) = 0;
  // Un-permute (kernels::scatter_add_rows): y[row_token[r]] += y_sorted[r] * (row_scale ? row_scale[r] : 1), in
  // row order.
  virtual void unpermute_add(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token,
                             const float* row_scale, std::int64_t rows, float* y) = 0;
  // embed: out[t] = dequant(table)[ids[t] - first_row] for the ids in [first_row, first_row + table.rows), zeros
  // for the others (their rows live on another tensor-parallel rank). ids: [tokens]; out: [tokens, table.cols].
  virtual void embed(const kernels::WeightView& table, std::int64_t first_row, const std::int32_t* ids,
                     std::int64_t tokens, float* out) = 0;
  // One layer's expert gate and up projections (`count` of each, [I, K]) laid out as one group of [2 I, K] weights,
  // expert e's gate rows then its up rows (row scales likewise), for grouped_swiglu; made once per host address and
  // kept. Empty where the backend has no fused path for them, as in this default: the session then runs gate and up
  // as two grouped matmuls and silu_mul.
  virtual std::vector<kernels::WeightView> resident_gate_up(const kernels::WeightView* /*gate*/,
                                                            const kernels::WeightView* /*up*/, std::size_t /*count*/) {
    return {};
  }
  // moe.experts.gate_up and .act in one: out [R, I] = silu(x_sorted · gate_e^T) * (x_sorted · up_e^T), e each row's
  // expert, over resident_gate_up's views. The offsets as grouped_matmul takes them (host_offsets) or as
  // grouped_matmul_device does (device_offsets and rows; host_offsets null). This default throws std::logic_error
  // (no backend without resident_gate_up's views calls it).
  virtual void grouped_swiglu(const float* x_sorted, const std::int64_t* host_offsets,
                              const std::int64_t* device_offsets, std::int64_t rows, std::int64_t experts,
                              const kernels::WeightView* gate_up, float* out);

  // The permutation by expert on the backend (kernels::build_expert_dispatch's rows, without the host): ids, weights
  // [tokens, k] of router_topk, every id in [0, experts) -> expert_offsets [experts + 1], row_token and row_weight
  // [tokens * k], rows sorted by expert, then by (token, slot). This default goes through the host (download, build,
  // upload); the CPU and CUDA backends do it in their own memory, so a captured step (begin_capture) can hold it.
  virtual void expert_dispatch(const std::int32_t* ids, const float* weights, std::int64_t tokens, std::int64_t k,
                               std::int64_t experts, std::int64_t* expert_offsets, std::int64_t* row_token,
                               float* row_weight);
  // grouped_matmul with expert_offsets in this backend's memory and the rows' count `rows` (= expert_offsets[experts])
  // given by the caller. This default downloads the offsets; where grouped_offsets_on_device(weights, experts) says so,
  // the backend reads them where they are (the CPU; the CUDA backend's grouped GEMMs), so a captured step can hold it.
  virtual void grouped_matmul_device(const float* x_sorted, const std::int64_t* expert_offsets, std::int64_t rows,
                                     std::int64_t experts, const kernels::WeightView* weights, float* y_sorted);
  virtual bool grouped_offsets_on_device(const kernels::WeightView* /*weights*/, std::int64_t /*experts*/) const {
    return false;
  }

  // ---- captured steps (CUDA graphs). Between begin_capture() and end_capture() the ops issued are recorded, not run;
  // the returned graph's replay() runs them again, on this backend's stream, reading and writing the memory they
  // named (its contents at the time of the replay: a step's inputs are uploaded into the same arrays before each
  // replay). Host arguments (sizes, weight views, parameters) are read at capture. Memory allocated while capturing
  // is zero-filled again by every replay, as allocate's is; memory released while capturing belongs to the graph
  // until it is destroyed. Nothing may be uploaded, downloaded or synchronised while capturing (std::logic_error).
  // A graph must be destroyed before the backend and before any memory it names is released.
  class Graph {
   public:
    virtual ~Graph() = default;
    virtual void replay() = 0;
  };
  virtual bool can_capture() const { return false; }
  virtual void begin_capture();
  virtual std::unique_ptr<Graph> end_capture();

  // ---- paged KV cache (executor/paged_kv.hpp's PageTable; the page layout of kernels/gpu_layout.hpp): BF16 pages
  // (std::uint16_t codes) [pages, page_tokens, Hkv, D] of K or of V, page_table [seqs, layout.max_pages_per_seq] (-1:
  // no page held). Rows [count, Hkv, D] of fp32, rounded to BF16 (nearest even), to position row_pos[r] of sequence
  // row_seq[r] (row_seq, row_pos: [count]).
  virtual void paged_kv_write(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table,
                              const std::int64_t* row_seq, const std::int64_t* row_pos, std::int64_t count,
                              const float* rows, std::uint16_t* pages) = 0;
  // rows [count, Hkv, D] = positions first_pos .. first_pos + count - 1 of sequence `seq`, widened to fp32.
  virtual void paged_kv_gather(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table,
                               std::int64_t seq, std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages,
                               float* rows) = 0;
  // attn.decode on the pages: kernels::paged_attention_decode_ref's shapes and dtypes (p.kv_dtype: fp32 or BF16
  // pages); max_keys (host): at least the most keys any query of the batch sees, which plans the split over the
  // context (a larger bound plans more splits, the ones past a sequence's keys empty: a captured step passes its
  // cache's longest context).
  virtual void paged_attention_decode(const kernels::DecodeAttentionParams& p, const kernels::gpu::PagedKvLayout& layout,
                                      const float* q, const std::int32_t* seq_lens, const std::int32_t* page_table,
                                      const void* k_pages, const void* v_pages, std::int64_t max_keys, float* out) = 0;

 private:
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::chrono::steady_clock::time_point>> wall_spans_;
};

// An array of T in a backend's memory: zero-filled at construction, released at destruction. Move-only.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(Backend& backend, std::int64_t count)
      : backend_(&backend), data_(static_cast<T*>(backend.allocate(static_cast<std::size_t>(count) * sizeof(T)))), size_(count) {}
  // A copy of host[0..count) on `backend`.
  DeviceArray(Backend& backend, const T* host, std::int64_t count) : DeviceArray(backend, count) {
    if (count > 0) backend.upload(data_, host, bytes());
  }
  DeviceArray(DeviceArray&& o) noexcept { swap(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    DeviceArray(std::move(o)).swap(*this);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (backend_) backend_->release(data_);
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  std::int64_t size() const { return size_; }
  std::size_t bytes() const { return static_cast<std::size_t>(size_) * sizeof(T); }
  void swap(DeviceArray& o) noexcept {
    std::swap(backend_, o.backend_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }

 private:
  Backend* backend_ = nullptr;
  T* data_ = nullptr;
  std::int64_t size_ = 0;
};

}  // namespace moeplan::executor
