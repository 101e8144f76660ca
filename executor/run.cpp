// executor/run: a measured generation run (see run.hpp).
#include "executor/run.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <latch>
#include <sstream>
#include <exception>
#include <memory>
#include <stdexcept>
#include <thread>

#include "common/error.hpp"
#include "common/splitmix.hpp"
#include "executor/backend_cpu.hpp"
#include "executor/checkpoint_random.hpp"
#include "executor/devices.hpp"
#include "executor/nccl_comm.hpp"
#include "executor/paged_kv.hpp"
#include "kernels/thread_pool.hpp"
#include "model/shard.hpp"

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

namespace {

// The tokens a run holds, checked before prompts, caches or activations are allocated.
void check_sequence_sizes(const RunRequest& r, const model::ModelConfig& m) {
  const std::int64_t prompt_len = r.prompt.empty() ? r.prompt_tokens : static_cast<std::int64_t>(r.prompt.size());
  if (m.max_context_tokens > 0 && prompt_len + r.gen_tokens > m.max_context_tokens)
    throw InputError("a prompt of " + std::to_string(prompt_len) + " tokens plus --gen-tokens " + std::to_string(r.gen_tokens) +
                     " exceeds " + r.name + "'s context of " + std::to_string(m.max_context_tokens) +
                     " tokens (max_position_embeddings)");
  // KV cache and activations grow with batch x tokens; 2^24 tokens in all is hours of CPU time already.
  constexpr std::int64_t kMaxTotalTokens = std::int64_t{1} << 24;
  if (r.batch > kMaxTotalTokens / std::max<std::int64_t>(1, prompt_len + r.gen_tokens))
    throw InputError("--batch " + std::to_string(r.batch) + " x " + std::to_string(prompt_len + r.gen_tokens) +
                     " tokens per sequence is above the " + std::to_string(kMaxTotalTokens) + " tokens a CPU run may hold");
}

void check_prompt_ids(const std::vector<std::int32_t>& ids, std::int64_t vocab) {
  for (const auto id : ids)
    if (id < 0 || id >= vocab)
      throw InputError("--prompt: token id " + std::to_string(id) + " is outside the vocabulary of " +
                       std::to_string(vocab));
}

// The layout a request asks for, its sizes checked before anything is read or written.
model::ParallelLayout checked_layout(const RunRequest& r) {
  if (r.batch < 1 || r.gen_tokens < 0 || (r.prompt.empty() && r.prompt_tokens < 1))
    throw InputError("--batch and --prompt-tokens must be at least 1, --gen-tokens at least 0");
  const int dp = data_parallel(r);
  if (r.layout.tp < 1 || r.layout.ep < 1 || dp < 1 || r.layout.pp < 1) throw InputError("--tp, --ep, --dp and --pp must be positive");
  // Each rank is a thread of this process: the bound keeps thread and buffer counts sane (CPU runs use 1 to 8).
  constexpr std::int64_t kMaxRanks = 256;
  if (std::int64_t{r.layout.tp} * dp * r.layout.pp > kMaxRanks)
    throw InputError("--tp x --dp x --pp = " + std::to_string(std::int64_t{r.layout.tp} * dp * r.layout.pp) + " ranks; the CPU executor runs at most " +
                     std::to_string(kMaxRanks) + " in one process");
  return model::ParallelLayout{.tp = r.layout.tp, .ep = r.layout.ep, .pp = r.layout.pp, .dp = dp};
}

// The checkpoint to load: --weights, or random weights written from the config (layout, sizes and prompt ids checked
// first).
std::filesystem::path weights_dir(const RunRequest& r, const model::ParallelLayout& layout) {
  if (!r.random_seed) return r.weights_dir;
  const auto planned = model::parse_hf_config(r.config, r.name, r.name);
  model::validate_layout(planned, layout);  // before writing the weights
  check_sequence_sizes(r, planned);
  check_prompt_ids(r.prompt, planned.vocab);
  const std::filesystem::path dir = r.weights_out.empty() ? std::filesystem::temp_directory_path() /
                                                                ("moeplan_random_" + std::to_string(*r.random_seed))
                                                          : r.weights_out;
  RandomWeightsOptions opt;
  opt.seed = *r.random_seed;
  opt.overwrite = r.overwrite_weights_out;
  write_random_checkpoint(r.config, r.name, dir, opt);
  return dir;
}

std::unique_ptr<kernels::ThreadPool> make_pool(int threads) {
  try {
    return std::make_unique<kernels::ThreadPool>(threads);
  } catch (const std::runtime_error& e) {  // the system refused the threads (a process or memory limit)
    throw InputError("--threads " + std::to_string(threads) + ": " + e.what());
  }
}

// Prompts: the given ids, else seeded ids below the vocabulary (splitmix64); checked before any rank thread starts.
std::vector<std::vector<std::int32_t>> make_prompts(const RunRequest& r, std::int64_t vocab) {
  std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(r.batch));
  std::uint64_t state = r.seed;
  for (auto& p : prompts) {
    if (!r.prompt.empty()) {
      p = r.prompt;
      continue;
    }
    for (std::int64_t i = 0; i < r.prompt_tokens; ++i)
      p.push_back(static_cast<std::int32_t>(splitmix64(state) % static_cast<std::uint64_t>(vocab)));
  }
  check_prompt_ids(prompts.front(), vocab);
  return prompts;
}

