#!/usr/bin/env bash
# Overload + disconnect storm against a freshly started `prom serve` (see overload.py), with the
# output recorded in scripts/server/results/overload.txt.
#
#   cargo build --release -p prom-cli && scripts/server/overload.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
MODEL="${MODEL:-$A/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
LOG=$(mktemp)
target/release/prom serve --offline -m "$MODEL" --kv-cache-memory 256MiB --port 0 \
  --max-num-seqs 4 --max-queue 4 --shutdown-timeout 5 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 600); do grep -q "^listening on" "$LOG" && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$LOG")
mkdir -p scripts/server/results
{
  echo "# scripts/server/overload.sh, $(date -u +%Y-%m-%d), $(nproc) cores; prom serve --max-num-seqs 4 --max-queue 4"
  python3 scripts/server/overload.py --base-url "$URL" "$@"
} | tee scripts/server/results/overload.txt
kill -TERM $PID
wait $PID
echo "server exit status: $?" | tee -a scripts/server/results/overload.txt
