// reports/run_report: `moeplan run` results (README "JSON").
#include <algorithm>

#include "common/text.hpp"
#include "reports/run_report.hpp"

namespace moeplan::reports {

Report run_report(const executor::RunResult& r) {
  Report rep;
  const std::string where = r.device == "cpu" ? "cpu (" + r.cpu_path + ", " + std::to_string(r.threads) + " threads, " +
                                                   (r.activations == "fp32" ? "fp32 activations" : "BF16 activations on AMX tiles") + ")"
                                             : r.backend;
  const std::string processes =
      r.processes > 1 ? " (rank 0 of " + std::to_string(r.processes) + " processes, " + r.launcher + ")" : "";
  rep.header = {"run: " + r.model + " on " + where + processes + "; weights " +
                format_gb(static_cast<double>(r.weight_bytes)) + " from " + r.weights_dir.string() +
                (r.weights_removed ? " (seeded random, removed after the run)" : "")};
  Table t;
  t.title = "throughput";
  t.columns = {"metric", "value"};
  t.right_align = {false, true};
  t.rows = {{"prefill tokens/s", format_fixed(r.prefill_tokens_per_s, 1)},
            {"decode tokens/s", format_fixed(r.decode_tokens_per_s, 1)},
            {"prefill s", format_fixed(r.prefill_s, 3)},
            {"decode s", format_fixed(r.decode_s, 3)},
            {"load s", format_fixed(r.load_s, 3)},
            {"peak memory (RSS)", format_gb(static_cast<double>(r.peak_rss_bytes))},
            {"KV cache at the end", format_gb(static_cast<double>(r.kv_cache_bytes))}};
  if (r.decode_replays > 0) t.rows.push_back({"decode steps from a CUDA graph", std::to_string(r.decode_replays)});
  if (!r.decode_graph_error.empty())
    rep.header.push_back("--cuda-graphs: the capture failed (" + r.decode_graph_error + "); decode ran op by op");
  rep.tables.push_back(std::move(t));
  Table ops;
  ops.title = "per-op wall time (op names of the simulator's op graph)";
  ops.columns = {"op", "calls", "ms", "share"};
  ops.right_align = {false, true, true, true};
  double total = 0;
  for (const auto& [name, s] : r.ops.seconds) total += s;
  std::vector<std::pair<std::string, double>> sorted(r.ops.seconds.begin(), r.ops.seconds.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  nlohmann::json ops_json = nlohmann::json::array();
  for (const auto& [name, s] : sorted) {
    const auto calls = r.ops.calls.at(name);
    ops.rows.push_back({name, with_commas(calls), format_fixed(s * 1e3, 3), format_fixed(total > 0 ? 100 * s / total : 0, 1) + "%"});
    ops_json.push_back({{"name", name}, {"calls", calls}, {"seconds", s}});
  }
  rep.tables.push_back(std::move(ops));
  rep.json = {{"model", r.model},
              {"device", r.device},
              {"backend", r.backend},
              {"cpu_path", r.cpu_path},
              {"threads", r.threads},
              {"activations", r.activations},
              {"weight_bytes", r.weight_bytes},
              {"tokens", r.tokens},
              {"prefill_tokens_per_s", r.prefill_tokens_per_s},
              {"decode_tokens_per_s", r.decode_tokens_per_s},
              {"prefill_s", r.prefill_s},
              {"decode_s", r.decode_s},
              {"load_s", r.load_s},
              {"peak_rss_bytes", r.peak_rss_bytes},
              {"kv_cache_bytes", r.kv_cache_bytes},
              {"processes", r.processes},
              {"decode_graph_replays", r.decode_replays},
              {"decode_graph_error", r.decode_graph_error},
              {"ops", ops_json}};
  return rep;
}

}  // namespace moeplan::reports
