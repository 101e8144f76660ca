// `moeplan simulate`: predict TTFT, TPOT, ITL, E2E and throughput of one serving configuration under a load.
#include <filesystem>
#include <iostream>
#include <optional>

#include "app/cli.hpp"
#include "app/config_options.hpp"
#include "app/limits.hpp"
#include "app/option_groups.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/numeric.hpp"
#include "common/text.hpp"
#include "reports/simulate_report.hpp"
#include "simulator/engine.hpp"
#include "simulator/published.hpp"
#include "simulator/simulate.hpp"
#include "simulator/trtllm_bench.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

namespace {

// simulate's own options, beside the serving configuration (config_options.hpp).
struct SimulateOptions {
  std::int64_t input = 0, output = 0, num_requests = 0, max_batch = 0, static_batch = 0;
  std::string concurrency, internode, loads_file, offload_host, engine_name, gpu_profile = "auto", batch_settings,
      graph_batches;
  double rate = 0, zipf = 0;
  simulator::HostFlags hf;
  int prefill_replicas = 0, gpu_layers = -1, nics_per_node = 0;
  std::uint64_t seed = 1;
};

void add_simulate_options(po::options_description& d, SimulateOptions& o) {
  d.add_options()
      ("input", po::value<std::int64_t>(&o.input)->default_value(1000), "prompt tokens per request")
      ("output", po::value<std::int64_t>(&o.output)->default_value(1000), "output tokens per request")
      ("concurrency", po::value<std::string>(&o.concurrency)->default_value("max"),
       "max (all requests queued: offline throughput) or N (closed loop: N requests in flight)")
      ("request-rate", po::value<double>(&o.rate), "open-loop Poisson arrivals, requests per second (instead of --concurrency)")
      ("static-batch", po::value<std::int64_t>(&o.static_batch),
       "static batching of B requests (engines without in-flight batching), instead of --concurrency")
      ("num-requests", po::value<std::int64_t>(&o.num_requests)->default_value(0),
       "requests to simulate (0: 1000, or enough to fill the batch four times under max load)")
      ("max-batch", po::value<std::int64_t>(&o.max_batch)->default_value(1024), "sequences per attention group (engine's max batch size)")
      ("batch-settings", po::value<std::string>(&o.batch_settings)->default_value("fixed"),
       "fixed (--max-batch / --max-num-batched-tokens or the engine's defaults) or trtllm-bench (with --engine trtllm: "
       "the max batch and tokens per step trtllm-bench throughput picks from the checkpoint, GPU memory and lengths)")
      ("cuda-graph-batch-sizes", po::value<std::string>(&o.graph_batches),
       "N,N,...: decode-only steps run as CUDA graphs padded up to the next of these batch sizes (TensorRT-LLM "
       "cuda_graph_config with enable_padding: true), or none; default: the engine's (data/engines.yaml)")
      ("breakdown", "add per-op tables for one prefill and one decode step")
      ("zipf", po::value<double>(&o.zipf), "skewed router: expert popularity ~ rank^-ALPHA (default uniform)")
      ("expert-loads", po::value<std::string>(&o.loads_file), "measured per-layer expert loads (JSON, docs/simulator.md)")
      ("internode", po::value<std::string>(&o.internode)->default_value("infiniband-ndr"), "inter-node link (data/links.yaml)")
      ("nics-per-node", po::value<int>(&o.nics_per_node),
       "NIC ports of --internode per node (default from data/network.yaml: one per GPU on SXM/OAM boards, one per 2 GPUs "
       "in PCIe servers)")
      ("disaggregate", po::value<int>(&o.prefill_replicas)->default_value(0),
       "prefill/decode disaggregation: this many prefill replicas of the same layout feed one decode replica")
      ("offload-experts", "one GPU: routed experts stay in host RAM and run on the CPU (llama.cpp -ot exps=CPU)")
      ("gpu-layers", po::value<int>(&o.gpu_layers), "one GPU: layers [0, N) on the GPU, the rest on the host (llama.cpp -ngl N)")
      ("offload-host", po::value<std::string>(&o.offload_host)->default_value("ddr5-desktop-2ch"), "host whose RAM holds offloaded weights")
      ("gpu-profile", po::value<std::string>(&o.gpu_profile)->default_value("auto"),
       "measured kernel curves that price ops: auto (data/gpu_profiles/<gpu>/<engine>.prof when shipped, for --engine), "
       "none, or a file")
      ("seed", po::value<std::uint64_t>(&o.seed)->default_value(1), "seed for Poisson arrivals")
      ("engine", po::value<std::string>(&o.engine_name)->default_value("generic"),
       "serving engine whose defaults apply (data/engines.yaml): trtllm, vllm, sglang, llamacpp, generic (the plain "
       "roofline), or default (the vendor's: NVIDIA trtllm, AMD vllm, hosts llamacpp)");
  add_host_flag_options(d, o.hf);
}

// --cuda-graph-batch-sizes: "none", or ascending batch sizes separated by commas.
std::vector<std::int64_t> graph_batch_sizes(const std::string& text) {
  const std::string name = "--cuda-graph-batch-sizes '" + printable(text) + "'";
  if (to_lower(text) == "none") return {};
  std::vector<std::int64_t> sizes;
  for (const std::string& item : split_list(text)) {
    const std::optional<std::int64_t> v = parse_integer(item);
    if (!v || *v < 1 || *v > 1000000)
      throw InputError(name + ": use batch sizes from 1 to 1,000,000 separated by commas, or none");
    sizes.push_back(*v);
  }
  if (sizes.empty()) throw InputError(name + ": use batch sizes separated by commas, or none");
  if (!positive_ascending(sizes)) throw InputError(name + ": list the sizes in ascending order");
  return sizes;
}

// The load: --concurrency N|max, --request-rate R or --static-batch B (one of them), and the request shape.
simulator::Workload workload(const SimulateOptions& o, const po::variables_map& vm) {
  simulator::Workload w;
  w.input_tokens = o.input;
  w.output_tokens = o.output;
  w.num_requests = o.num_requests;
  w.seed = o.seed;
  if (vm.count("request-rate") + vm.count("static-batch") > 1 ||
      (!vm["concurrency"].defaulted() && (vm.count("request-rate") || vm.count("static-batch"))))
    throw InputError("give one of --concurrency, --request-rate and --static-batch");
  if (vm.count("static-batch")) {
    w.mode = simulator::LoadMode::static_batch;
    w.concurrency = o.static_batch;
  } else if (vm.count("request-rate")) {
    w.mode = simulator::LoadMode::poisson;
    w.request_rate_per_s = o.rate;
  } else if (to_lower(o.concurrency) == "max") {
    w.mode = simulator::LoadMode::max;
  } else {
    const std::optional<std::int64_t> n = parse_integer(o.concurrency);
    if (!n || *n < 1)
      throw InputError("--concurrency '" + printable(o.concurrency) + "': use a positive number of requests in flight, or max");
    check_option_bound("concurrency", static_cast<double>(*n));
    w.mode = simulator::LoadMode::closed;
    w.concurrency = *n;
  }
  return w;
}

// The engine whose step and kernel overheads apply, and its max batch, tokens per step and KV dtype where not given:
// default (or auto) picks the vendor's, or the hosts' in host mode; a named one must run on the device.
const gpu_db::EngineSpec& choose_engine(const gpu_db::EngineTable& engines, const ResolvedConfig& c, const std::string& name) {
  const std::string want = to_lower(name);
  if (want == "default" || want == "auto") return c.host_mode ? engines.host_default() : engines.vendor_default(*c.gpu);
  const gpu_db::EngineSpec& engine = engines.engine(name);
  if (c.host_mode) engines.require_runs_on_hosts(engine);
  else engines.require_runs_on(engine, *c.gpu);
  return engine;
}

// The hardware that prices the request: a measured host profile or a host's datasheet in host mode; otherwise the
// GPUs with the engine's kernel tables, and the host RAM that offloaded weights run from. Returns the device's name;
// `notes` receives where each figure came from.
std::string set_hardware(simulator::SimulateRequest& q, const ResolvedConfig& c, const SimulateOptions& o,
                         const po::variables_map& vm, const gpu_db::Database& db, const gpu_db::EngineSpec& engine,
                         std::vector<std::string>& notes) {
  std::string device;
  if (c.host_mode) {
    if (vm.count("offload-experts") || vm.count("gpu-layers"))
      throw InputError("--offload-experts/--gpu-layers need a GPU; in host mode everything already runs on the host");
    if (c.profile) {
      if (vm.count("mem-bandwidth-gbps") || vm.count("host-tflops") || vm.count("host-cores"))
        throw InputError("--mem-bandwidth-gbps/--host-tflops/--host-cores: a measured profile already gives the host's rates");
      q.hardware = simulator::profile_hardware(c.profile);
      device = c.host->name + " (profile " + c.profile->file.string() + ", " + c.profile->date + ")";
      if (const std::string warn = simulator::profile_mismatch(*c.profile, 0); !warn.empty()) notes.push_back("warning: " + warn);
    } else {
      q.hardware = simulator::llamacpp_host(db, *c.host, o.hf, false, &notes);
      device = c.host->name;
    }
  } else {
    q.hardware = simulator::gpu_hardware(db, *c.gpu, o.internode, o.nics_per_node);
    // The engine's kernel tables; generic prices from the TensorRT-LLM tables.
    q.hardware.gpu_profile = simulator::choose_gpu_profile(data_dir(), c.gpu->name,
                                                           engine.generic() ? "trtllm" : engine.name, o.gpu_profile, &notes);
    device = std::to_string(c.layout.gpus()) + " x " + c.gpu->name;
    q.offload.experts_on_host = vm.count("offload-experts") > 0;
    if (vm.count("gpu-layers")) q.offload.gpu_layers = o.gpu_layers;
    if (q.offload.experts_on_host && !c.model.is_moe())
      throw InputError("--offload-experts: " + c.model.name + " has no routed experts (use --gpu-layers)");
    if (q.offload.active()) {
      q.offload_host = simulator::llamacpp_host(db, db.host(o.offload_host), o.hf, true, &notes);
      device += " + " + o.offload_host + " RAM";
    } else if (vm.count("mem-bandwidth-gbps") || vm.count("host-tflops") || vm.count("host-cores")) {
      throw InputError("--mem-bandwidth-gbps/--host-tflops/--host-cores describe a host: use them with --host, --ram-gb or offloading");
    }
  }
  if (c.host_mode && c.host->mem_bandwidth_bytes_per_s <= 0 && o.hf.bandwidth_gbps <= 0)
    throw InputError("--ram-gb needs --mem-bandwidth-gbps too");
  return device;
}

// What the report names besides the result: the configuration, and for GPUs the engine, the network, whether the
// configuration lies beyond the published set and that set's error groups (docs/validation.md).
reports::SimulateSummary summary(const ResolvedConfig& c, const simulator::SimulateRequest& q, const std::string& device,
                                 const gpu_db::EngineSpec& engine, const po::variables_map& vm, const gpu_db::Database& db) {
  reports::SimulateSummary s{c.model.name, device, c.precision.spec, model::kv_dtype_name(q.kv_dtype), c.layout, q.workload,
                             c.profile, c.host_mode, {}, "", "", {}};
  if (!c.host_mode) {
    s.engine = engine.name;
    s.network = simulator::network_assumption(q.hardware, c.layout.gpus(), vm.count("nics-per-node") > 0);
    // Outside the published set's range: the prediction extrapolates (docs/validation.md "What the set covers").
    const auto points = data_dir() / "validation" / "public_points.yaml";
    if (std::filesystem::exists(points))
      s.beyond_validated = simulator::beyond_validated(simulator::validated_range(simulator::load_published(points), db),
                                                       *c.gpu, c.layout.gpus(), c.layout);
    const auto bars = data_dir() / "validation" / "error_bars.yaml";
    if (std::filesystem::exists(bars)) s.published_bars = simulator::load_error_bars(bars);
  }
  return s;
}

// --batch-settings trtllm-bench: the max batch and tokens per step trtllm-bench would pick for this run (set in q);
// fixed: nothing changes.
std::optional<simulator::TrtllmBenchSettings> batch_settings(simulator::SimulateRequest& q, const ResolvedConfig& c,
                                                             const SimulateOptions& o, const gpu_db::EngineSpec& engine,
                                                             const simulator::EngineChoices& given) {
  const std::string want = to_lower(o.batch_settings);
  if (want == "fixed") return std::nullopt;
  if (want != "trtllm-bench")
    throw InputError("--batch-settings '" + printable(o.batch_settings) + "': use fixed or trtllm-bench");
  if (c.host_mode) throw InputError("--batch-settings trtllm-bench: trtllm-bench runs on GPUs; give --gpu");
  if (engine.bench_batch_settings != "trtllm-bench")
    throw InputError("--batch-settings trtllm-bench: use it with --engine trtllm (engine '" + engine.name +
                     "' has no trtllm-bench)");
  if (given.max_batch || given.max_num_batched_tokens)
    throw InputError("--batch-settings trtllm-bench picks the max batch and tokens per step: leave out --max-batch and "
                     "--max-num-batched-tokens");
  return simulator::apply_trtllm_bench(q, *c.gpu, engine.max_batch, engine.max_num_batched_tokens, engine.chunked_prefill);
}

}  // namespace