// What every rank shares: pp * tp * dp ranks, stage-major; in each stage, each replica of tp ranks serves a
// contiguous block of the sequences (as even as the batch allows; a replica with none still joins every all-to-all),
// and every stage sees the same sequences. Rank 0 runs with the pool; the others single-threaded each.
// Every rank makes its backend and cache plan on its own thread; then all wait here, and when one of them failed the
// others leave too, before any collective (a rank missing from an NCCL collective would leave the others waiting in
// it for ever).
struct SetupGate {
  explicit SetupGate(int ranks) : ready(ranks) {}
  std::latch ready;
  std::atomic<bool> failed{false};
};

struct RankSetup {
  const RunRequest& r;
  model::ParallelLayout layout;
  kernels::CpuContext ctx;
  std::shared_ptr<Backend> device_backend;  // one GPU; null: each rank its own backend
  bool gpu_ranks = false;                   // each rank its own GPU (rank r on GPU r) over NCCL
  std::vector<std::shared_ptr<const Model>> shards{};
  std::vector<std::unique_ptr<Communicator>> comms{};
  std::vector<std::vector<std::int32_t>> prompts{};
  std::int64_t vocab = 0;
  std::unique_ptr<SetupGate> gate{};
  int stage_ranks() const { return layout.tp * layout.dp; }
};

struct RankOut {
  double prefill_s = 0, decode_s = 0;
  std::vector<std::vector<std::int32_t>> tokens;
  OpTimes ops;
  std::vector<std::vector<std::int32_t>> routing;
  std::int64_t kv_cache_bytes = 0;
  std::string device, backend;
};

