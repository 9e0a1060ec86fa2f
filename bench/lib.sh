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
  sed "s/^starts_at = .*/starts_at = \"$start\"/" config/spring-festival.toml > "$1"
}
