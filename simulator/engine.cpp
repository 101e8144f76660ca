#include "simulator/engine.hpp"

namespace moeplan::simulator {

model::KvDtype engine_kv_dtype(const gpu_db::EngineSpec& e, const model::Precision& p) {
  const std::string format = p.format ? p.format->name : "bf16";
  if (format == "fp8" || format == "nvfp4") return model::parse_kv_dtype(e.kv_dtype_modelopt);
  return e.kv_dtype_modelopt == "fp16" ? model::KvDtype::fp16 : model::KvDtype::bf16;
}

namespace {
// An engine whose expert GEMMs are its dense quantised kernel run per expert in token tiles (llama.cpp: MMQ on CUDA,
// kernel_mul_mm_id on Metal) prices them like its dense GEMMs plus the tiles' empty columns, instead of the
// grouped-GEMM curve fitted to TensorRT-LLM's kernels: the dense GEMM share, no rows-half curve, the GEMM's
// bandwidth share, and its own per-op cost instead of the fused block's fixed time (docs/simulator.md "Engines").
void apply_expert_tiles(Efficiency& eff, const gpu_db::EngineSpec& e, const std::string& backend) {
  const std::int64_t rows = backend == "cuda" ? e.expert_tile_rows_cuda : backend == "metal" ? e.expert_tile_rows_metal : 0;
  if (rows <= 0) return;
  eff.expert_tile_rows_max = static_cast<double>(rows);
  eff.expert_tile_fits_step = backend == "cuda";
  eff.expert_compute = eff.gemm_compute;
  eff.expert_rows_half = 0;
  eff.expert_memory = eff.memory;
  eff.expert_block_us = 0;
}
}  // namespace

Efficiency engine_efficiency(Efficiency base, const gpu_db::EngineSpec& e, const Hardware& hw) {
  if (e.generic()) return base;
  base.step_overhead_us = e.step_overhead_us;
  // A GPU, or an integrated GPU run by the engine's CUDA backend (DGX Spark), pays the engine's per-kernel cost (CUDA
  // graphs: llama.cpp captures its batch-1 decode); Metal/Vulkan and CPU hosts keep the host's own per-op cost.
  if (!hw.host || (hw.integrated_gpu && hw.kernel_backend == "cuda")) base.op_overhead_us = e.kernel_overhead_us();
  if (!hw.host || hw.integrated_gpu) {  // GPU kernels: a CPU host's own terms stay (host_efficiency)
    if (e.gemv_max_rows > 0) base.gemv_max_rows = static_cast<double>(e.gemv_max_rows);
    if (e.dequant_compute > 0) base.dequant_compute = e.dequant_compute;
    apply_expert_tiles(base, e, hw.kernel_backend);
  }
  base.source += "; engine " + e.name;
  return base;
}

model::MoeDpComm engine_moe_dp_comm(const gpu_db::EngineSpec& e) {
  return e.moe_dp_allgather ? model::MoeDpComm::allgather : model::MoeDpComm::all_to_all;
}

std::vector<std::int64_t> engine_graph_padding(const gpu_db::EngineSpec& e) {
  return e.cuda_graph_padding ? e.cuda_graph_batch_sizes : std::vector<std::int64_t>{};
}

void apply_engine(SimulateRequest& q, const gpu_db::EngineSpec& e, const EngineChoices& given) {
  q.engine = e.name;
  q.engine_version = e.generic() ? "" : e.versions;
  const auto it = e.sources.find("step_overhead_us");
  q.engine_source = it == e.sources.end() ? "" : it->second.source;
  if (!q.hardware.profile) q.hardware.eff = engine_efficiency(q.hardware.eff, e, q.hardware);
  if (!given.max_batch) q.limits.max_batch = e.max_batch;
  if (!given.max_num_batched_tokens) q.limits.max_num_batched_tokens = e.max_num_batched_tokens;
  q.limits.prefill_in_ubatches = e.prefill_in_ubatches;
  if (!given.kv_dtype) q.kv_dtype = engine_kv_dtype(e, q.precision);
  if (!given.kv_mode && !e.kv_window_aware) q.kv_mode = model::KvMode::full_length;
  q.moe_dp_comm = engine_moe_dp_comm(e);
  q.quantized_dispatch = e.moe_dp_quantized_dispatch;
  if (!given.graph_batches && !q.hardware.host)
    q.limits.graph_padded_batches = engine_graph_padding(e);
}

}  // namespace moeplan::simulator
