# Shared by the `prom bench` scripts (sourced): checks the binary, prints where and on what the
# numbers were taken, and makes "$out" a temporary file removed on exit.
MODEL=${MODEL:-smollm2-135m-instruct-q4_1}
PROM=${PROM:-./target/release/prom}
EXTRA=${EXTRA:-}

[[ -x $PROM ]] || { echo "missing $PROM: run cargo build --release -p prom-cli" >&2; exit 1; }
"$PROM" bench --help >/dev/null 2>&1 || { echo "$PROM has no bench subcommand: rebuild it" >&2; exit 1; }
if [[ -n $(find crates -name '*.rs' -newer "$PROM" -print -quit) ]]; then
    echo "warning: sources under crates/ are newer than $PROM (cargo build --release -p prom-cli)" >&2
fi
command -v jq >/dev/null || { echo "missing jq" >&2; exit 1; }

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  cpu: $(lscpu | sed -n 's/^Model name: *//p')  cores: $(nproc)"
echo "prom: $PROM at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo '+dirty')  model: $MODEL"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
