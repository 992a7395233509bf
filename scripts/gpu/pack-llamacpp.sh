#!/usr/bin/env bash
# Packs the llama.cpp source vendored in the pinned llama-cpp-python 0.3.36 sdist, trimmed to
# what a CUDA build of llama-bench and llama-batched-bench needs (plus gguf-py), into
# .gpu/llama.cpp.tar.gz for bench/gpu.sh to carry to the GPU machine (the whole sdist is
# 217 MB; the device tool carries 64 MiB). Runs here, not there.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
SRC="$A/llama-cpp-python-0.3.36/vendor/llama.cpp"
[ -f "$SRC/CMakeLists.txt" ] || "$REPO/scripts/fetch-artifacts.sh" >&2
mkdir -p "$REPO/.gpu"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
dst="$tmp/llama.cpp"; mkdir -p "$dst/ggml/src" "$dst/tools"
cp -r "$SRC"/{CMakeLists.txt,LICENSE,cmake,common,include,licenses,src,vendor,gguf-py} "$dst/"
cp -r "$SRC"/ggml/{CMakeLists.txt,cmake,include} "$dst/ggml/"
# ggml core files plus the CPU and CUDA backends only.
find "$SRC/ggml/src" -maxdepth 1 -type f -exec cp {} "$dst/ggml/src/" \;
cp -r "$SRC"/ggml/src/{ggml-cpu,ggml-cuda} "$dst/ggml/src/"
cp -r "$SRC"/tools/{batched-bench,llama-bench} "$dst/tools/"
printf 'add_subdirectory(batched-bench)\nadd_subdirectory(llama-bench)\n' > "$dst/tools/CMakeLists.txt"
# The commit, for the record (the sdist's CHANGELOG names it).
grep -o 'ggml-org/llama.cpp@[0-9a-f]*' "$SRC/../../CHANGELOG.md" | head -1 > "$dst/PROM_LLAMA_COMMIT"
tar -C "$tmp" -czf "$REPO/.gpu/llama.cpp.tar.gz" llama.cpp
du -h "$REPO/.gpu/llama.cpp.tar.gz"
