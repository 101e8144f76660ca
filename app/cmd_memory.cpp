// `moeplan memory`: the VRAM (or host RAM) breakdown of one serving configuration.
#include <iostream>

#include "app/cli.hpp"
#include "app/config_options.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "reports/reports.hpp"
#include "simulator/memory.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

int cmd_memory(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  ConfigOptions o;
  std::int64_t context = 0, concurrency = 0;
  po::options_description d("memory options");
  add_common_options(d, common);
  add_config_options(d, o);
  d.add_options()
      ("context", po::value<std::int64_t>(&context)->default_value(8192), "tokens of context per sequence")
      ("concurrency", po::value<std::int64_t>(&concurrency)->default_value(1), "sequences resident at once")
      ("with-vision", "also load the vision encoder of multimodal checkpoints");
  po::variables_map vm;
  if (!parse("memory", "--model M --gpu G --count N --precision P [--tp --ep --pp --dp] --context C --concurrency B", args,
             d, vm, out))
    return kExitOk;
  for (const char* name : {"context", "concurrency"}) require_positive(vm, name);
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
  const auto result = simulator::memory_breakdown(q);
  emit(reports::memory_report(q, result), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
