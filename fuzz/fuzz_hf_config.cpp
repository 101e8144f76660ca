// Fuzz the config.json path: arbitrary bytes -> JSON -> ModelConfig -> parameter counts and KV bytes.
// Only InputError may escape the parser; anything else (or a sanitizer report) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "common/files.hpp"
#include "model/config.hpp"
#include "model/kv_cache.hpp"
#include "model/params.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto j = moeplan::parse_json_text(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    const auto m = moeplan::model::parse_hf_config(j, "fuzz", "fuzz");
    if (m.layers.size() > 1000) return 0;
    (void)moeplan::model::count_params(m);
    (void)moeplan::model::kv_bytes_per_token_all_layers(m, moeplan::model::KvDtype::bf16);
  } catch (const moeplan::InputError&) {
  }
  return 0;
}
