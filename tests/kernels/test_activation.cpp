// SwiGLU and elementwise ops: the reference by hand, then every path against it.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernel_test_util.hpp"
#include "kernels/activation.hpp"

using namespace moeplan::kernels;

TEST_CASE("silu_mul_ref by hand") {
  const std::vector<float> gate = {0, 1, -1, 30}, up = {5, 2, 2, 1};
  std::vector<float> out(4);
  silu_mul_ref(gate.data(), up.data(), out.data(), 4);
  CHECK(out[0] == 0);
  CHECK(out[1] == Approx(2 * 0.7310585786));   // silu(1) = 1 / (1 + e^-1)
  CHECK(out[2] == Approx(2 * -0.2689414214));  // silu(-1)
  CHECK(out[3] == Approx(30));
  // fused rows: [gate | up] per row
  const std::vector<float> gate_up = {1, 0, 2, 3, -1, 0, 2, 2};
  std::vector<float> fused(4);
  silu_mul_fused_ref(gate_up.data(), 2, 2, fused.data());
  CHECK(fused[0] == Approx(2 * 0.7310585786));
  CHECK(fused[1] == 0);
  CHECK(fused[2] == Approx(2 * -0.2689414214));
  CHECK(fused[3] == 0);
}

TEST_CASE("silu_mul, add, scale: every path matches the reference") {
  std::uint32_t seed = 5;
  for (std::int64_t n : {1, 7, 8, 33, 1000, 40000}) {
    // gates over [-100, 100] reach both ends of exp's range
    const auto gate = moeplan::test::random_floats(static_cast<std::size_t>(n), seed++, -100, 100);
    const auto small = moeplan::test::random_floats(static_cast<std::size_t>(n), seed++, -6, 6);
    const auto up = moeplan::test::random_floats(static_cast<std::size_t>(n), seed++);
    std::vector<float> ref(gate.size()), ref_small(gate.size()), ref_add(gate.size()), ref_scale(gate.size());
    silu_mul_ref(gate.data(), up.data(), ref.data(), n);
    silu_mul_ref(small.data(), up.data(), ref_small.data(), n);
    add_ref(gate.data(), up.data(), ref_add.data(), n);
    scale_ref(gate.data(), 0.3f, ref_scale.data(), n);
    for (const auto& pc : moeplan::test::path_cases()) {
      INFO(pc.name << " n=" << n);
      std::vector<float> got(gate.size());
      silu_mul(pc.ctx, gate.data(), up.data(), got.data(), n);
      CHECK(moeplan::test::compare(got, ref, {1e-30, 2e-6}) == "");
      silu_mul(pc.ctx, small.data(), up.data(), got.data(), n);
      CHECK(moeplan::test::compare(got, ref_small, {1e-30, 2e-6}) == "");
      add(pc.ctx, gate.data(), up.data(), got.data(), n);
      CHECK(got == ref_add);
      got = gate;  // in place
      scale(pc.ctx, got.data(), 0.3f, got.data(), n);
      CHECK(got == ref_scale);
    }
  }
  // fused, several rows and one row (the decode case splits the row itself)
  for (std::int64_t rows : {1, 5}) {
    const std::int64_t inter = 20000;
    const auto gate_up = moeplan::test::random_floats(static_cast<std::size_t>(rows * 2 * inter), 77, -8, 8);
    std::vector<float> ref(static_cast<std::size_t>(rows * inter));
    silu_mul_fused_ref(gate_up.data(), rows, inter, ref.data());
    for (const auto& pc : moeplan::test::path_cases()) {
      std::vector<float> got(ref.size());
      silu_mul_fused(pc.ctx, gate_up.data(), rows, inter, got.data());
      INFO(pc.name << " fused rows=" << rows);
      CHECK(moeplan::test::compare(got, ref, {1e-30, 2e-6}) == "");
    }
  }
}
