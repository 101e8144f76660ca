// simulator/step_formula: StepModel collapsed on a plane of steps (see step_formula.hpp; the op prices it collapses
// are StepModel's, docs/simulator.md).
#include "simulator/step_formula.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>

#include "common/numeric.hpp"

namespace moeplan::simulator {

using model::OpKind;
using model::StepVar;

namespace {

std::size_t ix(StepVar v) { return static_cast<std::size_t>(v); }
std::size_t at(int j) { return static_cast<std::size_t>(j); }

// A stage's step values for `shape` per unit, as StepModel::values computes them, less the routed-expert variables
// (and the constant, which is not per unit).
model::StepValues linear_values(const StepShape& shape, const model::ParallelLayout& layout, bool moe, std::int64_t top_k) {
  const StepShape s = layout.pp > 1 ? shape.scaled(1.0 / layout.pp) : shape;
  model::StepValues x = shape_values(s);
  x[ix(StepVar::one)] = 0;
  if (moe) {
    x[ix(StepVar::moe_dispatch_tokens)] = moe_dispatch_tokens(s.tokens(), layout, top_k);
    x[ix(StepVar::moe_tokens)] = s.tokens() * layout.dp;  // StepPlane::point's MoE tokens
  }
  return x;
}

// Adds the form's projection to v.
void project_into(PlaneVector& v, const model::Linear& f, const StepPlane& plane) {
  for (int i = 0; i < f.terms; ++i) {
    const StepVar var = f.var[at(i)];
    const double c = f.coef[at(i)];
    if (var == StepVar::one) {
      v[0] += c;
    } else if (var == StepVar::experts_touched) {
      if (plane.moe()) v[3] += c;
    } else if (var == StepVar::expert_assignments) {
      if (plane.moe()) v[5] += c;
    } else {
      v[1] += c * plane.per_a()[ix(var)];
      v[2] += c * plane.per_b()[ix(var)];
    }
  }
}

PlaneVector project(const model::Linear& f, const StepPlane& plane) {
  PlaneVector v{};
  project_into(v, f, plane);
  return v;
}

bool non_negative(const PlaneVector& v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return x >= 0; });
}

double dot(const PlaneVector& f, const PlaneVector& s) {
  return f[0] * s[0] + f[1] * s[1] + f[2] * s[2] + f[3] * s[3] + f[4] * s[4] + f[5] * s[5];
}

}  // namespace

void PlanePoints::push_back(const PlaneVector& s) {
  bool alike_first = alike == size();
  for (std::size_t j = 0; j < terms.size(); ++j) {
    if (!(s[j] >= 0)) throw std::logic_error("StepFormula: plane terms must be non-negative numbers");
    if (!terms[j].empty()) alike_first = alike_first && (terms[j][0] > 0) == (s[j] > 0);
    terms[j].push_back(s[j]);
  }
  if (alike_first) ++alike;
}

StepPlane::StepPlane(const model::ModelConfig& m, const model::ParallelLayout& layout, const RoutingModel& routing,
                     const StepShape& unit_a, const StepShape& unit_b)
    : layout_(layout), routing_(routing), unit_a_(unit_a), unit_b_(unit_b), hidden_(m.hidden),
      moe_intermediate_(m.moe_intermediate), num_experts_(m.num_experts), top_k_(m.experts_per_token) {
  moe_ = m.is_moe() && m.num_experts / layout.ep > 0;  // the graph's experts_per_rank > 0
  if (moe_) block_curve_dist_ = simulator::block_curve_dist(routing, m);
  per_a_ = linear_values(unit_a, layout, moe_, m.experts_per_token);
  per_b_ = linear_values(unit_b, layout, moe_, m.experts_per_token);
}

StepShape StepPlane::shape(double a, double b) const {
  StepShape s = unit_a_.scaled(a);
  s += unit_b_.scaled(b);
  return s;
}

