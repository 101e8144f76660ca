// Measured host profiles: curve interpolation, the YAML round trip and its errors, and pricing a step from a profile.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "simulator/hardware.hpp"
#include "simulator/profile.hpp"
#include "simulator/step_cost.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::simulator;

namespace {

Curve flat(double rate) { return {{1, 1e6}, {rate, rate}}; }

// A profile whose rates are constant, so a step's price can be summed by hand.
HostProfile constant_profile() {
  HostProfile p;
  p.host = "test-host";
  p.cpu_model = "Test CPU";
  p.cpu_path = "avx2";
  p.date = "2026-11-23";
  p.moeplan_version = "0.1.0";
  p.threads = 2;
  p.memory_bytes = 64e9;
  p.read_bytes_per_s = 20e9;
  p.triad_bytes_per_s = 17e9;
  p.peak_flops["bf16"] = 100e9;
  p.file = "constant.yaml";
  ProfileCurves c;
  c.ranks = 1;
  c.threads_per_rank = 2;
  c.gemm_flops_per_s["bf16"] = flat(50e9);
  c.expert_flops_per_s["bf16"] = flat(25e9);
  c.attention_decode_flops_per_s = flat(10e9);
  c.attention_prefill_flops_per_s = flat(40e9);
  c.elementwise_s_per_byte = 1.0 / 30e9;
  c.op_overhead_s = 0;
  p.layouts.push_back(c);
  return p;
}

std::filesystem::path temp_file(const std::string& name, const std::string& text) {
  const auto path = test::temp_path("moeplan_test_" + name);
  std::ofstream(path) << text;
  return path;
}

StepModel step_model(const model::ModelConfig& m, std::shared_ptr<const HostProfile> p) {
  StepModelRequest r;
  r.graph.model = &m;
  r.graph.precision = model::resolve_precision("bf16", m, test::precisions());
  r.graph.activation_bytes = 4;
  r.hardware = profile_hardware(std::move(p));
  r.routing = RoutingModel::uniform(m.num_experts, m.experts_per_token, 1);
  return StepModel(r);
}

}  // namespace

TEST_CASE("Profile curves interpolate log-log between points and clamp at the ends") {
  const Curve c{{1, 4, 16}, {1, 16, 32}};
  CHECK(c.at(2) == Approx(4));        // y = x^2 between 1 and 4
  CHECK(c.at(8) == Approx(std::sqrt(16.0 * 32.0)));  // geometric midpoint between 4 and 16
  CHECK(c.at(0.5) == 1);
  CHECK(c.at(100) == 32);
  CHECK(c.at(4) == Approx(16));
}

TEST_CASE("A profile survives its YAML round trip with every field") {
  HostProfile p = constant_profile();
  ProfileCurves two = p.layouts.front();
  two.ranks = 2;
  two.threads_per_rank = 1;
  two.collective_fixed_s = 70e-6;
  two.collective_s_per_byte = 1.0 / 3.5e9;
  p.layouts.push_back(two);
  ProfileFit fit;
  fit.configurations = 12;
  fit.op_scale["decode:attn.qkv"] = 1.25;
  fit.op_scale["prefill:mlp.down"] = 0.8;
  fit.decode_fixed_s = 150e-6;
  fit.decode_per_token_s = 2e-6;
  fit.prefill_tokens_min = 128;
  fit.prefill_tokens_max = 1024;
  p.fit = fit;
  p.decode_residuals = Residuals{9, 0.03, 0.08, -0.07, 0.06};
  const auto path = temp_file("profile_roundtrip.yaml", profile_yaml(p));
  const HostProfile q = read_profile(path);
  CHECK(q.host == "test-host");
  CHECK(q.threads == 2);
  CHECK(q.triad_bytes_per_s == Approx(17e9));
  REQUIRE(q.layouts.size() == 2);
  CHECK(q.curves(2).collective_fixed_s == Approx(70e-6));
  CHECK(q.curves(2).collective_s_per_byte == Approx(1.0 / 3.5e9));
  CHECK(q.curves(1).gemm_flops_per_s.at("bf16").at(3) == Approx(50e9));
  CHECK(q.curves(1).elementwise_s_per_byte == Approx(1.0 / 30e9));
  REQUIRE(q.fit);
  CHECK(q.fit->op_scale.at("decode:attn.qkv") == Approx(1.25));
  CHECK(q.fit->decode_fixed_s == Approx(150e-6));
  CHECK(q.fit->prefill_tokens_min == 128);
  CHECK(q.fit->prefill_tokens_max == 1024);
  CHECK(q.fit->decode_tokens_max == 0);  // not recorded: stays absent
  REQUIRE(q.decode_residuals);
  CHECK(q.decode_residuals->q05 == Approx(-0.07));
  CHECK_FALSE(q.prefill_residuals);
  CHECK_THROWS_AS(q.curves(4), InputError);
}

