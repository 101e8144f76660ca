// executor/run: a measured generation run (see run.hpp).
#include "executor/run.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <unistd.h>

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

// Where random weights go without --weights-out: a directory of this process's own (two runs at once must not write
// one directory; one process per rank: each rank its own copy), which run_model removes when the run ends.
std::filesystem::path default_random_dir(const RunRequest& r) {
  const std::string suffix = r.process && r.process->world_size > 1 ? "_rank" + std::to_string(r.process->rank) : "";
  return std::filesystem::temp_directory_path() /
         ("moeplan_random_" + std::to_string(r.random_seed.value_or(0)) + "_" + std::to_string(::getpid()) + suffix);
}

// The checkpoint to load: --weights, or random weights written from the config (layout, sizes and prompt ids checked
// first).
std::filesystem::path weights_dir(const RunRequest& r, const model::ParallelLayout& layout) {
  if (!r.random_seed) return r.weights_dir;
  const auto planned = model::parse_hf_config(r.config, r.name, r.name);
  model::validate_layout(planned, layout);  // before writing the weights
  check_sequence_sizes(r, planned);
  check_prompt_ids(r.prompt, planned.vocab);
  const std::filesystem::path dir = r.weights_out.empty() ? default_random_dir(r) : r.weights_out;
  RandomWeightsOptions opt;
  opt.seed = *r.random_seed;
  opt.overwrite = r.overwrite_weights_out;
  write_random_checkpoint(r.config, r.name, dir, opt);
  return dir;
}

