// app/plan_options: what `plan`, `compare-api` and `fit-matrix` share with `report`, which computes its sections the
// same way from the same options: the plan options and the plan they resolve to, the fit matrix's precisions.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "app/option_groups.hpp"
#include "common/progress.hpp"
#include "gpu_db/engines.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/precision.hpp"
#include "planner/plan.hpp"
#include "planner/serving_compare.hpp"

namespace moeplan::app {

struct PlanOptions {
  std::string model_name, gpus, precisions, counts, kv_dtype, objective, internode, host, profile, engine,
      gpu_profile = "auto", gpu_price, exclude_providers, price_source;
  EngineMemoryOptions engine_memory;
  std::int64_t input = 0, output = 0, max_batch = 0;
  double ttft = 0, tpot = 0, min_user = 0, budget_month = 0, budget_hour = 0, utilization = 0;
  double network_price = -1;
  double tokens_per_month = 0;  // 0: not given
  int top = 0, slo_percentile = 0, nics_per_node = 0;
};

void add_plan_options(boost::program_options::options_description& d, PlanOptions& o);

// The plan and what it points into (request.model, the precision and engine tables).
struct Planned {
  model::ModelConfig model;
  std::shared_ptr<const model::PrecisionTable> precisions;
  std::shared_ptr<const gpu_db::EngineTable> engines;
  planner::PlanRequest request;
  planner::PlanResult result;
};

// Validates the options (one InputError line each), builds the request and plans. `db` must outlive the result.
// `progress`: the bar the plan's serving checks advance (null: the plan draws its own on a terminal).
Planned run_plan(const PlanOptions& o, const boost::program_options::variables_map& vm, const gpu_db::Database& db,
                 Progress* progress = nullptr);

// The lowest blended $/M row whatever the objective (compare-api's self-hosted row); nullptr when none.
const planner::PlanRow* cheapest_row(const planner::PlanResult& result);

// Launch commands: for #1 (vLLM, SGLang, TensorRT-LLM) without engines; else for the first shown row of each engine.
// `o` gives the workload (input + output tokens) and the rows shown (--top).
std::vector<planner::LaunchCommand> plan_launch_commands(const Planned& p, const PlanOptions& o);

// fit-matrix's default precisions: bf16, fp8, the model's 4-bit float format (its checkpoint's mxfp4, else nvfp4),
// int4-awq, and the checkpoint's own precision; duplicates (after resolving each to the model's usual policy) once.
std::vector<model::Precision> fit_matrix_precisions(const model::ModelConfig& m, const model::PrecisionTable& table);

}  // namespace moeplan::app