int cmd_simulate(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  ConfigOptions c_options;
  SimulateOptions o;
  po::options_description d("simulate options");
  add_common_options(d, common);
  add_config_options(d, c_options);
  add_simulate_options(d, o);
  po::variables_map vm;
  if (!parse("simulate",
             "--model M --gpu G --count N --precision P [--tp --ep --dp --pp] --input L --output L "
             "(--concurrency N|max | --request-rate R) [--breakdown]",
             args, d, vm, out))
    return kExitOk;
  const simulator::Workload w = workload(o, vm);

  const auto db = gpu_db::Database::load(data_dir());
  const ResolvedConfig c = resolve_config(c_options, vm, db);
  const auto engines = gpu_db::EngineTable::load(data_dir() / "engines.yaml");
  const gpu_db::EngineSpec& engine = choose_engine(engines, c, o.engine_name);
  simulator::SimulateRequest q;
  fill_simulate_request(q, c);
  q.limits.max_batch = o.max_batch;
  q.workload = w;
  q.prefill_replicas = o.prefill_replicas;
  q.with_breakdown = vm.count("breakdown") > 0;
  q.routing.zipf_alpha = o.zipf;
  q.routing.loads_file = o.loads_file;
  if ((o.zipf > 0 || !o.loads_file.empty()) && !c.model.is_moe())
    throw InputError("--zipf/--expert-loads describe a router; " + c.model.name + " is a dense model");
  std::vector<std::string> notes;
  const std::string device = set_hardware(q, c, o, vm, db, engine, notes);

  simulator::EngineChoices given;
  given.max_batch = !vm["max-batch"].defaulted();
  given.max_num_batched_tokens = !vm["max-num-batched-tokens"].defaulted();
  given.kv_dtype = !vm["kv-dtype"].defaulted();
  given.kv_mode = !vm["kv-mode"].defaulted();
  given.graph_batches = vm.count("cuda-graph-batch-sizes") > 0;
  simulator::apply_engine(q, engine, given);
  const std::optional<simulator::TrtllmBenchSettings> bench = batch_settings(q, c, o, engine, given);
  if (given.graph_batches) q.limits.graph_padded_batches = graph_batch_sizes(o.graph_batches);

  const auto result = simulator::simulate(q);
  auto report = reports::simulate_report(summary(c, q, device, engine, vm, db), result);
  if (bench) {
    report.header.push_back("batch settings: " + bench->reason + ", per attention-DP rank (docs/simulator.md \"Engines\")");
    report.json["batch_settings"] = {{"source", "trtllm-bench"}, {"max_batch", bench->max_batch},
                                     {"max_num_tokens", bench->max_num_tokens}, {"tuned", bench->tuned},
                                     {"quant_algo", bench->quant_algo}, {"reason", bench->reason}};
  }
  for (const auto& n : notes) {
    report.notes.push_back(n);
    report.json["assumptions"].push_back(n);  // the host's figures and where they come from, for JSON readers too
  }
  emit(report, common, out);
  return kExitOk;
}

}  // namespace moeplan::app
