"""Prints bench/gpu.sh's table from the files it left in OUT: prom, llama.cpp, transformers,
the ratios, and prom's bs 1 decode as a fraction of the HBM roofline.

  python3 summary.py OUT WEIGHTS_FILE
"""
import json
import os
import sys

out, weights = sys.argv[1], sys.argv[2]


def load(name, lines=False):
    p = os.path.join(out, name)
    if not os.path.exists(p):
        return None
    txt = open(p).read()
    if lines:
        return [json.loads(l) for l in txt.splitlines() if l.startswith("{")]
    return json.loads(txt)


copy = load("ceiling.json")["copy_GBps"] * 1e9
wbytes = os.path.getsize(weights)
roof = copy / wbytes
prom = {l["concurrency"]: l for l in load("prom.json")["levels"]}
ours = {b: l["tok_s"] for b, l in prom.items()}
# bs 1 decode: prom's 1 / ITL after a 128-token prompt (the main run) and after a 1-token one
# (ctx0.json); llama-bench's tg128 at depth 128 and 0: each pair at the same context.
if 1 in prom and prom[1].get("mean_itl_ms"):
    ours_bs1 = 1000.0 / prom[1]["mean_itl_ms"]
else:
    ours_bs1 = None
ctx0 = {l["concurrency"]: l for l in (load("ctx0.json") or {"levels": []})["levels"]}
ours_bs1_ctx0 = 1000.0 / ctx0[1]["mean_itl_ms"] if 1 in ctx0 and ctx0[1].get("mean_itl_ms") else None
hf = {r["batch"]: r["out_tok_s"] for r in (load("hf.txt", True) or [])}
lb = load("llamacpp-bench.json") or []
lc_bs1 = next((r["avg_ts"] for r in lb if r.get("n_gen") == 128 and r.get("n_depth", 128) == 128), None)
lc_bs1_ctx0 = next((r["avg_ts"] for r in lb if r.get("n_gen") == 128 and r.get("n_depth", 0) == 0), None)
lc = {r["pl"]: r["pl"] * r["tg"] / r["t"] for r in (load("llamacpp-batched.jsonl", True) or [])}

print(f"copy bandwidth {copy / 1e12:.2f} TB/s, weights {wbytes / 1e9:.2f} GB -> bs 1 roofline {roof:.1f} tok/s")
fmt = lambda x: f"{x:9.1f}" if x else "        -"
ratio = lambda a, b: f"{a / b:6.2f}x" if a and b else "      -"
print(f"{'':28} {'prom':>9} {'llama.cpp':>9} {'HF':>9} {'prom/lcpp':>9} {'prom/HF':>8}")
print(f"{'bs 1 decode tok/s, ctx 0-128':28} {fmt(ours_bs1_ctx0)} {fmt(lc_bs1_ctx0)} {fmt(None)} {ratio(ours_bs1_ctx0, lc_bs1_ctx0):>9} {ratio(None, None):>8}")
print(f"{'bs 1 decode tok/s, 128-256':28} {fmt(ours_bs1)} {fmt(lc_bs1)} {fmt(hf.get(1))} {ratio(ours_bs1, lc_bs1):>9} {ratio(ours_bs1, hf.get(1)):>8}")
for b in sorted(set(ours) | set(lc) | set(hf)):
    if b == 1:
        continue
    print(f"{'128/128 out tok/s, bs ' + str(b):28} {fmt(ours.get(b))} {fmt(lc.get(b))} {fmt(hf.get(b))} "
          f"{ratio(ours.get(b), lc.get(b)):>9} {ratio(ours.get(b), hf.get(b)):>8}")
if ours_bs1_ctx0:
    print(f"prom bs 1 from a 1-token prompt = {ours_bs1_ctx0 / roof:.3f} of the HBM roofline")
if ours_bs1:
    print(f"prom bs 1 after 128 tokens = {ours_bs1 / roof:.3f} of the HBM roofline (goal 0.9); "
          f"prom bs 1 end-to-end incl. prefill {fmt(ours.get(1)).strip()} tok/s")
    print(f"prom ms/step at bs 1: {prom[1]['ms_per_step']:.2f} (roofline {1000 / roof:.2f})")
for b, l in sorted(prom.items()):
    print(f"prom bs {b}: TTFT {l['mean_ttft_ms']:.0f} ms, ITL {l['mean_itl_ms']:.2f} ms, {l['steps']:.0f} steps, "
          f"{l['ms_per_step']:.2f} ms/step")

# Other prom binaries of the same run (PROMS), e.g. the build before a change.
for name in sorted(f[:-5] for f in os.listdir(out) if f.startswith("prom-") and f.endswith(".json")):
    other = load(name + ".json")
    if not other:
        continue
    for l in other["levels"]:
        b = l["concurrency"]
        now = prom.get(b)
        speedup = f", prom {now['tok_s'] / l['tok_s']:.2f}x of it" if now and l["tok_s"] else ""
        print(f"{name} bs {b}: {l['tok_s']:.1f} tok/s, ITL {l['mean_itl_ms']:.2f} ms, "
              f"{l['ms_per_step']:.2f} ms/step{speedup}")
