#!/usr/bin/env python3
"""Oracle fixtures for moeplan's CPU executor, produced by Hugging Face transformers itself.

For each case a tiny text-only MoE model is built from a config with seeded random weights, every floating weight
is rounded to BF16 (and kept in fp32 holding that exact value), the model runs in float32 with eager attention,
and tests/fixtures/oracle/<case>/ receives:

  config.json            written by transformers' save_pretrained
  generation_config.json written by transformers' save_pretrained (no sampling settings; kept as written)
  model.safetensors      written by transformers' save_pretrained, weights in BF16
  expected.json          prompt ids, logits at every prompt position, greedy continuation (generate, use_cache=True),
                         logits of the last greedy step, versions, notes and the checks this script ran

The mixtral case is MixtralForCausalLM with a sliding window (6 tokens) shorter than the prompt; its experts are saved
in the Hub layout (block_sparse_moe.experts.<e>.w1/w2/w3).

The llama4_fp8 case re-writes the llama4_qknorm weights in the layout of Meta's compressed-tensors FP8 checkpoint
(routed experts unfused, F8_E4M3 weights with a per-output-channel scale); its config.json and model.safetensors
are written by this script (transformers cannot save that layout), its expected logits come from transformers
running the dequantised weights in fp32.

Every case is verified before its files are written: reload from disk (from_pretrained) reproduces the recorded
logits exactly, generate() with the KV cache agrees with a full forward pass, router and greedy decisions have a
margin (no near-ties that would make an fp32 re-implementation flip a choice), for llama4_qknorm the chunked
mask, temperature tuning, qk-norm, llama3 rope scaling and the NoPE layer each change the logits, and for mixtral
the sliding window (on/off, and its length by one) and rope_theta each change them. After writing,
spec_forward (a plain re-implementation of the formulas in tests/fixtures/oracle/README.md that reads only the
written files) must reproduce every case.

Run:  tools/.venv/bin/python tools/make_oracle_fixtures.py            (all cases)
      tools/.venv/bin/python tools/make_oracle_fixtures.py --cases qwen3_moe --out /tmp/oracle
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (
    Llama4ForCausalLM,
    Llama4TextConfig,
    MixtralConfig,
    MixtralForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "oracle"

PROMPT_LEN = 20
GREEDY_TOKENS = 8
# A router or greedy decision closer than this (in logit units) is a near-tie: an fp32 re-implementation that sums
# in another order could pick differently. Seeds whose fixture has one are skipped (the next seed is tried).
MIN_DECISION_MARGIN = 2e-3
MAX_SEED_TRIES = 50

FP8_E4M3_MAX = 448.0


# ----------------------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------------------

def llama4_config(use_qk_norm: bool, no_rope_layers: list[int], rope_parameters: dict) -> Llama4TextConfig:
    """Tiny Llama 4 text config. Layers 1 and 3 are MoE (interleave step 2), chunk 8, temperature tuning strong."""
    return Llama4TextConfig(
        vocab_size=200,  # not a multiple of 16: catches vector-tail bugs in the lm_head / argmax
        hidden_size=64,
        intermediate_size=32,  # routed experts and the shared expert
        intermediate_size_mlp=64,  # dense layers 0 and 2
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=4,
        num_experts_per_tok=1,
        interleave_moe_layer_step=2,
        no_rope_layers=no_rope_layers,
        attention_chunk_size=8,
        use_qk_norm=use_qk_norm,
        attn_temperature_tuning=True,
        floor_scale=4,  # scale = 1 + 0.1 * ln(1 + floor((p + 1) / 4)): > 1 from position 3 on
        attn_scale=0.1,
        rope_parameters=rope_parameters,
        rms_norm_eps=1e-5,
        max_position_embeddings=4096,
        bos_token_id=None,
        eos_token_id=None,  # no EOS: generate() must run the full GREEDY_TOKENS steps
        pad_token_id=None,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )


def qwen3_moe_config() -> Qwen3MoeConfig:
    """Tiny Qwen3-MoE config: all layers MoE, 8 experts, top-2 renormalised; head_dim * heads != hidden."""
    return Qwen3MoeConfig(
        vocab_size=200,
        hidden_size=48,
        intermediate_size=64,  # dense MLP size, unused: every layer is MoE
        moe_intermediate_size=16,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,  # q_proj is [64, 48]: a loader that assumes hidden / heads fails
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        rms_norm_eps=1e-6,
        max_position_embeddings=4096,
        use_sliding_window=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )


# Shorter than the prompt (20 tokens): every position from 6 on has keys outside the window, so a missing window,
# a window one too long or short, or chunks aligned to position 0 instead of a window all change the logits.
MIXTRAL_SLIDING_WINDOW = 6


def mixtral_config() -> MixtralConfig:
    """Tiny Mixtral config: every layer MoE, 8 experts, top-2 renormalised, sliding-window attention, head_dim
    derived from hidden / heads (head_dim unset, as in the Hub Mixtral configs)."""
    return MixtralConfig(
        vocab_size=200,
        hidden_size=64,
        intermediate_size=16,  # the experts' intermediate size (Mixtral has no dense MLP)
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=None,  # 64 / 4 = 16
        num_local_experts=8,
        num_experts_per_tok=2,
        sliding_window=MIXTRAL_SLIDING_WINDOW,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},  # Mixtral-8x7B's theta
        rms_norm_eps=1e-5,
        max_position_embeddings=4096,
        router_jitter_noise=0.0,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )


# llama3 rope scaling chosen so that all three branches occur at head_dim 16, theta 5e5: wavelengths
# 2*pi/inv_freq are 6.3 (< 64/4: kept), 32.4 (between 16 and 64: smoothed) and >= 167 (> 64: divided by 8).
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}
DEFAULT_ROPE = {"rope_type": "default", "rope_theta": 500000.0}

CASES = {
    "llama4_qknorm": dict(
        seed=1001,
        description="Llama 4 text (Scout-like): qk-norm on RoPE layers, llama3 rope scaling, NoPE layer 3 "
        "(global attention + temperature tuning), chunked attention (chunk 8) on layers 0-2, MoE on layers 1 and 3.",
        build=lambda: llama4_config(True, [1, 1, 1, 0], LLAMA3_ROPE),
    ),
    "llama4_noqknorm": dict(
        seed=2002,
        description="Llama 4 text (Maverick-like): no qk-norm, no rope scaling, NoPE layers 0 (dense) and 3 (MoE), "
        "chunked attention (chunk 8) on layers 1 and 2, MoE on layers 1 and 3.",
        build=lambda: llama4_config(False, [0, 1, 1, 0], DEFAULT_ROPE),
    ),
    "qwen3_moe": dict(
        seed=3003,
        description="Qwen3-MoE: 4 MoE layers, 8 experts, top-2 with norm_topk_prob, per-head q/k RMSNorm before "
        "half-split RoPE, head_dim 16 with 4 heads on hidden 48.",
        build=qwen3_moe_config,
    ),
    "mixtral": dict(
        seed=4004,
        description="Mixtral: 3 MoE layers, 8 experts, top-2 softmax renormalised, no shared expert, no q/k norm, "
        f"half-split RoPE (theta 1e6), sliding-window attention (window {MIXTRAL_SLIDING_WINDOW}), head_dim "
        "derived from hidden / heads.",
        build=mixtral_config,
    ),
}
FP8_CASE = "llama4_fp8"
FP8_SOURCE_CASE = "llama4_qknorm"
ALL_CASES = list(CASES) + [FP8_CASE]


MODEL_CLASSES = {"llama4_text": Llama4ForCausalLM, "qwen3_moe": Qwen3MoeForCausalLM, "mixtral": MixtralForCausalLM}
# The router module of each family and where its forward output holds the raw router logits.
ROUTERS = {"llama4_text": ("Llama4Router", 1), "qwen3_moe": ("Qwen3MoeTopKRouter", 0), "mixtral": ("MixtralTopKRouter", 0)}


def model_class(config):
    return MODEL_CLASSES[config.model_type]


# ----------------------------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------------------------

def init_weights_(model: torch.nn.Module, seed: int) -> None:
    """Seeded random weights with unit-scale activations.

    transformers' own init (std 0.02, norms = 1) gives near-uniform attention, router logits near 0 and flat output
    logits: a fixture built on it would not notice a wrong mask, a missing norm weight or a swapped router. Here
    every tensor is drawn from one generator in sorted-name order, linear weights with std 1/sqrt(fan_in), q/k
    projections and the router and lm_head with a larger gain, and norm weights around 1 (not exactly 1).
    """
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            shape = tuple(p.shape)
            if name.endswith("norm.weight"):
                value = 1.0 + 0.25 * torch.randn(shape, generator=gen)
            elif name.endswith("embed_tokens.weight"):
                value = torch.randn(shape, generator=gen)
            elif name.endswith("experts.gate_up_proj") and p.dim() == 3 and isinstance(model, Llama4ForCausalLM):
                value = torch.randn(shape, generator=gen) / math.sqrt(shape[1])  # [E, hidden, 2I]: fan_in = hidden
            elif name.endswith("experts.down_proj") and p.dim() == 3 and isinstance(model, Llama4ForCausalLM):
                value = torch.randn(shape, generator=gen) / math.sqrt(shape[1])  # [E, I, hidden]: fan_in = I
            elif p.dim() == 3:  # Qwen3-MoE / Mixtral experts in memory: gate_up [E, 2I, hidden], down [E, hidden, I]
                value = torch.randn(shape, generator=gen) / math.sqrt(shape[2])
            elif p.dim() == 2:  # nn.Linear [out, in]
                gain = 1.0
                if name.endswith(("q_proj.weight", "k_proj.weight")):
                    gain = 1.5
                elif name.endswith(("router.weight", "mlp.gate.weight")):
                    gain = 2.0
                elif name.endswith("lm_head.weight"):
                    gain = 2.0
                value = gain * torch.randn(shape, generator=gen) / math.sqrt(shape[1])
            else:
                raise RuntimeError(f"no init rule for parameter {name} {shape}")
            p.copy_(value)


def round_to_bf16_(model: torch.nn.Module) -> None:
    """Every floating weight becomes exactly representable in BF16 (kept in fp32)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


