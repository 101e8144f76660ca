// `moeplan fit-matrix`: every GPU x precision, the smallest count that fits, its headroom and largest concurrency.
// `moeplan hosts`: per CPU / unified-memory host x precision the RAM needed, fit, recommended RAM and llama.cpp
// speeds, and one-GPU rows with the experts in host RAM.
// `moeplan claims`: the claims recorded in data/claims.yaml about a model against what its config implies.
#include <iostream>

#include "app/cli.hpp"
#include "app/config_options.hpp"
#include "app/plan_options.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/claims.hpp"
#include "reports/views_report.hpp"
#include "simulator/fit_matrix.hpp"
#include "simulator/gpu_profile.hpp"
#include "simulator/host_view.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

std::vector<model::Precision> fit_matrix_precisions(const model::ModelConfig& m, const model::PrecisionTable& table) {
  const model::Precision own = model::resolve_precision("auto", m, table);
  const std::string own_format = own.format ? own.format->name : "bf16";
  const std::string fp4 = own_format == "mxfp4" ? "mxfp4" : "nvfp4";
  return precision_list(join({"bf16", "fp8", fp4, "int4-awq", own.spec}, ","), m, table);
}

int cmd_fit_matrix(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string model_name, precisions, gpus;
  LoadOptions load;
  KvOptions kv;
  EngineMemoryOptions engine_memory;
  int max_gpus = 0;
  po::options_description d("fit-matrix options");
  add_common_options(d, common);
  add_model_option(d, model_name);
  add_load_options(d, load);
  d.add_options()
      ("precisions", po::value<std::string>(&precisions),
       "comma-separated precisions (default: bf16, fp8, nvfp4 (mxfp4 for mxfp4 checkpoints), int4-awq and the "
       "checkpoint's own; a bare format takes the model family's usual policy, as in moeplan memory)")
      ("gpus", po::value<std::string>(&gpus), "comma-separated GPU names (default: every GPU in data/gpus.yaml)")
      ("max-gpus", po::value<int>(&max_gpus)->default_value(256), "the largest GPU count tried");
  add_kv_options(d, kv);
  add_engine_memory_options(d, engine_memory);
  po::variables_map vm;
  const std::string usage =
      "--model M [--context C] [--concurrency B] [--precisions list] [--gpus list] [--format ...] [-o FILE]\n\n"
      "For each GPU x precision: the smallest GPU count whose memory per GPU (as moeplan memory computes it) holds "
      "the weights, the KV cache of B sequences of C tokens, activations and runtime overhead. Layout at a count: "
      "tp = count when it fits in one node (gpus_per_node in data/gpus.yaml) and divides the model; else the widest "
      "such tensor-parallel group x pipeline stages (across nodes beyond one); else tp = count across nodes.\n"
      "headroom at that count, " +
      simulator::headroom_bounds_text();
  if (!parse("fit-matrix", usage, args, d, vm, out)) return kExitOk;

  const auto data = data_dir();
  const auto db = gpu_db::Database::load(data);
  const model::ModelConfig m = model::load_model(model_name, data);
  const auto table = model::PrecisionTable::load(data / "precisions.yaml");

  simulator::FitMatrixRequest q;
  q.model = &m;
  q.precisions = vm.count("precisions") ? precision_list(precisions, m, table) : fit_matrix_precisions(m, table);
  if (vm.count("gpus")) {
    q.gpus = gpu_list(gpus, db);
  } else {
    for (const auto& g : db.gpus()) q.gpus.push_back(&g);
  }
  q.context_tokens = load.context;
  q.concurrency = load.concurrency;
  q.max_num_batched_tokens = engine_memory.max_batched;
  q.kv_dtype = model::parse_kv_dtype(kv.dtype);
  q.kv_mode = parse_kv_mode(kv.mode);
  q.gpu_memory_utilization = engine_memory.utilization;
  q.max_gpus = max_gpus;
  emit(reports::fit_matrix_report(q, simulator::fit_matrix(q)), common, out);
  return kExitOk;
}

