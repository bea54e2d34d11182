#!/usr/bin/env bash
# Conflict-analysis benchmark (`benches/analyze.rs`), every figure in one run:
#  - full analysis of generated sets of N policies × 10 rules with planted
#    conflicts, at N = 100, 1,000, 5,000 and 10,000; median of several runs
#    per size;
#  - 1,000 rules on one tool (500 allows, 500 denies, each `ends_with` a
#    suffix of its own), median of five runs;
#  - the pull-request check on git repositories of 1,000 and 10,000 policies
#    where the head commit changes one (one new conflict), in-process (both
#    revisions read from the object database) with the decision diff (what
#    the change does to decisions), without it (the same run's baseline)
#    and, for reference, with both revisions analysed in full;
#  - the release binary end to end on that repository, with hyperfine (or a
#    loop timed by bash when hyperfine is missing):
#    `sluice check --repo R --base HEAD~1` (head from the working tree),
#    `sluice check --repo R --base HEAD~1 --head HEAD`, and the plain
#    `sluice check --repo R` (the whole set analysed) for comparison.
#
#   scripts/bench-analyze.sh [--sizes 100,1000] [--runs 5] [--threads 2] [--pr-size 1000,10000]
#
# Prints the machine (cores, load average) with the tables, and keeps a copy
# in $CARGO_TARGET_DIR/bench-analyze/ (default target/bench-analyze/).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=$target/bench-analyze
runs=5
while [ $# -gt 0 ]; do
  case $1 in
    --sizes) export SLUICE_BENCH_SIZES=$2; shift ;;
    --runs) export SLUICE_BENCH_RUNS=$2; runs=$2; shift ;;
    --threads) export SLUICE_BENCH_THREADS=$2; shift ;;
    --pr-size) export SLUICE_BENCH_PR_SIZE=$2; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
cd "$root"
cargo build --release --bin sluice
cargo bench --bench analyze --no-run
bin=$target/release/sluice
stamp=$(date -u +%Y%m%dT%H%M%SZ)
repo=$out/pr-repo-$stamp
export SLUICE_BENCH_PR_REPO=$repo
trap 'rm -rf "$repo"-*' EXIT

# The binary on the pull-request repository: exit status 1 is expected (the
# change introduces an error).
time_binary() {
  local name=$1; shift
  if command -v hyperfine >/dev/null 2>&1; then
    hyperfine --style basic --warmup 1 --runs "$((runs * 2))" --ignore-failure \
      --export-json "$out/$stamp-$name.json" -n "$name" "$*" |
      sed -n '/Time (mean/p;/Range (min/p'
    python3 - "$out/$stamp-$name.json" <<'PY' 2>/dev/null || true
import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"  median {statistics.median(r['times']):.3f} s over {len(r['times'])} runs")
PY
  else
    local times=()
    for _ in $(seq "$((runs * 2))"); do
      local t0 t1
      t0=$(date +%s.%N)
      "$@" >/dev/null 2>&1 || true
      t1=$(date +%s.%N)
      times+=("$(echo "$t1 - $t0" | bc)")
    done
    printf '%s\n' "${times[@]}" | sort -n |
      awk '{a[NR]=$1} END {printf "  median %.3f s over %d runs (min %.3f, max %.3f)\n", a[int((NR+1)/2)], NR, a[1], a[NR]}'
  fi
}

{
  echo "machine: $(nproc) core(s), $(uname -m), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  cargo bench --bench analyze 2>/dev/null
  for r in "$repo"-*; do
    [ -d "$r" ] || continue
    n=${r##*-}
    echo
    echo "the release binary end to end on $n policies ($(cut -d' ' -f1-3 /proc/loadavg) load average):"
    echo "sluice check --repo R --base HEAD~1 (with the decision diff)"
    time_binary "base-$n" "$bin" check --repo "$r" --base HEAD~1
    echo "sluice check --repo R --base HEAD~1 --head HEAD"
    time_binary "base-head-$n" "$bin" check --repo "$r" --base HEAD~1 --head HEAD
    echo "sluice check --repo R (the whole head set, full analysis, for comparison)"
    time_binary "full-$n" "$bin" check --repo "$r"
    echo "its report:"
    "$bin" check --repo "$r" --base HEAD~1 --format json 2>"$out/$stamp-notes.txt" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); print("  ", len(d["findings"]), "finding(s) (every error of the head, and what the change adds and does)"); print("  ", [f["code"] for f in d["findings"] if f["code"].startswith("change::")]); print("  ", d["summary"])' || true
    sed 's/^/  /' "$out/$stamp-notes.txt"
    rm -f "$out/$stamp-notes.txt"
  done
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/$stamp.txt"
