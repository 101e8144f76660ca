#!/usr/bin/env python3
"""One decode token through a Maverick-width MoE FFN on CPU: PyTorch vs moeplan's kernels, timed in the same run.

The same computation as BM_moe_layer_decode in bench/bench_cpu_kernels.cpp: router (128 x 5120), top-1 routed expert
with the sigmoid weight scaling its input (Llama 4), gate_up [16384, 5120] -> SwiGLU -> down [5120, 8192], plus the
shared expert, BF16 weights, the routed expert cycling over 8 distinct experts so its weights come from DRAM. PyTorch
computes only the selected expert too. Prints both times and the ratio.

Run (needs torch; tools/setup_venv.sh makes tools/.venv):
    tools/.venv/bin/python bench/torch/moe_layer_decode.py [--bench build/bench/moeplan_bench_cpu_kernels]
"""
import argparse
import json
import os
import subprocess
import time

import torch

HIDDEN, INTER, EXPERTS, ROUTER = 5120, 8192, 8, 128


def torch_ms(threads: int, seconds: float) -> float:
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    gate_up = [torch.randn(2 * INTER, HIDDEN).mul_(0.01).to(torch.bfloat16) for _ in range(EXPERTS + 1)]
    down = [torch.randn(HIDDEN, INTER).mul_(0.01).to(torch.bfloat16) for _ in range(EXPERTS + 1)]
    router = torch.randn(ROUTER, HIDDEN).mul_(0.01).to(torch.bfloat16)
    x = torch.randn(1, HIDDEN).to(torch.bfloat16)

    def ffn(z, e):
        h = z @ gate_up[e].t()
        return (torch.nn.functional.silu(h[:, :INTER]) * h[:, INTER:]) @ down[e].t()

    def step(i):
        logits = x @ router.t()
        w, _ = torch.topk(logits, 1)
        e = i % EXPERTS  # random weights: round-robin experts, as the C++ benchmark does
        return ffn(x * torch.sigmoid(w), e) + ffn(x, EXPERTS)

    with torch.inference_mode():
        for i in range(3):
            step(i)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step(n)
            n += 1
        return (time.perf_counter() - t0) / n * 1e3


def moeplan_ms(bench: str) -> float:
    out = subprocess.run([bench, "--benchmark_filter=BM_moe_layer_decode", "--benchmark_format=json"],
                         check=True, capture_output=True, text=True).stdout
    b = json.loads(out)["benchmarks"][0]
    scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6}[b["time_unit"]]
    return b["real_time"] * scale


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default="build/bench/moeplan_bench_cpu_kernels")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    ours = moeplan_ms(a.bench)
    theirs = torch_ms(a.threads, a.seconds)
    print(f"torch {torch.__version__}, {a.threads} threads")
    print(f"moeplan kernels: {ours:.2f} ms per token; PyTorch: {theirs:.2f} ms per token; "
          f"moeplan is {theirs / ours:.2f}x faster")


if __name__ == "__main__":
    main()
