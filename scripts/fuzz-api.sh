#!/usr/bin/env bash
# Fuzzes the HTTP APIs with schemathesis (PyPI), from their own OpenAPI
# documents, against live release processes on loopback:
#   engine  `sluice engine` with a real artifact (compiled from policies/,
#           the starter repository) and a second one uploaded, so the
#           artifact, route and approval operations meet held artifacts;
#           the schema read from the engine's GET /openapi.json
#   daemon  `sluice reconcile` watching a bare git repository of the same
#           policies and driving an engine of its own; the schema read from
#           the daemon's GET /openapi.json
# Every operation of each document, in the examples, coverage and fuzzing
# phases, positive and negative data, with the admin (engine) or operator
# (daemon) token on every request, so the authenticated operations are
# exercised past their 401. The checks: not_a_server_error,
# status_code_conformance, content_type_conformance,
# response_schema_conformance (CHECKS to choose others, e.g. `all`).
#
#   scripts/fuzz-api.sh [--examples N] [--time SECS] [--target engine|daemon|both]
#                       [--seed N] [--workers N]
#
# --examples: at most N cases per operation and phase (default 200);
# --time: the budget of each target's run in seconds (default 300; the run
# is killed 60 s past it); --target: default both; --seed: schemathesis's
# seed (default random, printed so a run can be repeated).
# SLUICE_BIN: the binary (default: a release build made here).
# SLUICE_SCHEMATHESIS: an `st` executable (default: a venv created under
# the target folder with `pip install schemathesis`). Reports (JUnit XML,
# NDJSON events, the processes' logs) land in $target/fuzz-api/. Exits
# non-zero when schemathesis found a failure. Everything runs on 127.0.0.1,
# on free ports, and every process this script starts is stopped at the end.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
examples=200
budget=300
which=both
seed=""
workers=2
while [ $# -gt 0 ]; do
  case "$1" in
    --examples) examples=$2; shift 2 ;;
    --time) budget=$2; shift 2 ;;
    --target) which=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$which" in engine|daemon|both) ;; *) echo "--target engine|daemon|both" >&2; exit 2 ;; esac
[ -n "$seed" ] || seed=$(( (RANDOM << 15) | RANDOM ))
checks=${CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}
out=$target/fuzz-api
mkdir -p "$out"
command -v curl >/dev/null || { echo "curl is required" >&2; exit 2; }
command -v git >/dev/null || { echo "git is required" >&2; exit 2; }

if [ -z "${SLUICE_BIN:-}" ]; then
  echo "== building release" >&2
  (cd "$root" && cargo build --release --quiet --bin sluice)
  SLUICE_BIN=$target/release/sluice
fi
st=${SLUICE_SCHEMATHESIS:-$target/schemathesis-venv/bin/st}
if ! "$st" --version >/dev/null 2>&1; then
  echo "== installing schemathesis into $target/schemathesis-venv" >&2
  python3 -m venv "$target/schemathesis-venv"
  "$target/schemathesis-venv/bin/python" -m pip install -q schemathesis
  st=$target/schemathesis-venv/bin/st
fi
echo "== $("$st" --version), seed $seed, at most $examples cases per operation and phase, ${budget}s per target" >&2

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$p" 2>/dev/null || true
      wait "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_ok URL: waits (at most 20 s) until URL answers 200.
wait_ok() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing answers 200 at $1" >&2
  return 1
}

# The artifacts: the starter repository, and the same plus one policy.
repo=$root/policies
"$SLUICE_BIN" --repo "$repo" compile -o "$work/stable.json" >/dev/null 2>"$out/compile.log" ||
  { cat "$out/compile.log" >&2; exit 2; }
cp -r "$repo" "$work/candidate"
cat >"$work/candidate/policies/zz_fuzz.policy" <<'EOF'
policy zz_fuzz version 1.0.0 {
  tier operational
  rule retired { when tool == "legacy.export" deny RETIRED "This tool is retired" }
}
EOF
"$SLUICE_BIN" --repo "$work/candidate" compile -o "$work/candidate.json" >/dev/null 2>>"$out/compile.log" ||
  { cat "$out/compile.log" >&2; exit 2; }
