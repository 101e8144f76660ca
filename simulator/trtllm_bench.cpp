// simulator/trtllm_bench: trtllm-bench's batch settings (see trtllm_bench.hpp).
//
// Read from NVIDIA/TensorRT-LLM (read 2026-12-03):
//   tensorrt_llm/bench/benchmark/utils/general.py get_settings (commit 0171265e): with no --max_batch_size and
//     --max_num_tokens, get_benchmark_engine_settings(model, checkpoint quant_config, --tp, --pp, average ISL, average
//     OSL, --kv_cache_free_gpu_mem_fraction [default 0.90]); then, with chunked prefill off (the default),
//     max_num_tokens = max(max_num_tokens, max ISL + max_batch_size).
//   tensorrt_llm/bench/build/build.py get_benchmark_engine_settings (commit 000a01de): quant_algo in TUNED_QUANTS
//     {NVFP4, FP8, FP8_BLOCK_SCALES, NO_QUANT, None} -> calc_engine_setting; anything else (gpt-oss's MXFP4) ->
//     BuildConfig's max_batch_size / max_num_tokens (2048 / 8192).
//   tensorrt_llm/bench/build/tuning.py calc_engine_setting and finetune_setting (commit 04cba882), the same formula for
//     attention-only models from mid-2025 (v1.0) until PR #13498 (2026-04-27: engine size from the checkpoint's bytes,
//     attention DP per rank) and PR #16707 (2026-07-22: MLA's compressed KV), both after the releases modelled here.
//   tensorrt_llm/bench/build/dataclasses.py ModelConfig (commit 04cba882): param_count = the sum of
//     huggingface_hub's parameter_count over the safetensors files (elements of every dtype); head_size = config
//     head_dim, else hidden_size / num_attention_heads; num_key_value_heads, else num_attention_heads.
//   tensorrt_llm/bench/build/utils.py get_device_memory: NVML total memory / 2^30.
#include "simulator/trtllm_bench.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moeplan::simulator {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// tuning.py BYTES_PER_ELEM, keyed by the checkpoint's quant_algo; 0 where trtllm-bench does not tune (not in
// TUNED_QUANTS). A ModelOpt FP8 or NVFP4 checkpoint names FP8 / NVFP4, DeepSeek's block-scaled FP8 FP8_BLOCK_SCALES,
// an unquantised one none (NO_QUANT's 2 bytes).
struct QuantAlgo {
  const char* name;
  double bytes_per_element;
};
QuantAlgo quant_algo(const model::Precision& p) {
  const std::string f = p.format ? p.format->name : "bf16";
  if (f == "bf16" || f == "fp16") return {"NO_QUANT", 2.0};
  if (f == "fp8") return {"FP8", 1.0};
  if (f == "fp8-block") return {"FP8_BLOCK_SCALES", 1.0};
  if (f == "nvfp4") return {"NVFP4", 0.5};
  return {p.format ? p.format->name.c_str() : "bf16", 0.0};
}

// param_count as trtllm-bench reads it: elements of every tensor in the checkpoint's safetensors files. A packed
// 4-bit tensor is stored as U8 holding two values and its block scales as F8, one element per byte, so a quantised
// NVFP4 matrix counts its bytes (0.5625 per weight), not its weights; every other tensor counts one element per
// weight (FP8 and BF16 elements; per-tensor and 128 x 128 block scales add under 0.01 %).
double checkpoint_elements(const model::ModelConfig& m, const model::Precision& p) {
  const bool packed = p.format && p.format->quantised() && p.format->weight_bits <= 4;
  const int n = static_cast<int>(m.num_layers);
  double elements = 0;
  const auto add = [&](const model::WeightGroup& w, int layer) {
    elements += packed && model::policy_covers(p.policy, w) ? model::weight_group_bytes(w, p, layer, n)
                                                            : static_cast<double>(w.params());
  };
  for (std::size_t i = 0; i < m.layers.size(); ++i)
    for (const model::WeightGroup& w : m.layers[i].weights) add(w, static_cast<int>(i));
  for (const auto* groups : {&m.globals, &m.vision, &m.mtp})
    for (const model::WeightGroup& w : *groups) add(w, -1);
  return elements;
}

