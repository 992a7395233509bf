#!/usr/bin/env bash
# Creates (once) the Python virtualenv the server's client tests use: the official `openai` SDK and
# openapi-spec-validator, pinned. Prints the venv's python on success.
#
#   scripts/server/setup-venv.sh            # idempotent
#   PROM_SERVER_VENV=/path scripts/server/setup-venv.sh
#
# Default location: $PROM_ARTIFACTS/venv-server (PROM_ARTIFACTS defaults to
# ~/.cache/prometheus/artifacts), beside the other fetched test artifacts.
set -euo pipefail
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
V="${PROM_SERVER_VENV:-$A/venv-server}"
PINS="openai==3.51.0 openapi-spec-validator==0.9.0"
if [ -x "$V/bin/python" ] && [ "$(cat "$V/.pins" 2>/dev/null)" = "$PINS" ]; then
  echo "$V/bin/python"
  exit 0
fi
rm -rf "$V"
python3 -m venv "$V"
"$V/bin/python" -m pip install -q --disable-pip-version-check $PINS >&2
echo "$PINS" > "$V/.pins"
echo "$V/bin/python"
