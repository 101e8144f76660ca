// kernels/cpu/amx: the BF16 matmul on Intel AMX tiles (Sapphire Rapids and later), for callers that accept
// activations rounded to BF16 (CpuContext::bf16_activations; PyTorch's bf16 matmuls round the same way). Internal to
// kernels/: kernels/cpu/matmul.cpp calls it for BF16 weights above the GEMV row count when amx_bf16_active(ctx).
// Spec: matmul_ref(round_to_bf16(x), w), accumulated in fp32.
#pragma once
#include <cstdint>

#include "kernels/weights.hpp"

namespace moeplan::kernels::cpu {

// Asks Linux for this process's AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM) and says whether it was granted; false
// off x86-64 Linux. cpu_features() calls it once, after finding AMX-TILE, AMX-BF16 and the OS tile state in CPUID/XCR0.
bool request_amx_tile_data();

// y[m, n] (+)= sum_k bf16(x[m, k]) * dequant(w)[n, k] (row scale applied to the fp32 sum) for m in [0, M), n in [n0, n1); w.dtype must be bf16.
//   x: [M, w.cols]; y: rows of ldy floats. Uses per-thread scratch; loads and releases the tile configuration.
void amx_bf16_matmul_block(const float* x, std::int64_t M, const WeightView& w, std::int64_t n0, std::int64_t n1,
                           float* y, std::int64_t ldy, bool accumulate);

}  // namespace moeplan::kernels::cpu
