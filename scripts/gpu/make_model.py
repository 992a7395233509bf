"""A seeded random model of Llama-3-8B's shape, for bench/gpu.sh (runs on the GPU machine).

Writes, under OUT:
  hf/    config.json, model.safetensors (bf16), tokenizer.json, tokenizer_config.json:
         for prom and HF transformers;
  f16.gguf  the same weights in F16 for llama.cpp (q/k rows permuted as convert_hf_to_gguf.py
            does for llama, so both compute the same function).
The tokenizer is byte-level BPE with one merge (about one token per byte) padded with filler tokens to
Llama-3's 128256 ids: every id decodes, prompts encode byte by byte. Throughput does not depend
on what the tokens say.

  python3 make_model.py OUT [--layers 32] [--gguf-py DIR]
  python3 make_model.py OUT --shape 70b --config-only   # config + tokenizer, for --load-format dummy
"""
import argparse
import json
import os
import sys
import time

try:
    import torch
except ImportError:  # --config-only needs no torch
    torch = None

SHAPE = dict(hidden=4096, inter=14336, layers=32, heads=32, kv_heads=8, vocab=128256)
SHAPES = {"8b": SHAPE, "70b": dict(hidden=8192, inter=28672, layers=80, heads=64, kv_heads=8, vocab=128256)}
# For checking this script (and the files it writes) on a machine without a GPU.
TINY = dict(hidden=256, inter=512, layers=2, heads=4, kv_heads=2, vocab=128256)
MERGES = ["t o"]
DEV = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def bytes_to_unicode():
    """GPT-2's byte ↔ printable-char map (what ByteLevel pre-tokenization emits)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def tokens(vocab):
    byte_chars = bytes_to_unicode()
    # One merge ("t o" → "to"): llama.cpp refuses a BPE vocabulary without merges.
    return byte_chars + ["to"] + [f"tok{i}" for i in range(vocab - len(byte_chars) - 2)] + ["<|end_of_text|>"]


def write_tokenizer(d, toks):
    vocab = {t: i for i, t in enumerate(toks)}
    eos = len(toks) - 1
    tj = {
        "version": "1.0",
        "added_tokens": [{"id": eos, "content": toks[eos], "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": MERGES},
    }
    json.dump(tj, open(f"{d}/tokenizer.json", "w"))
    json.dump({"eos_token": toks[eos], "bos_token": None, "model_max_length": 8192,
               "tokenizer_class": "PreTrainedTokenizerFast"}, open(f"{d}/tokenizer_config.json", "w"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="8b", help="Llama-3-8B or -70B")
    ap.add_argument("--layers", type=int, help="default: the shape's (32 or 80)")
    ap.add_argument("--gguf-py", help="llama.cpp's gguf-py directory (writes f16.gguf)")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer toy of the same vocabulary")
    ap.add_argument("--config-only", action="store_true",
                    help="config.json and tokenizer, no weights (prom --load-format dummy makes them up)")
    a = ap.parse_args()
    shape = SHAPES[a.shape]
    s = dict(TINY if a.tiny else shape, layers=2 if a.tiny else (a.layers or shape["layers"]))
    hf = os.path.join(a.out, "hf")
    os.makedirs(hf, exist_ok=True)
    t0 = time.time()
    if a.config_only:
        write_config(hf, s)
        write_tokenizer(hf, tokens(s["vocab"]))
        return
    from safetensors.torch import save_file

    g = torch.Generator(device=DEV).manual_seed(1234)
    hd = s["hidden"] // s["heads"]
    kvd = s["kv_heads"] * hd

    def rnd(*shape):
        return (torch.randn(*shape, generator=g, device=DEV, dtype=torch.float32) * 0.02).to(torch.bfloat16)

    w = {"model.embed_tokens.weight": rnd(s["vocab"], s["hidden"]), "lm_head.weight": rnd(s["vocab"], s["hidden"]),
         "model.norm.weight": torch.ones(s["hidden"], dtype=torch.bfloat16, device=DEV)}
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = torch.ones(s["hidden"], dtype=torch.bfloat16, device=DEV)
        w[p + "post_attention_layernorm.weight"] = torch.ones(s["hidden"], dtype=torch.bfloat16, device=DEV)
        w[p + "self_attn.q_proj.weight"] = rnd(s["hidden"], s["hidden"])
        w[p + "self_attn.k_proj.weight"] = rnd(kvd, s["hidden"])
        w[p + "self_attn.v_proj.weight"] = rnd(kvd, s["hidden"])
        w[p + "self_attn.o_proj.weight"] = rnd(s["hidden"], s["hidden"])
        w[p + "mlp.gate_proj.weight"] = rnd(s["inter"], s["hidden"])
        w[p + "mlp.up_proj.weight"] = rnd(s["inter"], s["hidden"])
        w[p + "mlp.down_proj.weight"] = rnd(s["hidden"], s["inter"])
    w = {k: v.cpu() for k, v in w.items()}
    save_file(w, f"{hf}/model.safetensors", metadata={"format": "pt"})
    write_config(hf, s)
    toks = tokens(s["vocab"])
    write_tokenizer(hf, toks)
    n = sum(v.numel() for v in w.values())
    print(f"hf: {n / 1e9:.3f} B params, {2 * n / 1e9:.2f} GB bf16 in {time.time() - t0:.1f} s", flush=True)
    if a.gguf_py:
        write_gguf(a, s, w, toks, hd)
        print(f"gguf: written, {time.time() - t0:.1f} s total", flush=True)


def write_config(hf, s):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": s["hidden"],
           "intermediate_size": s["inter"], "num_hidden_layers": s["layers"], "num_attention_heads": s["heads"],
           "num_key_value_heads": s["kv_heads"], "vocab_size": s["vocab"], "max_position_embeddings": 8192,
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
           "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16", "bos_token_id": None,
           "eos_token_id": s["vocab"] - 1}
    json.dump(cfg, open(f"{hf}/config.json", "w"), indent=1)


def write_gguf(a, s, w, toks, hd):
    sys.path.insert(0, a.gguf_py)
    import gguf
    import numpy as np

    def permute(t, n_head):  # convert_hf_to_gguf.py LlamaModel.permute
        return t.reshape(n_head, 2, t.shape[0] // n_head // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)

    wr = gguf.GGUFWriter(os.path.join(a.out, "f16.gguf"), "llama")
    wr.add_name("random-llama3-8b-shape")
    wr.add_context_length(8192)
    wr.add_embedding_length(s["hidden"])
    wr.add_block_count(s["layers"])
    wr.add_feed_forward_length(s["inter"])
    wr.add_head_count(s["heads"])
    wr.add_head_count_kv(s["kv_heads"])
    wr.add_rope_freq_base(500000.0)
    wr.add_rope_dimension_count(hd)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_vocab_size(s["vocab"])
    wr.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("default")
    wr.add_token_list(toks)
    wr.add_token_types([gguf.TokenType.NORMAL] * (len(toks) - 1) + [gguf.TokenType.CONTROL])
    wr.add_token_merges(MERGES)
    wr.add_eos_token_id(len(toks) - 1)
    wr.add_add_bos_token(False)
    names = {"model.embed_tokens.weight": "token_embd.weight", "lm_head.weight": "output.weight",
             "model.norm.weight": "output_norm.weight"}
    per = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
           "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
           "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for k, v in w.items():
        if k in names:
            name = names[k]
        else:
            i, rest = k[len("model.layers."):].split(".", 1)
            name = f"blk.{i}.{per[rest.rsplit('.', 1)[0]]}.weight"
        if k.endswith("q_proj.weight"):
            v = permute(v, s["heads"])
        elif k.endswith("k_proj.weight"):
            v = permute(v, s["kv_heads"])
        # norms stay f32 (llama.cpp's converter keeps 1-D tensors in f32)
        arr = v.float().numpy() if v.dim() == 1 else v.to(torch.float16).numpy()
        wr.add_tensor(name, np.ascontiguousarray(arr))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


if __name__ == "__main__":
    main()
