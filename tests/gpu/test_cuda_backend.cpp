// GPU test: the CUDA backend runs the whole forward pass of every oracle fixture (tests/fixtures/oracle) and its logits
// are compared with the CPU backend's with the same matmul input rounding under validate --device's tolerance per
// weight dtype (and printed against the fp32 CPU backend); then, with two GPUs and
// NCCL, tensor parallel TP=2 (and TP=2 x EP=2 where the experts divide) over NCCL against one GPU. The fixtures'
// head_dim 16 gathers the paged cache's rows for every step; a seeded Llama 4 of head_dim 32 then checks the decode
// steps that run the paged decode kernel on the session's pages, and the same decode steps replayed from a CUDA graph
// against them op by op. FP8 experts laid out as one group, and BF16
// experts' gate and up as one fused group, are checked op by op against the per-expert reference. Exits 77 (CTest:
// skipped) when this build has no CUDA or the machine no device; 0 when every check passes; 1 when one fails.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "calibrate/validate_device.hpp"
#include "common/files.hpp"
#include "common/splitmix.hpp"
#include "executor/backend_cpu.hpp"
#include "executor/backend_cuda.hpp"
#include "executor/checkpoint_random.hpp"
#include "executor/devices.hpp"
#include "executor/forward.hpp"
#include "executor/nccl_comm.hpp"
#include "tests/executor/executor_test_util.hpp"

using namespace moeplan;

namespace {

constexpr int kSkip = 77;
const char* const kFixtures = MOEPLAN_TEST_FIXTURES "/oracle";

// Logits of every prompt position of `model` (sharded for `ranks` NCCL ranks under `layout`, or whole on GPU 0).
std::vector<float> logits_over_nccl(const std::shared_ptr<const executor::Model>& model, const model::ParallelLayout& layout,
                                    const std::vector<std::int32_t>& prompt) {
  const int ranks = layout.gpus();
  auto comms = executor::make_nccl_group(ranks);
  std::vector<std::vector<float>> out(static_cast<std::size_t>(ranks));
  std::vector<std::exception_ptr> failed(static_cast<std::size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      try {
        std::shared_ptr<executor::Backend> backend = executor::make_cuda_backend(r);
        executor::Session s(model->sharded(layout, r), backend, 1, comms[static_cast<std::size_t>(r)].get());
        out[static_cast<std::size_t>(r)] = s.prefill({prompt}, true);
      } catch (...) {
        failed[static_cast<std::size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& f : failed)
    if (f) std::rethrow_exception(f);
  return out[0];
}

int check_nccl_layouts() {
  const auto gpus = executor::query_gpus();
  if (!executor::nccl_available() || gpus.gpus.size() < 2) {
    std::printf("nccl layouts: not run (%s)\n", executor::nccl_available() ? "fewer than 2 GPUs" : "no NCCL in this build");
    return 0;
  }
  int failures = 0;
  for (const char* name : {"llama4_qknorm", "qwen3_moe", "mixtral"}) {
    const auto model = executor::Model::load(std::string(kFixtures) + "/" + name);
    std::vector<std::int32_t> prompt;
    for (int i = 0; i < 12; ++i) prompt.push_back(static_cast<std::int32_t>((i * 37 + 5) % model->config().vocab));
    executor::Session one(model, std::shared_ptr<executor::Backend>(executor::make_cuda_backend(0)), 1);
    const std::vector<float> ref = one.prefill({prompt}, true);
    double max_logit = 0;
    for (float v : ref) max_logit = std::max(max_logit, std::fabs(static_cast<double>(v)));
    const auto tol = calibrate::device_logit_tolerance(kernels::WeightDtype::bf16);
    for (const model::ParallelLayout layout : {model::ParallelLayout{.tp = 2, .ep = 1, .pp = 1, .dp = 1},
                                               model::ParallelLayout{.tp = 2, .ep = 2, .pp = 1, .dp = 1}}) {
      const std::vector<float> got = logits_over_nccl(model, layout, prompt);
      double diff = 0;
      for (std::size_t i = 0; i < ref.size(); ++i) diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - ref[i]));
      const bool ok = got.size() == ref.size() && diff <= tol.abs + tol.rel * max_logit;
      std::printf("nccl %s tp=%d ep=%d vs one GPU: max |diff| %.3g (%s)\n", name, layout.tp, layout.ep, diff, ok ? "pass" : "FAIL");
      failures += ok ? 0 : 1;
    }
  }
  return failures;
}

// A seeded Llama 4 of head_dim 32 (the fixture's shape otherwise): two prompts of 20 tokens and 6 decode steps fed
// the reference's greedy tokens, on the CUDA backend with its paged cache (decode steps on the paged decode kernel)
// against the CUDA numerics reference on the CPU paging its cache under the same plan (BF16 K and V, as on the
// device), under the BF16 tolerance.
// A seeded model: the oracle fixture's config with head_dim 32 (a size the paged decode kernel takes).
std::shared_ptr<const executor::Model> seeded_d32(const std::string& fixture, std::uint64_t seed) {
  const test::TempDir dir("gpu-" + fixture);
  return test::seeded_d32(std::filesystem::path(kFixtures) / fixture / "config.json", dir.path(), seed);
}

int check_paged_decode_kernel() {
  const auto model = seeded_d32("llama4_qknorm", 7);
  const std::int64_t V = model->config().vocab, len = 20, steps = 6;
  std::vector<std::vector<std::int32_t>> prompts(2);
  for (std::int64_t i = 0; i < len; ++i)
    for (std::size_t b = 0; b < 2; ++b) prompts[b].push_back(static_cast<std::int32_t>((i * 37 + 11 * b + 5) % V));
  auto device = std::shared_ptr<executor::Backend>(executor::make_cuda_backend(0));
  const auto plan = executor::device_kv_plan(*device, *model, 2, len + steps, len);
  executor::Session gpu(model, device, 2, nullptr, nullptr, plan);
  executor::Session ref(
      model, std::shared_ptr<executor::Backend>(executor::make_cuda_numerics_cpu_backend(kernels::CpuContext{})), 2,
      nullptr, nullptr, plan);
  std::vector<float> want = ref.prefill(prompts), got = gpu.prefill(prompts);
  double diff = 0, max_logit = 0;
  for (std::int64_t step = 0;; ++step) {
    for (std::size_t i = 0; i < want.size(); ++i) {
      diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - want[i]));
      max_logit = std::max(max_logit, std::fabs(static_cast<double>(want[i])));
    }
    if (step == steps) break;
    std::vector<std::int32_t> next(2);
    for (std::size_t b = 0; b < 2; ++b)
      next[b] = static_cast<std::int32_t>(std::max_element(want.begin() + static_cast<std::int64_t>(b) * V,
                                                           want.begin() + static_cast<std::int64_t>(b + 1) * V) -
                                          (want.begin() + static_cast<std::int64_t>(b) * V));
    want = ref.decode(next);
    got = gpu.decode(next);
  }
  const auto tol = calibrate::device_logit_tolerance(kernels::WeightDtype::bf16);
  const bool ok = gpu.paged_kv() && diff <= tol.abs + tol.rel * max_logit;
  std::printf("paged decode kernel (llama4 head_dim 32, 2 x 20 tokens + %lld steps): max |diff| %.3g (allowed %.3g): %s\n",
              static_cast<long long>(steps), diff, tol.abs + tol.rel * max_logit, ok ? "pass" : "FAIL");
  return ok ? 0 : 1;
}

