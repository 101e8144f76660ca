// The AVX2 + FMA + F16C code path (8 floats per register): the generic kernels (isa_kernels.inc) over __m256.
// Compiled with function target attributes, never -mavx2, so the rest of the binary runs on any x86-64.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/isa.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

namespace moeplan::kernels::cpu {

namespace {

#define MOEPLAN_ISA_TARGET __attribute__((target("avx2,fma,f16c")))
#define OPS_FN MOEPLAN_ISA_TARGET __attribute__((always_inline)) inline static

struct Ops {
  using V = __m256;
  static constexpr int W = 8;
  OPS_FN V zero() { return _mm256_setzero_ps(); }
  OPS_FN V set1(float a) { return _mm256_set1_ps(a); }
  OPS_FN V load(const float* p) { return _mm256_loadu_ps(p); }
  OPS_FN void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  OPS_FN V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  OPS_FN V add(V a, V b) { return _mm256_add_ps(a, b); }
  OPS_FN V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  OPS_FN V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  OPS_FN V div(V a, V b) { return _mm256_div_ps(a, b); }
  OPS_FN V max(V a, V b) { return _mm256_max_ps(a, b); }
  OPS_FN float hsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // The four horizontal sums, out[0..3] = sum(a), sum(b), sum(c), sum(d).
  OPS_FN void hsum4(V a, V b, V c, V d, float* out) {
    const V abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));  // a0-3 b0-3 c0-3 d0-3 | a4-7 ...
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  // 8 x 8 transpose: unpack pairs, shuffle quads, swap 128-bit halves.
  OPS_FN void transpose(V* v) {
    const V t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    const V t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    const V t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    const V t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    const V s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const V s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const V s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const V s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
    v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
  }
  OPS_FN float hmax(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // exp(x) (Cephes expf): x = n ln2 + r, |r| <= ln2 / 2, e^r by a degree-6 polynomial, 2^n through the exponent
  // bits. x is clamped to [-87.34, 88.38] so 2^n stays a normal float (results below ~1.2e-38 come out as that).
  OPS_FN V exp(V x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33654f)), _mm256_set1_ps(88.3762626647949f));
    const V n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // ln2 split in two for an exact product
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    V p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  }
  // bf16 -> fp32: widen to 32 bits and shift into the top half
  OPS_FN V from_bf16(const std::uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  OPS_FN V from_f16(const std::uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  OPS_FN V from_i8(const std::int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  // E4M3 -> fp32 / 256 through fp16: the byte s.eeee.mmm sign-extended to 16 bits and shifted left 7 puts eeee.mmm
  // in the fp16 exponent/mantissa fields (bias 15 instead of 7, hence / 2^8, subnormals included) and s in bit 15;
  // bit 14 (a copy of s) is cleared. 0x7f / 0xff (NaN in E4M3) become the fp16 NaN 0xffff.
  OPS_FN V from_fp8_div256(const std::uint8_t* p) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    __m128i h = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(b), 7), _mm_set1_epi16(static_cast<short>(0xbf80)));
    const __m128i nan = _mm_cmpeq_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7fff)), _mm_set1_epi16(0x3f80));
    h = _mm_or_si128(h, nan);
    return _mm256_cvtph_ps(h);
  }
  // 16 bytes in one 256-bit integer pass, then two fp16 -> fp32 conversions.
  OPS_FN void from_fp8_div256_x2(const std::uint8_t* p, V& lo, V& hi) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7),
                                 _mm256_set1_epi16(static_cast<short>(0xbf80)));
    const __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7fff)), _mm256_set1_epi16(0x3f80));
    h = _mm256_or_si256(h, nan);
    lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
    hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
  }
};

// GEMM register tile 6 x 16 (the Haswell/Zen BLIS shape): 12 accumulators + 2 B vectors + 1 broadcast of the 16
// registers. KC = 256: the 256 x 16 B micro-panel is 16 KiB (half of L1d). MC = 96: a 96 KiB packed x block in
// L2. NC = 2048: a 2 MiB packed B block in L3, which amortises packing x over 128 micro-panels (BLIS uses ~4080
// on Zen). Measured on a 2-core Zen 3 VM: NC 256 -> 2048 took a 512 x 5120 x 2048 GEMM from ~0.5 to ~0.65-0.7
// of the FMA peak; MC 48-240 made no difference beyond noise.
// GEMV up to M = 16: measured faster than the packed GEMM for M = 5-16 at N = 512 (packing x does not pay off).
constexpr int kGemmMR = 6, kGemmNR = 16;
constexpr std::int64_t kGemmKC = 256, kGemmMC = 96, kGemmNC = 2048;
constexpr std::int64_t kGemvMaxRows = 16, kAttentionKeyBlock = 64;
constexpr CpuPath kPath = CpuPath::avx2;

#include "kernels/cpu/isa_kernels.inc"

#undef OPS_FN
}  // namespace

const IsaKernels* isa_avx2() {
  static const IsaKernels kernels = make_isa_kernels();
  return &kernels;
}

}  // namespace moeplan::kernels::cpu

#else  // not x86: no AVX2 code in this build

namespace moeplan::kernels::cpu {
const IsaKernels* isa_avx2() { return nullptr; }
}  // namespace moeplan::kernels::cpu

#endif
