// The fast sweep against the reference: plan() collapses each (op graph, GPU) into a StepFormula; plan_op_by_op()
// prices every batch op by op with a StepModel. Both must give the same rows, rejections, counts and closest miss,
// and the formula must give StepModel's step time wherever the planner evaluates it (and off its batch list).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>

#include "gpu_db/engines.hpp"
#include "gpu_db/gpu_db.hpp"
#include "planner/plan.hpp"
#include "simulator/step_cost.hpp"
#include "simulator/step_formula.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::planner;

namespace {

constexpr double kTolerance = 1e-9;  // relative

const gpu_db::Database& db() {
  static const auto d = gpu_db::Database::load(test::data());
  return d;
}

bool close(double a, double b) {
  if (a == b) return true;  // also infinities
  return std::abs(a - b) <= kTolerance * std::max(std::abs(a), std::abs(b));
}

std::string identity(const PlanRow& r) {
  return (r.gpu ? r.gpu->name : std::string("-")) + " x" + std::to_string(r.count) + " " + r.precision + " tp" +
         std::to_string(r.layout.tp) + " ep" + std::to_string(r.layout.ep) + " pp" + std::to_string(r.layout.pp) +
         " dp" + std::to_string(r.layout.dp);
}

// Every field of two rows of the same configuration, numbers within the tolerance (the Pareto flag apart): the
// first difference, or "".
std::string row_difference(const PlanRow& a, const PlanRow& b) {
  if (identity(a) != identity(b) || a.weight_only != b.weight_only) return "configuration " + identity(a) + " vs " + identity(b);
  if (a.batch != b.batch || a.kv_limited_batch != b.kv_limited_batch)
    return identity(a) + ": batch " + std::to_string(a.batch) + "/" + std::to_string(a.kv_limited_batch) + " vs " +
           std::to_string(b.batch) + "/" + std::to_string(b.kv_limited_batch);
  if (a.price_source != b.price_source) return identity(a) + ": price source";
  const std::pair<const char*, std::pair<double, double>> numbers[] = {
      {"output_tokens_per_s", {a.output_tokens_per_s, b.output_tokens_per_s}},
      {"output_tokens_per_s_per_user", {a.output_tokens_per_s_per_user, b.output_tokens_per_s_per_user}},
      {"ttft_ms", {a.ttft_ms, b.ttft_ms}},
      {"tpot_ms", {a.tpot_ms, b.tpot_ms}},
      {"vram_used_bytes_per_gpu", {a.vram_used_bytes_per_gpu, b.vram_used_bytes_per_gpu}},
      {"usd_per_gpu_hour", {a.usd_per_gpu_hour, b.usd_per_gpu_hour}},
      {"usd_per_hour", {a.usd_per_hour, b.usd_per_hour}},
      {"usd_per_month", {a.usd_per_month, b.usd_per_month}},
      {"prefill_time_share", {a.prefill_time_share, b.prefill_time_share}},
      {"usd_per_m_input_tokens", {a.usd_per_m_input_tokens, b.usd_per_m_input_tokens}},
      {"usd_per_m_output_tokens", {a.usd_per_m_output_tokens, b.usd_per_m_output_tokens}},
      {"usd_per_m_blended_tokens", {a.usd_per_m_blended_tokens, b.usd_per_m_blended_tokens}},
      {"usd_per_1000_requests[2]", {a.usd_per_1000_requests[2], b.usd_per_1000_requests[2]}},
      {"usd_per_m_output_tokens_batch1", {a.usd_per_m_output_tokens_batch1, b.usd_per_m_output_tokens_batch1}},
      {"output_tokens_per_s_batch1", {a.output_tokens_per_s_batch1, b.output_tokens_per_s_batch1}},
  };
  for (const auto& [field, v] : numbers)
    if (!close(v.first, v.second))
      return identity(a) + ": " + field + " " + std::to_string(v.first) + " vs " + std::to_string(v.second);
  // The serving check ran on the same rows, at the same batches, with the same command.
  if (a.serving.has_value() != b.serving.has_value()) return identity(a) + ": serving check on one side only";
  if (a.serving) {
    const ServingCheck &x = *a.serving, &y = *b.serving;
    if (x.simulate_command != y.simulate_command || x.formula_batch != y.formula_batch || x.num_requests != y.num_requests)
      return identity(a) + ": serving check " + x.simulate_command + " vs " + y.simulate_command;
    for (auto [p, q] : {std::pair{x.ttft_ms_p50, y.ttft_ms_p50}, {x.ttft_ms_p99, y.ttft_ms_p99}, {x.tpot_ms_p90, y.tpot_ms_p90},
                        {x.steady_ttft_ms, y.steady_ttft_ms}, {x.steady_output_tokens_per_s, y.steady_output_tokens_per_s}})
      if (!close(p, q)) return identity(a) + ": serving check figures " + std::to_string(p) + " vs " + std::to_string(q);
  }
  return "";
}

double objective_key(const PlanRow& a, Objective o) {
  switch (o) {
    case Objective::usd_per_m_tokens: return a.usd_per_m_blended_tokens;
    case Objective::tokens_per_s_per_user: return -a.output_tokens_per_s_per_user;
    case Objective::tokens_per_s_per_dollar: return -a.output_tokens_per_s / a.usd_per_hour;
    case Objective::fewest_gpus: return static_cast<double>(a.count) * 1e9 + a.usd_per_m_blended_tokens;
  }
  return 0;
}

// plan() and plan_op_by_op() agree on everything they report. Rows whose ranking keys tie up to rounding may
// swap places (and a tie in cost may move the Pareto mark); each row is compared with its own configuration.
void check_same(const PlanRequest& r) {
  const PlanResult fast = plan(r, db());
  const PlanResult ref = plan_op_by_op(r, db());
  INFO(r.model->name << " over " << r.gpus.size() << " GPUs");
  CHECK(fast.configurations == ref.configurations);
  CHECK(fast.operating_points == ref.operating_points);
  CHECK(fast.rejected == ref.rejected);
  CHECK(fast.serving_simulations == ref.serving_simulations);
  CHECK(fast.serving_rejected == ref.serving_rejected);
  REQUIRE(fast.rows.size() == ref.rows.size());
  std::map<std::string, std::size_t> where;
  for (std::size_t i = 0; i < ref.rows.size(); ++i) where[identity(ref.rows[i])] = i;
  REQUIRE(where.size() == ref.rows.size());
  for (std::size_t i = 0; i < fast.rows.size(); ++i) {
    INFO("row " << i << ": " << identity(fast.rows[i]));
    const auto it = where.find(identity(fast.rows[i]));
    REQUIRE(it != where.end());
    const PlanRow& want = ref.rows[it->second];
    CHECK(row_difference(fast.rows[i], want) == "");
    CHECK(close(objective_key(fast.rows[i], r.objective), objective_key(ref.rows[i], r.objective)));
    if (fast.rows[i].pareto != want.pareto) {
      const double cost = want.usd_per_m_blended_tokens;
      const auto ties = std::count_if(ref.rows.begin(), ref.rows.end(),
                                      [&](const PlanRow& o) { return close(o.usd_per_m_blended_tokens, cost); });
      CHECK(ties > 1);
    }
  }
  REQUIRE(fast.closest.row.has_value() == ref.closest.row.has_value());
  if (ref.closest.row) {
    CHECK(row_difference(*fast.closest.row, *ref.closest.row) == "");
    CHECK(fast.closest.constraint == ref.closest.constraint);
    CHECK(close(fast.closest.value, ref.closest.value));
    CHECK(fast.closest.limit == ref.closest.limit);
  }
}

PlanRequest request(const model::ModelConfig& m, std::vector<std::string> precisions) {
  PlanRequest r;
  r.model = &m;
  r.precisions = &test::precisions();
  r.precision_specs = std::move(precisions);
  for (const auto& g : db().gpus()) r.gpus.push_back(&g);
  return r;
}

}  // namespace