// Removes a directory (when not empty) at the end of its scope; never throws.
class RemoveOnExit {
 public:
  explicit RemoveOnExit(std::filesystem::path dir) : dir_(std::move(dir)) {}
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;
  ~RemoveOnExit() {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

 private:
  std::filesystem::path dir_;
};

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
// and every stage sees the same sequences. This process runs the ranks in `here`: all of them, each a thread (rank
// 0 with the pool, the others single-threaded), or its own one when a launcher started a process per rank.
struct RankSetup {
  const RunRequest& r;
  model::ParallelLayout layout;
  kernels::CpuContext ctx;
  std::shared_ptr<Backend> device_backend;  // one GPU; null: each rank its own backend
  bool gpu_ranks = false;                   // each rank its own GPU over NCCL
  std::vector<int> here{};                  // the ranks this process runs
  std::vector<std::shared_ptr<const Model>> shards{};  // by rank; only those of `here` are set
  std::vector<std::unique_ptr<Communicator>> comms{};  // by rank; only those of `here` are set
  std::vector<std::vector<std::int32_t>> prompts{};
  std::int64_t vocab = 0;
  int stage_ranks() const { return layout.tp * layout.dp; }
  // Rank r drives GPU r in one process, and the GPU of its local rank when it has a process of its own.
  int gpu_of(int rank) const { return r.process ? r.process->local_rank : rank; }
};

// A rank that leaves because another failed before the run started (that rank's error is the run's).
class PeerFailed : public InputError {
 public:
  using InputError::InputError;
};

// Whether any rank of `world` failed: every rank calls it once, with its own answer (one float to every peer).
bool any_rank_failed(Communicator& world, bool failed) {
  const std::vector<std::vector<float>> flag(static_cast<std::size_t>(world.size()),
                                             std::vector<float>{failed ? 1.0f : 0.0f});
  const auto answers = world.all_to_all(flag);
  return std::any_of(answers.begin(), answers.end(), [](const std::vector<float>& a) { return a.front() != 0; });
}

// The rank's backend and, on a GPU, its paged-cache plan, which must fit beside the rank's weights (refused here,
// before the session allocates anything; the prompt is prefilled in one step). A GPU rank's backend is made on its
// own thread, so the thread's current device is its GPU (NCCL's calls set the same).
std::pair<std::shared_ptr<Backend>, std::optional<PagedKvPlan>> rank_backend(const RankSetup& s, int rank,
                                                                             std::int64_t n) {
  std::shared_ptr<Backend> backend = s.device_backend;
  if (s.gpu_ranks)
    backend = make_backend(DeviceKind::cuda, kernels::CpuContext{}, s.gpu_of(rank));
  else if (!backend)
    backend = make_cpu_backend(rank == 0 ? s.ctx : kernels::CpuContext{s.ctx.path, nullptr, s.ctx.bf16_activations});
  const auto prompt_len = static_cast<std::int64_t>(s.prompts.front().size());
  auto plan =
      device_kv_plan(*backend, *s.shards[static_cast<std::size_t>(rank)], n, prompt_len + s.r.gen_tokens, prompt_len);
  return {std::move(backend), std::move(plan)};
}

// One rank's prefill and decode steps. Every rank makes its backend and cache plan first; then all agree whether
// one of them failed, and if so the others leave before any collective (a rank missing from an NCCL collective
// would leave the others waiting in it).
RankResult generate(const RankSetup& s, int rank) {
  const RunRequest& r = s.r;
  const std::int64_t V = s.vocab;
  const int d = rank % s.stage_ranks() / s.layout.tp;  // this rank's data-parallel replica (the same in every stage)
  const std::int64_t b0 = r.batch * d / s.layout.dp, b1 = r.batch * (d + 1) / s.layout.dp, n = b1 - b0;
  Communicator& world = *s.comms[static_cast<std::size_t>(rank)];
  std::pair<std::shared_ptr<Backend>, std::optional<PagedKvPlan>> made;
  try {
    made = rank_backend(s, rank, n);
  } catch (...) {
    try {
      if (world.size() > 1) any_rank_failed(world, true);
    } catch (...) {  // the group is gone (aborted): this rank's own failure is still the one to report
    }
    throw;
  }
  if (world.size() > 1 && any_rank_failed(world, false))
    throw PeerFailed("rank " + std::to_string(rank) + " of " + std::to_string(world.size()) +
                     ": another rank failed before the run started (its own message says why)");
  Session session(s.shards[static_cast<std::size_t>(rank)], made.first, n, stage_group(world, s.stage_ranks()),
                  s.layout.pp > 1 ? &world : nullptr, made.second);
  session.capture_decode(r.cuda_graphs);
  RankResult out;
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
  out.decode_replays = session.decode_replays();
  out.decode_graph_error = session.capture_error();
  return out;
}

// The run's error: the first rank's failure to happen; every communicator of this process is aborted when it is
// kept, so no rank waits in a collective for a failed one. A rank that left because another failed (PeerFailed, or
// its communicator aborted) only counts when no rank has a failure of its own.
class FirstFailure {
 public:
  void record(std::exception_ptr e, const std::vector<std::unique_ptr<Communicator>>& comms) {
    const std::lock_guard<std::mutex> lock(m_);
    std::exception_ptr& slot = is_consequence(e) ? consequence_ : cause_;
    if (!slot) slot = e;
    if (aborted_) return;
    aborted_ = true;
    for (const auto& c : comms)
      if (c) c->abort();
  }
  void rethrow_if_any() const {
    if (cause_) std::rethrow_exception(cause_);
    if (consequence_) std::rethrow_exception(consequence_);
  }

 private:
  static bool is_consequence(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const PeerFailed&) {
      return true;
    } catch (const CommAborted&) {
      return true;
    } catch (...) {
      return false;
    }
  }
  std::mutex m_;
  std::exception_ptr cause_, consequence_;
  bool aborted_ = false;
};

// This process's ranks: the first on this thread, the others on their own; the run's error is rethrown after all
// have joined. Returns the outputs by rank (only those of `here` are filled).
std::vector<RankResult> run_ranks(const RankSetup& s) {
  std::vector<RankResult> outs(static_cast<std::size_t>(s.layout.gpus()));
  FirstFailure failure;
  auto guarded = [&](int rank) {
    try {
      outs[static_cast<std::size_t>(rank)] = generate(s, rank);
    } catch (...) {
      failure.record(std::current_exception(), s.comms);
    }
  };
  std::vector<std::thread> others;
  for (std::size_t i = 1; i < s.here.size(); ++i) others.emplace_back(guarded, s.here[i]);
  guarded(s.here.front());
  for (auto& t : others) t.join();
  failure.rethrow_if_any();
  return outs;
}

