#!/usr/bin/env bash
# What the abuse limits cost, same run: claims/s and grabs/s (wrk, distinct users) on a node with
# the campaign's rate limits on — the per-address limits raised so that one load generator's
# address is not refused, the per-user ones as the campaign has them — against a node started
# with --no-rate-limits, alternating RUNS times; then how fast refusals are: one address far over
# its limit, 429s answered per second by the node on one core.
# Usage: bench/limits.sh [DURATION_S] [CONNECTIONS]      needs: wrk, taskset
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
duration="${1:-5}"
conns="${2:-64}"
users="${USERS:-100000}"
runs="${RUNS:-2}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

[ -n "${NO_BUILD:-}" ] || cargo build --release -p hongbao --quiet
bin="$PWD/target/release/hongbao"

opened_campaign "$work/campaign.toml"
# For the refusal run: an address limit of 1/s with a burst of 20 (the least the campaign allows
# beside its user burst), so that nearly every request is refused and the run measures refusals.
sed -e "s/^ip_rate_per_s = .*/ip_rate_per_s = 1/" -e "s/^ip_burst = .*/ip_burst = 20/" \
  "$work/campaign.toml" > "$work/campaign-refusing.toml"
"$bin" gen --config "$work/campaign.toml" --users "$users" --out "$work/profiles" >/dev/null
"$bin" bench tokens --config "$work/campaign.toml" --users "$users" --out "$work/tokens.txt"
"$bin" bench claims --config "$work/campaign.toml" --users "$users" --out "$work/claims-all.txt" >/dev/null
taskset -c 1 "$bin" game-sim --config "$work/campaign.toml" --addr 127.0.0.1:9100 --users "$users" \
  --role-latency-ms 1 >/dev/null 2>&1 &
pids+=($!)
wait_port 9100

start_node() { # campaign data-dir [flags…]
  local campaign=$1 data=$2; shift 2
  taskset -c 0 "$bin" serve --rehearsal --admin-unsigned --config "$campaign" --addr 127.0.0.1:8080 --admin-addr 127.0.0.1:8081 \
    --profiles "$work/profiles" --data "$data" --role api "$@" >/dev/null 2>&1 &
  node_pid=$!; pids+=($node_pid)
  wait_port 8080
}
stop_node() { kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; }

wrk_run() { # label url script file
  taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" --latency -s "$3" "$2" -- "$4" > "$work/out.wrk"
  local rps p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/out.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$work/out.wrk")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$work/out.wrk")
  echo "| $1 | $rps | $p99 | ${non2xx:-0} |"
}

# Claims are single-use: each run gets its own slice of the claims file.
lines=$(wc -l < "$work/claims-all.txt")
slice=$(( lines / (2 * runs) ))
echo "| run | requests/s | p99 | non-2xx |"
echo "| --- | ---: | ---: | ---: |"
n=0
for run in $(seq "$runs"); do
  for side in on off; do
    flags=(); [ "$side" = off ] && flags=(--no-rate-limits)
    sed -n "$((n * slice + 1)),$(((n + 1) * slice))p" "$work/claims-all.txt" > "$work/claims.txt"
    n=$((n + 1))
    start_node "$work/campaign.toml" "$work/data-$run-$side" "${flags[@]}"
    warm_roles http://127.0.0.1:8080 "$work/tokens.txt" "$users" "$conns"
    wrk_run "claim, limits $side ($run)" http://127.0.0.1:8080 bench/wrk/claim.lua "$work/claims.txt"
    wrk_run "grab, limits $side ($run)" http://127.0.0.1:8080 bench/wrk/grab.lua "$work/tokens.txt"
    stop_node
  done
done

# Refusals: every request from one address, over its limit.
start_node "$work/campaign-refusing.toml" "$work/data-refuse"
taskset -c 1 wrk -t1 -c"$conns" -d"${duration}s" -s bench/wrk/list.lua http://127.0.0.1:8080 -- "$work/tokens.txt" > "$work/refuse.wrk"
total=$(awk '/requests in/ {print $1}' "$work/refuse.wrk")
non2xx=$(awk '/Non-2xx/ {print $5}' "$work/refuse.wrk")
stop_node
awk -v t="$total" -v r="${non2xx:-0}" -v d="$duration" \
  'BEGIN { printf "refusals: %d of %d requests in %d s refused (429): %.0f refusals/s, %.0f answered/s in all\n", r, t, d, r / d, t / d }'
