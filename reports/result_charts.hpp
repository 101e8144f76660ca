// reports/result_charts: the charts of result structs — memory per GPU, a plan's cost against speed, self-hosting
// against API prices, predicted against measured, and the serving and context sweeps of moeplan report — drawn
// with reports/charts. They choose what to plot and label; every number comes from the struct as computed elsewhere.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "planner/plan.hpp"
#include "planner/serving_compare.hpp"
#include "reports/render.hpp"
#include "simulator/memory.hpp"
#include "simulator/published.hpp"

namespace moeplan::reports {

// "#3": a plan row's rank as the tables and charts print it.
std::string rank_label(std::size_t rank);

// One stacked bar per configuration: weights by module, KV cache, activations, runtime overhead (GPUs only) and free
// memory, in GB per GPU (per host in host mode); the dashed line is the usable memory.
struct VramBar {
  std::string label;
  simulator::MemoryBreakdown memory;
};
Chart vram_chart(const std::string& title, const std::string& source, const std::vector<VramBar>& bars, bool host_mode);

// The plan rows a cost/speed chart plots (indices into result.rows): the first `ranked` rows and every Pareto row.
std::vector<std::size_t> cost_speed_rows(const planner::PlanResult& result, std::size_t ranked);
// Blended $/M tokens against output tokens/s per user, one colour per engine, the Pareto front joined, and the
// first `labelled` rows named #1, #2, ...
Chart cost_speed_chart(const planner::PlanResult& result, std::size_t ranked, std::size_t labelled,
                             const std::string& source);

// Blended $/M of every API offer and of the self-hosted row (highlighted), cheapest first.
Chart api_price_chart(const planner::ApiComparison& comparison, const std::string& self_label, const std::string& source);

// Predicted against measured for the rows that ran (log-log, one colour per engine), y = x and the ±25 % band
// the summary's "within 25 %" counts.
Chart published_chart(const simulator::PublishedSummary& summary, const std::string& source);

// One configuration simulated at several closed-loop concurrencies.
struct ConcurrencyPoint {
  std::int64_t concurrency = 0;
  double output_tokens_per_s = 0;   // the replica
  double tpot_ms_p50 = 0, tpot_ms_p90 = 0;
};
Chart throughput_chart(const std::string& config, const std::vector<ConcurrencyPoint>& points, const std::string& source);
Chart tpot_chart(const std::string& config, const std::vector<ConcurrencyPoint>& points, double slo_tpot_ms,
                       const std::string& source);

// Memory per GPU against context length (one sequence), one line per precision; the usable memory as a reference.
struct ContextCurve {
  std::string precision;
  std::vector<double> context_tokens, total_bytes;
};
Chart context_chart(const std::string& config, const std::vector<ContextCurve>& curves, double usable_bytes,
                          const std::string& source);

}  // namespace moeplan::reports
