// The compute backend interface (executor/backend.hpp): the CPU backend gives what the kernels give, bit for bit;
// DeviceArray is zero-filled and released; and a whole forward pass (one rank and in-process ranks) runs through a
// backend whose memory is not the host's view of the weights: a checking backend that copies every weight into its
// own allocations and refuses any op argument outside them, as a device backend would. Its logits equal the plain
// CPU session's exactly, so the forward pass hands the backend only its own memory and the CPU backend adds nothing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <map>
#include <stdexcept>
#include <thread>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/splitmix.hpp"
#include "executor/backend_cpu.hpp"
#include "executor/backend_cuda.hpp"
#include "executor/comm.hpp"
#include "executor/devices.hpp"
#include "executor/forward.hpp"
#include "kernels/activation.hpp"
#include "kernels/matmul.hpp"
#include "kernels/norm.hpp"
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

  // Allocations made through allocate() and not released (resident weight copies not counted).
  std::size_t live_allocations() const { return live_.size() - resident_allocations_; }
  std::map<std::string, int> ops;
  int syncs = 0;

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
  std::size_t resident_allocations_ = 0;
};

using Prompts = std::vector<std::vector<std::int32_t>>;

// Prefill (all logits) and 4 greedy decode steps; every logit of every step, in order.
std::vector<float> generate(executor::Session& s, std::int64_t V, const Prompts& prompts) {
  std::vector<float> all = s.prefill(prompts, true);
  std::vector<std::int32_t> next;
  std::size_t row = 0;
  std::uint64_t rng = 0;
  for (const auto& p : prompts) {
    row += p.size();
    next.push_back(executor::sample(all.data() + (row - 1) * static_cast<std::size_t>(V), V, 0, 1, rng));
  }
  for (int i = 0; i < 4; ++i) {
    const auto l = s.decode(next);
    all.insert(all.end(), l.begin(), l.end());
    for (std::size_t b = 0; b < next.size(); ++b) next[b] = executor::sample(l.data() + b * static_cast<std::size_t>(V), V, 0, 1, rng);
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

TEST_CASE("A forward pass through a backend with its own memory equals the CPU session exactly") {
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
