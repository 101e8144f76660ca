// reports/validate_report: `moeplan calibrate` (the measured profile) and `moeplan validate --device cpu`
// (predicted vs measured with the held-out errors) as tables and JSON (fields in docs/validation.md).
#include <algorithm>

#include "common/text.hpp"
#include "reports/validate_report.hpp"

namespace moeplan::reports {

using nlohmann::json;

namespace {

std::string pct(double fraction, int digits = 1) { return format_fixed(100.0 * fraction, digits) + "%"; }

json curve_json(const simulator::Curve& c, const char* x_key) {
  std::vector<double> g;
  for (double v : c.y) g.push_back(v / 1e9);
  return {{x_key, c.x}, {"gflops", g}};
}

// One table of GFLOP/s by x for several named curves (columns), over the union of their x values.
Table curves_table(const std::string& title, const std::string& x_name, const std::map<std::string, simulator::Curve>& curves) {
  Table t;
  t.title = title;
  t.columns = {x_name};
  t.right_align = {true};
  std::vector<double> xs;
  for (const auto& [name, c] : curves) {
    t.columns.push_back(name);
    t.right_align.push_back(true);
    xs.insert(xs.end(), c.x.begin(), c.x.end());
  }
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  for (double x : xs) {
    std::vector<std::string> row{format_fixed(x, x == static_cast<double>(static_cast<long long>(x)) ? 0 : 1)};
    for (const auto& [name, c] : curves) {
      const auto it = std::find(c.x.begin(), c.x.end(), x);
      row.push_back(it == c.x.end() ? "" : format_fixed(c.y[static_cast<std::size_t>(it - c.x.begin())] / 1e9, 1));
    }
    t.rows.push_back(row);
  }
  return t;
}

json stats_json(const calibrate::ErrorStats& s) { return {{"n", s.n}, {"median_abs_error", s.median_abs}, {"p90_abs_error", s.p90_abs}}; }

}  // namespace

Report calibrate_report(const simulator::HostProfile& p, const std::string& written_to, double seconds) {
  Report rep;
  rep.header = {"calibrate: " + p.host + " (" + p.cpu_model + ", " + p.cpu_path + ", " + std::to_string(p.threads) + " threads, " +
                    format_gb(p.memory_bytes) + " RAM), " + p.date + "; measured in " + format_fixed(seconds, 1) + " s",
                "profile written to " + written_to + " (next: moeplan validate --device cpu --profile " + written_to + ")"};
  Table mem;
  mem.title = "memory bandwidth (all threads)";
  mem.columns = {"test", "GB/s"};
  mem.right_align = {false, true};
  mem.rows = {{"read (sum)", format_fixed(p.read_bytes_per_s / 1e9, 2)}, {"triad (STREAM, 12 B/element)", format_fixed(p.triad_bytes_per_s / 1e9, 2)}};
  rep.tables.push_back(mem);
  json layouts = json::array();
  for (const auto& c : p.layouts) {
    const std::string tag = std::to_string(c.ranks) + " rank(s) x " + std::to_string(c.threads_per_rank) + " thread(s)";
    rep.tables.push_back(curves_table("GEMM GFLOP/s by rows M, per rank, by weight dtype (" + tag + ")", "M", c.gemm_flops_per_s));
    rep.tables.push_back(curves_table("grouped expert GEMM GFLOP/s by rows per expert (8 experts; " + tag + ")", "rows/expert", c.expert_flops_per_s));
    rep.tables.push_back(curves_table("attention GFLOP/s by keys per query (" + tag + ")", "keys",
                                      {{"decode", c.attention_decode_flops_per_s}, {"prefill", c.attention_prefill_flops_per_s}}));
    Table misc;
    misc.title = "fixed costs (" + tag + ")";
    misc.columns = {"item", "value"};
    misc.right_align = {false, true};
    misc.rows = {{"elementwise (rmsnorm) GB/s", format_fixed(1.0 / c.elementwise_s_per_byte / 1e9, 2)},
                 {"op overhead us (1x64x64 matmul through the pool)", format_fixed(c.op_overhead_s * 1e6, 2)}};
    if (c.ranks > 1) {
      misc.rows.push_back({"all-reduce fixed us", format_fixed(c.collective_fixed_s * 1e6, 2)});
      misc.rows.push_back({"all-reduce GB/s", format_fixed(1.0 / c.collective_s_per_byte / 1e9, 2)});
    }
    rep.tables.push_back(misc);
    json g = json::object(), e = json::object();
    for (const auto& [k, v] : c.gemm_flops_per_s) g[k] = curve_json(v, "rows");
    for (const auto& [k, v] : c.expert_flops_per_s) e[k] = curve_json(v, "rows_per_expert");
    layouts.push_back({{"ranks", c.ranks}, {"threads_per_rank", c.threads_per_rank}, {"gemm", g}, {"expert_gemm", e},
                       {"attention_decode", curve_json(c.attention_decode_flops_per_s, "keys")},
                       {"attention_prefill", curve_json(c.attention_prefill_flops_per_s, "keys")},
                       {"elementwise_gb_per_s", 1.0 / c.elementwise_s_per_byte / 1e9}, {"op_overhead_us", c.op_overhead_s * 1e6},
                       {"collective_fixed_us", c.collective_fixed_s * 1e6},
                       {"collective_gb_per_s", c.collective_s_per_byte > 0 ? 1.0 / c.collective_s_per_byte / 1e9 : 0.0}});
  }
  json peaks = json::object();
  for (const auto& [k, v] : p.peak_flops) peaks[k] = v / 1e9;
  rep.json = {{"host", p.host}, {"cpu_model", p.cpu_model}, {"cpu_path", p.cpu_path}, {"threads", p.threads}, {"date", p.date},
              {"memory_bytes", p.memory_bytes}, {"read_gb_per_s", p.read_bytes_per_s / 1e9}, {"triad_gb_per_s", p.triad_bytes_per_s / 1e9},
              {"peak_gflops", peaks}, {"layouts", layouts}, {"profile_file", written_to}, {"seconds", seconds}};
  return rep;
}

Report cpu_validation_report(const calibrate::CpuValidation& v, const std::string& profile_file, bool profile_written) {
  Report rep;
  rep.header = {"validate --device cpu: " + v.model + " shrunk to " + v.shape,
                "machine: " + v.cpu_model + " (" + v.cpu_path + "), " + std::to_string(v.threads) + " threads, " + v.date + "; " +
                    std::to_string(v.rows.size()) + " points in " + format_fixed(v.seconds, 0) + " s; median run-to-run spread " +
                    pct(v.median_spread),
                "fitted on the calibration half (alternate rows of each phase x ranks x router), errors below are the "
                "held-out half: error = (predicted - measured) / measured"};
  Table sum;
  sum.title = "summary (targets: decode median <= 5 %, prefill median <= 10 %, p90 <= 15 %)";
  sum.columns = {"phase", "half", "rows", "median |error|", "p90 |error|"};
  sum.right_align = {false, false, true, true, true};
  auto add = [&](const std::string& phase, const std::string& half, const calibrate::ErrorStats& s) {
    if (s.n > 0) sum.rows.push_back({phase, half, std::to_string(s.n), pct(s.median_abs), pct(s.p90_abs)});
  };
  add("decode step", "held-out", v.decode_held_out);
  add("prefill", "held-out", v.prefill_held_out);
  add("decode step", "calibration", v.decode_calibration);
  add("prefill", "calibration", v.prefill_calibration);
  add("decode, uniform router", "held-out", v.decode_uniform);
  add("decode, skewed router", "held-out", v.decode_skewed);
  rep.tables.push_back(sum);

  Table rows;
  rows.title = "held-out configurations";
  rows.columns = {"configuration", "measured ms", "predicted ms", "error", "measured tok/s", "predicted tok/s", "experts/layer meas", "pred", "spread"};
  rows.right_align = {false, true, true, true, true, true, true, true, true};
  Table cal = rows;
  cal.title = "calibration configurations (in-sample)";
  json rows_json = json::array();
  for (const auto& r : v.rows) {
    const double work = r.phase == "decode" ? static_cast<double>(r.batch) : static_cast<double>(r.tokens);
    const bool decode = r.phase == "decode";
    (r.held_out ? rows : cal).rows.push_back({r.id, format_fixed(r.measured_s * 1e3, 2), format_fixed(r.predicted_s * 1e3, 2),
                                              (r.error >= 0 ? "+" : "") + pct(r.error), format_fixed(work / r.measured_s, 1),
                                              format_fixed(work / r.predicted_s, 1), decode ? format_fixed(r.experts_touched_measured, 2) : "",
                                              decode ? format_fixed(r.experts_touched_predicted, 2) : "", pct(r.spread)});
    json ops = json::array();
    for (const auto& [op, s] : r.measured_ops) {
      const auto it = r.predicted_ops.find(op);
      ops.push_back({{"op", op}, {"measured_s", s}, {"predicted_s", it == r.predicted_ops.end() ? 0.0 : it->second}});
    }
    rows_json.push_back({{"id", r.id}, {"phase", r.phase}, {"half", r.held_out ? "held-out" : "calibration"}, {"experts", r.experts},
                         {"ranks", r.ranks}, {"router", r.router}, {"batch", r.batch}, {"context", r.context}, {"prompt_tokens", r.tokens},
                         {"measured_s", r.measured_s}, {"predicted_s", r.predicted_s}, {"error", r.error},
                         {"measured_tokens_per_s", work / r.measured_s}, {"predicted_tokens_per_s", work / r.predicted_s},
                         {"spread", r.spread}, {"experts_touched_measured", r.experts_touched_measured},
                         {"experts_touched_predicted", r.experts_touched_predicted}, {"ops", ops}});
  }
  rep.tables.push_back(rows);
  rep.tables.push_back(cal);

  Table ops;
  ops.title = "op by op, held-out rows (share of the measured time; median |error| of the op's predicted time)";
  ops.columns = {"phase", "op", "rows", "share", "median |error|"};
  ops.right_align = {false, false, true, true, true};
  json ops_json = json::array();
  for (const auto& o : v.ops) {
    ops.rows.push_back({o.phase, o.op, std::to_string(o.n), pct(o.share), pct(o.median_abs_error)});
    ops_json.push_back({{"phase", o.phase}, {"op", o.op}, {"n", o.n}, {"share", o.share}, {"median_abs_error", o.median_abs_error}});
  }
  rep.tables.push_back(ops);
  const auto& f = v.fitted;
  if (f.decode_residuals)
    rep.notes.push_back("error bar of decode predictions with this profile: [" + pct(f.decode_residuals->q05) + ", +" +
                        pct(f.decode_residuals->q95) + "] (5th-95th percentile of held-out (measured - predicted) / predicted)");
  if (f.prefill_residuals)
    rep.notes.push_back("error bar of prefill predictions: [" + pct(f.prefill_residuals->q05) + ", +" + pct(f.prefill_residuals->q95) + "]");
  rep.notes.push_back(profile_written ? "fit and residuals written to " + profile_file : "profile " + profile_file + " left unchanged (--no-write)");
  rep.json = {{"model", v.model}, {"shape", v.shape}, {"cpu_model", v.cpu_model}, {"cpu_path", v.cpu_path}, {"threads", v.threads},
              {"date", v.date}, {"seconds", v.seconds}, {"median_spread", v.median_spread},
              {"decode_median_abs_error", v.decode_held_out.median_abs}, {"decode_p90_abs_error", v.decode_held_out.p90_abs},
              {"prefill_median_abs_error", v.prefill_held_out.median_abs}, {"prefill_p90_abs_error", v.prefill_held_out.p90_abs},
              {"held_out", {{"decode", stats_json(v.decode_held_out)}, {"prefill", stats_json(v.prefill_held_out)},
                            {"decode_uniform", stats_json(v.decode_uniform)}, {"decode_skewed", stats_json(v.decode_skewed)}}},
              {"calibration", {{"decode", stats_json(v.decode_calibration)}, {"prefill", stats_json(v.prefill_calibration)}}},
              {"rows", rows_json}, {"ops", ops_json}, {"profile_file", profile_file}, {"profile_written", profile_written}};
  return rep;
}

Report gpu_calibrate_report(const simulator::GpuProfileData& p, const std::string& written_to, double seconds) {
  Report rep;
  rep.header = {"calibrate: " + p.gpu + " (" + p.source + "), " + p.exported + "; measured in " + format_fixed(seconds, 1) + " s",
                "GPU op profile written to " + written_to + " (use it: moeplan simulate --gpu " + p.gpu + " --gpu-profile " +
                    written_to + " ...)"};
  json curves = json::array();
  for (const auto& c : p.curves) {
    Table t;
    std::string shape;
    for (const auto& [k, v] : c.fields) shape += (shape.empty() ? "" : " ") + k + "=" + v;
    t.title = std::string(simulator::gpu_curve_kind_name(c.kind)) + " " + shape;
    t.columns = {c.kind == simulator::GpuCurveKind::moe ? "tokens" : "rows", "us per call"};
    t.right_align = {true, true};
    json points = json::array();
    for (std::size_t i = 0; i < c.x.size(); ++i) {
      t.rows.push_back({with_commas(static_cast<std::int64_t>(c.x[i])), format_fixed(c.seconds[i] * 1e6, 1)});
      points.push_back({{"x", c.x[i]}, {"seconds", c.seconds[i]}});
    }
    rep.tables.push_back(std::move(t));
    json fields = json::object();
    for (const auto& [k, v] : c.fields) fields[k] = v;
    curves.push_back({{"kind", simulator::gpu_curve_kind_name(c.kind)}, {"fields", fields}, {"points", points}});
  }
  rep.json = {{"gpu", p.gpu}, {"engine", p.engine}, {"source", p.source}, {"date", p.exported},
              {"profile", written_to}, {"seconds", seconds}, {"curves", curves}};
  return rep;
}

Report device_validation_report(const std::vector<calibrate::DeviceCheck>& checks, const std::string& device) {
  Report rep;
  bool all = true;
  for (const auto& c : checks) all = all && c.pass();
  rep.header = {"validate --device: " + device + " against the CPU backend with its matmul input rounding, on the oracle fixtures: " +
                (all ? "every fixture within its tolerance" : "SOME FIXTURES OUTSIDE THEIR TOLERANCE")};
  Table t;
  t.title = "logits, device vs reference (prefill of every position, then decode steps on the reference's greedy tokens)";
  t.columns = {"fixture", "weights", "rows", "max |diff|", "allowed", "max |logit|", "argmax differs", "vs fp32 CPU", "result"};
  t.right_align = {false, false, true, true, true, true, true, true, false};
  json rows = json::array();
  for (const auto& c : checks) {
    t.rows.push_back({c.fixture, kernels::weight_dtype_name(c.dtype), std::to_string(c.rows), format_fixed(c.max_abs_diff, 5),
                      format_fixed(c.allowed, 5), format_fixed(c.max_abs_logit, 3), std::to_string(c.argmax_mismatches),
                      c.max_abs_diff_fp32 < 0 ? "-" : format_fixed(c.max_abs_diff_fp32, 4), c.pass() ? "pass" : "FAIL"});
    rows.push_back({{"fixture", c.fixture}, {"weights", kernels::weight_dtype_name(c.dtype)}, {"rows", c.rows},
                    {"max_abs_diff", c.max_abs_diff}, {"allowed", c.allowed}, {"max_abs_logit", c.max_abs_logit},
                    {"argmax_mismatches", c.argmax_mismatches}, {"max_abs_diff_fp32", c.max_abs_diff_fp32}, {"pass", c.pass()}});
  }
  rep.tables.push_back(std::move(t));
  rep.json = {{"device", device}, {"pass", all}, {"fixtures", rows}};
  return rep;
}

}  // namespace moeplan::reports
