// planner/sweep: the parts of the sweep around its loop (see sweep.hpp; docs/planner.md).
#include "planner/sweep.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <map>
#include <numeric>
#include <system_error>
#include <thread>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "planner/cost.hpp"
#include "simulator/engine.hpp"
#include "simulator/gpu_profile.hpp"
#include "simulator/hardware.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::planner::detail {

Setup check_request(const PlanRequest& r) {
  if (!r.model || !r.precisions) throw std::logic_error("plan: no model");
  const model::ModelConfig& m = *r.model;
  if (r.gpus.empty() && !r.host) throw InputError("--gpus selects no GPU (see moeplan gpus)");
  if (r.host && r.host->ranks.empty()) throw std::logic_error("plan: a host with no rank counts");
  if (r.precision_specs.empty()) throw InputError("--precisions is empty");
  if (r.input_tokens < 1 || r.output_tokens < 1) throw InputError("--input and --output must be at least 1 token");
  if (r.max_batch < 1 || r.max_num_batched_tokens < 1)
    throw InputError("--max-batch and --max-num-batched-tokens must be at least 1");
  if (m.max_context_tokens > 0 && r.input_tokens + r.output_tokens > m.max_context_tokens)
    throw InputError("--input + --output is above " + m.name + "'s limit of " + with_commas(m.max_context_tokens) + " tokens");
  for (double v : {r.ttft_ms, r.tpot_ms, r.min_tokens_per_s_per_user, r.budget_usd_per_month, r.budget_usd_per_hour,
                   r.gpu_price_usd_per_hour})
    if (v < 0 || !std::isfinite(v)) throw InputError("SLO, budget and price values must be positive numbers");
  if (!(r.utilization > 0 && r.utilization <= 1)) throw InputError("--utilization must be in (0, 1] (e.g. 0.6 for 60 %)");
  if (r.slo_percentile != 50 && r.slo_percentile != 90 && r.slo_percentile != 99)
    throw InputError("--slo-percentile must be 50, 90 or 99");
  if (r.serving_rows < 0 || r.serving_requests_per_slot < 1) throw std::logic_error("plan: bad serving check settings");
  if (r.nics_per_node < 0) throw InputError("--nics-per-node must be a positive number of NIC ports per node");
  if (!std::isfinite(r.network_usd_per_port_hour)) throw InputError("--network-price must be a number of USD per NIC port-hour");
  Setup s;
  for (const auto& spec : r.precision_specs) s.precisions.push_back(model::resolve_precision(spec, m, *r.precisions));
  for (const auto& l : m.layers)
    if (l.attention == model::AttentionKind::sliding) s.window_kind = l.attention;
  return s;
}

// Pipeline 1/2/4; for MoE models pure TP, TP with full EP, and attention data parallel with full EP (DEP) — the
// three families the engines ship (docs/planner.md).
std::vector<model::ParallelLayout> layouts_for(const model::ModelConfig& m, int count) {
  return model::candidate_layouts(m, count);  // shared with fit-matrix and memory --fit-gpu
}

std::vector<model::ParallelLayout> host_layouts(const model::ModelConfig& m, const std::vector<int>& ranks) {
  std::vector<model::ParallelLayout> out;
  for (int n : ranks) {
    out.push_back({n, 1, 1, 1});
    if (m.is_moe() && n > 1) out.push_back({n, n, 1, 1});
  }
  return out;
}

// Steps of 1.5x and 2x, as engines' CUDA-graph batch lists, and the cap.
std::vector<std::int64_t> batches_up_to(std::int64_t cap) {
  std::vector<std::int64_t> b;
  for (std::int64_t v = 1; v <= cap; v *= 2) {  // v + v / 2 and the v > cap / 2 exit keep every step inside int64
    b.push_back(v);
    if (v >= 2 && v + v / 2 <= cap) b.push_back(v + v / 2);
    if (v > cap / 2) break;
  }
  if (b.empty() || b.back() != cap) b.push_back(cap);
  return b;
}

SteadyStep steady_step(const PlanRequest& r, std::int64_t batch) {
  const double I = to_double(r.input_tokens), O = to_double(r.output_tokens), B = to_double(batch);
  const double room = std::max(1.0, to_double(r.max_num_batched_tokens) - B);
  const double prefill_per_step = std::min(B * I / O, room);
  SteadyStep s;
  s.a = B;
  s.b = prefill_per_step / I;
  s.output_per_step = std::min(B, prefill_per_step * O / I);
  s.ttft_steps = std::max(1.0, std::ceil(I / room));
  return s;
}