// Decode steps replayed from a CUDA graph (Session::capture_decode) against the same steps op by op on the GPU, with
// the same tokens: Llama 4 and Qwen3-MoE of head_dim 32, 2 sequences of 20 tokens and 8 steps (the first runs op by
// op, the second is captured, six replay). They differ only in the decode attention's split over the context (the
// graph's is planned for the cache's longest context), so the logits agree to fp32 rounding. Prints the mean step
// time of both.
int check_captured_decode() {
  int failures = 0;
  for (const std::string fixture : {"llama4_qknorm", "qwen3_moe"}) {
    const auto model = seeded_d32(fixture, 9);
    const std::int64_t V = model->config().vocab, len = 20, steps = 8;
    std::vector<std::vector<std::int32_t>> prompts(2);
    for (std::int64_t i = 0; i < len; ++i)
      for (std::size_t b = 0; b < 2; ++b) prompts[b].push_back(static_cast<std::int32_t>((i * 37 + 11 * b + 5) % V));
    auto eager_gpu = std::shared_ptr<executor::Backend>(executor::make_cuda_backend(0));
    auto graph_gpu = std::shared_ptr<executor::Backend>(executor::make_cuda_backend(0));
    executor::Session eager(model, eager_gpu, 2, nullptr, nullptr,
                            executor::device_kv_plan(*eager_gpu, *model, 2, len + steps, len));
    executor::Session captured(model, graph_gpu, 2, nullptr, nullptr,
                               executor::device_kv_plan(*graph_gpu, *model, 2, len + steps, len));
    captured.capture_decode(true);
    std::vector<float> want = eager.prefill(prompts), got = captured.prefill(prompts);
    double diff = 0, max_logit = 0, eager_s = 0, graph_s = 0;
    for (std::int64_t step = 0; step < steps; ++step) {
      std::vector<std::int32_t> next(2);
      for (std::size_t b = 0; b < 2; ++b)
        next[b] = static_cast<std::int32_t>(std::max_element(want.begin() + static_cast<std::int64_t>(b) * V,
                                                             want.begin() + static_cast<std::int64_t>(b + 1) * V) -
                                            (want.begin() + static_cast<std::int64_t>(b) * V));
      const auto t0 = std::chrono::steady_clock::now();
      want = eager.decode(next);
      const auto t1 = std::chrono::steady_clock::now();
      got = captured.decode(next);
      const auto t2 = std::chrono::steady_clock::now();
      if (step >= 2) {  // after the warm-up step and the capture
        eager_s += std::chrono::duration<double>(t1 - t0).count();
        graph_s += std::chrono::duration<double>(t2 - t1).count();
      }
      for (std::size_t i = 0; i < want.size(); ++i) {
        diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - want[i]));
        max_logit = std::max(max_logit, std::fabs(static_cast<double>(want[i])));
      }
    }
    const double allowed = 1e-4 * std::max(1.0, max_logit);
    const bool ok = captured.decode_replays() == steps - 1 && captured.routing() == eager.routing() && diff <= allowed;
    std::printf(
        "captured decode (%s head_dim 32, 2 x %lld tokens + %lld steps): %lld replays, routing %s, max |diff| "
        "%.3g (allowed %.3g); mean step %.3f ms op by op, %.3f ms replayed: %s\n",
        fixture.c_str(), static_cast<long long>(len), static_cast<long long>(steps),
        static_cast<long long>(captured.decode_replays()), captured.routing() == eager.routing() ? "equal" : "DIFFERS",
        diff, allowed, 1e3 * eager_s / static_cast<double>(steps - 2), 1e3 * graph_s / static_cast<double>(steps - 2),
        ok ? "pass" : "FAIL");
    failures += ok ? 0 : 1;
  }
  return failures;
}

