#!/usr/bin/env bash
# Floor vs gift list vs grab, in one run, with wrk: server pinned to core 0, wrk (and the game
# simulator) to core 1. Prints a markdown table for docs/BENCHMARKS.md.
# Usage: bench/api.sh [DURATION_S] [CONNECTIONS]      needs: wrk, taskset (apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
conns="${2:-64}"
users="${USERS:-20000}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

[ -n "${NO_BUILD:-}" ] || cargo build --release -p hongbao --quiet
bin="$PWD/target/release/hongbao"

# The example campaign, opened two hours ago (so every release wave is open).
start="$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%S+00:00)"
sed "s/^starts_at = .*/starts_at = \"$start\"/" config/spring-festival.toml > "$work/campaign.toml"
"$bin" gen --config "$work/campaign.toml" --users "$users" --out "$work/profiles" >/dev/null
"$bin" bench tokens --config "$work/campaign.toml" --users "$users" --out "$work/tokens.txt"

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# Role look-ups answer in 1 ms here so the warm-up fills the role cache quickly; the measured
# list run then hits the cache (its TTL, 60 s, outlives warm-up plus measurement).
taskset -c 1 "$bin" game-sim --config "$work/campaign.toml" --addr 127.0.0.1:9100 --users "$users" \
  --role-latency-ms 1 >/dev/null 2>&1 &
pids+=($!)
wait_port 9100

run_wrk() { # name url script
  local name="$1" url="$2" script="${3:-}"
  local args=(-t1 -c"$conns" -d"${duration}s" --latency)
  [ -n "$script" ] && args+=(-s "$script" "$url" -- "$work/tokens.txt") || args+=("$url")
  taskset -c 1 wrk "${args[@]}" > "$work/$name.wrk"
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$name.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$work/$name.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$work/$name.wrk")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/$name.wrk")
  echo "$name $rps $p50 $p99 ${non2xx:-0}" >> "$work/results"
}

# 1. The floor.
taskset -c 0 "$bin" bench floor --addr 127.0.0.1:8090 >/dev/null 2>&1 &
floor_pid=$!; pids+=($floor_pid)
wait_port 8090
run_wrk floor "http://127.0.0.1:8090/floor"
kill "$floor_pid"; wait "$floor_pid" 2>/dev/null || true

# 2. The API node with 100k users' profiles and the embedded store.
taskset -c 0 "$bin" serve --config "$work/campaign.toml" --addr 127.0.0.1:8080 \
  --profiles "$work/profiles" --data "$work/data" >/dev/null 2>&1 &
pids+=($!)
wait_port 8080
# Warm the role cache: one pass over every user's list (not measured).
taskset -c 1 wrk -t1 -c"$conns" -d8s -s bench/wrk/list.lua http://127.0.0.1:8080 -- "$work/tokens.txt" >/dev/null
run_wrk list "http://127.0.0.1:8080" bench/wrk/list.lua
run_wrk grab "http://127.0.0.1:8080" bench/wrk/grab.lua

floor_rps=$(awk '$1=="floor" {print $2}' "$work/results")
echo
echo "| endpoint | requests/s | × floor | p50 | p99 | non-2xx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
while read -r name rps p50 p99 non2xx; do
  ratio=$(awk -v a="$rps" -v b="$floor_rps" 'BEGIN {printf "%.2f", a / b}')
  echo "| $name | $rps | $ratio | $p50 | $p99 | $non2xx |"
done < "$work/results"
echo
echo "wrk -t1 -c$conns -d${duration}s; server on core 0, wrk on core 1; $(nproc) cores; $(date -u +%Y-%m-%d)"
