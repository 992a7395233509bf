#!/usr/bin/env bash
# Correctness on the GPU machine (run there from the repo root; .gpu/ built by
# scripts/gpu/build.sh and carried):
# 0. crates/models/tests/cuda_kernels.rs (argmax and the fused kernels), cuda_attention.rs
#    (paged attention, split-K and single pass, against a host reference) and cuda_graphs.rs
#    (decode steps replayed as CUDA graphs against the same steps run eagerly);
# 1. the golden-parity suite (every family in tests/fixtures/golden against HF transformers'
#    logits) on cuda in f32 (bound 1e-4), bf16 and f16 (relative error 2e-2, see
#    crates/models/tests/golden.rs);
# 2. compute-sanitizer memcheck over both, when the machine has compute-sanitizer.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/gpu/env.sh
export PROM_GOLDEN_DIR="$PWD/tests/fixtures/golden" PROM_TEST_DEVICE=${PROM_TEST_DEVICE:-cuda}
status=0
echo "== our kernels (argmax, fused add+RMSNorm, SwiGLU) against the host and candle's unfused ops"
"$GPU_BIN/cuda_kernels" --test-threads 1 2>&1 || status=1
echo "== paged attention (split-K and single pass) against a host reference, contexts up to 4000"
"$GPU_BIN/cuda_attention" --test-threads 1 2>&1 || status=1
echo "== CUDA graph replays of decode steps against the same steps run eagerly"
"$GPU_BIN/cuda_graphs" --nocapture --test-threads 1 2>&1 || status=1
for dt in ${DTYPES:-f32 bf16 f16}; do
  echo "== golden parity on $PROM_TEST_DEVICE, $dt"
  PROM_TEST_DTYPE=$dt "$GPU_BIN/golden" --nocapture --test-threads 1 2>&1 || status=1
done
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1 || true)
if [ -n "$cs" ] && [ -z "${NO_SANITIZER:-}" ]; then
  echo "== compute-sanitizer memcheck (cuda_kernels, cuda_attention, then the golden suite in bf16)"
  for t in cuda_kernels cuda_attention cuda_graphs; do
    timeout 180 "$cs" --tool memcheck --leak-check no --error-exitcode 9 "$GPU_BIN/$t" --test-threads 1 2>&1 \
      | grep -E "ERROR SUMMARY|Invalid|out of bounds|test result" | head -20
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
  done
  PROM_TEST_DTYPE=bf16 timeout "${SANITIZER_TIMEOUT:-240}" "$cs" --tool memcheck --leak-check no --error-exitcode 9 "$GPU_BIN/golden" --test-threads 1 2>&1 \
    | grep -E "ERROR SUMMARY|Invalid|out of bounds|test result|=========" | head -40
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
else
  echo "== compute-sanitizer: not found on this machine"
fi
exit $status
