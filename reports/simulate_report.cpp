// reports/simulate_report: `moeplan simulate` results as tables and JSON (fields documented in README "JSON").
#include <map>

#include "common/text.hpp"
#include "reports/charts.hpp"
#include "reports/result_charts.hpp"
#include "reports/simulate_report.hpp"

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

// The header lines: model, device, precision, engine, layout, workload and load; the network and whether the
// configuration lies beyond the published set.
std::vector<std::string> simulate_header(const SimulateSummary& q, const simulator::SimulateResult& r) {
  const auto& l = q.layout;
  std::string load;
  switch (q.workload.mode) {
    case simulator::LoadMode::max: load = "max load (all requests queued)"; break;
    case simulator::LoadMode::closed: load = "closed loop, concurrency " + with_commas(q.workload.concurrency); break;
    case simulator::LoadMode::poisson: load = "Poisson arrivals, " + format_fixed(q.workload.request_rate_per_s, 2) + " req/s"; break;
    case simulator::LoadMode::static_batch: load = "static batches of " + with_commas(q.workload.concurrency); break;
  }
  std::vector<std::string> header = {
      "simulate: " + q.model_name + " on " + q.device + ", precision " + q.precision + ", KV " + q.kv_dtype +
          (r.engine.empty() || r.engine == "generic" ? std::string() : ", engine " + r.engine),
      "layout tp=" + std::to_string(l.tp) + " ep=" + std::to_string(l.ep) + " pp=" + std::to_string(l.pp) + " dp=" +
          std::to_string(l.dp) + "; " + with_commas(q.workload.input_tokens) + " in / " + with_commas(q.workload.output_tokens) +
          " out tokens; " + load + "; " + with_commas(r.serving.requests) + " requests"};
  if (!q.network.empty()) header.push_back(q.network);
  if (!q.beyond_validated.empty())
    header.push_back("beyond validated: " + join(q.beyond_validated, ", ") +
                     " (outside what data/validation/public_points.yaml covers; the prediction extrapolates)");
  return header;
}

Table throughput_table(const simulator::ServingResult& s) {
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
  return thr;
}

Table latency_table(const simulator::ServingResult& s) {
  Table lat;
  lat.title = "latency (ms)";
  lat.columns = {"metric", "mean", "p50", "p90", "p99"};
  lat.right_align = {false, true, true, true, true};
  lat.rows = {percentile_row("TTFT", s.ttft_ms), percentile_row("TPOT", s.tpot_ms), percentile_row("ITL", s.itl_ms),
              percentile_row("E2E", s.e2e_ms)};
  return lat;
}

