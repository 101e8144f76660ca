// Planning a measured CPU host (plan --host / --profile): the host is the one device, its profile's rank counts are
// the layouts, memory is its RAM shared by the ranks with an fp32 KV cache, and every row carries error bars from the
// profile's held-out residuals.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <numeric>

#include "gpu_db/gpu_db.hpp"
#include "planner/plan.hpp"
#include "simulator/memory.hpp"
#include "simulator/profile.hpp"
#include "simulator/step_cost.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::planner;

namespace {
struct HostFixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());
  std::shared_ptr<const simulator::HostProfile> profile = std::make_shared<const simulator::HostProfile>(
      simulator::read_profile(test::fixtures() / "profiles" / "two-core-epyc.yaml"));
  HostCandidate host(std::shared_ptr<const simulator::HostProfile> p) const {
    HostCandidate c;
    c.device.name = "test-host";
    c.device.memory_bytes = p->memory_bytes;
    c.hardware = simulator::profile_hardware(p);
    c.ranks.clear();
    for (const auto& l : p->layouts) c.ranks.push_back(l.ranks);
    return c;
  }
  PlanRequest request(const model::ModelConfig& m) const {
    PlanRequest r;
    r.model = &m;
    r.precisions = &test::precisions();
    r.precision_specs = {"bf16"};
    r.host = host(profile);
    r.gpu_price_usd_per_hour = 0.10;
    r.input_tokens = 500;
    r.output_tokens = 200;
    r.tpot_ms = 0;  // no SLO: every layout that fits is ranked
    return r;
  }
};
}  // namespace

TEST_CASE_METHOD(HostFixture, "A host plan tries one rank and the profile's rank counts, TP and TP+EP, one host") {
  REQUIRE(profile->layouts.size() == 2);  // the fixture measured 1 and 2 ranks
  const auto moe = model::load_model((test::fixtures() / "oracle" / "qwen3_moe" / "config.json").string(), test::data());
  auto r = request(moe);
  r.precision_specs = {"bf16", "fp8", "nvfp4"};
  const auto res = plan(r, db);
  // Layouts: tp1, tp2, tp2 ep2 — for each precision; NVFP4 has no measured rate on a CPU: rejected as unsupported.
  CHECK(res.rejected[static_cast<std::size_t>(Reject::unsupported_dtype)] == 3);
  const std::int64_t rejected = std::accumulate(res.rejected.begin(), res.rejected.end(), std::int64_t{0});
  CHECK(static_cast<std::int64_t>(res.rows.size()) + rejected == 9);
  REQUIRE(res.rows.size() == 6);
  int tp1 = 0, tp2 = 0, tp2ep2 = 0;
  for (const auto& row : res.rows) {
    CHECK(row.gpu->name == "test-host");
    CHECK(row.count == 1);
    CHECK(row.usd_per_hour == Approx(0.10));
    CHECK(row.layout.pp == 1);
    CHECK(row.layout.dp == 1);
    tp1 += row.layout.tp == 1;
    tp2 += row.layout.tp == 2 && row.layout.ep == 1;
    tp2ep2 += row.layout.tp == 2 && row.layout.ep == 2;
    // FP8 on a CPU is converted in registers: weight-only, as on GPUs without FP8 tensor cores.
    if (row.precision.rfind("fp8", 0) == 0) CHECK(row.weight_only);
  }
  CHECK(tp1 == 2);
  CHECK(tp2 == 2);
  CHECK(tp2ep2 == 2);
}

TEST_CASE_METHOD(HostFixture, "Host memory: the ranks share its RAM and the KV cache is fp32, as the CPU executor keeps it") {
  const auto llama = test::load("llama3.1-8b");  // 16 GB of BF16 weights on a 24 GB host: a few sequences of KV fit
  auto r = request(llama);
  const auto res = plan(r, db);
  REQUIRE(!res.rows.empty());
  for (const auto& row : res.rows) {
    simulator::MemoryRequest mr;
    mr.model = &llama;
    mr.precision = model::resolve_precision("bf16", llama, test::precisions());
    mr.layout = row.layout;
    mr.kv_dtype = model::KvDtype::bf16;
    mr.context_tokens = r.input_tokens + r.output_tokens;
    mr.concurrency = r.max_batch;
    mr.max_num_batched_tokens = r.max_num_batched_tokens;
    mr.capacity_bytes = 1;
    mr.host_mode = true;
    const auto mem = simulator::memory_breakdown(mr);
    const double per_rank = profile->memory_bytes * r.gpu_memory_utilization / row.layout.gpus();
    const double room = per_rank - mem.weights.total - mem.activation_bytes - mem.overhead_bytes;
    const auto expected = static_cast<std::int64_t>(room / (2.0 * mem.kv_bytes_per_sequence));  // bf16 -> fp32
    INFO("tp " << row.layout.tp);
    CHECK(row.kv_limited_batch == expected);
    CHECK(row.kv_limited_batch > 0);
    CHECK(row.kv_limited_batch < 40);  // 2048 tokens of 32-layer fp32 KV is 1 GB per sequence
  }
}

