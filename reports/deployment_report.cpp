#include "reports/deployment_report.hpp"

#include "common/text.hpp"
#include "model/params.hpp"

namespace moeplan::reports {

using nlohmann::json;

namespace {

std::string gb(double bytes) { return format_fixed(bytes / 1e9, 2); }

std::string config_label(const planner::PlanRow& r) {
  return std::to_string(r.count) + "x " + r.gpu->name + " " + r.precision + (r.engine ? " " + r.engine->name : "");
}

json memory_json(const simulator::MemoryBreakdown& b) {
  json by_module = json::object();
  for (int i = 0; i < model::kModuleCount; ++i)
    if (b.weights.by_module[static_cast<std::size_t>(i)] > 0)
      by_module[model::module_name(static_cast<model::Module>(i))] = b.weights.by_module[static_cast<std::size_t>(i)];
  return {{"weights_bytes", b.weights.total}, {"weights_bytes_by_module", by_module}, {"kv_bytes", b.kv_bytes},
          {"activation_bytes", b.activation_bytes}, {"overhead_bytes", b.overhead_bytes}, {"total_bytes", b.total_bytes},
          {"usable_bytes", b.usable_bytes}, {"free_bytes", b.free_bytes}, {"fits", b.fits}};
}

// Where the memory figures come from.
constexpr const char* kMemorySources =
    "inputs: weights, KV and activations from the model's config.json and the precision (data/precisions.yaml); usable "
    "memory from memory_gb of data/gpus.yaml (each GPU's datasheet in its source; moeplan gpus)";

}  // namespace

Report plan_memory_report(const std::string& model_name, const std::vector<PlanMemory>& rows, const std::string& context_config,
                          const std::vector<ContextCurve>& curves, double usable_bytes) {
  Report r;
  r.header = {"memory per GPU of each shown plan row at its operating point (batch x dp sequences of input + output "
              "tokens; moeplan memory with the row's layout, precision and KV dtype gives the same figures)",
              std::string(kMemorySources)};
  Table t;
  t.columns = {"#", "configuration", "layout", "KV", "sequences/GPU", "weights GB", "KV GB", "activations GB", "overhead GB",
               "used GB", "usable GB", "free GB"};
  t.right_align = {true, false, false, false, true, true, true, true, true, true, true, true};
  std::vector<VramBar> bars;
  json rows_json = json::array();
  for (const auto& p : rows) {
    const auto& b = p.memory;
    const auto& l = p.row->layout;
    const std::string layout = "tp" + std::to_string(l.tp) + " ep" + std::to_string(l.ep) + " dp" + std::to_string(l.dp) +
                               " pp" + std::to_string(l.pp);
    const std::string kv = p.row->kv_dtype.empty() ? "-" : p.row->kv_dtype;
    t.rows.push_back({std::to_string(p.rank), config_label(*p.row), layout, kv,
                      with_commas(b.sequences_per_gpu), gb(b.weights.total), gb(b.kv_bytes), gb(b.activation_bytes),
                      gb(b.overhead_bytes), gb(b.total_bytes), gb(b.usable_bytes), gb(b.free_bytes)});
    bars.push_back({rank_label(static_cast<std::size_t>(p.rank)) + " " + config_label(*p.row), b});
    json j = memory_json(b);
    j["rank"] = p.rank;
    rows_json.push_back(std::move(j));
  }
  r.tables.push_back(std::move(t));
  r.charts.push_back(vram_chart("memory per GPU of the shown plan rows: " + model_name,
                                "moeplan plan rows priced by moeplan memory (docs/memory.md); GPU memory data/gpus.yaml; "
                                "model config.json", bars, false));
  json curves_json = json::array();
  if (!curves.empty()) {
    r.charts.push_back(context_chart(context_config, curves, usable_bytes,
                                     "moeplan memory --context C --concurrency 1 per precision (docs/memory.md); GPU "
                                     "memory data/gpus.yaml; model config.json"));
    for (const auto& c : curves)
      curves_json.push_back({{"precision", c.precision}, {"context_tokens", c.context_tokens}, {"total_bytes", c.total_bytes}});
    r.notes.push_back("memory against context: " + context_config + ", one sequence; chunked-attention layers keep at most "
                      "their chunk, so the KV grows with the global layers alone beyond it");
  }
  r.json = {{"rows", rows_json}, {"context_config", context_config}, {"context_curves", curves_json},
            {"usable_bytes", usable_bytes}};
  return r;
}

Report load_sweep_report(const std::string& config, const std::vector<ConcurrencyPoint>& points,
                         std::int64_t operating_concurrency, double slo_tpot_ms, const std::string& simulate_command) {
  Report r;
  r.header = {"#1 under several loads: " + config + "; closed loop of N requests in flight, 4N requests (moeplan simulate "
              "--concurrency N); the plan's operating point is N = " + with_commas(operating_concurrency),
              "inputs: the model's config.json; GPU peaks and memory data/gpus.yaml, links data/links.yaml, the engine's "
              "overheads and batch limits data/engines.yaml, each value with its source there (docs/simulator.md)"};
  Table t;
  t.columns = {"concurrency", "output tok/s", "TPOT p50 ms", "TPOT p90 ms", "tok/s per user (p50)"};
  t.right_align = {true, true, true, true, true};
  json pts = json::array();
  for (const auto& p : points) {
    t.rows.push_back({with_commas(p.concurrency) + (p.concurrency == operating_concurrency ? " (plan)" : ""),
                      format_fixed(p.output_tokens_per_s, 0), format_fixed(p.tpot_ms_p50, 1), format_fixed(p.tpot_ms_p90, 1),
                      format_fixed(p.tpot_ms_p50 > 0 ? 1e3 / p.tpot_ms_p50 : 0, 1)});
    pts.push_back({{"concurrency", p.concurrency}, {"output_tokens_per_s", p.output_tokens_per_s},
                   {"tpot_ms_p50", p.tpot_ms_p50}, {"tpot_ms_p90", p.tpot_ms_p90}});
  }
  r.tables.push_back(std::move(t));
  const std::string source = "moeplan simulate at each concurrency: " + simulate_command;
  r.charts.push_back(throughput_chart(config, points, source));
  r.charts.push_back(tpot_chart(config, points, slo_tpot_ms, source));
  r.notes.push_back("reproduce a point: " + simulate_command + " with --concurrency N --num-requests 4N");
  r.json = {{"config", config}, {"operating_concurrency", operating_concurrency}, {"points", pts},
            {"simulate_command", simulate_command}};
  return r;
}

}  // namespace moeplan::reports
