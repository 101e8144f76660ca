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

TEST_CASE("Chunked and sliding-window layers keep only the keys later queries see, with a whole prefill's logits") {
  // Llama 4 fixture: chunk 8 on three of four layers; Mixtral: sliding window 6 on all three. The prompt goes in as
  // 3 prefilled tokens and 17 decode steps (crossing chunk boundaries at 8 and 16) and, in a second session, as one
  // prefill whose cache holds every key while it runs; each position's logits must agree (they would not if a
  // trimmed cache were read at the wrong positions).
  for (const char* name : {"llama4_qknorm", "mixtral"}) {
    INFO(name);
    const auto dir = test::fixtures() / "oracle" / name;
    const auto prompt = parse_json_file(dir / "expected.json").at("prompt").get<std::vector<std::int32_t>>();
    REQUIRE(prompt.size() == 20);
    const auto model = executor::Model::load(dir);
    const auto& layers = model->config().layers;
    const std::int64_t V = model->config().vocab;
    executor::Session whole(model, kernels::default_cpu_context(), 1);
    const auto want = whole.prefill({prompt}, true);

    executor::Session stepped(model, kernels::default_cpu_context(), 1);
    std::vector<float> got = stepped.prefill({{prompt.begin(), prompt.begin() + 3}});
    double max_diff = 0;
    int trimmed_layers = 0;
    for (std::size_t t = 2; t < prompt.size(); ++t) {
      if (t > 2) got = stepped.decode({prompt[t]});
      for (std::int64_t j = 0; j < V; ++j)
        max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[static_cast<std::size_t>(j)]) -
                                                want[t * static_cast<std::size_t>(V) + static_cast<std::size_t>(j)]));
      const auto context = static_cast<std::int64_t>(t + 1);
      for (std::size_t li = 0; li < layers.size(); ++li) {
        INFO("layer " << li << ", context " << context);
        const std::int64_t rows = stepped.cached_rows(li, 0), window = layers[li].attention_window_tokens;
        switch (layers[li].attention) {
          case model::AttentionKind::chunked: CHECK(rows == context % window); break;
          case model::AttentionKind::sliding:
            CHECK(rows >= std::min(context, window - 1));
            CHECK(rows <= 2 * window);
            break;
          default: CHECK(rows == context);
        }
        if (context == 20 && rows < context) ++trimmed_layers;
      }
    }
    CHECK(max_diff < 1e-4);
    CHECK(trimmed_layers == 3);
    std::int64_t untrimmed_bytes = 0;  // K and V of 20 positions in every layer
    for (const auto& l : model->layers) untrimmed_bytes += 2 * 20 * l.k.rows * static_cast<std::int64_t>(sizeof(float));
    CHECK(stepped.kv_cache_bytes() < untrimmed_bytes);
    CHECK(whole.kv_cache_bytes() == stepped.kv_cache_bytes());  // the whole prefill trimmed its cache too

    // A synthetic context leaves the cache a prefill of that length would.
    executor::Session filled(model, kernels::default_cpu_context(), 2);
    filled.fill_cache(21, 4, 7);
    for (std::size_t li = 0; li < layers.size(); ++li) {
      const std::int64_t window = layers[li].attention_window_tokens;
      const std::int64_t expect = layers[li].attention == model::AttentionKind::chunked   ? 21 % window
                                  : layers[li].attention == model::AttentionKind::sliding ? window - 1
                                                                                          : 21;
      CHECK(filled.cached_rows(li, 1) == expect);
    }
  }
}