// calc_engine_setting's KV estimate in bytes per token: 2 (K and V) x layers x max(tp, KV heads) x head size x bytes
// per KV element (FP8 1, else 2). It reads config.json's fields, so an MLA model (no head_dim key) counts
// num_key_value_heads = num_attention_heads heads of hidden / heads each, not its compressed latent.
double heuristic_kv_bytes_per_token(const model::ModelConfig& m, model::KvDtype kv, int tp) {
  const std::int64_t head_size = m.mla ? m.hidden / m.num_heads : m.head_dim;
  const std::int64_t kv_heads = std::max<std::int64_t>(tp, m.num_kv_heads);
  const double kv_bytes = kv == model::KvDtype::fp8 ? 1.0 : 2.0;
  return 2.0 * static_cast<double>(m.num_layers * kv_heads * head_size) * kv_bytes;
}

void check_input(const TrtllmBenchInput& in) {
  if (!in.model) throw InputError("trtllm-bench settings: no model");
  if (in.input_tokens < 1 || in.output_tokens < 1)
    throw InputError("trtllm-bench settings: input and output lengths must be at least 1 token");
  if (in.tp < 1 || in.pp < 1) throw InputError("trtllm-bench settings: --tp and --pp must be at least 1");
  if (!(in.kv_fraction > 0 && in.kv_fraction <= 1))
    throw InputError("trtllm-bench settings: the KV cache memory fraction must be in (0, 1]");
  if (!(in.device_memory_gib > 0) || !std::isfinite(in.device_memory_gib))
    throw InputError("trtllm-bench settings: the GPU's memory must be positive");
  if (in.default_max_batch < 1 || in.default_max_num_tokens < 1)
    throw InputError("trtllm-bench settings: the default max batch and max num tokens must be positive");
}

}  // namespace

std::pair<std::int64_t, std::int64_t> trtllm_bench_finetune(double max_requests, std::int64_t input_tokens,
                                                            std::int64_t output_tokens, int pp) {
  // "Cap total batch size to avoid decoder buffer size becoming too large" / "Cap num tokens to avoid TRT activation
  // buffer becoming too large".
  const double raw_bs = std::min(max_requests, 4096.0) / pp;
  const double raw_token =
      std::min(raw_bs * (1.0 + static_cast<double>(input_tokens) / static_cast<double>(output_tokens)), 32768.0);
  const auto round_up = [](double v, double step) { return static_cast<std::int64_t>(step * std::ceil(v / step)); };
  // Batch: a floor of 64, then steps of 32 below 256, 128 below 1024, 256 above.
  const std::int64_t max_bs = raw_bs < 256    ? std::max<std::int64_t>(64, round_up(raw_bs, 32))
                              : raw_bs < 1024 ? round_up(raw_bs, 128)
                                              : round_up(raw_bs, 256);
  // Tokens: a floor of 2048 ("to ensure Ctx/Gen overlap efficiency"), steps of 256 below 4096, 512 below 8192, 1024.
  const std::int64_t max_token = raw_token < 4096   ? std::max<std::int64_t>(2048, round_up(raw_token, 256))
                                 : raw_token < 8192 ? round_up(raw_token, 512)
                                                    : round_up(raw_token, 1024);
  return {max_bs, max_token};
}

