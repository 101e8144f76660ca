// CPU feature detection and code-path selection.
#include <catch2/catch.hpp>

#include <string>

#include "kernels/cpu_features.hpp"

using namespace moeplan::kernels;

TEST_CASE("code paths: names, support and the best path") {
  CHECK(std::string(cpu_path_name(CpuPath::scalar)) == "scalar");
  CHECK(std::string(cpu_path_name(CpuPath::avx2)) == "avx2");
  CHECK(std::string(cpu_path_name(CpuPath::avx512)) == "avx512");
  CHECK(cpu_path_supported(CpuPath::scalar));
  CHECK(cpu_path_supported(best_cpu_path()));
  const auto& f = cpu_features();
  CHECK(cpu_path_supported(CpuPath::avx2) == (f.avx2 && f.fma && f.f16c));
  const bool avx512 = cpu_path_supported(CpuPath::avx2) && f.avx512f && f.avx512bw && f.avx512vl;
  CHECK(cpu_path_supported(CpuPath::avx512) == avx512);
  if (cpu_path_supported(CpuPath::avx512)) CHECK(best_cpu_path() == CpuPath::avx512);
  else if (cpu_path_supported(CpuPath::avx2)) CHECK(best_cpu_path() == CpuPath::avx2);
  else CHECK(best_cpu_path() == CpuPath::scalar);
  CHECK(supported_cpu_paths().front() == CpuPath::scalar);
  CHECK(supported_cpu_paths().back() == best_cpu_path());
  CHECK(cpu_path_description(best_cpu_path()).rfind(cpu_path_name(best_cpu_path()), 0) == 0);
  CHECK(default_cpu_context().path == best_cpu_path());
  CHECK(default_cpu_context().pool != nullptr);
}

TEST_CASE("forcing a path this CPU cannot run throws") {
  for (CpuPath p : {CpuPath::scalar, CpuPath::avx2, CpuPath::avx512}) {
    if (cpu_path_supported(p))
      CHECK_NOTHROW(require_cpu_path(p));
    else
      CHECK_THROWS_AS(require_cpu_path(p), std::invalid_argument);
  }
}
