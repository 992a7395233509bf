#!/usr/bin/env bash
# Tensor parallelism on the GPUs of one host (docs/parallel.md), one device call on
# nvidia-h200-x2 (or larger):
# 1. correctness: crates/models/tests/tp.rs on the GPUs in bf16: every fixture family and the
#    Llama-3-8B-shape model split over GPUs 0 and 1 (NCCL) against the whole model on GPU 0
#    (relative error per pass ≤ 20 bf16 unit roundoffs);
# 2. speed: `prom bench` on the Llama-3-8B-shape seeded random model (scripts/gpu/make_model.py)
#    at TP = 1 and TP = 2: bs 1 decode tok/s (1 / mean inter-token latency) and 128-in/128-out
#    end-to-end output tok/s at bs 32 and 128; speedup = TP2 / TP1 and scaling efficiency =
#    speedup / 2;
# 3. the same on a Llama-3-70B shape (80 layers, 70.6 B params, 141 GB of bf16: more than the
#    disk holds), loaded with `--load-format dummy` (seeded weights made up on the GPUs from
#    config.json, as vLLM's dummy format): TP = 2 (70 GB per GPU) at every batch, and TP = 1
#    (131 GiB on one 140 GiB GPU, so a small KV pool) at bs 1 only.
#
# Here:   bench/gpu_tp.sh build     (CUDA build of prom and the tp test into the ignored .gpu-tp/)
# There:  device run, kind nvidia-h200-x2, carry [".gpu-tp"], command: bench/gpu_tp.sh
#         On a machine of one GPU, `bench/gpu_tp.sh single` runs the correctness half only, every
#         rank on that GPU with in-memory collectives (PROM_TP_IN_PROCESS=1; no NCCL, no bench).
# Knobs:  PARTS="check 8b 70b" (any subset, in that order), BATCHES="1 32 128", LAYERS=32,
#         TP="1 2", TP70="1 2".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" = build ]; then
  grep -qx '/.gpu-tp/' .git/info/exclude 2>/dev/null || echo /.gpu-tp/ >> .git/info/exclude
  source "${CUDA_TOOLCHAIN:-../shared/tools/cuda-toolchain.sh}"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-cuda}"
  cargo build --release --features cuda -p prom-cli
  tp=$(cargo test --release --features cuda -p prom-models --test tp --no-run --message-format=json \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "tp"][-1])')
  mkdir -p .gpu-tp
  for pair in "prom:$CARGO_TARGET_DIR/release/prom" "tp:$tp"; do
    strip -o ".gpu-tp/${pair%%:*}" "${pair#*:}" && xz -T0 -6 -f ".gpu-tp/${pair%%:*}"
  done
  echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates scripts bench || echo +dirty)" > .gpu-tp/COMMIT
  du -ch .gpu-tp/*
  exit 0
fi

# NVLink multicast stays off (the lent machines' rule; prom also sets NCCL_NVLS_ENABLE=0 itself).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nv="$(python3 -c 'import nvidia, os; print(nvidia.__path__[0])')"
export LD_LIBRARY_PATH="$nv/cu13/lib:${LD_LIBRARY_PATH:-}"
PROM_NCCL_LIB="$(find "$nv" -name 'libnccl.so.2' | head -1)"
export PROM_NCCL_LIB
BIN=/tmp/prom-gpu-tp-bin; mkdir -p "$BIN"
for f in prom tp; do
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    ".gpu-tp/$f.xz" "$BIN/$f"
  chmod +x "$BIN/$f"
done
OUT=${OUT:-/tmp/prom-gpu-tp-out}; W=${WORK:-/tmp/prom-gpu-tp-work}; mkdir -p "$OUT" "$W"
BATCHES=${BATCHES:-1 32 128}; LAYERS=${LAYERS:-32}; TP=${TP:-1 2}
echo "date: $(date -u +%FT%TZ)  host: $(nproc) cores  prom built from: $(cat .gpu-tp/COMMIT 2>/dev/null || echo '?')"
echo "nccl: $PROM_NCCL_LIB"
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader
nvidia-smi topo -m 2>/dev/null | head -4 || true

PARTS=${PARTS:-check 8b 70b}
has() { [[ " $PARTS " == *" $1 "* ]]; }
if has check || has 8b || [ "${1:-}" = single ]; then
  python3 scripts/gpu/make_model.py "$W/m" --layers "$LAYERS"
fi

if [ "${1:-}" = single ]; then
  echo "== correctness (bf16, 2 and 4 ranks in process on GPU 0 vs GPU 0)"
  PROM_TP_IN_PROCESS=1 PROM_TEST_DEVICE=cuda PROM_TEST_DTYPE=bf16 PROM_TP_MODEL="$W/m/hf" \
    PROM_GOLDEN_DIR="$PWD/tests/fixtures/golden" "$BIN/tp" --test-threads 1 --nocapture 2>&1 | tee "$OUT/tp-test.txt"
  exit 0
fi
if has check; then
  echo "== correctness (bf16, GPUs 0+1 vs GPU 0)"
  PROM_TEST_DEVICE=cuda PROM_TEST_DTYPE=bf16 PROM_TP_MODEL="$W/m/hf" \
    PROM_GOLDEN_DIR="$PWD/tests/fixtures/golden" "$BIN/tp" --test-threads 1 --nocapture 2>&1 | tee "$OUT/tp-test.txt"
fi

# bench NAME TP BATCHES [prom flags...]: one `prom bench` run → $OUT/NAME-tpTP.{txt,json}
bench() {
  local name=$1 tp=$2 batches=$3; shift 3
  echo "== prom bench $name, tensor-parallel-size $tp"
  "$BIN/prom" bench --device cuda --tensor-parallel-size "$tp" --offline \
    --concurrency "$(echo $batches | tr ' ' ,)" --max-tokens 128 --prompt-tokens 128 --max-num-seqs 256 \
    --max-num-batched-tokens 8192 --no-prefix-caching "$@" 2>&1 | tee "$OUT/$name-tp$tp.txt"
  tail -1 "$OUT/$name-tp$tp.txt" > "$OUT/$name-tp$tp.json"
}

# summary NAME TP...: the table of tok/s per TP, speedup and efficiency against the first TP.
summary() {
python3 - "$OUT" "$@" <<'PY'
import json, sys
out, name, tps = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3:]]
runs = {}
for tp in tps:
    try:
        runs[tp] = {l["concurrency"]: l for l in json.load(open(f"{out}/{name}-tp{tp}.json"))["levels"]}
    except (OSError, ValueError, KeyError) as e:
        print(f"{name} TP={tp}: no result ({e})")
        runs[tp] = {}
base = tps[0]
print(f"{'':26}" + "".join(f"{'TP=' + str(t):>10}" for t in tps) + "".join(f"{'x TP' + str(t):>9}{'eff':>6}" for t in tps[1:]))
rows = [("bs 1 decode tok/s", lambda l: 1000.0 / l["mean_itl_ms"] if l.get("mean_itl_ms") else None, [1])]
batches = sorted({b for r in runs.values() for b in r})
rows += [(f"bs {b} 128/128 out tok/s", lambda l: l["tok_s"], [b]) for b in batches if b > 1]
for name, f, (b,) in rows:
    v = {t: f(runs[t][b]) if b in runs[t] else None for t in tps}
    line = f"{name:26}" + "".join(f"{v[t]:>10.1f}" if v[t] else f"{'-':>10}" for t in tps)
    for t in tps[1:]:
        s = v[t] / v[base] if v[t] and v[base] else None
        line += f"{s:>9.2f}{s / (t / base):>6.2f}" if s else f"{'-':>9}{'-':>6}"
    print(line)
PY
}

if has 8b; then
  for tp in $TP; do
    bench prom "$tp" "$BATCHES" --model "$W/m/hf" --kv-cache-memory 0.3
  done
  echo "== Llama-3-8B shape ($LAYERS layers)"
  summary prom $TP
fi

TP70=${TP70:-1 2}
if has 70b; then
  python3 scripts/gpu/make_model.py "$W/m70" --shape 70b --config-only
  for tp in $TP70; do
    # One GPU holds the 70B weights with ~5 GiB to spare: bs 1, most of the rest as KV.
    if [ "$tp" = 1 ]; then b=1 kv=0.8; else b=$BATCHES kv=0.3; fi
    bench prom70 "$tp" "$b" --model "$W/m70/hf" --load-format dummy --kv-cache-memory "$kv" || true
  done
  echo "== Llama-3-70B shape (80 layers, --load-format dummy)"
  summary prom70 $TP70
fi
