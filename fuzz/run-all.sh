#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after another (one process each: the machine's
# cores are shared), then prints a table: target, seconds, executions, exec/s, corpus size,
# crashes. Usage: fuzz/run-all.sh SECONDS [TARGET...]
#
# Seeds are read from seeds/<target>/ (committed); what a run finds is kept in corpus/<target>/
# and findings in artifacts/<target>/ (neither committed); each run's log is in runs/<target>.log.
# Needs nightly and cargo-fuzz (docs/SECURITY.md, "Fuzzing").
set -uo pipefail
cd "$(dirname "$0")"
seconds="${1:?usage: run-all.sh SECONDS [TARGET...]}"
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
mkdir -p runs
# Built once, with overflow checks and debug assertions (an overflow is a finding), then each
# target's binary runs directly. NO_BUILD=1 runs what was built last.
if [ -z "${NO_BUILD:-}" ]; then
  cargo +nightly fuzz build -O -a >runs/build.log 2>&1 || { tail -20 runs/build.log; exit 1; }
fi
bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/$(rustc -vV | sed -n 's/^host: //p')/release"
rows=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  dict=()
  [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
  "$bin_dir/$t" "corpus/$t" "seeds/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${dict[@]}" >"runs/$t.log" 2>&1
  status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "runs/$t.log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "runs/$t.log" | grep -o '[0-9]*$' | tail -1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
  rows+=("$t|$seconds|${execs:-?}|${rate:-?}|$corpus|$crashes|$status")
done
printf '\n%-20s %8s %12s %8s %8s %8s %6s\n' target seconds executions exec/s corpus crashes exit
for r in "${rows[@]}"; do
  IFS='|' read -r t s e x c k st <<<"$r"
  printf '%-20s %8s %12s %8s %8s %8s %6s\n' "$t" "$s" "$e" "$x" "$c" "$k" "$st"
done
