#!/usr/bin/env python3
"""Compares lm-eval's per-request loglikelihoods (from `--log_samples`, computed through the
server's `/v1/completions` echo logprobs) with the in-process computation (`prom score`, the
model run directly, no server and no engine). Used by lmeval_parity.sh.

    python3 lmeval_compare.py SAMPLES.jsonl --base-url URL --prom target/release/prom --model M.gguf
"""

import argparse
import json
import subprocess
import sys
import urllib.request


def tokenize(base, text):
    # What lm-eval's remote tokenizer sends.
    req = urllib.request.Request(base + "/tokenize", json.dumps({"prompt": text, "add_special_tokens": False}).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))["tokens"]


def in_process(prom, model, ids):
    out = subprocess.run([prom, "score", "--offline", model, "--ids", ",".join(map(str, ids)), "--top-k", "1",
                          "--no-logits"], capture_output=True, text=True, check=True)
    return [p["next_logprob"] for p in json.loads(out.stdout)["positions"]]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("samples")
    p.add_argument("--base-url", required=True)
    p.add_argument("--prom", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--tol", type=float, default=1e-3)
    a = p.parse_args()
    rows, worst = [], 0.0
    for line in open(a.samples):
        s = json.loads(line)
        args = s["arguments"]
        # lm-eval >= 0.4.9 logs {"gen_args_0": {"arg_0": context, "arg_1": continuation}, ...}
        args = list(args.values()) if isinstance(args, dict) else args
        for arg, resp in zip(args, s["resps"]):
            context, continuation = (arg["arg_0"], arg["arg_1"]) if isinstance(arg, dict) else arg
            server_ll = float(resp[0][0])
            # lm-eval's _encode_pair: the pair is tokenized whole; the context's tokens come first.
            ctx = tokenize(a.base_url, context)
            whole = tokenize(a.base_url, context + continuation)
            lps = in_process(a.prom, a.model, whole)
            # positions[i] scores token i + 1: the continuation is whole[len(ctx):].
            ours = sum(lps[i - 1] for i in range(len(ctx), len(whole)))
            d = abs(ours - server_ll)
            worst = max(worst, d)
            rows.append((s["doc_id"], context, continuation, server_ll, ours, d))
    print(f"{'doc':>3}  {'context':<32} {'continuation':<14} {'lm-eval (server)':>17} {'in-process':>12} {'|diff|':>9}")
    for doc, ctx, cont, s_ll, ours, d in rows:
        print(f"{doc:>3}  {ctx[:32]:<32} {cont!r:<14} {s_ll:>17.6f} {ours:>12.6f} {d:>9.2e}")
    ok = worst <= a.tol
    print(f"{len(rows)} loglikelihoods, max |diff| {worst:.2e} (tolerance {a.tol:g})")
    print("lm-eval parity: " + ("1 passed, 0 failed" if ok else "0 passed, 1 failed"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
