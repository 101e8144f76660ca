// simulator/step_formula: StepModel's step time collapsed, for the steps of one plane, into a few coefficient
// vectors. On a plane every step variable is linear in two amounts a and b (the planner's a = sequences decoding,
// b = share of one prompt prefilled), except the routed-expert variables, which the routing model gives for the
// step's MoE tokens. So every op's FLOPs, bytes and rows are linear forms in the six plane terms
//   s = (1, a, b, experts touched, max(1, experts touched), expert assignments),
// and the GEMM tile-fill factor (rows + half)/rows turns FLOPs·(rows + half)/rows into FLOPs + (FLOPs/rows)·half,
// linear too. An op costs max(compute, memory) + overhead: where one term binds for every s ≥ 0 (coefficient by
// coefficient) its form joins one shared base form; otherwise the op keeps the difference d = compute − memory and
// the step costs base·s + Σ max(0, dᵢ·s). Ops that run or not depending on which terms are zero (prefill attention
// in a decode-only step) are resolved per zero pattern of s. Collectives, the pipeline hand-off, pp and the step
// overhead fold into the base. The planner prices a (graph, GPU) this way once and then each batch in a few dozen
// multiply-adds, all batches of a configuration in one pass (docs/planner.md "Speed and a peer"); StepModel stays the
// reference, and tests/planner/test_plan_fast.cpp checks that both agree.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "model/op_graph.hpp"
#include "simulator/hardware.hpp"
#include "simulator/routing.hpp"
#include "simulator/step_cost.hpp"

namespace moeplan::simulator {

inline constexpr int kPlaneTerms = 6;  // 1, a, b, experts touched, max(1, experts touched), expert assignments
using PlaneVector = std::array<double, kPlaneTerms>;

// Plane points term by term (term j of point k at terms[j][k]), for pricing many at once.
struct PlanePoints {
  std::array<std::vector<double>, kPlaneTerms> terms;
  std::size_t alike = 0;  // leading points with the zero pattern of the first (which terms are 0)
  std::size_t size() const { return terms[0].size(); }
  void push_back(const PlaneVector& s);  // throws std::logic_error for a negative term
};

// The steps a·unit_a + b·unit_b (a, b ≥ 0) of one model and layout, their MoE tokens routed by `routing`.
class StepPlane {
 public:
  StepPlane(const model::ModelConfig& model, const model::ParallelLayout& layout, const RoutingModel& routing,
            const StepShape& unit_a, const StepShape& unit_b);
  // The step as StepModel::step_time_s takes it.
  StepShape shape(double a, double b) const;
  // Its plane terms (one routing evaluation).
  PlaneVector point(double a, double b) const;

  const model::ParallelLayout& layout() const { return layout_; }
  // Step values of one pipeline stage's micro-batch per unit of a and of b (routed-expert variables excluded).
  const model::StepValues& per_a() const { return per_a_; }
  const model::StepValues& per_b() const { return per_b_; }
  bool moe() const { return moe_; }
  std::int64_t hidden() const { return hidden_; }
  // The routed-expert shape a GPU op profile's MoE curves are keyed by.
  std::int64_t moe_intermediate() const { return moe_intermediate_; }
  std::int64_t num_experts() const { return num_experts_; }
  std::int64_t top_k() const { return top_k_; }
  // The router workload its block curves are looked up under (block_curve_dist; "" for a dense model).
  const std::string& block_curve_dist() const { return block_curve_dist_; }

 private:
  model::ParallelLayout layout_;
  RoutingModel routing_;
  std::string block_curve_dist_;
  StepShape unit_a_, unit_b_;
  model::StepValues per_a_{}, per_b_{};
  bool moe_ = false;
  std::int64_t hidden_ = 0, moe_intermediate_ = 0, num_experts_ = 0, top_k_ = 0;
};

// Ops that share kind, compute dtype and weight format share OpRates on every device (op_rates reads nothing
// else), so a sweep prices each such signature once per GPU instead of once per op and configuration.
class OpSignatures {
 public:
  int intern(const model::Op& op);
  const model::Op& op(int id) const { return ops_[static_cast<std::size_t>(id)]; }
  int size() const { return static_cast<int>(ops_.size()); }

