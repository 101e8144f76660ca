// simulator/published: the published-measurement check (see published.hpp).
#include "simulator/published.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/numeric.hpp"
#include "common/stats.hpp"
#include "common/text.hpp"
#include "model/config.hpp"
#include "model/precision.hpp"
#include "simulator/engine.hpp"
#include "simulator/trtllm_bench.hpp"

namespace moeplan::simulator {

namespace {

// CUDA-graph batch sizes (padding on) of a row or a source: ascending positive integers.
std::vector<std::int64_t> graph_batch_sizes(const YAML::Node& n, const std::string& where) {
  if (!n.IsSequence() || n.size() == 0) throw InputError(where + ": CUDA-graph batch sizes must be a list of batch sizes");
  std::vector<std::int64_t> sizes;
  for (const YAML::Node& v : n) sizes.push_back(v.as<std::int64_t>());
  if (!positive_ascending(sizes)) throw InputError(where + ": CUDA-graph batch sizes must be positive and ascending");
  return sizes;
}

// The row's `settings`, else its source's entry in defaults.settings_by_source when it runs at max load and states no
// max_batch of its own (a benchmark that chose its batch), else "fixed".
std::string row_settings(const YAML::Node& n, const YAML::Node& defaults, const PublishedPoint& p, const std::string& where) {
  std::string settings = "fixed";
  if (n["settings"]) settings = yaml_get<std::string>(n, "settings", where);
  else if (p.load == "max" && !n["max_batch"] && defaults && defaults["settings_by_source"] &&
           defaults["settings_by_source"][p.source])
    settings = yaml_get<std::string>(defaults["settings_by_source"], p.source.c_str(), where);
  if (settings != "fixed" && settings != "trtllm-bench")
    throw InputError(where + ": settings must be fixed or trtllm-bench");
  if (settings == "trtllm-bench" && !p.gpu_row()) throw InputError(where + ": settings trtllm-bench needs a gpu row");
  return settings;
}

PublishedSet load_published_document(const std::filesystem::path& path) {
  const YAML::Node root = parse_yaml_file(path);
  const std::string file = path.string();
  if (!root["points"] || !root["points"].IsSequence()) throw InputError(file + ": expected a 'points' list");
  const YAML::Node defaults = root["defaults"];
  PublishedSet set;
  for (const YAML::Node& n : root["points"]) {
    const std::string where = file + ":" + std::to_string(n.Mark().line + 1);
    PublishedPoint p;
    p.id = yaml_get<std::string>(n, "id", where);
    p.model = yaml_get<std::string>(n, "model", where);
    if (n["host"]) {
      p.host = yaml_get<std::string>(n, "host", where);
      for (const char* k : {"gpu", "count", "tp", "dp", "ep", "pp"})
        if (n[k]) throw InputError(where + ": a host row takes no '" + k + "'");
    } else {
      p.gpu = yaml_get<std::string>(n, "gpu", where);
    }
    if (n["engine"]) p.engine = yaml_get<std::string>(n, "engine", where);
    if (n["engine_version"]) p.engine_version = yaml_get<std::string>(n, "engine_version", where);
    if (n["url"]) p.url = yaml_get<std::string>(n, "url", where);
    if (n["stat"]) p.stat = yaml_get<std::string>(n, "stat", where);
    if (p.stat != "mean" && p.stat != "median" && p.stat != "p90" && p.stat != "p99")
      throw InputError(where + ": stat must be mean, median, p90 or p99");
    p.precision = yaml_get<std::string>(n, "precision", where);
    p.kv_dtype = yaml_get<std::string>(n, "kv_dtype", where);
    p.source = yaml_get<std::string>(n, "source", where);
    p.metric = yaml_get<std::string>(n, "metric", where);
    p.load = yaml_get<std::string>(n, "load", where);
    if (p.gpu_row()) {
      p.count = yaml_get<int>(n, "count", where);
      p.tp = yaml_get<int>(n, "tp", where);
      p.dp = yaml_get<int>(n, "dp", where);
      p.ep = yaml_get<int>(n, "ep", where);
      if (n["pp"]) p.pp = yaml_get<int>(n, "pp", where);
    }
    p.input = yaml_get<std::int64_t>(n, "input", where);
    p.output = yaml_get<std::int64_t>(n, "output", where);
    if (p.load == "closed" || p.load == "static") p.concurrency = yaml_get<std::int64_t>(n, "concurrency", where);
    else if (p.load == "rate") p.request_rate = yaml_get<double>(n, "request_rate", where);
    else if (p.load != "max") throw InputError(where + ": load must be max, closed, static or rate");
    const YAML::Node& mb = n["max_batch"] ? n : defaults;
    p.max_batch = yaml_get<std::int64_t>(mb, "max_batch", where);
    const YAML::Node& mt = n["max_num_batched_tokens"] ? n : defaults;
    p.max_num_batched_tokens = yaml_get<std::int64_t>(mt, "max_num_batched_tokens", where);
    p.settings = row_settings(n, defaults, p, where);
    if (p.gpu_row() && n["cuda_graph_batch_sizes"])
      p.graph_padded_batches = graph_batch_sizes(n["cuda_graph_batch_sizes"], where);
    else if (p.gpu_row() && defaults && defaults["cuda_graphs_by_source"] && defaults["cuda_graphs_by_source"][p.source])
      p.graph_padded_batches = graph_batch_sizes(defaults["cuda_graphs_by_source"][p.source], where);
    if (n["num_requests"]) p.num_requests = yaml_get<std::int64_t>(n, "num_requests", where);
    p.value = yaml_get<double>(n, "value", where);
    if (!(p.value > 0)) throw InputError(where + ": value must be positive");
    static const std::vector<std::string> kMetrics = {"output_tokens_per_s", "output_tokens_per_s_per_gpu",
                                                      "output_tokens_per_s_per_user", "ttft_ms", "tpot_ms",
                                                      "decode_tokens_per_s", "prefill_tokens_per_s"};
    if (std::find(kMetrics.begin(), kMetrics.end(), p.metric) == kMetrics.end())
      throw InputError(where + ": unknown metric '" + p.metric + "'");
    set.points.push_back(std::move(p));
  }
  if (root["excluded"])
    for (const YAML::Node& n : root["excluded"])
      set.excluded.emplace_back(yaml_get<std::string>(n, "id", file), yaml_get<std::string>(n, "reason", file));
  return set;
}

}  // namespace

PublishedSet load_published(const std::filesystem::path& path) {
  return read_document(printable(path.string()), [&] { return load_published_document(path); });
}

ValidatedRange validated_range(const PublishedSet& set, const gpu_db::Database& db) {
  ValidatedRange v;
  for (const PublishedPoint& p : set.points) {
    if (!p.gpu_row()) continue;
    const gpu_db::GpuSpec& g = db.gpu(p.gpu);
    v.max_gpus = std::max(v.max_gpus, p.count);
    if (pcie_only(g) && p.ep > 1) v.max_ep_pcie = std::max(v.max_ep_pcie, p.ep);
    if (std::find(v.gpus.begin(), v.gpus.end(), g.name) == v.gpus.end()) v.gpus.push_back(g.name);
  }
  std::sort(v.gpus.begin(), v.gpus.end());
  return v;
}

bool pcie_only(const gpu_db::GpuSpec& gpu) { return gpu.interconnect.rfind("pcie", 0) == 0; }

std::vector<std::string> beyond_validated(const ValidatedRange& v, const gpu_db::GpuSpec& gpu, int count,
                                          const model::ParallelLayout& layout) {
  std::vector<std::string> out;
  if (count > v.max_gpus) out.push_back("> " + std::to_string(v.max_gpus) + " GPUs");
  if (layout.ep > 1 && pcie_only(gpu) && layout.ep > v.max_ep_pcie) out.push_back("EP" + std::to_string(layout.ep) + " over PCIe");
  if (!std::binary_search(v.gpus.begin(), v.gpus.end(), gpu.name)) out.push_back("GPU without rows");
  return out;
}

namespace {
// Nearest-rank quantile of sorted values.
double nearest_rank(const std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const std::size_t n = v.size();
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(n)));
  return v[std::min(n - 1, rank > 0 ? rank - 1 : 0)];
}

