#!/usr/bin/env bash
# Build moeplan twice and run every test: g++ with CUDA kernels when nvcc is found (compile-only without a GPU;
# GPU tests report skipped), then clang with -DMOEPLAN_CUDA=OFF as the sanitizer build: AddressSanitizer and UBSan
# on every library and test, and the libFuzzer harnesses built from the same objects, each run for a bounded time.
# Warnings are errors.
#   bash scripts/test.sh             (what .ci/run calls)
#   FUZZ_SECONDS=600 bash scripts/test.sh    (longer fuzzing; README.md "Fuzzing")
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-20}
bash scripts/install-deps.sh
# ccache keys on paths relative to the checkout, so a fresh clone elsewhere (CI) reuses earlier builds' objects.
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=1
# UBSan reports fail the run (by default it prints and goes on); ASan's leak check stays on.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1

run_build() {  # name, compiler, cuda, extra cmake arguments...; CTEST_EXCLUDE_LABEL skips tests with that label
  local dir=build-test-$1 cxx=$2 cuda=$3
  shift 3
  echo "=== $dir: CXX=$cxx MOEPLAN_CUDA=$cuda $*"
  CXX=$cxx cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEPLAN_WERROR=ON -DMOEPLAN_CUDA="$cuda" "$@"
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" ${CTEST_EXCLUDE_LABEL:+-LE "$CTEST_EXCLUDE_LABEL"}
}

# Each harness for $fuzz_seconds from its seeds; new inputs go to a scratch corpus, never into the seed folders.
run_fuzzers() {  # build dir
  local scratch
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' RETURN
  mkdir -p "$scratch"/{cli,hf_config,yaml,safetensors,artifacts}
  # -max_len: seeds are cut to 16 KiB (data/ holds YAML files of 200 KB, which parse slowly under ASan and keep
  # libFuzzer in its first pass over the seeds past -max_total_time); `timeout` turns a hang into a failure.
  local common=(-max_total_time="$fuzz_seconds" -timeout=60 -max_len=16384 -rss_limit_mb=4096
                -artifact_prefix="$scratch/artifacts/")
  local limit=$((fuzz_seconds * 3 + 120))
  echo "=== fuzzing, ${fuzz_seconds} s per harness"
  timeout "$limit" "$1/fuzz/fuzz_cli" "${common[@]}" "$scratch/cli" fuzz/corpus/cli
  timeout "$limit" "$1/fuzz/fuzz_hf_config" "${common[@]}" "$scratch/hf_config" data/models/*/
  timeout "$limit" "$1/fuzz/fuzz_yaml" "${common[@]}" "$scratch/yaml" data/
  timeout "$limit" "$1/fuzz/fuzz_safetensors" "${common[@]}" "$scratch/safetensors"
}

run_build gcc g++ AUTO
# Benchmarks are built (and their code checked) in the first build; the sanitizer build leaves them out.
CTEST_EXCLUDE_LABEL=slow_under_asan run_build clang clang++ OFF -DMOEPLAN_ASAN=ON -DMOEPLAN_FUZZ=ON -DMOEPLAN_BENCH=OFF
run_fuzzers build-test-clang
