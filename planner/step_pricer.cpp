// planner/step_pricer: the sweep's tables and its two step pricers (see step_pricer.hpp; docs/planner.md).
#include "planner/step_pricer.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "simulator/step_formula.hpp"

namespace moeplan::planner::detail {

SweepTables::SweepTables(const PlanRequest& r, const Setup& setup) : r_(&r), setup_(&setup) {
  const model::ModelConfig& m = *r.model;
  // A host plan: one device (the host), one count, the in-process rank layouts its profile measured.
  counts_ = r.host ? std::vector<int>{1} : r.counts;
  for (int count : counts_) {
    first_layout_.push_back(layouts_.size());
    // Validity depends on the model, not on the GPU or precision: checked once.
    for (const auto& layout : r.host ? host_layouts(m, r.host->ranks) : layouts_for(m, count))
      layouts_.push_back({layout, model::layout_problem(m, layout).empty()});
  }
  first_layout_.push_back(layouts_.size());
  group_bytes_.resize(setup.precisions.size());
  cells_.resize(setup.precisions.size() * layouts_.size());
}

// Bytes of every weight group per precision, shared by all layouts' memory breakdowns and op graphs.
const model::GroupBytes& SweepTables::group_bytes(std::size_t pi) {
  if (!group_bytes_[pi]) group_bytes_[pi] = model::group_bytes(*r_->model, setup_->precisions[pi]);
  return *group_bytes_[pi];
}

const simulator::MemoryBreakdown& SweepTables::memory(std::size_t pi, std::size_t li) {
  Cell& c = cells_[pi * layouts_.size() + li];
  if (c.memory) return *c.memory;
  const PlanRequest& r = *r_;
  const model::ParallelLayout& layout = layouts_[li].layout;
  simulator::MemoryRequest mr;
  mr.group_bytes = &group_bytes(pi);
  mr.model = r.model;
  mr.precision = setup_->precisions[pi];
  mr.layout = layout;
  mr.kv_dtype = r.kv_dtype;
  mr.context_tokens = r.input_tokens + r.output_tokens;
  mr.concurrency = r.max_batch * layout.dp;
  mr.max_num_batched_tokens = r.max_num_batched_tokens;
  mr.capacity_bytes = 1;  // placeholder: usable memory is taken per GPU by the sweep
  mr.host_mode = r.host.has_value();
  simulator::MemoryBreakdown mb = simulator::memory_breakdown(mr);
  if (r.host && r.host->hardware.profile) {  // the CPU executor the profile measured keeps its KV cache in fp32
    const double f32 = 4.0 / model::kv_dtype_bytes(r.kv_dtype);  // (executor/forward.hpp)
    mb.kv_bytes *= f32;
    mb.kv_bytes_per_sequence *= f32;
  }
  c.memory = mb;
  return *c.memory;
}

const std::shared_ptr<const model::OpGraph>& SweepTables::graph(std::size_t pi, std::size_t li) {
  Cell& c = cells_[pi * layouts_.size() + li];
  if (c.graph) return c.graph;
  model::OpGraphRequest gr = graph_request(*r_, setup_->precisions[pi], layouts_[li].layout);
  gr.group_bytes = &group_bytes(pi);
  c.graph = std::make_shared<const model::OpGraph>(model::build_op_graph(gr));
  return c.graph;
}

namespace {

// Op by op: a StepModel per configuration (its op graph from the tables), every batch priced by operating_point.
class OpByOpPricer final : public StepPricer {
 public:
  OpByOpPricer(const PlanRequest& r, SweepTables& t) : r_(r), tables_(t) {}
  void set_device(const simulator::Hardware& hw) override { hw_ = &hw; }
  bool assign(const Configuration& c) override {
    model_.emplace(step_model_request(r_, *c.precision, *c.layout, *hw_), tables_.graph(c.precision_index, c.layout_index));
    if (r_.host && r_.host->hardware.profile) {
      try {  // a weight format the profile has no measured rate for (e.g. nvfp4, mxfp4)
        operating_point(*model_, r_, 1, tables_.window_kind());
      } catch (const InputError&) {
        return false;
      }
    }
    return true;
  }
  void price(const BatchRange& batches, std::vector<Operating>& out) override {
    out.resize(batches.size());
    for (std::size_t k = 0; k < out.size(); ++k) out[k] = operating_point(*model_, r_, batches.at(k), tables_.window_kind());
  }
  double decode_only_s(std::size_t, const Operating& op) override { return op.decode_only_s; }

