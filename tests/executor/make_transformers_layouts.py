#!/usr/bin/env python3
"""Regenerate tests/executor/transformers_layouts.json: the tensor names, dtypes and shapes that Hugging Face
transformers writes with save_pretrained() for tiny Llama 4, Qwen3-MoE and Mixtral models, beside the config.json it
writes. test_checkpoint.cpp checks executor::checkpoint_layout() against them.

    tools/.venv/bin/python tests/executor/make_transformers_layouts.py
"""
import json
import os
import struct
import sys
import tempfile

import torch
import transformers
from transformers import (Llama4Config, Llama4ForCausalLM, Llama4ForConditionalGeneration, Llama4TextConfig,
                          MixtralConfig, MixtralForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM)


def saved_layout(model):
    """config.json and {name: [dtype, shape]} of every tensor save_pretrained writes."""
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        tensors = {}
        for file in sorted(os.listdir(d)):
            if not file.endswith(".safetensors"):
                continue
            with open(os.path.join(d, file), "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
            header.pop("__metadata__", None)
            tensors.update({k: [v["dtype"], v["shape"]] for k, v in header.items()})
        with open(os.path.join(d, "config.json")) as f:
            config = json.load(f)
    return {"config": config, "tensors": dict(sorted(tensors.items()))}


def main():
    torch.manual_seed(0)
    text = dict(hidden_size=64, intermediate_size=32, intermediate_size_mlp=96, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=128, num_local_experts=3,
                num_experts_per_tok=1, interleave_moe_layer_step=2, attention_chunk_size=16)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14, projector_input_dim=64, projector_output_dim=64, vision_output_dim=64,
                  pixel_shuffle_ratio=0.5)
    cases = {
        "llama4_text": Llama4ForCausalLM(Llama4TextConfig(**text)),
        "llama4_multimodal": Llama4ForConditionalGeneration(Llama4Config(text_config=text, vision_config=vision)),
        "qwen3_moe": Qwen3MoeForCausalLM(Qwen3MoeConfig(
            hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=128, num_experts=3, num_experts_per_tok=2,
            mlp_only_layers=[1], attention_bias=True)),
        "mixtral": MixtralForCausalLM(MixtralConfig(
            hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=128, num_local_experts=3, num_experts_per_tok=2)),
    }
    out = {"generated_by": f"tests/executor/make_transformers_layouts.py with transformers {transformers.__version__}",
           "cases": {name: saved_layout(model.to(torch.bfloat16)) for name, model in cases.items()}}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transformers_layouts.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
