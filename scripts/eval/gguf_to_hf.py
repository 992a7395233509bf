#!/usr/bin/env python3
"""Dequantize a llama-family GGUF (the default SmolLM2-135M-Instruct Q4_1) into an HF safetensors
directory (f32) that both `prom` and transformers load, so both evaluate the very same weights.

    gguf_to_hf.py MODEL.gguf OUT_DIR

Weights: gguf-py (llama.cpp's reader, from the llama-cpp-python 0.3.36 sdist) dequantizes every
tensor; Q/K projections are un-permuted (convert_hf_to_gguf permutes them for llama's rotary
layout). Tokenizer and config: transformers' GGUF integration rebuilds tokenizer.json and
config.json from the GGUF metadata; we keep those and overwrite the weights with ours.
"""
import json
import os
import sys
from pathlib import Path

ART = Path(os.environ.get("PROM_ARTIFACTS", Path.home() / ".cache/prometheus/artifacts"))
sys.path.insert(0, str(ART / "llama-cpp-python-0.3.36/vendor/llama.cpp/gguf-py"))

import numpy as np  # noqa: E402
import gguf  # noqa: E402
from gguf.quants import dequantize  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
LAYER = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


def hf_name(name):
    if name in NAMES:
        return NAMES[name]
    parts = name.split(".")  # blk.N.attn_q.weight
    return f"model.layers.{parts[1]}.{LAYER[parts[2]]}.{parts[3]}"


def unpermute(w, n_head):
    # Inverse of convert_hf_to_gguf's LlamaModel.permute: (n_head, 2, d/2, in) <- (n_head, d/2, 2, in)
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main(src, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from transformers import AutoConfig, AutoTokenizer

    src = Path(src)
    cfg = AutoConfig.from_pretrained(src.parent, gguf_file=src.name)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    cfg.torch_dtype = "float32"
    cfg.save_pretrained(out)
    tok.save_pretrained(out)

    r = gguf.GGUFReader(src)
    n_head = cfg.num_attention_heads
    n_kv = cfg.num_key_value_heads
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape([int(x) for x in reversed(t.shape)])  # GGUF lists ne0 (fastest) first
        if t.name.endswith("attn_q.weight"):
            w = unpermute(w, n_head)
        elif t.name.endswith("attn_k.weight"):
            w = unpermute(w, n_kv)
        tensors[hf_name(t.name)] = np.ascontiguousarray(w)
    if "lm_head.weight" not in tensors:
        cfg.tie_word_embeddings = True
        cfg.save_pretrained(out)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    json.dump({"source": str(src), "dtype": "float32"}, open(out / "prom_convert.json", "w"))
    print(f"wrote {len(tensors)} tensors to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
