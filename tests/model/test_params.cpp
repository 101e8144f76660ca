// Exact parameter counts against the published checkpoints (data/models/<name>/SOURCE.md and
// data/models/published_params.yaml say where each number comes from).
#include <catch2/catch.hpp>

#include "model/params.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;

TEST_CASE("Llama 4 Maverick: 401,583,781,376 total, 400,711,848,960 text, 17,184,691,200 active") {
  const auto p = count_params(test::load("llama4-maverick"));
  CHECK(p.total == 401'583'781'376LL);
  CHECK(p.text == 400'711'848'960LL);
  CHECK(p.vision == 871'932'416LL);
  CHECK(p.active_with_embedding == 17'184'691'200LL);
  // Module split: 24 MoE layers x 128 experts x 3 x 5120 x 8192 routed; 24 dense layers x 3 x 5120 x 16384.
  CHECK(p.of(Module::routed_experts) == 24LL * 128 * 3 * 5120 * 8192);
  CHECK(p.of(Module::shared_experts) == 24LL * 3 * 5120 * 8192);
  CHECK(p.of(Module::dense_mlp) == 24LL * 3 * 5120 * 16384);
  CHECK(p.of(Module::router) == 24LL * 128 * 5120);
  CHECK(p.of(Module::attention) == 48LL * (2 * 5120 * 5120 + 2 * 1024 * 5120));
  CHECK(p.of(Module::embedding) == 202048LL * 5120);
  CHECK(p.of(Module::lm_head) == 202048LL * 5120);
}

TEST_CASE("published totals of the other shipped checkpoints") {
  struct Row {
    const char* name;
    std::int64_t total;
    std::int64_t active;  // with input embedding
  };
  // Totals: safetensors parameter counts of the HF checkpoints (model pages / index metadata); gpt-oss: model card
  // (116.83 B / 20.91 B). Active: published rounded figures are 17B (Scout), 12.9B (8x7B), 39B (8x22B), 22B, 3.3B.
  const Row rows[] = {
      {"llama4-scout", 108'641'793'536LL, 17'172'894'720LL},
      {"mixtral-8x7b", 46'702'792'704LL, 12'879'925'248LL},
      {"mixtral-8x22b", 140'620'634'112LL, 39'152'031'744LL},
      {"qwen3-235b-a22b", 235'093'634'560LL, 22'190'763'520LL},
      {"qwen3-30b-a3b", 30'532'122'624LL, 3'353'032'704LL},
      {"gpt-oss-120b", 116'829'156'672LL, 5'711'982'912LL},
      {"gpt-oss-20b", 20'914'757'184LL, 4'187'440'704LL},
      {"llama3.1-8b", 8'030'261'248LL, 8'030'261'248LL},
      {"llama3.1-70b", 70'553'706'496LL, 70'553'706'496LL},
      {"llama3.1-405b", 405'853'388'800LL, 405'853'388'800LL},
  };
  for (const auto& r : rows) {
    INFO(r.name);
    const auto p = count_params(test::load(r.name));
    CHECK(p.total == r.total);
    CHECK(p.active_with_embedding == r.active);
  }
}

TEST_CASE("gpt-oss active parameters match the model card when the input embedding is left out") {
  // Model card: 5.13 B active (120b), 3.61 B active (20b), counting the unembedding but not the embedding.
  CHECK(count_params(test::load("gpt-oss-120b")).active_without_embedding == 5'132'849'472LL);
  CHECK(count_params(test::load("gpt-oss-20b")).active_without_embedding == 3'608'307'264LL);
}

TEST_CASE("DeepSeek-V3: 671 B main model plus the MTP module as stored") {
  const auto p = count_params(test::load("deepseek-v3"));
  CHECK(p.text == 671'026'419'200LL);  // README: "671B of the Main Model weights"
  CHECK(p.mtp == 13'463'426'304LL);    // layer 61 with its own embed_tokens and shared_head copies (README: "14B")
  CHECK(p.total == p.text + p.mtp);
  CHECK(p.active_with_embedding == 37'552'297'472LL);  // README: 37B activated
}

TEST_CASE("tied embeddings are counted once") {
  nlohmann::json j = {{"model_type", "llama"}, {"hidden_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"vocab_size", 100}, {"intermediate_size", 128}, {"tie_word_embeddings", true}};
  const auto tied = count_params(parse_hf_config(j, "t", "t.json"));
  j["tie_word_embeddings"] = false;
  const auto untied = count_params(parse_hf_config(j, "u", "u.json"));
  CHECK(untied.total - tied.total == 100 * 64);
  CHECK(tied.of(Module::lm_head) == 0);
}
