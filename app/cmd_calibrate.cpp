// `moeplan calibrate`: measure this host with the executor's kernels and write a profile the simulator prices with.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <iostream>

#include "app/cli.hpp"
#include "app/option_groups.hpp"
#include "calibrate/calibrate.hpp"
#include "calibrate/gpu_calibrate.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/progress.hpp"
#include "common/text.hpp"
#include "executor/devices.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/shape_override.hpp"
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

namespace {

// The data/gpus.yaml name of a CUDA device: `given` (checked against the database), else the entry whose name's
// first word ("h200" of "h200-sxm") is a word of the device's name ("NVIDIA H200"); among several, the one with the
// most of its words there ("h200-nvl" for "NVIDIA H200 NVL"), the first in the file on a tie.
std::string gpu_db_name(const std::string& given, const std::string& device_name) {
  const auto db = gpu_db::Database::load(data_dir());
  if (!given.empty()) return db.gpu(given).name;
  std::string words = " ";
  for (const char c : device_name) words += c == '-' ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  words += " ";
  std::string best;
  int best_score = 0;
  for (const auto& g : db.gpus()) {
    int score = 0;
    std::size_t start = 0;
    for (bool first = true; start <= g.name.size(); first = false) {
      const std::size_t dash = std::min(g.name.find('-', start), g.name.size());
      std::string word = " ";  // appended: GCC 12's -Wrestrict misfires on "literal" + std::string chains
      word.append(g.name, start, dash - start).append(" ");
      const bool found = words.find(word) != std::string::npos;
      if (first && !found) break;
      score += found ? 1 : 0;
      start = dash + 1;
    }
    if (score > best_score) {
      best = g.name;
      best_score = score;
    }
  }
  if (best.empty())
    throw InputError("calibrate --device cuda: no GPU of data/gpus.yaml matches '" + printable(device_name) +
                     "'; name it with --gpu (moeplan gpus lists them)");
  return best;
}

struct GpuCalibrateOptions {
  std::string gpu, model = "llama4-maverick", shape, profile;
  std::int64_t experts = 0;
  int cuda_device = 0, repeats = 0;
  bool quick = false;
};

// calibrate --device cuda: the op curves of a model's shapes (default a Maverick-width slice with as many experts as
// fit in half the free memory) timed on the GPU, written as a GPU op profile into the user's data directory.
int calibrate_cuda(const GpuCalibrateOptions& o, const Common& common, std::ostream& out) {
  const std::shared_ptr<executor::Backend> backend = executor::make_backend(executor::DeviceKind::cuda, kernels::CpuContext{}, o.cuda_device);
  const auto gpus = executor::query_gpus();
  const std::string device_name = o.cuda_device < static_cast<int>(gpus.gpus.size()) ? gpus.gpus[static_cast<std::size_t>(o.cuda_device)].name : "";
  calibrate::GpuCalibrateRequest q;
  q.gpu = gpu_db_name(o.gpu, device_name);
  const auto m = model::load_model(o.model, data_dir());
  nlohmann::json config = parse_json_file(m.source);
  model::ShapeOverrides shape = o.shape.empty() ? model::ShapeOverrides{} : model::parse_shape_overrides(o.shape);
  const model::ModelConfig& parsed = m;
  std::int64_t experts = o.experts;
  if (experts == 0 && parsed.is_moe() && !shape.experts) {
    // As many routed experts as fit in half the free memory (gate, up and down in BF16), at most the model's.
    const double per_expert = 3.0 * static_cast<double>(parsed.hidden * parsed.moe_intermediate) * 2.0;
    const double fit = 0.5 * static_cast<double>(backend->free_memory_bytes()) / per_expert;
    experts = std::clamp<std::int64_t>(static_cast<std::int64_t>(fit), std::max<std::int64_t>(parsed.experts_per_token, 1), parsed.num_experts);
  }
  if (experts > 0) shape.experts = experts;
  if (!shape.empty()) config = model::apply_shape_overrides(config, shape, m.source);
  q.model = model::parse_hf_config(config, m.name, m.source);
  q.tokens = o.quick ? std::vector<std::int64_t>{1, 4, 16, 64, 256}
                     : std::vector<std::int64_t>{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
  // Decode attention: up to 64 sequences of up to 32,768 keys (8 GiB of BF16 pages at Maverick's 8 KV heads).
  q.decode_batches = o.quick ? std::vector<std::int64_t>{1, 8, 64} : std::vector<std::int64_t>{1, 4, 16, 64};
  q.decode_keys = o.quick ? std::vector<std::int64_t>{128, 1024, 8192}
                          : std::vector<std::int64_t>{128, 512, 2048, 8192, 32768};
  q.repeats = o.repeats > 0 ? o.repeats : (o.quick ? 3 : 10);
  q.device_description = backend->description();
  q.date = calibrate::today_utc();
  q.progress = [](const std::string& s) { std::cerr << "calibrate: " << s << "\n"; };
  const std::filesystem::path path = o.profile.empty() ? user_data_dir() / "gpu_profiles" / q.gpu / "moeplan.prof"
                                                       : std::filesystem::path(o.profile);
  if (o.profile.empty()) {  // the user data directory is ours to create
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) throw InputError("cannot create " + printable(path.parent_path().string()) + ": " + ec.message());
  }
  check_output_path(path);
  const auto t0 = std::chrono::steady_clock::now();
  const simulator::GpuProfileData p = calibrate::calibrate_gpu_ops(*backend, q);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_file_atomic(path, simulator::gpu_profile_text(p));
  emit(reports::gpu_calibrate_report(p, path.string(), seconds), common, out);
  return kExitOk;
}

}  // namespace

