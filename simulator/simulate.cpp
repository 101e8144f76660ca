// simulator/simulate: memory → KV capacity → step model → serving loop (see simulate.hpp).
#include "simulator/simulate.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.hpp"
#include "common/numeric.hpp"
#include "common/text.hpp"

namespace moeplan::simulator {

namespace {


// Share of a sequence's KV bytes that lives in host RAM: with --gpu-layers N llama.cpp keeps each layer's KV with
// the layer (layers [N, L) on the host); with --offload-experts attention and its KV stay on the GPU. Every layer of
// the supported families stores the same bytes per kept token, so layers weigh by the tokens they keep.
double kv_host_share(const model::OpGraph& g, const Offload& o, std::int64_t context) {
  if (o.gpu_layers < 0) return 0;
  double host = 0, all = 0;
  for (const auto& cls : g.layer_classes) {
    const bool window = cls.attention == model::AttentionKind::chunked || cls.attention == model::AttentionKind::sliding;
    const double kept = window && g.window_tokens > 0 ? to_double(std::min(context, g.window_tokens)) : to_double(context);
    for (int li : cls.layer_indices) {
      all += kept;
      if (li >= o.gpu_layers) host += kept;
    }
  }
  return all > 0 ? host / all : 0;
}

}  // namespace

double offloaded_bytes(const model::ModelConfig& m, const model::Precision& p, const Offload& o) {
  double bytes = 0;
  for (const auto& layer : m.layers) {
    const bool layer_on_host = o.gpu_layers >= 0 && layer.index >= o.gpu_layers;
    for (const auto& w : layer.weights) {
      if (layer_on_host || (o.experts_on_host && w.module == model::Module::routed_experts))
        bytes += model::weight_group_bytes(w, p, layer.index, static_cast<int>(m.num_layers));
    }
  }
  return bytes;
}

MemoryRequest memory_request(const SimulateRequest& r, std::int64_t context_tokens, std::int64_t concurrency) {
  MemoryRequest mr;
  mr.model = r.model;
  mr.precision = r.precision;
  mr.layout = r.layout;
  mr.kv_dtype = r.kv_dtype;
  mr.kv_mode = r.kv_mode;
  mr.context_tokens = context_tokens;
  mr.concurrency = concurrency;
  mr.max_num_batched_tokens = r.limits.max_num_batched_tokens;
  mr.capacity_bytes = r.hardware.memory_bytes;
  mr.host_mode = r.hardware.host;
  mr.device_name = r.hardware.name;
  mr.overhead.gpu_memory_utilization = r.gpu_memory_utilization;
  return mr;
}

namespace {

// Bad requests: a layout the model cannot take, a length above its context, hosts and offloading on one device.
void check_request(const SimulateRequest& r) {
  if (!r.model) throw std::logic_error("simulate: no model");
  const model::ModelConfig& m = *r.model;
  const model::ParallelLayout& lay = r.layout;
  model::validate_layout(m, lay);
  const Workload& w = r.workload;
  if (w.input_tokens < 1 || w.output_tokens < 1) throw InputError("--input and --output must be at least 1 token");
  const std::int64_t length = w.input_tokens + w.output_tokens;
  if (m.max_context_tokens > 0 && length > m.max_context_tokens)
    throw InputError("--input + --output = " + with_commas(length) + " tokens is above " + m.name + "'s limit of " +
                     with_commas(m.max_context_tokens) + " tokens (max_position_embeddings)");
  if (r.hardware.host && lay.gpus() != 1)
    throw InputError("a host runs one copy of the model: drop --tp/--ep/--dp/--pp or use --gpu");
  if (r.offload.active() && lay.gpus() != 1)
    throw InputError("offloading is modelled for one GPU: use --count 1 with --offload-experts or --gpu-layers");
  if (r.offload.gpu_layers > m.num_layers)
    throw InputError("--gpu-layers " + std::to_string(r.offload.gpu_layers) + " is more than the model's " +
                     std::to_string(m.num_layers) + " layers");
}

// Step model: the op graph priced on this hardware, with the routing model (described in res.routing).
StepModelRequest step_request(const SimulateRequest& r, SimulateResult& res) {
  const model::ModelConfig& m = *r.model;
  const model::ParallelLayout& lay = r.layout;
  StepModelRequest sr;
  sr.graph.model = &m;
  sr.graph.precision = r.precision;
  sr.graph.layout = lay;
  sr.graph.kv_dtype = r.kv_dtype;
  sr.graph.moe_dp_comm = r.moe_dp_comm;
  sr.graph.quantized_dispatch = r.quantized_dispatch;
  if (r.hardware.profile) sr.graph.activation_bytes = 4;  // a measured CPU profile: the executor's fp32 activations
  sr.hardware = r.hardware;
  sr.offload = r.offload;
  if (r.offload_host) sr.host = *r.offload_host;
  if (m.is_moe()) {
    if (!r.routing.loads_file.empty()) {
      sr.routing = RoutingModel::histogram(read_expert_loads(r.routing.loads_file, m.num_experts, m.count_layers(model::MlpKind::moe)), m.experts_per_token, lay.ep);
    } else if (r.routing.zipf_alpha > 0) {
      sr.routing = RoutingModel::zipf(m.num_experts, m.experts_per_token, lay.ep, r.routing.zipf_alpha);
    } else {
      sr.routing = RoutingModel::uniform(m.num_experts, m.experts_per_token, lay.ep);
    }
    res.routing = sr.routing.describe();
  }
  return sr;
}

// Memory per device at the peak step: weights (less what is offloaded), activations and overhead; the room left
// holds KV (on the host too, for the offloaded layers' share).
struct DeviceRoom {
  MemoryBreakdown mem;
  double weights_on_device = 0, moved = 0, host_usable = 0, kv_share_host = 0;
};

DeviceRoom device_room(const SimulateRequest& r, const StepModel& step, std::int64_t length, SimulateResult& res) {
  const model::ModelConfig& m = *r.model;
  const model::ParallelLayout& lay = r.layout;
  DeviceRoom room;
  // Activations at the peak step (the token budget spread over a full batch); KV comes after.
  room.mem = memory_breakdown(memory_request(r, length, std::max<std::int64_t>(1, r.limits.max_batch) * std::max(1, lay.dp)));
  room.weights_on_device = room.mem.weights.total;
  if (r.offload.active()) {
    room.moved = offloaded_bytes(m, r.precision, r.offload);
    room.weights_on_device -= room.moved;
    room.host_usable = r.offload_host->memory_bytes * kHostUsableShare;
    if (room.moved >= room.host_usable)
      throw InputError(m.name + " in " + r.precision.spec + " does not fit: the offloaded weights need " +
                       format_gb(room.moved) + " but " + r.offload_host->name + " has " + format_gb(room.host_usable) +
                       " usable of " + format_gb(r.offload_host->memory_bytes) + " RAM; offload less or use a larger host");
    room.kv_share_host = kv_host_share(step.graph(), r.offload, length);
    res.assumptions.push_back("offload: " + format_gb(room.moved) + " of weights in host RAM (" + r.offload_host->name +
                              "), ops on them priced at host bandwidth" +
                              (room.kv_share_host > 0
                                   ? "; " + format_fixed(100 * room.kv_share_host, 0) + " % of the KV with the host's layers"
                                   : ""));
  }
  return room;
}

// The serving loop's limits: KV capacity per device (whole sequences' KV: the GPU holds (1 - s) of it, the host s)
// and KV bytes per token. Throws InputError when the weights leave no room.
ServingLimits serving_limits(const SimulateRequest& r, const StepModel& step, const DeviceRoom& room) {
  const model::ModelConfig& m = *r.model;
  const model::ParallelLayout& lay = r.layout;
  const MemoryBreakdown& mem = room.mem;
  const double weights_on_device = room.weights_on_device, moved = room.moved, host_usable = room.host_usable,
               kv_share_host = room.kv_share_host;
  ServingLimits lim = r.limits;
  const double device_free = mem.usable_bytes - weights_on_device - mem.activation_bytes - mem.overhead_bytes;
  if (device_free <= 0)
    throw InputError(m.name + " in " + r.precision.spec + " does not fit on " + std::to_string(lay.gpus()) + " x " +
                     r.hardware.name + ": " + format_gb(weights_on_device) + " of weights per device and " +
                     format_gb(mem.usable_bytes) + " usable" +
                     (r.offload.active() ? " after offloading " + format_gb(moved) + "; keep fewer layers on the GPU (--gpu-layers)"
                                         : "; use more GPUs, a smaller precision or offloading"));
  // KV capacity counts whole sequences' KV: the GPU holds (1 - s) of it, the host s.
  lim.kv_capacity_bytes = device_free / (1 - kv_share_host);
  if (kv_share_host > 0) lim.kv_capacity_bytes = std::min(lim.kv_capacity_bytes, (host_usable - moved) / kv_share_host);
  lim.kv_bytes_per_token_full = to_double(step.graph().kv_bytes_per_token_full);
  lim.kv_bytes_per_token_window = to_double(step.graph().kv_bytes_per_token_window);
  lim.window_tokens = step.graph().window_tokens;
  if (r.kv_mode == model::KvMode::full_length) {
    lim.kv_bytes_per_token_full += lim.kv_bytes_per_token_window;
    lim.kv_bytes_per_token_window = 0;
    lim.window_tokens = 0;
  }
  return lim;
}

// Disaggregated serving: a prefill pool feeding a decode pool over the inter-node link.
void serve_disaggregated(const SimulateRequest& r, const StepModel& step, const ServingLimits& lim, SimulateResult& res) {
  const Workload& w = r.workload;
  const model::ParallelLayout& lay = r.layout;
  if (w.mode == LoadMode::closed)
    throw InputError("disaggregated serving is simulated for --concurrency max or --request-rate (not a closed loop)");
  // 1) Prefill pool: prompt-only requests (one output token), split over the prefill replicas.
  Workload pw = w;
  pw.output_tokens = 1;
  const int dp = std::max(1, lay.dp);
  std::int64_t n_total = w.num_requests > 0 ? w.num_requests : 0;
  if (n_total <= 0) n_total = w.mode == LoadMode::max ? std::max<std::int64_t>(1000, 4 * lim.max_batch * dp) : 1000;
  pw.num_requests = std::max<std::int64_t>(1, n_total / r.prefill_replicas);
  if (pw.mode == LoadMode::poisson) pw.request_rate_per_s = w.request_rate_per_s / r.prefill_replicas;
  const ServingResult pre = simulate_serving(step, lim, pw, lay.gpus());
  const std::vector<double>& arrivals = pre.arrival_times_s;
  // 2) KV hand-off: the prompt's KV of one GPU's share, over the inter-node link (one NIC per GPU).
  const double kv_bytes = lim.kv_bytes_per_token_full * to_double(w.input_tokens) +
                          lim.kv_bytes_per_token_window * to_double(lim.window_tokens > 0 ? std::min(w.input_tokens, lim.window_tokens) : w.input_tokens);
  res.kv_transfer_s = r.hardware.inter_bandwidth_bytes_per_s > 0
                          ? r.hardware.inter_latency_s + kv_bytes / (r.hardware.inter_bandwidth_bytes_per_s * r.hardware.eff.comm_bandwidth)
                          : 0.0;
  // 3) Decode pool: the prefill replicas' outputs merge (each replica is statistically the same), sorted by the
  //    time their KV lands.
  struct Arrival { double at, origin, first; };
  std::vector<Arrival> merged;
  for (int rep = 0; rep < r.prefill_replicas; ++rep)
    for (std::size_t i = 0; i < arrivals.size(); ++i)
      merged.push_back({pre.first_token_times_s[i] + res.kv_transfer_s, arrivals[i], pre.first_token_times_s[i]});
  std::sort(merged.begin(), merged.end(), [](const Arrival& a, const Arrival& b) { return a.at < b.at; });
  Workload dw = w;
  dw.arrive_prefilled = true;
  for (const Arrival& a : merged) {
    dw.arrival_times_s.push_back(a.at);
    dw.origin_arrival_s.push_back(a.origin);
    dw.origin_first_token_s.push_back(a.first);
  }
  res.serving = simulate_serving(step, lim, dw, lay.gpus());
  res.serving.ttft_ms = pre.ttft_ms;
  res.serving.output_tokens_per_s_per_gpu = res.serving.output_tokens_per_s / res.gpus;
  res.assumptions.push_back("disaggregated: " + std::to_string(r.prefill_replicas) + " prefill replica(s) of " +
                            std::to_string(lay.gpus()) + " GPUs feed one decode replica; KV hand-off " +
                            format_fixed(res.kv_transfer_s * 1e3, 2) + " ms per request over " + r.hardware.inter_link);
}

// With offloading: the GPU's and the host's memory apart.
void offload_memory(const SimulateRequest& r, const DeviceRoom& room, SimulateResult& res) {
  const double weights_on_device = room.weights_on_device, moved = room.moved, host_usable = room.host_usable,
               kv_share_host = room.kv_share_host;
  DeviceMemory g;
  g.device = r.hardware.name;
  g.capacity_bytes = res.memory.capacity_bytes;
  g.usable_bytes = res.memory.usable_bytes;
  g.weights_bytes = weights_on_device;
  g.kv_bytes = res.memory.kv_bytes * (1 - kv_share_host);
  g.activation_bytes = res.memory.activation_bytes;
  g.overhead_bytes = res.memory.overhead_bytes;
  const double g_used = g.weights_bytes + g.kv_bytes + g.activation_bytes + g.overhead_bytes;
  g.fits = g_used <= g.usable_bytes;
  g.free_bytes = std::max(0.0, g.usable_bytes - g_used);
  DeviceMemory h;
  h.device = r.offload_host->name;
  h.capacity_bytes = r.offload_host->memory_bytes;
  h.usable_bytes = host_usable;
  h.weights_bytes = moved;
  h.kv_bytes = res.memory.kv_bytes * kv_share_host;
  const double h_used = h.weights_bytes + h.kv_bytes;
  h.fits = h_used <= h.usable_bytes;
  h.free_bytes = std::max(0.0, h.usable_bytes - h_used);
  res.gpu_memory = g;
  res.host_memory = h;
}

// Per-op times of one prefill step (the token budget) and one decode step (the mean batch at the mean context).
void step_breakdowns(const SimulateRequest& r, const StepModel& step, SimulateResult& res) {
  const Workload& w = r.workload;
  const model::AttentionKind wk = window_kind(step.graph());
  res.prefill_step_tokens = std::min(w.input_tokens, r.limits.max_num_batched_tokens);
  const StepShape ps = prefill_shape(res.prefill_step_tokens, 0, res.prefill_step_tokens == w.input_tokens, step.graph(), wk);
  res.prefill_ops = step.breakdown(ps);
  res.prefill_values = step.values(ps);
  res.prefill_step_s = step.step_time_s(ps);
  res.decode_step_batch = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::llround(res.serving.mean_batch)));
  res.decode_step_context = w.input_tokens + w.output_tokens / 2;
  const StepShape ds = decode_shape(to_double(res.decode_step_batch), res.decode_step_context, step.graph(), wk);
  res.decode_ops = step.breakdown(ds);
  res.decode_values = step.values(ds);
  res.decode_step_s = step.step_time_s(ds);
}