nlohmann::json rank_out_json(const RankResult& o) {
  return {{"prefill_s", o.prefill_s},           {"decode_s", o.decode_s}, {"tokens", o.tokens},
          {"seconds", o.ops.seconds},           {"calls", o.ops.calls},   {"routing", o.routing},
          {"kv_cache_bytes", o.kv_cache_bytes}, {"device", o.device},     {"backend", o.backend},
          {"peak_rss_bytes", o.peak_rss_bytes}};
}
RankResult rank_out_from_json(const nlohmann::json& j) {
  RankResult o;
  j.at("prefill_s").get_to(o.prefill_s);
  j.at("decode_s").get_to(o.decode_s);
  j.at("tokens").get_to(o.tokens);
  j.at("seconds").get_to(o.ops.seconds);
  j.at("calls").get_to(o.ops.calls);
  j.at("routing").get_to(o.routing);
  j.at("kv_cache_bytes").get_to(o.kv_cache_bytes);
  j.at("device").get_to(o.device);
  j.at("backend").get_to(o.backend);
  j.at("peak_rss_bytes").get_to(o.peak_rss_bytes);
  return o;
}
}  // namespace

std::vector<RankResult> gather_at_rank0(Communicator& world, std::vector<RankResult> outs) {
  const int me = world.rank();
  const std::vector<std::uint8_t> bytes = nlohmann::json::to_cbor(rank_out_json(outs[static_cast<std::size_t>(me)]));
  std::vector<std::vector<float>> send(static_cast<std::size_t>(world.size()));
  send.front().assign(bytes.begin(), bytes.end());
  const auto recv = world.all_to_all(send);
  if (me != 0) return outs;
  for (int rank = 1; rank < world.size(); ++rank) {
    const auto& f = recv[static_cast<std::size_t>(rank)];
    const std::vector<std::uint8_t> got(f.begin(), f.end());
    outs[static_cast<std::size_t>(rank)] = rank_out_from_json(nlohmann::json::from_cbor(got));
  }
  return outs;
}

namespace {

// Tokens from the first rank of each replica of stage 0 (the tp ranks of a replica agree, and every stage returns
// the last stage's logits); routing from the first rank of each replica of every stage, its MoE layers after the
// earlier stages'; times: the slowest rank; per-op times: the first rank of each stage, summed (pp = 1: rank 0's);
// peak memory: summed over the ranks' processes when each had its own.
void merge_ranks(const std::vector<RankResult>& outs, const model::ParallelLayout& layout, RunResult& res) {
  const int stage_ranks = layout.tp * layout.dp;
  res.device = outs.front().device;
  res.backend = outs.front().backend;
  res.decode_replays = outs.front().decode_replays;  // cuda_graphs runs one rank
  res.decode_graph_error = outs.front().decode_graph_error;
  for (const RankResult& o : outs) {
    res.kv_cache_bytes += o.kv_cache_bytes;
    res.peak_rss_bytes += o.peak_rss_bytes;
  }
  for (int stage = 0; stage < layout.pp; ++stage) {
    const std::size_t first_moe_layer = res.routing.size();
    const RankResult& lead = outs[static_cast<std::size_t>(stage * stage_ranks)];
    res.routing.resize(first_moe_layer + lead.routing.size());
    for (const auto& [name, seconds] : lead.ops.seconds) res.ops.seconds[name] += seconds;
    for (const auto& [name, calls] : lead.ops.calls) res.ops.calls[name] += calls;
    for (int rank = stage * stage_ranks; rank < (stage + 1) * stage_ranks; rank += layout.tp) {
      const RankResult& o = outs[static_cast<std::size_t>(rank)];
      res.prefill_s = std::max(res.prefill_s, o.prefill_s);
      res.decode_s = std::max(res.decode_s, o.decode_s);
      if (stage == 0) res.tokens.insert(res.tokens.end(), o.tokens.begin(), o.tokens.end());
      for (std::size_t l = 0; l < o.routing.size(); ++l)
        res.routing[first_moe_layer + l].insert(res.routing[first_moe_layer + l].end(), o.routing[l].begin(), o.routing[l].end());
    }
  }
}

}  // namespace

