// Test helpers: the project's data directory and the loaders most tests need.
#pragma once
#include <filesystem>
#include <string>

#include <unistd.h>

#include "common/files.hpp"
#include "model/config.hpp"
#include "model/precision.hpp"

namespace moeplan::test {

inline std::filesystem::path data() { return data_dir(); }
#ifdef MOEPLAN_TEST_FIXTURES  // defined for the test binaries that read tests/fixtures
inline std::filesystem::path fixtures() { return MOEPLAN_TEST_FIXTURES; }
#endif
inline model::ModelConfig load(const std::string& name) { return model::load_model(name, data()); }
inline const model::PrecisionTable& precisions() {
  static const auto table = model::PrecisionTable::load(data() / "precisions.yaml");
  return table;
}
// A path in a temporary directory of this process alone (two test runs on one machine, or ctest's parallel
// processes, never share a file), removed with everything in it when the process exits.
inline std::filesystem::path temp_path(const std::string& name) {
  struct Dir {
    std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("moeplan-test-" + std::to_string(::getpid()));
    Dir() { std::filesystem::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path / name;
}

}  // namespace moeplan::test
