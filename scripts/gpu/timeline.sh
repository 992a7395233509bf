#!/usr/bin/env bash
# Where a bs-1 decode step's time goes inside its CUDA graph, with Nsight Systems (nsys, graph
# nodes traced one by one): unlike ncu, which replays each kernel alone with cold caches, this
# keeps the graph's programmatic overlap. Run on the GPU machine from the repo root, .gpu carried:
#   scripts/gpu/timeline.sh    → $OUT/tl.nsys-rep, $OUT/tl_cuda_gpu_trace.csv and a table: per
#                                kernel, launches, mean duration and mean step share (end minus
#                                the previous kernel's end: what it adds to the critical path)
# The model has LAYERS layers of the Llama-3-8B shape (scripts/gpu/make_model.py, default 4);
# the table covers the last STEPS decode steps.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/gpu/env.sh
OUT=${OUT:-/tmp/prom-gpu-out}; LAYERS=${LAYERS:-4}; STEPS=${STEPS:-50}
mkdir -p "$OUT"
M=/tmp/prom-profile-model
[ -f "$M/hf/config.json" ] || python3 scripts/gpu/make_model.py "$M" --layers "$LAYERS" > /dev/null
NSYS=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda*/bin/nsys 2>/dev/null | head -1 || true)
[ -n "$NSYS" ] || { echo "no nsys on this machine"; exit 1; }
"$NSYS" profile --cuda-graph-trace=node -t cuda -o "$OUT/tl" --force-overwrite true \
  "$PROM" run --device cuda --model "$M/hf" --offline --raw --max-tokens 200 --temperature 0 --ignore-eos "hello" \
  > "$OUT/nsys.log" 2>&1 || { tail -20 "$OUT/nsys.log"; exit 1; }
"$NSYS" stats --report cuda_gpu_trace --format csv --output "$OUT/tl" "$OUT/tl.nsys-rep" > /dev/null 2>&1
python3 - "$OUT/tl_cuda_gpu_trace.csv" "$STEPS" <<'PY'
import csv, sys, collections
rows = list(csv.DictReader(open(sys.argv[1])))
steps = int(sys.argv[2])
ks = [(int(r["Start (ns)"]), int(r["Duration (ns)"]), r["Name"]) for r in rows if r.get("Duration (ns)")]
ks = [k for k in ks if not k[2].startswith("[CUDA")]  # kernels only (no memcpy/memset rows)
ks.sort()
# A step ends at the argmax; keep the last `steps` of them.
ends = [i for i, k in enumerate(ks) if k[2].startswith("argmax")]
first = ends[-steps - 1] + 1 if len(ends) > steps else 0
ks = ks[first:ends[-1] + 1] if ends else ks
tot = collections.defaultdict(lambda: [0, 0, 0])
prev_end = ks[0][0]
for s, d, n in ks:
    t = tot[n[:48]]
    t[0] += 1
    t[1] += d
    t[2] += max(0, s + d - prev_end)
    prev_end = max(prev_end, s + d)
span = (ks[-1][0] + ks[-1][1] - ks[0][0]) / 1e3
n_steps = max(1, len(ends[-steps:]))
print(f"{len(ks)} kernels over {n_steps} steps: {span / n_steps:.1f} us a step")
print(f"{'launches':>8} {'mean us':>8} {'adds us':>8} {'% step':>7}  kernel")
for n, (c, d, a) in sorted(tot.items(), key=lambda x: -x[1][2]):
    print(f"{c:8d} {d / c / 1e3:8.2f} {a / c / 1e3:8.2f} {100 * a / 1e3 / span:7.1f}  {n}")
PY
