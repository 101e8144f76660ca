// reports/memory_report: `moeplan memory` (see memory_report.hpp).
#include "reports/memory_report.hpp"

#include <algorithm>

#include "common/text.hpp"
#include "model/params.hpp"
#include "reports/result_charts.hpp"

namespace moeplan::reports {

using nlohmann::json;
using namespace moeplan::model;

namespace {
std::string gb(double bytes) { return format_fixed(bytes / 1e9, 2); }
}  // namespace

Report memory_report(const simulator::MemoryRequest& q, const simulator::MemoryBreakdown& b) {
  const ModelConfig& m = *q.model;
  const auto& l = q.layout;
  Report r;
  const std::string where = q.host_mode ? q.device_name : std::to_string(l.gpus()) + " x " + q.device_name;
  r.header = {"memory per " + std::string(q.host_mode ? "host" : "GPU") + ": " + m.name + " on " + where + ", precision " +
                  q.precision.spec + ", KV " + kv_dtype_name(q.kv_dtype) + " (" + kv_mode_name(q.kv_mode) + ")",
              "layout tp=" + std::to_string(l.tp) + " ep=" + std::to_string(l.ep) + " pp=" + std::to_string(l.pp) +
                  " dp=" + std::to_string(l.dp) + "; context " + with_commas(q.context_tokens) + " tokens x " +
                  std::to_string(q.concurrency) + " sequences; peak batch " + with_commas(q.max_num_batched_tokens) +
                  " tokens"};
  Table t;
  t.columns = {"component", "GB", "note"};
  t.right_align = {false, true, false};
  json weights_json = json::object();
  for (int i = 0; i < kModuleCount; ++i) {
    const double v = b.weights.by_module[static_cast<std::size_t>(i)];
    if (v <= 0) continue;
    const auto mod = static_cast<Module>(i);
    t.rows.push_back({"  weights: " + std::string(module_name(mod)), gb(v), ""});
    weights_json[module_name(mod)] = v;
  }
  std::string weight_note = "pipeline stage " + std::to_string(b.weights.stage) + " of " + std::to_string(l.pp);
  if (!q.include_vision && !m.vision.empty()) weight_note += "; vision encoder not loaded (--with-vision adds it)";
  t.rows.push_back({"weights", gb(b.weights.total), weight_note});
  t.rows.push_back({"KV cache", gb(b.kv_bytes),
                    std::to_string(b.sequences_per_gpu) + " seq x " + gb(b.kv_bytes_per_sequence) + " GB, " +
                        std::to_string(b.kv_heads_per_gpu) + " KV head(s) per GPU"});
  t.rows.push_back({"activations", gb(b.activation_bytes), "peak forward pass, docs/memory.md"});
  if (!q.host_mode) t.rows.push_back({"runtime overhead", gb(b.overhead_bytes), "CUDA context, graphs, NCCL buffers"});
  t.rows.push_back({"total", gb(b.total_bytes), ""});
  t.rows.push_back({"capacity", gb(b.capacity_bytes), q.host_mode ? "host memory" : "per GPU"});
  t.rows.push_back({"usable", gb(b.usable_bytes),
                    q.host_mode ? "" : "x " + format_fixed(q.overhead.gpu_memory_utilization, 2) + " --gpu-memory-utilization"});
  // No size is printed negative: a configuration that does not fit shows what it lacks.
  if (b.fits) t.rows.push_back({"free", gb(b.free_bytes), "fits"});
  else t.rows.push_back({"short by", gb(-b.free_bytes), "DOES NOT FIT"});
  r.tables.push_back(std::move(t));
  if (b.max_concurrency > 0)
    r.notes.push_back("fits: " + std::string(b.fits ? "yes" : "no") + "; largest concurrency at " +
                      with_commas(q.context_tokens) + " tokens of context: " + with_commas(b.max_concurrency) + " sequences");
  else
    r.notes.push_back("fits: no; the weights alone exceed the usable memory: use more GPUs, a smaller precision, or larger GPUs");
  r.json = {{"model", m.name},
            {"device", q.device_name},
            {"host_mode", q.host_mode},
            {"gpus", q.host_mode ? 0 : l.gpus()},
            {"precision", q.precision.spec},
            {"kv_dtype", kv_dtype_name(q.kv_dtype)},
            {"kv_mode", kv_mode_name(q.kv_mode)},
            {"tp", l.tp}, {"ep", l.ep}, {"pp", l.pp}, {"dp", l.dp},
            {"context_tokens", q.context_tokens},
            {"concurrency", q.concurrency},
            {"max_num_batched_tokens", q.max_num_batched_tokens},
            {"weights_bytes", b.weights.total},
            {"weights_bytes_by_module", weights_json},
            {"weights_stage", b.weights.stage},
            {"kv_bytes", b.kv_bytes},
            {"kv_bytes_per_sequence", b.kv_bytes_per_sequence},
            {"kv_heads_per_gpu", b.kv_heads_per_gpu},
            {"sequences_per_gpu", b.sequences_per_gpu},
            {"activation_bytes", b.activation_bytes},
            {"overhead_bytes", b.overhead_bytes},
            {"total_bytes", b.total_bytes},
            {"capacity_bytes", b.capacity_bytes},
            {"usable_bytes", b.usable_bytes},
            {"free_bytes", std::max(0.0, b.free_bytes)},
            {"shortfall_bytes", std::max(0.0, -b.free_bytes)},
            {"fits", b.fits},
            {"max_concurrency", b.max_concurrency}};
  r.charts.push_back(vram_chart("memory per " + std::string(q.host_mode ? "host" : "GPU") + ": " + m.name + " on " + where,
                                "moeplan memory; formulas docs/memory.md", {{where + " " + q.precision.spec, b}}, q.host_mode));
  return r;
}

}  // namespace moeplan::reports