simulator::StepShape decode_unit(const PlanRequest& r, const model::OpGraph& g, model::AttentionKind window_kind) {
  return simulator::decode_shape(1, r.input_tokens + r.output_tokens / 2, g, window_kind);
}

simulator::StepShape prefill_unit(const PlanRequest& r, const model::OpGraph& g, model::AttentionKind window_kind) {
  return simulator::prefill_shape(r.input_tokens, 0, true, g, window_kind);
}

model::OpGraphRequest graph_request(const PlanRequest& r, const model::Precision& p, const model::ParallelLayout& l) {
  model::OpGraphRequest g;
  g.model = r.model;
  g.precision = p;
  g.layout = l;
  g.kv_dtype = r.kv_dtype;
  if (r.engine) {  // simulator::apply_engine's choice for simulate --engine
    g.moe_dp_comm = simulator::engine_moe_dp_comm(*r.engine);
    g.quantized_dispatch = r.engine->moe_dp_quantized_dispatch;
  }
  if (r.host && r.host->hardware.profile) g.activation_bytes = 4;
  return g;
}

simulator::StepModelRequest step_model_request(const PlanRequest& r, const model::Precision& p,
                                               const model::ParallelLayout& l, const simulator::Hardware& hw) {
  simulator::StepModelRequest sr;
  sr.graph = graph_request(r, p, l);
  sr.hardware = hw;
  sr.routing = simulator::RoutingModel::uniform(r.model->num_experts, r.model->experts_per_token, l.ep);
  return sr;
}

Operating operating_point(const simulator::StepModel& sm, const PlanRequest& r, std::int64_t batch,
                          model::AttentionKind window_kind) {
  const double I = to_double(r.input_tokens), O = to_double(r.output_tokens), B = to_double(batch);
  simulator::StepShape decode =
      simulator::decode_shape(B, r.input_tokens + r.output_tokens / 2, sm.graph(), window_kind);
  if (r.host && r.host->hardware.profile) {
    // The CPU executor a profile measured runs each prompt whole, in its own pass, between decode steps (no mixed
    // batches): per decode step of B sequences it prefills B / O prompts. The first token comes from the prompt's pass.
    Operating op;
    const double prompt_s = sm.step_time_s(simulator::prefill_shape(r.input_tokens, 0, true, sm.graph(), window_kind));
    op.decode_only_s = sm.step_time_s(decode);
    op.step_s = op.decode_only_s + prompt_s * B / O;
    op.output_per_step = B;
    op.ttft_s = prompt_s;
    return op;
  }
  const double room = std::max(1.0, to_double(r.max_num_batched_tokens) - B);
  const double prefill_per_step = std::min(B * I / O, room);
  simulator::StepShape step = decode;
  step += simulator::prefill_shape(r.input_tokens, 0, true, sm.graph(), window_kind).scaled(prefill_per_step / I);
  Operating op;
  op.step_s = sm.step_time_s(step);
  op.decode_only_s = sm.step_time_s(decode);
  op.output_per_step = std::min(B, prefill_per_step * O / I);
  op.ttft_s = op.step_s * std::max(1.0, std::ceil(I / room));
  return op;
}

PlanRow operating_row(const Configuration& c, std::int64_t batch, const Operating& op, double decode_only_s) {
  PlanRow row;
  row.gpu = c.gpu;
  row.count = c.count;
  row.precision = c.precision->spec;
  row.weight_only = !c.native;
  row.layout = *c.layout;
  row.batch = batch;
  row.kv_limited_batch = c.kv_batch;
  set_figures(row, op.ttft_s * 1e3, op.step_s * 1e3, op.output_per_step * c.layout->dp / op.step_s,
              prefill_share(op.step_s, decode_only_s));
  return row;
}

void set_figures(PlanRow& row, double ttft_ms, double tpot_ms, double output_tokens_per_s, double prefill_time_share) {
  row.ttft_ms = ttft_ms;
  row.tpot_ms = tpot_ms;
  row.output_tokens_per_s_per_user = 1e3 / tpot_ms;
  row.output_tokens_per_s = output_tokens_per_s;
  row.prefill_time_share = prefill_time_share;
}