// "n.s." or empty: the row does not say, taken as the current release line.
bool same_release_line(const std::string& row_version, const std::string& profile_version) {
  if (row_version.empty() || row_version == "n.s.") return true;
  auto major = [](const std::string& v) { return v.substr(0, v.find('.')); };
  return major(row_version) == major(profile_version);
}

}  // namespace

PublishedSummary validate_published(const PublishedSet& set, const gpu_db::Database& db,
                                    const std::filesystem::path& data_dir, const std::vector<std::string>& only,
                                    const std::string& engine_override, Progress* progress) {
  const auto precisions = model::PrecisionTable::load(data_dir / "precisions.yaml");
  const auto engines = gpu_db::EngineTable::load(data_dir / "engines.yaml");
  if (!engine_override.empty()) engines.engine(engine_override);  // an unknown --engine is bad input, not a row failure
  for (const PublishedPoint& p : set.points)
    if (!p.engine.empty()) engines.engine(p.engine);
  PublishedSummary s;
  std::vector<double> errors;
  const auto wanted = [&](const PublishedPoint& p) {
    return only.empty() || std::find(only.begin(), only.end(), p.id) != only.end();
  };
  if (progress) progress->set_total(std::count_if(set.points.begin(), set.points.end(), wanted));
  for (const PublishedPoint& p : set.points) {
    if (!wanted(p)) continue;
    if (progress) progress->advance();
    PublishedResult r;
    r.point = p;
    try {
      const model::ModelConfig m = model::load_model(p.model, data_dir);
      SimulateRequest q;
      q.model = &m;
      q.precision = model::resolve_precision(p.precision, m, precisions);
      q.layout = {p.tp, p.ep, p.pp, p.dp};
      if (q.layout.gpus() != p.count) throw InputError("count " + std::to_string(p.count) + " is not tp x dp x pp");
      q.kv_dtype = model::parse_kv_dtype(p.kv_dtype);
      // The row's engine (--engine overrides it): its overheads, and its kernel tables where the project ships them.
      const gpu_db::EngineSpec& e =
          engines.engine(!engine_override.empty() ? engine_override : p.engine.empty() ? "generic" : p.engine);
      r.engine = e.name;
      if (p.gpu_row()) {
        const gpu_db::GpuSpec& g = db.gpu(p.gpu);
        engines.require_runs_on(e, g);
        r.point.vendor = g.vendor;
        q.hardware = gpu_hardware(db, g);
        // The engine's measured kernel tables for this GPU, where the project ships them (docs/gpu_profiles.md).
        q.hardware.gpu_profile = shipped_gpu_profile(data_dir, g.name, e.name);
        // A profile describes one engine release line: a row measured with another major version (TensorRT-LLM
        // 0.9's TensorRT engines against a 1.x profile) is priced by the roofline.
        if (q.hardware.gpu_profile && !same_release_line(p.engine_version, q.hardware.gpu_profile->engine_version))
          q.hardware.gpu_profile.reset();
      } else {
        engines.require_runs_on_hosts(e);
        const gpu_db::HostSpec& h = db.host(p.host);
        r.point.vendor = "host";
        // Priced as simulate prices it: integrated GPU or cores x FLOP/cycle x clock, llama.cpp's decode share.
        q.hardware = llamacpp_host(db, h, HostFlags{}, false);
      }
      q.limits.max_batch = p.max_batch;
      q.limits.max_num_batched_tokens = p.max_num_batched_tokens;
      q.workload.input_tokens = p.input;
      q.workload.output_tokens = p.output;
      q.workload.mode = p.load == "max"      ? LoadMode::max
                        : p.load == "static" ? LoadMode::static_batch
                        : p.load == "rate"   ? LoadMode::poisson
                                             : LoadMode::closed;
      q.workload.concurrency = p.concurrency;
      q.workload.request_rate_per_s = p.request_rate;
      q.workload.num_requests = p.num_requests;
      // The row states its batch, token budget and KV dtype: the engine's overheads and its KV manager's mode apply.
      apply_engine(q, e, EngineChoices{true, true, true, false});
      // A trtllm-bench row that states no batch: the batch and token budget the benchmark chose (not the engine
      // simulated: they describe how the measurement ran).
      if (p.settings == "trtllm-bench") {
        const gpu_db::EngineSpec& bench = engines.engine(p.engine);  // the engine the row was measured with
        apply_trtllm_bench(q, db.gpu(p.gpu), bench.max_batch, bench.max_num_batched_tokens, bench.chunked_prefill);
      }
      if (p.graph_padded_batches) q.limits.graph_padded_batches = *p.graph_padded_batches;
      const SimulateResult res = simulate(q);
      const ServingResult& v = res.serving;
      if (p.metric == "output_tokens_per_s") r.predicted = v.output_tokens_per_s;
      else if (p.metric == "output_tokens_per_s_per_gpu") r.predicted = v.output_tokens_per_s_per_gpu;
      else if (p.metric == "output_tokens_per_s_per_user") r.predicted = v.output_tokens_per_s_per_user;
      else if (p.metric == "ttft_ms") r.predicted = v.ttft_ms.stat(p.stat);
      else if (p.metric == "tpot_ms") r.predicted = v.tpot_ms.stat(p.stat);
      // llama-bench tgN: tokens generated per second of one sequence; ppN: prompt tokens per second of prefill.
      else if (p.metric == "decode_tokens_per_s") r.predicted = v.decode_tokens_per_s_per_user;
      else r.predicted = v.ttft_ms.mean > 0 ? static_cast<double>(p.input) / (v.ttft_ms.mean * 1e-3) : 0;
      r.error = (r.predicted - p.value) / p.value;
      errors.push_back(std::fabs(r.error));
      if (std::fabs(r.error) <= 0.25) ++s.within_25_percent;
    } catch (const InputError& e) {
      r.failure = e.what();
    }
    s.rows.push_back(std::move(r));
  }
  if (!errors.empty()) {
    std::sort(errors.begin(), errors.end());
    s.median_abs_error = median(errors);
    s.p90_abs_error = nearest_rank(errors, 0.9);
  }
  s.groups = error_groups(s.rows);
  return s;
}

