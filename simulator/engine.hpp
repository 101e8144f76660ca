// simulator/engine: a serving engine's defaults applied to a simulate request (data/engines.yaml, docs/simulator.md
// "Engines"). The engine's fixed cost per step and per kernel replace the Efficiency defaults; its max batch, tokens
// per step and KV cache dtype fill in what the caller did not set. `generic` leaves the Efficiency defaults untouched.
#pragma once
#include "gpu_db/engines.hpp"
#include "model/precision.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::simulator {

// What the caller gave itself (the engine's value is used for the rest).
struct EngineChoices {
  bool max_batch = false, max_num_batched_tokens = false, kv_dtype = false, kv_mode = false;
  bool graph_batches = false;  // --cuda-graph-batch-sizes given: the engine's padded CUDA-graph sizes do not apply
};

// The KV cache dtype the engine uses for this checkpoint precision: its ModelOpt KV dtype for FP8/NVFP4 weights,
// else the generic default (bf16; llama.cpp keeps f16).
model::KvDtype engine_kv_dtype(const gpu_db::EngineSpec& e, const model::Precision& precision);

// The efficiency terms with the engine's step and kernel overheads (GPUs; a host keeps its own op overhead), and
// where the engine states them, its GPU kernels' matrix-vector threshold and weight-only GEMM rate (not on CPU cores).
Efficiency engine_efficiency(Efficiency base, const gpu_db::EngineSpec& e, const Hardware& hw);

// The engine's attention-DP MoE exchange for the op graph, and the CUDA-graph sizes it pads decode-only steps to
// (empty: no padding): what apply_engine sets, for callers that build their own requests (the planner).
model::MoeDpComm engine_moe_dp_comm(const gpu_db::EngineSpec& e);
std::vector<std::int64_t> engine_graph_padding(const gpu_db::EngineSpec& e);

// Sets q.engine / q.engine_version / q.engine_source, the overheads, and the defaults the caller did not give
// (the KV mode: full-length for an engine whose KV manager sizes windowed layers for the whole sequence).
void apply_engine(SimulateRequest& q, const gpu_db::EngineSpec& e, const EngineChoices& given);

}  // namespace moeplan::simulator
