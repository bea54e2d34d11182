#!/usr/bin/env bash
# Runs every cargo-fuzz target under fuzz/ for a while each and reports
# executions and crashes. Not part of `cargo test`: fuzzing takes minutes to
# hours. Needs a nightly toolchain; installs cargo-fuzz when missing.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   RUNS=10000000 scripts/fuzz.sh 3600     # each target: 10 million
#                                          # executions or 1 hour, the first
#
# Every crash is left under fuzz/artifacts/TARGET/; turn each into a
# regression test before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-600}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(policy project request artifact route)
fi

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install cargo-fuzz --locked
fi

mkdir -p fuzz/corpus
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="$(mktemp)"
  echo "== $t: ${secs}s${RUNS:+ or $RUNS executions}"
  started=$SECONDS
  if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -runs="${RUNS:--1}" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      >"$log" 2>&1; then
    status=1
    echo "   CRASH: see fuzz/artifacts/$t/"
    grep -E "panicked|ERROR|SUMMARY" "$log" | head -5 || true
  fi
  runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')"
  echo "   executions: $runs in $((SECONDS - started))s"
  rm -f "$log"
done
exit "$status"
