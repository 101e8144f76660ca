// Run-time CPU feature detection (CPUID + XGETBV) and the choice of the fast kernels' code path.
#include "kernels/cpu_features.hpp"

#include <cstdint>
#include <stdexcept>

#include "kernels/cpu/amx.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define MOEPLAN_X86 1
#else
#define MOEPLAN_X86 0
#endif

namespace moeplan::kernels {

namespace {

#if MOEPLAN_X86
std::uint64_t read_xcr0() {
  std::uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if MOEPLAN_X86
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1u, avx = (ecx >> 28) & 1u;
  if (!osxsave || !avx) return f;
  const std::uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6u) == 0x6u;     // SSE and AVX state saved by the OS
  const bool zmm_state = (xcr0 & 0xe6u) == 0xe6u;   // plus opmask, ZMM_Hi256, Hi16_ZMM
  if (!ymm_state) return f;
  f.fma = (ecx >> 12) & 1u;
  f.f16c = (ecx >> 29) & 1u;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.avx2 = (ebx >> 5) & 1u;
  if (zmm_state) {
    f.avx512f = (ebx >> 16) & 1u;
    f.avx512bw = (ebx >> 30) & 1u;
    f.avx512vl = (ebx >> 31) & 1u;
    const bool amx_bf16 = (edx >> 22) & 1u, amx_tile = (edx >> 24) & 1u;
    const bool tile_state = (xcr0 & 0x60000u) == 0x60000u;  // XTILECFG and XTILEDATA saved by the OS
    __cpuid_count(7, 1, eax, ebx, ecx, edx);
    f.avx512_bf16 = (eax >> 5) & 1u;
    // last, as it asks Linux for the tile data (once per process)
    f.amx_bf16 = amx_bf16 && amx_tile && tile_state && f.avx512_bf16 && cpu::request_amx_tile_data();
  }
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

const char* cpu_path_name(CpuPath path) {
  switch (path) {
    case CpuPath::scalar: return "scalar";
    case CpuPath::avx2: return "avx2";
    case CpuPath::avx512: return "avx512";
  }
  return "?";
}

bool cpu_path_supported(CpuPath path) {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = MOEPLAN_X86 && f.avx2 && f.fma && f.f16c;
  switch (path) {
    case CpuPath::scalar: return true;
    case CpuPath::avx2: return avx2;
    case CpuPath::avx512: return avx2 && f.avx512f && f.avx512bw && f.avx512vl;
  }
  return false;
}

CpuPath best_cpu_path() {
  if (cpu_path_supported(CpuPath::avx512)) return CpuPath::avx512;
  if (cpu_path_supported(CpuPath::avx2)) return CpuPath::avx2;
  return CpuPath::scalar;
}

std::vector<CpuPath> supported_cpu_paths() {
  std::vector<CpuPath> paths;
  for (CpuPath p : {CpuPath::scalar, CpuPath::avx2, CpuPath::avx512})
    if (cpu_path_supported(p)) paths.push_back(p);
  return paths;
}

std::string cpu_path_description(CpuPath path) {
  const CpuFeatures& f = cpu_features();
  std::string flags;
  const auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!flags.empty()) flags += ' ';
    flags += name;
  };
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.f16c, "f16c");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512_bf16, "avx512_bf16");
  add(f.amx_bf16, "amx_bf16");
  return std::string(cpu_path_name(path)) + " (cpu: " + (flags.empty() ? "no vector extensions" : flags) + ")";
}

bool amx_bf16_active(const CpuContext& ctx) {
  return ctx.bf16_activations && ctx.path == CpuPath::avx512 && cpu_features().amx_bf16;
}

CpuContext default_cpu_context() {
  static ThreadPool pool(0);
  return CpuContext{best_cpu_path(), &pool};
}

void require_cpu_path(CpuPath path) {
  if (!cpu_path_supported(path))
    throw std::invalid_argument(std::string("kernels: this CPU cannot run the ") + cpu_path_name(path) +
                                " code path; use " + cpu_path_name(best_cpu_path()) + " or scalar");
}

}  // namespace moeplan::kernels
