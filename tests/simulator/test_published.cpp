// The simulator against published measurements (data/validation/public_points.yaml): the median absolute error
// must stay under 25 % (docs/simulator.md has the table).
#include <catch2/catch.hpp>

#include "gpu_db/gpu_db.hpp"
#include "simulator/published.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

TEST_CASE("Published measurements: median absolute error below 25 %") {
  const auto db = gpu_db::Database::load(test::data());
  const auto set = simulator::load_published(test::data() / "validation" / "public_points.yaml");
  REQUIRE(set.points.size() >= 30);
  const auto s = simulator::validate_published(set, db, test::data());
  int refused = 0;
  for (const auto& r : s.rows) refused += r.failure.empty() ? 0 : 1;
  CHECK(refused == 0);
  CHECK(s.median_abs_error < 0.25);
  // Dense models on H100/H200 are within 15 % each (the memory/compute roofline without MoE terms).
  for (const auto& r : s.rows)
    if (r.point.id.rfind("DN-", 0) == 0) CHECK(std::abs(r.error) < 0.15);
}
