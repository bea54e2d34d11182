#!/usr/bin/env bash
# Load benchmark of `sluice engine` on loopback.
#
# Measures requests/s, p99 latency and engine CPU per request for these
# scenarios, several interleaved runs each, and reports medians:
#   healthz  GET /healthz            the HTTP floor (no evaluation)
#   stable   POST /v1/evaluate       stable artifact only
#   shadow   POST /v1/evaluate       stable enforced + candidate in shadow
#   logged   POST /v1/evaluate       stable only, on a second engine that
#                                    writes the decision log (a file in the
#                                    run's temporary folder): the price of
#                                    the log is logged ÷ stable
# and with --redis, on an artifact whose every request is counted by a
# limit that never fills (per session), besides the payments limit per
# agent that does:
#   memlim   POST /v1/evaluate       limits in the engine's memory
#   redislim POST /v1/evaluate       limits in Redis (a redis-server this
#                                    script starts on loopback), the same
#                                    engine flags; redis-server's CPU too
# After the runs the Redis counters are checked: the per-session counts add
# up to the requests the Redis engine evaluated less at most those denied
# (the rules' denies count against no limit), none got the failsafe, and
# every per-agent count is at its max, never over.
# CPU per request comes from /proc/PID/stat (utime + stime of the engine
# process) over each run, divided by the requests wrk completed; wrk's own
# CPU is measured too, so the report can say what two idle cores would
# sustain when the machine is shared with other work.
#
# Usage: scripts/load.sh [--runs N] [--duration SECS] [--connections N[,N…]]
#                        [--threads N] [--workers N] [--repo DIR] [--redis]
#                        [--scenarios "healthz stable …"]
# Environment: CARGO_TARGET_DIR is honoured; PORT (default 7499; the
# scenarios use PORT..PORT+4).
#
# Installs wrk (and redis-server with --redis) from apt when missing. Everything runs on 127.0.0.1 and stops by
# itself; the engine is stopped with SIGTERM at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3
DURATION=10
CONNECTIONS=64
THREADS=1
WORKERS=""
REPO=""
REDIS=0
SCENARIOS=""
PORT=${PORT:-7499}
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --repo) REPO=$2; shift 2 ;;
    --redis) REDIS=1; shift ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk" >&2
  as_root apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q wrk >/dev/null
fi
command -v curl >/dev/null 2>&1 || { echo "curl is required" >&2; exit 2; }
if [ "$REDIS" = 1 ] && ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server" >&2
  as_root apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q redis-server >/dev/null
fi
if [ -z "$SCENARIOS" ]; then
  SCENARIOS="healthz stable logged shadow"
  [ "$REDIS" = 1 ] && SCENARIOS="healthz memlim redislim"
fi

echo "== building release" >&2
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/sluice"

