// executor/run: a measured generation run (see run.hpp).
#include "executor/run.hpp"

#include <chrono>
#include <fstream>
#include <sstream>
#include <exception>
#include <thread>

#include "common/error.hpp"
#include "executor/checkpoint_random.hpp"
#include "kernels/thread_pool.hpp"

namespace moeplan::executor {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Peak resident set (VmHWM) from /proc/self/status; 0 where it is not available.
std::uint64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream s(line.substr(6));
      std::uint64_t kb = 0;
      s >> kb;
      return kb * 1024;
    }
  return 0;
}
}  // namespace

RunResult run_model(const RunRequest& r) {
  if (r.batch < 1 || r.gen_tokens < 0 || (r.prompt.empty() && r.prompt_tokens < 1))
    throw InputError("--batch and --prompt-tokens must be at least 1, --gen-tokens at least 0");
  RunResult res;
  res.model = r.name;
  const auto t_load = Clock::now();
  std::filesystem::path dir = r.weights_dir;
  if (r.random_seed) {
    dir = r.weights_out.empty() ? std::filesystem::temp_directory_path() / ("moeplan_random_" + std::to_string(*r.random_seed))
                                : r.weights_out;
    RandomWeightsOptions opt;
    opt.seed = *r.random_seed;
    write_random_checkpoint(r.config, r.name, dir, opt);
  }
  res.weights_dir = dir;
  const auto model = Model::load(dir);
  res.load_s = since(t_load);
  res.weight_bytes = model->weight_bytes();
  res.experts = model->config().num_experts;

  kernels::ThreadPool pool(r.threads);
  kernels::CpuContext ctx{kernels::best_cpu_path(), &pool};
  res.cpu_path = kernels::cpu_path_name(ctx.path);
  res.threads = pool.size();

  // Prompts: the given ids, else seeded ids below the vocabulary (splitmix64).
  const std::int64_t V = model->config().vocab;
  std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(r.batch));
  std::uint64_t state = r.seed;
  for (auto& p : prompts) {
    if (!r.prompt.empty()) {
      p = r.prompt;
      continue;
    }
    for (std::int64_t i = 0; i < r.prompt_tokens; ++i) {
      state += 0x9e3779b97f4a7c15ull;
      std::uint64_t z = state;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      p.push_back(static_cast<std::int32_t>((z ^ (z >> 31)) % static_cast<std::uint64_t>(V)));
    }
  }
  const std::int64_t prompt_len = static_cast<std::int64_t>(prompts.front().size());
  for (const auto id : prompts.front())  // checked here, before any rank thread starts
    if (id < 0 || id >= V) throw InputError("--prompt: token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(V));

  // Ranks: rank 0 runs here with the pool; the others on their own threads, single-threaded each.
  std::vector<std::shared_ptr<const Model>> shards;
  auto comms = make_in_process_group(r.tp);
  for (int rank = 0; rank < r.tp; ++rank) shards.push_back(r.tp > 1 ? model->sharded(r.tp, r.ep, rank) : model);
  auto generate = [&](int rank, RunResult* out) {
    Session s(shards[static_cast<std::size_t>(rank)], rank == 0 ? ctx : kernels::CpuContext{ctx.path, nullptr}, r.batch,
              r.tp > 1 ? comms[static_cast<std::size_t>(rank)].get() : nullptr);
    std::uint64_t rng = r.seed;
    const auto t0 = Clock::now();
    auto logits = s.prefill(prompts);
    const double prefill_s = since(t0);
    std::vector<std::vector<std::int32_t>> tokens(static_cast<std::size_t>(r.batch));
    std::vector<std::int32_t> next(static_cast<std::size_t>(r.batch));
    auto pick = [&] {
      for (std::int64_t b = 0; b < r.batch; ++b) {
        next[static_cast<std::size_t>(b)] = sample(logits.data() + b * V, V, r.temperature, r.top_p, rng);
        tokens[static_cast<std::size_t>(b)].push_back(next[static_cast<std::size_t>(b)]);
      }
    };
    if (r.gen_tokens > 0) pick();
    const auto t1 = Clock::now();
    for (std::int64_t i = 1; i < r.gen_tokens; ++i) {
      logits = s.decode(next);
      pick();
    }
    if (!out) return;
    out->decode_s = since(t1);
    out->prefill_s = prefill_s;
    out->tokens = std::move(tokens);
    out->ops = s.op_times();
    out->routing = s.routing();
  };
  std::vector<std::thread> others;
  std::vector<std::exception_ptr> failures(static_cast<std::size_t>(r.tp));
  for (int rank = 1; rank < r.tp; ++rank)
    others.emplace_back([&, rank] {
      try {
        generate(rank, nullptr);
      } catch (...) {
        failures[static_cast<std::size_t>(rank)] = std::current_exception();
      }
    });
  try {
    generate(0, &res);
  } catch (...) {
    failures[0] = std::current_exception();
  }
  for (auto& t : others) t.join();
  for (const auto& f : failures)
    if (f) std::rethrow_exception(f);
  res.prefill_tokens_per_s = static_cast<double>(r.batch * prompt_len) / res.prefill_s;
  res.decode_tokens_per_s = r.gen_tokens > 1 ? static_cast<double>(r.batch * (r.gen_tokens - 1)) / res.decode_s : 0;
  res.peak_rss_bytes = peak_rss_bytes();
  return res;
}

nlohmann::json routing_trace_json(const RunResult& res) {
  nlohmann::json layers = nlohmann::json::array(), tokens = nlohmann::json::array();
  for (const auto& ids : res.routing) {
    std::vector<std::int64_t> counts(static_cast<std::size_t>(res.experts), 0);
    for (auto e : ids) ++counts[static_cast<std::size_t>(e)];
    layers.push_back(counts);
    tokens.push_back(ids);
  }
  return {{"experts", res.experts}, {"layers", layers}, {"tokens", tokens}};
}

}  // namespace moeplan::executor
