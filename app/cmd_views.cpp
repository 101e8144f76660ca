// `moeplan fit-matrix`: every GPU x precision, the smallest count that fits, its headroom and largest concurrency.
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
#include "reports/reports.hpp"
#include "simulator/fit_matrix.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

std::vector<model::Precision> fit_matrix_precisions(const model::ModelConfig& m, const model::PrecisionTable& table) {
  const model::Precision own = model::resolve_precision("auto", m, table);
  const std::string own_format = own.format ? own.format->name : "bf16";
  const std::string fp4 = own_format == "mxfp4" ? "mxfp4" : "nvfp4";
  std::vector<model::Precision> out;
  for (const std::string& spec : {std::string("bf16"), std::string("fp8"), fp4, std::string("int4-awq"), own.spec}) {
    model::Precision p = model::resolve_precision(spec, m, table);
    bool seen = false;
    for (const auto& q : out) seen = seen || q.spec == p.spec;
    if (!seen) out.push_back(p);
  }
  return out;
}

int cmd_fit_matrix(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string model_name, precisions, gpus, kv_dtype, kv_mode;
  std::int64_t context = 0, concurrency = 0, max_batched = 0;
  double utilization = 0;
  int max_gpus = 0;
  po::options_description d("fit-matrix options");
  add_common_options(d, common);
  d.add_options()
      ("model", po::value<std::string>(&model_name)->default_value("llama4-maverick"), "built-in model or path to config.json")
      ("context", po::value<std::int64_t>(&context)->default_value(8192), "tokens of context per sequence")
      ("concurrency", po::value<std::int64_t>(&concurrency)->default_value(1), "sequences resident at once")
      ("precisions", po::value<std::string>(&precisions),
       "comma-separated precisions (default: bf16, fp8, nvfp4 (mxfp4 for mxfp4 checkpoints), int4-awq and the "
       "checkpoint's own; a bare format takes the model family's usual policy, as in moeplan memory)")
      ("gpus", po::value<std::string>(&gpus), "comma-separated GPU names (default: every GPU in data/gpus.yaml)")
      ("max-gpus", po::value<int>(&max_gpus)->default_value(256), "the largest GPU count tried")
      ("kv-dtype", po::value<std::string>(&kv_dtype)->default_value("bf16"), "KV cache dtype: bf16, fp16, fp8")
      ("kv-mode", po::value<std::string>(&kv_mode)->default_value("model-aware"),
       "model-aware (chunked/sliding layers keep only their chunk/window) or full-length")
      ("max-num-batched-tokens", po::value<std::int64_t>(&max_batched)->default_value(8192),
       "peak tokens in one forward pass (sizes activations)")
      ("gpu-memory-utilization", po::value<double>(&utilization)->default_value(0.90),
       "share of GPU memory the engine may use (vLLM default 0.90)");
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
  for (const char* name : {"context", "concurrency", "max-gpus", "max-num-batched-tokens", "gpu-memory-utilization"})
    require_positive(vm, name);
  if (utilization > 1) throw InputError("--gpu-memory-utilization must be at most 1 (a fraction, e.g. 0.9)");

  const auto data = data_dir();
  const auto db = gpu_db::Database::load(data);
  const model::ModelConfig m = model::load_model(model_name, data);
  const auto table = model::PrecisionTable::load(data / "precisions.yaml");

  simulator::FitMatrixRequest q;
  q.model = &m;
  if (vm.count("precisions")) {
    for (const auto& spec : split_list(precisions)) q.precisions.push_back(model::resolve_precision(spec, m, table));
    if (q.precisions.empty()) throw InputError("--precisions '" + precisions + "' names no precision (e.g. bf16,fp8)");
  } else {
    q.precisions = fit_matrix_precisions(m, table);
  }
  if (vm.count("gpus")) {
    for (const auto& g : split_list(gpus)) q.gpus.push_back(&db.gpu(g));
    if (q.gpus.empty()) throw InputError("--gpus '" + gpus + "' names no GPU (`moeplan gpus` lists them)");
  } else {
    for (const auto& g : db.gpus()) q.gpus.push_back(&g);
  }
  q.context_tokens = context;
  q.concurrency = concurrency;
  q.max_num_batched_tokens = max_batched;
  q.kv_dtype = model::parse_kv_dtype(kv_dtype);
  if (kv_mode == "model-aware") q.kv_mode = model::KvMode::model_aware;
  else if (kv_mode == "full-length") q.kv_mode = model::KvMode::full_length;
  else throw InputError("unknown --kv-mode '" + kv_mode + "' (use model-aware or full-length)");
  q.gpu_memory_utilization = utilization;
  q.max_gpus = max_gpus;
  emit(reports::fit_matrix_report(q, simulator::fit_matrix(q)), common, out);
  return kExitOk;
}

int cmd_claims(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string model_name, claims_file;
  po::options_description d("claims options");
  add_common_options(d, common);
  d.add_options()
      ("model", po::value<std::string>(&model_name)->default_value("llama4-maverick"), "built-in model or path to config.json")
      ("claims-file", po::value<std::string>(&claims_file), "claims to check (default: data/claims.yaml)")
      ("quantities", "list the quantities a claim may name and how each is computed from the config");
  po::variables_map vm;
  const std::string usage =
      "--model M [--claims-file FILE] [--quantities] [--format ...] [-o FILE]\n\n"
      "Each claim in the claims file (model, source URL, date read, claim text, quantity, claimed value, reason) "
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
  emit(reports::claims_report(m, file.string(), model::check_claims(claims, m)), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
