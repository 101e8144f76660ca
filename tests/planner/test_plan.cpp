// The planner: every candidate is kept or rejected for one reason, SLOs and budgets hold, costs follow the formulas.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "planner/cost.hpp"
#include "planner/plan.hpp"
#include "planner/serving_compare.hpp"
#include "simulator/published.hpp"
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
  // --gpu-price is the GPUs alone: a row over several nodes adds its network (nodes x NIC ports x the port price).
  const double port_hour = db.network_port_price().usd_per_port_hour();
  for (const auto& row : res.rows) {
    CHECK(row.nodes == (row.count + 7) / 8);  // 8 GPUs per HGX node
    CHECK(row.network_usd_per_hour == Approx(row.nodes > 1 ? row.nodes * row.nics_per_node * port_hour : 0.0));
    CHECK(row.usd_per_hour == Approx(2.0 * row.count + row.network_usd_per_hour));
    CHECK(row.usd_per_month == Approx(row.usd_per_hour * kHoursPerMonth));
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

TEST_CASE_METHOD(Fixture, "The network's price is part of $/hour for rows over several nodes, once") {
  auto r = request();
  r.gpus = {&db.gpu("h200-sxm")};
  r.precision_specs = {"fp8"};
  r.counts = {8, 16};
  r.gpu_price_usd_per_hour = 3.0;
  r.serving_rows = 0;
  const double port_hour = db.network_port_price().usd_per_port_hour();
  REQUIRE(port_hour > 0);
  CHECK(port_hour == Approx(4247.50 / (4 * 8760.0)));  // data/network.yaml: $4,247.50 a port over 4 years
  auto find = [](const PlanResult& res, int count) -> const PlanRow* {
    for (const auto& row : res.rows)
      if (row.count == count && row.layout.ep == count && row.layout.pp == 1) return &row;
    return nullptr;
  };
  const auto res = plan(r, db);
  const PlanRow* one = find(res, 8);
  const PlanRow* two = find(res, 16);
  REQUIRE(one);
  REQUIRE(two);
  // One HGX node needs no scale-out fabric; two pay 2 nodes x 8 NIC ports (one per GPU) x the port price.
  CHECK(one->nodes == 1);
  CHECK(one->network_usd_per_hour == 0);
  CHECK(one->usd_per_hour == Approx(3.0 * 8));
  CHECK(two->nodes == 2);
  CHECK(two->nics_per_node == 8);
  CHECK(two->inter_link == "ib-ndr400");
  CHECK(two->intra_link == "nvlink4");
  CHECK(two->network_usd_per_hour == Approx(2 * 8 * port_hour));
  CHECK(two->usd_per_hour == Approx(3.0 * 16 + 2 * 8 * port_hour));
  // ... and it reaches $/M tokens: the same tokens/s at a higher $/hour.
  const double tokens_per_hour = 2 * two->output_tokens_per_s * 3600;
  CHECK(two->usd_per_m_blended_tokens == Approx(two->usd_per_hour / tokens_per_hour * 1e6));
  // --network-price replaces the data's port price (0: none); --nics-per-node the port count.
  r.network_usd_per_port_hour = 0;
  const auto no_network = plan(r, db);  // held: find points into it
  const PlanRow* free_net = find(no_network, 16);
  REQUIRE(free_net);
  CHECK(free_net->usd_per_hour == Approx(3.0 * 16));
  CHECK(free_net->usd_per_m_blended_tokens < two->usd_per_m_blended_tokens);
  r.network_usd_per_port_hour = 1.0;
  r.nics_per_node = 4;
  const auto four = plan(r, db);
  const PlanRow* halved = find(four, 16);
  REQUIRE(halved);
  CHECK(halved->nics_per_node == 4);
  CHECK(halved->network_usd_per_hour == Approx(2 * 4 * 1.0));
  // Half the NICs: half the off-node bandwidth, so the 16-GPU DEP row serves fewer tokens/s than with eight.
  CHECK(halved->output_tokens_per_s < two->output_tokens_per_s);
  // A price source that includes the network (AWS p5en with EFA) is not charged again.
  r = request();
  r.gpus = {&db.gpu("h200-sxm")};
  r.precision_specs = {"fp8"};
  r.counts = {16};
  r.serving_rows = 0;
  bool aws_included = false;
  for (const auto& p : db.gpu_prices())
    if (p.gpu == "h200-sxm" && p.provider == "AWS") aws_included = p.network_included;
  CHECK(aws_included);
  // The default price: the cheapest unflagged on-demand row (docs/planner.md "Cost").
  const auto cheapest = db.choose_price("h200-sxm", [](const std::string&) { return true; }, false);
  REQUIRE(cheapest);
  for (const auto& row : plan(r, db).rows) {
    CHECK(row.network_in_price == cheapest->network_included);
    CHECK(row.usd_per_hour == Approx(cheapest->usd_per_gpu_hour * 16 + (cheapest->network_included ? 0.0 : 2 * 8 * port_hour)));
  }
}

TEST_CASE_METHOD(Fixture, "Rows outside the published set's range say so: more GPUs than any row, EP over PCIe") {
  const auto set = simulator::load_published(test::data() / "validation" / "public_points.yaml");
  const auto range = simulator::validated_range(set, db);
  // Computed from the file: its largest row and its GPUs.
  int most = 0;
  for (const auto& p : set.points)
    if (p.gpu_row()) most = std::max(most, p.count);
  CHECK(range.max_gpus == most);
  CHECK(std::find(range.gpus.begin(), range.gpus.end(), "h200-sxm") != range.gpus.end());
  auto r = request();
  r.gpus = {&db.gpu("h200-sxm"), &db.gpu("l40s")};
  r.precision_specs = {"fp8"};
  r.counts = {8, 16, 32};  // 32 L40S hold Maverick in EP16 over 2 stages
  r.serving_rows = 0;
  r.validated = range;
  const auto res = plan(r, db);
  bool saw8 = false, saw16 = false, saw_pcie = false;
  for (const auto& row : res.rows) {
    const std::string flags = [&] {
      std::string f;
      for (const auto& b : row.beyond_validated) f += b + ";";
      return f;
    }();
    INFO(row.gpu->name << " x" << row.count << " ep" << row.layout.ep << ": " << flags);
    if (row.gpu->name == "h200-sxm" && row.count == 8) {
      saw8 = true;
      CHECK(row.beyond_validated.empty());
    }
    if (row.gpu->name == "h200-sxm" && row.count == 16) {
      saw16 = true;
      CHECK(flags.find("> " + std::to_string(range.max_gpus) + " GPUs") != std::string::npos);
    }
    if (row.gpu->name == "l40s") {
      // No published row measured an L40S; EP beyond the largest EP on a PCIe-only card is flagged too.
      CHECK(flags.find("GPU without rows") != std::string::npos);
      if (row.layout.ep > range.max_ep_pcie) {
        saw_pcie = true;
        CHECK(flags.find("over PCIe") != std::string::npos);
      }
    }
  }
  CHECK(saw8);
  CHECK(saw16);
  CHECK(saw_pcie);
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
  const double api = c.reference_offer().usd_per_m_blended;  // the cheapest trusted offer (docs/planner.md)
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
  const auto cmds = launch_commands(test::data(), "llama4-maverick", row, 9000, model::KvDtype::fp8, 0.9);
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
