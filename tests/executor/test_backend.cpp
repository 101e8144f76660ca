// The compute backend interface (executor/backend.hpp): the CPU backend gives what the kernels give, bit for bit;
// DeviceArray is zero-filled and released; and a whole forward pass (one rank and in-process ranks) runs through a
// backend whose memory is not the host's view of the weights: a checking backend that copies every weight into its
// own allocations and refuses any op argument outside them, as a device backend would. Its logits equal the plain
// CPU session's exactly, so the forward pass hands the backend only its own memory and the CPU backend adds nothing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <map>
#include <stdexcept>
#include <thread>

#include <unistd.h>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/splitmix.hpp"
#include "executor/backend_cpu.hpp"
#include "executor/backend_cuda.hpp"
#include "executor/checkpoint_random.hpp"
#include "executor/comm.hpp"
#include "executor/devices.hpp"
#include "executor/forward.hpp"
#include "executor/paged_kv.hpp"
#include "executor/run.hpp"
#include "kernels/activation.hpp"
#include "kernels/gpu_ops.hpp"
#include "kernels/matmul.hpp"
#include "kernels/norm.hpp"
#include "tests/executor/executor_test_util.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

namespace {

std::vector<float> seeded(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  for (float& f : v) f = static_cast<float>(2.0 * splitmix64_unit(seed) - 1.0);
  return v;
}

// A backend over the CPU one whose memory is its own: weights are copied in on first use, and every pointer an op
// receives must lie inside a live allocation (or resident copy) of this backend.
class CheckingBackend final : public executor::Backend {
 public:
  explicit CheckingBackend(const kernels::CpuContext& ctx) : cpu_(executor::make_cpu_backend(ctx)) {}
  ~CheckingBackend() override {
    for (const auto& v : fused_) {
      cpu_->release(const_cast<void*>(v.data));
      if (v.row_scales) cpu_->release(const_cast<float*>(v.row_scales));
    }
    for (auto& [host, copy] : resident_) {
      cpu_->release(const_cast<void*>(copy.data));
      if (copy.row_scales) cpu_->release(const_cast<float*>(copy.row_scales));
    }
  }
  executor::DeviceKind kind() const override { return executor::DeviceKind::cpu; }
  std::string description() const override { return "checking " + cpu_->description(); }
  void* allocate(std::size_t bytes) override { return track(cpu_->allocate(bytes), bytes); }
  void release(void* p) noexcept override {
    live_.erase(static_cast<const char*>(p));
    cpu_->release(p);
  }
  void upload(void* dst, const void* src, std::size_t bytes) override {
    check(dst, bytes);
    cpu_->upload(dst, src, bytes);
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    check(src, bytes);
    cpu_->download(dst, src, bytes);
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    check(dst, bytes);
    check(src, bytes);
    cpu_->copy(dst, src, bytes);
  }
  void synchronize() override { ++syncs; }
  kernels::WeightView resident(const kernels::WeightView& host) override {
    auto& copy = resident_[host.data];
    if (!copy.data) {
      copy = host;
      const std::size_t bytes = static_cast<std::size_t>(kernels::weight_bytes(host));
      void* d = track(cpu_->allocate(bytes), bytes);
      ++resident_allocations_;
      cpu_->upload(d, host.data, bytes);
      copy.data = d;
      if (host.row_scales) {
        void* s = track(cpu_->allocate(static_cast<std::size_t>(host.rows) * sizeof(float)), static_cast<std::size_t>(host.rows) * sizeof(float));
        cpu_->upload(s, host.row_scales, static_cast<std::size_t>(host.rows) * sizeof(float));
        copy.row_scales = static_cast<const float*>(s);
        ++resident_allocations_;
      }
    }
    return copy;
  }
  void matmul(const float* x, std::int64_t M, const kernels::WeightView& w, float* y, bool accumulate) override {
    check_f(x, M * w.cols), check_w(w), check_f(y, M * w.rows);
    ++ops["matmul"];
    cpu_->matmul(x, M, w, y, accumulate);
  }
  void grouped_matmul(const float* x, const std::int64_t* offsets, std::int64_t experts, const kernels::WeightView* w,
                      float* y) override {
    const std::int64_t R = offsets[experts];
    for (std::int64_t e = 0; e < experts; ++e) check_w(w[e]);
    check_f(x, R * w[0].cols), check_f(y, R * w[0].rows);
    ++ops["grouped_matmul"];
    cpu_->grouped_matmul(x, offsets, experts, w, y);
  }
  // With fuse_gate_up, each expert's gate and up copied into one [2 I, K] weight (gate rows, then up rows; their row
  // scales alike), as the CUDA backend lays them out for its fused grouped GEMM.
  std::vector<kernels::WeightView> resident_gate_up(const kernels::WeightView* gate, const kernels::WeightView* up,
                                                    std::size_t count) override {
    if (!fuse_gate_up || count == 0) return {};
    auto& views = gate_up_[gate[0].data];
    for (std::size_t i = views.size(); i < count; ++i) {
      const std::size_t bytes = static_cast<std::size_t>(kernels::weight_bytes(gate[i]));
      const std::size_t scale_bytes = static_cast<std::size_t>(gate[i].rows) * sizeof(float);
      auto* d = static_cast<char*>(track(cpu_->allocate(2 * bytes), 2 * bytes));
      cpu_->upload(d, gate[i].data, bytes);
      cpu_->upload(d + bytes, up[i].data, bytes);
      ++resident_allocations_;
      kernels::WeightView v{gate[i].dtype, d, 2 * gate[i].rows, gate[i].cols, nullptr};
      if (gate[i].row_scales) {
        auto* sc = static_cast<char*>(track(cpu_->allocate(2 * scale_bytes), 2 * scale_bytes));
        cpu_->upload(sc, gate[i].row_scales, scale_bytes);
        cpu_->upload(sc + scale_bytes, up[i].row_scales, scale_bytes);
        ++resident_allocations_;
        v.row_scales = reinterpret_cast<const float*>(sc);
      }
      views.push_back(v);
      fused_.push_back(v);
    }
    return views;
  }
  // The fused group's [R, 2 I] products, then silu(gate) * up per row.
  void grouped_swiglu(const float* x, const std::int64_t* host_offsets, const std::int64_t* device_offsets,
                      std::int64_t rows, std::int64_t experts, const kernels::WeightView* gate_up,
                      float* out) override {
    const std::int64_t R = host_offsets ? host_offsets[experts] : rows, I = gate_up[0].rows / 2;
    for (std::int64_t e = 0; e < experts; ++e) check_w(gate_up[e]);
    check_f(x, R * gate_up[0].cols), check_f(out, R * I);
    ++ops["grouped_swiglu"];
    std::vector<float> both(static_cast<std::size_t>(R * 2 * I));
    cpu_->grouped_matmul(x, host_offsets ? host_offsets : device_offsets, experts, gate_up, both.data());
    kernels::silu_mul_fused_ref(both.data(), R, I, out);
  }
  void attention(const kernels::AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                 const float* v, float* out) override {
    check_f(q, p.q_tokens * p.q_heads * p.head_dim), check(q_pos, static_cast<std::size_t>(p.q_tokens) * 8);
    check_f(k, p.kv_tokens * p.kv_heads * p.head_dim), check_f(v, p.kv_tokens * p.kv_heads * p.head_dim);
    check_f(out, p.q_tokens * p.q_heads * p.head_dim);
    ++ops["attention"];
    cpu_->attention(p, q, q_pos, k, v, out);
  }
  void rmsnorm(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps) override {
    check_f(x, tokens * hidden), check_f(w, hidden), check_f(y, tokens * hidden);
    ++ops["rmsnorm"];
    cpu_->rmsnorm(x, w, y, tokens, hidden, eps);
  }
  void rms_normalize(const float* x, float* y, std::int64_t rows, std::int64_t dim, float eps) override {
    check_f(x, rows * dim), check_f(y, rows * dim);
    ++ops["rms_normalize"];
    cpu_->rms_normalize(x, y, rows, dim, eps);
  }
  void rope(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
            const float* inv_freq, kernels::RopeLayout layout) override {
    check_f(x, tokens * heads * head_dim), check(positions, static_cast<std::size_t>(tokens) * 8), check_f(inv_freq, head_dim / 2);
    ++ops["rope"];
    cpu_->rope(x, tokens, heads, head_dim, positions, inv_freq, layout);
  }
  void router_topk(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                   kernels::RouterScoring scoring, std::int32_t* ids, float* weights) override {
    check_f(logits, tokens * experts), check(ids, static_cast<std::size_t>(tokens * k) * 4), check_f(weights, tokens * k);
    ++ops["router_topk"];
    cpu_->router_topk(logits, tokens, experts, k, scoring, ids, weights);
  }
  void silu_mul(const float* gate, const float* up, float* out, std::int64_t n) override {
    check_f(gate, n), check_f(up, n), check_f(out, n);
    ++ops["silu_mul"];
    cpu_->silu_mul(gate, up, out, n);
  }
  void add(const float* a, const float* b, float* out, std::int64_t n) override {
    check_f(a, n), check_f(b, n), check_f(out, n);
    ++ops["add"];
    cpu_->add(a, b, out, n);
  }
  void scale_rows(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale) override {
    check_f(x, rows * cols), check_f(row_scale, rows);
    ++ops["scale_rows"];
    cpu_->scale_rows(x, rows, cols, row_scale);
  }
  void permute(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale, std::int64_t rows,
               float* x_sorted) override {
    check_f(x, hidden), check(row_token, static_cast<std::size_t>(rows) * 8), check_f(x_sorted, rows * hidden);
    if (row_scale) check_f(row_scale, rows);
    ++ops["permute"];
    cpu_->permute(x, hidden, row_token, row_scale, rows, x_sorted);
  }
  void unpermute_add(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                     std::int64_t rows, float* y) override {
    check_f(y_sorted, rows * hidden), check(row_token, static_cast<std::size_t>(rows) * 8), check_f(y, hidden);
    if (row_scale) check_f(row_scale, rows);
    ++ops["unpermute_add"];
    cpu_->unpermute_add(y_sorted, hidden, row_token, row_scale, rows, y);
  }
  void embed(const kernels::WeightView& table, std::int64_t first_row, const std::int32_t* ids, std::int64_t tokens,
             float* out) override {
    check_w(table), check_f(out, tokens * table.cols);
    ++ops["embed"];
    cpu_->embed(table, first_row, ids, tokens, out);
  }
  void paged_kv_write(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table,
                      const std::int64_t* row_seq, const std::int64_t* row_pos, std::int64_t count, const float* rows,
                      std::uint16_t* pages) override {
    check(page_table, 4), check(row_seq, static_cast<std::size_t>(count) * 8), check(row_pos, static_cast<std::size_t>(count) * 8);
    check_f(rows, count * layout.kv_heads * layout.head_dim);
    check(pages, static_cast<std::size_t>(kernels::gpu::paged_kv_page_elems(layout)) * sizeof(std::uint16_t));
    ++ops["paged_kv_write"];
    cpu_->paged_kv_write(layout, page_table, row_seq, row_pos, count, rows, pages);
  }
  void paged_kv_gather(const kernels::gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                       std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages, float* rows) override {
    check(page_table, 4), check_f(rows, count * layout.kv_heads * layout.head_dim);
    check(pages, static_cast<std::size_t>(kernels::gpu::paged_kv_page_elems(layout)) * sizeof(std::uint16_t));
    ++ops["paged_kv_gather"];
    cpu_->paged_kv_gather(layout, page_table, seq, first_pos, count, pages, rows);
  }
  void paged_attention_decode(const kernels::DecodeAttentionParams& p, const kernels::gpu::PagedKvLayout& layout,
                              const float* q, const std::int32_t* seq_lens, const std::int32_t* page_table,
                              const void* k_pages, const void* v_pages, std::int64_t max_keys, float* out) override {
    check_f(q, p.seqs * p.q_heads * p.head_dim), check(seq_lens, static_cast<std::size_t>(p.seqs) * 4);
    check(page_table, 4), check(k_pages, 4), check(v_pages, 4), check_f(out, p.seqs * p.q_heads * p.head_dim);
    ++ops["paged_attention_decode"];
    cpu_->paged_attention_decode(p, layout, q, seq_lens, page_table, k_pages, v_pages, max_keys, out);
  }