TrtllmBenchSettings trtllm_bench_settings(const TrtllmBenchInput& in) {
  check_input(in);
  const model::ModelConfig& m = *in.model;
  TrtllmBenchSettings s;
  const QuantAlgo q = quant_algo(in.precision);
  s.quant_algo = q.name;
  s.tuned = q.bytes_per_element > 0;
  if (!s.tuned) {
    s.max_batch = in.default_max_batch;
    s.max_num_tokens = in.default_max_num_tokens;
    s.reason = "trtllm-bench: " + s.quant_algo + " is not a quantisation it tunes, so the LLM API defaults";
  } else {
    s.bytes_per_element = q.bytes_per_element;
    s.checkpoint_elements = checkpoint_elements(m, in.precision);
    s.engine_gib = s.checkpoint_elements * s.bytes_per_element / kGiB;
    s.total_gib = in.device_memory_gib * in.tp * in.pp;
    if (s.total_gib < s.engine_gib)
      throw InputError("trtllm-bench settings: the checkpoint is estimated at " + format_fixed(s.engine_gib, 1) +
                       " GiB, more than the " + format_fixed(s.total_gib, 1) + " GiB of " +
                       std::to_string(in.tp * in.pp) + " GPUs (trtllm-bench stops here)");
    s.kv_bytes_per_token = heuristic_kv_bytes_per_token(m, in.kv_dtype, in.tp);
    const double cache_gib = (s.total_gib - s.engine_gib) * in.kv_fraction;
    const std::int64_t seq_tokens = in.input_tokens + in.output_tokens;
    s.max_requests = cache_gib / (s.kv_bytes_per_token / kGiB * static_cast<double>(seq_tokens));
    if (s.max_requests < 1)
      throw InputError("trtllm-bench settings: the KV cache holds less than one request of " + with_commas(seq_tokens) +
                       " tokens (trtllm-bench stops here)");
    std::tie(s.max_batch, s.max_num_tokens) = trtllm_bench_finetune(s.max_requests, in.input_tokens, in.output_tokens, in.pp);
    s.reason = "trtllm-bench: " + s.quant_algo + " checkpoint of " + format_fixed(s.checkpoint_elements / 1e9, 1) +
               " G elements x " + format_fixed(s.bytes_per_element, 1) + " B = " + format_fixed(s.engine_gib, 1) +
               " GiB of " + std::to_string(in.tp * in.pp) + " x " + format_fixed(in.device_memory_gib, 1) + " GiB; " +
               format_fixed(in.kv_fraction * 100, 0) + " % of the rest at " +
               with_commas(static_cast<std::int64_t>(s.kv_bytes_per_token)) + " B/token holds " +
               format_fixed(s.max_requests, 1) + " requests of " + with_commas(seq_tokens) + " tokens";
  }
  // general.py: without chunked prefill a step must hold the longest prompt beside a full batch of decodes.
  if (!in.chunked_prefill) s.max_num_tokens = std::max(s.max_num_tokens, in.input_tokens + s.max_batch);
  s.reason += " -> max_batch " + with_commas(s.max_batch) + ", max_num_tokens " + with_commas(s.max_num_tokens);
  return s;
}

double nvml_memory_gib(const gpu_db::GpuSpec& gpu) { return gpu.memory_gb_marketed; }

TrtllmBenchSettings apply_trtllm_bench(SimulateRequest& q, const gpu_db::GpuSpec& gpu, std::int64_t default_max_batch,
                                       std::int64_t default_max_num_tokens, bool chunked_prefill) {
  TrtllmBenchInput in;
  in.model = q.model;
  in.precision = q.precision;
  in.kv_dtype = q.kv_dtype;
  in.device_memory_gib = nvml_memory_gib(gpu);
  // trtllm-bench --tp is every GPU of a pipeline stage: with attention DP (DEPn: --tp n --ep n) too.
  in.tp = q.layout.tp * q.layout.dp;
  in.pp = q.layout.pp;
  in.input_tokens = q.workload.input_tokens;
  in.output_tokens = q.workload.output_tokens;
  in.kv_fraction = q.gpu_memory_utilization;
  in.chunked_prefill = chunked_prefill;
  in.default_max_batch = default_max_batch;
  in.default_max_num_tokens = default_max_num_tokens;
  const TrtllmBenchSettings s = trtllm_bench_settings(in);
  // The runtime applies max_batch_size and max_num_tokens per attention-DP rank: each rank runs its own scheduler.
  q.limits.max_batch = s.max_batch;
  q.limits.max_num_batched_tokens = s.max_num_tokens;
  q.limits.graph_padded_batches = trtllm_bench_graph_batches(s.max_batch);
  return s;
}

std::vector<std::int64_t> trtllm_bench_graph_batches(std::int64_t max_batch) {
  std::vector<std::int64_t> b = {1, 2, 4};
  for (std::int64_t i = 1; i <= 16; ++i) b.push_back(8 * i);
  const auto top = static_cast<int>(std::floor(std::log2(static_cast<double>(std::max<std::int64_t>(1, max_batch)))));
  for (int e = 8; e < top; ++e) b.push_back(std::int64_t{1} << e);
  b.erase(std::remove_if(b.begin(), b.end(), [&](std::int64_t v) { return v > max_batch; }), b.end());
  if (b.empty() || b.back() != max_batch) b.push_back(max_batch);
  return b;
}

}  // namespace moeplan::simulator
