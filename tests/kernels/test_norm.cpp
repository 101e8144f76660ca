// RMSNorm (weighted and weightless): the reference by hand, then every path against it.
#include <catch2/catch.hpp>

#include <vector>

#include "kernel_test_util.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/norm.hpp"

using namespace moeplan::kernels;

TEST_CASE("rms_normalize_ref: y = x / sqrt(mean(x^2) + eps), no weight") {
  // Row [3, 4]: mean square 12.5; Llama 4 qk-norm form.
  const std::vector<float> x = {3, 4};
  std::vector<float> y(2);
  rms_normalize_ref(x.data(), y.data(), 1, 2, 0.0f);
  CHECK(y[0] == Approx(3 / 3.5355339));
  CHECK(y[1] == Approx(4 / 3.5355339));
  // eps enters under the root: [1, 1] with eps 3 -> 1 / 2
  const std::vector<float> ones = {1, 1};
  rms_normalize_ref(ones.data(), y.data(), 1, 2, 3.0f);
  CHECK(y[0] == Approx(0.5));
}

TEST_CASE("rmsnorm and rms_normalize: every path matches the reference") {
  struct Case {
    std::int64_t rows, dim;
  };
  std::uint32_t seed = 1;
  for (const Case c : {Case{1, 1}, Case{3, 7}, Case{5, 64}, Case{2, 5120}, Case{130, 128}, Case{9, 1001}}) {
    const auto x = moeplan::test::random_floats(static_cast<std::size_t>(c.rows * c.dim), seed++, -4, 4);
    const auto w = moeplan::test::random_floats(static_cast<std::size_t>(c.dim), seed++);
    std::vector<float> ref(x.size()), ref_plain(x.size());
    rmsnorm_ref(x.data(), w.data(), ref.data(), c.rows, c.dim, 1e-5f);
    rms_normalize_ref(x.data(), ref_plain.data(), c.rows, c.dim, 1e-5f);
    for (const auto& pc : moeplan::test::path_cases()) {
      INFO(pc.name << " rows=" << c.rows << " dim=" << c.dim);
      std::vector<float> got(x.size());
      rmsnorm(pc.ctx, x.data(), w.data(), got.data(), c.rows, c.dim, 1e-5f);
      CHECK(moeplan::test::compare(got, ref, {1e-6, 1e-5}) == "");
      got = x;  // in place
      rms_normalize(pc.ctx, got.data(), got.data(), c.rows, c.dim, 1e-5f);
      CHECK(moeplan::test::compare(got, ref_plain, {1e-6, 1e-5}) == "");
    }
  }
}