  // Timing spans of a fixed length when set (the session must add what the backend's spans say).
  double span_seconds(std::size_t span) override {
    return fixed_span_seconds > 0 ? fixed_span_seconds : executor::Backend::span_seconds(span);
  }
  double fixed_span_seconds = 0;

  // Allocations made through allocate() and not released (resident weight copies not counted).
  std::size_t live_allocations() const { return live_.size() - resident_allocations_; }
  std::map<std::string, int> ops;
  int syncs = 0;
  bool fuse_gate_up = false;  // resident_gate_up makes fused groups (the CUDA backend's experts path)
  // Says it can capture and takes device offsets, but begin_capture throws (a backend refusing a capture).
  bool refuses_capture = false;
  bool can_capture() const override { return refuses_capture; }
  bool grouped_offsets_on_device(const kernels::WeightView*, std::int64_t) const override { return refuses_capture; }
  void begin_capture() override { throw std::runtime_error("capture refused by the test backend"); }

 private:
  void* track(void* p, std::size_t bytes) {
    if (p) live_[static_cast<const char*>(p)] = bytes;
    return p;
  }
  // [p, p + bytes) lies inside one live allocation.
  void check(const void* p, std::size_t bytes) const {
    if (bytes == 0) return;
    const char* c = static_cast<const char*>(p);
    auto it = live_.upper_bound(c);
    if (it == live_.begin() || c + bytes > std::prev(it)->first + std::prev(it)->second)
      throw std::logic_error("an op was given memory that is not this backend's");
  }
  void check_f(const float* p, std::int64_t n) const { check(p, static_cast<std::size_t>(n) * sizeof(float)); }
  void check_w(const kernels::WeightView& w) const {
    check(w.data, static_cast<std::size_t>(kernels::weight_bytes(w)));
    if (w.row_scales) check_f(w.row_scales, w.rows);
  }
  std::unique_ptr<executor::Backend> cpu_;
  std::map<const char*, std::size_t> live_;
  std::map<const void*, kernels::WeightView> resident_;
  std::map<const void*, std::vector<kernels::WeightView>> gate_up_;  // resident_gate_up's views by first gate
  std::vector<kernels::WeightView> fused_;                           // every fused view, to release
  std::size_t resident_allocations_ = 0;
};

using Prompts = std::vector<std::vector<std::int32_t>>;

// Prefill (all logits) and 4 greedy decode steps; every logit of every step, in order. `fed`: the tokens the decode
// steps take, one per sequence and step, appended by a run that chooses them greedily (empty), else read from it
// (another session's choices, so that a session whose rounding flips a near-tie still sees the same tokens).
std::vector<float> generate(executor::Session& s, std::int64_t V, const Prompts& prompts,
                            std::vector<std::int32_t>* fed = nullptr) {
  const bool forced = fed && !fed->empty();
  std::vector<float> all = s.prefill(prompts, true);
  std::vector<std::int32_t> next;
  std::size_t row = 0, at = 0;
  std::uint64_t rng = 0;
  auto choose = [&](const float* logits, std::size_t b) {
    const std::int32_t t =
        forced ? fed->at(at++) : executor::sample(logits + b * static_cast<std::size_t>(V), V, 0, 1, rng);
    if (fed && !forced) fed->push_back(t);
    return t;
  };
  for (const auto& p : prompts) {
    row += p.size();
    next.push_back(choose(all.data() + (row - 1) * static_cast<std::size_t>(V), 0));
  }
  for (int i = 0; i < 4; ++i) {
    const auto l = s.decode(next);
    all.insert(all.end(), l.begin(), l.end());
    for (std::size_t b = 0; b < next.size(); ++b) next[b] = choose(l.data(), b);
  }
  return all;
}

Prompts two_prompts(const std::filesystem::path& dir) {
  const auto prompt = parse_json_file(dir / "expected.json").at("prompt").get<std::vector<std::int32_t>>();
  return {prompt, std::vector<std::int32_t>(prompt.rbegin() + 7, prompt.rend())};
}

}  // namespace

