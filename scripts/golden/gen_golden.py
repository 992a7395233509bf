#!/usr/bin/env python3
"""Generate golden-parity fixtures for the Rust decoder.

Run:  /root/venvs/ref/bin/python scripts/golden/gen_golden.py [--only CASE ...] [--list]

For every case this builds a tiny, seeded, randomly initialised HF transformers model
(from a config only, no hub access), writes it with `save_pretrained` into
`tests/fixtures/golden/<case>/`, and records reference outputs in `expected.safetensors`:

  prompt_ids      I64 [P]     fixed prompt (P = 24), seeded random ids in [0, vocab)
  prefill_logits  F32 [P, V]  logits at every prompt position, one forward over the prompt
  decode_ids      I64 [8]     greedy tokens; decode_ids[0] = argmax(prefill_logits[-1])
  decode_logits   F32 [8, V]  decode_logits[i] = logits of feeding decode_ids[i] alone with the
                              KV cache holding prompt + decode_ids[:i];
                              decode_ids[i+1] = argmax(decode_logits[i])

plus `inv_freq.json` (RoPE frequencies actually used, per forward call) for RoPE models and a
top-level `manifest.json`.  See scripts/golden/NOTES.md for the numerics a reimplementation
must match.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import transformers
from safetensors import safe_open
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_ROOT = REPO_ROOT / "tests" / "fixtures" / "golden"

VOCAB = 256
HIDDEN = 64
PROMPT_LEN = 24
N_DECODE = 8
BASE_SEED = 20240601  # per-case seed = BASE_SEED + case.seed_offset
MIN_GAP = 1e-2  # min top-2 logit gap for every argmax (brief requires >= 1e-3; we keep a 10x margin)
TOL = 1e-5  # cached vs. uncached max-abs tolerance

# Init scales (see brief): HF's default std 0.02 gives near-zero logits that hide bugs.
STD_MATRIX = 0.08
STD_EMBED = 0.15  # 0.5 made tied models echo the input token (e.T e dominates); 0.15 keeps logits O(1)
STD_NORM = 0.1
STD_BIAS = 0.05

COMMON_SPECIAL = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)


# --------------------------------------------------------------------------------------
# Case definitions
# --------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    description: str
    make_config: Callable[[], transformers.PreTrainedConfig]
    seed_offset: int
    weight_dtype: torch.dtype = torch.float32  # dtype the weights are saved in
    max_shard_size: str | None = None
    norm_is_offset: bool = False  # Gemma-style (1 + w) RMSNorm -> init w ~ N(0, 0.1^2)
    std_overrides: dict = field(default_factory=dict)  # param-name substring -> std


def llama_base(**kw):
    d = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        tie_word_embeddings=True,
        **COMMON_SPECIAL,
    )
    d.update(kw)
    return LlamaConfig(**d)


def rope_llama(rope_parameters, **kw):
    # head_dim 32 (explicit, 4 heads * 32 = 128 != hidden 64) gives 16 rotary frequencies, so
    # the scaled rope variants actually have low/medium/high-frequency bands to distinguish.
    d = dict(head_dim=32, tie_word_embeddings=False, rope_parameters=rope_parameters)
    d.update(kw)
    return llama_base(**d)


def gemma2_config():
    return Gemma2Config(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=160,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        query_pre_attn_scalar=24,  # != head_dim (16): scaling = 24**-0.5
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        attn_logit_softcapping=5.0,
        final_logit_softcapping=3.0,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        **COMMON_SPECIAL,
    )


def phi3_config(rope_parameters, **kw):
    d = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim = 32 (Phi3 has no explicit head_dim)
        num_key_value_heads=1,  # fused qkv split is q:64, k:32, v:32
        hidden_act="silu",
        max_position_embeddings=64,
        original_max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_parameters=rope_parameters,
        sliding_window=None,
        **COMMON_SPECIAL,
    )
    d.update(kw)
    return Phi3Config(**d)


def _longrope_factors():
    # rotary_dim = 32 * 0.5 = 16 -> 8 factors each, all distinct.
    short = [1.0 + 0.05 * i for i in range(8)]  # 1.00 .. 1.35
    long = [1.5 + 0.75 * i for i in range(8)]  # 1.50 .. 6.75
    return short, long


def phi3_longrope_config():
    short, long = _longrope_factors()
    return phi3_config(
        rope_parameters={
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "partial_rotary_factor": 0.5,
            "short_factor": short,
            "long_factor": long,
        },
        max_position_embeddings=64,
        original_max_position_embeddings=16,
    )


CASES: list[Case] = [
    Case(
        "llama_gqa",
        "Llama, GQA (4 q heads / 2 kv heads, head_dim 16), tied embeddings, default rope (theta 1e4), SiLU MLP.",
        lambda: llama_base(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        1037,
    ),
    Case(
        "llama_mqa_untied",
        "Llama, MQA (1 kv head), untied lm_head, attention_bias + mlp_bias, explicit head_dim 24 != 64/4.",
        lambda: llama_base(
            num_key_value_heads=1,
            head_dim=24,
            attention_bias=True,
            mlp_bias=True,
            intermediate_size=160,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        1111,
    ),
    Case(
        "llama_rope_linear",
        "Llama, rope_type linear factor 2 (inv_freq / 2), head_dim 32, untied.",
        lambda: rope_llama({"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}),
        1444,
    ),
    Case(
        "llama_rope_dynamic",
        "Llama, dynamic NTK factor 2, max_position_embeddings 16 < 32 tokens: inv_freq is recomputed on "
        "every forward as the sequence grows; cached keys keep their old rotation (cached != uncached).",
        lambda: rope_llama(
            {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}, max_position_embeddings=16
        ),
        1333,
    ),
    Case(
        "llama_rope_yarn",
        "Llama, yarn factor 4, original_max 16, max_pos 64, beta_fast 2 / beta_slow 0.125 (so the ramp spans "
        "dims 0..6 at this tiny context), truncate default (True), attention_factor 0.1*ln(4)+1.",
        lambda: rope_llama(
            {
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 16,
                "beta_fast": 2.0,
                "beta_slow": 0.125,
                "rope_theta": 10000.0,
            },
            max_position_embeddings=64,
        ),
        1444,
    ),
    Case(
        "llama3_rope",
        "Llama, llama3 rope (factor 8, low_freq_factor 1, high_freq_factor 4, original_max 16), theta 5e5; "
        "head_dim 32 gives high-, medium- (smoothed) and low-frequency bands.",
        lambda: rope_llama(
            {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
                "rope_theta": 500000.0,
            },
            max_position_embeddings=64,
        ),
        1111,
    ),
    Case(
        "mistral_swa",
        "Mistral, sliding_window 8 (< 24-token prompt) on all layers, GQA 4/2, untied.",
        lambda: MistralConfig(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            sliding_window=8,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            **COMMON_SPECIAL,
        ),
        1222,
    ),
    Case(
        "qwen2",
        "Qwen2, q/k/v bias (o_proj no bias), GQA 4/2, tied embeddings, rms eps 1e-6, no sliding window.",
        lambda: Qwen2Config(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            intermediate_size=160,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            **COMMON_SPECIAL,
        ),
        1148,
    ),
    Case(
        "qwen3",
        "Qwen3, per-head QK RMSNorm (before rope), head_dim 32 with hidden 64 / 4 heads, GQA 4/2, untied.",
        lambda: Qwen3Config(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            intermediate_size=160,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            use_sliding_window=False,
            attention_bias=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            **COMMON_SPECIAL,
        ),
        1111,
    ),
    Case(
        "gemma2",
        "Gemma2, 4 layers alternating sliding(8)/full, attn softcap 5, final softcap 3, query_pre_attn_scalar 24 "
        "(head_dim 16), GeGLU gelu_pytorch_tanh, sandwich (pre+post) norms, (1+w) RMSNorm, sqrt(hidden) embed "
        "scale, tied.",
        gemma2_config,
        1370,
        norm_is_offset=True,
        # Larger q/k weights so attention scores are O(cap) and the attn softcap actually saturates.
        std_overrides={"q_proj.weight": 0.25, "k_proj.weight": 0.25},
    ),
    Case(
        "phi3",
        "Phi-3, fused qkv_proj (q64|k32|v32) and gate_up_proj ([gate|up]), default rope with "
        "partial_rotary_factor 0.5 (rotary dim 16 of head_dim 32), untied.",
        lambda: phi3_config(
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
        ),
        1407,
    ),
    Case(
        "phi3_longrope",
        "Phi-3, longrope (8 distinct short/long factors, original_max 16, max_pos 64 -> attention_factor "
        "sqrt(1+ln4/ln16)), partial_rotary_factor 0.5; the 24-token prompt already exceeds 16, so every "
        "forward uses long_factor.",
        phi3_longrope_config,
        1444,
    ),
    Case(
        "gpt2",
        "GPT-2, LayerNorm (with bias), learned absolute positions (wpe), Conv1D ([in,out]) weights, gelu_new, "
        "n_inner 192, tied lm_head.",
        lambda: GPT2Config(
            vocab_size=VOCAB,
            n_positions=64,
            n_embd=HIDDEN,
            n_layer=2,
            n_head=4,
            n_inner=192,
            activation_function="gelu_new",
            layer_norm_epsilon=1e-5,
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
        ),
        1333,
    ),
    Case(
        "llama_bf16",
        "Same config and seed as llama_gqa, weights saved as bfloat16; expected logits from the f32 model with "
        "bf16-rounded weights.",
        lambda: llama_base(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        1037,
        weight_dtype=torch.bfloat16,
    ),
    Case(
        "qwen2_f16",
        "Same config and seed as qwen2, weights saved as float16; expected logits from the f32 model with "
        "f16-rounded weights.",
        lambda: Qwen2Config(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            intermediate_size=160,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            **COMMON_SPECIAL,
        ),
        1148,
        weight_dtype=torch.float16,
    ),
    Case(
        "llama_sharded",
        "Llama GQA, 3 layers, untied, saved with max_shard_size 100KB -> several model-0000x-of-0000N.safetensors "
        "shards + model.safetensors.index.json.",
        lambda: llama_base(
            num_hidden_layers=3,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        ),
        1333,
        max_shard_size="100KB",
    ),
]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def randomize_(model: torch.nn.Module, case: Case, gen: torch.Generator) -> None:
    """Overwrite every parameter with seeded values of a useful magnitude."""
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied params are yielded once
            leaf = name.split(".")[-1]
            is_norm = any(s in name for s in ("norm", "ln_")) and p.ndim == 1
            is_embed = any(s in name for s in ("embed_tokens", "wte", "wpe"))
            std = None
            for key, s in case.std_overrides.items():
                if key in name:
                    std = s
            if is_norm and leaf == "weight":
                vals = torch.randn(p.shape, generator=gen) * STD_NORM
                if not case.norm_is_offset:
                    vals = vals + 1.0
            elif leaf == "bias" or p.ndim == 1:
                vals = torch.randn(p.shape, generator=gen) * (std or STD_BIAS)
            elif is_embed:
                vals = torch.randn(p.shape, generator=gen) * (std or STD_EMBED)
            else:
                vals = torch.randn(p.shape, generator=gen) * (std or STD_MATRIX)
            p.copy_(vals.to(p.dtype))


def get_cache(out):
    for attr in ("cache", "past_key_values"):
        c = getattr(out, attr, None)
        if c is not None:
            return c
    raise RuntimeError("model output carries no KV cache")


def forward(model, ids: torch.Tensor, cache=None, use_cache: bool = True):
    kwargs = dict(input_ids=ids[None, :], use_cache=use_cache)
    if cache is not None:
        try:
            out = model(**kwargs, cache=cache)
        except TypeError:
            out = model(**kwargs, past_key_values=cache)
    else:
        out = model(**kwargs)
    return out


def top2_gap(row: torch.Tensor) -> float:
    top = torch.topk(row, 2).values
    return float(top[0] - top[1])


def rotary_module(model):
    base = getattr(model, "model", None)
    return getattr(base, "rotary_emb", None) if base is not None else None


def rope_snapshot(rot) -> dict:
    return {
        "inv_freq": [float(x) for x in rot.inv_freq.detach().cpu().tolist()],
        "attention_scaling": float(rot.attention_scaling),
    }


def jsonable(x):
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return str(x)
    return x


def list_weight_files(case_dir: Path) -> dict:
    """name -> {"shape", "dtype", "file"} for all saved weights."""
    out = {}
    for f in sorted(case_dir.glob("model*.safetensors")):
        with safe_open(str(f), framework="pt") as sf:
            for k in sf.keys():
                sl = sf.get_slice(k)
                out[k] = {"shape": list(sl.get_shape()), "dtype": sl.get_dtype(), "file": f.name}
    return dict(sorted(out.items()))


def check_reload(case_dir: Path, prompt_ids, decode_ids, prefill_logits, decode_logits) -> float:
    """Reload the written fixture (config.json + weights, upcast to f32) into a fresh model and
    replay prefill + teacher-forced cached decode; must reproduce the expected logits."""
    m = AutoModelForCausalLM.from_pretrained(str(case_dir), dtype=torch.float32, attn_implementation="eager")
    m.eval()
    with torch.no_grad():
        out = forward(m, prompt_ids, use_cache=True)
        diff = float((out.logits[0] - prefill_logits).abs().max())
        cache = get_cache(out)
        for i in range(N_DECODE):
            out = forward(m, decode_ids[i : i + 1], cache=cache, use_cache=True)
            cache = get_cache(out)
            diff = max(diff, float((out.logits[0, -1] - decode_logits[i]).abs().max()))
    return diff


def save_safetensors_deterministic(tensors: dict, path: Path, metadata: dict) -> None:
    """Minimal safetensors writer with a byte-stable header (sorted keys).

    safetensors.torch.save_file serialises __metadata__ in hash-map order, so the bytes change
    from run to run; this writer keeps regenerated fixtures byte-identical.
    """
    dtypes = {torch.float32: "F32", torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16"}
    header: dict = {"__metadata__": {k: str(v) for k, v in sorted(metadata.items())}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    hdr = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    hdr += b" " * (-len(hdr) % 8)
    with open(path, "wb") as f:
        f.write(len(hdr).to_bytes(8, "little"))
        f.write(hdr)
        for raw in blobs:
            f.write(raw)


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


# --------------------------------------------------------------------------------------
# Per-case generation
# --------------------------------------------------------------------------------------
def run_case(case: Case) -> dict:
    seed = BASE_SEED + case.seed_offset
    print(f"\n=== {case.name} (seed {seed}) ===")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    config = case.make_config()
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    randomize_(model, case, gen)

    if case.weight_dtype != torch.float32:
        # Round the *parameters* to the storage dtype, then compute in f32 with the rounded values.
        # (Not model.to(dtype): that would also round non-persistent buffers such as the RoPE
        # inv_freq, which a loader recomputes in f32 from config.json.)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(case.weight_dtype).to(torch.float32))

    prompt_ids = torch.randint(0, VOCAB, (PROMPT_LEN,), generator=gen, dtype=torch.int64)

    case_dir = OUT_ROOT / case.name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)

    # ---- instrumentation (does not change numerics) ----
    rot = rotary_module(model)
    rope_calls: list[dict] = []
    hooks = []
    if rot is not None:
        rope_initial = rope_snapshot(rot)
        original_inv_freq = getattr(rot, "original_inv_freq", None)

        def rope_hook(mod, args, kwargs, output):
            pos = kwargs.get("position_ids", args[1] if len(args) > 1 else None)
            snap = rope_snapshot(mod)
            snap["seq_len"] = int(pos.max()) + 1
            snap["positions"] = [int(pos.min()), int(pos.max())]
            rope_calls.append(snap)

        hooks.append(rot.register_forward_hook(rope_hook, with_kwargs=True))

    raw_logits: list[torch.Tensor] = []
    final_cap = getattr(model.config, "final_logit_softcapping", None)
    if final_cap is not None:
        hooks.append(model.lm_head.register_forward_hook(lambda m, a, o: raw_logits.append(o.detach().clone())))

    attn_stats = {"max_abs_over_cap": 0.0, "n": 0, "n_over_half_cap": 0}
    attn_cap = getattr(model.config, "attn_logit_softcapping", None)
    patched = None
    if attn_cap is not None:
        import transformers.models.gemma2.modeling_gemma2 as g2

        orig_eager = g2.eager_attention_forward

        def spy_eager(module, query, key, value, attention_mask, dropout=0.0, scaling=None, softcap=None, **kw):
            if softcap is not None:
                k = g2.repeat_kv(key, module.num_key_value_groups)
                s = (torch.matmul(query, k.transpose(2, 3)) * scaling).abs() / softcap
                visible = (attention_mask == 0).expand_as(s) if attention_mask is not None else torch.ones_like(s, dtype=torch.bool)
                vals = s[visible]
                attn_stats["max_abs_over_cap"] = max(attn_stats["max_abs_over_cap"], float(vals.max()))
                attn_stats["n"] += int(vals.numel())
                attn_stats["n_over_half_cap"] += int((vals > 0.5).sum())
            return orig_eager(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, softcap=softcap, **kw)

        g2.eager_attention_forward = spy_eager
        patched = (g2, orig_eager)

    try:
        with torch.no_grad():
            # ---- prefill ----
            out = forward(model, prompt_ids, use_cache=True)
            prefill_logits = out.logits[0].float().clone()
            cache = get_cache(out)

            decode_ids = torch.zeros(N_DECODE, dtype=torch.int64)
            decode_logits = torch.zeros(N_DECODE, VOCAB, dtype=torch.float32)
            decode_ids[0] = int(torch.argmax(prefill_logits[-1]))
            gaps = [top2_gap(prefill_logits[-1])]
            # ---- cached single-token decode ----
            for i in range(N_DECODE):
                out = forward(model, decode_ids[i : i + 1], cache=cache, use_cache=True)
                cache = get_cache(out)
                decode_logits[i] = out.logits[0, -1].float()
                gaps.append(top2_gap(decode_logits[i]))
                if i + 1 < N_DECODE:
                    decode_ids[i + 1] = int(torch.argmax(decode_logits[i]))
            rope_final_cached = rope_snapshot(rot) if rot is not None else None
            cached_rope_calls = list(rope_calls)
            final_raw = torch.cat([r.reshape(-1, VOCAB) for r in raw_logits]) if raw_logits else None

            # ---- sanity: uncached forward over prompt + all decode ids ----
            # Position P+i of the full sequence holds decode_ids[i] and its logits must equal
            # decode_logits[i]; positions < P must equal prefill_logits.
            full = torch.cat([prompt_ids, decode_ids])
            out_full = forward(model, full, use_cache=False)
            full_logits = out_full.logits[0].float()
            diff_prefill = float((full_logits[:PROMPT_LEN] - prefill_logits).abs().max())
            diff_decode = float((full_logits[PROMPT_LEN:] - decode_logits).abs().max())
            argmax_agree = bool(
                torch.equal(full_logits[PROMPT_LEN - 1 : -1].argmax(-1), decode_ids)
            )
    finally:
        for h in hooks:
            h.remove()
        if patched is not None:
            patched[0].eager_attention_forward = patched[1]

    rope_type = None
    if rot is not None:
        rope_type = rot.rope_type
    # Cases whose RoPE depends on the current sequence length:
    #  * dynamic NTK recomputes inv_freq from seq_len = max(position_ids)+1 on every forward that
    #    grows past max_seq_len_cached. In cached decoding the new token's q/k use the new
    #    inv_freq, but the keys already in the cache keep the rotation they were written with.
    #    The uncached run rotates *all* keys with inv_freq(seq_len=32), so the two legitimately
    #    differ. Both the prompt (24) and the decode steps (25..32) exceed max_pos (16) here.
    #  * longrope switches short->long factors when seq_len > original_max_position_embeddings;
    #    the same staleness applies if the switch happens *during* decoding. In phi3_longrope the
    #    24-token prompt already exceeds original_max (16), so every call uses long factors and
    #    cached == uncached; we assert in that case and skip only if a switch happens mid-decode.
    seq_dependent = False
    skip_reason = None
    if rope_type == "dynamic":
        seq_dependent = True
        skip_reason = "dynamic NTK: inv_freq recomputed per forward as seq_len grows; cached keys keep old rotation"
    elif rope_type == "longrope":
        omax = model.config.rope_parameters["original_max_position_embeddings"]
        if PROMPT_LEN <= omax < PROMPT_LEN + N_DECODE:
            seq_dependent = True
            skip_reason = "longrope switches short->long factors mid-decode; cached keys keep short rotation"
    print(f"  max|uncached - prefill| = {diff_prefill:.3e}   max|uncached - decode| = {diff_decode:.3e}")
    if seq_dependent:
        print(f"  (cached/uncached assertion skipped: {skip_reason}; argmax agree: {argmax_agree})")
    else:
        assert diff_prefill <= TOL and diff_decode <= TOL, (case.name, diff_prefill, diff_decode)

    print("  top-2 gaps (prefill[-1], decode[0..7]): " + " ".join(f"{g:.3f}" for g in gaps))
    assert min(gaps) >= MIN_GAP, f"{case.name}: top-2 gap {min(gaps)} < {MIN_GAP}; change the seed"
    print(f"  prompt_ids[:8] = {prompt_ids[:8].tolist()}  decode_ids = {decode_ids.tolist()}")
    print(
        f"  logits: std {float(prefill_logits.std()):.3f}  max|.| {float(prefill_logits.abs().max()):.3f}"
    )

    softcap_info = None
    if final_cap is not None:
        r = final_raw.abs() / final_cap
        softcap_info = {
            "final_logit_softcapping": final_cap,
            "final_raw_max_abs_over_cap": float(r.max()),
            "final_frac_abs_over_half_cap": float((r > 0.5).float().mean()),
            "attn_logit_softcapping": attn_cap,
            "attn_scores_max_abs_over_cap": attn_stats["max_abs_over_cap"],
            "attn_frac_abs_over_half_cap": attn_stats["n_over_half_cap"] / max(attn_stats["n"], 1),
        }
        print(
            "  softcap: final raw max|x|/cap = {final_raw_max_abs_over_cap:.2f} (frac>0.5: "
            "{final_frac_abs_over_half_cap:.2f}); attn max|x|/cap = {attn_scores_max_abs_over_cap:.2f} "
            "(frac>0.5: {attn_frac_abs_over_half_cap:.2f})".format(**softcap_info)
        )
        # tanh(0.5) ~ 0.46 vs 0.5: make sure a meaningful share of entries is in the nonlinear regime.
        assert softcap_info["final_frac_abs_over_half_cap"] > 0.05, softcap_info
        assert softcap_info["attn_frac_abs_over_half_cap"] > 0.05, softcap_info

    # ---- save weights + config ----
    save_kwargs = {}
    if case.max_shard_size:
        save_kwargs["max_shard_size"] = case.max_shard_size
    if case.weight_dtype != torch.float32:
        model.to(case.weight_dtype)
    model.save_pretrained(str(case_dir), **save_kwargs)
    model.to(torch.float32)
    gen_cfg = case_dir / "generation_config.json"
    if gen_cfg.exists():
        gen_cfg.unlink()  # not needed by the decoder; keep fixtures minimal

    save_safetensors_deterministic(
        {
            "prompt_ids": prompt_ids.contiguous(),
            "prefill_logits": prefill_logits.contiguous(),
            "decode_ids": decode_ids.contiguous(),
            "decode_logits": decode_logits.contiguous(),
        },
        case_dir / "expected.safetensors",
        metadata={"case": case.name, "seed": str(seed), "transformers": transformers.__version__},
    )

    # ---- rope record ----
    rope_info = None
    if rot is not None:
        rp = jsonable(dict(model.config.rope_parameters))
        head_dim = getattr(model.config, "head_dim", None) or model.config.hidden_size // model.config.num_attention_heads
        rope_info = {
            "rope_type": rope_type,
            "rope_parameters": rp,
            "head_dim": head_dim,
            "rotary_dim": 2 * len(rope_initial["inv_freq"]),
            "inv_freq_initial": rope_initial["inv_freq"],
            "attention_scaling_initial": rope_initial["attention_scaling"],
            "inv_freq_final_cached": rope_final_cached["inv_freq"],
            "attention_scaling_final_cached": rope_final_cached["attention_scaling"],
            "max_position_embeddings": model.config.max_position_embeddings,
        }
        if original_inv_freq is not None:
            rope_info["original_inv_freq"] = [float(x) for x in original_inv_freq.tolist()]
        if rope_type == "longrope":
            rope_info["long_inv_freq"] = [float(x) for x in rot.long_inv_freq.tolist()]
        if rope_type in ("dynamic", "longrope"):
            names = ["prefill"] + [f"decode[{i}]" for i in range(N_DECODE)]
            rope_info["per_forward_cached"] = [
                {"call": n, **c} for n, c in zip(names, cached_rope_calls)
            ]
        inv_json = {
            "case": case.name,
            "note": "inv_freq has rotary_dim/2 entries; cos/sin = cos/sin(pos * inv_freq) * attention_scaling, "
            "emb = cat(freqs, freqs). per_forward_cached (dynamic/longrope only) lists the inv_freq in effect "
            "for each cached forward (prefill then 8 decode steps); seq_len = max(position_ids)+1.",
            **rope_info,
        }
        (case_dir / "inv_freq.json").write_text(json.dumps(inv_json, indent=1) + "\n")

    reload_diff = check_reload(case_dir, prompt_ids, decode_ids, prefill_logits, decode_logits)
    print(f"  reload from disk (f32, eager) + same cached run: max diff {reload_diff:.3e}")
    assert reload_diff <= TOL, (case.name, reload_diff)

    weights = list_weight_files(case_dir)
    size = dir_size(case_dir)
    print(f"  wrote {os.path.relpath(case_dir, REPO_ROOT)}  ({size / 1024:.1f} KiB, {len(weights)} tensors)")
    assert size < 2 * 1024 * 1024, f"{case.name} too large: {size}"
    if case.max_shard_size:
        shards = sorted(p.name for p in case_dir.glob("model-*.safetensors"))
        assert len(shards) >= 2 and (case_dir / "model.safetensors.index.json").exists(), shards

    cfg_json = json.loads((case_dir / "config.json").read_text())
    return {
        "name": case.name,
        "description": case.description,
        "model_type": cfg_json.get("model_type"),
        "architectures": cfg_json.get("architectures"),
        "config_class": type(model.config).__name__,
        "seed": seed,
        "weight_dtype": str(case.weight_dtype).replace("torch.", ""),
        "compute_dtype": "float32",
        "files": sorted(p.name for p in case_dir.iterdir()),
        "size_bytes": size,
        "prompt_len": PROMPT_LEN,
        "n_decode": N_DECODE,
        "vocab_size": VOCAB,
        "decode_ids": decode_ids.tolist(),
        "rope": None
        if rope_info is None
        else {
            k: rope_info[k]
            for k in (
                "rope_type",
                "rope_parameters",
                "head_dim",
                "rotary_dim",
                "inv_freq_initial",
                "attention_scaling_initial",
                "inv_freq_final_cached",
                "attention_scaling_final_cached",
            )
        },
        "checks": {
            "max_abs_diff_uncached_vs_prefill": diff_prefill,
            "max_abs_diff_uncached_vs_decode": diff_decode,
            "cached_equals_uncached_asserted": not seq_dependent,
            "cached_vs_uncached_skip_reason": skip_reason,
            "uncached_argmax_matches_decode_ids": argmax_agree,
            "min_top2_gap": min(gaps),
            "top2_gaps": gaps,
            "prefill_logits_std": float(prefill_logits.std()),
            "softcap": softcap_info,
            "max_abs_diff_reloaded_fixture": reload_diff,
        },
        "weights": weights,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", help="generate only this case (repeatable)")
    ap.add_argument("--list", action="store_true", help="list cases and exit")
    args = ap.parse_args(argv)

    if args.list:
        for c in CASES:
            print(f"{c.name:20s} {c.description}")
        return 0

    names = [c.name for c in CASES]
    selected = CASES
    if args.only:
        unknown = [n for n in args.only if n not in names]
        if unknown:
            ap.error(f"unknown case(s) {unknown}; known: {names}")
        selected = [c for c in CASES if c.name in args.only]

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    OUT_ROOT.mkdir(parents=True, exist_ok=True)

    manifest_path = OUT_ROOT / "manifest.json"
    existing, existing_top = {}, {}
    if manifest_path.exists():
        try:
            existing_top = json.loads(manifest_path.read_text())
            existing = {c["name"]: c for c in existing_top.get("cases", [])}
        except (json.JSONDecodeError, KeyError):
            existing, existing_top = {}, {}

    results = {}
    for case in selected:
        results[case.name] = run_case(case)

    # Keep manifest entries of cases not regenerated this run (for --only), in CASES order.
    ordered = []
    for n in names:
        if n in results:
            ordered.append(results[n])
        elif n in existing:
            ordered.append(existing[n])
    # Cases written by other generators (gen_golden_families2.py) are kept as they are, after ours.
    ordered += [c for n, c in existing.items() if n not in names]

    manifest = {
        "generator": "scripts/golden/gen_golden.py",
        "notes": "scripts/golden/NOTES.md",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "python_version": platform.python_version(),
        "base_seed": BASE_SEED,
        "seed_rule": "per-case seed = base_seed + case offset; torch.manual_seed(seed) and a torch.Generator(seed) "
        "drive parameter init (in named_parameters order) and then the prompt ids",
        "init": {
            "matrix_std": STD_MATRIX,
            "embedding_std": STD_EMBED,
            "norm_weight": f"1 + N(0, {STD_NORM}^2) (Gemma2: N(0, {STD_NORM}^2) since its RMSNorm uses 1+w)",
            "bias_std": STD_BIAS,
            "overrides": {c.name: c.std_overrides for c in CASES if c.std_overrides},
        },
        "prompt_len": PROMPT_LEN,
        "n_decode": N_DECODE,
        "attn_implementation": "eager",
        "expected_tensors": {
            "prompt_ids": "I64 [P]",
            "prefill_logits": "F32 [P, V] logits at every prompt position (one forward over the prompt)",
            "decode_ids": "I64 [8]; decode_ids[0] = argmax(prefill_logits[-1]); decode_ids[i+1] = argmax(decode_logits[i])",
            "decode_logits": "F32 [8, V]; logits of feeding decode_ids[i] alone with the KV cache (prompt + decode_ids[:i])",
        },
        "tolerance_cached_vs_uncached": TOL,
    }
    # Keep top-level keys added by other generators (before "cases", in their existing order).
    for k, v in existing_top.items():
        if k not in manifest and k != "cases":
            manifest[k] = v
    manifest["cases"] = ordered
    manifest_path.write_text(json.dumps(jsonable(manifest), indent=1) + "\n")
    print(f"\nwrote {os.path.relpath(manifest_path, REPO_ROOT)} ({len(ordered)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
