// calibrate/validate: predict → run → compare on this CPU. Runs the executor over a grid of shapes (decode at
// several batches and contexts, prefill at several prompt lengths, 1 and 2 ranks, several expert counts, a uniform
// and a skewed router), splits the grid into a calibration half and a held-out half (alternate rows of each phase,
// so both halves span the grid), fits the profile's per-op corrections and the untimed step remainder on the
// calibration half only, and reports predicted vs measured for the held-out half: step time, tokens/s and error,
// the median and p90 absolute error, and op by op. The fitted profile keeps the held-out residuals for error bars.
// Method: docs/validation.md.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/progress.hpp"

#include "simulator/profile.hpp"

namespace moeplan::calibrate {

// The shapes to run. Empty lists take the defaults of `quick` (docs/validation.md lists both grids).
struct ValidateGrid {
  std::vector<std::int64_t> experts;       // routed experts per MoE layer (model shrunk to this count)
  std::vector<std::int64_t> batches;       // decode sequences
  std::vector<std::int64_t> contexts;      // decode: tokens already in each sequence's cache
  std::vector<std::int64_t> prefill;       // prefill: prompt tokens (one sequence)
  std::vector<int> ranks;                  // 1 and/or 2 (TP = EP = ranks, in-process)
  bool skewed = true;                      // add rows with a router biased towards a few experts
};

struct CpuValidateRequest {
  nlohmann::json config;                   // the model's config.json (Llama 4, Qwen3-MoE or Mixtral)
  std::string model_name;
  simulator::HostProfile profile;          // from moeplan calibrate (its fit and residuals are replaced)
  bool quick = false;                      // a small-width model and a grid that runs in a few minutes on 2 cores
  ValidateGrid grid;
  int threads = 0;                         // 0: the profile's thread count
  std::uint64_t seed = 1;
  std::filesystem::path work_dir;          // seeded random checkpoints are written here (default: temp dir)
  std::function<void(const std::string&)> progress;
  Progress* bar = nullptr;  // advanced once per point measured in a round, its total set here (may be null)
};

struct ValidationRow {
  std::string id;                          // e.g. "decode e16 r1 b16 ctx1024 uniform"
  std::string phase;                       // prefill | decode
  bool held_out = false;
  std::int64_t experts = 0, batch = 0, context = 0, tokens = 0;  // tokens: prompt length (prefill)
  int ranks = 1;
  std::string router;                      // uniform | skewed
  double measured_s = 0, predicted_s = 0;  // step (decode) or whole prompt (prefill) wall time
  double error = 0;                        // (predicted − measured) / measured
  double spread = 0;                       // (median − fastest) / fastest over the repeated measurements
  double experts_touched_measured = 0, experts_touched_predicted = 0;  // per MoE layer and step (decode)
  std::map<std::string, double> measured_ops, predicted_ops;  // seconds per op name (rank 0)
};

struct OpError {
  std::string phase, op;
  int n = 0;
  double median_abs_error = 0;             // over held-out rows
  double share = 0;                        // of the measured step time (held-out rows, summed)
};

struct ErrorStats {
  int n = 0;
  double median_abs = 0, p90_abs = 0;
};

struct CpuValidation {
  std::string model, shape, date, cpu_model, cpu_path;
  int threads = 0;
  std::vector<ValidationRow> rows;
  ErrorStats decode_held_out, prefill_held_out, decode_calibration, prefill_calibration;
  ErrorStats decode_uniform, decode_skewed;  // held-out decode rows by router
  std::vector<OpError> ops;
  double median_spread = 0;                  // measurement noise of this run
  double seconds = 0;                        // wall time of the whole validation
  simulator::HostProfile fitted;             // the input profile with fit and residuals
};

CpuValidation validate_cpu(const CpuValidateRequest& request);

}  // namespace moeplan::calibrate