TEST_CASE("CPU backend ops equal the kernels they wrap, bit for bit") {
  const kernels::CpuContext ctx = kernels::default_cpu_context();
  auto backend = executor::make_cpu_backend(ctx);
  const std::int64_t M = 5, K = 48, N = 24;
  const auto x = seeded(static_cast<std::size_t>(M * K), 1), wf = seeded(static_cast<std::size_t>(N * K), 2);
  const kernels::WeightView w{kernels::WeightDtype::f32, wf.data(), N, K, nullptr};
  std::vector<float> direct(static_cast<std::size_t>(M * N)), via(direct.size());
  kernels::matmul(ctx, x.data(), M, w, direct.data());
  backend->matmul(x.data(), M, backend->resident(w), via.data(), false);
  CHECK(std::memcmp(direct.data(), via.data(), direct.size() * sizeof(float)) == 0);
  const auto g = seeded(static_cast<std::size_t>(M * K), 3);
  std::vector<float> a(x.size()), b(x.size());
  kernels::silu_mul(ctx, x.data(), g.data(), a.data(), M * K);
  backend->silu_mul(x.data(), g.data(), b.data(), M * K);
  CHECK(a == b);
  const auto nw = seeded(static_cast<std::size_t>(K), 4);
  kernels::rmsnorm(ctx, x.data(), nw.data(), a.data(), M, K, 1e-5f);
  backend->rmsnorm(x.data(), nw.data(), b.data(), M, K, 1e-5f);
  CHECK(a == b);
  // scale_rows: row r times s[r], as a scalar loop would
  std::vector<float> rows = x;
  const std::vector<float> s{0.5f, 1.25f, 3.0f, -1.0f, 1.0f / 3.0f};
  backend->scale_rows(rows.data(), M, K, s.data());
  for (std::int64_t r = 0; r < M; ++r)
    for (std::int64_t i = 0; i < K; ++i) CHECK(rows[static_cast<std::size_t>(r * K + i)] == x[static_cast<std::size_t>(r * K + i)] * s[static_cast<std::size_t>(r)]);
  // embed: the rows a rank holds, zeros for the others
  std::vector<float> e(static_cast<std::size_t>(3 * K), 7.0f);
  const std::vector<std::int32_t> ids{10, 3, 12};  // table rows [10, 10 + N)
  backend->embed(w, 10, ids.data(), 3, e.data());
  CHECK(std::equal(e.begin(), e.begin() + K, wf.begin()));
  CHECK(std::all_of(e.begin() + K, e.begin() + 2 * K, [](float f) { return f == 0.0f; }));
  CHECK(std::equal(e.begin() + 2 * K, e.end(), wf.begin() + 2 * K));
}

TEST_CASE("DeviceArray: zero-filled, copies, overlapping device copies, moves and releases") {
  CheckingBackend b(kernels::CpuContext{});
  {
    executor::DeviceArray<float> a(b, 100);
    std::vector<float> host(100, 1.0f);
    b.download(host.data(), a.data(), a.bytes());
    CHECK(std::all_of(host.begin(), host.end(), [](float f) { return f == 0.0f; }));
    std::vector<float> src(100);
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i);
    executor::DeviceArray<float> c(b, src.data(), 100);
    b.copy(c.data(), c.data() + 10, 90 * sizeof(float));  // drop the first 10 rows of 1, in place
    b.download(host.data(), c.data(), c.bytes());
    CHECK(host[0] == 10.0f);
    CHECK(host[89] == 99.0f);
    executor::DeviceArray<float> moved = std::move(c);
    CHECK(moved.size() == 100);
    CHECK(c.data() == nullptr);
    CHECK(b.live_allocations() == 2);
    float stray = 0;
    CHECK_THROWS_AS(b.copy(moved.data(), &stray, sizeof(float)), std::logic_error);  // host memory is refused
  }
  CHECK(b.live_allocations() == 0);
}

