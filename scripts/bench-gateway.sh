#!/usr/bin/env bash
# The MCP gateway's added latency per call (SPEC §8: at most 1 ms at p99).
# One client (the official MCP Python SDK) calls one upstream tool (a Python
# MCP server on streamable HTTP) directly and through `sluice gateway
# --artifact` (in-process decisions), interleaved, in the same run; the
# figures are p50/p90/p99 of each path in milliseconds (the median over
# ROUNDS rounds of CALLS calls each), their differences ("added") and the
# machine's load average before and after.
#
#   scripts/bench-gateway.sh [CALLS] [ROUNDS]     (default 1000, 5)
#
# SLUICE_BIN: the binary to measure (default: a release build made here).
# SLUICE_GATEWAY_FLAGS: more flags for the gateway (e.g. `--workers 1`).
# UPSTREAM_ANSWERS=json: the upstream answers each call with one JSON body
# (the SDK's `json_response`) instead of an event stream (the default).
# SLUICE_MCP_PYTHON: a Python with the `mcp` package (default: a venv
# created under the target folder). Results land in $target/bench-gateway/.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
calls=${1:-1000}
rounds=${2:-5}
out=$target/bench-gateway
mkdir -p "$out"

if [ -z "${SLUICE_BIN:-}" ]; then
  (cd "$root" && cargo build --release --quiet --bin sluice)
  SLUICE_BIN=$target/release/sluice
fi
py=${SLUICE_MCP_PYTHON:-$target/mcp-venv/bin/python}
if ! "$py" -c 'import mcp.server.mcpserver' >/dev/null 2>&1; then
  python3 -m venv "$target/mcp-venv"
  "$target/mcp-venv/bin/python" -m pip install -q mcp
  py=$target/mcp-venv/bin/python
fi

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A policy set with rules on the benchmarked tool's arguments: the call is
# evaluated (and allowed), not passed by an empty set.
mkdir -p "$work/repo/policies"
cat >"$work/repo/sluice.toml" <<'TOML'
[project]
name = "bench"
default = "deny"

[schema]
tool = "string"
agent = "string"
org = "string"
session = "string"
"args.amount?" = "int"
"args.to?" = "string"
TOML
cat >"$work/repo/policies/pay.policy" <<'POLICY'
policy pay version 1.0.0 {
  rule small { when tool == "up.pay" and args.amount <= 1000 allow }
  rule big {
    when tool == "up.pay" and args.amount > 1000
    require_approval "finance" BIG "needs approval"
  }
  rule blocked { when args.to in ["mallory", "eve"] deny BLOCKED "blocked payee" }
}
POLICY
"$SLUICE_BIN" --repo "$work/repo" compile -o "$work/artifact.json" >/dev/null

up_port=$(free_port)
upstream_answers=()
[ "${UPSTREAM_ANSWERS:-sse}" = json ] && upstream_answers=(json)
"$py" "$root/tests/gateway/py/upstream.py" /dev/null http "$up_port" "${upstream_answers[@]}" >"$out/upstream.log" 2>&1 &
pids+=($!)
wait_port "$up_port"
gw_port=$(free_port)
RUST_LOG=warn "$SLUICE_BIN" gateway --listen "127.0.0.1:$gw_port" \
  --upstream "up=http://127.0.0.1:$up_port/mcp" \
  --artifact "$work/artifact.json" --agent bench --org acme ${SLUICE_GATEWAY_FLAGS:-} >"$out/gateway.log" 2>&1 &
pids+=($!)
wait_port "$gw_port"

"$py" "$root/scripts/bench-gateway.py" "http://127.0.0.1:$up_port/mcp" \
  "http://127.0.0.1:$gw_port/mcp" "$calls" "$rounds" | tee "$out/result.json"

# Connections opened during the run, from the sockets left in TIME-WAIT
# (each a connection closed in the last minute): a path that keeps its
# connection leaves about none per call.
if command -v ss >/dev/null 2>&1; then
  tw() { ss -Htan state time-wait "( dport = :$1 )" | wc -l; }
  echo "connections closed during the run (TIME-WAIT): to the gateway $(tw "$gw_port"), to the upstream $(tw "$up_port") (the direct client's and the gateway's), for $((calls * rounds + calls / 10)) calls on each path"
fi
