#!/usr/bin/env bash
# Builds llama.cpp if needed (scripts/llamacpp/build.sh), then regenerates
# tests/reference/smollm2_q4_1_llamacpp.json with scripts/llamacpp/reference.py.
#   scripts/llamacpp/reference.sh [reference.py args...]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PROM_ARTIFACTS="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
"$HERE/../fetch-artifacts.sh" >/dev/null
BUILD="$("$HERE/build.sh")"
export LLAMA_CPP_LIB_PATH="$BUILD/bin"
export PYTHONPATH="$PROM_ARTIFACTS/llama-cpp-python-0.3.36${PYTHONPATH:+:$PYTHONPATH}"
exec python3 "$HERE/reference.py" --build "$BUILD" "$@"
