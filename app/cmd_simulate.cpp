// `moeplan simulate`: predict TTFT, TPOT, ITL, E2E and throughput of one serving configuration under a load.
#include <filesystem>
#include <iostream>

#include "app/cli.hpp"
#include "app/config_options.hpp"
#include "app/limits.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "reports/reports.hpp"
#include "simulator/published.hpp"
#include "simulator/engine.hpp"
#include "simulator/simulate.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

int cmd_simulate(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  ConfigOptions o;
  std::int64_t input = 0, output = 0, num_requests = 0, max_batch = 0, static_batch = 0;
  std::string concurrency, internode, loads_file, offload_host, engine_name, gpu_profile = "auto";
  double rate = 0, zipf = 0;
  simulator::HostFlags hf;
  int prefill_replicas = 0, gpu_layers = -1, nics_per_node = 0;
  std::uint64_t seed = 1;
  po::options_description d("simulate options");
  add_common_options(d, common);
  add_config_options(d, o);
  d.add_options()
      ("input", po::value<std::int64_t>(&input)->default_value(1000), "prompt tokens per request")
      ("output", po::value<std::int64_t>(&output)->default_value(1000), "output tokens per request")
      ("concurrency", po::value<std::string>(&concurrency)->default_value("max"),
       "max (all requests queued: offline throughput) or N (closed loop: N requests in flight)")
      ("request-rate", po::value<double>(&rate), "open-loop Poisson arrivals, requests per second (instead of --concurrency)")
      ("static-batch", po::value<std::int64_t>(&static_batch),
       "static batching of B requests (engines without in-flight batching), instead of --concurrency")
      ("num-requests", po::value<std::int64_t>(&num_requests)->default_value(0),
       "requests to simulate (0: 1000, or enough to fill the batch four times under max load)")
      ("max-batch", po::value<std::int64_t>(&max_batch)->default_value(1024), "sequences per attention group (engine's max batch size)")
      ("breakdown", "add per-op tables for one prefill and one decode step")
      ("zipf", po::value<double>(&zipf), "skewed router: expert popularity ~ rank^-ALPHA (default uniform)")
      ("expert-loads", po::value<std::string>(&loads_file), "measured per-layer expert loads (JSON, docs/simulator.md)")
      ("internode", po::value<std::string>(&internode)->default_value("infiniband-ndr"), "inter-node link (data/links.yaml)")
      ("nics-per-node", po::value<int>(&nics_per_node),
       "NIC ports of --internode per node (default from data/network.yaml: one per GPU on SXM/OAM boards, one per 2 GPUs "
       "in PCIe servers)")
      ("disaggregate", po::value<int>(&prefill_replicas)->default_value(0),
       "prefill/decode disaggregation: this many prefill replicas of the same layout feed one decode replica")
      ("offload-experts", "one GPU: routed experts stay in host RAM and run on the CPU (llama.cpp -ot exps=CPU)")
      ("gpu-layers", po::value<int>(&gpu_layers), "one GPU: layers [0, N) on the GPU, the rest on the host (llama.cpp -ngl N)")
      ("offload-host", po::value<std::string>(&offload_host)->default_value("ddr5-desktop-2ch"), "host whose RAM holds offloaded weights")
      ("gpu-profile", po::value<std::string>(&gpu_profile)->default_value("auto"),
       "measured kernel curves that price ops: auto (data/gpu_profiles/<gpu>/<engine>.prof when shipped, for --engine), "
       "none, or a file")
      ("seed", po::value<std::uint64_t>(&seed)->default_value(1), "seed for Poisson arrivals")
      ("engine", po::value<std::string>(&engine_name)->default_value("generic"),
       "serving engine whose defaults apply (data/engines.yaml): trtllm, vllm, sglang, llamacpp, generic (the plain "
       "roofline), or default (the vendor's: NVIDIA trtllm, AMD vllm, hosts llamacpp)");
  add_host_flag_options(d, hf);
  po::variables_map vm;
  if (!parse("simulate",
             "--model M --gpu G --count N --precision P [--tp --ep --dp --pp] --input L --output L "
             "(--concurrency N|max | --request-rate R) [--breakdown]",
             args, d, vm, out))
    return kExitOk;
  for (const char* name : {"input", "output", "max-batch", "request-rate", "static-batch", "zipf", "mem-bandwidth-gbps", "host-tflops",
                           "host-cores", "nics-per-node"})
    require_positive(vm, name);
  if (num_requests < 0) throw InputError("--num-requests must be 0 (automatic) or positive");
  if (prefill_replicas < 0) throw InputError("--disaggregate must be 0 (off) or a number of prefill replicas");
  if (vm.count("gpu-layers") && gpu_layers < 0) throw InputError("--gpu-layers must be 0 or more");

  simulator::Workload w;
  w.input_tokens = input;
  w.output_tokens = output;
  w.num_requests = num_requests;
  w.seed = seed;
  if (vm.count("request-rate") + vm.count("static-batch") > 1 ||
      (!vm["concurrency"].defaulted() && (vm.count("request-rate") || vm.count("static-batch"))))
    throw InputError("give one of --concurrency, --request-rate and --static-batch");
  if (vm.count("static-batch")) {
    w.mode = simulator::LoadMode::static_batch;
    w.concurrency = static_batch;
  } else if (vm.count("request-rate")) {
    w.mode = simulator::LoadMode::poisson;
    w.request_rate_per_s = rate;
  } else if (to_lower(concurrency) == "max") {
    w.mode = simulator::LoadMode::max;
  } else {
    std::size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(concurrency, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != concurrency.size() || n < 1)
      throw InputError("--concurrency '" + printable(concurrency) + "': use a positive number of requests in flight, or max");
    check_option_bound("concurrency", static_cast<double>(n));
    w.mode = simulator::LoadMode::closed;
    w.concurrency = n;
  }

  const auto db = gpu_db::Database::load(data_dir());
  const ResolvedConfig c = resolve_config(o, vm, db);
  // The engine: its step and kernel overheads, and its max batch, tokens per step and KV dtype where not given.
  const auto engines = gpu_db::EngineTable::load(data_dir() / "engines.yaml");
  const std::string want = to_lower(engine_name);
  const gpu_db::EngineSpec* engine = nullptr;
  if (want == "default" || want == "auto") {
    engine = c.host_mode ? &engines.host_default() : &engines.vendor_default(*c.gpu);
  } else {
    engine = &engines.engine(engine_name);
    if (c.host_mode) engines.require_runs_on_hosts(*engine);
    else engines.require_runs_on(*engine, *c.gpu);
  }
  simulator::SimulateRequest q;
  q.model = &c.model;
  q.precision = c.precision;
  q.layout = c.layout;
  q.kv_dtype = c.kv_dtype;
  q.kv_mode = c.kv_mode;
  q.limits.max_batch = max_batch;
  q.limits.max_num_batched_tokens = o.max_batched;
  q.workload = w;
  q.gpu_memory_utilization = o.utilization;
  q.prefill_replicas = prefill_replicas;
  q.with_breakdown = vm.count("breakdown") > 0;
  q.routing.zipf_alpha = zipf;
  q.routing.loads_file = loads_file;
  if ((zipf > 0 || !loads_file.empty()) && !c.model.is_moe())
    throw InputError("--zipf/--expert-loads describe a router; " + c.model.name + " is a dense model");
  std::vector<std::string> notes;
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
      q.hardware = simulator::llamacpp_host(db, *c.host, hf, false, &notes);
      device = c.host->name;
    }
  } else {
    q.hardware = simulator::gpu_hardware(db, *c.gpu, internode, nics_per_node);
    // The engine's kernel tables; generic keeps the TensorRT-LLM tables simulate used before engines.
    q.hardware.gpu_profile = simulator::choose_gpu_profile(data_dir(), c.gpu->name,
                                                           engine->generic() ? "trtllm" : engine->name, gpu_profile, &notes);
    device = std::to_string(c.layout.gpus()) + " x " + c.gpu->name;
    q.offload.experts_on_host = vm.count("offload-experts") > 0;
    if (vm.count("gpu-layers")) q.offload.gpu_layers = gpu_layers;
    if (q.offload.experts_on_host && !c.model.is_moe())
      throw InputError("--offload-experts: " + c.model.name + " has no routed experts (use --gpu-layers)");
    if (q.offload.active()) {
      q.offload_host = simulator::llamacpp_host(db, db.host(offload_host), hf, true, &notes);
      device += " + " + offload_host + " RAM";
    } else if (vm.count("mem-bandwidth-gbps") || vm.count("host-tflops") || vm.count("host-cores")) {
      throw InputError("--mem-bandwidth-gbps/--host-tflops/--host-cores describe a host: use them with --host, --ram-gb or offloading");
    }
  }
  if (c.host_mode && c.host->mem_bandwidth_bytes_per_s <= 0 && hf.bandwidth_gbps <= 0)
    throw InputError("--ram-gb needs --mem-bandwidth-gbps too");

  simulator::EngineChoices given;
  given.max_batch = !vm["max-batch"].defaulted();
  given.max_num_batched_tokens = !vm["max-num-batched-tokens"].defaulted();
  given.kv_dtype = !vm["kv-dtype"].defaulted();
  given.kv_mode = !vm["kv-mode"].defaulted();
  simulator::apply_engine(q, *engine, given);

  const auto result = simulator::simulate(q);
  reports::SimulateSummary s{c.model.name, device, c.precision.spec, model::kv_dtype_name(q.kv_dtype), c.layout, w, c.profile,
                                c.host_mode, {}, "", "", {}};
  if (!c.host_mode) {
    s.engine = engine->name;
    s.network = simulator::network_assumption(q.hardware, c.layout.gpus(), vm.count("nics-per-node") > 0);
    // Outside the published set's range: the prediction extrapolates (docs/validation.md "What the set covers").
    const auto points = data_dir() / "validation" / "public_points.yaml";
    if (std::filesystem::exists(points))
      s.beyond_validated = simulator::beyond_validated(simulator::validated_range(simulator::load_published(points), db),
                                                       *c.gpu, c.layout.gpus(), c.layout);
    const auto bars = data_dir() / "validation" / "error_bars.yaml";
    if (std::filesystem::exists(bars)) s.published_bars = simulator::load_error_bars(bars);
  }
  auto report = reports::simulate_report(s, result);
  for (const auto& n : notes) {
    report.notes.push_back(n);
    report.json["assumptions"].push_back(n);  // the host's figures and where they come from, for JSON readers too
  }
  emit(report, common, out);
  return kExitOk;
}

}  // namespace moeplan::app
