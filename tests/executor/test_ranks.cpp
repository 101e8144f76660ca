// In-process ranks laid out as model/shard.hpp describes (tp * dp ranks; heads, MLP columns and vocabulary split tp
// ways inside an attention replica; experts split ep ways over all ranks, each expert's intermediate tp * dp / ep
// ways) give the logits of one rank within 1e-4 (fp32 sums in another order; measured below 1e-5) and the same
// greedy tokens, on the transformers oracle models and on seeded random checkpoints whose vocabulary tp does not
// divide, tied and untied.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <set>
#include <thread>

#include "common/error.hpp"
#include "common/files.hpp"
#include "executor/checkpoint_random.hpp"
#include "executor/comm.hpp"
#include "executor/forward.hpp"
#include "executor/run.hpp"
#include "model/op_graph.hpp"
#include "tests/executor/executor_test_util.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

namespace {

using Prompts = std::vector<std::vector<std::int32_t>>;

// A layout with its degrees in the order the tests list them.
struct Layout {
  int tp = 1, ep = 1, dp = 1, pp = 1;
  model::ParallelLayout parallel() const { return model::ParallelLayout{.tp = tp, .ep = ep, .pp = pp, .dp = dp}; }
};
model::ParallelLayout lay(int tp, int ep, int dp, int pp) { return Layout{tp, ep, dp, pp}.parallel(); }

struct Generation {
  std::vector<float> prompt_logits;                // [prompt tokens of every sequence, vocab], sequences in order
  std::vector<std::vector<std::int32_t>> tokens;   // greedy tokens per sequence
  executor::OpTimes ops;
};

Generation generate(const std::shared_ptr<const executor::Model>& model, executor::Communicator* comm, const Prompts& prompts,
                    int steps, executor::Communicator* pipe = nullptr) {
  executor::Session s(model, kernels::CpuContext{kernels::best_cpu_path(), nullptr}, static_cast<std::int64_t>(prompts.size()), comm,
                      pipe);
  Generation g;
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
  g.ops = s.op_times();
  return g;
}

// Runs the pp * tp * dp ranks of `layout` on threads (stage-major), replica d of every stage serving the prompts
// [n * d / dp, n * (d + 1) / dp); checks that the tp ranks of each replica, and the ranks at the same position in
// every stage, agree exactly and returns stage 0's replicas' generations joined in sequence order (ops: rank 0's).
// `per_rank`, when given, receives every rank's generation.
Generation generate_ranked(const executor::Model& full, Layout layout, const Prompts& prompts, int steps,
                           std::vector<Generation>* per_rank = nullptr) {
  const int stage_ranks = layout.tp * layout.dp, ranks = layout.pp * stage_ranks;
  auto comms = executor::make_in_process_group(ranks);
  std::vector<Generation> out(static_cast<std::size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      const std::size_t d = static_cast<std::size_t>(r % stage_ranks / layout.tp), dp = static_cast<std::size_t>(layout.dp);
      const Prompts mine(prompts.begin() + static_cast<std::ptrdiff_t>(prompts.size() * d / dp),
                         prompts.begin() + static_cast<std::ptrdiff_t>(prompts.size() * (d + 1) / dp));
      executor::Communicator& world = *comms[static_cast<std::size_t>(r)];
      out[static_cast<std::size_t>(r)] =
          generate(full.sharded(layout.parallel(), r), executor::stage_group(world, stage_ranks), mine, steps,
                   layout.pp > 1 ? &world : nullptr);
    });
  for (auto& t : threads) t.join();
  for (int r = stage_ranks; r < ranks; ++r) {  // every stage returns the last stage's logits
    CHECK(out[static_cast<std::size_t>(r)].prompt_logits == out[static_cast<std::size_t>(r % stage_ranks)].prompt_logits);
    CHECK(out[static_cast<std::size_t>(r)].tokens == out[static_cast<std::size_t>(r % stage_ranks)].tokens);
  }
  Generation joined;
  joined.ops = out[0].ops;
  for (int r = 0; r < stage_ranks; ++r) {
    const Generation& g = out[static_cast<std::size_t>(r)];
    if (r % layout.tp != 0) {  // the tp ranks of a replica compute bit-identical logits
      const Generation& first = out[static_cast<std::size_t>(r - r % layout.tp)];
      CHECK(g.prompt_logits == first.prompt_logits);
      CHECK(g.tokens == first.tokens);
      continue;
    }
    joined.prompt_logits.insert(joined.prompt_logits.end(), g.prompt_logits.begin(), g.prompt_logits.end());
    joined.tokens.insert(joined.tokens.end(), g.tokens.begin(), g.tokens.end());
  }
  if (per_rank) *per_rank = std::move(out);
  return joined;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, static_cast<double>(std::fabs(a[i] - b[i])));
  return m;
}

