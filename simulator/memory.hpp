// simulator/memory: the per-GPU memory breakdown of a serving configuration (weights, KV cache, activations at
// the peak token budget, runtime overhead), whether it fits, and the largest concurrency that fits.
// Every formula and constant is derived in docs/memory.md.
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/kv_cache.hpp"
#include "model/precision.hpp"
#include "model/shard.hpp"

namespace moeplan::simulator {

// Runtime constants (docs/memory.md cites where each comes from).
struct RuntimeOverhead {
  double cuda_context_bytes = 0.5 * 1073741824.0;      // CUDA context + kernels loaded (per GPU process)
  double comm_buffers_bytes = 0.5 * 1073741824.0;      // NCCL buffers; only when more than one GPU
  double cuda_graphs_bytes = 0.5 * 1073741824.0;       // captured decode graphs
  double gpu_memory_utilization = 0.90;                // share of memory the engine may use (vLLM default)
};

struct MemoryRequest {
  const model::ModelConfig* model = nullptr;
  model::Precision precision;
  model::ParallelLayout layout;
  model::KvDtype kv_dtype = model::KvDtype::bf16;
  model::KvMode kv_mode = model::KvMode::model_aware;
  std::int64_t context_tokens = 8192;     // tokens of context per sequence (prompt + output)
  std::int64_t concurrency = 1;           // sequences resident at once, over all DP ranks
  std::int64_t max_num_batched_tokens = 8192;  // peak tokens in one forward pass (chunked-prefill budget)
  bool include_vision = false;
  const model::GroupBytes* group_bytes = nullptr;  // model::group_bytes(model, precision), when the caller has it
  // Device: memory capacity per GPU (or host RAM), and whether GPU runtime overhead applies.
  double capacity_bytes = 0;
  bool host_mode = false;                 // CPU / unified-memory host: no CUDA context, graphs or NCCL
  std::string device_name;
  RuntimeOverhead overhead;
};

struct MemoryBreakdown {
  model::WeightBytes weights;             // on the heaviest GPU
  double kv_bytes = 0;                    // KV cache on that GPU for `concurrency` sequences at `context_tokens`
  double kv_bytes_per_sequence = 0;       // KV one sequence places on that GPU
  double activation_bytes = 0;            // transient buffers at the peak token budget
  double overhead_bytes = 0;              // context + communication buffers + graphs
  double total_bytes = 0;                 // weights + kv + activations + overhead
  double capacity_bytes = 0;              // physical memory per GPU
  double usable_bytes = 0;                // capacity * gpu_memory_utilization (hosts: capacity)
  double free_bytes = 0;                  // usable - total (negative when it does not fit)
  bool fits = false;
  std::int64_t sequences_per_gpu = 0;     // sequences whose KV this GPU holds (concurrency / dp, rounded up)
  std::int64_t max_concurrency = 0;       // largest total concurrency that fits at this context (0: weights alone do not fit)
  std::int64_t kv_heads_per_gpu = 0;
};

// Throws InputError for impossible requests (layout, context above the model limit, non-positive numbers).
MemoryBreakdown memory_breakdown(const MemoryRequest& request);

}  // namespace moeplan::simulator
