#!/usr/bin/env bash
# Evaluation benchmarks: the criterion bench of the main crate
# (`benches/eval.rs`), then the comparison with Cedar and regorus
# (`benches/peers`, a crate of its own), and a summary table of both.
#
#   scripts/bench-eval.sh [--quick] [--only criterion|peers|report] [-- PEERS_ARGS…]
#
# --quick     shorter criterion measurements and 3 peer runs instead of 7
# --only X    run one half only, or (report) print the table of the last runs
# PEERS_ARGS  passed to the peers binary (e.g. --sets 1000x10 --runs 9)
#
# Target folders: MAIN_TARGET_DIR (default: target) and PEERS_TARGET_DIR
# (default: benches/peers/target). Results land in $MAIN_TARGET_DIR/bench-eval/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
main_target=${MAIN_TARGET_DIR:-$root/target}
peers_target=${PEERS_TARGET_DIR:-$root/benches/peers/target}
out=$main_target/bench-eval
quick=0
only=
peers_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1 ;;
    --only) only=$2; shift ;;
    --) shift; peers_args=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"

# The median point estimate (ns) of a criterion benchmark, or empty.
criterion_median() {
  local f=$main_target/criterion/$1/$2/new/estimates.json
  [ -f "$f" ] || return 0
  tr -d ' \n' <"$f" | grep -o '"median":{[^}]*}[^}]*}' | grep -o '"point_estimate":[0-9.eE+-]*' |
    head -n 1 | cut -d: -f2
}

fmt_ns() {
  awk -v ns="$1" 'BEGIN {
    if (ns == "") { print "–"; exit }
    if (ns >= 1e6) printf "%.2f ms\n", ns / 1e6
    else if (ns >= 1e3) printf "%.2f µs\n", ns / 1e3
    else printf "%.0f ns\n", ns }'
}

cores=$(nproc 2>/dev/null || echo "?")
echo "machine: $cores cores, $(uname -m), load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

if [ "$only" != peers ] && [ "$only" != report ]; then
  echo "== criterion: cargo bench --bench eval"
  crit_args=()
  [ $quick = 1 ] && crit_args=(--warm-up-time 1 --measurement-time 2)
  (cd "$root" && CARGO_TARGET_DIR=$main_target cargo bench --bench eval -- "${crit_args[@]}") \
    2>&1 | tee "$out/criterion.log" | grep -E '^eval/|time:|skipped' || true
fi

if [ "$only" != criterion ] && [ "$only" != report ]; then
  echo "== peers: Cedar and regorus (benches/peers)"
  runs=()
  [ $quick = 1 ] && runs=(--runs 3)
  (cd "$root/benches/peers" && CARGO_TARGET_DIR=$peers_target cargo build --release --quiet)
  "$peers_target/release/peers" "${runs[@]}" --tsv "$out/peers.tsv" "${peers_args[@]}" |
    tee "$out/peers.log"
fi

echo
echo "== results (median per evaluation)"
echo
echo "criterion (wall-clock), sluice alone:"
echo
echo "| set | eval | decode + eval |"
echo "|---|---:|---:|"
for dir in "$main_target"/criterion/eval_*; do
  [ -d "$dir" ] || continue
  name=${dir##*/eval_}
  echo "| $name | $(fmt_ns "$(criterion_median "eval_$name" eval)") | $(fmt_ns "$(criterion_median "eval_$name" decode_eval)") |"
done
if [ -f "$out/peers.tsv" ]; then
  echo
  echo "peers, one process, same requests, decisions checked equal first;"
  echo "median on-CPU time per evaluation (wall-clock time where the system does not say):"
  echo
  awk -F'\t' '
    function fmt(ns) { return ns >= 1e6 ? sprintf("%.2f ms", ns / 1e6) : ns >= 1e3 ? sprintf("%.2f µs", ns / 1e3) : sprintf("%.0f ns", ns) }
    NR == 1 { next }
    { key = $1; rules[key] = $2; t[key, $3] = ($5 != "" ? $5 : $4); if (!(key in seen)) { seen[key] = 1; order[++n] = key } }
    END {
      print "| set | rules | sluice | Cedar | regorus RVM | regorus interpreter | Cedar / sluice | RVM / sluice |"
      print "|---|---:|---:|---:|---:|---:|---:|---:|"
      for (i = 1; i <= n; i++) {
        k = order[i]; s = t[k, "sluice"]; c = t[k, "cedar is_authorized"]
        r = ""; it = ""
        if (c == "") { printf "| %s (sluice only) | %d | %s | – | – | – | – | – |\n", k, rules[k], fmt(s); continue }
        for (e in t) { split(e, p, SUBSEP); if (p[1] == k && p[2] ~ /^regorus RVM/) r = t[e]; if (p[1] == k && p[2] == "regorus interpreter") it = t[e] }
        printf "| %s | %d | %s | %s | %s | %s | %.0f× | %.0f× |\n", k, rules[k], fmt(s), fmt(c), fmt(r), (it == "" ? "–" : fmt(it)), c / s, r / s
      }
    }' "$out/peers.tsv"
fi
echo
echo "logs: $out/"
