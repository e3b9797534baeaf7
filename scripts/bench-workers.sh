#!/usr/bin/env bash
# Pipelines/s to COMPLETED with the agents played by 1, 2 and 4 `governance worker` processes
# (GOVERNANCE_REMOTE_ROLES=ALPHA,BETA,GAMMA) against the same bench with the agents in-process,
# all on one private redis-server and the zero-latency local LLM. Prints a table and writes
# target/bench-workers.json. The takeover time after a node's death is printed by
#   cargo test -p governance-examples --test cluster_e2e -- --nocapture | grep TAKEOVER
#
#   scripts/bench-workers.sh [pipelines=400] [concurrency=50]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-400}; C=${2:-50}
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }
cargo build --release -q -p governance-examples --bin governance
BIN="$TARGET/release/governance"
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
redis-server --port "$PORT" --save "" --appendonly no --dir "$WORK" >/dev/null & PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
URL="redis://127.0.0.1:$PORT"
bench() { REDIS_URL=$URL "$BIN" bench --pipelines "$N" --concurrency "$C" --json 2>/dev/null | tail -1; }
ROWS=()
for W in 1 2 4; do
  redis-cli -p "$PORT" flushall >/dev/null
  WP=()
  for i in $(seq "$W"); do
    REDIS_URL=$URL GOVERNANCE_NODE_ID="bench-w$i" "$BIN" worker >/dev/null 2>&1 & WP+=($!); PIDS+=($!)
  done
  sleep 1
  ROWS+=("$W $(GOVERNANCE_REMOTE_ROLES=ALPHA,BETA,GAMMA bench)")
  for p in "${WP[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
done
redis-cli -p "$PORT" flushall >/dev/null
ROWS+=("0 $(bench)")
printf '%s\n' "${ROWS[@]}" | python3 -c '
import json, sys
rows = []
for line in sys.stdin:
    w, js = line.split(" ", 1)
    d = json.loads(js)
    rows.append({"workers": int(w), "pipelines": d["pipelines"], "completed": d["completed"],
                 "pipelines_per_s": d["pipelines_per_s"], "p50_ms": d["p50_ms"], "p99_ms": d["p99_ms"]})
print("%-22s%10s%13s%9s%9s" % ("agents", "completed", "pipelines/s", "p50 ms", "p99 ms"))
for r in rows:
    who = "in-process" if r["workers"] == 0 else "%d worker process(es)" % r["workers"]
    print("%-22s%10d%13.0f%9.0f%9.0f" % (who, r["completed"], r["pipelines_per_s"], r["p50_ms"], r["p99_ms"]))
json.dump(rows, open(sys.argv[1], "w"), indent=1)
' "$TARGET/bench-workers.json"
echo "wrote $TARGET/bench-workers.json"
