// RoPE: the two pairings worked by hand, the default frequencies, and every path against the reference.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernel_test_util.hpp"
#include "kernels/rope.hpp"

using namespace moeplan::kernels;

namespace {
constexpr float kHalfPi = 1.57079632679f;
}

TEST_CASE("rope by hand: a 2-element head rotated by a quarter turn") {
  // x = [1, 0] at position 1 with inv_freq pi/2: (1 + 0i) * i = (0 + 1i). Both layouts agree when D = 2.
  for (RopeLayout layout : {RopeLayout::interleaved, RopeLayout::half}) {
    std::vector<float> x = {1, 0};
    const std::int64_t pos = 1;
    const float inv_freq = kHalfPi;
    rope_ref(x.data(), 1, 1, 2, &pos, &inv_freq, layout);
    CHECK(x[0] == Approx(0).margin(1e-7));
    CHECK(x[1] == Approx(1));
  }
}

TEST_CASE("rope by hand: interleaved pairs (2i, 2i+1), half pairs (i, i + D/2)") {
  // x = [1, 2, 3, 4] at position 1, inv_freq = [pi/2, 0]: pair 0 turns a quarter, pair 1 stays.
  const std::int64_t pos = 1;
  const std::vector<float> inv_freq = {kHalfPi, 0};
  std::vector<float> x = {1, 2, 3, 4};
  rope_ref(x.data(), 1, 1, 4, &pos, inv_freq.data(), RopeLayout::interleaved);
  // (1, 2) -> (1 cos - 2 sin, 2 cos + 1 sin) = (-2, 1); (3, 4) unchanged
  CHECK(x[0] == Approx(-2));
  CHECK(x[1] == Approx(1));
  CHECK(x[2] == 3);
  CHECK(x[3] == 4);
  x = {1, 2, 3, 4};
  rope_ref(x.data(), 1, 1, 4, &pos, inv_freq.data(), RopeLayout::half);
  // (x0, x2) = (1, 3) -> (-3, 1); (x1, x3) = (2, 4) unchanged
  CHECK(x[0] == Approx(-3));
  CHECK(x[1] == 2);
  CHECK(x[2] == Approx(1));
  CHECK(x[3] == 4);
  // Position 0 is the identity.
  const std::int64_t zero = 0;
  x = {1, 2, 3, 4};
  rope_ref(x.data(), 1, 1, 4, &zero, inv_freq.data(), RopeLayout::half);
  CHECK(x == std::vector<float>{1, 2, 3, 4});
}

TEST_CASE("rope_default_inv_freq is theta^(-2i/D)") {
  const auto f = rope_default_inv_freq(10000.0f, 4);
  REQUIRE(f.size() == 2);
  CHECK(f[0] == 1.0f);
  CHECK(f[1] == Approx(0.01));
  CHECK(rope_default_inv_freq(500000.0f, 128)[63] == Approx(std::pow(500000.0, -126.0 / 128.0)).epsilon(1e-5));
}

TEST_CASE("rope: every path matches the reference") {
  struct Case {
    std::int64_t tokens, heads, d;
  };
  std::uint32_t seed = 3;
  for (const Case c : {Case{1, 1, 2}, Case{3, 5, 6}, Case{7, 40, 128}, Case{130, 8, 128}, Case{2, 3, 18}}) {
    const auto inv_freq = rope_default_inv_freq(10000.0f, c.d);
    std::vector<std::int64_t> pos(static_cast<std::size_t>(c.tokens));
    for (std::size_t t = 0; t < pos.size(); ++t) pos[t] = static_cast<std::int64_t>(t * 977 + 3);  // up to ~127k
    for (RopeLayout layout : {RopeLayout::interleaved, RopeLayout::half}) {
      const auto x0 = moeplan::test::random_floats(static_cast<std::size_t>(c.tokens * c.heads * c.d), seed++);
      std::vector<float> ref = x0;
      rope_ref(ref.data(), c.tokens, c.heads, c.d, pos.data(), inv_freq.data(), layout);
      for (const auto& pc : moeplan::test::path_cases()) {
        std::vector<float> got = x0;
        rope(pc.ctx, got.data(), c.tokens, c.heads, c.d, pos.data(), inv_freq.data(), layout);
        INFO(pc.name << " tokens=" << c.tokens << " heads=" << c.heads << " D=" << c.d
                     << (layout == RopeLayout::half ? " half" : " interleaved"));
        CHECK(moeplan::test::compare(got, ref, {1e-6, 1e-6}) == "");
      }
    }
  }
}
