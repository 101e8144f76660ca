// planner/plan: the sweep (see plan.hpp; the operating-point and cost formulas are derived in docs/planner.md).
// One loop: every (GPU, precision, count, layout) is ranked or counted under one reason; what does not depend on the
// GPU (layout validity, memory breakdowns and op graphs per (precision, layout)) is computed once (SweepTables); a
// configuration's batches are priced by a StepPricer (planner/step_pricer.hpp): by StepFormula in plan(), op by op
// in plan_op_by_op(). The best rows are then checked by the serving loop (detail::check_serving).
#include "planner/plan.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>

#include "common/error.hpp"
#include "planner/step_pricer.hpp"
#include "planner/sweep.hpp"

namespace moeplan::planner {

namespace {

using detail::Configuration;
using detail::Operating;

class Sweep {
 public:
  Sweep(const PlanRequest& r, const gpu_db::Database& db, const detail::Setup& setup, bool by_formula)
      : r_(r), db_(db), tables_(r, setup),
        pricer_(by_formula ? detail::formula_pricer(r, tables_) : detail::op_by_op_pricer(r, tables_)),
        batch_list_(detail::batches_up_to(r.max_batch)) {}
  PlanResult run();

 private:
  struct Device {
    const gpu_db::GpuSpec* gpu = nullptr;
    detail::GpuPricing pricing;
    simulator::Hardware hw;
  };
  void sweep_device(const gpu_db::GpuSpec& gpu);
  std::optional<Configuration> admit(const Device& dev, std::size_t pi, bool native, int count, std::size_t li);
  void find_operating_point(const Configuration& c, const Device& dev);
  void reject(Reject why) { ++res_.rejected[static_cast<std::size_t>(why)]; }

