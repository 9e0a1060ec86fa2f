# Shared by the bench scripts (sourced, not run).

# Waits until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() {
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "port $1 never opened" >&2; exit 1
}

# Writes the example campaign to FILE, opened two hours ago so every release wave is open.
opened_campaign() {
  local start
  start="$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%S+00:00)"
  # Every request of a benchmark comes from one address (the load generator's), where a real
  # night's come from millions: the per-address rate limit is raised out of the way. The
  # per-user limits stay as the campaign has them (the scripts spread requests over users).
  sed -e "s/^starts_at = .*/starts_at = \"$start\"/" \
    -e "s/^ip_rate_per_s = .*/ip_rate_per_s = 10000000/" -e "s/^ip_burst = .*/ip_burst = 10000000/" \
    config/spring-festival.toml > "$1"
}

# Warms a node's role cache with gift lists (not measured) until every user of TOKENS has been
# listed at least twice. A fixed duration is not enough on a slow day, and each wrk run starts
# at the file's first user, so the runs go on from where the last one stopped. Bounded: at most
# 40 runs of 5 s. Usage: warm_roles URL TOKENS USERS [CONNECTIONS]
warm_roles() {
  local url=$1 tokens=$2 users=$3 conns=${4:-256} served=0 offset=0 n runs=0
  while [ "$served" -lt $((2 * users)) ] && [ "$runs" -lt 40 ]; do
    n=$(taskset -c 1 wrk -t1 -c"$conns" -d5s -s bench/wrk/list.lua "$url" -- "$tokens" "$offset" | awk '/requests in/ {print $1}')
    served=$((served + ${n:-0})); offset=$(( (offset + ${n:-0}) % users )); runs=$((runs + 1))
  done
  [ "$served" -ge $((2 * users)) ] || echo "warning: role cache warm-up served only $served lists for $users users" >&2
}

# Whether process $1 still runs (not a zombie).
running() { [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# Stops the processes in the array `pids`, last started first: SIGTERM, then SIGKILL to
# whatever still runs 10 s later (a worker whose Redis or NATS is gone may wait longer).
stop_pids() {
  local i p
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    for p in "${pids[@]}"; do running "$p" && break; done
    running "${p:-}" || break
    sleep 0.2
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null
}
