// executor/run: one measured generation run: load (or write and load seeded random) weights, prefill a batch of
// prompts, decode, and time it: prefill and decode tokens/s, per-op times, peak memory, routing trace.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/progress.hpp"
#include "executor/comm.hpp"
#include "executor/forward.hpp"
#include "executor/launch.hpp"
#include "model/shard.hpp"

namespace moeplan::executor {

struct RunRequest {
  nlohmann::json config;                 // the (possibly shrunk) config.json
  std::string name;                      // the model's name for reports
  std::filesystem::path weights_dir;     // a checkpoint directory, or empty with random_seed
  std::optional<std::uint64_t> random_seed;
  std::filesystem::path weights_out;     // where random weights are written (default: a temporary directory)
  bool overwrite_weights_out = false;    // write into weights_out even when it holds files moeplan did not write
  int threads = 0;                       // 0: all hardware threads (shared by the ranks)
  bool bf16_activations = false;         // kernels::CpuContext::bf16_activations (AMX BF16 matmuls where available)
  bool cuda_graphs = false;              // one GPU: decode steps replay a captured graph (Session::capture_decode)
  DeviceKind device = DeviceKind::cpu;   // cuda: one rank on CUDA device `cuda_device` (select_device checked it),
  int cuda_device = 0;                   // or several, rank r on GPU r over NCCL (cuda_ranks_problem says when not)
  // A launcher started one process per rank (run --process-per-rank): this process runs rank process->rank only, on
  // GPU process->local_rank, over NCCL with the unique id from nccl_id; rank 0 gathers every rank's results and
  // reports them. Unset: every rank is a thread of this process.
  std::optional<ProcessRank> process;
  UniqueIdSource nccl_id;
  // In-process ranks (threads), tp * dp of them, laid out as model/shard.hpp describes: dp attention replicas of tp
  // tensor-parallel ranks each, routed experts split ep ways over all of them. layout.dp = 0: ep when tp = 1 and
  // ep > 1 (the earlier `--tp 1 --ep N`), else 1 (data_parallel gives the value run). pp pipeline stages of tp * dp
  // ranks each (layers split evenly, stage by stage, no micro-batches: a step passes through the stages one after
  // the other).
  model::ParallelLayout layout{.tp = 1, .ep = 1, .pp = 1, .dp = 0};
  std::int64_t batch = 1, prompt_tokens = 16, gen_tokens = 16;
  std::vector<std::int32_t> prompt;      // explicit prompt (every sequence), else seeded random ids
  float temperature = 0, top_p = 1;
  std::uint64_t seed = 1;
  Progress* progress = nullptr;          // advanced per generated token (of rank 0), total gen_tokens (may be null)
};

struct RunResult {
  std::string model, cpu_path;
  std::string device = "cpu";  // device_kind_name of the backend
  std::string backend;         // its description: "cpu avx2, 2 threads", "cuda NVIDIA H200, device 0"
  std::string activations = "fp32";  // "fp32", or "bf16-amx" when the AMX path was on (it takes the BF16-weight
                                     // matmuls of more than 16 rows; other dtypes keep fp32 x)
  int threads = 0;
  std::uint64_t weight_bytes = 0;
  double load_s = 0, prefill_s = 0, decode_s = 0;
  double prefill_tokens_per_s = 0, decode_tokens_per_s = 0;
  std::uint64_t peak_rss_bytes = 0;
  std::int64_t kv_cache_bytes = 0;                 // K and V every rank holds after the last step (GPU: BF16)
  std::int64_t decode_replays = 0;                 // decode steps that replayed a captured graph (cuda_graphs)
  std::string decode_graph_error;                  // why the capture failed (the steps then ran op by op), or empty
  std::vector<std::vector<std::int32_t>> tokens;   // generated ids per sequence
  OpTimes ops;
  std::int64_t experts = 0;
  std::vector<std::vector<std::int32_t>> routing;  // [moe layer][token * k] expert ids
  std::filesystem::path weights_dir;
  bool weights_removed = false;  // weights_dir was the default random checkpoint, removed when the run ended
  // One process per rank: this process's rank and the processes' count. Only rank 0 holds the run's results (every
  // rank's tokens, times and per-op times, gathered); the others hold their own rank's and do not report.
  int process_rank = 0, processes = 1;
  std::string launcher;  // which launcher's variables placed the processes ("torchrun", "Slurm", ...); empty: one
};

// What one rank measured and generated (run_model merges them into a RunResult).
struct RankResult {
  double prefill_s = 0, decode_s = 0;
  std::vector<std::vector<std::int32_t>> tokens;  // per sequence of the rank's replica
  OpTimes ops;
  std::vector<std::vector<std::int32_t>> routing;  // per MoE layer of the rank's stage
  std::int64_t kv_cache_bytes = 0;
  std::int64_t decode_replays = 0;  // Session::decode_replays
  std::string decode_graph_error;   // Session::capture_error
  std::string device, backend;
  std::uint64_t peak_rss_bytes = 0;  // the rank's process, when it has its own
};

// One process per rank: every rank's result at rank 0 of `world` (outs[r] for each rank r), sent as CBOR through one
// all-to-all, a byte per float (exact); every rank calls it with outs[world.rank()] set, and the others get their
// `outs` back unchanged.
std::vector<RankResult> gather_at_rank0(Communicator& world, std::vector<RankResult> outs);

// Throws InputError before writing or loading any weights when the layout does not fit the model
// (model::layout_problem) or the sizes are not positive.
RunResult run_model(const RunRequest& request);

// The attention data-parallel replicas a request runs: request.dp, or its default described at RunRequest::layout.
int data_parallel(const RunRequest& request);

// What a --device cuda run of several ranks depends on outside the request.
struct CudaRanksContext {
  bool nccl = false;                   // the build has the NCCL communicator
  int visible_gpus = 0;                // on this node
  std::optional<ProcessRank> process;  // RunRequest::process
  bool nccl_id_given = false;          // RunRequest::nccl_id holds an id or a file
};

// Why a --device cuda run of layout.gpus() ranks cannot start, as one line naming the fix; empty when it can (one rank
// in one process always can here: its GPU is checked when its backend is made). In one process, ranks r = 0 ..
// gpus-1 run on GPUs r, a thread each, over NCCL (make_nccl_group): the build needs NCCL, as many GPUs must be
// visible, --cuda-device stays 0, and every attention replica needs a sequence. One process per rank: as many
// processes as ranks, NCCL, a GPU for the local rank, --cuda-device not given (0), and a way to share the unique id.
std::string cuda_ranks_problem(const model::ParallelLayout& layout, std::int64_t batch, int cuda_device,
                               const CudaRanksContext& context);

// {"experts": E, "layers": [[count per expert] ...], "tokens": [[ids...] ...]}: the shape simulate --expert-loads reads.
nlohmann::json routing_trace_json(const RunResult& result);

}  // namespace moeplan::executor
