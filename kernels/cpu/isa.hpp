// kernels/cpu/isa: the per-instruction-set building blocks behind the fast CPU kernels (internal to kernels/).
// isa_scalar.cpp, isa_avx2.cpp and isa_avx512.cpp each instantiate the same generic code (isa_kernels.inc) with
// their vector type and fill one IsaKernels table; the public kernels (kernels/cpu/*.cpp) split the work over the
// thread pool and call the table of ctx.path.
#pragma once
#include <cstdint>

#include "kernels/attention.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/weights.hpp"

namespace moeplan::kernels::cpu {

// Register and cache blocking of the packed GEMM (BLIS-style loops: NC columns of W, KC of K, MC rows of x,
// then MR x NR register tiles). Chosen per instruction set; see the notes in each isa_*.cpp.
struct GemmBlocking {
  int mr = 0, nr = 0;       // register tile: MR rows of x by NR output columns
  std::int64_t kc = 0;      // K slice: a packed KC x NR panel of W stays in L1
  std::int64_t mc = 0;      // rows of x packed per block (MC x KC in L2)
  std::int64_t nc = 0;      // output columns packed per block (KC x NC in L2 or L3)
};

struct IsaKernels {
  CpuPath path = CpuPath::scalar;
  int vector_floats = 1;               // floats per vector register
  std::int64_t gemv_max_rows = 0;      // matmul with M at or below this streams W as dot products (no packing)
  GemmBlocking gemm;
  std::int64_t matmul_scratch_floats = 0;  // scratch each matmul_block call needs (packed tiles)
  std::int64_t attention_key_block = 0;    // keys per online-softmax block

  // y[m, n] (+)= x[m, :] · dequant(w)[n, :] for m in [0, M), n in [n0, n1).
  //   x: [M, w.cols]; y: rows of ldy floats; scratch: matmul_scratch_floats floats
  void (*matmul_block)(const float* x, std::int64_t M, const WeightView& w, std::int64_t n0, std::int64_t n1,
                       float* y, std::int64_t ldy, bool accumulate, float* scratch) = nullptr;

  // out: [w.cols] = dequant(w)[row, :]
  void (*dequantize_row)(const WeightView& w, std::int64_t row, float* out) = nullptr;

  // Unnormalised online-softmax attention of query token t, all Hq heads, over cache rows [first, last):
  // m[h] = max score, l[h] = sum exp(s - m[h]), acc[h, :] = sum exp(s - m[h]) v.
  //   m, l: [Hq]; acc: [Hq, D]; scratch: Hq * (D + attention_key_block) floats
  void (*attention_partial)(const AttentionParams& p, const float* q, const float* k, const float* v,
                            std::int64_t t, std::int64_t first, std::int64_t last, float* m, float* l, float* acc,
                            float* scratch) = nullptr;

  // y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) (* w when w is not null). x, y: [rows, dim].
  void (*rms_rows)(const float* x, const float* w, float* y, std::int64_t rows, std::int64_t dim,
                   float eps) = nullptr;

  void (*silu_mul)(const float* gate, const float* up, float* out, std::int64_t n) = nullptr;
  void (*add)(const float* a, const float* b, float* out, std::int64_t n) = nullptr;
  void (*scale)(const float* x, float s, float* out, std::int64_t n) = nullptr;
};

// The table of a path; throws std::invalid_argument when this CPU or build cannot run it.
const IsaKernels& isa_kernels(CpuPath path);

// Each instruction set's table; nullptr when the build has no code for it (not x86).
const IsaKernels* isa_scalar();
const IsaKernels* isa_avx2();
const IsaKernels* isa_avx512();

}  // namespace moeplan::kernels::cpu
