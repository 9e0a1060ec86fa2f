#!/usr/bin/env bash
# How fast `hongbao load --scenario replay` can offer claims from its one core: the claim lines of
# bench/claim-cpu.sh sent to the floor's claim-shaped route (POST /floor/claim: parsed and
# answered, nothing decided, so the server is rarely the limit), floor on core 0, generator on
# core 1, at each rate in RATES. A rate is sustained when achieved/s is the offered rate and p50
# stays low; past the generator's limit latency from intended send times is its own queue.
# BINS="a b" compares generator builds (alternating). Run bench/claim-cpu.sh once first.
# Usage: RATES="15000 25000" bench/load-max.sh          needs: taskset
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
w=${WORK:-/tmp/hongbao-claim-cpu}
bins=${BINS:-$PWD/target/release/hongbao}
[ -f "$w/claims.txt" ] || { echo "run bench/claim-cpu.sh first (it writes $w/claims.txt)" >&2; exit 1; }
sed 's/^/POST\t\/floor\/claim\t/' "$w/claims.txt" > "$w/floor-claims.txt"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; }
trap cleanup EXIT
first=${bins%% *}
taskset -c 0 "$first" bench floor --addr 127.0.0.1:8090 >/dev/null 2>&1 &
pids+=($!); wait_port 8090
for rate in ${RATES:-15000 25000 35000}; do
  for bin in $bins; do
    taskset -c 1 "$bin" load --target http://127.0.0.1:8090 --config "$w/campaign.toml" --scenario replay \
      --requests "$w/floor-claims.txt" --rate "$rate" --duration "${DUR:-5}s" --connections 256 \
      --no-progress --json "$w/load-max.json" >/dev/null 2>&1
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], "offered", sys.argv[3], "achieved %.0f/s p50 %s p99 %s ms" % (r["achieved_rps"], r["p50_ms"], r["p99_ms"]))' \
      "$w/load-max.json" "$bin" "$rate"
  done
done
