// Checkpoint layouts against what transformers writes, layouts against the parameter counts, seeded random
// checkpoints read back through the reader (values equal to the generator), and the loader's checks.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/files.hpp"
#include "executor/checkpoint.hpp"
#include "executor/checkpoint_random.hpp"
#include "model/params.hpp"
#include "model/shape_override.hpp"
#include "tests/executor/executor_test_util.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::executor;
using nlohmann::json;
using moeplan::test::TempDir;
using moeplan::test::error_of;

namespace {

// Small versions of the real configs (same structure, tiny dimensions).
json tiny_maverick() {
  model::ShapeOverrides o;
  o.layers = 4, o.experts = 3, o.hidden = 64, o.moe_intermediate = 32, o.dense_intermediate = 96;
  o.heads = 4, o.kv_heads = 2, o.head_dim = 16, o.vocab = 128;
  return model::apply_shape_overrides(test::builtin_config_json("llama4-maverick"), o, "llama4-maverick");
}
json tiny_qwen3() {
  json j = test::builtin_config_json("qwen3-30b-a3b");
  j["mlp_only_layers"] = {1};
  model::ShapeOverrides o;
  o.layers = 3, o.experts = 4, o.experts_per_token = 2, o.hidden = 64, o.moe_intermediate = 32, o.dense_intermediate = 96;
  o.heads = 4, o.kv_heads = 2, o.head_dim = 16, o.vocab = 128;
  return model::apply_shape_overrides(j, o, "qwen3-30b-a3b");
}
json tiny_mixtral() {
  model::ShapeOverrides o;
  o.layers = 2, o.experts = 3, o.hidden = 64, o.intermediate = 32, o.heads = 4, o.kv_heads = 2, o.vocab = 128;
  return model::apply_shape_overrides(test::builtin_config_json("mixtral-8x7b"), o, "mixtral-8x7b");
}

std::int64_t product(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (const auto d : shape) n *= d;
  return n;
}

// Every float tensor of the checkpoint equals the generator rounded to its dtype, element by element.
void check_values_equal_generator(const Checkpoint& c, const CheckpointLayout& layout, std::uint64_t seed) {
  for (const auto& t : layout.tensors) {
    if (t.dtype == Dtype::f8_e4m3 || t.role == TensorRole::expert_gate_scale || t.role == TensorRole::expert_up_scale ||
        t.role == TensorRole::expert_down_scale)
      continue;
    INFO(t.name);
    const auto values = c.view(t.name).to_float();
    REQUIRE(static_cast<std::int64_t>(values.size()) == product(t.shape));
    std::size_t mismatches = 0;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const float expected = random_weight_value(seed, t, i);
      float rounded = expected;
      if (t.dtype == Dtype::bf16) rounded = kernels::bf16_to_float(kernels::float_to_bf16(expected));
      if (values[i] != rounded) ++mismatches;
    }
    CHECK(mismatches == 0);
  }
}

}  // namespace

TEST_CASE("checkpoint layouts name, shape and type every tensor exactly as transformers 5 saves them") {
  const json fixture = parse_json_file(std::filesystem::path(MOEPLAN_EXECUTOR_TEST_DIR) / "transformers_layouts.json");
  for (const auto& [name, c] : fixture.at("cases").items()) {
    INFO(name);
    json config_json = c.at("config");
    // transformers 5 writes Qwen3-MoE's expert count as num_local_experts (attribute_map in
    // configuration_qwen3_moe.py); model/config.cpp reads num_experts, the key of the published configs.
    if (name == "qwen3_moe") config_json["num_experts"] = config_json.at("num_local_experts");
    const auto config = model::parse_hf_config(config_json, name, name);
    LayoutOptions options;
    options.multimodal_prefix = name == "llama4_multimodal";
    const auto layout = checkpoint_layout(config, options);
    std::map<std::string, std::pair<std::string, std::vector<std::int64_t>>> ours, theirs;
    for (const auto& t : layout.tensors) ours[t.name] = {dtype_name(t.dtype), t.shape};
    std::int64_t vision = 0;
    for (const auto& [tensor, spec] : c.at("tensors").items()) {
      if (tensor.starts_with("vision_model.") || tensor.starts_with("multi_modal_projector.")) {
        ++vision;
        continue;
      }
      theirs[tensor] = {spec.at(0).get<std::string>(), spec.at(1).get<std::vector<std::int64_t>>()};
    }
    CHECK(ours == theirs);
    CHECK((vision > 0) == (name == "llama4_multimodal"));
  }
}

TEST_CASE("a layout holds exactly the parameters count_params counts, for every built-in llama4, qwen3_moe and mixtral") {
  int checked = 0;
  for (const auto& name : model::builtin_model_names(test::data())) {
    const auto config = test::load(name);
    const auto& types = layout_model_types();
    if (std::find(types.begin(), types.end(), config.model_type) == types.end()) continue;
    INFO(name);
    CHECK(checkpoint_layout(config).elements() == model::count_params(config).text);
    ++checked;
  }
  CHECK(checked == 6);  // maverick, scout, qwen3 235b and 30b, mixtral 8x7b and 8x22b
}

