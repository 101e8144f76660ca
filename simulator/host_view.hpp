// simulator/host_view: the RAM view (`moeplan hosts`). For each CPU / unified-memory host x precision: the RAM the
// model needs at a context (simulator/memory in host mode), whether it fits, the next standard RAM size, and decode
// and prompt tokens/s as `moeplan simulate` computes them with the llama.cpp engine; and one-GPU rows with the routed
// experts in host RAM (simulate --offload-experts), GPU and host memory apart. Rules: docs/views.md "moeplan hosts".
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "gpu_db/engines.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/kv_cache.hpp"
#include "model/precision.hpp"
#include "simulator/hardware.hpp"
#include "simulator/memory.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::simulator {

// A RAM size one can buy (data/ram_sizes.yaml, gpu_db::Database::ram_sizes(): DIMM counts x DIMM sizes).
using RamSize = gpu_db::RamSize;
// The smallest of `sizes` (ascending) that holds `needed_bytes` with kHostUsableShare of it usable (the OS and
// llama.cpp's host buffers keep the rest, as simulate assumes for offload hosts); nullopt when none does.
std::optional<RamSize> recommended_ram_size(double needed_bytes, const std::vector<RamSize>& sizes);

// One host as simulate prices it: a measured profile when hosts.yaml names one, else llama.cpp's rates
// (simulator::llamacpp_host). `notes` receives where each figure came from.
struct HostTarget {
  gpu_db::HostSpec host;
  Hardware hardware;
  std::vector<std::string> notes;
};
HostTarget host_target(const gpu_db::Database& db, const std::filesystem::path& data_dir, const gpu_db::HostSpec& host,
                       const HostFlags& flags);

struct HostViewRequest {
  const model::ModelConfig* model = nullptr;
  std::vector<model::Precision> precisions;
  std::vector<HostTarget> hosts;            // RAM rows
  std::vector<Hardware> offload_gpus;       // one GPU each, with its llama.cpp kernel tables
  std::optional<HostTarget> offload_host;   // whose RAM holds the offloaded experts (priced cpu-only)
  const gpu_db::EngineSpec* engine = nullptr;  // llama.cpp: KV dtype, token budget and overheads
  std::int64_t context_tokens = 8192;       // tokens per sequence (prompt + output)
  std::int64_t concurrency = 1;             // sequences resident at once
  std::int64_t output_tokens = 128;         // generated per request; the prompt is context - output
  std::optional<model::KvDtype> kv_dtype;   // unset: the engine's (llama.cpp keeps f16)
  model::KvMode kv_mode = model::KvMode::model_aware;
  double gpu_memory_utilization = 0.90;     // offload rows: share of GPU memory usable
  std::vector<RamSize> ram_sizes;           // the sizes "recommended RAM" picks from (gpu_db::Database::ram_sizes())
};

struct HostRow {
  std::string device;            // host name, or "GPU + host" for offload rows
  std::string kind;              // cpu | unified | offload
  std::string precision;         // canonical spec
  std::string kv_dtype;
  bool offload = false;
  // Host RAM (RAM rows: everything; offload rows: the experts). Free is never negative.
  double ram_capacity_bytes = 0;
  double ram_needed_bytes = 0;   // weights + KV + activations in RAM
  double ram_free_bytes = 0;     // max(0, usable - needed)
  double weights_bytes = 0, kv_bytes = 0;  // in RAM
  std::optional<RamSize> recommended;      // next standard size for the RAM needed (none: above the list)
  // Offload rows: the GPU's memory (weights left on it, KV, activations, overhead) and the host's, apart.
  std::optional<DeviceMemory> gpu_memory, host_memory;
  bool fits = false;
  std::string why_not;           // when it does not fit or was not simulated
  // Simulated with the llama.cpp engine at this context (0 when not simulated).
  double decode_tokens_per_s = 0;  // per sequence: mean of 1 / TPOT
  double prompt_tokens_per_s = 0;  // prompt tokens / mean TTFT
  std::int64_t prompt_tokens = 0;
};

struct HostView {
  std::vector<HostRow> rows;     // hosts x precisions, then offload GPUs x precisions
  std::vector<std::string> notes;
};

// Throws InputError for impossible requests (context above the model's limit or not above the output tokens).
HostView host_view(const HostViewRequest& request);

}  // namespace moeplan::simulator
