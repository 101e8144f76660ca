// Built with -fsanitize=address,undefined (tests/executor/CMakeLists.txt): the safetensors parser on every broken
// image and on thousands of seeded mutations of a valid file (byte flips, header-length edits, truncations,
// appended bytes), in memory and through the memory-mapped file path. Every input must end in success or an
// InputError; a read outside the buffer or undefined behaviour aborts the test under the sanitizers.
#include <catch2/catch.hpp>

#include <cstring>

#include "common/error.hpp"
#include "executor/safetensors.hpp"
#include "tests/executor/safetensors_images.hpp"
#include "tests/executor/executor_test_util.hpp"

using namespace moeplan;
using namespace moeplan::executor;
using moeplan::test::Bytes;

namespace {

// splitmix64: a seeded, portable stream of mutation choices.
struct Rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }
};

// Parse in an exactly-sized heap buffer (so ASan sees any read past its end), then touch every tensor's bytes
// through the offsets the parser accepted. Returns true when the image was accepted.
bool parse_and_touch(const Bytes& image) {
  const auto buffer = std::make_unique<std::byte[]>(image.size());
  if (!image.empty()) std::memcpy(buffer.get(), image.data(), image.size());
  try {
    const auto h = parse_safetensors(buffer.get(), image.size(), "mutant.safetensors");
    unsigned sum = 0;
    for (const auto& t : h.tensors) {
      const std::byte* data = buffer.get() + h.data_offset + t.data_begin;
      for (std::size_t i = 0; i < t.bytes; ++i) sum += static_cast<unsigned>(data[i]);
      std::vector<float> values(static_cast<std::size_t>(t.elements()));
      decode_to_float(t.dtype, data, values.size(), values.data());
    }
    (void)sum;
    return true;
  } catch (const InputError&) {
    return false;
  }
}

Bytes mutate(const Bytes& valid, Rng& rng) {
  Bytes m = valid;
  const int edits = 1 + static_cast<int>(rng.below(4));
  for (int e = 0; e < edits; ++e) {
    switch (rng.below(6)) {
      case 0:  // flip bits in one byte
        if (!m.empty()) m[rng.below(m.size())] ^= static_cast<std::byte>(1 + rng.below(255));
        break;
      case 1:  // overwrite a header byte with a JSON-significant character
        if (m.size() > 8) {
          static const char kChars[] = "{}[]\",:-0123456789eE.";
          m[8 + rng.below(m.size() - 8)] = static_cast<std::byte>(kChars[rng.below(sizeof kChars - 1)]);
        }
        break;
      case 2:  // truncate
        m.resize(rng.below(m.size() + 1));
        break;
      case 3:  // append bytes
        m.resize(m.size() + 1 + rng.below(64), static_cast<std::byte>(rng.below(256)));
        break;
      case 4:  // rewrite the header length
        if (m.size() >= 8) {
          const std::uint64_t n = rng.below(3) == 0 ? rng.next() : rng.below(m.size() + 16);
          std::memcpy(m.data(), &n, 8);
        }
        break;
      default:  // change one digit of the header to a large number
        for (std::size_t tries = 0; tries < 16 && m.size() > 8; ++tries) {
          const std::size_t at = 8 + rng.below(m.size() - 8);
          if (static_cast<char>(m[at]) >= '0' && static_cast<char>(m[at]) <= '9') {
            const std::string big = std::to_string(rng.next());
            m.erase(m.begin() + static_cast<std::ptrdiff_t>(at), m.begin() + static_cast<std::ptrdiff_t>(at) + 1);
            for (std::size_t i = 0; i < big.size(); ++i)
              m.insert(m.begin() + static_cast<std::ptrdiff_t>(at + i), static_cast<std::byte>(big[i]));
            break;
          }
        }
        break;
    }
  }
  return m;
}

}  // namespace

TEST_CASE("asan: every broken image is an InputError, the valid one parses") {
  CHECK(parse_and_touch(test::valid_safetensors_image()));
  for (const auto& c : test::broken_safetensors_images()) {
    INFO(c.rule);
    CHECK(!parse_and_touch(c.bytes));
  }
}

TEST_CASE("asan: 5000 seeded mutations of a valid image end in success or InputError") {
  const Bytes valid = test::valid_safetensors_image();
  Rng rng{20261123};
  int accepted = 0;
  for (int i = 0; i < 5000; ++i) accepted += parse_and_touch(mutate(valid, rng)) ? 1 : 0;
  // Some mutations leave a valid file (a flipped data byte, appended bytes); most do not.
  CHECK(accepted > 0);
  CHECK(accepted < 5000);
}

TEST_CASE("asan: mutated files through the memory-mapped reader end in success or InputError") {
  test::TempDir dir("asan-files");
  const Bytes valid = test::valid_safetensors_image();
  Rng rng{42};
  for (int i = 0; i < 300; ++i) {
    const auto path = dir / "m.safetensors";
    test::write_bytes(path, mutate(valid, rng));
    try {
      const auto f = SafetensorsFile::open(path);
      for (const auto& t : f.tensors()) (void)f.view(t).to_float();
    } catch (const InputError&) {
    }
  }
  SUCCEED("no sanitizer report");
}
