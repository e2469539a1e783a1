#!/usr/bin/env bash
# Figures for the promises at the edges, measured on a real `callroute run` (release build):
#   1. idle CPU with 3,000 numbers / 300 routes and nothing to do;
#   2. a herd: 50,000 leads deferred to the instant calling hours open, against a pool that
#      serves 10 calls a minute: decisions made, log bytes written and CPU used in 60 s;
#   3. enqueue of 1,000,000 CSV rows, next to sqlite3's own `.import` of the same file;
#   4. calls placed by `callroute demo`.
# Usage: tools/bench-edges.sh [BINARY]   (default: a fresh release build of this checkout)
# Needs: curl, sqlite3, bc. Takes about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
  bin=$(realpath "$1")
else
  cargo build --release --quiet
  bin=$PWD/target/release/callroute
fi
tmp=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
export CALLROUTE_ADMIN_TOKEN=bench-token
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_simulator() { # numbers file → base URL in $base
  { echo "api_key: k"; echo "attempts_per_second: 20"; echo "concurrency: 50";
    echo "agents:"; echo "  - model_id: m-1"; echo "    attached:";
    sed 's/^/      - "/; s/$/"/' "$1";
    echo "calls: { ring_ms: 200, talk_ms: 1000 }"; } > "$tmp/sim.yaml"
  "$bin" simulator --listen 127.0.0.1:0 --config "$tmp/sim.yaml" > "$tmp/sim.out" &
  for _ in $(seq 50); do [ -s "$tmp/sim.out" ] && break; sleep 0.1; done
  base=$(awk '{print $NF}' "$tmp/sim.out")
}

run_daemon() { # rules dir, db, log file → pid in $pid, admin port in $admin
  admin=$(port)
  printf 'synthflow: { base_url: "%s", attempts_per_second: 20, concurrency: 50 }\nrules: %s\nstore: sqlite://%s\nadmin_listen: 127.0.0.1:%s\n' \
    "$base" "$1" "$2" "$admin" > "$tmp/config.yaml"
  SYNTHFLOW_API_KEY=k CALLROUTE_LOG=info "$bin" run --config "$tmp/config.yaml" 2> "$3" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin/healthz" > /dev/null && break; sleep 0.1; done
}

decisions() { # sum of callroute_decisions_total
  curl -sf -H "Authorization: Bearer $CALLROUTE_ADMIN_TOKEN" "http://127.0.0.1:$admin/metrics" |
    awk '/^callroute_decisions_total/ {s += $NF} END {print s + 0}'
}

# 1. Idle: 3,000 numbers, 300 routes, an empty queue.
python3 - "$tmp" <<'PY'
import sys
tmp = sys.argv[1]
numbers = [f"+1{npa}555{line:04d}" for npa in (212, 213, 305, 312, 415, 512, 617, 702, 206, 404) for line in range(100, 400)]
open(f"{tmp}/numbers.txt", "w").write("\n".join(numbers) + "\n")
import os
os.makedirs(f"{tmp}/idle-rules", exist_ok=True)
with open(f"{tmp}/idle-rules/rules.yaml", "w") as f:
    f.write("agents: { a: { model_id: m-1 } }\nnumbers:\n")
    f.writelines(f'  "{n}": {{ labels: {{ group: g{i % 300} }} }}\n' for i, n in enumerate(numbers))
    f.write("campaigns:\n  c:\n    agent: a\n    routes:\n")
    f.writelines(f"      - when: {{ labels: {{ tier: t{i} }} }}\n        numbers: {{ labels: {{ group: g{i} }} }}\n" for i in range(299))
    f.write("      - numbers: all\n")
PY
start_simulator "$tmp/numbers.txt"
run_daemon "$tmp/idle-rules" "$tmp/idle.db" "$tmp/idle.log"
sleep 5
before=$(cpu_ticks "$pid"); sleep 20; after=$(cpu_ticks "$pid")
echo "idle, 3,000 numbers / 300 routes: CPU $(echo "scale=1; 100 * ($after - $before) / $ticks / 20" | bc)% of a core over 20 s; log $(wc -c < "$tmp/idle.log") bytes"
kill -TERM "$pid"; wait "$pid" || true
kill %1 2>/dev/null || true; wait 2>/dev/null || true

