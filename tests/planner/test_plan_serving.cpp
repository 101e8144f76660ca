// The serving check: a plan row's TTFT, TPOT and tokens/s are what `moeplan simulate` gives at the row's load (a
// closed loop of batch x dp requests in flight), and the SLOs hold at the requested percentile of them.
#include <catch2/catch.hpp>

#include <sstream>

#include "app/cli.hpp"
#include "gpu_db/gpu_db.hpp"
#include "planner/plan.hpp"
#include "simulator/gpu_profile.hpp"
#include "simulator/hardware.hpp"
#include "simulator/simulate.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::planner;

namespace {

const gpu_db::Database& db() {
  static const auto d = gpu_db::Database::load(test::data());
  return d;
}

PlanRequest request(const model::ModelConfig& m, std::vector<std::string> gpus, std::vector<std::string> precisions) {
  PlanRequest r;
  r.model = &m;
  r.precisions = &test::precisions();
  r.precision_specs = std::move(precisions);
  for (const auto& g : gpus) r.gpus.push_back(&db().gpu(g));
  return r;
}

// The row's load simulated from its fields, independently of the planner's own call.
simulator::ServingResult simulate_row(const PlanRequest& r, const PlanRow& row) {
  simulator::SimulateRequest q;
  q.model = r.model;
  q.precision = model::resolve_precision(row.precision, *r.model, *r.precisions);
  q.layout = row.layout;
  q.kv_dtype = r.kv_dtype;
  q.hardware = simulator::gpu_hardware(db(), *row.gpu);
  // As simulate --gpu-profile auto: the shipped kernel curves (TensorRT-LLM's for the plain roofline's engine).
  q.hardware.gpu_profile = simulator::shipped_gpu_profile(test::data(), row.gpu->name, "trtllm");
  q.limits.max_batch = row.batch;
  q.limits.max_num_batched_tokens = r.max_num_batched_tokens;
  q.workload.input_tokens = r.input_tokens;
  q.workload.output_tokens = r.output_tokens;
  q.workload.mode = simulator::LoadMode::closed;
  q.workload.concurrency = row.batch * row.layout.dp;
  q.workload.num_requests = 4 * q.workload.concurrency;  // simulate's own default for a closed loop
  return simulator::simulate(q).serving;
}

double at(const simulator::Percentiles& p, int q) { return q == 50 ? p.p50 : q == 99 ? p.p99 : p.p90; }

void check_rows_against_simulate(const PlanRequest& r, std::size_t rows) {
  const PlanResult res = plan(r, db());
  REQUIRE(res.rows.size() >= rows);
  for (std::size_t i = 0; i < rows; ++i) {
    const PlanRow& row = res.rows[i];
    INFO(r.model->name << " row " << i + 1 << ": " << row.count << "x " << row.gpu->name << " " << row.precision
                       << " batch " << row.batch);
    REQUIRE(row.serving);
    const simulator::ServingResult s = simulate_row(r, row);
    CHECK(row.ttft_ms == Approx(at(s.ttft_ms, r.slo_percentile)).epsilon(0.05));
    CHECK(row.tpot_ms == Approx(at(s.tpot_ms, r.slo_percentile)).epsilon(0.05));
    CHECK(row.output_tokens_per_s == Approx(s.output_tokens_per_s).epsilon(0.05));
    CHECK(row.output_tokens_per_s_per_user == Approx(1e3 / row.tpot_ms));
    // Queueing is in: a burst of arrivals waits for the token budget, far beyond the steady state's first token.
    CHECK(row.ttft_ms > 2 * row.serving->steady_ttft_ms);
    if (r.tpot_ms > 0) CHECK(row.tpot_ms <= r.tpot_ms);
  }
}

}  // namespace

