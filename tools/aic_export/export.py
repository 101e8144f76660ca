#!/usr/bin/env python3
"""Export NVIDIA AIConfigurator's per-kernel measurement tables as moeplan GPU op-profile files.

Source: the PyPI package aiconfigurator-core (Apache-2.0), which ships parquet tables under
aiconfigurator_core/systems/data/<system>/<op>/<framework>/<version>/. This script turns the tables moeplan
can use (MoE, dense GEMM, context/generation attention, NCCL and custom all-reduce) into the line-oriented
text format described in docs/gpu_profiles.md, after filtering to the shapes of the models in data/models/ and
checking every row (roofline lower bound, non-monotonic curves, neighbour-GPU disagreement).

Phases (one function each): locate the package -> choose table versions -> load and normalise rows ->
filter to model shapes -> merge duplicates -> checks -> write .prof files -> kernel efficiency fits -> report.

Never needed at moeplan run time; the output is committed. Regenerate with
    bash tools/aic_export/setup_venv.sh && tools/aic_export/.venv/bin/python tools/aic_export/export.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "aiconfigurator-core"
FORMAT_HEADER = "moeplan-gpu-profile 1"
ENGINES = ("trtllm", "vllm", "sglang")
LICENSE_LINE = "Apache-2.0; SPDX-FileCopyrightText: Copyright (c) 2026 NVIDIA CORPORATION & AFFILIATES"

# AIC system folder -> moeplan gpu name (data/gpus.yaml). None: no moeplan equivalent, skipped.
SYSTEM_TO_GPU = {
    "a100_sxm": "a100-80gb-sxm",
    "a100_pcie": "a100-80gb-pcie",
    "a30": "a30",
    "b200_sxm": "b200",
    "b300_sxm": "b300",
    "gb200": "gb200",
    "gb300": "gb300",
    "h100_pcie": "h100-pcie",
    "h100_sxm": "h100-sxm",
    "h200_sxm": "h200-sxm",
    "l4": "l4",
    "l40s": "l40s",
    "rtx_pro_6000_server": "rtx-pro-6000-server",
    "b60": None,  # Intel Arc Pro B60: not in data/gpus.yaml
}

# AIC dtype name -> moeplan precision name (data/precisions.yaml); "aic:<name>" where moeplan has no equivalent.
DTYPE_MAP = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "fp8": "fp8",
    "fp8_block": "fp8-block",
    "nvfp4": "nvfp4",
    "w4a16_mxfp4": "mxfp4",
    "sq": "int8",
    "int8": "int8",
}

# Per AIC dtype: tensor-core class the math runs on, weight bits incl. scales (for the fits) and without
# scales (for the lower bound).
DTYPE_COMPUTE = {
    "bfloat16": "bf16", "float16": "bf16", "half": "bf16",
    "fp8": "fp8", "fp8_block": "fp8", "w4afp8": "fp8", "w4a8_mxfp4_mxfp8": "fp8",
    "nvfp4": "fp4", "sq": "int8", "int8": "int8",
    "int4_wo": "bf16", "int8_wo": "bf16", "w4a16_mxfp4": "bf16",
}
WEIGHT_BITS = {  # incl. scales
    "bfloat16": 16.0, "float16": 16.0, "fp8": 8.0, "fp8_block": 8.0 + 32.0 / (128 * 128),
    "nvfp4": 4.0 + 8.0 / 16, "w4a16_mxfp4": 4.0 + 8.0 / 32, "w4a8_mxfp4_mxfp8": 4.0 + 8.0 / 32,
    "int4_wo": 4.0 + 16.0 / 32, "int8_wo": 8.0 + 16.0 / 4096, "sq": 8.0 + 16.0 / 4096,
    "w4afp8": 4.0 + 16.0 / 128,
}
RAW_WEIGHT_BITS = {  # without scales: the lower bound
    "bfloat16": 16, "float16": 16, "fp8": 8, "fp8_block": 8, "nvfp4": 4, "w4a16_mxfp4": 4,
    "w4a8_mxfp4_mxfp8": 4, "int4_wo": 4, "int8_wo": 8, "sq": 8, "w4afp8": 4,
}
KV_BYTES = {"bfloat16": 2, "fp8": 1}
COMM_ELEM_BYTES = {"half": 2, "int8": 1, "bfloat16": 2}

# Parallel sizes the filter keeps (see docs/gpu_profiles.md).
TP_SIZES = (1, 2, 4, 8)
EP_SIZES = (1, 2, 4, 8, 16, 32, 64)
MAX_MOE_GPUS = 64  # tp * ep of one MoE group

# Checks.
MONO_REL = 0.10     # a fall of more than 10 % ...
MONO_ABS_US = 5.0   # ... and more than 5 us counts as non-monotonic
NEIGHBOUR_RATIO = 1.3
# (slower hardware, faster hardware): the faster part has >= the slower one's peaks and bandwidth.
NEIGHBOUR_PAIRS = (("h100-sxm", "h200-sxm"), ("b200", "b300"), ("b200", "gb200"), ("gb200", "gb300"))
# Blackwell Ultra cut INT8 tensor throughput; int8 curves are not compared across these pairs.
NEIGHBOUR_SKIP_DTYPES = {("b200", "b300"): {"int8"}, ("gb200", "gb300"): {"int8"}}

# L2 capacity in bytes (upper values, so the bound stays permissive): AIC's collectors repeat a call on
# the same inputs, so a working set that fits in L2 need not come from DRAM. Only the bytes beyond L2 count
# in the roofline bound. A100 40 MB; Hopper 50 MB; Blackwell datacenter parts taken as 128 MB; AD102
# (L40S) 96 MB; GB202 (RTX PRO 6000) 128 MB.
L2_BYTES = {"a100-80gb-sxm": 40e6, "h100-sxm": 50e6, "h200-sxm": 50e6, "b200": 128e6, "b300": 128e6,
            "gb200": 128e6, "gb300": 128e6, "l40s": 96e6, "rtx-pro-6000": 128e6}

COMPUTE_KINDS = ("moe", "gemm", "attn_prefill", "attn_decode")
COMM_KINDS = ("all_reduce", "all_gather", "alltoall", "reduce_scatter")

# Key fields per kind, in output order.
KEY_FIELDS = {
    "moe": ("dtype", "hidden", "inter", "experts", "topk", "tp", "ep", "dist", "kernel"),
    "gemm": ("dtype", "n", "k", "kernel"),
    "attn_prefill": ("dtype", "kv", "heads", "kv_heads", "head_dim", "window", "batch", "kernel"),
    "attn_decode": ("dtype", "kv", "heads", "kv_heads", "head_dim", "window", "batch", "kernel"),
    "comm": ("dtype", "ranks", "impl", "kernel"),
}
KIND_ORDER = ("moe", "gemm", "attn_prefill", "attn_decode") + COMM_KINDS


# --------------------------------------------------------------------------------------------- helpers
def version_key(v: str):
    """Sort key for version strings such as 1.3.0rc20, 0.5.6.post2, 0.1.dev19262, 2.27."""
    m = re.match(r"^(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?(?:\.dev(\d+))?$", v)
    if not m:
        return ((0,) * 4, (0, 0), 0, 0)
    rel = tuple(int(p) for p in m.group(1).split("."))
    rel = rel + (0,) * (4 - len(rel))
    pre = ({"a": 0, "b": 1, "rc": 2}[m.group(2)], int(m.group(3))) if m.group(2) else (9, 0)
    post = int(m.group(4)) if m.group(4) else -1
    dev = -int(m.group(5)) if m.group(5) else 1
    if m.group(5) and not m.group(2):
        pre = (-1, 0)  # X.dev sorts before X's pre-releases
    return (rel, pre, post, dev)


def fmt_num(y: float, digits: int = 3) -> str:
    """Plain decimal with `digits` significant digits (never exponent notation, never nan/inf).

    Curve times use 3 (rounding error <= 0.5 %, below AIC's run-to-run noise; it keeps the files under
    the size budget)."""
    if not math.isfinite(y):
        raise ValueError(f"non-finite value {y}")
    return np.format_float_positional(float(y), precision=digits, unique=False, fractional=False, trim="-")


def map_dtype(aic: str) -> str:
    """AIC dtype name -> moeplan precision name (aic:<name> where there is none)."""
    return DTYPE_MAP.get(aic, f"aic:{aic}")


def read_meta(folder: Path) -> dict:
    path = folder / "collection_meta.yaml"
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text()) or {}


# ---------------------------------------------------------------------------------- phase 1: locate
def locate_systems_dir(override: str | None) -> tuple[Path, str]:
    """Find aiconfigurator_core/systems of the installed package (or --systems-dir) and its version."""
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    if override:
        return Path(override).resolve(), version
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{PACKAGE} is not installed; run tools/aic_export/setup_venv.sh or pass --systems-dir")
    return Path(list(spec.submodule_search_locations)[0]) / "systems", version


def load_gpu_db() -> dict:
    """data/gpus.yaml entries by name: bandwidth (B/s) and dense peaks (FLOP/s) per compute class."""
    doc = yaml.safe_load((REPO / "data/gpus.yaml").read_text())
    out = {}
    for g in doc["gpus"]:
        peaks = {k: float(v) * 1e12 for k, v in (g.get("tflops_dense") or {}).items()}
        if "bf16" not in peaks and "fp16" in peaks:
            peaks["bf16"] = peaks["fp16"]
        out[g["name"]] = {"bw": float(g["mem_bandwidth_tb_s"]) * 1e12, "peaks": peaks}
    return out


def load_aic_system(systems_dir: Path, system: str) -> dict:
    """Datasheet peaks of an AIC system yaml: bandwidth and tensor peaks per compute class, link bandwidth."""
    doc = yaml.safe_load((systems_dir / f"{system}.yaml").read_text())
    gpu = doc["gpu"]
    peaks = {}
    for cls, key in (("bf16", "bfloat16_tc_flops"), ("fp8", "fp8_tc_flops"), ("int8", "int8_tc_flops"),
                     ("fp4", "fp4_tc_flops")):
        if key in gpu:
            peaks[cls] = float(gpu[key])
    node = doc.get("node", {})
    return {"bw": float(gpu["mem_bw"]), "peaks": peaks, "intra_node_bw": float(node.get("intra_node_bw", 0) or 0)}


# ------------------------------------------------------------------------- phase 2: choose versions
def current_slots(systems_dir: Path) -> dict:
    """AIC's `current` version per (system, framework) from query_versions.yaml."""
    doc = yaml.safe_load((systems_dir / "query_versions.yaml").read_text())
    defaults = {fw: v.get("current") for fw, v in doc.get("defaults", {}).items()}
    overrides = {s: {fw: v.get("current") for fw, v in fws.items()} for s, fws in (doc.get("overrides") or {}).items()}
    return {"defaults": defaults, "overrides": overrides}


