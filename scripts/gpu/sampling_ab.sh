#!/usr/bin/env bash
# Random sampling on the GPU, checked and measured in one device call (run there from the repo
# root, .gpu carried): cuda_kernels (the device sampler against the host definition, with the
# kernel chosen by row count and then each kernel forced: PROM_SAMPLE_CLUSTER=1 / 8),
# scripts/gpu/device_sampling.sh (seeded `prom run`, device against host sampler), the kernel's
# time under Nsight Compute at bs 1 / 32 / 128, then `prom bench --temperature 1 --top-p 0.95`
# on the device (auto, and one CTA a row), on the host (PROM_DEVICE_SAMPLING=0) and greedy,
# ROUNDS alternated rounds (default 2).
set -u
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
source scripts/gpu/env.sh; export PROM_TEST_DEVICE=cuda PROM_GOLDEN_DIR=$PWD/tests/fixtures/golden
echo "commit $(cat .gpu/COMMIT)"
for c in auto 1 8; do
  echo "== cuda_kernels (PROM_SAMPLE_CLUSTER=$c)"
  PROM_SAMPLE_CLUSTER=$c timeout 200 "$GPU_BIN/cuda_kernels" --test-threads 1 pick_rows argmax 2>&1 | grep -E "^test |test result|panicked|seed" | head
done
echo "== device_sampling"; timeout 200 bash scripts/gpu/device_sampling.sh
timeout 120 bash scripts/gpu/ncu_sample.sh
for r in $(seq 1 "${ROUNDS:-2}"); do
  TESTS=0 ROUNDS=1 ARGS="--temperature 1 --top-p 0.95" \
    VARIANTS="device|prom|PROM_DEVICE_SAMPLING=1 device-1cta|prom|PROM_SAMPLE_CLUSTER=1 host|prom|PROM_DEVICE_SAMPLING=0" \
    timeout 250 bash scripts/gpu/ab.sh 2>&1 | grep round | sed "s/round 1/round $r/"
  TESTS=0 ROUNDS=1 VARIANTS="greedy|prom|" timeout 100 bash scripts/gpu/ab.sh 2>&1 | grep round | sed "s/round 1/round $r/"
done