int cmd_hosts(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string model_name, precisions, hosts, kv_dtype, kv_mode, offload_gpus, offload_host;
  LoadOptions load;
  std::int64_t output = 0;
  double ram_gb = 0, utilization = 0;
  simulator::HostFlags hf;
  po::options_description d("hosts options");
  add_common_options(d, common);
  add_model_option(d, model_name);
  d.add_options()
      ("precisions", po::value<std::string>(&precisions)->default_value("q4_k_m,q8_0,auto"),
       "comma-separated precisions (data/precisions.yaml; auto = the checkpoint's own); a bare format takes the model "
       "family's usual policy, as in moeplan memory")
      ("hosts", po::value<std::string>(&hosts), "comma-separated hosts (default: every host in data/hosts.yaml; none: only --ram-gb's)");
  add_load_options(d, load, "tokens of context per sequence (prompt + output)");
  d.add_options()
      ("output", po::value<std::int64_t>(&output)->default_value(128),
       "generated tokens per sequence (llama-bench's tg128); the prompt is context - output tokens")
      ("ram-gb", po::value<double>(&ram_gb), "add a host with this much RAM (GB; with --mem-bandwidth-gbps); it also holds the offloaded experts")
      ("offload-gpus", po::value<std::string>(&offload_gpus)->default_value("rtx-4090,rtx-5090"),
       "GPUs for the one-GPU rows with the routed experts in host RAM (none: no such rows)")
      ("offload-host", po::value<std::string>(&offload_host)->default_value("ddr5-desktop-2ch"),
       "host whose RAM holds the offloaded experts (as moeplan simulate --offload-host); --ram-gb's host when given");
  add_kv_dtype_option(d, kv_dtype, nullptr, "KV cache dtype: bf16, fp16, fp8 (default: llama.cpp's f16)");
  add_kv_mode_option(d, kv_mode);
  add_gpu_memory_utilization_option(d, utilization);
  add_host_flag_options(d, hf);
  po::variables_map vm;
  const std::string usage =
      "--model M [--precisions list] [--hosts list] [--context C] [--concurrency B] [--ram-gb X --mem-bandwidth-gbps Y] "
      "[--offload-gpus list] [--format ...] [-o FILE]\n\n"
      "For each CPU / unified-memory host x precision: the RAM needed for B sequences of C tokens (moeplan memory "
      "--host), whether it fits, the smallest standard RAM size that holds it with 5 % left to the OS, and decode and "
      "prompt tokens/s as moeplan simulate --engine llamacpp computes them; then one GPU with the routed experts in "
      "host RAM (moeplan simulate --offload-experts), GPU and host memory apart.";
  if (!parse("hosts", usage, args, d, vm, out)) return kExitOk;
  if (vm.count("ram-gb") && !vm.count("mem-bandwidth-gbps")) throw InputError("--ram-gb needs --mem-bandwidth-gbps too");
  if (!vm.count("ram-gb") && (vm.count("mem-bandwidth-gbps") || vm.count("host-tflops") || vm.count("host-cores")))
    throw InputError("--mem-bandwidth-gbps/--host-tflops/--host-cores describe the --ram-gb host: give --ram-gb too");

  const auto data = data_dir();
  const auto db = gpu_db::Database::load(data);
  const auto engines = gpu_db::EngineTable::load(data / "engines.yaml");
  const model::ModelConfig m = model::load_model(model_name, data);
  const auto table = model::PrecisionTable::load(data / "precisions.yaml");

  simulator::HostViewRequest q;
  q.model = &m;
  q.engine = &engines.host_default();
  q.precisions = precision_list(precisions, m, table);
  q.context_tokens = load.context;
  q.concurrency = load.concurrency;
  q.output_tokens = output;
  if (vm.count("kv-dtype")) q.kv_dtype = model::parse_kv_dtype(kv_dtype);
  q.kv_mode = parse_kv_mode(kv_mode);
  q.gpu_memory_utilization = utilization;
  q.ram_sizes = db.ram_sizes();
  const simulator::HostFlags none;
  if (!vm.count("hosts")) {
    for (const auto& h : db.hosts()) q.hosts.push_back(simulator::host_target(db, data, h, none));
  } else if (to_lower(hosts) != "none") {
    for (const auto& name : split_list(hosts)) q.hosts.push_back(simulator::host_target(db, data, db.host(name), none));
  }
  std::optional<simulator::HostTarget> user;
  if (vm.count("ram-gb")) {
    user = simulator::host_target(db, data, ram_gb_host(ram_gb), hf);
    q.hosts.push_back(*user);
  }
  if (q.hosts.empty()) throw InputError("--hosts none leaves no host: give --ram-gb or name hosts");
  if (to_lower(offload_gpus) != "none") {
    for (const auto& name : split_list(offload_gpus)) {
      const gpu_db::GpuSpec& g = db.gpu(name);
      engines.require_runs_on(*q.engine, g);
      simulator::Hardware hw = simulator::gpu_hardware(db, g);
      hw.gpu_profile = simulator::choose_gpu_profile(data, g.name, q.engine->name, "auto", nullptr);
      q.offload_gpus.push_back(hw);
    }
    if (user && !vm["offload-host"].defaulted()) throw InputError("give --offload-host or --ram-gb, not both (--ram-gb's host holds the experts)");
    simulator::HostTarget holder;
    holder.host = user ? user->host : db.host(offload_host);
    // Its CPU cores run the experts, as moeplan simulate --offload-host prices it.
    holder.hardware = simulator::llamacpp_host(db, holder.host, user ? hf : none, true, &holder.notes);
    q.offload_host = holder;
  }
  emit(reports::host_view_report(q, simulator::host_view(q)), common, out);
  return kExitOk;
}

int cmd_claims(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string model_name, claims_file;
  po::options_description d("claims options");
  add_common_options(d, common);
  add_model_option(d, model_name);
  d.add_options()
      ("claims-file", po::value<std::string>(&claims_file), "claims to check (default: data/claims.yaml)")
      ("quantities", "list the quantities a claim may name and how each is computed from the config");
  po::variables_map vm;
  const std::string usage =
      "--model M [--claims-file FILE] [--quantities] [--format ...] [-o FILE]\n\n"
      "Each claim in the claims file (model, source URL, date read, claim text, quantity, claimed value, reason; "
      "precision and bandwidth where the quantity needs them) "
      "against what the model's config.json implies: matches or differs, and the recorded reason.";
  if (!parse("claims", usage, args, d, vm, out)) return kExitOk;
  if (vm.count("quantities")) {
    emit(reports::claim_quantities_report(), common, out);
    return kExitOk;
  }
  const auto data = data_dir();
  const std::filesystem::path file = vm.count("claims-file") ? std::filesystem::path(claims_file) : data / "claims.yaml";
  const auto claims = model::load_claims(file, model::builtin_model_names(data));
  const model::ModelConfig m = model::load_model(model_name, data);
  const auto table = model::PrecisionTable::load(data / "precisions.yaml");
  emit(reports::claims_report(m, file.string(), model::check_claims(claims, m, table)), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