PlaneVector StepPlane::point(double a, double b) const {
  PlaneVector s{1, a, b, 0, 1, 0};
  if (moe_) {
    // The MoE tokens StepModel::step_time_s routes: the step's tokens over all DP ranks, per pipeline micro-batch.
    double moe_tokens = shape(a, b).tokens() * layout_.dp;
    if (layout_.pp > 1) moe_tokens = moe_tokens / layout_.pp;
    if (moe_tokens > 0) {
      const RoutingStats r = routing_.at(moe_tokens);
      s[3] = r.experts_touched;
      s[5] = r.busiest_assignments;
    }
    s[4] = std::max(1.0, s[3]);
  }
  return s;
}

int OpSignatures::intern(const model::Op& op) {
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    const model::Op& o = ops_[i];
    if (o.kind == op.kind && o.compute_dtype == op.compute_dtype && o.weight_format == op.weight_format)
      return static_cast<int>(i);
  }
  ops_.push_back(op);
  return static_cast<int>(ops_.size() - 1);
}

const OpRates& DeviceRates::compute(int id) {
  const auto i = static_cast<std::size_t>(id);
  if (i >= rates_.size()) {
    rates_.resize(static_cast<std::size_t>(sigs_->size()));
    known_.resize(static_cast<std::size_t>(sigs_->size()), 0);
  }
  if (!known_[i]) {
    rates_[i] = op_rates(sigs_->op(id), *hw_);
    known_[i] = 1;
  }
  return rates_[i];
}

namespace {

// The plane terms with a positive coefficient, as a bit mask.
unsigned term_mask(const PlaneVector& f) {
  unsigned t = 0;
  for (int j = 0; j < kPlaneTerms; ++j) t |= static_cast<unsigned>(f[at(j)] > 0) << j;
  return t;
}

// A hash of an entry's kind and forms, to find merge candidates fast.
std::uint64_t entry_key(model::OpKind kind, const PlaneVector& flops, const PlaneVector& bytes, const PlaneVector& kv) {
  std::uint64_t key = static_cast<std::uint64_t>(kind) * 0x9e3779b97f4a7c15ull;
  for (const PlaneVector* f : {&flops, &bytes, &kv})
    for (double c : *f) key = (key ^ std::bit_cast<std::uint64_t>(c)) * 0x100000001b3ull;
  return key;
}

}  // namespace

PlaneOps::PlaneOps(const model::OpGraph& graph, const StepPlane& plane, OpSignatures& signatures, double activation_bytes)
    : layout_(plane.layout()), moe_intermediate_(plane.moe_intermediate()), num_experts_(plane.num_experts()),
      top_k_(plane.top_k()), activation_bytes_(activation_bytes), hidden_(plane.hidden()) {
  stage_tokens_[1] = plane.per_a()[ix(StepVar::tokens)];
  stage_tokens_[2] = plane.per_b()[ix(StepVar::tokens)];
  moe_tokens_[1] = plane.per_a()[ix(StepVar::moe_tokens)];
  moe_tokens_[2] = plane.per_b()[ix(StepVar::moe_tokens)];
  block_curve_dist_ = plane.block_curve_dist();
  std::vector<const model::Op*> first;  // the op each entry came from
  std::vector<std::uint64_t> keys;      // entry_key of each entry
  ops_.reserve(graph.ops.size());
  first.reserve(graph.ops.size());
  keys.reserve(graph.ops.size());
  for (const model::Op& op : graph.ops) {
    Entry e = project_entry(op, graph, plane);
    // Ops alike but for their repeat (one op in several layer classes; the two norms of a layer) are priced once.
    const std::uint64_t key = entry_key(e.kind, e.flops, e.bytes, e.kv);
    bool merged = false;
    for (std::size_t i = 0; i < ops_.size() && !merged; ++i) {
      if (keys[i] != key || !same_cost(ops_[i], *first[i], e, op)) continue;
      ops_[i].repeat += e.repeat;
      merged = true;
    }
    if (merged) continue;
    if (!e.collective) e.signature = signatures.intern(op);
    ops_.push_back(e);
    first.push_back(&op);
    keys.push_back(key);
  }
  // From here on the forms cover every repeat.
  for (Entry& e : ops_) {
    for (int j = 0; j < kPlaneTerms; ++j) {
      e.flops[at(j)] *= e.repeat;
      e.bytes[at(j)] *= e.repeat;
      e.kv[at(j)] *= e.repeat;
    }
    e.flops_per_row *= e.repeat;
  }
}

