#!/usr/bin/env bash
# Prefix caching: `prom bench --scenario prefix` on the default model. Chat requests share a long
# system prompt (~$PREFIX_TOKENS tokens of fixed text) and differ in a short user question. Cold
# requests put a different session line at the start of the system prompt, so no block of their
# prompt is cached; cached requests reuse one system prompt that a priming request has cached.
# Requests run one at a time, cold and cached alternating ($REPS of each, after one unmeasured
# cold warm-up), so time to first token (engine Timings) is the prompt's prefill, not queueing.
#
#   bench/prefix_cache.sh                       # 5 reps, ~1000-token system prompt, 16 tokens out
#   REPS=9 PREFIX_TOKENS=2000 bench/prefix_cache.sh
#
# Prints each pair, the medians, the cached prompt tokens reported in Usage (the proof of the hit)
# and "TTFT cold / cached = X.XXx". The engine uses every core, so the load average is printed
# before and after; compare runs taken at low load.
set -euo pipefail

cd "$(dirname "$0")/.."
REPS=${REPS:-5}
NTOK=${NTOK:-16}
PREFIX_TOKENS=${PREFIX_TOKENS:-1000}
# shellcheck source=bench/lib/prom_bench.sh
source bench/lib/prom_bench.sh # (cwd is the repository root)
# shellcheck disable=SC2086 # EXTRA is a list of flags
PROM_LOG=${PROM_LOG:-warn} "$PROM" bench --offline -m "$MODEL" --scenario prefix --reps "$REPS" \
    --max-tokens "$NTOK" --prefix-tokens "$PREFIX_TOKENS" $EXTRA | tee "$out"
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

json=$(tail -n 1 "$out")
echo
echo "$json" | jq -r '"cold:   prompt \(.cold_prompt_tokens | min)-\(.cold_prompt_tokens | max) tokens, " +
    "\(.cold_cached_prompt_tokens | max) cached, median TTFT \(.cold_ttft_median_ms * 10 | round / 10) ms",
    "cached: prompt \(.cached_side_prompt_tokens | min)-\(.cached_side_prompt_tokens | max) tokens, " +
    "\(.cached_prompt_tokens | min)-\(.cached_prompt_tokens | max) cached, " +
    "median TTFT \(.cached_ttft_median_ms * 10 | round / 10) ms"'
printf "TTFT cold / cached = %.2fx\n" "$(echo "$json" | jq -r .ttft_cold_over_cached)"
