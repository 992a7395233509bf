#!/usr/bin/env bash
# Decode speed across batch sizes and prompt lengths, to find cliffs that bench/gpu.sh's four
# points miss (bs 8 took twice bs 16's step until 2026-12-01). One device call, .gpu carried:
# `prom bench` on the Llama-3-8B shape with --load-format dummy, for each prompt length in
# PROMPTS and each variant (NAME|BINARY|ENV as in scripts/gpu/ab.sh), at CONCURRENCY. Prints
# ITL (ms) and tok/s per level. Raw output goes to $OUT.
#   PROMPTS="128 2048" CONCURRENCY=1,8 VARIANTS="old|prom|PROM_SMALL_DECODE=0 new|prom|" scripts/gpu/scan.sh
set -u
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
source scripts/gpu/env.sh
OUT=${OUT:-/tmp/prom-scan}; mkdir -p "$OUT"
VARIANTS=${VARIANTS:-"prom|prom|"}
python3 scripts/gpu/make_model.py /tmp/m8 --shape 8b --config-only >/dev/null
for p in ${PROMPTS:-128}; do for v in $VARIANTS; do
  IFS='|' read -r name bin envs <<< "$v"
  log=$OUT/s-$name-$p.txt
  env $(echo "$envs" | tr ',' ' ') PROM_LOG=warn timeout 200 "$GPU_BIN/$bin" bench --device cuda --offline --model /tmp/m8/hf \
    --load-format dummy --concurrency "${CONCURRENCY:-1,2,4,8,16,32,64,128}" --max-tokens "${NEW:-64}" --prompt-tokens "$p" \
    --max-num-seqs 256 --max-num-batched-tokens 8192 --no-prefix-caching --kv-cache-memory 0.5 > "$log" 2>&1
  tail -1 "$log" | python3 -c "
import json,sys
try:
  j=json.loads(sys.stdin.read())
  print('$name prompt $p', ' | '.join(f\"bs{l['concurrency']}: {l['mean_itl_ms']:.2f} ms {l['tok_s']:.0f} tok/s\" for l in j['levels']))
except Exception as e: print('$name prompt $p: no result', e)"
done; done
