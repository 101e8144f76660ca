// planner/plan: the sweep (see plan.hpp; the operating-point and cost formulas are derived in docs/planner.md).
// What does not depend on the GPU is computed once: layout validity per count, memory breakdowns and op graphs per
// (precision, layout), and per layout the plane point of every batch (its steady step and MoE routing). Each
// (graph, GPU) is collapsed into a StepFormula (simulator/step_formula.hpp); a configuration's batches are then
// priced in one pass over it, a few dozen multiply-adds each, and the decode-only step only for the rows kept.
// The best rows are then checked by the serving loop (detail::check_serving).
// plan_reference.cpp prices the same sweep op by op.
#include "planner/plan.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>

#include "common/error.hpp"
#include "planner/cost.hpp"
#include "planner/sweep.hpp"
#include "simulator/memory.hpp"
#include "simulator/step_cost.hpp"
#include "simulator/step_formula.hpp"

namespace moeplan::planner {

namespace {

using detail::d;

// One batch of one layout on the plane: GPU- and precision-independent.
struct BatchPoint {
  std::int64_t batch = 0;
  double a = 0;                                   // sequences decoding
  simulator::PlaneVector mixed{};                 // the steady step
  double output_per_step = 0, ttft_steps = 0;
  // Its decode part alone, routed when a kept row first needs it (for the prefill share).
  mutable std::optional<simulator::PlaneVector> decode_only;
  const simulator::PlaneVector& decode_point(const simulator::StepPlane& plane) const {
    if (!decode_only) decode_only = plane.point(a, 0);
    return *decode_only;
  }
};

BatchPoint batch_point(const simulator::StepPlane& plane, const PlanRequest& r, std::int64_t batch) {
  const detail::SteadyStep st = detail::steady_step(r, batch);
  BatchPoint p;
  p.batch = batch;
  p.a = st.a;
  p.mixed = plane.point(st.a, st.b);
  p.output_per_step = st.output_per_step;
  p.ttft_steps = st.ttft_steps;
  return p;
}

struct LayoutCell {
  model::ParallelLayout layout;
  bool valid = false;
  std::unique_ptr<simulator::StepPlane> plane;  // from the first graph of this layout (window fields are per stage)
  bool has_window = false;
  std::int64_t window_tokens = 0;
  std::vector<BatchPoint> points;               // along the batch list, filled as far as a GPU's KV cap needs
  simulator::PlanePoints steady;                // their steady steps, term by term
};

struct GraphCell {  // one (precision, layout)
  std::optional<simulator::MemoryBreakdown> mem;
  std::unique_ptr<simulator::PlaneOps> ops;     // its op graph collapsed on the layout's plane
  std::shared_ptr<const model::OpGraph> graph;  // kept where that collapse is not exact (or not linear): StepModel prices it
};

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
  if (r.host) return plan_reference(r, db);
  const auto t0 = std::chrono::steady_clock::now();
  const detail::Setup setup = detail::check_request(r);
  const model::ModelConfig& m = *r.model;
  const std::vector<model::Precision>& precisions = setup.precisions;
  const model::AttentionKind window_kind = setup.window_kind;

  PlanResult res;
  double closest_ratio = 1e300;
  auto reject = [&](Reject why) { ++res.rejected[static_cast<std::size_t>(why)]; };

  // Layouts of each count, checked once: validity depends on the model, not on the GPU or precision.
  std::vector<LayoutCell> layouts;
  std::vector<std::size_t> first_layout;  // per count: its first entry in `layouts`
  for (int count : r.counts) {
    first_layout.push_back(layouts.size());
    for (const auto& layout : detail::layouts_for(m, count)) {
      LayoutCell c;
      c.layout = layout;
      c.valid = model::layout_problem(m, layout).empty();
      layouts.push_back(std::move(c));
    }
  }
  first_layout.push_back(layouts.size());
  std::vector<GraphCell> graphs(precisions.size() * layouts.size());
  // Bytes of every weight group per precision, shared by all layouts' memory breakdowns and op graphs.
  std::vector<std::optional<model::GroupBytes>> group_bytes(precisions.size());
  // Batches: 1, 2, 3, 4, 6, … up to --max-batch; a GPU whose KV cache holds fewer takes the prefix and its cap.
  const std::vector<std::int64_t> batch_list = detail::batches_up_to(r.max_batch);
  simulator::OpSignatures signatures;
  simulator::StepFormula formula;
  std::vector<double> step_times;  // per batch of the list, for one configuration

