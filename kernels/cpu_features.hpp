// kernels/cpu_features: what this CPU can run (detected at run time, never assumed at compile time), which vector
// code path the fast kernels take, and the context every fast kernel receives (path + thread pool).
#pragma once
#include <string>
#include <vector>

#include "kernels/thread_pool.hpp"

namespace moeplan::kernels {

// Instruction-set extensions the CPU has and the OS has enabled (XSAVE state for YMM / ZMM registers).
struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_bf16 = false;  // used with AMX (CpuContext::bf16_activations), not by the fp32 paths
  bool amx_bf16 = false;     // AMX-TILE + AMX-BF16 + AVX-512 BF16, OS tile state on, and Linux granted the tile data
};

// Detected once (CPUID + XGETBV on x86; all false elsewhere).
const CpuFeatures& cpu_features();

// The vector code the fast kernels run. All paths compute the same thing; the reference kernels are their spec.
//   scalar  portable C++ (any CPU)
//   avx2    AVX2 + FMA + F16C, 8 floats per register
//   avx512  AVX-512 F/BW/VL (+ AVX2, FMA, F16C), 16 floats per register
enum class CpuPath { scalar, avx2, avx512 };

const char* cpu_path_name(CpuPath path);          // "scalar", "avx2", "avx512"
bool cpu_path_supported(CpuPath path);            // this CPU (and this build) can run it
CpuPath best_cpu_path();                          // the widest supported path
std::vector<CpuPath> supported_cpu_paths();       // every path this CPU runs, narrowest first
// For reports: e.g. "avx2 (avx2 fma f16c)".
std::string cpu_path_description(CpuPath path);

// What every fast kernel is given: which code path to run and which threads to use. A plain value; the pool is
// not owned. pool == nullptr runs on the calling thread only.
struct CpuContext {
  CpuPath path = CpuPath::scalar;
  ThreadPool* pool = nullptr;
  // Let matmuls with BF16 weights and more rows than the GEMV handles round x to BF16 and run on AMX tiles where
  // the CPU has them (cpu_features().amx_bf16; elsewhere the flag changes nothing). Products stay exact and sums
  // fp32, as in PyTorch's bf16 matmul; the fp32 default keeps x as it is. Only on the avx512 path.
  bool bf16_activations = false;
};

// Whether matmuls with `ctx` take the AMX path for BF16 weights: bf16_activations, the avx512 path and a CPU with
// amx_bf16.
bool amx_bf16_active(const CpuContext& ctx);

// The best supported path and a process-wide pool of hardware_concurrency() threads (created on first use).
CpuContext default_cpu_context();

// Throws std::invalid_argument naming the path when this CPU cannot run it (tests and callers that force a path).
void require_cpu_path(CpuPath path);

}  // namespace moeplan::kernels
