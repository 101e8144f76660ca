// Seeded random checkpoints: config.json + safetensors in the layout of checkpoint.cpp, values from a portable
// counter-based generator (see checkpoint_random.hpp).
#include "executor/checkpoint_random.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/splitmix.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace moeplan::executor {

using nlohmann::json;

namespace {

std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001B3ull;
  return h;
}

bool is_scale(TensorRole r) {
  return r == TensorRole::expert_gate_scale || r == TensorRole::expert_up_scale || r == TensorRole::expert_down_scale;
}

// Per-row FP8 scale: max |w| / 448 rounded to BF16 (the stored scale dtype), 1 for an all-zero row.
float row_scale(const std::vector<float>& row) {
  float amax = 0;
  for (const float v : row) amax = std::max(amax, std::fabs(v));
  const float scale = kernels::bf16_to_float(kernels::float_to_bf16(amax / 448.0f));  // 448: largest finite E4M3
  return scale > 0 ? scale : 1.0f;
}

void weight_row(std::uint64_t seed, const ExpectedTensor& w, std::uint64_t row, std::vector<float>& out) {
  const auto in = static_cast<std::uint64_t>(w.shape.at(1));
  out.resize(in);
  for (std::uint64_t j = 0; j < in; ++j) out[j] = random_weight_value(seed, w, row * in + j);
}

json compressed_tensors_config(bool multimodal_prefix) {
  // Modelled on the FP8 Maverick config (compressed-tensors, W8A8: static per-channel weights, dynamic per-token
  // activations). Everything but the routed experts is ignored, i.e. stays BF16.
  const json fp8 = {{"num_bits", 8}, {"type", "float"}, {"symmetric", true}};
  json weights = fp8, activations = fp8;
  weights["strategy"] = "channel";
  weights["dynamic"] = false;
  activations["strategy"] = "token";
  activations["dynamic"] = true;
  return {{"quant_method", "compressed-tensors"},
          {"format", "float-quantized"},
          {"quantization_status", "compressed"},
          {"config_groups", {{"group_0", {{"targets", {"Linear"}}, {"weights", weights}, {"input_activations", activations}}}}},
          {"ignore",
           {"re:.*self_attn.*", "re:.*router.*", "re:.*shared_expert.*", "re:.*feed_forward\\.(gate|up|down)_proj$",
            "re:.*vision_model.*", "re:.*multi_modal_projector.*", multimodal_prefix ? "language_model.lm_head" : "lm_head"}}};
}

bool is_llama4(const json& cfg) {
  auto type_of = [](const json& j) { return j.is_object() ? j.value("model_type", std::string()) : std::string(); };
  const std::string t = type_of(cfg).empty() && cfg.contains("text_config") ? type_of(cfg.at("text_config")) : type_of(cfg);
  return t == "llama4" || t == "llama4_text";
}

}  // namespace

float random_weight_value(std::uint64_t seed, const ExpectedTensor& t, std::uint64_t index) {
  const std::uint64_t key = mix64(seed ^ mix64(fnv1a64(t.name)));
  const std::uint64_t bits = mix64(key + (index + 1) * 0x9E3779B97F4A7C15ull);
  const float unit = static_cast<float>(bits >> 40) * 0x1p-24f;  // [0, 1), exact
  const float x = 2.0f * unit - 1.0f;                             // [-1, 1)
  switch (t.role) {
    case TensorRole::input_norm:
    case TensorRole::post_attn_norm:
    case TensorRole::final_norm:
    case TensorRole::q_norm:
    case TensorRole::k_norm: return 1.0f + 0.1f * x;
    case TensorRole::embed: return x;
    default: return x / std::sqrt(static_cast<float>(std::max<std::int64_t>(1, t.fan_in)));
  }
}

void fill_random_tensor(std::uint64_t seed, const ExpectedTensor& t, const ExpectedTensor* weight,
                        std::size_t first_element, std::span<std::byte> out) {
  const std::size_t width = dtype_bytes(t.dtype), count = out.size() / width;
  std::vector<float> values;
  if (is_scale(t.role)) {
    if (!weight) throw std::logic_error("fill_random_tensor: scale tensor " + t.name + " without its weight");
    std::vector<float> row;
    for (std::size_t r = 0; r < count; ++r) {
      weight_row(seed, *weight, first_element + r, row);
      const float scale = row_scale(row);
      encode_from_float(t.dtype, &scale, 1, out.data() + r * width);
    }
    return;
  }
  if (t.dtype == Dtype::f8_e4m3) {
    const auto in = static_cast<std::size_t>(t.shape.at(1));
    if (in == 0) return;
    if (first_element % in != 0 || count % in != 0)
      throw std::logic_error("fill_random_tensor: FP8 tensor " + t.name + " filled in partial rows");
    for (std::size_t r = 0; r < count / in; ++r) {
      weight_row(seed, t, first_element / in + r, values);
      const float scale = row_scale(values);
      for (auto& v : values) v /= scale;
      encode_from_float(Dtype::f8_e4m3, values.data(), in, out.data() + r * in);
    }
    return;
  }
  constexpr std::size_t kBlock = 1 << 16;
  values.resize(std::min(count, kBlock));
  for (std::size_t done = 0; done < count; done += kBlock) {
    const std::size_t n = std::min(kBlock, count - done);
    for (std::size_t i = 0; i < n; ++i) values[i] = random_weight_value(seed, t, first_element + done + i);
    encode_from_float(t.dtype, values.data(), n, out.data() + done * width);
  }
}

