#!/usr/bin/env bash
# POST /api/spawn (auto_continue false) on `governance serve` vs a bare axum handler returning
# a small JSON, same load tool (wrk), same concurrency. Prints requests/s, p99 and the ratio.
#
#   scripts/bench-http.sh [connections=50] [seconds=10] [threads=2]
# Env: GOVERNANCE_DB (default `memory`; set a path to include SQLite), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
CONN=${1:-50}; SECS=${2:-10}; THREADS=${3:-2}
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -q -p governance-examples --bin governance
cargo build --release -q -p governance-http --example bare_axum
WORK=$(mktemp -d)
LUA="$WORK/spawn.lua"
cat > "$LUA" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"objective":"Design a caching strategy","auto_continue":false}'
LUA
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
"$TARGET/release/examples/bare_axum" 127.0.0.1:3100 >/dev/null & PIDS+=($!)
(cd "$WORK" && GOVERNANCE_DB=${GOVERNANCE_DB:-memory} GOVERNANCE_LOCAL_LATENCY_MS=${GOVERNANCE_LOCAL_LATENCY_MS:-0} RUST_LOG=${RUST_LOG:-warn} PORT=3101 "$TARGET/release/governance" serve) >/dev/null & PIDS+=($!)
for port in 3100 3101; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
done
run() { wrk -t"$THREADS" -c"$CONN" -d"${SECS}s" --latency -s "$LUA" "$1"; }
extract() { # rps p99(ms)
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$1")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$1")
  echo "$rps $p99"
}
BARE=$(run http://127.0.0.1:3100/api/spawn)
SPAWN=$(run http://127.0.0.1:3101/api/spawn)
# the router's own overhead (all layers, no engine work): GET /healthz
HEALTH=$(wrk -t"$THREADS" -c"$CONN" -d"${SECS}s" --latency http://127.0.0.1:3101/healthz)
echo "$SPAWN" | grep -E "Non-2xx|Socket errors" || true
read -r B_RPS B_P99 <<<"$(extract "$BARE")"
read -r S_RPS S_P99 <<<"$(extract "$SPAWN")"
read -r H_RPS H_P99 <<<"$(extract "$HEALTH")"
printf 'bare axum      : %10.0f req/s  p99 %7.2f ms\n' "$B_RPS" "$B_P99"
printf 'POST /api/spawn: %10.0f req/s  p99 %7.2f ms  (GOVERNANCE_DB=%s)\n' "$S_RPS" "$S_P99" "${GOVERNANCE_DB:-memory}"
printf 'GET /healthz   : %10.0f req/s  p99 %7.2f ms  (router layers only)\n' "$H_RPS" "$H_P99"
awk -v s="$S_RPS" -v b="$B_RPS" 'BEGIN {printf "ratio          : %.2f (aim >= 0.5)\n", s/b}'
