// Shape overrides: a shrunk Maverick keeps its MoE/dense interleave and its chunked/global (RoPE/NoPE) pattern
// with parameter counts worked out by hand; impossible overrides are refused with the reason.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/files.hpp"
#include "model/params.hpp"
#include "model/shape_override.hpp"
#include "tests/executor/executor_test_util.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;
using nlohmann::json;
using moeplan::test::error_of;

namespace {

ModelConfig shrunk(const std::string& name, const std::string& spec) {
  return parse_hf_config(apply_shape_overrides(test::builtin_config_json(name), parse_shape_overrides(spec), name), name, name);
}

}  // namespace

TEST_CASE("parse_shape_overrides reads key=value lists and names a bad entry") {
  const auto o = parse_shape_overrides("layers=4,experts=8,hidden=512");
  CHECK(o.layers == 4);
  CHECK(o.experts == 8);
  CHECK(o.hidden == 512);
  CHECK(!o.heads);
  CHECK(!o.empty());
  CHECK(parse_shape_overrides("").empty());
  CHECK(parse_shape_overrides(" heads=8 , kv_heads=2").kv_heads == 2);
  CHECK_THAT(error_of([] { (void)parse_shape_overrides("layer=4"); }), Catch::Contains("did you mean layers"));
  CHECK_THAT(error_of([] { (void)parse_shape_overrides("layers=0"); }), Catch::Contains("positive integer"));
  CHECK_THAT(error_of([] { (void)parse_shape_overrides("layers=4x"); }), Catch::Contains("positive integer"));
  CHECK_THAT(error_of([] { (void)parse_shape_overrides("layers"); }), Catch::Contains("layers=<positive integer>"));
  CHECK_THAT(error_of([] { (void)parse_shape_overrides("vocab=9,vocab=10"); }), Catch::Contains("twice"));
}