std::string metric_phase(const std::string& metric) {
  if (metric == "ttft_ms" || metric == "prefill_tokens_per_s") return "prefill";
  if (metric == "tpot_ms" || metric == "decode_tokens_per_s" || metric == "output_tokens_per_s_per_user") return "decode";
  return "throughput";
}

bool metric_is_rate(const std::string& metric) { return metric != "ttft_ms" && metric != "tpot_ms"; }

std::vector<ErrorGroup> error_groups(const std::vector<PublishedResult>& rows) {
  // Rows that ran, keyed each way; std::map keeps the keys sorted.
  std::map<std::pair<std::string, std::string>, std::vector<const PublishedResult*>> by;
  for (const auto& r : rows) {
    if (!r.failure.empty()) continue;
    const std::string phase = metric_phase(r.point.metric);
    by[{"all", "all"}].push_back(&r);
    by[{"engine", r.point.engine}].push_back(&r);
    by[{"vendor", r.point.vendor}].push_back(&r);
    by[{"phase", phase}].push_back(&r);
    by[{"engine+phase", r.point.engine + "+" + phase}].push_back(&r);
  }
  std::vector<ErrorGroup> out;
  for (const char* dim : {"all", "engine", "vendor", "phase", "engine+phase"})
    for (const auto& [key, members] : by) {
      if (key.first != dim) continue;
      ErrorGroup g;
      g.by = key.first;
      g.key = key.second;
      g.n = static_cast<int>(members.size());
      std::vector<double> abs_err, resid;
      for (const PublishedResult* r : members) {
        abs_err.push_back(std::fabs(r->error));
        // Rate form: measured/predicted − 1 for rates; predicted/measured − 1 for latencies.
        const double ratio = 1.0 + r->error;  // predicted / measured
        resid.push_back(metric_is_rate(r->point.metric) ? 1.0 / ratio - 1.0 : ratio - 1.0);
      }
      std::sort(abs_err.begin(), abs_err.end());
      std::sort(resid.begin(), resid.end());
      g.median_abs = median(abs_err);
      g.p90_abs = nearest_rank(abs_err, 0.9);
      g.q05 = nearest_rank(resid, 0.05);
      g.q95 = nearest_rank(resid, 0.95);
      out.push_back(g);
    }
  return out;
}

