// `moeplan run`: execute the model on this machine (CPU, or one CUDA GPU) with real or seeded random weights, and
// time it.
#include <iostream>
#include <limits>
#include <optional>

#include "app/cli.hpp"
#include "app/config_options.hpp"
#include "app/option_groups.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/progress.hpp"
#include "executor/devices.hpp"
#include "common/text.hpp"
#include "executor/run.hpp"
#include "model/shape_override.hpp"
#include "reports/run_report.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

namespace {

struct RunOptions {
  Common common;
  std::string model_name, weights, device, trace, prompt, weights_out;
  std::uint64_t random_seed = 0, seed = 1;
  int threads = 0, cuda_device = 0, tp = 1, ep = 1, dp = 0, pp = 1;
  std::int64_t prompt_tokens = 0, gen_tokens = 0, batch = 0;
  float temperature = 0, top_p = 1;
  bool bf16_activations = false, process_per_rank = false, cuda_graphs = false;
};

// --shape and its one-key options: a shrunk config for --random-weights.
struct ShapeOptions {
  std::string shape;
  std::int64_t layers = 0, experts = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, vocab = 0;
};

void add_run_options(po::options_description& d, RunOptions& o) {
  add_common_options(d, o.common);
  add_model_option(d, o.model_name);
  d.add_options()
      ("weights", po::value<std::string>(&o.weights), "checkpoint directory (config.json + safetensors)")
      ("random-weights", po::value<std::uint64_t>(&o.random_seed), "write a seeded random checkpoint in the HF layout and run it")
      ("weights-out", po::value<std::string>(&o.weights_out),
       "where --random-weights writes and keeps them (default: a temporary directory of this process, removed after the run); a directory holding other files is refused")
      ("force", "--weights-out: write even into a directory holding files moeplan did not write (they may be replaced)")
      ("device", po::value<std::string>(&o.device)->default_value("cpu"), "cpu, or cuda (a build with CUDA and a visible device; with --tp/--dp/--pp above 1, rank r on GPU r over NCCL)")
      ("cuda-device", po::value<int>(&o.cuda_device)->default_value(0), "--device cuda, one rank: which GPU (0 = the first visible)")
      ("process-per-rank", po::bool_switch(&o.process_per_rank), "--device cuda: a launcher (torchrun, mpirun, srun) started one process per rank; this one runs the rank its variables give, on the GPU of its local rank, the NCCL id shared through MOEPLAN_NCCL_ID_FILE or MOEPLAN_NCCL_ID; rank 0 reports")
      ("cuda-graphs", po::bool_switch(&o.cuda_graphs), "--device cuda on one GPU: capture a decode step as a CUDA graph and replay it for the later steps (paged decode kernel on every layer, experts as grouped GEMMs; otherwise steps run op by op); a replayed step's time goes under decode.graph")
      ("threads", po::value<int>(&o.threads)->default_value(0), "CPU threads (0: all)")
      ("bf16-activations", po::bool_switch(&o.bf16_activations), "round matmul inputs to BF16 for BF16 weights and run them on AMX tiles where the CPU has them (PyTorch bf16 precision; default fp32)")
      ("tp", po::value<int>(&o.tp)->default_value(1), "tensor-parallel ranks per attention replica (heads, MLP columns, vocabulary)")
      ("dp", po::value<int>(&o.dp), "attention data-parallel replicas of --tp ranks each, serving their own sequences (default: --ep when --tp is 1, else 1)")
      ("ep", po::value<int>(&o.ep)->default_value(1), "expert-parallel groups over all tp * dp ranks: routed experts split by id, each expert's intermediate tp * dp / ep ways")
      ("pp", po::value<int>(&o.pp)->default_value(1), "pipeline stages of tp * dp ranks each, layers split evenly (no micro-batches)")
      ("prompt-tokens", po::value<std::int64_t>(&o.prompt_tokens)->default_value(16), "prompt length (seeded random ids)")
      ("prompt", po::value<std::string>(&o.prompt), "explicit prompt ids, comma-separated (every sequence)")
      ("gen-tokens", po::value<std::int64_t>(&o.gen_tokens)->default_value(16), "tokens to generate per sequence")
      ("batch", po::value<std::int64_t>(&o.batch)->default_value(1), "sequences")
      ("temperature", po::value<float>(&o.temperature)->default_value(0), "0 = greedy")
      ("top-p", po::value<float>(&o.top_p)->default_value(1), "nucleus sampling mass")
      ("seed", po::value<std::uint64_t>(&o.seed)->default_value(1), "seed for prompts and sampling")
      ("trace-routing", po::value<std::string>(&o.trace), "write the experts chosen per token and MoE layer (JSON)");
}

void add_shape_options(po::options_description& d, ShapeOptions& s) {
  d.add_options()
      ("shape", po::value<std::string>(&s.shape), "shrink the config: KEY=N,... (" "see --layers etc.)")
      ("layers", po::value<std::int64_t>(&s.layers), "override num_hidden_layers (keeps the layer pattern)")
      ("experts", po::value<std::int64_t>(&s.experts), "override routed experts")
      ("hidden", po::value<std::int64_t>(&s.hidden), "override hidden size")
      ("intermediate", po::value<std::int64_t>(&s.intermediate), "override expert and dense intermediate sizes")
      ("heads", po::value<std::int64_t>(&s.heads), "override query heads")
      ("kv-heads", po::value<std::int64_t>(&s.kv_heads), "override KV heads")
      ("vocab", po::value<std::int64_t>(&s.vocab), "override vocabulary size");
}

// --shape's keys, each overridden by its own option where given.
model::ShapeOverrides shape_overrides(const po::variables_map& vm, const ShapeOptions& s) {
  model::ShapeOverrides o = vm.count("shape") ? model::parse_shape_overrides(s.shape) : model::ShapeOverrides{};
  if (vm.count("layers")) o.layers = s.layers;
  if (vm.count("experts")) o.experts = s.experts;
  if (vm.count("hidden")) o.hidden = s.hidden;
  if (vm.count("intermediate")) o.intermediate = s.intermediate;
  if (vm.count("heads")) o.heads = s.heads;
  if (vm.count("kv-heads")) o.kv_heads = s.kv_heads;
  if (vm.count("vocab")) o.vocab = s.vocab;
  return o;
}

// --prompt: comma-separated token ids (the vocabulary bound is the executor's check, once the model is loaded).
std::vector<std::int32_t> parse_prompt(const std::string& prompt) {
  std::vector<std::int32_t> ids;
  for (const auto& item : split_list(prompt)) {
    const std::optional<std::int64_t> id = parse_integer(item);
    if (!id || *id < 0 || *id > std::numeric_limits<int>::max())
      throw InputError("--prompt '" + printable(prompt) + "': use comma-separated token ids (whole numbers from 0)");
    ids.push_back(static_cast<std::int32_t>(*id));
  }
  if (ids.empty()) throw InputError("--prompt is empty: give comma-separated token ids");
  return ids;
}

// The options' own checks; returns the device (a CUDA device is looked for once, here).
executor::DeviceKind check_run_options(const po::variables_map& vm, const RunOptions& o) {
  for (const char* name : {"prompt-tokens", "batch", "tp", "ep", "dp", "pp"}) require_positive(vm, name);
  if (o.gen_tokens < 0) throw InputError("--gen-tokens must be 0 or more");
  const executor::DeviceKind device = executor::select_device(o.device);
  if (device == executor::DeviceKind::cpu)
    refuse_given(vm, {"cuda-device", "process-per-rank", "cuda-graphs"}, "run --device cuda");
  if (vm.count("weights") == vm.count("random-weights"))
    throw InputError("give --weights DIR or --random-weights SEED (one of them)");
  if (!(o.temperature >= 0) || !(o.top_p > 0 && o.top_p <= 1))
    throw InputError("--temperature must be >= 0 and --top-p in (0, 1]");
  return device;
}

// The checkpoint's config (--weights) or the built-in model's, with the shape overrides applied.
executor::RunRequest run_request(const po::variables_map& vm, const RunOptions& o, const ShapeOptions& s,
                                 executor::DeviceKind device) {
  executor::RunRequest q;
  std::filesystem::path config_path;
  if (vm.count("weights")) {
    q.weights_dir = o.weights;
    config_path = std::filesystem::path(o.weights) / "config.json";
  } else {
    q.random_seed = o.random_seed;
    q.weights_out = o.weights_out;
    q.overwrite_weights_out = vm.count("force") > 0;
    config_path = model::load_model(o.model_name, data_dir()).source;
  }
  q.config = parse_json_file(config_path);
  const model::ShapeOverrides shape = shape_overrides(vm, s);
  if (!shape.empty()) {
    if (vm.count("weights")) throw InputError("shape overrides apply to --random-weights only (a checkpoint has its own shapes)");
    q.config = model::apply_shape_overrides(q.config, shape, config_path.string());
  }
  q.name = vm.count("weights") ? std::filesystem::path(o.weights).filename().string() : o.model_name;
  q.threads = o.threads;
  q.device = device;
  q.cuda_device = o.cuda_device;
  q.bf16_activations = o.bf16_activations;
  q.cuda_graphs = o.cuda_graphs;
  // dp 0 when not given; the layout is checked against the model before any weights are written
  q.layout = model::ParallelLayout{.tp = o.tp, .ep = o.ep, .pp = o.pp, .dp = o.dp};
  q.batch = o.batch;
  q.prompt_tokens = o.prompt_tokens;
  q.gen_tokens = o.gen_tokens;
  q.temperature = o.temperature;
  q.top_p = o.top_p;
  q.seed = o.seed;
  if (vm.count("prompt")) q.prompt = parse_prompt(o.prompt);
  if (o.process_per_rank) {
    q.process = executor::process_rank_from_environment();
    q.nccl_id = executor::unique_id_source_from_environment();
  }
  if (vm.count("force") && !vm.count("weights-out")) throw InputError("--force applies to --weights-out only");
  return q;
}

}  // namespace

