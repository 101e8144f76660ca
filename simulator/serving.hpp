// simulator/serving: a discrete-event model of an inference server with continuous batching and chunked prefill
// (vLLM V1 / TensorRT-LLM / SGLang style), over the step prices of StepModel. It predicts TTFT, TPOT, ITL and E2E
// percentiles and throughput for three load patterns:
//   max        : every request queued at t = 0 (offline throughput, like `trtllm-bench throughput`)
//   closed N   : N requests in flight, a new one starts when one finishes (`vllm bench serve --max-concurrency N`)
//   poisson R  : open-loop arrivals at R requests/s
//   static N   : static batching (engines before in-flight batching): a batch of N is prefilled in one pass and
//                decoded to the end before the next batch starts
// Scheduling (docs/simulator.md): each step first gives one token to every decoding sequence, then continues
// partial prefills, then admits waiting requests while the batch, the token budget (max_num_batched_tokens) and the
// KV cache allow. A request is admitted only when the KV of its whole prompt + output fits (TensorRT-LLM's
// GUARANTEED_NO_EVICT policy), so nothing is preempted.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include "simulator/step_cost.hpp"

namespace moeplan::simulator {

enum class LoadMode { max, closed, poisson, static_batch };

struct Workload {
  std::int64_t input_tokens = 1000;
  std::int64_t output_tokens = 1000;
  std::int64_t num_requests = 0;   // 0: 1000, or four times the batch (max load) or the concurrency (closed loop)
  LoadMode mode = LoadMode::max;
  std::int64_t concurrency = 0;    // closed loop: requests in flight; static: batch size (per attention group)
  double request_rate_per_s = 0;   // poisson: arrivals per second (over all DP ranks)
  std::uint64_t seed = 1;
  // Closed loop only: simulate one attention group and take the other dp - 1 as its copies, when the concurrency and
  // the request count divide evenly over them. Started together, a closed loop keeps the groups in lock-step up to
  // the order of the last refills; plan's serving check uses it (docs/planner.md "Operating point").
  bool groups_alike = false;
  // Disaggregated decode pool: requests arrive with their prompt already in the cache and one token generated
  // (KV handed over from a prefill pool). Arrival times are given per request of this attention group, together
  // with each request's original arrival and first-token time (for TTFT/E2E).
  bool arrive_prefilled = false;
  std::vector<double> arrival_times_s, origin_arrival_s, origin_first_token_s;
};

struct ServingLimits {
  std::int64_t max_batch = 1024;               // sequences per attention group (DP rank)
  std::int64_t max_num_batched_tokens = 8192;  // tokens per step per attention group (chunked-prefill budget)
  bool prefill_in_ubatches = false;            // a static batch's prompts run in steps of max_num_batched_tokens
                                               // (llama.cpp's n_ubatch) rather than all in one step
  // CUDA-graph batch sizes a decode-only step is padded up to (ascending; empty: no padding). A step whose batch
  // exceeds the largest runs unpadded (eager). data/engines.yaml cuda_graph_batch_sizes with cuda_graph_padding.
  std::vector<std::int64_t> graph_padded_batches;
  double kv_capacity_bytes = 0;                // KV bytes one GPU can hold for its group's sequences
  double kv_bytes_per_token_full = 0;          // KV bytes per token on one GPU, full-context layers
  double kv_bytes_per_token_window = 0;        //   and chunked/sliding layers (capped at the window)
  std::int64_t window_tokens = 0;
};

struct Percentiles {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
  // One of them by name, as a source or an SLO states it: "mean", "median" or "p50", "p90", "p99".
  double stat(std::string_view name) const;
};

struct ServingResult {
  Percentiles ttft_ms, tpot_ms, itl_ms, e2e_ms;
  std::int64_t requests = 0;                   // completed, over all DP ranks
  double duration_s = 0;                       // first arrival to last completion
  double requests_per_s = 0;
  double output_tokens_per_s = 0;              // all GPUs of the replica
  double output_tokens_per_s_per_gpu = 0;
  double output_tokens_per_s_per_user = 0;     // mean over requests of output tokens / E2E
  double decode_tokens_per_s_per_user = 0;     // mean over requests of 1 / TPOT
  double input_tokens_per_s = 0;
  double mean_batch = 0;                       // decoding sequences per step, per attention group (time-weighted)
  std::int64_t peak_batch = 0;
  std::int64_t kv_limited_batch = 0;           // sequences the KV cache holds at once at this workload
  bool kv_bound = false;                       // the batch reached what the KV cache holds (below max_batch)
  std::int64_t steps = 0;
  std::vector<double> first_token_times_s;     // per request of the simulated attention group, by arrival order
  std::vector<double> arrival_times_s;         //   and their arrival times
};

// `gpus` is the replica's GPU count (tp·dp·pp). Throws InputError when one request cannot fit in the KV cache.
ServingResult simulate_serving(const StepModel& model, const ServingLimits& limits, const Workload& workload, int gpus);

// Percentiles of weighted samples (value, weight); nearest-rank on the cumulative weight.
Percentiles weighted_percentiles(std::vector<std::pair<double, double>> samples);

}  // namespace moeplan::simulator
