// planner/plan: the sweep (see plan.hpp; the operating-point and cost formulas are derived in docs/planner.md).
#include "planner/plan.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <tuple>

#include "common/error.hpp"
#include "common/text.hpp"
#include "planner/cost.hpp"
#include "simulator/memory.hpp"
#include "simulator/step_cost.hpp"

namespace moeplan::planner {

namespace {

double d(std::int64_t v) { return static_cast<double>(v); }

// Parallel layouts tried for `count` GPUs: pipeline 1/2/4; for MoE models pure TP, TP with full EP, and attention
// data parallel with full EP (DEP) — the three families the engines ship (docs/planner.md).
std::vector<model::ParallelLayout> layouts_for(const model::ModelConfig& m, int count) {
  std::vector<model::ParallelLayout> out;
  for (int pp : {1, 2, 4}) {
    if (count % pp != 0 || pp > m.num_layers) continue;
    const int per_stage = count / pp;
    out.push_back({per_stage, 1, pp, 1});
    if (m.is_moe() && per_stage > 1) {
      out.push_back({per_stage, per_stage, pp, 1});
      out.push_back({1, per_stage, pp, per_stage});
    }
  }
  return out;
}

// Batch sizes tried: 1, 2, 3, 4, 6, 8, 12, 16, … (steps of 1.5x and 2x, as engines' CUDA-graph batch lists) and the cap.
std::vector<std::int64_t> batches_up_to(std::int64_t cap) {
  std::vector<std::int64_t> b;
  for (std::int64_t v = 1; v <= cap; v *= 2) {
    b.push_back(v);
    if (v >= 2 && v * 3 / 2 <= cap) b.push_back(v * 3 / 2);
  }
  if (b.empty() || b.back() != cap) b.push_back(cap);
  return b;
}

// Steady state of continuous batching with `batch` sequences per group, all slots busy (docs/planner.md): each step
// decodes the batch at the mean context and prefills the prompts of the sequences that replace finished ones
// (batch · input / output tokens per step, within the token budget).
struct Operating {
  double step_s = 0, decode_only_s = 0, output_per_step = 0, ttft_s = 0;
};
Operating operating_point(const simulator::StepModel& sm, const PlanRequest& r, std::int64_t batch,
                          model::AttentionKind window_kind) {
  const double I = d(r.input_tokens), O = d(r.output_tokens), B = d(batch);
  const double room = std::max(1.0, d(r.max_num_batched_tokens) - B);
  const double prefill_per_step = std::min(B * I / O, room);
  simulator::StepShape decode =
      simulator::decode_shape(B, r.input_tokens + r.output_tokens / 2, sm.graph(), window_kind);
  simulator::StepShape step = decode;
  step += simulator::prefill_shape(r.input_tokens, 0, true, sm.graph(), window_kind).scaled(prefill_per_step / I);
  Operating op;
  op.step_s = sm.step_time_s(step);
  op.decode_only_s = sm.step_time_s(decode);
  op.output_per_step = std::min(B, prefill_per_step * O / I);
  op.ttft_s = op.step_s * std::max(1.0, std::ceil(I / room));
  return op;
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
  const auto t0 = std::chrono::steady_clock::now();
  if (!r.model || !r.precisions) throw std::logic_error("plan: no model");
  const model::ModelConfig& m = *r.model;
  if (r.gpus.empty()) throw InputError("--gpus selects no GPU (see moeplan gpus)");
  if (r.precision_specs.empty()) throw InputError("--precisions is empty");
  if (r.input_tokens < 1 || r.output_tokens < 1) throw InputError("--input and --output must be at least 1 token");
  if (m.max_context_tokens > 0 && r.input_tokens + r.output_tokens > m.max_context_tokens)
    throw InputError("--input + --output is above " + m.name + "'s limit of " + with_commas(m.max_context_tokens) + " tokens");
  for (double v : {r.ttft_ms, r.tpot_ms, r.min_tokens_per_s_per_user, r.budget_usd_per_month, r.budget_usd_per_hour,
                   r.gpu_price_usd_per_hour})
    if (v < 0 || !std::isfinite(v)) throw InputError("SLO, budget and price values must be positive numbers");
  if (!(r.utilization > 0 && r.utilization <= 1)) throw InputError("--utilization must be in (0, 1] (e.g. 0.6 for 60 %)");
  std::vector<model::Precision> precisions;
  for (const auto& spec : r.precision_specs) precisions.push_back(model::resolve_precision(spec, m, *r.precisions));

  model::AttentionKind window_kind = model::AttentionKind::chunked;
  for (const auto& l : m.layers)
    if (l.attention == model::AttentionKind::sliding) window_kind = l.attention;

  PlanResult res;
  double closest_ratio = 1e300;
  // Op graphs depend on (precision, layout), not on the GPU: build each once and price it on every GPU.
  std::map<std::tuple<std::size_t, int, int, int, int>, std::shared_ptr<const model::OpGraph>> graphs;
  std::map<std::tuple<std::size_t, int, int, int, int>, simulator::MemoryBreakdown> memories;
  auto reject = [&](Reject why) { ++res.rejected[static_cast<std::size_t>(why)]; };

  for (const gpu_db::GpuSpec* gpu : r.gpus) {
    // Price once per GPU.
    double price = r.gpu_price_usd_per_hour;
    std::string price_source = "--gpu-price";
    if (price <= 0) {
      if (auto p = db.cheapest_on_demand(gpu->name)) {
        price = p->usd_per_gpu_hour;
        price_source = p->provider + " " + p->date;
      }
    }
    simulator::Hardware hw = simulator::gpu_hardware(db, *gpu, r.internode_link);
    for (std::size_t pi = 0; pi < precisions.size(); ++pi) {
      const model::Precision& prec = precisions[pi];
      const std::string dtype = prec.format ? prec.format->compute_dtype : "bf16";
      const bool native = !prec.format || !prec.format->quantised() || gpu->has_dtype(dtype);
      // NVFP4 needs FP4 tensor cores (no engine dequantises it elsewhere); other formats fall back to
      // weight-only kernels (FP8 Marlin on Ampere, MXFP4 through Triton on Hopper, int4/GGUF everywhere).
      const bool unsupported = prec.format && prec.format->name == "nvfp4" && !gpu->has_dtype("fp4");
      for (int count : r.counts) {
        for (const auto& layout : layouts_for(m, count)) {
          if (unsupported) {
            reject(Reject::unsupported_dtype);
            continue;
          }
          try {
            model::validate_layout(m, layout);
          } catch (const InputError&) {
            reject(Reject::invalid_layout);
            continue;
          }
          ++res.configurations;
          // Memory: activations at the peak step over a full batch; what is left holds KV. Weights, activations,
          // overhead and KV per sequence depend on (precision, layout), not on the GPU: computed once.
          const auto key = std::make_tuple(pi, layout.tp, layout.ep, layout.pp, layout.dp);
          auto mem_it = memories.find(key);
          if (mem_it == memories.end()) {
            simulator::MemoryRequest mr;
            mr.model = &m;
            mr.precision = prec;
            mr.layout = layout;
            mr.kv_dtype = r.kv_dtype;
            mr.context_tokens = r.input_tokens + r.output_tokens;
            mr.concurrency = r.max_batch * layout.dp;
            mr.max_num_batched_tokens = r.max_num_batched_tokens;
            mr.capacity_bytes = 1;  // placeholder: usable memory is taken per GPU below
            mem_it = memories.emplace(key, simulator::memory_breakdown(mr)).first;
          }
          const simulator::MemoryBreakdown& mem = mem_it->second;
          const double usable = gpu->memory_bytes * r.gpu_memory_utilization;
          const double room = usable - mem.weights.total - mem.activation_bytes - mem.overhead_bytes;
          const std::int64_t kv_batch =
              room > 0 && mem.kv_bytes_per_sequence > 0 ? static_cast<std::int64_t>(room / mem.kv_bytes_per_sequence) : 0;
          if (kv_batch < 1) {
            reject(Reject::does_not_fit);
            continue;
          }
          if (price <= 0) {
            reject(Reject::no_price);
            continue;
          }
          const double usd_per_hour_total = usd_per_hour(price, count);
          if ((r.budget_usd_per_hour > 0 && usd_per_hour_total > r.budget_usd_per_hour) ||
              (r.budget_usd_per_month > 0 && usd_per_month(price, count) > r.budget_usd_per_month)) {
            reject(Reject::over_budget);
            continue;
          }
          simulator::StepModelRequest sr;
          sr.graph.model = &m;
          sr.graph.precision = prec;
          sr.graph.layout = layout;
          sr.graph.kv_dtype = r.kv_dtype;
          sr.hardware = hw;
          sr.routing = simulator::RoutingModel::uniform(m.num_experts, m.experts_per_token, layout.ep);
          auto& graph = graphs[key];
          if (!graph) graph = std::make_shared<const model::OpGraph>(model::build_op_graph(sr.graph));
          const simulator::StepModel sm(sr, graph);

          // The operating point: the largest batch whose TTFT/TPOT meet the SLO (TPOT grows with the batch).
          std::optional<PlanRow> best;
          Reject miss = Reject::tpot_slo;
          for (std::int64_t batch : batches_up_to(std::min(r.max_batch, kv_batch))) {
            ++res.operating_points;
            const Operating op = operating_point(sm, r, batch, window_kind);
            const double ttft_ms = op.ttft_s * 1e3, tpot_ms = op.step_s * 1e3, per_user = 1e3 / tpot_ms;
            const double tps = op.output_per_step * layout.dp / op.step_s;
            PlanRow row;
            row.gpu = gpu;
            row.count = count;
            row.precision = prec.spec;
            row.weight_only = !native;
            row.layout = layout;
            row.batch = batch;
            row.kv_limited_batch = kv_batch;
            row.output_tokens_per_s = tps;
            row.output_tokens_per_s_per_user = per_user;
            row.ttft_ms = ttft_ms;
            row.tpot_ms = tpot_ms;
            row.prefill_time_share = op.step_s > 0 ? std::max(0.0, (op.step_s - op.decode_only_s) / op.step_s) : 0;
            const double over_ttft = r.ttft_ms > 0 ? ttft_ms / r.ttft_ms : 0;
            const double over_tpot = r.tpot_ms > 0 ? tpot_ms / r.tpot_ms : 0;
            const double over_user = r.min_tokens_per_s_per_user > 0 ? r.min_tokens_per_s_per_user / per_user : 0;
            const double worst = std::max({over_ttft, over_tpot, over_user});
            if (worst > 1) {
              miss = over_ttft == worst ? Reject::ttft_slo : over_tpot == worst ? Reject::tpot_slo : Reject::user_speed_slo;
              if (worst < closest_ratio) {
                closest_ratio = worst;
                res.closest.row = row;
                res.closest.constraint = miss == Reject::ttft_slo ? "--ttft-ms" : miss == Reject::tpot_slo ? "--tpot-ms"
                                                                                                          : "--min-tokens-per-s-per-user";
                res.closest.value = miss == Reject::ttft_slo ? ttft_ms : miss == Reject::tpot_slo ? tpot_ms : per_user;
                res.closest.limit = miss == Reject::ttft_slo ? r.ttft_ms : miss == Reject::tpot_slo ? r.tpot_ms
                                                                                                    : r.min_tokens_per_s_per_user;
              }
              continue;
            }
            if (!best || tps > best->output_tokens_per_s) best = row;
          }
          if (!best) {
            reject(miss);
            continue;
          }
          // Price the operating point (docs/planner.md "Cost").
          PlanRow& row = *best;
          row.vram_used_bytes_per_gpu =
              mem.weights.total + mem.activation_bytes + mem.overhead_bytes + mem.kv_bytes_per_sequence * d(row.batch);
          row.usd_per_gpu_hour = price;
          row.price_source = price_source;
          row.usd_per_hour = usd_per_hour_total;
          row.usd_per_month = usd_per_month(price, count);
          const double hours_cost = row.usd_per_hour / r.utilization;  // idle hours are paid too
          const double out_per_hour = row.output_tokens_per_s * 3600.0;
          const double in_per_hour = out_per_hour * d(r.input_tokens) / d(r.output_tokens);
          row.usd_per_m_output_tokens = hours_cost * (1 - row.prefill_time_share) / out_per_hour * 1e6;
          row.usd_per_m_input_tokens = hours_cost * row.prefill_time_share / in_per_hour * 1e6;
          row.usd_per_m_blended_tokens = hours_cost / (out_per_hour + in_per_hour) * 1e6;
          const std::array<double, 3> sizes = {500, 2000, 8000};
          for (std::size_t i = 0; i < 3; ++i) row.usd_per_1000_requests[i] = 1000.0 * sizes[i] * row.usd_per_m_blended_tokens / 1e6;
          const Operating one = operating_point(sm, r, 1, window_kind);
          row.output_tokens_per_s_batch1 = one.output_per_step / one.step_s;
          row.usd_per_m_output_tokens_batch1 = hours_cost / (row.output_tokens_per_s_batch1 * 3600.0) * 1e6;
          res.rows.push_back(std::move(row));
        }
      }
    }
  }

  // Pareto front of (blended $/M ↓, tokens/s per user ↑): cheapest first, keep each row faster than all cheaper ones.
  std::vector<std::size_t> by_cost(res.rows.size());
  for (std::size_t i = 0; i < by_cost.size(); ++i) by_cost[i] = i;
  std::sort(by_cost.begin(), by_cost.end(), [&](std::size_t a, std::size_t b) {
    return res.rows[a].usd_per_m_blended_tokens < res.rows[b].usd_per_m_blended_tokens;
  });
  double fastest = -1;
  for (std::size_t i : by_cost) {
    if (res.rows[i].output_tokens_per_s_per_user > fastest) {
      res.rows[i].pareto = true;
      fastest = res.rows[i].output_tokens_per_s_per_user;
    }
  }
  auto key = [&](const PlanRow& a) {
    switch (r.objective) {
      case Objective::usd_per_m_tokens: return a.usd_per_m_blended_tokens;
      case Objective::tokens_per_s_per_user: return -a.output_tokens_per_s_per_user;
      case Objective::tokens_per_s_per_dollar: return -a.output_tokens_per_s / a.usd_per_hour;
      case Objective::fewest_gpus: return d(a.count) * 1e9 + a.usd_per_m_blended_tokens;
    }
    return 0.0;
  };
  std::stable_sort(res.rows.begin(), res.rows.end(), [&](const PlanRow& a, const PlanRow& b) { return key(a) < key(b); });
  res.sweep_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace moeplan::planner
