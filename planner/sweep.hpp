// planner/sweep: the parts of the sweep around its loop (planner/plan.cpp): request checks, the candidate layouts and
// batches, the steady-state operating point, the SLO test, a row's figures and cost, the ranking and the serving
// check (docs/planner.md). Internal to planner/.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/numeric.hpp"
#include "planner/plan.hpp"
#include "simulator/memory.hpp"
#include "simulator/step_cost.hpp"

namespace moeplan::planner::detail {

struct Setup {
  std::vector<model::Precision> precisions;                 // resolved request.precision_specs
  model::AttentionKind window_kind = model::AttentionKind::chunked;
};
// Throws InputError for bad requests.
Setup check_request(const PlanRequest& request);

// Parallel layouts tried for `count` GPUs (pipeline 1/2/4; TP, TP+EP and DEP for MoE models).
std::vector<model::ParallelLayout> layouts_for(const model::ModelConfig& m, int count);
// Layouts tried on one host with these in-process rank counts: one rank; TP and (MoE) TP+EP over n ranks.
std::vector<model::ParallelLayout> host_layouts(const model::ModelConfig& m, const std::vector<int>& ranks);
// Batch sizes tried: 1, 2, 3, 4, 6, 8, 12, 16, … and the cap.
std::vector<std::int64_t> batches_up_to(std::int64_t cap);

// Steady state of continuous batching with `batch` sequences per group, all slots busy: each step decodes the batch
// at the mean context and prefills the prompts of the sequences that replace finished ones (batch · input / output
// tokens per step, within the token budget). The step is a·decode(1 sequence) + b·prefill(one prompt).
struct SteadyStep {
  double a = 0, b = 0;            // sequences decoding; share of one prompt prefilled
  double output_per_step = 0;     // output tokens per step
  double ttft_steps = 0;          // steps a prompt's chunks take
};
SteadyStep steady_step(const PlanRequest& r, std::int64_t batch);
// The unit shapes: one sequence decoding at the mean context, and one whole prompt.
simulator::StepShape decode_unit(const PlanRequest& r, const model::OpGraph& g, model::AttentionKind window_kind);
simulator::StepShape prefill_unit(const PlanRequest& r, const model::OpGraph& g, model::AttentionKind window_kind);

// The op graph request of a configuration (on a profiled host with the CPU executor's fp32 activations, as
// simulate prices them), and the StepModel request that prices it on `hw` with uniform routing over its EP ranks.
model::OpGraphRequest graph_request(const PlanRequest& r, const model::Precision& p, const model::ParallelLayout& l);
simulator::StepModelRequest step_model_request(const PlanRequest& r, const model::Precision& p,
                                               const model::ParallelLayout& l, const simulator::Hardware& hw);

struct Operating {
  double step_s = 0, decode_only_s = 0, output_per_step = 0, ttft_s = 0;
};
// The operating point priced op by op with a StepModel. On a profiled host, prompts run in
// their own passes between decode steps, as the CPU executor runs them.
Operating operating_point(const simulator::StepModel& sm, const PlanRequest& r, std::int64_t batch,
                          model::AttentionKind window_kind);

// A GPU's price (docs/planner.md "Cost"): --gpu-price, else the default row of data/prices/gpu_hourly.yaml under the
// request's provider filters (usd_per_gpu_hour 0: none), with the row's confidence and flags and whether that source
// includes a scale-out network.
using GpuPricing = GpuPriceUsed;
GpuPricing gpu_pricing(const PlanRequest& r, const gpu_db::Database& db, const gpu_db::GpuSpec& gpu);
// Where `count` GPUs of `hw` sit, and the hourly price of the network between their nodes: nodes × nics_per_node ×
// the port price when they span nodes and the price source does not include it, else 0.
struct Placement {
  int nodes = 1, gpus_per_node = 1, nics_per_node = 0;
  std::string intra_link, inter_link;
  double network_usd_per_hour = 0;
  bool network_in_price = false;
  double usd_per_hour(const GpuPricing& p, int count) const;  // GPUs and network
};
Placement placement(const PlanRequest& r, const gpu_db::Database& db, const simulator::Hardware& hw, const GpuPricing& p,
                    int count);
// Whether a configuration's $/hour and $/month pass the request's budgets.
bool within_budget(const PlanRequest& r, double usd_per_hour);

// One configuration that passed the sweep's filters (unsupported dtype, layout, fit, price, budget).
struct Configuration {
  const gpu_db::GpuSpec* gpu = nullptr;
  int count = 0;
  std::size_t precision_index = 0, layout_index = 0;  // in SweepTables
  const model::Precision* precision = nullptr;
  const model::ParallelLayout* layout = nullptr;
  bool native = true;                  // the GPU has tensor cores for the format (else weight-only kernels)
  const simulator::MemoryBreakdown* memory = nullptr;
  std::int64_t kv_batch = 0;           // sequences per GPU whose KV fits
  Placement where;
};

// A configuration's row at one operating point: what it is, its batch and its figures (price_row adds the cost).
PlanRow operating_row(const Configuration& c, std::int64_t batch, const Operating& op, double decode_only_s);
// A row's figures: TTFT, TPOT (tokens/s per user = 1000 / TPOT), output tokens/s and the prefill share of GPU time.
void set_figures(PlanRow& row, double ttft_ms, double tpot_ms, double output_tokens_per_s, double prefill_time_share);
// Share of a step's time spent on prefill: (step − its decode-only part) / step, never below 0.
double prefill_share(double step_s, double decode_only_s);

// How figures stand against the request's SLOs (--ttft-ms, --tpot-ms, --min-tokens-per-s-per-user): `worst` is the
// largest ratio of value to limit (> 1: missed; 0 without SLOs), `why` the SLO it belongs to, with that SLO's option,
// value and limit.
struct SloStanding {
  double worst = 0;
  Reject why = Reject::ttft_slo;
  const char* constraint = "";
  double value = 0, limit = 0;
};
SloStanding slo_standing(const PlanRequest& r, double ttft_ms, double tpot_ms, double tokens_per_s_per_user);
// The closest miss's SLO fields from a standing (the row is the caller's).
void set_closest(ClosestMiss& closest, const SloStanding& slo);
// How far a closest miss is from its limit (> 1; 1e300 without one), to pick the nearest.
double miss_ratio(const ClosestMiss& c);

// Fills the cost fields of a chosen row (docs/planner.md "Cost"); `batch1` is the same GPUs at batch 1.
void price_row(PlanRow& row, const simulator::MemoryBreakdown& mem, const GpuPricing& pricing, const Placement& where,
               const PlanRequest& r, const Operating& batch1);

// A priced row's intervals from a profile's held-out residuals; nullopt when the profile has none yet.
std::optional<RowErrorBars> error_bars(const PlanRow& row, const simulator::HostProfile& profile);

// Marks the Pareto front and sorts the rows by the objective (stable).
void rank_rows(PlanResult& res, const PlanRequest& r);

// The serving check (docs/planner.md "Operating point"), after the sweep: ranks the rows, then runs the best
// `serving_rows` rows' operating points through simulate's serving loop, best first, re-ranking after each. A row
// whose TTFT/TPOT at the SLO percentile misses the SLO steps down to a smaller batch of the list and runs again, or
// is rejected under that SLO when none meets it. Rows below the checked ones keep the formula's figures. A host
// plan keeps the formula (its prompts run in their own passes, which the serving loop does not model).
void check_serving(PlanResult& res, const PlanRequest& r, const gpu_db::Database& db, model::AttentionKind window_kind);

// The `moeplan simulate` command line of a row's operating point at `batch` per attention group.
std::string simulate_command(const PlanRequest& r, const PlanRow& row, std::int64_t batch);
// Engines (docs/planner.md "Engines"). The GPU's hardware with the sweep's engine overheads (unchanged without one).
simulator::Hardware engine_hardware(simulator::Hardware hw, const PlanRequest& r);
// Whether the sweep's engine loads this weight format and runs this layout on this GPU (true without an engine).
bool engine_loads(const PlanRequest& r, const model::Precision& p);
bool engine_runs_layout(const PlanRequest& r, const model::ParallelLayout& l, const gpu_db::GpuSpec& gpu);
// The units a sweep advances request.progress by: one per GPU (none for a host).
std::int64_t sweep_units(const PlanRequest& r);
// request.engines set: one sweep by `core` per engine (and per KV dtype the engine uses across the precisions), on
// the GPUs it runs on, merged and ranked together; counts add up, the closest miss is the nearest of all.
using PlanFunction = PlanResult (*)(const PlanRequest&, const gpu_db::Database&);
PlanResult plan_engines(const PlanRequest& r, const gpu_db::Database& db, PlanFunction core);

}  // namespace moeplan::planner::detail
