// The portable code path: the generic kernels (isa_kernels.inc) with a "vector" of one float. Runs on any CPU;
// tests run it on every machine so the blocking and tail logic is checked at width 1 as well as 8.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/isa.hpp"

namespace moeplan::kernels::cpu {

namespace {

#define MOEPLAN_ISA_TARGET

struct Ops {
  using V = float;
  static constexpr int W = 1;
  static V zero() { return 0.0f; }
  static V set1(float a) { return a; }
  static V load(const float* p) { return *p; }
  static void store(float* p, V v) { *p = v; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V div(V a, V b) { return a / b; }
  static V max(V a, V b) { return std::max(a, b); }
  static float hsum(V v) { return v; }
  static void hsum4(V a, V b, V c, V d, float* out) {
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out[3] = d;
  }
  static void transpose(V*) {}  // a 1 x 1 block
  static float hmax(V v) { return v; }
  static V exp(V x) { return std::exp(x); }
  static V from_bf16(const std::uint16_t* p) { return bf16_to_float(*p); }
  static V from_f16(const std::uint16_t* p) { return f16_to_float(*p); }
  static V from_i8(const std::int8_t* p) { return static_cast<float>(*p); }
  static V from_fp8_div256(const std::uint8_t* p) { return fp8_e4m3_to_float(*p) * (1.0f / 256.0f); }
  static void from_fp8_div256_x2(const std::uint8_t* p, V& lo, V& hi) {
    lo = from_fp8_div256(p);
    hi = from_fp8_div256(p + 1);
  }
};

// Blocking for the scalar path: 4 x 4 register tile of scalars (16 accumulators), small cache blocks so the
// tests cross several NC and KC blocks.
constexpr int kGemmMR = 4, kGemmNR = 4;
constexpr std::int64_t kGemmKC = 256, kGemmMC = 64, kGemmNC = 256;
constexpr std::int64_t kGemvMaxRows = 16, kAttentionKeyBlock = 64;
constexpr CpuPath kPath = CpuPath::scalar;

#include "kernels/cpu/isa_kernels.inc"

}  // namespace

const IsaKernels* isa_scalar() {
  static const IsaKernels kernels = make_isa_kernels();
  return &kernels;
}

}  // namespace moeplan::kernels::cpu
