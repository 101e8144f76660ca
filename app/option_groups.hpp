// app/option_groups: the option groups that several commands take. Each group registers its options once (one name,
// default and help text) and turns what was given into library values with one set of checks; a command adds the
// groups it takes. The serving configuration (config_options.hpp) and the plan (plan_options.hpp) are built from
// them. Numeric bounds are app/limits.cpp's table, checked for every command right after parsing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "gpu_db/gpu_db.hpp"
#include "model/kv_cache.hpp"

namespace moeplan::app {

// --model: a built-in model name or the path of a Hugging Face config.json (default llama4-maverick). `help` says
// what the command does with it where that is more than the plain description.
void add_model_option(boost::program_options::options_description& d, std::string& model_name,
                      const char* help = "built-in model or path to config.json");

// --kv-dtype and --kv-mode: the KV cache's dtype and which layers keep the whole context.
struct KvOptions {
  std::string dtype, mode;
};
void add_kv_options(boost::program_options::options_description& d, KvOptions& o);
// The two alone. `default_dtype` nullptr: no default (the engine's KV dtype applies; `help` says which).
void add_kv_dtype_option(boost::program_options::options_description& d, std::string& dtype,
                         const char* default_dtype = "bf16", const char* help = "KV cache dtype: bf16, fp16, fp8");
void add_kv_mode_option(boost::program_options::options_description& d, std::string& mode);
// "model-aware" or "full-length"; anything else is an InputError naming --kv-mode.
model::KvMode parse_kv_mode(const std::string& mode);

// --max-num-batched-tokens and --gpu-memory-utilization: the engine's peak tokens per forward pass and its share of
// GPU memory (both bounded in app/limits.cpp).
struct EngineMemoryOptions {
  std::int64_t max_batched = 0;
  double utilization = 0;
};
void add_engine_memory_options(boost::program_options::options_description& d, EngineMemoryOptions& o);
void add_gpu_memory_utilization_option(boost::program_options::options_description& d, double& utilization);

// --context and --concurrency: the sequences held in memory at once.
struct LoadOptions {
  std::int64_t context = 0, concurrency = 0;
};
void add_load_options(boost::program_options::options_description& d, LoadOptions& o,
                      const char* context_help = "tokens of context per sequence");

// --gpus LIST: the GPUs named, each once (a GPU named twice, or by two aliases, once); an empty list is an
// InputError.
std::vector<const gpu_db::GpuSpec*> gpu_list(const std::string& list, const gpu_db::Database& db);

// A whole number as std::stoll reads it (leading blanks and a sign allowed, nothing after it); nullopt when `text`
// is not one or does not fit in 64 bits. Callers check the range and name the option in their message.
std::optional<std::int64_t> parse_integer(const std::string& text);

}  // namespace moeplan::app
