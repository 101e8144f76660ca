// The forward pass against Hugging Face transformers (tests/fixtures/oracle, made by tools/make_oracle_fixtures.py):
// logits at every prompt position within 1e-4 (measured 4-8e-6; fp32 activations, logits of magnitude ~1-10; transformers ran in fp32
// from the same BF16 weights) and the greedy continuation token for token.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include "common/files.hpp"
#include "executor/forward.hpp"
#include "model/op_graph.hpp"
#include "model/precision.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

namespace {
struct OracleResult {
  double max_abs_diff = 0;
  std::vector<std::int32_t> greedy, expected_greedy;
};

OracleResult run_case(const std::string& name, kernels::CpuContext ctx) {
  const auto dir = test::fixtures() / "oracle" / name;
  const auto expected = parse_json_file(dir / "expected.json");
  const auto model = executor::Model::load(dir);
  executor::Session s(model, ctx, 1);
  std::vector<std::int32_t> prompt = expected.at("prompt").get<std::vector<std::int32_t>>();
  const auto logits = s.prefill({prompt}, true);
  const std::int64_t V = model->config().vocab;
  OracleResult r;
  const auto& want = expected.at("logits");
  REQUIRE(want.size() == prompt.size());
  for (std::size_t t = 0; t < prompt.size(); ++t)
    for (std::int64_t j = 0; j < V; ++j)
      r.max_abs_diff = std::max(r.max_abs_diff, std::fabs(static_cast<double>(logits[t * static_cast<std::size_t>(V) + static_cast<std::size_t>(j)]) -
                                                          want[t][static_cast<std::size_t>(j)].get<double>()));
  r.expected_greedy = expected.at("greedy").get<std::vector<std::int32_t>>();
  std::uint64_t rng = 0;
  std::int32_t next = executor::sample(logits.data() + (prompt.size() - 1) * static_cast<std::size_t>(V), V, 0, 1, rng);
  for (std::size_t i = 0; i < r.expected_greedy.size(); ++i) {
    r.greedy.push_back(next);
    const auto step = s.decode({next});
    next = executor::sample(step.data(), V, 0, 1, rng);
  }
  return r;
}
}  // namespace

TEST_CASE("Llama 4 (qk-norm, chunked + NoPE layers, temperature tuning) matches transformers") {
  for (const char* name : {"llama4_qknorm", "llama4_noqknorm", "llama4_fp8"}) {
    INFO(name);
    const auto r = run_case(name, kernels::default_cpu_context());
    CHECK(r.max_abs_diff < 1e-4);
    CHECK(r.greedy == r.expected_greedy);
  }
}

TEST_CASE("Qwen3-MoE (softmax top-2, weighted q/k norm, half-split RoPE) matches transformers") {
  const auto r = run_case("qwen3_moe", kernels::default_cpu_context());
  CHECK(r.max_abs_diff < 1e-4);
  CHECK(r.greedy == r.expected_greedy);
}

TEST_CASE("Mixtral (softmax top-2 renormalised, no shared expert, sliding window 6, head_dim from hidden) matches transformers") {
  const auto r = run_case("mixtral", kernels::default_cpu_context());
  CHECK(r.max_abs_diff < 1e-4);
  CHECK(r.greedy == r.expected_greedy);
}

TEST_CASE("The executor times its ops under names the simulator's op graph uses") {
  const auto dir = test::fixtures() / "oracle" / "llama4_qknorm";
  const auto model = executor::Model::load(dir);
  executor::Session s(model, kernels::default_cpu_context(), 2);
  s.prefill({{1, 2, 3, 4, 5}, {6, 7, 8}});
  s.decode({9, 10});
  model::OpGraphRequest req;
  req.model = &model->config();
  req.precision = model::resolve_precision("bf16", model->config(), test::precisions());
  const auto graph = model::build_op_graph(req);
  std::set<std::string> names;
  for (const auto& op : graph.ops) names.insert(op.name);
  for (const auto& [name, seconds] : s.op_times().seconds) {
    INFO(name);
    CHECK(names.count(name) == 1);
    CHECK(seconds >= 0);
  }
  CHECK(s.op_times().calls.at("moe.router") == 2 * 2);  // two MoE layers, prefill + decode
  CHECK(s.routing().size() == 2);
  CHECK(s.routing()[0].size() == 8 + 2);                 // 8 prompt tokens + 2 decoded, top-1
}
