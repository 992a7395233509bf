source scripts/gpu/env.sh; export PROM_TEST_DEVICE=cuda PROM_GOLDEN_DIR=$PWD/tests/fixtures/golden
cat .gpu/COMMIT; nproc; lscpu | grep -m1 "Model name"
echo "== cuda_kernels"; timeout 200 $GPU_BIN/cuda_kernels --test-threads 1 2>&1 | grep -E "^test |test result|panicked|seed" | head
echo "== device_sampling"; timeout 200 bash scripts/gpu/device_sampling.sh
timeout 100 bash scripts/gpu/ncu_sample.sh
for r in 1 2; do
  TESTS=0 ROUNDS=1 ARGS="--temperature 1 --top-p 0.95" VARIANTS="device|prom|PROM_DEVICE_SAMPLING=1 host|prom|PROM_DEVICE_SAMPLING=0" timeout 200 bash scripts/gpu/ab.sh 2>&1 | grep round | sed "s/round 1/round $r/"
  TESTS=0 ROUNDS=1 VARIANTS="greedy|prom|" timeout 100 bash scripts/gpu/ab.sh 2>&1 | grep round | sed "s/round 1/round $r/"
done
