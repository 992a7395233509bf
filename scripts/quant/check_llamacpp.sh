#!/usr/bin/env bash
# Interop with llama.cpp (built from llama-cpp-python 0.3.36's sdist, scripts/llamacpp/build.sh;
# llama-quantize is built here on demand):
#  1. SmolLM2-135M-Instruct Q4_1 → F32 GGUF (`prom quantize --type F32`), the common input.
#  2. For every `prom quantize --type` (with llama.cpp's mixtures, and with --pure for the
#     k-quants) our file and llama-quantize's file from that input hold the same tensor types and
#     the same bytes, tensor by tensor (scripts/quant/compare_gguf.py).
#  3. llama.cpp loads and runs our files: llama-completion generates from our Q4_K_M and Q2_K.
# Output: scripts/quant/results/check_llamacpp.txt (committed).
set -euo pipefail
cd "$(dirname "$0")/../.."
A=${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}
BUILD=$A/llama.cpp-build
BIN=$BUILD/bin
PROM=${PROM:-./target/release/prom}
MODEL=${MODEL:-$HOME/.cache/prometheus/models/SmolLM2-135M-Instruct.Q4_1.gguf}
WORK=${WORK:-/tmp/prom-quant-check}
OUT=scripts/quant/results/check_llamacpp.txt
mkdir -p "$WORK" "$(dirname "$OUT")"
[[ -x $BIN/llama-quantize ]] || cmake --build "$BUILD" --target llama-quantize -j "${JOBS:-2}" >&2
export LD_LIBRARY_PATH=$BIN
{
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) prom $(git rev-parse --short HEAD), llama.cpp $(jq -r '.llama_cpp_commit // .commit // "?"' "$BUILD/prometheus-build-info.json" 2>/dev/null || echo '?')"
"$PROM" quantize "$MODEL" "$WORK/base.f32.gguf" --type F32 2>&1
for spec in Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K F16 BF16 "Q2_K --pure" "Q3_K_M --pure" "Q4_K_M --pure" "Q5_K_M --pure" "Q6_K --pure"; do
    read -r t pure <<<"$spec"
    tag=$t${pure:+.pure}
    "$PROM" quantize "$WORK/base.f32.gguf" "$WORK/ours.$tag.gguf" --type "$t" $pure 2>/dev/null
    "$BIN/llama-quantize" $pure "$WORK/base.f32.gguf" "$WORK/theirs.$tag.gguf" "$t" 2 >"$WORK/llama-quantize.$tag.log" 2>&1
    echo "$tag: $(scripts/quant/compare_gguf.py "$WORK/ours.$tag.gguf" "$WORK/theirs.$tag.gguf" | tail -1)"
    rm -f "$WORK/theirs.$tag.gguf"
done
for t in Q4_K_M Q2_K; do
    echo "--- llama-completion on our $t file (greedy, 24 tokens):"
    "$BIN/llama-completion" -m "$WORK/ours.$t.gguf" -p "The capital of France is" -n 24 --temp 0 -t 2 -no-cnv 2>/dev/null </dev/null | tr '\n' ' '
    echo
done
} | tee "$OUT"
