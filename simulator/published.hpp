// simulator/published: predicts every published measurement in data/validation/public_points.yaml with the same
// simulate() a user runs, and reports the error per row and the median. No row is special-cased: each row is only
// a command line and the value measured.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/progress.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/shard.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::simulator {

struct PublishedPoint {
  std::string id, model, gpu, precision, kv_dtype, source, metric, load;
  std::string host;        // a host row (llama.cpp on a CPU or unified-memory machine): hosts.yaml name; gpu empty
  std::string engine = "trtllm", engine_version, url;  // the engine that measured it (data/engines.yaml), as the source states
  std::string stat = "mean";  // ttft_ms / tpot_ms: mean, median, p90 or p99 of the source
  int count = 1, tp = 1, dp = 1, ep = 1, pp = 1;
  std::int64_t input = 0, output = 0, concurrency = 0, max_batch = 0, max_num_batched_tokens = 0;
  std::int64_t num_requests = 0;  // 0: the simulator's default
  // How the row's max_batch / max_num_batched_tokens were chosen: "fixed" (the row's or the file's defaults) or
  // "trtllm-bench" (the benchmark chose them from free memory; simulator/trtllm_bench.hpp). A row's `settings`, else
  // the file's defaults.settings_by_source for its source when it runs at max load and states no max_batch.
  std::string settings = "fixed";
  // The CUDA-graph batch sizes decode-only steps were padded to, where the source states them (the file's
  // defaults.cuda_graphs_by_source); unset: the engine's own (data/engines.yaml).
  std::optional<std::vector<std::int64_t>> graph_padded_batches;
  double request_rate = 0;  // load rate: Poisson arrivals per second
  double value = 0;        // measured, in the unit of `metric`
  bool gpu_row() const { return host.empty(); }
  std::string vendor;      // filled by validate_published: the GPU's vendor, or "host"
};

struct PublishedSet {
  std::vector<PublishedPoint> points;
  std::vector<std::pair<std::string, std::string>> excluded;  // id, reason
};

// Throws InputError naming the file and row on malformed data.
PublishedSet load_published(const std::filesystem::path& yaml_path);

struct PublishedResult {
  PublishedPoint point;
  std::string engine;      // the engine it was simulated with
  double predicted = 0;
  double error = 0;        // (predicted − measured) / measured
  std::string failure;     // when the simulator refused the configuration (the message)
};

// The phase a metric measures: "throughput" (output tokens/s of a loaded server), "decode" (TPOT, per-user and
// llama-bench tgN rates) or "prefill" (TTFT, ppN rates).
std::string metric_phase(const std::string& metric);
// Whether larger is better for the metric (rates) or smaller (latencies).
bool metric_is_rate(const std::string& metric);

// Errors of a group of rows: |error| median and p90, and the quantiles of the residual
// r = (measured − predicted) / predicted in the metric's rate form (latencies inverted), so a predicted rate p has
// the error bar [p (1 + q05), p (1 + q95)] and a predicted latency l has [l / (1 + q95), l / (1 + q05)].
struct ErrorGroup {
  std::string by, key;  // by: "all", "engine", "vendor", "phase", "engine+phase"; key: e.g. "trtllm"
  int n = 0;
  double median_abs = 0, p90_abs = 0, q05 = 0, q95 = 0;
};

struct PublishedSummary {
  std::vector<PublishedResult> rows;
  double median_abs_error = 0;  // over rows that ran
  double p90_abs_error = 0;
  int within_25_percent = 0;
  std::vector<ErrorGroup> groups;  // by engine, vendor, phase and engine+phase, in that order
};

// The groups of PublishedSummary::groups for these rows.
std::vector<ErrorGroup> error_groups(const std::vector<PublishedResult>& rows);

// The published set's error groups as a YAML file (data/validation/error_bars.yaml is one, written by
// `moeplan validate --published --write-error-bars FILE`), and reading it back; InputError names file and field.
std::string error_bars_yaml(const PublishedSummary& summary, const std::string& points_file);
std::vector<ErrorGroup> load_error_bars(const std::filesystem::path& path);
// The group `by`/`key` with at least `min_rows` rows, or nullptr.
const ErrorGroup* find_error_group(const std::vector<ErrorGroup>& groups, const std::string& by, const std::string& key,
                                   int min_rows = 5);

// What the published set's GPU rows cover, computed from the file: a configuration outside it is an extrapolation
// (plan marks its rows "beyond validated"; docs/validation.md).
struct ValidatedRange {
  int max_gpus = 0;                 // the most GPUs in one row
  int max_ep_pcie = 0;              // the largest EP degree on a PCIe-only card (0: no such row)
  std::vector<std::string> gpus;    // GPU names (gpus.yaml) with a row, sorted
};
ValidatedRange validated_range(const PublishedSet& set, const gpu_db::Database& db);
// A card whose only GPU-to-GPU path is PCIe (gpus.yaml interconnect pcie*).
bool pcie_only(const gpu_db::GpuSpec& gpu);
// Why `count` GPUs of `gpu` in `layout` lie outside the range (e.g. "> 8 GPUs", "EP16 over PCIe", "GPU without
// rows"); empty inside it.
std::vector<std::string> beyond_validated(const ValidatedRange& range, const gpu_db::GpuSpec& gpu, int count,
                                          const model::ParallelLayout& layout);

// `only`: run just these ids (empty = all). Each row is simulated with its `engine` (data/engines.yaml: its step and
// kernel overheads; trtllm when the row names none), or with `engine` when that is given; a row whose GPU the engine
// does not run on fails with the reason.
// `progress` (optional) advances once per row.
PublishedSummary validate_published(const PublishedSet& set, const gpu_db::Database& db,
                                    const std::filesystem::path& data_dir, const std::vector<std::string>& only = {},
                                    const std::string& engine = "", Progress* progress = nullptr);

}  // namespace moeplan::simulator
