#!/usr/bin/env bash
# Claim CPU in one run: the floor, a warm gift list, then claims with wrk (server on core 0, wrk and
# the game simulator on core 1), and the server's CPU time per claim from /proc (steadier than
# requests/s on a noisy machine). BIN=path compares two builds; `perf` as the argument also records
# a profile of the claim run (PERFARGS overrides perf record's options). Needs wrk, taskset, curl.
# The floor also answers the claims themselves at /floor/claim (parsed, answered 202, nothing
# decided): the HTTP part of a claim's cost.
# THINK=ms paces wrk's connections (a think time between answer and next request) to measure latency
# below the maximum.
# IN_MEMORY=1 runs the same API over the in-memory store (`hongbao bench in-memory`: every
# decision the same, nothing written): what a claim costs without its durable write.
# Usage: bench/claim-cpu.sh [perf]     (reuses the users and claims in $WORK between runs)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
w=${WORK:-/tmp/hongbao-claim-cpu}; mkdir -p "$w"; users=${USERS:-100000}; bin=${BIN:-$PWD/target/release/hongbao}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; }
trap cleanup EXIT
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
# CPU ticks per thread name (the runtime's workers, the store's writer, fjall's threads), summed.
threads() { for t in /proc/$1/task/*; do echo "$(cat $t/comm) $(awk '{print $14 + $15}' $t/stat)"; done; }
if [ ! -f $w/claims.txt ]; then
  opened_campaign $w/campaign.toml
  $bin gen --config $w/campaign.toml --users $users --out $w/profiles >/dev/null
  $bin bench tokens --config $w/campaign.toml --users $users --out $w/tokens.txt
  $bin bench claims --config $w/campaign.toml --users $users --out $w/claims.txt >/dev/null
fi
taskset -c 0 $bin bench floor --addr 127.0.0.1:8090 >/dev/null 2>&1 &
fl=$!; pids+=($fl); wait_port 8090
f0=$(cpu $fl)
floor=$(taskset -c 1 wrk -t1 -c256 -d5s http://127.0.0.1:8090/floor | awk '/Requests\/sec/ {print $2}')
f1=$(cpu $fl)
# The same claims against the floor's claim-shaped route: HTTP's share of a claim.
fclaim=$(CLAIM_PATH=/floor/claim taskset -c 1 wrk -t1 -c256 -d5s -s bench/wrk/claim.lua http://127.0.0.1:8090 -- $w/claims.txt | awk '/Requests\/sec/ {print $2}')
f2=$(cpu $fl)
kill $fl
taskset -c 1 $bin game-sim --config $w/campaign.toml --addr 127.0.0.1:9100 --users $users --role-latency-ms 1 >/dev/null 2>&1 &
pids+=($!); wait_port 9100
rm -rf $w/data
if [ -n "${IN_MEMORY:-}" ]; then
  # The same API over the in-memory store: a claim with the durable write taken away.
  taskset -c 0 $bin bench in-memory --config $w/campaign.toml --addr 127.0.0.1:8080 \
      --profiles $w/profiles >/dev/null 2>$w/server.log &
else
  taskset -c 0 $bin serve --rehearsal --admin-unsigned --config $w/campaign.toml --addr 127.0.0.1:8080 --admin-addr 127.0.0.1:8081 \
      --profiles $w/profiles --data $w/data --role api --store-batch-max ${BATCH:-1024} ${LINGER:+--store-linger-ms $LINGER} >/dev/null 2>$w/server.log &
fi
node=$!; pids+=($node); wait_port 8080
warm_roles http://127.0.0.1:8080 $w/tokens.txt $users
c0=$(cpu $node)
list=$(taskset -c 1 wrk -t1 -c256 -d5s -s bench/wrk/list.lua http://127.0.0.1:8080 -- $w/tokens.txt | awk '/Requests\/sec/ {print $2}')
c1=$(cpu $node)
if [ "${1:-}" = perf ]; then
  (sleep 1; perf record ${PERFARGS:--F 1999 -g} -o $w/perf.data -p $node -- sleep 3 >/dev/null 2>&1) &
  perfpid=$!
fi
# Claims decided: the store's command count (a replay or refusal is not one); in memory there is no
# such count, so every answer is taken for a claim and any non-2xx is shown.
commands() { [ -n "${IN_MEMORY:-}" ] && echo 0 || curl -s http://127.0.0.1:8081/admin/v1/store | python3 -c 'import json,sys; print(json.load(sys.stdin)["commands"])'; }
s0=$(commands)
threads $node > $w/threads-before
taskset -c 1 wrk -t1 -c256 -d${DUR:-5}s --latency -s bench/wrk/claim.lua http://127.0.0.1:8080 -- $w/claims.txt ${THINK:-} > $w/claim.wrk
c2=$(cpu $node)
threads $node > $w/threads-after
s1=$(commands)
if [ -n "${IN_MEMORY:-}" ]; then
  s1=$(awk '/requests in/ {print $1}' $w/claim.wrk); grep -H 'Non-2xx' $w/claim.wrk || true
fi
claim=$(awk '/Requests\/sec/ {print $2}' $w/claim.wrk); p99=$(awk '$1=="99%" {print $2}' $w/claim.wrk)
python3 -c "
f,fc,l,c=$floor,$fclaim,$list,$claim
print(f'floor {f:.0f} cpu/req {($f1-$f0)*1e4/(f*5):.1f}us; claim-shaped floor {fc:.0f} ({fc/f:.2f}x) cpu/req {($f2-$f1)*1e4/(fc*5):.1f}us')
print(f'floor {f:.0f} list {l:.0f} ({l/f:.2f}x) claim {c:.0f} ({c/f:.2f}x) p99 $p99; list cpu/req {($c1-$c0)*1e4/(l*5):.1f}us; claim cpu/claim {($c2-$c1)*1e4/max($s1-$s0,1):.1f}us ({$s1-$s0} commands)')"
# Where a claim's CPU goes, by thread: the runtime (HTTP, verification) against the store's writer.
python3 - $w/threads-before $w/threads-after $((s1 - s0)) <<'PY'
import collections, sys
def load(path):
    ticks = collections.Counter()
    for line in open(path):
        name, value = line.rsplit(" ", 1)
        ticks[name] += int(value)
    return ticks
before, after, claims = load(sys.argv[1]), load(sys.argv[2]), max(int(sys.argv[3]), 1)
parts = sorted(((after[n] - before[n]) * 1e4 / claims, n) for n in after if after[n] > before[n])
print("claim cpu by thread: " + ", ".join(f"{n} {us:.1f}us" for us, n in reversed(parts)))
PY
[ -n "${perfpid:-}" ] && wait $perfpid || true