TEST_CASE(
    "A forward pass through a backend with its own memory equals the CPU session: exactly, and with fused gate-up "
    "within 1e-5") {
  for (const char* name : {"llama4_qknorm", "qwen3_moe", "mixtral"}) {
    INFO(name);
    const auto dir = test::fixtures() / "oracle" / name;
    const auto model = executor::Model::load(dir);
    const Prompts prompts = two_prompts(dir);
    const std::int64_t V = model->config().vocab;
    const kernels::CpuContext ctx{kernels::best_cpu_path(), nullptr};
    executor::Session plain(model, ctx, 2);
    const auto want = generate(plain, V, prompts);
    auto checking = std::make_shared<CheckingBackend>(ctx);
    {
      executor::Session s(model, checking, 2);
      CHECK(generate(s, V, prompts) == want);
      CHECK(s.kv_cache_bytes() == plain.kv_cache_bytes());
    }
    CHECK(checking->live_allocations() == 0);  // every buffer of the session is released with it
    CHECK(checking->ops["matmul"] > 0);
    CHECK(checking->ops["attention"] > 0);
    CHECK(checking->ops["grouped_matmul"] > 0);
    CHECK(checking->ops["embed"] == 5);  // one per step
    CHECK(checking->syncs > 0);          // the per-op timers wait for the backend
    // The experts' gate and up as one fused group (the CUDA backend's path): one GEMM over [gate; up] rows and
    // silu(gate) * up per row against two grouped matmuls and silu_mul, the same dot products, so the logits agree to
    // the last bits of the activation.
    auto fused = std::make_shared<CheckingBackend>(ctx);
    fused->fuse_gate_up = true;
    {
      executor::Session s(model, fused, 2);
      const auto got = generate(s, V, prompts);
      REQUIRE(got.size() == want.size());
      double diff = 0, largest = 0;
      for (std::size_t i = 0; i < got.size(); ++i) {
        diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - want[i]));
        largest = std::max(largest, std::fabs(static_cast<double>(want[i])));
      }
      CHECK(diff <= 1e-5 * largest);
    }
    CHECK(fused->live_allocations() == 0);
    int moe_layers = 0;
    for (const auto& l : model->layers) moe_layers += l.moe ? 1 : 0;
    CHECK(fused->ops["grouped_swiglu"] == 5 * moe_layers);                // once per MoE layer and step
    CHECK(fused->ops["grouped_matmul"] == fused->ops["grouped_swiglu"]);  // down only
  }
}

TEST_CASE("In-process ranks (tp, ep with attention dp, pp) on backends with their own memory equal the CPU ranks") {
  const auto dir = test::fixtures() / "oracle" / "llama4_qknorm";
  const auto model = executor::Model::load(dir);
  const Prompts prompts = two_prompts(dir);
  const std::int64_t V = model->config().vocab;
  struct Layout {
    int tp, ep, dp, pp;
  };
  for (const Layout l : {Layout{2, 2, 1, 1}, Layout{1, 2, 2, 1}, Layout{1, 1, 1, 2}}) {
    INFO("tp=" << l.tp << " ep=" << l.ep << " dp=" << l.dp << " pp=" << l.pp);
    const model::ParallelLayout layout{.tp = l.tp, .ep = l.ep, .pp = l.pp, .dp = l.dp};
    const int stage = l.tp * l.dp, ranks = layout.gpus();
    auto run = [&](bool checked) {
      auto comms = executor::make_in_process_group(ranks);
      std::vector<std::vector<float>> out(static_cast<std::size_t>(ranks));
      std::vector<std::string> errors(static_cast<std::size_t>(ranks));
      std::vector<std::thread> threads;
      for (int r = 0; r < ranks; ++r)
        threads.emplace_back([&, r] {
          const std::size_t d = static_cast<std::size_t>(r % stage / l.tp), dp = static_cast<std::size_t>(l.dp);
          const Prompts mine(prompts.begin() + static_cast<std::ptrdiff_t>(prompts.size() * d / dp),
                             prompts.begin() + static_cast<std::ptrdiff_t>(prompts.size() * (d + 1) / dp));
          const kernels::CpuContext ctx{kernels::best_cpu_path(), nullptr};
          std::shared_ptr<executor::Backend> backend = checked ? std::shared_ptr<executor::Backend>(std::make_shared<CheckingBackend>(ctx))
                                                               : std::shared_ptr<executor::Backend>(executor::make_cpu_backend(ctx));
          executor::Communicator& world = *comms[static_cast<std::size_t>(r)];
          try {
            executor::Session s(model->sharded(layout, r), backend, static_cast<std::int64_t>(mine.size()),
                                executor::stage_group(world, stage), l.pp > 1 ? &world : nullptr);
            out[static_cast<std::size_t>(r)] = generate(s, V, mine);
          } catch (const std::exception& e) {
            errors[static_cast<std::size_t>(r)] = e.what();
          }
        });
      for (auto& t : threads) t.join();
      for (const auto& e : errors) CHECK(e.empty());
      return out;
    };
    CHECK(run(true) == run(false));
  }
}

TEST_CASE("Device selection in one place: cpu, cuda when built and visible, else one line naming the fix") {
  kernels::DeviceQuery q;
  CHECK(executor::cuda_executor_unavailable(q).find("this build has no CUDA (configure with -DMOEPLAN_CUDA=ON") != std::string::npos);
  CHECK_THROWS_WITH(executor::select_device("cuda", q), Catch::Contains("-DMOEPLAN_CUDA=ON"));
  q.cuda_built = true;
  q.status = "no CUDA-capable device is detected";
  CHECK(executor::cuda_executor_unavailable(q).find("no CUDA device found (no CUDA-capable device is detected)") != std::string::npos);
  CHECK_THROWS_AS(executor::select_device("cuda", q), InputError);
  for (const auto& line : {executor::cuda_executor_unavailable({}), executor::cuda_executor_unavailable(q)}) {
    CHECK(!line.empty());
    CHECK(line.find('\n') == std::string::npos);
  }
  q.gpus.push_back({"NVIDIA H200", 1.4e11, 132, 9, 0});
  CHECK(executor::cuda_executor_unavailable(q).empty());
  CHECK(executor::select_device("cuda", q) == executor::DeviceKind::cuda);
  CHECK(executor::select_device("cpu", {}) == executor::DeviceKind::cpu);
  CHECK_THROWS_WITH(executor::select_device("tpu", q), Catch::Contains("unknown --device 'tpu' (use cpu or cuda)"));
  CHECK(executor::make_backend(executor::DeviceKind::cpu, kernels::CpuContext{})->kind() == executor::DeviceKind::cpu);
  if (!executor::query_gpus().cuda_built)
    CHECK_THROWS_WITH(executor::make_backend(executor::DeviceKind::cuda, kernels::CpuContext{}), Catch::Contains("this build has no CUDA"));
}

