// The planner: every candidate is kept or rejected for one reason, SLOs and budgets hold, costs follow the formulas.
#include <catch2/catch.hpp>

#include <numeric>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "planner/cost.hpp"
#include "planner/plan.hpp"
#include "planner/serving_compare.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::planner;

namespace {
struct Fixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());
  model::ModelConfig maverick = test::load("llama4-maverick");
  PlanRequest request() {
    PlanRequest r;
    r.model = &maverick;
    r.precisions = &test::precisions();
    r.precision_specs = {"bf16", "fp8", "nvfp4"};
    r.gpus = {&db.gpu("h100-sxm"), &db.gpu("h200-sxm"), &db.gpu("b200"), &db.gpu("a100-80gb-sxm")};
    return r;
  }
};
}  // namespace

TEST_CASE_METHOD(Fixture, "Every candidate is either ranked or rejected for exactly one reason") {
  const auto r = request();
  const auto res = plan(r, db);
  REQUIRE(!res.rows.empty());
  const std::int64_t rejected = std::accumulate(res.rejected.begin(), res.rejected.end(), std::int64_t{0});
  // Candidates: GPUs × precisions × counts × layouts (pp 1/2/4 × {tp, tp+ep, dep}, minus those counts cannot hold).
  std::int64_t candidates = 0;
  for (int count : r.counts)
    for (int pp : {1, 2, 4})
      if (count % pp == 0) candidates += count / pp > 1 ? 3 : 1;
  candidates *= static_cast<std::int64_t>(r.gpus.size() * r.precision_specs.size());
  CHECK(static_cast<std::int64_t>(res.rows.size()) + rejected == candidates);
  // NVFP4 needs FP4 tensor cores: H100, H200 and A100 candidates with nvfp4 are rejected as unsupported.
  CHECK(res.rejected[static_cast<std::size_t>(Reject::unsupported_dtype)] > 0);
  for (const auto& row : res.rows) {
    if (row.precision.rfind("nvfp4", 0) == 0) CHECK(row.gpu->name == "b200");
    // FP8 on A100 has no FP8 tensor cores: weight-only.
    if (row.gpu->name == "a100-80gb-sxm" && row.precision.rfind("fp8", 0) == 0) CHECK(row.weight_only);
  }
  // Ranked by blended $/M, cheapest first; the cheapest is on the Pareto front.
  for (std::size_t i = 1; i < res.rows.size(); ++i)
    CHECK(res.rows[i - 1].usd_per_m_blended_tokens <= res.rows[i].usd_per_m_blended_tokens);
  CHECK(res.rows.front().pareto);
}

TEST_CASE_METHOD(Fixture, "Costs follow from $/hour and tokens/s") {
  auto r = request();
  r.gpu_price_usd_per_hour = 2.0;
  r.utilization = 0.5;
  const auto res = plan(r, db);
  REQUIRE(!res.rows.empty());
  for (const auto& row : res.rows) {
    CHECK(row.usd_per_hour == Approx(2.0 * row.count));
    CHECK(row.usd_per_month == Approx(2.0 * row.count * kHoursPerMonth));
    // Half the hours idle doubles the cost of each token; input = output tokens here (1000/1000).
    const double tokens_per_hour = 2 * row.output_tokens_per_s * 3600;
    CHECK(row.usd_per_m_blended_tokens == Approx(row.usd_per_hour / 0.5 / tokens_per_hour * 1e6));
    // Input and output shares add up to the blend: (in + out)/2 at a 1:1 ratio.
    CHECK((row.usd_per_m_input_tokens + row.usd_per_m_output_tokens) / 2 == Approx(row.usd_per_m_blended_tokens));
    CHECK(row.usd_per_1000_requests[1] == Approx(2000 * row.usd_per_m_blended_tokens / 1000));
    // Batch 1 is far more expensive per token than the batched operating point.
    if (row.batch >= 64) CHECK(row.usd_per_m_output_tokens_batch1 > 5 * row.usd_per_m_output_tokens);
  }
}

TEST_CASE_METHOD(Fixture, "SLOs and budgets hold for every ranked row, an impossible SLO names the closest miss") {
  auto r = request();
  r.tpot_ms = 30;
  r.ttft_ms = 500;
  r.budget_usd_per_month = 60000;
  const auto res = plan(r, db);
  REQUIRE(!res.rows.empty());
  for (const auto& row : res.rows) {
    CHECK(row.tpot_ms <= 30);
    CHECK(row.ttft_ms <= 500);
    CHECK(row.usd_per_month <= 60000);
  }
  CHECK(res.rejected[static_cast<std::size_t>(Reject::over_budget)] > 0);
  r.tpot_ms = 0.5;  // no GPU decodes Maverick in half a millisecond
  r.budget_usd_per_month = 0;
  const auto none = plan(r, db);
  CHECK(none.rows.empty());
  REQUIRE(none.closest.row);
  CHECK(none.closest.constraint == "--tpot-ms");
  CHECK(none.closest.value > 0.5);
}

TEST_CASE_METHOD(Fixture, "Self-hosting against API prices: break-even volume") {
  const auto res = plan(request(), db);
  REQUIRE(!res.rows.empty());
  const auto& best = res.rows.front();
  const auto c = compare_api(db, "llama4-maverick", best, 1000, 1000);
  REQUIRE(!c.offers.empty());
  for (std::size_t i = 1; i < c.offers.size(); ++i) CHECK(c.offers[i - 1].usd_per_m_blended <= c.offers[i].usd_per_m_blended);
  const double api = c.offers.front().usd_per_m_blended;
  CHECK(c.breakeven_tokens_per_month == Approx(best.usd_per_month / api * 1e6));
  CHECK(c.breakeven_utilization == Approx(c.breakeven_tokens_per_month / (2 * best.output_tokens_per_s * 3600 * 730)));
  CHECK_THROWS_AS(compare_api(db, "no-such-model", best, 1000, 1000), InputError);
}

TEST_CASE_METHOD(Fixture, "Launch commands name the published checkpoint and the layout") {
  PlanRow row;
  row.gpu = &db.gpu("h200-sxm");
  row.count = 8;
  row.precision = "fp8:experts";
  row.layout = {1, 8, 1, 8};
  row.batch = 128;
  const auto cmds = launch_commands(test::data() / "checkpoints.yaml", "llama4-maverick", row, 9000, model::KvDtype::fp8, 0.9);
  REQUIRE(cmds.size() == 3);
  CHECK(cmds[0].command.find("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8") != std::string::npos);
  CHECK(cmds[0].command.find("--data-parallel-size 8") != std::string::npos);
  CHECK(cmds[0].command.find("--kv-cache-dtype fp8") != std::string::npos);
  CHECK(cmds[1].command.find("--enable-dp-attention") != std::string::npos);
  CHECK(cmds[2].command.find("--ep_size 8") != std::string::npos);
}

TEST_CASE_METHOD(Fixture, "Bad plan requests are refused") {
  auto r = request();
  r.gpus.clear();
  CHECK_THROWS_AS(plan(r, db), InputError);
  CHECK_THROWS_AS(parse_objective("cheapest"), InputError);
  auto u = request();
  u.utilization = 0;
  CHECK_THROWS_AS(plan(u, db), InputError);
}
