// simulator/step_cost: the roofline price of one forward step. Each op of the op graph costs
//   max(FLOPs / (peak(dtype) × compute efficiency), bytes / (bandwidth × memory efficiency)) + fixed overhead,
// collectives cost alpha-beta over the link their group spans, and the step is the sum over ops × layers.
// The op costs are precomputed per configuration, so one step estimate is a few hundred multiply-adds.
// Derivations and sources: docs/simulator.md.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/op_graph.hpp"
#include "simulator/hardware.hpp"
#include "simulator/routing.hpp"

namespace moeplan::simulator {

// One forward step of one attention group (one DP rank of one pipeline stage), as aggregates over its sequences.
struct StepShape {
  double decode_tokens = 0;         // sequences decoding one token
  double prefill_tokens = 0;        // prompt tokens prefilled in this step
  double logit_tokens = 0;          // tokens whose logits are computed
  double pairs_decode_full = 0, pairs_decode_window = 0;    // Σ keys attended by decode queries
  double pairs_prefill_full = 0, pairs_prefill_window = 0;  // Σ keys attended by prefill queries
  double kv_read_full = 0, kv_read_window = 0;              // Σ cached tokens read (decode sequences)
  double tokens() const { return decode_tokens + prefill_tokens; }
  StepShape& operator+=(const StepShape& o);
  StepShape scaled(double f) const;
};

// The step variables a shape gives directly, as StepModel prices them: one, tokens, decode and prefill tokens,
// logits, attention pairs and KV reads (the routed-expert variables need the routing model: StepModel::values).
model::StepValues shape_values(const StepShape& shape);
// Tokens each GPU dispatches to the other GPUs of its MoE group (tp × dp GPUs): its 1/tp share of its attention
// group's `tokens`, top_k copies of each.
double moe_dispatch_tokens(double tokens, const model::ParallelLayout& layout, std::int64_t top_k);

// Shapes of the common cases, exact for the layer kinds of the graph (window = chunk or sliding window).
//   decode of `seqs` sequences, each with `context` tokens in cache including the new one;
//   prefill of `tokens` prompt tokens at positions [offset, offset + tokens) of one sequence.
StepShape decode_shape(double seqs, std::int64_t context, const model::OpGraph& g, model::AttentionKind window_kind);
StepShape prefill_shape(std::int64_t tokens, std::int64_t offset, bool last_chunk, const model::OpGraph& g,
                        model::AttentionKind window_kind);
// How a graph's windowed layers attend, as decode_shape and prefill_shape take it: sliding when a layer class
// slides, else chunked.
model::AttentionKind window_kind(const model::OpGraph& g);
// Keys a query at 1-based position p attends: full p; chunked (p−1) mod C + 1; sliding min(p, W).
inline double window_keys(std::int64_t position, std::int64_t window, model::AttentionKind kind) {
  if (window <= 0) return static_cast<double>(position);
  if (kind == model::AttentionKind::chunked) return static_cast<double>((position - 1) % window + 1);
  return static_cast<double>(std::min(position, window));
}

enum class Bound { compute, memory, comm, overhead };
const char* bound_name(Bound b);

struct OpTime {
  model::Op op;            // a copy: results outlive the StepModel that priced them
  double time_s = 0;       // for all repeats of the op in the step
  double compute_s = 0, memory_s = 0, comm_s = 0, overhead_s = 0;
  bool on_host = false;    // priced on the offload host
  std::string compute_dtype;  // dtype whose peak priced it (after the hardware fallback); breakdowns only
  Bound bound = Bound::memory;
  // How it was priced: "roofline"; "profile" (a measured kernel curve of the GPU profile, interpolated); or
  // "extrapolated" (the profile holds the shape but not this size, so the roofline priced it).
  const char* source = "roofline";
};

// Where ops run when a GPU offloads part of the model to host RAM (llama.cpp -ngl / --override-tensor exps=CPU).
struct Offload {
  bool experts_on_host = false;  // routed experts live in host RAM and run on the CPU
  int gpu_layers = -1;           // layers [0, gpu_layers) on the GPU, the rest on the host; -1 = all on GPU
  bool active() const { return experts_on_host || gpu_layers >= 0; }
};

// What one op costs per unit on one device, as StepModel folds it into the op (docs/simulator.md). Depends on the
// op's kind, compute dtype and weight format only, so ops that share those share rates.
struct OpRates {
  double inv_flops = 0;    // s per FLOP at full efficiency (dtype peak, op-class efficiency, dequantisation)
  double rows_half = 0;    // rows for half of the GEMM efficiency (0: no tile-fill term)
  double inv_bw = 0;       // s per weight/activation byte
  double inv_kv_bw = 0;    // s per KV byte
  double overhead_s = 0;   // fixed time per kernel
};
OpRates op_rates(const model::Op& op, const Hardware& hw);
// The compute multiplier of an expert GEMM run as per-expert token tiles (Efficiency::expert_tile_rows): the columns
// its tiles compute over the (token, expert) assignments it has, at step values x (>= 1; 1 up to gemv_max_rows tokens).
double expert_tile_waste(const Efficiency& eff, double assignments, const model::StepValues& x);

// What pricing a decode-attention op from a GPU op profile needs of the op: its shape on one GPU (kv dtype, heads,
// window), and the KV bytes and FLOPs one more key costs per sequence (the roofline's slope).
struct DecodeAttentionOp {
  AttentionShape shape;
  model::AttentionKind window_kind = model::AttentionKind::global;  // of the window, when shape.window > 0
  double kv_bytes_per_key = 0, flops_per_key = 0;
  bool window() const { return shape.window > 0; }  // its keys: the pairs_decode_window variable
};
// Of a decode-attention op (layer_window_kind: how the graph's windowed layers attend); nullopt for other ops.
std::optional<DecodeAttentionOp> decode_attention_op(const model::Op& op, model::AttentionKind layer_window_kind);

// That op on one profile and device: the curves of its shape (empty when the profile lacks it) and the roofline's
// seconds per (sequence, key) at rates r, the KV bytes or the FLOPs of one more key, whichever binds: the slope the
// curves are extended by beyond their last measured position (docs/gpu_profiles.md "Decode attention").
struct MeasuredDecodeAttention {
  DecodeAttentionCurves curves;
  double s_per_key = 0;
  bool window = false;
};
MeasuredDecodeAttention measured_decode_attention(const GpuProfile& profile, const DecodeAttentionOp& op,
                                                  const OpRates& r);

// Seconds of all `repeat` calls for `batch` decoding sequences with `keys_full` keys summed over them (their
// positions) and `keys_attended` keys they attend (the window applied).
double measured_decode_attention_s(const MeasuredDecodeAttention& a, double repeat, double batch, double keys_full,
                                   double keys_attended, bool* extrapolated);

// A prefill-attention op's shape on one GPU, for pricing it from a GPU op profile's context-attention curves.
struct PrefillAttentionOp {
  AttentionShape shape;
  model::AttentionKind window_kind = model::AttentionKind::global;  // of the window, when shape.window > 0
};
// Of a prefill-attention op (layer_window_kind: how the graph's windowed layers attend); nullopt for other ops.
std::optional<PrefillAttentionOp> prefill_attention_op(const model::Op& op, model::AttentionKind layer_window_kind);
// Seconds of all `repeat` calls over `tokens` prompt tokens with `pairs_full` causal (query, key) pairs (the step's
// pairs_prefill_full; a windowed op's curves carry its window): PrefillAttentionCurves::seconds.
double measured_prefill_attention_s(const PrefillAttentionCurves& c, double repeat, double tokens, double pairs_full,
                                    bool* extrapolated);

// Alpha-beta price of one collective: time = fixed_s + bytes × per_byte_s. `runs` is false where no collective
// runs (one rank, or a host). Throws InputError when the link it needs has no bandwidth.
struct CollectiveRates {
  bool runs = false;
  double fixed_s = 0, per_byte_s = 0;
};
CollectiveRates collective_rates(model::OpKind kind, int group_ranks, const Hardware& hw, const model::ParallelLayout& layout);
// Where a group of `ranks` GPUs sits: per_node = min(ranks, gpus_per_node) of them on each of `nodes` nodes.
struct GroupSpan {
  int ranks = 1, per_node = 1, nodes = 1;
};
GroupSpan group_span(const Hardware& hw, int ranks);
// The pipeline hand-off between stages: fixed_s + tokens × per_byte_s (per_byte_s is per token here); zero for pp = 1.
CollectiveRates pipeline_rates(const Hardware& hw, const model::ParallelLayout& layout, double activation_bytes,
                               std::int64_t hidden);

// An all-reduce over `ranks` GPUs of one node priced from a profile's measured curves (NCCL/RCCL and the engine's
// custom all-reduce): per call, the fastest implementation measured at that message size, as the engines pick
// one by size; beyond a curve's range its end point scaled by the alpha-beta price `rates` (curve_seconds). Empty
// when the profile has no all-reduce of that many ranks or the group spans nodes (the curves are one node's).
struct MeasuredCollective {
  std::vector<const GpuCurve*> curves;
  CollectiveRates rates;
  double curve_bytes_per_byte = 1;  // the curves' x per byte of the op's message (a gather's curve: all ranks' pieces)
};
MeasuredCollective measured_all_reduce(const GpuProfile& profile, const Hardware& hw, int ranks,
                                       const CollectiveRates& rates);
// An attention-DP MoE gather (moe.dispatch: NCCL all-gather) or its reduce-scatter (moe.combine) of `ranks` pieces,
// from the profile's NCCL curves of that many ranks on one node; the op's message is one rank's piece, the curves'
// x the whole buffer (nccl-tests: all_gather's output, reduce_scatter's input), so x = ranks x the piece. Empty as
// measured_all_reduce's.
inline bool is_moe_gather(model::OpKind kind, const char* name) {
  const std::string_view n = name;
  return kind == model::OpKind::all_gather && (n == "moe.dispatch" || n == "moe.combine");
}
MeasuredCollective measured_moe_gather(const GpuProfile& profile, const Hardware& hw, bool reduce_scatter, int ranks,
                                       const CollectiveRates& rates);
// Seconds of `repeat` calls of `bytes` each.
double measured_collective_s(const MeasuredCollective& c, double repeat, double bytes, bool* extrapolated);

struct StepModelRequest {
  model::OpGraphRequest graph;
  Hardware hardware;
  RoutingModel routing = RoutingModel::uniform(0, 0, 1);
  Offload offload;
  Hardware host;                 // used when offload is active
};

class StepModel {
 public:
  explicit StepModel(const StepModelRequest& request);
  // With an op graph already built for request.graph (it depends on model, precision and layout, not on hardware):
  // the planner prices one graph on many GPUs.
  StepModel(const StepModelRequest& request, std::shared_ptr<const model::OpGraph> graph);