TEST_CASE("Fast sweep equals the reference: Llama 4 Maverick, default sweep and variations") {
  const auto m = test::load("llama4-maverick");
  auto r = request(m, {"bf16", "fp8", "nvfp4"});
  SECTION("the default sweep (every GPU, counts 1-64)") { check_same(r); }
  SECTION("SLOs that remove candidates, a closest miss") {
    r.tpot_ms = 25;
    r.ttft_ms = 400;
    check_same(r);
    r.min_tokens_per_s_per_user = 60;
    check_same(r);
  }
  SECTION("long prompts, a small token budget and batch cap (KV-bound batches off the batch list)") {
    r.input_tokens = 7000;
    r.output_tokens = 300;
    r.max_num_batched_tokens = 2048;
    r.max_batch = 200;
    r.kv_dtype = model::KvDtype::fp8;
    check_same(r);
  }
  SECTION("budgets, a flat price, another objective and the RoCE fabric") {
    r.budget_usd_per_month = 150000;
    r.gpu_price_usd_per_hour = 2.5;
    r.objective = Objective::tokens_per_s_per_dollar;
    r.internode_link = "roce-400g";
    check_same(r);
  }
}

TEST_CASE("Fast sweep equals the reference: Qwen3-235B, DeepSeek-V3 (MLA), gpt-oss (sliding window), dense Llama") {
  const auto qwen = test::load("qwen3-235b-a22b");
  const auto deepseek = test::load("deepseek-v3");
  const auto gpt_oss = test::load("gpt-oss-120b");
  const auto llama = test::load("llama3.1-70b");
  auto q = request(qwen, {"bf16", "fp8:all-linear", "nvfp4"});
  q.tpot_ms = 30;
  check_same(q);
  auto ds = request(deepseek, {"fp8-block", "nvfp4"});
  ds.input_tokens = 4000;
  ds.output_tokens = 500;
  check_same(ds);
  auto g = request(gpt_oss, {"mxfp4", "bf16"});
  g.input_tokens = 20000;
  g.output_tokens = 2000;
  check_same(g);
  auto l = request(llama, {"bf16", "fp8", "int4-awq"});
  l.counts = {1, 2, 4, 8};
  l.objective = Objective::fewest_gpus;
  check_same(l);
}

