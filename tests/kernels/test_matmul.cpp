// matmul and grouped_matmul: every code path against the reference, for every weight dtype, on shapes that hit
// the edges of the blocking (M = 1 and 513, N = 1, K not a multiple of the vector width or of KC, N > NC, M just
// above the GEMV limit of 16).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "kernel_test_util.hpp"
#include "kernels/matmul.hpp"

using namespace moeplan::kernels;
using moeplan::test::Tolerance;

namespace {

// A seeded weight matrix of any dtype whose dequantised values are O(1 / sqrt(K)), so outputs are O(1).
struct TestWeights {
  WeightDtype dtype;
  std::int64_t rows = 0, cols = 0;
  std::vector<float> f32;
  std::vector<std::uint16_t> u16;
  std::vector<std::uint8_t> u8;
  std::vector<float> scales;

  TestWeights(WeightDtype d, std::int64_t n, std::int64_t k, std::uint32_t seed, bool with_scales)
      : dtype(d), rows(n), cols(k) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    const auto count = static_cast<std::size_t>(n * k);
    const float spread = 1.0f / std::sqrt(static_cast<float>(std::max<std::int64_t>(k, 1)));
    float scale_base = 1.0f;
    switch (d) {
      case WeightDtype::f32:
        for (std::size_t i = 0; i < count; ++i) f32.push_back(unit(rng) * spread);
        break;
      case WeightDtype::bf16:
        for (std::size_t i = 0; i < count; ++i) u16.push_back(float_to_bf16(unit(rng) * spread));
        break;
      case WeightDtype::f16:
        for (std::size_t i = 0; i < count; ++i) u16.push_back(float_to_f16(unit(rng) * spread));
        break;
      case WeightDtype::fp8_e4m3:
        // every non-NaN code, subnormals and ±448 included
        for (std::size_t i = 0; i < count; ++i) {
          auto c = static_cast<std::uint8_t>(rng() & 0xff);
          if ((c & 0x7f) == 0x7f) c = 0x7e;
          u8.push_back(c);
        }
        with_scales = true;
        scale_base = spread / 64.0f;
        break;
      case WeightDtype::int8:
        for (std::size_t i = 0; i < count; ++i) u8.push_back(static_cast<std::uint8_t>(rng() & 0xff));
        with_scales = true;
        scale_base = spread / 64.0f;
        break;
    }
    if (with_scales)
      for (std::int64_t r = 0; r < n; ++r) scales.push_back(scale_base * (0.5f + 0.5f * (unit(rng) + 1.0f)));
  }

  WeightView view() const {
    const void* data = dtype == WeightDtype::f32 ? static_cast<const void*>(f32.data())
                       : weight_dtype_bytes(dtype) == 2 ? static_cast<const void*>(u16.data())
                                                        : static_cast<const void*>(u8.data());
    return {dtype, data, rows, cols, scales.empty() ? nullptr : scales.data()};
  }
};

// fp32 sums of K terms against a double reference: error grows like sqrt(K) ulps of the partial sums.
Tolerance matmul_tolerance(std::int64_t K) {
  return {2e-6 * std::sqrt(static_cast<double>(K) + 1.0), 1e-5};
}

struct Shape {
  std::int64_t M, K, N;
};

const std::vector<Shape> kShapes = {
    {1, 1, 1},     {1, 17, 9},   {2, 33, 13},   {3, 40, 7},     {4, 129, 37},  {5, 31, 17},
    {6, 64, 16},   {7, 300, 50}, {13, 259, 33}, {64, 96, 100},  {513, 70, 40}, {100, 520, 530},
    {1, 5120, 64}, {97, 1, 3},   {3, 0, 5},     {8, 1000, 1},   {1, 3, 300},   {12, 256, 32},
    {16, 40, 20},  {17, 300, 70}, {23, 33, 19},  {40, 0, 3},     {30, 8, 2100},
};

const WeightDtype kDtypes[] = {WeightDtype::f32, WeightDtype::bf16, WeightDtype::f16, WeightDtype::fp8_e4m3,
                               WeightDtype::int8};

}  // namespace

TEST_CASE("matmul_ref computes a 2x2 by hand, with row scales and accumulation") {
  // x = [[1, 2], [3, 4]], W = [[1, 0], [1, -1]] (rows = outputs), scales [2, 0.5]
  const std::vector<float> x = {1, 2, 3, 4}, w = {1, 0, 1, -1}, scales = {2, 0.5f};
  std::vector<float> y(4, 100.0f);
  matmul_ref(x.data(), 2, WeightView{WeightDtype::f32, w.data(), 2, 2, scales.data()}, y.data());
  CHECK(y == std::vector<float>{2, -0.5f, 6, -0.5f});
  matmul_ref(x.data(), 2, WeightView{WeightDtype::f32, w.data(), 2, 2, nullptr}, y.data(), true);
  CHECK(y == std::vector<float>{3, -1.5f, 9, -1.5f});
}