 private:
  std::vector<model::Op> ops_;  // one representative each
};

// The OpRates of every signature on one device, each computed when first needed.
class DeviceRates {
 public:
  DeviceRates(const Hardware& hardware, const OpSignatures& signatures) : hw_(&hardware), sigs_(&signatures) {}
  const OpRates& of(int id) {
    const auto i = static_cast<std::size_t>(id);
    return i < known_.size() && known_[i] ? rates_[i] : compute(id);
  }
  const Hardware& hardware() const { return *hw_; }

 private:
  const OpRates& compute(int id);
  const Hardware* hw_;
  const OpSignatures* sigs_;
  std::vector<OpRates> rates_;
  std::vector<char> known_;
};

// One op graph's costs as linear forms in the plane terms, merged where ops are identical but for their repeat.
// Independent of the device: built once per (graph, plane) and priced on many GPUs; it keeps no reference to the
// graph.
class PlaneOps {
 public:
  // `activation_bytes`: the graph request's bytes per activation element (the pipeline hand-off moves them).
  PlaneOps(const model::OpGraph& graph, const StepPlane& plane, OpSignatures& signatures, double activation_bytes = 2);
  // False when some form has a negative coefficient, or a GEMM's FLOPs are not proportional to its rows: the
  // collapse is not exact, and the caller prices with StepModel instead.
  bool exact() const { return exact_; }
  std::size_t size() const { return ops_.size(); }

 private:
  friend class StepFormula;
  struct Entry {
    model::OpKind kind = model::OpKind::gemm;
    int group_ranks = 1;            // collectives
    double repeat = 0;              // Σ repeats of the ops merged into it
    int signature = -1;             // compute ops; -1 for collectives
    bool collective = false, expert = false;
    // Per invocation while the graph is read, then for all repeats. bytes: weights + activations (collectives:
    // the bytes sent).
    PlaneVector flops{}, bytes{}, kv{};
    double flops_per_row = 0;       // FLOPs = flops_per_row × rows (GEMMs)
    unsigned cost_terms = 0;        // terms with a positive coefficient in FLOPs, bytes or KV bytes
    unsigned row_terms = 0;         //   and in rows
    // For a GPU op profile's lookup: the op's name, weight format, GEMM shape and rows per invocation.
    const char* name = "";
    std::string weight_format;
    std::int64_t n = 0, k = 0;
    PlaneVector rows{};
    // Decode attention, for a profile's measured curves: the op, and per plane term its decoding sequences, their
    // summed positions and the keys they attend (per invocation; not scaled by repeat).
    std::optional<DecodeAttentionOp> attention;
    PlaneVector sequences{}, keys_full{}, keys_attended{};
    // Prefill attention, the same: the op, and per plane term its prompt tokens and their causal (query, key) pairs.
    std::optional<PrefillAttentionOp> prefill;
    PlaneVector prompt_tokens{}, prompt_pairs{};
  };
  // The graph read in three phases: each op projected onto the plane, merged with an earlier entry of the same cost,
  // then every form scaled by its repeats.
  Entry project_entry(const model::Op& op, const model::OpGraph& graph, const StepPlane& plane);
  static void project_attention(Entry& e, const model::Op& op, model::AttentionKind kind, const StepPlane& plane);
  static bool same_cost(const Entry& o, const model::Op& a, const Entry& e, const model::Op& op);
  model::ParallelLayout layout_;
  std::int64_t moe_intermediate_ = 0, num_experts_ = 0, top_k_ = 0;
  std::vector<Entry> ops_;
  PlaneVector stage_tokens_{};      // tokens of one stage's micro-batch (pipeline hand-off)
  PlaneVector moe_tokens_{};        // tokens entering one MoE layer of a stage, all DP groups (skewed block curves)
  std::string block_curve_dist_;    // StepPlane::block_curve_dist
  double activation_bytes_ = 2;
  std::int64_t hidden_ = 0;
  bool exact_ = true;
};

// PlaneOps priced on one device: the step time at a plane point. Reusable: assign() rebinds it without freeing
// its buffers.
class StepFormula {
 public:
  // Throws InputError where StepModel would (a collective over a link without bandwidth, a dtype without a peak).
  void assign(const PlaneOps& ops, DeviceRates& rates);
  // StepModel::step_time_s(plane.shape(a, b)) for s = plane.point(a, b), equal up to rounding. The first point of
  // a zero pattern is summed op by op; from the second on, the pattern is compiled into base and open terms.
  double step_time_s(const PlaneVector& s);
  // The same for points [0, n) into out[0, n), term by term over all points at once (the same sums, in the same
  // order, as one point at a time).
  void step_times_s(const PlanePoints& points, std::size_t n, double* out);
  // Op terms left open at s (neither compute nor memory binds for every s of its zero pattern): the step costs
  // one 6-term dot product for the base plus one per open term.
  std::size_t open_terms(const PlaneVector& s);

