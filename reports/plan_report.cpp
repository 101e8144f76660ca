// reports/plan_report: `moeplan plan` and `moeplan compare-api` as tables and JSON (fields in README "JSON").
#include <algorithm>

#include "common/text.hpp"
#include "planner/cost.hpp"
#include "reports/plan_report.hpp"
#include "reports/result_charts.hpp"

namespace moeplan::reports {

using nlohmann::json;

namespace {

constexpr std::size_t kChartRows = 100;  // ranked rows the cost/speed chart plots (plus every Pareto row)

std::string money(double usd) { return usd >= 100 ? format_fixed(usd, 0) : usd >= 1 ? format_fixed(usd, 2) : format_fixed(usd, 3); }
// Tokens/s with the digits a CPU host's single-digit rates need and a GPU's thousands do not.
std::string rate(double v) { return format_fixed(v, v < 10 ? 2 : v < 100 ? 1 : 0); }

// "1 node, nvlink4" or "16 nodes, pcie5 + 2x ib-ndr400": where the GPUs sit and the links between them.
std::string links_text(const planner::PlanRow& r) {
  if (r.nodes <= 1) return "1 node" + (r.intra_link.empty() ? std::string() : ", " + r.intra_link);
  return std::to_string(r.nodes) + " nodes, " + (r.gpus_per_node > 1 ? r.intra_link + " + " : std::string()) +
         std::to_string(r.nics_per_node) + "x " + r.inter_link;
}

// The network's share of $/hour: "-" on one node, "in price" where the GPU price source includes it.
std::string network_text(const planner::PlanRow& r) {
  if (r.nodes <= 1) return "-";
  if (r.network_in_price) return "in price";
  return money(r.network_usd_per_hour);
}

void drop_column(Table& t, const std::string& name) {
  const auto it = std::find(t.columns.begin(), t.columns.end(), name);
  if (it == t.columns.end()) return;
  const auto i = it - t.columns.begin();
  t.columns.erase(it);
  t.right_align.erase(t.right_align.begin() + i);
  for (auto& row : t.rows) row.erase(row.begin() + i);
}

constexpr const char* kErrorBarMethod =
    "times x (1 + q05 .. 1 + q95) of the profile's held-out (measured - predicted) / predicted; TTFT from prefill, "
    "the rest from decode; rates divide by those factors";

json row_json(const planner::PlanRow& r) {
  json j = {{"gpu", r.gpu->name}, {"count", r.count}, {"precision", r.precision}, {"weight_only", r.weight_only},
          {"tp", r.layout.tp}, {"ep", r.layout.ep}, {"pp", r.layout.pp}, {"dp", r.layout.dp}, {"batch", r.batch},
          {"kv_limited_batch", r.kv_limited_batch},
          {"nodes", r.nodes}, {"gpus_per_node", r.gpus_per_node}, {"nics_per_node", r.nics_per_node},
          {"intra_link", r.intra_link}, {"inter_link", r.nodes > 1 ? json(r.inter_link) : json(nullptr)},
          {"links", links_text(r)},
          {"usd_per_gpu_hour", r.usd_per_gpu_hour}, {"price_source", r.price_source},
          {"price_confidence", r.price_confidence}, {"price_flags", r.price_flags},
          {"network_usd_per_hour", r.network_usd_per_hour}, {"network_in_price", r.network_in_price},
          {"usd_per_hour", r.usd_per_hour}, {"usd_per_month", r.usd_per_month},
          {"usd_per_m_input_tokens", r.usd_per_m_input_tokens}, {"usd_per_m_output_tokens", r.usd_per_m_output_tokens},
          {"usd_per_m_blended_tokens", r.usd_per_m_blended_tokens},
          {"usd_per_1000_requests", {{"short_500", r.usd_per_1000_requests[0]}, {"medium_2000", r.usd_per_1000_requests[1]},
                                     {"long_8000", r.usd_per_1000_requests[2]}}},
          {"output_tokens_per_s", r.output_tokens_per_s}, {"output_tokens_per_s_per_user", r.output_tokens_per_s_per_user},
          {"ttft_ms", r.ttft_ms}, {"tpot_ms", r.tpot_ms}, {"vram_used_bytes_per_gpu", r.vram_used_bytes_per_gpu},
          {"prefill_time_share", r.prefill_time_share}, {"pareto", r.pareto},
          {"output_tokens_per_s_batch1", r.output_tokens_per_s_batch1},
          {"usd_per_m_output_tokens_batch1", r.usd_per_m_output_tokens_batch1},
          {"beyond_validated", r.beyond_validated}};
  j["simulated"] = r.serving.has_value();
  if (r.serving) {
    const auto& c = *r.serving;
    j["serving"] = {{"concurrency", c.concurrency}, {"num_requests", c.num_requests},
                    {"ttft_ms", {{"p50", c.ttft_ms_p50}, {"p90", c.ttft_ms_p90}, {"p99", c.ttft_ms_p99}}},
                    {"tpot_ms", {{"p50", c.tpot_ms_p50}, {"p90", c.tpot_ms_p90}, {"p99", c.tpot_ms_p99}}},
                    {"output_tokens_per_s", c.output_tokens_per_s},
                    {"steady_ttft_ms", c.steady_ttft_ms}, {"steady_tpot_ms", c.steady_tpot_ms},
                    {"steady_output_tokens_per_s", c.steady_output_tokens_per_s}, {"formula_batch", c.formula_batch},
                    {"simulate_command", c.simulate_command}};
  }
  if (r.engine) {
    j["engine"] = r.engine->name;
    j["engine_version"] = r.engine->generic() ? "" : r.engine->versions;
    j["kv_dtype"] = r.kv_dtype;
  }
  if (r.error_bars) {
    const auto& e = *r.error_bars;
    auto pair = [](const planner::Interval& i) { return json::array({i.low, i.high}); };
    j["error_bars"] = {{"ttft_ms", pair(e.ttft_ms)}, {"tpot_ms", pair(e.tpot_ms)},
                       {"output_tokens_per_s", pair(e.output_tokens_per_s)},
                       {"output_tokens_per_s_per_user", pair(e.output_tokens_per_s_per_user)},
                       {"usd_per_m_output_tokens", pair(e.usd_per_m_output_tokens)},
                       {"usd_per_m_blended_tokens", pair(e.usd_per_m_blended_tokens)},
                       {"decode_residuals_n", e.decode_n}, {"prefill_residuals_n", e.prefill_n},
                       {"method", kErrorBarMethod}};
  }
  return j;
}

// The serving check runs for GPU plans; a host plan keeps the steady-state formula (docs/planner.md).
bool checked(const planner::PlanRequest& q) { return !q.host && q.serving_rows > 0; }
// "p90 " when TTFT and TPOT are the serving loop's percentile, "" for the formula.
std::string pct(const planner::PlanRequest& q) { return checked(q) ? "p" + std::to_string(q.slo_percentile) + " " : ""; }

std::string workload_line(const planner::PlanRequest& q) {
  std::string s = with_commas(q.input_tokens) + " in / " + with_commas(q.output_tokens) + " out tokens";
  std::vector<std::string> slo;
  if (q.ttft_ms > 0) slo.push_back("TTFT " + pct(q) + "<= " + format_fixed(q.ttft_ms, 0) + " ms");
  if (q.tpot_ms > 0) slo.push_back("TPOT " + pct(q) + "<= " + format_fixed(q.tpot_ms, 1) + " ms");
  if (q.min_tokens_per_s_per_user > 0) slo.push_back(">= " + format_fixed(q.min_tokens_per_s_per_user, 1) + " tok/s per user");
  if (q.budget_usd_per_month > 0) slo.push_back("<= $" + with_commas(static_cast<std::int64_t>(q.budget_usd_per_month)) + "/month");
  if (q.budget_usd_per_hour > 0) slo.push_back("<= $" + format_fixed(q.budget_usd_per_hour, 2) + "/hour");
  s += "; " + (slo.empty() ? std::string("no SLO") : join(slo, ", "));
  return s;
}

// The request's price choice with --gpu-price USD (every GPU) folded in.
planner::PriceChoice every_gpu_priced(const planner::PlanRequest& q) {
  planner::PriceChoice c = q.prices;
  if (q.gpu_price_usd_per_hour > 0) c.usd_per_gpu_hour_all = q.gpu_price_usd_per_hour;
  return c;
}

// The plan row's price mark: the confidence of the price row used ("given": --gpu-price), "!" when it is flagged.
std::string price_mark(const planner::PlanRow& r) { return r.price_confidence + (r.price_flags.empty() ? "" : "!"); }

}  // namespace

namespace {

// Whole dollars with thousands separators from $100 up (monthly bills), else as money().
std::string dollars(double usd) { return usd >= 100 ? with_commas(static_cast<std::int64_t>(std::llround(usd))) : money(usd); }

// The monthly bills at --tokens-per-month and the rule the self-hosted one follows (docs/planner.md "Cost").
std::string monthly_bill_text(const planner::PlanRow& self, const planner::ApiComparison& c) {
  const auto& api = c.reference_offer();
  return "$/month at " + format_fixed(c.tokens_per_month / 1e9, 2) + " B tokens/month (--tokens-per-month): an API bills " +
         "volume x $/M blend (the reference API, " + api.price.provider + ": $" + dollars(api.usd_per_month) +
         "); self-hosted needs " +
         with_commas(static_cast<std::int64_t>(std::llround(c.month.gpu_hours_needed))) + " GPU-hours at the row's " +
         "throughput, but its " + std::to_string(self.count) + " GPUs are rented by the month (730 h), so it pays whole " +
         "replicas, at least one: " + std::to_string(c.month.replicas) + " x $" + dollars(self.usd_per_month) + " = $" +
         dollars(c.month.usd) + " for " + with_commas(static_cast<std::int64_t>(std::llround(c.month.gpu_hours_billed))) +
         " GPU-hours";
}

// The header lines: workload, ranking, operating point, engines, network and the GPU price rule.
std::vector<std::string> plan_header(const planner::PlanRequest& q) {
  std::vector<std::string> header = {
      "plan: " + q.model->name + "; " + workload_line(q),
      "ranked by " + std::string(planner::objective_name(q.objective)) + "; utilization " +
          format_fixed(100.0 * q.utilization, 0) + " % of hours at the operating point" +
          (q.utilization >= 1 ? " (the default; --utilization changes it)" : "")};
  if (checked(q))
    header.push_back("operating point: a closed loop of batch x dp requests in flight (simulate --concurrency), " +
                     std::to_string(q.serving_requests_per_slot) + "x that many requests; TTFT and TPOT are p" +
                     std::to_string(q.slo_percentile) + " of simulate's serving loop, queueing included (--slo-percentile)");
  else
    header.push_back("operating point: steady state, every slot busy; TTFT and TPOT from the step formula, no queueing");
  const bool engines = !q.engines.empty();
  if (engines) {
    std::vector<std::string> names;
    for (const auto* e : q.engines) names.push_back(e->name + " " + e->versions.substr(0, e->versions.find(" (")));
    header.push_back("engines evaluated: " + join(names, ", ") +
                     (q.vendor_defaults ? ", each GPU with its vendor's default (NVIDIA trtllm, AMD/Intel vllm)"
                                        : ", each on the GPUs it runs on") +
                     " (--engine X for one, generic for the plain roofline)");
  } else if (!q.host) {
    header.push_back("engine: generic (the plain roofline; --engine auto plans every serving engine)");
  }
  if (!q.host) {
    const std::string port_price = q.network_usd_per_port_hour >= 0
                                       ? "$" + money(q.network_usd_per_port_hour) +
                                             (q.network_price_source.empty() ? "" : " (" + q.network_price_source + ")")
                                       : std::string("data/network.yaml's port price");
    header.push_back("network: --internode " + (q.internode_link.empty() ? std::string("infiniband-ndr") : q.internode_link) +
                     ", " + (q.nics_per_node > 0 ? std::to_string(q.nics_per_node) + " NIC ports per node (--nics-per-node)"
                                                 : std::string("NIC ports per node from data/network.yaml (one per GPU on "
                                                               "SXM/OAM boards, one per 2 GPUs in PCIe servers; --nics-per-node)")) +
                     "; a multi-node row pays " + port_price + " per port-hour unless its price source includes the network");
    header.push_back(planner::price_rule_text(every_gpu_priced(q)));
  }
  return header;
}

// The rows' table (the first `top`) and every row's JSON (`rows`). `api_blend`: the cheapest API's blended $/M for
// the "vs API" column (0: none).
Table rows_table(const planner::PlanRequest& q, const planner::PlanResult& res, double api_blend, int top, json& rows) {
  const bool engines = !q.engines.empty();
  rows = json::array();
  Table t;
  t.columns = {"#", "GPUs", "precision", "layout", "nodes, links", "batch", "tok/s", "tok/s/user", "TTFT " + pct(q) + "ms",
               "TPOT " + pct(q) + "ms", "$/hour", "$/month", "net $/h",
               "$/M in", "$/M out", "$/M blend", "vs API", "price", "pareto", "beyond validated"};
  t.right_align = {true, false, false, false, false, true, true, true, true, true, true, true, true, true, true, true, true,
                   false, false, false};
  if (engines) {
    t.columns.insert(t.columns.begin() + 2, "engine");
    t.right_align.insert(t.right_align.begin() + 2, false);
  }
  for (std::size_t i = 0; i < res.rows.size(); ++i) {
    const auto& r = res.rows[i];
    rows.push_back(row_json(r));
    if (api_blend > 0) rows.back()["vs_cheapest_api"] = r.usd_per_m_blended_tokens / api_blend;
    if (static_cast<int>(i) >= top) continue;
    t.rows.push_back({std::to_string(i + 1), std::to_string(r.count) + "x " + r.gpu->name,
                      r.precision + (r.weight_only ? " (w-only)" : ""), layout_text(r.layout), links_text(r),
                      with_commas(r.batch), rate(r.output_tokens_per_s), format_fixed(r.output_tokens_per_s_per_user, 1),
                      format_fixed(r.ttft_ms, 0), format_fixed(r.tpot_ms, 1), money(r.usd_per_hour), dollars(r.usd_per_month), network_text(r),
                      money(r.usd_per_m_input_tokens), money(r.usd_per_m_output_tokens), money(r.usd_per_m_blended_tokens),
                      api_blend > 0 ? format_fixed(r.usd_per_m_blended_tokens / api_blend, 2) + "x" : "-", price_mark(r),
                      r.pareto ? "*" : "",
                      join(r.beyond_validated, ", ")});
    if (engines) t.rows.back().insert(t.rows.back().begin() + 2, r.engine ? r.engine->name : "generic");
  }
  // A host is one machine: no nodes, network or published range to show.
  if (q.host)
    for (const char* name : {"nodes, links", "net $/h", "beyond validated"}) drop_column(t, name);
  return t;
}

// Notes on the shown rows: the network a multi-node row pays, and what "beyond validated" means.
void shown_rows_notes(const planner::PlanRequest& q, const planner::PlanResult& res, int top, bool verbose, Report& rep) {
  const std::size_t shown = std::min(res.rows.size(), static_cast<std::size_t>(std::max(0, top)));
  bool paid_network = false, flagged = false;
  for (std::size_t i = 0; i < shown; ++i) {
    paid_network = paid_network || res.rows[i].network_usd_per_hour > 0;
    flagged = flagged || !res.rows[i].beyond_validated.empty();
  }
  if (paid_network)
    rep.notes.push_back("net $/h: the scale-out network of a multi-node row, nodes x NIC ports x the port price, included in "
                        "$/hour and $/M (\"in price\": the GPU price source includes it; docs/planner.md \"Cost\")");
  if (q.validated && (flagged || verbose)) {
    const auto& v = *q.validated;
    rep.notes.push_back("beyond validated: outside what data/validation/public_points.yaml covers (at most " +
                        std::to_string(v.max_gpus) + " GPUs in a row; EP " +
                        (v.max_ep_pcie > 0 ? "up to " + std::to_string(v.max_ep_pcie) : std::string("never")) +
                        " on PCIe-only cards; rows for " + join(v.gpus, ", ") +
                        "): such rows extrapolate the model (docs/validation.md)");
  }
}

// Error bars (a measured host): the shown rows' intervals from the profile's held-out residuals.
void add_error_bars_table(const planner::PlanResult& res, int top, Report& rep) {
  if (res.rows.empty() || !res.rows.front().error_bars) return;
  const auto& e0 = *res.rows.front().error_bars;
  Table eb;
  eb.title = "error bars: 5th-95th percentile of the profile's held-out residuals (decode n=" + std::to_string(e0.decode_n) +
             ", prefill n=" + std::to_string(e0.prefill_n) + "; docs/validation.md)";
  eb.columns = {"#", "tok/s", "tok/s/user", "TTFT ms", "TPOT ms", "$/M out", "$/M blend"};
  eb.right_align = {true, true, true, true, true, true, true};
  auto range = [](const planner::Interval& i, int digits) { return format_fixed(i.low, digits) + " - " + format_fixed(i.high, digits); };
  auto money_range = [](const planner::Interval& i) { return money(i.low) + " - " + money(i.high); };
  for (std::size_t i = 0; i < res.rows.size() && static_cast<int>(i) < top; ++i) {
    if (!res.rows[i].error_bars) continue;
    const auto& e = *res.rows[i].error_bars;
    eb.rows.push_back({std::to_string(i + 1), range(e.output_tokens_per_s, 1), range(e.output_tokens_per_s_per_user, 2),
                       range(e.ttft_ms, 0), range(e.tpot_ms, 1), money_range(e.usd_per_m_output_tokens),
                       money_range(e.usd_per_m_blended_tokens)});
  }
  rep.tables.push_back(std::move(eb));
}

// The rejections by reason (also into `rejected`, JSON) and what the serving check ran.
void rejection_notes(const planner::PlanRequest& q, const planner::PlanResult& res, json& rejected, Report& rep) {
  std::vector<std::string> removed;
  rejected = json::object();
  for (int i = 0; i < planner::kRejectCount; ++i) {
    const auto n = res.rejected[static_cast<std::size_t>(i)];
    rejected[planner::reject_name(static_cast<planner::Reject>(i))] = n;
    if (n > 0) removed.push_back(with_commas(n) + " " + planner::reject_name(static_cast<planner::Reject>(i)));
  }
  rep.notes.push_back(with_commas(static_cast<std::int64_t>(res.rows.size())) + " configurations meet the constraints" +
                      (removed.empty() ? "" : "; removed: " + join(removed, ", ")));
  if (checked(q) && !res.rows.empty()) {
    std::int64_t simulated = 0, leading = 0, stepped = 0;
    for (const auto& r : res.rows) {
      simulated += r.serving ? 1 : 0;
      stepped += r.serving && r.serving->formula_batch != r.batch ? 1 : 0;
    }
    while (leading < static_cast<std::int64_t>(res.rows.size()) && res.rows[static_cast<std::size_t>(leading)].serving) ++leading;
    rep.notes.push_back("serving check: the first " + with_commas(leading) + " rows" +
                        (simulated > leading ? " and " + with_commas(simulated - leading) + " that fell below them" : "") +
                        " ran in simulate's serving loop (" + with_commas(res.serving_simulations) + " runs; " +
                        with_commas(stepped) + " stepped down to a smaller batch, " + with_commas(res.serving_rejected) +
                        " removed); the other rows are the steady-state formula's, without queueing (JSON \"simulated\": false)");
  }
}

// Without rows: the closest configuration and the constraint it misses. With rows: how to reproduce #1, its cost
// split, its batch-1 price, the API comparison, the launch commands and its GPU price.
void best_row_notes(const planner::PlanRequest& q, const planner::PlanResult& res, const std::vector<planner::LaunchCommand>& launch,
                    const std::optional<planner::ApiComparison>& api, Report& rep) {
  if (res.rows.empty()) {
    std::string why = "no configuration meets the constraints";
    if (res.closest.row) {
      const auto& c = *res.closest.row;
      why += "; closest: " + std::to_string(c.count) + "x " + c.gpu->name + (c.engine ? " on " + c.engine->name : "") + " " +
             c.precision + " " + layout_text(c.layout) +
             " at batch " + std::to_string(c.batch) + " misses " + res.closest.constraint + " " +
             format_fixed(res.closest.limit, 1) + " with " + format_fixed(res.closest.value, 1);
    }
    rep.notes.push_back(why);
  } else {
    const auto& b = res.rows.front();
    if (b.serving)
      rep.notes.push_back("#1 reproduced by: " + b.serving->simulate_command + "   # TTFT/TPOT p" +
                          std::to_string(q.slo_percentile) + ", output tok/s; steady state without queueing: TTFT " +
                          format_fixed(b.serving->steady_ttft_ms, 0) + " ms, TPOT " +
                          format_fixed(b.serving->steady_tpot_ms, 1) + " ms");
    rep.notes.push_back("$/M in and $/M out split the GPU time by the prefill share of each step (" +
                        format_fixed(100.0 * b.prefill_time_share, 0) + " % for #1); $/M blend is GPU cost / all tokens; per 1000 requests of 500 / 2000 / 8000 tokens at #1: $" +
                        money(b.usd_per_1000_requests[0]) + " / $" + money(b.usd_per_1000_requests[1]) + " / $" +
                        money(b.usd_per_1000_requests[2]));
    rep.notes.push_back("#1 at batch 1 (one user at a time, as per-GPU calculators quote): " +
                        rate(b.output_tokens_per_s_batch1) + " tok/s = $" + money(b.usd_per_m_output_tokens_batch1) +
                        "/M output tokens; batched at " + with_commas(b.batch) + " per group: $" +
                        money(b.usd_per_m_output_tokens) + "/M (docs/planner.md)");
    if (api) {
      const auto& c = api->reference_offer();
      const bool trusted = c.price.flags.empty() && c.price.confidence != gpu_db::Confidence::low;
      rep.notes.push_back(std::string(trusted ? "cheapest API of confidence medium or high" : "cheapest API (none is of "
                                                "confidence medium or high)") + " for " + q.model->name + ": " +
                          c.price.provider + " $" + money(c.usd_per_m_blended) +
                          "/M blended (" + c.price.date + ", " + gpu_db::confidence_name(c.price.confidence) +
                          "); #1 self-hosted $" + money(b.usd_per_m_blended_tokens) +
                          "/M; break-even at " + format_fixed(api->breakeven_tokens_per_month / 1e9, 2) +
                          " B tokens/month = " + format_fixed(100.0 * api->breakeven_utilization, 0) +
                          " % of #1's capacity (moeplan compare-api)");
      if (api->tokens_per_month > 0) rep.notes.push_back("#1 " + monthly_bill_text(b, *api));
    }
    for (const auto& l : launch) {
      const std::string who = (l.row > 0 ? "#" + std::to_string(l.row) + " " : std::string()) + l.engine;
      rep.notes.push_back(who + (l.other_nodes.empty() ? ": " : ", node 0: ") + l.command +
                          (l.note.empty() ? "" : "   # " + l.note));
      if (!l.other_nodes.empty()) rep.notes.push_back(who + ", node i = 1, 2, ...: " + l.other_nodes);
    }
    rep.notes.push_back("#1's GPU price: $" + money(b.usd_per_gpu_hour) + " per GPU-hour, " + b.price_source + ", confidence " +
                        b.price_confidence + (b.price_flags.empty() ? "" : ", flagged: " + join(b.price_flags, "; ")) +
                        " (moeplan plan --gpu-price " + b.gpu->name + "=USD or --price-source/--exclude-provider change it)");
  }
}

json plan_json(const planner::PlanRequest& q, const planner::PlanResult& res, const std::vector<planner::LaunchCommand>& launch,
               json rows, json rejected) {
  json out = {{"model", q.model->name},
              {"input_tokens", q.input_tokens},
              {"output_tokens", q.output_tokens},
              {"objective", planner::objective_name(q.objective)},
              {"utilization", q.utilization},
              {"slo_percentile", q.slo_percentile},
              {"operating_point", checked(q) ? "closed loop of batch x dp requests in flight; TTFT/TPOT at slo_percentile "
                                               "of simulate's serving loop for rows with \"simulated\": true"
                                             : "steady state, every slot busy; no queueing"},
              {"engines", [&] {
                 json a = json::array();
                 for (const auto* e : q.engines) a.push_back(e->name);
                 return a;
               }()},
              {"configurations", std::move(rows)},
              {"rejected", std::move(rejected)},
              {"configurations_evaluated", res.configurations},
              {"operating_points_evaluated", res.operating_points},
              {"sweep_seconds", res.sweep_seconds}};
  if (!q.host) out["gpu_price_rule"] = planner::price_rule_text(every_gpu_priced(q));
  if (!q.host)
    out["network"] = {{"internode", q.internode_link.empty() ? std::string("infiniband-ndr") : q.internode_link},
                      {"nics_per_node", q.nics_per_node > 0 ? json(q.nics_per_node) : json("data/network.yaml")},
                      {"usd_per_port_hour", q.network_usd_per_port_hour >= 0 ? json(q.network_usd_per_port_hour) : json(nullptr)},
                      {"price_source", q.network_price_source}};
  if (q.validated)
    out["validated_range"] = {{"max_gpus", q.validated->max_gpus}, {"max_ep_on_pcie", q.validated->max_ep_pcie},
                              {"gpus", q.validated->gpus}, {"file", "data/validation/public_points.yaml"}};
  if (res.rows.empty() && res.closest.row) {
    out["closest"] = row_json(*res.closest.row);
    out["closest"]["missed"] = res.closest.constraint;
  }
  if (!launch.empty()) {
    out["launch"] = json::array();
    for (const auto& l : launch) {
      out["launch"].push_back({{"engine", l.engine}, {"command", l.command}, {"note", l.note}});
      if (!l.other_nodes.empty()) out["launch"].back()["other_nodes_command"] = l.other_nodes;
      if (l.row > 0) out["launch"].back()["row"] = l.row;
    }
  }
  return out;
}

}  // namespace

Report plan_report(const planner::PlanRequest& q, const planner::PlanResult& res,
                   const std::vector<planner::LaunchCommand>& launch, const std::optional<planner::ApiComparison>& api,
                   int top, bool verbose) {
  Report rep;
  rep.header = plan_header(q);
  // "vs API": the row's blended $/M over the cheapest API's for this model and workload (< 1: self-hosting is cheaper).
  const double api_blend = api ? api->reference_offer().usd_per_m_blended : 0;
  json rows, rejected;
  rep.tables.push_back(rows_table(q, res, api_blend, top, rows));
  shown_rows_notes(q, res, top, verbose, rep);
  add_error_bars_table(res, top, rep);
  rejection_notes(q, res, rejected, rep);
  best_row_notes(q, res, launch, api, rep);
  if (q.host)
    rep.notes.push_back("host " + q.host->device.name + " priced from " + q.host->hardware.name +
                        ": layouts are in-process ranks on that host, $/hour is --gpu-price per host-hour, memory per rank "
                        "is its share of RAM with an fp32 KV cache as the CPU executor keeps it");
  rep.notes.insert(rep.notes.end(), res.notes.begin(), res.notes.end());
  if (verbose)
    rep.notes.push_back("evaluated " + with_commas(res.configurations) + " configurations and " +
                        with_commas(res.operating_points) + " operating points in " + format_fixed(res.sweep_seconds, 3) + " s" +
                        (res.serving_simulations > 0 ? " (with the serving check's " + with_commas(res.serving_simulations) + " runs)" : ""));
  rep.json = plan_json(q, res, launch, std::move(rows), std::move(rejected));
  // The chart plots more rows than the table shows, so the front and the shown rows sit among their neighbours.
  if (!res.rows.empty())
    rep.charts.push_back(cost_speed_chart(res, kChartRows, static_cast<std::size_t>(std::max(top, 0)),
                                          "moeplan plan --model " + q.model->name + "; GPU prices data/prices/gpu_hourly.yaml"));
  return rep;
}

Report compare_api_report(const planner::PlanRequest& q, const planner::PlanRow& self, const planner::ApiComparison& c) {
  Report rep;
  rep.header = {"compare-api: " + q.model->name + "; " + workload_line(q),
                "self-hosted: " + std::to_string(self.count) + "x " + self.gpu->name + " " + self.precision + " " +
                    (self.engine ? "on " + self.engine->name + " " : std::string()) +
                    layout_text(self.layout) + " at batch " + with_commas(self.batch) + ", $" + money(self.usd_per_hour) +
                    "/hour, utilization " + format_fixed(100.0 * q.utilization, 0) + " %"};
  Table t;
  const bool monthly = c.tokens_per_month > 0;
  t.columns = {"provider", "variant", "$/M in", "$/M out", "$/M blend", "$/1000 req", "date", "confidence", "vs self-hosted"};
  t.right_align = {false, false, true, true, true, true, false, false, true};
  if (monthly) {
    t.columns.insert(t.columns.begin() + 6, "$/month");
    t.right_align.insert(t.right_align.begin() + 6, true);
  }
  json offers = json::array();
  bool flagged = false;
  for (std::size_t i = 0; i < c.offers.size(); ++i) {
    const auto& o = c.offers[i];
    // "low!": flagged by the loader (e.g. input above output); "*": the offer the break-even uses.
    const std::string mark = std::string(gpu_db::confidence_name(o.price.confidence)) + (o.price.flags.empty() ? "" : "!") +
                             (i == c.reference ? " *" : "");
    flagged = flagged || !o.price.flags.empty();
    t.rows.push_back({o.price.provider, o.price.model_variant, money(o.price.usd_per_m_input_tokens),
                      money(o.price.usd_per_m_output_tokens), money(o.usd_per_m_blended), money(o.usd_per_1000_requests),
                      o.price.date, mark, format_fixed(o.usd_per_m_blended / c.self_usd_per_m_blended, 2) + "x"});
    if (monthly) t.rows.back().insert(t.rows.back().begin() + 6, dollars(o.usd_per_month));
    offers.push_back({{"provider", o.price.provider}, {"model_variant", o.price.model_variant},
                      {"usd_per_m_input_tokens", o.price.usd_per_m_input_tokens},
                      {"usd_per_m_output_tokens", o.price.usd_per_m_output_tokens},
                      {"usd_per_m_blended_tokens", o.usd_per_m_blended}, {"usd_per_1000_requests", o.usd_per_1000_requests},
                      {"usd_per_month", monthly ? json(o.usd_per_month) : json()}, {"date", o.price.date},
                      {"source", o.price.source}, {"confidence", gpu_db::confidence_name(o.price.confidence)},
                      {"flags", o.price.flags}, {"breakeven_reference", i == c.reference}});
  }
  t.rows.push_back({"self-hosted (this plan)", std::to_string(self.count) + "x " + self.gpu->name, money(self.usd_per_m_input_tokens),
                    money(self.usd_per_m_output_tokens), money(self.usd_per_m_blended_tokens),
                    money(c.self_usd_per_1000_requests), "-", self.price_confidence, "1.00x"});
  if (monthly) t.rows.back().insert(t.rows.back().begin() + 6, dollars(c.month.usd));
  rep.tables.push_back(std::move(t));
  rep.notes.push_back("$/1000 req: 1000 requests of " + with_commas(q.input_tokens) + " in + " + with_commas(q.output_tokens) +
                      " out tokens (--input, --output) at each row's $/M in and out");
  const auto& cheapest = c.reference_offer();
  rep.notes.push_back("confidence: of each price row (data/prices/api.yaml; high = the provider's own page, medium = a dated "
                      "dataset or secondary page, low = marked unreliable there)" +
                      std::string(flagged ? "; \"!\": flagged at load (input above output: likely swapped at the source)" : "") +
                      "; * = the offer the break-even uses: the cheapest of confidence medium or high without a flag");
  rep.notes.push_back("reference API: " + cheapest.price.provider + " at $" + money(cheapest.usd_per_m_blended) +
                      "/M blended for this input:output ratio" +
                      (c.reference > 0 ? " (" + c.offers.front().price.provider + " is cheaper at $" +
                                             money(c.offers.front().usd_per_m_blended) + " but of confidence " +
                                             gpu_db::confidence_name(c.offers.front().price.confidence) + ")"
                                       : std::string()));
  rep.notes.push_back("self-hosted GPU price: $" + money(self.usd_per_gpu_hour) + " per GPU-hour, " + self.price_source +
                      ", confidence " + self.price_confidence +
                      (self.price_flags.empty() ? "" : ", flagged: " + join(self.price_flags, "; ")));
  rep.notes.push_back("self-hosting rents " + std::to_string(self.count) + " GPUs for $" + dollars(c.self_usd_per_month) +
                      "/month and serves up to " +
                      format_fixed(c.self_capacity_tokens_per_month / 1e9, 2) + " B tokens/month at the operating point");
  if (c.breakeven_utilization <= 1)
    rep.notes.push_back("break-even: above " + format_fixed(c.breakeven_tokens_per_month / 1e9, 2) +
                        " B tokens/month (" + format_fixed(100.0 * c.breakeven_utilization, 0) +
                        " % of capacity) self-hosting is cheaper than the reference API");
  else
    rep.notes.push_back("break-even would need " + format_fixed(c.breakeven_tokens_per_month / 1e9, 2) +
                        " B tokens/month, " + format_fixed(c.breakeven_utilization, 1) +
                        "x what one replica serves: at these prices the reference API stays cheaper");
  if (monthly) rep.notes.push_back(monthly_bill_text(self, c));
  rep.json = {{"model", q.model->name}, {"input_tokens", q.input_tokens}, {"output_tokens", q.output_tokens},
              {"self_hosted", row_json(self)}, {"api", offers},
              {"cheapest_api", cheapest.price.provider},
              {"cheapest_api_usd_per_m_blended_tokens", cheapest.usd_per_m_blended},
              {"cheapest_api_confidence", gpu_db::confidence_name(cheapest.price.confidence)},
              {"self_usd_per_m_blended_tokens", c.self_usd_per_m_blended},
              {"self_usd_per_month", c.self_usd_per_month},
              {"self_capacity_tokens_per_month", c.self_capacity_tokens_per_month},
              {"breakeven_tokens_per_month", c.breakeven_tokens_per_month},
              {"breakeven_utilization", c.breakeven_utilization},
              {"self_usd_per_1000_requests", c.self_usd_per_1000_requests},
              {"tokens_per_month", monthly ? json(c.tokens_per_month) : json()}};
  if (monthly)
    rep.json["self_month"] = {{"usd", c.month.usd}, {"replicas", c.month.replicas}, {"gpu_hours_needed", c.month.gpu_hours_needed},
                              {"gpu_hours_billed", c.month.gpu_hours_billed}};
  rep.charts.push_back(api_price_chart(c, "self-hosted " + std::to_string(self.count) + "x " + self.gpu->name,
                                       "moeplan compare-api; API prices data/prices/api.yaml (provider, date)"));
  return rep;
}

}  // namespace moeplan::reports
