// The serving loop: single-request latencies equal step prices, load patterns, KV capacity and DP groups.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "simulator/simulate.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::simulator;

namespace {
struct Fixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());
  model::ModelConfig m = test::load("llama3.1-8b");
  SimulateRequest request(const std::string& gpu = "h100-sxm") {
    SimulateRequest q;
    q.model = &m;
    q.precision = model::resolve_precision("bf16", m, test::precisions());
    q.hardware = gpu_hardware(db, db.gpu(gpu));
    q.workload.input_tokens = 512;
    q.workload.output_tokens = 64;
    return q;
  }
};
}  // namespace

TEST_CASE_METHOD(Fixture, "One request at a time: TTFT is one prefill step and TPOT one decode step") {
  auto q = request();
  q.workload.mode = LoadMode::closed;
  q.workload.concurrency = 1;
  q.workload.num_requests = 5;
  q.with_breakdown = true;
  const auto r = simulate(q);
  CHECK(r.serving.ttft_ms.p50 == Approx(r.prefill_step_s * 1e3).epsilon(1e-9));
  // Decode steps at contexts 513..575 average to the step at the middle context within a fraction of a percent.
  CHECK(r.serving.tpot_ms.mean == Approx(r.decode_step_s * 1e3).epsilon(0.01));
  CHECK(r.serving.e2e_ms.mean == Approx(r.serving.ttft_ms.mean + 63 * r.serving.tpot_ms.mean).epsilon(1e-6));
  CHECK(r.serving.output_tokens_per_s == Approx(64.0 / (r.serving.e2e_ms.mean / 1e3)).epsilon(1e-6));
}

TEST_CASE_METHOD(Fixture, "Max load batches: more throughput, worse latency than one at a time") {
  auto q = request();
  q.workload.mode = LoadMode::closed;
  q.workload.concurrency = 1;
  q.workload.num_requests = 20;
  const auto single = simulate(q).serving;
  q.workload.mode = LoadMode::max;
  q.workload.num_requests = 2000;
  const auto max = simulate(q).serving;
  CHECK(max.output_tokens_per_s > 20 * single.output_tokens_per_s);
  CHECK(max.tpot_ms.mean > single.tpot_ms.mean);
  CHECK(max.peak_batch <= q.limits.max_batch);
}

TEST_CASE_METHOD(Fixture, "The KV cache caps the batch: long requests on a small GPU") {
  auto q = request("l4");
  q.workload.input_tokens = 8000;
  q.workload.output_tokens = 100;
  q.workload.num_requests = 100;
  const auto r = simulate(q);
  CHECK(r.serving.kv_bound);
  CHECK(r.serving.peak_batch <= r.serving.kv_limited_batch);
  CHECK(r.serving.kv_limited_batch >= 1);
  CHECK(r.serving.kv_limited_batch < 20);
}

TEST_CASE_METHOD(Fixture, "Poisson arrivals far below capacity see the isolated latencies") {
  auto q = request();
  q.workload.mode = LoadMode::poisson;
  q.workload.request_rate_per_s = 0.05;
  q.workload.num_requests = 50;
  q.with_breakdown = true;
  const auto r = simulate(q);
  CHECK(r.serving.ttft_ms.p50 == Approx(r.prefill_step_s * 1e3).epsilon(1e-6));
  // Throughput follows the arrival rate, not the hardware.
  CHECK(r.serving.requests_per_s == Approx(0.05).epsilon(0.5));
}

TEST_CASE_METHOD(Fixture, "Bad requests are refused with InputError") {
  auto q = request();
  q.workload.input_tokens = 200000;  // above the 131,072-token limit
  CHECK_THROWS_AS(simulate(q), InputError);
  auto big = test::load("llama3.1-405b");
  auto q2 = request("l4");
  q2.model = &big;
  q2.precision = model::resolve_precision("bf16", big, test::precisions());
  CHECK_THROWS_AS(simulate(q2), InputError);  // 810 GB of weights on one 24 GB GPU
  auto q3 = request();
  q3.workload.mode = LoadMode::closed;
  q3.workload.concurrency = 0;
  CHECK_THROWS_AS(simulate(q3), InputError);
}