// The oracle prompt and another one, of another length, from the same ids.
Prompts two_prompts(const std::filesystem::path& dir) {
  const auto prompt = parse_json_file(dir / "expected.json").at("prompt").get<std::vector<std::int32_t>>();
  return {prompt, std::vector<std::int32_t>(prompt.rbegin() + 7, prompt.rend())};
}

// `layout`'s logits and greedy tokens against one rank's.
void check_layout(const executor::Model& model, const Generation& one, Layout layout, const Prompts& prompts, int steps) {
  INFO("tp=" << layout.tp << " ep=" << layout.ep << " dp=" << layout.dp << " pp=" << layout.pp << " sequences="
              << prompts.size());
  const Generation ranked = generate_ranked(model, layout, prompts, steps);
  CHECK(max_abs_diff(ranked.prompt_logits, one.prompt_logits) < 1e-4);
  CHECK(ranked.tokens == one.tokens);
}
}  // namespace

TEST_CASE("TP=2, TP=2 x EP=2 and TP=4 x EP=2 (KV heads replicated) equal one rank (Llama 4, Qwen3-MoE and Mixtral oracle models)") {
  for (const char* name : {"llama4_qknorm", "qwen3_moe", "llama4_fp8", "mixtral"}) {
    INFO(name);
    const auto dir = test::fixtures() / "oracle" / name;
    const Prompts prompt = {two_prompts(dir).front()};
    const auto model = executor::Model::load(dir);
    const auto one = generate(model, nullptr, prompt, 6);
    // tp = 4 > 2 KV heads: ranks 0-1 hold KV head 0, ranks 2-3 KV head 1.
    for (const Layout layout : {Layout{2, 1, 1}, Layout{2, 2, 1}, Layout{4, 2, 1}}) check_layout(*model, one, layout, prompt, 6);
  }
}

TEST_CASE("Attention data parallel, alone and with TP, equals one rank (all-to-all dispatch to experts or their pieces)") {
  for (const char* name : {"llama4_qknorm", "qwen3_moe", "llama4_fp8", "mixtral"}) {
    INFO(name);
    const auto dir = test::fixtures() / "oracle" / name;
    const Prompts two = two_prompts(dir);
    const Prompts three = {two[0], two[1], std::vector<std::int32_t>(two[0].begin() + 3, two[0].end())};
    const auto model = executor::Model::load(dir);
    // Two and three sequences over two replicas, and one sequence (replica 1 idle but still in every all-to-all).
    for (const Prompts& prompts : {two, three, Prompts{two[0]}}) {
      const auto one = generate(model, nullptr, prompts, 5);
      // tp x dp x ep: experts whole (moe_tp 1) or split in 2 or 4 pieces (moe_tp = tp * dp / ep).
      for (const Layout layout : {Layout{1, 2, 2}, Layout{2, 4, 2}, Layout{2, 2, 2}, Layout{2, 1, 2}, Layout{1, 2, 4}})
        check_layout(*model, one, layout, prompts, 5);
    }
  }
}

TEST_CASE("Pipeline stages, alone and with TP, DP and EP, equal one rank (each stage holds only its layers)") {
  for (const char* name : {"llama4_qknorm", "qwen3_moe", "llama4_fp8", "mixtral"}) {
    INFO(name);
    const auto dir = test::fixtures() / "oracle" / name;
    const Prompts two = two_prompts(dir);
    const auto model = executor::Model::load(dir);
    const int layers = static_cast<int>(model->config().num_layers);  // 4, or 3 (mixtral)
    const auto one = generate(model, nullptr, two, 5);
    // every layer its own stage; 2 stages (where they divide the layers) alone, with TP x EP and with DP x EP
    std::vector<Layout> layouts = {Layout{1, 1, 1, layers}};
    if (layers % 2 == 0)
      for (const Layout l : {Layout{1, 1, 1, 2}, Layout{2, 2, 1, 2}, Layout{1, 2, 2, 2}}) layouts.push_back(l);
    for (const Layout& layout : layouts) check_layout(*model, one, layout, two, 5);
    // stages alone run the same kernels in the same order as one rank: the same logits to the bit
    CHECK(generate_ranked(*model, Layout{1, 1, 1, layers}, two, 2).prompt_logits == one.prompt_logits);
    // a stage holds its layers' weights only, the embedding on the first stage and the lm_head on the last
    const auto first = model->sharded(lay(1, 1, 1, layers), 0), last = model->sharded(lay(1, 1, 1, layers), layers - 1);
    CHECK(first->layers.size() == 1);
    CHECK(first->lm_head.rows == 0);
    CHECK(first->embed.rows == model->config().vocab);
    CHECK(last->embed.rows == 0);
    CHECK(last->lm_head.rows == model->config().vocab);
    CHECK(last->sharding().first_layer == layers - 1);
    CHECK(first->weight_bytes() < model->weight_bytes());
  }
}