TEST_CASE("run --device cuda over several GPUs: NCCL, a GPU per rank, --cuda-device 0, a sequence per replica") {
  const model::ParallelLayout one{.tp = 1, .ep = 1, .pp = 1, .dp = 1}, tp2{.tp = 2, .ep = 1, .pp = 1, .dp = 1};
  const model::ParallelLayout dep4{.tp = 1, .ep = 4, .pp = 1, .dp = 4};
  auto gpus = [](bool nccl, int visible) {
    executor::CudaRanksContext c;
    c.nccl = nccl;
    c.visible_gpus = visible;
    return c;
  };
  CHECK(executor::cuda_ranks_problem(one, 1, 3, gpus(false, 0)).empty());  // one rank: its backend checks its GPU
  CHECK(executor::cuda_ranks_problem(tp2, 1, 0, gpus(true, 2)).empty());
  CHECK(executor::cuda_ranks_problem(dep4, 4, 0, gpus(true, 8)).empty());
  CHECK_THAT(executor::cuda_ranks_problem(tp2, 1, 0, gpus(false, 2)),
             Catch::Contains("needs NCCL, which this build lacks"));
  CHECK_THAT(executor::cuda_ranks_problem(tp2, 1, 1, gpus(true, 2)),
             Catch::Contains("--cuda-device 1 picks the GPU of a one-GPU run"));
  CHECK_THAT(executor::cuda_ranks_problem(dep4, 4, 0, gpus(true, 1)),
             Catch::Contains("--device cuda with 4 ranks needs 4 GPUs (one per rank); 1 visible"));
  CHECK_THAT(executor::cuda_ranks_problem(dep4, 3, 0, gpus(true, 4)), Catch::Contains("needs --batch of at least 4"));
  for (const auto& line : {executor::cuda_ranks_problem(tp2, 1, 0, gpus(false, 2)),
                           executor::cuda_ranks_problem(dep4, 3, 0, gpus(true, 4))})
    CHECK(line.find('\n') == std::string::npos);
}

TEST_CASE("run --random-weights without --weights-out writes a checkpoint of its own process and removes it after") {
  executor::RunRequest q;
  q.config = parse_json_file(test::fixtures() / "oracle" / "qwen3_moe" / "config.json");
  q.name = "qwen3_moe";
  q.random_seed = 4;
  q.threads = 1;
  q.prompt_tokens = 4;
  q.gen_tokens = 2;
  const executor::RunResult res = executor::run_model(q);
  CHECK(res.weights_removed);
  CHECK(res.weights_dir.filename().string() == "moeplan_random_4_" + std::to_string(::getpid()));
  CHECK_FALSE(std::filesystem::exists(res.weights_dir));
  REQUIRE(res.tokens.size() == 1);
  CHECK(res.tokens.front().size() == 2);
  // --weights-out keeps them
  const test::TempDir dir("kept-weights");
  q.weights_out = dir.path() / "w";
  const executor::RunResult kept = executor::run_model(q);
  CHECK_FALSE(kept.weights_removed);
  CHECK(std::filesystem::exists(kept.weights_dir / "config.json"));
  CHECK(kept.tokens == res.tokens);
}

TEST_CASE("run --cuda-graphs: one GPU only, refused on the CPU and with several ranks before anything is loaded") {
  executor::RunRequest q;
  q.weights_dir = test::fixtures() / "oracle" / "qwen3_moe";
  q.name = "qwen3_moe";
  q.cuda_graphs = true;
  q.device = executor::DeviceKind::cuda;
  q.layout.tp = 2;
  CHECK_THAT(test::error_of([&] { (void)executor::run_model(q); }),
             Catch::Contains("--cuda-graphs captures the decode steps of a one-GPU run"));
  q.device = executor::DeviceKind::cpu;
  q.layout.tp = 1;
  CHECK_THAT(test::error_of([&] { (void)executor::run_model(q); }),
             Catch::Contains("--cuda-graphs needs --device cuda"));
}

TEST_CASE("run --process-per-rank: a process per rank, NCCL, the local rank's GPU and a shared unique id") {
  const model::ParallelLayout one{.tp = 1, .ep = 1, .pp = 1, .dp = 1}, tp2{.tp = 2, .ep = 1, .pp = 1, .dp = 1};
  const model::ParallelLayout dep4{.tp = 1, .ep = 4, .pp = 1, .dp = 4};
  auto placed = [](int rank, int world, int local, int visible, bool nccl = true, bool id = true) {
    return executor::CudaRanksContext{.nccl = nccl,
                                      .visible_gpus = visible,
                                      .process = executor::ProcessRank{rank, world, local, "torchrun"},
                                      .nccl_id_given = id};
  };
  CHECK(executor::cuda_ranks_problem(tp2, 1, 0, placed(1, 2, 1, 2)).empty());
  CHECK(executor::cuda_ranks_problem(dep4, 4, 0, placed(3, 4, 1, 2)).empty());               // two nodes of two GPUs
  CHECK(executor::cuda_ranks_problem(one, 1, 0, placed(0, 1, 0, 1, false, false)).empty());  // one process, no NCCL
  CHECK_THAT(executor::cuda_ranks_problem(
                 tp2, 1, 0,
                 executor::CudaRanksContext{
                     .nccl = true, .visible_gpus = 2, .process = executor::ProcessRank{}, .nccl_id_given = true}),
             Catch::Contains("--process-per-rank: no launcher's variables are set"));
  CHECK_THAT(executor::cuda_ranks_problem(dep4, 4, 0, placed(0, 8, 0, 8)),
             Catch::Contains("torchrun started 8 processes, but --tp x --dp x --pp makes 4 ranks"));
  CHECK_THAT(executor::cuda_ranks_problem(tp2, 1, 0, placed(0, 2, 0, 2, false)),
             Catch::Contains("--process-per-rank needs NCCL"));
  CHECK_THAT(executor::cuda_ranks_problem(tp2, 1, 1, placed(0, 2, 0, 2)),
             Catch::Contains(
                 "--cuda-device 1: with --process-per-rank each process drives the GPU of its local rank (0 here)"));
  CHECK_THAT(executor::cuda_ranks_problem(tp2, 1, 0, placed(1, 2, 1, 1)),
             Catch::Contains("local rank 1 (torchrun) has no GPU: 1 visible on this node"));
  CHECK_THAT(executor::cuda_ranks_problem(tp2, 1, 0, placed(1, 2, 1, 2, true, false)),
             Catch::Contains("needs MOEPLAN_NCCL_ID_FILE"));
  CHECK_THAT(executor::cuda_ranks_problem(dep4, 3, 0, placed(0, 4, 0, 4)),
             Catch::Contains("needs --batch of at least 4"));
}

