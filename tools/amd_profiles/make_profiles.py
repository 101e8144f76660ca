#!/usr/bin/env python3
"""Write moeplan GPU op profiles for AMD Instinct GPUs from published kernel microbenchmarks.

AIConfigurator (tools/aic_export) publishes no AMD tables, so the AMD profiles are built from kernel-level
measurements that AMD engineers and users published, each named with its address below and in the file header:

- GEMM, MI300X: ROCm/aiter commit fbb52ddfad72ce1fb0c65b842cbc5edc4fbfecde (2025-09-26, pull request 1092
  "[MI300X] tune Gemm performance for llama 70b/405b"), aiter/configs/a8w8_tuned_gemm.csv, the rows with cu_num
  304: the best Composable Kernel a8w8 row-wise GEMM instance for each (M, N, K) of Llama 3.1 70B / 405B at
  TP 1/4/8 (M = 1 ... 16384), timed by aiter's tuner (csrc/ck_gemm_a8w8/gemm_a8w8_tune.py at that commit): int8
  operands drawn from [-20, 20], bf16 row/column scales and output, 101 iterations with the inputs rotated through
  enough copies to defeat the caches, mean device time from the PyTorch profiler. Units: microseconds.
- GEMM, MI355X: ROCm/aiter commit bee6843de5f15cc080dc7daaa8524f602197f2b7 (2025-08-24, pull request 838 "Add Quick
  Gemm Performance Tuning for The Popular Workloads"), the same table and tuner, the rows with cu_num 256 (gfx950:
  MI350X and MI355X both have 256 CUs; taken as MI355X, the part aiter's later gfx950 tables name), Llama 3.1
  70B / 405B and Qwen3-32B shapes, M = 1 ... 32768.
- all-reduce: rccl-tests all_reduce_perf on one node of 8 MI300X (AMD Accelerator Cloud "AAC8", Kubernetes),
  float sum, out-of-place time, 8 B ... 8 GiB, published in hisohara/ai-scripts
  training/01_rccl-smoketest/README.md (added in commit 93311c1, 2025-08-11; read at 53a72286df65).

Usage (the aiter tables are read from a checkout of that repository; nothing here downloads them):
    git -C aiter show fbb52ddfad72ce1fb0c65b842cbc5edc4fbfecde:aiter/configs/a8w8_tuned_gemm.csv > /tmp/mi300x.csv
    git -C aiter show bee6843de5f15cc080dc7daaa8524f602197f2b7:aiter/configs/a8w8_tuned_gemm.csv > /tmp/mi355x.csv
    python3 tools/amd_profiles/make_profiles.py --mi300x-csv /tmp/mi300x.csv --mi355x-csv /tmp/mi355x.csv \
        --date YYYY-MM-DD

Standard library only. Output: data/gpu_profiles/{mi300x,mi355x}/{vllm,sglang}.prof (format: docs/gpu_profiles.md).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import os
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORMAT_HEADER = "moeplan-gpu-profile 1"

RCCL_URL = ("https://github.com/hisohara/ai-scripts/blob/53a72286df6508e01619ce31094b89781b8e4257/"
            "training/01_rccl-smoketest/README.md")

# Per GPU: the aiter table (commit, pull request, date), the CU count aiter keys its tuned rows by, and the datasheet
# peaks of data/gpus.yaml for the lower-bound check (8-bit matrix rate, HBM bandwidth).
GPUS = {
    "mi300x": {"commit": "fbb52ddfad72ce1fb0c65b842cbc5edc4fbfecde", "pr": 1092, "collected": "2025-09-26",
               "cu_num": 304, "peak_8bit": 2614.9e12, "bw": 5.3e12, "dtype_peak": "2614.9 TOPS / TFLOPS", "arch": "CDNA3"},
    "mi355x": {"commit": "bee6843de5f15cc080dc7daaa8524f602197f2b7", "pr": 838, "collected": "2025-08-24",
               "cu_num": 256, "peak_8bit": 5033e12, "bw": 8.0e12, "dtype_peak": "5033 TOPS / TFLOPS", "arch": "CDNA4"},
}


def aiter_url(commit: str) -> str:
    return f"https://github.com/ROCm/aiter/blob/{commit}/aiter/configs/a8w8_tuned_gemm.csv"

# rccl-tests all_reduce_perf, 8 x MI300X, one node (AAC8), float, out-of-place time (us) by message bytes.
RCCL_AAC8_ALL_REDUCE_US = [
    (8, 19.28), (16, 16.32), (32, 17.10), (64, 18.59), (128, 23.05), (256, 23.36), (512, 23.21),
    (1024, 13.67), (2048, 13.67), (4096, 13.72), (8192, 13.76), (16384, 15.47), (32768, 13.94),
    (65536, 14.25), (131072, 14.60), (262144, 17.46), (524288, 27.30), (1048576, 28.39), (2097152, 36.68),
    (4194304, 52.96), (8388608, 84.78), (16777216, 149.9), (33554432, 246.3), (67108864, 432.5),
    (134217728, 800.3), (268435456, 1540.4), (536870912, 3027.1), (1073741824, 5990.7),
    (2147483648, 11940.0), (4294967296, 23841.0), (8589934592, 47617.0),
]

MONO_REL, MONO_ABS_US = 0.10, 5.0  # the exporter's non-monotonic flag (tools/aic_export/export.py)


def fmt_num(y: float, digits: int = 3) -> str:
    """Plain decimal with `digits` significant digits, as the AIC exporter writes times."""
    if not math.isfinite(y) or y <= 0:
        raise ValueError(f"bad value {y}")
    exp = math.floor(math.log10(abs(y)))
    decimals = max(digits - 1 - exp, 0)
    s = f"{round(y, decimals):.{decimals}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def monotonic_flag(points: list[tuple[int, float]]) -> str | None:
    worst = None
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        fall = y0 - y1
        if fall > MONO_ABS_US and fall > MONO_REL * y0 and (worst is None or fall / y0 > worst[0]):
            worst = (fall / y0, x0, x1)
    return None if worst is None else f"nonmonotonic x={worst[1]}->{worst[2]} -{worst[0] * 100:.0f}%"


def gemm_roofline_us(gpu: dict, m: int, n: int, k: int) -> float:
    """Lower bound: 2mnk at the 8-bit peak, or the 8-bit weights and bf16 output at the HBM peak (inputs rotate,
    so nothing is served from cache)."""
    return max(2.0 * m * n * k / gpu["peak_8bit"], (n * k + 2.0 * m * n) / gpu["bw"]) * 1e6


def read_aiter(path: Path, gpu: dict):
    """The int8 rows of one GPU (tables before aiter's fp8 tuner have no dtype column: all int8)."""
    rows_in = 0
    by_shape: dict[tuple[int, int], dict[int, float]] = defaultdict(dict)
    merged = dropped = 0
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows_in += 1
            if int(row["cu_num"]) != gpu["cu_num"] or row.get("q_dtype_w", "torch.int8") != "torch.int8":
                continue
            m, n, k, us = int(row["M"]), int(row["N"]), int(row["K"]), float(row["us"])
            if us < gemm_roofline_us(gpu, m, n, k):
                dropped += 1
                continue
            if m in by_shape[(n, k)]:
                merged += 1
                us = min(us, by_shape[(n, k)][m])
            by_shape[(n, k)][m] = us
    return rows_in, by_shape, merged, dropped


def write(path: Path, name: str, engine: str, date: str, aiter_rows_in: int, shapes, merged: int, dropped: int) -> None:
    gpu = GPUS[name]
    commit = gpu["commit"]
    kept = sum(len(v) for v in shapes.values())
    rccl = name == "mi300x"
    lines = [
        FORMAT_HEADER,
        f"gpu {name}",
        f"engine {engine}",
        # The curves are kernel-library timings, not tables of the engine: the release line is the one whose ROCm
        # builds shipped this kernel library (aiter of September 2025, ROCm vLLM/SGLang 0.x builds): an assumption.
        f"engine_version 0.x (assumed: ROCm builds of {gpu['collected'][:7]}; kernel-library timings, not engine tables)",
        f"source published microbenchmarks: ROCm/aiter {commit[:10]} a8w8_tuned_gemm.csv (cu_num {gpu['cu_num']})"
        + ("; rccl-tests all_reduce_perf on 8x MI300X (hisohara/ai-scripts)" if rccl else ""),
        "license aiter: MIT, Copyright (c) Advanced Micro Devices, Inc.; values quoted from public repositories",
        f"exported {date}",
        f"table gemm aiter-{commit[:10]} collected={gpu['collected']} rows_in={aiter_rows_in} rows_kept={kept} "
        f"dropped={dropped}",
    ]
    if rccl:
        lines.append(f"table rccl rccl-tests-develop-a7809b3 collected=2025-08-11 rows_in={len(RCCL_AAC8_ALL_REDUCE_US)} "
                     f"rows_kept={len(RCCL_AAC8_ALL_REDUCE_US)} dropped=0")
    lines += [
        "# Generated by tools/amd_profiles/make_profiles.py; format and sources: docs/gpu_profiles.md (AMD section).",
        f"# table gemm: {aiter_url(commit)} (pull request https://github.com/ROCm/aiter/pull/{gpu['pr']}); int8 rows with "
        f"cu_num {gpu['cu_num']} kept, other GPUs filtered; merged_duplicates={merged} dropped_roofline={dropped}",
        "#   Composable Kernel a8w8 row-wise GEMM, the fastest instance per (M, N, K) found by aiter's tuner; y[m,n] =",
        "#   x[m,k] W[n,k]^T with per-row and per-column scales, bf16 output; int8 operands, inputs rotated (cold",
        "#   caches), mean of 101 runs; the activation quantisation is not included. x = m, y = microseconds.",
        f"# dtype=int8 curves are the measurement. dtype=fp8 curves repeat the same numbers: assumption, {gpu['arch']} runs",
        f"#   int8 and fp8 matrix instructions at the same rate ({gpu['dtype_peak']} dense) on the same byte width, and",
        "#   the kernel family has both variants (on gfx950, aiter's fp8 tuning of 2026-01-12, commit 470f8d64c3, is",
        "#   within 15 % of these int8 times at n=7168 k=8192, m=16..256). The engines' fp8 path may use another kernel",
        "#   (vLLM: hipBLASLt through torch._scaled_mm, a skinny kernel at m <= 4); these curves stand for the GPU's",
        "#   tuned 8-bit GEMM.",
    ]
    if rccl:
        lines += [
            f"# table rccl: {RCCL_URL}, section 'RCCL Tests with MPI (AAC8 Kubernetes)': all_reduce_perf -b 8 -e 8G",
            "#   -f 2 -g 1 over 8 ranks, float sum, out-of-place time (us) by message bytes. moeplan prices the",
            "#   all-reduces of a tensor-parallel group within one node from this curve (docs/gpu_profiles.md).",
    ]
    for dtype in ("fp8", "int8"):
        for (n, k) in sorted(shapes):
            pts = sorted(shapes[(n, k)].items())
            flag = monotonic_flag(pts)
            if flag:
                lines.append(f"# flag: {flag}")
            body = " ".join(f"{m} {fmt_num(us)}" for m, us in pts)
            lines.append(f"gemm dtype={dtype} n={n} k={k} kernel=aiter_ck_a8w8_rowwise : {body}")
    if rccl:
        body = " ".join(f"{b} {fmt_num(us)}" for b, us in RCCL_AAC8_ALL_REDUCE_US)
        lines.append(f"all_reduce dtype=fp32 ranks=8 impl=rccl : {body}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, gpu in GPUS.items():
        ap.add_argument(f"--{name}-csv", type=Path, required=True,
                        help=f"aiter/configs/a8w8_tuned_gemm.csv at commit {gpu['commit']}")
    ap.add_argument("--date", default=os.environ.get("MOEPLAN_EXPORT_DATE") or dt.date.today().isoformat())
    ap.add_argument("--out", type=Path, default=REPO / "data" / "gpu_profiles")
    a = ap.parse_args()
    for name, gpu in GPUS.items():
        path = getattr(a, f"{name}_csv")
        rows_in, shapes, merged, dropped = read_aiter(path, gpu)
        if not shapes:
            raise SystemExit(f"{path}: no int8 rows with cu_num {gpu['cu_num']} (is it the table at {gpu['commit']}?)")
        for engine in ("vllm", "sglang"):
            out = a.out / name / f"{engine}.prof"
            write(out, name, engine, a.date, rows_in, shapes, merged, dropped)
            print(f"wrote {out}: {len(shapes)} GEMM shapes x 2 dtypes, {sum(len(v) for v in shapes.values())} points "
                  f"each; dropped {dropped}, merged {merged}")


if __name__ == "__main__":
    main()
