#include "gpu_db/engines.hpp"

#include <algorithm>
#include <set>

#include <yaml-cpp/yaml.h>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/numeric.hpp"
#include "common/text.hpp"

namespace moeplan::gpu_db {

namespace {

std::string line_of(const std::string& file, const YAML::Node& n) { return file + ":" + std::to_string(n.Mark().line + 1); }

// cuda_graph_batch_sizes: ascending positive sizes ending at cuda_graph_max_batch; padding needs them.
void check_graph_batch_sizes(const EngineSpec& s, const std::string& where) {
  const auto& b = s.cuda_graph_batch_sizes;
  if (!positive_ascending(b)) throw InputError(where + ": cuda_graph_batch_sizes must be positive and ascending");
  if (!b.empty() && b.back() != s.cuda_graph_max_batch)
    throw InputError(where + ": cuda_graph_batch_sizes must end at cuda_graph_max_batch (" +
                     std::to_string(s.cuda_graph_max_batch) + ")");
  if (s.cuda_graph_padding && (b.empty() || !s.cuda_graphs))
    throw InputError(where + ": cuda_graph_padding needs cuda_graphs and cuda_graph_batch_sizes");
}

// One engine entry: plain keys (name, display_name, aliases) and sourced keys {value, source, read}.
class EngineEntry {
 public:
  EngineEntry(const YAML::Node& n, const std::string& file) : n_(n), file_(file), where_(line_of(file, n)) {
    if (!n.IsMap()) throw InputError(where_ + ": expected a map of engine fields");
    static const std::set<std::string> allowed = {
        "name", "display_name", "aliases", "versions", "vendors", "architectures", "hosts", "kv_dtype_modelopt",
        "max_batch", "max_num_batched_tokens", "chunked_prefill", "cuda_graphs", "cuda_graph_max_batch", "scheduler",
        "moe_kernels", "step_overhead_us", "op_overhead_us", "op_overhead_eager_us", "formats", "expert_parallel",
        "multi_node", "gemv_max_rows", "dequant_compute", "kv_window_aware", "bench_batch_settings", "expert_tile_rows_cuda",
        "expert_tile_rows_metal", "prefill_in_ubatches", "cuda_graph_padding", "cuda_graph_batch_sizes", "moe_dp_comm", "moe_dp_quantized_dispatch", "notes"};
    for (const auto& kv : n) {
      const auto key = kv.first.as<std::string>();
      if (!allowed.count(key))
        throw InputError(line_of(file, kv.first) + ": unknown engine field '" + key + "' (allowed: " +
                         join(std::vector<std::string>(allowed.begin(), allowed.end()), ", ") + ")");
    }
  }
  const std::string& where() const { return where_; }
  bool has(const char* key) const { return n_[key] && !n_[key].IsNull(); }
  template <typename T>
  T plain(const char* key) const {
    if (!has(key)) throw InputError(where_ + ": missing field '" + key + "'");
    try {
      return n_[key].as<T>();
    } catch (const YAML::Exception&) {
      throw InputError(line_of(file_, n_[key]) + ": field '" + key + "' has the wrong type");
    }
  }
  // A sourced value: {value: V, source: "...", read: YYYY-MM-DD}; records its source in `spec`.
  template <typename T>
  T sourced(const char* key, EngineSpec& spec) const {
    if (!has(key)) throw InputError(where_ + ": missing field '" + key + "' (each engine states every default with its source)");
    const YAML::Node v = n_[key];
    const std::string at = line_of(file_, v);
    if (!v.IsMap()) throw InputError(at + ": field '" + key + "' must be {value, source, read}");
    for (const auto& kv : v) {
      const auto k = kv.first.as<std::string>();
      if (k != "value" && k != "source" && k != "read" && k != "notes")
        throw InputError(at + ": field '" + key + "' has unknown key '" + k + "' (use value, source, read)");
    }
    for (const char* part : {"value", "source", "read"})
      if (!v[part] || v[part].IsNull() || (v[part].IsScalar() && v[part].Scalar().empty()))
        throw InputError(at + ": field '" + key + "' has no " + part + " (every engine value needs a source and the date read)");
    T out{};
    try {
      out = v["value"].as<T>();
    } catch (const YAML::Exception&) {
      throw InputError(line_of(file_, v["value"]) + ": field '" + key + ".value' has the wrong type");
    }
    EngineSource s;
    try {
      s.source = v["source"].as<std::string>();
      s.read = v["read"].as<std::string>();
    } catch (const YAML::Exception&) {
      throw InputError(at + ": field '" + key + "': source and read must be text");
    }
    spec.sources[key] = s;
    return out;
  }
  template <typename T>
  T sourced_or(const char* key, T fallback, EngineSpec& spec) const { return has(key) ? sourced<T>(key, spec) : fallback; }