TEST_CASE("the CUDA backend's matmul plan: a kernel per weight dtype, or one line naming the dtype") {
  using Path = executor::CudaMatmulPlan::Path;
  kernels::WeightView w{kernels::WeightDtype::bf16, nullptr, 64, 32, nullptr};
  auto plan = executor::plan_cuda_matmul(w, false);
  CHECK(plan.path == Path::bf16);
  CHECK_FALSE(plan.epilogue);
  CHECK(executor::plan_cuda_matmul(w, true).epilogue);  // accumulate goes through the epilogue
  const float scales[64] = {};
  w.row_scales = scales;
  CHECK(executor::plan_cuda_matmul(w, false).epilogue);  // a row-scaled weight too
  w.dtype = kernels::WeightDtype::fp8_e4m3;
  plan = executor::plan_cuda_matmul(w, false);
  CHECK(plan.path == Path::fp8);
  CHECK(plan.epilogue);  // the per-token activation scale
  w.cols = 40;
  plan = executor::plan_cuda_matmul(w, false);
  CHECK(plan.path == Path::none);
  CHECK(plan.problem.find("[64 x 40]") != std::string::npos);
  w.cols = 32;
  w.row_scales = nullptr;
  w.dtype = kernels::WeightDtype::f32;
  CHECK(executor::plan_cuda_matmul(w, false).path == Path::f32);
  for (auto dtype : {kernels::WeightDtype::f16, kernels::WeightDtype::int8}) {
    w.dtype = dtype;
    plan = executor::plan_cuda_matmul(w, false);
    CHECK(plan.path == Path::none);
    CHECK(plan.problem.find(std::string("no kernel for ") + kernels::weight_dtype_name(dtype) + " weights") != std::string::npos);
    CHECK(plan.problem.find('\n') == std::string::npos);
  }
  CHECK(executor::cuda_attention_tiled(128));
  CHECK_FALSE(executor::cuda_attention_tiled(16));
}

TEST_CASE("the CUDA backend's grouped_matmul plan: one launch for a BF16 or row-scaled FP8 group, else per expert") {
  using Path = executor::CudaGroupedPath;
  using kernels::WeightDtype;
  constexpr std::int64_t E = 4, N = 64, K = 32;
  const std::vector<float> data(E * N * K);  // room for a group of any dtype of these shapes
  const std::vector<float> scales(E * N, 1.f);
  // E experts of `dtype` laid out one after the other in `data` (as resident_group places them), row-scaled from
  // `scales` laid out likewise when asked
  auto group = [&](WeightDtype dtype, std::int64_t n, std::int64_t k, bool scaled) {
    std::vector<kernels::WeightView> w;
    const auto* base = reinterpret_cast<const unsigned char*>(data.data());
    for (std::int64_t e = 0; e < E; ++e)
      w.push_back({dtype, base + e * n * k * kernels::weight_dtype_bytes(dtype), n, k,
                   scaled ? scales.data() + e * n : nullptr});
    return w;
  };
  auto plan = [](const std::vector<kernels::WeightView>& w) { return executor::plan_cuda_grouped_matmul(w.data(), E); };
  CHECK(plan(group(WeightDtype::bf16, N, K, false)) == Path::bf16);
  CHECK(plan(group(WeightDtype::bf16, N, 24, false)) == Path::bf16);  // the kernel takes K in multiples of 8
  CHECK(plan(group(WeightDtype::bf16, N, 20, false)) == Path::per_expert);
  CHECK(plan(group(WeightDtype::bf16, N, K, true)) == Path::per_expert);       // the BF16 kernel applies no row scales
  CHECK(plan(group(WeightDtype::fp8_e4m3, N, K, true)) == Path::fp8);          // per-channel: scale index e * N + n
  CHECK(plan(group(WeightDtype::fp8_e4m3, N, K, false)) == Path::per_expert);  // no scales to hand the kernel
  // shapes the per-expert FP8 GEMM refuses (N or K not a multiple of 16) stay on that path, which names them
  CHECK(plan(group(WeightDtype::fp8_e4m3, N, 24, true)) == Path::per_expert);
  CHECK(plan(group(WeightDtype::fp8_e4m3, 40, K, true)) == Path::per_expert);
  for (const auto dtype : {WeightDtype::f32, WeightDtype::f16, WeightDtype::int8}) {
    CHECK(plan(group(dtype, N, K, false)) == Path::per_expert);
    CHECK(plan(group(dtype, N, K, true)) == Path::per_expert);
  }
  // experts not laid out as one [E, N, K] array, or their scales not as one [E, N] array
  auto w = group(WeightDtype::bf16, N, K, false);
  std::swap(w[1], w[2]);
  CHECK(plan(w) == Path::per_expert);
  w = group(WeightDtype::fp8_e4m3, N, K, true);
  w[3].row_scales = scales.data();
  CHECK(plan(w) == Path::per_expert);
  w = group(WeightDtype::fp8_e4m3, N, K, true);
  w[2].dtype = WeightDtype::int8;
  CHECK(plan(w) == Path::per_expert);
  w = group(WeightDtype::fp8_e4m3, N, K, true);
  CHECK(executor::plan_cuda_grouped_matmul(w.data(), 1) == Path::fp8);  // one expert is a group of one
  CHECK(executor::plan_cuda_grouped_matmul(w.data(), 0) == Path::per_expert);
}

TEST_CASE("the grouped FP8 GEMM with per-channel scales computes the per-expert FP8 path: token scale x row scale") {
  constexpr std::int64_t E = 3, N = 32, K = 48;
  const std::vector<std::int64_t> offsets = {0, 5, 5, 12};  // expert 1 gets no rows
  const std::int64_t R = offsets.back();
  // e4m3 codes [E, N, K] and one scale per output row [E, N], as resident_group lays out a projection's experts
  auto [w_q, w_scale, x] = test::seeded_fp8_experts(E, N, K, R, 11);
  std::vector<kernels::WeightView> views;
  for (std::int64_t e = 0; e < E; ++e)
    views.push_back({kernels::WeightDtype::fp8_e4m3, w_q.data() + e * N * K, N, K, w_scale.data() + e * N});
  REQUIRE(executor::plan_cuda_grouped_matmul(views.data(), E) == executor::CudaGroupedPath::fp8);
  // expert by expert, as validate --device cuda's reference runs it: x quantised per token and dequantised, times
  // dequant(W)[n, k] = data[n, k] * row_scales[n]
  std::vector<float> want(R * N), got(R * N);
  executor::make_cuda_numerics_cpu_backend(kernels::CpuContext{})
      ->grouped_matmul(x.data(), offsets.data(), E, views.data(), want.data());
  // the grouped kernel's twin on what backend_cuda.cpp hands the kernel: per-token codes and scales, the weights'
  // codes and their row scales as the per-channel layout
  std::vector<std::uint8_t> x_q(R * K);
  std::vector<float> x_scale(R);
  kernels::quantize_fp8_per_token_ref(x.data(), R, K, x_q.data(), x_scale.data());
  kernels::grouped_gemm_fp8_ref(x_q.data(), x_scale.data(), w_q.data(), w_scale.data(),
                                kernels::gpu::Fp8ScaleLayout::per_channel, offsets.data(), {R, E, N, K, false},
                                got.data());
  double max_want = 0;
  for (const float v : want) max_want = std::max(max_want, std::fabs(static_cast<double>(v)));
  REQUIRE(max_want > 0.1);
  // the two differ only in where the scales are rounded in: once per product or once per sum
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(std::fabs(got[i] - want[i]) <= 1e-5 * max_want);
}

