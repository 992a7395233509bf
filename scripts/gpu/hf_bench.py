"""HF transformers on the GPU, the peer of bench/gpu.sh: greedy generation of exactly NEW tokens
after PROMPT random prompt tokens (seeded), bf16, SDPA attention, at each batch size.
End-to-end output throughput = batch · NEW / wall (prefill included), timed after a warm-up,
the median of REPS runs. Prints one JSON line per batch size.

  python3 hf_bench.py MODEL_DIR [--batch 1,32,128,256] [--prompt 128] [--new 128] [--reps 1]
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", default="1,32,128,256")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    m = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    vocab = m.config.vocab_size
    g = torch.Generator(device="cuda").manual_seed(0)

    def run(bs, new):
        ids = torch.randint(0, vocab - 1, (bs, a.prompt), generator=g, device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = m.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new,
                         do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        assert out.shape == (bs, a.prompt + new), out.shape
        return dt

    with torch.inference_mode():
        for bs in [int(x) for x in a.batch.split(",")]:
            run(bs, 4)  # warm-up (kernels, allocator)
            walls = [run(bs, a.new) for _ in range(a.reps)]
            wall = statistics.median(walls)
            print(json.dumps({"peer": "transformers", "batch": bs, "prompt": a.prompt, "new": a.new,
                              "wall_s": wall, "out_tok_s": bs * a.new / wall}), flush=True)


if __name__ == "__main__":
    main()
