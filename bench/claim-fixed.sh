#!/usr/bin/env bash
# Open-loop claim latency at a fixed rate on a fresh node: the server on core 0, the game
# simulator and `hongbao load` on core 1, latency from intended send times. RUNS runs per build,
# builds alternating (BINS="a b" compares binaries); reuses bench/claim-cpu.sh's users and claims
# (run that once first). RATE (default 15,000/s) must stay within what the generator sustains
# on its one core (`bench/load-max.sh`: 20,000 claims/s on the slow 2026-12-02 machine). Usage: bench/claim-fixed.sh        needs: wrk, taskset
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
w=${WORK:-/tmp/hongbao-claim-cpu}; users=${USERS:-100000}
bins=${BINS:-$PWD/target/release/hongbao}; runs=${RUNS:-3}
[ -f "$w/claims.txt" ] || { echo "run bench/claim-cpu.sh first (it writes $w/claims.txt)" >&2; exit 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; }
trap cleanup EXIT
first=${bins%% *}
taskset -c 1 "$first" game-sim --config "$w/campaign.toml" --addr 127.0.0.1:9100 --users "$users" \
  --role-latency-ms 1 >/dev/null 2>&1 &
pids+=($!); wait_port 9100
for run in $(seq "$runs"); do
  for bin in $bins; do
    rm -rf "$w/fixed-data"
    taskset -c 0 "$bin" serve --rehearsal --admin-unsigned --config "$w/campaign.toml" --addr 127.0.0.1:8080 --admin-addr 127.0.0.1:8081 \
      --profiles "$w/profiles" --data "$w/fixed-data" --role api >/dev/null 2>&1 &
    node=$!; pids+=($node); wait_port 8080
    # Warm the role cache (not measured).
    warm_roles http://127.0.0.1:8080 "$w/tokens.txt" "$users"
    taskset -c 1 "$bin" load --target http://127.0.0.1:8080 --config "$w/campaign.toml" --scenario replay \
      --requests "$w/claims.txt" --rate "${RATE:-15000}" --duration "${DUR:-5}s" --connections 256 \
      --no-progress --json "$w/fixed.json" >/dev/null 2>&1
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], "run", sys.argv[3], "achieved %.0f/s p50 %s p90 %s p99 %s max %s ms" % (r["achieved_rps"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"]))' \
      "$w/fixed.json" "$bin" "$run"
    # The server's side of the tail: how long its synced commits (journal, memtables, fsync) took.
    curl -s http://127.0.0.1:8081/admin/v1/store | python3 -c '
import json, sys
s = json.load(sys.stdin)
bounds = s.get("synced_commit_bounds_ms")
if bounds:
    labels = [f"<={b}ms" for b in bounds] + [f">{bounds[-1]}ms"]
    counts = " ".join(f"{l} {c}" for l, c in zip(labels, s["synced_commits_by_ms"]) if c)
    fsyncs, longest_ms = s["fsyncs"], s["synced_commit_max_us"] / 1000
    print(f"  store: {fsyncs} synced commits ({counts}), longest {longest_ms:.1f} ms")'
    kill "$node"; wait "$node" 2>/dev/null || true
  done
done
