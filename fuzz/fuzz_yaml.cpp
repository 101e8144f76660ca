// Fuzz the YAML path used by every data file: arbitrary bytes -> parse_yaml_text. Only InputError may escape.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "common/files.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)moeplan::parse_yaml_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const moeplan::InputError&) {
  }
  return 0;
}
