// The RMSNorm reference against values worked by hand.
#include <catch2/catch.hpp>

#include <vector>

#include "kernels/norm.hpp"

TEST_CASE("rmsnorm_ref: y = w * x / sqrt(mean(x^2) + eps)") {
  // Row [3, 4]: mean square 12.5, rms = 3.5355339; weights [1, 2].
  const std::vector<float> x = {3, 4, 0, 0}, w = {1, 2};
  std::vector<float> y(4);
  moeplan::kernels::rmsnorm_ref(x.data(), w.data(), y.data(), 2, 2, 0.0f);
  CHECK(y[0] == Approx(3 / 3.5355339));
  CHECK(y[1] == Approx(2 * 4 / 3.5355339));
  // A zero row with eps stays zero and finite.
  moeplan::kernels::rmsnorm_ref(x.data(), w.data(), y.data(), 2, 2, 1e-5f);
  CHECK(y[2] == 0);
  CHECK(y[3] == 0);
}