TEST_CASE("Maverick's layout: fused BF16 experts, or Meta's FP8 experts one by one with per-channel scales") {
  const auto config = test::load("llama4-maverick");
  const auto bf16 = checkpoint_layout(config);
  CHECK(bf16.experts == ExpertStorage::fused);
  const ExpectedTensor* gate_up = bf16.find(1, TensorRole::experts_gate_up);
  REQUIRE(gate_up);
  CHECK(gate_up->name == "model.layers.1.feed_forward.experts.gate_up_proj");
  CHECK(gate_up->shape == std::vector<std::int64_t>{128, 5120, 16384});
  CHECK(bf16.find(1, TensorRole::experts_down)->shape == std::vector<std::int64_t>{128, 8192, 5120});
  CHECK(bf16.find(0, TensorRole::dense_gate)->shape == std::vector<std::int64_t>{16384, 5120});
  CHECK(bf16.find(0, TensorRole::router) == nullptr);
  CHECK(bf16.find(-1, TensorRole::lm_head)->name == "lm_head.weight");

  LayoutOptions fp8;
  fp8.fp8_experts = fp8.multimodal_prefix = true;
  const auto meta = checkpoint_layout(config, fp8);
  const ExpectedTensor* down = meta.find(47, TensorRole::expert_down, 127);
  REQUIRE(down);
  CHECK(down->name == "language_model.model.layers.47.feed_forward.experts.127.down_proj.weight");
  CHECK(down->dtype == Dtype::f8_e4m3);
  CHECK(down->shape == std::vector<std::int64_t>{5120, 8192});
  const ExpectedTensor* scale = meta.find(47, TensorRole::expert_down_scale, 127);
  CHECK(scale->name == "language_model.model.layers.47.feed_forward.experts.127.down_proj.weight_scale");
  CHECK(scale->shape == std::vector<std::int64_t>{5120, 1});
  CHECK(meta.find(47, TensorRole::shared_down)->dtype == Dtype::bf16);
  CHECK(meta.find(-1, TensorRole::lm_head)->name == "language_model.lm_head.weight");
  // Weights (scales aside) are the same parameters in either layout.
  std::int64_t scales = 0;
  for (const auto& t : meta.tensors)
    if (t.role == TensorRole::expert_gate_scale || t.role == TensorRole::expert_up_scale || t.role == TensorRole::expert_down_scale)
      scales += product(t.shape);
  CHECK(meta.elements() - scales == bf16.elements());
  CHECK(scales == 24 * 128 * (8192 + 8192 + 5120));

  CHECK_THAT(error_of([&] { (void)checkpoint_layout(test::load("qwen3-30b-a3b"), fp8); }), Catch::Contains("only for llama4"));
  CHECK_THAT(error_of([&] { (void)checkpoint_layout(test::load("deepseek-v3")); }), Catch::Contains("no checkpoint layout"));
}

TEST_CASE("a random checkpoint reads back through the reader with every value equal to the generator") {
  for (const auto& [label, config_json] : std::vector<std::pair<std::string, json>>{
           {"llama4", tiny_maverick()}, {"qwen3_moe", tiny_qwen3()}, {"mixtral", tiny_mixtral()}}) {
    INFO(label);
    TempDir dir("random-" + label);
    RandomWeightsOptions options;
    options.seed = 1234;
    const auto written = write_random_checkpoint(config_json, label, dir.path(), options);
    const auto c = Checkpoint::open(dir.path());
    const auto config = model::load_model((dir / "config.json").string(), test::data());
    const auto report = check_checkpoint(c, config);
    CHECK(report.warnings.empty());
    CHECK(report.layout.tensors.size() == c.size());
    CHECK(static_cast<std::int64_t>(c.total_tensor_bytes()) == 2 * model::count_params(config).text);
    check_values_equal_generator(c, report.layout, options.seed);
  }
}