TEST_CASE("Corrupt profiles are one InputError naming the file and the field") {
  const std::string good = profile_yaml(constant_profile());
  auto fails_with = [](const std::string& name, const std::string& text, const std::string& needle) {
    const auto path = temp_file(name, text);
    try {
      read_profile(path);
      FAIL("no error for " << name);
    } catch (const InputError& e) {
      const std::string msg = e.what();
      CHECK(msg.find(path.string()) != std::string::npos);
      CHECK(msg.find(needle) != std::string::npos);
    }
  };
  fails_with("p_list.yaml", "- 1\n- 2\n", "expected a moeplan profile");
  fails_with("p_trunc.yaml", good.substr(0, good.size() / 2) + "\n  rows: [1, 2", "malformed YAML");
  std::string no_triad = good;
  no_triad.replace(no_triad.find("triad_gb_per_s"), 5, "xxxxx");
  fails_with("p_notriad.yaml", no_triad, "triad_gb_per_s");
  std::string bad_rows = good;
  const auto at = bad_rows.find("rows: [1, 1e+06]");
  REQUIRE(at != std::string::npos);
  bad_rows.replace(at, 16, "rows: [5, 2]    ");
  fails_with("p_rows.yaml", bad_rows, "increase strictly");
  std::string neg = good;
  neg.replace(neg.find("elementwise_gb_per_s: 30"), 24, "elementwise_gb_per_s: -3");
  fails_with("p_neg.yaml", neg, "positive");
  HostProfile fitted = constant_profile();
  fitted.fit = ProfileFit{};
  fitted.fit->prefill_tokens_min = 128;
  fitted.fit->prefill_tokens_max = 1024;
  std::string bad_range = profile_yaml(fitted);
  const auto r_at = bad_range.find("prefill_tokens: [128, 1024]");
  REQUIRE(r_at != std::string::npos);
  bad_range.replace(r_at, 27, "prefill_tokens: [512, 128] ");
  fails_with("p_range.yaml", bad_range, "prefill_tokens");
  CHECK_THROWS_AS(read_profile("/nonexistent/profile.yaml"), InputError);
}

TEST_CASE("A profile from another machine is named as such") {
  HostProfile p = constant_profile();
  p.cpu_model = "Some Other CPU 9000";
  const std::string w = profile_mismatch(p, 0);
  CHECK(w.find("Some Other CPU 9000") != std::string::npos);
  CHECK(w.find("constant.yaml") != std::string::npos);
}

