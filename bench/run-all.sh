#!/usr/bin/env bash
# Every figure in docs/BENCHMARKS.md that a script produces, in one command, rewriting the tables:
# the API suite (floor, list, grab, claim, fixed-rate latency, journey, group commit) and the
# delivery drain of a 1,000,000-order backlog. Takes about 15 minutes on the 2-core machine.
# Usage: bench/run-all.sh            needs: wrk, taskset, curl, bc, python3 (apt-get install wrk bc)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk bc; }
cargo build --release -p hongbao --quiet
NO_BUILD=1 bench/api.sh --write 10 256
out="$(mktemp)"
NO_BUILD=1 bench/delivery.sh 200 | tee "$out"
sed -n '/^| backlog/,$p' "$out" | python3 bench/replace-section.py docs/BENCHMARKS.md delivery
rm -f "$out"
echo "docs/BENCHMARKS.md rewritten"
