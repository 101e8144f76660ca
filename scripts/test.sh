#!/usr/bin/env bash
# Build moeplan twice and run every test: g++ with CUDA kernels when nvcc is found (compile-only without a GPU;
# GPU tests report skipped), then clang with -DMOEPLAN_CUDA=OFF as the sanitizer build: AddressSanitizer and UBSan
# (-fno-sanitize-recover: undefined behaviour fails the test) on every library and test, and the libFuzzer harnesses
# built from the same objects, each run for a bounded time from its seeds in fuzz/corpus/ (README.md "Fuzzing").
# Warnings are errors. MOEPLAN_SANITIZE=0 makes the clang build a plain one (no sanitizers, no fuzzing).
#   bash scripts/test.sh                                        (what .ci/run calls)
#   FUZZ_SECONDS=600 bash scripts/test.sh                       (longer fuzzing)
#   CUDA_ARCHS="80;90;100" bash scripts/test.sh   (CI compiles the CUDA kernels for sm_90 only; users get 80, 90, 100)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-20}
cuda_archs=${CUDA_ARCHS:-90}
bash scripts/install-deps.sh
# ccache keys on paths relative to the checkout, so a fresh clone elsewhere (CI) reuses earlier builds' objects.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
# UBSan prints a stack; ASan's leak check stays on.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1

phase() { echo "=== $(date -u +%H:%M:%S) $*"; }

run_build() {  # name, compiler, cuda, extra cmake arguments...; CTEST_EXCLUDE_LABEL skips tests with that label
  local dir=build-test-$1 cxx=$2 cuda=$3
  shift 3
  phase "$dir: configure (CXX=$cxx MOEPLAN_CUDA=$cuda $*)"
  CXX=$cxx cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEPLAN_WERROR=ON -DMOEPLAN_CUDA="$cuda" "$@"
  phase "$dir: build"
  cmake --build "$dir" -j "$jobs"
  phase "$dir: test"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" ${CTEST_EXCLUDE_LABEL:+-LE "$CTEST_EXCLUDE_LABEL"}
}

# Each harness for $fuzz_seconds from its seeds in fuzz/corpus/<harness>/; new inputs go to a scratch corpus, an input
# that fails to <build dir>/fuzz-artifacts/ (an absolute path: fuzz_cli runs its commands in a directory of its own).
run_fuzzers() {  # build dir
  local scratch name artifacts=$PWD/$1/fuzz-artifacts
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' RETURN
  mkdir -p "$artifacts"
  # -rss_limit_mb: a run past 2 GB is a failure (an input that makes a parser fill memory); -timeout: one input
  # past 25 s is a hang; -max_len: inputs up to 16 KiB (the seeds are smaller); `timeout` ends a harness that
  # stops answering even libFuzzer's own clock.
  # -seed=1: the same sequence of inputs on every run, so a run that passed here passes in CI unless it gets further.
  local common=(-max_total_time="$fuzz_seconds" -seed=1 -timeout=25 -max_len=16384 -rss_limit_mb=2048
                -print_final_stats=1 -artifact_prefix="$artifacts/")
  for name in cli hf_config yaml safetensors; do
    phase "fuzz_$name: ${fuzz_seconds} s"
    mkdir -p "$scratch/$name"
    timeout $((fuzz_seconds * 3 + 120)) "$1/fuzz/fuzz_$name" "${common[@]}" "$scratch/$name" "fuzz/corpus/$name"
  done
}

run_build gcc g++ AUTO -DCMAKE_CUDA_ARCHITECTURES="$cuda_archs"
if [[ ${MOEPLAN_SANITIZE:-1} == 1 ]]; then
  # Benchmarks are built (and their code checked) in the first build; the sanitizer build leaves them out.
  CTEST_EXCLUDE_LABEL=slow_under_asan run_build clang-asan clang++ OFF -DMOEPLAN_ASAN=ON -DMOEPLAN_FUZZ=ON -DMOEPLAN_BENCH=OFF
  run_fuzzers build-test-clang-asan
else
  run_build clang clang++ OFF
fi
phase "done"
