#!/usr/bin/env bash
# Engine throughput under concurrency: `prom bench --scenario throughput` on the default model.
# For each concurrency C it submits C requests at once (distinct, deterministic prompts of 32–128
# tokens; greedy; EOS ignored; $NTOK tokens each), after one warm-up round at the largest C, and
# reports aggregate generated tok/s (all generated tokens / wall time from the first submit to the
# last Finished), mean time to first token and mean inter-token latency (from the engine's
# per-request Timings), and engine steps with the mean wall time per step.
#
#   bench/engine_throughput.sh                              # C = 1,4,16,64, 64 tokens, 1 round
#   REPS=5 bench/engine_throughput.sh                       # medians of 5 rounds per level (each round
#                                                           # runs every level once: interleaved)
#   CONCURRENCY=1,16 NTOK=32 EXTRA="--max-num-seqs 32" bench/engine_throughput.sh
#
# Prints prom's per-round table, then a summary table and "16-way / 1-way = X.XXx (goal ≥ 3x)".
# The engine uses every core (RAYON_NUM_THREADS = cores), so other processes distort the numbers:
# the load average is printed before and after; compare runs taken at low load.
set -euo pipefail

cd "$(dirname "$0")/.."
REPS=${REPS:-1}
NTOK=${NTOK:-64}
CONCURRENCY=${CONCURRENCY:-1,4,16,64}
# shellcheck source=bench/lib/prom_bench.sh
source bench/lib/prom_bench.sh # (cwd is the repository root)
# shellcheck disable=SC2086 # EXTRA is a list of flags
PROM_LOG=${PROM_LOG:-warn} "$PROM" bench --offline -m "$MODEL" --scenario throughput \
    --concurrency "$CONCURRENCY" --max-tokens "$NTOK" --reps "$REPS" $EXTRA | tee "$out"
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

json=$(tail -n 1 "$out")
echo
printf "%11s %10s %8s %13s %12s %9s\n" concurrency "gen tok/s" speedup "mean TTFT ms" "mean ITL ms" "ms/step"
echo "$json" | jq -r '.levels as $l | $l[] | [.concurrency, .tok_s, .tok_s / $l[0].tok_s, .mean_ttft_ms,
    .mean_itl_ms, .ms_per_step] | @tsv' |
    while IFS=$'\t' read -r c tps sp ttft itl mps; do
        printf "%11d %10.1f %7.2fx %13.1f %12.2f %9.2f\n" "$c" "$tps" "$sp" "$ttft" "$itl" "$mps"
    done
ratio=$(echo "$json" | jq -r '.speedup_16_over_1 // empty')
if [[ -n $ratio ]]; then
    verdict=$(echo "$ratio >= 3" | bc -l | sed 's/1/met/; s/0/NOT met/')
    printf "16-way / 1-way = %.2fx (goal ≥ 3x: %s)\n" "$ratio" "$verdict"
else
    echo "16-way / 1-way = n/a (CONCURRENCY must include 1 and 16)"
fi