double prefill_share(double step_s, double decode_only_s) {
  return step_s > 0 ? std::max(0.0, (step_s - decode_only_s) / step_s) : 0;
}

SloStanding slo_standing(const PlanRequest& r, double ttft_ms, double tpot_ms, double per_user) {
  const double over_ttft = r.ttft_ms > 0 ? ttft_ms / r.ttft_ms : 0;
  const double over_tpot = r.tpot_ms > 0 ? tpot_ms / r.tpot_ms : 0;
  const double over_user = r.min_tokens_per_s_per_user > 0 ? r.min_tokens_per_s_per_user / per_user : 0;
  SloStanding s;
  s.worst = std::max({over_ttft, over_tpot, over_user});
  if (over_ttft == s.worst) {
    s.why = Reject::ttft_slo;
    s.constraint = "--ttft-ms";
    s.value = ttft_ms;
    s.limit = r.ttft_ms;
  } else if (over_tpot == s.worst) {
    s.why = Reject::tpot_slo;
    s.constraint = "--tpot-ms";
    s.value = tpot_ms;
    s.limit = r.tpot_ms;
  } else {
    s.why = Reject::user_speed_slo;
    s.constraint = "--min-tokens-per-s-per-user";
    s.value = per_user;
    s.limit = r.min_tokens_per_s_per_user;
  }
  return s;
}

void set_closest(ClosestMiss& closest, const SloStanding& slo) {
  closest.constraint = slo.constraint;
  closest.value = slo.value;
  closest.limit = slo.limit;
}

double miss_ratio(const ClosestMiss& c) {
  if (!c.row || c.limit <= 0 || c.value <= 0) return 1e300;
  return c.constraint == "--min-tokens-per-s-per-user" ? c.limit / c.value : c.value / c.limit;
}

namespace {

// The cost fields of a row from its $/hour, tokens/s, prefill share and batch-1 tokens/s.
void price_tokens(PlanRow& row, const PlanRequest& r) {
  const double hours_cost = row.usd_per_hour / r.utilization;  // idle hours are paid too
  const double out_per_hour = row.output_tokens_per_s * 3600.0;
  const double in_per_hour = out_per_hour * to_double(r.input_tokens) / to_double(r.output_tokens);
  row.usd_per_m_output_tokens = hours_cost * (1 - row.prefill_time_share) / out_per_hour * 1e6;
  row.usd_per_m_input_tokens = hours_cost * row.prefill_time_share / in_per_hour * 1e6;
  row.usd_per_m_blended_tokens = hours_cost / (out_per_hour + in_per_hour) * 1e6;
  const std::array<double, 3> sizes = {500, 2000, 8000};
  for (std::size_t i = 0; i < 3; ++i) row.usd_per_1000_requests[i] = 1000.0 * sizes[i] * row.usd_per_m_blended_tokens / 1e6;
  row.usd_per_m_output_tokens_batch1 = hours_cost / (row.output_tokens_per_s_batch1 * 3600.0) * 1e6;
}

}  // namespace

GpuPricing gpu_pricing(const PlanRequest& r, const gpu_db::Database& db, const gpu_db::GpuSpec& gpu) {
  if (r.gpu_price_usd_per_hour > 0 && r.prices.usd_per_gpu_hour_all <= 0) {
    PriceChoice every = r.prices;
    every.usd_per_gpu_hour_all = r.gpu_price_usd_per_hour;
    return gpu_price(every, db, gpu.name);
  }
  return gpu_price(r.prices, db, gpu.name);
}

double Placement::usd_per_hour(const GpuPricing& p, int count) const {
  return planner::usd_per_hour(p.usd_per_gpu_hour, count) + network_usd_per_hour;
}

Placement placement(const PlanRequest& r, const gpu_db::Database& db, const simulator::Hardware& hw, const GpuPricing& p,
                    int count) {
  Placement w;
  w.gpus_per_node = std::max(1, hw.gpus_per_node);
  w.nodes = (count + w.gpus_per_node - 1) / w.gpus_per_node;
  w.nics_per_node = hw.nics_per_node;
  w.intra_link = hw.intra_label.empty() ? hw.intra_link : hw.intra_label;
  w.inter_link = hw.inter_label.empty() ? hw.inter_link : hw.inter_label;
  if (w.nodes > 1) {
    w.network_in_price = p.network_included;
    const double port_hour = r.network_usd_per_port_hour >= 0 ? r.network_usd_per_port_hour
                                                              : db.network_port_price().usd_per_port_hour();
    if (!w.network_in_price) w.network_usd_per_hour = to_double(w.nodes) * to_double(w.nics_per_node) * port_hour;
  }
  return w;
}

