// Checkpoint element types: names, sizes, and bulk conversions of tensor bytes to and from float.
#include "executor/weights_dtype.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace moeplan::executor {

const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::bf16: return "BF16";
    case Dtype::f16: return "F16";
    case Dtype::f32: return "F32";
    case Dtype::f8_e4m3: return "F8_E4M3";
    case Dtype::i8: return "I8";
  }
  return "?";
}

std::size_t dtype_bytes(Dtype d) {
  switch (d) {
    case Dtype::bf16:
    case Dtype::f16: return 2;
    case Dtype::f32: return 4;
    case Dtype::f8_e4m3:
    case Dtype::i8: return 1;
  }
  return 0;
}

std::optional<Dtype> parse_dtype(std::string_view name) {
  for (Dtype d : {Dtype::bf16, Dtype::f16, Dtype::f32, Dtype::f8_e4m3, Dtype::i8})
    if (name == dtype_name(d)) return d;
  return std::nullopt;
}

const char* supported_dtype_names() { return "BF16, F16, F32, F8_E4M3, I8"; }

bool is_float_dtype(Dtype d) { return d == Dtype::bf16 || d == Dtype::f16 || d == Dtype::f32; }

kernels::WeightDtype to_weight_dtype(Dtype d) {
  switch (d) {
    case Dtype::bf16: return kernels::WeightDtype::bf16;
    case Dtype::f16: return kernels::WeightDtype::f16;
    case Dtype::f32: return kernels::WeightDtype::f32;
    case Dtype::f8_e4m3: return kernels::WeightDtype::fp8_e4m3;
    case Dtype::i8: return kernels::WeightDtype::int8;
  }
  return kernels::WeightDtype::f32;
}

void decode_to_float(Dtype d, const std::byte* src, std::size_t count, float* dst) {
  switch (d) {
    case Dtype::bf16:
    case Dtype::f16:
      for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        dst[i] = d == Dtype::bf16 ? kernels::bf16_to_float(bits) : kernels::f16_to_float(bits);
      }
      return;
    case Dtype::f32: std::memcpy(dst, src, 4 * count); return;
    case Dtype::f8_e4m3:
      for (std::size_t i = 0; i < count; ++i) dst[i] = kernels::fp8_e4m3_to_float(static_cast<std::uint8_t>(src[i]));
      return;
    case Dtype::i8:
      for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<float>(static_cast<std::int8_t>(src[i]));
      return;
  }
}

void encode_from_float(Dtype d, const float* src, std::size_t count, std::byte* dst) {
  switch (d) {
    case Dtype::bf16:
    case Dtype::f16:
      for (std::size_t i = 0; i < count; ++i) {
        const std::uint16_t bits = d == Dtype::bf16 ? kernels::float_to_bf16(src[i]) : kernels::float_to_f16(src[i]);
        std::memcpy(dst + 2 * i, &bits, 2);
      }
      return;
    case Dtype::f32: std::memcpy(dst, src, 4 * count); return;
    case Dtype::f8_e4m3:
      for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<std::byte>(kernels::float_to_fp8_e4m3(src[i]));
      return;
    case Dtype::i8:
      for (std::size_t i = 0; i < count; ++i) {
        const float v = std::isnan(src[i]) ? 0.0f : std::clamp(std::nearbyint(src[i]), -128.0f, 127.0f);
        dst[i] = static_cast<std::byte>(static_cast<std::int8_t>(v));
      }
      return;
  }
}

}  // namespace moeplan::executor
