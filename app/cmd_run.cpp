// `moeplan run`: execute the model on this machine (CPU, or one CUDA GPU) with real or seeded random weights, and
// time it.
#include <iostream>
#include <limits>

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

int cmd_run(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string model_name, weights, device, shape, trace, prompt, weights_out;
  std::uint64_t random_seed = 0, seed = 1;
  int threads = 0, cuda_device = 0, tp = 1, ep = 1, dp = 0, pp = 1;
  std::int64_t prompt_tokens = 0, gen_tokens = 0, batch = 0;
  std::int64_t layers = 0, experts = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, vocab = 0;
  float temperature = 0, top_p = 1;
  bool bf16_activations = false;
  po::options_description d("run options");
  add_common_options(d, common);
  add_model_option(d, model_name);
  d.add_options()
      ("weights", po::value<std::string>(&weights), "checkpoint directory (config.json + safetensors)")
      ("random-weights", po::value<std::uint64_t>(&random_seed), "write a seeded random checkpoint in the HF layout and run it")
      ("weights-out", po::value<std::string>(&weights_out),
       "where --random-weights writes (default: a temporary directory); a directory holding other files is refused")
      ("force", "--weights-out: write even into a directory holding files moeplan did not write (they may be replaced)")
      ("device", po::value<std::string>(&device)->default_value("cpu"), "cpu, or cuda (one GPU; a build with CUDA and a visible device)")
      ("cuda-device", po::value<int>(&cuda_device)->default_value(0), "--device cuda: which GPU (0 = the first visible)")
      ("threads", po::value<int>(&threads)->default_value(0), "CPU threads (0: all)")
      ("bf16-activations", po::bool_switch(&bf16_activations), "round matmul inputs to BF16 for BF16 weights and run them on AMX tiles where the CPU has them (PyTorch bf16 precision; default fp32)")
      ("tp", po::value<int>(&tp)->default_value(1), "tensor-parallel ranks per attention replica (heads, MLP columns, vocabulary)")
      ("dp", po::value<int>(&dp), "attention data-parallel replicas of --tp ranks each, serving their own sequences (default: --ep when --tp is 1, else 1)")
      ("ep", po::value<int>(&ep)->default_value(1), "expert-parallel groups over all tp * dp ranks: routed experts split by id, each expert's intermediate tp * dp / ep ways")
      ("pp", po::value<int>(&pp)->default_value(1), "pipeline stages of tp * dp ranks each, layers split evenly (no micro-batches)")
      ("prompt-tokens", po::value<std::int64_t>(&prompt_tokens)->default_value(16), "prompt length (seeded random ids)")
      ("prompt", po::value<std::string>(&prompt), "explicit prompt ids, comma-separated (every sequence)")
      ("gen-tokens", po::value<std::int64_t>(&gen_tokens)->default_value(16), "tokens to generate per sequence")
      ("batch", po::value<std::int64_t>(&batch)->default_value(1), "sequences")
      ("temperature", po::value<float>(&temperature)->default_value(0), "0 = greedy")
      ("top-p", po::value<float>(&top_p)->default_value(1), "nucleus sampling mass")
      ("seed", po::value<std::uint64_t>(&seed)->default_value(1), "seed for prompts and sampling")
      ("shape", po::value<std::string>(&shape), "shrink the config: KEY=N,... (" "see --layers etc.)")
      ("layers", po::value<std::int64_t>(&layers), "override num_hidden_layers (keeps the layer pattern)")
      ("experts", po::value<std::int64_t>(&experts), "override routed experts")
      ("hidden", po::value<std::int64_t>(&hidden), "override hidden size")
      ("intermediate", po::value<std::int64_t>(&intermediate), "override expert and dense intermediate sizes")
      ("heads", po::value<std::int64_t>(&heads), "override query heads")
      ("kv-heads", po::value<std::int64_t>(&kv_heads), "override KV heads")
      ("vocab", po::value<std::int64_t>(&vocab), "override vocabulary size")
      ("trace-routing", po::value<std::string>(&trace), "write the experts chosen per token and MoE layer (JSON)");
  po::variables_map vm;
  if (!parse("run",
             "--model M (--weights DIR | --random-weights SEED) --device cpu|cuda [--threads N] [--bf16-activations] --prompt-tokens L "
             "--gen-tokens L --batch B [--tp N --dp D --ep M --pp P] [--layers --experts --hidden --intermediate --heads --kv-heads --vocab]",
             args, d, vm, out))
    return kExitOk;
  for (const char* name : {"prompt-tokens", "batch", "tp", "ep", "dp", "pp"}) require_positive(vm, name);
  if (gen_tokens < 0) throw InputError("--gen-tokens must be 0 or more");
  const executor::DeviceKind device_kind = executor::select_device(device);
  if (device_kind == executor::DeviceKind::cpu) refuse_given(vm, {"cuda-device"}, "run --device cuda");
  if (vm.count("weights") == vm.count("random-weights"))
    throw InputError("give --weights DIR or --random-weights SEED (one of them)");
  if (!(temperature >= 0) || !(top_p > 0 && top_p <= 1)) throw InputError("--temperature must be >= 0 and --top-p in (0, 1]");

  executor::RunRequest q;
  std::filesystem::path config_path;
  if (vm.count("weights")) {
    q.weights_dir = weights;
    config_path = std::filesystem::path(weights) / "config.json";
  } else {
    q.random_seed = random_seed;
    q.weights_out = weights_out;
    q.overwrite_weights_out = vm.count("force") > 0;
    const auto m = model::load_model(model_name, data_dir());
    config_path = m.source;
  }
  nlohmann::json config = parse_json_file(config_path);
  model::ShapeOverrides o = vm.count("shape") ? model::parse_shape_overrides(shape) : model::ShapeOverrides{};
  if (vm.count("layers")) o.layers = layers;
  if (vm.count("experts")) o.experts = experts;
  if (vm.count("hidden")) o.hidden = hidden;
  if (vm.count("intermediate")) o.intermediate = intermediate;
  if (vm.count("heads")) o.heads = heads;
  if (vm.count("kv-heads")) o.kv_heads = kv_heads;
  if (vm.count("vocab")) o.vocab = vocab;
  if (!o.empty()) {
    if (vm.count("weights")) throw InputError("shape overrides apply to --random-weights only (a checkpoint has its own shapes)");
    config = model::apply_shape_overrides(config, o, config_path.string());
  }
  q.config = config;
  q.name = vm.count("weights") ? std::filesystem::path(weights).filename().string() : model_name;
  q.threads = threads;
  q.device = device_kind;
  q.cuda_device = cuda_device;
  q.bf16_activations = bf16_activations;
  // dp 0 when not given; the layout is checked against the model before any weights are written
  q.layout = model::ParallelLayout{.tp = tp, .ep = ep, .pp = pp, .dp = dp};
  q.batch = batch;
  q.prompt_tokens = prompt_tokens;
  q.gen_tokens = gen_tokens;
  q.temperature = temperature;
  q.top_p = top_p;
  q.seed = seed;
  if (vm.count("prompt")) {
    for (const auto& item : split_list(prompt)) {
      const std::optional<std::int64_t> id = parse_integer(item);
      if (!id || *id < 0 || *id > std::numeric_limits<int>::max())
        throw InputError("--prompt '" + printable(prompt) + "': use comma-separated token ids (whole numbers from 0)");
      q.prompt.push_back(static_cast<int>(*id));
    }
    if (q.prompt.empty()) throw InputError("--prompt is empty: give comma-separated token ids");
  }
  if (vm.count("force") && !vm.count("weights-out")) throw InputError("--force applies to --weights-out only");
  Progress bar("run: generated tokens", q.gen_tokens, std::cerr, stderr_is_terminal());
  q.progress = &bar;
  const auto result = executor::run_model(q);
  bar.finish();
  if (!trace.empty()) write_file_atomic(trace, executor::routing_trace_json(result).dump() + "\n");
  emit(reports::run_report(result), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
