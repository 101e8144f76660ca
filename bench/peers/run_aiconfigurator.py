#!/usr/bin/env python3
"""Side-by-side of NVIDIA AIConfigurator and moeplan, measured in one run (see README.md beside this file).

Part A - AIConfigurator's default sweep (`aiconfigurator cli default`, agg vs disagg over every parallel layout and
batch it enumerates, TTFT <= 2000 ms and TPOT <= 30 ms: its own defaults) for a model on 8 x H200 at ISL/OSL
1000/1000. We time it, take its best configuration, and run `moeplan simulate` on that same configuration (layout,
concurrency, max batch and max tokens per step of the engine config AIConfigurator generated), timed too.

Part B - the published measurements of data/validation/public_points.yaml that both tools can express. moeplan runs
them exactly as `moeplan validate --published` does (max load: 3000 requests queued, max batch 2048 per attention
group, 8192 tokens per step). AIConfigurator's single-configuration mode (`cli estimate`) needs a batch size per
attention-DP rank, so it gets the largest batch (<= 2048, the same cap) that its own memory model accepts without
an OOM or KV-cache-capacity warning: "max load" as trtllm-bench sizes it, from free KV memory. moeplan is also run
closed-loop at AIConfigurator's concurrency (that batch x dp, max batch = that batch); where moeplan's own KV
capacity is smaller, it holds fewer (the table prints the mean batch moeplan reached).

Throughput is output tokens/s per GPU for both tools (AIConfigurator: tokens/s = seq/s x OSL; moeplan:
output_tokens_per_s_per_gpu). Times are wall seconds of each CLI process (time.perf_counter around subprocess.run).

Usage: bash bench/peers/setup_aiconfigurator.sh && bench/peers/.venv/bin/python bench/peers/run_aiconfigurator.py
Writes bench/peers/out/results.json and bench/peers/out/results.md; prints the table.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV_AIC = HERE / ".venv" / "bin" / "aiconfigurator"
OUT = HERE / "out"

ISL = 1000
OSL = 1000
SYSTEM = "h200_sxm"          # AIConfigurator system name
GPU = "h200-sxm"             # moeplan GPU name
TOTAL_GPUS = 8
TTFT_MS = 2000.0             # AIConfigurator's defaults, passed explicitly so the run does not depend on them
TPOT_MS = 30.0
MAX_BATCH_CAP = 2048         # public_points.yaml defaults.max_batch (trtllm-bench's largest batch)

# model on each side: AIConfigurator HF id (its bundled config.json) -> moeplan model and precision
MODELS = {
    "qwen3": {"aic": "Qwen/Qwen3-235B-A22B-FP8", "moeplan": "qwen3-235b-a22b", "precision": "fp8:all-linear"},
    "deepseek": {"aic": "deepseek-ai/DeepSeek-V3", "moeplan": "deepseek-v3", "precision": "fp8-block"},
}

# Published rows (data/validation/public_points.yaml), with the AIConfigurator layout that expresses them.
# metric_per_gpu: the published value in output tok/s/GPU (Q3-06 is published as total tok/s: 23,789 / 8).
PUBLISHED = [
    {"id": "Q3-02", "model": "qwen3", "count": 4, "tp": 1, "dp": 4, "ep": 4, "published_per_gpu": 3288.0,
     "source": "TensorRT-LLM perf overview ~1.2 (S2), DEP4"},
    {"id": "Q3-06", "model": "qwen3", "count": 8, "tp": 8, "dp": 1, "ep": 1, "published_per_gpu": 23789.0 / 8.0,
     "source": "TensorRT-LLM perf overview v1.0 (S1), TP8 (MoE TP8)"},
    {"id": "DS-04", "model": "deepseek", "count": 8, "tp": 1, "dp": 8, "ep": 8, "published_per_gpu": 1627.0,
     "source": "TensorRT-LLM perf overview ~1.2 (S2), DEP8 (DeepSeek-R1)"},
]


def run_timed(cmd: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Runs cmd, returns (completed process, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return proc, time.perf_counter() - t0


def aic_env() -> dict:
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "ignore"   # the 0.12 wheel warns that `aiconfigurator cli` moves to `aisimulate`
    return env


def moeplan_bin() -> Path:
    path = REPO / "build" / "app" / "moeplan"
    if not path.exists():
        sys.exit(f"error: {path} is missing; build it with: cmake --build {REPO / 'build'} -j1 --target moeplan")
    return path


def run_moeplan(model: str, count: int, tp: int, dp: int, ep: int, kv_dtype: str, extra: list[str]) -> dict:
    m = MODELS[model]
    cmd = [str(moeplan_bin()), "simulate", "--model", m["moeplan"], "--gpu", GPU, "--count", str(count),
           "--tp", str(tp), "--dp", str(dp), "--ep", str(ep), "--precision", m["precision"],
           "--kv-dtype", kv_dtype, "--input", str(ISL), "--output", str(OSL), "--format", "json"] + extra
    proc, secs = run_timed(cmd)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip() or f"exit {proc.returncode}", "seconds": secs, "cmd": " ".join(cmd)}
    d = json.loads(proc.stdout)
    return {"tok_s_gpu": d["output_tokens_per_s_per_gpu"], "ttft_ms": d["ttft_ms"]["mean"],
            "tpot_ms": d["tpot_ms"]["mean"], "mean_batch": d["mean_batch"], "seconds": secs,
            "cmd": " ".join(cmd[1:])}


# ---------------------------------------------------------------- Part A: the default sweep
def read_csv_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def parse_parallel(s: str) -> dict:
    """'tp1pp1dp8etp1ep8' -> {'tp': 1, 'pp': 1, 'dp': 8, 'etp': 1, 'ep': 8}."""
    return {k: int(v) for k, v in re.findall(r"(etp|tp|pp|dp|ep)(\d+)", s)}


def run_default_sweep(model: str) -> dict:
    m = MODELS[model]
    save = OUT / f"aic_default_{model}"
    cmd = [str(VENV_AIC), "cli", "default", "--model-path", m["aic"], "--total-gpus", str(TOTAL_GPUS),
           "--system", SYSTEM, "--isl", str(ISL), "--osl", str(OSL), "--ttft", str(TTFT_MS), "--tpot", str(TPOT_MS),
           "--no-color", "--save-dir", str(save)]
    print(f"[A] {model}: aiconfigurator cli default ...", flush=True)
    proc, secs = run_timed(cmd, env=aic_env())
    (OUT / f"aic_default_{model}.log").write_text(proc.stdout + proc.stderr)
    res: dict = {"model": model, "aic_cmd": " ".join(cmd[1:]), "aic_seconds": secs}
    if proc.returncode != 0:
        res["error"] = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return res
    chosen = re.search(r"Best Experiment Chosen: (\w+) at ([\d.,]+) tokens/s/gpu", proc.stdout + proc.stderr)
    res["aic_best_mode"] = chosen.group(1) if chosen else "?"
    res["aic_best_tok_s_gpu"] = float(chosen.group(2).replace(",", "")) if chosen else None
    run_dirs = sorted(save.rglob("agg/best_config_topn.csv"))
    if not run_dirs:
        res["error"] = "no agg/best_config_topn.csv written"
        return res
    run_dir = run_dirs[-1].parent.parent
    agg = read_csv_rows(run_dir / "agg" / "best_config_topn.csv")
    disagg = read_csv_rows(run_dir / "disagg" / "best_config_topn.csv")
    res["aic_best_disagg_tok_s_gpu"] = float(disagg[0]["tokens/s/gpu"]) if disagg else None
    if disagg:
        d = disagg[0]
        res["aic_best_disagg_config"] = (f"{d['(p)workers']}x prefill {d['(p)parallel']} bs{d['(p)bs']} + "
                                         f"{d['(d)workers']}x decode {d['(d)parallel']} bs{d['(d)bs']}")
    if not agg:
        res["error"] = "AIConfigurator found no agg configuration meeting its SLO"
        return res
    # moeplan simulates aggregated (in-flight batching) serving: compare on AIConfigurator's best agg row
    top = agg[0]
    par = parse_parallel(top["parallel"])
    gpus_per_worker = par["tp"] * par["pp"] * par["dp"]
    replicas = int(top["num_total_gpus"]) // gpus_per_worker
    concurrency_per_replica = int(top["concurrency"]) // max(replicas, 1)
    engine = (run_dir / "agg" / "top1" / "agg_config.yaml").read_text()
    max_batch = int(re.search(r"^max_batch_size:\s*(\d+)", engine, re.M).group(1))
    max_tokens = int(re.search(r"^max_num_tokens:\s*(\d+)", engine, re.M).group(1))
    kv = {"fp8": "fp8", "float16": "fp16"}.get(top["kvcache"], "bf16")   # AIConfigurator name -> moeplan --kv-dtype
    res.update({
        "aic_agg_parallel": top["parallel"], "aic_agg_bs": int(top["bs"]), "aic_agg_concurrency": int(top["concurrency"]),
        "aic_agg_replicas": replicas, "aic_agg_tok_s_gpu": float(top["tokens/s/gpu"]), "aic_agg_ttft_ms": float(top["ttft"]),
        "aic_agg_tpot_ms": float(top["tpot"]), "aic_kvcache": top["kvcache"], "aic_gemm": top["gemm"],
        "aic_version_db": top["version"], "engine_max_batch": max_batch, "engine_max_num_tokens": max_tokens,
    })
    if par["pp"] != 1 or par["etp"] * par["ep"] != par["tp"] * par["dp"]:
        res["error"] = f"layout {top['parallel']} has no moeplan equivalent"
        return res
    # moeplan --ep is the expert-parallel size over tp x dp; the rest of the group is MoE tensor parallel (etp)
    res["moeplan"] = run_moeplan(model, gpus_per_worker, par["tp"], par["dp"], par["ep"], kv,
                                 ["--concurrency", str(concurrency_per_replica), "--max-batch", str(max_batch),
                                  "--max-num-batched-tokens", str(max_tokens)])
    return res


# ---------------------------------------------------------------- Part B: published points
def aic_capacity_batch(model_path: str, kw: dict) -> tuple[int | None, str]:
    """Largest per-rank batch <= MAX_BATCH_CAP that AIConfigurator's memory model accepts (bisection, in-process)."""
    import logging
    import warnings
    warnings.filterwarnings("ignore")
    logging.getLogger("aiconfigurator").setLevel(logging.ERROR)
    from aiconfigurator.cli.api import cli_estimate

    def fits(bs: int) -> tuple[bool, str]:
        try:
            r = cli_estimate(model_path, SYSTEM, mode="agg", isl=ISL, osl=OSL, batch_size=bs, **kw)
        except Exception as e:  # OOM (RuntimeError) or an inexpressible layout (ValueError)
            return False, f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
        return (r.kv_cache_warning is None), (r.kv_cache_warning or "")

    ok, why = fits(1)
    if not ok:
        return None, why
    lo, hi = 1, MAX_BATCH_CAP
    if fits(hi)[0]:
        return hi, ""
    while hi - lo > 1:   # invariant: fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        if fits(mid)[0]:
            lo = mid
        else:
            hi = mid
    return lo, ""


