#!/usr/bin/env python3
"""llama.cpp reference data for the "real weights" parity check.

Produces tests/reference/smollm2_q4_1_llamacpp.json from llama.cpp built by
scripts/llamacpp/build.sh:

  * greedy:           5 plain-text prompts -> prompt ids + 64 argmax continuation ids, with
                      the top-5 log-probabilities llama.cpp assigns at every generated position
  * perplexity:       the llama-perplexity binary on tests/reference/ppl_text.txt (-c 512 -b 512
                      -t 2), its output parsed, the exact token list it scores, the method, and an
                      independent re-computation through the Python binding (per-chunk NLL sums)
  * tokenizer_probe:  llama.cpp token ids for a handful of tricky strings

Token ids and logits come from llama-cpp-python 0.3.36's own ctypes bindings, used straight
from the sdist (no compilation) and pointed at the libllama.so of our build through
LLAMA_CPP_LIB_PATH. Only llama_cpp/llama_cpp.py (the raw ctypes layer) is imported, so
numpy etc. are not needed.

Usage (normally via scripts/llamacpp/reference.sh, which builds first):
  python3 scripts/llamacpp/reference.py [--model PATH] [--build DIR] [--out PATH]
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import hashlib
import heapq
import json
import math
import os
import pathlib
import platform
import re
import subprocess
import sys
import time
import types

REPO = pathlib.Path(__file__).resolve().parents[2]
ART = pathlib.Path(os.environ.get("PROM_ARTIFACTS", pathlib.Path.home() / ".cache/prometheus/artifacts"))
SDIST = ART / "llama-cpp-python-0.3.36"

N_CONTINUATION = 64
TOP_K = 5
THREADS = 2
PPL_CTX = 512
PPL_BATCH = 512

PROMPTS = [
    {"kind": "factual_question",
     "prompt": "Question: What is the largest planet in the solar system, and roughly how many times wider is it than Earth?\nAnswer:"},
    {"kind": "story_opening",
     "prompt": "The old clockmaker locked his shop for the last time on a rainy Tuesday evening. As he turned the key, he heard"},
    {"kind": "code",
     "prompt": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number iteratively.\"\"\"\n"},
    {"kind": "list",
     "prompt": "Here are five tips for staying focused while studying:\n1."},
    {"kind": "instruction",
     "prompt": "Rewrite the following sentence in the passive voice: \"The committee approved the new budget on Friday.\"\n"},
]

TOKENIZER_PROBES = [
    "Hello world",
    " Hello world",
    "   three leading spaces",
    "\tTab\tseparated\tvalues\n",
    "line one\nline two\n\nline four",
    "Numbers: 0 7 42 1234567 3.14159 -2.5e-10 1,000,000",
    "def f(x):\n    return x**2 + 1  # square plus one\n",
    "if (a != b && c <= d) { printf(\"%d\\n\", a); }",
    "naïve café résumé Ångström façade",
    "Привет, мир! Как дела?",
    "日本語のテキストと中文文本",
    "한국어 문장입니다",
    "emoji: 🙂🚀👨‍👩‍👧 ✓",
    "ÆØÅ ßẞ ﬁ ½ ² µ",
    "<|im_start|>user\nhi<|im_end|>",
    "   ",
    "\n\n\n",
    "URL: https://example.com/path?q=1&r=two#frag",
]


# --------------------------------------------------------------------------- bindings

def load_bindings(lib_dir: pathlib.Path):
    """Import llama_cpp/llama_cpp.py (ctypes layer) without running the package __init__
    (which would pull in numpy, jinja2, ... for the high-level API)."""
    os.environ["LLAMA_CPP_LIB_PATH"] = str(lib_dir)
    pkg = types.ModuleType("llama_cpp")
    pkg.__path__ = [str(SDIST / "llama_cpp")]
    sys.modules["llama_cpp"] = pkg
    import importlib
    L = importlib.import_module("llama_cpp.llama_cpp")
    # Silence llama.cpp's (very verbose) logging; keep the lines we want to record, echo errors.
    def on_log(level, text, _user):
        line = (text or b"").decode("utf-8", errors="replace")
        if "flash_attn" in line or "Flash Attention" in line or "n_ctx" in line or "type_k" in line or "causal_attn" in line:
            LOG_KEEP.append(line.strip())
        if level == 4:  # GGML_LOG_LEVEL_ERROR
            sys.stderr.write(line)
    global _LOG_CB
    _LOG_CB = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(on_log)
    L.llama_log_set(_LOG_CB, None)
    return L


LOG_KEEP: list[str] = []
_LOG_CB = None


class Model:
    def __init__(self, L, path: pathlib.Path, n_ctx: int):
        self.L = L
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"failed to load {path}")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = n_ctx
        cp.n_seq_max = 1
        cp.n_threads = THREADS
        cp.n_threads_batch = THREADS
        self.flash_attn_type = int(cp.flash_attn_type)
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("failed to create context")
        self.n_ctx = n_ctx
        self.add_bos = bool(L.llama_vocab_get_add_bos(self.vocab))
        self.add_eos = bool(L.llama_vocab_get_add_eos(self.vocab))
        self.bos = int(L.llama_vocab_bos(self.vocab))
        self.eos = int(L.llama_vocab_eos(self.vocab))

    # tokenizer -------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool, parse_special: bool = False) -> list[int]:
        b = text.encode("utf-8")
        n_max = len(b) + 16
        buf = (self.L.llama_token * n_max)()
        n = self.L.llama_tokenize(self.vocab, b, len(b), buf, n_max, add_special, parse_special)
        if n < 0:
            n_max = -n
            buf = (self.L.llama_token * n_max)()
            n = self.L.llama_tokenize(self.vocab, b, len(b), buf, n_max, add_special, parse_special)
        return list(buf[:n])

    def piece(self, tok: int) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = self.L.llama_token_to_piece(self.vocab, tok, buf, 256, 0, True)
        return buf.raw[:n]

    def detokenize(self, toks: list[int]) -> str:
        arr = (self.L.llama_token * len(toks))(*toks)
        cap = 16 * len(toks) + 64
        buf = ctypes.create_string_buffer(cap)
        n = self.L.llama_detokenize(self.vocab, arr, len(toks), buf, cap, False, True)
        return buf.raw[:n].decode("utf-8", errors="replace")

    def is_eog(self, tok: int) -> bool:
        return bool(self.L.llama_vocab_is_eog(self.vocab, tok))

    # inference -------------------------------------------------------------
    def clear(self):
        self.L.llama_memory_clear(self.L.llama_get_memory(self.ctx), True)

    def decode(self, toks: list[int], pos0: int, all_logits: bool):
        """Decode toks at positions pos0.. on sequence 0; logits for all or only the last."""
        L = self.L
        n = len(toks)
        batch = L.llama_batch_init(n, 0, 1)
        try:
            for i, t in enumerate(toks):
                batch.token[i] = t
                batch.pos[i] = pos0 + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1 if (all_logits or i == n - 1) else 0
            batch.n_tokens = n
            rc = L.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode returned {rc}")
        finally:
            L.llama_batch_free(batch)

    def logits(self, i: int) -> list[float]:
        p = self.L.llama_get_logits_ith(self.ctx, i)
        return p[: self.n_vocab]


def log_softmax_stats(logits: list[float], k: int):
    """argmax (lowest id on ties, like std::max_element), log-sum-exp, top-k (id, logprob)."""
    mx = max(logits)
    lse = mx + math.log(math.fsum(math.exp(v - mx) for v in logits))
    # heapq.nlargest == sorted(..., reverse=True)[:k], stable: lowest id first among equal logits
    order = heapq.nlargest(k, range(len(logits)), key=logits.__getitem__)
    return order[0], lse, [[i, round(logits[i] - lse, 5)] for i in order]


# --------------------------------------------------------------------------- sections

def run_greedy(m: Model) -> list[dict]:
    out = []
    for spec in PROMPTS:
        ids = m.tokenize(spec["prompt"], add_special=True)
        m.clear()
        t0 = time.time()
        m.decode(ids, 0, all_logits=False)
        cont, top, logit_top1, eog_at = [], [], [], []
        pos = len(ids)
        for step in range(N_CONTINUATION):
            lg = m.logits(-1)
            am, _, tk = log_softmax_stats(lg, TOP_K)
            cont.append(am)
            top.append(tk)
            logit_top1.append(round(lg[am], 5))
            if m.is_eog(am):
                eog_at.append(step)
            if step + 1 < N_CONTINUATION:
                m.decode([am], pos, all_logits=False)
                pos += 1
        t_inc = time.time() - t0

        # Cross-check: one batched decode of prompt + continuation with logits everywhere;
        # its argmax at each continuation position should reproduce the greedy ids.
        m.clear()
        full = ids + cont[:-1]
        m.decode(full, 0, all_logits=True)
        batched_argmax, batched_top = [], []
        for j in range(N_CONTINUATION):
            am, _, tk = log_softmax_stats(m.logits(len(ids) - 1 + j), TOP_K)
            batched_argmax.append(am)
            batched_top.append(tk)
        mismatch = [j for j in range(N_CONTINUATION) if batched_argmax[j] != cont[j]]
        max_lp_diff = max(abs(a[0][1] - b[0][1]) for a, b in zip(top, batched_top))

        out.append({
            "kind": spec["kind"],
            "prompt": spec["prompt"],
            "prompt_ids": ids,
            "continuation_ids": cont,
            "continuation_text": m.detokenize(cont),
            "n_continuation": len(cont),
            "eog_positions": eog_at,
            "top5_logprobs": top,
            "top1_logit": logit_top1,
            "top5_logprobs_batched": batched_top,
            "batched_check": {
                "note": "prompt+continuation[:-1] decoded in ONE batch with all logits (teacher forcing); "
                        "top5_logprobs_batched are its top-5; argmax compared with the incremental greedy ids. "
                        "llama.cpp's single-token and batched paths differ numerically (up to ~1 logit on this model), "
                        "so mismatches here are near-ties inside llama.cpp itself",
                "argmax_mismatch_positions": mismatch,
                "max_abs_top1_logprob_diff": round(max_lp_diff, 6),
            },
            "seconds": round(t_inc, 3),
        })
        print(f"[greedy] {spec['kind']}: {len(ids)} prompt ids, eog at {eog_at}, batched mismatches {mismatch}: "
              f"{m.detokenize(cont)[:70]!r}", file=sys.stderr)
    return out


def run_tokenizer_probe(m: Model) -> list[dict]:
    out = []
    for s in TOKENIZER_PROBES:
        ids = m.tokenize(s, add_special=False, parse_special=False)
        e = {"text": s, "ids": ids, "pieces": [m.piece(t).decode("utf-8", errors="backslashreplace") for t in ids]}
        if "<|" in s:
            e["ids_parse_special"] = m.tokenize(s, add_special=False, parse_special=True)
        out.append(e)
    return out


def ppl_python(m: Model, tokens: list[int], n_ctx: int) -> dict:
    """Re-implements tools/perplexity/perplexity.cpp perplexity() (no stride, n_seq=1)."""
    n_chunk = len(tokens) // n_ctx
    first = n_ctx // 2
    nll_total, count, chunks = 0.0, 0, []
    for c in range(n_chunk):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        if m.add_bos:
            chunk = [m.bos] + chunk[1:]
        m.clear()
        m.decode(chunk, 0, all_logits=True)
        nll = 0.0
        for p in range(first, n_ctx - 1):
            lg = m.logits(p)
            mx = max(lg)
            lse = mx + math.log(math.fsum(math.exp(v - mx) for v in lg))
            nll += lse - lg[tokens[c * n_ctx + p + 1]]
        n = n_ctx - 1 - first
        nll_total += nll
        count += n
        chunks.append({"chunk": c + 1, "nll_sum": round(nll, 6), "n_scored": n,
                       "chunk_ppl": round(math.exp(nll / n), 6),
                       "running_ppl": round(math.exp(nll_total / count), 6)})
        print(f"[ppl-python] chunk {c + 1}/{n_chunk}: ppl {math.exp(nll / n):.4f}", file=sys.stderr)
    return {"n_chunk": n_chunk, "n_scored": count, "mean_nll": round(nll_total / count, 8),
            "ppl": round(math.exp(nll_total / count), 6), "chunks": chunks}


PPL_METHOD = (
    "llama-perplexity (tools/perplexity/perplexity.cpp, perplexity(); no --ppl-stride). "
    "(1) The file is read whole and ONE trailing '\\n' is removed (common/arg.cpp -f handler); "
    "escape processing is off for llama-perplexity. "
    "(2) tokens = common_tokenize(ctx, text, add_special=true, parse_special=false): i.e. a BOS is prepended "
    "iff llama_vocab_get_add_bos(vocab) (GGUF tokenizer.ggml.add_bos_token) and no EOS (asserted). "
    "(3) The token list is split into n_chunk = floor(len(tokens)/n_ctx) consecutive, NON-overlapping chunks "
    "tokens[k*n_ctx:(k+1)*n_ctx]; the tail that does not fill a chunk is dropped (needs len >= 2*n_ctx). "
    "(4) For each chunk the KV cache is cleared and the chunk is decoded at positions 0..n_ctx-1; if add_bos, the "
    "chunk's first token is REPLACED (not shifted) by BOS for the forward pass (for chunk 0 it already is BOS). "
    "(5) Only the second half is scored: with first = n_ctx/2, the logits at positions first..n_ctx-2 predict tokens "
    "at positions first+1..n_ctx-1, i.e. n_ctx-1-first = 255 tokens per chunk for n_ctx=512 (the target at position "
    "first itself is not scored). NLL_i = log(sum_v exp(l_v - max)) + max - l_target computed per position in "
    "float logits with a double sum of expf. "
    "(6) The printed [k]x values are the RUNNING estimate exp(sum NLL / count) over chunks 1..k, not per-chunk PPL. "
    "Final PPL = exp(mean NLL over all n_chunk*(n_ctx-1-first) scored tokens); the +/- is "
    "PPL * sqrt((mean(NLL^2) - mean(NLL)^2)/(count-1)). With -b 512 = -c 512 there is one sequence per batch "
    "(n_seq = n_batch/n_ctx = 1) and one decode call per chunk."
)


def run_perplexity(m: Model, bin_dir: pathlib.Path, model_path: pathlib.Path, text_path: pathlib.Path) -> dict:
    cmd = [str(bin_dir / "llama-perplexity"), "-m", str(model_path), "-f", str(text_path),
           "-c", str(PPL_CTX), "-b", str(PPL_BATCH), "-t", str(THREADS)]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.time() - t0
    log = r.stdout + "\n" + r.stderr
    if r.returncode != 0:
        sys.stderr.write(log)
        raise RuntimeError(f"llama-perplexity failed with {r.returncode}")
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
    running = [float(x) for _, x in re.findall(r"\[(\d+)\]([0-9.]+),", log)]
    hdr = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)", log)
    keep = [l for l in log.splitlines() if re.search(
        r"perplexity:|Final estimate|flash_attn|n_ctx|system_info|build|\[1\]", l)]

    text = text_path.read_text(encoding="utf-8")
    stripped = text[:-1] if text.endswith("\n") else text
    tokens = m.tokenize(stripped, add_special=True, parse_special=False)

    # Cross-check the tokenization with the llama-tokenize binary (it reads -f verbatim, so give it
    # the already-stripped text in a temporary file).
    tmp = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "prom_ppl_stripped.txt"
    tmp.write_bytes(stripped.encode("utf-8"))
    tr = subprocess.run([str(bin_dir / "llama-tokenize"), "-m", str(model_path), "-f", str(tmp), "--ids",
                         "--log-disable", "--no-escape"], capture_output=True, text=True)
    try:
        cli_tokens = json.loads(tr.stdout.strip().splitlines()[-1])
    except Exception:
        cli_tokens = None
    tmp.unlink(missing_ok=True)

    py = ppl_python(m, tokens, PPL_CTX)
    return {
        "command": " ".join(cmd).replace(str(REPO) + "/", "").replace(str(ART), "$PROM_ARTIFACTS"),
        "text_file": str(text_path.relative_to(REPO)),
        "text_sha256": hashlib.sha256(text_path.read_bytes()).hexdigest(),
        "n_ctx": int(hdr.group(2)) if hdr else PPL_CTX,
        "n_batch": int(hdr.group(3)) if hdr else PPL_BATCH,
        "n_seq": int(hdr.group(4)) if hdr else 1,
        "n_chunks": int(hdr.group(1)) if hdr else len(running),
        "first": PPL_CTX // 2,
        "scored_per_chunk": PPL_CTX - 1 - PPL_CTX // 2,
        "ppl": float(final.group(1)) if final else None,
        "ppl_plus_minus": float(final.group(2)) if final else None,
        "running_ppl_per_chunk": running,
        "running_ppl_note": "llama-perplexity prints [k]=exp(mean NLL over chunks 1..k) (cumulative), not per-chunk PPL",
        "log_excerpt": keep,
        "seconds": round(secs, 2),
        "method": PPL_METHOD,
        "add_bos": m.add_bos,
        "n_tokens": len(tokens),
        "tokens_note": "common_tokenize(text minus one trailing newline, add_special=true, parse_special=false), "
                       "exactly what llama-perplexity scores; chunk k is tokens[k*n_ctx:(k+1)*n_ctx] (first token -> BOS if add_bos)",
        "tokens": tokens,
        "llama_tokenize_cli_agrees": cli_tokens == tokens if cli_tokens is not None else None,
        "python_reproduction": {
            "note": "same computation through the ctypes binding (libllama.so of the same build, flash_attn auto, "
                    "2 threads); nll_sum per chunk lets the Rust side compare chunk by chunk",
            **py,
        },
    }


# --------------------------------------------------------------------------- main

def to_json(v, ind: int = 0) -> str:
    """Indented JSON, but lists of scalars (and of short scalar lists, e.g. top-5 pairs) on one line."""
    pad, pad1 = " " * ind, " " * (ind + 1)
    flat = lambda x: not isinstance(x, (list, dict))
    if isinstance(v, dict):
        if not v:
            return "{}"
        items = [f"{pad1}{json.dumps(k, ensure_ascii=False)}: {to_json(x, ind + 1)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(v, list):
        if all(flat(x) for x in v) or all(isinstance(x, list) and all(flat(y) for y in x) for x in v) and len(v) <= 8:
            return json.dumps(v, ensure_ascii=False, separators=(", ", ": "))
        return "[\n" + ",\n".join(pad1 + to_json(x, ind + 1) for x in v) + "\n" + pad + "]"
    return json.dumps(v, ensure_ascii=False)


def sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ART / "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--build", default=str(ART / "llama.cpp-build"))
    ap.add_argument("--text", default=str(REPO / "tests/reference/ppl_text.txt"))
    ap.add_argument("--out", default=str(REPO / "tests/reference/smollm2_q4_1_llamacpp.json"))
    args = ap.parse_args()
    model_path = pathlib.Path(args.model)
    build = pathlib.Path(args.build)
    bin_dir = build / "bin"
    t_start = time.time()

    L = load_bindings(bin_dir)
    build_info = json.loads((build / "prometheus-build-info.json").read_text())
    m = Model(L, model_path, n_ctx=PPL_CTX)
    print(f"add_bos={m.add_bos} bos={m.bos} eos={m.eos} n_vocab={m.n_vocab} "
          f"flash_attn_type={m.flash_attn_type}", file=sys.stderr)

    greedy = run_greedy(m)
    probe = run_tokenizer_probe(m)
    ppl = run_perplexity(m, bin_dir, model_path, pathlib.Path(args.text))
    print(f"[ppl] llama-perplexity: {ppl['ppl']} +/- {ppl['ppl_plus_minus']} over {ppl['n_chunks']} chunks "
          f"({ppl['n_tokens']} tokens); python: {ppl['python_reproduction']['ppl']}", file=sys.stderr)

    model_name = next((l.split(":", 1)[1].strip() for l in sh("lscpu").splitlines()
                       if l.startswith("Model name")), platform.processor())
    doc = {
        "schema": "prometheus.llamacpp_reference.v1",
        "generated_by": "scripts/llamacpp/reference.py",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": model_name, "nproc": sh("nproc"), "kernel": platform.release()},
        "llama_cpp": {
            "commit": build_info.get("llama_cpp_commit"),
            "commit_full": build_info.get("llama_cpp_commit_full"),
            "commit_date": build_info.get("llama_cpp_commit_date"),
            "commit_subject": build_info.get("llama_cpp_commit_subject"),
            "version": build_info.get("llama_cpp_version"),
            "commit_source": build_info.get("llama_cpp_commit_source"),
            "source": build_info.get("llama_cpp_source"),
            "cmake_configure": build_info.get("cmake_configure", "").replace(str(ART), "$PROM_ARTIFACTS"),
            "cmake_build": build_info.get("cmake_build", "").replace(str(ART), "$PROM_ARTIFACTS"),
            "compiler": build_info.get("compiler"),
            "full_build_seconds": build_info.get("full_build_seconds"),
            "system_info": L.llama_print_system_info().decode(errors="replace"),
            "bindings": "llama-cpp-python 0.3.36 sdist, llama_cpp/llama_cpp.py ctypes layer, LLAMA_CPP_LIB_PATH=$PROM_ARTIFACTS/llama.cpp-build/bin",
        },
        "model": {
            "file": model_path.name,
            "path": str(model_path).replace(str(ART), "$PROM_ARTIFACTS"),
            "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
            "n_vocab": m.n_vocab,
            "add_bos": m.add_bos,
            "add_eos": m.add_eos,
            "bos_id": m.bos,
            "eos_id": m.eos,
        },
        "context_log": sorted(set(LOG_KEEP)),
        "context": {"n_ctx": PPL_CTX, "n_batch": PPL_CTX, "n_threads": THREADS,
                    "flash_attn_type": m.flash_attn_type, "flash_attn_note": "-1 = auto (llama.cpp default)"},
        "greedy": {
            "method": "tokenize(prompt, add_special=true, parse_special=false) (BOS prepended iff add_bos); decode "
                      "the prompt in one batch, then repeatedly take argmax of the last logits (lowest id on ties) and "
                      "decode it; temperature 0, no repetition penalty, no chat template, EOS does not stop generation "
                      "(eog_positions lists steps where an end-of-generation token was chosen). top5_logprobs[j] = "
                      "[[id, log_softmax]...] of the logits that produced continuation_ids[j], rounded to 5 decimals.",
            "n_continuation": N_CONTINUATION,
            "prompts": greedy,
        },
        "perplexity": ppl,
        "tokenizer_probe": {
            "method": "llama_tokenize(text, add_special=false, parse_special=false); ids_parse_special with parse_special=true",
            "cases": probe,
        },
        "total_seconds": round(time.time() - t_start, 1),
    }
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_json(doc) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes) in {doc['total_seconds']} s", file=sys.stderr)


if __name__ == "__main__":
    main()
