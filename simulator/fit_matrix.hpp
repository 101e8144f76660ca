// simulator/fit_matrix: for each GPU x precision, the smallest GPU count whose per-GPU memory (simulator/memory)
// holds the weights, the KV cache of B sequences of C tokens, activations and runtime overhead; the headroom class
// at that count and the largest concurrency that fits there. Layout rule and thresholds: docs/views.md.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/kv_cache.hpp"
#include "model/precision.hpp"
#include "model/shard.hpp"
#include "simulator/memory.hpp"

namespace moeplan::simulator {

// How much of the usable memory (capacity x gpu_memory_utilization) is still free at the requested load.
enum class Headroom { no_fit, very_tight, tight, moderate, good, excellent };
const char* headroom_name(Headroom h);

// Lower bounds of the free share for each class that fits (a share equal to a bound belongs to the higher class):
// very tight [0, 5 %), tight [5 %, 15 %), moderate [15 %, 30 %), good [30 %, 50 %), excellent [50 %, 100 %].
// A negative free share (total above usable) is no_fit.
struct HeadroomBound {
  Headroom headroom;
  double min_free_share;
};
const std::vector<HeadroomBound>& headroom_bounds();  // ascending
Headroom classify_headroom(double free_share);
// "free share of usable memory: below 0 no fit; 0-5 % very tight; ..." for --help, reports and docs.
std::string headroom_bounds_text();

struct FitMatrixRequest {
  const model::ModelConfig* model = nullptr;
  std::vector<model::Precision> precisions;
  std::vector<const gpu_db::GpuSpec*> gpus;
  std::int64_t context_tokens = 8192;
  std::int64_t concurrency = 1;
  std::int64_t max_num_batched_tokens = 8192;
  model::KvDtype kv_dtype = model::KvDtype::bf16;
  model::KvMode kv_mode = model::KvMode::model_aware;
  double gpu_memory_utilization = 0.90;
  int max_gpus = 256;  // the largest count tried
};

struct FitCell {
  const gpu_db::GpuSpec* gpu = nullptr;
  std::string precision;          // canonical spec
  bool fits = false;
  int gpus = 0;                   // smallest count that fits (0: none up to max_gpus)
  model::ParallelLayout layout;   // the layout at that count
  int nodes = 0;                  // ceil(gpus / gpus_per_node)
  bool within_node = false;       // gpus <= gpus_per_node
  MemoryBreakdown memory;         // per GPU at that count (at the largest count tried when nothing fits)
  double free_share = 0;          // free / usable at that count
  Headroom headroom = Headroom::no_fit;
  std::int64_t max_concurrency = 0;  // largest concurrency at this context on that count
  bool native_compute = true;     // the GPU computes in the format's compute dtype (else: memory holds, speed differs)
  std::string compute_dtype;      // that dtype (precisions.yaml compute_dtype)
};

struct FitMatrix {
  std::vector<FitCell> cells;     // gpu-major, in request order
};

// The counts tried for one GPU, ascending, each with one layout: within a node tp = count (as `moeplan memory
// --count n`) when that divides the model; otherwise the widest tensor-parallel group that fits in a node and
// divides the model, times pp pipeline stages (pp divides the layers); otherwise, beyond a node, tp = count across
// nodes (models whose layer count allows no even pipeline split). Counts with none of these are skipped.
std::vector<model::ParallelLayout> fit_layouts(const model::ModelConfig& model, int gpus_per_node, int max_gpus);
// Every layout tried, grouped by count (ascending; counts with none left out): fit_layouts' one first, then the
// planner's (model::candidate_layouts: TP, TP+EP and attention-DP+EP over 1, 2 or 4 stages) that the model allows,
// each once. fit_matrix takes the smallest count where one fits and, there, the one with the most free memory.
std::vector<std::vector<model::ParallelLayout>> fit_layouts_by_count(const model::ModelConfig& model, int gpus_per_node,
                                                                     int max_gpus);

// Throws InputError for impossible requests (context above the model's limit, non-positive numbers).
FitMatrix fit_matrix(const FitMatrixRequest& request);

}  // namespace moeplan::simulator