PlaneOps::Entry PlaneOps::project_entry(const model::Op& op, const model::OpGraph& graph, const StepPlane& plane) {
  Entry e;
  e.kind = op.kind;
  e.group_ranks = op.group_ranks;
  e.repeat = op.repeat;
  e.collective = model::is_collective(op.kind);
  e.name = op.name;
  e.weight_format = op.weight_format;
  e.n = op.n;
  e.k = op.k;
  if (e.collective) {
    e.bytes = project(op.comm_bytes, plane);
    exact_ = exact_ && non_negative(e.bytes);
    e.cost_terms = term_mask(e.bytes);
    return e;
  }
  e.expert = op.kind == OpKind::expert_gemm;
  e.flops = project(op.flops, plane);
  e.bytes = project(op.weight_bytes, plane);
  project_into(e.bytes, op.act_bytes, plane);
  e.kv = project(op.kv_bytes, plane);
  e.rows = project(op.rows, plane);
  exact_ = exact_ && non_negative(e.flops) && non_negative(e.bytes) && non_negative(e.kv) && non_negative(e.rows);
  PlaneVector cost = e.flops;
  for (int j = 0; j < kPlaneTerms; ++j) cost[at(j)] += e.bytes[at(j)] + e.kv[at(j)];
  e.cost_terms = term_mask(cost);
  e.row_terms = term_mask(e.rows);
  if (op.layer_class >= 0) project_attention(e, op, graph.layer_classes[at(op.layer_class)].attention, plane);
  if (op.kind == OpKind::gemm || op.kind == OpKind::lm_head || e.expert) {
    // The tile-fill factor needs FLOPs = c × rows, term by term.
    int big = 0;
    for (int j = 1; j < kPlaneTerms; ++j)
      if (e.rows[at(j)] > e.rows[at(big)]) big = j;
    if (e.rows[at(big)] > 0) {
      e.flops_per_row = e.flops[at(big)] / e.rows[at(big)];
      for (int j = 0; j < kPlaneTerms; ++j) {
        const double want = e.flops_per_row * e.rows[at(j)];
        if (std::abs(e.flops[at(j)] - want) > 1e-12 * (std::abs(e.flops[at(j)]) + std::abs(want))) exact_ = false;
      }
    }
  }
  return e;
}

// The measured attention curves' inputs per plane term: decode sequences and their keys; prompt tokens and pairs.
void PlaneOps::project_attention(Entry& e, const model::Op& op, model::AttentionKind kind, const StepPlane& plane) {
  e.attention = decode_attention_op(op, kind);
  e.prefill = prefill_attention_op(op, kind);
  const std::pair<int, const model::StepValues*> terms[] = {{1, &plane.per_a()}, {2, &plane.per_b()}};
  if (e.prefill) {
    for (const auto& [j, per] : terms) {
      e.prompt_tokens[at(j)] = (*per)[ix(StepVar::prefill_tokens)];
      e.prompt_pairs[at(j)] = (*per)[ix(StepVar::pairs_prefill_full)];
    }
  }
  if (e.attention) {
    const StepVar attended = e.attention->window() ? StepVar::pairs_decode_window : StepVar::pairs_decode_full;
    for (const auto& [j, per] : terms) {
      e.sequences[at(j)] = (*per)[ix(StepVar::decode_tokens)];
      e.keys_full[at(j)] = (*per)[ix(StepVar::pairs_decode_full)];
      e.keys_attended[at(j)] = (*per)[ix(attended)];
    }
  }
}

// Whether entry e (from op) costs what o (from a) costs per repeat, on every device, so the two may be merged.
bool PlaneOps::same_cost(const Entry& o, const model::Op& a, const Entry& e, const model::Op& op) {
  if (o.kind != e.kind || o.group_ranks != e.group_ranks || o.flops != e.flops || o.bytes != e.bytes || o.kv != e.kv ||
      o.row_terms != e.row_terms || o.flops_per_row != e.flops_per_row || o.n != e.n || o.k != e.k ||
      o.attention.has_value() != e.attention.has_value() ||
      (e.attention && o.attention->shape.window != e.attention->shape.window) ||
      o.prefill.has_value() != e.prefill.has_value() ||
      (e.prefill && o.prefill->shape.window != e.prefill->shape.window))
    return false;
  if (!e.collective && (a.compute_dtype != op.compute_dtype || a.weight_format != op.weight_format)) return false;
  // A MoE gather and its reduce-scatter move alike bytes but are priced from different measured curves.
  return !is_moe_gather(e.kind, e.name) || std::string_view(o.name) == e.name;
}