bool within_budget(const PlanRequest& r, double usd_per_hour) {
  return !((r.budget_usd_per_hour > 0 && usd_per_hour > r.budget_usd_per_hour) ||
           (r.budget_usd_per_month > 0 && usd_per_hour * kHoursPerMonth > r.budget_usd_per_month));
}

void price_row(PlanRow& row, const simulator::MemoryBreakdown& mem, const GpuPricing& pricing, const Placement& where,
               const PlanRequest& r, const Operating& one) {
  row.vram_used_bytes_per_gpu =
      mem.weights.total + mem.activation_bytes + mem.overhead_bytes + mem.kv_bytes_per_sequence * to_double(row.batch);
  row.nodes = where.nodes;
  row.gpus_per_node = where.gpus_per_node;
  row.nics_per_node = where.nics_per_node;
  row.intra_link = where.intra_link;
  row.inter_link = where.inter_link;
  row.usd_per_gpu_hour = pricing.usd_per_gpu_hour;
  row.price_source = pricing.source;
  row.price_confidence = pricing.overridden ? "given" : gpu_db::confidence_name(pricing.confidence);
  row.price_flags = pricing.flags;
  row.network_usd_per_hour = where.network_usd_per_hour;
  row.network_in_price = where.network_in_price;
  row.usd_per_hour = where.usd_per_hour(pricing, row.count);
  row.usd_per_month = row.usd_per_hour * kHoursPerMonth;
  row.output_tokens_per_s_batch1 = one.output_per_step / one.step_s;
  if (r.validated && row.gpu) row.beyond_validated = simulator::beyond_validated(*r.validated, *row.gpu, row.count, row.layout);
  price_tokens(row, r);
}

std::optional<RowErrorBars> error_bars(const PlanRow& row, const simulator::HostProfile& profile) {
  if (!profile.decode_residuals || !profile.prefill_residuals) return std::nullopt;
  const double dlo = 1 + profile.decode_residuals->q05, dhi = 1 + profile.decode_residuals->q95;
  const double plo = 1 + profile.prefill_residuals->q05, phi = 1 + profile.prefill_residuals->q95;
  RowErrorBars e;
  e.ttft_ms = {row.ttft_ms * plo, row.ttft_ms * phi};
  e.tpot_ms = {row.tpot_ms * dlo, row.tpot_ms * dhi};
  e.output_tokens_per_s = {row.output_tokens_per_s / dhi, row.output_tokens_per_s / dlo};
  e.output_tokens_per_s_per_user = {row.output_tokens_per_s_per_user / dhi, row.output_tokens_per_s_per_user / dlo};
  e.usd_per_m_output_tokens = {row.usd_per_m_output_tokens * dlo, row.usd_per_m_output_tokens * dhi};
  e.usd_per_m_blended_tokens = {row.usd_per_m_blended_tokens * dlo, row.usd_per_m_blended_tokens * dhi};
  e.decode_n = profile.decode_residuals->n;
  e.prefill_n = profile.prefill_residuals->n;
  return e;
}

void rank_rows(PlanResult& res, const PlanRequest& r) {
  std::vector<PlanRow>& rows = res.rows;
  for (PlanRow& row : rows) row.pareto = false;
  // Pareto front of (blended $/M ↓, tokens/s per user ↑): cheapest first, keep each row faster than all cheaper ones.
  std::vector<std::size_t> by_cost(rows.size());
  std::iota(by_cost.begin(), by_cost.end(), std::size_t{0});
  std::sort(by_cost.begin(), by_cost.end(), [&](std::size_t a, std::size_t b) {
    return rows[a].usd_per_m_blended_tokens < rows[b].usd_per_m_blended_tokens;
  });
  double fastest = -1;
  for (std::size_t i : by_cost) {
    if (rows[i].output_tokens_per_s_per_user > fastest) {
      rows[i].pareto = true;
      fastest = rows[i].output_tokens_per_s_per_user;
    }
  }
  // A stable sort by the objective, on indices: each row moves once.
  std::vector<double> key(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const PlanRow& a = rows[i];
    switch (r.objective) {
      case Objective::usd_per_m_tokens: key[i] = a.usd_per_m_blended_tokens; break;
      case Objective::tokens_per_s_per_user: key[i] = -a.output_tokens_per_s_per_user; break;
      case Objective::tokens_per_s_per_dollar: key[i] = -a.output_tokens_per_s / a.usd_per_hour; break;
      case Objective::fewest_gpus: key[i] = to_double(a.count) * 1e9 + a.usd_per_m_blended_tokens; break;
    }
  }
  std::vector<std::size_t> order(rows.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key[a] < key[b]; });
  std::vector<PlanRow> sorted;
  sorted.reserve(rows.size());
  for (std::size_t i : order) sorted.push_back(std::move(rows[i]));
  rows = std::move(sorted);
}

