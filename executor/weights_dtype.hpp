// executor/weights_dtype: the element types a checkpoint may hold (safetensors dtype strings), their sizes, and
// bulk conversions of unaligned little-endian tensor bytes to and from float, built on the scalar conversions of
// kernels/weights.hpp (exact decoding; rounding to nearest even when encoding, as PyTorch's .to() does).
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "kernels/weights.hpp"

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian and moeplan reads it in place: a big-endian host needs byte swaps");

namespace moeplan::executor {

// The dtypes moeplan reads. Safetensors names: "BF16", "F16", "F32", "F8_E4M3" (PyTorch float8_e4m3fn: no
// infinities, max 448), "I8". Anything else (F64, I64, U8, BOOL, F8_E5M2, ...) is refused by the reader.
enum class Dtype { bf16, f16, f32, f8_e4m3, i8 };

const char* dtype_name(Dtype d);                              // the safetensors spelling, e.g. "BF16"
std::size_t dtype_bytes(Dtype d);                             // bytes per element
std::optional<Dtype> parse_dtype(std::string_view name);      // nullopt when not one of the five
const char* supported_dtype_names();                          // "BF16, F16, F32, F8_E4M3, I8" (for messages)
bool is_float_dtype(Dtype d);                                 // bf16, f16, f32

// The matching kernels::WeightDtype (kernels/weights.hpp, which also holds the exact scalar conversions).
kernels::WeightDtype to_weight_dtype(Dtype d);

// Decode `count` elements of dtype `d` starting at `src` (any alignment; read byte-wise, little-endian) into
// `dst`. I8 decodes to its integer value.
void decode_to_float(Dtype d, const std::byte* src, std::size_t count, float* dst);
// Encode `count` floats into dtype `d` at `dst` (any alignment, little-endian). F8_E4M3 saturates to ±448; I8
// rounds to nearest even and clamps to [-128, 127] (NaN -> 0).
void encode_from_float(Dtype d, const float* src, std::size_t count, std::byte* dst);

}  // namespace moeplan::executor
