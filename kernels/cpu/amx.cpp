// The AMX BF16 matmul (see amx.hpp). One tile configuration: tiles 0-3 hold a 32 x 32 fp32 block of the output
// (C, 2 x 2 tiles of 16 x 16), tiles 4-5 two 16-row slices of x (A: 16 rows x 32 BF16), tiles 6-7 two 16-column
// slices of W (B: 16 K-pairs x 16 columns, the "VNNI" layout: row p of a B tile holds, for each of its columns n,
// the BF16 pair W[n, 2p], W[n, 2p + 1] as one 32-bit word). TDPBF16PS then adds, for every (m, n) of a C tile, the
// 32 products x[m, k] W[n, k] of one K step, in fp32.
//
// Block loop: rows of x in chunks of kRowChunk (converted to BF16 once per chunk, zero-padded to 16 rows and to a
// multiple of 32 in K), then 32 output columns at a time: that slice of W is packed for all of K (16 x 16 transposes
// of 32-bit pairs), and every 32-row step of the chunk runs its K steps on it. Edges (rows, columns, K) are padded
// with zeros and the C tiles go through a small buffer, so any M, N, K works.
//
// Measured on a 2-core Sapphire Rapids KVM guest (2026-12-02): TDPBF16PS from registers runs at 3.6 TFLOP/s per core,
// but one TILELOADD of 1 KiB takes ~53 cycles even from L1, so the 2 x 2 blocking (4 loads per 4 products) tops out
// near 1 TFLOP/s per core and this kernel reaches 0.5-0.6 TFLOP/s at 32-512 rows; packing W costs as much again.
// Tried and dropped: K slices of W kept in L1 (-15 %), software prefetch of the next rows of W while packing or while
// the tiles run (-5 to -20 %). kRowChunk 128 -> 256 saved 8 % (W packed half as often for 512 rows).
#include "kernels/cpu/amx.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) && defined(__linux__)
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's avx512fintrin.h self-initialises "undefined" vectors (GCC bug 105593; see isa_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#define MOEPLAN_AMX 1
#else
#define MOEPLAN_AMX 0
#endif

namespace moeplan::kernels::cpu {

#if MOEPLAN_AMX

namespace {

#define AMX_FN __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

constexpr std::int64_t kRowChunk = 256;  // rows of x per BF16 copy (4 MiB at K = 8192); W is packed once per chunk

struct alignas(64) TileConfig {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

// x rows [0, rows) -> a [rows16, Kp] BF16 (round to nearest even; VCVTNEPS2BF16 reads subnormal inputs as zero, and
// the scalar tail keeps them, a difference below 2^-126), zero beyond rows and K.
AMX_FN void pack_a(const float* x, std::int64_t rows, std::int64_t K, std::int64_t rows16, std::int64_t Kp,
                   std::uint16_t* a) {
  for (std::int64_t m = 0; m < rows16; ++m) {
    std::uint16_t* out = a + m * Kp;
    if (m >= rows) {
      std::memset(out, 0, static_cast<std::size_t>(Kp) * 2);
      continue;
    }
    const float* in = x + m * K;
    std::int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(in + k));
      std::memcpy(out + k, &v, 32);
    }
    for (; k < K; ++k) out[k] = float_to_bf16(in[k]);
    for (; k < Kp; ++k) out[k] = 0;
  }
}

// 16 x 16 transpose of 32-bit words: r[i] (row i) -> r[j] (column j).
AMX_FN void transpose16(__m512i* r) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // now r[4q + j], lane L (128 bits) = column 4L + j of rows 4q .. 4q + 3: a 4 x 4 transpose of lanes finishes it
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_i32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_i32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_i32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_i32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_i32x4(t[i], t[8 + i], 0xdd);
    r[4 + i] = _mm512_shuffle_i32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_i32x4(t[4 + i], t[12 + i], 0xdd);
  }
}

