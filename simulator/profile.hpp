// simulator/profile: a measured hardware profile of one host (`moeplan calibrate` writes it, `moeplan validate`
// adds the fitted corrections and the held-out residuals) and the op prices it gives. With a profile the simulator
// prices each op from this machine's own curves instead of datasheet peaks × default efficiencies:
//   GEMM-like op        overhead + FLOPs / rate_gemm[dtype](M)            M = rows (tokens)
//   routed-expert GEMM  overhead + FLOPs / rate_expert[dtype](M / E_t)    E_t = experts touched, rows per expert
//   attention           FLOPs / rate_attention[phase](keys per query)     (the curve is per call, overhead included)
//   norm/rope/act/...   overhead + bytes × seconds_per_byte
//   collective          fixed + bytes × seconds_per_byte                   (in-process ranks)
// then × the op's fitted scale for the step's phase, summed, plus the phase's untimed remainder a + b·tokens.
// Rates between measured points are interpolated log-log (exact for the power laws of the memory-bound and
// compute-bound regimes), and held constant beyond the ends. File format and method: docs/validation.md.
#pragma once
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/op_graph.hpp"

namespace moeplan::simulator {

// y(x) from measured points, log-log interpolation, clamped at the ends. x and y positive, x strictly increasing.
struct Curve {
  std::vector<double> x, y;
  double at(double v) const;
  bool empty() const { return x.empty(); }
};

// Curves of one rank layout: `ranks` concurrent ranks (threads of one process), each with `threads_per_rank`.
struct ProfileCurves {
  int ranks = 1, threads_per_rank = 1;
  std::map<std::string, Curve> gemm_flops_per_s;    // by weight dtype (bf16, f16, fp8, int8, f32): x = rows M
  std::map<std::string, Curve> expert_flops_per_s;  // by weight dtype: x = rows per touched expert
  Curve attention_decode_flops_per_s;               // x = keys per query (one query token per sequence)
  Curve attention_prefill_flops_per_s;              // x = keys per query, averaged over a causal prompt
  double elementwise_s_per_byte = 0;                // norms, rope, activations, top-k, embedding rows
  double op_overhead_s = 0;                         // fixed cost of one kernel call (thread-pool dispatch)
  double collective_fixed_s = 0, collective_s_per_byte = 0;  // in-process all-reduce / all-to-all between ranks
};

// Fitted on the calibration half of `moeplan validate`, per phase and rank count. Keys "decode/r1:attn.qkv"
// (phase "prefill" or "decode", ranks, op name); a key without "/rN" applies to every rank count. An op's
// correction at a step of T tokens (decode: sequences; prefill: prompt tokens) is scale · T^slope.
struct ProfileFit {
  std::map<std::string, double> op_scale;  // geometric-mean measured / predicted at T = 1
  std::map<std::string, double> op_slope;  // d log(measured / predicted) / d log T (0 when absent)
  double prefill_fixed_s = 0, prefill_per_token_s = 0;  // untimed remainder of a step: a + b · tokens
  double decode_fixed_s = 0, decode_per_token_s = 0;
  int configurations = 0;
  // The tokens per step the corrections were fitted over (decode: sequences; prefill: prompt tokens); 0 = not
  // recorded. A correction scale · T^slope is evaluated at T clamped to this range: outside it a power law fitted on
  // a few points says nothing (a 2-token prefill chunk would otherwise get a 128-token fit's slope extrapolated).
  double decode_tokens_min = 0, decode_tokens_max = 0, prefill_tokens_min = 0, prefill_tokens_max = 0;
  double clamp_tokens(bool prefill, double tokens) const;
};

// Held-out residuals r = (measured − predicted) / predicted of one phase's step time.
struct Residuals {
  int n = 0;
  double median_abs = 0, p90_abs = 0;  // of |r|
  double q05 = 0, q95 = 0;             // of r: the error bar is [p·(1 + q05), p·(1 + q95)]
};

struct HostProfile {
  std::string host, cpu_model, cpu_path, date, moeplan_version;
  int threads = 0;                      // hardware threads used (all ranks together)
  double memory_bytes = 0;              // RAM
  double read_bytes_per_s = 0, triad_bytes_per_s = 0;  // measured streaming bandwidths (all threads)
  std::map<std::string, double> peak_flops;            // large-M GEMM rate by weight dtype (one rank, all threads)
  std::vector<ProfileCurves> layouts;   // one per rank count measured (1, 2, ...)
  std::optional<ProfileFit> fit;
  std::optional<Residuals> prefill_residuals, decode_residuals;
  std::string validation_summary;       // one line: when and on which grid the fit and residuals were made
  std::filesystem::path file;           // where it was read from

  const ProfileCurves& curves(int ranks) const;  // throws InputError when that rank count was not measured
};

// Read/write YAML (docs/validation.md). read_profile throws InputError naming the file and the bad field.
HostProfile read_profile(const std::filesystem::path& path);
std::string profile_yaml(const HostProfile& profile);

// This machine: host name and CPU model string (/proc/cpuinfo), for profile headers and the other-machine warning.
std::string this_host_name();
std::string this_cpu_model();
// "" when `p` was measured here with the same thread count; else one line saying what differs.
std::string profile_mismatch(const HostProfile& p, int threads_now);

// The weight-dtype key of an op's weight format ("bf16", "fp8", ...), as the profile's curves are keyed.
std::string profile_dtype(const std::string& weight_format);

// The fit key of an op: "decode/r2:attn.qkv".
std::string fit_key(const std::string& phase, int ranks, const std::string& op);
// scale and slope of an op's fitted correction (1 and 0 without a fit or an entry).
std::pair<double, double> fit_correction(const ProfileFit* fit, const std::string& phase, int ranks, const std::string& op);

// Seconds of one invocation of `op` at step values `x` on curves `c`, before the fitted scale.
double profile_op_seconds(const ProfileCurves& c, const model::Op& op, const model::StepValues& x);

}  // namespace moeplan::simulator