// Expert offsets of E experts where expert `empty` gets no rows and expert e otherwise first + step * e rows.
std::vector<std::int64_t> expert_offsets(std::int64_t E, std::int64_t empty, std::int64_t first, std::int64_t step) {
  std::vector<std::int64_t> offsets = {0};
  for (std::int64_t e = 0; e < E; ++e) offsets.push_back(offsets.back() + (e == empty ? 0 : first + step * e));
  return offsets;
}

// The largest |got - want| and the largest |want|.
std::pair<double, double> max_diff(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, largest = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(got[i]) - want[i]));
    largest = std::max(largest, std::fabs(static_cast<double>(want[i])));
  }
  return {diff, largest};
}

// FP8 experts made resident as the session makes them (resident_group) through the CUDA backend's grouped_matmul,
// one launch of the grouped FP8 GEMM with per-channel scales, against the same experts expert by expert on the CUDA
// numerics reference: with row scales, and without (resident_group gives the group unit scales). One expert gets
// no rows. Both sum the same FP8 products in fp32 in another order, over K = 512.
int check_grouped_fp8() {
  constexpr std::int64_t E = 8, N = 256, K = 512;
  const std::vector<std::int64_t> offsets = expert_offsets(E, 3, 17, 13);
  const std::int64_t R = offsets.back();
  const auto [w_q, w_scale, x] = test::seeded_fp8_experts(E, N, K, R, 5);
  int failures = 0;
  for (const bool scaled : {true, false}) {
    std::vector<kernels::WeightView> hosts;
    for (std::int64_t e = 0; e < E; ++e)
      hosts.push_back(
          {kernels::WeightDtype::fp8_e4m3, w_q.data() + e * N * K, N, K, scaled ? w_scale.data() + e * N : nullptr});
    std::vector<float> want(R * N), got(R * N);
    executor::make_cuda_numerics_cpu_backend(kernels::CpuContext{})
        ->grouped_matmul(x.data(), offsets.data(), E, hosts.data(), want.data());
    const auto device = executor::make_cuda_backend(0);
    const auto views = device->resident_group(hosts.data(), hosts.size());
    const executor::DeviceArray<float> dx(*device, x.data(), R * K);
    executor::DeviceArray<float> dy(*device, R * N);
    device->grouped_matmul(dx.data(), offsets.data(), E, views.data(), dy.data());
    device->download(got.data(), dy.data(), dy.bytes());
    const auto [diff, max_want] = max_diff(got, want);
    const bool grouped = executor::plan_cuda_grouped_matmul(views.data(), E) == executor::CudaGroupedPath::fp8;
    const bool ok = grouped && diff <= 1e-4 * max_want;
    std::printf(
        "grouped fp8 experts, %s row scales (%lld rows, N 256, K 512): %s, max |diff| %.3g (allowed %.3g): %s\n",
        scaled ? "with" : "without", static_cast<long long>(R), grouped ? "one launch" : "NOT GROUPED", diff,
        1e-4 * max_want, ok ? "pass" : "FAIL");
    failures += ok ? 0 : 1;
  }
  return failures;
}