void StepFormula::assign(const PlaneOps& ops, DeviceRates& rates) {
  ops_ = &ops;
  by_mask_.fill(-1);
  asked_.fill(0);
  last_mask_ = 64;
  last_ = nullptr;
  variants_.clear();
  open_.clear();
  priced_.resize(ops.ops_.size());
  const Hardware& hw = rates.hardware();
  // Every rate up front, in the graph's op order, so a missing link or peak throws as StepModel's constructor does.
  for (std::size_t i = 0; i < ops.ops_.size(); ++i) {
    const PlaneOps::Entry& e = ops.ops_[i];
    Priced& p = priced_[i];
    if (e.collective) {
      // repeat × (fixed + bytes × per byte), when bytes > 0.
      const CollectiveRates c = collective_rates(e.kind, e.group_ranks, hw, ops.layout_);
      p.runs = c.runs;
      p.overhead_s = e.repeat * c.fixed_s;
      p.half_s = 0;
      p.compute = {};
      for (int j = 0; j < kPlaneTerms; ++j) p.memory[at(j)] = c.per_byte_s * e.bytes[at(j)];
      p.binds = Priced::Binds::memory;
      continue;
    }
    // repeat × (max(compute, memory) + overhead), when FLOPs, bytes or KV bytes are positive.
    const OpRates& r = rates.of(e.signature);
    p.runs = true;
    for (int j = 0; j < kPlaneTerms; ++j) {
      p.compute[at(j)] = e.flops[at(j)] * r.inv_flops;
      p.memory[at(j)] = e.bytes[at(j)] * r.inv_bw + e.kv[at(j)] * r.inv_kv_bw;
    }
    // Tile fill: FLOPs·(rows + half)/rows = FLOPs + (FLOPs/rows)·half; expert rows are per touched expert.
    p.half_s = r.rows_half > 0 ? r.inv_flops * e.flops_per_row * r.rows_half : 0.0;
    p.overhead_s = e.repeat * r.overhead_s;
    PlaneVector compute = p.compute;
    if (e.row_terms) compute[e.expert ? 4 : 0] += p.half_s;
    // Where one side is at least the other term by term (all terms ≥ 0), it binds for every step.
    bool compute_binds = true, memory_binds = true;
    for (int j = 0; j < kPlaneTerms; ++j) {
      compute_binds = compute_binds && compute[at(j)] >= p.memory[at(j)];
      memory_binds = memory_binds && compute[at(j)] <= p.memory[at(j)];
    }
    p.binds = memory_binds    ? Priced::Binds::memory
              : compute_binds ? Priced::Binds::compute
                              : Priced::Binds::neither;
  }
  const CollectiveRates p2p = pipeline_rates(hw, ops.layout_, ops.activation_bytes_, ops.hidden_);
  p2p_fixed_s_ = p2p.fixed_s;
  p2p_per_token_s_ = p2p.per_byte_s;
  step_overhead_s_ = hw.eff.step_overhead_us * 1e-6;
  curve_ops_.clear();
  curved_.assign(ops.ops_.size(), 0);
  if (hw.gpu_profile && !hw.host) attach_curves(*hw.gpu_profile, hw, rates);
}

