#!/usr/bin/env bash
# scripts/gpu_check.sh: the checks that need a GPU, prepared for a machine lent with one (an H100 or H200; about 10
# minutes): build with CUDA for the device's architecture, run the GPU tests (CUDA kernels against their references,
# the CUDA backend against the CPU backend on the oracle fixtures, NCCL when there are two GPUs), `validate --device
# cuda --quick`, `calibrate --device cuda --quick` on a Maverick-width slice (hidden 5120, expert intermediate 8192,
# as many experts as fit in half the free memory), and bench_cuda_kernels (decode bandwidth against a measured
# device-to-device copy, grouped-GEMM TFLOP/s against cuBLASLt's dense GEMM of the same shape). Every log and result
# goes under $OUT (default ./gpu-check-out); summary.txt lists each step and its exit status. A failed step does not
# stop the later ones; the script exits 1 when any failed.
# Usage: OUT=/some/dir bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
BUILD=${BUILD:-build-gpu}
JOBS=$(nproc)
failed=0

# step NAME SECONDS COMMAND...: runs COMMAND under a time limit, its output in $OUT/NAME.log, its status in summary.txt.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc ($((SECONDS - t0)) s): $*" | tee -a "$OUT/summary.txt"
  [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || failed=1
  return "$rc"
}

: > "$OUT/summary.txt"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
step configure 120 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEPLAN_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${ARCH:-90}" || { echo "configure failed: see $OUT/configure.log"; exit 1; }
step build 600 ninja -C "$BUILD" -j"$JOBS" moeplan moeplan_gpu_tests moeplan_gpu_backend_tests \
  moeplan_bench_cuda_kernels || { echo "build failed: see $OUT/build.log"; exit 1; }
[ -x "$BUILD/tests/executor/moeplan_nccl_gpu_tests" ] || ninja -C "$BUILD" -j"$JOBS" moeplan_nccl_gpu_tests >> "$OUT/build.log" 2>&1

MOEPLAN=$BUILD/app/moeplan
# Profiles go to a data directory under $OUT, never into data/.
export XDG_DATA_HOME=$OUT/xdg
mkdir -p "$XDG_DATA_HOME"

step gpu_kernels 300 "$BUILD/tests/moeplan_gpu_tests"
step gpu_backend 300 "$BUILD/tests/moeplan_gpu_backend_tests"
if [ -x "$BUILD/tests/executor/moeplan_nccl_gpu_tests" ]; then step gpu_nccl 300 "$BUILD/tests/executor/moeplan_nccl_gpu_tests"; fi
step validate_cuda 300 "$MOEPLAN" validate --device cuda --quick --fixtures tests/fixtures/oracle --format json -o "$OUT/validate_cuda.json"
step calibrate_cuda 600 "$MOEPLAN" calibrate --device cuda --quick --model llama4-maverick --format json \
  -o "$OUT/calibrate_cuda.json" --profile "$OUT/moeplan.prof"
# The whole session on the GPU: a Maverick-width slice (4 layers: two dense, two MoE with 4 experts; 4.1 GB of BF16)
# written as a seeded random checkpoint, prefill and decode.
step run_cuda 420 "$MOEPLAN" run --device cuda --random-weights 1 --weights-out "$OUT/slice-weights" --layers 4 --experts 4 \
  --vocab 8192 --prompt-tokens 256 --gen-tokens 16 --batch 4 --format json -o "$OUT/run_cuda.json"
rm -rf "$OUT/slice-weights"
step bench_cuda_kernels 600 "$BUILD/bench/moeplan_bench_cuda_kernels" --benchmark_out="$OUT/bench_cuda_kernels.json" \
  --benchmark_out_format=json

echo "results in $OUT (summary.txt)"
exit "$failed"
