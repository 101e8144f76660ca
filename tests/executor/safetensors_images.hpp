// Safetensors byte images built in memory: one valid file and one broken file per validation rule of
// executor/safetensors.cpp, each with the words its error message must contain. Shared by the normal executor
// tests and the AddressSanitizer test (which also mutates the valid image at random).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace moeplan::test {

using Bytes = std::vector<std::byte>;

// [u64 LE header length][header][data_bytes bytes of data, value i & 0xFF]. `length` overrides the stored header
// length (to lie about it).
inline Bytes safetensors_image(const std::string& header, std::size_t data_bytes,
                               std::optional<std::uint64_t> length = std::nullopt) {
  const std::uint64_t n = length.value_or(header.size());
  Bytes out(8 + header.size() + data_bytes);
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xFF);
  std::memcpy(out.data() + 8, header.data(), header.size());
  for (std::size_t i = 0; i < data_bytes; ++i) out[8 + header.size() + i] = static_cast<std::byte>(i & 0xFF);
  return out;
}

// "a": BF16 [2, 3] at bytes [0, 12); "b": F32 [4] at [12, 28); "c": F8_E4M3 [0] (empty) at [28, 28); metadata.
inline const char* kValidHeader =
    R"({"__metadata__":{"format":"pt"},)"
    R"("a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
    R"("b":{"dtype":"F32","shape":[4],"data_offsets":[12,28]},)"
    R"("c":{"dtype":"F8_E4M3","shape":[0],"data_offsets":[28,28]}})";
inline Bytes valid_safetensors_image() { return safetensors_image(kValidHeader, 28); }

struct BrokenImage {
  std::string rule;    // what is wrong
  Bytes bytes;
  std::string expect;  // a phrase the InputError message must contain
};

inline std::vector<BrokenImage> broken_safetensors_images() {
  auto entry = [](const std::string& body) { return "{\"t\":" + body + "}"; };
  std::vector<BrokenImage> cases;
  cases.push_back({"empty file", Bytes{}, "too short"});
  cases.push_back({"truncated header length", Bytes(5, std::byte{1}), "too short"});
  cases.push_back({"header length past the end of the file", safetensors_image(kValidHeader, 28, 100000), "runs past the end of the file"});
  cases.push_back({"header length implausible", safetensors_image(kValidHeader, 28, std::uint64_t{1} << 62), "implausible"});
  cases.push_back({"header cut inside the JSON", safetensors_image(std::string(kValidHeader).substr(0, 40), 28), "not valid JSON"});
  cases.push_back({"bad JSON", safetensors_image("{\"a\": {dtype: BF16}}", 0), "not valid JSON"});
  cases.push_back({"header is a list", safetensors_image("[1, 2, 3]", 0), "must be a JSON object"});
  cases.push_back({"entry not an object", safetensors_image(entry("[1]"), 0), "header entry must be an object"});
  cases.push_back({"missing dtype", safetensors_image(entry(R"({"shape":[1],"data_offsets":[0,2]})"), 2), "'dtype'"});
  cases.push_back({"unknown dtype", safetensors_image(entry(R"({"dtype":"F64","shape":[1],"data_offsets":[0,8]})"), 8), "has dtype F64"});
  cases.push_back({"negative dimension", safetensors_image(entry(R"({"dtype":"BF16","shape":[-1],"data_offsets":[0,2]})"), 2), "non-negative integers"});
  cases.push_back({"fractional dimension", safetensors_image(entry(R"({"dtype":"BF16","shape":[1.5],"data_offsets":[0,2]})"), 2), "non-negative integers"});
  cases.push_back({"one data offset", safetensors_image(entry(R"({"dtype":"BF16","shape":[1],"data_offsets":[0]})"), 2), "data_offsets must be"});
  cases.push_back({"offsets end before they begin", safetensors_image(entry(R"({"dtype":"BF16","shape":[1],"data_offsets":[4,2]})"), 4), "end before they begin"});
  cases.push_back({"offsets outside the data", safetensors_image(entry(R"({"dtype":"BF16","shape":[4],"data_offsets":[0,8]})"), 6), "run past the data section"});
  cases.push_back({"size mismatch", safetensors_image(entry(R"({"dtype":"BF16","shape":[2,3],"data_offsets":[0,10]})"), 12), "needs 12 bytes"});
  cases.push_back({"shape overflows", safetensors_image(entry(R"({"dtype":"BF16","shape":[4294967296,4294967296],"data_offsets":[0,2]})"), 2), "too large"});
  cases.push_back({"offsets overlapping",
                   safetensors_image(R"({"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                   "overlaps"});
  cases.push_back({"duplicate tensor name",
                   safetensors_image(R"({"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},"a":{"dtype":"BF16","shape":[1],"data_offsets":[2,4]}})", 4),
                   "twice"});
  cases.push_back({"nested too deep", safetensors_image(entry(R"({"dtype":"BF16","shape":[[1]],"data_offsets":[0,2]})"), 2), "nests deeper"});
  cases.push_back({"metadata not strings", safetensors_image(R"({"__metadata__":{"format":1}})", 0), "__metadata__ entry"});
  cases.push_back({"empty tensor name", safetensors_image(R"({"":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}})", 2), "empty name"});
  return cases;
}

}  // namespace moeplan::test
