// The planner's default sweep for Llama 4 Maverick (every GPU in data/gpus.yaml × counts 1–64 × bf16/fp8/nvfp4 ×
// layouts × batches): sweep time, configurations and operating points per second, against
//   - the op-by-op sweep (plan_op_by_op: a StepModel per configuration, every batch priced op by op), and
//   - a naive version that re-derives the model (parse config.json, count, build) for every (GPU, count, precision)
//     cell and plans that cell alone,
// with the ratio of each to the sweep per configuration, the sweep over every serving engine (plan's default), and the
// whole plan: the sweep and the serving check of its first 10 rows (`moeplan plan`'s default), without and with its
// progress bar. A configuration is one (GPU, count, precision, layout) that `plan --verbose` counts as evaluated. The machine is shared: run with --benchmark_repetitions=10 and read
// the medians (docs/planner.md "Speed and a peer").
#include <benchmark/benchmark.h>

#include <chrono>
#include <sstream>

#include "bench/bench_data.hpp"
#include "common/files.hpp"
#include "common/progress.hpp"
#include "gpu_db/engines.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "planner/plan.hpp"

using namespace moeplan;

namespace {
using bench::data;
// The default sweep's request: Maverick, every GPU, bf16/fp8/nvfp4, the default counts, SLO and batches; the sweep
// alone (no serving check) unless `serving_rows` says how many rows to check.
planner::PlanRequest default_request(int serving_rows = 0) {
  planner::PlanRequest r;
  r.serving_rows = serving_rows;
  r.model = &data().maverick;
  r.precisions = &data().precisions;
  r.precision_specs = {"bf16", "fp8", "nvfp4"};
  for (const auto& g : data().db.gpus()) r.gpus.push_back(&g);
  return r;
}
double g_sweep_s_per_config = 0;  // the fast sweep's seconds per configuration, for the ratios

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs a whole sweep per iteration and reports its rates; returns seconds per configuration.
template <class Sweep>
double sweep_benchmark(benchmark::State& state, Sweep sweep, int serving_rows = 0) {
  const auto r = default_request(serving_rows);
  planner::PlanResult res;
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    res = sweep(r, data().db);
    seconds += seconds_since(t0);
    benchmark::DoNotOptimize(res.rows.data());
  }
  const double sweeps = static_cast<double>(state.iterations());
  const double configs = static_cast<double>(res.configurations);
  state.counters["configurations"] = configs;
  state.counters["operating_points"] = static_cast<double>(res.operating_points);
  state.counters["configurations_per_s"] = benchmark::Counter(configs * sweeps, benchmark::Counter::kIsRate);
  state.counters["operating_points_per_s"] =
      benchmark::Counter(static_cast<double>(res.operating_points) * sweeps, benchmark::Counter::kIsRate);
  state.counters["sweep_ms"] = seconds / sweeps * 1e3;
  return seconds / sweeps / configs;
}
}  // namespace

static void BM_default_sweep(benchmark::State& state) {
  g_sweep_s_per_config = sweep_benchmark(state, planner::plan);
}
BENCHMARK(BM_default_sweep)->Unit(benchmark::kMillisecond);

// The plan as `moeplan plan` runs it: the sweep, then its first 10 rows through the serving loop.
static void BM_default_plan_with_serving_check(benchmark::State& state) {
  sweep_benchmark(state, planner::plan, 10);
}
BENCHMARK(BM_default_plan_with_serving_check)->Unit(benchmark::kMillisecond);
// The same with plan's progress bar drawn as on a terminal (into a string): what the bar costs.
static void BM_default_plan_with_progress_bar(benchmark::State& state) {
  std::ostringstream terminal;
  sweep_benchmark(
      state,
      [&](planner::PlanRequest r, const gpu_db::Database& db) {
        Progress bar("plan", 0, terminal, true);
        r.progress = &bar;
        return planner::plan(r, db);
      },
      10);
}
BENCHMARK(BM_default_plan_with_progress_bar)->Unit(benchmark::kMillisecond);
// The sweep `moeplan plan` runs by default (--engine auto): every engine of data/engines.yaml on the GPUs it runs on,
// with its own max batch, tokens per step and KV dtype, ranked together. Its rates count every engine's configurations.
static void BM_default_sweep_all_engines(benchmark::State& state) {
  static const auto engines = gpu_db::EngineTable::load(data().dir / "engines.yaml");
  sweep_benchmark(state, [](planner::PlanRequest r, const gpu_db::Database& db) {
    for (const auto& e : engines.engines())
      if (!e.generic()) r.engines.push_back(&e);
    r.engine_max_batch = r.engine_max_num_batched_tokens = r.engine_kv_dtype = true;
    return planner::plan(r, db);
  });
}
BENCHMARK(BM_default_sweep_all_engines)->Unit(benchmark::kMillisecond);

// The same sweep priced op by op: a StepModel per configuration (how plan() prices a measured host; its oracle).
static void BM_op_by_op_sweep(benchmark::State& state) {
  const double s = sweep_benchmark(state, planner::plan_op_by_op);
  if (g_sweep_s_per_config > 0) state.counters["op_by_op_over_sweep"] = s / g_sweep_s_per_config;
}
BENCHMARK(BM_op_by_op_sweep)->Unit(benchmark::kMillisecond);

// Naive: for each (GPU, count, precision) re-read and re-derive the model, then plan that one cell.
static void BM_naive_per_configuration(benchmark::State& state) {
  const auto text = read_text_file(data().dir / "models" / "llama4-maverick" / "config.json");
  const auto base = default_request();
  std::int64_t configs = 0;
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t g = 0; g < 8 && g < base.gpus.size(); ++g) {
      for (const auto& prec : base.precision_specs) {
        for (int count : base.counts) {
          const auto m = model::parse_hf_config(parse_json_text(text, "config.json"), "llama4-maverick", "config.json");
          auto r = base;
          r.model = &m;
          r.gpus = {base.gpus[g]};
          r.precision_specs = {prec};
          r.counts = {count};
          configs += planner::plan(r, data().db).configurations;
        }
      }
    }
    seconds += seconds_since(t0);
  }
  const double naive = seconds / static_cast<double>(std::max<std::int64_t>(1, configs));
  state.counters["us_per_configuration"] = naive * 1e6;
  if (g_sweep_s_per_config > 0) state.counters["naive_over_sweep"] = naive / g_sweep_s_per_config;
}
BENCHMARK(BM_naive_per_configuration)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
