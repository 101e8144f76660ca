// Our counts against two outside references:
//  - tests/fixtures/hf_param_counts.json: Hugging Face transformers building each shipped config on the meta
//    device (tools/count_params.py), module by module;
//  - data/models/published_params.yaml: the published figures (exact where published, else rounded).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "common/files.hpp"
#include "model/params.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;

TEST_CASE("parameter counts equal transformers' module by module") {
  const auto hf = parse_json_file(test::fixtures() / "hf_param_counts.json").at("models");
  REQUIRE(hf.size() == 12);
  for (const auto& [name, entry] : hf.items()) {
    INFO(name);
    const auto m = test::load(name);
    const auto p = count_params(m);
    const auto& split = entry.at("split");
    // transformers builds neither DeepSeek's MTP module nor counts e_score_correction_bias (a buffer there).
    const std::int64_t buffers = entry.value("router_bias_buffers", std::int64_t{0});
    CHECK(p.text + p.vision - buffers == entry.at("total_params").get<std::int64_t>());
    CHECK(p.of(Module::routed_experts) == split.at("routed_experts").get<std::int64_t>());
    CHECK(p.of(Module::shared_experts) == split.at("shared_experts").get<std::int64_t>());
    CHECK(p.of(Module::dense_mlp) == split.at("dense_mlp").get<std::int64_t>());
    CHECK(p.of(Module::embedding) == split.at("embeddings").get<std::int64_t>());
    CHECK(p.of(Module::lm_head) == split.at("lm_head").get<std::int64_t>());
    CHECK(p.vision == split.at("vision").get<std::int64_t>());
  }
}

TEST_CASE("parameter counts agree with every published figure to its stated rounding") {
  const auto doc = parse_yaml_file(test::data() / "models" / "published_params.yaml");
  int checked = 0;
  for (const auto& n : doc["models"]) {
    const auto name = n["name"].as<std::string>();
    INFO(name);
    const auto p = count_params(test::load(name));
    if (n["total_params"]) CHECK(p.total == n["total_params"].as<std::int64_t>());
    if (n["text_params"]) CHECK(p.text == n["text_params"].as<std::int64_t>());
    if (n["active_params"]) CHECK(p.active_with_embedding == n["active_params"].as<std::int64_t>());
    if (n["total_params_rounded"]) {
      // Within one unit of the stated precision ("1e9 (...)") or 0.5 %, whichever is larger: headline figures
      // truncate ("30B" for 30.5 B; "400B" for Maverick's 401.6 B with vision).
      const double published = n["total_params_rounded"].as<double>();
      const double unit = std::stod(n["total_params_precision"].as<std::string>());
      CHECK(std::fabs(static_cast<double>(p.total) - published) <= std::max(unit, 0.005 * published));
    }
    ++checked;
  }
  CHECK(checked == 12);
}