namespace {

// A paged-KV plan for `sequences` of up to `context` positions of `m`, prompts of up to `step` tokens, in pages of
// `page_tokens`, its pool exactly the pages the plan needs (as executor::device_kv_plan cuts it).
executor::PagedKvPlan exact_plan(const model::ModelConfig& m, std::int64_t sequences, std::int64_t context,
                                 std::int64_t step, std::int64_t page_tokens) {
  executor::PagedKvRequest r;
  r.model = &m;
  r.page_tokens = page_tokens;
  r.context_tokens = context;
  r.sequences = sequences;
  r.step_tokens = step;
  r.budget_bytes = 1e12;
  executor::PagedKvPlan plan = executor::plan_paged_kv(r);
  plan.pages_total = plan.pages_needed;
  return plan;
}

// A seeded model in `dir`: the oracle fixture's config with head_dim 32, a size the paged decode kernel takes.
std::shared_ptr<const executor::Model> seeded_d32(const std::string& fixture, const std::filesystem::path& dir,
                                                  std::uint64_t seed) {
  return test::seeded_d32(test::fixtures() / "oracle" / fixture / "config.json", dir, seed);
}
std::shared_ptr<const executor::Model> seeded_llama4_d32(const std::filesystem::path& dir, std::uint64_t seed) {
  return seeded_d32("llama4_qknorm", dir, seed);
}

// How far a paged session's logits may be from the contiguous fp32 session's: its pages hold K and V rounded to
// BF16 (relative error up to 2^-9 per value), which moves these models' logits (|logit| < 10) by up to 0.028
// (measured: mixtral 0.028, llama4_qknorm 0.022, the seeded head_dim-32 Llama 4 0.004, its synthetic cache 0.002);
// the fp32 paths alone differ by less than 1e-4 (the references' double softmax against the CPU kernels' fp32). A
// misplaced row or an unrounded value read as BF16 moves them by far more.
constexpr double kBf16KvLogits = 0.05;

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(static_cast<double>(a[i]) - b[i]));
  return d;
}

}  // namespace

TEST_CASE("A paged KV cache gives the contiguous cache's logits: the decode kernel's path and gathered rows") {
  // The oracle fixtures (head_dim 16: the decode kernel does not take it, every step gathers each sequence's visible
  // rows from the pages) with chunk-8 (Llama 4) and window-6 (Mixtral) layers, and a seeded Llama 4 of head_dim 32,
  // whose decode steps run paged_attention_decode on the pages. 4-position pages: chunks of 8 span two pages, and
  // the 20-token prompt and its 4 decode steps cross chunk boundaries.
  test::TempDir dir("paged-session");
  (void)seeded_llama4_d32(dir.path(), 5);
  const auto prompt_dir = test::fixtures() / "oracle" / "llama4_qknorm";
  struct Case {
    std::filesystem::path dir;
    bool decode_kernel;
  };
  for (const Case& c : {Case{test::fixtures() / "oracle" / "llama4_qknorm", false},
                        Case{test::fixtures() / "oracle" / "mixtral", false}, Case{dir.path(), true}}) {
    INFO(c.dir.filename().string());
    const auto model = executor::Model::load(c.dir);
    const Prompts prompts = two_prompts(c.dir == dir.path() ? prompt_dir : c.dir);
    const std::int64_t V = model->config().vocab, prompt = static_cast<std::int64_t>(prompts.front().size());
    const kernels::CpuContext ctx{kernels::best_cpu_path(), nullptr};
    executor::Session contiguous(model, ctx, 2);
    std::vector<std::int32_t> tokens;
    const auto want = generate(contiguous, V, prompts, &tokens);
    auto checking = std::make_shared<CheckingBackend>(ctx);
    const executor::PagedKvPlan plan = exact_plan(model->config(), 2, prompt + 4, prompt, 4);
    {
      executor::Session paged(model, checking, 2, nullptr, nullptr, plan);
      REQUIRE(paged.paged_kv());
      const auto got = generate(paged, V, prompts, &tokens);
      CHECK(max_abs_diff(got, want) < kBf16KvLogits);
      // after the last step each layer holds the pages from the one with the first position the last query saw
      const std::int64_t len = paged.context(0), P = plan.page_tokens;
      std::int64_t held = 0;
      for (std::size_t li = 0; li < model->layers.size(); ++li) {
        const std::int64_t first = executor::first_visible_position(model->config().layers[li], len - 1) / P * P;
        CHECK(paged.cached_rows(li, 0) == len - first);
        held += (len - first + P - 1) / P + (paged.context(1) - executor::first_visible_position(model->config().layers[li], paged.context(1) - 1) / P * P + P - 1) / P;
      }
      CHECK(paged.kv_cache_bytes() == held * P * 2 * model->layers.front().k.rows * 2);  // BF16 values
    }
    CHECK(checking->live_allocations() == 0);
    CHECK(checking->ops["paged_kv_write"] == 2 * 5 * static_cast<int>(model->layers.size()));  // K and V, 5 steps
    CHECK((checking->ops["paged_attention_decode"] > 0) == c.decode_kernel);
    CHECK(checking->ops["paged_kv_gather"] > 0);  // the prefill always gathers
  }
}

