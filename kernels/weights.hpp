// kernels/weights: how the kernels see a weight matrix (dtype, row-major [N, K] data, optional per-row scale) and
// the exact scalar conversions of every stored dtype to fp32 (and back, for tests and seeded random weights).
// The fast kernels convert in registers with the vector versions in kernels/cpu; these scalar helpers are the spec.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace moeplan::kernels {

// Storage type of a weight matrix. Activations are always fp32.
//   bf16     bfloat16 (safetensors BF16)
//   f16      IEEE binary16 (safetensors F16)
//   fp8_e4m3 OCP FP8 E4M3 "e4m3fn": 1 sign, 4 exponent (bias 7), 3 mantissa bits, no infinity, 0x7f/0xff = NaN,
//            largest finite 448 (safetensors F8_E4M3, torch.float8_e4m3fn)
//   int8     signed 8-bit integers, normally with row_scales
enum class WeightDtype { f32, bf16, f16, fp8_e4m3, int8 };

// A weight matrix as nn.Linear stores it: row-major [rows = N (out features), cols = K (in features)].
// dequant(W)[n, k] = float(data[n, k]) * (row_scales ? row_scales[n] : 1), the product rounded once to fp32.
// The view owns nothing.
struct WeightView {
  WeightDtype dtype = WeightDtype::f32;
  const void* data = nullptr;           // [rows, cols] elements of dtype, row-major, no padding
  std::int64_t rows = 0;                // N: output features
  std::int64_t cols = 0;                // K: input features
  const float* row_scales = nullptr;    // [rows] per-output-channel dequant scale, or nullptr for 1
};

constexpr std::int64_t weight_dtype_bytes(WeightDtype dtype) {
  switch (dtype) {
    case WeightDtype::f32: return 4;
    case WeightDtype::bf16:
    case WeightDtype::f16: return 2;
    case WeightDtype::fp8_e4m3:
    case WeightDtype::int8: return 1;
  }
  return 0;
}

constexpr const char* weight_dtype_name(WeightDtype dtype) {
  switch (dtype) {
    case WeightDtype::f32: return "f32";
    case WeightDtype::bf16: return "bf16";
    case WeightDtype::f16: return "f16";
    case WeightDtype::fp8_e4m3: return "fp8_e4m3";
    case WeightDtype::int8: return "int8";
  }
  return "?";
}

// Bytes of the stored matrix (not counting row_scales).
inline std::int64_t weight_bytes(const WeightView& w) { return w.rows * w.cols * weight_dtype_bytes(w.dtype); }

// ---- Exact conversions to fp32 (every input bit pattern maps to the value it encodes).

// bfloat16 is the top half of an fp32.
inline float bf16_to_float(std::uint16_t bits) { return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16); }

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; subnormals, infinities and NaN preserved.
inline float f16_to_float(std::uint16_t bits) {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu, mantissa = bits & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in fp32
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));       // rebias 15 -> 127
}

// OCP FP8 E4M3 (e4m3fn): value = (-1)^s * 2^(e-7) * (1 + m/8) for e > 0, (-1)^s * m * 2^-9 for e = 0;
// 0x7f and 0xff are NaN; there is no infinity. 0x38 = 1, 0x7e = 448, 0x01 = 2^-9, 0x80 = -0.
inline float fp8_e4m3_to_float(std::uint8_t bits) {
  if ((bits & 0x7fu) == 0x7fu) return std::numeric_limits<float>::quiet_NaN();
  const int exponent = (bits >> 3) & 0xf, mantissa = bits & 0x7;
  const float magnitude = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -9)
                                        : std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
  return (bits & 0x80u) ? -magnitude : magnitude;
}

// ---- Rounding conversions from fp32 (round to nearest, ties to even). For tests and seeded random weights.

inline std::uint16_t float_to_bf16(float value) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(value);
  if (std::isnan(value)) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // keep sign, stay NaN
  const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>((u + rounding) >> 16);
}

