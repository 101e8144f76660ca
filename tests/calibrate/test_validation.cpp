// predict -> run -> compare on this CPU: calibrate --quick, then validate --quick, held to the accuracy targets.
// One test, run serially (CTest RUN_SERIAL): it times the machine, so nothing else may run beside it.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <vector>

#include "calibrate/calibrate.hpp"
#include "calibrate/validate.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "model/config.hpp"
#include "simulator/profile.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

TEST_CASE("validate --quick: held-out decode and prefill predictions of this CPU within the targets") {
  calibrate::CalibrateRequest c;
  c.quick = true;
  c.ranks = {1, 2};
  c.dtypes = {"bf16"};
  const simulator::HostProfile profile = calibrate::calibrate_host(c);
  REQUIRE(profile.layouts.size() == 2);
  CHECK(profile.triad_bytes_per_s > 1e9);
  // The GEMM curve rises with rows: weights are read once per call, so more rows are more FLOPs per byte.
  const auto& g = profile.curves(1).gemm_flops_per_s.at("bf16");
  CHECK(g.at(64) > 2 * g.at(1));

  calibrate::CpuValidateRequest v;
  v.profile = profile;
  const auto m = model::load_model("llama4-maverick", data_dir());
  v.config = parse_json_file(m.source);
  v.model_name = m.name;
  v.quick = true;
  const auto r = calibrate::validate_cpu(v);

  std::cout << "validate --quick: decode held-out median " << r.decode_held_out.median_abs << " p90 " << r.decode_held_out.p90_abs
            << " (n " << r.decode_held_out.n << "); prefill median " << r.prefill_held_out.median_abs << " p90 "
            << r.prefill_held_out.p90_abs << " (n " << r.prefill_held_out.n << "); run-to-run spread " << r.median_spread
            << "; " << r.seconds << " s\n";
  REQUIRE(r.decode_held_out.n >= 8);
  REQUIRE(r.prefill_held_out.n >= 3);
  CHECK(r.decode_calibration.n >= r.decode_held_out.n);
  // The targets (decode median <= 5 %, prefill median <= 10 %, p90 <= 15 %) hold on a quiet machine
  // (docs/validation.md has the measured figures). A machine shared with other work cannot be predicted better than
  // it repeats itself: the bounds widen by the run's measured noise, the median over points of
  // (median - fastest) / fastest of their repetitions, which is 0 on a quiet machine.
  const double noise = r.median_spread;
  if (noise > 0.03) WARN("this machine was noisy during the run: median run-to-run spread " << noise);
  CHECK(r.decode_held_out.median_abs <= 0.05 + noise);
  CHECK(r.prefill_held_out.median_abs <= 0.10 + noise);
  CHECK(r.decode_held_out.p90_abs <= 0.15 + 2 * noise);
  CHECK(r.prefill_held_out.p90_abs <= 0.15 + 2 * noise);

  // The skewed router touches fewer experts than the uniform one at the same batch, and the simulator, fed the
  // traced loads, predicts that count within one expert.
  int skewed = 0;
  for (const auto& row : r.rows) {
    if (row.router != "skewed" || row.phase != "decode") continue;
    ++skewed;
    CHECK(std::fabs(row.experts_touched_predicted - row.experts_touched_measured) < 1.0);
    for (const auto& u : r.rows)
      if (u.router == "uniform" && u.phase == "decode" && u.ranks == row.ranks && u.experts == row.experts && u.batch == row.batch &&
          u.batch >= 16)
        CHECK(row.experts_touched_measured < u.experts_touched_measured);
  }
  CHECK(skewed >= 2);

  // The fitted profile carries the held-out residuals that become error bars, and survives the YAML round trip.
  REQUIRE(r.fitted.fit);
  REQUIRE(r.fitted.decode_residuals);
  REQUIRE(r.fitted.prefill_residuals);
  CHECK(r.fitted.decode_residuals->q05 <= r.fitted.decode_residuals->q95);
  const auto path = test::temp_path("moeplan_test_fitted_profile.yaml");
  write_file_atomic(path, simulator::profile_yaml(r.fitted));
  const auto back = simulator::read_profile(path);
  REQUIRE(back.fit);
  CHECK(back.fit->op_scale.size() == r.fitted.fit->op_scale.size());
}

TEST_CASE("calibrate --passes: every pass measures the same points and each point keeps one rate") {
  calibrate::CalibrateRequest c;
  c.quick = true;
  c.ranks = {1};
  c.dtypes = {"bf16"};
  c.passes = 2;
  const simulator::HostProfile p = calibrate::calibrate_host(c);
  const auto& g = p.curves(1).gemm_flops_per_s.at("bf16");
  CHECK(g.x == std::vector<double>{1, 2, 4, 8, 16, 64, 256});  // the quick grid once, not once per pass
  REQUIRE(g.y.size() == g.x.size());
  for (double y : g.y) CHECK(y > 0);
  CHECK(p.curves(1).attention_decode_flops_per_s.x.size() == 3);
  CHECK(p.curves(1).op_overhead_s > 0);
  c.passes = 0;
  CHECK_THROWS_AS(calibrate::calibrate_host(c), InputError);
}