TEST_CASE("The vocabulary splits tp ways, unevenly when tp does not divide it, tied embeddings split with it") {
  // A seeded random Qwen3-MoE of 203 tokens: ranks of TP=4 hold 50, 51, 51 and 51 rows.
  nlohmann::json config = parse_json_file(test::fixtures() / "oracle" / "qwen3_moe" / "config.json");
  config["vocab_size"] = 203;
  for (const bool tied : {false, true}) {
    INFO("tie_word_embeddings=" << tied);
    config["tie_word_embeddings"] = tied;
    test::TempDir dir(tied ? "vocab-tied" : "vocab-untied");
    executor::RandomWeightsOptions options;
    options.seed = 5;
    executor::write_random_checkpoint(config, "qwen3_moe_v203", dir.path(), options);
    const auto model = executor::Model::load(dir.path());
    REQUIRE(model->config().tie_word_embeddings == tied);
    for (int r = 0; r < 4; ++r) {
      const auto shard = model->sharded(lay(4, 1, 1, 1), r);
      const auto [v0, v1] = executor::vocab_rows(203, 4, r);
      CHECK(v1 - v0 == (r == 0 ? 50 : 51));
      CHECK(shard->sharding().vocab_begin == v0);
      CHECK(shard->embed.rows == v1 - v0);
      CHECK(shard->lm_head.rows == v1 - v0);
      CHECK(shard->lm_head.data.size() == model->lm_head.data.size() / 203 * static_cast<std::size_t>(v1 - v0));
    }
    const Prompts prompts = {{5, 17, 202, 101, 0, 150, 51, 50, 99, 152}, {202, 3, 151, 100}};
    const auto one = generate(model, nullptr, prompts, 6);
    for (const Layout layout : {Layout{2, 1, 1}, Layout{4, 1, 1}, Layout{4, 2, 1}, Layout{2, 4, 2}})
      check_layout(*model, one, layout, prompts, 6);
  }
}

TEST_CASE("Ranked runs time their ops under the names of the simulator's op graph for the same layout") {
  const auto dir = test::fixtures() / "oracle" / "llama4_qknorm";
  const auto model = executor::Model::load(dir);
  for (const Layout layout : {Layout{2, 2, 1}, Layout{2, 4, 2}, Layout{2, 2, 2}, Layout{2, 2, 1, 2}}) {
    INFO("tp=" << layout.tp << " ep=" << layout.ep << " dp=" << layout.dp << " pp=" << layout.pp);
    model::OpGraphRequest req;
    req.model = &model->config();
    req.precision = model::resolve_precision("bf16", model->config(), test::precisions());
    req.layout = layout.parallel();
    std::set<std::string> names;  // the ops of every stage's graph
    for (int stage = 0; stage < layout.pp; ++stage) {
      req.stage = stage;
      for (const auto& op : model::build_op_graph(req).ops) names.insert(op.name);
    }
    std::vector<Generation> ranks;
    generate_ranked(*model, layout, two_prompts(dir), 2, &ranks);
    for (std::size_t r = 0; r < ranks.size(); ++r) {
      const Generation& g = ranks[r];
      const int stage = static_cast<int>(r) / (layout.tp * layout.dp);
      const bool first = stage == 0, last = stage == layout.pp - 1;
      for (const auto& [name, seconds] : g.ops.seconds) {
        INFO(name);
        CHECK(names.count(name) == 1);
      }
      for (const char* name : {"attn.all_reduce", "moe.all_reduce"}) {
        INFO(name);
        CHECK(g.ops.calls.count(name) == 1);
      }
      CHECK(g.ops.calls.count("embed.all_reduce") == (first ? 1u : 0u));
      CHECK(g.ops.calls.count("lm_head.all_gather") == (last ? 1u : 0u));
      CHECK(g.ops.calls.count("pp.send") == (last ? 0u : 1u));
      CHECK(g.ops.calls.count("moe.dispatch") == (layout.dp > 1 ? 1u : 0u));
    }
  }
}

