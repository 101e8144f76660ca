// `moeplan validate`: compare predictions with measurements. --published: the simulator against published
// serving benchmarks (data/validation/public_points.yaml).
#include <iostream>

#include "app/cli.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "reports/reports.hpp"
#include "simulator/published.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

int cmd_validate(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string points_file;
  std::vector<std::string> only;
  po::options_description d("validate options");
  add_common_options(d, common);
  d.add_options()
      ("published", "predict the published measurements and report the error per row and the median")
      ("points", po::value<std::string>(&points_file), "measurement file (default data/validation/public_points.yaml)")
      ("id", po::value<std::vector<std::string>>(&only)->multitoken(), "only these row ids");
  po::variables_map vm;
  if (!parse("validate", "--published [--points FILE] [--id ID ...]", args, d, vm, out)) return kExitOk;
  if (!vm.count("published"))
    throw InputError("validate: give --published (executor-based validation with --device is not available in this build)");
  const auto data = data_dir();
  const auto db = gpu_db::Database::load(data);
  const auto set = simulator::load_published(points_file.empty() ? data / "validation" / "public_points.yaml" : std::filesystem::path(points_file));
  for (const auto& id : only) {
    bool known = false;
    for (const auto& p : set.points) known = known || p.id == id;
    if (!known) throw InputError("--id " + id + ": no such row in the measurement file");
  }
  const auto summary = simulator::validate_published(set, db, data, only);
  emit(reports::published_report(summary, set), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
