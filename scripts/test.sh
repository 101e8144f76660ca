#!/usr/bin/env bash
# Build moeplan twice and run every test: g++ with CUDA kernels when nvcc is found (compile-only without a GPU;
# GPU tests report skipped), and clang with -DMOEPLAN_CUDA=OFF. Warnings are errors.
#   bash scripts/test.sh             (what .ci/run calls)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
bash scripts/install-deps.sh
# ccache keys on paths relative to the checkout, so a fresh clone elsewhere (CI) reuses earlier builds' objects.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1

run_build() {  # name, compiler, cuda
  local dir=build-test-$1
  echo "=== $1: CXX=$2 MOEPLAN_CUDA=$3"
  CXX=$2 cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEPLAN_WERROR=ON -DMOEPLAN_CUDA="$3"
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

run_build gcc g++ AUTO
run_build clang clang++ OFF