json random_checkpoint_config(const json& hf_config, const RandomWeightsOptions& options) {
  if (!hf_config.is_object()) throw InputError("random weights: the model config must be a JSON object (an HF config.json)");
  json cfg = hf_config;
  if (is_llama4(cfg) && !options.layout.multimodal_prefix && cfg.contains("text_config") && cfg.at("text_config").is_object()) {
    json text = cfg.at("text_config");
    for (const char* key : {"tie_word_embeddings", "torch_dtype"})
      if (!text.contains(key) && cfg.contains(key)) text[key] = cfg.at(key);
    text["model_type"] = "llama4_text";
    text["architectures"] = {"Llama4ForCausalLM"};
    cfg = std::move(text);
  }
  cfg.erase("quantization_config");  // the weights written are what options say, whatever the source config was
  if (options.layout.fp8_experts) cfg["quantization_config"] = compressed_tensors_config(options.layout.multimodal_prefix);
  return cfg;
}

RandomCheckpoint write_random_checkpoint(const json& hf_config, const std::string& name, const std::filesystem::path& dir,
                                         const RandomWeightsOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(dir, ec) && !options.overwrite && !fs::exists(dir / kRandomWeightsMarker, ec)) {
    for (const auto& entry : fs::directory_iterator(dir, ec))
      throw InputError("will not write random weights into " + printable(dir.string()) + ": it holds files moeplan did not write (" +
                       printable(entry.path().filename().string()) + "); name a new or empty directory, or add --force");
  }
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec)) throw InputError("cannot write random weights into " + printable(dir.string()) + ": not a directory");
  write_file_atomic(dir / kRandomWeightsMarker, "moeplan random weights, seed " + std::to_string(options.seed) + "\n");

  RandomCheckpoint result;
  result.dir = dir;
  const json cfg = random_checkpoint_config(hf_config, options);
  const fs::path config_path = dir / "config.json";
  result.config = model::parse_hf_config(cfg, name, config_path.string());
  result.layout = checkpoint_layout(result.config, options.layout);
  const auto& tensors = result.layout.tensors;

  std::map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < tensors.size(); ++i) by_name.emplace(tensors[i].name, i);
  const TensorFill fill = [&](const TensorSpec& spec, std::size_t first, std::span<std::byte> out) {
    const ExpectedTensor& t = tensors[by_name.at(spec.name)];
    const ExpectedTensor* weight = nullptr;
    if (is_scale(t.role)) weight = &tensors[by_name.at(t.name.substr(0, t.name.size() - std::string("_scale").size()))];
    fill_random_tensor(options.seed, t, weight, first, out);
  };

  // Group tensors into shards in layout order.
  std::vector<std::vector<TensorSpec>> shards(1);
  std::uint64_t shard_bytes = 0;
  for (const auto& t : tensors) {
    TensorSpec spec{t.name, t.dtype, t.shape};
    const std::uint64_t bytes = spec.bytes();
    result.tensor_bytes += bytes;
    if (options.max_shard_bytes > 0 && !shards.back().empty() && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(std::move(spec));
    shard_bytes += bytes;
  }

  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"moeplan_random_seed", std::to_string(options.seed)}};
  const fs::path index_path = dir / "model.safetensors.index.json", single_path = dir / "model.safetensors";
  if (options.max_shard_bytes == 0) {
    write_safetensors(single_path, shards.front(), metadata, fill);
    result.files.push_back(single_path);
    fs::remove(index_path, ec);  // a stale index would win over model.safetensors in Checkpoint::open
  } else {
    json index = {{"metadata", {{"total_size", result.tensor_bytes}}}, {"weight_map", json::object()}};
    auto five_digits = [](std::size_t n) {
      std::string text = std::to_string(n);
      return std::string(5 - std::min<std::size_t>(5, text.size()), '0') + text;
    };
    for (std::size_t s = 0; s < shards.size(); ++s) {
      const std::string file = "model-" + five_digits(s + 1) + "-of-" + five_digits(shards.size()) + ".safetensors";
      write_safetensors(dir / file, shards[s], metadata, fill);
      result.files.push_back(dir / file);
      for (const auto& spec : shards[s]) index["weight_map"][spec.name] = file;
    }
    write_file_atomic(index_path, index.dump(2) + "\n");
    result.files.push_back(index_path);
    fs::remove(single_path, ec);
  }
  write_file_atomic(config_path, cfg.dump(2) + "\n");
  return result;
}

}  // namespace moeplan::executor
