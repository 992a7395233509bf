#!/usr/bin/env python3
"""Perplexity of a model with `prom score`, computed exactly as llama-perplexity does it on
tests/reference/ppl_text.txt (n_ctx 512 non-overlapping chunks, second half scored; see the
`method` field of tests/reference/smollm2_q4_1_llamacpp.json). The token ids are llama.cpp's
own tokenization of that text (recorded in the same JSON), shared by every SmolLM2 quant.

    scripts/quant/ppl.py PROM MODEL.gguf      # prints the perplexity
"""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(prom, model):
    ref = json.load(open(os.path.join(ROOT, "tests/reference/smollm2_q4_1_llamacpp.json")))["perplexity"]
    n_ctx, tokens = ref["n_ctx"], ref["tokens"]
    first = n_ctx // 2
    assert not ref["add_bos"]
    nll, count = 0.0, 0
    for k in range(len(tokens) // n_ctx):
        chunk = tokens[k * n_ctx:(k + 1) * n_ctx]
        out = subprocess.run(
            [prom, "score", model, "--offline", "--no-logits", "--top-k", "0", "--ids", ",".join(map(str, chunk))],
            check=True, capture_output=True, text=True).stdout
        pos = json.loads(out)["positions"]
        for j in range(first, n_ctx - 1):
            nll -= pos[j]["next_logprob"]
            count += 1
    print(f"{math.exp(nll / count):.4f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
