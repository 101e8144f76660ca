// Picks the instruction-set table for a code path (kernels/cpu/isa.hpp).
#include <stdexcept>
#include <string>

#include "kernels/cpu/isa.hpp"

namespace moeplan::kernels::cpu {

const IsaKernels& isa_kernels(CpuPath path) {
  require_cpu_path(path);
  const IsaKernels* table = nullptr;
  switch (path) {
    case CpuPath::scalar: table = isa_scalar(); break;
    case CpuPath::avx2: table = isa_avx2(); break;
    case CpuPath::avx512: table = isa_avx512(); break;
  }
  if (!table) throw std::invalid_argument(std::string("kernels: this build has no ") + cpu_path_name(path) + " code");
  return *table;
}

}  // namespace moeplan::kernels::cpu