WORK=$(mktemp -d)
ENGINE_PID=""
MEM_PID=""
RED_PID=""
REDIS_PID=""
LOG_PID=""
cleanup() {
  for pid in "$ENGINE_PID" "$MEM_PID" "$RED_PID" "$REDIS_PID" "$LOG_PID"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

# The policy repository: policies/ (the starter repository) when present,
# else a small one written here with the same request schema.
if [ -z "$REPO" ]; then
  if [ -f policies/sluice.toml ]; then REPO=policies; else REPO="$WORK/repo"; fi
fi
# write_repo DIR: a small policy repository with the starter schema.
write_repo() {
  mkdir -p "$1/policies"
  cat >"$1/sluice.toml" <<'EOF'
[project]
name = "load"
default = "deny"

[schema]
tool = "string"
agent = "string"
org = "string"
session = "string"
"args.amount?" = "int"
"args.country?" = "string"
"args.recipients?" = "set<string>"
"args.body?" = "string"
"args.command?" = "string"
"args.url?" = "string"
"args.host?" = "string"
EOF
  cat >"$1/policies/payments.policy" <<'EOF'
policy payments version 1.0.0 {
  tier security
  rule sanctioned {
    when tool == "payments.transfer" and args.country in ["CU", "IR", "KP", "SY"]
    deny SANCTIONED "Transfers to sanctioned countries are blocked"
  }
  rule large {
    when tool == "payments.transfer" and args.amount > 1000
    require_approval "finance" via "approvals.request" APPROVAL_REQUIRED "Large transfer"
  }
  rule small {
    when tool == "payments.transfer" and args.amount <= 1000 and args.country in ["DE", "FR", "US"]
    allow
  }
  limit per_agent {
    when tool == "payments.transfer"
    max 200 per 1d by agent
    exceed deny RATE_LIMITED "Daily transfer limit reached"
    on_decrease next_window
  }
}
EOF
  # The approval `payments.large` asks for can be asked (default deny).
  cat >"$1/policies/approvals.policy" <<'EOF'
policy approvals version 1.0.0 {
  tier operational
  rule ask { when tool == "approvals.request" allow }
}
EOF
  cat >"$1/policies/email.policy" <<'EOF'
policy email version 1.0.0 {
  tier operational
  rule ssn {
    when tool == "email.send" and has(args.body) and args.body matches "[0-9]{3}-[0-9]{2}-[0-9]{4}"
    modify args.body = redact(args.body, "[0-9]{3}-[0-9]{2}-[0-9]{4}") PII_REDACTED "SSN-like number removed"
  }
  rule send { when tool == "email.send" and len(args.recipients) <= 20 allow }
  limit per_session {
    when tool == "email.send"
    max 1000000 per 1h by session
    exceed deny MAIL_RATE "Too many mails"
  }
}
EOF
  cat >"$1/policies/shell.policy" <<'EOF'
policy shell version 1.0.0 {
  tier security
  rule destructive {
    when tool == "shell.exec" and (args.command contains "rm -rf" or args.command matches "mkfs|dd if=")
    deny DESTRUCTIVE "Destructive command"
  }
  rule read_only { when tool == "shell.exec" and args.command starts_with "ls" allow }
}
EOF
  cat >"$1/policies/web.policy" <<'EOF'
policy web version 1.0.0 {
  tier operational
  rule internal { when tool == "web.fetch" and args.host ends_with ".internal" deny INTERNAL "Internal host" }
  rule fetch { when tool == "web.fetch" and args.url starts_with "https://" allow }
}
EOF
}
if [ ! -f "$REPO/sluice.toml" ]; then
  write_repo "$REPO"
fi

# The candidate: the same repository plus one extra policy.
CAND="$WORK/candidate"
mkdir -p "$CAND"
cp -r "$REPO"/. "$CAND"/
mkdir -p "$CAND/policies"
cat >"$CAND/policies/zz_loadtest.policy" <<'EOF'
policy zz_loadtest version 1.0.0 {
  tier operational
  rule no_force_push {
    when tool == "shell.exec" and args.command contains "--force"
    deny FORCE_PUSH "Force pushes are refused"
  }
}
EOF

echo "== compiling $REPO" >&2
"$BIN" --repo "$REPO" compile -o "$WORK/stable.json" 2>"$WORK/compile.log" || { cat "$WORK/compile.log" >&2; exit 2; }
"$BIN" --repo "$CAND" compile -o "$WORK/candidate.json" 2>>"$WORK/compile.log" || { cat "$WORK/compile.log" >&2; exit 2; }
hash_of() { sed -n 's/.*"hash":"\([0-9a-f]\{64\}\)".*/\1/p' "$1"; }
STABLE=$(hash_of "$WORK/stable.json")
CANDIDATE=$(hash_of "$WORK/candidate.json")

# The limits artifact: the small repository plus a limit on every request.
LIMITS="$WORK/limits"
write_repo "$LIMITS"
cat >"$LIMITS/policies/zz_count.policy" <<'EOF'
policy zz_count version 1.0.0 {
  tier operational
  limit per_session {
    when tool != ""
    max 1000000000 per 1h by session
    exceed deny LOAD_CAP "Load cap"
  }
}
EOF
"$BIN" --repo "$LIMITS" compile -o "$WORK/limits.json" 2>>"$WORK/compile.log" || { cat "$WORK/compile.log" >&2; exit 2; }

TOKEN="load-token-$$-$RANDOM-$RANDOM"
BASE="http://127.0.0.1:$PORT"
MEM_BASE="http://127.0.0.1:$((PORT + 1))"
RED_BASE="http://127.0.0.1:$((PORT + 2))"
REDIS_PORT=$((PORT + 3))
LOG_BASE="http://127.0.0.1:$((PORT + 4))"
PREFIX="load-$$"
# Every port this run listens on must be free (another program answering
# there would be measured instead).
for p in "$PORT" $((PORT + 1)) $((PORT + 2)) $((PORT + 3)) $((PORT + 4)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is in use: choose another range with PORT=N (N..N+4)" >&2
    exit 2
  fi
done
workers=()
[ -n "$WORKERS" ] && workers=(--workers "$WORKERS")
# start_engine PORT ARTIFACT LOG [FLAGS…]: starts an engine in the
# background (its PID in $STARTED) and waits until it is ready.
start_engine() {
  local port=$1 artifact=$2 log=$3
  shift 3
  RUST_LOG=warn SLUICE_ADMIN_TOKEN="$TOKEN" "$BIN" engine --listen "127.0.0.1:$port" \
    --artifact "$artifact" --shadow-queue 65536 "${workers[@]}" "$@" 2>"$log" &
  STARTED=$!
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$log" >&2; exit 1; }
}
start_engine "$PORT" "$WORK/stable.json" "$WORK/engine.log"
ENGINE_PID=$STARTED
if [[ " $SCENARIOS " == *" logged "* ]]; then
  start_engine "$((PORT + 4))" "$WORK/stable.json" "$WORK/engine-logged.log" \
    --decision-log "$WORK/decisions.jsonl"
  LOG_PID=$STARTED
fi
if [ "$REDIS" = 1 ]; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 50); do
    [ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
  start_engine "$((PORT + 1))" "$WORK/limits.json" "$WORK/engine-mem.log"
  MEM_PID=$STARTED
  start_engine "$((PORT + 2))" "$WORK/limits.json" "$WORK/engine-redis.log" \
    --state-backend "redis://127.0.0.1:$REDIS_PORT" --state-prefix "$PREFIX"
  RED_PID=$STARTED
fi
curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" --data-binary @"$WORK/candidate.json" \
  "$BASE/v1/artifacts/$CANDIDATE" >/dev/null

# route ROUTE: puts ROUTE in force on the main engine, fenced like the
# daemon's changes: as owner load-$$, over the version in force, with a
# lease (the longest) that outlasts the run.
route() {
  local version
  version=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE/v1/route" |
    grep -o '"version":[0-9]*' | head -n 1 | cut -d: -f2)
  curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"owner\":\"load-$$\",\"expect\":${version:-0},\"lease_ms\":3600000,\"route\":$1}" \
    "$BASE/v1/route" >/dev/null
}

# Requests: a mix over the tools, 64 sessions and 8 agents; wrk rotates them.
cat >"$WORK/eval.lua" <<'EOF'
local bodies = {}
local tools = {
  '"tool":"payments.transfer","args":{"amount":%d,"country":"DE"}',
  '"tool":"email.send","args":{"recipients":["a@x.io","b@y.io"],"body":"call me at 123-45-6789 #%d"}',
  '"tool":"shell.exec","args":{"command":"ls -la /tmp/%d"}',
  '"tool":"web.fetch","args":{"url":"https://example.org/%d","host":"example.org"}',
  '"tool":"shell.exec","args":{"command":"git push --force origin %d"}',
}
for i = 0, 255 do
  local t = tools[(i % #tools) + 1]
  bodies[#bodies + 1] = string.format(
    '{"agent":"agent-%d","org":"acme","session":"s-%d",' .. t .. '}',
    i % 8, i % 64, (i * 37) % 1500 + 1)
end
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/evaluate", {["Content-Type"] = "application/json"},
    bodies[(n % #bodies) + 1])
end
EOF
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %d %.1f %d\n", summary.requests, summary.duration,
    latency:percentile(99), errors))
end
EOF
cat "$WORK/report.lua" >>"$WORK/eval.lua"

# One sample request must evaluate.
curl -fsS -X POST -H 'Content-Type: application/json' \
  -d '{"agent":"agent-1","org":"acme","session":"s-1","tool":"shell.exec","args":{"command":"ls"}}' \
  "$BASE/v1/evaluate" >/dev/null || { echo "the sample request failed" >&2; exit 1; }

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run NAME CONNS: one wrk run; appends "rps p99_ms engine_us_per_req
# wrk_us_per_req redis_us_per_req" to $WORK/NAME-CONNS.
run() {
  local name=$1 conns=$2 script pid=$ENGINE_PID
  case "$name" in
    healthz) script=(-s "$WORK/report.lua" "$BASE/healthz") ;;
    stable) route "{\"stable\":\"$STABLE\"}"; script=(-s "$WORK/eval.lua" "$BASE/v1/evaluate") ;;
    shadow) route "{\"stable\":\"$STABLE\",\"candidate\":\"$CANDIDATE\",\"mode\":\"shadow\",\"stage\":\"shadow\"}"
            script=(-s "$WORK/eval.lua" "$BASE/v1/evaluate") ;;
    logged) pid=$LOG_PID; script=(-s "$WORK/eval.lua" "$LOG_BASE/v1/evaluate") ;;
    memlim) pid=$MEM_PID; script=(-s "$WORK/eval.lua" "$MEM_BASE/v1/evaluate") ;;
    redislim) pid=$RED_PID; script=(-s "$WORK/eval.lua" "$RED_BASE/v1/evaluate") ;;
  esac
  local before after out rbefore=0 rafter=0
  before=$(cpu_ticks "$pid")
  [ "$name" = redislim ] && rbefore=$(cpu_ticks "$REDIS_PID")
  # wrk's own CPU (user, system seconds) through bash's `time`.
  out=$( { TIMEFORMAT='WRKCPU %U %S'; time wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" "${script[@]}"; } 2>&1 )
  # Let the shadow worker finish the queue so its CPU is counted.
  sleep 0.5
  after=$(cpu_ticks "$pid")
  [ "$name" = redislim ] && rafter=$(cpu_ticks "$REDIS_PID")
  local line
  line=$(grep '^RESULT' <<<"$out")
  read -r _ requests duration_us p99_us errors <<<"$line"
  read -r _ wrk_user wrk_sys <<<"$(grep '^WRKCPU' <<<"$out")"
  if [ "$errors" != "0" ]; then echo "$name: $errors socket/status errors" >&2; fi
  awk -v r="$requests" -v d="$duration_us" -v p="$p99_us" -v t=$((after - before)) -v hz="$TICKS" \
    -v wu="$wrk_user" -v ws="$wrk_sys" -v rt=$((rafter - rbefore)) \
    'BEGIN { printf "%.0f %.3f %.2f %.2f %.2f\n", r / (d / 1e6), p / 1000, (t / hz) / r * 1e6, (wu + ws) / r * 1e6, (rt / hz) / r * 1e6 }' >>"$WORK/$name-$conns"
  printf '  %-8s -c%-3s run: %s  (load %s)\n' "$name" "$conns" "$(tail -1 "$WORK/$name-$conns")" "$(cut -d' ' -f1 /proc/loadavg)" >&2
}

median() { sort -n | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }

CONNS_LIST=${CONNECTIONS//,/ }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== $RUNS interleaved runs of ${DURATION}s, wrk -t$THREADS, connections $CONNS_LIST, $(nproc) cores, load average $LOAD_BEFORE" >&2
# Warm-up.
wrk -t1 -c8 -d2s -s "$WORK/eval.lua" "$BASE/v1/evaluate" >/dev/null
for i in $(seq 1 "$RUNS"); do
  echo " round $i" >&2
  for c in $CONNS_LIST; do
    for s in $SCENARIOS; do run "$s" "$c"; done
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

shadow_stats=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE/v1/stats")
dropped=$(sed -n 's/.*"shadow_dropped_total":\([0-9]*\).*/\1/p' <<<"$shadow_stats")

median() { sort -n | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }

echo
echo "sluice engine load benchmark ($(nproc) cores, load generator on the same machine)"
echo "artifact: $REPO ($STABLE)"
echo "load average before: $LOAD_BEFORE, after: $LOAD_AFTER (other work on the machine weighs on every scenario alike: they are interleaved)"
printf '%-9s %5s %9s %8s %13s %11s %13s %14s\n' scenario conns "req/s" "p99 ms" "engine us/req" "wrk us/req" "redis us/req" "2-core ceiling"
for c in $CONNS_LIST; do
  for s in $SCENARIOS; do
    f="$s-$c"
    r=$(col "$f" 1); p=$(col "$f" 2); e=$(col "$f" 3); g=$(col "$f" 4); rd=$(col "$f" 5)
    printf '%-9s %5s %9s %8s %13s %11s %13s %14s\n' "$s" "$c" "$r" "$p" "$e" "$g" "$rd" \
      "$(awk -v c="$e" -v g="$g" -v x="$rd" 'BEGIN { printf "%.0f", 2e6 / (c + g + x) }')"
  done
  if has memlim && has redislim; then
    echo "  -c$c redislim ÷ memlim: req/s $(ratio "$(col "redislim-$c" 1)" "$(col "memlim-$c" 1)"), engine CPU/req $(ratio "$(col "redislim-$c" 3)" "$(col "memlim-$c" 3)")"
  fi
  if has stable && has logged; then
    echo "  -c$c logged ÷ stable: req/s $(ratio "$(col "logged-$c" 1)" "$(col "stable-$c" 1)"), p99 $(ratio "$(col "logged-$c" 2)" "$(col "stable-$c" 2)"), CPU/req $(ratio "$(col "logged-$c" 3)" "$(col "stable-$c" 3)")"
  fi
  if has stable && has shadow; then
    echo "  -c$c shadow ÷ stable: req/s $(ratio "$(col "shadow-$c" 1)" "$(col "stable-$c" 1)"), CPU/req $(ratio "$(col "shadow-$c" 3)" "$(col "stable-$c" 3)")"
  fi
done
echo "(2-core ceiling: req/s if the engine, wrk and redis-server had both cores to themselves: 2 s ÷ their CPU per request)"
has shadow && echo "shadow evaluations dropped (whole run): ${dropped:-?}"
if has logged; then
  log_stats=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$LOG_BASE/v1/stats")
  log_written=$(grep -o '"decision_log":{[^}]*}' <<<"$log_stats" | grep -o '"written":[0-9]*' | cut -d: -f2)
  log_dropped=$(grep -o '"decision_log":{[^}]*}' <<<"$log_stats" | grep -o '"dropped":[0-9]*' | cut -d: -f2)
  echo "decision log (logged engine, whole run): ${log_written:-?} lines written, ${log_dropped:-?} dropped, $(du -h "$WORK/decisions.jsonl" | cut -f1) on disk"
fi
echo "medians of $RUNS runs of ${DURATION}s each"

# Exact counts: every request the rules do not deny is counted once by the
# per-session limit (requests the rules deny count against no limit: the
# mix's force pushes; those a limit refuses still count against the others),
# and no per-agent count is over its max. The engine's figures do not tell a
# rules' deny from a limit's, so the check is the pair of bounds that holds
# exactly when nothing is lost and nothing is counted twice:
# evaluated - denied <= counted <= evaluated.
if has redislim; then
  stats=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$RED_BASE/v1/stats")
  figure() { grep -o "\"$1\":[0-9]*" <<<"$stats" | awk -F: '{s += $2} END {print s + 0}'; }
  evaluated=$(figure requests)
  denied=$(figure deny)
  failsafe=$(( $(figure failsafe) + $(figure errors) ))
  counted=0
  while read -r key; do
    [ -n "$key" ] || continue
    counted=$((counted + $(redis-cli -p "$REDIS_PORT" HGET "$key" n)))
  done < <(redis-cli -p "$REDIS_PORT" --scan --pattern "$PREFIX:c:zz_count.per_session:*")
  agent_counts=$(redis-cli -p "$REDIS_PORT" --scan --pattern "$PREFIX:c:payments.per_agent:*" |
    while read -r k; do redis-cli -p "$REDIS_PORT" HGET "$k" n; done | sort -n)
  agents=$(wc -l <<<"$agent_counts")
  lowest=$(head -1 <<<"$agent_counts")
  highest=$(tail -1 <<<"$agent_counts")
  echo "redis exactness: $evaluated requests evaluated ($denied denied; failsafe or errors: $failsafe), $counted counted by the per-session limit; $agents per-agent counters from $lowest to $highest (max 200)"
  if [ "$counted" -gt "$evaluated" ] || [ "$counted" -lt $((evaluated - denied)) ] ||
    [ "$failsafe" != 0 ] || [ "${highest:-0}" -gt 200 ]; then
    echo "redis counts are NOT exact" >&2
    exit 1
  fi
fi
