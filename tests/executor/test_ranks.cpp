// In-process ranks: TP=2 (heads, MLP columns, experts' intermediate split), TP=2 with EP=2 (experts split by id) and
// EP=2 alone (two attention replicas serving their own sequences, tokens sent to their experts' rank by all-to-all)
// give the logits of one rank within 1e-4 (fp32 sums in another order; measured ~4e-6) and the same greedy tokens, on
// the transformers oracle models.
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

TEST_CASE("TP=2, TP=2 x EP=2 and TP=4 x EP=2 (KV heads replicated) equal one rank (Llama 4, Qwen3-MoE and Mixtral oracle models)") {
  for (const char* name : {"llama4_qknorm", "qwen3_moe", "llama4_fp8", "mixtral"}) {
    const auto dir = test::fixtures() / "oracle" / name;
    const auto prompt = parse_json_file(dir / "expected.json").at("prompt").get<std::vector<std::int32_t>>();
    const auto model = executor::Model::load(dir);
    const auto one = generate(model, nullptr, prompt, 6);
    // tp = 4 > 2 KV heads: ranks 0-1 hold KV head 0, ranks 2-3 KV head 1.
    for (auto [tp, ep] : {std::pair{2, 1}, std::pair{2, 2}, std::pair{4, 2}}) {
      INFO(name << " tp=" << tp << " ep=" << ep);
      const auto ranked = generate_ranked(*model, tp, ep, prompt, 6);
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
  CHECK_THROWS_AS(model->sharded(8, 1, 0), InputError);   // 4 query heads by 8
  CHECK_THROWS_AS(model->sharded(2, 4, 0, 2), InputError);  // data parallel only with tp = 1
  CHECK_THROWS_AS(model->sharded(1, 3, 0, 3), InputError);  // 4 experts by 3
}

namespace {
struct BatchGeneration {
  std::vector<float> prompt_logits;                // every prompt position of every sequence, in sequence order
  std::vector<std::vector<std::int32_t>> tokens;   // greedy tokens per sequence
};

BatchGeneration generate_batch(const std::shared_ptr<const executor::Model>& model, executor::Communicator* comm,
                               const std::vector<std::vector<std::int32_t>>& prompts, int steps) {
  executor::Session s(model, kernels::CpuContext{kernels::best_cpu_path(), nullptr}, static_cast<std::int64_t>(prompts.size()), comm);
  BatchGeneration g;
  g.prompt_logits = s.prefill(prompts, true);
  const std::int64_t V = model->config().vocab;
  std::vector<std::int32_t> next;
  std::size_t row = 0;
  std::uint64_t rng = 0;
  for (const auto& p : prompts) {
    row += p.size();
    next.push_back(executor::sample(g.prompt_logits.data() + (row - 1) * static_cast<std::size_t>(V), V, 0, 1, rng));
  }
  g.tokens.resize(prompts.size());
  for (int i = 0; i < steps; ++i) {
    for (std::size_t b = 0; b < prompts.size(); ++b) g.tokens[b].push_back(next[b]);
    const auto l = s.decode(next);
    for (std::size_t b = 0; b < prompts.size(); ++b) next[b] = executor::sample(l.data() + b * static_cast<std::size_t>(V), V, 0, 1, rng);
  }
  return g;
}
}  // namespace

TEST_CASE("EP=2 with two attention replicas (all-to-all dispatch) equals one rank") {
  for (const char* name : {"llama4_qknorm", "qwen3_moe", "llama4_fp8", "mixtral"}) {
    const auto dir = test::fixtures() / "oracle" / name;
    const auto prompt = parse_json_file(dir / "expected.json").at("prompt").get<std::vector<std::int32_t>>();
    std::vector<std::int32_t> second(prompt.rbegin() + 7, prompt.rend());  // another prompt, of another length
    const auto model = executor::Model::load(dir);
    // Two sequences (one per replica) and one sequence (replica 1 idle but still in every all-to-all).
    for (const auto& prompts : {std::vector<std::vector<std::int32_t>>{prompt, second}, std::vector<std::vector<std::int32_t>>{prompt}}) {
      INFO(name << " ep=2 dp=2 sequences=" << prompts.size());
      const auto one = generate_batch(model, nullptr, prompts, 5);
      auto comms = executor::make_in_process_group(2);
      std::vector<BatchGeneration> out(2);
      std::vector<std::thread> threads;
      for (int r = 0; r < 2; ++r)
        threads.emplace_back([&, r] {
          const std::size_t b0 = prompts.size() * static_cast<std::size_t>(r) / 2, b1 = prompts.size() * static_cast<std::size_t>(r + 1) / 2;
          std::vector<std::vector<std::int32_t>> mine(prompts.begin() + static_cast<std::ptrdiff_t>(b0), prompts.begin() + static_cast<std::ptrdiff_t>(b1));
          out[static_cast<std::size_t>(r)] = generate_batch(model->sharded(1, 2, r, 2), comms[static_cast<std::size_t>(r)].get(), mine, 5);
        });
      for (auto& t : threads) t.join();
      BatchGeneration both = out[0];
      both.prompt_logits.insert(both.prompt_logits.end(), out[1].prompt_logits.begin(), out[1].prompt_logits.end());
      both.tokens.insert(both.tokens.end(), out[1].tokens.begin(), out[1].tokens.end());
      REQUIRE(both.prompt_logits.size() == one.prompt_logits.size());
      double max_diff = 0;
      for (std::size_t i = 0; i < one.prompt_logits.size(); ++i)
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(both.prompt_logits[i] - one.prompt_logits[i])));
      CHECK(max_diff < 1e-4);
      CHECK(both.tokens == one.tokens);
    }
  }
}

TEST_CASE("The in-process all-to-all delivers each rank's buffer for rank j to rank j") {
  auto comms = executor::make_in_process_group(3);
  std::vector<std::vector<std::vector<float>>> recv(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r)
    threads.emplace_back([&, r] {
      std::vector<std::vector<float>> send(3);
      for (int j = 0; j < 3; ++j) send[static_cast<std::size_t>(j)].assign(static_cast<std::size_t>(r + j), static_cast<float>(10 * r + j));
      recv[static_cast<std::size_t>(r)] = comms[static_cast<std::size_t>(r)]->all_to_all(send);
    });
  for (auto& t : threads) t.join();
  for (int j = 0; j < 3; ++j)
    for (int r = 0; r < 3; ++r) {
      const auto& got = recv[static_cast<std::size_t>(j)][static_cast<std::size_t>(r)];  // what rank j got from rank r
      CHECK(got.size() == static_cast<std::size_t>(r + j));
      CHECK(got == std::vector<float>(static_cast<std::size_t>(r + j), static_cast<float>(10 * r + j)));
    }
}