std::string simulate_command(const PlanRequest& r, const PlanRow& row, std::int64_t batch) {
  const model::ParallelLayout& l = row.layout;
  std::string c = "moeplan simulate --model " + (r.model_arg.empty() ? r.model->name : r.model_arg) + " --gpu " +
                  row.gpu->name + " --count " + std::to_string(row.count) + " --precision " + row.precision + " --tp " +
                  std::to_string(l.tp);
  if (l.ep > 1) c += " --ep " + std::to_string(l.ep);
  if (l.pp > 1) c += " --pp " + std::to_string(l.pp);
  if (l.dp > 1) c += " --dp " + std::to_string(l.dp);
  c += " --input " + std::to_string(r.input_tokens) + " --output " + std::to_string(r.output_tokens);
  if (r.kv_dtype != model::KvDtype::bf16) c += std::string(" --kv-dtype ") + model::kv_dtype_name(r.kv_dtype);
  if (r.max_num_batched_tokens != 8192) c += " --max-num-batched-tokens " + std::to_string(r.max_num_batched_tokens);
  if (r.gpu_memory_utilization != 0.90) c += " --gpu-memory-utilization " + format_fixed(r.gpu_memory_utilization, 4);
  if (!r.internode_link.empty() && r.internode_link != "infiniband-ndr") c += " --internode " + r.internode_link;
  if (r.nics_per_node > 0) c += " --nics-per-node " + std::to_string(r.nics_per_node);
  if (r.engine) c += " --engine " + r.engine->name;
  if (!r.gpu_profiles) c += " --gpu-profile none";
  const std::int64_t concurrency = batch * l.dp;
  c += " --concurrency " + std::to_string(concurrency) + " --max-batch " + std::to_string(batch) + " --num-requests " +
       std::to_string(concurrency * r.serving_requests_per_slot);
  return c;
}

