#!/usr/bin/env bash
# One device call's check of a CUDA build (run there from the repo root, .gpu carried): the GPU
# tests (cuda_kernels, cuda_attention, cuda_graphs, engine_async, golden parity in bf16 and f16,
# each where its binary was carried; TESTS=0 skips them), then `prom bench` on the Llama-3-8B shape with --load-format dummy at bs 1, 32 and 128,
# ROUNDS times over VARIANTS, alternated. A variant is NAME|BINARY|ENV: a binary from .gpu/
# (say prom-base.xz, an older build carried beside prom.xz) run with ENV (NAME=VALUE pairs,
# comma-separated). The default compares programmatic dependent launch on and off (PROM_PDL).
# ARGS adds `prom bench` flags (say "--temperature 1 --top-p 0.95").
# PROFILE=1 adds the Nsight Compute table of scripts/gpu/profile.sh. Raw output goes to $OUT.
set -u
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
source scripts/gpu/env.sh
export PROM_GOLDEN_DIR="$PWD/tests/fixtures/golden" PROM_TEST_DEVICE=cuda
VARIANTS=${VARIANTS:-"pdl-on|prom|PROM_PDL=1 pdl-off|prom|PROM_PDL=0"}
echo "commit $(cat .gpu/COMMIT)"; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
if [ "${TESTS:-1}" != 0 ]; then
  for t in cuda_kernels cuda_attention cuda_graphs engine_async; do
    [ -x "$GPU_BIN/$t" ] || { echo "== $t: not carried"; continue; }
    echo "== $t"; timeout 200 "$GPU_BIN/$t" --test-threads 1 2>&1 | grep -E "test result|FAILED|panicked|failed" | head -8
  done
  if [ -x "$GPU_BIN/golden" ]; then
    for dt in bf16 f16; do echo "== golden $dt"; PROM_TEST_DTYPE=$dt timeout 200 "$GPU_BIN/golden" --test-threads 1 2>&1 | grep -E "test result|FAILED|panicked" | head -5; done
  fi
fi
python3 scripts/gpu/make_model.py /tmp/m8 --shape 8b --config-only >/dev/null
for r in $(seq 1 "${ROUNDS:-2}"); do for v in $VARIANTS; do
  IFS='|' read -r name bin envs <<< "$v"
  log=$OUT/b-$name-$r.txt
  env $(echo "$envs" | tr ',' ' ') PROM_LOG="warn,prom_models::cuda::graph=debug" timeout 150 "$GPU_BIN/$bin" bench --device cuda --offline --model /tmp/m8/hf --load-format dummy \
    --concurrency ${CONCURRENCY:-1,32,128} --max-tokens 128 --prompt-tokens 128 --max-num-seqs 256 --max-num-batched-tokens 8192 \
    --no-prefix-caching --kv-cache-memory 0.3 ${ARGS:-} > "$log" 2>&1
  grep -m2 "decode graph of" "$log" | sed 's/^.*decode graph/  decode graph/'
  tail -1 "$log" | python3 -c "
import json,sys
try:
  j=json.loads(sys.stdin.read())
  print('$name round $r', ' | '.join(f\"bs{l['concurrency']}: {l['tok_s']:.1f} tok/s ITL {l['mean_itl_ms']:.2f} ms (1/ITL {1000/l['mean_itl_ms']:.1f})\" for l in j['levels']))
except Exception as e: print('$name round $r: no result', e)"
done; done
for f in $OUT/b-*-1.txt; do grep -iE "warn|error" "$f" | head -3; done
if [ -n "${PROFILE:-}" ]; then LAYERS=4 SKIP=3000 COUNT=300 scripts/gpu/profile.sh 2>&1 | tail -22; fi