int cmd_run(const std::vector<std::string>& args, std::ostream& out) {
  RunOptions o;
  ShapeOptions s;
  po::options_description d("run options");
  add_run_options(d, o);
  add_shape_options(d, s);
  po::variables_map vm;
  if (!parse("run",
             "--model M (--weights DIR | --random-weights SEED) --device cpu|cuda [--threads N] [--bf16-activations] --prompt-tokens L "
             "--gen-tokens L --batch B [--tp N --dp D --ep M --pp P] [--layers --experts --hidden --intermediate --heads --kv-heads --vocab]",
             args, d, vm, out))
    return kExitOk;
  executor::RunRequest q = run_request(vm, o, s, check_run_options(vm, o));
  // One process per rank: rank 0 shows progress, writes the trace and reports every rank's results.
  const bool reports = !q.process || q.process->rank == 0;
  std::optional<Progress> bar;
  if (reports) q.progress = &bar.emplace("run: generated tokens", q.gen_tokens, std::cerr, stderr_is_terminal());
  const auto result = executor::run_model(q);
  if (!reports) return kExitOk;
  bar->finish();
  if (!o.trace.empty()) write_file_atomic(o.trace, executor::routing_trace_json(result).dump() + "\n");
  emit(reports::run_report(result), o.common, out);
  return kExitOk;
}

}  // namespace moeplan::app
