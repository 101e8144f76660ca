// reports/simulate_report: `moeplan simulate` results as tables and JSON (fields documented in README "JSON").
#include <map>

#include "common/text.hpp"
#include "reports/charts.hpp"
#include "reports/deployment_report.hpp"
#include "reports/reports.hpp"
#include "reports/result_charts.hpp"

namespace moeplan::reports {

using nlohmann::json;

namespace {

json percentiles_json(const simulator::Percentiles& p) {
  return {{"mean", p.mean}, {"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}};
}

std::vector<std::string> percentile_row(const std::string& name, const simulator::Percentiles& p) {
  return {name, format_fixed(p.mean, 2), format_fixed(p.p50, 2), format_fixed(p.p90, 2), format_fixed(p.p99, 2)};
}

// One op name's time in a step, summed over its layer classes.
struct OpRow {
  double time_s = 0, compute_s = 0, memory_s = 0, comm_s = 0;
  int layers = 0;
  bool host = false;
  simulator::Bound bound = simulator::Bound::memory;
  double bound_time = 0;
  std::string source;  // roofline / profile / extrapolated; "mixed" when its layer classes differ
};

// Per-op rows, summed over layer classes by op name, in graph order; `total_s`: the sum of all ops.
std::vector<std::pair<std::string, OpRow>> op_rows(const std::vector<simulator::OpTime>& ops, double& total_s) {
  std::vector<std::string> order;
  std::map<std::string, OpRow> rows;
  double total = 0;
  for (const auto& o : ops) {
    const std::string key = std::string(o.op.name) + (o.on_host ? " (host)" : "");
    if (!rows.count(key)) order.push_back(key);
    OpRow& r = rows[key];
    r.time_s += o.time_s;
    r.compute_s += o.compute_s;
    r.memory_s += o.memory_s;
    r.comm_s += o.comm_s;
    r.layers += o.op.repeat;
    r.host = o.on_host;
    r.source = r.source.empty() || r.source == o.source ? o.source : "mixed";
    if (o.time_s > r.bound_time) {
      r.bound_time = o.time_s;
      r.bound = o.bound;
    }
    total += o.time_s;
  }
  total_s = total;
  std::vector<std::pair<std::string, OpRow>> out;
  for (const auto& key : order) out.emplace_back(key, rows[key]);
  return out;
}

Table breakdown_table(const std::string& title, const std::vector<simulator::OpTime>& ops, double step_s) {
  double total = 0;
  const auto rows = op_rows(ops, total);
  Table t;
  t.title = title + " (" + format_fixed(step_s * 1e3, 3) + " ms per step; ops sum to " + format_fixed(total * 1e3, 3) + " ms)";
  t.columns = {"op", "x", "time us", "share", "bound", "priced", "compute us", "memory us", "comm us"};
  t.right_align = {false, true, true, true, false, false, true, true, true};
  for (const auto& [key, r] : rows) {
    t.rows.push_back({key, std::to_string(r.layers), format_fixed(r.time_s * 1e6, 1),
                      format_fixed(total > 0 ? 100.0 * r.time_s / total : 0, 1) + "%", simulator::bound_name(r.bound),
                      r.source, format_fixed(r.compute_s * 1e6, 1), format_fixed(r.memory_s * 1e6, 1), format_fixed(r.comm_s * 1e6, 1)});
  }
  return t;
}

// The same rows as bars of time per step (simulate --breakdown, --format html).
Chart breakdown_chart(const std::string& title, const std::string& source, const std::vector<simulator::OpTime>& ops) {
  double total = 0;
  std::vector<Bar> bars;
  for (const auto& [key, r] : op_rows(ops, total)) bars.push_back({key + " x" + std::to_string(r.layers), r.time_s * 1e6, false});
  return bar_chart({title, "time per step, us (all layers of the op)", "op", source}, bars);
}

json breakdown_json(const std::vector<simulator::OpTime>& ops, const model::StepValues& x) {
  json a = json::array();
  for (const auto& o : ops) {
    json j = {{"name", o.op.name},
              {"kind", model::op_kind_name(o.op.kind)},
              {"layer_class", o.op.layer_class},
              {"repeat", o.op.repeat},
              {"on_host", o.on_host},
              {"time_us", o.time_s * 1e6},
              {"compute_us", o.compute_s * 1e6},
              {"memory_us", o.memory_s * 1e6},
              {"comm_us", o.comm_s * 1e6},
              {"bound", simulator::bound_name(o.bound)},
              {"priced", o.source}};
    // Per invocation (one layer), at this step's values.
    j["flops"] = o.op.flops.at(x);
    j["weight_bytes"] = o.op.weight_bytes.at(x);
    j["act_bytes"] = o.op.act_bytes.at(x);
    j["kv_bytes"] = o.op.kv_bytes.at(x);
    j["comm_bytes"] = o.op.comm_bytes.at(x);
    if (!o.compute_dtype.empty()) j["compute_dtype"] = o.compute_dtype;
    if (!o.op.weight_format.empty()) j["weight_format"] = o.op.weight_format;
    a.push_back(std::move(j));
  }
  return a;
}

}  // namespace

Report simulate_report(const SimulateSummary& q, const simulator::SimulateResult& r) {
  const auto& s = r.serving;
  const auto& l = q.layout;
  Report rep;
  std::string load;
  switch (q.workload.mode) {
    case simulator::LoadMode::max: load = "max load (all requests queued)"; break;
    case simulator::LoadMode::closed: load = "closed loop, concurrency " + with_commas(q.workload.concurrency); break;
    case simulator::LoadMode::poisson: load = "Poisson arrivals, " + format_fixed(q.workload.request_rate_per_s, 2) + " req/s"; break;
    case simulator::LoadMode::static_batch: load = "static batches of " + with_commas(q.workload.concurrency); break;
  }
  rep.header = {"simulate: " + q.model_name + " on " + q.device + ", precision " + q.precision + ", KV " + q.kv_dtype +
                    (r.engine.empty() || r.engine == "generic" ? std::string() : ", engine " + r.engine),
                "layout tp=" + std::to_string(l.tp) + " ep=" + std::to_string(l.ep) + " pp=" + std::to_string(l.pp) +
                    " dp=" + std::to_string(l.dp) + "; " + with_commas(q.workload.input_tokens) + " in / " +
                    with_commas(q.workload.output_tokens) + " out tokens; " + load + "; " + with_commas(s.requests) + " requests"};
  if (!q.network.empty()) rep.header.push_back(q.network);
  if (!q.beyond_validated.empty())
    rep.header.push_back("beyond validated: " + join(q.beyond_validated, ", ") +
                         " (outside what data/validation/public_points.yaml covers; the prediction extrapolates)");

  Table thr;
  thr.title = "throughput";
  thr.columns = {"metric", "value"};
  thr.right_align = {false, true};
  thr.rows = {{"output tokens/s (total)", format_fixed(s.output_tokens_per_s, 0)},
              {"output tokens/s per GPU", format_fixed(s.output_tokens_per_s_per_gpu, 1)},
              {"output tokens/s per user (output / E2E)", format_fixed(s.output_tokens_per_s_per_user, 2)},
              {"decode tokens/s per user (1 / TPOT)", format_fixed(s.decode_tokens_per_s_per_user, 2)},
              {"input tokens/s", format_fixed(s.input_tokens_per_s, 0)},
              {"requests/s", format_fixed(s.requests_per_s, 3)},
              {"mean decode batch per attention group", format_fixed(s.mean_batch, 1)},
              {"KV cache holds (sequences per group)", with_commas(s.kv_limited_batch) + (s.kv_bound ? " (caps the batch)" : "")}};
  rep.tables.push_back(std::move(thr));

  Table lat;
  lat.title = "latency (ms)";
  lat.columns = {"metric", "mean", "p50", "p90", "p99"};
  lat.right_align = {false, true, true, true, true};
  lat.rows = {percentile_row("TTFT", s.ttft_ms), percentile_row("TPOT", s.tpot_ms), percentile_row("ITL", s.itl_ms),
              percentile_row("E2E", s.e2e_ms)};
  rep.tables.push_back(std::move(lat));

  // Error bars from the profile's held-out residuals: a prediction p becomes [p (1 + q05), p (1 + q95)] of its phase
  // (TPOT, ITL, E2E and throughput from decode steps; TTFT from prefill). docs/validation.md.
  json bars = nullptr;
  if (q.profile) {
    const auto& dres = q.profile->decode_residuals;
    const auto& pres = q.profile->prefill_residuals;
    if (!dres || !pres) {
      rep.notes.push_back("no error bars: profile " + q.profile->file.string() +
                          " has no held-out residuals yet (run moeplan validate --device cpu --profile " + q.profile->file.string() + ")");
    } else {
      Table eb;
      eb.title = "error bars (5th-95th percentile of the profile's held-out residuals: decode n=" + std::to_string(dres->n) +
                 ", prefill n=" + std::to_string(pres->n) + ")";
      eb.columns = {"metric", "predicted", "low", "high"};
      eb.right_align = {false, true, true, true};
      const double dlo = 1 + dres->q05, dhi = 1 + dres->q95, plo = 1 + pres->q05, phi = 1 + pres->q95;
      auto row = [&](const std::string& name, double v, double lo, double hi, int digits) {
        eb.rows.push_back({name, format_fixed(v, digits), format_fixed(v * lo, digits), format_fixed(v * hi, digits)});
        return json::array({v * lo, v * hi});
      };
      bars = json::object();
      bars["ttft_ms_mean"] = row("TTFT mean ms", s.ttft_ms.mean, plo, phi, 2);
      bars["tpot_ms_mean"] = row("TPOT mean ms", s.tpot_ms.mean, dlo, dhi, 2);
      bars["e2e_ms_mean"] = row("E2E mean ms", s.e2e_ms.mean, dlo, dhi, 2);
      bars["output_tokens_per_s"] = row("output tokens/s", s.output_tokens_per_s, 1 / dhi, 1 / dlo, 1);
      bars["method"] = "prediction x (1 + q05 .. 1 + q95) of held-out (measured - predicted) / predicted";
      rep.tables.push_back(std::move(eb));
    }
  }

  // GPU predictions: error bars from the published set's residuals for this engine (docs/simulator.md).
  std::vector<std::string> bar_notes;
  if (!q.profile && !q.published_bars.empty()) {
    using simulator::find_error_group;
    const auto* bar_thr = find_error_group(q.published_bars, "engine+phase", q.engine + "+throughput");
    const auto* dec = find_error_group(q.published_bars, "engine+phase", q.engine + "+decode");
    const auto* pre = find_error_group(q.published_bars, "engine+phase", q.engine + "+prefill");
    if (!bar_thr && !dec) {
      bar_notes.push_back("no error bars: the published set has fewer than 5 " + q.engine + " rows (moeplan validate --published)");
    } else {
      Table eb;
      eb.title = "error bars (5th-95th percentile of the published set's residuals for " + q.engine +
                 (bar_thr ? ": throughput n=" + std::to_string(bar_thr->n) : ":") + (dec ? ", decode n=" + std::to_string(dec->n) : "") +
                 (pre ? ", prefill n=" + std::to_string(pre->n) : "") + ")";
      eb.columns = {"metric", "predicted", "low", "high"};
      eb.right_align = {false, true, true, true};
      bars = json::object();
      auto rate_row = [&](const std::string& name, const char* key, double v, const simulator::ErrorGroup& g, int digits) {
        eb.rows.push_back({name, format_fixed(v, digits), format_fixed(v * (1 + g.q05), digits), format_fixed(v * (1 + g.q95), digits)});
        bars[key] = json::array({v * (1 + g.q05), v * (1 + g.q95)});
      };
      auto latency_row = [&](const std::string& name, const char* key, double v, const simulator::ErrorGroup& g) {
        eb.rows.push_back({name, format_fixed(v, 2), format_fixed(v / (1 + g.q95), 2), format_fixed(v / (1 + g.q05), 2)});
        bars[key] = json::array({v / (1 + g.q95), v / (1 + g.q05)});
      };
      const auto& tg = bar_thr ? *bar_thr : *dec;
      rate_row("output tokens/s", "output_tokens_per_s", s.output_tokens_per_s, tg, 1);
      rate_row("output tokens/s per GPU", "output_tokens_per_s_per_gpu", s.output_tokens_per_s_per_gpu, tg, 1);
      latency_row("TPOT mean ms", "tpot_ms_mean", s.tpot_ms.mean, dec ? *dec : tg);
      if (pre) latency_row("TTFT mean ms", "ttft_ms_mean", s.ttft_ms.mean, *pre);
      else bar_notes.push_back("TTFT has no error bar: fewer than 5 published " + q.engine + " prefill rows");
      bars["method"] = "published set (data/validation/error_bars.yaml), engine " + q.engine +
                       ": rates p in [p (1 + q05), p (1 + q95)], latencies l in [l / (1 + q95), l / (1 + q05)]";
      rep.tables.push_back(std::move(eb));
    }
  }

  json breakdown = json::object();
  if (!r.prefill_ops.empty() || !r.decode_ops.empty()) {
    const std::string prefill_title = "prefill step of " + with_commas(r.prefill_step_tokens) + " tokens";
    const std::string decode_title = "decode step of " + with_commas(r.decode_step_batch) + " sequences at " +
                                     with_commas(r.decode_step_context) + " tokens";
    rep.tables.push_back(breakdown_table(prefill_title, r.prefill_ops, r.prefill_step_s));
    rep.tables.push_back(breakdown_table(decode_title, r.decode_ops, r.decode_step_s));
    const std::string source = "moeplan simulate --breakdown, " + q.model_name + " on " + q.device + ", " + q.precision;
    rep.charts.push_back(breakdown_chart("per-op time: " + prefill_title, source, r.prefill_ops));
    rep.charts.push_back(breakdown_chart("per-op time: " + decode_title, source, r.decode_ops));
    breakdown["prefill"] = {{"tokens", r.prefill_step_tokens}, {"step_ms", r.prefill_step_s * 1e3},
                            {"ops", breakdown_json(r.prefill_ops, r.prefill_values)}};
    breakdown["decode"] = {{"batch", r.decode_step_batch}, {"context_tokens", r.decode_step_context},
                           {"step_ms", r.decode_step_s * 1e3},
                           {"ops", breakdown_json(r.decode_ops, r.decode_values)}};
  }
  rep.notes = r.assumptions;
  for (const auto& n : bar_notes) rep.notes.push_back(n);
  if (r.gpu_memory && r.host_memory) {
    // Offloading: the GPU and the host RAM each hold their share; neither free figure is negative.
    for (const simulator::DeviceMemory* dm : {&*r.gpu_memory, &*r.host_memory})
      rep.notes.push_back(std::string(dm == &*r.gpu_memory ? "GPU" : "host") + " memory at the peak batch (" + dm->device +
                          "): weights " + format_gb(dm->weights_bytes) + ", KV " + format_gb(dm->kv_bytes) + ", activations " +
                          format_gb(dm->activation_bytes) + ", runtime " + format_gb(dm->overhead_bytes) + ", free " +
                          format_gb(dm->free_bytes) + " of " + format_gb(dm->usable_bytes) + " usable" + (dm->fits ? "" : " (DOES NOT FIT)"));
  } else {
    rep.notes.push_back(std::string(q.host ? "memory of the host" : "memory per GPU") +
                        " at the peak batch: weights " + format_gb(r.memory.weights.total) + ", KV " + format_gb(r.memory.kv_bytes) +
                        ", free " + format_gb(std::max(0.0, r.memory.free_bytes)));
  }

  rep.json = {{"model", q.model_name},
              {"device", q.device},
              {"gpus", r.gpus},
              {"precision", q.precision},
              {"kv_dtype", q.kv_dtype},
              {"engine", r.engine},
              {"engine_version", r.engine_version},
              {"tp", l.tp}, {"ep", l.ep}, {"pp", l.pp}, {"dp", l.dp},
              {"input_tokens", q.workload.input_tokens},
              {"output_tokens", q.workload.output_tokens},
              {"load", q.workload.mode == simulator::LoadMode::max      ? "max"
                       : q.workload.mode == simulator::LoadMode::closed ? "closed"
                       : q.workload.mode == simulator::LoadMode::static_batch ? "static"
                                                                        : "poisson"},
              {"concurrency", q.workload.concurrency},
              {"request_rate_per_s", q.workload.request_rate_per_s},
              {"requests", s.requests},
              {"duration_s", s.duration_s},
              {"requests_per_s", s.requests_per_s},
              {"output_tokens_per_s", s.output_tokens_per_s},
              {"output_tokens_per_s_per_gpu", s.output_tokens_per_s_per_gpu},
              {"output_tokens_per_s_per_user", s.output_tokens_per_s_per_user},
              {"decode_tokens_per_s_per_user", s.decode_tokens_per_s_per_user},
              {"input_tokens_per_s", s.input_tokens_per_s},
              {"ttft_ms", percentiles_json(s.ttft_ms)},
              {"tpot_ms", percentiles_json(s.tpot_ms)},
              {"itl_ms", percentiles_json(s.itl_ms)},
              {"e2e_ms", percentiles_json(s.e2e_ms)},
              {"mean_batch", s.mean_batch},
              {"peak_batch", s.peak_batch},
              {"kv_limited_batch", s.kv_limited_batch},
              {"kv_bound", s.kv_bound},
              {"steps", s.steps},
              {"kv_transfer_ms", r.kv_transfer_s * 1e3},
              {"vram_used_bytes_per_gpu", r.memory.total_bytes},
              {"weights_bytes_per_gpu", r.memory.weights.total},
              {"routing", r.routing},
              {"assumptions", r.assumptions}};
  if (!q.network.empty()) rep.json["network"] = q.network;
  if (!q.host) rep.json["beyond_validated"] = q.beyond_validated;
  if (r.gpu_memory && r.host_memory) {
    auto mem_json = [](const simulator::DeviceMemory& dm) {
      return json{{"device", dm.device}, {"capacity_bytes", dm.capacity_bytes}, {"usable_bytes", dm.usable_bytes},
                  {"weights_bytes", dm.weights_bytes}, {"kv_bytes", dm.kv_bytes}, {"activation_bytes", dm.activation_bytes},
                  {"overhead_bytes", dm.overhead_bytes}, {"free_bytes", dm.free_bytes}, {"fits", dm.fits}};
    };
    rep.json["gpu_memory"] = mem_json(*r.gpu_memory);
    rep.json["host_memory"] = mem_json(*r.host_memory);
    rep.json["vram_used_bytes_per_gpu"] = r.gpu_memory->weights_bytes + r.gpu_memory->kv_bytes + r.gpu_memory->activation_bytes +
                                          r.gpu_memory->overhead_bytes;
    rep.json["weights_bytes_per_gpu"] = r.gpu_memory->weights_bytes;
  }
  if (!breakdown.empty()) rep.json["breakdown"] = breakdown;
  if (q.profile) rep.json["profile"] = q.profile->file.string();
  if (!bars.is_null()) rep.json["error_bars"] = bars;
  return rep;
}

}  // namespace moeplan::reports

namespace moeplan::reports {

Table error_groups_table(const std::vector<simulator::ErrorGroup>& groups, nlohmann::json& groups_json) {
  Table g;
  g.title = "error by group (residual quantiles in rate form: a predicted rate p lies in [p (1 + q05), p (1 + q95)] for "
            "90 % of the group's rows)";
  g.columns = {"by", "group", "rows", "median |error|", "p90 |error|", "q05", "q95"};
  g.right_align = {false, false, true, true, true, true, true};
  groups_json = json::array();
  for (const auto& e : groups) {
    g.rows.push_back({e.by, e.key, std::to_string(e.n), format_fixed(100.0 * e.median_abs, 1) + "%",
                      format_fixed(100.0 * e.p90_abs, 1) + "%", format_fixed(100.0 * e.q05, 1) + "%",
                      format_fixed(100.0 * e.q95, 1) + "%"});
    groups_json.push_back({{"by", e.by}, {"key", e.key}, {"rows", e.n}, {"median_abs_error", e.median_abs},
                           {"p90_abs_error", e.p90_abs}, {"q05", e.q05}, {"q95", e.q95}});
  }
  return g;
}

Report published_report(const simulator::PublishedSummary& s, const simulator::PublishedSet& set) {
  Report rep;
  rep.header = {"published measurements vs moeplan simulate (data/validation/public_points.yaml)"};
  Table t;
  t.columns = {"id", "model", "engine", "hardware", "layout", "precision", "KV", "in/out", "load", "metric", "measured",
               "predicted", "error"};
  t.right_align = {false, false, false, false, false, false, false, true, false, false, true, true, true};
  json rows = json::array();
  for (const auto& r : s.rows) {
    const auto& p = r.point;
    const std::string layout = !p.gpu_row() ? "-"
                               : "tp" + std::to_string(p.tp) + " dp" + std::to_string(p.dp) + " ep" + std::to_string(p.ep) +
                                     (p.pp > 1 ? " pp" + std::to_string(p.pp) : "");
    const std::string load = p.load == "max"    ? "max"
                             : p.load == "rate" ? format_fixed(p.request_rate, 2) + "/s"
                                                : (p.load == "static" ? "b=" : "c=") + std::to_string(p.concurrency);
    const bool ok = r.failure.empty();
    const std::string hardware = p.gpu_row() ? std::to_string(p.count) + "x " + p.gpu : p.host;
    const std::string engine = r.engine.empty() ? p.engine : r.engine;  // the engine simulated (--engine may override)
    t.rows.push_back({p.id, p.model, engine, hardware, layout, p.precision, p.kv_dtype,
                      std::to_string(p.input) + "/" + std::to_string(p.output), load, p.metric, format_fixed(p.value, 1),
                      ok ? format_fixed(r.predicted, 1) : "-", ok ? format_fixed(100.0 * r.error, 1) + "%" : "refused"});
    json j = {{"id", p.id}, {"model", p.model}, {"engine", engine}, {"engine_version", p.engine_version},
              {"precision", p.precision}, {"kv_dtype", p.kv_dtype}, {"input_tokens", p.input},
              {"output_tokens", p.output}, {"load", p.load}, {"metric", p.metric}, {"phase", simulator::metric_phase(p.metric)},
              {"measured", p.value}, {"source", p.source}, {"url", p.url}, {"vendor", p.vendor}};
    if (p.gpu_row()) {
      j.update({{"gpu", p.gpu}, {"count", p.count}, {"tp", p.tp}, {"dp", p.dp}, {"ep", p.ep}, {"pp", p.pp}});
    } else {
      j["host"] = p.host;
    }
    if (p.load == "rate") j["request_rate"] = p.request_rate;
    else if (p.load != "max") j["concurrency"] = p.concurrency;
    if (!simulator::metric_is_rate(p.metric)) j["stat"] = p.stat;
    if (engine != p.engine) j["measured_engine"] = p.engine;  // --engine simulated another engine than the row's
    if (ok) {
      j["predicted"] = r.predicted;
      j["error"] = r.error;
    } else {
      j["failure"] = r.failure;
      rep.notes.push_back(p.id + " refused: " + r.failure);
    }
    rows.push_back(std::move(j));
  }
  rep.tables.push_back(std::move(t));
  json groups;
  rep.tables.push_back(error_groups_table(s.groups, groups));
  rep.notes.push_back("median absolute error " + format_fixed(100.0 * s.median_abs_error, 1) + "%, p90 " +
                      format_fixed(100.0 * s.p90_abs_error, 1) + "%, within 25%: " + std::to_string(s.within_25_percent) +
                      " of " + std::to_string(s.rows.size()));
  for (const auto& [id, reason] : set.excluded) rep.notes.push_back("not expressible: " + id + " (" + reason + ")");
  rep.json = {{"rows", rows},
              {"median_abs_error", s.median_abs_error},
              {"p90_abs_error", s.p90_abs_error},
              {"within_25_percent", s.within_25_percent},
              {"groups", groups},
              {"excluded", json::array()}};
  for (const auto& [id, reason] : set.excluded) rep.json["excluded"].push_back({{"id", id}, {"reason", reason}});
  rep.charts.push_back(published_chart(s, "moeplan validate --published; measurements data/validation/public_points.yaml"));
  return rep;
}

}  // namespace moeplan::reports
