// `moeplan validate`: compare predictions with measurements.
//   --device cpu  run the executor here over a grid, fit the profile on half, report the held-out half
//   --published   the simulator against published serving benchmarks (data/validation/public_points.yaml)
#include <iostream>

#include "app/cli.hpp"
#include "app/option_groups.hpp"
#include "calibrate/validate.hpp"
#include "calibrate/validate_device.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/progress.hpp"
#include "common/text.hpp"
#include "executor/backend_cuda.hpp"
#include "executor/devices.hpp"
#include "model/config.hpp"
#include "reports/published_report.hpp"
#include "reports/validate_report.hpp"
#include "simulator/published.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

namespace {

int validate_published(const Common& common, const std::string& points_file, const std::vector<std::string>& only,
                       const std::string& bars_file, const std::string& engine, std::ostream& out) {
  const auto data = data_dir();
  const auto db = gpu_db::Database::load(data);
  const auto set = simulator::load_published(points_file.empty() ? data / "validation" / "public_points.yaml" : std::filesystem::path(points_file));
  for (const auto& id : only) {
    bool known = false;
    for (const auto& p : set.points) known = known || p.id == id;
    if (!known) throw InputError("--id " + id + ": no such row in the measurement file");
  }
  Progress bar("validate --published", 0, std::cerr, stderr_is_terminal());
  const auto summary = simulator::validate_published(set, db, data, only, engine, &bar);
  bar.finish();
  if (!bars_file.empty()) {
    if (!only.empty()) throw InputError("--write-error-bars needs the whole set (drop --id)");
    write_file_atomic(bars_file, simulator::error_bars_yaml(summary, points_file.empty() ? "data/validation/public_points.yaml"
                                                                                          : points_file));
  }
  emit(reports::published_report(summary, set), common, out);
  return kExitOk;
}

// validate --device cuda: the CUDA backend's logits against the CPU backend with the same input rounding on the
// oracle fixtures (and, for information, against the fp32 CPU backend).
int validate_cuda(const std::string& fixtures, int cuda_device, bool quick, const Common& common, std::ostream& out) {
  calibrate::DeviceValidateRequest q;
  q.fixtures_dir = fixtures.empty() ? data_dir() / ".." / "tests" / "fixtures" / "oracle" : std::filesystem::path(fixtures);
  q.make_device = [cuda_device] { return std::shared_ptr<executor::Backend>(executor::make_backend(executor::DeviceKind::cuda, {}, cuda_device)); };
  q.make_reference = [] { return std::shared_ptr<executor::Backend>(executor::make_cuda_numerics_cpu_backend({})); };
  q.make_fp32 = [] { return std::shared_ptr<executor::Backend>(executor::make_backend(executor::DeviceKind::cpu, {})); };
  if (quick) q.decode_steps = 2;
  q.progress = [](const std::string& s) { std::cerr << "validate: " << s << "\n"; };
  std::string device = "cuda";
  {
    const auto gpus = executor::query_gpus();
    if (cuda_device >= 0 && cuda_device < static_cast<int>(gpus.gpus.size())) device += " (" + gpus.gpus[static_cast<std::size_t>(cuda_device)].name + ")";
  }
  const auto checks = calibrate::validate_device(q);
  emit(reports::device_validation_report(checks, device), common, out);
  for (const auto& c : checks)
    if (!c.pass()) return kExitInternal;  // a backend outside its tolerance is a defect, not bad input
  return kExitOk;
}

}  // namespace

