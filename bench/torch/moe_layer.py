#!/usr/bin/env python3
"""A Maverick-width MoE FFN, decode and prefill, on the CPU or one GPU: PyTorch vs moeplan's kernels, same run.

decode   the computation of BM_moe_layer_decode in bench/bench_cpu_kernels.cpp: one token, router (128 x 5120),
         top-1 routed expert with the sigmoid weight scaling its input (Llama 4), gate_up [16384, 5120] -> SwiGLU ->
         down [5120, 8192], plus the shared expert, BF16 weights, the routed expert cycling over 8 distinct experts
         so its weights come from DRAM. PyTorch computes only the selected expert too.
prefill  the computation of BM_moe_layer_prefill: 512 tokens through a 16-expert slice (router 16 x 5120, top-1,
         token t to expert t % 16 so both sides do the same work), the routed rows of each expert gathered, scaled,
         run through its FFN and added back with index_add_ (the loop of transformers' MoE blocks), plus the
         shared expert over all 512 rows.
PyTorch runs each with BF16 weights and BF16 activations (oneDNN uses AMX tiles where the CPU has them), and prefill
also with the weights upcast to fp32 (MKL's fp32 GEMM can beat a BF16 path on CPUs without native BF16
instructions); the ratio is taken against PyTorch's faster variant. moeplan's prefill runs with fp32 activations and
with --bf16-activations (x rounded to BF16 on AMX tiles, PyTorch's precision; the same as fp32 without AMX).
Prints the times and the ratios.

With --device cuda the same two layers run in PyTorch on the GPU (BF16, weights and activations on the device,
timed with torch.cuda.synchronize around the loop) against BM_moe_layer_decode / BM_moe_layer_prefill of
moeplan_bench_cuda_kernels (cuBLASLt for the decode GEMMs; the grouped GEMM with SwiGLU fused for prefill).

Run (needs torch; tools/setup_venv.sh makes tools/.venv):
    tools/.venv/bin/python bench/torch/moe_layer.py [--bench build/bench/moeplan_bench_cpu_kernels] [--only decode]
    python3 bench/torch/moe_layer.py --device cuda --bench build-gpu/bench/moeplan_bench_cuda_kernels
"""
import argparse
import json
import os
import subprocess
import time

import torch

HIDDEN, INTER = 5120, 8192
DECODE_EXPERTS, DECODE_ROUTER = 8, 128
PREFILL_EXPERTS, PREFILL_TOKENS = 16, 512


DEVICE = "cpu"  # --device


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed_ms(step, seconds: float, warmup: int) -> float:
    with torch.inference_mode():
        for i in range(warmup):
            step(i)
        sync()
        n, t0 = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - t0 < seconds:
            step(n)
            n += 1
            if DEVICE == "cuda" and n % 16 == 0:
                sync()  # keep the queue short, so the clock measures the device
        sync()
        return (time.perf_counter() - t0) / n * 1e3


def expert_weights(experts: int, dtype):
    """gate_up [2I, H] and down [H, I] for experts + 1 (the last is the shared expert), small random values."""
    g = torch.Generator(device=DEVICE).manual_seed(0)
    gate_up = [torch.randn(2 * INTER, HIDDEN, generator=g, device=DEVICE).mul_(0.01).to(dtype)
               for _ in range(experts + 1)]
    down = [torch.randn(HIDDEN, INTER, generator=g, device=DEVICE).mul_(0.01).to(dtype) for _ in range(experts + 1)]
    return gate_up, down


def ffn(z, gate_up, down):
    h = z @ gate_up.t()
    return (torch.nn.functional.silu(h[:, :INTER]) * h[:, INTER:]) @ down.t()


