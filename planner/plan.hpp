// planner/plan: enumerate GPU × count × precision × layout × batch for one model and workload, reject what cannot
// work (with one reason each), find each survivor's operating point (the highest throughput that meets the SLO),
// price it, and rank. Candidates are plain values; scoring is a pure function; a comparator picks.
// Conventions and formulas: docs/planner.md.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/progress.hpp"
#include "gpu_db/engines.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/precision.hpp"
#include "model/shard.hpp"
#include "planner/prices.hpp"
#include "simulator/hardware.hpp"
#include "simulator/published.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::planner {

enum class Objective { usd_per_m_tokens, tokens_per_s_per_user, tokens_per_s_per_dollar, fewest_gpus };
Objective parse_objective(const std::string& s);  // throws InputError
const char* objective_name(Objective o);

// Why a candidate was dropped. Each rejected candidate counts under exactly one (the first that applies).
enum class Reject { invalid_layout, unsupported_dtype, does_not_fit, no_price, ttft_slo, tpot_slo, user_speed_slo, over_budget };
inline constexpr int kRejectCount = 8;
const char* reject_name(Reject r);

// One CPU host instead of GPUs (plan --host / --profile): the host is the row's device, count 1; the layouts tried
// are the in-process ranks its measured profile covers (TP and TP+EP, no pipeline, no attention DP: the profile
// measures all-reduce, not all-to-all), or one rank without a profile. Priced op by op (plan_op_by_op): the profile's
// curves and fitted corrections are not linear in the step variables. docs/planner.md "Planning a measured host".
struct HostCandidate {
  gpu_db::GpuSpec device;           // name and RAM (memory_bytes) of the host; no tensor-core dtypes
  simulator::Hardware hardware;     // profile_hardware(profile) or host_hardware(spec)
  std::vector<int> ranks = {1};     // in-process rank counts to try (the profile's measured ones)
};

struct PlanRequest {
  const model::ModelConfig* model = nullptr;
  const model::PrecisionTable* precisions = nullptr;
  std::vector<std::string> precision_specs;      // e.g. {"bf16", "fp8", "nvfp4"}
  std::vector<const gpu_db::GpuSpec*> gpus;
  std::vector<int> counts = {1, 2, 4, 8, 16, 32, 64};
  std::int64_t input_tokens = 1000, output_tokens = 1000;
  model::KvDtype kv_dtype = model::KvDtype::bf16;
  std::int64_t max_batch = 1024;                 // largest batch per attention group considered
  std::int64_t max_num_batched_tokens = 8192;
  double gpu_memory_utilization = 0.90;
  // SLO (0 = none) and budget (0 = none)
  double ttft_ms = 0, tpot_ms = 0, min_tokens_per_s_per_user = 0;
  double budget_usd_per_month = 0, budget_usd_per_hour = 0;
  double gpu_price_usd_per_hour = 0;             // > 0 overrides the price data for every GPU
  PriceChoice prices;                            // per-GPU overrides and provider filters (--gpu-price, --exclude-provider,
                                                 // --price-source; docs/planner.md "Cost")
  double utilization = 1.0;                      // share of hours serving at the operating point
  Objective objective = Objective::usd_per_m_tokens;
  std::string internode_link;                    // for multi-node candidates (default infiniband-ndr)
  int nics_per_node = 0;                         // ports of internode_link per node; 0: data/network.yaml's per GPU
  double network_usd_per_port_hour = -1;         // < 0: data/network.yaml's port price (plan --network-price)
  std::string network_price_source;              // where network_usd_per_port_hour came from, for reports
  // The published set's range (data/validation/public_points.yaml): set, rows outside it say why
  // (PlanRow::beyond_validated).
  std::optional<simulator::ValidatedRange> validated;
  std::optional<HostCandidate> host;             // set: plan this host instead of `gpus` and `counts`
  // The serving check (docs/planner.md "Operating point"): the best rows' operating points are run through
  // simulate's serving loop (a closed loop at batch x dp requests in flight); TTFT and TPOT are then that loop's
  // percentiles, and --ttft-ms/--tpot-ms/--min-tokens-per-s-per-user hold at `slo_percentile`.
  int slo_percentile = 90;                       // 50, 90 or 99
  int serving_rows = 10;                         // rows checked, best first (plan --top); 0: none (the formula only)
  std::int64_t serving_requests_per_slot = 4;    // requests simulated = this x the concurrency (simulate's default)
  Progress* progress = nullptr;                  // advanced per GPU swept and per serving check (may be null; thread-safe)
  std::string model_arg;                         // --model of the printed simulate command (default: the model's name)
  // Serving engines to evaluate (data/engines.yaml). Empty: the plain roofline, rows name no engine (as before
  // engines). Otherwise each engine is planned on the GPUs it runs on, with its step and kernel overheads, and rows
  // carry it; the engine_* flags take max_batch, max_num_batched_tokens and kv_dtype from each engine instead.
  std::vector<const gpu_db::EngineSpec*> engines;
  // Price ops from the engine's shipped GPU op profile where one holds their shape (data/gpu_profiles), as simulate
  // does by default; false: the roofline alone (plan --gpu-profile none).
  bool gpu_profiles = true;
  bool engine_max_batch = false, engine_max_num_batched_tokens = false, engine_kv_dtype = false;
  const gpu_db::EngineSpec* engine = nullptr;    // the one engine of a sweep (set by plan() per engine)
  const gpu_db::EngineTable* vendor_defaults = nullptr;  // set: each GPU only with its vendor's default engine
};