TEST_CASE("Fast sweep equals the reference: llama.cpp on GPUs, whose small steps run matrix-vector kernels") {
  // llama.cpp's gemv_max_rows makes a step's cost non-linear in the batch, so plan() prices it op by op: the rows must
  // still be the reference's, and they must differ from a plan without that term (else the test proves nothing).
  const auto engines = gpu_db::EngineTable::load(test::data() / "engines.yaml");
  const auto m = test::load("llama3.1-8b");
  auto r = request(m, {"q4_k_m", "bf16"});
  r.gpus = {&db().gpu("rtx-4090"), &db().gpu("rtx-3090")};
  r.counts = {1, 2};
  r.engines = {&engines.engine("llamacpp")};
  check_same(r);
  const PlanResult with = plan(r, db());
  gpu_db::EngineSpec tiled = engines.engine("llamacpp");
  tiled.gemv_max_rows = 0;
  r.engines = {&tiled};
  const PlanResult without = plan(r, db());
  REQUIRE(!with.rows.empty());
  REQUIRE(with.rows.size() == without.rows.size());
  bool faster = false;
  for (std::size_t i = 0; i < with.rows.size(); ++i)
    faster = faster || with.rows[i].output_tokens_per_s_batch1 > 1.5 * without.rows[i].output_tokens_per_s_batch1;
  CHECK(faster);
}