TEST_CASE("A step priced from a profile is the sum of FLOPs over the measured rates, times the fitted corrections") {
  const auto m = test::load("llama4-scout");
  auto p = std::make_shared<HostProfile>(constant_profile());
  const StepModel sm = step_model(m, p);
  const StepShape s = decode_shape(4, 1000, sm.graph(), model::AttentionKind::chunked);
  const model::StepValues x = sm.values(s);
  // By hand: GEMMs at 50 GFLOP/s, routed experts at 25, decode attention at 10, elementwise bytes at 30 GB/s.
  double expect = 0;
  for (const auto& op : sm.graph().ops) {
    double t = 0;
    switch (op.kind) {
      case model::OpKind::gemm:
      case model::OpKind::lm_head: t = op.flops.at(x) / 50e9; break;
      case model::OpKind::expert_gemm: t = op.flops.at(x) / 25e9; break;
      case model::OpKind::attention_decode: t = op.flops.at(x) / 10e9; break;
      case model::OpKind::attention_prefill: t = 0; break;
      default: t = (op.act_bytes.at(x) + op.weight_bytes.at(x)) / 30e9;
    }
    expect += op.repeat * t;
  }
  CHECK(sm.step_time_s(s) == Approx(expect).epsilon(1e-12));

  // Fitted corrections scale their op; the decode remainder a + b · tokens is added; prefill keeps its own.
  ProfileFit fit;
  fit.op_scale["decode:attn.decode"] = 2.0;
  fit.decode_fixed_s = 1e-3;
  fit.decode_per_token_s = 1e-4;
  p->fit = fit;
  const StepModel fitted = step_model(m, p);
  double attn = 0;
  for (const auto& op : fitted.graph().ops)
    if (op.kind == model::OpKind::attention_decode) attn += op.repeat * op.flops.at(x) / 10e9;
  CHECK(fitted.step_time_s(s) == Approx(expect + attn + 1e-3 + 4 * 1e-4).epsilon(1e-12));

  // A correction with a slope, scale · T^slope, is evaluated at T clamped to the tokens it was fitted over: batch 4
  // below a fitted range [16, 64] gets the correction at 16, not an extrapolation of the power law to 4.
  fit.op_scale["decode:attn.decode"] = 2.0;
  fit.op_slope["decode:attn.decode"] = -0.5;
  p->fit = fit;
  const double extrapolated = step_model(m, p).step_time_s(s);
  CHECK(extrapolated == Approx(expect + (2.0 * std::pow(4.0, -0.5) - 1) * attn + 1e-3 + 4 * 1e-4).epsilon(1e-12));
  fit.decode_tokens_min = 16;
  fit.decode_tokens_max = 64;
  p->fit = fit;
  CHECK(step_model(m, p).step_time_s(s) == Approx(expect + (2.0 * std::pow(16.0, -0.5) - 1) * attn + 1e-3 + 4 * 1e-4).epsilon(1e-12));
  CHECK(fit.clamp_tokens(false, 1000) == 64);
  CHECK(fit.clamp_tokens(true, 1000) == 1000);  // prefill range not recorded: no clamp

  // An op in a weight format the profile never measured cannot be priced: say which.
  StepModelRequest r;
  r.graph.model = &m;
  r.graph.precision = model::resolve_precision("fp8", m, test::precisions());
  r.hardware = profile_hardware(p);
  r.routing = RoutingModel::uniform(m.num_experts, m.experts_per_token, 1);
  const StepModel fp8(r);
  CHECK_THROWS_WITH(fp8.step_time_s(s), Catch::Contains("no measured rate for weights in 'fp8'"));
}

TEST_CASE("Every host in hosts.yaml that names a profile reads it, fitted and validated, and quotes its triad") {
  const auto db = gpu_db::Database::load(test::data());
  int measured = 0;
  for (const auto& h : db.hosts()) {
    if (h.profile.empty()) continue;
    INFO(h.name << ": " << h.profile);
    const HostProfile p = read_profile(test::data() / h.profile);
    CHECK(p.fit.has_value());
    CHECK(p.decode_residuals.has_value());
    CHECK(p.prefill_residuals.has_value());
    CHECK_FALSE(p.validation_summary.empty());
    CHECK(h.mem_bandwidth_bytes_per_s == Approx(p.triad_bytes_per_s).epsilon(0.001));
    CHECK(h.memory_bytes == Approx(p.memory_bytes).epsilon(0.001));
    ++measured;
  }
  CHECK(measured >= 2);  // the AMD EPYC and Intel Sapphire Rapids VMs
}
