#!/usr/bin/env bash
# Delivery: a backlog balanced to the games' capacities (capacity × S orders each,
# 1,000,000 orders for S = 200), filled through the real claim path, then drained by a worker
# node against the game simulator at full capacity. Reports drain time vs the ideal, CPU per
# delivery, and pacing accuracy per game from the game's own log (bench/pacing.py).
# Usage: bench/delivery.sh [S]          needs: wrk, taskset, python3 (3.11+)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
balance_s="${1:-200}"
users="${USERS:-2000000}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
[ -n "${NO_BUILD:-}" ] || cargo build --release -p hongbao --quiet
bin="${BIN:-$PWD/target/release/hongbao}"

opened_campaign "$work/campaign.toml"
"$bin" gen --config "$work/campaign.toml" --users "$users" --out "$work/profiles" >/dev/null
orders=$("$bin" bench claims --config "$work/campaign.toml" --users "$users" --balance-s "$balance_s" \
  --out "$work/claims.txt" | awk '{print $1}')
echo "backlog: $orders orders (each game: capacity × $balance_s s)"

taskset -c 1 "$bin" game-sim --config "$work/campaign.toml" --addr 127.0.0.1:9100 --users "$users" \
  --role-latency-ms 1 --log "$work/game-log.jsonl" >/dev/null 2>&1 &
pids+=($!)
wait_port 9100

# 1. Fill: every claim through the API (no workers on this node), each durable and queued.
taskset -c 0 "$bin" serve --rehearsal --admin-unsigned --config "$work/campaign.toml" --addr 127.0.0.1:8080 --admin-addr 127.0.0.1:8081 \
  --profiles "$work/profiles" --data "$work/data" --role api >/dev/null 2>&1 &
node=$!; pids+=($node)
wait_port 8080
fill_started=$(date +%s.%N)
taskset -c 1 wrk -t1 -c256 -d"$((orders / 8000 + 15))s" -s bench/wrk/claim.lua http://127.0.0.1:8080 -- "$work/claims.txt" > "$work/fill.wrk"
echo "fill: $(awk '/Requests\/sec/ {print $2}' "$work/fill.wrk") claims/s (wrk; repeats after the last line are replays)"
kill "$node"; wait "$node" 2>/dev/null || true
queued=$("$bin" inspect --config "$work/campaign.toml" --data "$work/data" | python3 -c 'import json,sys; print(json.load(sys.stdin)["orders_by_status"].get("queued", 0))')
echo "queued after the fill: $queued"

# 2. Drain: a worker node alone, at the games' full capacity.
taskset -c 0 "$bin" serve --rehearsal --admin-unsigned --config "$work/campaign.toml" --admin-addr 127.0.0.1:8081 \
  --data "$work/data" --role worker ${HEADROOM:+--pacing-headroom "$HEADROOM"} >/dev/null 2>"$work/worker.log" &
node=$!; pids+=($node)
wait_port 8081
ticks_before=$(awk '{print $14 + $15}' "/proc/$node/stat")
drain_started=$(date +%s.%N)
while :; do
  left=$(curl -s http://127.0.0.1:8081/admin/v1/delivery | python3 -c 'import json,sys; print(sum(g["queue_depth"] for g in json.load(sys.stdin)["games"]))')
  [ "$left" = "0" ] && break
  sleep 1
done
drain_s=$(echo "$(date +%s.%N) - $drain_started" | bc)
ticks_after=$(awk '{print $14 + $15}' "/proc/$node/stat")
# CPU seconds per thread name (the runtime, the store's writer, fjall's workers).
for t in /proc/$node/task/*; do echo "$(cat $t/comm) $(awk '{print $14 + $15}' $t/stat)"; done \
  | awk -v hz="$(getconf CLK_TCK)" '{cpu[$1] += $2 / hz} END {for (n in cpu) printf "%s %.1f s; ", n, cpu[n]; print ""}' > "$work/threads.txt"
kill "$node"; wait "$node" 2>/dev/null || true
hz=$(getconf CLK_TCK)
cpu_s=$(echo "scale=3; ($ticks_after - $ticks_before) / $hz" | bc)
ideal_s=$(echo "scale=1; $queued / 5000" | bc)
echo
echo "| backlog | drained in | ideal (backlog ÷ 5,000/s) | ratio | worker CPU | CPU per delivery |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
echo "| $queued | ${drain_s%.*} s | $ideal_s s | $(echo "scale=3; $drain_s / $ideal_s" | bc) | $cpu_s s | $(echo "scale=2; $cpu_s * 1000000 / $queued" | bc) µs |"
echo
curl -s http://127.0.0.1:9100/idip/v1/stats | python3 -c '
import json, sys
games = json.load(sys.stdin)["games"]
print("game side: %d applied, %d busy refusals, %d duplicates refused" % tuple(sum(g[k] for g in games.values()) for k in ("applied", "busy", "duplicates")))'
echo
python3 bench/pacing.py "$work/game-log.jsonl" "$work/campaign.toml"
echo
echo "worker threads (CPU): $(cat "$work/threads.txt")"
# KEEP=dir keeps the game's log and the worker's log (RUST_LOG applies) for a closer look.
[ -z "${KEEP:-}" ] || { mkdir -p "$KEEP"; cp "$work/game-log.jsonl" "$work/worker.log" "$work/campaign.toml" "$KEEP/"; }
echo
echo "$(nproc) cores; $(date -u +%Y-%m-%d); commit $(git rev-parse --short HEAD)"