namespace {

// Runs f(0) … f(n − 1) on up to hardware_concurrency threads (each index once, in no particular order); when some
// calls throw, every index still runs and the exception of the lowest one is rethrown after all have finished.
template <typename F>
void for_each_parallel(std::size_t n, F f) {
  std::vector<std::exception_ptr> errors(n);
  auto call = [&](std::size_t i) {
    try {
      f(i);
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  const std::size_t threads = std::min<std::size_t>(n, std::max(1u, std::thread::hardware_concurrency()));
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < n; i = next++) call(i);
  };
  std::vector<std::thread> pool;
  if (threads > 1) pool.reserve(threads - 1);
  try {
    for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  } catch (const std::system_error&) {
    // No more threads to be had (a process or address-space limit): the ones started and this one do the rest.
  }
  work();
  for (auto& t : pool) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// What one row's serving check found: kept, or missed at every batch down to 1 (with the SLO that missed worst).
struct ServeOutcome {
  bool kept = true;
  std::int64_t simulations = 0;
  SloStanding slo;  // at the last batch run
};

// A row's configuration as the serving check simulates it (closed loop; `r` is the row's request: row_request).
simulator::SimulateRequest serving_request(const PlanRequest& r, const gpu_db::Database& db, const PlanRow& row) {
  const model::ModelConfig& m = *r.model;
  simulator::SimulateRequest q;
  q.model = &m;
  q.precision = model::resolve_precision(row.precision, m, *r.precisions);
  q.layout = row.layout;
  q.kv_dtype = r.kv_dtype;
  q.hardware = engine_hardware(simulator::gpu_hardware(db, *row.gpu, r.internode_link, r.nics_per_node), r);
  q.limits.max_num_batched_tokens = r.max_num_batched_tokens;
  // Decode-only steps as the engine's padded CUDA graphs (simulate --engine applies the same; data/engines.yaml).
  if (r.engine) q.limits.graph_padded_batches = simulator::engine_graph_padding(*r.engine);
  q.gpu_memory_utilization = r.gpu_memory_utilization;
  q.workload.input_tokens = r.input_tokens;
  q.workload.output_tokens = r.output_tokens;
  q.workload.mode = simulator::LoadMode::closed;
  q.workload.groups_alike = true;  // one attention group stands for all dp: within 1 % of simulating each
  return q;
}

// Runs a row's operating point at `batch` through the serving check, updating the row to what the serving loop
// gives; touches nothing but the row, so rows are checked in parallel (check_serving applies the outcomes in order).
ServeOutcome serve_row(const PlanRequest& r, const gpu_db::Database& db, model::AttentionKind window_kind, PlanRow& row) {
  ServeOutcome out;
  simulator::SimulateRequest q = serving_request(r, db, row);
  const std::vector<std::int64_t> batches = batches_up_to(std::min(r.max_batch, row.kv_limited_batch));

  ServingCheck check;
  check.formula_batch = row.batch;
  check.steady_ttft_ms = row.ttft_ms;
  check.steady_tpot_ms = row.tpot_ms;
  check.steady_output_tokens_per_s = row.output_tokens_per_s;
  double prefill = row.prefill_time_share;
  std::int64_t batch = row.batch;
  const std::string pct = "p" + std::to_string(r.slo_percentile);
  for (;;) {
    q.limits.max_batch = batch;
    q.workload.concurrency = batch * row.layout.dp;
    q.workload.num_requests = q.workload.concurrency * r.serving_requests_per_slot;
    const simulator::SimulateResult sim = simulator::simulate(q);
    ++out.simulations;
    const simulator::ServingResult& s = sim.serving;
    const double ttft = s.ttft_ms.stat(pct);
    // One output token has no TPOT: the steady step stands for it.
    const double tpot = r.output_tokens > 1 ? s.tpot_ms.stat(pct) : check.steady_tpot_ms;
    const SloStanding slo = slo_standing(r, ttft, tpot, 1e3 / tpot);

    const std::int64_t dropped = row.batch - batch;  // fewer sequences hold KV than the sweep's row
    row.vram_used_bytes_per_gpu -= sim.memory.kv_bytes_per_sequence * to_double(dropped);
    row.batch = batch;
    set_figures(row, ttft, tpot, s.output_tokens_per_s, prefill);
    price_tokens(row, r);
    check.concurrency = q.workload.concurrency;
    check.num_requests = q.workload.num_requests;
    check.ttft_ms_p50 = s.ttft_ms.p50;
    check.ttft_ms_p90 = s.ttft_ms.p90;
    check.ttft_ms_p99 = s.ttft_ms.p99;
    check.tpot_ms_p50 = s.tpot_ms.p50;
    check.tpot_ms_p90 = s.tpot_ms.p90;
    check.tpot_ms_p99 = s.tpot_ms.p99;
    check.output_tokens_per_s = s.output_tokens_per_s;
    check.simulate_command = simulate_command(r, row, batch);
    row.serving = check;
    if (slo.worst <= 1) return out;

    // Missed: the largest listed batch below this one that the miss scales to (TTFT in a burst of arrivals and TPOT
    // both grow with the batch), else the next smaller one; none below 1.
    std::int64_t next = 0;
    for (std::int64_t b : batches)
      if (b < batch && (next == 0 || to_double(b) <= to_double(batch) / slo.worst)) next = b;
    if (next == 0) {
      out.kept = false;
      out.slo = slo;
      return out;
    }
    // The steady figures at the new batch, for its prefill share (the cost split).
    const Operating op =
        operating_point(simulator::StepModel(step_model_request(r, q.precision, row.layout, q.hardware)), r, next, window_kind);
    prefill = prefill_share(op.step_s, op.decode_only_s);
    check.steady_ttft_ms = op.ttft_s * 1e3;
    check.steady_tpot_ms = op.step_s * 1e3;
    check.steady_output_tokens_per_s = op.output_per_step * row.layout.dp / op.step_s;
    batch = next;
  }
}

}  // namespace

// The request a row was planned under: its engine's limits and KV dtype where the engine set them.
PlanRequest row_request(const PlanRequest& r, const PlanRow& row) {
  PlanRequest e = r;
  if (!row.engine) return e;
  e.engines.clear();
  e.engine = row.engine;
  if (r.engine_max_batch) e.max_batch = row.engine->max_batch;
  if (r.engine_max_num_batched_tokens) e.max_num_batched_tokens = row.engine->max_num_batched_tokens;
  if (!row.kv_dtype.empty()) e.kv_dtype = model::parse_kv_dtype(row.kv_dtype);
  return e;
}

void check_serving(PlanResult& res, const PlanRequest& r, const gpu_db::Database& db, model::AttentionKind window_kind) {
  rank_rows(res, r);
  if (r.host || r.serving_rows <= 0) return;
  const std::size_t want = static_cast<std::size_t>(r.serving_rows);
  for (;;) {
    // The unchecked rows among the first `want`, checked at once. A row checked here stays among the first `want`
    // whatever the others' checks do (a row that misses moves down or leaves), so this checks the rows checking one
    // at a time and re-ranking would; outcomes are applied in rank order, as that would.
    const std::size_t top = std::min(want, res.rows.size());
    std::vector<std::size_t> todo;
    for (std::size_t i = 0; i < top; ++i)
      if (!res.rows[i].serving) todo.push_back(i);
    if (todo.empty()) break;
    std::vector<ServeOutcome> outcomes(todo.size());
    // A row that misses brings the next one in: the total grows by each round's rows.
    if (r.progress) {
      r.progress->set_label("plan: serving checks");
      r.progress->add_to_total(static_cast<std::int64_t>(todo.size()));
    }
    for_each_parallel(todo.size(), [&](std::size_t k) {
      outcomes[k] = serve_row(row_request(r, res.rows[todo[k]]), db, window_kind, res.rows[todo[k]]);
      if (r.progress) r.progress->advance();
    });
    std::vector<std::size_t> missed;
    for (std::size_t k = 0; k < todo.size(); ++k) {
      const ServeOutcome& o = outcomes[k];
      res.serving_simulations += o.simulations;
      if (o.kept) continue;
      ++res.rejected[static_cast<std::size_t>(o.slo.why)];
      ++res.serving_rejected;
      if (o.slo.worst < miss_ratio(res.closest)) {
        res.closest.row = res.rows[todo[k]];
        set_closest(res.closest, o.slo);
      }
      missed.push_back(todo[k]);
    }
    for (auto it = missed.rbegin(); it != missed.rend(); ++it) res.rows.erase(res.rows.begin() + static_cast<std::ptrdiff_t>(*it));
    rank_rows(res, r);
  }
}

simulator::Hardware engine_hardware(simulator::Hardware hw, const PlanRequest& r) {
  if (r.engine) hw.eff = simulator::engine_efficiency(hw.eff, *r.engine, hw);
  // The engine's measured kernel curves for this GPU, as simulate --gpu-profile auto takes them (generic: TensorRT-LLM's).
  if (!hw.host && r.gpu_profiles)
    hw.gpu_profile = simulator::shipped_gpu_profile(data_dir(), hw.name, r.engine && !r.engine->generic() ? r.engine->name : "trtllm");
  return hw;
}

bool engine_loads(const PlanRequest& r, const model::Precision& p) {
  return !r.engine || r.engine->loads(p.format ? p.format->name : "bf16");
}

bool engine_runs_layout(const PlanRequest& r, const model::ParallelLayout& l, const gpu_db::GpuSpec& gpu) {
  if (!r.engine) return true;
  if (!r.engine->expert_parallel && (l.ep > 1 || l.dp > 1)) return false;
  if (!r.engine->multi_node && l.gpus() > gpu.gpus_per_node) return false;
  return true;
}

std::int64_t sweep_units(const PlanRequest& r) { return r.host ? 0 : static_cast<std::int64_t>(r.gpus.size()); }

namespace {

// One sweep of plan_engines: an engine on the GPUs it runs on, with one KV dtype and the precisions that use it.
struct EngineSweep {
  PlanRequest request;
  const gpu_db::EngineSpec* engine = nullptr;
};

std::vector<EngineSweep> engine_sweeps(const PlanRequest& r) {
  std::vector<EngineSweep> out;
  for (const gpu_db::EngineSpec* e : r.engines) {
    PlanRequest sub = r;
    sub.engines.clear();
    sub.engine = e;
    sub.serving_rows = 0;  // the serving check runs once, on the merged ranking
    if (r.host) {
      if (!e->hosts) continue;
    } else {
      sub.gpus.clear();
      for (const gpu_db::GpuSpec* g : r.gpus)
        if (e->runs_on(*g) && (!r.vendor_defaults || &r.vendor_defaults->vendor_default(*g) == e)) sub.gpus.push_back(g);
      if (sub.gpus.empty()) continue;
    }
    if (r.engine_max_batch) sub.max_batch = e->max_batch;
    if (r.engine_max_num_batched_tokens) sub.max_num_batched_tokens = e->max_num_batched_tokens;
    // The engine's KV dtype follows the checkpoint (FP8 KV for ModelOpt FP8/NVFP4 on TensorRT-LLM): one sweep per
    // KV dtype over the precisions that use it.
    std::map<model::KvDtype, std::vector<std::string>> by_kv;
    if (r.engine_kv_dtype) {
      if (!r.model || !r.precisions) throw std::logic_error("plan: no model");
      for (const auto& spec : r.precision_specs)
        by_kv[simulator::engine_kv_dtype(*e, model::resolve_precision(spec, *r.model, *r.precisions))].push_back(spec);
    } else {
      by_kv[r.kv_dtype] = r.precision_specs;
    }
    for (const auto& [kv, specs] : by_kv) {
      sub.kv_dtype = kv;
      sub.precision_specs = specs;
      out.push_back({sub, e});
    }
  }
  return out;
}

// Adds one engine sweep's rows, counts, closest miss and notes to the merged result.
void merge_sweep(PlanResult& out, PlanResult part, const EngineSweep& s) {
  for (auto& row : part.rows) {
    row.engine = s.engine;
    row.kv_dtype = model::kv_dtype_name(s.request.kv_dtype);
    out.rows.push_back(std::move(row));
  }
  for (std::size_t i = 0; i < out.rejected.size(); ++i) out.rejected[i] += part.rejected[i];
  out.configurations += part.configurations;
  out.operating_points += part.operating_points;
  if (part.closest.row) {
    part.closest.row->engine = s.engine;
    if (miss_ratio(part.closest) < miss_ratio(out.closest)) out.closest = std::move(part.closest);
  }
  for (auto& n : part.notes)
    if (std::find(out.notes.begin(), out.notes.end(), n) == out.notes.end()) out.notes.push_back(std::move(n));
}

}  // namespace

PlanResult plan_engines(const PlanRequest& r, const gpu_db::Database& db, PlanFunction core) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<EngineSweep> sweeps = engine_sweeps(r);
  if (sweeps.empty()) throw InputError("no selected engine runs on the selected GPUs (data/engines.yaml lists where each runs)");
  if (r.progress)
    for (const EngineSweep& s : sweeps) r.progress->add_to_total(sweep_units(s.request));
  // The engine sweeps are independent: they run at once, and merge in their order (the result does not depend on
  // which finished first).
  std::vector<PlanResult> parts(sweeps.size());
  for_each_parallel(sweeps.size(), [&](std::size_t i) { parts[i] = core(sweeps[i].request, db); });
  PlanResult out;
  for (std::size_t i = 0; i < sweeps.size(); ++i) merge_sweep(out, std::move(parts[i]), sweeps[i]);
  for (auto& row : out.rows) row.pareto = false;
  if (r.host) rank_rows(out, r);
  else check_serving(out, r, db, check_request(r).window_kind);  // ranks, then checks the best rows of all engines
  out.sweep_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}


}  // namespace moeplan::planner::detail

namespace moeplan::planner {

simulator::SimulateRequest row_simulate_request(const PlanRequest& r, const gpu_db::Database& db, const PlanRow& row) {
  const PlanRequest e = detail::row_request(r, row);
  simulator::SimulateRequest q = detail::serving_request(e, db, row);
  q.limits.max_batch = row.batch;
  q.workload.concurrency = row.batch * row.layout.dp;
  q.workload.num_requests = q.workload.concurrency * e.serving_requests_per_slot;
  return q;
}

}  // namespace moeplan::planner
