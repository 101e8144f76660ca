// reports/simulate_report: `moeplan simulate` as a Report: latencies, throughput, memory and, with --breakdown, ops.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/shard.hpp"
#include "reports/render.hpp"
#include "simulator/profile.hpp"
#include "simulator/published.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::reports {

// What a simulate report names besides the result.
struct SimulateSummary {
  std::string model_name, device, precision, kv_dtype;
  model::ParallelLayout layout;
  simulator::Workload workload;
  std::shared_ptr<const simulator::HostProfile> profile;  // predictions from a measured profile get its error bars
  bool host = false;                                      // a CPU / unified-memory host, not GPUs
  // GPU predictions: the published set's error groups (data/validation/error_bars.yaml) and the engine whose
  // groups give the error bars.
  std::vector<simulator::ErrorGroup> published_bars;
  std::string engine;
  std::string network;                        // GPU runs: nodes, links and NICs (simulator::network_assumption)
  std::vector<std::string> beyond_validated;  // why the configuration is outside the published set's range
};
Report simulate_report(const SimulateSummary& summary, const simulator::SimulateResult& result);

}  // namespace moeplan::reports
