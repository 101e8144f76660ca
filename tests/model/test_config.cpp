// Layer structure parsed from the shipped config.json files, and the errors for bad configs.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;

TEST_CASE("Maverick has 48 layers: odd layers MoE, every fourth layer global NoPE, the rest chunked 8192") {
  const auto m = test::load("llama4-maverick");
  REQUIRE(m.layers.size() == 48);
  CHECK(m.hidden == 5120);
  CHECK(m.num_heads == 40);
  CHECK(m.num_kv_heads == 8);
  CHECK(m.head_dim == 128);
  CHECK(m.vocab == 202048);
  CHECK(m.num_experts == 128);
  CHECK(m.experts_per_token == 1);
  CHECK(m.count_layers(MlpKind::moe) == 24);
  CHECK(m.count_layers(AttentionKind::global) == 12);
  CHECK(m.count_layers(AttentionKind::chunked) == 36);
  for (const auto& l : m.layers) {
    INFO("layer " << l.index);
    CHECK((l.mlp == MlpKind::moe) == (l.index % 2 == 1));
    const bool global = (l.index + 1) % 4 == 0;
    CHECK((l.attention == AttentionKind::global) == global);
    CHECK(l.rope == !global);
    if (!global) CHECK(l.attention_window_tokens == 8192);
  }
}

TEST_CASE("Scout is MoE in every layer with 16 experts and qk-norm") {
  const auto m = test::load("llama4-scout");
  CHECK(m.count_layers(MlpKind::moe) == 48);
  CHECK(m.num_experts == 16);
  CHECK(m.qk_norm);
}

TEST_CASE("DeepSeek-V3: MLA, first three layers dense, one MTP module") {
  const auto m = test::load("deepseek-v3");
  REQUIRE(m.mla.has_value());
  CHECK(m.mla->kv_lora_rank == 512);
  CHECK(m.mla->qk_rope_head_dim == 64);
  CHECK(m.count_layers(AttentionKind::mla) == 61);
  CHECK(m.count_layers(MlpKind::dense) == 3);
  CHECK(m.layers[2].mlp == MlpKind::dense);
  CHECK(m.layers[3].mlp == MlpKind::moe);
  CHECK(m.num_shared_experts == 1);
  CHECK(m.num_mtp_layers == 1);
  CHECK(m.checkpoint_quant.precision == "fp8-block");
}

TEST_CASE("gpt-oss alternates sliding(128) and full attention") {
  const auto m = test::load("gpt-oss-120b");
  CHECK(m.count_layers(AttentionKind::sliding) == 18);
  CHECK(m.count_layers(AttentionKind::global) == 18);
  CHECK(m.layers[0].attention == AttentionKind::sliding);
  CHECK(m.layers[0].attention_window_tokens == 128);
  CHECK(m.layers[1].attention == AttentionKind::global);
  CHECK(m.checkpoint_quant.precision == "mxfp4:experts");
}

TEST_CASE("an unknown model_type is an error that lists the supported ones") {
  const nlohmann::json j = {{"model_type", "falcon"}, {"hidden_size", 64}};
  try {
    parse_hf_config(j, "x", "x/config.json");
    FAIL("expected InputError");
  } catch (const InputError& e) {
    const std::string what = e.what();
    CHECK(what.find("falcon") != std::string::npos);
    CHECK(what.find("llama4, llama, mixtral, qwen3_moe, deepseek_v3, gpt_oss") != std::string::npos);
  }
}

TEST_CASE("missing or wrong fields name the field") {
  nlohmann::json j = {{"model_type", "llama"}, {"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"vocab_size", 100}, {"intermediate_size", 128}};
  CHECK_NOTHROW(parse_hf_config(j, "x", "x.json"));
  j["num_hidden_layers"] = -2;
  CHECK_THROWS_WITH(parse_hf_config(j, "x", "x.json"), Catch::Contains("num_hidden_layers") && Catch::Contains("positive"));
  j.erase("num_hidden_layers");
  CHECK_THROWS_WITH(parse_hf_config(j, "x", "x.json"), Catch::Contains("missing field 'num_hidden_layers'"));
}

TEST_CASE("malformed JSON reports file, line and column") {
  CHECK_THROWS_WITH(parse_json_text("{\n  \"a\": 1,\n  \"b\": }\n", "bad.json"), Catch::StartsWith("bad.json:3:"));
}

TEST_CASE("unknown built-in model suggests close names") {
  CHECK_THROWS_WITH(test::load("llama4-maverik"), Catch::Contains("did you mean llama4-maverick"));
  CHECK_THROWS_AS(test::load("no/such/config.json"), InputError);
}

TEST_CASE("a model can be given as a path to config.json") {
  const auto m = load_model((test::data() / "models" / "mixtral-8x7b" / "config.json").string(), test::data());
  CHECK(m.model_type == "mixtral");
  CHECK(m.num_experts == 8);
}
