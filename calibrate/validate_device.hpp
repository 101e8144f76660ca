// calibrate/validate_device: `validate --device cuda`: the device backend's logits against a CPU reference on the
// oracle fixtures (tests/fixtures/oracle: small Llama 4, Qwen3-MoE and Mixtral checkpoints, BF16 and FP8 weights),
// with a tolerance per weight dtype. The reference is the CPU backend with the device's matmul input rounding
// (executor::make_cuda_numerics_cpu_backend): the fp32 CPU backend (the oracle checked against transformers in
// tests/executor) differs from a BF16/FP8 device by far more than any kernel error once a rounding flips a routing
// choice, so it is reported beside, not used for the verdict. Each fixture: two prompts prefilled with the logits of
// every position, then decode steps that feed every backend the reference's greedy tokens, so every compared row has
// the same history.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "executor/backend.hpp"
#include "kernels/weights.hpp"

namespace moeplan::calibrate {

// The logit tolerance of a device backend against the reference for a model whose matmul weights are at most as
// narrow as `dtype`: max |device - reference| <= abs + rel * max |reference logit| over the compared rows. Both round
// the same inputs; what remains is the order of fp32 sums and the last bits of exp/rsqrt (and on Hopper the FP8
// tensor cores' shorter accumulator). The values and why: docs/executor.md "CUDA backend".
struct LogitTolerance {
  double abs = 0, rel = 0;
};
LogitTolerance device_logit_tolerance(kernels::WeightDtype dtype);

struct DeviceCheck {
  std::string fixture;                 // the fixture directory's name
  kernels::WeightDtype dtype = kernels::WeightDtype::f32;  // the narrowest matmul weight dtype of the model
  std::int64_t rows = 0;               // logit rows compared (prefill positions + decode steps, both sequences)
  double max_abs_diff = 0;             // device vs reference, over every logit of those rows
  double max_abs_logit = 0;            // of the reference's logits
  double max_abs_diff_fp32 = -1;       // device vs the fp32 CPU backend (-1: not measured); for information
  double allowed = 0;                  // tolerance.abs + tolerance.rel * max_abs_logit
  std::int64_t argmax_mismatches = 0;  // rows whose largest logit is another token (reported, not a failure)
  bool pass() const { return max_abs_diff <= allowed; }
};

struct DeviceValidateRequest {
  std::filesystem::path fixtures_dir;  // holds one directory per fixture (config.json + model.safetensors)
  std::function<std::shared_ptr<executor::Backend>()> make_device;     // the backend under test
  std::function<std::shared_ptr<executor::Backend>()> make_reference;  // the CPU backend with the device's rounding
  std::function<std::shared_ptr<executor::Backend>()> make_fp32;       // the fp32 CPU backend, or empty
  std::int64_t prompt_tokens = 12;
  std::int64_t decode_steps = 4;
  std::uint64_t seed = 1;
  std::function<void(const std::string&)> progress;
};

// One check per fixture, in name order. Throws InputError when the directory holds no fixture.
std::vector<DeviceCheck> validate_device(const DeviceValidateRequest& request);

}  // namespace moeplan::calibrate
