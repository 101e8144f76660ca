// app/config_options: shared configuration options (see config_options.hpp).
#include "app/config_options.hpp"

#include <cmath>

#include "app/cli.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

void require_positive(const po::variables_map& vm, const char* name) {
  if (!vm.count(name)) return;
  const auto& v = vm[name].value();
  bool ok = true;
  if (const auto* i = boost::any_cast<std::int64_t>(&v)) ok = *i > 0;
  else if (const auto* n = boost::any_cast<int>(&v)) ok = *n > 0;
  else if (const auto* x = boost::any_cast<double>(&v)) ok = *x > 0 && std::isfinite(*x);  // "nan" and "inf" parse as doubles
  if (!ok) throw InputError(std::string("--") + name + " must be positive");
}

void add_config_options(po::options_description& d, ConfigOptions& o) {
  add_model_option(d, o.model_name);
  d.add_options()
      ("gpu", po::value<std::string>(&o.gpu_name)->default_value("h100-sxm"), "GPU name (moeplan gpus)")
      ("count", po::value<int>(&o.count)->default_value(8), "number of GPUs (= tp x dp x pp)")
      ("precision", po::value<std::string>(&o.precision_spec)->default_value("auto"),
       "weights: FORMAT[:POLICY], e.g. bf16, fp8, fp8:all-linear, nvfp4, mxfp4:experts, int4-awq, q4_k_m; "
       "auto = the checkpoint's own")
      ("tp", po::value<int>(&o.tp), "tensor parallel size (default: count / (pp x dp))")
      ("ep", po::value<int>(&o.ep)->default_value(1), "expert parallel size (divides tp x dp)")
      ("pp", po::value<int>(&o.pp)->default_value(1), "pipeline stages")
      ("dp", po::value<int>(&o.dp)->default_value(1), "attention data-parallel ranks (MoE with --ep)")
      ("host", po::value<std::string>(&o.host_name), "a CPU/unified-memory host instead of GPUs (moeplan gpus --hosts)")
      ("ram-gb", po::value<double>(&o.ram_gb), "a host with this much RAM (GB)")
      ("profile", po::value<std::string>(&o.profile),
       "price ops from a measured host profile (moeplan calibrate; host mode): predictions get error bars from its held-out residuals");
  add_kv_options(d, o.kv);
  add_engine_memory_options(d, o.engine_memory);
}

// --precisions: each resolved to the model family's usual policy (as moeplan memory --precision does); a precision
// named twice (after resolving) once.
std::vector<model::Precision> precision_list(const std::string& list, const model::ModelConfig& m,
                                             const model::PrecisionTable& table) {
  std::vector<model::Precision> out;
  for (const auto& spec : split_list(list)) {
    model::Precision p = model::resolve_precision(spec, m, table);
    bool seen = false;
    for (const auto& q : out) seen = seen || q.spec == p.spec;
    if (!seen) out.push_back(p);
  }
  if (out.empty()) throw InputError("--precisions '" + list + "' names no precision (e.g. bf16,fp8)");
  return out;
}

void add_host_flag_options(po::options_description& d, simulator::HostFlags& hf) {
  d.add_options()
      ("mem-bandwidth-gbps", po::value<double>(&hf.bandwidth_gbps), "host memory bandwidth in GB/s (overrides the host's)")
      ("host-tflops", po::value<double>(&hf.tflops), "host compute peak in TFLOP/s (overrides the host's)")
      ("host-cores", po::value<int>(&hf.cores),
       "host CPU cores (x the FP32 FLOP/cycle and clock in data/hosts.yaml); default: the host's, else the default server's");
}

gpu_db::HostSpec ram_gb_host(double ram_gb) {
  gpu_db::HostSpec h;
  h.name = "host with " + std::to_string(static_cast<long long>(ram_gb)) + " GB RAM";
  h.kind = "cpu";
  h.memory_bytes = ram_gb * 1e9;
  return h;
}