// Overflow (|x| >= 65520) gives infinity, as IEEE rounding does.
inline std::uint16_t float_to_f16(float value) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const float magnitude = std::fabs(value);
  if (std::isnan(value)) return static_cast<std::uint16_t>(sign | 0x7e00u);
  if (magnitude >= 65520.0f) return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (magnitude < 0x1p-14f)  // subnormal (or zero): steps of 2^-24; 1024 steps carry into the smallest normal
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(std::nearbyint(magnitude * 0x1p24f)));
  const std::uint32_t exponent = ((u >> 23) & 0xffu) - 112u, mantissa = u & 0x7fffffu;
  std::uint32_t h = (exponent << 10) | (mantissa >> 13);
  const std::uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent, as it should
  return static_cast<std::uint16_t>(sign | h);
}

// Saturating: finite values beyond ±448 and ±infinity give ±448 (as FP8 quantisers clamp); NaN gives 0x7f.
inline std::uint8_t float_to_fp8_e4m3(float value) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint8_t>((u >> 24) & 0x80u);
  const float magnitude = std::fabs(value);
  if (std::isnan(value)) return 0x7f;
  if (magnitude >= 448.0f) return static_cast<std::uint8_t>(sign | 0x7eu);
  if (magnitude < 0x1p-6f)  // subnormal (or zero): steps of 2^-9; 8 steps carry into the smallest normal 0x08
    return static_cast<std::uint8_t>(sign | static_cast<std::uint8_t>(std::nearbyint(magnitude * 0x1p9f)));
  const std::uint32_t exponent = ((u >> 23) & 0xffu) - 120u, mantissa = u & 0x7fffffu;  // rebias 127 -> 7
  std::uint32_t code = (exponent << 3) | (mantissa >> 20);
  const std::uint32_t rest = mantissa & 0xfffffu;
  if (rest > 0x80000u || (rest == 0x80000u && (code & 1u))) ++code;  // below 448, so never reaches 0x7f
  return static_cast<std::uint8_t>(sign | code);
}

// `value` stored as one element of `dtype` at out (weight_dtype_bytes(dtype) bytes): the conversions above; INT8
// rounds to nearest and saturates at ±127. FP8 and INT8 are stored before their row scale (divide by it first).
inline void encode_weight(WeightDtype dtype, float value, void* out) {
  switch (dtype) {
    case WeightDtype::f32: std::memcpy(out, &value, 4); return;
    case WeightDtype::bf16: { const std::uint16_t b = float_to_bf16(value); std::memcpy(out, &b, 2); return; }
    case WeightDtype::f16: { const std::uint16_t b = float_to_f16(value); std::memcpy(out, &b, 2); return; }
    case WeightDtype::fp8_e4m3: *static_cast<std::uint8_t*>(out) = float_to_fp8_e4m3(value); return;
    case WeightDtype::int8:
      *static_cast<std::int8_t*>(out) = static_cast<std::int8_t>(std::lround(std::clamp(value, -127.0f, 127.0f)));
      return;
  }
}

// One stored element of w (row n, column k) as fp32, before the row scale.
inline float weight_element(const WeightView& w, std::int64_t n, std::int64_t k) {
  const std::int64_t i = n * w.cols + k;
  switch (w.dtype) {
    case WeightDtype::f32: return static_cast<const float*>(w.data)[i];
    case WeightDtype::bf16: return bf16_to_float(static_cast<const std::uint16_t*>(w.data)[i]);
    case WeightDtype::f16: return f16_to_float(static_cast<const std::uint16_t*>(w.data)[i]);
    case WeightDtype::fp8_e4m3: return fp8_e4m3_to_float(static_cast<const std::uint8_t*>(w.data)[i]);
    case WeightDtype::int8: return static_cast<float>(static_cast<const std::int8_t*>(w.data)[i]);
  }
  return 0;
}

// dequant(W)[n, k]: the stored value times the row scale, rounded once to fp32.
inline float dequant_element(const WeightView& w, std::int64_t n, std::int64_t k) {
  const float value = weight_element(w, n, k);
  return w.row_scales ? value * w.row_scales[n] : value;
}

}  // namespace moeplan::kernels
