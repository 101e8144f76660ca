#!/usr/bin/env bash
# scripts/gpu_check.sh: the checks that need a GPU, prepared for a machine lent with one (an H100 or H200) for a short
# time: build with CUDA for the device's architecture, run the GPU tests (CUDA kernels against their references, the
# CUDA backend against the CPU backend on the oracle fixtures, NCCL when there are two GPUs), `validate --device cuda
# --quick`, `calibrate --device cuda --quick` on a Maverick-width slice (hidden 5120, expert intermediate 8192, as
# many experts as fit in half the free memory; GEMM, paged decode-attention and MoE curves), a `run --device cuda` of
# a small Maverick-width slice (paged KV cache; again with --cuda-graphs), bench_cuda_kernels (decode bandwidth against a measured
# device-to-device copy, grouped-GEMM TFLOP/s against cuBLASLt's dense GEMM of the same shape, a Maverick MoE layer
# for decode and prefill) and, where python3 has torch with CUDA, the same MoE layers in PyTorch with the ratio
# (bench/torch/moe_layer.py --device cuda), in that order, the most valuable first.
#
# Time: every step runs under its own limit and under one deadline for the whole script (BUDGET_S, default 480 s);
# a step the deadline leaves no time for is recorded as skipped. A failed step does not stop the later ones; the
# script exits 1 when any failed or was skipped for time (exit 77, a GPU test without a device, is not a failure).
#
# Results: $OUT (default ./gpu-check-out) receives at most 8 files, no folders: summary.txt (each step, its exit
# status and seconds), moeplan.prof (the measured GPU op profile), validate_cuda.json, calibrate_cuda.json,
# run_cuda.json, bench_cuda_kernels.json, torch_moe_layer.log, and gpu-check.tar.gz with every log. Nothing is
# written into data/.
#
# Usage: OUT=/some/dir bash scripts/gpu_check.sh
#   BUILD=dir     the build directory (default build-gpu; an existing CUDA build is reused incrementally)
#   BUDGET_S=n    the deadline in seconds (default 480)
#   NO_BUILD=1    use BUILD as it is (no configure, no build)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
BUILD=${BUILD:-build-gpu}
BUDGET_S=${BUDGET_S:-480}
JOBS=$(nproc)
LOGS=$(mktemp -d)
trap 'rm -rf "$LOGS"' EXIT
mkdir -p "$OUT"
failed=0
deadline=$((SECONDS + BUDGET_S))

# step NAME SECONDS COMMAND...: runs COMMAND under min(SECONDS, time left before the deadline), its output in
# $LOGS/NAME.log, its status in summary.txt.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "$name: skipped (deadline: ${left} s left): $*" | tee -a "$LOGS/summary.txt"
    failed=1
    return 124
  fi
  [ "$limit" -le "$left" ] || limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc ($((SECONDS - t0)) s, limit $limit s): $*" | tee -a "$LOGS/summary.txt"
  [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || failed=1
  return "$rc"
}

# Copies the results into $OUT (at most 8 files) and packs the logs.
finish() {
  for f in summary.txt moeplan.prof validate_cuda.json calibrate_cuda.json run_cuda.json bench_cuda_kernels.json \
    torch_moe_layer.log; do
    [ -f "$LOGS/$f" ] && cp "$LOGS/$f" "$OUT/$f"
  done
  tar -czf "$OUT/gpu-check.tar.gz" -C "$LOGS" --exclude=xdg --exclude=slice-weights . 2>/dev/null
  echo "results in $OUT (summary.txt; every log in gpu-check.tar.gz)"
  exit "$1"
}

: > "$LOGS/summary.txt"
nvidia-smi > "$LOGS/nvidia-smi.txt" 2>&1
ARCH=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
if [ -z "${NO_BUILD:-}" ]; then
  launcher=()
  command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  step configure 120 cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOEPLAN_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES="${ARCH:-90}" "${launcher[@]}" || finish 1
  targets=(moeplan moeplan_gpu_tests moeplan_gpu_backend_tests moeplan_bench_cuda_kernels)
  ninja -C "$BUILD" -t targets all 2> /dev/null | grep -q '^moeplan_nccl_gpu_tests:' && targets+=(moeplan_nccl_gpu_tests)
  step build 300 ninja -C "$BUILD" -j"$JOBS" "${targets[@]}" || finish 1
fi

MOEPLAN=$BUILD/app/moeplan
# Profiles go to a data directory under the logs, never into data/.
export XDG_DATA_HOME=$LOGS/xdg
mkdir -p "$XDG_DATA_HOME"

step gpu_kernels 90 "$BUILD/tests/moeplan_gpu_tests"
step gpu_backend 120 "$BUILD/tests/moeplan_gpu_backend_tests"
if [ -x "$BUILD/tests/executor/moeplan_nccl_gpu_tests" ]; then step gpu_nccl 60 "$BUILD/tests/executor/moeplan_nccl_gpu_tests"; fi
step validate_cuda 90 "$MOEPLAN" validate --device cuda --quick --fixtures tests/fixtures/oracle --format json \
  -o "$LOGS/validate_cuda.json"
step calibrate_cuda 150 "$MOEPLAN" calibrate --device cuda --quick --model llama4-maverick --format json \
  -o "$LOGS/calibrate_cuda.json" --profile "$LOGS/moeplan.prof"
# The whole session on the GPU with its paged KV cache: a Maverick-width slice (2 layers: one dense, one MoE with 2
# experts; 0.9 GB of BF16) written as a seeded random checkpoint, prefill and decode.
step run_cuda 120 "$MOEPLAN" run --device cuda --random-weights 1 --weights-out "$LOGS/slice-weights" --layers 2 \
  --experts 2 --vocab 8192 --prompt-tokens 256 --gen-tokens 16 --batch 4 --format json -o "$LOGS/run_cuda.json"
# The same run with its decode steps replayed from a CUDA graph (decode tokens/s beside run_cuda's; in the logs).
step run_cuda_graphs 120 "$MOEPLAN" run --device cuda --cuda-graphs --random-weights 1 --weights-out "$LOGS/slice-weights" \
  --layers 2 --experts 2 --vocab 8192 --prompt-tokens 256 --gen-tokens 16 --batch 4 --format json \
  -o "$LOGS/run_cuda_graphs.json"
# The same slice over NCCL, tensor-parallel over two GPUs (rank r on GPU r), where the machine has two.
if [ "$(nvidia-smi --query-gpu=index --format=csv,noheader 2> /dev/null | wc -l)" -ge 2 ]; then
  step run_cuda_tp2 120 "$MOEPLAN" run --device cuda --tp 2 --random-weights 1 --weights-out "$LOGS/slice-weights" \
    --layers 2 --experts 2 --vocab 8192 --prompt-tokens 256 --gen-tokens 16 --batch 4 --format json
fi
rm -rf "$LOGS/slice-weights"
step bench_cuda_kernels 150 "$BUILD/bench/moeplan_bench_cuda_kernels" --benchmark_out="$LOGS/bench_cuda_kernels.json" \
  --benchmark_out_format=json
# The same MoE layers in PyTorch on this GPU, where the machine's python3 has torch with CUDA (nothing is installed).
if python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" > /dev/null 2>&1; then
  step torch_moe_layer 120 python3 bench/torch/moe_layer.py --device cuda --seconds 2 \
    --bench "$BUILD/bench/moeplan_bench_cuda_kernels"
else
  echo "torch_moe_layer: skipped (no python3 with torch and CUDA on this machine)" | tee -a "$LOGS/summary.txt"
fi

finish "$failed"
