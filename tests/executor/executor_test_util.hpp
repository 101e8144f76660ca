// Helpers of the executor tests: a fresh temporary directory (removed with everything in it when the test ends;
// CTest runs each test case in its own process, so the pid keeps names apart), whole-file byte I/O, the message
// of an expected InputError, the config.json of a built-in model, seeded FP8 experts and seeded head_dim-32 models.
#pragma once
#include <atomic>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/splitmix.hpp"
#include "executor/checkpoint_random.hpp"
#include "executor/model_weights.hpp"
#include "kernels/weights.hpp"

namespace moeplan::test {

class TempDir {
 public:
  explicit TempDir(const std::string& label) {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("moeplan-" + label + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::filesystem::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write test file " + path.string());
}

inline std::vector<std::byte> read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(chars.size());
  for (std::size_t i = 0; i < chars.size(); ++i) out[i] = static_cast<std::byte>(chars[i]);
  return out;
}

// The InputError message of `f()`, or "" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

// data/models/<name>/config.json as a JSON document.
inline nlohmann::json builtin_config_json(const std::string& name) {
  return parse_json_file(data_dir() / "models" / name / "config.json");
}

// FP8 e4m3 expert weights [E, N, K] with one scale per output row [E, N] (resident_group's layout) and rows
// x [R, K], drawn from splitmix64 with `seed`: codes of values uniform in ±300, scales in [1e-4, 1e-3), x in ±2.
struct Fp8Experts {
  std::vector<std::uint8_t> w_q;
  std::vector<float> w_scale, x;
};
inline Fp8Experts seeded_fp8_experts(std::int64_t E, std::int64_t N, std::int64_t K, std::int64_t R, std::uint64_t seed) {
  auto uniform = [&](double lo, double hi) { return static_cast<float>(lo + (hi - lo) * splitmix64_unit(seed)); };
  Fp8Experts f{std::vector<std::uint8_t>(static_cast<std::size_t>(E * N * K)),
               std::vector<float>(static_cast<std::size_t>(E * N)), std::vector<float>(static_cast<std::size_t>(R * K))};
  for (auto& q : f.w_q) q = kernels::float_to_fp8_e4m3(uniform(-300, 300));
  for (auto& s : f.w_scale) s = uniform(1e-4, 1e-3);
  for (auto& v : f.x) v = uniform(-2, 2);
  return f;
}

// A seeded model in `dir` (kept by the caller): the config at `config_json` (an oracle fixture's) with head_dim 32, a
// size the paged decode kernel takes.
inline std::shared_ptr<const executor::Model> seeded_d32(const std::filesystem::path& config_json,
                                                         const std::filesystem::path& dir, std::uint64_t seed) {
  nlohmann::json wide = parse_json_file(config_json);
  wide["head_dim"] = 32;
  executor::RandomWeightsOptions options;
  options.seed = seed;
  (void)executor::write_random_checkpoint(wide, config_json.parent_path().filename().string() + "_d32", dir, options);
  return executor::Model::load(dir);
}

}  // namespace moeplan::test