namespace {

std::string batch_problem(const model::ParallelLayout& layout, std::int64_t batch) {
  if (batch < layout.dp)
    return "--device cuda with --dp " + std::to_string(layout.dp) + " needs --batch of at least " +
           std::to_string(layout.dp) + " (a sequence for each replica's paged cache)";
  return "";
}

// cuda_ranks_problem for one process per rank.
std::string process_ranks_problem(const model::ParallelLayout& layout, std::int64_t batch, int cuda_device,
                                  const CudaRanksContext& context) {
  const ProcessRank& p = *context.process;
  const int ranks = layout.gpus();
  const std::string n = std::to_string(ranks);
  if (p.world_size != ranks) {
    if (p.world_size == 1)
      return "--process-per-rank: no launcher's variables are set (torchrun's RANK and WORLD_SIZE, mpirun's "
             "OMPI_COMM_WORLD_RANK and _SIZE, PMI_RANK and PMI_SIZE, srun's SLURM_PROCID and SLURM_NTASKS): start " +
             n + " processes under a launcher, or leave --process-per-rank out";
    return "--process-per-rank: " + p.launcher + " started " + std::to_string(p.world_size) +
           " processes, but --tp x --dp x --pp makes " + n + " ranks: start one process per rank";
  }
  if (ranks > 1 && !context.nccl) return "--process-per-rank needs NCCL, which this build lacks";
  if (cuda_device != 0)
    return "--cuda-device " + std::to_string(cuda_device) + ": with --process-per-rank each process drives the GPU " +
           "of its local rank (" + std::to_string(p.local_rank) + " here)";
  if (p.local_rank >= context.visible_gpus)
    return "--process-per-rank: local rank " + std::to_string(p.local_rank) + " (" + p.launcher +
           ") has no GPU: " + std::to_string(context.visible_gpus) + " visible on this node";
  if (ranks > 1 && !context.nccl_id_given)
    return "--process-per-rank with " + n + " processes needs MOEPLAN_NCCL_ID_FILE (a path every rank sees, new for " +
           "each job) or MOEPLAN_NCCL_ID (the unique id in hex)";
  return batch_problem(layout, batch);
}

// The device first: a missing GPU (or NCCL, or GPUs for the ranks, or a process per rank that cannot meet the others)
// is named before any weights are written or read. Returns the backend of a one-GPU run (else null).
std::shared_ptr<Backend> check_device(const RunRequest& r, const model::ParallelLayout& layout) {
  if (r.process && r.device != DeviceKind::cuda)
    throw InputError("--process-per-rank needs --device cuda (CPU ranks are threads of one process)");
  if (r.cuda_graphs && r.device != DeviceKind::cuda) throw InputError("--cuda-graphs needs --device cuda");
  if (r.device != DeviceKind::cuda) return nullptr;
  if (r.cuda_graphs && (layout.gpus() > 1 || r.process))
    throw InputError(
        "--cuda-graphs captures the decode steps of a one-GPU run; leave it out with --tp/--dp/--ep/--pp "
        "above 1 or --process-per-rank (their steps exchange data through the host)");
  if (layout.gpus() == 1 && !r.process) return make_backend(DeviceKind::cuda, kernels::CpuContext{}, r.cuda_device);
  const CudaRanksContext context{.nccl = nccl_available(),
                                 .visible_gpus = static_cast<int>(query_gpus().gpus.size()),
                                 .process = r.process,
                                 .nccl_id_given = r.nccl_id.id || !r.nccl_id.file.empty()};
  const std::string problem = cuda_ranks_problem(layout, r.batch, r.cuda_device, context);
  if (!problem.empty()) throw InputError(problem);
  if (r.process && r.random_seed && !r.weights_out.empty())
    throw InputError(
        "--weights-out with --process-per-rank: every process writes its own random checkpoint; leave "
        "--weights-out out (each writes its own temporary directory) or write one and pass --weights");
  if (layout.gpus() == 1) return make_backend(DeviceKind::cuda, kernels::CpuContext{}, r.process->local_rank);
  return nullptr;
}

// The ranks this process runs, their shards and their communicators (see RankSetup).
void place_ranks(RankSetup& setup, const std::shared_ptr<const Model>& model) {
  const RunRequest& r = setup.r;
  const int ranks = setup.layout.gpus();
  setup.shards.resize(static_cast<std::size_t>(ranks));
  setup.comms.resize(static_cast<std::size_t>(ranks));
  if (r.process) {
    setup.here = {r.process->rank};
    if (ranks > 1)
      setup.comms[static_cast<std::size_t>(r.process->rank)] = make_nccl_communicator(*r.process, r.nccl_id);
  } else {
    for (int rank = 0; rank < ranks; ++rank) setup.here.push_back(rank);
    setup.comms = setup.gpu_ranks ? make_nccl_group(ranks) : make_in_process_group(ranks);
  }
  if (!setup.comms[static_cast<std::size_t>(setup.here.front())])
    setup.comms[static_cast<std::size_t>(setup.here.front())] = std::move(make_in_process_group(1).front());
  for (const int rank : setup.here)
    setup.shards[static_cast<std::size_t>(rank)] = ranks > 1 ? model->sharded(setup.layout, rank) : model;
}

}  // namespace

