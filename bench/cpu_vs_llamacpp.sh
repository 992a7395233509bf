#!/usr/bin/env bash
# CPU speed against llama.cpp on its home ground: `prom bench` (model scenario: forward passes
# only) and llama.cpp's `llama-bench`, alternating, on the same GGUF files, same thread count,
# pp512 (one prefill of 512 tokens) and tg128 (128 single-token decode steps from an empty
# cache), mean ± stddev over repetitions; prints a ratio table ours / llama.cpp (goal ≥ 1.3).
#
#   bench/cpu_vs_llamacpp.sh                         # every model below, -t 2, 5 reps x 2 rounds
#   MODELS="smollm2-q4_1" ROUNDS=1 bench/cpu_vs_llamacpp.sh
#   THREADS=1 PP=128 TG=32 bench/cpu_vs_llamacpp.sh
#   THREADS=1 PIN_CPUS=0 bench/cpu_vs_llamacpp.sh     # both on CPU 0: robust on a busy machine
#
# Models (built once under $BENCH_MODELS, default ~/.cache/prometheus/bench):
#   smollm2-q4_1   SmolLM2-135M-Instruct Q4_1, the default model (scripts/fetch-artifacts.sh)
#   smollm2-q8_0   the same requantized: prom quantize --type Q8_0
#   smollm2-f16    the same requantized: prom quantize --type F16
#   llama1b-q4_0   Llama-3.2-1B shape, seeded random weights (scripts/bench/make_llama1b.py),
#   llama1b-q8_0   quantized by prom quantize (the Q4_0 recipe keeps the tied embedding at Q6_K)
#
# llama.cpp: built by scripts/llamacpp/build.sh from llama-cpp-python==0.3.36's vendored source,
# GGML_NATIVE=OFF with AVX-512/VNNI/VBMI/BF16 on (what this CPU has), OpenMP; llama-bench's
# defaults otherwise (flash attention auto, f16 KV cache, batch 2048/ubatch 512). prom uses its
# f16 KV cache for GGUF models too. Each round runs ours then theirs for one model, the next
# round theirs then ours, so drift in machine load falls on both; the table pools all samples.
# Both pools are sensitive to other processes on the cores: the load average is printed before
# and after. JSON of every run goes to $OUT (default: a temp file, path printed).
set -euo pipefail

cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
# LLAMA_ENV: environment for llama.cpp only. On a busy machine OMP_WAIT_POLICY=passive stops its
# OpenMP threads spinning at barriers (2-thread tg128 went from ~3 to ~30 t/s at load 10); the
# default (unset) is llama.cpp's best on a quiet machine.
LLAMA_ENV=${LLAMA_ENV:-}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-2}
PP=${PP:-512}
TG=${TG:-128}
MODELS=${MODELS:-"smollm2-q4_1 smollm2-q8_0 smollm2-f16 llama1b-q4_0 llama1b-q8_0"}
BENCH_MODELS=${BENCH_MODELS:-$HOME/.cache/prometheus/bench}
PYTHON=${PYTHON:-/root/venvs/ref/bin/python}
PROM=${PROM:-./target/release/prom}
A=${PROM_ARTIFACTS:-$HOME/.cache/prometheus/artifacts}
OUT=${OUT:-$(mktemp --suffix=.jsonl)}

[[ -x $PROM ]] || { echo "missing $PROM: run cargo build --release -p prom-cli" >&2; exit 1; }
command -v jq >/dev/null || { echo "missing jq" >&2; exit 1; }
LLAMA_BIN=$(scripts/llamacpp/build.sh)/bin
export LD_LIBRARY_PATH=$LLAMA_BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# The model files, made on first use.
SMOL=$A/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[[ -f $SMOL ]] || scripts/fetch-artifacts.sh >&2
mkdir -p "$BENCH_MODELS"
model_file() {
    local f
    case $1 in
        smollm2-q4_1) echo "$SMOL"; return ;;
        smollm2-q8_0) f=$BENCH_MODELS/SmolLM2-135M-Instruct.Q8_0.gguf ;;
        smollm2-f16) f=$BENCH_MODELS/SmolLM2-135M-Instruct.F16.gguf ;;
        llama1b-q4_0) f=$BENCH_MODELS/llama1b-random.Q4_0.gguf ;;
        llama1b-q8_0) f=$BENCH_MODELS/llama1b-random.Q8_0.gguf ;;
        *) echo "unknown model $1" >&2; exit 1 ;;
    esac
    if [[ ! -f $f ]]; then
        local type=${1#*-}
        type=${type^^}
        if [[ $1 == smollm2-* ]]; then
            "$PROM" quantize "$SMOL" "$f" --type "$type" >&2
        else
            local hf=$BENCH_MODELS/llama1b-random-hf
            [[ -f $hf/model.safetensors ]] || "$PYTHON" scripts/bench/make_llama1b.py "$hf" >&2
            "$PROM" quantize "$hf" "$f" --type "$type" --tokenizer-pre llama-bpe >&2
        fi
    fi
    echo "$f"
}
for m in $MODELS; do model_file "$m" >/dev/null; done

