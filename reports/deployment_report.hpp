// reports/deployment_report: the sections of `moeplan report` that no single command prints — the shown plan rows'
// memory per GPU with memory against context, #1 under several loads, and the RAM-host view — as Reports with
// tables, charts and JSON. The other sections are the commands' own reports (plan, compare-api, fit-matrix, ...).
#pragma once
#include <string>
#include <vector>

#include "gpu_db/gpu_db.hpp"
#include "planner/plan.hpp"
#include "reports/render.hpp"
#include "reports/result_charts.hpp"
#include "simulator/memory.hpp"

namespace moeplan::reports {

// A plan row (1-based rank) and its memory per GPU at its operating point.
struct PlanMemory {
  int rank = 0;
  const planner::PlanRow* row = nullptr;
  simulator::MemoryBreakdown memory;
};
// `context_config` names the configuration of the context curves (#1's GPUs and layout); `usable_bytes` its usable memory.
Report plan_memory_report(const std::string& model_name, const std::vector<PlanMemory>& rows, const std::string& context_config,
                          const std::vector<ContextCurve>& curves, double usable_bytes);

// #1 simulated at several closed-loop concurrencies; `operating_concurrency`: the plan's operating point.
Report load_sweep_report(const std::string& config, const std::vector<ConcurrencyPoint>& points,
                         std::int64_t operating_concurrency, double slo_tpot_ms, const std::string& simulate_command);

}  // namespace moeplan::reports
