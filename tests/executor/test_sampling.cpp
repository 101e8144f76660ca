// Token sampling (executor::sample) and whole runs (executor::run_model): greedy is the argmax, seeded sampling is
// reproducible and follows the softmax at the given temperature, top-p keeps only the nucleus, and a run's sampled
// tokens do not depend on how its ranks are laid out (one generator per sequence).
#include <catch2/catch.hpp>

#include <array>
#include <cmath>

#include "executor/run.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

TEST_CASE("Greedy sampling takes the largest logit, temperature sampling follows the softmax") {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f - static_cast<float>(std::log(3.0))};
  std::uint64_t rng = 7;
  CHECK(executor::sample(logits.data(), 4, 0, 1, rng) == 1);
  CHECK(rng == 7);  // greedy draws nothing
  // p(1) / p(3) = 3 at temperature 1; p(0), p(2) are small (0.13, 0.03 of the mass).
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 4000; ++i) ++counts[static_cast<std::size_t>(executor::sample(logits.data(), 4, 1, 1, rng))];
  const double z = std::exp(0.5) + std::exp(2.0) + std::exp(-1.0) + std::exp(2.0) / 3;
  CHECK(counts[1] / 4000.0 == Approx(std::exp(2.0) / z).margin(0.03));
  CHECK(counts[3] / 4000.0 == Approx(std::exp(2.0) / 3 / z).margin(0.03));
  CHECK(counts[2] / 4000.0 == Approx(std::exp(-1.0) / z).margin(0.02));
  // top-p 0.5: token 1 alone holds 0.6 of the mass, so only it is kept.
  for (int i = 0; i < 200; ++i) CHECK(executor::sample(logits.data(), 4, 1, 0.5f, rng) == 1);
  // The same seed gives the same stream.
  std::uint64_t a = 42, b = 42;
  for (int i = 0; i < 50; ++i) CHECK(executor::sample(logits.data(), 4, 2, 0.95f, a) == executor::sample(logits.data(), 4, 2, 0.95f, b));
}

TEST_CASE("A sampled run gives the same tokens on one rank, TP=2, EP=2 (data-parallel attention), TP=2 x EP=2 and TP=2 x DP=2") {
  executor::RunRequest q;
  q.weights_dir = test::fixtures() / "oracle" / "qwen3_moe";
  q.name = "qwen3_moe";
  q.threads = 1;
  q.batch = 3;
  q.prompt_tokens = 6;
  q.gen_tokens = 5;
  q.temperature = 0.8f;
  q.top_p = 0.9f;
  q.seed = 11;
  const auto one = executor::run_model(q);
  REQUIRE(one.tokens.size() == 3);
  for (const auto& t : one.tokens) CHECK(t.size() == 5);
  CHECK(one.routing.size() == 4);  // four MoE layers
  CHECK(one.routing[0].size() == 3 * (6 + 4) * 2);  // every prefill and decode token, top-2
  // {tp, ep, dp}; dp = 0: the default (ep when tp = 1). Three sequences over two replicas split 1 + 2.
  for (auto [tp, ep, dp] : {std::array{2, 1, 0}, std::array{1, 2, 0}, std::array{2, 2, 0}, std::array{2, 4, 2}, std::array{2, 2, 2}}) {
    INFO("tp=" << tp << " ep=" << ep << " dp=" << dp);
    q.layout = model::ParallelLayout{.tp = tp, .ep = ep, .pp = 1, .dp = dp};
    const auto ranked = executor::run_model(q);
    CHECK(ranked.tokens == one.tokens);
    CHECK(ranked.routing.size() == one.routing.size());
    CHECK(ranked.routing[1].size() == one.routing[1].size());
    CHECK(ranked.ops.calls.count(executor::data_parallel(q) > 1 ? "moe.dispatch" : "moe.all_reduce") == 1);
    CHECK(ranked.ops.calls.count("lm_head.all_gather") == (tp > 1 ? 1u : 0u));
  }
  q.seed = 12;
  q.layout = model::ParallelLayout{.tp = 1, .ep = 1, .pp = 1, .dp = 0};
  CHECK(executor::run_model(q).tokens != one.tokens);  // the seed matters
}