TEST_CASE("A paged session: synthetic caches equal the contiguous ones, and a full pool refuses the step naming it") {
  test::TempDir dir("paged-fill");
  const auto model = seeded_llama4_d32(dir.path(), 6);
  const kernels::CpuContext ctx{kernels::best_cpu_path(), nullptr};
  // fill_cache to 37 positions (chunk 8: the chunked layers keep positions 32..36, the global one all 37), then
  // three decode steps of three sequences
  executor::Session contiguous(model, ctx, 3);
  contiguous.fill_cache(37, 4, 11);
  executor::Session paged(model, std::shared_ptr<executor::Backend>(executor::make_cpu_backend(ctx)), 3, nullptr, nullptr,
                          exact_plan(model->config(), 3, 40, 1, 4));
  paged.fill_cache(37, 4, 11);
  std::vector<std::int32_t> tokens = {1, 2, 3};
  for (int step = 0; step < 3; ++step) {
    const auto want = contiguous.decode(tokens), got = paged.decode(tokens);
    CHECK(max_abs_diff(got, want) < kBf16KvLogits);
    for (auto& t : tokens) t += 5;
  }
  CHECK(paged.context(2) == 40);
  CHECK_THROWS_AS(paged.decode(tokens), InputError);  // beyond the 40 positions the tables were planned for
  // A pool one page short of what two 20-token prompts hold (5 pages in each of 4 layers for each): the prefill is
  // refused with the pool named.
  executor::PagedKvPlan small = exact_plan(model->config(), 2, 24, 20, 4);
  small.pages_total = 2 * 5 * 4 - 1;
  executor::Session short_pool(model, std::shared_ptr<executor::Backend>(executor::make_cpu_backend(ctx)), 2, nullptr,
                               nullptr, small);
  const std::string message = test::error_of([&] { short_pool.prefill({std::vector<std::int32_t>(20, 1), std::vector<std::int32_t>(20, 2)}); });
  CHECK(message.find("pages of 4 tokens held") != std::string::npos);
}

TEST_CASE("Captured decode steps replay the op-by-op steps' logits and routing, bit for bit, on the CPU backend") {
  // Llama 4 (sigmoid routing scaling the expert input, temperature-tuned NoPE layers, chunk-8 layers) and Qwen3-MoE
  // (softmax routing scaling the output), head_dim 32 so that every decode step runs the paged decode kernel; the
  // CPU backend records the captured step's ops and replays them, as a CUDA graph replays a GPU's. Of the 4 decode
  // steps the first runs op by op, the second is captured, then each replays with its own tokens, positions and
  // block tables (the 20-token prompt's decode crosses a chunk and a page boundary).
  test::TempDir dir("captured-decode");
  const kernels::CpuContext ctx{kernels::best_cpu_path(), nullptr};
  for (const std::string fixture : {"llama4_qknorm", "qwen3_moe"}) {
    INFO(fixture);
    const auto model = seeded_d32(fixture, dir.path() / fixture, 8);
    const Prompts prompts = two_prompts(test::fixtures() / "oracle" / fixture);
    const std::int64_t V = model->config().vocab, prompt = static_cast<std::int64_t>(prompts.front().size());
    const executor::PagedKvPlan plan = exact_plan(model->config(), 2, prompt + 4, prompt, 4);
    auto cpu = [&] { return std::shared_ptr<executor::Backend>(executor::make_cpu_backend(ctx)); };
    executor::Session eager(model, cpu(), 2, nullptr, nullptr, plan), captured(model, cpu(), 2, nullptr, nullptr, plan);
    captured.capture_decode(true);
    std::vector<std::int32_t> tokens;
    const auto want = generate(eager, V, prompts, &tokens), got = generate(captured, V, prompts, &tokens);
    REQUIRE(got.size() == want.size());
    CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
    CHECK(captured.routing() == eager.routing());
    CHECK(eager.decode_replays() == 0);
    CHECK(captured.decode_replays() == 3);
    CHECK(captured.op_times().calls.at("decode.graph") == 3);
    CHECK(captured.op_times().calls.at("attn.decode") == eager.op_times().calls.at("attn.decode") / 4);
    CHECK(captured.kv_cache_bytes() == eager.kv_cache_bytes());
  }
  // Not captured: a backend that cannot (the checking wrapper), a contiguous cache, a sliding-window layer (Mixtral's:
  // the decode kernel does not take it).
  const auto llama4 = seeded_d32("llama4_qknorm", dir.path() / "llama4_qknorm", 8);
  const Prompts prompts = two_prompts(test::fixtures() / "oracle" / "llama4_qknorm");
  const auto plan = exact_plan(llama4->config(), 2, static_cast<std::int64_t>(prompts.front().size()) + 4,
                               static_cast<std::int64_t>(prompts.front().size()), 4);
  executor::Session wrapped(llama4, std::make_shared<CheckingBackend>(ctx), 2, nullptr, nullptr, plan);
  executor::Session contiguous(llama4, ctx, 2);
  const auto mixtral = seeded_d32("mixtral", dir.path() / "mixtral", 8);
  const Prompts mixtral_prompts = two_prompts(test::fixtures() / "oracle" / "mixtral");
  const auto mixtral_plan =
      exact_plan(mixtral->config(), 2, static_cast<std::int64_t>(mixtral_prompts.front().size()) + 4,
                 static_cast<std::int64_t>(mixtral_prompts.front().size()), 4);
  executor::Session sliding(mixtral, std::shared_ptr<executor::Backend>(executor::make_cpu_backend(ctx)), 2, nullptr,
                            nullptr, mixtral_plan);
  for (executor::Session* s : {&wrapped, &contiguous, &sliding}) {
    s->capture_decode(true);
    (void)generate(*s, s == &sliding ? mixtral->config().vocab : llama4->config().vocab,
                   s == &sliding ? mixtral_prompts : prompts);
    CHECK(s->decode_replays() == 0);
    CHECK(s->capture_error().empty());
  }
  // A backend that refuses the capture: that step and the later ones run op by op, with the same logits, and the
  // session says why.
  auto refusing = std::make_shared<CheckingBackend>(ctx);
  refusing->refuses_capture = true;
  executor::Session eager(llama4, std::make_shared<CheckingBackend>(ctx), 2, nullptr, nullptr, plan);
  executor::Session refused(llama4, refusing, 2, nullptr, nullptr, plan);
  refused.capture_decode(true);
  std::vector<std::int32_t> tokens;
  const auto want = generate(eager, llama4->config().vocab, prompts, &tokens);
  CHECK(generate(refused, llama4->config().vocab, prompts, &tokens) == want);
  CHECK(refused.decode_replays() == 0);
  CHECK(refused.capture_error() == "capture refused by the test backend");
  CHECK(refused.routing() == eager.routing());
}

TEST_CASE("The session's per-op times are the backend's timing spans") {
  const auto dir = test::fixtures() / "oracle" / "llama4_qknorm";
  const auto model = executor::Model::load(dir);
  auto checking = std::make_shared<CheckingBackend>(kernels::CpuContext{kernels::best_cpu_path(), nullptr});
  checking->fixed_span_seconds = 0.25;
  executor::Session s(model, checking, 2);
  (void)generate(s, model->config().vocab, two_prompts(dir));
  const executor::OpTimes& t = s.op_times();
  REQUIRE(t.calls.count("attn.decode") == 1);
  for (const auto& [name, calls] : t.calls) {
    INFO(name);
    CHECK(t.seconds.at(name) == Approx(0.25 * static_cast<double>(calls)));
  }
  CHECK(t.calls.at("attn.prefill") == static_cast<std::int64_t>(model->layers.size()));
}
