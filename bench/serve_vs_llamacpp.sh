#!/usr/bin/env bash
# Serving against llama.cpp: `prom bench serve` drives `prom serve` and then `llama-server -np 8`
# on the same GGUF with the same load: $NUM random token-id prompts of $IN tokens, $OUT_LEN
# output tokens each (EOS ignored), all arriving at once, at most $CONC streams in flight.
# Prints both reports and the ratios: output tok/s ours / llama.cpp (goal ≥ 1.5) and TTFT p99
# (goal: ours lower).
#
#   bench/serve_vs_llamacpp.sh                       # default model, 8 streams, 32 requests
#   MODEL=~/.cache/prometheus/bench/llama1b-random.Q4_0.gguf NUM=16 bench/serve_vs_llamacpp.sh
#   ROUNDS=2 bench/serve_vs_llamacpp.sh              # round 2 runs llama.cpp first
#   THREADS=1 PIN_CPUS=0 bench/serve_vs_llamacpp.sh  # both servers on CPU 0 (a busy machine)
#
# One server runs at a time (each gets the whole machine), each warmed by the bench's test
# request. llama-server: $THREADS threads, continuous batching (its default), -np $CONC slots of
# ($IN + $OUT_LEN + 64) tokens each, flash attention auto, f16 KV cache. prom serve: defaults
# (f16 KV cache for GGUF, every core). The load average is printed before and after.
set -euo pipefail

cd "$(dirname "$0")/.."
MODEL=${MODEL:-$HOME/.cache/prometheus/artifacts/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
CONC=${CONC:-8}
NUM=${NUM:-32}
IN=${IN:-128}
OUT_LEN=${OUT_LEN:-128}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
PORT=${PORT:-18431}
PROM=${PROM:-./target/release/prom}
# LLAMA_ENV: environment for llama-server only (e.g. OMP_WAIT_POLICY=passive on a busy machine,
# see bench/cpu_vs_llamacpp.sh).
LLAMA_ENV=${LLAMA_ENV:-}
# PIN_CPUS: a taskset CPU list both servers are pinned to (prom's pools follow the mask).
PIN=()
[[ -n ${PIN_CPUS:-} ]] && PIN=(taskset -c "$PIN_CPUS")

[[ -x $PROM ]] || { echo "missing $PROM: run cargo build --release -p prom-cli" >&2; exit 1; }
[[ -f $MODEL ]] || { echo "missing $MODEL (scripts/fetch-artifacts.sh)" >&2; exit 1; }
command -v jq >/dev/null || { echo "missing jq" >&2; exit 1; }
LLAMA_BIN=$(scripts/llamacpp/build.sh)/bin
dir=$(mktemp -d)
server=
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

wait_health() {
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && return 0
        kill -0 "$server" 2>/dev/null || { echo "server exited:" >&2; tail -20 "$dir/server.log" >&2; exit 1; }
        sleep 0.2
    done
    echo "server did not come up" >&2
    exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=; }

bench() { # name → $dir/name.json
    PROM_LOG=warn "$PROM" bench serve --base-url "http://127.0.0.1:$PORT" --num-prompts "$NUM" \
        --max-concurrency "$CONC" --random-input-len "$IN" --random-output-len "$OUT_LEN" --ignore-eos \
        --json >"$dir/$1.json"
    jq -r --arg n "$1" '"\($n): \(.completed)/\(.num_prompts) ok, \(.total_output_tokens) output tokens in \(.duration * 100 | round / 100) s: \(.output_throughput * 100 | round / 100) tok/s, TTFT median \(.median_ttft_ms | round) ms p99 \(.p99_ttft_ms | round) ms, TPOT median \(.median_tpot_ms * 10 | round / 10) ms, ITL p99 \(.p99_itl_ms * 10 | round / 10) ms"' "$dir/$1.json"
}
run_prom() {
    "${PIN[@]}" "$PROM" serve --offline -m "$MODEL" --port "$PORT" >"$dir/server.log" 2>&1 &
    server=$!
    wait_health
    bench "prom-$1"
    stop
}
run_llama() {
    env LD_LIBRARY_PATH="$LLAMA_BIN" $LLAMA_ENV "${PIN[@]}" "$LLAMA_BIN/llama-server" -m "$MODEL" --port "$PORT" -t "$THREADS" -tb "$THREADS" \
        -np "$CONC" -c $((CONC * (IN + OUT_LEN + 64))) >"$dir/server.log" 2>&1 &
    server=$!
    wait_health
    bench "llama-$1"
    stop
}

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  cpu: $(lscpu | sed -n 's/^Model name: *//p')  cores: $(nproc)"
echo "prom: $PROM at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo '+dirty')  model: $MODEL"
echo "load: $NUM requests, $IN prompt + $OUT_LEN output tokens, all at once, $CONC concurrent streams; llama-server -t $THREADS${LLAMA_ENV:+ with $LLAMA_ENV}${PIN_CPUS:+; both pinned to CPUs $PIN_CPUS}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then run_prom "$r"; run_llama "$r"; else run_llama "$r"; run_prom "$r"; fi
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo
ours_tps=$(cat "$dir"/prom-*.json | jq -s 'map(.output_throughput) | add / length')
theirs_tps=$(cat "$dir"/llama-*.json | jq -s 'map(.output_throughput) | add / length')
ours_p99=$(cat "$dir"/prom-*.json | jq -s 'map(.p99_ttft_ms) | add / length')
theirs_p99=$(cat "$dir"/llama-*.json | jq -s 'map(.p99_ttft_ms) | add / length')
ratio=$(echo "$ours_tps / $theirs_tps" | bc -l)
printf "%-22s %12s %12s %8s  %s\n" "" prom llama.cpp ratio goal
printf "%-22s %12.1f %12.1f %7.2fx  %s\n" "output tok/s" "$ours_tps" "$theirs_tps" "$ratio" \
    "$(echo "$ratio >= 1.5" | bc -l | sed 's/1/≥ 1.5x: met/; s/0/≥ 1.5x: NOT met/')"
printf "%-22s %12.0f %12.0f %7.2fx  %s\n" "TTFT p99 ms" "$ours_p99" "$theirs_p99" "$(echo "$ours_p99 / $theirs_p99" | bc -l)" \
    "$(echo "$ours_p99 < $theirs_p99" | bc -l | sed 's/1/lower: met/; s/0/lower: NOT met/')"