// A prediction's interval from a measured profile's held-out residuals (docs/validation.md "Error bars").
struct Interval {
  double low = 0, high = 0;
};
struct RowErrorBars {
  // Phase times p become [p (1 + q05), p (1 + q95)] of that phase's residuals (TTFT: prefill; the steady step,
  // TPOT: decode); rates divide by those factors and costs, being GPU-time per token, multiply by them.
  Interval ttft_ms, tpot_ms, output_tokens_per_s, output_tokens_per_s_per_user, usd_per_m_output_tokens,
      usd_per_m_blended_tokens;
  int decode_n = 0, prefill_n = 0;       // held-out rows behind them
};

// A row's operating point as simulate's serving loop runs it: a closed loop of `concurrency` = batch x dp requests
// in flight, `num_requests` in all, max batch = the row's batch per attention group.
struct ServingCheck {
  std::int64_t concurrency = 0, num_requests = 0;
  double ttft_ms_p50 = 0, ttft_ms_p90 = 0, ttft_ms_p99 = 0;
  double tpot_ms_p50 = 0, tpot_ms_p90 = 0, tpot_ms_p99 = 0;
  double output_tokens_per_s = 0;
  // The steady-state formula at the same batch (every slot busy, no queueing): what the sweep ranked by.
  double steady_ttft_ms = 0, steady_tpot_ms = 0, steady_output_tokens_per_s = 0;
  std::int64_t formula_batch = 0;        // the sweep's batch; larger than `batch` when the check stepped down
  std::string simulate_command;          // `moeplan simulate ...` that prints these figures
};