 private:
  const PlanRequest& r_;
  SweepTables& tables_;
  const simulator::Hardware* hw_ = nullptr;
  std::optional<simulator::StepModel> model_;
};

// One batch of one layout on the plane: GPU- and precision-independent.
struct BatchPoint {
  std::int64_t batch = 0;
  double a = 0;                                   // sequences decoding
  simulator::PlaneVector mixed{};                 // the steady step
  double output_per_step = 0, ttft_steps = 0;
  // Its decode part alone, routed when a kept row first needs it (for the prefill share).
  std::optional<simulator::PlaneVector> decode_only;
  const simulator::PlaneVector& decode_point(const simulator::StepPlane& plane) {
    if (!decode_only) decode_only = plane.point(a, 0);
    return *decode_only;
  }
};

BatchPoint batch_point(const simulator::StepPlane& plane, const PlanRequest& r, std::int64_t batch) {
  const SteadyStep st = steady_step(r, batch);
  BatchPoint p;
  p.batch = batch;
  p.a = st.a;
  p.mixed = plane.point(st.a, st.b);
  p.output_per_step = st.output_per_step;
  p.ttft_steps = st.ttft_steps;
  return p;
}

// By StepFormula: per layout the plane point of every batch (its steady step and MoE routing), per (precision,
// layout) the op graph collapsed into linear forms on that plane, bound to each GPU's rates. A configuration the
// collapse cannot price exactly goes op by op.
class FormulaPricer final : public StepPricer {
 public:
  FormulaPricer(const PlanRequest& r, SweepTables& t)
      : r_(r), tables_(t), by_op_(r, t), planes_(t.layouts().size()),
        forms_(t.precisions().size() * t.layouts().size()) {}
  void set_device(const simulator::Hardware& hw) override {
    hw_ = &hw;
    rates_.emplace(hw, signatures_);
    by_op_.set_device(hw);
  }
  bool assign(const Configuration& c) override;
  void price(const BatchRange& batches, std::vector<Operating>& out) override;
  double decode_only_s(std::size_t k, const Operating& op) override {
    if (use_op_by_op_) return by_op_.decode_only_s(k, op);
    BatchPoint& p = k < listed_ ? plane_->points[k] : capped_;
    return formula_.step_time_s(p.decode_point(*plane_->plane));
  }

 private:
  struct LayoutPlane {
    std::unique_ptr<simulator::StepPlane> plane;  // from the first graph of this layout (window fields are per stage)
    bool has_window = false;
    std::int64_t window_tokens = 0;
    std::vector<BatchPoint> points;               // along the batch list, filled as far as a GPU's KV cap needs
    simulator::PlanePoints steady;                // their steady steps, term by term
  };
  struct Forms {
    std::unique_ptr<simulator::PlaneOps> ops;     // the op graph collapsed on the layout's plane
    bool op_by_op = false;                        // the collapse is not exact here: StepModel prices it
  };
  void points_up_to(const std::vector<std::int64_t>& list, std::size_t n);