RunResult run_model(const RunRequest& r) {
  const model::ParallelLayout layout = checked_layout(r);
  const int ranks = layout.gpus();
  const std::shared_ptr<Backend> device_backend = check_device(r, layout);
  RunResult res;
  res.model = r.name;
  if (r.process) {
    res.process_rank = r.process->rank;
    res.processes = r.process->world_size;
    res.launcher = r.process->launcher;
  }
  const auto t_load = Clock::now();
  // The default random checkpoint goes when the run ends, whether it succeeds or not, also when writing it failed
  // half-way (the model's files are mapped by then; the guard outlives the model).
  res.weights_removed = r.random_seed && r.weights_out.empty();
  const RemoveOnExit remove_default(res.weights_removed ? default_random_dir(r) : std::filesystem::path{});
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
  RankSetup setup{.r = r,
                  .layout = layout,
                  .ctx = ctx,
                  .device_backend = device_backend,
                  .gpu_ranks = r.device == DeviceKind::cuda && !device_backend};
  setup.vocab = model->config().vocab;
  setup.prompts = make_prompts(r, setup.vocab);
  const auto prompt_len = static_cast<std::int64_t>(setup.prompts.front().size());
  place_ranks(setup, model);

  std::vector<RankResult> outs = run_ranks(setup);
  if (r.process) {
    outs[static_cast<std::size_t>(r.process->rank)].peak_rss_bytes = peak_rss_bytes();
    if (ranks > 1) outs = gather_at_rank0(*setup.comms[static_cast<std::size_t>(r.process->rank)], std::move(outs));
    if (r.process->rank != 0) return res;  // rank 0 reports the run
  }
  merge_ranks(outs, layout, res);
  res.prefill_tokens_per_s = static_cast<double>(r.batch * prompt_len) / res.prefill_s;
  res.decode_tokens_per_s = r.gen_tokens > 1 ? static_cast<double>(r.batch * (r.gen_tokens - 1)) / res.decode_s : 0;
  if (res.peak_rss_bytes == 0) res.peak_rss_bytes = peak_rss_bytes();
  return res;
}

std::string cuda_ranks_problem(const model::ParallelLayout& layout, std::int64_t batch, int cuda_device,
                               const CudaRanksContext& context) {
  const int ranks = layout.gpus();
  const std::string n = std::to_string(ranks);
  if (context.process) return process_ranks_problem(layout, batch, cuda_device, context);
  if (ranks <= 1) return "";
  if (!context.nccl)
    return "--device cuda with " + n + " ranks needs NCCL, which this build lacks: run one GPU (--tp, --dp, --ep and " +
           "--pp 1) or --device cpu";
  if (cuda_device != 0)
    return "--cuda-device " + std::to_string(cuda_device) + " picks the GPU of a one-GPU run; " + n +
           " ranks run on GPUs 0-" + std::to_string(ranks - 1);
  if (context.visible_gpus < ranks)
    return "--device cuda with " + n + " ranks needs " + n + " GPUs (one per rank); " +
           std::to_string(context.visible_gpus) + " visible";
  return batch_problem(layout, batch);
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
