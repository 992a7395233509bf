#!/usr/bin/env python3
"""Int4 fixtures: known weights packed in the AutoAWQ (GEMM) and AutoGPTQ safetensors layouts.

    ~/.cache/prometheus/artifacts/venv-eval/bin/python scripts/quant/make_int4_fixtures.py

Writes under tests/fixtures/quant/:
- int4_layers.safetensors: one layer (24 outputs, 256 inputs) per case — AWQ with group sizes
  32/64/128, GPTQ with 32/64/128, with and without act-order (a permuted `g_idx`), symmetric and
  asymmetric zeros — as `<case>.{qweight,qzeros,scales[,g_idx]}`, plus `<case>.expected`: the
  dequantized f32 weights (out, in) computed here from the unpacked codes.
- llama_gqa_awq_g32/, llama_gqa_gptq_g64_act/: the golden tiny Llama (tests/fixtures/golden/
  llama_gqa) with every linear layer quantized in that layout (config.json gets the
  `quantization_config` AutoAWQ/AutoGPTQ write), and *_ref/ twins holding the dequantized f32
  weights, so a loader's logits can be checked against plain f32 inference.

Packing follows AutoAWQ's WQLinear_GEMM.from_linear (nibble order [0, 2, 4, 6, 1, 3, 5, 7] within
each int32 of 8 outputs, qweight (in, out/8)) and AutoGPTQ's QuantLinear.pack (qweight (in/8,
out), inputs packed 8 per int32 in order; qzeros (groups, out/8) stored minus one; g_idx per
input). Dequantization: w = fp16((q - z) * scale), the fp16 product AutoAWQ's dequantize_gemm and
AutoGPTQ's torch path compute. Only numpy; safetensors are written by hand (8-byte header
length, JSON header, raw little-endian data).
"""
import json
import os
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests/fixtures/quant")
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
DT = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int32"): "I32"}


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        assert v["dtype"] == "F32", (k, v["dtype"])
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype="<f4").reshape(v["shape"]).copy()
    return out


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[k] = {"dtype": DT[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def quantize(w, group, sym, perm):
    """w (out, in) f32 -> codes q (out, in), zeros z (groups, out), scales s (groups, out) f16,
    g_idx (in,). Inputs are grouped in `perm` order (act-order), group j = perm[j*group:(j+1)*group]."""
    out_f, in_f = w.shape
    groups = in_f // group
    g_idx = np.empty(in_f, dtype=np.int32)
    for j in range(groups):
        g_idx[perm[j * group:(j + 1) * group]] = j
    q = np.empty((out_f, in_f), dtype=np.int32)
    z = np.empty((groups, out_f), dtype=np.int32)
    s = np.empty((groups, out_f), dtype=np.float16)
    for j in range(groups):
        cols = np.where(g_idx == j)[0]
        x = w[:, cols]
        if sym:
            amax = np.maximum(np.abs(x).max(axis=1), 1e-8)
            scale = (2 * amax / 15).astype(np.float16)
            zero = np.full(out_f, 8, dtype=np.int32)
        else:
            lo, hi = np.minimum(x.min(axis=1), 0), np.maximum(x.max(axis=1), 0)
            scale = np.maximum((hi - lo) / 15, 1e-8).astype(np.float16)
            # zeros >= 1: the GPTQ v1 format stores zero - 1 in 4 bits
            zero = np.clip(np.round(-lo / scale.astype(np.float32)), 1, 15).astype(np.int32)
        codes = np.clip(np.round(x / scale.astype(np.float32)[:, None]) + zero[:, None], 0, 15)
        q[:, cols] = codes.astype(np.int32)
        z[j], s[j] = zero, scale
    return q, z, s, g_idx


def dequantize(q, z, s, g_idx):
    zz, ss = z[g_idx].T, s[g_idx].T  # (out, in)
    return ((q - zz).astype(np.float16) * ss).astype(np.float32)


def pack_awq(q, z, s):
    out_f, in_f = q.shape
    qt = q.T.astype(np.uint32)  # (in, out)
    qweight = np.zeros((in_f, out_f // 8), dtype=np.uint32)
    qzeros = np.zeros((z.shape[0], out_f // 8), dtype=np.uint32)
    for c in range(out_f // 8):
        for i, o in enumerate(AWQ_ORDER):
            qweight[:, c] |= qt[:, 8 * c + o] << np.uint32(4 * i)
            qzeros[:, c] |= z[:, 8 * c + o].astype(np.uint32) << np.uint32(4 * i)
    return {"qweight": qweight.view(np.int32), "qzeros": qzeros.view(np.int32), "scales": s}


def pack_gptq(q, z, s, g_idx):
    out_f, in_f = q.shape
    qt = q.T.astype(np.uint32)  # (in, out)
    qweight = np.zeros((in_f // 8, out_f), dtype=np.uint32)
    for r in range(in_f // 8):
        for j in range(8):
            qweight[r] |= qt[8 * r + j] << np.uint32(4 * j)
    zs = (z - 1).astype(np.uint32)  # v1: stored minus one
    qzeros = np.zeros((z.shape[0], out_f // 8), dtype=np.uint32)
    for c in range(out_f // 8):
        for j in range(8):
            qzeros[:, c] |= zs[:, 8 * c + j] << np.uint32(4 * j)
    return {"qweight": qweight.view(np.int32), "qzeros": qzeros.view(np.int32), "scales": s, "g_idx": g_idx}


def layer(rng, out_f, in_f):
    w = (rng.standard_normal((out_f, in_f)) * 0.05).astype(np.float32)
    w[:, rng.integers(0, in_f, 3)] *= 8  # a few outlier inputs
    return w


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261129)
    tensors = {}
    cases = [("awq_g32", "awq", 32, False, False), ("awq_g64", "awq", 64, False, False),
             ("awq_g128", "awq", 128, False, False), ("gptq_g32", "gptq", 32, True, False),
             ("gptq_g64_act", "gptq", 64, True, True), ("gptq_g128", "gptq", 128, False, False),
             ("gptq_g128_act", "gptq", 128, False, True)]
    for name, fmt, group, sym, act in cases:
        w = layer(rng, 24, 256)
        perm = rng.permutation(256) if act else np.arange(256)
        q, z, s, g_idx = quantize(w, group, sym, perm)
        parts = pack_awq(q, z, s) if fmt == "awq" else pack_gptq(q, z, s, g_idx)
        for k, v in parts.items():
            tensors[f"{name}.{k}"] = v
        tensors[f"{name}.expected"] = dequantize(q, z, s, g_idx)
    write_safetensors(os.path.join(OUT, "int4_layers.safetensors"), tensors)

    golden = os.path.join(ROOT, "tests/fixtures/golden/llama_gqa")
    cfg = json.load(open(os.path.join(golden, "config.json")))
    weights = read_safetensors(os.path.join(golden, "model.safetensors"))
    for dirname, fmt, group, act in [("llama_gqa_awq_g32", "awq", 32, False), ("llama_gqa_gptq_g64_act", "gptq", 64, True)]:
        packed, ref = {}, {}
        for k, w in weights.items():
            if k.endswith("_proj.weight"):
                prefix = k[: -len(".weight")]
                perm = rng.permutation(w.shape[1]) if act else np.arange(w.shape[1])
                q, z, s, g_idx = quantize(w, group, fmt == "gptq" and not act, perm)
                parts = pack_awq(q, z, s) if fmt == "awq" else pack_gptq(q, z, s, g_idx)
                for p, v in parts.items():
                    packed[f"{prefix}.{p}"] = v
                ref[k] = dequantize(q, z, s, g_idx)
            else:
                packed[k] = ref[k] = w
        qc = ({"quant_method": "awq", "bits": 4, "group_size": group, "zero_point": True, "version": "gemm"}
              if fmt == "awq" else
              {"quant_method": "gptq", "bits": 4, "group_size": group, "desc_act": act, "sym": not act,
               "checkpoint_format": "gptq"})
        for d, ts, c in [(dirname, packed, dict(cfg, quantization_config=qc)), (dirname + "_ref", ref, cfg)]:
            os.makedirs(os.path.join(OUT, d), exist_ok=True)
            json.dump(c, open(os.path.join(OUT, d, "config.json"), "w"), indent=2)
            write_safetensors(os.path.join(OUT, d, "model.safetensors"), ts)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
