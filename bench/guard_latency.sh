#!/usr/bin/env bash
# Guardrail overhead: one input-rail check (injection + every PII/secret type) plus one
# output-rail check (every PII/secret type) on ordinary text of 1 KB and 32 KB, repeated; prints
# p50 and p99 per size and the goal line "p50 at 1 KB < 1 ms". Runs the `guard_latency` example
# of crates/guard in release mode (the same code `prom serve --guard` runs per request).
#
#   bench/guard_latency.sh                  # 2000 iterations at 1 KB, 200 at 32 KB
#   ITERS_1K=5000 ITERS_32K=500 bench/guard_latency.sh
#
# The machine is shared: the load average is printed before and after; compare runs at low load.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS_1K=${ITERS_1K:-2000}
ITERS_32K=${ITERS_32K:-200}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build -q --release -p prom-guard --example guard_latency
BIN="${CARGO_TARGET_DIR:-target}/release/examples/guard_latency"
one=$("$BIN" 1024 "$ITERS_1K")
big=$("$BIN" 32768 "$ITERS_32K")
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$one" "$big" <<'PY'
import json, sys
rows = [json.loads(a) for a in sys.argv[1:]]
print("\n| text | iterations | p50 | p99 |\n|---|---:|---:|---:|")
for r in rows:
    print(f"| {r['bytes'] / 1024:.0f} KB | {r['iters']} | {r['p50_us'] / 1000:.3f} ms | {r['p99_us'] / 1000:.3f} ms |")
p50 = rows[0]["p50_us"] / 1000
print(f"\np50 at 1 KB = {p50:.3f} ms (goal < 1 ms: {'met' if p50 < 1 else 'NOT met'})")
PY