TEST_CASE("matmul: every path and weight dtype matches the reference") {
  std::uint32_t seed = 1;
  for (const Shape& s : kShapes) {
    for (WeightDtype dtype : kDtypes) {
      const bool scaled = (seed % 3) == 0;  // f32/bf16/f16 also run with row scales now and then
      const TestWeights weights(dtype, s.N, s.K, seed++, scaled);
      const WeightView w = weights.view();
      const auto x = moeplan::test::random_floats(static_cast<std::size_t>(s.M * s.K), seed++);
      const auto y0 = moeplan::test::random_floats(static_cast<std::size_t>(s.M * s.N), seed++);
      for (bool accumulate : {false, true}) {
        std::vector<float> ref = y0;
        matmul_ref(x.data(), s.M, w, ref.data(), accumulate);
        for (const auto& pc : moeplan::test::path_cases()) {
          std::vector<float> got = y0;
          matmul(pc.ctx, x.data(), s.M, w, got.data(), accumulate);
          INFO(pc.name << ": M=" << s.M << " K=" << s.K << " N=" << s.N << " " << weight_dtype_name(dtype)
                       << (w.row_scales ? " scaled" : "") << (accumulate ? " accumulate" : ""));
          CHECK(moeplan::test::compare(got, ref, matmul_tolerance(s.K)) == "");
        }
      }
    }
  }
}

TEST_CASE("matmul: an FP8 NaN weight makes exactly its output NaN on every path") {
  const std::int64_t M = 7, K = 40, N = 9;
  TestWeights weights(WeightDtype::fp8_e4m3, N, K, 99, true);
  weights.u8[3 * K + 17] = 0xff;  // row 3
  weights.u8[5 * K + 33] = 0x7f;  // row 5, in the scalar tail of an 8-wide path
  const auto x = moeplan::test::random_floats(static_cast<std::size_t>(M * K), 7);
  for (const auto& pc : moeplan::test::path_cases()) {
    for (std::int64_t m : {std::int64_t{1}, M}) {  // GEMV and GEMM
      std::vector<float> y(static_cast<std::size_t>(m * N));
      matmul(pc.ctx, x.data(), m, weights.view(), y.data());
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t n = 0; n < N; ++n) {
          INFO(pc.name << " M=" << m << " row " << i << " col " << n);
          CHECK(std::isnan(y[static_cast<std::size_t>(i * N + n)]) == (n == 3 || n == 5));
        }
    }
  }
}

TEST_CASE("grouped_matmul: every path matches the reference, empty experts included") {
  const std::int64_t K = 70, N = 45, experts = 6;
  // rows per expert: 0, 1, 3, 0, 20, 2 (GEMV-sized groups and one above the GEMV limit of 16)
  const std::vector<std::int64_t> offsets = {0, 0, 1, 4, 4, 24, 26};
  const std::int64_t R = offsets.back();
  for (WeightDtype dtype : kDtypes) {
    std::vector<TestWeights> owned;
    std::vector<WeightView> views;
    for (std::int64_t e = 0; e < experts; ++e)
      owned.emplace_back(dtype, N, K, static_cast<std::uint32_t>(100 + e), false);
    for (const auto& tw : owned) views.push_back(tw.view());
    const auto x = moeplan::test::random_floats(static_cast<std::size_t>(R * K), 5);
    const auto y0 = moeplan::test::random_floats(static_cast<std::size_t>(R * N), 6);
    for (bool accumulate : {false, true}) {
      std::vector<float> ref = y0;
      grouped_matmul_ref(x.data(), offsets.data(), experts, views.data(), ref.data(), accumulate);
      for (const auto& pc : moeplan::test::path_cases()) {
        std::vector<float> got = y0;
        grouped_matmul(pc.ctx, x.data(), offsets.data(), experts, views.data(), got.data(), accumulate);
        INFO(pc.name << " " << weight_dtype_name(dtype) << (accumulate ? " accumulate" : ""));
        CHECK(moeplan::test::compare(got, ref, matmul_tolerance(K)) == "");
      }
    }
  }
}

TEST_CASE("grouped_matmul_ref is a matmul per expert block") {
  // Two experts, K = 1, N = 1: expert 0 doubles, expert 1 negates; rows 0-1 to expert 0, row 2 to expert 1.
  const std::vector<float> w0 = {2}, w1 = {-1}, x = {1, 2, 3};
  const WeightView views[2] = {{WeightDtype::f32, w0.data(), 1, 1, nullptr},
                               {WeightDtype::f32, w1.data(), 1, 1, nullptr}};
  const std::int64_t offsets[3] = {0, 2, 3};
  std::vector<float> y(3);
  grouped_matmul_ref(x.data(), offsets, 2, views, y.data());
  CHECK(y == std::vector<float>{2, 4, -3});
}