// The lookups StepModel::attach_gpu_profile makes, on the merged entries.
void StepFormula::attach_curves(const GpuProfile& prof, const Hardware& hw, DeviceRates& rates) {
  const PlaneOps& ops = *ops_;
  const model::ParallelLayout& l = ops.layout_;
  const bool fp4_tensor_cores = hw.peak_flops.count("fp4") > 0;
  const GpuCurve* block = nullptr;
  CurveOp block_op;
  for (std::size_t i = 0; i < ops.ops_.size(); ++i) {
    const PlaneOps::Entry& e = ops.ops_[i];
    if (e.repeat <= 0) continue;
    if (e.collective) {  // StepModel::attach_gpu_profile's all-reduce and MoE-gather lookups
      const bool gather = is_moe_gather(e.kind, e.name);
      if ((e.kind != OpKind::all_reduce && !gather) || !priced_[i].runs) continue;
      CurveOp co;
      const CollectiveRates alpha_beta = collective_rates(e.kind, e.group_ranks, hw, l);
      co.collective = gather ? measured_moe_gather(prof, hw, std::string_view(e.name) == "moe.combine", e.group_ranks,
                                                   alpha_beta)
                             : measured_all_reduce(prof, hw, e.group_ranks, alpha_beta);
      if (co.collective.curves.empty()) continue;
      for (int j = 0; j < kPlaneTerms; ++j) co.x[at(j)] = e.bytes[at(j)] / e.repeat;
      co.repeat = e.repeat;
      co.entries = {i};
      curve_ops_.push_back(co);
      curved_[i] = 1;
      continue;
    }
    if (e.attention) {
      CurveOp co;
      co.attention = measured_decode_attention(prof, *e.attention, rates.of(e.signature));
      if (co.attention.curves.empty()) continue;
      co.repeat = e.repeat;
      co.entries = {i};
      curve_ops_.push_back(co);
      curved_[i] = 1;
    } else if (e.prefill) {
      CurveOp co;
      co.prefill = find_prefill_attention_curves(prof, e.prefill->shape, e.prefill->window_kind);
      if (co.prefill.empty()) continue;
      co.repeat = e.repeat;
      co.entries = {i};
      curve_ops_.push_back(co);
      curved_[i] = 1;
    } else if (e.kind == OpKind::gemm || e.kind == OpKind::lm_head) {
      const GpuCurve* c = find_gemm_curve(prof, e.weight_format, e.n, e.k);
      if (!c) continue;
      CurveOp co;
      co.curve = c;
      co.x = e.rows;
      co.repeat = e.repeat;
      co.entries = {i};
      curve_ops_.push_back(co);
      curved_[i] = 1;
    } else if (e.expert && std::string(e.name) == "moe.experts.gate_up") {
      const GpuCurve* c = find_expert_block_curve(prof, {e.weight_format, ops.hidden_, ops.moe_intermediate_,
                                                         ops.num_experts_, ops.top_k_, l.moe_tp(), l.ep,
                                                         fp4_tensor_cores},
                                                  ops.block_curve_dist_);
      if (!c || (block && c != block)) continue;
      block = c;
      block_op.curve = c;
      block_op.block = true;
      block_op.skewed = skewed_block_curve(*c);
      block_op.repeat += e.repeat;
      block_op.x = {};
      if (block_op.skewed) block_op.x = ops.moe_tokens_;
      else block_op.x[5] = to_double(l.ep) / to_double(std::max<std::int64_t>(1, ops.top_k_));
    }
  }
  if (!block) return;
  // The block's other ops (down projection, activation) are priced by its curve too.
  for (std::size_t i = 0; i < ops.ops_.size(); ++i) {
    if (!ops.ops_[i].collective && is_expert_block_op(ops.ops_[i].name)) {
      block_op.entries.push_back(i);
      curved_[i] = 1;
    }
  }
  curve_ops_.push_back(block_op);
}

double StepFormula::entry_roofline_s(std::size_t i, const PlaneVector& s, unsigned mask) const {
  const PlaneOps::Entry& e = ops_->ops_[i];
  const Priced& p = priced_[i];
  if (!p.runs || !(e.cost_terms & mask)) return 0;  // the op does nothing in these steps
  const double memory = dot(p.memory, s);
  double compute = e.collective ? 0.0 : dot(p.compute, s);
  if (p.half_s > 0 && (e.row_terms & mask)) compute += p.half_s * (e.expert ? s[4] : 1.0);
  return std::max(compute, memory) + p.overhead_s;
}

