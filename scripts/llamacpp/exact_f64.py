#!/usr/bin/env python3
"""Float64 forward pass of the SmolLM2 Q4_1 GGUF, as a tolerance calibrator for the llama.cpp reference.

llama.cpp does not compute "the" exact function of the quantized weights: it quantizes activations
to Q8_1 before every Q4_1 matmul, stores K/V in f16, uses flash attention, and its single-token
(decode) and batched (prefill) paths differ numerically. This script dequantizes every tensor with
gguf-py (the copy vendored in llama.cpp, so the dequantization is llama.cpp's own reference code)
and runs the LLaMA forward in float64 torch with no activation quantization. Comparing llama.cpp
against it tells how far llama.cpp itself sits from exact math on this model, i.e. which
tolerances a third implementation (ours) can reasonably be held to.

Reads tests/reference/smollm2_q4_1_llamacpp.json (run reference.py first) and writes
tests/reference/smollm2_q4_1_f64_check.json:
  * per greedy prompt: teacher-forced f64 top-5 logprobs and argmax on llama.cpp's own
    prompt+continuation sequence, and summary deviations of llama.cpp (incremental and batched)
    from f64;
  * perplexity: the same llama-perplexity computation (same chunks, BOS rule, scored half) in f64.

Needs numpy + torch: run with /root/venvs/ref/bin/python (or any env that has them), e.g.
  PYTHONPATH=$PROM_ARTIFACTS/llama-cpp-python-0.3.36/vendor/llama.cpp/gguf-py \\
    /root/venvs/ref/bin/python scripts/llamacpp/exact_f64.py
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
ART = pathlib.Path(os.environ.get("PROM_ARTIFACTS", pathlib.Path.home() / ".cache/prometheus/artifacts"))
sys.path.insert(0, str(ART / "llama-cpp-python-0.3.36/vendor/llama.cpp/gguf-py"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gguf import GGUFReader, quants  # noqa: E402

torch.set_default_dtype(torch.float64)
torch.set_num_threads(int(os.environ.get("THREADS", "2")))


class F64Llama:
    def __init__(self, path: pathlib.Path):
        r = GGUFReader(str(path))
        f = {k: v.contents() for k, v in r.fields.items() if k.startswith("llama.")}
        self.n_layer = int(f["llama.block_count"])
        self.n_head = int(f["llama.attention.head_count"])
        self.n_head_kv = int(f["llama.attention.head_count_kv"])
        self.n_embd = int(f["llama.embedding_length"])
        self.head_dim = self.n_embd // self.n_head
        self.eps = float(f["llama.attention.layer_norm_rms_epsilon"])
        self.theta = float(f["llama.rope.freq_base"])
        self.w = {}
        for t in r.tensors:
            a = quants.dequantize(t.data, t.tensor_type)
            shape = [int(x) for x in reversed(t.shape)]
            self.w[t.name] = torch.from_numpy(np.asarray(a, dtype=np.float64).reshape(shape))
        # SmolLM2 ties the output projection to the token embedding (no output.weight).
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])

    def rms(self, x, w):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x):
        # llama.cpp LLAMA arch = ROPE_TYPE_NORM: rotate adjacent pairs (2i, 2i+1); the HF->GGUF
        # converter permuted Q/K rows so that this matches HF's rotate_half convention.
        d = self.head_dim
        pos = torch.arange(x.shape[0])[:, None]
        inv = self.theta ** (-torch.arange(0, d, 2) / d)
        ang = pos * inv[None, :]
        c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    @torch.no_grad()
    def logits(self, ids: list[int]) -> torch.Tensor:
        w, H, KV, D = self.w, self.n_head, self.n_head_kv, self.head_dim
        T = len(ids)
        x = w["token_embd.weight"][torch.tensor(ids)]
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self.rms(x, w[p + "attn_norm.weight"])
            q = self.rope((h @ w[p + "attn_q.weight"].T).view(T, H, D))
            k = self.rope((h @ w[p + "attn_k.weight"].T).view(T, KV, D)).repeat_interleave(H // KV, 1)
            v = (h @ w[p + "attn_v.weight"].T).view(T, KV, D).repeat_interleave(H // KV, 1)
            att = (torch.einsum("thd,shd->hts", q, k) / math.sqrt(D) + mask).softmax(-1)
            x = x + torch.einsum("hts,shd->thd", att, v).reshape(T, H * D) @ w[p + "attn_output.weight"].T
            h = self.rms(x, w[p + "ffn_norm.weight"])
            g = torch.nn.functional.silu(h @ w[p + "ffn_gate.weight"].T)
            x = x + (g * (h @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
        return self.rms(x, w["output_norm.weight"]) @ self.out.T


def dev_stats(ref_top5, f64_lp):
    """|llama.cpp logprob - f64 logprob| over llama.cpp's top-5 ids at every position."""
    d = [abs(v - float(f64_lp[j, i])) for j, top in enumerate(ref_top5) for i, v in top]
    d1 = [abs(top[0][1] - float(f64_lp[j, top[0][0]])) for j, top in enumerate(ref_top5)]
    return {"top5_max_abs": round(max(d), 5), "top5_mean_abs": round(sum(d) / len(d), 5),
            "top1_max_abs": round(max(d1), 5), "top1_mean_abs": round(sum(d1) / len(d1), 5)}


