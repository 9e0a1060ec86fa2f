#!/usr/bin/env bash
# The distributed backend (serve --redis --nats), release build, on its own Redis and
# nats-server (started here on free loopback ports, so their commands and CPU are this run's
# alone; killed and their directories removed at the end), one random namespace:
#   1. the door: claims through 2 API nodes (--role api), `hongbao load --scenario replay` at
#      RATE/2 against each for DUR s: accepted claims/s, p50/p99 per node; Redis commands per
#      accepted claim (INFO commandstats delta, by command; Redis counts the commands a script
#      runs as well as its EVALSHA); CPU per claim of each API node, redis-server, nats-server
#      and the simulator (/proc/PID/stat deltas);
#   2. the fill: the rest of the claims file through the same nodes (not measured), so about
#      ORDERS orders are queued in JetStream, balanced to the games' capacities;
#   3. the drain: 3 workers (--role worker) deliver the queue through the game simulator at its
#      capacity: the time from the workers' start and from the first delivery, against the ideal
#      (the slowest game's orders ÷ its capacity), and each game's busiest second
#      (`max_applied_in_1s`, from the simulator's stats) against its capacity.
# The claims have distinct users and coupons (`hongbao bench claims --balance-s`); their users'
# roles are not cached beforehand, so each claim's role look-up goes to the simulator once.
# Usage: bench/distributed.sh [ORDERS]       (default 100000)
#   env: RATE (claims/s offered at the door, both nodes, default 4000), DUR (s, default 10),
#        CONNS (per node, default 128), SCALE (game capacity scale, default 1),
#        AOF=yes (Redis appendonly with appendfsync everysec), NO_BUILD=1, BIN=path
# Needs: redis-server, redis-cli, nats-server, python3 (3.11+), curl. Outside CI.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
orders=${1:-100000}; rate=${RATE:-4000}; dur=${DUR:-10}; conns=${CONNS:-128}; scale=${SCALE:-1}
work="$(mktemp -d)"
pids=()
# Nodes first, servers last: stop_pids (bench/lib.sh) stops them in reverse.
cleanup() { stop_pids; rm -rf "$work"; }
trap cleanup EXIT
# A signal (Ctrl-C, a closed pipe) exits through the same clean-up.
trap 'exit 1' INT TERM HUP PIPE
[ -n "${NO_BUILD:-}" ] || cargo build --release -p hongbao --quiet
bin="${BIN:-$PWD/target/release/hongbao}"
ns="hbbench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# N free loopback ports (nothing listens on them now).
free_ports() { python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"; }
read -r redis_port nats_port sim_port a1 a1_admin a2 a2_admin w1 w2 w3 <<<"$(free_ports 10)"

# The campaign, users and claims: a backlog of about ORDERS, each game's share its capacity's.
opened_campaign "$work/campaign.toml"
capacity() { python3 -c 'import sys, tomllib; c = tomllib.load(open(sys.argv[1], "rb")); print(round(sum(g["delivery_capacity_per_s"] for g in c["games"]) * float(sys.argv[2])))' "$work/campaign.toml" "$1"; }
capacity=$(capacity "$scale")
# `bench claims` balances on the unscaled capacities: each game gets capacity × balance_s claims
# if its players allow (a small game may have fewer), about ORDERS in all.
balance_s=$(( (orders + $(capacity 1) - 1) / $(capacity 1) ))
users=$(( orders * 2 + 10000 ))
"$bin" gen --config "$work/campaign.toml" --users "$users" --out "$work/profiles" >/dev/null
"$bin" bench claims --config "$work/campaign.toml" --users "$users" --balance-s "$balance_s" \
  --out "$work/claims.txt" >/dev/null
mv "$work/claims.txt" "$work/orders.txt"
lines=$(wc -l < "$work/orders.txt")
door=$(( rate * dur < lines ? rate * dur : lines ))
# Door lines alternate between the nodes; the rest is the fill, split the same way.
head -n "$door" "$work/orders.txt" | awk -v d="$work" 'NR % 2 {print > d "/door1.txt"; next} {print > d "/door2.txt"}'
tail -n "+$((door + 1))" "$work/orders.txt" | awk -v d="$work" 'NR % 2 {print > d "/fill1.txt"; next} {print > d "/fill2.txt"}'
touch "$work/fill1.txt" "$work/fill2.txt"
echo "claims: $lines ($door at the door, the rest as fill); $users users; games' capacity $capacity/s; namespace $ns"

# Redis and nats-server of this run.
mkdir -p "$work/redis" "$work/js"
aof=(--appendonly no); [ "${AOF:-}" = yes ] && aof=(--appendonly yes --appendfsync everysec)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" "${aof[@]}" --dir "$work/redis" --daemonize no >/dev/null 2>&1 &
redis=$!; pids+=($redis)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/js" >/dev/null 2>&1 &
nats=$!; pids+=($nats)
wait_port "$redis_port"; wait_port "$nats_port"
redis_url="redis://127.0.0.1:$redis_port"; nats_url="nats://127.0.0.1:$nats_port"

"$bin" game-sim --config "$work/campaign.toml" --addr "127.0.0.1:$sim_port" --users "$users" \
  --role-latency-ms 1 --capacity-scale "$scale" >/dev/null 2>&1 &
sim=$!; pids+=($sim); wait_port "$sim_port"
sed -i "s#http://127.0.0.1:9100#http://127.0.0.1:$sim_port#" "$work/campaign.toml"

node() { # ROLE API-PORT ADMIN-PORT LOG
  "$bin" serve --rehearsal --admin-unsigned --config "$work/campaign.toml" --profiles "$work/profiles" \
    --redis "$redis_url" --nats "$nats_url" --namespace "$ns" --role "$1" --addr "127.0.0.1:$2" \
    --admin-addr "127.0.0.1:$3" --capacity-scale "$scale" >"$4" 2>&1 &
}
node api "$a1" "$a1_admin" "$work/api1.log"; api1=$!; pids+=($api1)
node api "$a2" "$a2_admin" "$work/api2.log"; api2=$!; pids+=($api2)
wait_port "$a1"; wait_port "$a2"

# Sum of every command's calls but INFO (this script's own probe).
commands() { redis-cli -p "$redis_port" info commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" {s += $3} END {print s + 0}'; }
redis-cli -p "$redis_port" info commandstats | tr -d '\r' | grep '^cmdstat_' > "$work/cmd-before" || true
load() { # TARGET-PORT FILE RATE DURATION JSON
  "$bin" load --target "http://127.0.0.1:$1" --config "$work/campaign.toml" --scenario replay \
    --requests "$2" --rate "$3" --duration "$4" --connections "$conns" --no-progress --json "$5" >/dev/null 2>&1
}

# 1. The door.
c0=$(commands); t_api1=$(ticks $api1); t_api2=$(ticks $api2); t_redis=$(ticks $redis); t_nats=$(ticks $nats); t_sim=$(ticks $sim)
load "$a1" "$work/door1.txt" "$((rate / 2))" "${dur}s" "$work/door1.json" &
l1=$!
load "$a2" "$work/door2.txt" "$((rate / 2))" "${dur}s" "$work/door2.json" &
l2=$!
wait $l1 $l2
c1=$(commands)
cpu_door="$(( $(ticks $api1) - t_api1 )) $(( $(ticks $api2) - t_api2 )) $(( $(ticks $redis) - t_redis )) $(( $(ticks $nats) - t_nats )) $(( $(ticks $sim) - t_sim ))"
redis-cli -p "$redis_port" info commandstats | tr -d '\r' | grep '^cmdstat_' > "$work/cmd-after"
python3 - "$work" "$((c1 - c0))" "$hz" $cpu_door <<'PY'
import json, sys
work, commands, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cpu = dict(zip(["api node 1", "api node 2", "redis-server", "nats-server", "game-sim"], map(int, sys.argv[4:9])))
accepted, elapsed = 0, 0.0
for n in (1, 2):
    r = json.load(open(f"{work}/door{n}.json"))
    ok = r["statuses"].get("202", 0)
    accepted += ok
    elapsed = max(elapsed, r["elapsed_s"])
    others = {k: v for k, v in r["statuses"].items() if k != "202"}
    print(f"door node {n}: offered {r['offered_rps']:.0f}/s, answered {r['achieved_rps']:.0f}/s, "
          f"202 {ok}, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms"
          + (f", other answers {others} {r['error_codes']}" if others else ""))
print(f"door: {accepted} claims accepted in {elapsed:.1f} s = {accepted / max(elapsed, 1e-9):.0f} claims/s (both nodes)")
per = max(accepted, 1)
print(f"redis commands executed per accepted claim: {commands / per:.2f} ({commands} commands; "
      "Redis counts those a script runs too, besides the script's EVALSHA)")
def calls(path):
    out = {}
    for line in open(path):
        name, rest = line.split(":", 1)
        out[name.removeprefix("cmdstat_")] = int(rest.split(",")[0].split("=")[1])
    return out
before, after = calls(f"{work}/cmd-before"), calls(f"{work}/cmd-after")
top = sorted(((after[k] - before.get(k, 0), k) for k in after if k != "info"), reverse=True)
print("  by command: " + ", ".join(f"{k} {n / per:.2f}" for n, k in top if n))
total = sum(cpu.values())
print("CPU at the door (per accepted claim, share): " + ", ".join(
    f"{k} {t / hz / per * 1e6:.0f} µs ({100 * t / max(total, 1):.0f} %)" for k, t in cpu.items()))
PY

# 2. The fill (not measured): the rest of the claims through both nodes.
fill=$(( $(wc -l < "$work/fill1.txt") ))
if [ "$fill" -gt 0 ]; then
  fill_rate=$(( rate / 2 )); fill_s=$(( fill / fill_rate + 2 ))
  load "$a1" "$work/fill1.txt" "$fill_rate" "${fill_s}s" "$work/fill1.json" &
  l1=$!
  load "$a2" "$work/fill2.txt" "$fill_rate" "${fill_s}s" "$work/fill2.json" &
  l2=$!
  wait $l1 $l2
fi
campaign_id=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["campaign"]["id"])' "$work/campaign.toml")
queued=$(redis-cli -p "$redis_port" hlen "$ns:{$campaign_id}:orders")
unpublished=$(redis-cli -p "$redis_port" zcard "$ns:{$campaign_id}:should_send")
echo "queued for delivery: $queued orders ($unpublished recorded but not yet published)"

# 3. The drain: 3 workers, the game simulator at its capacity.
stats() { curl -s "http://127.0.0.1:$sim_port/idip/v1/stats"; }
applied() { stats | python3 -c 'import json,sys; print(sum(g["applied"] for g in json.load(sys.stdin)["games"].values()))'; }
t_redis=$(ticks $redis); t_nats=$(ticks $nats)
started=$(date +%s.%N)
workers=()
for port in "$w1" "$w2" "$w3"; do node worker 0 "$port" "$work/worker-$port.log"; workers+=($!); pids+=($!); done
limit=$(( queued / capacity * 3 + 60 ))
first=""
while :; do
  done_n=$(applied)
  [ -z "$first" ] && [ "$done_n" -gt 0 ] && first=$(date +%s.%N)
  [ "$done_n" -ge "$queued" ] && break
  if [ "$(echo "$(date +%s.%N) - $started > $limit" | bc)" = 1 ]; then
    echo "drain: not finished after $limit s ($done_n of $queued applied)" >&2; break
  fi
  sleep 0.2
done
ended=$(date +%s.%N)
drain_s=$(echo "$ended - $started" | bc); flowing_s=$(echo "$ended - ${first:-$started}" | bc)
w_ticks=0; for w in "${workers[@]}"; do w_ticks=$(( w_ticks + $(ticks "$w") )); done
stats > "$work/stats.json"
python3 - "$work/stats.json" "$queued" "$capacity" "$drain_s" "$flowing_s" "$hz" "$w_ticks" "$(( $(ticks $redis) - t_redis ))" "$(( $(ticks $nats) - t_nats ))" <<'PY'
import json, sys
games = json.load(open(sys.argv[1]))["games"]
queued, capacity = int(sys.argv[2]), int(sys.argv[3])
drain_s, flowing_s, hz = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
workers, redis, nats = (int(x) for x in sys.argv[7:10])
applied = sum(g["applied"] for g in games.values())
# The backlog cannot drain faster than its slowest game: its orders ÷ its capacity.
slowest = max(games.items(), key=lambda kv: kv[1]["applied"] / kv[1]["capacity_per_s"])
ideal = slowest[1]["applied"] / slowest[1]["capacity_per_s"]
print(f"drain: {applied} of {queued} applied by 3 workers in {drain_s:.1f} s from their start, "
      f"{flowing_s:.1f} s from the first delivery; ideal {ideal:.1f} s ({slowest[0]}: "
      f"{slowest[1]['applied']} ÷ {slowest[1]['capacity_per_s']}/s; all games {capacity}/s); "
      f"ratio {flowing_s / max(ideal, 1e-9):.2f} from the first delivery")
per = max(applied, 1)
print(f"CPU of the drain per delivery: workers {workers / hz / per * 1e6:.0f} µs, "
      f"redis-server {redis / hz / per * 1e6:.0f} µs, nats-server {nats / hz / per * 1e6:.0f} µs")
print("| game | applied | busiest second | capacity/s | within |")
print("| --- | ---: | ---: | ---: | --- |")
for name, g in sorted(games.items()):
    ok = "yes" if g["max_applied_in_1s"] <= g["capacity_per_s"] else "NO"
    print(f"| {name} | {g['applied']} | {g['max_applied_in_1s']} | {g['capacity_per_s']} | {ok} |")
print("game side: %d busy refusals, %d duplicates refused" % tuple(sum(g.get(k, 0) for g in games.values()) for k in ("busy", "duplicates")))
PY
echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD)"