// What the prediction assumed: engine, efficiencies or measured profile, router and scheduler.
void add_assumptions(const SimulateRequest& r, SimulateResult& res) {
  const model::ModelConfig& m = *r.model;
  const Efficiency& e = r.hardware.eff;
  if (r.engine == "generic")
    res.assumptions.push_back("engine: generic (the plain roofline; --engine trtllm|vllm|sglang|llamacpp applies an engine's defaults)");
  else
    res.assumptions.push_back("engine: " + r.engine + " " + r.engine_version + " (data/engines.yaml); step overhead: " +
                              r.engine_source);
  if (const auto& prof = r.hardware.profile) {
    res.assumptions.push_back("ops priced from the measured curves of " + prof->file.string() + " (" + prof->cpu_model + ", " +
                              std::to_string(prof->threads) + " threads, " + prof->date + ")" +
                              (prof->fit ? ", with per-op corrections fitted by moeplan validate on " + std::to_string(prof->fit->configurations) + " runs"
                                         : "; no validate fit yet (per-op corrections 1, no step remainder)"));
  } else {
    std::string gemm = format_fixed(e.gemm_compute, 2) + " of peak";
    if (!e.gemm_compute_measured.empty()) {
      std::string by;
      for (const auto& [dtype, share] : e.gemm_compute_measured) by += (by.empty() ? "" : ", ") + format_fixed(share, 2) + " " + dtype;
      gemm = by + " of peak (measured), " + gemm + " otherwise";
    }
    const std::string expert_fill =
        e.expert_tile_rows_max > 0
            ? (e.expert_tile_fits_step ? "whole tiles of up to " : "whole tiles of ") + format_fixed(e.expert_tile_rows_max, 0) +
                  " tokens per expert"
            : "half at " + format_fixed(e.expert_rows_half, 0) + " tokens/expert";
    res.assumptions.push_back("efficiency (" + e.source + "): GEMM " + gemm + ", experts " +
                            format_fixed(e.expert_compute, 3) + " of peak (" + expert_fill +
                            ") and " + format_fixed(e.expert_memory, 2) + " of bandwidth, attention " + format_fixed(e.attention_compute, 2) +
                            ", memory " + format_fixed(e.memory, 2) + ", KV " + format_fixed(e.kv_memory, 2) +
                            ", links " + format_fixed(e.comm_bandwidth, 2) + "; " + format_fixed(e.op_overhead_us, 1) +
                            " us per op, " + format_fixed(e.step_overhead_us, 0) + " us per step");
  }
  if (m.is_moe()) res.assumptions.push_back("router: " + res.routing + "; EP steps wait for the busiest rank");
  if (const std::vector<std::int64_t>& g = r.limits.graph_padded_batches; !g.empty()) {
    std::vector<std::string> sizes;
    for (const std::int64_t b : g) sizes.push_back(std::to_string(b));
    res.assumptions.push_back("CUDA graphs: a decode-only step of up to " + with_commas(g.back()) +
                              " sequences runs as the next captured batch (" + join(sizes, ", ") +
                              "), padded with dummy sequences (--cuda-graph-batch-sizes)");
  }
  res.assumptions.push_back("scheduler: continuous batching, chunked prefill (" + with_commas(r.limits.max_num_batched_tokens) +
                            " tokens/step), max batch " + with_commas(r.limits.max_batch) +
                            " per attention group, KV reserved for prompt + output on admission");
}

}  // namespace