// W rows [n, n + cols) (cols <= 32), K from k_begin to k_end (multiples of 32) -> b: [(k_end - k_begin) / 32]
// [2 tiles][16 pairs][16 columns] 32-bit pairs, zero beyond cols and K.
AMX_FN void pack_b(const std::uint16_t* w, std::int64_t K, std::int64_t n, std::int64_t cols, std::int64_t k_begin,
                   std::int64_t k_end, std::uint32_t* b) {
  alignas(64) std::uint16_t edge[32];
  for (std::int64_t k0 = k_begin; k0 < k_end; k0 += 32) {
    for (int half = 0; half < 2; ++half) {
      __m512i r[16];
      for (int j = 0; j < 16; ++j) {
        const std::int64_t col = half * 16 + j;
        if (col >= cols) {
          r[j] = _mm512_setzero_si512();
        } else if (k0 + 32 <= K) {
          r[j] = _mm512_loadu_si512(w + (n + col) * K + k0);
        } else {  // K tail
          std::memset(edge, 0, sizeof edge);
          std::memcpy(edge, w + (n + col) * K + k0, static_cast<std::size_t>(K - k0) * 2);
          r[j] = _mm512_load_si512(edge);
        }
      }
      transpose16(r);  // r[p] = pair p of every column
      std::uint32_t* tile = b + (((k0 - k_begin) / 32) * 2 + half) * 256;
      for (int p = 0; p < 16; ++p) _mm512_storeu_si512(tile + p * 16, r[p]);
    }
  }
}

struct Scratch {
  std::vector<std::uint16_t> a;
  std::vector<std::uint32_t> b;
  alignas(64) float c[4][16 * 16];
};

}  // namespace

bool request_amx_tile_data() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

AMX_FN void amx_bf16_matmul_block(const float* x, std::int64_t M, const WeightView& w, std::int64_t n0,
                                  std::int64_t n1, float* y, std::int64_t ldy, bool accumulate) {
  const std::int64_t K = w.cols, Kp = (K + 31) / 32 * 32, steps = Kp / 32;
  const auto* wdata = static_cast<const std::uint16_t*>(w.data);
  thread_local Scratch s;
  s.a.resize(static_cast<std::size_t>(kRowChunk * Kp));
  s.b.resize(static_cast<std::size_t>(steps * 2 * 256));
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  const std::int64_t a_stride = Kp * 2;  // bytes between rows of the BF16 copy of x
  for (std::int64_t m0 = 0; m0 < M; m0 += kRowChunk) {
    const std::int64_t rows = std::min(kRowChunk, M - m0), rows16 = (rows + 15) / 16 * 16;
    pack_a(x + m0 * K, rows, K, rows16, Kp, s.a.data());
    for (std::int64_t n = n0; n < n1; n += 32) {
      const std::int64_t cols = std::min<std::int64_t>(32, n1 - n);
      pack_b(wdata, K, n, cols, 0, Kp, s.b.data());
      for (std::int64_t mb = 0; mb < rows16; mb += 32) {
        const bool two = mb + 16 < rows16;  // a second 16-row slice of x
        const std::uint16_t* a0 = s.a.data() + mb * Kp;
        const std::uint16_t* a1 = a0 + 16 * Kp;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (std::int64_t k = 0; k < steps; ++k) {
          const std::uint32_t* b = s.b.data() + k * 512;
          _tile_loadd(6, b, 64);
          _tile_loadd(4, a0 + k * 32, a_stride);
          _tile_dpbf16ps(0, 4, 6);
          _tile_loadd(7, b + 256, 64);
          _tile_dpbf16ps(1, 4, 7);
          if (two) {
            _tile_loadd(5, a1 + k * 32, a_stride);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
        }
        _tile_stored(0, s.c[0], 64);
        _tile_stored(1, s.c[1], 64);
        if (two) {
          _tile_stored(2, s.c[2], 64);
          _tile_stored(3, s.c[3], 64);
        }
        // C tile 2 * (row half) + (column half) -> y, with W's row scale when it has one
        for (int t = 0; t < (two ? 4 : 2); ++t) {
          const std::int64_t r0 = mb + 16 * (t / 2), c0 = 16 * (t % 2);
          const std::int64_t count = std::min<std::int64_t>(16, cols - c0);
          const float* scale = w.row_scales ? w.row_scales + n + c0 : nullptr;
          for (std::int64_t i = 0; i < 16 && r0 + i < rows; ++i) {
            float* out = y + (m0 + r0 + i) * ldy + n + c0;
            const float* in = s.c[t] + i * 16;
            for (std::int64_t j = 0; j < count; ++j) {
              const float v = scale ? in[j] * scale[j] : in[j];
              out[j] = accumulate ? out[j] + v : v;
            }
          }
        }
      }
    }
  }
  _tile_release();
}

#else

bool request_amx_tile_data() { return false; }

void amx_bf16_matmul_block(const float*, std::int64_t, const WeightView&, std::int64_t, std::int64_t, float*,
                           std::int64_t, bool) {}

#endif

}  // namespace moeplan::kernels::cpu