def choose_table(systems_dir: Path, system: str, op_dir: str, framework: str, table: str, cap: str | None) -> dict | None:
    """Newest version folder holding `table` whose collection_meta says `complete`, at most `cap`.

    Returns {version, path, collected, candidates} or None."""
    base = systems_dir / "data" / system / op_dir / framework
    if not base.is_dir():
        return None
    rejected = []
    for vdir in sorted((p for p in base.iterdir() if p.is_dir()), key=lambda p: version_key(p.name), reverse=True):
        f = vdir / f"{table}.parquet"
        if not f.exists():
            continue
        if cap is not None and version_key(vdir.name) > version_key(cap):
            rejected.append(f"{vdir.name}(newer than current {cap})")
            continue
        meta = read_meta(vdir)
        tmeta = (meta.get("tables") or {}).get(table) or {}
        status = tmeta.get("status", "n.s.")
        if status != "complete":
            rejected.append(f"{vdir.name}({status})")
            continue
        collected = str(tmeta.get("collected_at", "n.s."))
        return {"version": vdir.name, "path": f, "collected": collected, "rejected": rejected}
    return None


def choose_all(systems_dir: Path) -> list[dict]:
    """Every (system, engine, source table) chosen for export."""
    slots = current_slots(systems_dir)
    chosen = []
    for system, gpu in sorted(SYSTEM_TO_GPU.items()):
        if gpu is None or not (systems_dir / "data" / system).is_dir():
            continue
        nccl = choose_table(systems_dir, system, "comm", "nccl", "nccl_perf", None)
        for engine in ENGINES:
            cap = slots["overrides"].get(system, {}).get(engine, slots["defaults"].get(engine))
            for op_dir, table, kind in (("moe", "moe_perf", "moe"), ("gemm", "gemm_perf", "gemm"),
                                        ("attention", "context_attention_perf", "attn_prefill"),
                                        ("attention", "generation_attention_perf", "attn_decode"),
                                        ("comm", "custom_allreduce_perf", "custom_allreduce")):
                sel = choose_table(systems_dir, system, op_dir, engine, table, cap)
                if sel:
                    chosen.append({"system": system, "gpu": gpu, "engine": engine, "kind": kind, "table": table,
                                   "cap": cap, **sel})
            if nccl:
                chosen.append({"system": system, "gpu": gpu, "engine": engine, "kind": "nccl", "table": "nccl_perf",
                               "cap": None, **nccl})
    return chosen