TEST_CASE("random values are deterministic, depend on the seed, and are scaled to keep activations finite") {
  TempDir a("seed-a"), b("seed-b"), c("seed-c");
  RandomWeightsOptions options;
  options.seed = 7;
  (void)write_random_checkpoint(tiny_mixtral(), "m", a.path(), options);
  (void)write_random_checkpoint(tiny_mixtral(), "m", b.path(), options);
  options.seed = 8;
  (void)write_random_checkpoint(tiny_mixtral(), "m", c.path(), options);
  CHECK(test::read_bytes(a / "model.safetensors") == test::read_bytes(b / "model.safetensors"));
  CHECK(test::read_bytes(a / "model.safetensors") != test::read_bytes(c / "model.safetensors"));

  // A fixed value pins the generator itself (splitmix64 over FNV-1a), so a change in it cannot go unnoticed.
  ExpectedTensor t{"model.norm.weight", Dtype::bf16, {64}, TensorRole::final_norm, -1, -1, 64};
  const float first = random_weight_value(7, t, 0);
  CHECK(first == random_weight_value(7, t, 0));
  CHECK(first != random_weight_value(8, t, 0));

  const auto ckpt = Checkpoint::open(a.path());
  // 1 ± 0.1, then rounded to BF16 (a step of 2^-7 just below 1).
  for (const float v : ckpt.view("model.norm.weight").to_float()) CHECK(std::fabs(v - 1.0f) <= 0.1f + 0x1p-8f);
  float largest = 0, sum = 0;
  const auto q = ckpt.view("model.layers.0.self_attn.q_proj.weight").to_float();  // [64, 64]: bound 1/8
  for (const float v : q) {
    largest = std::max(largest, std::fabs(v));
    sum += v;
  }
  CHECK(largest <= 0.1251f);
  CHECK(largest > 0.12f);                                  // it uses the range
  CHECK(std::fabs(sum / static_cast<float>(q.size())) < 0.01f);  // centred
}

TEST_CASE("a sharded random checkpoint holds the same tensors as a single-file one") {
  TempDir single("shard-1"), sharded("shard-n");
  RandomWeightsOptions options;
  options.seed = 99;
  (void)write_random_checkpoint(tiny_qwen3(), "q", single.path(), options);
  options.max_shard_bytes = 20000;
  const auto written = write_random_checkpoint(tiny_qwen3(), "q", sharded.path(), options);
  CHECK(written.files.size() > 3);
  CHECK(written.files.back().filename() == "model.safetensors.index.json");
  CHECK(written.files.front().filename().string().starts_with("model-00001-of-000"));
  const auto a = Checkpoint::open(single.path()), b = Checkpoint::open(sharded.path());
  CHECK(b.sharded());
  REQUIRE(a.names() == b.names());
  for (const auto& name : a.names()) {
    const auto va = a.view(name), vb = b.view(name);
    REQUIRE(va.bytes == vb.bytes);
    CHECK(std::equal(va.data, va.data + va.bytes, vb.data));
  }
  (void)check_checkpoint(b, written.config);
}

TEST_CASE("an FP8 random Maverick slice stores experts as E4M3 codes with BF16 per-channel scales") {
  TempDir dir("fp8");
  RandomWeightsOptions options;
  options.seed = 5;
  options.layout.fp8_experts = options.layout.multimodal_prefix = true;
  const auto written = write_random_checkpoint(tiny_maverick(), "maverick-fp8", dir.path(), options);
  CHECK(written.config.checkpoint_quant.method == "compressed-tensors");
  CHECK(written.config.checkpoint_quant.precision == "fp8:experts");
  const auto c = Checkpoint::open(dir.path());
  const auto config = model::load_model((dir / "config.json").string(), test::data());
  const auto report = check_checkpoint(c, config);  // detects the prefix and the FP8 layout
  CHECK(report.layout.options.fp8_experts);
  CHECK(report.layout.options.multimodal_prefix);

  const ExpectedTensor& w = *report.layout.find(3, TensorRole::expert_up, 2);
  const auto codes = c.view(w.name);
  CHECK(codes.dtype == Dtype::f8_e4m3);
  const auto scales = c.view(w.name + "_scale").to_float();
  const auto dequant = codes.to_float();
  const auto rows = static_cast<std::size_t>(w.shape[0]), cols = static_cast<std::size_t>(w.shape[1]);
  for (std::size_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (std::size_t k = 0; k < cols; ++k) amax = std::max(amax, std::fabs(random_weight_value(5, w, r * cols + k)));
    CHECK(scales[r] == kernels::bf16_to_float(kernels::float_to_bf16(amax / 448.0f)));
    for (std::size_t k = 0; k < cols; ++k) {
      // E4M3 keeps 3 mantissa bits: a relative error of at most 1/16, plus the subnormal step near zero.
      const float original = random_weight_value(5, w, r * cols + k);
      CHECK(std::fabs(dequant[r * cols + k] * scales[r] - original) <= std::fabs(original) / 16 + scales[r] * 0x1p-9f);
    }
  }
}

