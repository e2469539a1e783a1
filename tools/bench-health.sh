#!/usr/bin/env bash
# Does number health keep calls answered? The same campaign (20,000 leads, a pool of 30
# caller IDs, 5 simulated days) under `simulate --reputation` (a labelling model, see
# src/simulate/reputation.rs), with the health policy off and on. Prints answered calls,
# dials per answered call, labels, rests and limit violations, and the ratio.
# Usage: tools/bench-health.sh [BINARY] [LEADS]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/release/callroute}
leads=${2:-20000}
[[ -x $binary ]] || cargo build --release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/rules"
area_codes=(415 628 213 310 702 305 212 646 512 713 416 907 808 602 312 617 206 404 303 615 503 619 720 480 954 347 469 786 571 919)
{
    echo "agents: { sales: { model_id: m-1 } }"
    echo "limits: { default: { per_hour: 20, per_day: 75, min_gap: 30s } }"
    echo "numbers:"
    for code in "${area_codes[@]}"; do echo "  \"+1${code}5550100\": {}"; done
    echo "calling_hours:"
    echo "  default: { days: [mon, tue, wed, thu, fri], start: \"09:00\", end: \"20:00\" }"
    echo "health:"
    echo "  default: { rest_when: { answer_rate_below: 0.5, min_calls: 40, last_calls: 50 }, rest_for: 72h, max_resting: 30% }"
    echo "campaigns:"
    echo "  c:"
    echo "    agent: sales"
    echo "    routes:"
    echo "      - numbers: all"
    echo "        local_presence: [area_code, state, timezone, any]"
} > "$work/rules/rules.yaml"
"$binary" check "$work/rules" >/dev/null
python3 - "$leads" "$work/leads.csv" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
codes = [415, 628, 213, 310, 702, 305, 212, 646, 512, 713, 416, 907, 808, 602, 312, 617, 206, 404, 303, 615, 503, 619, 720, 480, 954, 347, 469, 786, 571, 919]
with open(path, "w") as f:
    f.write("id,phone,name,campaign\n")
    for i in range(n):
        f.write(f"l{i},+1{codes[i % len(codes)]}{2000000 + i:07d},N,c\n")
PY
run() {
    "$binary" simulate --rules "$work/rules" --leads "$work/leads.csv" --start 2026-11-30T13:00:00Z \
        --days 5 --caps 2 --concurrency 20 --answer-rate 0.5 --reputation --no-advice --seed 7 \
        --format json "$@" 2>/dev/null
}
run --no-health >"$work/off.json"
run >"$work/on.json"
python3 - "$work/off.json" "$work/on.json" <<'PY'
import json, sys
off, on = (json.load(open(p)) for p in sys.argv[1:3])
def row(name, r):
    per = r["called"] / max(r["answered"], 1)
    print(f"health {name:<3}: {r['called']:6} dials, {r['answered']:6} answered, {per:5.2f} dials/answered, "
          f"{r['answered'] / max(r['called'], 1):5.1%} answered per dial, {r['labelled']:3} labels on {r['labelled_numbers']:2} numbers, "
          f"{len(r['rests']):3} rests, {r['leads'] - sum(r['waiting'].values()) - sum(r['held'].values()) - sum(r['rejected'].values()):6} leads reached, "
          f"{r['limit_violations']} limit violations")
row("off", off)
row("on", on)
ratio = (on["answered"] / on["called"]) / (off["answered"] / off["called"])
print(f"answered calls per dial, on/off: {ratio:.2f}x; answered calls on/off: {on['answered'] / off['answered']:.2f}x")
PY