int cmd_calibrate(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  std::string device, profile;
  calibrate::CalibrateRequest q;
  GpuCalibrateOptions g;
  po::options_description d("calibrate options");
  add_common_options(d, common);
  d.add_options()
      ("device", po::value<std::string>(&device)->default_value("cpu"),
       "cpu (a host profile), or cuda (a GPU op profile of one GPU; a build with CUDA and a visible device)")
      ("cuda-device", po::value<int>(&g.cuda_device)->default_value(0), "--device cuda: which GPU")
      ("gpu", po::value<std::string>(&g.gpu), "--device cuda: the data/gpus.yaml name for the profile (default: matched from the device's name)");
  add_model_option(d, g.model, "--device cuda: whose op shapes to measure (built-in model or path to config.json)");
  d.add_options()
      ("experts", po::value<std::int64_t>(&g.experts), "--device cuda: routed experts of the MoE curve (default: as many as fit in half the free memory)")
      ("shape", po::value<std::string>(&g.shape), "--device cuda: shrink the model: KEY=N,... (as run --shape)")
      ("repeats", po::value<int>(&g.repeats), "--device cuda: timed calls per point (default 10; --quick: 3)")
      ("threads", po::value<int>(&q.threads)->default_value(0), "threads to measure with (0: all)")
      ("ranks", po::value<std::vector<int>>(&q.ranks)->multitoken(), "rank layouts to measure, threads split between ranks (default 1 2)")
      ("dtypes", po::value<std::vector<std::string>>(&q.dtypes)->multitoken(), "weight dtypes for the GEMM curves (default bf16 f16 fp8 int8 f32; --quick: bf16)")
      ("quick", "fewer points and smaller arrays (about a minute on 2 cores)")
      ("passes", po::value<int>(&q.passes), "sweeps over every curve, each point keeping its fastest (default 3; --quick: 1)")
      ("profile", po::value<std::string>(&profile),
       "where to write the profile (default $XDG_DATA_HOME/moeplan/profiles/<host>.yaml, else ~/.local/share/moeplan/...; "
       "--device cuda: .../moeplan/gpu_profiles/<gpu>/moeplan.prof)");
  po::variables_map vm;
  if (!parse("calibrate",
             "--device cpu [--threads N] [--ranks 1 2] [--dtypes bf16 ...] [--quick] [--passes N] [--profile FILE] | "
             "--device cuda [--gpu NAME] [--model M] [--experts N] [--shape K=N,...] [--quick] [--repeats N] [--profile FILE]",
             args, d, vm, out))
    return kExitOk;
  if (device == "cuda") refuse_given(vm, {"threads", "ranks", "dtypes", "passes"}, "calibrate --device cpu");
  else refuse_given(vm, {"cuda-device", "gpu", "model", "experts", "shape", "repeats"}, "calibrate --device cuda");
  if (executor::select_device(device) == executor::DeviceKind::cuda) {
    g.quick = vm.count("quick") > 0;
    g.profile = profile;
    return calibrate_cuda(g, common, out);
  }
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
