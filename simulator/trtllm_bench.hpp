// simulator/trtllm_bench: the max batch size and max num tokens that `trtllm-bench throughput` chooses when it is given
// neither (TensorRT-LLM 1.0-1.2, PyTorch backend), so that a prediction of a trtllm-bench run uses the batch the
// benchmark really ran with. Derivation and sources: docs/simulator.md "Engines" (trtllm-bench's batch settings).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/precision.hpp"
#include "simulator/simulate.hpp"

namespace moeplan::simulator {

struct TrtllmBenchInput {
  const model::ModelConfig* model = nullptr;
  model::Precision precision;            // the checkpoint's quantisation (its hf_quant_config quant_algo)
  model::KvDtype kv_dtype = model::KvDtype::bf16;
  double device_memory_gib = 0;          // one GPU's total memory as NVML reports it, GiB
  int tp = 1, pp = 1;                    // trtllm-bench --tp (every GPU of a pipeline stage) and --pp
  std::int64_t input_tokens = 0, output_tokens = 0;  // the dataset's average lengths (and its longest prompt)
  double kv_fraction = 0.90;             // --kv_cache_free_gpu_mem_fraction
  bool chunked_prefill = false;          // enable_chunked_prefill
  // The LLM API defaults, used when the quantisation is not one the heuristic tunes.
  std::int64_t default_max_batch = 2048, default_max_num_tokens = 8192;
};

struct TrtllmBenchSettings {
  std::int64_t max_batch = 0;            // max_batch_size: per attention-DP rank when attention DP is on
  std::int64_t max_num_tokens = 0;       // max_num_tokens per step, per rank
  bool tuned = false;                    // the quantisation is in trtllm-bench's TUNED_QUANTS
  std::string quant_algo;                // NVFP4, FP8, FP8_BLOCK_SCALES, NO_QUANT, or the untuned format's name
  double checkpoint_elements = 0;        // param_count: elements over the checkpoint's safetensors tensors
  double bytes_per_element = 0;          // trtllm-bench's BYTES_PER_ELEM for the quant_algo
  double engine_gib = 0;                 // param_count x bytes per element / 2^30
  double total_gib = 0;                  // device memory x tp x pp
  double kv_bytes_per_token = 0;         // the heuristic's estimate (2 x layers x max(tp, kv heads) x head size x B)
  double max_requests = 0;               // requests of input + output tokens its KV estimate holds
  std::string reason;                    // one line: how the two values came about
};

// trtllm-bench's choice for this run. Throws InputError when its inputs are impossible (lengths < 1, a KV fraction
// outside (0, 1], no memory) or when trtllm-bench itself would stop: the checkpoint larger than the GPUs' memory, or
// room for less than one request.
TrtllmBenchSettings trtllm_bench_settings(const TrtllmBenchInput& input);

// Its finetune_setting step: (max_batch_size, max_num_tokens) from the requests the KV estimate holds.
std::pair<std::int64_t, std::int64_t> trtllm_bench_finetune(double max_requests, std::int64_t input_tokens,
                                                            std::int64_t output_tokens, int pp);

// NVML's total memory of one GPU in GiB: the datasheet's figure read as GiB (nvidia-smi reports 79.65 GiB for the
// 80 GB H100 and 140.40 GiB for the 141 GB H200; docs/simulator.md).
double nvml_memory_gib(const gpu_db::GpuSpec& gpu);

// The CUDA-graph batch sizes trtllm-bench captures, padding on, for its max batch: bench/benchmark/utils/general.py
// get_settings passes cuda_graph_config {padding on, max_batch_size}, and llm_args.py _generate_cuda_graph_batch_sizes
// makes [1, 2, 4] + 8..128 in steps of 8 + the powers of two from 256 below the max + the max.
std::vector<std::int64_t> trtllm_bench_graph_batches(std::int64_t max_batch);

// Sets q.limits.max_batch and max_num_batched_tokens (and the padded CUDA-graph sizes) to trtllm-bench's choice for q (its model, precision, KV dtype,
// layout: --tp = tp x dp, workload lengths, gpu_memory_utilization as the KV fraction) on `gpu`, and returns it.
TrtllmBenchSettings apply_trtllm_bench(SimulateRequest& q, const gpu_db::GpuSpec& gpu, std::int64_t default_max_batch,
                                       std::int64_t default_max_num_tokens, bool chunked_prefill);

}  // namespace moeplan::simulator
