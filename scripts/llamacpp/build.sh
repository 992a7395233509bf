#!/usr/bin/env bash
# Builds llama.cpp (CPU only) from the source vendored in the pinned llama-cpp-python 0.3.36
# sdist into $PROM_ARTIFACTS/llama.cpp-build. Idempotent: if every wanted binary and
# libllama.so already exist, it only prints the build info and exits.
#
#   scripts/llamacpp/build.sh            # build (or skip), prints the build dir on stdout
#   FORCE=1 scripts/llamacpp/build.sh    # wipe the build dir and rebuild
#   JOBS=8 scripts/llamacpp/build.sh     # parallelism (default 2)
#
# Writes $BUILD/prometheus-build-info.json: the exact cmake command, the llama.cpp commit,
# compiler and CPU, so that the reference data and the CPU benchmarks can cite them.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
A="${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}"
SRC="$A/llama-cpp-python-0.3.36/vendor/llama.cpp"
BUILD="$A/llama.cpp-build"
JOBS="${JOBS:-2}"

if [ ! -f "$SRC/CMakeLists.txt" ]; then
  "$REPO/scripts/fetch-artifacts.sh" >&2
fi

# llama.cpp commit. The sdist ships the submodule's git metadata (vendor/llama.cpp/.git ->
# ../../.git/modules/vendor/llama.cpp, a shallow clone), so ask git first; fall back to the
# sdist's CHANGELOG ("[0.3.36] update llama.cpp to ggml-org/llama.cpp@<commit>").
# Note: the clone is shallow, so cmake's build number (rev-list --count) is a meaningless 1.
LLAMA_COMMIT_FULL="$(git -C "$SRC" rev-parse HEAD 2>/dev/null || true)"
LLAMA_COMMIT_DATE="$(git -C "$SRC" log -1 --format=%cI 2>/dev/null || true)"
LLAMA_COMMIT_SUBJECT="$(git -C "$SRC" log -1 --format=%s 2>/dev/null || true)"
LLAMA_COMMIT_CHANGELOG="$(awk '/^## \[0\.3\.36\]/{f=1;next} f&&/^## /{exit} f' "$SRC/../../CHANGELOG.md" \
  | grep -o 'ggml-org/llama.cpp@[0-9a-f]*' | head -1 | cut -d@ -f2)"
if [ -n "$LLAMA_COMMIT_FULL" ]; then LLAMA_COMMIT="${LLAMA_COMMIT_FULL:0:9}"; else LLAMA_COMMIT="${LLAMA_COMMIT_CHANGELOG:-unknown}"; fi

# CPU features: the flags below assume an AVX-512 (Zen 4 / Ice Lake+) machine. Drop the
# ones this CPU lacks. AMX stays off on purpose: the native (-march=native, AMX) build
# crashed on Q4_1 on the machine this was written on.
has() { grep -qw "$1" /proc/cpuinfo; }
onoff() { if has "$1"; then echo ON; else echo OFF; fi; }
FLAGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=ON
  -DGGML_NATIVE=OFF
  -DGGML_AVX="$(onoff avx)"
  -DGGML_AVX2="$(onoff avx2)"
  -DGGML_FMA="$(onoff fma)"
  -DGGML_F16C="$(onoff f16c)"
  -DGGML_AVX512="$(onoff avx512f)"
  -DGGML_AVX512_VNNI="$(onoff avx512_vnni)"
  -DGGML_AVX512_VBMI="$(onoff avx512vbmi)"
  -DGGML_AVX512_BF16="$(onoff avx512_bf16)"
  -DLLAMA_CURL=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF
  -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT"
)
TARGETS=(llama llama-cli llama-completion llama-perplexity llama-tokenize llama-bench llama-server)
CMAKE_CONFIGURE=(cmake -S "$SRC" -B "$BUILD" -G Ninja "${FLAGS[@]}")
CMAKE_BUILD=(cmake --build "$BUILD" --config Release -j "$JOBS" --target "${TARGETS[@]}")

