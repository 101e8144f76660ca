// simulator/simulate: one serving configuration end to end: memory fit → KV capacity → step prices → serving
// loop, plus per-op breakdowns of one prefill and one decode step. `moeplan simulate` and the planner call this.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/kv_cache.hpp"
#include "model/precision.hpp"
#include "model/shard.hpp"
#include "simulator/memory.hpp"
#include "simulator/serving.hpp"
#include "simulator/step_cost.hpp"

namespace moeplan::simulator {

struct RoutingOptions {
  double zipf_alpha = 0;           // > 0: Zipf-skewed router
  std::string loads_file;          // measured per-layer expert loads (overrides zipf)
};

struct SimulateRequest {
  const model::ModelConfig* model = nullptr;
  model::Precision precision;
  model::ParallelLayout layout;
  model::KvDtype kv_dtype = model::KvDtype::bf16;
  model::KvMode kv_mode = model::KvMode::model_aware;
  Hardware hardware;               // the GPU (or the host, for CPU-only inference)
  std::optional<Hardware> offload_host;
  Offload offload;
  RoutingOptions routing;
  ServingLimits limits;            // max_batch and max_num_batched_tokens; KV fields are filled in here
  Workload workload;
  double gpu_memory_utilization = 0.90;
  // Prefill/decode disaggregation: a separate pool of `prefill_replicas` copies of the same layout prefills prompts
  // and hands the KV over `--internode` to the decode pool (0: aggregated serving on one pool).
  int prefill_replicas = 0;
  bool with_breakdown = false;
  // The serving engine (data/engines.yaml; simulator/engine.hpp applies its defaults): carried so results name it and
  // engine-specific kernel tables can be chosen by it. "generic": the plain roofline.
  std::string engine = "generic", engine_version, engine_source;
  // How attention-DP ranks reach the experts (the engine's default communication; op graph MoeDpComm), and whether
  // the gather carries quantized activations.
  model::MoeDpComm moe_dp_comm = model::MoeDpComm::all_to_all;
  bool quantized_dispatch = false;
};

// What one device holds at the peak batch when a GPU offloads to host RAM (each side separately; free is never
// negative: a layout that does not fit is refused before it is simulated).
struct DeviceMemory {
  std::string device;
  double capacity_bytes = 0, usable_bytes = 0;
  double weights_bytes = 0, kv_bytes = 0, activation_bytes = 0, overhead_bytes = 0, free_bytes = 0;
  bool fits = true;
};

struct SimulateResult {
  MemoryBreakdown memory;          // at the workload's context, at the batch the simulation reached
  std::optional<DeviceMemory> gpu_memory, host_memory;  // offloading only: the GPU's and the host's shares
  ServingResult serving;
  std::vector<OpTime> prefill_ops, decode_ops;  // breakdowns (when asked)
  double prefill_step_s = 0, decode_step_s = 0; // the two breakdown steps
  std::int64_t prefill_step_tokens = 0, decode_step_batch = 0, decode_step_context = 0;
  model::StepValues prefill_values{}, decode_values{};  // the step variables of the two breakdown steps
  double kv_transfer_s = 0;        // disaggregated: KV hand-off per request
  int gpus = 0;                    // GPUs in the replica (both pools when disaggregated)
  std::vector<std::string> assumptions;
  std::string routing;
  std::string engine, engine_version;  // from the request
};

// Throws InputError for impossible configurations (layout, lengths, memory).
// The memory request of a simulated configuration on its hardware, at `context_tokens` per sequence and
// `concurrency` sequences resident over all DP ranks (the peak step's activations spread over them).
MemoryRequest memory_request(const SimulateRequest& request, std::int64_t context_tokens, std::int64_t concurrency);
SimulateResult simulate(const SimulateRequest& request);

// Share of an offload host's RAM that holds offloaded weights and KV: 5 % is left to the OS and llama.cpp's host
// buffers (assumption).
inline constexpr double kHostUsableShare = 0.95;
// Weight bytes an offload moves to host memory (the replica is one GPU when offloading).
double offloaded_bytes(const model::ModelConfig& m, const model::Precision& p, const Offload& o);

}  // namespace moeplan::simulator
