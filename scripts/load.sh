#!/usr/bin/env bash
# Load benchmark of `sluice engine` on loopback.
#
# Measures requests/s, p99 latency and engine CPU per request for three
# scenarios, several interleaved runs each, and reports medians:
#   healthz  GET /healthz            the HTTP floor (no evaluation)
#   stable   POST /v1/evaluate       stable artifact only
#   shadow   POST /v1/evaluate       stable enforced + candidate in shadow
# CPU per request comes from /proc/PID/stat (utime + stime of the engine
# process) over each run, divided by the requests wrk completed; wrk's own
# CPU is measured too, so the report can say what two idle cores would
# sustain when the machine is shared with other work.
#
# Usage: scripts/load.sh [--runs N] [--duration SECS] [--connections N]
#                        [--threads N] [--workers N] [--repo DIR]
# Environment: CARGO_TARGET_DIR is honoured; PORT (default 7499).
#
# Installs wrk (apt) when missing. Everything runs on 127.0.0.1 and stops by
# itself; the engine is stopped with SIGTERM at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3
DURATION=10
CONNECTIONS=64
THREADS=1
WORKERS=""
REPO=""
PORT=${PORT:-7499}
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --repo) REPO=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
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

echo "== building release" >&2
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/sluice"

WORK=$(mktemp -d)
ENGINE_PID=""
cleanup() {
  if [ -n "$ENGINE_PID" ] && kill -0 "$ENGINE_PID" 2>/dev/null; then
    kill -TERM "$ENGINE_PID" 2>/dev/null || true
    wait "$ENGINE_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The policy repository: policies/ (the starter repository) when present,
# else a small one written here with the same request schema.
if [ -z "$REPO" ]; then
  if [ -f policies/sluice.toml ]; then REPO=policies; else REPO="$WORK/repo"; fi
fi
if [ ! -f "$REPO/sluice.toml" ]; then
  mkdir -p "$REPO/policies"
  cat >"$REPO/sluice.toml" <<'EOF'
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
  cat >"$REPO/policies/payments.policy" <<'EOF'
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
  cat >"$REPO/policies/email.policy" <<'EOF'
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
  cat >"$REPO/policies/shell.policy" <<'EOF'
policy shell version 1.0.0 {
  tier security
  rule destructive {
    when tool == "shell.exec" and (args.command contains "rm -rf" or args.command matches "mkfs|dd if=")
    deny DESTRUCTIVE "Destructive command"
  }
  rule read_only { when tool == "shell.exec" and args.command starts_with "ls" allow }
}
EOF
  cat >"$REPO/policies/web.policy" <<'EOF'
policy web version 1.0.0 {
  tier operational
  rule internal { when tool == "web.fetch" and args.host ends_with ".internal" deny INTERNAL "Internal host" }
  rule fetch { when tool == "web.fetch" and args.url starts_with "https://" allow }
}
EOF
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

TOKEN="load-token-$$-$RANDOM-$RANDOM"
BASE="http://127.0.0.1:$PORT"
workers=()
[ -n "$WORKERS" ] && workers=(--workers "$WORKERS")
RUST_LOG=warn SLUICE_ADMIN_TOKEN="$TOKEN" "$BIN" engine --listen "127.0.0.1:$PORT" \
  --artifact "$WORK/stable.json" --shadow-queue 65536 "${workers[@]}" 2>"$WORK/engine.log" &
ENGINE_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$BASE/healthz" >/dev/null || { cat "$WORK/engine.log" >&2; exit 1; }
curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" --data-binary @"$WORK/candidate.json" \
  "$BASE/v1/artifacts/$CANDIDATE" >/dev/null

route() {
  curl -fsS -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "$1" "$BASE/v1/route" >/dev/null
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
cpu_ticks() { awk '{print $14 + $15}' "/proc/$ENGINE_PID/stat"; }

# run NAME: one wrk run; appends "rps p99_ms cpu_us_per_req" to $WORK/NAME.
run() {
  local name=$1 script
  case "$name" in
    healthz) script=(-s "$WORK/report.lua" "$BASE/healthz") ;;
    stable) route "{\"stable\":\"$STABLE\"}"; script=(-s "$WORK/eval.lua" "$BASE/v1/evaluate") ;;
    shadow) route "{\"stable\":\"$STABLE\",\"candidate\":\"$CANDIDATE\",\"mode\":\"shadow\",\"stage\":\"shadow\"}"
            script=(-s "$WORK/eval.lua" "$BASE/v1/evaluate") ;;
  esac
  local before after out
  before=$(cpu_ticks)
  # wrk's own CPU (user, system seconds) through bash's `time`.
  out=$( { TIMEFORMAT='WRKCPU %U %S'; time wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "${script[@]}"; } 2>&1 )
  # Let the shadow worker finish the queue so its CPU is counted.
  sleep 0.5
  after=$(cpu_ticks)
  local line
  line=$(grep '^RESULT' <<<"$out")
  read -r _ requests duration_us p99_us errors <<<"$line"
  read -r _ wrk_user wrk_sys <<<"$(grep '^WRKCPU' <<<"$out")"
  if [ "$errors" != "0" ]; then echo "$name: $errors socket/status errors" >&2; fi
  awk -v r="$requests" -v d="$duration_us" -v p="$p99_us" -v t=$((after - before)) -v hz="$TICKS" \
    -v wu="$wrk_user" -v ws="$wrk_sys" \
    'BEGIN { printf "%.0f %.3f %.2f %.2f\n", r / (d / 1e6), p / 1000, (t / hz) / r * 1e6, (wu + ws) / r * 1e6 }' >>"$WORK/$name"
  printf '  %-8s run: %s\n' "$name" "$(tail -1 "$WORK/$name")" >&2
}