def make_prompt(seed: int, vocab_size: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed + 17)
    return torch.randint(0, vocab_size, (PROMPT_LEN,), generator=gen).tolist()


# ----------------------------------------------------------------------------------------------------------------
# Running the oracle
# ----------------------------------------------------------------------------------------------------------------

def router_logits_of(model: torch.nn.Module, ids: torch.Tensor) -> list[torch.Tensor]:
    """Router logits [tokens, experts] of every MoE layer for one full forward over ids [1, T]."""
    captured: list[torch.Tensor] = []

    # Llama4Router returns (scores, logits); Qwen3MoeTopKRouter and MixtralTopKRouter return (logits, weights, indices).
    router_type, logits_at = ROUTERS[model.config.model_type]

    def hook(_module, _inputs, output):
        captured.append(output[logits_at].detach().clone())

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m).__name__ == router_type]
    try:
        with torch.no_grad():
            model(ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return captured


def expert_use_counts(model: torch.nn.Module, prompt: list[int]) -> list[list[int]]:
    """For each MoE layer, how many prompt tokens select each expert (top-k of the router logits)."""
    k = model.config.num_experts_per_tok
    counts = []
    for logits in router_logits_of(model, torch.tensor([prompt], dtype=torch.long)):
        chosen = torch.topk(logits, k, dim=-1).indices.flatten()
        counts.append(torch.bincount(chosen, minlength=logits.shape[-1]).tolist())
    return counts


def topk_margin(logits: torch.Tensor, k: int) -> float:
    """Smallest gap between the k-th and (k+1)-th largest value over the rows of logits [rows, n]."""
    top = torch.topk(logits, k + 1, dim=-1).values
    return float((top[:, k - 1] - top[:, k]).min())


def run_oracle(model: torch.nn.Module, prompt: list[int]) -> dict:
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits[0]  # [PROMPT_LEN, vocab]
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=GREEDY_TOKENS,
            use_cache=True,
            output_logits=True,
            return_dict_in_generate=True,
        )
    greedy = out.sequences[0, len(prompt):].tolist()
    step_logits = torch.stack([s[0] for s in out.logits])  # [GREEDY_TOKENS, vocab], raw (no processors)
    if len(greedy) != GREEDY_TOKENS:
        raise RuntimeError(f"generate returned {len(greedy)} tokens, expected {GREEDY_TOKENS}")
    if step_logits.argmax(-1).tolist() != greedy:
        raise RuntimeError("generate's tokens are not the argmax of its logits (a logits processor interfered)")

    # The same sequence in one forward pass without a cache: position PROMPT_LEN - 1 + i predicts greedy[i].
    full_ids = out.sequences[:, : len(prompt) + GREEDY_TOKENS - 1]
    with torch.no_grad():
        full_logits = model(full_ids, use_cache=False).logits[0]
    full_steps = full_logits[len(prompt) - 1:]
    cache_vs_full = float((full_steps - step_logits).abs().max())
    prefill_vs_full = float((full_logits[: len(prompt)] - logits).abs().max())

    k = model.config.num_experts_per_tok
    router_margin = min(topk_margin(r, k) for r in router_logits_of(model, full_ids))
    greedy_margin = topk_margin(step_logits, 1)
    return dict(
        logits=logits,
        greedy=greedy,
        step_logits=step_logits,
        cache_vs_full_max_abs_diff=cache_vs_full,
        prefill_vs_full_max_abs_diff=prefill_vs_full,
        min_router_margin=router_margin,
        min_greedy_margin=greedy_margin,
        expert_use_counts=expert_use_counts(model, prompt),
    )


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def variant_logits(model: torch.nn.Module, prompt: list[int], **changes) -> tuple[torch.Tensor, list[int]]:
    """Logits and greedy tokens of the same weights under a config with some fields changed."""
    config = copy.deepcopy(model.config)
    for key, value in changes.items():
        setattr(config, key, value)
    if "no_rope_layers" in changes:
        config.layer_types = ["chunked_attention" if r else "full_attention" for r in config.no_rope_layers]
    variant = model_class(config)(config).eval()
    variant.load_state_dict(model.state_dict())
    return run_oracle_light(variant, prompt)