TEST_CASE("Plan rows are simulate's figures at their load: Llama 4 Maverick and Qwen3-235B") {
  const auto maverick = test::load("llama4-maverick");
  auto m = request(maverick, {"rtx-pro-6000", "b200", "h200-sxm", "mi300x"}, {"fp8", "nvfp4"});
  m.serving_rows = 3;
  check_rows_against_simulate(m, 3);
  const auto qwen = test::load("qwen3-235b-a22b");
  auto q = request(qwen, {"h200-sxm", "b200", "h100-sxm"}, {"fp8:all-linear", "nvfp4"});
  q.counts = {4, 8, 16};
  q.serving_rows = 3;
  q.tpot_ms = 40;
  SECTION("at p90") { check_rows_against_simulate(q, 3); }
  SECTION("at p99") {
    q.slo_percentile = 99;
    check_rows_against_simulate(q, 2);
  }
}

TEST_CASE("The printed simulate command reproduces the first row") {
  const auto maverick = test::load("llama4-maverick");
  auto r = request(maverick, {"b200"}, {"nvfp4"});
  r.counts = {8};
  r.serving_rows = 1;
  const PlanResult res = plan(r, db());
  REQUIRE(!res.rows.empty());
  const PlanRow& row = res.rows.front();
  REQUIRE(row.serving);
  std::vector<std::string> args;
  std::istringstream words(row.serving->simulate_command);
  for (std::string w; words >> w;) args.push_back(w);
  REQUIRE(args.size() > 2);
  CHECK(args[0] == "moeplan");
  args.erase(args.begin());
  args.insert(args.end(), {"--format", "json"});
  std::ostringstream out, err;
  REQUIRE(app::run(args, out, err) == 0);
  const auto j = nlohmann::json::parse(out.str());
  const auto& s = j.contains("serving") ? j.at("serving") : j;
  CHECK(row.ttft_ms == Approx(s.at("ttft_ms").at("p90").get<double>()).epsilon(0.05));
  CHECK(row.tpot_ms == Approx(s.at("tpot_ms").at("p90").get<double>()).epsilon(0.05));
  CHECK(row.output_tokens_per_s == Approx(s.at("output_tokens_per_s").get<double>()).epsilon(0.05));
}

TEST_CASE("A TTFT SLO holds at p90: a row whose p50 meets the limit and whose p90 does not is not ranked") {
  const auto maverick = test::load("llama4-maverick");
  auto r = request(maverick, {"b200"}, {"nvfp4"});
  r.counts = {8};
  r.serving_rows = 3;
  const PlanResult free = plan(r, db());
  REQUIRE(!free.rows.empty());
  const PlanRow& was = free.rows.front();
  REQUIRE(was.serving);
  const double p50 = was.serving->ttft_ms_p50, p90 = was.serving->ttft_ms_p90;
  INFO("p50 " << p50 << " ms, p90 " << p90 << " ms at batch " << was.batch);
  REQUIRE(p50 < 0.8 * p90);
  const double limit = (p50 + p90) / 2;
  auto same = [&](const PlanRow& a) {
    return a.gpu == was.gpu && a.precision == was.precision && a.layout.tp == was.layout.tp &&
           a.layout.ep == was.layout.ep && a.layout.pp == was.layout.pp && a.layout.dp == was.layout.dp;
  };

  r.ttft_ms = limit;
  const PlanResult held = plan(r, db());
  for (const PlanRow& row : held.rows) {
    if (!row.serving) continue;
    CHECK(row.ttft_ms <= limit);
    CHECK(row.serving->ttft_ms_p90 <= limit);
    if (same(row)) CHECK(row.batch < was.batch);  // stepped down to a batch whose p90 meets the limit
  }
  CHECK(held.serving_simulations > free.serving_simulations);

  // At p50 the same limit keeps the row at its batch.
  r.slo_percentile = 50;
  const PlanResult median = plan(r, db());
  bool kept = false;
  for (const PlanRow& row : median.rows)
    if (same(row) && row.batch == was.batch) kept = row.ttft_ms == Approx(p50);
  CHECK(kept);
}
