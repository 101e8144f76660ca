// simulator/memory_sweep: `moeplan memory --sweep context|concurrency`: the memory per GPU of one configuration
// (simulator/memory) for each precision at a series of context lengths or concurrencies, and optionally the
// smallest count of the GPU that holds each (simulator/fit_matrix's layouts). docs/views.md "moeplan memory --sweep".
#pragma once
#include <cstdint>
#include <vector>

#include "gpu_db/gpu_db.hpp"
#include "model/precision.hpp"
#include "simulator/memory.hpp"

namespace moeplan::simulator {

enum class SweepAxis { context, concurrency };
const char* sweep_axis_name(SweepAxis a);
// "context" / "concurrency"; anything else is an InputError naming --sweep.
SweepAxis parse_sweep_axis(const std::string& name);

// The values swept: contexts 1,024 x 2^k up to min(1,048,576, the model's max context), plus that max when it is not
// a power of two; concurrencies 1, 2, 4, ... up to `max_concurrency`.
std::vector<std::int64_t> sweep_values(SweepAxis axis, std::int64_t model_max_context, std::int64_t max_concurrency);

struct MemorySweepRequest {
  MemoryRequest base;                       // the configuration; precision, context or concurrency are replaced
  std::vector<model::Precision> precisions;
  SweepAxis axis = SweepAxis::context;
  std::vector<std::int64_t> values;         // ascending
  const gpu_db::GpuSpec* fit_gpu = nullptr; // when set: the smallest count of this GPU that holds each cell
  int max_gpus = 256;                       // the largest count tried
};

struct SweepCell {
  MemoryBreakdown memory;   // per GPU of the base configuration
  int gpus_to_fit = 0;      // with fit_gpu: the smallest count that fits (0: none up to max_gpus)
};

struct MemorySweep {
  std::vector<std::int64_t> values;
  std::vector<std::vector<SweepCell>> cells;  // [value][precision]
};

MemorySweep memory_sweep(const MemorySweepRequest& request);

}  // namespace moeplan::simulator
