// simulator/published: the published-measurement check (see published.hpp).
#include "simulator/published.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/files.hpp"
#include "model/config.hpp"
#include "model/precision.hpp"
#include "simulator/engine.hpp"

namespace moeplan::simulator {

PublishedSet load_published(const std::filesystem::path& path) {
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
    p.gpu = yaml_get<std::string>(n, "gpu", where);
    p.precision = yaml_get<std::string>(n, "precision", where);
    p.kv_dtype = yaml_get<std::string>(n, "kv_dtype", where);
    p.source = yaml_get<std::string>(n, "source", where);
    p.metric = yaml_get<std::string>(n, "metric", where);
    p.load = yaml_get<std::string>(n, "load", where);
    p.count = yaml_get<int>(n, "count", where);
    p.tp = yaml_get<int>(n, "tp", where);
    p.dp = yaml_get<int>(n, "dp", where);
    p.ep = yaml_get<int>(n, "ep", where);
    if (n["pp"]) p.pp = yaml_get<int>(n, "pp", where);
    p.input = yaml_get<std::int64_t>(n, "input", where);
    p.output = yaml_get<std::int64_t>(n, "output", where);
    if (p.load == "closed" || p.load == "static") p.concurrency = yaml_get<std::int64_t>(n, "concurrency", where);
    else if (p.load != "max") throw InputError(where + ": load must be max, closed or static");
    const YAML::Node& mb = n["max_batch"] ? n : defaults;
    p.max_batch = yaml_get<std::int64_t>(mb, "max_batch", where);
    const YAML::Node& mt = n["max_num_batched_tokens"] ? n : defaults;
    p.max_num_batched_tokens = yaml_get<std::int64_t>(mt, "max_num_batched_tokens", where);
    if (n["num_requests"]) p.num_requests = yaml_get<std::int64_t>(n, "num_requests", where);
    if (n["engine"]) p.engine = yaml_get<std::string>(n, "engine", where);
    if (n["engine_version"]) p.engine_version = yaml_get<std::string>(n, "engine_version", where);
    if (n["url"]) p.url = yaml_get<std::string>(n, "url", where);
    if (n["stat"]) p.stat = yaml_get<std::string>(n, "stat", where);
    p.value = yaml_get<double>(n, "value", where);
    if (!(p.value > 0)) throw InputError(where + ": value must be positive");
    static const std::vector<std::string> kMetrics = {"output_tokens_per_s", "output_tokens_per_s_per_gpu",
                                                      "output_tokens_per_s_per_user", "ttft_ms", "tpot_ms"};
    if (std::find(kMetrics.begin(), kMetrics.end(), p.metric) == kMetrics.end())
      throw InputError(where + ": unknown metric '" + p.metric + "'");
    set.points.push_back(std::move(p));
  }
  if (root["excluded"])
    for (const YAML::Node& n : root["excluded"])
      set.excluded.emplace_back(yaml_get<std::string>(n, "id", file), yaml_get<std::string>(n, "reason", file));
  return set;
}

PublishedSummary validate_published(const PublishedSet& set, const gpu_db::Database& db,
                                    const std::filesystem::path& data_dir, const std::vector<std::string>& only,
                                    const std::string& engine_override) {
  const auto precisions = model::PrecisionTable::load(data_dir / "precisions.yaml");
  const auto engines = gpu_db::EngineTable::load(data_dir / "engines.yaml");
  if (!engine_override.empty()) engines.engine(engine_override);  // an unknown --engine is bad input, not a row failure
  for (const PublishedPoint& p : set.points)
    if (!p.engine.empty()) engines.engine(p.engine);
  PublishedSummary s;
  std::vector<double> errors;
  for (const PublishedPoint& p : set.points) {
    if (!only.empty() && std::find(only.begin(), only.end(), p.id) == only.end()) continue;
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
      q.hardware = gpu_hardware(db, db.gpu(p.gpu));
      q.limits.max_batch = p.max_batch;
      q.limits.max_num_batched_tokens = p.max_num_batched_tokens;
      q.workload.input_tokens = p.input;
      q.workload.output_tokens = p.output;
      q.workload.mode = p.load == "max" ? LoadMode::max : p.load == "static" ? LoadMode::static_batch : LoadMode::closed;
      q.workload.concurrency = p.concurrency;
      q.workload.num_requests = p.num_requests;
      // The row states its batch, token budget and KV dtype: only the engine's overheads apply.
      const gpu_db::EngineSpec& e = engines.engine(!engine_override.empty() ? engine_override : p.engine.empty() ? "generic" : p.engine);
      r.engine = e.name;
      engines.require_runs_on(e, db.gpu(p.gpu));
      apply_engine(q, e, EngineChoices{true, true, true});
      const SimulateResult res = simulate(q);
      const ServingResult& v = res.serving;
      if (p.metric == "output_tokens_per_s") r.predicted = v.output_tokens_per_s;
      else if (p.metric == "output_tokens_per_s_per_gpu") r.predicted = v.output_tokens_per_s_per_gpu;
      else if (p.metric == "output_tokens_per_s_per_user") r.predicted = v.output_tokens_per_s_per_user;
      else if (p.metric == "ttft_ms") r.predicted = v.ttft_ms.mean;
      else r.predicted = v.tpot_ms.mean;
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
    const std::size_t n = errors.size();
    s.median_abs_error = n % 2 ? errors[n / 2] : 0.5 * (errors[n / 2 - 1] + errors[n / 2]);
    s.p90_abs_error = errors[std::min(n - 1, static_cast<std::size_t>(std::ceil(0.9 * static_cast<double>(n))) - 1)];
  }
  return s;
}

}  // namespace moeplan::simulator