// BF16 experts' gate and up as the CUDA backend's fused group (resident_gate_up, one grouped launch with the SwiGLU
// epilogue) against the two groups and silu_mul on the CUDA numerics reference: 8 experts, I 256, K 512, one expert
// with no rows. Both sum the same BF16 products in fp32 in another order.
int check_fused_gate_up() {
  constexpr std::int64_t E = 8, I = 256, K = 512;
  const std::vector<std::int64_t> offsets = expert_offsets(E, 5, 9, 7);
  const std::int64_t R = offsets.back();
  std::uint64_t state = 21;
  std::vector<std::uint16_t> gate_w(E * I * K), up_w(E * I * K);
  for (auto* w : {&gate_w, &up_w})
    for (auto& v : *w) v = kernels::float_to_bf16(static_cast<float>(0.1 * (2 * splitmix64_unit(state) - 1)));
  std::vector<float> x(R * K);
  for (auto& v : x) v = static_cast<float>(2 * splitmix64_unit(state) - 1);
  std::vector<kernels::WeightView> gate, up;
  for (std::int64_t e = 0; e < E; ++e) {
    gate.push_back({kernels::WeightDtype::bf16, gate_w.data() + e * I * K, I, K, nullptr});
    up.push_back({kernels::WeightDtype::bf16, up_w.data() + e * I * K, I, K, nullptr});
  }
  std::vector<float> g(R * I), u(R * I), want(R * I), got(R * I);
  const auto ref = executor::make_cuda_numerics_cpu_backend(kernels::CpuContext{});
  ref->grouped_matmul(x.data(), offsets.data(), E, gate.data(), g.data());
  ref->grouped_matmul(x.data(), offsets.data(), E, up.data(), u.data());
  ref->silu_mul(g.data(), u.data(), want.data(), R * I);
  const auto device = executor::make_cuda_backend(0);
  const auto fused = device->resident_gate_up(gate.data(), up.data(), gate.size());
  if (!fused.empty()) {
    const executor::DeviceArray<float> dx(*device, x.data(), R * K);
    executor::DeviceArray<float> dy(*device, R * I);
    device->grouped_swiglu(dx.data(), offsets.data(), nullptr, 0, E, fused.data(), dy.data());
    device->download(got.data(), dy.data(), dy.bytes());
  }
  const auto [diff, largest] = max_diff(got, want);
  const bool ok = !fused.empty() && diff <= 1e-4 * largest;
  std::printf("fused gate-up BF16 experts (%lld rows, I 256, K 512): %s, max |diff| %.3g (allowed %.3g): %s\n",
              static_cast<long long>(R), fused.empty() ? "NOT FUSED" : "one launch", diff, 1e-4 * largest,
              ok ? "pass" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace

int main() {
  const auto gpus = executor::query_gpus();
  if (!gpus.cuda_built || gpus.gpus.empty()) {
    std::printf("skipped: %s\n", gpus.cuda_built ? gpus.status.c_str() : "built without CUDA");
    return kSkip;
  }
  try {
    calibrate::DeviceValidateRequest q;
    q.fixtures_dir = kFixtures;
    q.make_device = [] { return std::shared_ptr<executor::Backend>(executor::make_cuda_backend(0)); };
    q.make_reference = [] { return std::shared_ptr<executor::Backend>(executor::make_cuda_numerics_cpu_backend(kernels::CpuContext{})); };
    q.make_fp32 = [] { return std::shared_ptr<executor::Backend>(executor::make_cpu_backend(kernels::CpuContext{})); };
    int failures = 0;
    for (const auto& c : calibrate::validate_device(q)) {
      std::printf("%s (%s weights): %lld rows, max |diff| %.3g (allowed %.3g; vs fp32 CPU %.3g), argmax differs in %lld: %s\n",
                  c.fixture.c_str(), kernels::weight_dtype_name(c.dtype), static_cast<long long>(c.rows), c.max_abs_diff,
                  c.allowed, c.max_abs_diff_fp32, static_cast<long long>(c.argmax_mismatches), c.pass() ? "pass" : "FAIL");
      failures += c.pass() ? 0 : 1;
    }
    failures += check_grouped_fp8();
    failures += check_fused_gate_up();
    failures += check_paged_decode_kernel();
    failures += check_captured_decode();
    failures += check_nccl_layouts();
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
}