  for (const gpu_db::GpuSpec* gpu : r.gpus) {
    // Price once per GPU.
    const detail::GpuPricing pricing = detail::gpu_pricing(r, db, *gpu);
    const simulator::Hardware hw =
        detail::engine_hardware(simulator::gpu_hardware(db, *gpu, r.internode_link, r.nics_per_node), r);
    simulator::DeviceRates rates(hw, signatures);
    const double usable = gpu->memory_bytes * r.gpu_memory_utilization;
    for (std::size_t pi = 0; pi < precisions.size(); ++pi) {
      const model::Precision& prec = precisions[pi];
      const std::string dtype = prec.format ? prec.format->compute_dtype : "bf16";
      const bool native = !prec.format || !prec.format->quantised() || gpu->has_dtype(dtype);
      // NVFP4 needs FP4 tensor cores (no engine dequantises it elsewhere); other formats fall back to
      // weight-only kernels (FP8 Marlin on Ampere, MXFP4 through Triton on Hopper, int4/GGUF everywhere).
      const bool unsupported =
          (prec.format && prec.format->name == "nvfp4" && !gpu->has_dtype("fp4")) || !detail::engine_loads(r, prec);
      for (std::size_t ci = 0; ci < r.counts.size(); ++ci) {
        const int count = r.counts[ci];
        for (std::size_t li = first_layout[ci]; li < first_layout[ci + 1]; ++li) {
          LayoutCell& lc = layouts[li];
          const model::ParallelLayout& layout = lc.layout;
          if (unsupported) {
            reject(Reject::unsupported_dtype);
            continue;
          }
          if (!lc.valid || !detail::engine_runs_layout(r, layout, *gpu)) {
            reject(Reject::invalid_layout);
            continue;
          }
          ++res.configurations;
          // Memory: activations at the peak step over a full batch; what is left holds KV. Weights, activations,
          // overhead and KV per sequence depend on (precision, layout), not on the GPU: computed once.
          GraphCell& gc = graphs[pi * layouts.size() + li];
          if (!group_bytes[pi]) group_bytes[pi] = model::group_bytes(m, prec);
          if (!gc.mem) {
            simulator::MemoryRequest mr;
            mr.group_bytes = &*group_bytes[pi];
            mr.model = &m;
            mr.precision = prec;
            mr.layout = layout;
            mr.kv_dtype = r.kv_dtype;
            mr.context_tokens = r.input_tokens + r.output_tokens;
            mr.concurrency = r.max_batch * layout.dp;
            mr.max_num_batched_tokens = r.max_num_batched_tokens;
            mr.capacity_bytes = 1;  // placeholder: usable memory is taken per GPU below
            gc.mem = simulator::memory_breakdown(mr);
          }
          const simulator::MemoryBreakdown& mem = *gc.mem;
          const double room = usable - mem.weights.total - mem.activation_bytes - mem.overhead_bytes;
          const std::int64_t kv_batch =
              room > 0 && mem.kv_bytes_per_sequence > 0 ? static_cast<std::int64_t>(room / mem.kv_bytes_per_sequence) : 0;
          if (kv_batch < 1) {
            reject(Reject::does_not_fit);
            continue;
          }
          if (pricing.usd_per_gpu_hour <= 0) {
            reject(Reject::no_price);
            continue;
          }
          const detail::Placement where = detail::placement(r, db, hw, pricing, count);
          if (!detail::within_budget(r, where.usd_per_hour(pricing, count))) {
            reject(Reject::over_budget);
            continue;
          }

          // The op graph depends on (precision, layout): built once, collapsed into linear forms on the layout's
          // plane, then priced on each GPU.
          // An engine whose small steps run matrix-vector kernels (no tile fill up to gemv_max_rows tokens) is not
          // linear on the plane either: StepModel prices it (such engines plan a few small batches).
          const bool by_op = hw.eff.gemv_max_rows > 0;
          if (!gc.ops || (by_op && !gc.graph)) {
            model::OpGraphRequest gr;
            gr.model = &m;
            gr.precision = prec;
            gr.layout = layout;
            gr.kv_dtype = r.kv_dtype;
            gr.group_bytes = &*group_bytes[pi];
            auto graph = std::make_shared<const model::OpGraph>(model::build_op_graph(gr));
            if (!lc.plane) {  // window fields come from the stage's layers, alike for every precision
              lc.plane = std::make_unique<simulator::StepPlane>(
                  m, layout, simulator::RoutingModel::uniform(m.num_experts, m.experts_per_token, layout.ep),
                  detail::decode_unit(r, *graph, window_kind), detail::prefill_unit(r, *graph, window_kind));
              lc.has_window = graph->has_window;
              lc.window_tokens = graph->window_tokens;
            }
            if (!gc.ops) gc.ops = std::make_unique<simulator::PlaneOps>(*graph, *lc.plane, signatures);
            if (by_op || !gc.ops->exact() || lc.has_window != graph->has_window || lc.window_tokens != graph->window_tokens)
              gc.graph = std::move(graph);
          }
          // Where the collapse is not exact (a form it cannot split), price op by op as plan_reference does.
          std::optional<simulator::StepModel> slow;
          if (!gc.graph) {
            formula.assign(*gc.ops, rates);
          } else {
            simulator::StepModelRequest sr;
            sr.graph.model = &m;
            sr.graph.precision = prec;
            sr.graph.layout = layout;
            sr.graph.kv_dtype = r.kv_dtype;
            sr.hardware = hw;
            sr.routing = simulator::RoutingModel::uniform(m.num_experts, m.experts_per_token, layout.ep);
            slow.emplace(sr, gc.graph);
          }
          // A batch's steady step (from its step time when one is at hand). Its decode-only part serves only the
          // prefill share of a row that is kept (the operating point, the closest miss): priced when asked.
          auto price_point = [&](const BatchPoint& p, const double* step_time) {
            if (slow) return detail::operating_point(*slow, r, p.batch, window_kind);
            detail::Operating op;
            op.step_s = step_time ? *step_time : formula.step_time_s(p.mixed);
            op.output_per_step = p.output_per_step;
            op.ttft_s = op.step_s * p.ttft_steps;
            return op;
          };
          auto decode_only_s = [&](const BatchPoint& p, const detail::Operating& op) {
            return slow ? op.decode_only_s : formula.step_time_s(p.decode_point(*lc.plane));
          };
          auto points_up_to = [&](std::size_t n) {
            if (lc.points.empty()) {
              lc.points.reserve(batch_list.size());
              for (auto& t : lc.steady.terms) t.reserve(batch_list.size());
            }
            while (lc.points.size() < n) {
              lc.points.push_back(batch_point(*lc.plane, r, batch_list[lc.points.size()]));
              lc.steady.push_back(lc.points.back().mixed);
            }
          };

          // The operating point: the largest batch whose TTFT/TPOT meet the SLO (TPOT grows with the batch).
          struct Best {
            const BatchPoint* point;
            detail::Operating op;
            double tps = 0;
          };
          std::optional<Best> best;
          Reject miss = Reject::tpot_slo;
          auto consider = [&](const BatchPoint& p, const double* step_time) {
            ++res.operating_points;
            const detail::Operating op = price_point(p, step_time);
            const double ttft_ms = op.ttft_s * 1e3, tpot_ms = op.step_s * 1e3, per_user = 1e3 / tpot_ms;
            const double tps = op.output_per_step * layout.dp / op.step_s;
            const double over_ttft = r.ttft_ms > 0 ? ttft_ms / r.ttft_ms : 0;
            const double over_tpot = r.tpot_ms > 0 ? tpot_ms / r.tpot_ms : 0;
            const double over_user = r.min_tokens_per_s_per_user > 0 ? r.min_tokens_per_s_per_user / per_user : 0;
            const double worst = std::max({over_ttft, over_tpot, over_user});
            if (worst > 1) {
              miss = over_ttft == worst ? Reject::ttft_slo : over_tpot == worst ? Reject::tpot_slo : Reject::user_speed_slo;
              if (worst < closest_ratio) {
                closest_ratio = worst;
                PlanRow row;
                row.gpu = gpu;
                row.count = count;
                row.precision = prec.spec;
                row.weight_only = !native;
                row.layout = layout;
                row.batch = p.batch;
                row.kv_limited_batch = kv_batch;
                row.output_tokens_per_s = tps;
                row.output_tokens_per_s_per_user = per_user;
                row.ttft_ms = ttft_ms;
                row.tpot_ms = tpot_ms;
                const double decode_s = decode_only_s(p, op);
                row.prefill_time_share = op.step_s > 0 ? std::max(0.0, (op.step_s - decode_s) / op.step_s) : 0;
                res.closest.row = std::move(row);
                res.closest.constraint = miss == Reject::ttft_slo ? "--ttft-ms" : miss == Reject::tpot_slo ? "--tpot-ms"
                                                                                                          : "--min-tokens-per-s-per-user";
                res.closest.value = miss == Reject::ttft_slo ? ttft_ms : miss == Reject::tpot_slo ? tpot_ms : per_user;
                res.closest.limit = miss == Reject::ttft_slo ? r.ttft_ms : miss == Reject::tpot_slo ? r.tpot_ms
                                                                                                    : r.min_tokens_per_s_per_user;
              }
              return;
            }
            if (!best || tps > best->tps) best = Best{&p, op, tps};
          };
          // Batches of the list up to the cap, priced in one pass, then the cap itself when it is not on the list.
          const std::int64_t cap = std::min(r.max_batch, kv_batch);
          std::size_t listed = 0;
          while (listed < batch_list.size() && batch_list[listed] <= cap) ++listed;
          points_up_to(std::max<std::size_t>(listed, 1));
          step_times.resize(listed);
          if (!slow) formula.step_times_s(lc.steady, listed, step_times.data());
          for (std::size_t k = 0; k < listed; ++k) consider(lc.points[k], slow ? nullptr : &step_times[k]);
          BatchPoint capped;  // the cap when it is not on the list (lives as long as `best` may point at it)
          if (listed == 0 || batch_list[listed - 1] != cap) {
            capped = batch_point(*lc.plane, r, cap);
            consider(capped, nullptr);
          }
          if (!best) {
            reject(miss);
            continue;
          }
          PlanRow row;
          row.gpu = gpu;
          row.count = count;
          row.precision = prec.spec;
          row.weight_only = !native;
          row.layout = layout;
          row.batch = best->point->batch;
          row.kv_limited_batch = kv_batch;
          row.output_tokens_per_s = best->tps;
          row.tpot_ms = best->op.step_s * 1e3;
          row.output_tokens_per_s_per_user = 1e3 / row.tpot_ms;
          row.ttft_ms = best->op.ttft_s * 1e3;
          const double step_s = best->op.step_s;
          const double decode_s = decode_only_s(*best->point, best->op);
          row.prefill_time_share = step_s > 0 ? std::max(0.0, (step_s - decode_s) / step_s) : 0;
          // Price the operating point (docs/planner.md "Cost"), with batch 1 on the same GPUs beside it.
          const bool one_listed = !batch_list.empty() && batch_list[0] == 1 && listed > 0;
          const BatchPoint one = one_listed ? lc.points[0] : batch_point(*lc.plane, r, 1);
          const detail::Operating batch1 = price_point(one, one_listed && !slow ? &step_times[0] : nullptr);
          detail::price_row(row, mem, pricing, where, r, batch1);
          res.rows.push_back(std::move(row));
        }
      }
    }
  }

  detail::check_serving(res, r, db, window_kind);
  res.sweep_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace moeplan::planner
