// The data every model-side benchmark loads once: the project's data/ directory, the GPU database, the precision
// table and Llama 4 Maverick's config.
#pragma once
#include <filesystem>

#include "common/files.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/config.hpp"
#include "model/precision.hpp"

namespace moeplan::bench {

struct BenchData {
  std::filesystem::path dir = data_dir();
  gpu_db::Database db = gpu_db::Database::load(dir);
  model::PrecisionTable precisions = model::PrecisionTable::load(dir / "precisions.yaml");
  model::ModelConfig maverick = model::load_model("llama4-maverick", dir);
};

inline const BenchData& data() {
  static const BenchData d;
  return d;
}

}  // namespace moeplan::bench
