// app/config_options: the option group that names one serving configuration (model, device, count, precision, KV
// cache, engine memory, parallel layout, host), shared by `memory` and `simulate`, its resolution into library
// values, and the request fields it fills.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "app/option_groups.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/kv_cache.hpp"
#include "model/precision.hpp"
#include "model/shard.hpp"
#include "simulator/hardware.hpp"
#include "simulator/memory.hpp"
#include "simulator/profile.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::app {

struct ConfigOptions {
  std::string model_name, gpu_name, host_name, precision_spec;
  KvOptions kv;
  EngineMemoryOptions engine_memory;
  int count = 0, tp = 0, ep = 1, pp = 1, dp = 1;
  double ram_gb = 0;
  std::string profile;
};

void add_config_options(boost::program_options::options_description& d, ConfigOptions& o);

// What the options resolve to. `host` is set in host mode (--host / --ram-gb), `gpu` otherwise.
struct ResolvedConfig {
  model::ModelConfig model;
  std::shared_ptr<const model::PrecisionTable> precisions;  // Precision points into it
  model::Precision precision;
  model::ParallelLayout layout;
  model::KvDtype kv_dtype = model::KvDtype::bf16;
  model::KvMode kv_mode = model::KvMode::model_aware;
  std::int64_t max_num_batched_tokens = 0;
  double gpu_memory_utilization = 0;
  const gpu_db::GpuSpec* gpu = nullptr;
  std::optional<gpu_db::HostSpec> host;   // a database host or one made from --ram-gb
  bool host_mode = false;
  // A measured host profile (--profile FILE, or the hosts.yaml entry's `profile`): host mode priced from it.
  std::shared_ptr<const simulator::HostProfile> profile;
};

// Validates ranges and combinations (one InputError line each) and loads model, precision and device.
// `db` must outlive the result (gpu points into it).
ResolvedConfig resolve_config(const ConfigOptions& o, const boost::program_options::variables_map& vm,
                              const gpu_db::Database& db);

// The fields of a simulate request the configuration names: model, precision, layout, KV cache, engine memory.
void fill_simulate_request(simulator::SimulateRequest& q, const ResolvedConfig& c);
// The memory request of the configuration (simulator::memory_request of its simulate request) on its device (a GPU,
// or the host in host mode), at `context_tokens` per sequence and `concurrency` sequences.
simulator::MemoryRequest memory_request(const ResolvedConfig& c, std::int64_t context_tokens, std::int64_t concurrency);

// --precisions "a,b": each resolved to the model family's usual policy (as --precision is); a precision named twice
// (after resolving) once; an empty list is an InputError.
std::vector<model::Precision> precision_list(const std::string& list, const model::ModelConfig& m,
                                             const model::PrecisionTable& table);

// --mem-bandwidth-gbps, --host-tflops, --host-cores: a host's rates given on the command line (simulate, hosts).
void add_host_flag_options(boost::program_options::options_description& d, simulator::HostFlags& flags);
// The host --ram-gb describes: a CPU host with that much RAM and no rates of its own.
gpu_db::HostSpec ram_gb_host(double ram_gb);

// Throws InputError when a numeric option is present and not > 0.
void require_positive(const boost::program_options::variables_map& vm, const char* name);

}  // namespace moeplan::app