std::string error_bars_yaml(const PublishedSummary& summary, const std::string& points_file) {
  YAML::Emitter y;
  y.SetDoublePrecision(4);
  y << YAML::Comment(
      "Error of moeplan simulate on the published measurements, by group (moeplan validate --published "
      "--write-error-bars). Residual r = measured/predicted - 1 for rates, predicted/measured - 1 for latencies; "
      "simulate prints a rate p as [p (1 + q05), p (1 + q95)]. No constant of the simulator is fitted to these rows, "
      "so leave-one-out residuals equal these. docs/simulator.md");
  y << YAML::BeginMap;
  y << YAML::Key << "points" << YAML::Value << points_file;
  y << YAML::Key << "groups" << YAML::Value << YAML::BeginSeq;
  for (const ErrorGroup& g : summary.groups) {
    y << YAML::Flow << YAML::BeginMap;
    y << YAML::Key << "by" << YAML::Value << g.by << YAML::Key << "key" << YAML::Value << g.key;
    y << YAML::Key << "rows" << YAML::Value << g.n;
    for (const auto& [k, v] : {std::pair{"median_abs_error", g.median_abs}, std::pair{"p90_abs_error", g.p90_abs},
                               std::pair{"q05", g.q05}, std::pair{"q95", g.q95}}) {
      y << YAML::Key << k << YAML::Value << v;
    }
    y << YAML::EndMap;
  }
  y << YAML::EndSeq << YAML::EndMap;
  return std::string(y.c_str()) + "\n";
}