# 2. A herd: 50,000 leads enqueued outside calling hours, all deferred to the instant the
#    window opens; 10 numbers of 1 call a minute each. Measured from the opening on.
head -10 "$tmp/numbers.txt" > "$tmp/ten.txt"
start_simulator "$tmp/ten.txt"
mkdir -p "$tmp/herd-rules"
opens=$(( ($(date -u +%s) + 100) / 60 * 60 ))   # a minute boundary 40 to 100 s ahead
{ echo "agents: { a: { model_id: m-1 } }"; echo "limits: { default: { per_minute: 1 } }"; echo "numbers:";
  sed 's/^/  "/; s/$/": {}/' "$tmp/ten.txt";
  echo "calling_hours: { default: { days: [mon, tue, wed, thu, fri, sat, sun], start: \"$(date -u -d "@$opens" +%H:%M)\", end: \"24:00\" } }";
  echo "campaigns: { c: { agent: a, purpose: informational, routes: [ { numbers: all } ] } }"; } > "$tmp/herd-rules/rules.yaml"
awk 'BEGIN { print "phone,name,campaign,timezone";
  for (i = 0; i < 50000; i++) printf "+1415%07d,Lead,c,Etc/UTC\n", 2000000 + i }' > "$tmp/herd.csv"
printf 'store: sqlite://%s\n' "$tmp/herd.db" > "$tmp/enqueue.yaml"
"$bin" enqueue --config "$tmp/enqueue.yaml" "$tmp/herd.csv" > /dev/null
run_daemon "$tmp/herd-rules" "$tmp/herd.db" "$tmp/herd.log"
sleep $(( opens - $(date -u +%s) ))
d0=$(decisions); b0=$(wc -c < "$tmp/herd.log"); before=$(cpu_ticks "$pid")
sleep 60
d1=$(decisions); b1=$(wc -c < "$tmp/herd.log"); after=$(cpu_ticks "$pid")
echo "herd of 50,000 deferred leads due when calling hours open, first 60 s: $((d1 - d0)) decisions, $((b1 - b0)) log bytes, CPU $(echo "scale=1; 100 * ($after - $before) / $ticks / 60" | bc)% of a core"
kill -TERM "$pid"; wait "$pid" || true

# 3. Enqueue 1,000,000 rows, and sqlite3's .import of the same file.
awk 'BEGIN { print "phone,name,campaign"; split("212 305 312 415 512 617 702 206", a, " ");
  for (i = 0; i < 1000000; i++) printf "+1%s%07d,Lead,c\n", a[i % 8 + 1], 2000000 + int(i / 8) }' > "$tmp/million.csv"
printf 'store: sqlite://%s\n' "$tmp/million.db" > "$tmp/million.yaml"
t0=$(date +%s.%N); "$bin" enqueue --config "$tmp/million.yaml" "$tmp/million.csv" > /dev/null; t1=$(date +%s.%N)
sqlite3 "$tmp/import.db" 'PRAGMA journal_mode=WAL;' > /dev/null
t2=$(date +%s.%N); sqlite3 "$tmp/import.db" -cmd '.mode csv' ".import $tmp/million.csv leads"; t3=$(date +%s.%N)
echo "enqueue of 1,000,000 CSV rows: callroute $(echo "$t1 - $t0" | bc | cut -c1-5) s; sqlite3 .import $(echo "$t3 - $t2" | bc | cut -c1-5) s"

# 4. The demo.
"$bin" demo > "$tmp/demo.txt" 2>/dev/null || true
echo "demo: $(grep -Eo '^[0-9]+ calls placed' "$tmp/demo.txt" || echo 'no summary') ($(grep -c 'completed' "$tmp/demo.txt" || true) leads completed)"