// Error bars from a measured profile's held-out residuals: a prediction p becomes [p (1 + q05), p (1 + q95)] of its
// phase (TPOT, ITL, E2E and throughput from decode steps; TTFT from prefill). docs/validation.md. Adds the table (or
// a note saying why there is none) and returns the bars' JSON (null without them).
json profile_error_bars(const simulator::HostProfile& profile, const simulator::ServingResult& s, Report& rep,
                        std::vector<std::string>& notes) {
  json bars = nullptr;
  const auto& dres = profile.decode_residuals;
  const auto& pres = profile.prefill_residuals;
  if (!dres || !pres) {
    notes.push_back("no error bars: profile " + profile.file.string() +
                    " has no held-out residuals yet (run moeplan validate --device cpu --profile " + profile.file.string() + ")");
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
  return bars;
}

// GPU predictions: error bars from the published set's residuals for the engine (docs/simulator.md). Adds the table
// (notes say what is missing) and returns the bars' JSON (null without them).
json published_error_bars(const SimulateSummary& q, const simulator::ServingResult& s, Report& rep,
                          std::vector<std::string>& bar_notes) {
  json bars = nullptr;
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
  return bars;
}

// --breakdown: per-op tables and charts of one prefill and one decode step; returns their JSON (empty without).
json add_breakdown(const SimulateSummary& q, const simulator::SimulateResult& r, Report& rep) {
  json breakdown = json::object();
  if (r.prefill_ops.empty() && r.decode_ops.empty()) return breakdown;
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
  return breakdown;
}

// Memory at the peak batch: per GPU (or host), or with offloading the GPU's and the host RAM's shares.
std::vector<std::string> memory_notes(const SimulateSummary& q, const simulator::SimulateResult& r) {
  std::vector<std::string> notes;
  if (r.gpu_memory && r.host_memory) {
    // Offloading: the GPU and the host RAM each hold their share; neither free figure is negative.
    for (const simulator::DeviceMemory* dm : {&*r.gpu_memory, &*r.host_memory})
      notes.push_back(std::string(dm == &*r.gpu_memory ? "GPU" : "host") + " memory at the peak batch (" + dm->device +
                      "): weights " + format_gb(dm->weights_bytes) + ", KV " + format_gb(dm->kv_bytes) + ", activations " +
                      format_gb(dm->activation_bytes) + ", runtime " + format_gb(dm->overhead_bytes) + ", free " +
                      format_gb(dm->free_bytes) + " of " + format_gb(dm->usable_bytes) + " usable" + (dm->fits ? "" : " (DOES NOT FIT)"));
  } else {
    notes.push_back(std::string(q.host ? "memory of the host" : "memory per GPU") + " at the peak batch: weights " +
                    format_gb(r.memory.weights.total) + ", KV " + format_gb(r.memory.kv_bytes) + ", free " +
                    format_gb(std::max(0.0, r.memory.free_bytes)));
  }
  return notes;
}

json simulate_json(const SimulateSummary& q, const simulator::SimulateResult& r) {
  const auto& s = r.serving;
  const auto& l = q.layout;
  json out = {{"model", q.model_name},
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
  if (!q.network.empty()) out["network"] = q.network;
  if (!q.host) out["beyond_validated"] = q.beyond_validated;
  if (r.gpu_memory && r.host_memory) {
    auto mem_json = [](const simulator::DeviceMemory& dm) {
      return json{{"device", dm.device}, {"capacity_bytes", dm.capacity_bytes}, {"usable_bytes", dm.usable_bytes},
                  {"weights_bytes", dm.weights_bytes}, {"kv_bytes", dm.kv_bytes}, {"activation_bytes", dm.activation_bytes},
                  {"overhead_bytes", dm.overhead_bytes}, {"free_bytes", dm.free_bytes}, {"fits", dm.fits}};
    };
    out["gpu_memory"] = mem_json(*r.gpu_memory);
    out["host_memory"] = mem_json(*r.host_memory);
    out["vram_used_bytes_per_gpu"] = r.gpu_memory->weights_bytes + r.gpu_memory->kv_bytes + r.gpu_memory->activation_bytes +
                                     r.gpu_memory->overhead_bytes;
    out["weights_bytes_per_gpu"] = r.gpu_memory->weights_bytes;
  }
  return out;
}

}  // namespace

Report simulate_report(const SimulateSummary& q, const simulator::SimulateResult& r) {
  const auto& s = r.serving;
  Report rep;
  rep.header = simulate_header(q, r);
  rep.tables.push_back(throughput_table(s));
  rep.tables.push_back(latency_table(s));
  std::vector<std::string> bar_notes;
  json bars = nullptr;
  if (q.profile) bars = profile_error_bars(*q.profile, s, rep, bar_notes);
  else if (!q.published_bars.empty()) bars = published_error_bars(q, s, rep, bar_notes);
  const json breakdown = add_breakdown(q, r, rep);
  rep.notes = r.assumptions;
  for (const auto& n : bar_notes) rep.notes.push_back(n);
  for (auto& n : memory_notes(q, r)) rep.notes.push_back(std::move(n));
  rep.json = simulate_json(q, r);
  if (!breakdown.empty()) rep.json["breakdown"] = breakdown;
  if (q.profile) rep.json["profile"] = q.profile->file.string();
  if (!bars.is_null()) rep.json["error_bars"] = bars;
  return rep;
}

}  // namespace moeplan::reports
