// `moeplan memory`: the VRAM (or host RAM) breakdown of one serving configuration; with --sweep, its total per GPU
// against context length or concurrency for each precision.
#include <iostream>

#include "app/cli.hpp"
#include "app/config_options.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "reports/memory_report.hpp"
#include "reports/views_report.hpp"
#include "simulator/memory.hpp"
#include "simulator/memory_sweep.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

int cmd_memory(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  ConfigOptions o;
  LoadOptions load;
  std::int64_t max_concurrency = 0;
  std::string sweep, precisions, fit_gpu;
  int max_gpus = 0;
  po::options_description d("memory options");
  add_common_options(d, common);
  add_config_options(d, o);
  add_load_options(d, load);
  d.add_options()
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
  if (!vm.count("sweep") && (vm.count("precisions") || vm.count("fit-gpu")))
    throw InputError("--precisions and --fit-gpu go with --sweep context|concurrency");
  const auto db = gpu_db::Database::load(data_dir());
  const ResolvedConfig c = resolve_config(o, vm, db);

  simulator::MemoryRequest q = memory_request(c, load.context, load.concurrency);
  q.include_vision = vm.count("with-vision") > 0;
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