TEST_CASE("Layouts the sizes do not allow are refused") {
  const auto model = executor::Model::load(test::fixtures() / "oracle" / "llama4_qknorm");
  CHECK_THROWS_AS(model->sharded(lay(3, 1, 1, 1), 0), InputError);  // 4 heads by 3
  CHECK_THROWS_AS(model->sharded(lay(2, 4, 1, 1), 0), InputError);  // ep must divide tp * dp = 2
  CHECK_THROWS_AS(model->sharded(lay(8, 1, 1, 1), 0), InputError);  // 4 query heads by 8
  CHECK_THROWS_AS(model->sharded(lay(1, 4, 2, 1), 0), InputError);  // ep = 4 does not divide tp * dp = 2
  CHECK_THROWS_AS(model->sharded(lay(1, 3, 3, 1), 0), InputError);  // 4 experts by 3
  CHECK_THROWS_AS(model->sharded(lay(2, 2, 2, 1), 4), InputError);  // rank 4 of 4
  CHECK(test::error_of([&] { model->sharded(lay(2, 4, 1, 1), 0); }).find("must divide tp*dp") != std::string::npos);
  CHECK_THROWS_AS(model->sharded(lay(1, 1, 1, 3), 0), InputError);  // 4 layers by 3 stages
  CHECK_THROWS_AS(model->sharded(lay(1, 1, 1, 2), 2), InputError);  // rank 2 of pp 2 x 1
}

