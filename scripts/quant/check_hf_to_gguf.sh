#!/usr/bin/env bash
# `prom quantize` from an HF safetensors directory, checked in llama.cpp (built from
# llama-cpp-python 0.3.36's sdist, scripts/llamacpp/build.sh):
#  1. The HF input: the default SmolLM2-135M-Instruct Q4_1 GGUF dequantized to an f32 HF dir by
#     scripts/eval/gguf_to_hf.py (gguf-py's dequantizer, Q/K rows un-permuted), made if missing.
#  2. For each type, `prom quantize HF_DIR out.gguf --type T` (the HF path: tensor renaming, the
#     RoPE row permutation, tokenizer and metadata from tokenizer.json/config.json) is compared
#     tensor by tensor with `prom quantize` of the same weights taken from the GGUF side (the Q4_1
#     file → F32 → T): the same bytes mean the HF conversion lost and permuted nothing.
#  3. llama.cpp runs the HF-made files: its tokenization of tests/reference/ppl_text.txt against
#     the original GGUF's, llama-perplexity on that text (beside prom's own perplexity of the same
#     file, scripts/quant/ppl.py) and a greedy llama-completion.
# The pre-tokenizer name is not in an HF tokenizer.json (llama.cpp's convert_hf_to_gguf.py
# recognises it by hashing the tokenizer's output); SmolLM2's is `smollm` (TOKENIZER_PRE). With
# `prom quantize`'s default (`default`) llama.cpp splits "'s" in two: one token of the text differs.
# Output: scripts/quant/results/check_hf_to_gguf.txt (committed).
#
#   scripts/quant/check_hf_to_gguf.sh                 # TYPES="Q8_0 Q4_K_M Q5_0 F16" by default
set -euo pipefail
cd "$(dirname "$0")/../.."
A=${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}
BIN=$A/llama.cpp-build/bin
PROM=${PROM:-./target/release/prom}
GGUF=${GGUF:-$HOME/.cache/prometheus/models/SmolLM2-135M-Instruct.Q4_1.gguf}
HF=${HF:-$A/smollm2-135m-f32-hf}
PY=${PY:-${PROM_EVAL_VENV:-$A/venv-eval}/bin/python}
TYPES=${TYPES:-"Q8_0 Q4_K_M Q5_0 F16"}
TOKENIZER_PRE=${TOKENIZER_PRE:-smollm}
THREADS=${THREADS:-2}
WORK=${WORK:-/tmp/prom-quant-hf-check}
OUT=scripts/quant/results/check_hf_to_gguf.txt
[[ -x $PROM ]] || { echo "missing $PROM: cargo build --release -p prom-cli" >&2; exit 1; }
mkdir -p "$WORK" "$(dirname "$OUT")"
[[ -f $HF/model.safetensors ]] || "$PY" scripts/eval/gguf_to_hf.py "$GGUF" "$HF" >&2
# transformers' GGUF integration writes a config.json without `architectures`, which every HF
# checkpoint has and `prom quantize` reads: a copy of the dir (files linked) with it added.
rm -rf "$WORK/hf" && mkdir -p "$WORK/hf"
for f in "$HF"/*; do [[ $(basename "$f") == config.json ]] || ln -s "$f" "$WORK/hf/"; done
jq '. + {architectures: ["LlamaForCausalLM"]}' "$HF/config.json" >"$WORK/hf/config.json"
export LD_LIBRARY_PATH=$BIN
{
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) prom $(git rev-parse --short HEAD), llama.cpp $(jq -r '.llama_cpp_commit // "?"' "$A/llama.cpp-build/prometheus-build-info.json" 2>/dev/null || echo '?')"
echo "# HF input: $HF (from $(basename "$GGUF") by scripts/eval/gguf_to_hf.py)"
"$PROM" quantize "$GGUF" "$WORK/gguf.F32.gguf" --type F32 2>/dev/null
toks() { "$BIN/llama-tokenize" -m "$1" -f tests/reference/ppl_text.txt --ids --log-disable 2>/dev/null | tr -d '[] ' | tr ',' '\n'; }
toks "$GGUF" >"$WORK/tokens.original"
for pre in default "$TOKENIZER_PRE"; do
    "$PROM" quantize "$WORK/hf" "$WORK/hf.pre.gguf" --type Q8_0 --tokenizer-pre "$pre" 2>/dev/null
    echo "tokenizer-pre $pre: llama.cpp tokens of ppl_text.txt differing from the original GGUF's: $(toks "$WORK/hf.pre.gguf" | diff - "$WORK/tokens.original" | grep -c '^[<>]' || true) lines of diff"
done
rm -f "$WORK/hf.pre.gguf"
for t in $TYPES; do
    "$PROM" quantize "$WORK/hf" "$WORK/hf.$t.gguf" --type "$t" --tokenizer-pre "$TOKENIZER_PRE" 2>/dev/null
    "$PROM" quantize "$WORK/gguf.F32.gguf" "$WORK/gguf.$t.gguf" --type "$t" 2>/dev/null
    echo "$t: HF-made vs GGUF-made: $(scripts/quant/compare_gguf.py "$WORK/hf.$t.gguf" "$WORK/gguf.$t.gguf" | tail -1)"
    theirs=$("$BIN/llama-perplexity" -m "$WORK/hf.$t.gguf" -f tests/reference/ppl_text.txt -c 512 -b 512 -t "$THREADS" 2>&1 |
        sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    ours=$(scripts/quant/ppl.py "$PROM" "$WORK/hf.$t.gguf")
    echo "$t: perplexity of the HF-made file: llama-perplexity $theirs, prom $ours"
    echo "$t: llama-completion (greedy, 24 tokens): $("$BIN/llama-completion" -m "$WORK/hf.$t.gguf" \
        -p "The capital of France is" -n 24 --temp 0 -t "$THREADS" -no-cnv 2>/dev/null </dev/null | tr '\n' ' ')"
    rm -f "$WORK/gguf.$t.gguf"
done
} | tee "$OUT"
