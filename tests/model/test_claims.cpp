// Claims as data: the seeded Maverick claims against its config, every quantity computable, and bad claims files
// rejected with FILE:LINE.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/error.hpp"
#include "model/claims.hpp"
#include "model/params.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;

namespace {
std::vector<Claim> shipped() { return load_claims(test::data() / "claims.yaml", builtin_model_names(test::data())); }

const ClaimCheck& find(const std::vector<ClaimCheck>& checks, const std::string& quantity, double value) {
  for (const auto& k : checks)
    if (k.claim.quantity == quantity && k.claim.value == value) return k;
  FAIL("no claim of " << quantity << " = " << value);
  throw std::logic_error("unreachable");
}

std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  const auto path = test::temp_path(name);
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const std::filesystem::path& file) {
  try {
    load_claims(file, builtin_model_names(test::data()));
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

const char* kGood =
    "claims:\n"
    "  - model: llama4-maverick\n"
    "    source: \"calculator page (URL not recorded)\"\n"
    "    read: not recorded\n"
    "    claim: \"96 layers\"\n"
    "    quantity: num_layers\n"
    "    value: 96\n"
    "    reason: \"twice the config\"\n";
}  // namespace

TEST_CASE("claims: Maverick's 96 layers differ from the config's 48") {
  const ModelConfig m = test::load("llama4-maverick");
  const auto checks = check_claims(shipped(), m, test::precisions());
  REQUIRE(checks.size() >= 7);
  const auto& layers = find(checks, "num_layers", 96);
  REQUIRE(layers.computed);
  CHECK(*layers.computed == 48);
  CHECK_FALSE(layers.matches);
  CHECK_FALSE(layers.claim.reason.empty());
  CHECK_FALSE(layers.claim.source.empty());
}

TEST_CASE("claims: the KV, GPT-3-sized and NoPE claims differ, the model card's rounded figures match") {
  const ModelConfig m = test::load("llama4-maverick");
  const auto checks = check_claims(shipped(), m, test::precisions());
  // By hand: 2 (K, V) x 8 KV heads x 128 head_dim x 2 bytes x 48 layers.
  const auto& kv = find(checks, "kv_bytes_per_token", 393216);
  REQUIRE(kv.computed);
  CHECK(*kv.computed == 2.0 * 8 * 128 * 2 * 48);
  CHECK_FALSE(kv.matches);
  CHECK(*find(checks, "hidden_size", 12288).computed == 5120);
  CHECK(*find(checks, "num_layers", 120).computed == 48);
  CHECK(*find(checks, "num_heads", 96).computed == 40);
  CHECK(*find(checks, "active_experts", 2).computed == 1);
  const auto& nope = find(checks, "nope_layer_interval", 2);
  REQUIRE(nope.computed);
  CHECK(*nope.computed == 4);
  CHECK_FALSE(nope.matches);
  const auto& active = find(checks, "active_params", 17e9);
  CHECK(active.matches);
  CHECK(*active.computed == 17184691200.0);
  CHECK(find(checks, "num_experts", 128).matches);
  // Claims about other models are not checked against Maverick.
  for (const auto& k : checks) CHECK(k.claim.model == "llama4-maverick");
}

TEST_CASE("claims: every quantity has a unique name and is computed from each built-in config") {
  std::set<std::string> names;
  for (const auto& q : claim_quantities()) {
    CHECK(names.insert(q.name).second);
    CHECK(std::string(q.meaning).size() > 5);
  }
  for (const auto& name : builtin_model_names(test::data())) {
    const ModelConfig m = test::load(name);
    for (const char* q : {"num_layers", "hidden_size", "num_heads", "kv_bytes_per_token", "total_params", "active_params"}) {
      const auto v = find_claim_quantity(q)->compute(m, ClaimContext{});
      REQUIRE(v);
      CHECK(*v > 0);
    }
    if (!m.is_moe()) CHECK_FALSE(find_claim_quantity("active_experts")->compute(m, ClaimContext{}));
  }
  CHECK(nope_layer_interval(test::load("llama4-maverick")) == 4);
  CHECK_FALSE(nope_layer_interval(test::load("llama3.1-8b")));
  CHECK_FALSE(nope_layer_interval(test::load("deepseek-v3")));
}

TEST_CASE("claims: a file of the documented form loads and a tolerance admits rounded figures") {
  const auto file = write_temp("moeplan_claims_good.yaml",
                               std::string(kGood) +
                                   "  - model: llama4-maverick\n"
                                   "    source: https://example.org/page\n"
                                   "    read: 2026-11-23\n"
                                   "    claim: \"about 400B parameters\"\n"
                                   "    quantity: total_params\n"
                                   "    value: \"400,000,000,000\"\n"
                                   "    tolerance: 0.01\n");
  const auto claims = load_claims(file, builtin_model_names(test::data()));
  REQUIRE(claims.size() == 2);
  CHECK(claims[1].value == 400e9);
  CHECK(claims[1].read == "2026-11-23");
  CHECK(claims[0].where.find("moeplan_claims_good.yaml:2") != std::string::npos);
  const auto checks = check_claims(claims, test::load("llama4-maverick"), test::precisions());
  CHECK_FALSE(checks[0].matches);
  CHECK(checks[1].matches);  // 401.58 B is within 1 % of 400 B
}

TEST_CASE("claims: malformed files and unknown quantities are InputErrors naming FILE:LINE") {
  struct Case {
    const char* name;
    std::string text;
    std::string expect;  // part of the message after "FILE:"
  };
  std::string unknown_quantity = kGood;
  unknown_quantity.replace(unknown_quantity.find("num_layers"), 10, "num_layerz");
  std::string missing_value = kGood;
  missing_value.erase(missing_value.find("    value: 96\n"), 14);
  std::string bad_value = kGood;
  bad_value.replace(bad_value.find("value: 96"), 9, "value: many");
  std::string unknown_key = kGood;
  unknown_key.replace(unknown_key.find("    reason:"), 11, "    reasn:");
  std::string unknown_model = kGood;
  unknown_model.replace(unknown_model.find("llama4-maverick"), 15, "llama4-maverik");
  std::string bad_date = kGood;
  bad_date.replace(bad_date.find("read: not recorded"), 18, "read: yesterday");
  std::string precision_for_layers = kGood + std::string("    precision: q4_k_m\n");
  const std::string tok_s =
      "claims:\n"
      "  - model: llama4-maverick\n"
      "    source: \"https://example.org/ram\"\n"
      "    read: 2026-12-03\n"
      "    claim: \"0.5 t/s on DDR4\"\n"
      "    quantity: decode_tokens_per_s_bound\n"
      "    value: 0.5\n";
  const std::vector<Case> cases = {
      {"moeplan_claims_p.yaml", precision_for_layers, ":9: quantity 'num_layers' takes no 'precision'"},
      {"moeplan_claims_t.yaml", tok_s, ":2: claim has no 'precision'"},
      {"moeplan_claims_b.yaml", tok_s + "    precision: q4_k_m\n", ":2: claim has no 'bandwidth_gb_s'"},
      {"moeplan_claims_z.yaml", tok_s + "    precision: q4_k_m\n    bandwidth_gb_s: 0\n",
       ":9: 'bandwidth_gb_s' must be positive"},
      {"moeplan_claims_q.yaml", unknown_quantity, ":6: unknown quantity 'num_layerz' (did you mean num_layers"},
      {"moeplan_claims_v.yaml", missing_value, ":2: claim has no 'value'"},
      {"moeplan_claims_n.yaml", bad_value, ":7: 'value' must be a number"},
      {"moeplan_claims_k.yaml", unknown_key, ":8: unknown key 'reasn'"},
      {"moeplan_claims_m.yaml", unknown_model, ":2: unknown model 'llama4-maverik'"},
      {"moeplan_claims_d.yaml", bad_date, ":4: 'read' must be a date"},
      {"moeplan_claims_y.yaml", "claims:\n  - model: [unclosed\n", ":"},
      {"moeplan_claims_l.yaml", "claims: 3\n", ":1: expected a map with a 'claims' list"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto file = write_temp(c.name, c.text);
    const std::string message = error_of(file);
    CHECK(message.find(file.string() + c.expect) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
}

TEST_CASE("claims: weight GB and the decode bound at a bandwidth are computed from the config's weights") {
  const ModelConfig m = test::load("llama4-maverick");
  const ParamCounts params = count_params(m);
  const Precision bf16 = resolve_precision("bf16", m, test::precisions());
  // BF16: two bytes a parameter. A decode token reads the active parameters, of the input embedding one row.
  const auto gb = find_claim_quantity("weight_gb")->compute(m, ClaimContext{&bf16, 0});
  REQUIRE(gb);
  CHECK(*gb == Approx(2.0 * static_cast<double>(params.text) / 1e9).epsilon(1e-12));
  const double read = 2.0 * static_cast<double>(params.active_without_embedding + m.hidden);
  const auto bound = find_claim_quantity("decode_tokens_per_s_bound")->compute(m, ClaimContext{&bf16, 100e9});
  REQUIRE(bound);
  CHECK(*bound == Approx(100e9 / read).epsilon(1e-12));
  // The shipped bandwidth claims: each page figure is checked at its own precision and bandwidth, and the bound at
  // the active bytes is several times the whole-model figure the pages print.
  const auto checks = check_claims(shipped(), m, test::precisions());
  int bandwidth_claims = 0;
  for (const auto& k : checks) {
    if (k.claim.quantity != "decode_tokens_per_s_bound") continue;
    ++bandwidth_claims;
    REQUIRE(k.computed);
    CHECK(k.claim.precision == "q4_k_m");
    CHECK(*k.computed > 2 * k.claim.value);
    CHECK_FALSE(k.matches);
  }
  CHECK(bandwidth_claims == 4);
  // A precision the model cannot take is an InputError naming the claim.
  Claim bad = shipped().front();
  bad.quantity = "weight_gb";
  bad.precision = "q9_z";
  try {
    check_claims({bad}, m, test::precisions());
    FAIL("no error");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find(bad.where + ": precision 'q9_z'") != std::string::npos);
  }
}