ResolvedConfig resolve_config(const ConfigOptions& o, const po::variables_map& vm, const gpu_db::Database& db) {
  const auto data = data_dir();
  ResolvedConfig c;
  c.model = model::load_model(o.model_name, data);
  c.precisions = std::make_shared<const model::PrecisionTable>(model::PrecisionTable::load(data / "precisions.yaml"));
  c.precision = model::resolve_precision(o.precision_spec, c.model, *c.precisions);
  c.kv_dtype = model::parse_kv_dtype(o.kv.dtype);
  c.kv_mode = parse_kv_mode(o.kv.mode);
  c.max_num_batched_tokens = o.engine_memory.max_batched;
  c.gpu_memory_utilization = o.engine_memory.utilization;

  c.host_mode = vm.count("host") || vm.count("ram-gb") || vm.count("profile");
  if (c.host_mode) {
    if (vm.count("host") && vm.count("ram-gb")) throw InputError("give --host or --ram-gb, not both");
    if (!vm["count"].defaulted() || vm.count("tp") || o.ep != 1 || o.pp != 1 || o.dp != 1)
      throw InputError("host mode (--host/--ram-gb/--profile) plans one host: drop --count, --tp, --ep, --pp and --dp");
    c.layout = {1, 1, 1, 1};
    if (vm.count("host")) {
      c.host = db.host(o.host_name);
      if (!c.host->profile.empty() && !vm.count("profile")) c.profile = std::make_shared<const simulator::HostProfile>(simulator::read_profile(data / c.host->profile));
    }
    if (vm.count("profile")) {
      if (vm.count("ram-gb")) throw InputError("give --profile or --ram-gb, not both (the profile knows the host's RAM)");
      c.profile = std::make_shared<const simulator::HostProfile>(simulator::read_profile(find_profile(o.profile)));
    }
    if (c.profile) {
      if (!c.host) {
        gpu_db::HostSpec h;
        h.name = c.profile->host;
        h.kind = "cpu";
        h.memory_bytes = c.profile->memory_bytes;
        h.mem_bandwidth_bytes_per_s = c.profile->triad_bytes_per_s;
        c.host = h;
      }
    } else if (vm.count("ram-gb")) {
      c.host = ram_gb_host(o.ram_gb);
    }
    return c;
  }
  c.gpu = &db.gpu(o.gpu_name);
  int tp = o.tp;
  if (!vm.count("tp")) {
    if (o.count % (o.pp * o.dp) != 0)
      throw InputError("--count " + std::to_string(o.count) + " is not a multiple of pp x dp = " + std::to_string(o.pp * o.dp));
    tp = o.count / (o.pp * o.dp);
  }
  if (tp * o.dp * o.pp != o.count)
    throw InputError("--count " + std::to_string(o.count) + " must equal tp x dp x pp = " + std::to_string(tp) + " x " +
                     std::to_string(o.dp) + " x " + std::to_string(o.pp) + " = " + std::to_string(tp * o.dp * o.pp));
  c.layout = {tp, o.ep, o.pp, o.dp};
  model::validate_layout(c.model, c.layout);
  return c;
}

void fill_simulate_request(simulator::SimulateRequest& q, const ResolvedConfig& c) {
  q.model = &c.model;
  q.precision = c.precision;
  q.layout = c.layout;
  q.kv_dtype = c.kv_dtype;
  q.kv_mode = c.kv_mode;
  q.limits.max_num_batched_tokens = c.max_num_batched_tokens;
  q.gpu_memory_utilization = c.gpu_memory_utilization;
}

simulator::MemoryRequest memory_request(const ResolvedConfig& c, std::int64_t context_tokens, std::int64_t concurrency) {
  simulator::SimulateRequest q;  // the device as simulate's memory request reads it
  fill_simulate_request(q, c);
  q.hardware.name = c.host_mode ? c.host->name : c.gpu->name;
  q.hardware.host = c.host_mode;
  q.hardware.memory_bytes = c.host_mode ? c.host->memory_bytes : c.gpu->memory_bytes;
  return simulator::memory_request(q, context_tokens, concurrency);
}

}  // namespace moeplan::app
