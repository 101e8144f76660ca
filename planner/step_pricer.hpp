// planner/step_pricer: what the sweep computes once per (precision, layout), and the two ways it prices a
// configuration's steps (docs/planner.md "Operating point", "Speed and a peer"):
//   - StepFormula (formula_pricer): each (op graph, GPU) collapsed on the layout's plane of steps, every batch in a
//     few dozen multiply-adds; plan() prices every GPU configuration this way;
//   - op by op (op_by_op_pricer): a StepModel per configuration, every batch summed over the graph's ops; for
//     measured hosts (a profile's curves are not linear in the step variables), for the configurations the
//     collapse cannot split, and as the formula's test oracle (plan_op_by_op()).
// Both give the same operating points up to rounding (tests/planner/test_plan_fast.cpp). Internal to planner/.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "planner/sweep.hpp"

namespace moeplan::planner::detail {

// What does not depend on the GPU, computed once per sweep: the layouts of each count and their validity, and per
// (precision, layout) the weight bytes, the memory breakdown and the op graph, each made when first asked for.
class SweepTables {
 public:
  SweepTables(const PlanRequest& r, const Setup& setup);
  struct Layout {
    model::ParallelLayout layout;
    bool valid = false;  // model::layout_problem finds none
  };
  const std::vector<Layout>& layouts() const { return layouts_; }
  // Layouts [first, last) of r.counts[ci] (a host plan: the one count 1 and its rank layouts).
  std::size_t first_layout(std::size_t ci) const { return first_layout_[ci]; }
  std::size_t last_layout(std::size_t ci) const { return first_layout_[ci + 1]; }
  const std::vector<int>& counts() const { return counts_; }
  const std::vector<model::Precision>& precisions() const { return setup_->precisions; }
  model::AttentionKind window_kind() const { return setup_->window_kind; }
  // Memory at the peak step over a full batch (usable memory is the caller's: capacity_bytes is a placeholder).
  const simulator::MemoryBreakdown& memory(std::size_t pi, std::size_t li);
  // The op graph (on a profiled host with the CPU executor's fp32 activations, as simulate prices them).
  const std::shared_ptr<const model::OpGraph>& graph(std::size_t pi, std::size_t li);

 private:
  const model::GroupBytes& group_bytes(std::size_t pi);
  struct Cell {
    std::optional<simulator::MemoryBreakdown> memory;
    std::shared_ptr<const model::OpGraph> graph;
  };
  const PlanRequest* r_;
  const Setup* setup_;
  std::vector<int> counts_;
  std::vector<Layout> layouts_;
  std::vector<std::size_t> first_layout_;           // per count, and one past the last
  std::vector<std::optional<model::GroupBytes>> group_bytes_;  // per precision
  std::vector<Cell> cells_;                         // [precision × layouts + layout]
};

// The batches of one configuration: the first `listed` of the sweep's batch list, then `cap` when it is not the
// last of them (batches_up_to(cap), without building it per configuration). The first is always batch 1.
struct BatchRange {
  const std::vector<std::int64_t>* list = nullptr;
  std::size_t listed = 0;
  std::int64_t cap = 0;
  bool capped() const { return listed == 0 || (*list)[listed - 1] != cap; }
  std::size_t size() const { return listed + (capped() ? 1 : 0); }
  std::int64_t at(std::size_t k) const { return k < listed ? (*list)[k] : cap; }
};

// Prices one configuration's steady operating points.
class StepPricer {
 public:
  virtual ~StepPricer() = default;
  // The device whose configurations follow; `hw` outlives them.
  virtual void set_device(const simulator::Hardware& hw) = 0;
  // Readies the pricing of `c`; false when the device has no rate for its weight format (a measured profile
  // without it): the sweep counts the configuration as an unsupported dtype.
  virtual bool assign(const Configuration& c) = 0;
  // out[k]: the operating point of batches.at(k), for every k; its decode_only_s is decode_only_s(k, out[k])'s.
  virtual void price(const BatchRange& batches, std::vector<Operating>& out) = 0;
  // The decode-only part of batches.at(k)'s step of the last price() (for a kept row's prefill share).
  virtual double decode_only_s(std::size_t k, const Operating& op) = 0;
};

std::unique_ptr<StepPricer> op_by_op_pricer(const PlanRequest& r, SweepTables& tables);
std::unique_ptr<StepPricer> formula_pricer(const PlanRequest& r, SweepTables& tables);

}  // namespace moeplan::planner::detail
