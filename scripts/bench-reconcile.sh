#!/usr/bin/env bash
# Reconcile daemon latencies (benches/reconcile.rs): commit pushed → candidate
# in shadow on every engine (1 s interval; and with the git hook), rollback →
# every engine on stable and → revert commit pushed, automatic trigger →
# every engine on stable. 10 engines, 5 rounds. Then the daemon again at a
# 20 s interval: hook → candidate on every engine, rollback → every engine on
# stable, and the same with one engine stopped (SIGSTOP): the others on stable
# (median and max; an all-healthy baseline from the same run). Figures on the
# last two lines; recorded in README.md (Performance, the reconcile daemon).
#
#   scripts/bench-reconcile.sh                  # release build, 10 engines
#   BENCH_ENGINES=3 BENCH_ROUNDS=3 scripts/bench-reconcile.sh
#
# The engines and the daemon run as separate processes of the release
# binary (`SLUICE_ENGINE_BIN` may name another build of `sluice engine`).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet
export SLUICE_BIN="$PWD/$target/release/sluice"
[[ "$target" = /* ]] && export SLUICE_BIN="$target/release/sluice"
export BENCH_ENGINES="${BENCH_ENGINES:-10}"
export BENCH_ROUNDS="${BENCH_ROUNDS:-5}"
cargo bench --quiet --bench reconcile