 private:
  const YAML::Node& n_;
  std::string file_, where_;
};

}  // namespace

bool EngineSpec::runs_on(const GpuSpec& gpu) const {
  const std::string vendor = to_lower(gpu.vendor), arch = to_lower(gpu.architecture);
  if (std::find(vendors.begin(), vendors.end(), vendor) == vendors.end()) return false;
  return std::find(architectures.begin(), architectures.end(), "any") != architectures.end() ||
         std::find(architectures.begin(), architectures.end(), arch) != architectures.end();
}

bool EngineSpec::loads(const std::string& format) const {
  return formats.empty() || std::find(formats.begin(), formats.end(), format) != formats.end();
}

EngineTable EngineTable::load(const std::filesystem::path& path) {
  const std::string file = path.string();
  const YAML::Node root = parse_yaml_file(path);
  if (!root.IsMap() || !root["engines"] || !root["engines"].IsSequence())
    throw InputError(file + ": expected a top-level 'engines' list");
  EngineTable t;
  std::set<std::string> ids;
  for (const YAML::Node& n : root["engines"]) {
    const EngineEntry e(n, file);
    EngineSpec s;
    s.name = to_lower(e.plain<std::string>("name"));
    s.display_name = e.has("display_name") ? e.plain<std::string>("display_name") : s.name;
    if (e.has("aliases"))
      for (const auto& a : e.plain<std::vector<std::string>>("aliases")) s.aliases.push_back(to_lower(a));
    s.versions = e.sourced<std::string>("versions", s);
    s.vendors = e.sourced<std::vector<std::string>>("vendors", s);
    for (auto& v : s.vendors) v = to_lower(v);
    s.architectures = e.sourced<std::vector<std::string>>("architectures", s);
    for (auto& a : s.architectures) a = to_lower(a);
    if (s.vendors.empty() || s.architectures.empty()) throw InputError(e.where() + ": vendors and architectures must not be empty");
    s.hosts = e.sourced<bool>("hosts", s);
    s.kv_dtype_modelopt = e.sourced<std::string>("kv_dtype_modelopt", s);
    if (s.kv_dtype_modelopt != "bf16" && s.kv_dtype_modelopt != "fp16" && s.kv_dtype_modelopt != "fp8")
      throw InputError(e.where() + ": field 'kv_dtype_modelopt' must be bf16, fp16 or fp8");
    s.max_batch = e.sourced<std::int64_t>("max_batch", s);
    s.max_num_batched_tokens = e.sourced<std::int64_t>("max_num_batched_tokens", s);
    s.chunked_prefill = e.sourced<bool>("chunked_prefill", s);
    s.cuda_graphs = e.sourced<bool>("cuda_graphs", s);
    s.cuda_graph_max_batch = e.sourced<std::int64_t>("cuda_graph_max_batch", s);
    s.cuda_graph_padding = e.sourced_or<bool>("cuda_graph_padding", false, s);
    s.cuda_graph_batch_sizes = e.sourced_or<std::vector<std::int64_t>>("cuda_graph_batch_sizes", {}, s);
    check_graph_batch_sizes(s, e.where());
    const std::string comm = e.sourced_or<std::string>("moe_dp_comm", "all_to_all", s);
    if (comm != "all_to_all" && comm != "allgather")
      throw InputError(e.where() + ": moe_dp_comm must be all_to_all or allgather");
    s.moe_dp_allgather = comm == "allgather";
    s.moe_dp_quantized_dispatch = e.sourced_or<bool>("moe_dp_quantized_dispatch", false, s);
    s.scheduler = e.sourced<std::string>("scheduler", s);
    s.moe_kernels = e.sourced<std::string>("moe_kernels", s);
    s.step_overhead_us = e.sourced<double>("step_overhead_us", s);
    s.op_overhead_us = e.sourced<double>("op_overhead_us", s);
    s.op_overhead_eager_us = e.sourced<double>("op_overhead_eager_us", s);
    s.formats = e.sourced_or<std::vector<std::string>>("formats", {}, s);
    s.expert_parallel = e.sourced_or<bool>("expert_parallel", true, s);
    s.multi_node = e.sourced_or<bool>("multi_node", true, s);
    s.gemv_max_rows = e.sourced_or<std::int64_t>("gemv_max_rows", 0, s);
    s.dequant_compute = e.sourced_or<double>("dequant_compute", 0, s);
    s.kv_window_aware = e.sourced_or<bool>("kv_window_aware", true, s);
    s.bench_batch_settings = e.sourced_or<std::string>("bench_batch_settings", "", s);
    if (!s.bench_batch_settings.empty() && s.bench_batch_settings != "trtllm-bench")
      throw InputError(e.where() + ": bench_batch_settings must be trtllm-bench (or absent)");
    s.expert_tile_rows_cuda = e.sourced_or<std::int64_t>("expert_tile_rows_cuda", 0, s);
    s.expert_tile_rows_metal = e.sourced_or<std::int64_t>("expert_tile_rows_metal", 0, s);
    s.prefill_in_ubatches = e.sourced_or<bool>("prefill_in_ubatches", false, s);
    for (const std::int64_t rows : {s.expert_tile_rows_cuda, s.expert_tile_rows_metal})
      if (rows < 0 || rows > 1024 || rows % 8 != 0)
        throw InputError(e.where() + ": expert_tile_rows_cuda / _metal must be a multiple of 8 from 0 to 1024");
    if (s.gemv_max_rows < 0 || s.gemv_max_rows > 1024)
      throw InputError(e.where() + ": gemv_max_rows must be 0 to 1024");
    if (e.has("dequant_compute") && !(s.dequant_compute > 0 && s.dequant_compute <= 1))
      throw InputError(e.where() + ": dequant_compute must be in (0, 1] (or absent)");
    if (s.max_batch < 1 || s.max_num_batched_tokens < 1 || s.cuda_graph_max_batch < 0)
      throw InputError(e.where() + ": max_batch and max_num_batched_tokens must be positive");
    if (s.step_overhead_us < 0 || s.op_overhead_us < 0 || s.op_overhead_eager_us < 0)
      throw InputError(e.where() + ": overheads must not be negative");
    std::vector<std::string> all = s.aliases;
    all.push_back(s.name);
    for (const auto& id : all)
      if (!ids.insert(id).second) throw InputError(e.where() + ": engine name or alias '" + id + "' is used twice");
    t.engines_.push_back(std::move(s));
  }
  for (const char* required : {"generic", "trtllm", "vllm", "llamacpp"})
    if (!ids.count(required)) throw InputError(file + ": engine '" + required + "' is missing");
  return t;
}

const EngineSpec& EngineTable::engine(const std::string& name_in) const {
  const std::string name = to_lower(name_in);
  for (const auto& e : engines_) {
    if (e.name == name) return e;
    for (const auto& a : e.aliases)
      if (a == name) return e;
  }
  std::vector<std::string> candidates = names();
  for (const auto& e : engines_) candidates.insert(candidates.end(), e.aliases.begin(), e.aliases.end());
  throw InputError(unknown_name_message("engine", name_in, candidates,
                                        "engines: " + join(names(), ", ") + ", or auto / default (data/engines.yaml)"));
}

std::vector<std::string> EngineTable::names() const {
  std::vector<std::string> out;
  for (const auto& e : engines_) out.push_back(e.name);
  return out;
}

std::vector<const EngineSpec*> EngineTable::supporting(const GpuSpec& gpu) const {
  std::vector<const EngineSpec*> out;
  for (const auto& e : engines_)
    if (e.runs_on(gpu)) out.push_back(&e);
  return out;
}

std::vector<const EngineSpec*> EngineTable::supporting_hosts() const {
  std::vector<const EngineSpec*> out;
  for (const auto& e : engines_)
    if (e.hosts) out.push_back(&e);
  return out;
}

// NVIDIA: TensorRT-LLM, NVIDIA's own engine. AMD: vLLM, whose ROCm build covers MI200 as well as MI300/MI350 (SGLang's
// covers MI300 and later) and for which AMD publishes validated rocm/vllm images. Intel Gaudi: vLLM (vllm-gaudi).
const EngineSpec& EngineTable::vendor_default(const GpuSpec& gpu) const {
  const std::string vendor = to_lower(gpu.vendor);
  const EngineSpec& e = engine(vendor == "nvidia" ? "trtllm" : "vllm");
  if (e.runs_on(gpu)) return e;
  for (const char* fallback : {"vllm", "llamacpp"})
    if (engine(fallback).runs_on(gpu)) return engine(fallback);
  return engine("generic");
}

void EngineTable::require_runs_on(const EngineSpec& e, const GpuSpec& gpu) const {
  if (e.runs_on(gpu)) return;
  std::vector<std::string> ok;
  for (const EngineSpec* s : supporting(gpu)) ok.push_back(s->name);
  throw InputError("--engine " + e.name + " does not run on " + gpu.name + " (" + gpu.vendor + " " + gpu.architecture +
                   "); engines that do: " + join(ok, ", "));
}

void EngineTable::require_runs_on_hosts(const EngineSpec& e) const {
  if (e.hosts) return;
  std::vector<std::string> ok;
  for (const EngineSpec* s : supporting_hosts()) ok.push_back(s->name);
  throw InputError("--engine " + e.name + " does not run on CPU / unified-memory hosts; engines that do: " + join(ok, ", "));
}

}  // namespace moeplan::gpu_db