// One rank's prefill and decode steps.
RankOut generate(const RankSetup& s, int rank) {
  const RunRequest& r = s.r;
  const std::int64_t V = s.vocab;
  const int d = rank % s.stage_ranks() / s.layout.tp;  // this rank's data-parallel replica (the same in every stage)
  const std::int64_t b0 = r.batch * d / s.layout.dp, b1 = r.batch * (d + 1) / s.layout.dp, n = b1 - b0;
  Communicator& world = *s.comms[static_cast<std::size_t>(rank)];
  const auto& shard = s.shards[static_cast<std::size_t>(rank)];
  std::shared_ptr<Backend> backend = s.device_backend;
  std::optional<PagedKvPlan> kv_plan;
  try {
    // A GPU rank's backend is made on its own thread, so the thread's current device is its GPU (NCCL's calls set
    // the same).
    if (s.gpu_ranks)
      backend = make_backend(DeviceKind::cuda, kernels::CpuContext{}, rank);
    else if (!backend)
      backend = make_cpu_backend(rank == 0 ? s.ctx : kernels::CpuContext{s.ctx.path, nullptr, s.ctx.bf16_activations});
    // On a GPU the KV cache is paged, its pool sized by the plan that must fit beside the rank's weights: refused
    // here, before the session allocates anything (the prompt is prefilled in one step).
    const auto prompt_len = static_cast<std::int64_t>(s.prompts.front().size());
    kv_plan = device_kv_plan(*backend, *shard, n, prompt_len + r.gen_tokens, prompt_len);
  } catch (...) {
    s.gate->failed = true;
    s.gate->ready.count_down();
    throw;
  }
  s.gate->ready.arrive_and_wait();
  if (s.gate->failed) return {};  // the failing rank's error is the run's
  Session session(shard, backend, n, stage_group(world, s.stage_ranks()), s.layout.pp > 1 ? &world : nullptr,
                  kv_plan);
  RankOut out;
  out.device = device_kind_name(session.backend().kind());
  out.backend = session.backend().description();
  // One generator per sequence, so a sequence samples the same tokens whichever rank serves it.
  std::vector<std::uint64_t> rng(static_cast<std::size_t>(n));
  for (std::int64_t b = 0; b < n; ++b)
    rng[static_cast<std::size_t>(b)] = r.seed ^ (0x9e3779b97f4a7c15ull * static_cast<std::uint64_t>(b0 + b + 1));
  const auto t0 = Clock::now();
  auto logits = session.prefill(std::vector<std::vector<std::int32_t>>(s.prompts.begin() + b0, s.prompts.begin() + b1));
  out.prefill_s = since(t0);
  out.tokens.resize(static_cast<std::size_t>(n));
  std::vector<std::int32_t> next(static_cast<std::size_t>(n));
  auto pick = [&] {
    for (std::size_t b = 0; b < static_cast<std::size_t>(n); ++b) {
      next[b] = sample(logits.data() + static_cast<std::int64_t>(b) * V, V, r.temperature, r.top_p, rng[b]);
      out.tokens[b].push_back(next[b]);
    }
  };
  if (r.gen_tokens > 0) pick();
  const bool report = rank == 0 && r.progress;
  if (report) r.progress->advance();  // the first token comes from the prefill
  const auto t1 = Clock::now();
  for (std::int64_t i = 1; i < r.gen_tokens; ++i) {
    logits = session.decode(next);
    pick();
    if (report) r.progress->advance();
  }
  out.decode_s = since(t1);
  out.ops = session.op_times();
  out.routing = session.routing();
  out.kv_cache_bytes = session.kv_cache_bytes();
  return out;
}

// Rank 0 on this thread, the others on their own; the first failure is rethrown after all have joined.
std::vector<RankOut> run_ranks(const RankSetup& s) {
  const int ranks = s.layout.gpus();
  std::vector<RankOut> outs(static_cast<std::size_t>(ranks));
  std::vector<std::exception_ptr> failures(static_cast<std::size_t>(ranks));
  auto guarded = [&](int rank) {
    try {
      outs[static_cast<std::size_t>(rank)] = generate(s, rank);
    } catch (...) {
      failures[static_cast<std::size_t>(rank)] = std::current_exception();
    }
  };
  std::vector<std::thread> others;
  for (int rank = 1; rank < ranks; ++rank) others.emplace_back(guarded, rank);
  guarded(0);
  for (auto& t : others) t.join();
  for (const auto& f : failures)
    if (f) std::rethrow_exception(f);
  return outs;
}

// Tokens from the first rank of each replica of stage 0 (the tp ranks of a replica agree, and every stage returns
// the last stage's logits); routing from the first rank of each replica of every stage, its MoE layers after the
// earlier stages'; times: the slowest rank; per-op times: the first rank of each stage, summed (pp = 1: rank 0's).
void merge_ranks(const std::vector<RankOut>& outs, const model::ParallelLayout& layout, RunResult& res) {
  const int stage_ranks = layout.tp * layout.dp;
  res.device = outs.front().device;
  res.backend = outs.front().backend;
  for (const RankOut& o : outs) res.kv_cache_bytes += o.kv_cache_bytes;
  for (int stage = 0; stage < layout.pp; ++stage) {
    const std::size_t first_moe_layer = res.routing.size();
    const RankOut& lead = outs[static_cast<std::size_t>(stage * stage_ranks)];
    res.routing.resize(first_moe_layer + lead.routing.size());
    for (const auto& [name, seconds] : lead.ops.seconds) res.ops.seconds[name] += seconds;
    for (const auto& [name, calls] : lead.ops.calls) res.ops.calls[name] += calls;
    for (int rank = stage * stage_ranks; rank < (stage + 1) * stage_ranks; rank += layout.tp) {
      const RankOut& o = outs[static_cast<std::size_t>(rank)];
      res.prefill_s = std::max(res.prefill_s, o.prefill_s);
      res.decode_s = std::max(res.decode_s, o.decode_s);
      if (stage == 0) res.tokens.insert(res.tokens.end(), o.tokens.begin(), o.tokens.end());
      for (std::size_t l = 0; l < o.routing.size(); ++l)
        res.routing[first_moe_layer + l].insert(res.routing[first_moe_layer + l].end(), o.routing[l].begin(), o.routing[l].end());
    }
  }
}

}  // namespace