 private:
  // Open terms by the plane terms they use: token terms (1, a, b), expert terms (1, touched, max(1, touched),
  // assignments), and the rest (all six). Each group is stored column by column.
  struct Variant {
    PlaneVector base{};
    std::size_t first = 0;             // in open_
    std::size_t tokens = 0, experts = 0, others = 0;
  };
  struct Priced {                      // one PlaneOps entry on this device, repeats included
    bool runs = true;                  // false: a collective that does not run here
    PlaneVector compute{}, memory{};   // seconds per unit of each term (collectives: all in memory)
    double half_s = 0;                 // tile-fill seconds, on term 0 or 4 (expert), when rows are positive
    double overhead_s = 0;             // fixed seconds (collectives: alpha)
    // With every term positive (and the tile fill in), which side binds for every step: a side that binds term
    // by term binds on any subset of the terms too, so every pattern can use it.
    enum class Binds : unsigned char { memory, compute, neither } binds = Binds::memory;
  };
  // Ops a GPU op profile prices from a measured curve: a dense GEMM by its rows, or the routed-expert block by its
  // balanced tokens (StepModel::curve_x). They stay out of the compiled forms and are summed per point: inside the
  // curve's range from the curve, outside it by the roofline of the entries they stand for.
  struct CurveOp {
    const GpuCurve* curve = nullptr;
    MeasuredDecodeAttention attention;  // or decode attention's curves (curve is then null),
    PrefillAttentionCurves prefill;     //   or prefill attention's,
    MeasuredCollective collective;      //   or an all-reduce's (x: its message bytes per call)
    bool block = false;
    bool skewed = false;              // the block's curve was measured under a skewed router (no routing ratio)
    PlaneVector x{};                  // x = x·s (GEMM rows; the block: expert assignments × ep / top-k, or the
                                      //   MoE tokens on a skewed curve: StepModel::curve_x)
    double repeat = 0;
    std::vector<std::size_t> entries;  // in ops_->ops_
  };
  void attach_curves(const GpuProfile& profile, const Hardware& hw, DeviceRates& rates);
  double curve_time_s(const PlaneVector& s) const;       // Σ over curve ops, one stage
  // One entry's roofline time at s (its zero pattern `mask`): max(compute, memory) + overhead, 0 when idle.
  double entry_roofline_s(std::size_t i, const PlaneVector& s, unsigned mask) const;
  std::vector<CurveOp> curve_ops_;
  std::vector<char> curved_;  // per entry: priced by a curve op, left out of the compiled forms

  // Adds an op's share to `base`, and its open term to scratch_ (compute and memory masked to the pattern).
  void add_op(const PlaneVector& compute, const PlaneVector& memory, PlaneVector& base);
  static unsigned pattern(const PlaneVector& s);  // bit j: s[j] > 0; throws for a negative term
  const Variant& variant(unsigned mask);
  void compile(unsigned mask);
  double direct_time_s(const PlaneVector& s, unsigned mask) const;

  const PlaneOps* ops_ = nullptr;
  std::vector<Priced> priced_;
  double p2p_fixed_s_ = 0, p2p_per_token_s_ = 0, step_overhead_s_ = 0;
  std::array<int, 64> by_mask_{};
  std::array<unsigned char, 64> asked_{};  // single points priced per pattern: the second compiles it
  unsigned last_mask_ = 64;  // no variant yet
  const Variant* last_ = nullptr;
  std::vector<Variant> variants_;
  std::vector<double> open_;
  std::array<std::vector<PlaneVector>, 3> scratch_;  // open terms of the variant being compiled, by group
  static unsigned group_of(const PlaneVector& open);
};

}  // namespace moeplan::simulator
