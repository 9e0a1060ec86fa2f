#!/usr/bin/env bash
# Same-run A/B of two builds: REV (built in a worktree of its own) against the working tree, each
# benchmark run alternating between them, so both see the same machine.
#   claim     bench/claim-cpu.sh   (claim CPU per request against the floor's)
#   delivery  bench/delivery.sh S  (drain a backlog of S seconds of every game's capacity;
#                                   S = 20 is 100,000 orders)
# Usage: bench/ab.sh REV claim|delivery [RUNS] [S]
#   Each side runs its own tree's benchmark script and campaign (flags and campaign fields may
#   differ between the two revisions); the measuring is the same.
#   BASE_BIN / NEW_BIN skip the builds and use these binaries instead (with this tree's scripts).
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: bench/ab.sh REV claim|delivery [RUNS] [S]}"
what="${2:?usage: bench/ab.sh REV claim|delivery [RUNS] [S]}"
runs="${3:-3}"
balance_s="${4:-20}"
base_scripts="$PWD"
if [ -z "${BASE_BIN:-}" ]; then
  base_tree="${BASE_TREE:-/tmp/hongbao-ab-$rev}"
  base_scripts="$base_tree"
  [ -d "$base_tree" ] || git worktree add --detach "$base_tree" "$rev" >/dev/null
  (cd "$base_tree" && cargo build --release -p hongbao --quiet)
  BASE_BIN="$base_tree/target/release/hongbao"
fi
if [ -z "${NEW_BIN:-}" ]; then
  cargo build --release -p hongbao --quiet
  NEW_BIN="$PWD/target/release/hongbao"
fi
for i in $(seq 1 "$runs"); do
  for side in base new; do
    if [ "$side" = base ]; then bin="$BASE_BIN"; tree="$base_scripts"; else bin="$NEW_BIN"; tree="$PWD"; fi
    echo "== run $i $side ($bin)"
    case "$what" in
      claim) WORK="/tmp/hongbao-ab-claim-$side" BIN="$bin" "$tree/bench/claim-cpu.sh" 2>&1 | grep -E "^floor|claim cpu by thread" ;;
      delivery) NO_BUILD=1 BIN="$bin" "$tree/bench/delivery.sh" "$balance_s" 2>&1 | grep -vE "^$" ;;
      *) echo "unknown benchmark $what (claim or delivery)" >&2; exit 2 ;;
    esac
  done
done
