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
// multiply-adds (docs/planner.md "Speed"); StepModel stays the reference, and tests/planner/test_plan_fast.cpp
// checks that both agree.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/op_graph.hpp"
#include "simulator/hardware.hpp"
#include "simulator/routing.hpp"
#include "simulator/step_cost.hpp"

namespace moeplan::simulator {

inline constexpr int kPlaneTerms = 6;  // 1, a, b, experts touched, max(1, experts touched), expert assignments
using PlaneVector = std::array<double, kPlaneTerms>;

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

 private:
  model::ParallelLayout layout_;
  RoutingModel routing_;
  StepShape unit_a_, unit_b_;
  model::StepValues per_a_{}, per_b_{};
  bool moe_ = false;
  std::int64_t hidden_ = 0;
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
  const OpRates& of(int id);
  const Hardware& hardware() const { return *hw_; }

 private:
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
    PlaneVector flops{}, bytes{}, kv{};  // bytes: weights + activations; collectives: comm bytes
    double flops_per_row = 0;       // FLOPs = flops_per_row × rows (GEMMs)
    unsigned cost_terms = 0;        // terms with a positive coefficient in FLOPs, bytes or KV bytes
    unsigned row_terms = 0;         //   and in rows
  };
  model::ParallelLayout layout_;
  std::vector<Entry> ops_;
  PlaneVector stage_tokens_{};      // tokens of one stage's micro-batch (pipeline hand-off)
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
  // StepModel::step_time_s(plane.shape(a, b)) for s = plane.point(a, b), equal up to rounding (a few ulp).
  double step_time_s(const PlaneVector& s);
  // Op terms left open at s (neither compute nor memory binds for every s of its zero pattern): the step costs
  // one 6-term dot product for the base plus one per open term.
  std::size_t open_terms(const PlaneVector& s);

 private:
  struct Variant {
    PlaneVector base{};
    std::size_t first = 0, count = 0;  // its open terms: kPlaneTerms columns of `count` (even) in open_
  };
  struct Priced {                      // one PlaneOps entry on this device, repeats included
    bool runs = true;                  // false: a collective that does not run here
    PlaneVector compute{}, memory{};   // seconds per unit of each term (collectives: all in memory)
    double half_s = 0;                 // tile-fill seconds, on term 0 or 4 (expert), when rows are positive
    double overhead_s = 0;             // fixed seconds (collectives: alpha)
  };
  int variant_for(const PlaneVector& s);
  void compile(unsigned mask);

  const PlaneOps* ops_ = nullptr;
  DeviceRates* rates_ = nullptr;
  std::vector<Priced> priced_;
  double p2p_fixed_s_ = 0, p2p_per_token_s_ = 0, step_overhead_s_ = 0;
  std::array<int, 64> by_mask_{};
  std::vector<Variant> variants_;
  std::vector<double> open_;
  std::vector<PlaneVector> scratch_;
};

}  // namespace moeplan::simulator
