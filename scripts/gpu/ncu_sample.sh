#!/usr/bin/env bash
# The device sampler's kernel time (Nsight Compute, gpu__time_duration) in a sampled `prom
# bench` (--temperature 1 --top-p 0.95, 128k vocabulary) at 1, 16, 32 and 128 sequences, on a
# 4-layer Llama-3-8B-shape dummy model. Run on the GPU machine from the repo root, .gpu carried.
set -u
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
source scripts/gpu/env.sh
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -f /tmp/m8s/hf/config.json ] || python3 scripts/gpu/make_model.py /tmp/m8s --shape 8b --layers 4 --config-only >/dev/null
for conc in 1 16 32 128; do
  echo "== ncu sample_rows_f32 at bs $conc"
  "$NCU" --clock-control none --kernel-name regex:"sample_rows|argmax" --launch-skip 30 --launch-count 6 --csv --metrics gpu__time_duration.sum \
    "$PROM" bench --device cuda --offline --model /tmp/m8s/hf --load-format dummy --concurrency $conc --max-tokens 24 --prompt-tokens 64 \
    --max-num-seqs 256 --max-num-batched-tokens 8192 --no-prefix-caching --kv-cache-memory 0.3 --temperature 1 --top-p 0.95 2>/dev/null \
    | grep -E '"(sample_rows|argmax)' | awk -F'","' '{print $5, $9, $(NF-1), $NF}' | tr -d '"'
done
