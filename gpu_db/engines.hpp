// gpu_db/engines: serving engines (TensorRT-LLM, vLLM, SGLang, llama.cpp, and the plain roofline `generic`) as data,
// from data/engines.yaml. Every value keeps its source and the date it was read; nothing is computed here.
#pragma once
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gpu_db/gpu_db.hpp"

namespace moeplan::gpu_db {

struct EngineSource {
  std::string source, read;  // URL / file at a version / measurement / "assumption: ...", and the date read
};

struct EngineSpec {
  std::string name, display_name;
  std::vector<std::string> aliases;
  std::string versions;
  std::vector<std::string> vendors, architectures;  // "any" in architectures: every architecture of those vendors
  bool hosts = false;                               // runs on CPU / unified-memory hosts
  std::string kv_dtype_modelopt;                    // KV cache dtype for FP8/NVFP4 ModelOpt checkpoints
  std::int64_t max_batch = 0, max_num_batched_tokens = 0;
  bool chunked_prefill = false, cuda_graphs = false;
  std::int64_t cuda_graph_max_batch = 0;
  // The decode batches captured as CUDA graphs (ascending, ending at cuda_graph_max_batch), and whether a decode-only
  // step of another size up to the largest runs padded to the next captured size (dummy sequences) rather than eager.
  std::vector<std::int64_t> cuda_graph_batch_sizes;
  bool cuda_graph_padding = false;
  // Attention-DP ranks reach the experts by allgather before and reduce-scatter after the MoE (false: all-to-all of
  // each token's top-k copies), and the gather carries quantized activations (NVFP4, per-tensor FP8).
  bool moe_dp_allgather = false, moe_dp_quantized_dispatch = false;
  std::string scheduler, moe_kernels;
  double step_overhead_us = 0, op_overhead_us = 0, op_overhead_eager_us = 0;
  std::vector<std::string> formats;                 // weight formats it loads (empty: every format)
  bool expert_parallel = true, multi_node = true;
  // Kernel choices that change the roofline (0: the generic assumption of docs/simulator.md stays):
  std::int64_t gemv_max_rows = 0;       // steps of at most this many tokens run matrix-vector kernels (no tile fill)
  double dequant_compute = 0;           // weight-only GEMMs on a GPU at this share of the fp16 tensor-core rate
  // Routed-expert GEMMs run as token tiles per expert (0: the generic grouped-GEMM curve): on CUDA the widest tile,
  // chosen per step in steps of 8 tokens to fit the step's tokens (llama.cpp MMQ's mmq_x); on Metal a fixed tile.
  std::int64_t expert_tile_rows_cuda = 0, expert_tile_rows_metal = 0;
  // A static batch's prompt runs in pieces of max_num_batched_tokens (llama.cpp's n_ubatch), not in one step.
  bool prefill_in_ubatches = false;
  // KV capacity: true when sliding-window/chunked layers hold only their window (model-aware); false when the
  // engine's KV manager sizes every layer for the whole sequence (full-length), as TensorRT-LLM's does.
  bool kv_window_aware = true;
  // How the engine's offline benchmark picks max_batch / max_num_batched_tokens when given neither: "trtllm-bench"
  // (simulator/trtllm_bench.hpp), or empty (the fixed values above).
  std::string bench_batch_settings;
  std::map<std::string, EngineSource> sources;      // field -> where its value comes from

  bool generic() const { return name == "generic"; }
  bool runs_on(const GpuSpec& gpu) const;
  bool loads(const std::string& format) const;
  // The fixed cost per kernel the engine pays: with CUDA graphs when it captures them.
  double kernel_overhead_us() const { return cuda_graphs ? op_overhead_us : op_overhead_eager_us; }
  std::string label() const { return generic() ? name : name + " " + versions; }
};

class EngineTable {
 public:
  // Throws InputError naming file:line and the field for every read error.
  static EngineTable load(const std::filesystem::path& yaml_path);

  const std::vector<EngineSpec>& engines() const { return engines_; }
  // By name or alias (case-insensitive); unknown names throw InputError with suggestions and the list.
  const EngineSpec& engine(const std::string& name) const;
  std::vector<std::string> names() const;
  // Engines that run on this GPU (generic included), in file order.
  std::vector<const EngineSpec*> supporting(const GpuSpec& gpu) const;
  std::vector<const EngineSpec*> supporting_hosts() const;
  // The engine one would deploy on this GPU's vendor: NVIDIA trtllm, AMD and Intel vllm (docs/simulator.md "Engines").
  const EngineSpec& vendor_default(const GpuSpec& gpu) const;
  const EngineSpec& host_default() const { return engine("llamacpp"); }
  // Throws InputError (exit 2) naming the engines that do run on the GPU, when `e` does not.
  void require_runs_on(const EngineSpec& e, const GpuSpec& gpu) const;
  void require_runs_on_hosts(const EngineSpec& e) const;

 private:
  std::vector<EngineSpec> engines_;
};

}  // namespace moeplan::gpu_db
