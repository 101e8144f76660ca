// The VRAM breakdown: the fits the issue names, sharding rules, and layout errors.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "simulator/memory.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;
using namespace moeplan::simulator;

namespace {
struct Fixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());
  ModelConfig maverick = test::load("llama4-maverick");

  MemoryRequest request(const ModelConfig& m, const std::string& precision, const std::string& gpu, ParallelLayout layout) {
    MemoryRequest q;
    q.model = &m;
    q.precision = resolve_precision(precision, m, test::precisions());
    q.layout = layout;
    q.capacity_bytes = db.gpu(gpu).memory_bytes;
    q.device_name = gpu;
    return q;
  }
};
}  // namespace

TEST_CASE_METHOD(Fixture, "Maverick FP8 (experts) on 8xH100 fits with about 52 GB of weights per GPU") {
  const auto b = memory_breakdown(request(maverick, "fp8", "h100-sxm", {8, 1, 1, 1}));
  CHECK(b.weights.total / 1e9 == Approx(52).margin(1.0));
  CHECK(b.fits);
  CHECK(b.max_concurrency > 1);
  // Experts dominate: 1/8 of the FP8 experts per GPU.
  CHECK(b.weights.of(Module::routed_experts) / 1e9 == Approx(386.5 / 8).margin(0.5));
}

TEST_CASE_METHOD(Fixture, "Maverick BF16 does not fit on 8xH100 but does on 8xH200") {
  const auto h100 = memory_breakdown(request(maverick, "bf16", "h100-sxm", {8, 1, 1, 1}));
  CHECK_FALSE(h100.fits);
  CHECK(h100.max_concurrency == 0);
  CHECK(h100.weights.total / 1e9 == Approx(801.4 / 8).margin(0.5));
  const auto h200 = memory_breakdown(request(maverick, "bf16", "h200-sxm", {8, 1, 1, 1}));
  CHECK(h200.fits);
}

TEST_CASE_METHOD(Fixture, "EP splits experts, TP splits the rest, KV heads never drop below one per GPU") {
  const auto tp8 = memory_breakdown(request(maverick, "bf16", "h200-sxm", {8, 1, 1, 1}));
  const auto ep8 = memory_breakdown(request(maverick, "bf16", "h200-sxm", {8, 8, 1, 1}));
  CHECK(ep8.weights.of(Module::routed_experts) == Approx(tp8.weights.of(Module::routed_experts)));
  CHECK(ep8.weights.of(Module::attention) == Approx(tp8.weights.of(Module::attention)));
  // Attention DP: attention replicated over dp=8 (tp=1), experts still spread over 8 GPUs.
  const auto dep8 = memory_breakdown(request(maverick, "bf16", "h200-sxm", {1, 8, 1, 8}));
  CHECK(dep8.weights.of(Module::attention) == Approx(8 * tp8.weights.of(Module::attention)));
  CHECK(dep8.weights.of(Module::routed_experts) == Approx(tp8.weights.of(Module::routed_experts)));
  // 8 KV heads over tp=8: one each; Llama 3.1 405B (8 KV heads) at tp=16 keeps one head per GPU, not half.
  CHECK(tp8.kv_heads_per_gpu == 1);
  const auto l405 = test::load("llama3.1-405b");
  auto q = request(l405, "fp8", "h100-sxm", {16, 1, 1, 1});
  q.context_tokens = 1000;
  const auto b = memory_breakdown(q);
  CHECK(b.kv_heads_per_gpu == 1);
  CHECK(b.kv_bytes_per_sequence == Approx(126.0 * 2 * 1 * 128 * 2 * 1000));
}

TEST_CASE_METHOD(Fixture, "pipeline stages hold their layers, the first holds the embedding") {
  const auto pp1 = memory_breakdown(request(maverick, "bf16", "h200-sxm", {4, 1, 1, 1}));
  const auto pp2 = memory_breakdown(request(maverick, "bf16", "h200-sxm", {4, 1, 2, 1}));
  CHECK(pp2.weights.total < pp1.weights.total * 0.51);
  CHECK(pp2.weights.total > pp1.weights.total * 0.49);
}

TEST_CASE_METHOD(Fixture, "concurrency uses the KV cache, max concurrency fills the free memory") {
  auto q = request(maverick, "fp8", "h100-sxm", {8, 1, 1, 1});
  q.context_tokens = 131072;
  const auto one = memory_breakdown(q);
  // One sequence at 128k: 7,650,410,496 B over 8 GPUs holding one KV head each.
  CHECK(one.kv_bytes_per_sequence == Approx(7'650'410'496.0 / 8));
  q.concurrency = one.max_concurrency;
  CHECK(memory_breakdown(q).fits);
  q.concurrency = one.max_concurrency + 1;
  CHECK_FALSE(memory_breakdown(q).fits);
}

TEST_CASE_METHOD(Fixture, "impossible layouts name the constraint") {
  CHECK_THROWS_WITH(memory_breakdown(request(maverick, "bf16", "h200-sxm", {3, 1, 1, 1})), Catch::Contains("40 attention heads"));
  CHECK_THROWS_WITH(memory_breakdown(request(maverick, "bf16", "h200-sxm", {8, 3, 1, 1})), Catch::Contains("128 experts"));
  CHECK_THROWS_WITH(memory_breakdown(request(maverick, "bf16", "h200-sxm", {8, 1, 5, 1})), Catch::Contains("48 layers"));
  CHECK_THROWS_WITH(memory_breakdown(request(maverick, "bf16", "h200-sxm", {2, 8, 1, 1})), Catch::Contains("must divide tp*dp"));
  const auto dense = test::load("llama3.1-70b");
  CHECK_THROWS_WITH(memory_breakdown(request(dense, "bf16", "h200-sxm", {4, 1, 1, 2})), Catch::Contains("dense"));
  CHECK_THROWS_WITH(memory_breakdown(request(dense, "bf16", "h200-sxm", {4, 2, 1, 1})), Catch::Contains("needs an MoE model"));
}

TEST_CASE_METHOD(Fixture, "context above the model's limit and non-positive numbers are refused") {
  const auto mixtral = test::load("mixtral-8x7b");
  auto q = request(mixtral, "bf16", "h100-sxm", {2, 1, 1, 1});
  q.context_tokens = 40000;
  CHECK_THROWS_WITH(memory_breakdown(q), Catch::Contains("32,768"));
  q.context_tokens = 1000;
  q.concurrency = 0;
  CHECK_THROWS_AS(memory_breakdown(q), InputError);
}

TEST_CASE_METHOD(Fixture, "host mode: gpt-oss-120b in MXFP4 needs ~65 GB of RAM, no GPU overhead") {
  const auto m = test::load("gpt-oss-120b");
  auto q = request(m, "auto", "h100-sxm", {1, 1, 1, 1});
  q.host_mode = true;
  q.capacity_bytes = 128e9;
  const auto b = memory_breakdown(q);
  CHECK(b.overhead_bytes == 0);
  CHECK(b.usable_bytes == Approx(128e9));
  // Published checkpoint is ~65 GB (experts in MXFP4, everything else BF16).
  CHECK(b.weights.total / 1e9 == Approx(64.8).margin(1.5));
  CHECK(b.fits);
}
