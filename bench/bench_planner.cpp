// The planner's default sweep for Llama 4 Maverick (every GPU in data/gpus.yaml × counts 1–64 × bf16/fp8/nvfp4 ×
// layouts × batches): sweep time, configurations and operating points per second, and a naive version that
// re-derives the model (parse config.json, count, build) for every configuration, with the ratio.
#include <benchmark/benchmark.h>

#include <chrono>

#include "common/files.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "planner/plan.hpp"

using namespace moeplan;

namespace {
struct Data {
  std::filesystem::path dir = data_dir();
  gpu_db::Database db = gpu_db::Database::load(dir);
  model::PrecisionTable precisions = model::PrecisionTable::load(dir / "precisions.yaml");
  model::ModelConfig maverick = model::load_model("llama4-maverick", dir);
  planner::PlanRequest request() const {
    planner::PlanRequest r;
    r.model = &maverick;
    r.precisions = &precisions;
    r.precision_specs = {"bf16", "fp8", "nvfp4"};
    for (const auto& g : db.gpus()) r.gpus.push_back(&g);
    return r;
  }
};
Data& data() {
  static Data d;
  return d;
}
double g_fast_s_per_config = 0;
}  // namespace

static void BM_default_sweep(benchmark::State& state) {
  const auto r = data().request();
  planner::PlanResult res;
  for (auto _ : state) res = planner::plan(r, data().db);
  state.counters["configurations"] = static_cast<double>(res.configurations);
  state.counters["operating_points"] = static_cast<double>(res.operating_points);
  state.counters["configurations_per_s"] =
      benchmark::Counter(static_cast<double>(res.configurations) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["operating_points_per_s"] =
      benchmark::Counter(static_cast<double>(res.operating_points) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  g_fast_s_per_config = res.sweep_seconds / static_cast<double>(res.configurations);
}
BENCHMARK(BM_default_sweep)->Unit(benchmark::kMillisecond);

// Naive: for each (GPU, count, precision) re-read and re-derive the model, then plan that one cell.
static void BM_naive_per_configuration(benchmark::State& state) {
  const auto text = read_text_file(data().dir / "models" / "llama4-maverick" / "config.json");
  const auto base = data().request();
  std::int64_t configs = 0;
  double seconds = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    configs = 0;
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
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double naive = seconds / static_cast<double>(std::max<std::int64_t>(1, configs));
  state.counters["us_per_configuration"] = naive * 1e6;
  if (g_fast_s_per_config > 0) state.counters["naive_over_sweep"] = naive / g_fast_s_per_config;
}
BENCHMARK(BM_naive_per_configuration)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
