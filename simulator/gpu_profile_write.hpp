// simulator/gpu_profile_write: a GPU op profile as text, in the grammar simulator/gpu_profile.hpp reads
// (docs/gpu_profiles.md); calibrate --device cuda writes its measurements with it.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "simulator/gpu_profile.hpp"

namespace moeplan::simulator {

// A profile to write (calibrate --device cuda measures one): the header, and per curve its kind, its key fields in
// the order docs/gpu_profiles.md lists them, and (x, seconds) points.
struct GpuProfileCurveData {
  GpuCurveKind kind = GpuCurveKind::gemm;
  std::vector<std::pair<std::string, std::string>> fields;
  std::vector<double> x;        // whole sizes, strictly ascending, > 0
  std::vector<double> seconds;  // per call, > 0
};
struct GpuProfileData {
  std::string gpu, engine, engine_version, source, license, exported;
  std::vector<std::string> tables;    // "table ..." provenance lines (without the word "table")
  std::vector<std::string> comments;  // written as "# ..." lines after the header
  std::vector<GpuProfileCurveData> curves;
};
// The profile in the file grammar read_gpu_profile reads: times in microseconds as plain decimals of 3
// significant digits. Throws std::invalid_argument on a field with a space or '=', an empty header value, a size
// that is not a positive whole number in ascending order, or a time that is not positive and finite.
std::string gpu_profile_text(const GpuProfileData& profile);

}  // namespace moeplan::simulator
