// common/splitmix: splitmix64 (Steele, Lea, Flood 2014), the portable seeded generator behind random checkpoints,
// prompt ids, sampling and synthetic KV caches: the same stream on every compiler and standard library
// (std::*_distribution output is not).
#pragma once
#include <cstdint>

namespace moeplan {

// The output function: a bijective 64-bit mixer.
inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Advance `state` and return the next 64-bit value.
inline std::uint64_t splitmix64(std::uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  return mix64(state);
}

// Uniform in [0, 1) with 53 random bits.
inline double splitmix64_unit(std::uint64_t& state) { return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53; }

}  // namespace moeplan
