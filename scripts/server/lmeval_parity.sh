#!/usr/bin/env bash
# lm-eval (`--model local-completions`, remote tokenizer) runs a small loglikelihood task against
# `prom serve`; each per-request loglikelihood is compared with the in-process computation
# (`prom score`). Output recorded in scripts/server/results/lmeval_parity.txt.
#
#   cargo build --release -p prom-cli && scripts/server/lmeval_parity.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
MODEL="${MODEL:-$A/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
V="$A/venv-lmeval"
PINS="lm-eval[api]==0.4.13"
if [ "$(cat "$V/.pins" 2>/dev/null)" != "$PINS" ]; then
  rm -rf "$V" && python3 -m venv "$V"
  "$V/bin/python" -m pip install -q --disable-pip-version-check "$PINS"
  echo "$PINS" > "$V/.pins"
fi
LOG=$(mktemp) OUT=$(mktemp -d)
target/release/prom serve --offline -m "$MODEL" --kv-cache-memory 256MiB --port 0 --served-model-name smol 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$LOG" "$OUT"' EXIT
for _ in $(seq 600); do grep -q "^listening on" "$LOG" && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$LOG")
# Nothing leaves the machine: the task's data is a local file.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$V/bin/lm_eval" --model local-completions \
  --model_args "model=smol,base_url=$URL/v1/completions,tokenizer_backend=remote,num_concurrent=1,max_retries=1" \
  --tasks prom_tiny_mc --include_path scripts/server/lmeval --batch_size 4 \
  --output_path "$OUT" --log_samples > "$OUT/lm_eval.txt" 2>&1 || { cat "$OUT/lm_eval.txt"; exit 1; }
SAMPLES=$(find "$OUT" -name 'samples_prom_tiny_mc_*.jsonl' | head -1)
mkdir -p scripts/server/results
{
  echo "# scripts/server/lmeval_parity.sh, $(date -u +%Y-%m-%d): lm-eval 0.4.13 local-completions vs prom score"
  grep -E "^\|" "$OUT/lm_eval.txt" || true
  "$V/bin/python" scripts/server/lmeval_compare.py "$SAMPLES" --base-url "$URL" --prom target/release/prom --model "$MODEL"
} | tee scripts/server/results/lmeval_parity.txt