double StepFormula::curve_time_s(const PlaneVector& s) const {
  double t = 0;
  for (const CurveOp& c : curve_ops_) {
    if (!c.collective.curves.empty()) {
      t += measured_collective_s(c.collective, c.repeat, dot(c.x, s), nullptr);
      continue;
    }
    if (!c.prefill.empty()) {  // prefill attention: StepModel::measured_prefill_time
      const PlaneOps::Entry& e = ops_->ops_[c.entries.front()];
      t += measured_prefill_attention_s(c.prefill, c.repeat, dot(e.prompt_tokens, s), dot(e.prompt_pairs, s), nullptr);
      continue;
    }
    if (!c.curve) {  // decode attention: StepModel::measured_attention_time
      const PlaneOps::Entry& e = ops_->ops_[c.entries.front()];
      t += measured_decode_attention_s(c.attention, c.repeat, dot(e.sequences, s), dot(e.keys_full, s),
                                       dot(e.keys_attended, s), nullptr);
      continue;
    }
    const double x = dot(c.x, s);
    if (x > 0 && x >= c.curve->x_min() && x <= c.curve->x_max()) {
      double ratio = 1;
      if (c.block && !c.skewed) {  // StepModel::block_routing_ratio: this routing's roofline over the balanced one's
        PlaneVector balanced = s;
        balanced[3] = std::min(to_double(ops_->num_experts_ / std::max(1, ops_->layout_.ep)), s[5]);
        balanced[4] = std::max(1.0, balanced[3]);
        double actual_s = 0, balanced_s = 0;
        for (std::size_t i : c.entries) {
          actual_s += entry_roofline_s(i, s, pattern(s));
          balanced_s += entry_roofline_s(i, balanced, pattern(balanced));
        }
        if (actual_s > 0 && balanced_s > 0) ratio = actual_s / balanced_s;
      }
      t += c.repeat * c.curve->seconds().at(x) * ratio;
    } else {
      for (std::size_t i : c.entries) t += entry_roofline_s(i, s, pattern(s));
    }
  }
  return t;
}

unsigned StepFormula::group_of(const PlaneVector& o) {
  if (o[3] == 0 && o[4] == 0 && o[5] == 0) return 0;  // 1, a, b
  if (o[1] == 0 && o[2] == 0) return 1;                // 1, touched, max(1, touched), assignments
  return 2;
}

void StepFormula::add_op(const PlaneVector& compute, const PlaneVector& memory, PlaneVector& base) {
  bool compute_binds = true, memory_binds = true;
  for (int j = 0; j < kPlaneTerms; ++j) {
    compute_binds = compute_binds && compute[at(j)] >= memory[at(j)];
    memory_binds = memory_binds && compute[at(j)] <= memory[at(j)];
  }
  const PlaneVector& bound = compute_binds && !memory_binds ? compute : memory;
  for (int j = 0; j < kPlaneTerms; ++j) base[at(j)] += bound[at(j)];
  if (!memory_binds && !compute_binds) {
    PlaneVector open{};
    for (int j = 0; j < kPlaneTerms; ++j) open[at(j)] = compute[at(j)] - memory[at(j)];
    scratch_[group_of(open)].push_back(open);
  }
}