TEST_CASE_METHOD(Fixture, "Disaggregation: decode TPOT does not pay for prefill chunks") {
  auto ds = test::load("qwen3-30b-a3b");
  auto q = request();
  q.model = &ds;
  q.precision = model::resolve_precision("bf16", ds, test::precisions());
  q.workload.input_tokens = 4000;
  q.workload.output_tokens = 200;
  q.workload.mode = LoadMode::poisson;
  // 2 requests/s keeps the aggregated server below saturation (at 4/s its queue grows and every step is a mixed
  // one), so the comparison is of step composition, not of an overloaded queue.
  q.workload.request_rate_per_s = 2;
  q.workload.num_requests = 300;
  const auto agg = simulate(q);
  q.prefill_replicas = 1;
  const auto dis = simulate(q);
  CHECK(dis.gpus == 2);
  CHECK(dis.serving.tpot_ms.p99 < agg.serving.tpot_ms.p99);
  CHECK(dis.kv_transfer_s > 0);
}

TEST_CASE_METHOD(Fixture, "Capacity-bound MoE: H200 (1.43x bandwidth, 1.76x memory) serves far more than 1.43x of H100") {
  auto mav = test::load("llama4-maverick");
  auto q = request();
  q.model = &mav;
  q.precision = model::resolve_precision("fp8", mav, test::precisions());
  q.layout = {8, 8, 1, 1};
  q.workload.input_tokens = 8000;
  q.workload.output_tokens = 2000;
  q.workload.num_requests = 1000;
  const auto h100 = simulate(q).serving;
  q.hardware = gpu_hardware(db, db.gpu("h200-sxm"));
  const auto h200 = simulate(q).serving;
  // After ~52 GB of weights, H100 keeps ~11 GB for KV and H200 ~71 GB: the batch grows ~4x, throughput ~1.8x.
  CHECK(h100.kv_bound);
  CHECK(static_cast<double>(h200.kv_limited_batch) > 3.0 * static_cast<double>(h100.kv_limited_batch));
  CHECK(h200.output_tokens_per_s > 1.6 * h100.output_tokens_per_s);
}

TEST_CASE_METHOD(Fixture, "Decode-only steps run as the next captured CUDA-graph batch, padded with dummy sequences") {
  auto q = request();
  q.workload.mode = LoadMode::static_batch;
  q.workload.concurrency = 5;
  q.workload.num_requests = 5;
  q.limits.max_batch = 5;
  const double plain = simulate(q).serving.tpot_ms.mean;
  // 5 is captured: no dummies. Beyond the largest captured size: eager, unpadded.
  q.limits.graph_padded_batches = {1, 5, 64};
  CHECK(simulate(q).serving.tpot_ms.mean == plain);
  q.limits.graph_padded_batches = {1, 2, 4};
  CHECK(simulate(q).serving.tpot_ms.mean == plain);
  // Padded to 8: three dummy sequences with one-token caches run every op, so the step costs more than 5 sequences
  // and less than 8 real ones with their whole caches.
  q.limits.graph_padded_batches = {1, 8, 64};
  const auto capped = simulate(q);  // 8 is above the max batch of 5: not padded (TensorRT-LLM's rule)
  CHECK(capped.serving.tpot_ms.mean == plain);
  q.limits.max_batch = 8;
  const auto padded = simulate(q);
  CHECK(padded.serving.tpot_ms.mean > plain * (1 + 1e-6));
  CHECK(padded.assumptions.back().find("CUDA graphs") == std::string::npos);  // the line sits before the scheduler's
  bool said = false;
  for (const auto& a : padded.assumptions) said = said || a.find("runs as the next captured batch (1, 8, 64)") != std::string::npos;
  CHECK(said);
  q.limits.graph_padded_batches = {};
  q.workload.concurrency = 8;
  q.workload.num_requests = 8;
  q.limits.max_batch = 8;
  CHECK(padded.serving.tpot_ms.mean < simulate(q).serving.tpot_ms.mean);
  // The prompt step (prefill tokens in it) is never padded: TTFT is the same.
  q.workload.concurrency = 5;
  q.workload.num_requests = 5;
  CHECK(padded.serving.ttft_ms.mean == simulate(q).serving.ttft_ms.mean);
}
