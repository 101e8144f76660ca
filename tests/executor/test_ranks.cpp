// In-process ranks: TP=2 (heads, MLP columns, experts' intermediate split) and TP=2 with EP=2 (experts split by id)
// give the logits of one rank within 1e-4 and the same greedy tokens, on the transformers oracle models.
#include <catch2/catch.hpp>

#include <cmath>
#include <thread>

#include "common/error.hpp"
#include "common/files.hpp"
#include "executor/comm.hpp"
#include "executor/forward.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

namespace {
struct Generation {
  std::vector<float> prompt_logits;
  std::vector<std::int32_t> tokens;
};

Generation generate(const std::shared_ptr<const executor::Model>& model, executor::Communicator* comm,
                    const std::vector<std::int32_t>& prompt, int steps) {
  executor::Session s(model, kernels::CpuContext{kernels::best_cpu_path(), nullptr}, 1, comm);
  Generation g;
  g.prompt_logits = s.prefill({prompt}, true);
  const std::int64_t V = model->config().vocab;
  std::uint64_t rng = 0;
  auto next = executor::sample(g.prompt_logits.data() + (prompt.size() - 1) * static_cast<std::size_t>(V), V, 0, 1, rng);
  for (int i = 0; i < steps; ++i) {
    g.tokens.push_back(next);
    const auto l = s.decode({next});
    next = executor::sample(l.data(), V, 0, 1, rng);
  }
  return g;
}

// Runs `tp` ranks on threads; returns rank 0's generation (every rank computes the same logits).
Generation generate_ranked(const executor::Model& full, int tp, int ep, const std::vector<std::int32_t>& prompt, int steps) {
  auto comms = executor::make_in_process_group(tp);
  std::vector<Generation> out(static_cast<std::size_t>(tp));
  std::vector<std::thread> threads;
  for (int r = 0; r < tp; ++r)
    threads.emplace_back([&, r] { out[static_cast<std::size_t>(r)] = generate(full.sharded(tp, ep, r), comms[static_cast<std::size_t>(r)].get(), prompt, steps); });
  for (auto& t : threads) t.join();
  for (int r = 1; r < tp; ++r) CHECK(out[static_cast<std::size_t>(r)].tokens == out[0].tokens);
  return out[0];
}
}  // namespace

TEST_CASE("TP=2 and TP=2 x EP=2 ranks equal one rank (Llama 4 and Qwen3-MoE oracle models)") {
  for (const char* name : {"llama4_qknorm", "qwen3_moe", "llama4_fp8"}) {
    const auto dir = test::fixtures() / "oracle" / name;
    const auto prompt = parse_json_file(dir / "expected.json").at("prompt").get<std::vector<std::int32_t>>();
    const auto model = executor::Model::load(dir);
    const auto one = generate(model, nullptr, prompt, 6);
    for (int ep : {1, 2}) {
      INFO(name << " tp=2 ep=" << ep);
      const auto ranked = generate_ranked(*model, 2, ep, prompt, 6);
      REQUIRE(ranked.prompt_logits.size() == one.prompt_logits.size());
      double max_diff = 0;
      for (std::size_t i = 0; i < one.prompt_logits.size(); ++i)
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(ranked.prompt_logits[i] - one.prompt_logits[i])));
      CHECK(max_diff < 1e-4);
      CHECK(ranked.tokens == one.tokens);
    }
  }
}

TEST_CASE("Layouts the sizes do not allow are refused") {
  const auto model = executor::Model::load(test::fixtures() / "oracle" / "llama4_qknorm");
  CHECK_THROWS_AS(model->sharded(3, 1, 0), InputError);   // 4 heads by 3
  CHECK_THROWS_AS(model->sharded(2, 4, 0), InputError);   // ep must divide tp
  CHECK_THROWS_AS(model->sharded(4, 1, 0), InputError);   // 2 KV heads by 4
}