def torch_decode_ms(seconds: float) -> float:
    gate_up, down = expert_weights(DECODE_EXPERTS, torch.bfloat16)
    router = torch.randn(DECODE_ROUTER, HIDDEN, device=DEVICE).mul_(0.01).to(torch.bfloat16)
    x = torch.randn(1, HIDDEN, device=DEVICE).to(torch.bfloat16)

    def step(i):
        logits = x @ router.t()
        w, _ = torch.topk(logits, 1)
        e = i % DECODE_EXPERTS  # random weights: round-robin experts, as the C++ benchmark does
        return ffn(x * torch.sigmoid(w), gate_up[e], down[e]) + ffn(x, gate_up[-1], down[-1])

    return timed_ms(step, seconds, warmup=3)


def torch_prefill_ms(seconds: float, dtype) -> float:
    gate_up, down = expert_weights(PREFILL_EXPERTS, dtype)
    router = torch.randn(PREFILL_EXPERTS, HIDDEN, device=DEVICE).mul_(0.01).to(dtype)
    x = torch.randn(PREFILL_TOKENS, HIDDEN, device=DEVICE).to(dtype)
    ids = torch.arange(PREFILL_TOKENS, device=DEVICE) % PREFILL_EXPERTS  # the C++ benchmark's assignment

    def step(_):
        logits = x @ router.t()
        top, _ = torch.topk(logits, 1, dim=-1)
        weight = torch.sigmoid(top)  # [T, 1]
        out = ffn(x, gate_up[-1], down[-1])
        for e in range(PREFILL_EXPERTS):
            rows = torch.nonzero(ids == e).squeeze(1)
            out.index_add_(0, rows, ffn(x[rows] * weight[rows], gate_up[e], down[e]))
        return out

    return timed_ms(step, seconds, warmup=1)


def moeplan_ms(bench: str, name: str) -> dict:
    """Wall time per iteration of every benchmark matching name (and its arguments), keyed by label."""
    out = subprocess.run([bench, f"--benchmark_filter=^{name}(/|$)", "--benchmark_format=json"],
                         check=True, capture_output=True, text=True).stdout
    times = {}
    for b in json.loads(out)["benchmarks"]:
        scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6}[b["time_unit"]]
        times[b.get("label", b["name"])] = b["real_time"] * scale
    return times


def main():
    global DEVICE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", help="moeplan's benchmark program (default: build/bench/moeplan_bench_cpu_kernels, "
                                    "with --device cuda build-gpu/bench/moeplan_bench_cuda_kernels)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per PyTorch measurement")
    ap.add_argument("--only", choices=["decode", "prefill"])
    a = ap.parse_args()
    DEVICE = a.device
    if a.bench is None:
        a.bench = ("build-gpu/bench/moeplan_bench_cuda_kernels" if DEVICE == "cuda"
                   else "build/bench/moeplan_bench_cpu_kernels")
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    where = torch.cuda.get_device_name(0) if DEVICE == "cuda" else f"{a.threads} threads"
    print(f"torch {torch.__version__}, {where}")
    if a.only in (None, "decode"):
        ours = min(moeplan_ms(a.bench, "BM_moe_layer_decode").values())
        theirs = torch_decode_ms(a.seconds)
        print(f"decode, 1 token:     moeplan {ours:8.2f} ms; PyTorch bf16 {theirs:8.2f} ms; "
              f"moeplan is {theirs / ours:.2f}x faster")
    if a.only in (None, "prefill"):
        ours = moeplan_ms(a.bench, "BM_moe_layer_prefill")
        bf16 = torch_prefill_ms(a.seconds, torch.bfloat16)
        # On a GPU BF16 is the tensor cores' type; on a CPU an fp32 GEMM may beat a BF16 path without native BF16.
        f32 = torch_prefill_ms(a.seconds, torch.float32) if DEVICE == "cpu" else float("inf")
        best = min(bf16, f32)
        print(f"prefill, 512 tokens: PyTorch bf16 {bf16:8.2f} ms" +
              (f", fp32 weights {f32:8.2f} ms" if DEVICE == "cpu" else ""))
        for label, ms in ours.items():  # x in fp32, and x in BF16 on AMX where the CPU has it
            print(f"  moeplan ({label}): {ms:8.2f} ms; {best / ms:.2f}x faster than PyTorch's faster")


if __name__ == "__main__":
    main()
