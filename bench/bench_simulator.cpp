// How fast the simulator prices what the planner and the serving loop ask for:
//   - one decode-step estimate of a prebuilt StepModel (the planner's inner loop; goal well under 1 µs),
//   - the same estimate done naively, rebuilding the op graph and prices for every call (printed as a ratio),
//   - a whole serving simulation of 10,000 requests (goal well under a second).
// Configuration: Llama 4 Maverick FP8 on 8×H100, tp 8 / ep 8, uniform router.
#include <benchmark/benchmark.h>

#include <chrono>

#include "bench/bench_data.hpp"
#include "common/files.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "simulator/simulate.hpp"
#include "simulator/step_cost.hpp"

using namespace moeplan;
using namespace moeplan::simulator;

namespace {
using bench::data;
// Maverick FP8 on 8 x H100, tp 8 / ep 8, uniform router.
StepModelRequest default_request() {
  const auto& d = data();
  StepModelRequest r;
  r.graph.model = &d.maverick;
  r.graph.precision = model::resolve_precision("fp8", d.maverick, d.precisions);
  r.graph.layout = {8, 8, 1, 1};
  r.hardware = gpu_hardware(d.db, d.db.gpu("h100-sxm"));
  r.routing = RoutingModel::uniform(d.maverick.num_experts, d.maverick.experts_per_token, 8);
  return r;
}
double g_fast_ns = 0;
}  // namespace

static void BM_decode_step_estimate(benchmark::State& state) {
  const StepModel model(default_request());
  std::int64_t batch = 1;
  for (auto _ : state) {
    const StepShape s = decode_shape(static_cast<double>(batch), 2048, model.graph(), model::AttentionKind::chunked);
    benchmark::DoNotOptimize(model.step_time_s(s));
    batch = batch % 512 + 1;  // vary the batch so nothing is cached
  }
  state.SetItemsProcessed(state.iterations());
  const auto t0 = std::chrono::steady_clock::now();
  double sink = 0;
  for (int i = 1; i <= 100000; ++i) sink += model.step_time_s(decode_shape(i % 512 + 1, 2048, model.graph(), model::AttentionKind::chunked));
  benchmark::DoNotOptimize(sink);
  g_fast_ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / 100000;
  state.counters["ns_per_estimate"] = g_fast_ns;
}
BENCHMARK(BM_decode_step_estimate);

// The naive way: rebuild graph, prices and routing for every estimate.
static void BM_decode_step_estimate_naive(benchmark::State& state) {
  const StepModelRequest r = default_request();
  std::int64_t batch = 1;
  for (auto _ : state) {
    const StepModel model(r);
    benchmark::DoNotOptimize(
        model.step_time_s(decode_shape(static_cast<double>(batch), 2048, model.graph(), model::AttentionKind::chunked)));
    batch = batch % 512 + 1;
  }
  state.SetItemsProcessed(state.iterations());
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 2000; ++i) {
    const StepModel model(r);
    benchmark::DoNotOptimize(model.step_time_s(decode_shape(64, 2048, model.graph(), model::AttentionKind::chunked)));
  }
  const double naive_ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / 2000;
  state.counters["ns_per_estimate"] = naive_ns;
  if (g_fast_ns > 0) state.counters["naive_over_prebuilt"] = naive_ns / g_fast_ns;
}
BENCHMARK(BM_decode_step_estimate_naive);

static void BM_serving_10k_requests(benchmark::State& state) {
  SimulateRequest q;
  const auto r = default_request();
  q.model = r.graph.model;
  q.precision = r.graph.precision;
  q.layout = r.graph.layout;
  q.hardware = r.hardware;
  q.workload.input_tokens = 1000;
  q.workload.output_tokens = 200;
  q.workload.num_requests = 10000;
  q.workload.mode = static_cast<LoadMode>(state.range(0));
  q.workload.concurrency = 256;
  q.workload.request_rate_per_s = 20;
  std::int64_t steps = 0;
  for (auto _ : state) steps = simulate(q).serving.steps;
  state.counters["steps"] = static_cast<double>(steps);
  state.counters["requests_per_s_simulated"] = benchmark::Counter(10000.0 * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_serving_10k_requests)->Arg(static_cast<int>(LoadMode::max))->Arg(static_cast<int>(LoadMode::closed))
    ->Arg(static_cast<int>(LoadMode::poisson))->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
