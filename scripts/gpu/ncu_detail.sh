#!/usr/bin/env bash
# Where a kernel's time goes, per SASS instruction (Nsight Compute's source page): one launch of
# KERNEL (default sample_rows_f32) in a sampled `prom bench` at CONC sequences on a 4-layer
# Llama-3-8B-shape dummy model; prints the instructions with the most stall samples and the
# most executions. Run on the GPU machine from the repo root, .gpu carried.
set -u
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
source scripts/gpu/env.sh
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
python3 scripts/gpu/make_model.py /tmp/m8s --shape 8b --layers 4 --config-only >/dev/null
"$NCU" --clock-control none --kernel-name "${KERNEL:-sample_rows_f32}" --launch-skip 20 --launch-count 1 --set full \
  --import-source no --page source --print-source sass --csv \
  "$PROM" bench --device cuda --offline --model /tmp/m8s/hf --load-format dummy --concurrency "${CONC:-1}" --max-tokens 24 \
  --prompt-tokens 64 --no-prefix-caching --kv-cache-memory 0.3 --temperature 1 --top-p 0.95 2>/dev/null > /tmp/sass.csv
[ -n "${OUT:-}" ] && xz -k -c /tmp/sass.csv > "$OUT/sass.csv.xz"
python3 - /tmp/sass.csv <<'PY'
import csv, sys
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
rows = list(csv.reader(lines))
h = next(i for i, r in enumerate(rows) if "Source" in r)
head, rows = rows[h], rows[h + 1:]
def col(*names):
    for n in names:
        for i, h in enumerate(head):
            if h.startswith(n): return i
    return None
src, ex, st = col("Source"), col("Instructions Executed"), col("Warp Stall Sampling (All")
print("columns:", head[:14])
num = lambda r, i: float(r[i].replace(",", "") or 0) if i is not None and i < len(r) else 0.0
tot_ex, tot_st = sum(num(r, ex) for r in rows), sum(num(r, st) for r in rows)
print(f"{len(rows)} SASS lines, {tot_ex:.0f} warp instructions executed, {tot_st:.0f} stall samples")
for key, name in ((st, "stall samples"), (ex, "executed")):
    print(f"-- top by {name}")
    for i, r in sorted(enumerate(rows), key=lambda x: -num(x[1], key))[:40]:
        print(f"{i:5d} {num(r, ex):9.0f} {num(r, st):7.0f}  {r[src][:90]}")
PY