RunResult run_model(const RunRequest& r) {
  const model::ParallelLayout layout = checked_layout(r);
  const int ranks = layout.gpus();
  // The device first: a missing GPU (or NCCL, or GPUs for the ranks) is named before any weights are written or read.
  std::shared_ptr<Backend> device_backend;
  if (r.device == DeviceKind::cuda && ranks == 1)
    device_backend = make_backend(DeviceKind::cuda, kernels::CpuContext{}, r.cuda_device);
  const bool gpu_ranks = r.device == DeviceKind::cuda && ranks > 1;
  if (gpu_ranks) {
    const std::string problem = cuda_ranks_problem(layout, r.batch, r.cuda_device, nccl_available(),
                                                   static_cast<int>(query_gpus().gpus.size()));
    if (!problem.empty()) throw InputError(problem);
  }
  RunResult res;
  res.model = r.name;
  const auto t_load = Clock::now();
  res.weights_dir = weights_dir(r, layout);
  const auto model = Model::load(res.weights_dir);
  model::validate_layout(model->config(), layout);
  res.load_s = since(t_load);
  res.weight_bytes = model->weight_bytes();
  res.experts = model->config().num_experts;

  const auto pool = make_pool(r.threads);
  const kernels::CpuContext ctx{kernels::best_cpu_path(), pool.get(), r.bf16_activations};
  res.cpu_path = kernels::cpu_path_name(ctx.path);
  if (kernels::amx_bf16_active(ctx)) res.activations = "bf16-amx";
  res.threads = pool->size();

  check_sequence_sizes(r, model->config());
  RankSetup setup{.r = r, .layout = layout, .ctx = ctx, .device_backend = device_backend, .gpu_ranks = gpu_ranks};
  setup.vocab = model->config().vocab;
  setup.prompts = make_prompts(r, setup.vocab);
  const auto prompt_len = static_cast<std::int64_t>(setup.prompts.front().size());
  setup.comms = gpu_ranks ? make_nccl_group(ranks) : make_in_process_group(ranks);
  setup.gate = std::make_unique<SetupGate>(ranks);
  for (int rank = 0; rank < ranks; ++rank) setup.shards.push_back(ranks > 1 ? model->sharded(layout, rank) : model);

  merge_ranks(run_ranks(setup), layout, res);
  res.prefill_tokens_per_s = static_cast<double>(r.batch * prompt_len) / res.prefill_s;
  res.decode_tokens_per_s = r.gen_tokens > 1 ? static_cast<double>(r.batch * (r.gen_tokens - 1)) / res.decode_s : 0;
  res.peak_rss_bytes = peak_rss_bytes();
  return res;
}

std::string cuda_ranks_problem(const model::ParallelLayout& layout, std::int64_t batch, int cuda_device, bool nccl,
                               int visible_gpus) {
  const int ranks = layout.gpus();
  if (ranks <= 1) return "";
  const std::string n = std::to_string(ranks);
  if (!nccl)
    return "--device cuda with " + n + " ranks needs NCCL, which this build lacks: run one GPU (--tp, --dp, --ep and " +
           "--pp 1) or --device cpu";
  if (cuda_device != 0)
    return "--cuda-device " + std::to_string(cuda_device) + " picks the GPU of a one-GPU run; " + n +
           " ranks run on GPUs 0-" + std::to_string(ranks - 1);
  if (visible_gpus < ranks)
    return "--device cuda with " + n + " ranks needs " + n + " GPUs (one per rank); " + std::to_string(visible_gpus) +
           " visible";
  if (batch < layout.dp)
    return "--device cuda with --dp " + std::to_string(layout.dp) + " needs --batch of at least " +
           std::to_string(layout.dp) + " (a sequence for each replica's paged cache)";
  return "";
}

int data_parallel(const RunRequest& r) {
  if (r.layout.dp != 0) return r.layout.dp;
  return r.layout.tp == 1 && r.layout.ep > 1 ? r.layout.ep : 1;
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
