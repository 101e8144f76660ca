#include "simulator/engine.hpp"

namespace moeplan::simulator {

model::KvDtype engine_kv_dtype(const gpu_db::EngineSpec& e, const model::Precision& p) {
  const std::string format = p.format ? p.format->name : "bf16";
  if (format == "fp8" || format == "nvfp4") return model::parse_kv_dtype(e.kv_dtype_modelopt);
  return e.kv_dtype_modelopt == "fp16" ? model::KvDtype::fp16 : model::KvDtype::bf16;
}

Efficiency engine_efficiency(Efficiency base, const gpu_db::EngineSpec& e, const Hardware& hw) {
  if (e.generic()) return base;
  base.step_overhead_us = e.step_overhead_us;
  if (!hw.host) base.op_overhead_us = e.kernel_overhead_us();
  if (!hw.host || hw.integrated_gpu) {  // GPU kernels: a CPU host's own terms stay (host_efficiency)
    if (e.gemv_max_rows > 0) base.gemv_max_rows = static_cast<double>(e.gemv_max_rows);
    if (e.dequant_compute > 0) base.dequant_compute = e.dequant_compute;
  }
  base.source += "; engine " + e.name;
  return base;
}

void apply_engine(SimulateRequest& q, const gpu_db::EngineSpec& e, const EngineChoices& given) {
  q.engine = e.name;
  q.engine_version = e.generic() ? "" : e.versions;
  const auto it = e.sources.find("step_overhead_us");
  q.engine_source = it == e.sources.end() ? "" : it->second.source;
  if (!q.hardware.profile) q.hardware.eff = engine_efficiency(q.hardware.eff, e, q.hardware);
  if (!given.max_batch) q.limits.max_batch = e.max_batch;
  if (!given.max_num_batched_tokens) q.limits.max_num_batched_tokens = e.max_num_batched_tokens;
  if (!given.kv_dtype) q.kv_dtype = engine_kv_dtype(e, q.precision);
  if (!given.kv_mode && !e.kv_window_aware) q.kv_mode = model::KvMode::full_length;
}

}  // namespace moeplan::simulator
