// How fast the model layer answers the questions the planner will ask millions of times:
//   config.json -> ModelConfig (once per model), parameter counts, per-GPU weight bytes and the full memory
//   breakdown for one configuration. Reports items/s; the planner's budget is ~1 µs per configuration.
#include <benchmark/benchmark.h>

#include "bench/bench_data.hpp"
#include "common/files.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/params.hpp"
#include "model/precision.hpp"
#include "simulator/memory.hpp"

using namespace moeplan;

namespace {
using bench::data;
}  // namespace

static void BM_parse_config(benchmark::State& state) {
  const auto text = read_text_file(data().dir / "models" / "llama4-maverick" / "config.json");
  for (auto _ : state) benchmark::DoNotOptimize(model::parse_hf_config(parse_json_text(text, "x"), "m", "x"));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_parse_config);

static void BM_count_params(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(model::count_params(data().maverick));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_count_params);

static void BM_memory_breakdown(benchmark::State& state) {
  simulator::MemoryRequest q;
  q.model = &data().maverick;
  q.precision = model::resolve_precision("fp8", data().maverick, data().precisions);
  q.layout = {8, 1, 1, 1};
  q.capacity_bytes = data().db.gpu("h100-sxm").memory_bytes;
  q.context_tokens = 131072;
  q.concurrency = 8;
  for (auto _ : state) benchmark::DoNotOptimize(simulator::memory_breakdown(q));
  state.SetItemsProcessed(state.iterations());
  state.counters["per_config_us"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                       benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_memory_breakdown);

BENCHMARK_MAIN();