median() { sort -n | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }

echo "== $RUNS interleaved runs of ${DURATION}s, wrk -t$THREADS -c$CONNECTIONS, $(nproc) cores" >&2
# Warm-up.
wrk -t1 -c8 -d2s -s "$WORK/eval.lua" "$BASE/v1/evaluate" >/dev/null
for i in $(seq 1 "$RUNS"); do
  echo " round $i" >&2
  for s in healthz stable shadow; do run "$s"; done
done

shadow_stats=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$BASE/v1/stats")
dropped=$(sed -n 's/.*"shadow_dropped_total":\([0-9]*\).*/\1/p' <<<"$shadow_stats")

H_RPS=$(col healthz 1); S_RPS=$(col stable 1); W_RPS=$(col shadow 1)
H_P99=$(col healthz 2); S_P99=$(col stable 2); W_P99=$(col shadow 2)
H_CPU=$(col healthz 3); S_CPU=$(col stable 3); W_CPU=$(col shadow 3)
H_GEN=$(col healthz 4); S_GEN=$(col stable 4); W_GEN=$(col shadow 4)
echo
echo "sluice engine load benchmark ($(nproc) cores, load generator on the same machine)"
echo "artifact: $REPO ($STABLE)"
printf '%-9s %9s %8s %12s %12s %9s %14s\n' scenario "req/s" "p99 ms" "engine us/req" "wrk us/req" "÷ healthz" "2-core ceiling"
for s in healthz stable shadow; do
  case $s in healthz) r=$H_RPS p=$H_P99 c=$H_CPU g=$H_GEN ;; stable) r=$S_RPS p=$S_P99 c=$S_CPU g=$S_GEN ;; shadow) r=$W_RPS p=$W_P99 c=$W_CPU g=$W_GEN ;; esac
  printf '%-9s %9s %8s %12s %12s %9s %14s\n' "$s" "$r" "$p" "$c" "$g" \
    "$(awk -v a="$r" -v b="$H_RPS" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v c="$c" -v g="$g" 'BEGIN { printf "%.0f", 2e6 / (c + g) }')"
done
echo "(2-core ceiling: req/s if engine and wrk had both cores to themselves: 2 s ÷ their CPU per request)"
echo "shadow ÷ stable CPU per request: $(awk -v a="$W_CPU" -v b="$S_CPU" 'BEGIN { printf "%.2f", a / b }')"
echo "shadow ÷ stable req/s: $(awk -v a="$W_RPS" -v b="$S_RPS" 'BEGIN { printf "%.2f", a / b }')"
echo "shadow evaluations dropped (whole run): ${dropped:-?}"
echo "medians of $RUNS runs of ${DURATION}s each"