// One configuration at its operating point.
struct PlanRow {
  const gpu_db::GpuSpec* gpu = nullptr;
  const gpu_db::EngineSpec* engine = nullptr;  // the serving engine (null: the plain roofline)
  std::string kv_dtype;                        // the engine's KV cache dtype (set with an engine)
  int count = 0;
  std::string precision;                 // canonical spec
  bool weight_only = false;              // computed in bf16/fp8 with dequantisation (no native tensor cores)
  model::ParallelLayout layout;
  std::int64_t batch = 0;                // sequences per attention group at the operating point
  std::int64_t kv_limited_batch = 0;
  double output_tokens_per_s = 0;        // the replica (all its GPUs)
  double output_tokens_per_s_per_user = 0;  // 1000 / tpot_ms
  // With `serving`: the serving loop's figures, TTFT and TPOT at the request's SLO percentile. Without: the
  // steady-state formula (no queueing).
  double ttft_ms = 0, tpot_ms = 0;
  double vram_used_bytes_per_gpu = 0;
  // Where the GPUs sit: nodes of gpus_per_node, the link within a node and, over several nodes, nics_per_node ports
  // of the inter-node link (links.yaml short names).
  int nodes = 1, gpus_per_node = 1, nics_per_node = 0;
  std::string intra_link, inter_link;
  // usd_per_hour = usd_per_gpu_hour × count + network_usd_per_hour: the scale-out network (nodes × nics_per_node ×
  // the port price) for a multi-node row whose price source does not include it (docs/planner.md "Cost").
  double usd_per_gpu_hour = 0, usd_per_hour = 0, usd_per_month = 0;
  double network_usd_per_hour = 0;
  bool network_in_price = false;         // the GPU price source includes a scale-out fabric (gpu_hourly.yaml)
  std::string price_source;              // provider and date, or "--gpu-price"
  std::string price_confidence;          // the price row's confidence (high, medium, low), or "given" (--gpu-price)
  std::vector<std::string> price_flags;  // the row's flags (gpu_db::GpuPrice::flags): only with --price-source
  double prefill_time_share = 0;         // share of GPU time spent on prefill at the operating point
  double usd_per_m_input_tokens = 0, usd_per_m_output_tokens = 0, usd_per_m_blended_tokens = 0;
  std::array<double, 3> usd_per_1000_requests{};  // 500, 2000, 8000 tokens, at the workload's input:output ratio
  bool pareto = false;                   // not dominated in (blended $/M, tokens/s per user)
  double usd_per_m_output_tokens_batch1 = 0;  // the same GPUs serving one sequence at a time (calculator figure)
  double output_tokens_per_s_batch1 = 0;
  std::vector<std::string> beyond_validated;  // why the row is outside the published set's range (empty: inside)
  std::optional<RowErrorBars> error_bars;  // planned on a measured host whose profile has held-out residuals
  std::optional<ServingCheck> serving;     // checked by the serving simulation
};

// The closest miss of an SLO: the candidate that came nearest, and by how much.
struct ClosestMiss {
  std::optional<PlanRow> row;
  std::string constraint;                // which SLO it missed
  double value = 0, limit = 0;
};

struct PlanResult {
  std::vector<PlanRow> rows;             // feasible, ranked by the objective
  std::array<std::int64_t, kRejectCount> rejected{};
  std::int64_t configurations = 0;       // (gpu, count, precision, layout) evaluated
  std::int64_t operating_points = 0;     // (…, batch) evaluated
  ClosestMiss closest;                   // when the SLO removed candidates
  double sweep_seconds = 0;
  std::int64_t serving_simulations = 0;  // serving-loop runs of the check (a row stepping down a batch runs again)
  std::int64_t serving_rejected = 0;     // rows the check removed (counted in `rejected` under their SLO)
  std::vector<std::string> notes;        // e.g. a profile measured on another machine
};

// Throws InputError for bad requests (no GPUs, bad SLO values, unknown precisions).
PlanResult plan(const PlanRequest& request, const gpu_db::Database& db);

// A GPU row's operating point as the serving check simulates it: its engine, KV dtype and kernel profile, a closed
// loop of batch x dp requests in flight, serving_requests_per_slot x that many requests. Change the workload's
// concurrency to see the same configuration under another load.
simulator::SimulateRequest row_simulate_request(const PlanRequest& request, const gpu_db::Database& db, const PlanRow& row);

// The same sweep with every batch of every configuration priced op by op by a StepModel built for it: how plan()
// prices a measured host, plan()'s oracle in tests and the benchmark's baseline. Same result up to rounding (plan()
// collapses each op graph into a few linear forms per GPU; docs/planner.md "Speed and a peer").
PlanResult plan_op_by_op(const PlanRequest& request, const gpu_db::Database& db);

}  // namespace moeplan::planner
