#!/usr/bin/env bash
# openapi-spec-validator checks `prom serve`'s /openapi.json, then schemathesis runs every
# documented operation with generated inputs: no 5xx and no crash (the server still answers
# /health afterwards). Output recorded in scripts/server/results/schemathesis.txt. Generation is
# kept short (--max-model-len 256).
#
#   cargo build --release -p prom-cli && scripts/server/schemathesis.sh [extra schemathesis flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
MODEL="${MODEL:-$A/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
V="$A/venv-schemathesis"
PINS="schemathesis==4.32.5 openapi-spec-validator==0.9.0"
if [ "$(cat "$V/.pins" 2>/dev/null)" != "$PINS" ]; then
  rm -rf "$V" && python3 -m venv "$V"
  "$V/bin/python" -m pip install -q --disable-pip-version-check $PINS
  echo "$PINS" > "$V/.pins"
fi
LOG=$(mktemp) WORK=$(mktemp -d)
target/release/prom serve --offline -m "$MODEL" --kv-cache-memory 256MiB --port 0 --served-model-name smol \
  --max-model-len 256 --max-num-seqs 16 --max-queue 48 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$LOG" "$WORK"' EXIT
for _ in $(seq 600); do grep -q "^listening on" "$LOG" && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$LOG")
mkdir -p scripts/server/results
set +e
{
  echo "# scripts/server/schemathesis.sh, $(date -u +%Y-%m-%d): $PINS against prom serve /openapi.json"
  curl -sf "$URL/openapi.json" > "$WORK/openapi.json"
  "$V/bin/python" -c "import json, sys; from openapi_spec_validator import validate; \
validate(json.load(open(sys.argv[1]))); print('openapi-spec-validator: /openapi.json is a valid OpenAPI 3 document')" \
    "$WORK/openapi.json" 2>&1
  # From a scratch directory: schemathesis keeps its state in ./.schemathesis.
  (cd "$WORK" && "$V/bin/schemathesis" run "$URL/openapi.json" --checks not_a_server_error \
    --max-examples "${EXAMPLES:-40}" --request-timeout 120 --no-color "$@" 2>&1)
  echo "schemathesis exit status: $?"
  if curl -sf "$URL/health" >/dev/null && kill -0 $PID; then echo "server alive afterwards: yes"; else echo "server alive afterwards: NO"; fi
  grep -c "panicked" "$LOG" | sed 's/^/server panics logged: /'
} | tee scripts/server/results/schemathesis.txt
grep -q "schemathesis exit status: 0" scripts/server/results/schemathesis.txt && grep -q "alive afterwards: yes" scripts/server/results/schemathesis.txt
