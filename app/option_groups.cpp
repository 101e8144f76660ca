// app/option_groups: the option groups several commands share (see option_groups.hpp).
#include "app/option_groups.hpp"

#include <algorithm>

#include "app/cli.hpp"
#include "common/error.hpp"
#include "common/text.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

void add_model_option(po::options_description& d, std::string& model_name, const char* help) {
  d.add_options()("model", po::value<std::string>(&model_name)->default_value("llama4-maverick"), help);
}

void add_kv_dtype_option(po::options_description& d, std::string& dtype, const char* default_dtype, const char* help) {
  auto* value = po::value<std::string>(&dtype);
  if (default_dtype) value->default_value(default_dtype);
  d.add_options()("kv-dtype", value, help);
}

void add_kv_mode_option(po::options_description& d, std::string& mode) {
  d.add_options()(
      "kv-mode", po::value<std::string>(&mode)->default_value("model-aware"),
      "model-aware (chunked/sliding layers keep only their chunk/window) or full-length (every layer keeps all)");
}

void add_kv_options(po::options_description& d, KvOptions& o) {
  add_kv_dtype_option(d, o.dtype);
  add_kv_mode_option(d, o.mode);
}

model::KvMode parse_kv_mode(const std::string& mode) {
  if (mode == "model-aware") return model::KvMode::model_aware;
  if (mode == "full-length") return model::KvMode::full_length;
  throw InputError("unknown --kv-mode '" + mode + "' (use model-aware or full-length)");
}

void add_gpu_memory_utilization_option(po::options_description& d, double& utilization) {
  d.add_options()("gpu-memory-utilization", po::value<double>(&utilization)->default_value(0.90),
                  "share of GPU memory the engine may use (vLLM default 0.90)");
}

void add_engine_memory_options(po::options_description& d, EngineMemoryOptions& o) {
  d.add_options()("max-num-batched-tokens", po::value<std::int64_t>(&o.max_batched)->default_value(8192),
                  "peak tokens in one forward pass (TensorRT-LLM max_num_tokens default 8192; sizes activations)");
  add_gpu_memory_utilization_option(d, o.utilization);
}

void add_load_options(po::options_description& d, LoadOptions& o, const char* context_help) {
  d.add_options()("context", po::value<std::int64_t>(&o.context)->default_value(8192), context_help)(
      "concurrency", po::value<std::int64_t>(&o.concurrency)->default_value(1), "sequences resident at once");
}

std::vector<const gpu_db::GpuSpec*> gpu_list(const std::string& list, const gpu_db::Database& db) {
  std::vector<const gpu_db::GpuSpec*> gpus;
  for (const auto& name : split_list(list))
    if (const gpu_db::GpuSpec* g = &db.gpu(name); std::find(gpus.begin(), gpus.end(), g) == gpus.end())
      gpus.push_back(g);
  if (gpus.empty()) throw InputError("--gpus is empty: name GPUs, e.g. h100-sxm,b200 (moeplan gpus lists them)");
  return gpus;
}

std::optional<std::int64_t> parse_integer(const std::string& text) {
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {  // not a number, or out of range
    return std::nullopt;
  }
  if (used == 0 || used != text.size()) return std::nullopt;
  return static_cast<std::int64_t>(value);
}

}  // namespace moeplan::app
