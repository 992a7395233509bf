#!/usr/bin/env bash
# prom on an H200 against llama.cpp (CUDA, F16, flash attention) and HF transformers (bf16,
# SDPA), one device call. On a Llama-3-8B-shape seeded random model (scripts/gpu/make_model.py:
# bf16 safetensors for prom and transformers, the same weights as F16 GGUF for llama.cpp):
# - bs 1 decode tok/s at two contexts, each tool at the same one: 1→128 (prom: 1 / mean
#   inter-token latency after a 1-token prompt; llama.cpp: llama-bench tg128 from an empty cache,
#   `-d 0`) and 128→256 (prom: after a 128-token prompt; llama.cpp: tg128 at depth 128, `-d 128`;
#   transformers: 128 new tokens after 128 / wall);
# - 128-in/128-out end-to-end output tok/s at bs 32, 128, 256 (prom: `prom bench`, wall from
#   the first submit to the last token; llama.cpp: llama-batched-bench, B·128 / T;
#   transformers: generate, B·128 / wall);
# - the ratios, and prom's bs 1 as a fraction of the HBM roofline (weight bytes / measured
#   copy bandwidth).
#
# Here:   scripts/gpu/build.sh          (prom + llama.cpp source into the ignored .gpu/)
# There:  device run, carry [".gpu"], command: bench/gpu.sh   (≈ 9 min with peers)
# Knobs:  PEERS=0 (prom only), BATCHES="1 32 128 256", LAYERS=32, PROMS="prom prom-before prom+eager",
#         LONG_PROMPT=2048 (also bs 1 decode after a prompt of that many tokens, each prom:
#         attention's share of a step grows with the context).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/gpu/env.sh
OUT=${OUT:-/tmp/prom-gpu-out}; W=${WORK:-/tmp/prom-gpu-work}; mkdir -p "$OUT" "$W"
PEERS=${PEERS:-1}; BATCHES=${BATCHES:-1 32 128 256}; LAYERS=${LAYERS:-32}
csv() { echo "$*" | tr ' ' ','; }
echo "date: $(date -u +%FT%TZ)  host: $(nproc) cores  prom built from: $(cat .gpu/COMMIT 2>/dev/null || echo '?')"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader

# llama.cpp builds on the CPUs while the model is written (GPU + disk).
GGUF=()
if [ "$PEERS" = 1 ]; then
  rm -rf "$W/llama.cpp" && tar -C "$W" -xzf .gpu/llama.cpp.tar.gz
  GGUF=(--gguf-py "$W/llama.cpp/gguf-py")
  ( cd "$W/llama.cpp" \
    && cmake -S . -B build -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
         -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DCMAKE_BUILD_TYPE=Release \
    && cmake --build build -j "$(nproc)" --target llama-bench llama-batched-bench ) > "$OUT/llamacpp-build.log" 2>&1 &
  build_pid=$!
fi
python3 scripts/gpu/make_model.py "$W/m" --layers "$LAYERS" "${GGUF[@]}"

# Ceiling: device-to-device copy (bytes read + written), median of 20 after warm-up.
python3 - <<'PY' | tee "$OUT/ceiling.json"
import json, torch
x = torch.empty(2 << 30, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
ts = []
for _ in range(20):
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record(); y.copy_(x); b.record(); b.synchronize(); ts.append(a.elapsed_time(b) / 1e3)
ts.sort(); print(json.dumps({"copy_GBps": 2 * x.numel() / ts[len(ts) // 2] / 1e9}))
PY

# Every measurement below runs with the CPUs otherwise idle (prom's engine loop and sampler and
# transformers' launches are host-bound): the llama.cpp build finishes first.
if [ "$PEERS" = 1 ]; then wait "$build_pid" || { tail -30 "$OUT/llamacpp-build.log"; exit 1; }; fi

# PROMS names the binaries under $GPU_BIN to measure, e.g. "prom prom-before" for a before/after
# pair in one run; NAME+eager runs NAME with --enforce-eager (no CUDA graphs) as NAME-eager (each leaves NAME.txt / NAME.json; the table reads prom.json). Results of an
# earlier run in the same $OUT go first: the summary lists every prom-*.json it finds.
rm -f "$OUT"/prom*.json "$OUT"/prom*.txt
for entry in ${PROMS:-prom}; do
  bin=${entry%+eager} name=${entry/+/-} extra=()
  [ "$bin" = "$entry" ] || extra=(--enforce-eager)
  echo "== $name"
  "$GPU_BIN/$bin" bench "${extra[@]}" --device cuda --model "$W/m/hf" --offline --concurrency "$(csv $BATCHES)" --max-tokens 128 \
    --prompt-tokens 128 --max-num-seqs 256 --max-num-batched-tokens 8192 --kv-cache-memory 0.3 --no-prefix-caching \
    2>&1 | tee "$OUT/$name.txt"
  tail -1 "$OUT/$name.txt" > "$OUT/$name.json"
done
# bs 1 from a near-empty cache, the context llama-bench's tg128 runs at.
echo "== prom, bs 1 after a 1-token prompt"
"$GPU_BIN/prom" bench --device cuda --model "$W/m/hf" --offline --concurrency 1 --max-tokens 128 --prompt-tokens 1 \
  --max-num-seqs 256 --max-num-batched-tokens 8192 --kv-cache-memory 0.3 --no-prefix-caching 2>&1 | tee "$OUT/ctx0.txt"
tail -1 "$OUT/ctx0.txt" > "$OUT/ctx0.json"
if [ -n "${LONG_PROMPT:-}" ]; then
  for entry in ${PROMS:-prom}; do
    bin=${entry%+eager} name=${entry/+/-} extra=()
    [ "$bin" = "$entry" ] || extra=(--enforce-eager)
    echo "== $name, bs 1 after a $LONG_PROMPT-token prompt"
    "$GPU_BIN/$bin" bench "${extra[@]}" --device cuda --model "$W/m/hf" --offline --concurrency 1 --max-tokens 128 \
      --prompt-tokens "$LONG_PROMPT" --max-num-seqs 256 --max-num-batched-tokens 8192 --kv-cache-memory 0.3 \
      --no-prefix-caching 2>&1 | tee "$OUT/$name-long.txt"
  done
fi

if [ "$PEERS" = 1 ]; then
  echo "== transformers"
  PYTHONUNBUFFERED=1 python3 scripts/gpu/hf_bench.py "$W/m/hf" --batch "$(csv $BATCHES)" 2>&1 \
    | grep -v Warning | tee "$OUT/hf.txt"
  echo "== llama.cpp"
  LB="$W/llama.cpp/build/bin"
  "$LB/llama-bench" -m "$W/m/f16.gguf" -ngl 99 -fa 1 -p 0 -n 128 -d 0,128 -r 3 -o json > "$OUT/llamacpp-bench.json"
  big=$(csv $(for b in $BATCHES; do [ "$b" -gt 1 ] && echo "$b"; done))
  "$LB/llama-batched-bench" -m "$W/m/f16.gguf" -ngl 99 -fa on -c $((256 * 256)) -npp 128 -ntg 128 -npl "$big" \
    --output-format jsonl 2>/dev/null | grep '^{' > "$OUT/llamacpp-batched.jsonl"
fi

python3 scripts/gpu/summary.py "$OUT" "$W/m/hf/model.safetensors"
