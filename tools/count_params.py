#!/usr/bin/env python3
"""Count the parameters of each data/models/<name>/config.json with Hugging Face transformers.

The model is built from the local config on the "meta" device (inside
accelerate.init_empty_weights() when accelerate is installed), so no weights are
allocated or downloaded. Parameters are counted once each (tied tensors such as a
tied lm_head/embed_tokens are deduplicated by named_parameters()) and split into
module groups by parameter-name patterns.

Output: a table on stdout, tools/out/param_counts.json, and a copy of that JSON at
tests/fixtures/hf_param_counts.json (unless --no-fixture).

Usage:
    bash tools/setup_venv.sh                      # once
    tools/.venv/bin/python tools/count_params.py  # all models
    tools/.venv/bin/python tools/count_params.py --models llama4-maverick deepseek-v3
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import json
import re
import shutil
import sys
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO / "data" / "models"
OUT_DIR = REPO / "tools" / "out"
OUT_JSON = OUT_DIR / "param_counts.json"
FIXTURE_JSON = REPO / "tests" / "fixtures" / "hf_param_counts.json"

CATEGORIES = (
    "embeddings",
    "lm_head",
    "attention",
    "routed_experts",
    "shared_experts",
    "routers",
    "dense_mlp",
    "norms",
    "vision",
    "other",
)

# Config keys that describe weight storage, not architecture: removed before building so that
# the count is the unquantized, logical parameter count.
STRIP_KEYS = ("quantization_config", "compression_config")

_VISION_RE = re.compile(r"(^|\.)(vision_model|vision_tower|visual|multi_modal_projector|mm_projector)\.")
_PROJECTOR_RE = re.compile(r"(^|\.)(multi_modal_projector|mm_projector)\.")
_NORM_RE = re.compile(r"(norm|layernorm|ln_f|ln_\d)[^.]*\.(weight|bias)$")
_ROUTER_RE = re.compile(
    r"\.(mlp|feed_forward|block_sparse_moe)\.(gate|router)\.(weight|bias|e_score_correction_bias)$"
    r"|\.(router|gate)\.e_score_correction_bias$"
)
_SHARED_RE = re.compile(r"\.shared_experts?\.|\.shared_expert_gate\.")
_ROUTED_RE = re.compile(r"\.experts(\.|$)")
_ATTN_RE = re.compile(r"\.(self_attn|attention|attn)\.")
_MLP_RE = re.compile(r"\.(mlp|feed_forward|ffn)\.")


def classify(name: str) -> str:
    """Map a parameter name to one of CATEGORIES."""
    if _VISION_RE.search(name):
        return "vision"
    if name.endswith("lm_head.weight") or name.endswith("lm_head.bias"):
        return "lm_head"
    if "embed_tokens" in name or name.endswith("wte.weight"):
        return "embeddings"
    if _NORM_RE.search(name):
        return "norms"
    if _ROUTER_RE.search(name):
        return "routers"
    if _SHARED_RE.search(name):
        return "shared_experts"
    if _ROUTED_RE.search(name):
        return "routed_experts"
    if _ATTN_RE.search(name):
        return "attention"
    if _MLP_RE.search(name):
        return "dense_mlp"
    return "other"


def _text_cfg(cfg: dict) -> dict:
    return cfg.get("text_config") or cfg


def routing_info(cfg: dict) -> dict:
    """Routed experts per MoE layer and experts selected per token, read from the raw config."""
    t = _text_cfg(cfg)
    n_experts = t.get("num_local_experts") or t.get("num_experts") or t.get("n_routed_experts") or 0
    top_k = t.get("num_experts_per_tok") or t.get("experts_per_token") or t.get("num_experts_per_token") or 0
    return {"routed_experts_per_layer": int(n_experts), "experts_per_token": int(top_k)}


def load_config_dict(path: Path) -> tuple[dict, dict, list[str]]:
    """Return (raw config, config used to build, notes)."""
    raw = json.loads(path.read_text())
    cfg = copy.deepcopy(raw)
    notes = []
    for key in STRIP_KEYS:
        for holder, where in ((cfg, ""), (cfg.get("text_config") or {}, "text_config.")):
            if key in holder:
                method = holder[key].get("quant_method") or holder[key].get("format") or "?"
                del holder[key]
                notes.append(f"removed {where}{key} (quant_method={method}) before building: logical (unquantized) count")
    cfg.pop("auto_map", None)  # use the transformers implementation, never remote code
    return raw, cfg, notes


def build_config(cfg: dict):
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = cfg["model_type"]
    if model_type not in CONFIG_MAPPING:
        raise RuntimeError(f"model_type {model_type!r} is not known to this transformers version")
    kwargs = {k: v for k, v in cfg.items() if k != "model_type"}
    return AutoConfig.for_model(model_type, **kwargs)


def pick_model_class(config, cfg: dict):
    import transformers

    archs = cfg.get("architectures") or []
    for arch in archs:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM


@contextlib.contextmanager
def empty_weights():
    """accelerate.init_empty_weights() plus a torch "meta" default device.

    init_empty_weights() alone moves parameters to meta only when they are registered, after
    torch.empty() has already allocated them on the CPU; fused expert tensors (e.g. 256 experts x
    7168 x 4096) would need tens of GB. The meta default device makes every factory call lazy.
    """
    import torch

    try:
        from accelerate import init_empty_weights
    except ImportError:  # pragma: no cover - accelerate is in requirements.txt
        with torch.device("meta"):
            yield "torch.device('meta')"
        return
    with init_empty_weights(include_buffers=True), torch.device("meta"):
        yield "accelerate.init_empty_weights(include_buffers=True) + torch.device('meta')"


def count_model(name: str, path: Path) -> dict:
    import torch
    import transformers

    raw, cfg, notes = load_config_dict(path)
    result: dict = {
        "name": name,
        "config": str(path.relative_to(REPO)),
        "model_type": raw.get("model_type"),
        "architectures": raw.get("architectures"),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "supported": False,
        "notes": notes,
    }
    result.update(routing_info(raw))

    t = _text_cfg(raw)
    mtp = t.get("num_nextn_predict_layers") or 0
    if mtp:
        result["notes"].append(
            f"config has num_nextn_predict_layers={mtp}; transformers does not build the MTP "
            "(next-token-prediction) module, so its parameters are NOT in this count"
        )

    try:
        config = build_config(cfg)
        cls = pick_model_class(config, cfg)
        with empty_weights() as how:
            model = cls(config) if not hasattr(cls, "from_config") else cls.from_config(config)
        result["model_class"] = type(model).__name__
        result["built_with"] = how
    except Exception as exc:  # record, keep going with the other models
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=3)
        return result

    split = {c: 0 for c in CATEGORIES}
    examples: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    vision_projector = 0
    total = 0
    for pname, p in model.named_parameters():  # remove_duplicate=True: tied tensors appear once
        n = p.numel()
        total += n
        cat = classify(pname)
        split[cat] += n
        if cat == "vision" and _PROJECTOR_RE.search(pname):
            vision_projector += n
        if len(examples[cat]) < 4:
            examples[cat].append(pname)

    # Tied embeddings: named_parameters() deduplicates, so a tied lm_head is not listed at all.
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    text_cfg = getattr(config, "text_config", None) or getattr(config, "get_text_config", lambda: config)()
    tied = tied or bool(getattr(text_cfg, "tie_word_embeddings", False))
    all_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    lm_head_shared = any(n.endswith("lm_head.weight") for n in all_names) and split["lm_head"] == 0
    if lm_head_shared:
        result["notes"].append("lm_head.weight is tied to embed_tokens.weight: counted once (under embeddings)")

    buffers = {n: b.numel() for n, b in model.named_buffers() if "e_score_correction_bias" in n}
    if buffers:
        result["notes"].append(
            f"{len(buffers)} e_score_correction_bias tensors ({sum(buffers.values())} values) are buffers in "
            "transformers, not parameters: not counted"
        )
        result["router_bias_buffers"] = sum(buffers.values())

    result["supported"] = True
    result["total_params"] = total
    result["split"] = split
    result["text_params"] = total - split["vision"]
    result["vision_projector_params"] = vision_projector
    result["tie_word_embeddings"] = tied
    result["lm_head_tied_to_embeddings"] = lm_head_shared
    result["example_names"] = {c: v for c, v in examples.items() if v}

    # Derived per-token active count (text only, incl. input embedding and lm_head):
    # all non-routed text params + routed experts * top_k / n_experts.
    e, k = result["routed_experts_per_layer"], result["experts_per_token"]
    if e and k:
        routed_active = split["routed_experts"] * k // e
        result["active_params_derived"] = result["text_params"] - split["routed_experts"] + routed_active
        result["active_params_derived_scope"] = (
            "text only; counts input embedding and lm_head; routed experts scaled by experts_per_token/routed_experts"
        )
    del model
    return result


def fmt(n) -> str:
    return "-" if n in (None, 0) else f"{n:,}"


def print_table(results: list[dict]) -> None:
    cols = ("name", "total") + CATEGORIES
    widths = [16, 17] + [15] * len(CATEGORIES)
    print(" ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cols, widths))))
    for r in results:
        if not r.get("supported"):
            print(r["name"].ljust(widths[0]), "NOT BUILT:", r.get("error", "?"))
            continue
        cells = [r["name"].ljust(widths[0]), fmt(r["total_params"]).rjust(widths[1])]
        cells += [fmt(r["split"][c]).rjust(w) for c, w in zip(CATEGORIES, widths[2:])]
        print(" ".join(cells))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="subset of data/models/<name> to count (default: all)")
    ap.add_argument("--out", type=Path, default=OUT_JSON)
    ap.add_argument("--no-fixture", action="store_true", help="do not copy the JSON to tests/fixtures/")
    args = ap.parse_args(argv)

    names = args.models or sorted(p.parent.name for p in MODELS_DIR.glob("*/config.json"))
    results = []
    for name in names:
        path = MODELS_DIR / name / "config.json"
        if not path.is_file():
            print(f"missing {path}", file=sys.stderr)
            return 2
        print(f"building {name} ...", file=sys.stderr, flush=True)
        results.append(count_model(name, path))

    print_table(results)

    import torch
    import transformers

    doc = {
        "generated_by": "tools/count_params.py",
        "generated_on": _dt.date.today().isoformat(),
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "categories": list(CATEGORIES),
        "method": (
            "model built from data/models/<name>/config.json on the meta device; quantization_config removed first; "
            "parameters counted once each via named_parameters() (tied tensors deduplicated); "
            "split by parameter-name patterns in tools/count_params.py:classify()"
        ),
        "models": {r["name"]: {k: v for k, v in r.items() if k != "traceback"} for r in results},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if not args.no_fixture and not args.models:
        FIXTURE_JSON.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out, FIXTURE_JSON)
        print(f"copied to {FIXTURE_JSON}", file=sys.stderr)
    failed = [r["name"] for r in results if not r.get("supported")]
    if failed:
        print("not built: " + ", ".join(failed), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