hash_of() { sed -n 's/.*"hash":"\([0-9a-f]\{64\}\)".*/\1/p' "$1"; }

token="fuzz-admin-$$-$RANDOM-$RANDOM-$RANDOM"
operator="fuzz-operator-$$-$RANDOM-$RANDOM"
status=0

# start_engine LOG: an engine on a free port with the stable artifact; its
# URL in $engine_url.
start_engine() {
  local port
  port=$(free_port)
  RUST_LOG=warn SLUICE_ADMIN_TOKEN="$token" "$SLUICE_BIN" engine --listen "127.0.0.1:$port" \
    --artifact "$work/stable.json" 2>"$1" &
  pids+=($!)
  engine_url=http://127.0.0.1:$port
  wait_ok "$engine_url/readyz" || { cat "$1" >&2; exit 1; }
}

# fuzz NAME URL HEADER: schemathesis against the document URL serves.
fuzz() {
  local name=$1 url=$2 header=$3 rc=0 started
  echo "== schemathesis against the $name at $url" >&2
  started=$(date +%s)
  # From $out: schemathesis keeps its cache (failures it replays first on
  # the next run) in the current folder.
  (cd "$out" && timeout --kill-after=10 $((budget + 60)) "$st" run "$url/openapi.json" \
    --url "$url" -H "$header" \
    --checks "$checks" \
    --phases examples,coverage,fuzzing \
    --max-examples "$examples" --max-time "$budget" --seed "$seed" \
    --workers "$workers" --request-timeout 10 --max-response-time 5 \
    --suppress-health-check all --continue-on-failure \
    --report junit,ndjson \
    --report-junit-path "$out/$name.junit.xml" \
    --report-ndjson-path "$out/$name.ndjson" \
    --warnings off \
    >"$out/$name.txt" 2>&1) || rc=$?
  sed -n '/SUMMARY/,$p' "$out/$name.txt" >&2
  [ "$rc" = 0 ] || sed -n '/FAILURES/,/SUMMARY/p' "$out/$name.txt" >&2
  echo "== $name: exit $rc after $(( $(date +%s) - started ))s; the whole output in $out/$name.txt" >&2
  [ "$rc" = 0 ] || status=1
}

if [ "$which" != daemon ]; then
  start_engine "$out/engine.log"
  curl -fsS -X PUT -H "Authorization: Bearer $token" --data-binary @"$work/candidate.json" \
    "$engine_url/v1/artifacts/$(hash_of "$work/candidate.json")" >/dev/null
  fuzz engine "$engine_url" "Authorization: Bearer $token"
  # The engine is still alive and answering after it all.
  curl -fsS -o /dev/null "$engine_url/healthz" || { echo "the engine stopped answering" >&2; status=1; }
fi

if [ "$which" != engine ]; then
  start_engine "$out/daemon-engine.log"
  git init -q -b main "$work/src"
  cp -r "$repo"/. "$work/src"/
  git -C "$work/src" add -A
  git -C "$work/src" -c user.name=fuzz -c user.email=fuzz@localhost commit -qm "policies"
  git clone -q --bare "$work/src" "$work/remote.git"
  printf '%s\n' "$operator" >"$work/operator-token"
  port=$(free_port)
  RUST_LOG=warn "$SLUICE_BIN" reconcile --repo "$work/remote.git" --engine "$engine_url" \
    --admin-token "$token" --operator-token-file "$work/operator-token" \
    --state-dir "$work/state" --listen "127.0.0.1:$port" --interval 1s \
    2>"$out/daemon.log" &
  pids+=($!)
  daemon_url=http://127.0.0.1:$port
  wait_ok "$daemon_url/healthz" || { cat "$out/daemon.log" >&2; exit 1; }
  fuzz daemon "$daemon_url" "Authorization: Bearer $operator"
  curl -fsS -o /dev/null "$daemon_url/healthz" || { echo "the daemon stopped answering" >&2; status=1; }
fi
exit "$status"