  const PlanRequest& r_;
  const gpu_db::Database& db_;
  detail::SweepTables tables_;
  std::unique_ptr<detail::StepPricer> pricer_;
  // Batches: 1, 2, 3, 4, 6, … up to --max-batch; a GPU whose KV cache holds fewer takes the prefix and its cap.
  const std::vector<std::int64_t> batch_list_;
  std::vector<Operating> ops_;  // per batch, for one configuration
  PlanResult res_;
  double closest_ratio_ = 1e300;
};

PlanResult Sweep::run() {
  // A host plan: one device (the host) and its rank layouts (SweepTables).
  if (r_.host) {
    sweep_device(r_.host->device);
  } else {
    for (const gpu_db::GpuSpec* gpu : r_.gpus) {
      sweep_device(*gpu);
      if (r_.progress) r_.progress->advance();  // one unit per GPU (detail::sweep_units)
    }
  }
  return std::move(res_);
}

void Sweep::sweep_device(const gpu_db::GpuSpec& gpu) {
  // Priced once per GPU.
  const Device dev{&gpu, detail::gpu_pricing(r_, db_, gpu),
                   r_.host ? r_.host->hardware
                           : detail::engine_hardware(simulator::gpu_hardware(db_, gpu, r_.internode_link, r_.nics_per_node), r_)};
  pricer_->set_device(dev.hw);
  for (std::size_t pi = 0; pi < tables_.precisions().size(); ++pi) {
    const model::Precision& prec = tables_.precisions()[pi];
    const std::string dtype = prec.format ? prec.format->compute_dtype : "bf16";
    const bool native = !prec.format || !prec.format->quantised() || gpu.has_dtype(dtype);
    // NVFP4 needs FP4 tensor cores (no engine dequantises it elsewhere); other formats fall back to
    // weight-only kernels (FP8 Marlin on Ampere, MXFP4 through Triton on Hopper, int4/GGUF everywhere).
    const bool unsupported =
        (prec.format && prec.format->name == "nvfp4" && !gpu.has_dtype("fp4")) || !detail::engine_loads(r_, prec);
    for (std::size_t ci = 0; ci < tables_.counts().size(); ++ci) {
      for (std::size_t li = tables_.first_layout(ci); li < tables_.last_layout(ci); ++li) {
        if (unsupported) {
          reject(Reject::unsupported_dtype);
          continue;
        }
        const std::optional<Configuration> c = admit(dev, pi, native, tables_.counts()[ci], li);
        if (!c) continue;
        if (!pricer_->assign(*c)) {
          reject(Reject::unsupported_dtype);
          continue;
        }
        find_operating_point(*c, dev);
      }
    }
  }
}

// The filters after the dtype, in order: layout, fit, price, budget.
std::optional<Configuration> Sweep::admit(const Device& dev, std::size_t pi, bool native, int count, std::size_t li) {
  const model::ParallelLayout& layout = tables_.layouts()[li].layout;
  if (!tables_.layouts()[li].valid || (!r_.host && !detail::engine_runs_layout(r_, layout, *dev.gpu))) {
    reject(Reject::invalid_layout);
    return std::nullopt;
  }
  ++res_.configurations;
  // Memory: activations at the peak step over a full batch; what is left holds KV. Weights, activations, overhead
  // and KV per sequence depend on (precision, layout), not on the GPU: computed once.
  const simulator::MemoryBreakdown& mem = tables_.memory(pi, li);
  // A host's ranks share its RAM; a GPU's memory is its own.
  const double usable = dev.gpu->memory_bytes * r_.gpu_memory_utilization / (r_.host ? layout.gpus() : 1);
  const double room = usable - mem.weights.total - mem.activation_bytes - mem.overhead_bytes;
  const std::int64_t kv_batch =
      room > 0 && mem.kv_bytes_per_sequence > 0 ? static_cast<std::int64_t>(room / mem.kv_bytes_per_sequence) : 0;
  if (kv_batch < 1) {
    reject(Reject::does_not_fit);
    return std::nullopt;
  }
  if (dev.pricing.usd_per_gpu_hour <= 0) {
    reject(Reject::no_price);
    return std::nullopt;
  }
  Configuration c;
  c.where = detail::placement(r_, db_, dev.hw, dev.pricing, count);
  if (!detail::within_budget(r_, c.where.usd_per_hour(dev.pricing, count))) {
    reject(Reject::over_budget);
    return std::nullopt;
  }
  c.gpu = dev.gpu;
  c.count = count;
  c.precision_index = pi;
  c.layout_index = li;
  c.precision = &tables_.precisions()[pi];
  c.layout = &layout;
  c.native = native;
  c.memory = &mem;
  c.kv_batch = kv_batch;
  return c;
}

// The operating point: the batch with the highest output tokens/s whose TTFT/TPOT meet the SLO; the closest miss
// of the SLO along the way.
void Sweep::find_operating_point(const Configuration& c, const Device& dev) {
  const std::int64_t cap = std::min(r_.max_batch, c.kv_batch);
  detail::BatchRange batches{&batch_list_, 0, cap};
  while (batches.listed < batch_list_.size() && batch_list_[batches.listed] <= cap) ++batches.listed;
  pricer_->price(batches, ops_);
  std::optional<std::size_t> best;
  double best_tps = 0;
  Reject miss = Reject::tpot_slo;
  for (std::size_t k = 0; k < ops_.size(); ++k) {
    ++res_.operating_points;
    const Operating& op = ops_[k];
    const double tpot_ms = op.step_s * 1e3;
    const detail::SloStanding slo = detail::slo_standing(r_, op.ttft_s * 1e3, tpot_ms, 1e3 / tpot_ms);
    if (slo.worst > 1) {
      miss = slo.why;
      if (slo.worst < closest_ratio_) {
        closest_ratio_ = slo.worst;
        res_.closest.row = detail::operating_row(c, batches.at(k), op, pricer_->decode_only_s(k, op));
        detail::set_closest(res_.closest, slo);
      }
      continue;
    }
    const double tps = op.output_per_step * c.layout->dp / op.step_s;
    if (!best || tps > best_tps) {
      best = k;
      best_tps = tps;
    }
  }
  if (!best) {
    reject(miss);
    return;
  }
  const Operating& op = ops_[*best];
  PlanRow row = detail::operating_row(c, batches.at(*best), op, pricer_->decode_only_s(*best, op));
  // Price the operating point (docs/planner.md "Cost"), with batch 1 (always the first batch) on the same GPUs.
  detail::price_row(row, *c.memory, dev.pricing, c.where, r_, ops_[0]);
  if (r_.host && r_.host->hardware.profile) row.error_bars = detail::error_bars(row, *r_.host->hardware.profile);
  res_.rows.push_back(std::move(row));
}

PlanResult sweep(const PlanRequest& r, const gpu_db::Database& db, bool by_formula) {
  const auto t0 = std::chrono::steady_clock::now();
  const detail::Setup setup = detail::check_request(r);
  if (r.progress) {
    r.progress->set_label("plan: sweep");
    if (!r.engine) r.progress->add_to_total(detail::sweep_units(r));  // an engine's sweep: plan_engines counted it
  }
  PlanResult res = Sweep(r, db, setup, by_formula).run();
  detail::check_serving(res, r, db, setup.window_kind);
  res.sweep_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace

Objective parse_objective(const std::string& s) {
  if (s == "usd-per-m-tokens" || s == "cost") return Objective::usd_per_m_tokens;
  if (s == "tokens-per-s-per-user" || s == "speed") return Objective::tokens_per_s_per_user;
  if (s == "tokens-per-s-per-dollar") return Objective::tokens_per_s_per_dollar;
  if (s == "fewest-gpus") return Objective::fewest_gpus;
  throw InputError("unknown --objective '" + s +
                   "' (use usd-per-m-tokens, tokens-per-s-per-user, tokens-per-s-per-dollar or fewest-gpus)");
}

const char* objective_name(Objective o) {
  switch (o) {
    case Objective::usd_per_m_tokens: return "usd-per-m-tokens";
    case Objective::tokens_per_s_per_user: return "tokens-per-s-per-user";
    case Objective::tokens_per_s_per_dollar: return "tokens-per-s-per-dollar";
    case Objective::fewest_gpus: return "fewest-gpus";
  }
  return "?";
}

const char* reject_name(Reject r) {
  switch (r) {
    case Reject::invalid_layout: return "invalid layout";
    case Reject::unsupported_dtype: return "unsupported dtype";
    case Reject::does_not_fit: return "does not fit";
    case Reject::no_price: return "no price";
    case Reject::ttft_slo: return "TTFT SLO missed";
    case Reject::tpot_slo: return "TPOT SLO missed";
    case Reject::user_speed_slo: return "tokens/s per user SLO missed";
    case Reject::over_budget: return "over budget";
  }
  return "?";
}

PlanResult plan(const PlanRequest& r, const gpu_db::Database& db) {
  if (!r.engines.empty()) return detail::plan_engines(r, db, &plan);
  // A host is a handful of configurations, and a measured profile's curves are not linear in the step variables
  // that StepFormula collapses: price it op by op.
  if (r.host) return plan_op_by_op(r, db);
  return sweep(r, db, true);
}

PlanResult plan_op_by_op(const PlanRequest& r, const gpu_db::Database& db) {
  if (!r.engines.empty()) return detail::plan_engines(r, db, &plan_op_by_op);
  return sweep(r, db, false);
}

}  // namespace moeplan::planner
