#!/usr/bin/env bash
# Per-kernel GPU time of prom's decode steps, with Nsight Compute (ncu, --clock-control none), on
# a LAYERS-layer Llama-3-8B-shape model (scripts/gpu/make_model.py; default 4 layers: every layer
# has the same kernels). Run on the GPU machine from the repo root, .gpu carried:
#   scripts/gpu/profile.sh          → $OUT/ncu.csv and a table: kernel, launches, total and mean µs
#   CONC=128 scripts/gpu/profile.sh → the same at 128 concurrent sequences (`prom bench`, 128-token
#                                     prompts), $OUT/ncu-128.csv
# The launch window skips prefill and warm-up (SKIP launches) and covers a few decode steps.
# ncu flushes the caches before each kernel by default; CACHE=none keeps them (the activations a
# kernel reads were just written by the one before it, so they sit in L2 in a real step).
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
  CMD=("$PROM" bench --device cuda --model "$M/hf" --offline --concurrency "$CONC" --max-tokens "${MAXTOK:-64}" --prompt-tokens 128
       --max-num-seqs 256 --max-num-batched-tokens 8192 --kv-cache-memory 0.3 --no-prefix-caching)
  CSV="$OUT/ncu-$CONC.csv"
fi
"$NCU" --clock-control none --cache-control "${CACHE:-all}" --launch-skip "$SKIP" --launch-count "$COUNT" --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum \
  "${CMD[@]}" > "$CSV" 2> "$OUT/ncu.err" || { tail -20 "$OUT/ncu.err"; exit 1; }
python3 - "$CSV" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(l for l in open(sys.argv[1]) if l.startswith('"'))]
head, rows = rows[0], rows[1:]
k, g, m = head.index("Kernel Name"), head.index("Grid Size"), head.index("Metric Name")
u, v, i = head.index("Metric Unit"), head.index("Metric Value"), head.index("ID")
scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "ns": 1e-3, "us": 1.0, "ms": 1e3,
         "byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "B": 1.0, "KB": 1e3, "MB": 1e6, "GB": 1e9}
# One row per (launch, metric): time in µs, DRAM bytes read; grouped by kernel and grid.
launch = collections.defaultdict(dict)
for r in rows:
    launch[(r[i], r[k][:60], r[g])][r[m]] = float(r[v].replace(",", "")) * scale.get(r[u], 1.0)
tot = collections.defaultdict(lambda: [0, 0.0, 0.0])
for (_, name, grid), ms in launch.items():
    t = tot[(name, grid)]
    t[0] += 1
    t[1] += ms.get("gpu__time_duration.sum", 0.0)
    t[2] += ms.get("dram__bytes_read.sum", 0.0)
all_us = sum(t[1] for t in tot.values())
print(f"{len(launch)} launches, {all_us:.0f} us of kernel time")
print(f"{'total us':>9} {'%':>5}  {'n':>4}   {'mean us':>8} {'TB/s':>5}  kernel [grid]")
for (name, grid), (n, us, b) in sorted(tot.items(), key=lambda x: -x[1][1]):
    print(f"{us:9.1f} {100 * us / all_us:5.1f}  {n:4d} x {us / n:8.2f} {b / us / 1e6 if us else 0:5.2f}  {name} {grid}")
PY
