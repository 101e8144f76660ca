#include "simulator/memory_sweep.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "simulator/fit_matrix.hpp"

namespace moeplan::simulator {

const char* sweep_axis_name(SweepAxis a) { return a == SweepAxis::context ? "context" : "concurrency"; }

SweepAxis parse_sweep_axis(const std::string& name) {
  if (name == "context") return SweepAxis::context;
  if (name == "concurrency") return SweepAxis::concurrency;
  throw InputError("unknown --sweep '" + name + "' (use context or concurrency)");
}

std::vector<std::int64_t> sweep_values(SweepAxis axis, std::int64_t model_max_context, std::int64_t max_concurrency) {
  std::vector<std::int64_t> out;
  if (axis == SweepAxis::concurrency) {
    for (std::int64_t b = 1; b <= max_concurrency; b *= 2) out.push_back(b);
    return out;
  }
  constexpr std::int64_t kLongest = 1048576;  // 1M tokens: Llama 4 Maverick's limit, the longest of the built-in models
  const std::int64_t top = model_max_context > 0 ? std::min(kLongest, model_max_context) : kLongest;
  for (std::int64_t c = 1024; c <= top; c *= 2) out.push_back(c);
  if (model_max_context > 0 && top == model_max_context && (out.empty() || out.back() != top)) out.push_back(top);
  return out;
}

MemorySweep memory_sweep(const MemorySweepRequest& r) {
  if (r.base.model == nullptr) throw std::logic_error("memory_sweep: no model");
  MemorySweep out;
  out.values = r.values;
  for (const std::int64_t v : r.values) {
    MemoryRequest q = r.base;
    (r.axis == SweepAxis::context ? q.context_tokens : q.concurrency) = v;
    FitMatrixRequest f;
    if (r.fit_gpu) {
      f.model = q.model;
      f.precisions = r.precisions;
      f.gpus = {r.fit_gpu};
      f.context_tokens = q.context_tokens;
      f.concurrency = q.concurrency;
      f.max_num_batched_tokens = q.max_num_batched_tokens;
      f.kv_dtype = q.kv_dtype;
      f.kv_mode = q.kv_mode;
      f.gpu_memory_utilization = q.overhead.gpu_memory_utilization;
      f.max_gpus = r.max_gpus;
    }
    const FitMatrix fit = r.fit_gpu ? fit_matrix(f) : FitMatrix{};
    std::vector<SweepCell> row;
    for (std::size_t i = 0; i < r.precisions.size(); ++i) {
      q.precision = r.precisions[i];
      SweepCell c;
      c.memory = memory_breakdown(q);
      if (r.fit_gpu) c.gpus_to_fit = fit.cells[i].gpus;
      row.push_back(c);
    }
    out.cells.push_back(std::move(row));
  }
  return out;
}

}  // namespace moeplan::simulator