def run_oracle_light(model: torch.nn.Module, prompt: list[int]) -> tuple[torch.Tensor, list[int]]:
    ids = torch.tensor([prompt], dtype=torch.long)
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits[0]
        seq = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=GREEDY_TOKENS, use_cache=True)
    return logits, seq[0, len(prompt):].tolist()


def sensitivity_checks(model: torch.nn.Module, prompt: list[int], ref: dict) -> dict:
    """How much each feature (Llama 4's, Mixtral's) moves the logits of this fixture (0 would mean the fixture cannot
    test it)."""
    cfg = model.config
    if cfg.model_type == "mixtral":
        window = cfg.sliding_window
        variants = {
            f"sliding_window_{window}_off": dict(sliding_window=None),
            f"sliding_window_{window}_to_{window + 1}": dict(sliding_window=window + 1),
            "rope_theta_1e6_to_1e4": dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        }
    else:
        variants = {
            "attention_chunk_size_8_to_4096": dict(attention_chunk_size=4096),
            "attn_temperature_tuning_off": dict(attn_temperature_tuning=False),
            "use_qk_norm_flipped": dict(use_qk_norm=not cfg.use_qk_norm),
            "no_nope_layers": dict(no_rope_layers=[1] * cfg.num_hidden_layers),
        }
    if cfg.rope_parameters.get("rope_type") == "llama3":
        variants["rope_scaling_off"] = dict(rope_parameters={"rope_type": "default",
                                                             "rope_theta": cfg.rope_parameters["rope_theta"]})
    report = {}
    for name, changes in variants.items():
        logits, greedy = variant_logits(model, prompt, **changes)
        report[name] = {
            "prompt_logits_max_abs_diff": max_abs_diff(logits, ref["logits"]),
            "greedy_changed": greedy != ref["greedy"],
        }
        if report[name]["prompt_logits_max_abs_diff"] < 1e-3:
            raise RuntimeError(f"feature check {name}: logits moved only "
                               f"{report[name]['prompt_logits_max_abs_diff']:.3g}; the fixture would not test it")
    return report


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------

def fmt_float(x: float) -> str:
    """9 significant digits: enough to round-trip any float32 exactly."""
    s = format(float(x), ".9g")
    if s in ("nan", "inf", "-inf"):
        raise RuntimeError("non-finite value in a fixture")
    return s


def float_list(values) -> str:
    return "[" + ", ".join(fmt_float(v) for v in values) + "]"


