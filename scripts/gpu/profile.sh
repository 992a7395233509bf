#!/usr/bin/env bash
# Per-kernel GPU time of prom's decode steps, with Nsight Compute (ncu, --clock-control none), on
# a LAYERS-layer Llama-3-8B-shape model (scripts/gpu/make_model.py; default 4 layers: every layer
# has the same kernels). Run on the GPU machine from the repo root, .gpu carried:
#   scripts/gpu/profile.sh          → $OUT/ncu.csv and a table: kernel, launches, total and mean µs
#   CONC=128 scripts/gpu/profile.sh → the same at 128 concurrent sequences (`prom bench`, 128-token
#                                     prompts), $OUT/ncu-128.csv
# The launch window skips prefill and warm-up (SKIP launches) and covers a few decode steps.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/gpu/env.sh
OUT=${OUT:-/tmp/prom-gpu-out}; LAYERS=${LAYERS:-4}; SKIP=${SKIP:-3000}; COUNT=${COUNT:-300}
mkdir -p "$OUT"
M=/tmp/prom-profile-model
[ -f "$M/hf/config.json" ] || python3 scripts/gpu/make_model.py "$M" --layers "$LAYERS" > /dev/null
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
CONC=${CONC:-1}
if [ "$CONC" = 1 ]; then
  CMD=("$PROM" run --device cuda --model "$M/hf" --offline --raw --max-tokens 200 --temperature 0 --ignore-eos "hello")
  CSV="$OUT/ncu.csv"
else
  CMD=("$PROM" bench --device cuda --model "$M/hf" --offline --concurrency "$CONC" --max-tokens 64 --prompt-tokens 128
       --max-num-seqs 256 --max-num-batched-tokens 8192 --kv-cache-memory 0.3 --no-prefix-caching)
  CSV="$OUT/ncu-$CONC.csv"
fi
"$NCU" --clock-control none --launch-skip "$SKIP" --launch-count "$COUNT" --csv --metrics gpu__time_duration.sum \
  "${CMD[@]}" > "$CSV" 2> "$OUT/ncu.err" || { tail -20 "$OUT/ncu.err"; exit 1; }
python3 - "$CSV" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
head, rows = rows[0], rows[1:]
k, u, v = head.index("Kernel Name"), head.index("Metric Unit"), head.index("Metric Value")
scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "ns": 1e-3, "us": 1.0, "ms": 1e3}
tot = collections.defaultdict(lambda: [0, 0.0])
for r in rows:
    t = tot[r[k][:70]]
    t[0] += 1
    t[1] += float(r[v].replace(",", "")) * scale[r[u]]
all_us = sum(t[1] for t in tot.values())
print(f"{len(rows)} launches, {all_us:.0f} us of kernel time")
for name, (n, us) in sorted(tot.items(), key=lambda x: -x[1][1]):
    print(f"{us:9.1f} us {100 * us / all_us:5.1f}%  {n:4d} x {us / n:8.2f} us  {name}")
PY
