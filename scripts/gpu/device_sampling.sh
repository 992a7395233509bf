#!/usr/bin/env bash
# The engine's random sampling on the GPU against its host sampler, end to end: `prom run` on a
# 4-layer Llama-3-8B-shape model (dummy weights, 128k vocabulary), seeded, once with random steps
# sampled on the device and once with PROM_DEVICE_SAMPLING=0 (the logits go to the host
# sampler). The texts must be the same. Run on the GPU machine from the repo root, .gpu carried.
set -u
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
source scripts/gpu/env.sh
python3 scripts/gpu/make_model.py /tmp/m8s --shape 8b --layers 4 --config-only >/dev/null
fail=0
for args in "--temperature 1" "--temperature 0.7 --top-p 0.95" "--temperature 1 --top-k 50" \
  "--temperature 0.8 --top-p 0.9 --min-p 0.05" "--temperature 1.5 --top-k 200 --top-p 0.5"; do
  run() {
    env "$1" timeout 120 "$PROM" run --device cuda --offline --model /tmp/m8s/hf --load-format dummy --raw \
      --ignore-eos --max-tokens 48 --seed 11 $args "The quick brown fox" 2>/dev/null
  }
  a=$(run PROM_DEVICE_SAMPLING=1)
  b=$(run PROM_DEVICE_SAMPLING=0)
  if [ -n "$a" ] && [ "$a" = "$b" ]; then echo "same   ($args): ${a:0:60}"; else
    echo "DIFFER ($args)"; echo "  device: $a"; echo "  host:   $b"; fail=1; fi
done
exit $fail