def compact_json(value, depth: int) -> str:
    """json.dumps with indent 2, except that a list of numbers stays on one line."""
    pad = "  " * depth
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{pad}  {json.dumps(k)}: {compact_json(v, depth + 1)}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (list, dict, str)) for v in value):
        items = [f"{pad}  {compact_json(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value)


def write_expected(path: Path, fields: dict) -> None:
    """JSON with one logits row per line; floats as %.9g. Key order is fixed by the caller."""
    lines = ["{"]
    items = list(fields.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        if key == "logits":
            rows = [f"    {float_list(row)}" for row in value.tolist()]
            lines.append(f'  "logits": [\n' + ",\n".join(rows) + f"\n  ]{comma}")
        elif key == "greedy_logits_last":
            lines.append(f'  "{key}": {float_list(value.tolist())}{comma}')
        else:
            lines.append(f'  "{key}": {compact_json(value, 1)}{comma}')
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    json.loads(path.read_text())  # must parse


def round_floats(obj, digits: int = 6):
    """Check figures in expected.json are rounded so that re-runs stay byte-identical across tiny libm changes."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [round_floats(v, digits) for v in obj]
    return obj


def versions() -> dict:
    return {"transformers_version": transformers.__version__, "torch_version": torch.__version__}


# ----------------------------------------------------------------------------------------------------------------
# BF16 cases
# ----------------------------------------------------------------------------------------------------------------

def build_case(name: str):
    """Model, prompt, oracle result and seed; tries seeds until no decision is a near-tie."""
    spec = CASES[name]
    for attempt in range(MAX_SEED_TRIES):
        seed = spec["seed"] + attempt
        torch.manual_seed(seed)
        config = spec["build"]()
        model = model_class(config)(config).eval()
        init_weights_(model, seed)
        round_to_bf16_(model)
        prompt = make_prompt(seed, config.vocab_size)
        result = run_oracle(model, prompt)
        near_tie = min(result["min_router_margin"], result["min_greedy_margin"]) < MIN_DECISION_MARGIN
        unused_expert = any(0 in layer for layer in result["expert_use_counts"])
        if not near_tie and not unused_expert:
            return model, prompt, result, seed
        print(f"  {name}: seed {seed} skipped (router margin {result['min_router_margin']:.2g}, greedy margin "
              f"{result['min_greedy_margin']:.2g}, expert use {result['expert_use_counts']})")
    raise RuntimeError(f"{name}: no usable seed in {MAX_SEED_TRIES} tries")


def reload_check(case_dir: Path, cls, prompt: list[int], ref: dict) -> dict:
    reloaded = cls.from_pretrained(case_dir, dtype=torch.float32, attn_implementation="eager").eval()
    logits, greedy = run_oracle_light(reloaded, prompt)
    diff = max_abs_diff(logits, ref["logits"])
    if diff != 0.0 or greedy != ref["greedy"]:
        raise RuntimeError(f"{case_dir.name}: reloaded model differs (max |diff| {diff}, greedy {greedy})")
    return {"reload_prompt_logits_max_abs_diff": diff, "reload_greedy_equal": True}


def save_bf16(model: torch.nn.Module, case_dir: Path) -> None:
    case_dir.mkdir(parents=True, exist_ok=True)
    for stale in case_dir.iterdir():
        if stale.is_file():
            stale.unlink()
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    bf16.save_pretrained(case_dir, safe_serialization=True)


def notes_for(name: str, config) -> list[str]:
    common = [
        "Weights: seeded random (own init, see tools/make_oracle_fixtures.py init_weights_), rounded to BF16; the "
        "oracle ran in float32 (eager attention) on exactly those values, so a BF16 -> fp32 loader sees the same "
        "weights the oracle saw.",
        f"logits[i] are the next-token logits after prompt[0..i] (one forward pass, no cache), {PROMPT_LEN} rows "
        f"x vocab {config.vocab_size}.",
        f"greedy: {GREEDY_TOKENS} tokens from model.generate(do_sample=False, use_cache=True); no EOS is "
        "configured, so all steps run. greedy_logits_last: raw logits of the last step (the ones whose argmax "
        f"is greedy[{GREEDY_TOKENS - 1}]), i.e. after feeding prompt + greedy[0..{GREEDY_TOKENS - 2}] "
        f"(sequence position {PROMPT_LEN + GREEDY_TOKENS - 2}).",
        "checks.min_router_margin / min_greedy_margin: smallest gap between the k-th and (k+1)-th router logit "
        "(over all MoE layers and all prompt+greedy tokens) and between the top-2 logits of the greedy steps; "
        f"seeds with a gap below {MIN_DECISION_MARGIN} were skipped, so a correct fp32 implementation makes the "
        "same choices. Seeds where some expert of some MoE layer serves no prompt token were skipped too "
        "(checks.expert_use_counts_prompt: tokens per expert, per MoE layer), so every expert's weights matter.",
        "Floats are written with 9 significant digits (exact float32 round trip).",
    ]
    if name.startswith("llama4"):
        common.append(
            "config.json is transformers 5 style: rope_parameters (not rope_theta/rope_scaling), explicit "
            "no_rope_layers (1 = RoPE + chunked attention, 0 = NoPE + global attention + temperature tuning), "
            "layer_types, moe_layers, dtype (not torch_dtype).")
    elif name == "mixtral":
        common.append(
            "config.json is transformers 5 style: rope_parameters (not rope_theta), dtype (not torch_dtype); "
            "head_dim is null (derived: hidden_size / num_attention_heads), as in the Hub Mixtral configs. "
            "model.safetensors holds the routed experts in the Hub Mixtral layout: "
            "block_sparse_moe.experts.<e>.w1 (gate) / w3 (up) [intermediate, hidden] and w2 (down) [hidden, "
            "intermediate], router block_sparse_moe.gate.weight [experts, hidden] (transformers 5 renames "
            "block_sparse_moe to mlp and fuses the experts in memory, and writes this layout back on save).")
        common.append(
            f"sliding_window {config.sliding_window}: query position p sees keys j with p - "
            f"{config.sliding_window} < j <= p (the window includes the query itself), on every layer. "
            "checks.feature_sensitivity: the same weights with the window off, one longer, and rope_theta 1e4 "
            "instead of 1e6.")
    else:
        common.append(
            "config.json is transformers 5 style: rope_parameters (not rope_theta), num_local_experts (transformers "
            "5 writes this name; Hub Qwen3-MoE configs say num_experts), dtype (not torch_dtype). "
            "model.safetensors holds routed experts unfused per expert "
            "(mlp.experts.<e>.{gate,up,down}_proj.weight, [out, in]), as Hub Qwen3-MoE checkpoints do.")
    return common


def make_bf16_case(name: str, out_dir: Path) -> dict:
    print(f"[{name}]")
    model, prompt, result, seed = build_case(name)
    cfg = model.config
    checks = {
        "min_router_margin": result["min_router_margin"],
        "min_greedy_margin": result["min_greedy_margin"],
        "generate_cache_vs_full_forward_max_abs_diff": result["cache_vs_full_max_abs_diff"],
        "prompt_logits_vs_longer_forward_max_abs_diff": result["prefill_vs_full_max_abs_diff"],
        "expert_use_counts_prompt": result["expert_use_counts"],
    }
    if name.startswith("llama4") or name == "mixtral":
        checks["feature_sensitivity"] = sensitivity_checks(model, prompt, result)
    case_dir = out_dir / name
    save_bf16(model, case_dir)
    checks.update(reload_check(case_dir, model_class(cfg), prompt, result))
    fields = {
        "case": name,
        "description": CASES[name]["description"],
        "seed": seed,
        "prompt": prompt,
        "logits": result["logits"],
        "greedy": result["greedy"],
        "greedy_logits_last": result["step_logits"][-1],
        **versions(),
        "notes": notes_for(name, cfg),
        "checks": round_floats(checks),
    }
    write_expected(case_dir / "expected.json", fields)
    print(json.dumps(round_floats(checks), indent=2))
    return {"model": model, "prompt": prompt, "result": result, "seed": seed}


# ----------------------------------------------------------------------------------------------------------------
# FP8 case: llama4_qknorm weights in the layout of Meta's Llama-4-Maverick-17B-128E-Instruct-FP8
# ----------------------------------------------------------------------------------------------------------------

# Modelled on the checkpoint's quantization_config: weights FP8 E4M3, static, symmetric, one scale per output
# channel (minmax observer); input activations FP8 E4M3, dynamic, one scale per token (vLLM issue #16474 prints
# these two QuantizationArgs for this checkpoint). The ignore list keeps everything but the routed experts in
# BF16, as the checkpoint does; its exact spelling on the Hub was not available here (see README).
FP8_QUANTIZATION_CONFIG = {
    "config_groups": {
        "group_0": {
            "input_activations": {
                "actorder": None, "block_structure": None, "dynamic": True, "group_size": None, "num_bits": 8,
                "observer": None, "observer_kwargs": {}, "strategy": "token", "symmetric": True, "type": "float",
            },
            "output_activations": None,
            "targets": ["Linear"],
            "weights": {
                "actorder": None, "block_structure": None, "dynamic": False, "group_size": None, "num_bits": 8,
                "observer": "minmax", "observer_kwargs": {}, "strategy": "channel", "symmetric": True,
                "type": "float",
            },
        }
    },
    "format": "float-quantized",
    "global_compression_ratio": None,
    "ignore": [
        "re:.*self_attn.*",
        "re:.*router.*",
        "re:.*shared_expert.*",
        "re:.*feed_forward\\.(gate|up|down)_proj$",
        "re:.*vision_model.*",
        "re:.*multi_modal_projector.*",
        "language_model.lm_head",
    ],
    "kv_cache_scheme": None,
    "quant_method": "compressed-tensors",
    "quantization_status": "compressed",
}


def quantize_fp8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w: [out, in] fp32 -> (q: [out, in] float8_e4m3fn, scale: [out, 1] bf16) with w ~= q * scale.

    scale = max|w_row| / 448 (symmetric minmax), rounded to BF16 first; q = round_to_e4m3(w / scale) computed with
    the BF16-rounded scale, so dequantisation q.float() * scale.float() is what a loader must reproduce.
    """
    amax = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
    scale = (amax / FP8_E4M3_MAX).to(torch.bfloat16)
    q = (w / scale.float()).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale


def compressed_tensors_crosscheck(case_dir: Path, prompt: list[int], result: dict) -> dict:
    """Load the FP8 fixture with transformers' own compressed-tensors support and compare with the recorded logits.

    Llama4ForConditionalGeneration needs a vision_config, so the check runs on a temporary copy whose config.json
    gains a one-layer vision tower (its weights are absent and randomly initialised; text logits do not use them).
    Run twice: as written (W8A8: compressed-tensors also quantises each expert input per token to FP8) and with
    input_activations removed (weight-only), which must reproduce the recorded logits exactly.
    """
    try:
        import compressed_tensors  # noqa: F401  (transformers imports it itself; fail early with a clear message)
    except ImportError as err:
        raise RuntimeError("the llama4_fp8 case needs the compressed-tensors package "
                           "(tools/requirements.txt; bash tools/setup_venv.sh)") from err
    from transformers import Llama4ForConditionalGeneration

    report = {}
    for mode in ("weight_only", "w8a8_as_configured"):
        with tempfile.TemporaryDirectory() as tmp:
            tmp_dir = Path(tmp)
            config = json.loads((case_dir / "config.json").read_text())
            config["vision_config"] = {
                "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                "image_size": 28, "patch_size": 14, "vision_output_dim": 32, "projector_input_dim": 32,
                "projector_output_dim": 32, "pixel_shuffle_ratio": 0.5,
            }
            if mode == "weight_only":
                config["quantization_config"]["config_groups"]["group_0"]["input_activations"] = None
            (tmp_dir / "config.json").write_text(json.dumps(config))
            os.symlink(case_dir.resolve() / "model.safetensors", tmp_dir / "model.safetensors")
            model = Llama4ForConditionalGeneration.from_pretrained(
                tmp_dir, dtype=torch.float32, attn_implementation="eager").eval()
            quantized = sorted(n for n, m in model.named_modules() if getattr(m, "quantization_scheme", None))
            expected_quantized = sorted(
                f"language_model.model.layers.{layer}.feed_forward.experts.{e}.{proj}"
                for layer in model.config.text_config.moe_layers
                for e in range(model.config.text_config.num_local_experts)
                for proj in ("gate_proj", "up_proj", "down_proj"))
            if quantized != expected_quantized:
                raise RuntimeError(f"compressed-tensors quantised {quantized}, expected the routed experts only")
            ids = torch.tensor([prompt], dtype=torch.long)
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0]
                seq = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                     max_new_tokens=GREEDY_TOKENS, use_cache=True)
            report[mode] = {
                "prompt_logits_max_abs_diff": max_abs_diff(logits, result["logits"]),
                "greedy_equal": seq[0, len(prompt):].tolist() == result["greedy"],
            }
    if report["weight_only"]["prompt_logits_max_abs_diff"] != 0.0 or not report["weight_only"]["greedy_equal"]:
        raise RuntimeError(f"transformers + compressed-tensors disagree with the fixture: {report}")
    return report