std::vector<ErrorGroup> load_error_bars(const std::filesystem::path& path) {
  const YAML::Node root = parse_yaml_file(path);
  const std::string file = path.string();
  if (!root["groups"] || !root["groups"].IsSequence()) throw InputError(file + ": expected a 'groups' list");
  std::vector<ErrorGroup> out;
  for (const YAML::Node& n : root["groups"]) {
    const std::string where = file + ":" + std::to_string(n.Mark().line + 1);
    ErrorGroup g;
    g.by = yaml_get<std::string>(n, "by", where);
    g.key = yaml_get<std::string>(n, "key", where);
    g.n = yaml_get<int>(n, "rows", where);
    g.median_abs = yaml_get<double>(n, "median_abs_error", where);
    g.p90_abs = yaml_get<double>(n, "p90_abs_error", where);
    g.q05 = yaml_get<double>(n, "q05", where);
    g.q95 = yaml_get<double>(n, "q95", where);
    if (g.n < 1 || !(g.q05 > -1) || !(g.q95 >= g.q05) || !std::isfinite(g.q95))
      throw InputError(where + ": rows must be positive and -1 < q05 <= q95");
    out.push_back(g);
  }
  return out;
}

const ErrorGroup* find_error_group(const std::vector<ErrorGroup>& groups, const std::string& by, const std::string& key,
                                   int min_rows) {
  for (const ErrorGroup& g : groups)
    if (g.by == by && g.key == key && g.n >= min_rows) return &g;
  return nullptr;
}

}  // namespace moeplan::simulator
