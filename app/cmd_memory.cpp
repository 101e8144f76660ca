// `moeplan memory`: the VRAM (or host RAM) breakdown of one serving configuration; with --sweep, its total per GPU
// against context length or concurrency for each precision.
#include <iostream>

#include "app/cli.hpp"
#include "app/config_options.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "reports/reports.hpp"
#include "simulator/memory.hpp"
#include "simulator/memory_sweep.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

int cmd_memory(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  ConfigOptions o;
  std::int64_t context = 0, concurrency = 0, max_concurrency = 0;
  std::string sweep, precisions, fit_gpu;
  int max_gpus = 0;
  po::options_description d("memory options");
  add_common_options(d, common);
  add_config_options(d, o);
  d.add_options()
      ("context", po::value<std::int64_t>(&context)->default_value(8192), "tokens of context per sequence")
      ("concurrency", po::value<std::int64_t>(&concurrency)->default_value(1), "sequences resident at once")
      ("with-vision", "also load the vision encoder of multimodal checkpoints")
      ("sweep", po::value<std::string>(&sweep),
       "context: a table of contexts 1k, 2k, ... up to the model's max (at most 1M) x precisions at --concurrency; "
       "concurrency: 1, 2, 4, ... up to --max-concurrency x precisions at --context")
      ("precisions", po::value<std::string>(&precisions), "with --sweep: comma-separated precisions (default: --precision)")
      ("max-concurrency", po::value<std::int64_t>(&max_concurrency)->default_value(1024), "with --sweep concurrency: the largest swept")
      ("fit-gpu", po::value<std::string>(&fit_gpu),
       "with --sweep: also the smallest count of this GPU that holds each cell (moeplan fit-matrix's layouts)")
      ("max-gpus", po::value<int>(&max_gpus)->default_value(256), "with --fit-gpu: the largest count tried");
  po::variables_map vm;
  if (!parse("memory", "--model M --gpu G --count N --precision P [--tp --ep --pp --dp] --context C --concurrency B", args,
             d, vm, out))
    return kExitOk;
  for (const char* name : {"context", "concurrency", "max-concurrency", "max-gpus"}) require_positive(vm, name);
  if (!vm.count("sweep") && (vm.count("precisions") || vm.count("fit-gpu")))
    throw InputError("--precisions and --fit-gpu go with --sweep context|concurrency");
  const auto db = gpu_db::Database::load(data_dir());
  const ResolvedConfig c = resolve_config(o, vm, db);

  simulator::MemoryRequest q;
  q.model = &c.model;
  q.precision = c.precision;
  q.kv_dtype = c.kv_dtype;
  q.kv_mode = c.kv_mode;
  q.context_tokens = context;
  q.concurrency = concurrency;
  q.max_num_batched_tokens = o.max_batched;
  q.include_vision = vm.count("with-vision") > 0;
  q.overhead.gpu_memory_utilization = o.utilization;
  q.layout = c.layout;
  q.host_mode = c.host_mode;
  if (c.host_mode) {
    q.capacity_bytes = c.host->memory_bytes;
    q.device_name = c.host->name;
  } else {
    q.capacity_bytes = c.gpu->memory_bytes;
    q.device_name = c.gpu->name;
  }
  if (vm.count("sweep")) {
    simulator::MemorySweepRequest sq;
    sq.base = q;
    sq.axis = simulator::parse_sweep_axis(sweep);
    sq.precisions = vm.count("precisions") ? precision_list(precisions, c.model, *c.precisions)
                                           : std::vector<model::Precision>{c.precision};
    sq.values = simulator::sweep_values(sq.axis, c.model.max_context_tokens, max_concurrency);
    if (vm.count("fit-gpu")) sq.fit_gpu = &db.gpu(fit_gpu);
    sq.max_gpus = max_gpus;
    emit(reports::memory_sweep_report(sq, simulator::memory_sweep(sq)), common, out);
    return kExitOk;
  }
  const auto result = simulator::memory_breakdown(q);
  emit(reports::memory_report(q, result), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