def run_aic_estimate(model_path: str, p: dict, bs: int, quant: list[str]) -> dict:
    cmd = [str(VENV_AIC), "cli", "estimate", "--model-path", model_path, "--system", SYSTEM, "--estimate-mode", "agg",
           "--isl", str(ISL), "--osl", str(OSL), "--tp-size", str(p["tp"]), "--attention-dp-size", str(p["dp"]),
           "--moe-ep-size", str(p["ep"]), "--moe-tp-size", str(p["tp"] * p["dp"] // p["ep"]),
           "--batch-size", str(bs), "--no-color"] + quant
    proc, secs = run_timed(cmd, env=aic_env())
    text = proc.stdout + proc.stderr
    hit = re.search(r"tokens/s/gpu:\s*([\d.,]+)", text)
    res = {"cmd": " ".join(cmd[1:]), "seconds": secs}
    if proc.returncode != 0 or not hit:
        res["error"] = (text.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return res
    res["tok_s_gpu"] = float(hit.group(1).replace(",", ""))
    for key, pat in (("ttft_ms", r"TTFT:\s*([\d.]+) ms"), ("tpot_ms", r"TPOT:\s*([\d.]+) ms")):
        mm = re.search(pat, text)
        res[key] = float(mm.group(1)) if mm else None
    return res


def run_published(p: dict) -> dict:
    m = MODELS[p["model"]]
    print(f"[B] {p['id']}: AIConfigurator capacity batch + estimate, moeplan max load ...", flush=True)
    res: dict = {"id": p["id"], "model": p["model"], "layout": f"{p['count']}x tp{p['tp']} dp{p['dp']} ep{p['ep']}",
                 "published_per_gpu": p["published_per_gpu"], "source": p["source"]}
    moe_tp = p["tp"] * p["dp"] // p["ep"]
    attempts = [("checkpoint quantization", {}, ["--kvcache-quant-mode", "fp8"])]
    # substitute only when the checkpoint's own block-FP8 cannot be expressed (reported as such)
    attempts.append(("SUBSTITUTE per-tensor fp8 (gemm+moe)",
                     {"gemm_quant_mode": "fp8", "moe_quant_mode": "fp8"},
                     ["--kvcache-quant-mode", "fp8", "--gemm-quant-mode", "fp8", "--moe-quant-mode", "fp8"]))
    for label, extra_kw, extra_cli in attempts:
        kw = {"tp_size": p["tp"], "attention_dp_size": p["dp"], "moe_ep_size": p["ep"], "moe_tp_size": moe_tp,
              "kvcache_quant_mode": "fp8", **extra_kw}
        t0 = time.perf_counter()
        bs, why = aic_capacity_batch(m["aic"], kw)
        search_s = time.perf_counter() - t0
        if bs is None:
            res.setdefault("aic_not_expressible", []).append(f"{label}: {why}")
            continue
        res["aic_quant"] = label
        res["aic_batch_per_rank"] = bs
        res["aic_capacity_search_seconds"] = search_s
        res["aic"] = run_aic_estimate(m["aic"], p, bs, extra_cli)
        break
    common = ["--max-num-batched-tokens", "8192"]
    res["moeplan_max"] = run_moeplan(p["model"], p["count"], p["tp"], p["dp"], p["ep"], "fp8",
                                     ["--concurrency", "max", "--max-batch", str(MAX_BATCH_CAP),
                                      "--num-requests", "3000"] + common)
    if "aic_batch_per_rank" in res:
        bs = res["aic_batch_per_rank"]
        res["moeplan_same_batch"] = run_moeplan(p["model"], p["count"], p["tp"], p["dp"], p["ep"], "fp8",
                                                ["--concurrency", str(bs * p["dp"]), "--max-batch", str(bs)] + common)
    return res


# ---------------------------------------------------------------- report
def fmt(x, digits=0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def ratio(a, b) -> str:
    return f"{a / b:,.0f}x" if a and b else "-"


def render(meta: dict, sweeps: list[dict], pubs: list[dict]) -> str:
    lines = [f"Measured {meta['date']} on {meta['machine']}; aiconfigurator {meta['aiconfigurator']} "
             f"(perf DB {meta.get('aic_db', '?')}, backend trtllm), moeplan {meta['moeplan_commit']}.", ""]
    lines += ["A. AIConfigurator default sweep (8 x H200, ISL/OSL 1000/1000, TTFT <= 2000 ms, TPOT <= 30 ms) and moeplan "
              "on the configuration it chose (output tok/s/GPU)", "",
              "| model | AIC best (mode) | AIC chosen agg config | AIC tok/s/GPU | moeplan tok/s/GPU | moeplan/AIC | "
              "AIC TPOT ms | moeplan TPOT ms | AIC s | moeplan s | time ratio |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in sweeps:
        if "aic_agg_parallel" not in s:
            lines.append(f"| {s['model']} | error: {s.get('error')} | | | | | | | {fmt(s['aic_seconds'], 1)} | | |")
            continue
        mp = s.get("moeplan", {})
        cfg = (f"{s['aic_agg_parallel']}, bs {s['aic_agg_bs']}/rank, concurrency {s['aic_agg_concurrency']}"
               + (f" ({s['aic_agg_replicas']} replicas)" if s["aic_agg_replicas"] > 1 else "")
               + f", max_num_tokens {s['engine_max_num_tokens']}, kv {s['aic_kvcache']}")
        rel = f"{mp['tok_s_gpu'] / s['aic_agg_tok_s_gpu']:.2f}" if mp.get("tok_s_gpu") else "-"
        lines.append(f"| {MODELS[s['model']]['aic']} | {fmt(s['aic_best_tok_s_gpu'], 1)} ({s['aic_best_mode']}) | {cfg} | "
                     f"{fmt(s['aic_agg_tok_s_gpu'], 1)} | {fmt(mp.get('tok_s_gpu'), 1)} | {rel} | "
                     f"{fmt(s['aic_agg_tpot_ms'], 1)} | {fmt(mp.get('tpot_ms'), 1)} | {fmt(s['aic_seconds'], 1)} | "
                     f"{fmt(mp.get('seconds'), 2)} | {ratio(s['aic_seconds'], mp.get('seconds'))} |")
    lines += ["", "B. Published configurations (max load; output tok/s/GPU)", "",
              "| id | model | layout | published | AIC estimate (bs/rank) | moeplan max load (mean bs) | "
              "moeplan at AIC's concurrency (mean bs) | "
              "AIC err | moeplan err | AIC estimate s | moeplan s | time ratio |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in pubs:
        a = r.get("aic", {})
        mx = r.get("moeplan_max", {})
        sb = r.get("moeplan_same_batch", {})
        pub = r["published_per_gpu"]
        aic_cell = (f"{fmt(a.get('tok_s_gpu'))} ({r.get('aic_batch_per_rank')})" if a.get("tok_s_gpu")
                    else "not expressible")
        if r.get("aic_quant", "").startswith("SUBSTITUTE"):
            aic_cell += " [per-tensor fp8 substitute]"
        err = lambda v: f"{(v - pub) / pub * 100:+.0f} %" if v else "-"
        lines.append(f"| {r['id']} | {MODELS[r['model']]['moeplan']} | {r['layout']} | {fmt(pub)} | {aic_cell} | "
                     f"{fmt(mx.get('tok_s_gpu'))} ({fmt(mx.get('mean_batch'))}) | "
                     f"{fmt(sb.get('tok_s_gpu'))} ({fmt(sb.get('mean_batch'))}) | {err(a.get('tok_s_gpu'))} | "
                     f"{err(mx.get('tok_s_gpu'))} | {fmt(a.get('seconds'), 1)} | {fmt(mx.get('seconds'), 2)} | "
                     f"{ratio(a.get('seconds'), mx.get('seconds'))} |")
    notes = [f"- {r['id']}: AIConfigurator could not express it with {x}" for r in pubs
             for x in r.get("aic_not_expressible", [])]
    if notes:
        lines += [""] + notes
    return "\n".join(lines) + "\n"


def machine_info() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    load = os.getloadavg()[0]
    return (f"{platform.system()} VM, {cpu}, {os.cpu_count()} vCPUs, {mem_gb:.0f} GB RAM, no GPU, "
            f"load average {load:.1f} at start, Python {platform.python_version()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="qwen3,deepseek", help="default sweeps to run (qwen3,deepseek)")
    ap.add_argument("--skip-published", action="store_true")
    ap.add_argument("--render-only", action="store_true", help="rebuild out/results.md from out/results.json")
    args = ap.parse_args()
    if args.render_only:
        saved = json.loads((OUT / "results.json").read_text())
        table = render(saved["meta"], saved["sweeps"], saved["published"])
        (OUT / "results.md").write_text(table)
        print(table)
        return
    if not VENV_AIC.exists():
        sys.exit(f"error: {VENV_AIC} is missing; run: bash {HERE / 'setup_aiconfigurator.sh'}")
    OUT.mkdir(exist_ok=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    meta = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(),
            "aiconfigurator": importlib.metadata.version("aiconfigurator"),
            "moeplan_commit": f"git {commit} (working tree)"}
    sweeps = [run_default_sweep(m) for m in args.models.split(",") if m]
    meta["aic_db"] = next((s["aic_version_db"] for s in sweeps if "aic_version_db" in s), "?")
    pubs = [] if args.skip_published else [run_published(p) for p in PUBLISHED]
    (OUT / "results.json").write_text(json.dumps({"meta": meta, "sweeps": sweeps, "published": pubs}, indent=2))
    table = render(meta, sweeps, pubs)
    (OUT / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