def make_fp8_case(source: dict, out_dir: Path) -> None:
    print(f"[{FP8_CASE}]")
    src_model: Llama4ForCausalLM = source["model"]
    prompt = source["prompt"]
    text_cfg = src_model.config
    inter = text_cfg.intermediate_size

    tensors: dict[str, torch.Tensor] = {}
    deq_state = {}
    for key, value in src_model.state_dict().items():
        if key.endswith("feed_forward.experts.gate_up_proj"):
            prefix = key[: -len("gate_up_proj")]  # model.layers.N.feed_forward.experts.
            gate_up = value  # [E, hidden, 2I], input-major, gate | up
            down = src_model.state_dict()[prefix + "down_proj"]  # [E, I, hidden]
            deq_gate_up = torch.empty_like(gate_up)
            deq_down = torch.empty_like(down)
            for e in range(gate_up.shape[0]):
                per_expert = {
                    "gate_proj": gate_up[e][:, :inter].t().contiguous(),  # [I, hidden] = nn.Linear [out, in]
                    "up_proj": gate_up[e][:, inter:].t().contiguous(),  # [I, hidden]
                    "down_proj": down[e].t().contiguous(),  # [hidden, I]
                }
                for proj, w in per_expert.items():
                    q, scale = quantize_fp8_per_channel(w)
                    base = f"language_model.{prefix}{e}.{proj}"
                    tensors[base + ".weight"] = q
                    tensors[base + ".weight_scale"] = scale
                    deq = q.to(torch.float32) * scale.to(torch.float32)  # [out, in]
                    if proj == "gate_proj":
                        deq_gate_up[e][:, :inter] = deq.t()
                    elif proj == "up_proj":
                        deq_gate_up[e][:, inter:] = deq.t()
                    else:
                        deq_down[e] = deq.t()
            deq_state[prefix + "gate_up_proj"] = deq_gate_up
            deq_state[prefix + "down_proj"] = deq_down
        elif key.endswith("feed_forward.experts.down_proj"):
            continue  # handled with gate_up_proj
        else:
            tensors["language_model." + key] = value.to(torch.bfloat16).contiguous()
            deq_state[key] = value

    model = Llama4ForCausalLM(copy.deepcopy(text_cfg)).eval()
    model.load_state_dict(deq_state)
    result = run_oracle(model, prompt)
    if min(result["min_router_margin"], result["min_greedy_margin"]) < MIN_DECISION_MARGIN:
        raise RuntimeError(f"{FP8_CASE}: near-tie after FP8 rounding (router {result['min_router_margin']:.3g}, "
                           f"greedy {result['min_greedy_margin']:.3g})")
    bf16_shift = max_abs_diff(result["logits"], source["result"]["logits"])

    case_dir = out_dir / FP8_CASE
    case_dir.mkdir(parents=True, exist_ok=True)
    for stale in case_dir.iterdir():
        if stale.is_file():
            stale.unlink()
    text_dict = json.loads((out_dir / FP8_SOURCE_CASE / "config.json").read_text())
    text_dict.pop("architectures", None)
    config = {
        "architectures": ["Llama4ForConditionalGeneration"],
        "model_type": "llama4",
        "text_config": text_dict,
        "quantization_config": FP8_QUANTIZATION_CONFIG,
        "tie_word_embeddings": False,
        "dtype": "bfloat16",
        "transformers_version": transformers.__version__,
    }
    (case_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file({k: tensors[k] for k in sorted(tensors)}, str(case_dir / "model.safetensors"), metadata={"format": "pt"})

    # Verify: read the file back, dequantise independently, refill a fresh model, compare.
    reread = {}
    with safe_open(str(case_dir / "model.safetensors"), "pt") as f:
        for k in f.keys():
            reread[k] = f.get_tensor(k)
    state = {}
    for k, v in reread.items():
        if ".experts." in k:
            continue
        state[k[len("language_model."):]] = v.to(torch.float32)
    for layer in text_cfg.moe_layers:
        p = f"language_model.model.layers.{layer}.feed_forward.experts"
        deq = {proj: torch.stack([reread[f"{p}.{e}.{proj}.weight"].to(torch.float32)
                                  * reread[f"{p}.{e}.{proj}.weight_scale"].to(torch.float32)
                                  for e in range(text_cfg.num_local_experts)])
               for proj in ("gate_proj", "up_proj", "down_proj")}
        state[f"model.layers.{layer}.feed_forward.experts.gate_up_proj"] = torch.cat(
            [deq["gate_proj"].transpose(1, 2), deq["up_proj"].transpose(1, 2)], dim=2)
        state[f"model.layers.{layer}.feed_forward.experts.down_proj"] = deq["down_proj"].transpose(1, 2)
    check_model = Llama4ForCausalLM(copy.deepcopy(text_cfg)).eval()
    check_model.load_state_dict(state)
    logits, greedy = run_oracle_light(check_model, prompt)
    reload_diff = max_abs_diff(logits, result["logits"])
    if reload_diff != 0.0 or greedy != result["greedy"]:
        raise RuntimeError(f"{FP8_CASE}: re-read fixture differs (max |diff| {reload_diff})")

    checks = {
        "min_router_margin": result["min_router_margin"],
        "min_greedy_margin": result["min_greedy_margin"],
        "generate_cache_vs_full_forward_max_abs_diff": result["cache_vs_full_max_abs_diff"],
        "expert_use_counts_prompt": result["expert_use_counts"],
        "transformers_compressed_tensors_load": compressed_tensors_crosscheck(case_dir, prompt, result),
        "reread_dequantised_prompt_logits_max_abs_diff": reload_diff,
        "prompt_logits_max_abs_diff_vs_llama4_qknorm": bf16_shift,
        "greedy_equal_to_llama4_qknorm": result["greedy"] == source["result"]["greedy"],
    }
    notes = [
        "Same weights, prompt and config as llama4_qknorm, except that the routed experts are stored as Meta's "
        "FP8 checkpoint of Llama 4 Maverick stores them (compressed-tensors, format float-quantized): unfused, "
        "language_model.model.layers.<L>.feed_forward.experts.<e>.{gate_proj,up_proj,down_proj}.weight as "
        "F8_E4M3 [out, in] (nn.Linear layout) with ...weight_scale BF16 [out, 1], one scale per output channel.",
        "Every other tensor is BF16 with the language_model. prefix of Llama4ForConditionalGeneration; there is "
        "no vision tower in this fixture (config.json has no vision_config).",
        "Dequantisation: w[o, i] = float(q[o, i]) * float(scale[o, 0]); then gate_proj/up_proj are the two "
        "halves of the BF16 checkpoint's fused gate_up_proj (transposed: gate_up_proj[e] = [gate_proj.T | "
        "up_proj.T], [hidden, 2I]) and down_proj[e] = down_proj.weight.T ([I, hidden]).",
        "Expected logits: transformers' Llama4ForCausalLM in float32 on the dequantised weights. Activations are "
        "NOT quantised (the checkpoint's W8A8 scheme quantises expert inputs per token to FP8 at run time; this "
        "fixture tests the weight layout and dequantisation only).",
        "Quantisation used here: scale = bf16(max_i |w[o, i]| / 448), q = e4m3(w / scale) (round to nearest even, "
        "saturating at 448).",
        "checks.transformers_compressed_tensors_load: this folder loaded by transformers' "
        "Llama4ForConditionalGeneration with the compressed-tensors package (a one-layer vision_config added to "
        "a temporary copy of config.json). weight_only (input_activations removed from the config) reproduces the "
        "logits exactly; w8a8_as_configured (expert inputs also quantised per token to FP8, as the checkpoint's "
        "scheme says) moves them by the figure shown, with the same greedy tokens.",
    ] + notes_for(FP8_SOURCE_CASE, text_cfg)[1:]
    fields = {
        "case": FP8_CASE,
        "description": "llama4_qknorm with its routed experts in the FP8 (compressed-tensors) layout of "
        "meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8; logits from the dequantised weights in fp32.",
        "seed": source["seed"],
        "prompt": prompt,
        "logits": result["logits"],
        "greedy": result["greedy"],
        "greedy_logits_last": result["step_logits"][-1],
        **versions(),
        "notes": notes,
        "checks": round_floats(checks),
    }
    write_expected(case_dir / "expected.json", fields)
    print(json.dumps(round_floats(checks), indent=2))


# ----------------------------------------------------------------------------------------------------------------
# Spec check: a plain re-implementation that reads only the fixture files
# ----------------------------------------------------------------------------------------------------------------
# Written from the formulas in tests/fixtures/oracle/README.md, not from transformers' modules: if it agrees with
# the recorded logits, the README describes what the oracle computed. Float32 throughout, one sequence, no cache.

def spec_rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    # x: [..., n]; y = x / sqrt(mean(x^2) + eps) (* weight)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if weight is None else y * weight


def spec_inv_freq(rope: dict, head_dim: int) -> torch.Tensor:
    # [head_dim / 2]: theta^(-2i / head_dim), then llama3 scaling if configured
    inv_freq = 1.0 / (rope["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if rope.get("rope_type", "default") == "llama3":
        factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
        old_len = rope["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv_freq
        scaled = inv_freq.clone()
        for i in range(inv_freq.numel()):
            if wavelen[i] < old_len / high:
                continue  # high frequency: kept
            if wavelen[i] > old_len / low:
                scaled[i] = inv_freq[i] / factor  # low frequency: divided by factor
            else:
                smooth = (old_len / wavelen[i] - low) / (high - low)
                scaled[i] = (1 - smooth) * inv_freq[i] / factor + smooth * inv_freq[i]
        inv_freq = scaled
    elif rope.get("rope_type", "default") != "default":
        raise RuntimeError(f"spec check: rope_type {rope['rope_type']} not handled")
    return inv_freq


def spec_rope_interleaved(x: torch.Tensor, pos: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    # x: [T, heads, head_dim]; pairs (2i, 2i+1) rotated by pos * inv_freq[i] (Llama 4)
    angle = pos[:, None].float() * inv_freq[None, :]  # [T, head_dim / 2]
    cos, sin = torch.cos(angle)[:, None, :], torch.sin(angle)[:, None, :]
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


def spec_rope_half(x: torch.Tensor, pos: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    # x: [T, heads, head_dim]; pairs (i, i + head_dim / 2) rotated by pos * inv_freq[i] (Qwen3, "neox" form)
    half = x.shape[-1] // 2
    angle = pos[:, None].float() * inv_freq[None, :]
    cos, sin = torch.cos(angle)[:, None, :], torch.sin(angle)[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def spec_attention(q, k, v, allowed: torch.Tensor) -> torch.Tensor:
    # q: [T, Hq, d], k/v: [T, Hkv, d], allowed: [T, T] bool (query row, key column) -> [T, Hq * d]
    T, hq, d = q.shape
    group = hq // k.shape[1]  # query head h uses KV head h // group
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", q, k) * d ** -0.5
    scores = scores.masked_fill(~allowed[None], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.einsum("hqk,khd->qhd", probs, v).reshape(T, hq * d)


def spec_swiglu(x, w_gate, w_up, w_down):
    # nn.Linear layout [out, in]: down(silu(x W_gate^T) * (x W_up^T))
    return (torch.nn.functional.silu(x @ w_gate.t()) * (x @ w_up.t())) @ w_down.t()


def spec_load(case_dir: Path) -> tuple[dict, dict]:
    config = json.loads((case_dir / "config.json").read_text())
    tensors = {}
    with safe_open(str(case_dir / "model.safetensors"), "pt") as f:
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    if config.get("model_type") == "llama4":  # FP8 layout: composite config, language_model. prefix
        quant = config.get("quantization_config")
        config = config["text_config"]
        plain = {}
        for k, v in tensors.items():
            if k.endswith(".weight_scale"):
                continue
            name = k[len("language_model."):]
            if quant and (k[: -len(".weight")] + ".weight_scale") in tensors:
                v = v.to(torch.float32) * tensors[k[: -len(".weight")] + ".weight_scale"].to(torch.float32)
            plain[name] = v
        tensors = plain
    return config, {k: v.to(torch.float32) for k, v in tensors.items()}


def spec_forward(config: dict, w: dict, ids: list[int]) -> torch.Tensor:
    """Logits [T, vocab] for token ids at positions 0..T-1."""
    T = len(ids)
    pos = torch.arange(T)
    eps = config["rms_norm_eps"]
    hq, hkv = config["num_attention_heads"], config["num_key_value_heads"]
    d = config.get("head_dim") or config["hidden_size"] // hq  # Mixtral: head_dim null
    is_llama4 = config["model_type"] == "llama4_text"
    is_mixtral = config["model_type"] == "mixtral"
    inv_freq = spec_inv_freq(config["rope_parameters"], d)
    causal = pos[None, :] <= pos[:, None]  # [query, key]
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]  # [T, hidden]
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = spec_rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].t()).view(T, hq, d)
        k = (h @ w[p + "self_attn.k_proj.weight"].t()).view(T, hkv, d)
        v = (h @ w[p + "self_attn.v_proj.weight"].t()).view(T, hkv, d)
        allowed = causal
        if is_llama4:
            use_rope = config["no_rope_layers"][layer] == 1
            if use_rope:
                q, k = spec_rope_interleaved(q, pos, inv_freq), spec_rope_interleaved(k, pos, inv_freq)
                if config["use_qk_norm"]:  # after RoPE, no weight, eps = rms_norm_eps
                    q, k = spec_rms_norm(q, None, eps), spec_rms_norm(k, None, eps)
                chunk = config["attention_chunk_size"]
                allowed = causal & ((pos[None, :] // chunk) == (pos[:, None] // chunk))
            elif config["attn_temperature_tuning"]:
                scale = 1.0 + config["attn_scale"] * torch.log1p(
                    torch.floor((pos.float() + 1.0) / config["floor_scale"]))
                q = q * scale[:, None, None]
        elif is_mixtral:  # no q/k norm; half-split RoPE; sliding window of the last W keys, the query's own included
            q, k = spec_rope_half(q, pos, inv_freq), spec_rope_half(k, pos, inv_freq)
            if config.get("sliding_window") is not None:
                allowed = causal & ((pos[:, None] - pos[None, :]) < config["sliding_window"])
        else:  # Qwen3: per-head RMSNorm with weight, before RoPE
            q = spec_rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = spec_rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
            q, k = spec_rope_half(q, pos, inv_freq), spec_rope_half(k, pos, inv_freq)
        x = x + spec_attention(q, k, v, allowed) @ w[p + "self_attn.o_proj.weight"].t()

        h = spec_rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if is_llama4 and layer in config["moe_layers"]:
            f = p + "feed_forward."
            router_logits = h @ w[f + "router.weight"].t()  # [T, E]
            top = torch.topk(router_logits, config["num_experts_per_tok"], dim=-1)
            out = spec_swiglu(h, w[f + "shared_expert.gate_proj.weight"], w[f + "shared_expert.up_proj.weight"],
                              w[f + "shared_expert.down_proj.weight"])
            inter = config["intermediate_size"]
            for t in range(T):
                for logit, e in zip(top.values[t], top.indices[t]):
                    e = int(e)
                    z = torch.sigmoid(logit) * h[t]  # the router score scales the expert's input
                    if f + "experts.gate_up_proj" in w:  # BF16 layout: fused, input-major, gate | up
                        gate_up = w[f + "experts.gate_up_proj"][e]  # [hidden, 2I]
                        g, u = z @ gate_up[:, :inter], z @ gate_up[:, inter:]
                        out[t] += (torch.nn.functional.silu(g) * u) @ w[f + "experts.down_proj"][e]  # [I, hidden]
                    else:  # FP8 layout (dequantised above): per expert nn.Linear [out, in]
                        out[t] += spec_swiglu(z, w[f"{f}experts.{e}.gate_proj.weight"],
                                              w[f"{f}experts.{e}.up_proj.weight"],
                                              w[f"{f}experts.{e}.down_proj.weight"])
        elif is_llama4:
            f = p + "feed_forward."
            out = spec_swiglu(h, w[f + "gate_proj.weight"], w[f + "up_proj.weight"], w[f + "down_proj.weight"])
        else:  # Qwen3-MoE and Mixtral: softmax over all experts, top-k, weights scale the expert output
            m = p + ("block_sparse_moe." if is_mixtral else "mlp.")
            gate, up, down = ("w1", "w3", "w2") if is_mixtral else ("gate_proj", "up_proj", "down_proj")
            probs = torch.softmax(h @ w[m + "gate.weight"].t(), dim=-1)  # [T, E]
            top = torch.topk(probs, config["num_experts_per_tok"], dim=-1)
            weights = top.values
            if is_mixtral or config["norm_topk_prob"]:  # Mixtral always renormalises
                weights = weights / weights.sum(-1, keepdim=True)
            out = torch.zeros_like(h)
            for t in range(T):
                for weight, e in zip(weights[t], top.indices[t]):
                    e = int(e)
                    out[t] += weight * spec_swiglu(h[t], w[f"{m}experts.{e}.{gate}.weight"],
                                                   w[f"{m}experts.{e}.{up}.weight"],
                                                   w[f"{m}experts.{e}.{down}.weight"])
        x = x + out
    x = spec_rms_norm(x, w["model.norm.weight"], eps)
    return x @ w["lm_head.weight"].t()


def spec_check(case_dir: Path) -> dict:
    """Prompt logits, greedy tokens (full recompute per step) and last greedy logits from the files alone."""
    config, weights = spec_load(case_dir)
    expected = json.loads((case_dir / "expected.json").read_text())
    with torch.no_grad():
        logits = spec_forward(config, weights, expected["prompt"])
        seq = list(expected["prompt"])
        for _ in range(GREEDY_TOKENS):
            last = spec_forward(config, weights, seq)[-1]
            seq.append(int(last.argmax()))
    report = {
        "prompt_logits_max_abs_diff": max_abs_diff(logits, torch.tensor(expected["logits"])),
        "greedy_equal": seq[len(expected["prompt"]):] == expected["greedy"],
        "greedy_logits_last_max_abs_diff": max_abs_diff(last, torch.tensor(expected["greedy_logits_last"])),
    }
    if report["prompt_logits_max_abs_diff"] > 1e-3 or not report["greedy_equal"]:
        raise RuntimeError(f"{case_dir.name}: spec re-implementation disagrees with the oracle: {report}")
    return report


# ----------------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=ALL_CASES, default=ALL_CASES)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args()

    torch.set_num_threads(1)  # reproducible summation order
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    args.out.mkdir(parents=True, exist_ok=True)

    built = {}
    for name in CASES:
        if name in args.cases or (name == FP8_SOURCE_CASE and FP8_CASE in args.cases):
            built[name] = make_bf16_case(name, args.out)
    if FP8_CASE in args.cases:
        make_fp8_case(built[FP8_SOURCE_CASE], args.out)
    for name in args.cases:
        report = round_floats(spec_check(args.out / name), 2)
        print(f"{name}: spec re-implementation from the files: {report}")
    for name in args.cases:
        d = args.out / name
        total = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
        print(f"{name}: {total / 1024:.0f} KiB in {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