  // Wall time of one step on the bottleneck stage, for `shape` of one attention group. With pp > 1 the step is
  // pipelined: the group's tokens are cut into pp micro-batches and each sequence advances once per pp stage times.
  double step_time_s(const StepShape& shape) const;
  // The same when the dp groups differ: `moe_tokens` is the sum of all groups' tokens, which meet in MoE layers.
  double step_time_s(const StepShape& shape, double moe_tokens) const;
  // Per-op times (pp = 1 view of one stage, for the breakdown table).
  std::vector<OpTime> breakdown(const StepShape& shape) const;
  model::StepValues values(const StepShape& shape) const;               // groups alike: MoE sees tokens × dp
  model::StepValues values(const StepShape& shape, double moe_tokens) const;

  const model::OpGraph& graph() const { return *graph_; }
  const Hardware& hardware() const { return hw_; }
  const RoutingModel& routing() const { return routing_; }
  // The router workload of the GPU profile curve that prices the routed-expert block ("" when none does).
  const std::string& block_curve_dist() const { return block_curve_dist_; }
  const model::ParallelLayout& layout() const { return layout_; }
  // Dtype each GEMM computes in, after the hardware fallback (e.g. fp8 → bf16 on A100), for reports.
  std::string compute_dtype_used(const model::Op& op) const;