TEST_CASE("StepFormula gives StepModel's step time anywhere on the plane, zero terms included") {
  using namespace moeplan::simulator;
  struct Case {
    const char* model;
    const char* precision;
    const char* gpu;
    model::ParallelLayout layout;
  };
  const Case cases[] = {
      {"llama4-maverick", "fp8", "h100-sxm", {8, 8, 1, 1}},
      {"llama4-maverick", "nvfp4", "b200", {1, 16, 2, 16}},
      {"llama4-maverick", "bf16", "a100-80gb-sxm", {4, 1, 4, 1}},
      {"qwen3-235b-a22b", "fp8:all-linear", "h200-sxm", {1, 32, 1, 32}},
      {"deepseek-v3", "fp8-block", "h200-sxm", {8, 8, 1, 1}},
      {"deepseek-v3", "nvfp4", "gb200", {1, 32, 1, 32}},
      {"qwen3-235b-a22b", "bf16", "mi300x", {4, 4, 2, 1}},
      {"gpt-oss-120b", "mxfp4", "h100-sxm", {2, 2, 1, 1}},
      {"llama3.1-70b", "int4-awq", "l40s", {4, 1, 1, 1}},
      {"mixtral-8x7b", "fp8", "rtx-pro-6000", {2, 1, 2, 1}},
  };
  std::mt19937_64 rng(20261123);
  std::uniform_real_distribution<double> amount(0.0, 1.0);
  OpSignatures signatures;
  StepFormula formula;
  for (const Case& c : cases) {
    const auto m = test::load(c.model);
    StepModelRequest sr;
    sr.graph.model = &m;
    sr.graph.precision = model::resolve_precision(c.precision, m, test::precisions());
    sr.graph.layout = c.layout;
    sr.hardware = gpu_hardware(db(), db().gpu(c.gpu));
    sr.routing = RoutingModel::uniform(m.num_experts, m.experts_per_token, c.layout.ep);
    const auto graph = std::make_shared<const model::OpGraph>(model::build_op_graph(sr.graph));
    const StepModel sm(sr, graph);
    model::AttentionKind window_kind = model::AttentionKind::chunked;
    for (const auto& l : m.layers)
      if (l.attention == model::AttentionKind::sliding) window_kind = l.attention;
    const StepPlane plane(m, c.layout, sr.routing, decode_shape(1, 3000, *graph, window_kind),
                          prefill_shape(2000, 0, true, *graph, window_kind));
    const PlaneOps ops(*graph, plane, signatures);
    REQUIRE(ops.exact());
    DeviceRates rates(sr.hardware, signatures);
    formula.assign(ops, rates);
    INFO(c.model << " " << c.precision << " on " << c.gpu << " tp" << c.layout.tp << " ep" << c.layout.ep << " pp"
                 << c.layout.pp << " dp" << c.layout.dp);
    // Ops merged across layer classes, and most ops bound by one term everywhere: few open terms remain.
    CHECK(ops.size() < graph->ops.size());
    CHECK(formula.open_terms(plane.point(8, 0.5)) < graph->ops.size() / 2);
    PlanePoints steady, mixed;  // points with a and b > 0; points of every pattern
    std::vector<double> want_steady, want_mixed;
    for (int i = 0; i < 300; ++i) {
      // Batches from 1 to ~4000 (log-uniform), prefill shares from 0 to 4 prompts; a decode-only or prefill-only
      // step now and then.
      double a = std::floor(std::exp(amount(rng) * 8.3));
      double b = amount(rng) < 0.2 ? 0.0 : amount(rng) * 4;
      if (i % 37 == 0) a = 0;
      if (a == 0 && b == 0) b = 1;
      const double want = sm.step_time_s(plane.shape(a, b));
      const double got = formula.step_time_s(plane.point(a, b));
      INFO("a = " << a << ", b = " << b);
      REQUIRE(got == Approx(want).epsilon(kTolerance));
      mixed.push_back(plane.point(a, b));
      want_mixed.push_back(want);
      if (a > 0 && b > 0) {
        steady.push_back(plane.point(a, b));
        want_steady.push_back(want);
      }
    }
    // Many points at once: one pattern (one pass over the open terms), and patterns mixed (point by point).
    CHECK(steady.alike == steady.size());
    CHECK(mixed.alike < mixed.size());
    for (auto [points, want] : {std::pair{&steady, &want_steady}, std::pair{&mixed, &want_mixed}}) {
      std::vector<double> got(points->size());
      formula.step_times_s(*points, got.size(), got.data());
      for (std::size_t k = 0; k < got.size(); ++k) REQUIRE(got[k] == Approx((*want)[k]).epsilon(kTolerance));
    }
  }
}
