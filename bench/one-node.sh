#!/usr/bin/env bash
# One API node's maximum on each backend, same run, same machine (outside CI):
#   1. the floor (`hongbao bench floor`): requests/s, p50, p99;
#   2. the embedded node (`serve --data DIR --role api`): grabs and claims at maximum;
#   3. the same node on Redis + JetStream (`serve --redis --nats --role api`, on a redis-server and
#      a nats-server started here on free loopback ports): grabs and claims at maximum; for the
#      claims, Redis commands and EVALSHA per accepted claim (INFO commandstats deltas), JetStream
#      publishes per batch (stored messages ÷ the publisher's mark transactions, see below) and
#      CPU per claim of the node, redis-server and nats-server (/proc deltas);
#   4. the same node over a local Redis Cluster of 3 masters, `--claim-shards 1` then
#      `--claim-shards 12` (fresh namespace each): claims/s, p99, each master's CPU share and the
#      Redis commands per claim summed over the masters.
# wrk -t1 with many connections (bench/wrk/claim.lua and grab.lua: a distinct user and coupon per
# request); the node on core 0; wrk, the game simulator, redis-server and nats-server on core 1
# (BACKEND_CPUS), so core 0 is the node's alone and a busy core 1 shows in the utilisation line.
# Each node warms its role cache first (bench/lib.sh warm_roles), then claims, then grabs. Every
# backend starts empty, so the same claims file serves each claim run; a run that sent more
# requests than the file holds (wrk wraps around, replays answer 200) is marked in the report.
# The publisher's own counters (`PublisherStats`) are not exposed by the binary (no metric, no log
# line): its batches are counted as the MULTI/EXEC transactions that mark each batch published
# (one per batch and claim shard; an api node runs no sweeper), its publishes as JetStream's
# stored messages (nats-server's /jsz).
# Usage: bench/one-node.sh
#   env: DUR (s per wrk run, default 10), CONNS (default 256), USERS (default 100000: the claims
#        file holds about 2.2 per user, enough for 22,000 claims/s over 10 s; more users make the
#        warm-ups longer than the role cache's 60 s), NO_BUILD=1, BIN=path, BACKEND_CPUS (default 1)
# Needs: wrk, taskset, curl, ss, python3, redis-server, redis-cli (for --cluster create), nats-server.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
dur=${DUR:-10}; conns=${CONNS:-256}; users=${USERS:-100000}; backend_cpus=${BACKEND_CPUS:-1}
die() { echo "one-node.sh: $*" >&2; exit 1; }
for tool in wrk taskset curl ss python3 redis-server redis-cli nats-server; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y wrk redis-server nats-server)"
done
work="$(mktemp -d)"
pids=()
# Nodes first, servers last: stop_pids (bench/lib.sh) stops them in reverse.
cleanup() { stop_pids; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

[ -n "${NO_BUILD:-}" ] || cargo build --release -p hongbao --quiet
bin="${BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/hongbao}"
[ -x "$bin" ] || die "no binary at $bin (build it, or give BIN)"
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_ports() { python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Refuses to start on a port something else took since free_ports picked it.
claim_port() { ! port_open "$1" || die "port $1 is taken by another process"; }
read -r floor_port sim_port api_port admin_port redis_port nats_port nats_mon \
  m1 m2 m3 b1 b2 b3 <<<"$(free_ports 13)"

# Waits (bounded) until COMMAND succeeds; fails naming WHAT, with LOG's tail, if PID dies first.
wait_for() { # WHAT PID LOG COMMAND...
  local what=$1 pid=$2 log=$3; shift 3
  for _ in $(seq 1 300); do
    "$@" >/dev/null 2>&1 && return 0
    running "$pid" || { tail -n 20 "$log" >&2; die "$what exited before it was ready"; }
    sleep 0.1
  done
  tail -n 20 "$log" >&2; die "$what not ready after 30 s"
}
http_ok() { curl -sf -o /dev/null "$1"; }
say() { echo "[$(date -u +%T)] $*" >&2; }

# The campaign (opened two hours ago), users, tickets and claims.
opened_campaign "$work/campaign.toml"
sed -i "s#http://127.0.0.1:9100#http://127.0.0.1:$sim_port#" "$work/campaign.toml"
campaign_id=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["campaign"]["id"])' "$work/campaign.toml")
"$bin" gen --config "$work/campaign.toml" --users "$users" --out "$work/profiles" >/dev/null
"$bin" bench tokens --config "$work/campaign.toml" --users "$users" --out "$work/tokens.txt"
"$bin" bench claims --config "$work/campaign.toml" --users "$users" --out "$work/claims.txt" >/dev/null
claims=$(wc -l < "$work/claims.txt")
say "$users users, $claims claims; ${dur} s per run, wrk -c$conns"

claim_port "$sim_port"
taskset -c "$backend_cpus" "$bin" game-sim --config "$work/campaign.toml" --addr "127.0.0.1:$sim_port" \
  --users "$users" --role-latency-ms 1 >"$work/sim.log" 2>&1 &
sim=$!; pids+=($sim)
wait_for game-sim "$sim" "$work/sim.log" port_open "$sim_port"

# What a measured run watches: processes (label=pid) for CPU, Redis ports for command counts,
# JetStream's stored messages when nats_mon_on is set, the embedded store's commands (one per
# accepted claim) when store_on is set; every core's busy time, always (a core busy with
# something else, or the load generator's core full, shows there).
watch=(); watch_redis=(); nats_mon_on=""; store_on=""
snapshot() { # FILE
  local w port
  echo "time $(date +%s.%N)" > "$1"
  for w in "${watch[@]}"; do echo "cpu ${w%%=*} $(ticks "${w#*=}")"; done >> "$1"
  awk '/^cpu[0-9]/ {t = 0; for (i = 2; i <= NF; i++) t += $i; print "core", $1, t - $5 - $6, t}' /proc/stat >> "$1"
  for port in "${watch_redis[@]}"; do
    redis-cli -p "$port" info commandstats | tr -d '\r' | grep '^cmdstat_' | sed "s/^/cmd $port /" >> "$1" || true
  done
  if [ -n "$store_on" ]; then
    curl -sf "http://127.0.0.1:$admin_port/admin/v1/store" | python3 -c 'import json, sys; print("store", json.load(sys.stdin)["commands"])' >> "$1"
  fi
  if [ -n "$nats_mon_on" ]; then
    curl -sf "http://127.0.0.1:$nats_mon/jsz" | python3 -c 'import json, sys; print("js", json.load(sys.stdin)["messages"])' >> "$1"
  fi
}
# One wrk run at maximum, recorded for the report: measure NAME TITLE DISTINCT URL [SCRIPT FILE]
# DISTINCT: how many requests the script has before it repeats one (0: no script).
measure() {
  local name=$1 title=$2 distinct=$3 url=$4 script=${5:-} file=${6:-}
  local args=(-t1 -c"$conns" -d"${dur}s" --latency)
  say "run: $title"
  if [ -n "$script" ]; then args+=(-s "$script" "$url" -- "$file"); else args+=("$url"); fi
  taskset -c 1 wrk "${args[@]}" > "$work/$name.wrk" &
  local load=$!; pids+=($load)
  # wrk reads its script's file before it connects (seconds for a large claims file) and starts
  # its clock after: the window opens once its connections are up, so it holds the load alone.
  local port=${url##*:}; port=${port%%/*}
  for _ in $(seq 1 600); do
    [ "$(ss -Htn state established "( dport = :$port )" | wc -l)" -ge "$conns" ] && break
    running "$load" || break
    sleep 0.05
  done
  snapshot "$work/$name.before"
  wait "$load" || die "wrk failed in run $name"
  forget "$load"
  snapshot "$work/$name.after"
  printf '%s\t%s\t%s\t%s\n' "$name" "$title" "$distinct" "${watch_redis[*]}" >> "$work/runs"
}

# The API node under test, warmed: start_node LOG SERVE-ARGS...  (sets node)
start_node() {
  local log=$1; shift
  claim_port "$api_port"; claim_port "$admin_port"
  taskset -c 0 "$bin" serve --rehearsal --admin-unsigned --config "$work/campaign.toml" \
    --profiles "$work/profiles" --addr "127.0.0.1:$api_port" --admin-addr "127.0.0.1:$admin_port" \
    --role api "$@" >"$log" 2>&1 &
  node=$!; pids+=($node)
  wait_for "the node ($*)" "$node" "$log" http_ok "http://127.0.0.1:$api_port/readyz"
  say "node ready ($*); warming its role cache"
  local started=$SECONDS
  warm_roles "http://127.0.0.1:$api_port" "$work/tokens.txt" "$users" "$conns"
  # Role entries live 60 s from their load: a longer warm-up leaves the first users' expired,
  # and their claims then look roles up again (Redis GET/SET on a distributed node).
  [ $((SECONDS - started)) -le 45 ] || say "warning: the warm-up took $((SECONDS - started)) s; the" \
    "first users' role entries (60 s) may expire during the claims: use fewer USERS"
}
# Stops PID and waits (bounded) for it, so the next node finds its ports free.
stop() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do running "$1" || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true
  forget "$1"
}
# Drops a reaped PID from the clean-up's list, so it never signals a recycled pid.
forget() { local p kept=(); for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done; pids=("${kept[@]}"); }
# Claims, then grabs (claims first, while the warm-up's role entries are fresh). A grab's
# channel changes with each pass over the users, so 3 passes are distinct grabs.
claims_and_grabs() { # PREFIX TITLE
  local url="http://127.0.0.1:$api_port"
  measure "$1-claim" "$2: claims" "$claims" "$url" bench/wrk/claim.lua "$work/claims.txt"
  measure "$1-grab" "$2: grabs" "$((3 * users))" "$url" bench/wrk/grab.lua "$work/tokens.txt"
}

# 1. The floor.
claim_port "$floor_port"
taskset -c 0 "$bin" bench floor --addr "127.0.0.1:$floor_port" >"$work/floor.log" 2>&1 &
floor=$!; pids+=($floor)
wait_for floor "$floor" "$work/floor.log" port_open "$floor_port"
watch=("node=$floor")
measure floor "floor" 0 "http://127.0.0.1:$floor_port/floor"
stop "$floor"

# 2. The embedded node.
start_node "$work/embedded.log" --data "$work/data"
watch=("node=$node"); store_on=1
claims_and_grabs embedded "embedded"
store_on=""
stop "$node"

# 3. Redis + JetStream, each on its own server.
mkdir -p "$work/redis" "$work/js"
claim_port "$redis_port"; claim_port "$nats_port"; claim_port "$nats_mon"
taskset -c "$backend_cpus" redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work/redis" --daemonize no >"$work/redis.log" 2>&1 &
redis=$!; pids+=($redis)
taskset -c "$backend_cpus" nats-server -a 127.0.0.1 -p "$nats_port" -m "$nats_mon" -js -sd "$work/js" \
  >"$work/nats.log" 2>&1 &
nats=$!; pids+=($nats)
wait_for redis-server "$redis" "$work/redis.log" redis-cli -p "$redis_port" ping
wait_for nats-server "$nats" "$work/nats.log" http_ok "http://127.0.0.1:$nats_mon/healthz"
nats_url="nats://127.0.0.1:$nats_port"
namespace() { echo "hbone-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"; }
start_node "$work/redis-node.log" --redis "redis://127.0.0.1:$redis_port" --nats "$nats_url" \
  --namespace "$(namespace)"
watch=("node=$node" "redis-server=$redis" "nats-server=$nats"); watch_redis=("$redis_port"); nats_mon_on=1
claims_and_grabs redis "Redis + JetStream"
stop "$node"; stop "$redis"

# 4. A local Redis Cluster of three masters (as crates/redis/src/testing.rs makes one).
masters=()
for pb in "$m1:$b1" "$m2:$b2" "$m3:$b3"; do
  port=${pb%%:*}; bus=${pb#*:}
  claim_port "$port"; claim_port "$bus"; mkdir -p "$work/cluster/$port"
  (cd "$work/cluster/$port" && exec taskset -c "$backend_cpus" redis-server --port "$port" \
    --cluster-port "$bus" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-node-timeout 5000 --save "" --appendonly no --daemonize no >redis.log 2>&1) &
  masters+=($!); pids+=($!)
  wait_for "cluster master $port" "$!" "$work/cluster/$port/redis.log" redis-cli -p "$port" ping
done
redis-cli --cluster create "127.0.0.1:$m1" "127.0.0.1:$m2" "127.0.0.1:$m3" --cluster-replicas 0 \
  --cluster-yes >"$work/cluster/create.log" 2>&1 || { cat "$work/cluster/create.log" >&2; die "redis-cli --cluster create failed"; }
cluster_ok() { for p in "$m1" "$m2" "$m3"; do
  redis-cli -p "$p" cluster info | tr -d '\r' | grep -c '^cluster_state:ok$\|^cluster_slots_ok:16384$' | grep -q 2 \
    || return 1; done; }
wait_for "the cluster" "${masters[0]}" "$work/cluster/create.log" cluster_ok
# Which master holds each claim shard's slot, for the report: shards-S lines "port shard".
shard_homes() { # SHARDS
  local k tag slot
  for ((k = 0; k < $1; k++)); do
    if [ "$1" = 1 ]; then tag="{$campaign_id}"; else tag="{$campaign_id:s$k}"; fi
    slot=$(redis-cli -p "$m1" cluster keyslot "$tag" | tr -d '\r')
    redis-cli -p "$m1" cluster nodes | tr -d '\r' | awk -v s="$slot" -v k="$k" '
      { split($2, a, "[:@]"); for (i = 9; i <= NF; i++) { n = split($i, r, "-"); lo = r[1]; hi = (n > 1) ? r[2] : r[1];
        if (s >= lo && s <= hi) print a[2], k } }'
  done > "$work/shards-$1.homes"
}
for shards in 1 12; do
  start_node "$work/cluster-$shards.log" --redis "redis+cluster://127.0.0.1:$m1,127.0.0.1:$m2,127.0.0.1:$m3" \
    --nats "$nats_url" --namespace "$(namespace)" --claim-shards "$shards"
  watch=("node=$node" "master-$m1=${masters[0]}" "master-$m2=${masters[1]}" "master-$m3=${masters[2]}" "nats-server=$nats")
  watch_redis=("$m1" "$m2" "$m3")
  shard_homes "$shards"
  measure "cluster-$shards-claim" "Redis Cluster (3 masters), $shards claim shard$([ "$shards" = 1 ] || echo s): claims" \
    "$claims" "http://127.0.0.1:$api_port" bench/wrk/claim.lua "$work/claims.txt"
  stop "$node"
done

python3 bench/one-node-report.py "$work" "$hz"
echo
echo "wrk -t1 -c$conns, ${dur} s per run; node on core 0, wrk on core 1, game-sim, redis-server and nats-server on core(s) $backend_cpus;"
echo "$users users; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD)"