 private:
  struct Priced {               // an op with its rates folded in
    const model::Op* op;
    double repeat_gpu = 0, repeat_host = 0;
    OpRates gpu_rates, host_rates;  // the roofline's rates on the GPU and on the offload host (when repeat_host > 0)
    // collectives: time = fixed_s + bytes × per_byte_s
    double comm_fixed_s = 0, comm_per_byte_s = 0;
    bool expert = false;
    bool expert_tiles_gpu = false, expert_tiles_host = false;  // priced as the engine's per-expert token tiles
    double scale_prefill = 1, scale_decode = 1;  // a profile's fitted corrections for this op: scale · tokens^slope
    double slope_prefill = 0, slope_decode = 0;
    // GPU op profile: the measured curve that prices this op (a dense GEMM by rows; the routed-expert block by
    // tokens, on its first op) and, for the block, the ops it stands for, priced by it and so skipped.
    const GpuCurve* curve = nullptr;
    bool curve_block = false;             // the curve prices the whole routed-expert block
    bool curve_skewed = false;            // the block's curve was measured under a skewed router: x = the MoE
                                          //   tokens, no routing ratio
    const GpuCurve* block_curve = nullptr;  // another op of the block: 0 while the block's curve applies
    MeasuredDecodeAttention attention;    // decode attention priced from measured curves (when they hold its shape)
    PrefillAttentionCurves prefill_attention;  // prefill attention priced from measured curves (the same)
    MeasuredCollective collective;        // an all-reduce priced from measured curves (when they hold its ranks)
    std::vector<std::size_t> block_ops;   // on the block's first op: the block's ops of its layer class, in priced_
  };
  double stage_time_s(const model::StepValues& x, std::vector<OpTime>* out) const;
  double op_time(const Priced& p, const model::StepValues& x, bool host, OpTime* out) const;
  double roofline_time(const Priced& p, const model::StepValues& x, bool host, OpTime* out) const;
  // The curve's x for this op at step values x: GEMM rows, or the expert block's tokens: on a balanced-router curve
  // the busiest rank's assignments expressed as balanced tokens (assignments × ep / top-k, the profile's
  // num_tokens); on a skewed-router curve, whose busiest rank is in the measurement, the MoE tokens themselves.
  double curve_x(const Priced& p, const model::StepValues& x) const;
  // The block curve's time scaled by the roofline of this step's routing over that of the curve's balanced one.
  double block_routing_ratio(const Priced& p, const model::StepValues& x) const;
  void attach_gpu_profile(const model::ModelConfig& m);
  double measured_attention_time(const Priced& p, const model::StepValues& x, OpTime* out) const;
  double measured_prefill_time(const Priced& p, const model::StepValues& x, OpTime* out) const;

  std::shared_ptr<const model::OpGraph> graph_;
  Hardware hw_, host_;
  RoutingModel routing_;
  std::string block_curve_dist_;
  model::ParallelLayout layout_;
  std::vector<Priced> priced_;
  model::AttentionKind window_kind_ = model::AttentionKind::chunked;
  std::int64_t top_k_ = 0;
  double p2p_fixed_s_ = 0, p2p_per_token_s_ = 0;
  const ProfileCurves* curves_ = nullptr;  // hw_.profile's curves for this layout's ranks, when profiled
};

}  // namespace moeplan::simulator
