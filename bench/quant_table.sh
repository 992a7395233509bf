#!/usr/bin/env bash
# The quantization table: SmolLM2-135M-Instruct dequantized to F32 (from the pinned Q4_1 GGUF)
# is the base; `prom quantize` requantizes it to every type; for each file we report bits per
# weight, perplexity on tests/reference/ppl_text.txt by prom (scripts/quant/ppl.py) and by
# llama.cpp's llama-perplexity on the same file, their relative difference, the delta against
# F32, and prefill/decode tok/s of `prom run` and llama.cpp's llama-completion (same prompt,
# 64 greedy tokens, same threads).
#
#   bench/quant_table.sh                     # all types, 1 speed run each
#   TYPES="Q8_0 Q4_K_M" REPS=3 bench/quant_table.sh
#   SPEED=0 bench/quant_table.sh             # perplexity only
#
# Writes a markdown table to stdout (and the files to $OUT, default /tmp/prom-quant-table).
set -euo pipefail
cd "$(dirname "$0")/.."
TYPES=${TYPES:-"F32 F16 BF16 Q8_0 Q6_K Q5_K_M Q5_1 Q5_0 Q4_K_M Q4_1 Q4_0 Q3_K_M Q2_K"}
REPS=${REPS:-1}
SPEED=${SPEED:-1}
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/prom-quant-table}
MODEL=${MODEL:-$HOME/.cache/prometheus/models/SmolLM2-135M-Instruct.Q4_1.gguf}
LLAMA_BIN=${LLAMA_BIN:-$HOME/.cache/prometheus/artifacts/llama.cpp-build/bin}
PROM=${PROM:-./target/release/prom}
PROMPT="The old lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a lantern and a thermos of tea. From the top he could see the whole bay: fishing boats returning, gulls wheeling over the harbor, and the long shadow of the cliffs. One night he noticed a light blinking far out at sea"
[[ -x $PROM ]] || { echo "missing $PROM: cargo build --release -p prom-cli" >&2; exit 1; }
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$LLAMA_BIN

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  cpu: $(lscpu | sed -n 's/^Model name: *//p')  threads: $THREADS  prom: $(git rev-parse --short HEAD)" >&2
base=$OUT/smollm2-135m.F32.gguf
"$PROM" quantize "$MODEL" "$base" --type F32 2>/dev/null

median() { printf "%s\n" "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
speed() { # file -> "ours_pp ours_tg llama_pp llama_tg" (medians)
    local f=$1 opp=() otg=() lpp=() ltg=()
    for ((r = 1; r <= REPS; r++)); do
        line=$("$PROM" run --offline --raw --max-tokens 64 --ignore-eos -v -m "$f" "$PROMPT" 2>&1 >/dev/null | grep '^prompt ')
        read -r a b < <(echo "$line" | awk '
            function ms(s) { if (s ~ /ms$/) return s + 0; if (s ~ /µs$/) return s / 1000; return s * 1000 }
            { printf "%.1f %.1f\n", $2 / ms($5) * 1000, ($9 - 1) / ms($12) * 1000 }')
        opp+=("$a"); otg+=("$b")
        log=$("$LLAMA_BIN/llama-completion" -m "$f" -p "$PROMPT" -n 64 --temp 0 -t "$THREADS" -no-cnv 2>&1 </dev/null || true)
        lpp+=("$(echo "$log" | sed -n 's/.*prompt eval time.*(.* \([0-9.]*\) tokens per second).*/\1/p')")
        ltg+=("$(echo "$log" | sed -n 's/.* eval time.*runs.*(.* \([0-9.]*\) tokens per second).*/\1/p')")
    done
    echo "$(median "${opp[@]}") $(median "${otg[@]}") $(median "${lpp[@]}") $(median "${ltg[@]}")"
}

echo "| type | bits/weight | MiB | ppl prom | ppl llama.cpp | prom vs llama.cpp | Δppl vs F32 | pp tok/s prom | tg tok/s prom | pp tok/s llama.cpp | tg tok/s llama.cpp |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
base_ppl=
for t in $TYPES; do
    f=$OUT/smollm2-135m.$t.gguf
    [[ $t == F32 ]] || "$PROM" quantize "$base" "$f" --type "$t" 2>"$OUT/$t.quantize.log"
    [[ $t == F32 ]] && "$PROM" quantize "$MODEL" "$f" --type F32 2>"$OUT/$t.quantize.log"
    bpw=$(sed -n 's/.*, \([0-9.]*\) bits per weight.*/\1/p' "$OUT/$t.quantize.log")
    mib=$(awk -v b="$(stat -c %s "$f")" 'BEGIN { printf "%.1f", b / 1048576 }')
    ours=$(scripts/quant/ppl.py "$PROM" "$f")
    theirs=$("$LLAMA_BIN/llama-perplexity" -m "$f" -f tests/reference/ppl_text.txt -c 512 -b 512 -t "$THREADS" 2>&1 \
        | sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p')
    [[ -n $base_ppl ]] || base_ppl=$ours
    rel=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%+.2f%%", (a - b) / b * 100 }')
    delta=$(awk -v a="$ours" -v b="$base_ppl" 'BEGIN { printf "%+.2f%%", (a - b) / b * 100 }')
    if [[ $SPEED == 1 ]]; then read -r opp otg lpp ltg < <(speed "$f"); else opp=-; otg=-; lpp=-; ltg=-; fi
    echo "| $t | $bpw | $mib | $ours | $theirs | $rel | $delta | $opp | $otg | $lpp | $ltg |"
done