TEST_CASE("the loader names the tensor and file of a missing tensor, a wrong shape, an unsupported dtype, an extra") {
  TempDir good("check-good");
  RandomWeightsOptions options;
  const auto written = write_random_checkpoint(tiny_mixtral(), "mixtral", good.path(), options);
  const auto& layout = written.layout;

  // Rewrite the checkpoint with one change, through the same writer, and check it against the same config.
  auto rewritten = [&](const std::function<void(std::vector<TensorSpec>&)>& edit) {
    std::vector<TensorSpec> specs;
    for (const auto& t : layout.tensors) specs.push_back({t.name, t.dtype, t.shape});
    edit(specs);
    auto dir = std::make_unique<TempDir>("check-bad");
    write_safetensors(*dir / "model.safetensors", specs, {}, [](const TensorSpec&, std::size_t, std::span<std::byte>) {});
    return dir;
  };
  auto message = [&](const TempDir& dir, const CheckOptions& check = {}) {
    return error_of([&] { (void)check_checkpoint(Checkpoint::open(dir.path()), written.config, check); });
  };
  const std::string target = "model.layers.1.block_sparse_moe.experts.2.w2.weight";

  SECTION("missing tensor") {
    const auto dir = rewritten([&](auto& specs) { std::erase_if(specs, [&](const TensorSpec& s) { return s.name == target; }); });
    const std::string m = message(*dir);
    CHECK_THAT(m, Catch::Contains("missing tensor '" + target + "'"));
    CHECK_THAT(m, Catch::Contains("BF16 [64, 32]"));
    CHECK_THAT(m, Catch::StartsWith((*dir / "model.safetensors").string()));
  }
  SECTION("wrong shape") {
    const auto dir = rewritten([&](auto& specs) {
      for (auto& s : specs)
        if (s.name == target) s.shape = {32, 64};
    });
    CHECK_THAT(message(*dir), Catch::Contains("tensor '" + target + "' has shape [32, 64], expected [64, 32]"));
  }
  SECTION("unsupported dtype for the tensor") {
    const auto dir = rewritten([&](auto& specs) {
      for (auto& s : specs)
        if (s.name == target) s.dtype = Dtype::i8;
    });
    CHECK_THAT(message(*dir), Catch::Contains("tensor '" + target + "' has dtype I8"));
  }
  SECTION("another float dtype is accepted") {
    const auto dir = rewritten([&](auto& specs) {
      for (auto& s : specs)
        if (s.name == target) s.dtype = Dtype::f32;
    });
    CHECK(message(*dir).empty());
  }
  SECTION("unexpected tensors are an error unless allowed, and the vision tower is ignored") {
    const auto dir = rewritten([&](auto& specs) {
      specs.push_back({"model.layers.9.extra.weight", Dtype::bf16, {2}});
      specs.push_back({"model.layers.9.other.weight", Dtype::bf16, {2}});
    });
    CHECK_THAT(message(*dir), Catch::Contains("unexpected tensor 'model.layers.9.extra.weight' and 1 more"));
    CheckOptions allow;
    allow.allow_unexpected = true;
    const auto report = check_checkpoint(Checkpoint::open(dir->path()), written.config, allow);
    REQUIRE(report.warnings.size() == 1);
    CHECK_THAT(report.warnings[0], Catch::Contains("(ignored)"));
  }
  SECTION("several problems: the first is named, the rest counted") {
    const auto dir = rewritten([&](auto& specs) { specs.resize(specs.size() - 3); });
    CHECK_THAT(message(*dir), Catch::Contains("(and 2 more problems)"));
  }
}

TEST_CASE("a multimodal Llama 4 checkpoint with a vision tower passes the check, the vision tensors are ignored") {
  TempDir dir("mm");
  const auto config = model::parse_hf_config(tiny_maverick(), "m", "m");
  LayoutOptions mm;
  mm.multimodal_prefix = true;
  std::vector<TensorSpec> specs;
  for (const auto& t : checkpoint_layout(config, mm).tensors) specs.push_back({t.name, t.dtype, t.shape});
  specs.push_back({"vision_model.patch_embedding.linear.weight", Dtype::bf16, {4, 8}});
  specs.push_back({"multi_modal_projector.linear_1.weight", Dtype::bf16, {64, 8}});
  write_safetensors(dir / "model.safetensors", specs, {}, [](const TensorSpec&, std::size_t, std::span<std::byte>) {});
  const auto report = check_checkpoint(Checkpoint::open(dir.path()), config);
  CHECK(report.layout.options.multimodal_prefix);
  CHECK(!report.layout.options.fp8_experts);
  CHECK(report.ignored_tensors == 2);
}

TEST_CASE("the random writer flattens a multimodal Llama 4 config into a Llama4ForCausalLM one") {
  RandomWeightsOptions options;
  const json text_only = random_checkpoint_config(tiny_maverick(), options);
  CHECK(text_only.at("model_type") == "llama4_text");
  CHECK(text_only.at("architectures") == json::array({"Llama4ForCausalLM"}));
  CHECK(!text_only.contains("vision_config"));
  CHECK(!text_only.contains("quantization_config"));
  options.layout.multimodal_prefix = true;
  CHECK(random_checkpoint_config(tiny_maverick(), options).contains("vision_config"));
}