# ------------------------------------------------------------------------- model shapes (filter)
def model_shapes(models_dir: Path) -> dict:
    """Shapes of the shipped models at TP 1, 2, 4, 8 (EP up to 64): MoE, attention, GEMM (n, k), windows."""
    moe, attn, gemm, windows = set(), set(), set(), {0}
    moe_alpha = {}
    names = []
    for cfg_path in sorted(models_dir.glob("*/config.json")):
        c = json.loads(cfg_path.read_text())
        t = c.get("text_config", c)
        names.append(cfg_path.parent.name)
        h = t["hidden_size"]
        heads = t["num_attention_heads"]
        kvh = t.get("num_key_value_heads", heads)
        hd = t.get("head_dim") or h // heads
        experts = t.get("num_local_experts") or t.get("n_routed_experts") or t.get("num_experts") or 0
        topk = t.get("num_experts_per_tok", 0)
        moe_inter = t.get("moe_intermediate_size") or (t["intermediate_size"] if experts else 0)
        dense_inter = t.get("intermediate_size_mlp") or t.get("intermediate_size")
        shared_inter = 0
        if t.get("model_type", "").startswith("llama4"):
            shared_inter = moe_inter  # one shared expert of the routed experts' size
        if t.get("n_shared_experts"):
            shared_inter = moe_inter * t["n_shared_experts"]
        if experts:
            moe.add((h, moe_inter, experts, topk))
            # AIC's power-law alpha: 1.01 for DeepSeek-family models (sdk/models/deepseek.py), 1.2 for the
            # generic MoE model class (sdk/models/moe.py: Qwen3, Mixtral, Llama 4, gpt-oss)
            deepseek = t.get("model_type", "").startswith("deepseek")
            moe_alpha[(h, moe_inter, experts, topk)] = "power_law_1.01" if deepseek else "power_law_1.2"
        if t.get("sliding_window"):
            windows.add(int(t["sliding_window"]))
        if t.get("attention_chunk_size"):
            windows.add(int(t["attention_chunk_size"]))
        # lm_head (n = vocab/tp) is left out: it runs once per step, not per layer, and its n lies above
        # AIC's grid for most models; the GEMM fit in kernel_fits.yaml covers it
        for tp in TP_SIZES:
            kv_rank = max(1, kvh // tp)
            mla = "kv_lora_rank" in t
            if not mla:
                attn.add((max(1, heads // tp), kv_rank, hd))
                gemm.add(((heads // tp + 2 * kv_rank) * hd, h))      # fused qkv
                gemm.add((h, heads * hd // tp))                       # o_proj
            else:  # DeepSeek-V3 MLA projections (attention itself is not exported)
                qk = t["qk_nope_head_dim"] + t["qk_rope_head_dim"]
                gemm.add((t["q_lora_rank"] + t["kv_lora_rank"] + t["qk_rope_head_dim"], h))  # fused q_a + kv_a
                gemm.add((t["q_lora_rank"], h))
                gemm.add((t["kv_lora_rank"] + t["qk_rope_head_dim"], h))
                gemm.add((heads // tp * qk, t["q_lora_rank"]))
                gemm.add((heads // tp * (t["qk_nope_head_dim"] + t["v_head_dim"]), t["kv_lora_rank"]))
                gemm.add((h, heads // tp * t["v_head_dim"]))
            for inter in {x for x in (dense_inter if (not experts or t.get("first_k_dense_replace")
                                                      or t.get("interleave_moe_layer_step", 1) > 1
                                                      or t.get("intermediate_size_mlp")) else 0,
                                      shared_inter) if x}:
                gemm.add((2 * inter // tp, h))   # fused gate+up
                gemm.add((h, inter // tp))       # down
            if experts:
                gemm.add((experts, h))           # router
    return {"models": names, "moe": moe, "moe_alpha": moe_alpha, "attn": attn, "gemm": gemm, "windows": windows}


def isin_tuples(columns: list, tuples: set) -> np.ndarray:
    """Row mask: the tuple of `columns` values is in `tuples`."""
    if not tuples:
        return np.zeros(len(columns[0]), bool)
    return pd.MultiIndex.from_arrays([np.asarray(c) for c in columns]).isin(list(tuples))


def bracket(vals: np.ndarray, target: int) -> set:
    """The grid values (sorted, unique) equal to `target`, or the nearest below and above it."""
    if target in vals:
        return {int(target)}
    out = set()
    lo = vals[vals < target]
    hi = vals[vals > target]
    if len(lo):
        out.add(int(lo.max()))
    if len(hi):
        out.add(int(hi.min()))
    return out


# ------------------------------------------------------------------ phase 3: load and normalise
def load_table(sel: dict) -> pd.DataFrame:
    """Read one chosen parquet table into a normalised frame: kind, key columns, x, y_us and bound inputs."""
    d = pd.read_parquet(sel["path"])
    kind = sel["kind"]
    out = pd.DataFrame(index=d.index)
    if kind == "moe":
        out["kind"] = "moe"
        out["aic_dtype"] = d["moe_dtype"]
        out["hidden"] = d["hidden_size"]
        out["inter"] = d["inter_size"]
        out["experts"] = d["num_experts"]
        out["topk"] = d["topk"]
        out["tp"] = d["moe_tp_size"]
        out["ep"] = d["moe_ep_size"]
        out["dist"] = d["distribution"]
        out["kernel"] = d["kernel_source"]
        out["x"] = d["num_tokens"]
    elif kind == "gemm":
        out["kind"] = "gemm"
        out["aic_dtype"] = d["gemm_dtype"]
        out["n"] = d["n"]
        out["k"] = d["k"]
        out["kernel"] = d["kernel_source"]
        out["x"] = d["m"]
    elif kind in ("attn_prefill", "attn_decode"):
        out["kind"] = kind
        out["aic_dtype"] = d["attn_dtype"]
        out["aic_kv"] = d["kv_cache_dtype"]
        out["heads"] = d["num_heads"]
        out["kv_heads"] = d["num_key_value_heads"]
        out["head_dim"] = d["head_dim"]
        out["window"] = d["window_size"] if "window_size" in d else 0
        out["batch"] = d["batch_size"]
        out["kernel"] = d["kernel_source"]
        out["beam"] = d["beam_width"]
        # context: x = isl (step is 0 in every table); generation: x = isl + step = keys attended
        out["x"] = d["isl"] if kind == "attn_prefill" else d["isl"] + d["step"]
        out["step"] = d["step"]
    elif kind == "nccl":
        out["kind"] = d["op_name"]
        out["aic_dtype"] = d["nccl_dtype"]
        out["ranks"] = d["num_gpus"]
        out["impl"] = "nccl"
        out["kernel"] = ""
        out["x"] = d["message_size"] * d["nccl_dtype"].map(COMM_ELEM_BYTES)
    elif kind == "custom_allreduce":
        out["kind"] = d["op_name"]
        out["aic_dtype"] = d["allreduce_dtype"]
        out["ranks"] = d["num_gpus"]
        out["impl"] = "custom"
        out["kernel"] = d["kernel_source"]
        out["x"] = d["message_size"] * d["allreduce_dtype"].map(COMM_ELEM_BYTES)
    out["y_us"] = d["latency"].astype(float) * 1000.0
    out["gpu"] = sel["gpu"]
    out["engine"] = sel["engine"]
    out["src"] = sel["kind"]
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------ phase 4: filter
def filter_rows(df: pd.DataFrame, shapes: dict) -> pd.Series:
    """Boolean mask of rows kept by the model-shape filter (see docs/gpu_profiles.md, 'Filter')."""
    kind = df["kind"].iloc[0] if len(df) else ""
    src = df["src"].iloc[0] if len(df) else ""
    if src == "moe":
        shape_ok = isin_tuples([df.hidden, df.inter, df.experts, df.topk], shapes["moe"])
        # the balanced curve plus the power-law alpha AIC's own model code uses for the shape
        # (sdk/models/deepseek.py: 1.01 for DeepSeek-family MoE; sdk/models/moe.py: 1.2 for the others)
        alpha = pd.Series(list(zip(df.hidden, df.inter, df.experts, df.topk))).map(shapes["moe_alpha"]).values
        dist_ok = (df.dist.values == "balanced") | (df.dist.values == alpha)
        return pd.Series(shape_ok & dist_ok & df.tp.isin(TP_SIZES).values & df.ep.isin(EP_SIZES).values
                         & (df.ep <= df.experts).values & (df.tp * df.ep <= MAX_MOE_GPUS).values, index=df.index)
    if src == "gemm":
        n_grid, k_grid = np.unique(df["n"].values), np.unique(df["k"].values)
        pairs = set()
        for n, k in shapes["gemm"]:
            for nn in bracket(n_grid, n):
                for kk in bracket(k_grid, k):
                    pairs.add((nn, kk))
        return pd.Series(isin_tuples([df.n, df.k], pairs), index=df.index)
    if src in ("attn_prefill", "attn_decode"):
        ok = isin_tuples([df.heads, df.kv_heads, df.head_dim], shapes["attn"])
        # AIC stores MHA rows (kv_heads == heads) too; none of the shipped models is MHA at TP<=8
        return pd.Series(ok & df.window.isin(shapes["windows"]).values & (df.beam == 1).values
                         & ((df.step == 0).values if src == "attn_prefill" else True), index=df.index)
    if src in ("nccl", "custom_allreduce"):
        return pd.Series(df.ranks.isin((2, 4, 8, 16, 32, 64, 72)).values, index=df.index)
    raise ValueError(kind)


# -------------------------------------------------------------------- keys and duplicate merge
def add_keys(df: pd.DataFrame) -> pd.DataFrame:
    """Add moeplan dtype names and the canonical `key` string (all key=value fields of the curve)."""
    df = df.copy()
    df["dtype"] = df["aic_dtype"].map(map_dtype)
    kind_group = "comm" if df["kind"].iloc[0] in COMM_KINDS else df["kind"].iloc[0]
    if kind_group in ("attn_prefill", "attn_decode"):
        df["kv"] = df["aic_kv"].map(map_dtype)
    fields = list(KEY_FIELDS[kind_group])
    if kind_group == "comm" and (df["impl"] == "nccl").all():
        fields.remove("kernel")
    parts = [f + "=" + df[f].astype(str) for f in fields]
    key = parts[0]
    for p in parts[1:]:
        key = key + " " + p
    df["key"] = key
    bad = df["key"].str.contains(r"=\S*=|=\s|=$", regex=True)
    if bad.any():
        raise ValueError(f"bad field value in {df.loc[bad, 'key'].iloc[0]}")
    return df


def merge_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Several measurements of one point (same kind, key, x): keep the median."""
    before = len(df)
    agg = {c: "first" for c in df.columns if c not in ("y_us",)}
    agg["y_us"] = "median"
    out = df.groupby(["kind", "key", "x"], sort=False, as_index=False).agg(agg)
    return out.reset_index(drop=True), before - len(out)


# ------------------------------------------------------------------------------- phase 5: checks
def uniform_touched(tokens, topk, experts, ep):
    """Experts touched on one EP rank by `tokens` tokens under a uniform router: E_rank*(1-(1-k/E)^T)."""
    e_rank = experts / ep
    return e_rank * (1.0 - np.power(1.0 - topk / experts, tokens))


def work(df: pd.DataFrame, incl_scales: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FLOPs, bytes and compute class per row (the roofline quantities used by checks and fits)."""
    kind = df["kind"].iloc[0]
    cls = df["aic_dtype"].map(DTYPE_COMPUTE).fillna("bf16").values
    bits = df["aic_dtype"].map(WEIGHT_BITS if incl_scales else RAW_WEIGHT_BITS).fillna(16).astype(float).values
    x = df["x"].astype(float).values
    if kind == "moe":
        h, inter, e, k = (df[c].astype(float).values for c in ("hidden", "inter", "experts", "topk"))
        tp, ep = df["tp"].astype(float).values, df["ep"].astype(float).values
        flops = 2.0 * 3.0 * h * (inter / tp) * x * k / ep
        touched = uniform_touched(x, k, e, ep)
        nbytes = touched * 3.0 * h * (inter / tp) * bits / 8.0
        return flops, nbytes, cls
    if kind == "gemm":
        n, kk = df["n"].astype(float).values, df["k"].astype(float).values
        flops = 2.0 * x * n * kk
        nbytes = n * kk * bits / 8.0 + 2.0 * x * (kk + n)
        return flops, nbytes, cls
    if kind in ("attn_prefill", "attn_decode"):
        b, hq, hkv, hd = (df[c].astype(float).values for c in ("batch", "heads", "kv_heads", "head_dim"))
        w = df["window"].astype(float).values
        kvb = df["aic_kv"].map(KV_BYTES).fillna(2).astype(float).values
        qb = np.where(df["aic_dtype"].values == "fp8", 1.0, 2.0)
        if kind == "attn_prefill":
            s = x
            # causal: query i attends min(i+1, window) keys
            full = s * (s + 1) / 2.0
            win = np.where(w > 0, np.minimum(w, s), s)
            keys = np.where((w > 0) & (w < s), win * (win + 1) / 2.0 + (s - win) * win, full)
            flops = 4.0 * b * hq * hd * keys
            nbytes = b * s * hd * (2.0 * hq * qb + 2.0 * hkv * kvb)
        else:
            s = np.where(w > 0, np.minimum(w, x), x)
            flops = 4.0 * b * hq * hd * s
            nbytes = b * s * 2.0 * hkv * hd * kvb
        cls = np.where(df["aic_dtype"].values == "fp8", "fp8", "bf16")
        return flops, nbytes, cls
    raise ValueError(kind)


def check_roofline(df: pd.DataFrame, hw: dict) -> np.ndarray:
    """Rows faster than the datasheet lower bound (FLOPs/peak, bytes/HBM bandwidth; links for comm)."""
    kind = df["kind"].iloc[0]
    if kind in COMM_KINDS:
        if hw["link_bw"] <= 0:
            return np.zeros(len(df), bool)
        n = df["ranks"].astype(float).values
        bound_us = (n - 1) / n * df["x"].astype(float).values / hw["link_bw"] * 1e6
        return df["y_us"].values < bound_us
    flops, nbytes, cls = work(df, incl_scales=False)
    peak = np.array([hw["peaks"].get(c, hw["peaks"].get("bf16")) for c in cls])
    if kind == "gemm":
        # the collector reuses one input tensor across the timed calls, so it can sit in L2: only the
        # weights (fresh copies beyond L2) and the output count as HBM traffic for the bound
        nbytes = nbytes - 2.0 * df["x"].values * df["k"].values
    if kind == "moe":
        # the touched-expert bound assumes the balanced router; power-law rows are bounded by the
        # hidden states read and written only
        pl = df["dist"].values != "balanced"
        flops = np.where(pl, 0.0, flops)
        nbytes = np.where(pl, 4.0 * df["x"].values * df["hidden"].values, nbytes)
    nbytes = np.maximum(nbytes - hw["l2"], 0.0)
    bound_us = np.maximum(flops / peak, nbytes / hw["bw"]) * 1e6
    return df["y_us"].values < bound_us


def check_monotonic(x: np.ndarray, y: np.ndarray) -> str | None:
    """A flag message when time falls as x grows by more than 10 % and 5 us; None otherwise."""
    worst = None
    for i in range(1, len(y)):
        fall = y[i - 1] - y[i]
        if fall > MONO_ABS_US and fall > MONO_REL * y[i - 1]:
            if worst is None or fall / y[i - 1] > worst[0]:
                worst = (fall / y[i - 1], x[i - 1], y[i - 1], x[i], y[i])
    if worst is None:
        return None
    return f"nonmonotonic x={worst[1]}->{worst[3]} -{worst[0] * 100:.0f}%"


def neighbour_hw_ratio(gpu_db: dict, slow: str, fast: str) -> float:
    """How much faster `fast` can be than `slow` at most: the largest ratio of their bandwidths and dense peaks."""
    a, b = gpu_db[slow], gpu_db[fast]
    ratios = [b["bw"] / a["bw"]] + [b["peaks"][c] / a["peaks"][c] for c in a["peaks"] if c in b["peaks"]]
    return max(ratios)


def check_neighbours(curves: dict, gpu_db: dict) -> dict:
    """Curves that disagree with the same op on a neighbouring GPU (median ratio over common x):
    - on the faster hardware, slower than on the slower neighbour by >1.3x;
    - on the slower hardware, slower than on the faster neighbour by >1.3x beyond what the faster part's peaks and
      bandwidth allow (data/gpus.yaml: the largest ratio of the two).

    curves: {(gpu, engine, kind, key): (x, y)}. Returns {(gpu, engine, kind, key): message}."""
    suspicious = {}
    by_key = defaultdict(dict)
    for (gpu, engine, kind, key), xy in curves.items():
        if kind in COMPUTE_KINDS:
            by_key[(engine, kind, key)][gpu] = xy
    for (engine, kind, key), per_gpu in by_key.items():
        for slow, fast in NEIGHBOUR_PAIRS:
            if slow not in per_gpu or fast not in per_gpu:
                continue
            dtype = key.split()[0].split("=")[1]
            if dtype in NEIGHBOUR_SKIP_DTYPES.get((slow, fast), set()):
                continue
            (xa, ya), (xb, yb) = per_gpu[slow], per_gpu[fast]
            common, ia, ib = np.intersect1d(xa, xb, return_indices=True)
            if len(common) == 0:
                continue
            ratio = yb[ib] / ya[ia]
            med = float(np.median(ratio))
            if med > NEIGHBOUR_RATIO:
                suspicious[(fast, engine, kind, key)] = (
                    f"median {med:.2f}x slower than {slow} on {len(common)} common points "
                    f"(max {ratio.max():.2f}x); {fast} has >= {slow}'s peaks and bandwidth")
                continue
            allowed = neighbour_hw_ratio(gpu_db, slow, fast)
            inverse = float(np.median(1.0 / ratio))
            if inverse > NEIGHBOUR_RATIO * allowed:
                suspicious[(slow, engine, kind, key)] = (
                    f"median {inverse:.2f}x slower than {fast} on {len(common)} common points "
                    f"(max {(1.0 / ratio).max():.2f}x); {fast}'s peaks and bandwidth are at most {allowed:.2f}x "
                    f"{slow}'s")
    return suspicious


# --------------------------------------------------------------------------------- phase 7: fits
def lm_fit(fun, theta0_list, y_log, iters=40):
    """Levenberg-Marquardt on sum of squared log errors; several starts; returns the best theta."""
    best = None
    for theta0 in theta0_list:
        th = np.array(theta0, float)
        lam = 1e-2
        r = fun(th) - y_log
        cost = float(r @ r)
        for _ in range(iters):
            eps = 1e-5
            jac = np.empty((len(r), len(th)))
            for j in range(len(th)):
                d = np.zeros_like(th)
                d[j] = eps
                jac[:, j] = (fun(th + d) - fun(th - d)) / (2 * eps)
            jtj = jac.T @ jac
            g = jac.T @ r
            improved = False
            for _ in range(10):
                step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), -g)
                th_new = th + step
                r_new = fun(th_new) - y_log
                c_new = float(r_new @ r_new)
                if np.isfinite(c_new) and c_new < cost:
                    th, r, cost, lam = th_new, r_new, c_new, max(lam / 3, 1e-9)
                    improved = True
                    break
                lam *= 4
            if not improved or np.max(np.abs(step)) < 1e-7:
                break
        if best is None or cost < best[0]:
            best = (cost, th)
    return best[1]


def fit_roofline(flops, nbytes, rows, t_us, peak, bw):
    """Fit t = max(B/(bw e_mem), F/(peak e_c r/(r+r_half))) + t0 by least squares on log time."""
    y_log = np.log(t_us)

    def model(th):
        e_mem, e_c, r_half, t0 = np.exp(np.clip(th, -20.0, 20.0))
        t_mem = nbytes / (bw * e_mem) * 1e6
        t_cmp = flops / (peak * e_c * rows / (rows + r_half)) * 1e6
        return np.log(np.maximum(t_mem, t_cmp) + t0)

    starts = [np.log([em, ec, rh, t0]) for em, ec in ((0.6, 0.6), (0.3, 0.9)) for rh in (4.0, 64.0)
              for t0 in (5.0,)]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        th = lm_fit(model, starts, y_log)
    err = np.abs(np.exp(model(th) - y_log) - 1.0)
    e_mem, e_c, r_half, t0 = np.exp(np.clip(th, -20.0, 20.0))
    out = {"e_mem": float(e_mem), "e_c": float(e_c), "r_half": float(r_half), "t0_us": float(t0),
           "n": int(len(t_us)), "err_median_pct": float(np.median(err) * 100),
           "err_p90_pct": float(np.quantile(err, 0.9) * 100)}
    # a share above 1 or a vanishing r_half means the form does not describe these kernels well
    problems = [p for p, bad in (("e_mem>1", e_mem > 1.0), ("e_c>1", e_c > 1.0), ("r_half~0", r_half < 0.01),
                                 ("p90 error>50%", out["err_p90_pct"] > 50.0)) if bad]
    out["quality"] = "poor: " + ", ".join(problems) if problems else "ok"
    return out


def kernel_fits(kept: dict, gpu_db: dict, versions: dict) -> dict:
    """Per gpu, op, dtype, engine: fitted efficiencies (MoE, GEMM) and achieved shares (attention)."""
    fits = {}
    for (gpu, engine, kind), df in sorted(kept.items()):
        if kind not in COMPUTE_KINDS or df.empty:
            continue
        hw = gpu_db[gpu]
        dcol = "aic_kv" if kind == "attn_decode" else "aic_dtype"   # decode: the KV-cache dtype matters
        for aic_dtype, g in sorted(df.groupby(dcol)):
            if kind == "moe":
                g = g[g["dist"] == "balanced"]
            if len(g) < 8:
                continue
            flops, nbytes, cls = work(g, incl_scales=True)
            c = str(cls[0])
            peak = hw["peaks"].get(c)
            if peak is None:
                continue
            t = g["y_us"].values
            entry = {"source": f"{PACKAGE} {versions['package']} {engine} {versions[(gpu, engine, kind)]}",
                     "compute_class": c, "peak_tflops": round(peak / 1e12, 1), "hbm_tb_s": round(hw["bw"] / 1e12, 3)}
            if kind == "moe":
                touched = uniform_touched(g["x"].values.astype(float), g["topk"].values, g["experts"].values,
                                          g["ep"].values)
                r = g["x"].values * g["topk"].values / g["ep"].values / touched
                entry.update(fit_roofline(flops, nbytes, r, t, peak, hw["bw"]))
            elif kind == "gemm":
                entry.update(fit_roofline(flops, nbytes, g["x"].values.astype(float), t, peak, hw["bw"]))
                entry["rows_half"] = entry.pop("r_half")
            else:
                comp = flops / (t * 1e-6) / peak
                mem = nbytes / (t * 1e-6) / hw["bw"]
                entry.update({"n": int(len(t)),
                              "compute_share_median": float(np.median(comp)),
                              "compute_share_p90": float(np.quantile(comp, 0.9)),
                              "hbm_share_median": float(np.median(mem)),
                              "hbm_share_p90": float(np.quantile(mem, 0.9))})
            fits.setdefault(gpu, {}).setdefault(kind, {}).setdefault(map_dtype(aic_dtype), {})[engine] = entry
    return fits


# ----------------------------------------------------------------------------- phase 6: write
def write_profile(path: Path, gpu: str, engine: str, system: str, meta: dict, curves: list, stats: dict,
                  table_lines: list, filter_text: str) -> None:
    """One .prof file: header, table provenance lines, then curves sorted by kind and key."""
    versions = [t["version"] for t in table_lines if t["kind"] != "nccl"]
    newest = max(versions, key=version_key) if versions else "n.s."
    lines = [FORMAT_HEADER, f"gpu {gpu}", f"engine {engine}", f"engine_version {newest}",
             f"source {PACKAGE} {meta['package']} (PyPI), aiconfigurator_core/systems/data/{system}",
             f"license {LICENSE_LINE}", f"exported {meta['date']}"]
    for t in table_lines:
        lines.append(f"table {t['kind']} {t['version']} collected={t['collected']} rows_in={t['rows_in']} "
                     f"rows_kept={t['rows_kept']} dropped={t['dropped']}")
    lines.append("# Generated by tools/aic_export/export.py; format and checks: docs/gpu_profiles.md.")
    lines.append("# Units: y = time in microseconds (AIC milliseconds x 1000); x per kind: moe num_tokens (tokens")
    lines.append("# entering the MoE layer of one rank = the whole EP group's tokens), gemm m, attn_prefill isl,")
    lines.append("# attn_decode isl+step (keys attended incl. the new token), comm message bytes.")
    for t in table_lines:
        lines.append(f"# table {t['kind']}: {t['path']}; filtered={t['filtered']} merged_duplicates={t['merged']} "
                     f"dropped_roofline={t['roofline']} dropped_neighbour={t['neighbour']} "
                     f"flagged_nonmonotonic_curves={t['flagged']}")
    for line in filter_text.splitlines():
        lines.append("# " + line)
    for kind, key, xs, ys, flag in curves:
        if flag:
            lines.append(f"# flag: {flag}")
        pts = " ".join(f"{int(x)} {fmt_num(y)}" for x, y in zip(xs, ys))
        lines.append(f"{kind} {key} : {pts}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


FILTER_TEXT = """Filter: only shapes of the models in data/models/*/config.json are kept.
moe: (hidden, inter, experts, topk) of a shipped MoE model, tp in {1,2,4,8}, ep in {1,2,4,8,16,32,64}, ep<=experts,
  tp*ep<=64; dist balanced plus the power-law alpha AIC's model code uses (1.01 DeepSeek, 1.2 others).
gemm: (n, k) of the models' per-layer linear layers at tp 1,2,4,8 (qkv, o, MLA projections, dense/shared MLP
  gate+up and down, router; not lm_head); a dimension missing from AIC's grid keeps its nearest grid values below
  and above.
attn: per-rank (heads, kv_heads, head_dim) at tp 1,2,4,8, window in {0, model windows}, beam 1.
comm: every NCCL / custom all-reduce row."""


# ---------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems-dir", help="aiconfigurator_core/systems folder (default: the installed package)")
    ap.add_argument("--out", default=str(REPO / "data/gpu_profiles"), help="output folder")
    ap.add_argument("--date", help="value of the `exported` line (default: $MOEPLAN_EXPORT_DATE, "
                                   "$SOURCE_DATE_EPOCH or today, UTC)")
    ap.add_argument("--only", nargs="*", help="AIC system folders to export (default: all mapped ones)")
    ap.add_argument("--report", default=str(REPO / "data/gpu_profiles/export_report.md"),
                    help="markdown summary of versions, checks and fits")
    args = ap.parse_args(argv)

    date = args.date or os.environ.get("MOEPLAN_EXPORT_DATE")
    if not date and os.environ.get("SOURCE_DATE_EPOCH"):
        date = dt.datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), dt.timezone.utc).date().isoformat()
    date = date or dt.datetime.now(dt.timezone.utc).date().isoformat()

    systems_dir, pkg_version = locate_systems_dir(args.systems_dir)
    out_dir = Path(args.out)
    print(f"source: {systems_dir} ({PACKAGE} {pkg_version})")
    gpu_db = load_gpu_db()
    shapes = model_shapes(REPO / "data/models")
    chosen = [c for c in choose_all(systems_dir) if not args.only or c["system"] in args.only]

    # hardware bounds: the larger of AIC's and moeplan's datasheet values (a permissive lower bound)
    hw_bound = {}
    for system, gpu in SYSTEM_TO_GPU.items():
        if gpu is None or not (systems_dir / f"{system}.yaml").exists():
            continue
        aic = load_aic_system(systems_dir, system)
        ours = gpu_db[gpu]
        peaks = {c: max(aic["peaks"].get(c, 0.0), ours["peaks"].get(c, 0.0)) for c in ("bf16", "fp8", "int8", "fp4")}
        peaks = {c: v for c, v in peaks.items() if v > 0}
        hw_bound[gpu] = {"bw": max(aic["bw"], ours["bw"]), "peaks": peaks, "link_bw": aic["intra_node_bw"],
                        "l2": L2_BYTES.get(gpu, 128e6)}

    # load, filter, key, merge
    frames = {}      # (gpu, engine, src) -> df after filter/merge (per source table)
    table_info = {}  # (gpu, engine, src) -> provenance and counts
    for sel in chosen:
        raw = load_table(sel)
        info = {"kind": sel["kind"], "version": sel["version"], "collected": sel["collected"],
                "rows_in": len(raw), "path": str(sel["path"].relative_to(systems_dir.parent)),
                "rejected": sel["rejected"], "roofline": 0, "neighbour": 0, "flagged": 0}
        raw = raw[np.isfinite(raw["y_us"]) & (raw["y_us"] > 0)]
        mask = filter_rows(raw, shapes) if len(raw) else pd.Series([], dtype=bool)
        kept = raw[mask.values]
        info["filtered"] = info["rows_in"] - len(kept)
        parts, merged = [], 0
        for kind, g in kept.groupby("kind", sort=True):
            g = add_keys(g)
            g, m = merge_duplicates(g)
            merged += m
            # roofline check
            hw = dict(hw_bound[sel["gpu"]])
            bad = check_roofline(g, hw)
            info["roofline"] += int(bad.sum())
            for k, v in g[bad].groupby(["kind", "dtype"]).size().items():
                info.setdefault("roofline_detail", {})[" ".join(k)] = int(v)
            parts.append(g[~bad])
        info["merged"] = merged
        frames[(sel["gpu"], sel["engine"], sel["kind"])] = pd.concat(parts) if parts else kept.iloc[0:0]
        table_info[(sel["gpu"], sel["engine"], sel["kind"])] = info

    # curves: (gpu, engine, kind, key) -> (source table, x array, y array)
    curves = {}
    for fk, df in list(frames.items()):
        df = df.sort_values(["kind", "key", "x"], kind="mergesort").reset_index(drop=True)
        frames[fk] = df
        kinds, keys = df["kind"].values, df["key"].values
        xs, ys = df["x"].values.astype(np.int64), df["y_us"].values.astype(float)
        cut = np.flatnonzero((kinds[1:] != kinds[:-1]) | (keys[1:] != keys[:-1])) + 1
        for a, b in zip(np.r_[0, cut], np.r_[cut, len(df)]):
            if b > a:
                curves[(fk[0], fk[1], kinds[a], keys[a])] = (fk[2], xs[a:b], ys[a:b])
    suspicious = check_neighbours({k: (v[1], v[2]) for k, v in curves.items()}, gpu_db)

    # drop suspicious curves, flag non-monotonic ones
    final = defaultdict(list)   # (gpu, engine) -> [(kind, key, x, y, flag)]
    dropped_notes = defaultdict(list)
    for (gpu, engine, kind, key), (src, x, y) in sorted(curves.items(), key=lambda kv: (
            kv[0][0], kv[0][1], KIND_ORDER.index(kv[0][2]), kv[0][3])):
        info = table_info[(gpu, engine, src)]
        if (gpu, engine, kind, key) in suspicious:
            info["neighbour"] += len(x)
            dropped_notes[(gpu, engine)].append(f"{kind} {key}: {suspicious[(gpu, engine, kind, key)]}")
            continue
        flag = check_monotonic(x, y)
        if flag:
            info["flagged"] += 1
        final[(gpu, engine)].append((kind, key, x, y, flag))
    kept_by_kind = {}
    for (gpu, engine, src), df in frames.items():
        if src in COMPUTE_KINDS and len(df):
            bad = {k[3] for k in suspicious if k[:3] == (gpu, engine, src)}
            kept_by_kind[(gpu, engine, src)] = df[~df["key"].isin(bad)]
    for key, info in table_info.items():
        info["dropped"] = info["roofline"] + info["neighbour"]
        info["rows_kept"] = info["rows_in"] - info["filtered"] - info["merged"] - info["dropped"]

    # write
    out_dir.mkdir(parents=True, exist_ok=True)
    aic_gpus = {g for g in SYSTEM_TO_GPU.values() if g}
    for old in out_dir.glob("*/*.prof"):
        if old.parent.name in aic_gpus:  # other GPUs' files (AMD: tools/amd_profiles) are not AIC's to remove
            old.unlink()
    gpu_to_system = {g: s for s, g in SYSTEM_TO_GPU.items() if g}
    meta = {"package": pkg_version, "date": date}
    order = ("moe", "gemm", "attn_prefill", "attn_decode", "nccl", "custom_allreduce")
    for (gpu, engine), items in sorted(final.items()):
        tlines = [table_info[(gpu, engine, s)] for s in order if (gpu, engine, s) in table_info]
        path = out_dir / gpu / f"{engine}.prof"
        write_profile(path, gpu, engine, gpu_to_system[gpu], meta, items, None, tlines, FILTER_TEXT)
        notes = dropped_notes.get((gpu, engine))
        if notes:
            with path.open("a") as f:
                f.write("# Curves dropped by the neighbour-GPU check (not above):\n")
                for n in notes:
                    f.write(f"# dropped: {n}\n")

    # fits
    kept = kept_by_kind
    versions = {"package": pkg_version}
    for (gpu, engine, src), info in table_info.items():
        versions[(gpu, engine, src)] = info["version"]
    fits = kernel_fits(kept, gpu_db, versions)
    write_fits(out_dir / "kernel_fits.yaml", fits, meta)
    write_report(Path(args.report), table_info, dropped_notes, fits, frames, final, gpu_db, shapes, meta, chosen)
    total = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    print(f"wrote {len(final)} profiles; {out_dir} holds {total / 1e6:.2f} MB")
    return 0


def round_floats(obj, digits=4):
    """Plain Python types with floats rounded to `digits` significant digits (for the yaml)."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    return obj


def write_fits(path: Path, fits: dict, meta: dict) -> None:
    """data/gpu_profiles/kernel_fits.yaml (sorted; floats to 4 significant digits)."""
    head = ("# Kernel-level efficiency fits from AIConfigurator measurements (tools/aic_export/export.py).\n"
            "# Model and derivation: docs/gpu_profiles.md, 'Kernel efficiency fits'. Peaks: data/gpus.yaml.\n"
            "# moe/gemm: t_us = max(B/(bw*e_mem), F/(peak*e_c*r/(r+r_half))) + t0_us, least squares on log t;\n"
            "#   r = tokens per touched expert (moe) or rows m (gemm, field rows_half). err_*: |t_fit/t - 1| in %.\n"
            "# attn_prefill/attn_decode: achieved shares F/(t*peak) and B/(t*bw) over the kept rows.\n"
            f"# {LICENSE_LINE}; source {PACKAGE} {meta['package']}; exported {meta['date']}\n")
    body = yaml.safe_dump(round_floats(fits), sort_keys=True, default_flow_style=False, width=120)
    path.write_text(head + body)


def write_report(path: Path, table_info, dropped_notes, fits, frames, final, gpu_db, shapes, meta, chosen) -> None:
    """Markdown summary: versions, per-file check counts, fits, the H200 FP8 MoE example."""
    L = [f"# AIConfigurator export report ({PACKAGE} {meta['package']}, exported {meta['date']})", "",
         "Generated by tools/aic_export/export.py; explained in docs/gpu_profiles.md.", "",
         "Models used by the filter: " + ", ".join(shapes["models"]), "",
         "## Tables, versions and per-check counts", "",
         "| gpu | engine | table | version | collected | rows_in | filtered | merged | roofline drop | "
         "neighbour drop | flagged curves | rows_kept | versions passed over |",
         "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for (gpu, engine, src), i in sorted(table_info.items()):
        L.append(f"| {gpu} | {engine} | {src} | {i['version']} | {i['collected']} | {i['rows_in']} | {i['filtered']} | "
                 f"{i['merged']} | {i['roofline']} | {i['neighbour']} | {i['flagged']} | {i['rows_kept']} | "
                 f"{', '.join(i['rejected']) or '-'} |")
    tot = defaultdict(int)
    for i in table_info.values():
        for c in ("rows_in", "filtered", "merged", "roofline", "neighbour", "flagged", "rows_kept"):
            tot[c] += i[c]
    L += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in tot.items()), "",
          "## Per file", "",
          "| file | rows_in | filtered | merged | roofline drop | neighbour drop | flagged curves | rows_kept |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    per_file = defaultdict(lambda: defaultdict(int))
    for (gpu, engine, src), i in table_info.items():
        for c in ("rows_in", "filtered", "merged", "roofline", "neighbour", "flagged", "rows_kept"):
            per_file[f"{gpu}/{engine}.prof"][c] += i[c]
    for f, c in sorted(per_file.items()):
        L.append(f"| {f} | {c['rows_in']} | {c['filtered']} | {c['merged']} | {c['roofline']} | {c['neighbour']} | "
                 f"{c['flagged']} | {c['rows_kept']} |")
    L += ["", "Roofline drops by table and dtype:", ""]
    for (gpu, engine, src), i in sorted(table_info.items()):
        if i.get("roofline_detail"):
            L.append(f"- {gpu}/{engine} {src}: " + ", ".join(f"{k} {v}" for k, v in sorted(i["roofline_detail"].items())))
    L += ["",
          "## Curves dropped by the neighbour-GPU check", ""]
    for (gpu, engine), notes in sorted(dropped_notes.items()):
        for n in notes:
            L.append(f"- {gpu}/{engine}: `{n}`")
    L += ["", "## Kernel fits (moe, gemm)", "",
          "| gpu | op | dtype | engine | e_mem | e_c | r_half | t0 us | n | err median % | err p90 % | quality |",
          "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for gpu, ops in sorted(fits.items()):
        for op in ("moe", "gemm"):
            for dtype, engines in sorted(ops.get(op, {}).items()):
                for engine, e in sorted(engines.items()):
                    rh = e.get("r_half", e.get("rows_half"))
                    L.append(f"| {gpu} | {op} | {dtype} | {engine} | {e['e_mem']:.3f} | {e['e_c']:.3f} | {rh:.3g} | "
                             f"{e['t0_us']:.3g} | {e['n']} | {e['err_median_pct']:.1f} | {e['err_p90_pct']:.1f} | "
                             f"{e['quality']} |")
    L += ["", "## Attention achieved shares", "",
          "| gpu | op | dtype | engine | n | compute share median | p90 | HBM share median | p90 |",
          "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for gpu, ops in sorted(fits.items()):
        for op in ("attn_prefill", "attn_decode"):
            for dtype, engines in sorted(ops.get(op, {}).items()):
                for engine, e in sorted(engines.items()):
                    L.append(f"| {gpu} | {op} | {dtype} | {engine} | {e['n']} | {e['compute_share_median']:.3f} | "
                             f"{e['compute_share_p90']:.3f} | {e['hbm_share_median']:.3f} | {e['hbm_share_p90']:.3f} |")
    # example curve
    L += ["", "## H200 FP8 MoE, hidden 5120, inter 8192, experts 128, topk 1 (Llama 4 Maverick), balanced", ""]
    hw = gpu_db["h200-sxm"]
    for engine in ENGINES:
        df = frames.get(("h200-sxm", engine, "moe"))
        if df is None or df.empty:
            continue
        sel = df[(df.aic_dtype == "fp8") & (df.hidden == 5120) & (df.inter == 8192) & (df.experts == 128)
                 & (df.topk == 1) & (df.tp == 1) & (df.ep.isin((1, 8))) & (df.dist == "balanced")]
        for (ep, kernel), g in sorted(sel.groupby(["ep", "kernel"])):
            g = g.sort_values("x")
            _, nbytes, _ = work(g, incl_scales=True)
            L += [f"### {engine}, tp 1, ep {ep}, kernel {kernel}", "",
                  "| tokens | time us | experts touched (uniform) | weight MB read | achieved GB/s | HBM share |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
            touched = uniform_touched(g["x"].values.astype(float), 1, 128, ep)
            for x, y, t, b in zip(g["x"].values, g["y_us"].values, touched, nbytes):
                gbs = b / (y * 1e-6) / 1e9
                L.append(f"| {x} | {fmt_num(y)} | {t:.2f} | {b / 1e6:.1f} | {gbs:.0f} | {gbs * 1e9 / hw['bw']:.3f} |")
            L.append("")
    path.write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    sys.exit(main())
