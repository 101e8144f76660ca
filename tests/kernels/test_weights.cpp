// Weight dtype conversions: known bit patterns by hand, exhaustive round trips, and the vector conversions of every
// code path against the scalar spec for every bit pattern.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernel_test_util.hpp"
#include "kernels/matmul.hpp"
#include "kernels/weights.hpp"

using namespace moeplan::kernels;

namespace {
bool same_bits_or_both_nan(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  std::uint32_t ua = 0, ub = 0;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  return ua == ub;
}
}  // namespace

TEST_CASE("fp8 e4m3 decodes known bit patterns") {
  CHECK(fp8_e4m3_to_float(0x38) == 1.0f);
  CHECK(fp8_e4m3_to_float(0x7e) == 448.0f);
  CHECK(fp8_e4m3_to_float(0xfe) == -448.0f);
  CHECK(fp8_e4m3_to_float(0x01) == std::ldexp(1.0f, -9));
  CHECK(fp8_e4m3_to_float(0x07) == 7 * std::ldexp(1.0f, -9));  // largest subnormal
  CHECK(fp8_e4m3_to_float(0x08) == std::ldexp(1.0f, -6));      // smallest normal
  CHECK(fp8_e4m3_to_float(0x00) == 0.0f);
  CHECK(fp8_e4m3_to_float(0x80) == 0.0f);
  CHECK(std::signbit(fp8_e4m3_to_float(0x80)));
  CHECK(std::isnan(fp8_e4m3_to_float(0xff)));
  CHECK(std::isnan(fp8_e4m3_to_float(0x7f)));
  CHECK(fp8_e4m3_to_float(0x3c) == 1.5f);
  CHECK(fp8_e4m3_to_float(0xc0) == -2.0f);
}

