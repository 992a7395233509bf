#!/usr/bin/env bash
# Builds the CUDA variant here (no GPU needed) and packs what the GPU machine runs into the
# ignored .gpu/ folder: prom, the golden-parity and cuda_kernels test binaries (stripped,
# xz-compressed) and the trimmed llama.cpp source. Name `.gpu` in the device tool's `carry`.
#
#   scripts/gpu/build.sh     # CARGO_TARGET_DIR defaults to /work/target-cuda
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
source "${CUDA_TOOLCHAIN:-$REPO/../shared/tools/cuda-toolchain.sh}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-cuda}"
cargo build --release --features cuda -p prom-cli
# The GPU test binaries: golden parity, our kernels against the host / candle's unfused ops,
# paged attention (split-K and single pass) against a host reference, CUDA graph replays
# against eager decode steps; the engine's async scheduling against its synchronous steps.
tests=$(cargo test --release --features cuda -p prom-models --test golden --test cuda_kernels --test cuda_attention --test cuda_graphs --no-run --message-format=json \
  | python3 -c 'import json,sys
for m in map(json.loads, sys.stdin):
    if m.get("executable") and m["target"]["name"] in ("golden", "cuda_kernels", "cuda_attention", "cuda_graphs"): print(m["target"]["name"] + ":" + m["executable"])')
tests+=" "$(cargo test --release --features cuda -p prom-engine --test engine_async --no-run --message-format=json \
  | python3 -c 'import json,sys
for m in map(json.loads, sys.stdin):
    if m.get("executable") and m["target"]["name"] == "engine_async": print("engine_async:" + m["executable"])')
mkdir -p .gpu
for pair in "prom:$CARGO_TARGET_DIR/release/prom" $tests; do
  name=${pair%%:*}; src=${pair#*:}
  strip -o ".gpu/$name" "$src"
  xz -T0 -6 -f ".gpu/$name"
done
# The commit the binaries are built from (the device's copy of the tree has no usable git HEAD).
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates scripts bench || echo +dirty)" > .gpu/COMMIT
[ -f .gpu/llama.cpp.tar.gz ] || scripts/gpu/pack-llamacpp.sh
du -ch .gpu/* | tail -n +1
