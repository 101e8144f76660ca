// The AVX-512 code path (16 floats per register): the generic kernels (isa_kernels.inc) over __m512. Chosen at run
// time only on CPUs with AVX-512 F/BW/VL; compiled with function target attributes, never -mavx512f. The generic
// code it shares is tested at widths 1 and 8 on any x86 machine; this file adds only the __m512 operations.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cpu/isa.hpp"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's avx512fintrin.h builds "undefined" vectors by self-initialisation (__m512 __Y = __Y), which -Wall
// reports once inlined (GCC bug 105593, fixed in GCC 13). The same generic code is compiled with these warnings
// on in isa_avx2.cpp and isa_scalar.cpp.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

namespace moeplan::kernels::cpu {

namespace {

#define MOEPLAN_ISA_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define OPS_FN MOEPLAN_ISA_TARGET __attribute__((always_inline)) inline static

struct Ops {
  using V = __m512;
  static constexpr int W = 16;
  OPS_FN V zero() { return _mm512_setzero_ps(); }
  OPS_FN V set1(float a) { return _mm512_set1_ps(a); }
  OPS_FN V load(const float* p) { return _mm512_loadu_ps(p); }
  OPS_FN void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  OPS_FN V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  OPS_FN V add(V a, V b) { return _mm512_add_ps(a, b); }
  OPS_FN V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  OPS_FN V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  OPS_FN V div(V a, V b) { return _mm512_div_ps(a, b); }
  OPS_FN V max(V a, V b) { return _mm512_max_ps(a, b); }
  OPS_FN float hsum(V v) {
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // The four horizontal sums: fold each to 256 bits, then the AVX2 sequence.
  OPS_FN void hsum4(V a, V b, V c, V d, float* out) {
    const __m256 a8 = _mm256_add_ps(lo256(a), hi256(a)), b8 = _mm256_add_ps(lo256(b), hi256(b));
    const __m256 c8 = _mm256_add_ps(lo256(c), hi256(c)), d8 = _mm256_add_ps(lo256(d), hi256(d));
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
  }
  // 16 x 16 transpose as four 8 x 8 transposes of the 256-bit quarters (the AVX2 sequence):
  // [[A, B], [C, D]]^T = [[A^T, C^T], [B^T, D^T]].
  OPS_FN void transpose(V* v) {
    __m256 a[8], b[8], c[8], d[8];
    for (int i = 0; i < 8; ++i) {
      a[i] = lo256(v[i]);
      b[i] = hi256(v[i]);
      c[i] = lo256(v[8 + i]);
      d[i] = hi256(v[8 + i]);
    }
    transpose8(a);
    transpose8(b);
    transpose8(c);
    transpose8(d);
    for (int j = 0; j < 8; ++j) {
      v[j] = join(a[j], c[j]);
      v[8 + j] = join(b[j], d[j]);
    }
  }
  OPS_FN __m256 lo256(V v) { return _mm512_castps512_ps256(v); }
  OPS_FN __m256 hi256(V v) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)); }
  OPS_FN V join(__m256 lo, __m256 hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
  }
  OPS_FN void transpose8(__m256* v) {
    const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
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
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 s8 = _mm256_max_ps(lo, hi);
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // exp(x): the same Cephes expf as the AVX2 path (see isa_avx2.cpp), 16 lanes.
  OPS_FN V exp(V x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.33654f)), _mm512_set1_ps(88.3762626647949f));
    const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    V p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
  }
  OPS_FN V from_bf16(const std::uint16_t* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  OPS_FN V from_f16(const std::uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  OPS_FN V from_i8(const std::int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  // E4M3 -> fp32 / 256 through fp16, as in isa_avx2.cpp, 16 bytes at a time.
  OPS_FN V from_fp8_div256(const std::uint8_t* p) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7),
                                 _mm256_set1_epi16(static_cast<short>(0xbf80)));
    const __m256i nan = _mm256_cmpeq_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7fff)), _mm256_set1_epi16(0x3f80));
    h = _mm256_or_si256(h, nan);
    return _mm512_cvtph_ps(h);
  }
  OPS_FN void from_fp8_div256_x2(const std::uint8_t* p, V& lo, V& hi) {
    lo = from_fp8_div256(p);
    hi = from_fp8_div256(p + 16);
  }
};

// GEMM register tile 12 x 32: 24 accumulators + 2 B vectors + 1 broadcast of the 32 registers. KC = 192: the
// 192 x 32 B micro-panel is 24 KiB (L1d: 48 KiB on Sapphire Rapids, 32 KiB on Zen 4); MC = 96: a 72 KiB packed
// x block in L2; NC = 2048 as on AVX2 (packed B block in L3). Not tuned; on a Sapphire Rapids VM
// (2026-12-02) it reaches 294 GFLOP/s at 512 x 5120 x 8192 with BF16 weights, 0.65 of the FMA chains' peak.
constexpr int kGemmMR = 12, kGemmNR = 32;
constexpr std::int64_t kGemmKC = 192, kGemmMC = 96, kGemmNC = 2048;
constexpr std::int64_t kGemvMaxRows = 16, kAttentionKeyBlock = 64;
constexpr CpuPath kPath = CpuPath::avx512;

#include "kernels/cpu/isa_kernels.inc"

#undef OPS_FN
}  // namespace

const IsaKernels* isa_avx512() {
  static const IsaKernels kernels = make_isa_kernels();
  return &kernels;
}

}  // namespace moeplan::kernels::cpu

#else  // not x86: no AVX-512 code in this build

namespace moeplan::kernels::cpu {
const IsaKernels* isa_avx512() { return nullptr; }
}  // namespace moeplan::kernels::cpu

#endif
