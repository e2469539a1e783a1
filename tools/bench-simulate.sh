#!/usr/bin/env bash
# `callroute simulate` speed: 100,000 leads (the demo's sample, grown) over 5 simulated days
# on the example rules; prints wall time and leads per second, without and with the
# capacity advice (which simulates again). Usage: tools/bench-simulate.sh [BINARY] [LEADS]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/callroute}
leads=${2:-100000}
[[ -x $binary ]] || cargo build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$binary" demo --write-leads "$work/leads.csv" --leads "$leads"
run() {
    local label=$1
    shift
    local start end
    start=$(date +%s.%N)
    "$binary" simulate --leads "$work/leads.csv" --start 2026-11-30T12:50:00Z --days 5 \
        "$@" >"$work/out.txt" 2>/dev/null
    end=$(date +%s.%N)
    python3 - "$label" "$start" "$end" "$leads" "$work/out.txt" <<'PY'
import sys
label, start, end, leads, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
wall = end - start
print(f"{label:<28} {leads} leads, 5 days: {wall:6.2f} s, {leads / wall:9.0f} leads/s  | {open(out).readline().strip()}")
PY
}
run "simulate --no-advice" --no-advice
run "simulate + report.html" --no-advice --out "$work/report.html"
run "simulate (with advice)"