void StepFormula::compile(unsigned mask) {
  Variant v;
  PlaneVector& base = v.base;
  const PlaneOps& ops = *ops_;
  for (auto& g : scratch_) g.clear();
  for (std::size_t i = 0; i < ops.ops_.size(); ++i) {
    const PlaneOps::Entry& e = ops.ops_[i];
    const Priced& p = priced_[i];
    if (!p.runs || curved_[i] || !(e.cost_terms & mask)) continue;  // does nothing here, or a curve prices it
    base[0] += p.overhead_s;
    if (p.half_s > 0 && e.row_terms && !(e.row_terms & mask)) {
      // No rows in these steps, so no tile fill: classify again without it, on the terms present.
      PlaneVector compute{}, memory{};
      for (int j = 0; j < kPlaneTerms; ++j) {
        if (!(mask >> j & 1u)) continue;
        compute[at(j)] = p.compute[at(j)];
        memory[at(j)] = p.memory[at(j)];
      }
      add_op(compute, memory, base);
      continue;
    }
    PlaneVector compute = p.compute;
    if (e.row_terms) compute[e.expert ? 4 : 0] += p.half_s;
    const PlaneVector& bound = p.binds == Priced::Binds::compute ? compute : p.memory;
    for (int j = 0; j < kPlaneTerms; ++j) base[at(j)] += bound[at(j)];
    if (p.binds == Priced::Binds::neither) {
      PlaneVector open;
      for (int j = 0; j < kPlaneTerms; ++j) open[at(j)] = compute[at(j)] - p.memory[at(j)];
      scratch_[group_of(open)].push_back(open);
    }
  }
  // pp > 1: pp micro-batches, each through the bottleneck stage and one hand-off: pp × (stage + p2p) + overhead.
  const double pp = ops.layout_.pp;
  if (pp > 1) {
    base[0] += p2p_fixed_s_;
    for (int j = 0; j < kPlaneTerms; ++j) base[at(j)] += p2p_per_token_s_ * ops.stage_tokens_[at(j)];
    for (double& c : base) c *= pp;
    for (auto& g : scratch_)
      for (PlaneVector& o : g)
        for (double& c : o) c *= pp;
  }
  base[0] += step_overhead_s_;
  // Open terms by group, each column by column.
  static constexpr std::array<std::array<int, 6>, 3> kColumns = {
      {{0, 1, 2, -1, -1, -1}, {0, 3, 4, 5, -1, -1}, {0, 1, 2, 3, 4, 5}}};
  static constexpr std::array<std::size_t, 3> kWidth = {3, 4, 6};
  v.first = open_.size();
  std::array<std::size_t, 3> n{};
  for (std::size_t g = 0; g < 3; ++g) {
    const std::vector<PlaneVector>& terms = scratch_[g];
    n[g] = terms.size();
    const std::size_t start = open_.size();
    open_.resize(start + kWidth[g] * n[g], 0.0);
    for (std::size_t k = 0; k < terms.size(); ++k)
      for (std::size_t c = 0; c < kWidth[g]; ++c) open_[start + c * n[g] + k] = terms[k][at(kColumns[g][c])];
  }
  v.tokens = n[0];
  v.experts = n[1];
  v.others = n[2];
  by_mask_[mask] = static_cast<int>(variants_.size());
  variants_.push_back(v);
}

unsigned StepFormula::pattern(const PlaneVector& s) {
  unsigned mask = 0;
  bool ok = true;
  for (int j = 0; j < kPlaneTerms; ++j) {
    mask |= static_cast<unsigned>(s[at(j)] > 0) << j;
    ok = ok && s[at(j)] >= 0;
  }
  if (!ok) throw std::logic_error("StepFormula: plane terms must be non-negative numbers");
  return mask;
}

const StepFormula::Variant& StepFormula::variant(unsigned mask) {
  if (mask == last_mask_) return *last_;
  if (by_mask_[mask] < 0) compile(mask);
  last_mask_ = mask;
  last_ = &variants_[static_cast<std::size_t>(by_mask_[mask])];
  return *last_;
}

// The op terms summed one by one, without compiling a variant: cheaper for a pattern priced once (the planner
// prices one decode-only step per configuration).
double StepFormula::direct_time_s(const PlaneVector& s, unsigned mask) const {
  const PlaneOps& ops = *ops_;
  double stage = 0;
  for (std::size_t i = 0; i < ops.ops_.size(); ++i)
    if (!curved_[i]) stage += entry_roofline_s(i, s, mask);  // ops a curve prices are summed below
  if (!curve_ops_.empty()) stage += curve_time_s(s);
  const double pp = ops.layout_.pp;
  if (pp > 1) stage = pp * (stage + p2p_fixed_s_ + p2p_per_token_s_ * dot(ops.stage_tokens_, s));
  return stage + step_overhead_s_;
}

