#include "reports/result_charts.hpp"

#include <algorithm>
#include <map>

#include "reports/charts.hpp"

namespace moeplan::reports {

namespace {

constexpr double kGB = 1e9;

std::string engine_name(const planner::PlanRow& r) { return r.engine ? r.engine->name : "generic"; }

// Index of `name` in `names`, appended when new: the series of a chart in first-seen order.
int series_index(std::vector<std::string>& names, const std::string& name) {
  const auto it = std::find(names.begin(), names.end(), name);
  if (it != names.end()) return static_cast<int>(it - names.begin());
  names.push_back(name);
  return static_cast<int>(names.size()) - 1;
}

}  // namespace

std::string rank_label(std::size_t rank) {
  std::string s(1, '#');  // built step by step: GCC 12 warns falsely (-Wrestrict) on "#" + string at -O3
  s += std::to_string(rank);
  return s;
}

Chart vram_chart(const std::string& title, const std::string& source, const std::vector<VramBar>& bars, bool host_mode) {
  // Segments: the weight modules any bar holds, then KV, activations, overhead and free.
  std::vector<int> modules;
  for (int i = 0; i < model::kModuleCount; ++i)
    for (const auto& b : bars)
      if (b.memory.weights.by_module[static_cast<std::size_t>(i)] > 0) {
        modules.push_back(i);
        break;
      }
  std::vector<std::string> segments;
  for (int i : modules) segments.push_back(std::string("weights: ") + model::module_name(static_cast<model::Module>(i)));
  segments.insert(segments.end(), {"KV cache", "activations"});
  if (!host_mode) segments.push_back("runtime overhead");
  segments.push_back("free");
  std::vector<StackedBar> stacked;
  for (const auto& b : bars) {
    StackedBar s{b.label, {}, b.memory.usable_bytes / kGB};
    for (int i : modules) s.values.push_back(b.memory.weights.by_module[static_cast<std::size_t>(i)] / kGB);
    s.values.insert(s.values.end(), {b.memory.kv_bytes / kGB, b.memory.activation_bytes / kGB});
    if (!host_mode) s.values.push_back(b.memory.overhead_bytes / kGB);
    s.values.push_back(std::max(b.memory.free_bytes, 0.0) / kGB);
    stacked.push_back(std::move(s));
  }
  return stacked_bar_chart({title, host_mode ? "GB per host" : "GB per GPU (the most loaded one)", "configuration", source},
                           segments, stacked, "usable memory");
}

std::vector<std::size_t> cost_speed_rows(const planner::PlanResult& result, std::size_t ranked) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < result.rows.size(); ++i)
    if (i < ranked || result.rows[i].pareto) out.push_back(i);
  return out;
}

Chart cost_speed_chart(const planner::PlanResult& result, std::size_t ranked, std::size_t labelled,
                             const std::string& source) {
  ScatterOptions opt;
  opt.log_x = false;
  opt.log_y = true;
  opt.pareto_front = true;
  std::vector<ScatterPoint> points;
  for (std::size_t i : cost_speed_rows(result, ranked)) {
    const auto& r = result.rows[i];
    points.push_back({r.output_tokens_per_s_per_user, r.usd_per_m_blended_tokens, series_index(opt.series_names, engine_name(r)),
                      i < labelled ? rank_label(i + 1) : "", r.pareto, rank_label(i + 1)});
  }
  return scatter_chart({"cost against speed per user: the first " + std::to_string(ranked) + " ranked rows and the Pareto front",
                        "output tokens/s per user (1000 / TPOT)", "$/M tokens blended (log)", source},
                       points, opt);
}

Chart api_price_chart(const planner::ApiComparison& c, const std::string& self_label, const std::string& source) {
  std::vector<Bar> bars;
  for (const auto& o : c.offers) bars.push_back({o.price.provider + " (" + o.price.date + ")", o.usd_per_m_blended, false});
  bars.push_back({self_label, c.self_usd_per_m_blended, true});
  std::stable_sort(bars.begin(), bars.end(), [](const Bar& a, const Bar& b) { return a.value < b.value; });
  return bar_chart({"self-hosted against every API price (blended for the workload's input:output ratio)", "$/M tokens blended",
                    "offer", source},
                   bars);
}

Chart published_chart(const simulator::PublishedSummary& s, const std::string& source) {
  ScatterOptions opt;
  opt.log_x = opt.log_y = true;
  opt.identity = true;
  opt.band = 0.25;
  std::vector<ScatterPoint> points;
  for (const auto& r : s.rows) {
    if (!r.failure.empty() || r.point.value <= 0 || r.predicted <= 0) continue;
    const std::string engine = r.engine.empty() ? r.point.engine : r.engine;
    points.push_back({r.point.value, r.predicted, series_index(opt.series_names, engine), "", false, r.point.id});
  }
  return scatter_chart({"predicted against measured (each row in its own unit: tokens/s or ms)", "measured (log)",
                        "predicted by moeplan simulate (log)", source},
                       points, opt);
}

Chart throughput_chart(const std::string& config, const std::vector<ConcurrencyPoint>& points, const std::string& source) {
  Series s{"output tokens/s", {}, {}};
  for (const auto& p : points) s.x.push_back(static_cast<double>(p.concurrency)), s.y.push_back(p.output_tokens_per_s);
  return line_chart({"throughput against concurrency: " + config, "requests in flight (closed loop, log)",
                     "output tokens/s (the replica)", source},
                    {s}, true, false);
}

Chart tpot_chart(const std::string& config, const std::vector<ConcurrencyPoint>& points, double slo_tpot_ms,
                       const std::string& source) {
  Series p50{"TPOT p50", {}, {}}, p90{"TPOT p90", {}, {}};
  for (const auto& p : points) {
    p50.x.push_back(static_cast<double>(p.concurrency));
    p50.y.push_back(p.tpot_ms_p50);
    p90.x.push_back(static_cast<double>(p.concurrency));
    p90.y.push_back(p.tpot_ms_p90);
  }
  std::vector<ReferenceLine> refs;
  if (slo_tpot_ms > 0) refs.push_back({"SLO " + std::to_string(static_cast<int>(slo_tpot_ms)) + " ms", slo_tpot_ms});
  return line_chart({"time per output token against concurrency: " + config, "requests in flight (closed loop, log)",
                     "TPOT, ms", source},
                    {p50, p90}, true, false, refs);
}

Chart context_chart(const std::string& config, const std::vector<ContextCurve>& curves, double usable_bytes,
                          const std::string& source) {
  std::vector<Series> series;
  for (const auto& c : curves) {
    Series s{c.precision, c.context_tokens, {}};
    for (double b : c.total_bytes) s.y.push_back(b / kGB);
    series.push_back(std::move(s));
  }
  return line_chart({"memory per GPU against context length (one sequence): " + config, "context tokens (log)",
                     "GB per GPU: weights + KV + activations + overhead", source},
                    series, true, false, {{"usable " + std::to_string(static_cast<int>(usable_bytes / kGB)) + " GB", usable_bytes / kGB}});
}

}  // namespace moeplan::reports