TEST_CASE("matmul rejects an inconsistent weight view") {
  const float x[2] = {1, 2};
  float y[2] = {};
  const WeightView no_data{WeightDtype::bf16, nullptr, 2, 2, nullptr};
  CHECK_THROWS_AS(matmul(moeplan::test::path_cases()[0].ctx, x, 1, no_data, y), std::invalid_argument);
  CHECK_THROWS_AS(matmul_ref(x, 1, no_data, y), std::invalid_argument);
}

// x rounded to BF16 as the AMX path rounds it (nearest even).
static std::vector<float> round_to_bf16(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = bf16_to_float(float_to_bf16(x[i]));
  return out;
}

TEST_CASE("bf16_activations: BF16 weights above the GEMV rows run on AMX with x rounded to BF16") {
  // Spec: matmul_ref of x rounded to BF16 (the products are then exact in fp32; only the order of the fp32 sums
  // differs). Shapes cross every edge of the tiles: rows not a multiple of 16 or 32 and above the 128-row chunk,
  // columns not a multiple of 16 or 32, K not a multiple of 32, and M = 16 (the GEMV, which keeps fp32 x).
  const bool amx = cpu_features().amx_bf16;
  if (!amx) WARN("this CPU has no usable AMX BF16: checking only that the flag leaves every path unchanged");
  const std::vector<Shape> shapes = {{17, 40, 20},  {32, 64, 32},   {33, 100, 47},  {64, 96, 100},
                                     {130, 70, 33}, {300, 520, 70}, {16, 300, 40},  {40, 1, 3},
                                     {20, 5120, 48}, {45, 31, 530}};
  std::uint32_t seed = 500;
  for (const Shape& s : shapes) {
    const bool scaled = (seed % 2) == 0;
    const TestWeights weights(WeightDtype::bf16, s.N, s.K, seed++, scaled);
    const WeightView w = weights.view();
    const auto x = moeplan::test::random_floats(static_cast<std::size_t>(s.M * s.K), seed++);
    const auto y0 = moeplan::test::random_floats(static_cast<std::size_t>(s.M * s.N), seed++);
    const bool rounded = amx && s.M > 16;
    const auto x_ref = rounded ? round_to_bf16(x) : x;
    for (bool accumulate : {false, true}) {
      std::vector<float> ref = y0;
      matmul_ref(x_ref.data(), s.M, w, ref.data(), accumulate);
      for (auto pc : moeplan::test::path_cases()) {
        pc.ctx.bf16_activations = true;
        std::vector<float> got = y0;
        matmul(pc.ctx, x.data(), s.M, w, got.data(), accumulate);
        const bool on_amx = rounded && pc.ctx.path == CpuPath::avx512;
        INFO(pc.name << (on_amx ? " (AMX)" : "") << ": M=" << s.M << " K=" << s.K << " N=" << s.N
                     << (accumulate ? " accumulate" : ""));
        if (on_amx || !rounded) {
          CHECK(moeplan::test::compare(got, ref, matmul_tolerance(s.K)) == "");
        } else {  // a narrower path keeps fp32 x: compare with the unrounded reference
          std::vector<float> exact = y0;
          matmul_ref(x.data(), s.M, w, exact.data(), accumulate);
          CHECK(moeplan::test::compare(got, exact, matmul_tolerance(s.K)) == "");
        }
      }
    }
  }
  // Grouped: experts of 0, 20, 3 and 40 rows; the two above 16 rows take the tiles.
  const std::vector<std::int64_t> offsets = {0, 0, 20, 23, 63};
  const std::int64_t K = 70, N = 45, R = offsets.back();
  std::vector<TestWeights> owned;
  std::vector<WeightView> views;
  for (std::uint32_t e = 0; e < 4; ++e) owned.emplace_back(WeightDtype::bf16, N, K, 900 + e, false);
  for (const auto& tw : owned) views.push_back(tw.view());
  const auto x = moeplan::test::random_floats(static_cast<std::size_t>(R * K), 77);
  auto x_ref = x;
  if (amx)
    for (std::int64_t r = 0; r < R; ++r)
      if (r < 20 || r >= 23)  // rows of the 20- and 40-row experts
        for (std::int64_t k = 0; k < K; ++k) {
          float& v = x_ref[static_cast<std::size_t>(r * K + k)];
          v = bf16_to_float(float_to_bf16(v));
        }
  std::vector<float> ref(static_cast<std::size_t>(R * N));
  grouped_matmul_ref(x_ref.data(), offsets.data(), 4, views.data(), ref.data());
  CpuContext ctx{best_cpu_path(), &moeplan::test::test_pool(), true};
  std::vector<float> got(ref.size());
  grouped_matmul(ctx, x.data(), offsets.data(), 4, views.data(), got.data());
  if (ctx.path == CpuPath::avx512 || !amx) CHECK(moeplan::test::compare(got, ref, matmul_tolerance(K)) == "");
}
