#!/usr/bin/env bash
# Daemon figures: `cargo bench --bench daemon` (throughput vs a bare reqwest loop, pacing
# accuracy, enqueue of 1,000,000 CSV rows), then a real `callroute run` over 1,000,000 queued
# leads: its resident memory while dialing, and its CPU use when every lead is deferred.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench daemon 2>/dev/null | grep -E "throughput|pacing|enqueue"
cargo build --release --quiet
bin=target/release/callroute
tmp=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

cat > "$tmp/sim.yaml" <<YAML
api_key: k
attempts_per_second: 20
concurrency: 50
agents:
  - model_id: m-1
    attached: ["+14155550100", "+14155550101", "+12125550107", "+13055550105"]
calls: { ring_ms: 500, talk_ms: 2000 }
YAML
"$bin" simulator --listen 127.0.0.1:0 --config "$tmp/sim.yaml" > "$tmp/sim.out" &
sleep 1
base=$(awk '{print $NF}' "$tmp/sim.out")
mkdir "$tmp/rules"
cat > "$tmp/rules/rules.yaml" <<'YAML'
agents: { a: { model_id: m-1 } }
numbers:
  "+14155550100": {}
  "+14155550101": {}
  "+12125550107": {}
  "+13055550105": {}
calling_hours:
  default: { days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00" }
campaigns:
  c:
    agent: a
    purpose: informational   # round the clock: the federal telemarketing window would close at night
    routes:
      - numbers: all
YAML

rss_and_cpu() { # pid, label: resident memory now, CPU seconds over the next 10 s
  local pid=$1 label=$2
  local before after rss
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sleep 10
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  echo "$label: resident memory $((rss / 1024)) MiB; CPU $(( (after - before) )) ticks in 10 s ($(getconf CLK_TCK) ticks = 1 s)"
}

for mode in queued deferred; do
  not_before=""
  [ "$mode" = deferred ] && not_before="2099-01-01T00:00:00Z"
  awk -v nb="$not_before" 'BEGIN { print "phone,name,campaign,not_before"; split("212 305 312 415 512 617 702 206", a, " ");
    for (i = 0; i < 1000000; i++) printf "+1%s%07d,Lead,c,%s\n", a[i % 8 + 1], 2000000 + int(i / 8), nb }' > "$tmp/leads.csv"
  printf 'synthflow: { base_url: "%s", attempts_per_second: 20, concurrency: 50 }\nrules: %s\nstore: sqlite://%s\nadmin_listen: 127.0.0.1:0\n' \
    "$base" "$tmp/rules" "$tmp/$mode.db" > "$tmp/$mode.yaml"
  start=$(date +%s.%N)
  "$bin" enqueue --config "$tmp/$mode.yaml" "$tmp/leads.csv"
  echo "callroute enqueue of 1,000,000 CSV rows: $(echo "$(date +%s.%N) - $start" | bc) s"
  SYNTHFLOW_API_KEY=k "$bin" run --config "$tmp/$mode.yaml" 2>/dev/null &
  pid=$!
  sleep 3
  rss_and_cpu "$pid" "callroute run, 1,000,000 leads $mode"
  kill -TERM "$pid"; wait "$pid" || true
done
