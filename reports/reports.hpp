// reports/reports: result structs -> Report (tables + JSON) for each command. Field meanings: README "JSON".
#pragma once
#include <optional>
#include <vector>

#include "calibrate/validate.hpp"
#include "calibrate/validate_device.hpp"
#include "simulator/gpu_profile_write.hpp"
#include "gpu_db/gpu_db.hpp"
#include "kernels/device_query.hpp"
#include "model/claims.hpp"
#include "model/config.hpp"
#include "model/summary.hpp"
#include "reports/render.hpp"
#include "simulator/fit_matrix.hpp"
#include "simulator/host_view.hpp"
#include "simulator/memory.hpp"
#include "simulator/memory_sweep.hpp"
#include "simulator/published.hpp"
#include "executor/run.hpp"
#include "planner/plan.hpp"
#include "planner/serving_compare.hpp"
#include "simulator/published.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::reports {

Report models_report(const std::vector<model::ModelSummary>& models);
// One model in detail: per-module parameters and the layer pattern.
Report model_detail_report(const model::ModelConfig& model, const model::ModelSummary& summary);

Report gpus_report(const gpu_db::Database& db, const std::vector<const gpu_db::GpuSpec*>& gpus);
Report hosts_report(const std::vector<gpu_db::HostSpec>& hosts);
Report local_gpus_report(const kernels::DeviceQuery& devices);

Report memory_report(const simulator::MemoryRequest& request, const simulator::MemoryBreakdown& result);
// `moeplan memory --sweep context|concurrency`: GB per GPU (and GPUs to fit) per value x precision.
Report memory_sweep_report(const simulator::MemorySweepRequest& request, const simulator::MemorySweep& result);
// `moeplan fit-matrix`: one row per GPU x precision.
Report fit_matrix_report(const simulator::FitMatrixRequest& request, const simulator::FitMatrix& result);
// `moeplan hosts`: RAM needed, fit, recommended RAM and llama.cpp speeds per host x precision; one-GPU offload rows.
Report host_view_report(const simulator::HostViewRequest& request, const simulator::HostView& result);
// `moeplan claims`: each recorded claim about the model against its config; `file` names the claims file.
Report claims_report(const model::ModelConfig& model, const std::string& file, const std::vector<model::ClaimCheck>& checks);
// `moeplan claims --quantities`: the quantities a claim may name and how each is computed.
Report claim_quantities_report();

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
  std::string network;                          // GPU runs: nodes, links and NICs (simulator::network_assumption)
  std::vector<std::string> beyond_validated;    // why the configuration is outside the published set's range
};
Report simulate_report(const SimulateSummary& summary, const simulator::SimulateResult& result);
Report plan_report(const planner::PlanRequest& request, const planner::PlanResult& result,
                   const std::vector<planner::LaunchCommand>& launch, const std::optional<planner::ApiComparison>& api,
                   int top, bool verbose);
Report compare_api_report(const planner::PlanRequest& request, const planner::PlanRow& self,
                          const planner::ApiComparison& comparison);
Report run_report(const executor::RunResult& result);
// `moeplan calibrate`: the measured profile and where it was written; `seconds`: how long measuring took.
Report calibrate_report(const simulator::HostProfile& profile, const std::string& written_to, double seconds);
// `moeplan validate --device cpu`: held-out errors, rows, op by op, the error bars the profile now carries.
Report cpu_validation_report(const calibrate::CpuValidation& validation, const std::string& profile_file, bool profile_written);
// `moeplan calibrate --device cuda`: the GPU op profile measured and where it was written.
Report gpu_calibrate_report(const simulator::GpuProfileData& profile, const std::string& written_to, double seconds);
// `moeplan validate --device cuda`: per oracle fixture, the device's largest logit difference from the CPU backend.
Report device_validation_report(const std::vector<calibrate::DeviceCheck>& checks, const std::string& device);
Report published_report(const simulator::PublishedSummary& summary, const simulator::PublishedSet& set);

}  // namespace moeplan::reports