SimulateResult simulate(const SimulateRequest& r) {
  check_request(r);
  const model::ParallelLayout& lay = r.layout;
  const Workload& w = r.workload;
  const std::int64_t length = w.input_tokens + w.output_tokens;

  SimulateResult res;
  res.gpus = lay.gpus() * (1 + std::max(0, r.prefill_replicas));
  res.engine = r.engine;
  res.engine_version = r.engine_version;
  const StepModel step(step_request(r, res));
  if (skewed_curve_dist(step.block_curve_dist()))
    res.routing += " where the curves end; routed experts priced from the GPU profile's kernels measured under "
                   "AIConfigurator's " + step.block_curve_dist() + " workload (data/gpu_profiles/router.yaml)";
  const DeviceRoom room = device_room(r, step, length, res);
  const ServingLimits lim = serving_limits(r, step, room);

  // Serving: aggregated, or a prefill pool feeding a decode pool.
  if (r.prefill_replicas <= 0) res.serving = simulate_serving(step, lim, w, lay.gpus());
  else serve_disaggregated(r, step, lim, res);

  // Memory at the batch the simulation reached.
  res.memory = memory_breakdown(
      memory_request(r, length, std::max<std::int64_t>(1, res.serving.peak_batch * std::max(1, lay.dp))));
  if (r.offload.active()) offload_memory(r, room, res);
  if (r.with_breakdown) step_breakdowns(r, step, res);
  add_assumptions(r, res);
  return res;
}

}  // namespace moeplan::simulator