int cmd_validate(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string points_file, device, model_name, profile, bars_file, engine, fixtures;
  int cuda_device = 0;
  std::vector<std::string> only;
  calibrate::CpuValidateRequest q;
  po::options_description d("validate options");
  add_common_options(d, common);
  d.add_options()
      ("device", po::value<std::string>(&device),
       "cpu: run the executor on this machine over a grid and compare with the simulator; cuda: the CUDA backend's logits "
       "against the CPU backend's on the oracle fixtures")
      ("cuda-device", po::value<int>(&cuda_device)->default_value(0), "--device cuda: which GPU")
      ("fixtures", po::value<std::string>(&fixtures), "--device cuda: directory of oracle fixtures (default <data>/../tests/fixtures/oracle)");
  add_model_option(d, model_name, "--device: built-in model or path to config.json (shrunk for the grid)");
  d.add_options()
      ("profile", po::value<std::string>(&profile),
       "--device: profile from moeplan calibrate (default: this host's in $XDG_DATA_HOME/moeplan/profiles, else "
       "~/.local/share/moeplan/..., else the shipped data/profiles/<host>.yaml); the fit and residuals are written "
       "back to it, a shipped profile's to the user's path (data/ is never written)")
      ("quick", "--device: small-width model and a grid of a few minutes on 2 cores")
      ("experts", po::value<std::vector<std::int64_t>>(&q.grid.experts)->multitoken(), "--device: routed-expert counts (default quick 8 16, full 4 8)")
      ("batches", po::value<std::vector<std::int64_t>>(&q.grid.batches)->multitoken(), "--device: decode batches (default quick 1 4 16 64, full 1..64)")
      ("contexts", po::value<std::vector<std::int64_t>>(&q.grid.contexts)->multitoken(), "--device: decode contexts (default quick 128 1024 4096, full 128..8192)")
      ("prefill", po::value<std::vector<std::int64_t>>(&q.grid.prefill)->multitoken(), "--device: prompt lengths (default 128 256 512 1024)")
      ("ranks", po::value<std::vector<int>>(&q.grid.ranks)->multitoken(), "--device: in-process ranks, 1 and/or 2 (default 1 2)")
      ("no-skew", "--device: leave out the skewed-router rows")
      ("no-write", "--device: do not write the fit and residuals into the profile")
      ("seed", po::value<std::uint64_t>(&q.seed)->default_value(1), "--device: seed for weights, caches and prompts")
      ("published", "predict the published measurements and report the error per row and the median")
      ("points", po::value<std::string>(&points_file), "--published: measurement file (default data/validation/public_points.yaml)")
      ("id", po::value<std::vector<std::string>>(&only)->multitoken(), "--published: only these row ids")
      ("write-error-bars", po::value<std::string>(&bars_file),
       "--published: write the error groups to FILE (data/validation/error_bars.yaml is one; simulate reads it)")
      ("engine", po::value<std::string>(&engine),
       "--published: simulate every row with this engine (data/engines.yaml) instead of each row's `engine:` (generic when "
       "a row names none)");
  po::variables_map vm;
  if (!parse("validate",
             "(--device cpu [--quick] [--profile FILE] [--model M] [grid options] | --device cuda [--quick] [--fixtures DIR] | "
             "--published [--points FILE] [--id ID ...])",
             args, d, vm, out))
    return kExitOk;
  if (vm.count("published") && vm.count("device")) throw InputError("give one of --device cpu and --published");
  // Each mode's own options; one given to another mode is refused rather than ignored.
  const std::initializer_list<const char*> cpu_options = {"model", "profile", "experts", "batches", "contexts",
                                                          "prefill", "ranks", "no-skew", "no-write", "seed"};
  const std::initializer_list<const char*> published_options = {"points", "id", "write-error-bars", "engine"};
  if (vm.count("published")) {
    refuse_given(vm, cpu_options, "validate --device cpu");
    refuse_given(vm, {"cuda-device", "fixtures", "quick"}, "validate --device cpu or cuda");
    return validate_published(common, points_file, only, bars_file, engine, out);
  }
  if (!vm.count("device")) throw InputError("validate: give --device cpu (run the model here) or --published (published benchmarks)");
  refuse_given(vm, published_options, "validate --published");
  if (device == "cuda") refuse_given(vm, cpu_options, "validate --device cpu");
  else refuse_given(vm, {"cuda-device", "fixtures"}, "validate --device cuda");
  if (executor::select_device(device) == executor::DeviceKind::cuda)
    return validate_cuda(fixtures, cuda_device, vm.count("quick") > 0, common, out);

  // The fitted profile goes back where it was read, except that a shipped profile (data/profiles/, read when the
  // user has none for this host) is never rewritten: its fit goes to the user's profile path.
  const std::filesystem::path path = profile.empty() ? default_profile_path() : find_profile(profile);
  std::filesystem::path read_from = path;
  if (profile.empty() && !std::filesystem::exists(path)) read_from = data_dir() / "profiles" / path.filename();
  if (!std::filesystem::exists(read_from))
    throw InputError("validate: no profile at " + printable(path.string()) + "; run moeplan calibrate --device cpu" +
                     (profile.empty() ? "" : " --profile " + printable(path.string())) + " first");
  const bool write = !vm.count("no-write");
  if (write) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    check_output_path(path);
  }
  q.profile = simulator::read_profile(read_from);
  if (const std::string warn = simulator::profile_mismatch(q.profile, 0); !warn.empty()) std::cerr << "moeplan: warning: " << warn << "\n";
  const auto m = model::load_model(model_name, data_dir());
  q.config = parse_json_file(m.source);
  q.model_name = m.name;
  q.quick = vm.count("quick") > 0;
  q.grid.skewed = !vm.count("no-skew");
  // On a terminal a progress bar names each step; elsewhere (logs) one line per step.
  Progress bar("validate", 0, std::cerr, stderr_is_terminal());
  if (stderr_is_terminal()) q.bar = &bar;
  else q.progress = [](const std::string& s) { std::cerr << "validate: " << s << "\n"; };
  const auto v = calibrate::validate_cpu(q);
  bar.finish();
  if (write) write_file_atomic(path, simulator::profile_yaml(v.fitted));
  emit(reports::cpu_validation_report(v, path.string(), write), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
