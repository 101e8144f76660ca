// `moeplan memory`: the VRAM (or host RAM) breakdown of one serving configuration.
#include <iostream>

#include "app/cli.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/precision.hpp"
#include "reports/reports.hpp"
#include "simulator/memory.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

namespace {
void require_positive(const po::variables_map& vm, const char* name) {
  if (!vm.count(name)) return;
  const auto& v = vm[name].value();
  bool ok = true;
  if (const auto* i = boost::any_cast<std::int64_t>(&v)) ok = *i > 0;
  else if (const auto* n = boost::any_cast<int>(&v)) ok = *n > 0;
  else if (const auto* x = boost::any_cast<double>(&v)) ok = *x > 0;
  if (!ok) throw InputError(std::string("--") + name + " must be positive");
}
}  // namespace

int cmd_memory(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string model_name, gpu_name, host_name, precision_spec, kv_dtype, kv_mode;
  int count = 0, tp = 0, ep = 1, pp = 1, dp = 1;
  std::int64_t context = 0, concurrency = 0, max_batched = 0;
  double utilization = 0, ram_gb = 0;
  po::options_description d("memory options");
  add_common_options(d, common);
  d.add_options()
      ("model", po::value<std::string>(&model_name)->default_value("llama4-maverick"), "built-in model or path to config.json")
      ("gpu", po::value<std::string>(&gpu_name)->default_value("h100-sxm"), "GPU name (moeplan gpus)")
      ("count", po::value<int>(&count)->default_value(8), "number of GPUs (= tp x dp x pp)")
      ("precision", po::value<std::string>(&precision_spec)->default_value("auto"),
       "weights: FORMAT[:POLICY], e.g. bf16, fp8, fp8:all-linear, nvfp4, mxfp4:experts, int4-awq, q4_k_m; "
       "auto = the checkpoint's own")
      ("kv-dtype", po::value<std::string>(&kv_dtype)->default_value("bf16"), "KV cache dtype: bf16, fp16, fp8")
      ("kv-mode", po::value<std::string>(&kv_mode)->default_value("model-aware"),
       "model-aware (chunked/sliding layers keep only their chunk/window) or full-length (every layer keeps all)")
      ("tp", po::value<int>(&tp), "tensor parallel size (default: count / (pp x dp))")
      ("ep", po::value<int>(&ep)->default_value(1), "expert parallel size (divides tp x dp)")
      ("pp", po::value<int>(&pp)->default_value(1), "pipeline stages")
      ("dp", po::value<int>(&dp)->default_value(1), "attention data-parallel ranks (MoE with --ep)")
      ("context", po::value<std::int64_t>(&context)->default_value(8192), "tokens of context per sequence")
      ("concurrency", po::value<std::int64_t>(&concurrency)->default_value(1), "sequences resident at once")
      ("max-num-batched-tokens", po::value<std::int64_t>(&max_batched)->default_value(8192),
       "peak tokens in one forward pass (TensorRT-LLM max_num_tokens default 8192)")
      ("gpu-memory-utilization", po::value<double>(&utilization)->default_value(0.90),
       "share of GPU memory the engine may use (vLLM default 0.90)")
      ("with-vision", "also load the vision encoder of multimodal checkpoints")
      ("host", po::value<std::string>(&host_name), "plan for a CPU/unified-memory host instead (moeplan gpus --hosts)")
      ("ram-gb", po::value<double>(&ram_gb), "plan for a host with this much RAM (GB)");
  po::variables_map vm;
  if (!parse("memory", "--model M --gpu G --count N --precision P [--tp --ep --pp --dp] --context C --concurrency B", args,
             d, vm, out))
    return kExitOk;
  for (const char* name : {"count", "tp", "ep", "pp", "dp", "context", "concurrency", "max-num-batched-tokens",
                           "gpu-memory-utilization", "ram-gb"})
    require_positive(vm, name);
  if (utilization > 1) throw InputError("--gpu-memory-utilization must be at most 1 (a fraction, e.g. 0.9)");

  const auto data = data_dir();
  const auto db = gpu_db::Database::load(data);
  const auto precisions = model::PrecisionTable::load(data / "precisions.yaml");
  const auto m = model::load_model(model_name, data);

  simulator::MemoryRequest q;
  q.model = &m;
  q.precision = model::resolve_precision(precision_spec, m, precisions);
  q.kv_dtype = model::parse_kv_dtype(kv_dtype);
  if (kv_mode == "model-aware") q.kv_mode = model::KvMode::model_aware;
  else if (kv_mode == "full-length") q.kv_mode = model::KvMode::full_length;
  else throw InputError("unknown --kv-mode '" + kv_mode + "' (use model-aware or full-length)");
  q.context_tokens = context;
  q.concurrency = concurrency;
  q.max_num_batched_tokens = max_batched;
  q.include_vision = vm.count("with-vision") > 0;
  q.overhead.gpu_memory_utilization = utilization;

  const bool host_mode = vm.count("host") || vm.count("ram-gb");
  if (host_mode) {
    if (vm.count("host") && vm.count("ram-gb")) throw InputError("give --host or --ram-gb, not both");
    if (!vm["count"].defaulted() || vm.count("tp") || ep != 1 || pp != 1 || dp != 1)
      throw InputError("host mode (--host/--ram-gb) plans one host: drop --count, --tp, --ep, --pp and --dp");
    q.host_mode = true;
    q.layout = {1, 1, 1, 1};
    if (vm.count("host")) {
      const auto& h = db.host(host_name);
      q.capacity_bytes = h.memory_bytes;
      q.device_name = h.name;
    } else {
      q.capacity_bytes = ram_gb * 1e9;
      q.device_name = "host with " + std::to_string(static_cast<long long>(ram_gb)) + " GB RAM";
    }
  } else {
    const auto& g = db.gpu(gpu_name);
    if (!vm.count("tp")) {
      if (count % (pp * dp) != 0)
        throw InputError("--count " + std::to_string(count) + " is not a multiple of pp x dp = " + std::to_string(pp * dp));
      tp = count / (pp * dp);
    }
    if (tp * dp * pp != count)
      throw InputError("--count " + std::to_string(count) + " must equal tp x dp x pp = " + std::to_string(tp) + " x " +
                       std::to_string(dp) + " x " + std::to_string(pp) + " = " + std::to_string(tp * dp * pp));
    q.layout = {tp, ep, pp, dp};
    q.capacity_bytes = g.memory_bytes;
    q.device_name = g.name;
  }
  const auto result = simulator::memory_breakdown(q);
  emit(reports::memory_report(q, result), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
