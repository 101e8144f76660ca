// calibrate/gpu_calibrate: `calibrate --device cuda`: time the ops of a model's shapes on a backend and write them as
// a GPU op profile (simulator/gpu_profile.hpp; grammar in docs/gpu_profiles.md) that simulate --gpu-profile reads
// beside the published tables: dense GEMM curves (`gemm`, x = rows) for every matmul shape of the model, decode
// attention on a paged BF16 KV cache (`attn_decode`, one curve per batch, x = keys attended per sequence) at the
// model's heads on 1, 2, 4 and 8 GPUs, and the routed-expert block (`moe`, x = tokens entering the layer,
// AIConfigurator's balanced router). Written for the CUDA backend; it runs on any backend, which is how the CPU tests
// check it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "executor/backend.hpp"
#include "model/config.hpp"
#include "simulator/gpu_profile_write.hpp"

namespace moeplan::calibrate {

struct GpuCalibrateRequest {
  model::ModelConfig model;            // the shapes measured (a Maverick-width slice on a GPU)
  std::vector<std::int64_t> tokens;    // GEMM rows and MoE tokens, ascending
  // Decode attention: sequences per call, and keys attended per sequence (the sequence length, the new token's
  // own key included), each ascending; none: no decode curves.
  std::vector<std::int64_t> decode_batches, decode_keys;
  int repeats = 5;                     // timed calls per point (after one warm-up call); the mean is kept
  std::uint64_t seed = 1;              // random BF16 weights and activations
  std::string gpu;                     // data/gpus.yaml name for the profile's header
  std::string device_description;      // the backend's description, for the header's source line
  std::string date;                    // YYYY-MM-DD, the header's `exported`
  std::function<void(const std::string&)> progress;  // one line per curve (may be empty)
};

// The matmul shapes (n, k) of one layer of each kind, the router and the lm_head, each with the op names that use it.
struct GemmShape {
  std::int64_t n = 0, k = 0;
  std::string ops;  // "attn.qkv (q), attn.o", ...
};
std::vector<GemmShape> gemm_shapes(const model::ModelConfig& m);

// The attention shapes decode curves are measured at: the model's query and KV heads split over tp GPUs for each tp
// of 1, 2, 4, 8 that divides both (KV heads at least 1 per GPU), and each window its layers use (0 for global
// layers, the chunk for chunked ones; sliding windows have no paged decode kernel and are not measured).
struct DecodeShape {
  std::int64_t heads = 0, kv_heads = 0, head_dim = 0, window = 0;
};
std::vector<DecodeShape> decode_shapes(const model::ModelConfig& m);

// Times every curve on `backend` (its op results are not checked: the backends are checked against each other in
// validate --device). Per point: one warm-up call, then `repeats` calls in one timing span of the backend
// (Backend::span_begin: two CUDA events on the stream, or the CPU's wall time), its duration / repeats.
simulator::GpuProfileData calibrate_gpu_ops(executor::Backend& backend, const GpuCalibrateRequest& request);

}  // namespace moeplan::calibrate
