// `moeplan gpus`: the hardware database (or --hosts, or --local for the GPUs of this machine).
#include <iostream>

#include "app/cli.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "executor/devices.hpp"
#include "gpu_db/gpu_db.hpp"
#include "reports/gpus_report.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

int cmd_gpus(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string vendor, name;
  po::options_description d("gpus options");
  add_common_options(d, common);
  d.add_options()("vendor", po::value<std::string>(&vendor), "only this vendor (nvidia, amd, intel)")(
      "gpu", po::value<std::string>(&name), "only this GPU (name or alias)")(
      "hosts", "list CPU and unified-memory hosts instead")("local", "list the GPUs of this machine (CUDA device query)");
  po::variables_map vm;
  if (!parse("gpus", "[--vendor V] [--gpu NAME] [--hosts] [--local] [--format ...]", args, d, vm, out))
    return kExitOk;
  if (vm.count("hosts") + vm.count("local") + vm.count("gpu") > 1 || (vm.count("vendor") && (vm.count("hosts") || vm.count("local"))))
    throw InputError("gpus: give at most one of --hosts, --local and --gpu (--vendor filters the GPU list only)");
  if (vm.count("local")) {
    emit(reports::local_gpus_report(executor::query_gpus()), common, out);
    return kExitOk;
  }
  const auto db = gpu_db::Database::load(data_dir());
  if (vm.count("hosts")) {
    emit(reports::hosts_report(db.hosts()), common, out);
    return kExitOk;
  }
  std::vector<const gpu_db::GpuSpec*> selected;
  if (!name.empty()) selected.push_back(&db.gpu(name));
  for (const auto& g : db.gpus())
    if (name.empty() && (vendor.empty() || g.vendor == to_lower(vendor))) selected.push_back(&g);
  if (selected.empty()) throw InputError("--vendor " + printable(vendor) + " matches no GPU (use nvidia, amd or intel)");
  emit(reports::gpus_report(db, selected), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
