#!/usr/bin/env bash
# Wall time of `sluice demo` (release build), as the README reports it.
#
# Runs the whole demo N times with hyperfine (default 3 runs, no warm-up:
# each run starts from nothing anyway), each into a fresh --keep folder, and
# prints the median, the range, every run's phases from its summary.json,
# and the load average before and after.
#
# Usage: scripts/demo-time.sh [--runs N] [--stage-duration D]
# Environment: CARGO_TARGET_DIR is honoured.
#
# Installs hyperfine (apt) when missing. Everything runs on 127.0.0.1 and
# stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=3
STAGE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --stage-duration) STAGE="--stage-duration $2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v hyperfine >/dev/null 2>&1; then
  echo "installing hyperfine" >&2
  as_root apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q hyperfine >/dev/null
fi

echo "== building release" >&2
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/sluice"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Each run keeps its folder under a new name, so its summary can be read.
cat > "$WORK/run.sh" <<EOF
#!/usr/bin/env bash
set -e
n=\$(ls "$WORK" | grep -c '^run-' || true)
exec "$BIN" demo --quiet $STAGE --keep "$WORK/run-\$n" > "$WORK/out-\$n.txt"
EOF
chmod +x "$WORK/run.sh"
hyperfine --runs "$RUNS" --warmup 0 --export-json "$WORK/times.json" "$WORK/run.sh"
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

median=$(grep -o '"median": *[0-9.]*' "$WORK/times.json" | head -1 | grep -o '[0-9.]*$')
min=$(grep -o '"min": *[0-9.]*' "$WORK/times.json" | head -1 | grep -o '[0-9.]*$')
max=$(grep -o '"max": *[0-9.]*' "$WORK/times.json" | head -1 | grep -o '[0-9.]*$')
printf 'median %.1f s (min %.1f s, max %.1f s) over %s runs\n' "$median" "$min" "$max" "$RUNS"
for out in "$WORK"/out-*.txt; do
  grep -E '^  phases ' "$out" || { echo "a run did not finish: $out" >&2; cat "$out" >&2; exit 1; }
done
