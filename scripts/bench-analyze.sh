#!/usr/bin/env bash
# Conflict-analysis benchmark (`benches/analyze.rs`): full analysis of
# generated sets of N policies × 10 rules with planted conflicts, at
# N = 100, 1,000 and 5,000; median of several runs per size.
#
#   scripts/bench-analyze.sh [--sizes 100,1000] [--runs 5] [--threads 2]
#
# Prints the machine (cores, load average) with the table, and keeps a copy
# in $CARGO_TARGET_DIR/bench-analyze/ (default target/bench-analyze/).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=$target/bench-analyze
while [ $# -gt 0 ]; do
  case $1 in
    --sizes) export SLUICE_BENCH_SIZES=$2; shift ;;
    --runs) export SLUICE_BENCH_RUNS=$2; shift ;;
    --threads) export SLUICE_BENCH_THREADS=$2; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
cd "$root"
cargo bench --bench analyze --no-run
stamp=$(date -u +%Y%m%dT%H%M%SZ)
{
  echo "machine: $(nproc) core(s), $(uname -m), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  cargo bench --bench analyze 2>/dev/null
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/$stamp.txt"