TEST_CASE_METHOD(HostFixture, "On a host, prompts run whole in their own passes between decode steps, as the executor runs them") {
  const auto llama = test::load("llama3.1-8b");
  auto r = request(llama);
  const auto res = plan(r, db);
  REQUIRE(!res.rows.empty());
  for (const auto& row : res.rows) {
    simulator::StepModelRequest sr;
    sr.graph.model = &llama;
    sr.graph.precision = model::resolve_precision(row.precision, llama, test::precisions());
    sr.graph.layout = row.layout;
    sr.graph.activation_bytes = 4;
    sr.hardware = simulator::profile_hardware(profile);
    sr.routing = simulator::RoutingModel::uniform(llama.num_experts, llama.experts_per_token, row.layout.ep);
    const simulator::StepModel sm(sr);
    const double prompt_s = sm.step_time_s(simulator::prefill_shape(r.input_tokens, 0, true, sm.graph(), model::AttentionKind::chunked));
    const double decode_s = sm.step_time_s(
        simulator::decode_shape(static_cast<double>(row.batch), r.input_tokens + r.output_tokens / 2, sm.graph(), model::AttentionKind::chunked));
    INFO(row.precision << " tp " << row.layout.tp << " batch " << row.batch);
    CHECK(row.ttft_ms == Approx(prompt_s * 1e3));
    // Each decode step of B sequences also pays B / output prompts.
    CHECK(row.tpot_ms == Approx((decode_s + prompt_s * static_cast<double>(row.batch) / static_cast<double>(r.output_tokens)) * 1e3));
    CHECK(row.output_tokens_per_s == Approx(static_cast<double>(row.batch) / (row.tpot_ms / 1e3)));
  }
}

TEST_CASE_METHOD(HostFixture, "Host rows carry error bars from the profile's held-out residuals, and none without them") {
  const auto llama = test::load("llama3.1-8b");
  auto r = request(llama);
  const auto res = plan(r, db);
  REQUIRE(!res.rows.empty());
  REQUIRE(profile->decode_residuals);
  REQUIRE(profile->prefill_residuals);
  const double dlo = 1 + profile->decode_residuals->q05, dhi = 1 + profile->decode_residuals->q95;
  const double plo = 1 + profile->prefill_residuals->q05, phi = 1 + profile->prefill_residuals->q95;
  REQUIRE(dlo < 1);
  REQUIRE(dhi > 1);
  for (const auto& row : res.rows) {
    REQUIRE(row.error_bars);
    const auto& e = *row.error_bars;
    CHECK(e.tpot_ms.low == Approx(row.tpot_ms * dlo));
    CHECK(e.tpot_ms.high == Approx(row.tpot_ms * dhi));
    CHECK(e.ttft_ms.low == Approx(row.ttft_ms * plo));
    CHECK(e.ttft_ms.high == Approx(row.ttft_ms * phi));
    // A slower step means fewer tokens per second and more dollars per token.
    CHECK(e.output_tokens_per_s.low == Approx(row.output_tokens_per_s / dhi));
    CHECK(e.output_tokens_per_s.high == Approx(row.output_tokens_per_s / dlo));
    CHECK(e.usd_per_m_output_tokens.low == Approx(row.usd_per_m_output_tokens * dlo));
    CHECK(e.usd_per_m_blended_tokens.high == Approx(row.usd_per_m_blended_tokens * dhi));
    CHECK(e.decode_n == profile->decode_residuals->n);
  }
  // An 8B BF16 model streams 16 GB per decode step from ~20 GB/s of RAM: TPOT is near a second, not milliseconds.
  CHECK(res.rows.back().tpot_ms > 300);

  // A profile not yet validated has no residuals: the plan stands, without error bars.
  auto bare = std::make_shared<simulator::HostProfile>(*profile);
  bare->decode_residuals.reset();
  bare->prefill_residuals.reset();
  r.host = host(bare);
  const auto plain = plan(r, db);
  REQUIRE(!plain.rows.empty());
  for (const auto& row : plain.rows) CHECK(!row.error_bars);
}

TEST_CASE_METHOD(HostFixture, "GPU plans carry no error bars") {
  const auto maverick = test::load("llama4-maverick");
  PlanRequest r;
  r.model = &maverick;
  r.precisions = &test::precisions();
  r.precision_specs = {"fp8"};
  r.gpus = {&db.gpu("h200-sxm")};
  r.counts = {8};
  const auto res = plan(r, db);
  REQUIRE(!res.rows.empty());
  for (const auto& row : res.rows) CHECK(!row.error_bars);
}