built() {
  [ -f "$BUILD/bin/libllama.so" ] || return 1
  for t in llama-cli llama-completion llama-perplexity llama-tokenize llama-bench llama-server; do
    [ -x "$BUILD/bin/$t" ] || return 1
  done
}

command -v cmake >/dev/null || python3 -m pip install -q cmake >&2
command -v ninja >/dev/null || python3 -m pip install -q ninja >&2

if [ "${FORCE:-0}" = 1 ]; then rm -rf "$BUILD"; fi
# REINFO=1: re-run configure + (no-op) build just to rewrite prometheus-build-info.json
if [ "${REINFO:-0}" = 1 ] && [ -f "$BUILD/prometheus-build-info.json" ]; then mv "$BUILD/prometheus-build-info.json" "$BUILD/prometheus-build-info.prev.json"; fi
if built && [ -f "$BUILD/prometheus-build-info.json" ]; then
  echo "llama.cpp already built in $BUILD (FORCE=1 to rebuild)" >&2
else
  t0=$(date +%s)
  echo "+ ${CMAKE_CONFIGURE[*]}" >&2
  "${CMAKE_CONFIGURE[@]}" >&2
  echo "+ ${CMAKE_BUILD[*]}" >&2
  "${CMAKE_BUILD[@]}" >&2
  t1=$(date +%s)
  built || { echo "build finished but some targets are missing in $BUILD/bin" >&2; exit 1; }
  python3 - "$BUILD/prometheus-build-info.json" "$LLAMA_COMMIT" "$((t1 - t0))" "$JOBS" \
    "${CMAKE_CONFIGURE[*]}" "${CMAKE_BUILD[*]}" "$LLAMA_COMMIT_FULL" "$LLAMA_COMMIT_DATE" \
    "$LLAMA_COMMIT_SUBJECT" "$LLAMA_COMMIT_CHANGELOG" "$BUILD/bin/llama-cli" <<'PY'
import json, sys, subprocess, platform, datetime, os
out, commit, secs, jobs, conf, build, full, cdate, subject, changelog, cli = sys.argv[1:]
def sh(c):
    try: return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception: return ""
model = next((l.split(":", 1)[1].strip() for l in sh("lscpu").splitlines() if l.startswith("Model name")), "")
try:
    prev = json.load(open(out if os.path.exists(out) else out.replace("info.json", "info.prev.json")))
except Exception:
    prev = {}
info = {
    "llama_cpp_source": "llama-cpp-python 0.3.36 sdist, vendor/llama.cpp",
    "llama_cpp_commit": commit,
    "llama_cpp_commit_full": full,
    "llama_cpp_commit_date": cdate,
    "llama_cpp_commit_subject": subject,
    "llama_cpp_commit_changelog": changelog,
    "llama_cpp_commit_source": "git metadata shipped in the sdist (vendor/llama.cpp/.git, shallow); cross-checked "
                               "with CHANGELOG.md [0.3.36] 'update llama.cpp to ggml-org/llama.cpp@<commit>'",
    "llama_cpp_version": sh(cli + " --version 2>&1 | grep -i '^version' | head -1"),
    "cmake_configure": conf,
    "cmake_build": build,
    "jobs": int(jobs),
    "build_seconds": int(secs),
    "full_build_seconds": max(int(secs), int(prev.get("full_build_seconds", prev.get("build_seconds", 0)))),
    "full_build_note": "largest build time seen in this build dir (a from-scratch build; a no-op rebuild takes seconds)",
    "compiler": sh("c++ --version | head -1"),
    "cmake_version": sh("cmake --version | head -1"),
    "cpu": model,
    "nproc": sh("nproc"),
    "kernel": platform.release(),
    "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
}
json.dump(info, open(out, "w"), indent=2)
PY
fi
cat "$BUILD/prometheus-build-info.json" >&2; echo >&2
echo "$BUILD"
