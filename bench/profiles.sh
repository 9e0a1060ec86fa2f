#!/usr/bin/env bash
# Generates and loads 10 million synthetic users and prints the figures for docs/BENCHMARKS.md.
# Usage: bench/profiles.sh [USERS]   (needs hyperfine: apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
users="${1:-10000000}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
[ -n "${NO_BUILD:-}" ] || cargo build --release -p hongbao --quiet
bin=target/release/hongbao
hyperfine --warmup 1 --runs 5 \
  "$bin gen --config config/spring-festival.toml --users $users --out $out --seed 42"
hyperfine --warmup 1 --runs 10 \
  "$bin profiles inspect --config config/spring-festival.toml --dir $out"
"$bin" profiles inspect --config config/spring-festival.toml --dir "$out"
ls -l "$out"
# Cold page cache, when allowed (root on a machine that permits it): the load from disk.
if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then
  echo "cold cache:"; "$bin" profiles inspect --config config/spring-festival.toml --dir "$out"
fi
