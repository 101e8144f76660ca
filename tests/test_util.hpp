// Test helpers: the project's data directory and the loaders most tests need.
#pragma once
#include <filesystem>
#include <string>

#include "common/files.hpp"
#include "model/config.hpp"
#include "model/precision.hpp"

namespace moeplan::test {

inline std::filesystem::path data() { return data_dir(); }
inline std::filesystem::path fixtures() { return MOEPLAN_TEST_FIXTURES; }
inline model::ModelConfig load(const std::string& name) { return model::load_model(name, data()); }
inline const model::PrecisionTable& precisions() {
  static const auto table = model::PrecisionTable::load(data() / "precisions.yaml");
  return table;
}

}  // namespace moeplan::test
