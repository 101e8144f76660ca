// Fuzz the safetensors parser: arbitrary bytes as a whole file image -> parse_safetensors, then every accepted
// tensor's bytes are read and decoded through the offsets the parser accepted. Only InputError may escape; a
// sanitizer report (a read outside the input, undefined behaviour) or any other exception is a bug.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/error.hpp"
#include "executor/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto* bytes = reinterpret_cast<const std::byte*>(data);
    const auto header = moeplan::executor::parse_safetensors(bytes, size, "fuzz");
    std::vector<float> values;
    for (const auto& t : header.tensors) {
      if (t.elements() > (1 << 20)) continue;  // keep each run fast; the bytes are checked to be inside `data` anyway
      values.resize(static_cast<std::size_t>(t.elements()));
      moeplan::executor::decode_to_float(t.dtype, bytes + header.data_offset + t.data_begin, values.size(), values.data());
    }
  } catch (const moeplan::InputError&) {
  }
  return 0;
}