// Both step_time_s forms add base·s, then the open terms in the same order: token terms, expert terms, the rest.
double StepFormula::step_time_s(const PlaneVector& s) {
  const unsigned mask = pattern(s);
  if (by_mask_[mask] < 0 && asked_[mask]++ == 0) return direct_time_s(s, mask);
  const Variant& v = variant(mask);
  const double* c = open_.data() + v.first;
  double t = dot(v.base, s);
  std::size_t n = v.tokens;
  for (std::size_t k = 0; k < n; ++k) t += std::max(0.0, c[k] * s[0] + c[n + k] * s[1] + c[2 * n + k] * s[2]);
  c += 3 * n;
  n = v.experts;
  for (std::size_t k = 0; k < n; ++k)
    t += std::max(0.0, c[k] * s[0] + c[n + k] * s[3] + c[2 * n + k] * s[4] + c[3 * n + k] * s[5]);
  c += 4 * n;
  n = v.others;
  for (std::size_t k = 0; k < n; ++k)
    t += std::max(0.0, c[k] * s[0] + c[n + k] * s[1] + c[2 * n + k] * s[2] + c[3 * n + k] * s[3] + c[4 * n + k] * s[4] +
                           c[5 * n + k] * s[5]);
  if (!curve_ops_.empty()) t += std::max(1, ops_->layout_.pp) * curve_time_s(s);
  return t;
}

void StepFormula::step_times_s(const PlanePoints& points, std::size_t n, double* out) {
  if (n == 0) return;
  std::array<const double*, kPlaneTerms> x{};
  for (std::size_t j = 0; j < x.size(); ++j) x[j] = points.terms[j].data();
  auto point = [&](std::size_t i) {
    PlaneVector s;
    for (std::size_t j = 0; j < s.size(); ++j) s[j] = x[j][i];
    return s;
  };
  if (points.alike < n) {  // zero patterns differ: one point at a time
    for (std::size_t k = 0; k < n; ++k) out[k] = step_time_s(point(k));
    return;
  }
  const Variant& v = variant(pattern(point(0)));
  const PlaneVector& b = v.base;
  for (std::size_t i = 0; i < n; ++i)
    out[i] = b[0] * x[0][i] + b[1] * x[1][i] + b[2] * x[2][i] + b[3] * x[3][i] + b[4] * x[4][i] + b[5] * x[5][i];
  const double* c = open_.data() + v.first;
  std::size_t m = v.tokens;
  for (std::size_t k = 0; k < m; ++k) {
    const double c0 = c[k], c1 = c[m + k], c2 = c[2 * m + k];
    for (std::size_t i = 0; i < n; ++i) out[i] += std::max(0.0, c0 * x[0][i] + c1 * x[1][i] + c2 * x[2][i]);
  }
  c += 3 * m;
  m = v.experts;
  for (std::size_t k = 0; k < m; ++k) {
    const double c0 = c[k], c3 = c[m + k], c4 = c[2 * m + k], c5 = c[3 * m + k];
    for (std::size_t i = 0; i < n; ++i)
      out[i] += std::max(0.0, c0 * x[0][i] + c3 * x[3][i] + c4 * x[4][i] + c5 * x[5][i]);
  }
  c += 4 * m;
  m = v.others;
  for (std::size_t k = 0; k < m; ++k) {
    const double c0 = c[k], c1 = c[m + k], c2 = c[2 * m + k], c3 = c[3 * m + k], c4 = c[4 * m + k], c5 = c[5 * m + k];
    for (std::size_t i = 0; i < n; ++i)
      out[i] += std::max(0.0, c0 * x[0][i] + c1 * x[1][i] + c2 * x[2][i] + c3 * x[3][i] + c4 * x[4][i] + c5 * x[5][i]);
  }
  if (!curve_ops_.empty())
    for (std::size_t i = 0; i < n; ++i) out[i] += std::max(1, ops_->layout_.pp) * curve_time_s(point(i));
}

std::size_t StepFormula::open_terms(const PlaneVector& s) {
  const Variant& v = variant(pattern(s));
  const double* c = open_.data() + v.first;
  std::size_t count = 0;
  const std::array<std::pair<std::size_t, std::size_t>, 3> groups = {{{v.tokens, 3}, {v.experts, 4}, {v.others, 6}}};
  for (const auto& [n, columns] : groups) {
    for (std::size_t k = 0; k < n; ++k) {
      bool zero = true;
      for (std::size_t col = 0; col < columns; ++col) zero = zero && c[col * n + k] == 0;
      count += zero ? 0 : 1;
    }
    c += columns * n;
  }
  return count;
}

}  // namespace moeplan::simulator
