// reports/published_report: `moeplan validate --published` (see published_report.hpp).
#include "reports/published_report.hpp"

#include "common/text.hpp"
#include "reports/result_charts.hpp"

namespace moeplan::reports {

using nlohmann::json;

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