TEST_CASE("bf16 and f16 decode known bit patterns") {
  CHECK(bf16_to_float(0x3f80) == 1.0f);
  CHECK(bf16_to_float(0xc000) == -2.0f);
  CHECK(f16_to_float(0x3c00) == 1.0f);
  CHECK(f16_to_float(0x7bff) == 65504.0f);
  CHECK(f16_to_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(f16_to_float(0x0400) == std::ldexp(1.0f, -14));
  CHECK(std::isinf(f16_to_float(0xfc00)));
  CHECK(f16_to_float(0xfc00) < 0);
  CHECK(std::isnan(f16_to_float(0x7e00)));
  CHECK(std::signbit(f16_to_float(0x8000)));
}

TEST_CASE("float to fp8/f16/bf16 rounds to nearest even and round-trips every code") {
  // fp8: 1.0625 is halfway between 1 (0x38, even) and 1.125 (0x39); 1.1875 between 0x39 and 1.25 (0x3a, even)
  CHECK(float_to_fp8_e4m3(1.0625f) == 0x38);
  CHECK(float_to_fp8_e4m3(1.1875f) == 0x3a);
  CHECK(float_to_fp8_e4m3(500.0f) == 0x7e);   // saturates
  CHECK(float_to_fp8_e4m3(-1e30f) == 0xfe);
  CHECK(float_to_fp8_e4m3(std::ldexp(1.0f, -10)) == 0x00);        // half the smallest subnormal: tie to even 0
  CHECK(float_to_fp8_e4m3(std::ldexp(3.0f, -10)) == 0x02);        // 1.5 * 2^-9: tie to even 2
  CHECK(float_to_fp8_e4m3(std::ldexp(15.5f, -10)) == 0x08);       // rounds up into the smallest normal
  CHECK(float_to_fp8_e4m3(std::nanf("")) == 0x7f);
  // f16: 1 + 2^-11 is halfway between 1 and 1 + 2^-10
  CHECK(float_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(float_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(float_to_f16(65519.0f) == 0x7bff);
  CHECK(float_to_f16(65520.0f) == 0x7c00);
  CHECK(float_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
  CHECK(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    INFO("fp8 code " << c);
    CHECK(float_to_fp8_e4m3(fp8_e4m3_to_float(static_cast<std::uint8_t>(c))) == c);
  }
  int f16_bad = 0, bf16_bad = 0;
  for (int c = 0; c < 65536; ++c) {
    const auto h = static_cast<std::uint16_t>(c);
    if ((c & 0x7c00) != 0x7c00 && float_to_f16(f16_to_float(h)) != h) ++f16_bad;
    if ((c & 0x7f80) != 0x7f80 && float_to_bf16(bf16_to_float(h)) != h) ++bf16_bad;
  }
  CHECK(f16_bad == 0);
  CHECK(bf16_bad == 0);
}

TEST_CASE("vector conversions of every path equal the scalar spec for every bit pattern") {
  // One row holding every code (65536 for the 16-bit types, 256 for the 8-bit ones, plus a tail of 5), once without
  // and once with a row scale.
  std::vector<std::uint16_t> codes16(65536 + 5);
  std::vector<std::uint8_t> codes8(256 + 5);
  for (std::size_t i = 0; i < codes16.size(); ++i) codes16[i] = static_cast<std::uint16_t>(i * 40503u);
  for (std::size_t i = 0; i < codes8.size(); ++i) codes8[i] = static_cast<std::uint8_t>(i * 167u);
  const float scale = 0.375f;
  for (const auto& pc : moeplan::test::path_cases()) {
    for (WeightDtype dtype : {WeightDtype::bf16, WeightDtype::f16, WeightDtype::fp8_e4m3, WeightDtype::int8}) {
      for (const float* row_scale : {static_cast<const float*>(nullptr), &scale}) {
        const bool wide = weight_dtype_bytes(dtype) == 2;
        WeightView w{dtype, wide ? static_cast<const void*>(codes16.data()) : codes8.data(), 1,
                     static_cast<std::int64_t>(wide ? codes16.size() : codes8.size()), row_scale};
        std::vector<float> got(static_cast<std::size_t>(w.cols));
        dequantize_rows(pc.ctx, w, 0, 1, got.data());
        int bad = 0;
        for (std::int64_t k = 0; k < w.cols; ++k)
          if (!same_bits_or_both_nan(got[static_cast<std::size_t>(k)], dequant_element(w, 0, k))) ++bad;
        INFO(pc.name << " " << weight_dtype_name(dtype) << (row_scale ? " scaled" : ""));
        CHECK(bad == 0);
      }
    }
  }
}

TEST_CASE("encode_weight stores a value in each dtype's bytes, INT8 rounded and saturated") {
  const auto stored = [](WeightDtype dtype, float value) {
    std::uint8_t bytes[4] = {};
    encode_weight(dtype, value, bytes);
    const WeightView w{dtype, bytes, 1, 1, nullptr};
    return weight_element(w, 0, 0);
  };
  for (WeightDtype d : {WeightDtype::f32, WeightDtype::bf16, WeightDtype::f16, WeightDtype::fp8_e4m3}) {
    INFO(weight_dtype_name(d));
    CHECK(stored(d, 0.375f) == 0.375f);  // exact in every float format
    CHECK(stored(d, -6.0f) == -6.0f);
  }
  CHECK(stored(WeightDtype::f32, 0.1f) == 0.1f);
  CHECK(stored(WeightDtype::bf16, 0.1f) == bf16_to_float(float_to_bf16(0.1f)));
  CHECK(stored(WeightDtype::fp8_e4m3, 1000.0f) == 448.0f);
  CHECK(stored(WeightDtype::int8, 2.6f) == 3.0f);
  CHECK(stored(WeightDtype::int8, -41.4f) == -41.0f);
  CHECK(stored(WeightDtype::int8, 300.0f) == 127.0f);
  CHECK(stored(WeightDtype::int8, -300.0f) == -127.0f);
}
