#!/usr/bin/env python3
"""Check data/validation/public_points.yaml against the data files it names.

Runs with the system python3 when PyYAML is installed (otherwise: pip install pyyaml).
Exit status 0 when every check passes; 1 with one line per problem otherwise.

    python3 tools/check_points.py [path/to/public_points.yaml]
"""
import collections
import os
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover
    sys.exit("check_points.py needs PyYAML: pip install pyyaml")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")

ENGINES = {"trtllm", "vllm", "sglang", "llamacpp"}
LOADS = {"max", "closed", "static", "rate"}
STATS = {"mean", "median", "p90", "p99"}
METRICS = {"output_tokens_per_s", "output_tokens_per_s_per_gpu", "output_tokens_per_s_per_user",
           "ttft_ms", "tpot_ms", "decode_tokens_per_s", "prefill_tokens_per_s"}
LATENCY = {"ttft_ms", "tpot_ms"}
HELD_OUT = re.compile(r"llama[-_ ]?4|maverick|scout", re.I)

COMMON = ["id", "model", "precision", "kv_dtype", "input", "output", "load", "metric", "value",
          "engine", "engine_version", "url", "source"]
GPU_FIELDS = ["gpu", "count", "tp", "dp", "ep"]
HOST_FORBIDDEN = ["gpu", "count", "tp", "dp", "ep", "pp"]


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def names(entries, with_aliases=True):
    out = {}
    for e in entries:
        out[str(e["name"])] = e
        if with_aliases:
            for a in e.get("aliases") or []:
                out[str(a)] = e
    return out


def precision_ok(prec, formats):
    if prec == "auto":  # the checkpoint's own format (e.g. gpt-oss MXFP4 experts)
        return True
    fmt = str(prec).split(":", 1)[0]
    return fmt in formats


def main(argv):
    path = argv[1] if len(argv) > 1 else os.path.join(DATA, "validation", "public_points.yaml")
    doc = load(path)
    gpus = names(load(os.path.join(DATA, "gpus.yaml"))["gpus"])
    hosts = names(load(os.path.join(DATA, "hosts.yaml"))["hosts"])
    formats = {f["name"] for f in load(os.path.join(DATA, "precisions.yaml"))["formats"]}
    models_dir = os.path.join(DATA, "models")

    problems = []
    seen = set()
    by = {k: collections.Counter() for k in ("engine", "vendor", "kind", "metric", "source")}
    latency_rows = 0

    for row in doc.get("points") or []:
        rid = row.get("id", "?")
        bad = lambda msg: problems.append(f"{rid}: {msg}")
        for f in COMMON:
            if f not in row:
                bad(f"missing field {f}")
        if rid in seen:
            bad("duplicate id")
        seen.add(rid)

        model = str(row.get("model", ""))
        if HELD_OUT.search(model):
            bad(f"model {model} is held out for acceptance (Llama 4)")
        if not os.path.isfile(os.path.join(models_dir, model, "config.json")):
            bad(f"no data/models/{model}/config.json")

        if "host" in row:
            kind = "host"
            host = hosts.get(str(row["host"]))
            if host is None:
                bad(f"host {row['host']} not in data/hosts.yaml")
                vendor = "?"
            else:
                vendor = "host-" + str(host.get("kind", "?"))
            for f in HOST_FORBIDDEN:
                if f in row:
                    bad(f"host row must not have {f}")
            if row.get("engine") != "llamacpp":
                bad("host rows are llama.cpp rows (engine llamacpp)")
        else:
            kind = "gpu"
            for f in GPU_FIELDS:
                if f not in row:
                    bad(f"missing field {f}")
            gpu = gpus.get(str(row.get("gpu")))
            if gpu is None:
                bad(f"gpu {row.get('gpu')} not in data/gpus.yaml (names or aliases)")
                vendor = "?"
            else:
                vendor = str(gpu.get("vendor", "?"))
            tp, dp, pp = row.get("tp", 1), row.get("dp", 1), row.get("pp", 1)
            if tp * dp * pp != row.get("count"):
                bad(f"tp*dp*pp = {tp * dp * pp} != count {row.get('count')}")

        if not precision_ok(row.get("precision"), formats):
            bad(f"precision {row.get('precision')} not in data/precisions.yaml")
        if row.get("engine") not in ENGINES:
            bad(f"engine {row.get('engine')} not one of {sorted(ENGINES)}")
        if not str(row.get("engine_version", "")).strip():
            bad("empty engine_version")
        url = str(row.get("url", ""))
        if not re.match(r"^https?://\S+$", url):
            bad(f"url is not a full address: {url!r}")
        load_kind = row.get("load")
        if load_kind not in LOADS:
            bad(f"load {load_kind} not one of {sorted(LOADS)}")
        if load_kind in ("closed", "static") and "concurrency" not in row:
            bad(f"load {load_kind} needs concurrency")
        if load_kind == "rate" and "request_rate" not in row:
            bad("load rate needs request_rate")
        metric = row.get("metric")
        if metric not in METRICS:
            bad(f"metric {metric} not one of {sorted(METRICS)}")
        if metric in LATENCY:
            latency_rows += 1
            if row.get("stat") not in STATS:
                bad(f"latency metric needs stat in {sorted(STATS)}")
        value = row.get("value")
        if not isinstance(value, (int, float)) or value <= 0:
            bad(f"value {value!r} is not a positive number")
        for f in ("input", "output"):
            if not isinstance(row.get(f), int) or row.get(f) < 1:
                bad(f"{f} must be a positive integer")

        by["engine"][row.get("engine")] += 1
        by["vendor"][vendor] += 1
        by["kind"][kind] += 1
        by["metric"][metric] += 1
        by["source"][row.get("source")] += 1

    for row in doc.get("excluded") or []:
        if "id" not in row or "reason" not in row:
            problems.append(f"excluded entry without id/reason: {row}")
        elif row["id"] in seen:
            problems.append(f"{row['id']}: listed both as a point and as excluded")

    total = len(doc.get("points") or [])
    print(f"points: {total}   excluded: {len(doc.get('excluded') or [])}   latency rows (ttft/tpot): {latency_rows}")
    for k, c in by.items():
        print(f"by {k}: " + ", ".join(f"{n} {v}" for n, v in sorted(c.items(), key=lambda x: (-x[1], str(x[0])))))
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  " + p)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