TEST_CASE("a shrunk Maverick keeps the MoE/dense interleave and the chunked/global pattern, with hand-counted parameters") {
  const auto c = shrunk("llama4-maverick",
                        "layers=4,experts=4,hidden=256,heads=4,kv_heads=2,head_dim=64,moe_intermediate=128,dense_intermediate=512,vocab=1000");
  REQUIRE(c.num_layers == 4);
  // Layers 1 and 3 are MoE (interleave_moe_layer_step 2); layer 3 is NoPE + global (every 4th), the rest RoPE + chunked.
  const MlpKind mlp[] = {MlpKind::dense, MlpKind::moe, MlpKind::dense, MlpKind::moe};
  const AttentionKind attention[] = {AttentionKind::chunked, AttentionKind::chunked, AttentionKind::chunked, AttentionKind::global};
  for (int i = 0; i < 4; ++i) {
    CHECK(c.layers[static_cast<std::size_t>(i)].mlp == mlp[i]);
    CHECK(c.layers[static_cast<std::size_t>(i)].attention == attention[i]);
    CHECK(c.layers[static_cast<std::size_t>(i)].rope == (i != 3));
  }
  CHECK(c.layers[0].attention_window_tokens == 8192);
  CHECK(c.num_experts == 4);
  CHECK(c.experts_per_token == 1);
  CHECK(c.num_shared_experts == 1);
  // attention per layer: q, o [256, 256] + k, v [128, 256] = 196,608; norms 512 per layer.
  // dense MLP (layers 0, 2): 3 x 512 x 256 = 393,216. MoE (layers 1, 3): router 4 x 256 = 1,024, experts
  // 4 x 3 x 128 x 256 = 393,216, shared expert 3 x 128 x 256 = 98,304. Embedding and lm_head 1000 x 256 each,
  // final norm 256. Total 4 x 197,120 + 2 x 393,216 + 2 x 492,544 + 512,256 = 3,072,256.
  const auto p = count_params(c);
  CHECK(p.text == 3'072'256);
  // One of four experts active per MoE layer: 2 x 3 x 98,304 = 589,824 fewer.
  CHECK(p.active_with_embedding == 3'072'256 - 589'824);
  CHECK(p.of(Module::routed_experts) == 2 * 393'216);
}

TEST_CASE("a full-width Maverick slice keeps hidden 5120 and expert 8192 with fewer layers and experts") {
  const auto full = test::load("llama4-maverick");
  const auto c = shrunk("llama4-maverick", "layers=8,experts=2");
  CHECK(c.hidden == 5120);
  CHECK(c.moe_intermediate == 8192);
  CHECK(c.dense_intermediate == 16384);
  CHECK(c.count_layers(MlpKind::moe) == 4);
  CHECK(c.count_layers(AttentionKind::global) == 2);
  // Per-layer weights are those of the full model's first 8 layers, except the routed experts (2 of 128).
  const auto pf = count_params(full), pc = count_params(c);
  CHECK(pc.of(Module::attention) * 48 == pf.of(Module::attention) * 8);
  CHECK(pc.of(Module::dense_mlp) * 24 == pf.of(Module::dense_mlp) * 4);
  CHECK(pc.of(Module::routed_experts) * 24 * 64 == pf.of(Module::routed_experts) * 4);
  CHECK(pc.of(Module::embedding) == pf.of(Module::embedding));
}

TEST_CASE("shape overrides refuse what cannot be built, saying why") {
  auto apply = [](const std::string& name, const std::string& spec) {
    return error_of([&] { (void)apply_shape_overrides(test::builtin_config_json(name), parse_shape_overrides(spec), name); });
  };
  CHECK_THAT(apply("llama4-maverick", "layers=2"), Catch::Contains("use layers >= 4"));
  CHECK_THAT(apply("llama4-maverick", "layers=1"), Catch::Contains("drops every MoE"));
  CHECK_THAT(apply("llama4-maverick", "heads=6,kv_heads=4"), Catch::Contains("multiple of kv_heads"));
  CHECK_THAT(apply("llama4-maverick", "kv_heads=16"), Catch::Contains("multiple of kv_heads"));
  CHECK_THAT(apply("qwen3-30b-a3b", "experts=4"), Catch::Contains("fewer than experts_per_token=8"));
  CHECK(apply("qwen3-30b-a3b", "experts=4,experts_per_token=2").empty());
  CHECK_THAT(apply("mixtral-8x7b", "dense_intermediate=64"), Catch::Contains("no dense MLP"));
  CHECK_THAT(apply("mixtral-8x7b", "hidden=100"), Catch::Contains("not divisible by heads=32"));
  json null_head_dim = test::builtin_config_json("mixtral-8x7b");
  null_head_dim["head_dim"] = nullptr;  // as transformers 5 saves it: derived from hidden / heads
  CHECK_THAT(error_of([&] { (void)apply_shape_overrides(null_head_dim, parse_shape_overrides("hidden=100"), "m"); }),
             Catch::Contains("not divisible"));
  CHECK_THAT(apply("deepseek-v3", "layers=4"), Catch::Contains("support llama4, qwen3_moe and mixtral"));
  ShapeOverrides negative;
  negative.vocab = -5;
  CHECK_THAT(error_of([&] { (void)apply_shape_overrides(test::builtin_config_json("mixtral-8x7b"), negative, "m"); }),
             Catch::Contains("must be positive"));
}

TEST_CASE("per-layer lists follow the layer count: no_rope_layers cut, mlp_only_layers and moe_layers filtered") {
  json j = test::builtin_config_json("llama4-maverick");
  auto& text = j["text_config"];
  text["no_rope_layers"] = json::array();
  for (int i = 0; i < 48; ++i) text["no_rope_layers"].push_back(i == 2 ? 0 : 1);  // only layer 2 is NoPE
  text["moe_layers"] = {1, 5, 47};
  ShapeOverrides o;
  o.layers = 6;
  const json out = apply_shape_overrides(j, o, "m");
  CHECK(out["text_config"]["no_rope_layers"].size() == 6);
  CHECK(out["text_config"]["moe_layers"] == json({1, 5}));
  const auto c = parse_hf_config(out, "m", "m");
  CHECK(!c.layers[2].rope);
  CHECK(c.layers[5].mlp == MlpKind::moe);
  o.layers = 49;
  CHECK_THAT(error_of([&] { (void)apply_shape_overrides(j, o, "m"); }), Catch::Contains("exceeds the 48 entries of no_rope_layers"));

  json q = test::builtin_config_json("qwen3-30b-a3b");
  q["mlp_only_layers"] = {0, 3, 40};
  ShapeOverrides qo;
  qo.layers = 4;
  const json qout = apply_shape_overrides(q, qo, "q");
  CHECK(qout["mlp_only_layers"] == json({0, 3}));
  CHECK(qout["max_window_layers"] == 4);
  const auto qc = parse_hf_config(qout, "q", "q");
  CHECK(qc.count_layers(MlpKind::dense) == 2);
}

TEST_CASE("with a smaller vocab, special token ids past it are dropped") {
  ShapeOverrides o;
  o.vocab = 1000;
  const json out = apply_shape_overrides(test::builtin_config_json("llama4-maverick"), o, "m");
  CHECK(out["text_config"]["pad_token_id"].is_null());                // 200018
  CHECK(out["text_config"]["eos_token_id"].is_null());                // [200001, 200007, 200008]
  const json mixtral = apply_shape_overrides(test::builtin_config_json("mixtral-8x7b"), o, "x");
  CHECK(mixtral["bos_token_id"] == 1);                                // inside the new vocabulary: kept
  CHECK(mixtral["eos_token_id"] == 2);
}
