// simulator/step_cost: prices the op graph (see step_cost.hpp; every formula in docs/simulator.md).
#include "simulator/step_cost.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "common/error.hpp"
#include "common/numeric.hpp"

namespace moeplan::simulator {

using model::OpKind;
using model::StepVar;

namespace {
std::size_t ix(StepVar v) { return static_cast<std::size_t>(v); }
}  // namespace

const char* bound_name(Bound b) {
  switch (b) {
    case Bound::compute: return "compute";
    case Bound::memory: return "memory";
    case Bound::comm: return "comm";
    case Bound::overhead: return "overhead";
  }
  return "?";
}

StepShape& StepShape::operator+=(const StepShape& o) {
  decode_tokens += o.decode_tokens;
  prefill_tokens += o.prefill_tokens;
  logit_tokens += o.logit_tokens;
  pairs_decode_full += o.pairs_decode_full;
  pairs_decode_window += o.pairs_decode_window;
  pairs_prefill_full += o.pairs_prefill_full;
  pairs_prefill_window += o.pairs_prefill_window;
  kv_read_full += o.kv_read_full;
  kv_read_window += o.kv_read_window;
  return *this;
}

StepShape StepShape::scaled(double f) const {
  StepShape s = *this;
  for (double* v : {&s.decode_tokens, &s.prefill_tokens, &s.logit_tokens, &s.pairs_decode_full, &s.pairs_decode_window,
                    &s.pairs_prefill_full, &s.pairs_prefill_window, &s.kv_read_full, &s.kv_read_window})
    *v *= f;
  return s;
}

StepShape decode_shape(double seqs, std::int64_t context, const model::OpGraph& g, model::AttentionKind window_kind) {
  StepShape s;
  s.decode_tokens = seqs;
  s.logit_tokens = seqs;
  s.pairs_decode_full = s.kv_read_full = seqs * to_double(context);
  if (g.has_window) s.pairs_decode_window = s.kv_read_window = seqs * window_keys(context, g.window_tokens, window_kind);
  return s;
}

StepShape prefill_shape(std::int64_t tokens, std::int64_t offset, bool last_chunk, const model::OpGraph& g,
                        model::AttentionKind window_kind) {
  StepShape s;
  s.prefill_tokens = to_double(tokens);
  s.logit_tokens = last_chunk ? 1 : 0;
  // Σ_{p = offset+1}^{offset+tokens} p
  s.pairs_prefill_full = to_double(tokens) * to_double(offset) + to_double(tokens) * to_double(tokens + 1) / 2.0;
  // Positions offset+1..offset+tokens: the pairs of the prompt up to the chunk's end less those before it.
  if (g.has_window)
    s.pairs_prefill_window = prompt_pairs(to_double(offset + tokens), g.window_tokens, window_kind) -
                             prompt_pairs(to_double(offset), g.window_tokens, window_kind);
  return s;
}

StepModel::StepModel(const StepModelRequest& r)
    : StepModel(r, std::make_shared<const model::OpGraph>(model::build_op_graph(r.graph))) {}

namespace {
// The link a point-to-point hand-off uses: NVLink/PCIe inside a node, the GPU's share of the NICs beyond it.
void link_for(const Hardware& hw, bool off_node, double* bw, double* alpha) {
  if (off_node && hw.inter_bandwidth_bytes_per_s > 0) {
    *bw = hw.inter_bandwidth_bytes_per_s;
    *alpha = hw.inter_latency_s;
  } else {
    *bw = hw.intra_bandwidth_bytes_per_s;
    *alpha = hw.intra_latency_s;
  }
  if (*bw <= 0) throw InputError(hw.name + ": no interconnect bandwidth in data/links.yaml for a transfer " +
                                 (off_node ? "between nodes" : "inside a node"));
}

void need_links(const Hardware& hw, const GroupSpan& s) {
  if (hw.intra_bandwidth_bytes_per_s <= 0 && s.per_node > 1)
    throw InputError(hw.name + ": no interconnect bandwidth in data/links.yaml for a " + std::to_string(s.ranks) + "-GPU collective");
  if (s.nodes > 1 && hw.inter_bandwidth_bytes_per_s <= 0)
    throw InputError(hw.name + ": no inter-node bandwidth for a " + std::to_string(s.ranks) + "-GPU collective over " +
                     std::to_string(s.nodes) + " nodes (--internode, --nics-per-node)");
}
}  // namespace

GroupSpan group_span(const Hardware& hw, int ranks) {
  GroupSpan s;
  s.ranks = std::max(1, ranks);
  s.per_node = std::min(s.ranks, std::max(1, hw.gpus_per_node));
  s.nodes = (s.ranks + s.per_node - 1) / s.per_node;
  return s;
}

OpRates op_rates(const model::Op& op, const Hardware& h) {
  const Efficiency& ef = h.eff;
  OpRates p;
  // Compute rate: the op's dtype if the hardware has it, else bf16 with a dequantisation penalty.
  double class_eff = ef.gemm_compute;
  if (op.kind == OpKind::expert_gemm) class_eff = ef.expert_compute;
  if (op.kind == OpKind::attention_prefill || op.kind == OpKind::attention_decode) class_eff = ef.attention_compute;
  std::string want = op.compute_dtype.empty() ? "bf16" : op.compute_dtype;
  if (want == "fp4" && !h.peak_flops.count("fp4")) want = "fp8";  // w4a8 kernels on FP8 hardware (Hopper)
  std::string used;
  const double peak = h.peak_for(want, &used);
  if (op.kind == OpKind::gemm || op.kind == OpKind::lm_head) class_eff = ef.gemm_share(used);
  // Weights stored in a format the tensor cores cannot consume (int4/GGUF on any GPU, fp8 on Ampere, fp4 on
  // Hopper) are dequantised in the GEMM's main loop, which costs compute-pipe time.
  const bool quantised = !op.weight_format.empty() && op.weight_format != "bf16" && op.weight_format != "fp16" &&
                         op.weight_format != "fp32";
  const bool weight_only = quantised && (used != op.compute_dtype || used == "bf16" || used == "fp16");
  p.inv_flops = 1.0 / (peak * class_eff * (weight_only ? ef.dequant_compute : 1.0));
  const bool expert = op.kind == OpKind::expert_gemm;
  const bool gemm_like = op.kind == OpKind::gemm || op.kind == OpKind::lm_head || expert;
  const bool elementwise = !gemm_like && op.kind != OpKind::attention_prefill && op.kind != OpKind::attention_decode;
  p.rows_half = gemm_like ? (expert ? ef.expert_rows_half : ef.gemm_rows_half) : 0;
  const bool weights_16bit = op.weight_format == "fp16" || op.weight_format == "bf16";
  const double stream = gemm_like && weights_16bit && ef.memory_16bit > 0 ? ef.memory_16bit : ef.memory;
  p.inv_bw = 1.0 / (h.mem_bandwidth_bytes_per_s * (elementwise ? ef.elementwise_memory : expert && !h.host ? ef.expert_memory : stream));
  p.inv_kv_bw = 1.0 / (h.mem_bandwidth_bytes_per_s * ef.kv_memory);
  p.overhead_s = (expert ? std::max(ef.op_overhead_us, 0.5 * ef.expert_block_us) : ef.op_overhead_us) * 1e-6;
  return p;
}

// Every formula here is derived in docs/simulator.md "Collectives".
CollectiveRates collective_rates(model::OpKind kind, int group_ranks, const Hardware& hw, const model::ParallelLayout& layout) {
  CollectiveRates c;
  const int n = group_ranks;
  if (hw.host || n <= 1) return c;  // no collective on one device
  const Efficiency& e = hw.eff;
  const int gpn = std::max(1, hw.gpus_per_node);
  const double base = e.collective_base_us * 1e-6;
  c.runs = true;
  if (kind == OpKind::send_recv) {
    double bw = 0, alpha = 0;
    link_for(hw, layout.tp * layout.dp >= gpn, &bw, &alpha);
    c.fixed_s = base + alpha;
    c.per_byte_s = 1.0 / (bw * e.comm_bandwidth);
    return c;
  }
  const GroupSpan s = group_span(hw, n);
  need_links(hw, s);
  const int g = s.per_node, nodes = s.nodes;
  if (kind == OpKind::all_to_all) {
    // One message to each of the g − 1 peers on the node (NVLink/PCIe) and one per other node over the NIC, messages
    // to remote peers aggregated per node as DeepEP's and NCCL's PXN paths do. The bytes split by where the peers
    // are: (n − g)/(n − 1) of them leave the node through this GPU's NIC share, the rest cross NVLink/PCIe, in parallel.
    c.fixed_s = base + (g - 1) * hw.intra_latency_s + (nodes - 1) * hw.inter_latency_s;
    const double off = to_double(n - g) / to_double(n - 1);
    const double on_s = off < 1 ? (1 - off) / hw.intra_bandwidth_bytes_per_s : 0;
    const double off_s = off > 0 ? off / hw.inter_bandwidth_bytes_per_s : 0;
    c.per_byte_s = std::max(on_s, off_s) / e.all_to_all_bandwidth;
    return c;
  }
  // Rings (NCCL's Ring algorithm): of the steps, those that cross a node boundary pay the NIC's latency (all-reduce
  // 2(nodes − 1) of 2(n − 1), all-gather nodes − 1 of n − 1; NCCL tuning.cc). Each boundary is crossed by every
  // channel's ring through the node's NICs together, so the bus bandwidth is min(intra-node link, all of a node's NICs).
  const double nics = hw.node_nic_bandwidth_bytes_per_s();
  const double bus = nodes == 1 ? hw.intra_bandwidth_bytes_per_s : g > 1 ? std::min(hw.intra_bandwidth_bytes_per_s, nics) : nics;
  const int steps = kind == OpKind::all_reduce ? 2 * (n - 1) : n - 1;
  const int inter_steps = nodes > 1 ? (kind == OpKind::all_reduce ? 2 * (nodes - 1) : nodes - 1) : 0;
  c.fixed_s = base + (steps - inter_steps) * hw.intra_latency_s + inter_steps * hw.inter_latency_s;
  if (kind == OpKind::all_reduce) {
    // Ring all-reduce: each GPU sends 2(n−1)/n of the message (NCCL's busBw = algBw · 2(n−1)/n).
    c.per_byte_s = 2.0 * (n - 1) / n / (bus * e.comm_bandwidth);
  } else {  // all_gather: each GPU receives the n−1 other pieces
    c.per_byte_s = to_double(n - 1) / (bus * e.comm_bandwidth);
  }
  return c;
}

std::optional<DecodeAttentionOp> decode_attention_op(const model::Op& op, model::AttentionKind layer_window_kind) {
  if (op.kind != OpKind::attention_decode || op.kv_dtype.empty()) return std::nullopt;
  DecodeAttentionOp a;
  a.shape = {op.kv_dtype, op.heads, op.kv_heads, op.head_dim, op.window};
  a.window_kind = op.window > 0 ? layer_window_kind : model::AttentionKind::global;
  a.kv_bytes_per_key = op.kv_bytes.coefficient(a.window() ? StepVar::kv_read_window : StepVar::kv_read_full);
  a.flops_per_key = op.flops.coefficient(a.window() ? StepVar::pairs_decode_window : StepVar::pairs_decode_full);
  return a;
}

std::optional<PrefillAttentionOp> prefill_attention_op(const model::Op& op, model::AttentionKind layer_window_kind) {
  if (op.kind != OpKind::attention_prefill || op.kv_dtype.empty()) return std::nullopt;
  PrefillAttentionOp a;
  a.shape = {op.kv_dtype, op.heads, op.kv_heads, op.head_dim, op.window};
  a.window_kind = op.window > 0 ? layer_window_kind : model::AttentionKind::global;
  return a;
}

double measured_prefill_attention_s(const PrefillAttentionCurves& c, double repeat, double tokens, double pairs_full,
                                    bool* extrapolated) {
  if (!(tokens > 0) || repeat <= 0) return 0;
  return repeat * c.seconds(tokens, pairs_full, extrapolated);
}

MeasuredDecodeAttention measured_decode_attention(const GpuProfile& profile, const DecodeAttentionOp& op,
                                                  const OpRates& r) {
  MeasuredDecodeAttention a;
  a.curves = find_decode_attention_curves(profile, op.shape, op.window_kind);
  a.s_per_key = std::max(op.kv_bytes_per_key * r.inv_kv_bw, op.flops_per_key * r.inv_flops);
  a.window = op.window();
  return a;
}

MeasuredCollective measured_all_reduce(const GpuProfile& profile, const Hardware& hw, int ranks,
                                       const CollectiveRates& rates) {
  MeasuredCollective c;
  if (!rates.runs || group_span(hw, ranks).nodes > 1) return c;
  c.rates = rates;
  // Message bytes are bytes whatever the element type the table names (AIC's NCCL tables say fp16, its custom
  // all-reduce bf16, RCCL's fp32); int8 curves are quantised all-reduces, which no engine here runs on activations.
  for (const char* dtype : {"bf16", "fp16", "fp32"})
    for (const GpuCurve* curve :
         profile.find_all(GpuCurveKind::all_reduce, {{"dtype", dtype}, {"ranks", std::to_string(ranks)}}))
      c.curves.push_back(curve);
  return c;
}

MeasuredCollective measured_moe_gather(const GpuProfile& profile, const Hardware& hw, bool reduce_scatter, int ranks,
                                       const CollectiveRates& rates) {
  MeasuredCollective c;
  if (!rates.runs || group_span(hw, ranks).nodes > 1) return c;
  c.rates = rates;
  c.curve_bytes_per_byte = ranks;
  // nccl-tests measure bytes whatever the element type (fp16 and int8 curves alike): each is a measurement of moving
  // that many bytes; the fastest at the size prices the call, as for the all-reduce.
  for (const char* dtype : {"bf16", "fp16", "int8"})
    for (const GpuCurve* curve :
         profile.find_all(reduce_scatter ? GpuCurveKind::reduce_scatter : GpuCurveKind::all_gather,
                          {{"dtype", dtype}, {"ranks", std::to_string(ranks)}, {"impl", "nccl"}}))
      c.curves.push_back(curve);
  return c;
}

double measured_collective_s(const MeasuredCollective& c, double repeat, double bytes, bool* extrapolated) {
  if (!(bytes > 0) || repeat <= 0 || c.curves.empty()) return 0;
  // The curves' x is curve_bytes_per_byte x the op's bytes; the alpha-beta price beyond them is in the op's bytes.
  const double scale = c.curve_bytes_per_byte;
  const auto alpha_beta = [&](double b) { return c.rates.fixed_s + b / scale * c.rates.per_byte_s; };
  double best = 0;
  bool best_extrapolated = false;
  for (const GpuCurve* curve : c.curves) {
    bool ex = false;
    const double t = curve_seconds(*curve, bytes * scale, alpha_beta, &ex);
    if (best == 0 || t < best) {
      best = t;
      best_extrapolated = ex;
    }
  }
  if (extrapolated && best_extrapolated) *extrapolated = true;
  return repeat * best;
}

double measured_decode_attention_s(const MeasuredDecodeAttention& a, double repeat, double batch, double keys_full,
                                   double keys_attended, bool* extrapolated) {
  if (!(batch > 0) || repeat <= 0) return 0;
  return repeat * a.curves.seconds(batch, keys_full / batch, keys_attended / batch, a.s_per_key, extrapolated);
}

CollectiveRates pipeline_rates(const Hardware& hw, const model::ParallelLayout& layout, double activation_bytes,
                               std::int64_t hidden) {
  // One activation row per token over the link between stage groups.
  CollectiveRates c;
  if (layout.pp <= 1 || hw.host) return c;
  const int gpn = std::max(1, hw.gpus_per_node);
  double bw = 0, alpha = 0;
  link_for(hw, layout.tp * layout.dp >= gpn, &bw, &alpha);
  c.runs = true;
  c.fixed_s = hw.eff.collective_base_us * 1e-6 + alpha;
  c.per_byte_s = activation_bytes * to_double(hidden) / (bw * hw.eff.comm_bandwidth);
  return c;
}

StepModel::StepModel(const StepModelRequest& r, std::shared_ptr<const model::OpGraph> graph)
    : graph_(std::move(graph)), hw_(r.hardware), host_(r.host), routing_(r.routing), layout_(r.graph.layout) {
  const model::ModelConfig& m = *r.graph.model;
  top_k_ = m.experts_per_token;
  for (const auto& l : m.layers)
    if (l.attention == model::AttentionKind::chunked || l.attention == model::AttentionKind::sliding) window_kind_ = l.attention;
  if (r.offload.active() && host_.mem_bandwidth_bytes_per_s <= 0)
    throw InputError("offloading needs a host: give --offload-host NAME or --mem-bandwidth-gbps and --ram-gb");

  if (hw_.profile) {
    if (r.offload.active()) throw InputError("a measured host profile prices the host alone; offloading is not modelled with it");
    curves_ = &hw_.profile->curves(layout_.tp * layout_.dp * layout_.pp);
  }

  for (const model::Op& op : graph_->ops) {
    Priced p;
    p.op = &op;
    // Which device runs the op under offloading.
    double on_host_share = 0;
    if (r.offload.experts_on_host && (op.kind == OpKind::expert_gemm || op.name == std::string("moe.experts.act"))) on_host_share = 1;
    if (r.offload.gpu_layers >= 0) {
      if (op.layer_class >= 0) {
        const auto& cls = graph_->layer_classes[static_cast<std::size_t>(op.layer_class)];
        int host_layers = 0;
        for (int li : cls.layer_indices) host_layers += li >= r.offload.gpu_layers ? 1 : 0;
        if (on_host_share == 0) on_host_share = to_double(host_layers) / to_double(std::max(1, cls.layers));
      } else if (op.kind == OpKind::embedding) {
        on_host_share = 1;  // llama.cpp keeps the token embedding in host memory
      }
    }
    p.repeat_gpu = op.repeat * (1 - on_host_share);
    p.repeat_host = op.repeat * on_host_share;
    p.expert = op.kind == OpKind::expert_gemm;
    // llama.cpp's token tiles apply to its quantised expert kernels (MMQ, Metal mul_mm_id); unquantised experts
    // keep the grouped-GEMM curve.
    const bool tiled_format = op.weight_format != "bf16" && op.weight_format != "fp16" && op.weight_format != "fp32";
    p.expert_tiles_gpu = p.expert && tiled_format && hw_.eff.expert_tile_rows_max > 0;
    p.expert_tiles_host = p.expert && tiled_format && host_.eff.expert_tile_rows_max > 0;

    if (curves_) {  // measured profile: op_time prices it from the curves
      const ProfileFit* fit = hw_.profile->fit ? &*hw_.profile->fit : nullptr;
      const int ranks = layout_.tp * layout_.dp * layout_.pp;
      std::tie(p.scale_prefill, p.slope_prefill) = fit_correction(fit, "prefill", ranks, op.name);
      std::tie(p.scale_decode, p.slope_decode) = fit_correction(fit, "decode", ranks, op.name);
      priced_.push_back(p);
      continue;
    }
    if (model::is_collective(op.kind)) {
      const CollectiveRates c = collective_rates(op.kind, op.group_ranks, hw_, layout_);
      if (!c.runs) continue;
      p.comm_fixed_s = c.fixed_s;
      p.comm_per_byte_s = c.per_byte_s;
      priced_.push_back(p);
      continue;
    }

    p.gpu_rates = op_rates(op, hw_);
    if (p.repeat_host > 0) p.host_rates = op_rates(op, host_);
    priced_.push_back(p);
  }

  if (hw_.gpu_profile && !curves_) attach_gpu_profile(m);

  // Pipeline hand-off between stages: one activation row per token over the link between stage groups.
  const CollectiveRates p2p = pipeline_rates(hw_, layout_, r.graph.activation_bytes, m.hidden);
  p2p_fixed_s_ = p2p.fixed_s;
  p2p_per_token_s_ = p2p.per_byte_s;
}

void StepModel::attach_gpu_profile(const model::ModelConfig& m) {
  const GpuProfile& prof = *hw_.gpu_profile;
  // The routed-expert block: one curve by its whole shape on this layout (docs/gpu_profiles.md: the engine's fused
  // MoE kernel, from permute to finalize, on one EP rank).
  const GpuCurve* block = nullptr;
  for (Priced& p : priced_) {
    const model::Op& op = *p.op;
    if (p.repeat_gpu <= 0) continue;
    if (op.kind == OpKind::gemm || op.kind == OpKind::lm_head) {
      p.curve = find_gemm_curve(prof, op.weight_format, op.n, op.k);
    } else if (op.kind == OpKind::all_reduce && (p.comm_fixed_s > 0 || p.comm_per_byte_s > 0)) {
      p.collective = measured_all_reduce(prof, hw_, op.group_ranks, {true, p.comm_fixed_s, p.comm_per_byte_s});
    } else if (is_moe_gather(op.kind, op.name) && (p.comm_fixed_s > 0 || p.comm_per_byte_s > 0)) {
      p.collective = measured_moe_gather(prof, hw_, std::string(op.name) == "moe.combine", op.group_ranks,
                                         {true, p.comm_fixed_s, p.comm_per_byte_s});
    } else if (const auto a = decode_attention_op(op, window_kind_)) {
      p.attention = measured_decode_attention(prof, *a, op_rates(op, hw_));
    } else if (const auto pa = prefill_attention_op(op, window_kind_)) {
      p.prefill_attention = find_prefill_attention_curves(prof, pa->shape, pa->window_kind);
    } else if (op.kind == OpKind::expert_gemm && std::string(op.name) == "moe.experts.gate_up") {
      block = find_expert_block_curve(prof, {op.weight_format, m.hidden, m.moe_intermediate, m.num_experts,
                                             m.experts_per_token, layout_.moe_tp(), layout_.ep,
                                             hw_.peak_flops.count("fp4") > 0},
                                      simulator::block_curve_dist(routing_, m));
      p.curve = block;
      p.curve_block = block != nullptr;
      p.curve_skewed = block && skewed_block_curve(*block);
    }
  }
  if (!block) return;
  block_curve_dist_ = gpu_curve_field(*block, "dist");
  const bool skewed = skewed_block_curve(*block);
  for (Priced& p : priced_)
    if (!p.curve_block && is_expert_block_op(p.op->name)) {
      p.block_curve = block;
      p.curve_skewed = skewed;
    }
  for (Priced& lead : priced_) {
    if (!lead.curve_block) continue;
    for (std::size_t i = 0; i < priced_.size(); ++i)
      if (is_expert_block_op(priced_[i].op->name) && priced_[i].op->layer_class == lead.op->layer_class)
        lead.block_ops.push_back(i);
  }
}

double StepModel::block_routing_ratio(const Priced& p, const model::StepValues& x) const {
  // The curve was measured with a balanced router: its A assignments on a rank touch min(E_rank, A) experts. This
  // step's routing touches experts_touched (fewer, from the routing model) with the same A; the roofline of the
  // block's ops at both says how much fewer weight bytes that reads (docs/gpu_profiles.md).
  model::StepValues balanced = x;
  const double a = x[ix(StepVar::expert_assignments)];
  balanced[ix(StepVar::experts_touched)] = std::min(static_cast<double>(graph_->experts_per_rank), a);
  double actual_s = 0, balanced_s = 0;
  for (std::size_t i : p.block_ops) {
    actual_s += roofline_time(priced_[i], x, false, nullptr);
    balanced_s += roofline_time(priced_[i], balanced, false, nullptr);
  }
  return balanced_s > 0 && actual_s > 0 ? actual_s / balanced_s : 1.0;
}

double StepModel::curve_x(const Priced& p, const model::StepValues& x) const {
  if (p.curve_skewed) return x[ix(StepVar::moe_tokens)];
  if (p.curve_block || p.block_curve)
    return x[ix(StepVar::expert_assignments)] * layout_.ep / static_cast<double>(std::max<std::int64_t>(1, top_k_));
  return p.op->rows.at(x);
}

model::StepValues StepModel::values(const StepShape& s) const { return values(s, s.tokens() * layout_.dp); }

model::AttentionKind window_kind(const model::OpGraph& g) {
  for (const auto& c : g.layer_classes)
    if (c.attention == model::AttentionKind::sliding) return model::AttentionKind::sliding;
  return model::AttentionKind::chunked;
}

model::StepValues shape_values(const StepShape& s) {
  model::StepValues x{};
  x[ix(StepVar::one)] = 1;
  x[ix(StepVar::tokens)] = s.tokens();
  x[ix(StepVar::decode_tokens)] = s.decode_tokens;
  x[ix(StepVar::prefill_tokens)] = s.prefill_tokens;
  x[ix(StepVar::logit_tokens)] = s.logit_tokens;
  x[ix(StepVar::pairs_decode_full)] = s.pairs_decode_full;
  x[ix(StepVar::pairs_decode_window)] = s.pairs_decode_window;
  x[ix(StepVar::pairs_prefill_full)] = s.pairs_prefill_full;
  x[ix(StepVar::pairs_prefill_window)] = s.pairs_prefill_window;
  x[ix(StepVar::kv_read_full)] = s.kv_read_full;
  x[ix(StepVar::kv_read_window)] = s.kv_read_window;
  return x;
}

double moe_dispatch_tokens(double tokens, const model::ParallelLayout& layout, std::int64_t top_k) {
  const int group = layout.tp * layout.dp;
  return tokens / layout.tp * to_double(top_k) * to_double(group - 1) / to_double(group);
}

model::StepValues StepModel::values(const StepShape& s, double moe_tokens) const {
  model::StepValues x = shape_values(s);
  if (graph_->experts_per_rank > 0 && moe_tokens > 0) {
    // Tokens of all DP ranks meet in each MoE layer.
    const RoutingStats r = routing_.at(moe_tokens);
    x[ix(StepVar::experts_touched)] = r.experts_touched;
    x[ix(StepVar::expert_assignments)] = r.busiest_assignments;
    x[ix(StepVar::moe_dispatch_tokens)] = moe_dispatch_tokens(s.tokens(), layout_, top_k_);
    x[ix(StepVar::moe_tokens)] = moe_tokens;
  }
  return x;
}

double StepModel::op_time(const Priced& p, const model::StepValues& x, bool host, OpTime* out) const {
  const model::Op& op = *p.op;
  const double repeat = host ? p.repeat_host : p.repeat_gpu;
  if (repeat <= 0) return 0;
  if (curves_) {
    const bool prefill = x[ix(StepVar::prefill_tokens)] > 0;
    double tokens = std::max(1.0, x[ix(prefill ? StepVar::prefill_tokens : StepVar::decode_tokens)]);
    if (hw_.profile->fit) tokens = hw_.profile->fit->clamp_tokens(prefill, tokens);
    const double slope = prefill ? p.slope_prefill : p.slope_decode;
    const double t = repeat * (prefill ? p.scale_prefill : p.scale_decode) * (slope != 0 ? std::pow(tokens, slope) : 1.0) *
                     profile_op_seconds(*curves_, op, x);
    if (out) {
      const bool comm = model::is_collective(op.kind);
      (comm ? out->comm_s : out->compute_s) = t;
      out->bound = comm ? Bound::comm : Bound::compute;
    }
    return t;
  }
  if (!host && !p.attention.curves.empty()) return measured_attention_time(p, x, out);
  if (!host && !p.prefill_attention.empty()) return measured_prefill_time(p, x, out);
  if (!host && !p.collective.curves.empty()) {
    bool extrapolated = false;
    const double t = measured_collective_s(p.collective, repeat, op.comm_bytes.at(x), &extrapolated);
    if (out && t > 0) {
      out->comm_s = t;
      out->bound = Bound::comm;
      out->source = extrapolated ? "extrapolated" : "profile";
    }
    return t;
  }
  if (!host && (p.curve || p.block_curve)) {
    const GpuCurve& c = p.curve ? *p.curve : *p.block_curve;
    const double cx = curve_x(p, x);
    if (cx > 0 && cx >= c.x_min() && cx <= c.x_max()) {
      // Measured: the curve's time per call (the block's whole time on its first op, 0 on the others).
      const double t = p.block_curve ? 0.0
                       : repeat * c.seconds().at(cx) * (p.curve_block && !p.curve_skewed ? block_routing_ratio(p, x) : 1.0);
      if (out) {  // the roofline's terms say which side binds; the time is the measurement
        roofline_time(p, x, host, out);
        out->source = "profile";
      }
      return t;
    }
    const double t = roofline_time(p, x, host, out);
    if (out && cx > 0) out->source = "extrapolated";
    return t;
  }
  return roofline_time(p, x, host, out);
}

double StepModel::measured_attention_time(const Priced& p, const model::StepValues& x, OpTime* out) const {
  bool extrapolated = false;
  const double keys = x[ix(p.attention.window ? StepVar::pairs_decode_window : StepVar::pairs_decode_full)];
  const double t = measured_decode_attention_s(p.attention, p.repeat_gpu, x[ix(StepVar::decode_tokens)],
                                               x[ix(StepVar::pairs_decode_full)], keys, &extrapolated);
  if (out && t > 0) {  // the roofline's terms say which side binds; the time is the measurement's
    roofline_time(p, x, false, out);
    out->source = extrapolated ? "extrapolated" : "profile";
  }
  return t;
}

double StepModel::measured_prefill_time(const Priced& p, const model::StepValues& x, OpTime* out) const {
  bool extrapolated = false;
  const double t = measured_prefill_attention_s(p.prefill_attention, p.repeat_gpu, x[ix(StepVar::prefill_tokens)],
                                                x[ix(StepVar::pairs_prefill_full)], &extrapolated);
  if (out && t > 0) {  // the roofline's terms say which side binds; the time is the measurement's
    roofline_time(p, x, false, out);
    out->source = extrapolated ? "extrapolated" : "profile";
  }
  return t;
}

double StepModel::roofline_time(const Priced& p, const model::StepValues& x, bool host, OpTime* out) const {
  const model::Op& op = *p.op;
  const double repeat = host ? p.repeat_host : p.repeat_gpu;
  if (p.comm_per_byte_s > 0 || p.comm_fixed_s > 0) {
    const double bytes = op.comm_bytes.at(x);
    if (bytes <= 0) return 0;
    const double t = repeat * (p.comm_fixed_s + bytes * p.comm_per_byte_s);
    if (out) {
      out->comm_s = t;
      out->bound = Bound::comm;
    }
    return t;
  }
  const double flops = op.flops.at(x);
  const double bytes = op.weight_bytes.at(x) + op.act_bytes.at(x);
  const double kv = op.kv_bytes.at(x);
  if (flops <= 0 && bytes <= 0 && kv <= 0) return 0;
  const OpRates& rates = host ? p.host_rates : p.gpu_rates;
  double compute = flops * rates.inv_flops;
  const double half = rates.rows_half;
  const Efficiency& eff = (host ? host_ : hw_).eff;
  if (host ? p.expert_tiles_host : p.expert_tiles_gpu) {
    compute *= expert_tile_waste(eff, op.rows.at(x), x);
  } else if (half > 0 && op.rows.at(x) > eff.gemv_max_rows) {
    // Small GEMMs fill few tiles: efficiency × rows/(rows + half). Expert GEMMs count rows per touched expert.
    // (Up to gemv_max_rows rows the engine runs matrix-vector kernels, which have no tiles to fill.)
    double rows = op.rows.at(x);
    if (p.expert) rows /= std::max(1.0, x[ix(StepVar::experts_touched)]);
    if (rows > 0) compute *= (rows + half) / rows;
  }
  const double memory = bytes * rates.inv_bw + kv * rates.inv_kv_bw;
  const double overhead = rates.overhead_s;
  const double t = repeat * (std::max(compute, memory) + overhead);
  if (out) {
    out->compute_s = repeat * compute;
    out->memory_s = repeat * memory;
    out->overhead_s = repeat * overhead;
    out->bound = overhead > std::max(compute, memory) ? Bound::overhead : compute >= memory ? Bound::compute : Bound::memory;
  }
  return t;
}

double expert_tile_waste(const Efficiency& eff, double assignments, const model::StepValues& x) {
  // Up to gemv_max_rows tokens the engine runs matrix-vector kernels: no tiles.
  if (!(assignments > 0) || x[ix(StepVar::tokens)] <= eff.gemv_max_rows) return 1;
  const double tile = eff.expert_tile_rows(x[ix(StepVar::tokens)]);
  if (!(tile > 0)) return 1;
  // Each touched expert computes ceil(n / tile) whole tiles for its n tokens. n varies between experts: taken as
  // Poisson around the mean over touched experts, r (uniform routing: binomial with a small p), the expected tiles are
  // E[ceil(n / tile)] = 1 + sum_{j >= 1} P(n > j tile), with P from the normal approximation (continuity-corrected).
  const double touched = std::max(1.0, x[ix(StepVar::experts_touched)]);
  const double r = assignments / touched, sigma = std::sqrt(r);
  double tiles = 1;
  for (double j = 1; j * tile < r + 6 * sigma; ++j) tiles += 0.5 * std::erfc((j * tile + 0.5 - r) / (sigma * std::sqrt(2.0)));
  return std::max(1.0, tiles * tile / r);
}

double StepModel::stage_time_s(const model::StepValues& x, std::vector<OpTime>* out) const {
  if (!out) {  // the hot path: no per-op records
    double total = 0;
    for (const Priced& p : priced_) {
      if (p.repeat_gpu > 0) total += op_time(p, x, false, nullptr);
      if (p.repeat_host > 0) total += op_time(p, x, true, nullptr);
    }
    return total;
  }
  double total = 0;
  for (const Priced& p : priced_) {
    for (int host = 0; host < 2; ++host) {
      OpTime ot;
      const double t = op_time(p, x, host == 1, out ? &ot : nullptr);
      total += t;
      if (out && t > 0) {
        ot.op = *p.op;
        ot.time_s = t;
        ot.on_host = host == 1;
        out->push_back(ot);
      }
    }
  }
  return total;
}

double StepModel::step_time_s(const StepShape& shape) const { return step_time_s(shape, shape.tokens() * layout_.dp); }

double StepModel::step_time_s(const StepShape& shape, double moe_tokens) const {
  double overhead = hw_.eff.step_overhead_us * 1e-6;
  if (curves_) {  // the untimed remainder of a step the profile's fit measured (0 before validate fits it)
    const auto& fit = hw_.profile->fit;
    overhead = !fit ? 0
               : shape.prefill_tokens > 0 ? fit->prefill_fixed_s + fit->prefill_per_token_s * shape.tokens()
                                          : fit->decode_fixed_s + fit->decode_per_token_s * shape.tokens();
  }
  if (layout_.pp <= 1) return stage_time_s(values(shape, moe_tokens), nullptr) + overhead;
  const StepShape mb = shape.scaled(1.0 / layout_.pp);
  const double stage = stage_time_s(values(mb, moe_tokens / layout_.pp), nullptr) + p2p_fixed_s_ + p2p_per_token_s_ * mb.tokens();
  return layout_.pp * stage + overhead;
}

std::vector<OpTime> StepModel::breakdown(const StepShape& shape) const {
  std::vector<OpTime> out;
  stage_time_s(values(shape), &out);
  for (OpTime& o : out)
    if (!model::is_collective(o.op.kind)) o.compute_dtype = compute_dtype_used(o.op);
  return out;
}

std::string StepModel::compute_dtype_used(const model::Op& op) const {
  if (op.compute_dtype.empty()) return "";
  std::string want = op.compute_dtype;
  if (want == "fp4" && !hw_.peak_flops.count("fp4")) want = "fp8";
  std::string used;
  hw_.peak_for(want, &used);
  return used;
}

}  // namespace moeplan::simulator
