#!/usr/bin/env bash
# lm-evaluation-harness 0.4.13, HF backend on CPU torch, on the f32 SmolLM2 dir (gguf_to_hf.py),
# over the parity tasks (prepare_tasks.py). One lm_eval run per task so each has its own wall time.
#   scripts/eval/run_lm_eval.sh OUT_DIR
set -euo pipefail
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
OUT="$1"
MODEL_DIR="${MODEL_DIR:-$A/smollm2-135m-f32-hf}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
for spec in parity_arc_easy:500 parity_hellaswag:500 parity_piqa:500 parity_gsm8k:100; do
  task=${spec%%:*} limit=${spec##*:}
  start=$(date +%s.%N)
  "$A/venv-eval/bin/lm_eval" --model hf --model_args "pretrained=$MODEL_DIR,dtype=float32" --device cpu \
    --batch_size 16 --tasks "$task" --include_path "$OUT/../tasks" --limit "$limit" \
    --output_path "$OUT/$task" --log_samples > "$OUT/$task.log" 2>&1
  end=$(date +%s.%N)
  echo "$task $limit $(echo "$end - $start" | bc)" >> "$OUT/wall_times.txt"
done