def main():
    ref_path = REPO / "tests/reference/smollm2_q4_1_llamacpp.json"
    out_path = REPO / "tests/reference/smollm2_q4_1_f64_check.json"
    ref = json.loads(ref_path.read_text())
    model_path = ART / "smollm2" / ref["model"]["file"]
    t0 = time.time()
    m = F64Llama(model_path)

    prompts = []
    for p in ref["greedy"]["prompts"]:
        ids = p["prompt_ids"] + p["continuation_ids"][:-1]
        n = len(p["prompt_ids"])
        lp = m.logits(ids).log_softmax(-1)[n - 1:]
        top = [[[int(i), round(float(lp[j, i]), 5)] for i in lp[j].topk(5).indices] for j in range(lp.shape[0])]
        am = [t[0][0] for t in top]
        e = {
            "kind": p["kind"],
            "f64_argmax": am,
            "argmax_mismatch_vs_llamacpp_greedy": [j for j in range(len(am)) if am[j] != p["continuation_ids"][j]],
            "llamacpp_incremental_vs_f64": dev_stats(p["top5_logprobs"], lp),
            "f64_top5_logprobs": top,
        }
        if "top5_logprobs_batched" in p:
            e["llamacpp_batched_vs_f64"] = dev_stats(p["top5_logprobs_batched"], lp)
        prompts.append(e)
        print(f"[f64] {p['kind']}: mismatches {e['argmax_mismatch_vs_llamacpp_greedy']} "
              f"inc {e['llamacpp_incremental_vs_f64']} batched {e.get('llamacpp_batched_vs_f64')}", file=sys.stderr)

    pr = ref["perplexity"]
    toks, n_ctx, first = pr["tokens"], pr["n_ctx"], pr["n_ctx"] // 2
    bos = ref["model"]["bos_id"]
    nll_total, count, chunks = 0.0, 0, []
    for c in range(len(toks) // n_ctx):
        chunk = toks[c * n_ctx:(c + 1) * n_ctx]
        if pr["add_bos"]:
            chunk = [bos] + chunk[1:]
        lp = m.logits(chunk).log_softmax(-1)
        nll = -sum(float(lp[p, toks[c * n_ctx + p + 1]]) for p in range(first, n_ctx - 1))
        nll_total += nll
        count += n_ctx - 1 - first
        chunks.append({"chunk": c + 1, "nll_sum": round(nll, 6), "chunk_ppl": round(math.exp(nll / (n_ctx - 1 - first)), 6)})
        print(f"[f64] ppl chunk {c + 1}: {math.exp(nll / (n_ctx - 1 - first)):.4f}", file=sys.stderr)
    llama_chunks = pr["python_reproduction"]["chunks"]

    doc = {
        "schema": "prometheus.f64_check.v1",
        "generated_by": "scripts/llamacpp/exact_f64.py",
        "what": "float64 torch forward of the GGUF weights dequantized by llama.cpp's gguf-py (no activation "
                "quantization, f64 KV, exact softmax), teacher-forced on the sequences of smollm2_q4_1_llamacpp.json",
        "model_sha256": ref["model"]["sha256"],
        "greedy": prompts,
        "perplexity": {
            "f64_ppl": round(math.exp(nll_total / count), 6),
            "llamacpp_ppl": pr["ppl"],
            "n_scored": count,
            "chunks": chunks,
            "llamacpp_chunk_nll_sum": [c["nll_sum"] for c in llama_chunks],
        },
        "seconds": round(time.time() - t0, 1),
    }
    from reference import to_json  # same compact formatting
    out_path.write_text(to_json(doc) + "\n", encoding="utf-8")
    print(f"wrote {out_path}: f64 PPL {doc['perplexity']['f64_ppl']} vs llama.cpp {pr['ppl']}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
    main()
