#!/usr/bin/env bash
# End-to-end CPU speed: `prom run` against llama.cpp's `llama-completion` on the default model,
# same prompt (65 tokens), same 64 greedy tokens, same thread count, alternating runs.
#
#   bench/smollm2_cpu.sh            # 5 rounds, 2 threads
#   REPS=9 THREADS=2 bench/smollm2_cpu.sh
#
# Prints per-run prefill and decode tok/s for both, then the median (and best) of each and the
# ratio ours / llama.cpp. Decode tok/s counts forward passes: llama.cpp reports 63 "runs" for 64
# tokens (the first comes from the prompt pass), and `prom run -v` times the same 63 passes, so
# ours is computed as (generated - 1) / decode time.
#
# Both programs' thread pools suffer when other processes compete for the cores (llama.cpp's
# spins), so the load average is printed before and after; compare numbers taken at low load.
set -euo pipefail

cd "$(dirname "$0")/.."
REPS=${REPS:-5}
THREADS=${THREADS:-2}
NTOK=${NTOK:-64}
MODEL=${MODEL:-$HOME/.cache/prometheus/models/SmolLM2-135M-Instruct.Q4_1.gguf}
LLAMA_BIN=${LLAMA_BIN:-$HOME/.cache/prometheus/artifacts/llama.cpp-build/bin}
PROM=${PROM:-./target/release/prom}
PROMPT=${PROMPT:-"The old lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a lantern and a thermos of tea. From the top he could see the whole bay: fishing boats returning, gulls wheeling over the harbor, and the long shadow of the cliffs. One night he noticed a light blinking far out at sea"}

[[ -x $PROM ]] || { echo "missing $PROM: run cargo build --release -p prom-cli" >&2; exit 1; }
[[ -f $MODEL ]] || { echo "missing $MODEL" >&2; exit 1; }
[[ -x $LLAMA_BIN/llama-completion ]] || { echo "missing $LLAMA_BIN/llama-completion" >&2; exit 1; }

# On a machine with more cores than $THREADS, pin both programs to the first $THREADS cores;
# prom's matmul pool follows the affinity mask, candle's thread count (which reads
# /proc/cpuinfo, not the mask) is told through RAYON_NUM_THREADS. On a machine with exactly
# $THREADS cores nothing is set, so prom runs as a user would run it. PROM_ENV passes extra
# environment to prom only (e.g. PROM_ENV=RAYON_NUM_THREADS=2).
CPUS=$(nproc)
if (( CPUS > THREADS )); then
    PIN=(taskset -c "0-$((THREADS - 1))")
    export RAYON_NUM_THREADS=$THREADS
else
    PIN=()
fi
PROM_ENV=${PROM_ENV:-}

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  cpu: $(lscpu | sed -n 's/^Model name: *//p')  cores: $CPUS  threads: $THREADS"
echo "prom: $PROM at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo '+dirty')${PROM_ENV:+ with $PROM_ENV}  model: $MODEL"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

ours_pp=(); ours_tg=(); llama_pp=(); llama_tg=()
for ((r = 1; r <= REPS; r++)); do
    # "prompt 65 tokens in 80.00ms (812.5 tok/s); generated 64 tokens in 500.00ms (128.0 tok/s); ..."
    line=$("${PIN[@]}" env $PROM_ENV "$PROM" run --offline --raw --max-tokens "$NTOK" --ignore-eos -v -m "$MODEL" "$PROMPT" 2>&1 >/dev/null | grep '^prompt ')
    read -r opp otg < <(echo "$line" | awk '
        function ms(s) { if (s ~ /ms$/) return s + 0; if (s ~ /µs$/) return s / 1000; return s * 1000 }
        { np = $2; pt = ms($5); ng = $9; gt = ms($12); printf "%.1f %.1f\n", np / pt * 1000, (ng - 1) / gt * 1000 }')
    log=$("${PIN[@]}" env LD_LIBRARY_PATH="$LLAMA_BIN" "$LLAMA_BIN/llama-completion" -m "$MODEL" -p "$PROMPT" \
        -n "$NTOK" --temp 0 -t "$THREADS" -no-cnv 2>&1 </dev/null || true)
    lpp=$(echo "$log" | sed -n 's/.*prompt eval time.*(.* \([0-9.]*\) tokens per second).*/\1/p')
    ltg=$(echo "$log" | sed -n 's/.* eval time.*runs.*(.* \([0-9.]*\) tokens per second).*/\1/p')
    printf "run %d: ours prefill %7.1f decode %6.1f | llama.cpp prefill %7.1f decode %6.1f tok/s\n" "$r" "$opp" "$otg" "$lpp" "$ltg"
    ours_pp+=("$opp"); ours_tg+=("$otg"); llama_pp+=("$lpp"); llama_tg+=("$ltg")
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

stat() { printf "%s\n" "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f %.1f\n", v[int((NR + 1) / 2)], v[NR] }'; }
read -r opp_med opp_max < <(stat "${ours_pp[@]}")
read -r otg_med otg_max < <(stat "${ours_tg[@]}")
read -r lpp_med lpp_max < <(stat "${llama_pp[@]}")
read -r ltg_med ltg_max < <(stat "${llama_tg[@]}")
echo
printf "%-10s %22s %22s\n" "" "prefill tok/s med/best" "decode tok/s med/best"
printf "%-10s %13.1f / %6.1f %13.1f / %6.1f\n" "prom" "$opp_med" "$opp_max" "$otg_med" "$otg_max"
printf "%-10s %13.1f / %6.1f %13.1f / %6.1f\n" "llama.cpp" "$lpp_med" "$lpp_max" "$ltg_med" "$ltg_max"
printf "%-10s %13.2fx / %5.2fx %13.2fx / %5.2fx\n" "ours/llama" \
    "$(echo "$opp_med / $lpp_med" | bc -l)" "$(echo "$opp_max / $lpp_max" | bc -l)" \
    "$(echo "$otg_med / $ltg_med" | bc -l)" "$(echo "$otg_max / $ltg_max" | bc -l)"