# On a machine with more cores than $THREADS, llama-bench is pinned to the first $THREADS cores
# as prom pins itself for -t below the core count; with exactly $THREADS cores nothing is pinned.
# PIN_CPUS=0 (a taskset list) pins both programs there: with THREADS=1 this is the comparison
# that survives a loaded machine (both lose the same share of one core; a 2-thread llama.cpp
# whose threads wait on each other at every barrier collapses when the cores are oversubscribed).
if [[ -n ${PIN_CPUS:-} ]]; then
    PIN=(taskset -c "$PIN_CPUS")
elif (($(nproc) > THREADS)); then
    PIN=(taskset -c "0-$((THREADS - 1))")
else
    PIN=()
fi
PROM_PIN=()
[[ -n ${PIN_CPUS:-} ]] && PROM_PIN=("${PIN[@]}")

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  cpu: $(lscpu | sed -n 's/^Model name: *//p')  cores: $(nproc)  threads: $THREADS"
echo "prom: $PROM at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo '+dirty')"
echo "llama.cpp: $(jq -r '.llama_cpp_commit + " (" + .llama_cpp_version + ")"' "$LLAMA_BIN/../prometheus-build-info.json")"
echo "pp$PP / tg$TG, $REPS repetitions x $ROUNDS rounds${PIN_CPUS:+, both pinned to CPUs $PIN_CPUS}${LLAMA_ENV:+, llama.cpp with $LLAMA_ENV}; raw JSON lines: $OUT"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$OUT"

ours() {
    PROM_LOG=warn "${PROM_PIN[@]}" "$PROM" bench --offline -m "$2" -p "$PP" -n "$TG" -r "$REPS" -t "$THREADS" --json |
        jq -c --arg m "$1" '.[] | {model: $m, prog: "prom", test, samples_ts}' >>"$OUT"
}
theirs() {
    env $LLAMA_ENV "${PIN[@]}" "$LLAMA_BIN/llama-bench" -m "$2" -p "$PP" -n "$TG" -r "$REPS" -t "$THREADS" -o json 2>/dev/null |
        jq -c --arg m "$1" '.[] | {model: $m, prog: "llama.cpp",
            test: (if .n_prompt > 0 then "pp\(.n_prompt)" else "tg\(.n_gen)" end), samples_ts}' >>"$OUT"
}
for ((r = 1; r <= ROUNDS; r++)); do
    for m in $MODELS; do
        f=$(model_file "$m")
        echo "round $r: $m  (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        if ((r % 2)); then ours "$m" "$f"; theirs "$m" "$f"; else theirs "$m" "$f"; ours "$m" "$f"; fi
    done
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf "%-14s %-6s %18s %18s %7s  %s\n" model test "prom t/s" "llama.cpp t/s" ratio "goal ≥ 1.3"
jq -rs '
    def mean: add / length;
    def sd: (mean) as $m | if length < 2 then 0 else (map((. - $m) * (. - $m)) | add / (length - 1) | sqrt) end;
    group_by([.model, .test]) | sort_by(.[0].model, (.[0].test | test("^tg"))) | .[] |
    (map(select(.prog == "prom") | .samples_ts[]) ) as $o |
    (map(select(.prog == "llama.cpp") | .samples_ts[])) as $l |
    [.[0].model, .[0].test, ($o | mean), ($o | sd), ($l | mean), ($l | sd)] | @tsv' "$OUT" |
    while IFS=$'\t' read -r m t om os lm ls; do
        ratio=$(echo "$om / $lm" | bc -l)
        verdict=$(echo "$ratio >= 1.3" | bc -l | sed 's/1/met/; s/0/NOT met/')
        printf "%-14s %-6s %10.2f ± %5.2f %10.2f ± %5.2f %6.2fx  %s\n" "$m" "$t" "$om" "$os" "$lm" "$ls" "$ratio" "$verdict"
    done