TEST_CASE("In-process send and recv deliver messages between two ranks in order, and refuse a wrong length") {
  auto comms = executor::make_in_process_group(3);
  std::vector<float> first(2), second(3);
  std::thread sender([&] {
    const float a[2] = {1, 2}, b[3] = {3, 4, 5};
    comms[2]->send(0, a, 2);
    comms[2]->send(0, b, 3);
  });
  comms[0]->recv(2, first.data(), 2);
  comms[0]->recv(2, second.data(), 3);
  sender.join();
  CHECK(first == std::vector<float>{1, 2});
  CHECK(second == std::vector<float>{3, 4, 5});
  const float c[1] = {6};
  comms[1]->send(0, c, 1);
  CHECK_THROWS_AS(comms[0]->recv(1, second.data(), 3), std::logic_error);
  CHECK_THROWS_AS(comms[0]->send(0, c, 1), std::logic_error);  // to itself
  CHECK_THROWS_AS(comms[0]->send(3, c, 1), std::logic_error);  // outside the group
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

TEST_CASE("Sub-groups of the in-process communicator reduce and gather among their own ranks only") {
  auto comms = executor::make_in_process_group(4);
  // Per rank: its sub-group rank and size, whether asking again gives the same communicator, the sum and the gather.
  struct Seen {
    int rank = -1, size = 0;
    bool same = false;
    std::vector<float> sum, gathered;
  };
  std::vector<Seen> seen(4);
  std::vector<std::thread> threads;
  for (int r = 0; r < 4; ++r)
    threads.emplace_back([&, r] {  // (Catch assertions stay on the main thread)
      Seen& s = seen[static_cast<std::size_t>(r)];
      executor::Communicator& world = *comms[static_cast<std::size_t>(r)];
      executor::Communicator& pair = world.sub_group(r / 2 * 2, 2);  // ranks {0, 1} and {2, 3}
      s.rank = pair.rank();
      s.size = pair.size();
      s.same = &world.sub_group(r / 2 * 2, 2) == &pair;
      s.sum = {static_cast<float>(r), 1.0f};
      pair.all_reduce_sum(s.sum.data(), 2);
      world.barrier();  // the whole group still synchronises all four
      const float mine = static_cast<float>(10 * r);
      s.gathered.resize(2);
      pair.all_gather(&mine, 1, s.gathered.data());
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 4; ++r) {
    const Seen& s = seen[static_cast<std::size_t>(r)];
    CHECK(s.rank == r % 2);
    CHECK(s.size == 2);
    CHECK(s.same);
    CHECK(s.sum == (r < 2 ? std::vector<float>{1, 2} : std::vector<float>{5, 2}));
    CHECK(s.gathered == (r < 2 ? std::vector<float>{0, 10} : std::vector<float>{20, 30}));
  }
  CHECK_THROWS_AS(comms[0]->sub_group(2, 2), std::logic_error);  // rank 0 is not in ranks {2, 3}
}

TEST_CASE("Aborting the in-process group releases the ranks waiting in it, and every later call throws") {
  auto comms = executor::make_in_process_group(4);
  // Ranks 1-3 wait: in an all-reduce rank 0 never joins, in a sub-group's barrier, and for a message never sent.
  std::vector<int> aborted(4, 0);
  auto waits = [&](int r, auto call) {
    return std::thread([&, r, call] {
      try {
        call(*comms[static_cast<std::size_t>(r)]);
      } catch (const executor::CommAborted&) {
        aborted[static_cast<std::size_t>(r)] = 1;
      }
    });
  };
  std::vector<std::thread> threads;
  threads.push_back(waits(1, [](executor::Communicator& c) {
    float x = 1;
    c.all_reduce_sum(&x, 1);
  }));
  threads.push_back(waits(2, [](executor::Communicator& c) { c.sub_group(2, 2).barrier(); }));
  threads.push_back(waits(3, [](executor::Communicator& c) {
    float x = 0;
    c.recv(0, &x, 1);
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let them reach their waits (a rank that has not
  comms[0]->abort();                                           // yet arrived throws on arrival: the same outcome)
  for (auto& t : threads) t.join();
  CHECK(aborted == std::vector<int>{0, 1, 1, 1});
  float x = 0;
  CHECK_THROWS_AS(comms[0]->all_reduce_sum(&x, 1), executor::CommAborted);
  CHECK_THROWS_AS(comms[0]->send(1, &x, 1), executor::CommAborted);
  CHECK_THROWS_AS(comms[1]->barrier(), executor::CommAborted);
  comms[2]->abort();  // again: harmless
}

TEST_CASE("A process per rank: rank 0 gathers every rank's results exactly, the others keep their own") {
  auto comms = executor::make_in_process_group(3);
  auto result_of = [](int r) {
    executor::RankResult o;
    o.prefill_s = 0.1 * (r + 1) + 1e-17;  // not a short decimal: must round-trip exactly
    o.decode_s = 1.0 / 3.0 + r;
    o.tokens = {{r, 7}, {static_cast<std::int32_t>(1000000 + r)}};
    o.ops.seconds = {{"moe_experts", 0.25 * r}, {"attention", 1e-9}};
    o.ops.calls = {{"moe_experts", 48 + r}, {"attention", 3}};
    o.routing =
        std::vector<std::vector<std::int32_t>>(static_cast<std::size_t>(r), std::vector<std::int32_t>{127, 0, r});
    o.kv_cache_bytes = (std::int64_t{1} << 40) + r;
    o.device = "cuda";
    o.backend = "cuda NVIDIA H200, device " + std::to_string(r) + " \"ünïcode\"";
    o.peak_rss_bytes = 123456789ull * static_cast<std::uint64_t>(r + 1);
    return o;
  };
  std::vector<std::vector<executor::RankResult>> got(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r)
    threads.emplace_back([&, r] {
      std::vector<executor::RankResult> outs(3);
      outs[static_cast<std::size_t>(r)] = result_of(r);
      got[static_cast<std::size_t>(r)] =
          executor::gather_at_rank0(*comms[static_cast<std::size_t>(r)], std::move(outs));
    });
  for (auto& t : threads) t.join();
  auto same = [](const executor::RankResult& a, const executor::RankResult& b) {
    return a.prefill_s == b.prefill_s && a.decode_s == b.decode_s && a.tokens == b.tokens &&
           a.ops.seconds == b.ops.seconds && a.ops.calls == b.ops.calls && a.routing == b.routing &&
           a.kv_cache_bytes == b.kv_cache_bytes && a.device == b.device && a.backend == b.backend &&
           a.peak_rss_bytes == b.peak_rss_bytes;
  };
  for (int r = 0; r < 3; ++r) CHECK(same(got[0][static_cast<std::size_t>(r)], result_of(r)));
  CHECK(same(got[1][1], result_of(1)));
  CHECK(got[1][0].tokens.empty());  // rank 1 does not receive the others'
  CHECK(got[2][0].tokens.empty());
}
