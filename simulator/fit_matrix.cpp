#include "simulator/fit_matrix.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/text.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::simulator {

const char* headroom_name(Headroom h) {
  switch (h) {
    case Headroom::no_fit: return "no fit";
    case Headroom::very_tight: return "very tight";
    case Headroom::tight: return "tight";
    case Headroom::moderate: return "moderate";
    case Headroom::good: return "good";
    case Headroom::excellent: return "excellent";
  }
  return "?";
}

const std::vector<HeadroomBound>& headroom_bounds() {
  static const std::vector<HeadroomBound> kBounds = {
      {Headroom::very_tight, 0.00}, {Headroom::tight, 0.05}, {Headroom::moderate, 0.15},
      {Headroom::good, 0.30},       {Headroom::excellent, 0.50}};
  return kBounds;
}

Headroom classify_headroom(double free_share) {
  if (!(free_share >= 0)) return Headroom::no_fit;  // negative or NaN
  Headroom h = Headroom::no_fit;
  for (const auto& b : headroom_bounds())
    if (free_share >= b.min_free_share) h = b.headroom;
  return h;
}

std::string headroom_bounds_text() {
  const auto& b = headroom_bounds();
  const auto pct = [](double share) { return format_fixed(100.0 * share, 0); };
  std::string s = "free share of usable memory: below 0 no fit";
  for (std::size_t i = 0; i < b.size(); ++i) {
    s += "; ";
    if (i + 1 < b.size()) s += pct(b[i].min_free_share) + "-" + pct(b[i + 1].min_free_share) + " % ";
    else s += pct(b[i].min_free_share) + " % and up ";
    s += headroom_name(b[i].headroom);
  }
  return s + " (a share on a bound takes the higher class)";
}

std::vector<model::ParallelLayout> fit_layouts(const model::ModelConfig& m, int gpus_per_node, int max_gpus) {
  const int node = std::max(1, gpus_per_node);
  const auto valid = [&](const model::ParallelLayout& l) { return model::layout_problem(m, l).empty(); };
  // The widest tensor-parallel group inside one node that divides the model.
  int widest_tp = 0;
  for (int n = 1; n <= node; ++n)
    if (valid({n, 1, 1, 1})) widest_tp = n;
  std::vector<model::ParallelLayout> out;
  if (widest_tp == 0) return out;
  for (int count = 1; count <= max_gpus; ++count) {
    const model::ParallelLayout plain{count, 1, 1, 1};
    if (count <= node && valid(plain)) {
      out.push_back(plain);  // moeplan memory's default: tp = count
    } else if (count % widest_tp == 0 && valid({widest_tp, 1, count / widest_tp, 1})) {
      out.push_back({widest_tp, 1, count / widest_tp, 1});  // tensor parallel in a node, pipeline stages across
    } else if (count > node && valid(plain)) {
      out.push_back(plain);  // tensor parallel across nodes, where no even pipeline split exists
    }
  }
  return out;
}

namespace {

bool computes_natively(const gpu_db::GpuSpec& g, const model::Precision& p) {
  const std::string& dtype = p.format->compute_dtype;
  if (dtype == "bf16") return g.has_dtype("bf16") || g.has_dtype("fp16");
  return g.has_dtype(dtype);
}

}  // namespace

std::vector<std::vector<model::ParallelLayout>> fit_layouts_by_count(const model::ModelConfig& m, int gpus_per_node, int max_gpus) {
  std::vector<std::vector<model::ParallelLayout>> by_count(static_cast<std::size_t>(std::max(max_gpus, 0)) + 1);
  for (const auto& l : fit_layouts(m, gpus_per_node, max_gpus)) by_count[static_cast<std::size_t>(l.gpus())].push_back(l);
  const auto same = [](const model::ParallelLayout& a, const model::ParallelLayout& b) {
    return a.tp == b.tp && a.ep == b.ep && a.pp == b.pp && a.dp == b.dp;
  };
  for (int count = 1; count <= max_gpus; ++count) {
    auto& at = by_count[static_cast<std::size_t>(count)];
    for (const auto& l : model::candidate_layouts(m, count))
      if (model::layout_problem(m, l).empty() && std::none_of(at.begin(), at.end(), [&](const auto& o) { return same(o, l); }))
        at.push_back(l);
  }
  std::vector<std::vector<model::ParallelLayout>> out;
  for (auto& at : by_count)
    if (!at.empty()) out.push_back(std::move(at));
  return out;
}

FitMatrix fit_matrix(const FitMatrixRequest& r) {
  if (r.model == nullptr) throw InputError("fit-matrix needs a model");
  if (r.context_tokens <= 0) throw InputError("--context must be a positive number of tokens");
  if (r.concurrency <= 0) throw InputError("--concurrency must be at least 1");
  if (r.max_gpus <= 0) throw InputError("--max-gpus must be positive");
  const model::ModelConfig& m = *r.model;
  FitMatrix out;
  for (const auto* gpu : r.gpus) {
    const auto counts = fit_layouts_by_count(m, gpu->gpus_per_node, r.max_gpus);
    for (const auto& precision : r.precisions) {
      const model::GroupBytes bytes = model::group_bytes(m, precision);
      FitCell c;
      c.gpu = gpu;
      c.precision = precision.spec;
      c.native_compute = computes_natively(*gpu, precision);
      c.compute_dtype = precision.format->compute_dtype;
      // The memory request simulate makes (simulator::memory_request), for this GPU and precision.
      SimulateRequest s;
      s.model = &m;
      s.precision = precision;
      s.kv_dtype = r.kv_dtype;
      s.kv_mode = r.kv_mode;
      s.limits.max_num_batched_tokens = r.max_num_batched_tokens;
      s.gpu_memory_utilization = r.gpu_memory_utilization;
      s.hardware.name = gpu->name;
      s.hardware.memory_bytes = gpu->memory_bytes;
      MemoryRequest q = memory_request(s, r.context_tokens, r.concurrency);
      q.group_bytes = &bytes;
      // The smallest count where a layout fits; there, the layout with the most free memory (the first on a tie).
      for (const auto& at_count : counts) {
        for (std::size_t i = 0; i < at_count.size(); ++i) {
          q.layout = at_count[i];
          const MemoryBreakdown b = memory_breakdown(q);
          if (i == 0 || (b.fits && (!c.fits || b.free_bytes > c.memory.free_bytes))) {
            c.memory = b;
            c.layout = at_count[i];
            c.fits = b.fits;
          }
        }
        if (c.fits) break;
      }
      if (c.fits) {
        c.gpus = c.layout.gpus();
        c.nodes = (c.gpus + std::max(1, gpu->gpus_per_node) - 1) / std::max(1, gpu->gpus_per_node);
        c.within_node = c.gpus <= gpu->gpus_per_node;
        c.free_share = c.memory.usable_bytes > 0 ? c.memory.free_bytes / c.memory.usable_bytes : 0.0;
        c.headroom = classify_headroom(c.free_share);
        c.max_concurrency = c.memory.max_concurrency;
      }
      out.cells.push_back(std::move(c));
    }
  }
  return out;
}

}  // namespace moeplan::simulator
