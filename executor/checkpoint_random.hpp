// executor/checkpoint_random: `--random-weights SEED`. Writes a seeded random checkpoint for an HF config in the
// exact layout of checkpoint.hpp, as real safetensors (+ config.json beside it), so the executor always loads
// weights through the same reader and checks as a downloaded checkpoint.
//
// Values are a pure function of (seed, tensor name, element index): a counter-based splitmix64 hash, identical
// on every compiler and standard library (std::*_distribution output is not), so any element can be recomputed
// without the file. Scales keep a forward pass finite: Linear weights uniform in ±1/sqrt(fan_in) (PyTorch's
// nn.Linear default bound, kaiming_uniform with a = sqrt(5)), norm weights 1 ± 0.1, embeddings uniform in ±1.
#pragma once
#include <cstdint>
#include <filesystem>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "executor/checkpoint.hpp"

namespace moeplan::executor {

struct RandomWeightsOptions {
  std::uint64_t seed = 0;
  // fp8_experts: Meta's FP8 Llama 4 layout (per-expert F8_E4M3 + BF16 per-channel scales; config.json gains the
  // compressed-tensors quantization_config). multimodal_prefix: language_model.* names and the config written as
  // given; otherwise a multimodal Llama 4 config is written text-only (its text_config as a Llama4ForCausalLM
  // config), which transformers' Llama4ForCausalLM.from_pretrained loads as is.
  LayoutOptions layout;
  // 0: one model.safetensors. Otherwise shards model-0000i-of-0000n.safetensors of at most this many tensor bytes
  // (a larger tensor gets a shard of its own) and model.safetensors.index.json, as save_pretrained writes them.
  std::uint64_t max_shard_bytes = 0;
  // A directory that already holds files is written only when moeplan wrote it before (it holds the marker file
  // kRandomWeightsMarker) or when this is set (run --force): a real checkpoint is never overwritten by mistake.
  bool overwrite = false;
};

// The file that marks a directory as moeplan's random checkpoint.
inline constexpr const char* kRandomWeightsMarker = ".moeplan-random-weights";

struct RandomCheckpoint {
  std::filesystem::path dir;
  model::ModelConfig config;               // parsed back from the config.json that was written
  CheckpointLayout layout;
  std::vector<std::filesystem::path> files;  // safetensors files (and the index, last, when sharded)
  std::uint64_t tensor_bytes = 0;
};

// Write the checkpoint into `dir` (created if missing; existing files of the same names are replaced, each file
// atomically). `hf_config` is the config.json document; `name` labels the parsed ModelConfig.
RandomCheckpoint write_random_checkpoint(const nlohmann::json& hf_config, const std::string& name,
                                         const std::filesystem::path& dir, const RandomWeightsOptions& options);

// The config.json written for `hf_config` under `options` (text-only flattening, quantization_config for FP8).
nlohmann::json random_checkpoint_config(const nlohmann::json& hf_config, const RandomWeightsOptions& options);

// Element `index` (row-major) of tensor `t` before rounding to its dtype. For an FP8 expert weight this is the
// value before quantisation: per output row r, the stored scale is bf16(max_j |w[r][j]| / 448) (1 for an all-zero
// row) and the stored code fp8_e4m3(w[r][j] / scale). Scale tensors themselves have no value of their own.
float random_weight_value(std::uint64_t seed, const ExpectedTensor& t, std::uint64_t index);

// The encoded bytes of elements [first_element, first_element + out.size() / dtype size) of `t` as written (rows
// of FP8 weights and their scales computed as above; `weight` is the FP8 weight a scale tensor belongs to).
void fill_random_tensor(std::uint64_t seed, const ExpectedTensor& t, const ExpectedTensor* weight,
                        std::size_t first_element, std::span<std::byte> out);

}  // namespace moeplan::executor