  const PlanRequest& r_;
  SweepTables& tables_;
  OpByOpPricer by_op_;
  simulator::OpSignatures signatures_;
  const simulator::Hardware* hw_ = nullptr;
  std::optional<simulator::DeviceRates> rates_;
  simulator::StepFormula formula_;
  std::vector<LayoutPlane> planes_;
  std::vector<Forms> forms_;
  LayoutPlane* plane_ = nullptr;  // of the assigned configuration
  bool use_op_by_op_ = false;
  BatchPoint capped_;             // the cap when it is not on the list
  std::size_t listed_ = 0;        // batches of the last price() on the list
  std::vector<double> step_times_;
};

bool FormulaPricer::assign(const Configuration& c) {
  const std::shared_ptr<const model::OpGraph>& graph = tables_.graph(c.precision_index, c.layout_index);
  LayoutPlane& lp = planes_[c.layout_index];
  plane_ = &lp;
  if (!lp.plane) {  // window fields come from the stage's layers, alike for every precision
    const model::ModelConfig& m = *r_.model;
    const model::AttentionKind wk = tables_.window_kind();
    lp.plane = std::make_unique<simulator::StepPlane>(
        m, *c.layout, simulator::RoutingModel::uniform(m.num_experts, m.experts_per_token, c.layout->ep),
        decode_unit(r_, *graph, wk), prefill_unit(r_, *graph, wk));
    lp.has_window = graph->has_window;
    lp.window_tokens = graph->window_tokens;
  }
  Forms& f = forms_[c.precision_index * tables_.layouts().size() + c.layout_index];
  if (!f.ops) {
    f.ops = std::make_unique<simulator::PlaneOps>(*graph, *lp.plane, signatures_);
    f.op_by_op = !f.ops->exact() || lp.has_window != graph->has_window || lp.window_tokens != graph->window_tokens;
  }
  // An engine whose small steps run matrix-vector kernels (no tile fill up to gemv_max_rows tokens) is not linear on
  // the plane either (such engines plan a few small batches); the graph stays with StepModel from then on.
  f.op_by_op = f.op_by_op || hw_->eff.gemv_max_rows > 0;
  use_op_by_op_ = f.op_by_op;
  if (use_op_by_op_) return by_op_.assign(c);
  formula_.assign(*f.ops, *rates_);
  return true;
}

void FormulaPricer::points_up_to(const std::vector<std::int64_t>& list, std::size_t n) {
  LayoutPlane& lp = *plane_;
  if (lp.points.empty()) {
    lp.points.reserve(list.size());
    for (auto& t : lp.steady.terms) t.reserve(list.size());
  }
  while (lp.points.size() < n) {
    lp.points.push_back(batch_point(*lp.plane, r_, list[lp.points.size()]));
    lp.steady.push_back(lp.points.back().mixed);
  }
}

void FormulaPricer::price(const BatchRange& batches, std::vector<Operating>& out) {
  listed_ = batches.listed;
  if (use_op_by_op_) {
    by_op_.price(batches, out);
    return;
  }
  // Batches of the list up to the cap, priced in one pass, then the cap itself when it is not on the list.
  points_up_to(*batches.list, std::max<std::size_t>(batches.listed, 1));
  step_times_.resize(batches.listed);
  formula_.step_times_s(plane_->steady, batches.listed, step_times_.data());
  out.resize(batches.size());
  auto at_point = [](const BatchPoint& p, double step_s) {
    Operating op;
    op.step_s = step_s;
    op.output_per_step = p.output_per_step;
    op.ttft_s = op.step_s * p.ttft_steps;
    return op;
  };
  for (std::size_t k = 0; k < batches.listed; ++k) out[k] = at_point(plane_->points[k], step_times_[k]);
  if (batches.capped()) {
    capped_ = batch_point(*plane_->plane, r_, batches.cap);
    out[batches.listed] = at_point(capped_, formula_.step_time_s(capped_.mixed));
  }
}

}  // namespace

std::unique_ptr<StepPricer> op_by_op_pricer(const PlanRequest& r, SweepTables& tables) {
  return std::make_unique<OpByOpPricer>(r, tables);
}
std::unique_ptr<StepPricer> formula_pricer(const PlanRequest& r, SweepTables& tables) {
  return std::make_unique<FormulaPricer>(r, tables);
}

}  // namespace moeplan::planner::detail
