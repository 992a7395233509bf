#!/usr/bin/env bash
# Records llama.cpp's ids for the tokenizer corpus with the SmolLM2 GGUF (gpt2 vocab, pre
# "smollm") into tests/fixtures/tokenizer/smollm2_llamacpp.json, and with the llama.cpp vocab
# test files named below into tests/fixtures/tokenizer/llamacpp_<vocab>.json.
# crates/models/tests/tokenizer_gguf_llamacpp.rs compares prom_models::Tokenizer against them.
#
# Needs the llama.cpp build (scripts/llamacpp/build.sh) and the artifacts
# (scripts/fetch-artifacts.sh).
#
#   scripts/tokenizer/smollm2_expected.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
BIN="$A/llama.cpp-build/bin/llama-tokenize"
VOCABS="$A/llama-cpp-python-0.3.36/vendor/llama.cpp/models"
OUT="$REPO/tests/fixtures/tokenizer"

[ -x "$BIN" ] || { echo "$BIN missing: run scripts/llamacpp/build.sh" >&2; exit 1; }
[ -d "$VOCABS" ] || { echo "$VOCABS missing: run scripts/fetch-artifacts.sh" >&2; exit 1; }

python3 "$HERE/llamacpp_tokenize.py" "$BIN" "$A/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$OUT/smollm2_llamacpp.json"
for v in llama-spm phi-3 llama-bpe qwen2 gpt-2; do
  python3 "$HERE/llamacpp_tokenize.py" "$BIN" "$VOCABS/ggml-vocab-$v.gguf" "$OUT/llamacpp_$v.json"
done
