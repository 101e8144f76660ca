// `moeplan calibrate`: measure this host with the executor's kernels and write a profile the simulator prices with.
#include <chrono>
#include <cstdlib>
#include <iostream>

#include "app/cli.hpp"
#include "calibrate/calibrate.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/progress.hpp"
#include "common/text.hpp"
#include "reports/validate_report.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

std::filesystem::path default_profile_path() { return user_data_dir() / "profiles" / (simulator::this_host_name() + ".yaml"); }

std::filesystem::path find_profile(const std::string& name_or_path) {
  const std::filesystem::path given(name_or_path);
  std::error_code ec;
  if (std::filesystem::exists(given, ec) || name_or_path.find('/') != std::string::npos) return given;
  // A bare name: the user's profiles first (what calibrate wrote), then the shipped ones.
  const std::string file = name_or_path.ends_with(".yaml") ? name_or_path : name_or_path + ".yaml";
  std::vector<std::filesystem::path> places;
  if (std::getenv("XDG_DATA_HOME") || std::getenv("HOME")) places.push_back(user_data_dir() / "profiles" / file);
  places.push_back(data_dir() / "profiles" / file);
  for (const auto& p : places)
    if (std::filesystem::exists(p, ec)) return p;
  std::string looked;
  for (const auto& p : places) looked += (looked.empty() ? "" : ", ") + printable(p.string());
  throw InputError("--profile " + printable(name_or_path) + ": no such file (looked in " + looked + ")");
}

int cmd_calibrate(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string device, profile;
  calibrate::CalibrateRequest q;
  po::options_description d("calibrate options");
  add_common_options(d, common);
  d.add_options()
      ("device", po::value<std::string>(&device)->default_value("cpu"), "cpu (cuda: not built yet)")
      ("threads", po::value<int>(&q.threads)->default_value(0), "threads to measure with (0: all)")
      ("ranks", po::value<std::vector<int>>(&q.ranks)->multitoken(), "rank layouts to measure, threads split between ranks (default 1 2)")
      ("dtypes", po::value<std::vector<std::string>>(&q.dtypes)->multitoken(), "weight dtypes for the GEMM curves (default bf16 f16 fp8 int8 f32; --quick: bf16)")
      ("quick", "fewer points and smaller arrays (about a minute on 2 cores)")
      ("passes", po::value<int>(&q.passes), "sweeps over every curve, each point keeping its fastest (default 3; --quick: 1)")
      ("profile", po::value<std::string>(&profile),
       "where to write the profile (default $XDG_DATA_HOME/moeplan/profiles/<host>.yaml, else ~/.local/share/moeplan/...)");
  po::variables_map vm;
  if (!parse("calibrate", "--device cpu [--threads N] [--ranks 1 2] [--dtypes bf16 ...] [--quick] [--passes N] [--profile FILE]", args, d, vm, out))
    return kExitOk;
  if (device == "cuda") throw InputError("--device cuda: the CUDA executor is not built yet; use --device cpu");
  if (device != "cpu") throw InputError("unknown --device '" + device + "' (use cpu)");
  if (q.threads < 0) throw InputError("--threads must be 0 (all) or positive");
  if (!vm.count("ranks")) q.ranks = {1, 2};
  q.quick = vm.count("quick") > 0;
  if (!vm.count("passes")) q.passes = q.quick ? 1 : 3;
  if (!vm.count("dtypes")) q.dtypes = q.quick ? std::vector<std::string>{"bf16"} : std::vector<std::string>{"bf16", "f16", "fp8", "int8", "f32"};
  // On a terminal a progress bar names each group; elsewhere (logs) one line per group.
  Progress bar("calibrate", 0, std::cerr, stderr_is_terminal());
  if (stderr_is_terminal()) q.bar = &bar;
  else q.progress = [](const std::string& s) { std::cerr << "calibrate: " << s << "\n"; };
  const std::filesystem::path path = profile.empty() ? default_profile_path() : std::filesystem::path(profile);
  if (profile.empty()) {  // the user data directory is ours to create
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) throw InputError("cannot create " + printable(path.parent_path().string()) + ": " + ec.message());
  }
  check_output_path(path);
  const auto t0 = std::chrono::steady_clock::now();
  auto p = calibrate::calibrate_host(q);
  bar.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_file_atomic(path, simulator::profile_yaml(p));
  p.file = path;
  emit(reports::calibrate_report(p, path.string(), seconds), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
