#!/usr/bin/env bash
# pipe server: dispatch throughput and claim latency, and a DAG run end to end through the
# server and agents against the same DAG under local `pipe run`.
#
#   bench/server/run.sh [JOBS] [AGENTS]
#
# Starts its own PostgreSQL 15 cluster (durability settings left on: fsync, synchronous_commit
# and full_page_writes at their defaults) on a loopback port, as the `postgres` user when run
# as root. Loopback only; every loop is bounded. PG_OPTS adds server settings (`-c commit_delay=…`);
# `PIPE_POOL` sets the server's `--pool-size`.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS="${1:-2000}"
AGENTS="${2:-8}"
PIPE="$(realpath "${PIPE:-target/debug/pipe}")"
LOAD="$(realpath "${LOAD:-target/debug/examples/claim_load}")"
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)"
TMP="$(mktemp -d /tmp/pipe-bench-server.XXXXXX)"
PORT=$((20000 + RANDOM % 20000))
SPORT=$((PORT + 1))
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$TMP"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$BIN/pg_ctl" -D "$TMP/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
as_pg "$BIN/initdb" -D "$TMP/data" -A trust -U postgres >/dev/null
as_pg "$BIN/pg_ctl" -D "$TMP/data" -l "$TMP/pg.log" -w \
  -o "-p $PORT -k $TMP -c listen_addresses=127.0.0.1 -c max_connections=200 ${PG_OPTS:-}" start >/dev/null
export PIPE_DATABASE_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
export PIPE_STATE_DIR="$TMP/state"
"$PIPE" server migrate
AT="$("$PIPE" server token --kind agent --name bench)"
UT="$("$PIPE" server token --kind user --name bench)"
"$PIPE" server --listen "127.0.0.1:$SPORT" --rate-limit 0 --pool-size "${PIPE_POOL:-32}" >/dev/null 2>"$TMP/server.log" &
pids+=($!)
URL="http://127.0.0.1:$SPORT"
for _ in $(seq 1 100); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.1; done

mkwf() { # N -> a workflow of N independent trivial jobs
  printf 'on: push\njobs:\n'
  for i in $(seq 1 "$1"); do printf '  j%s: {runs-on: ubuntu-latest, steps: [{run: "true"}]}\n' "$i"; done
}
mkdir -p "$TMP/repo/.github/workflows"
mkwf "$JOBS" > "$TMP/repo/.github/workflows/many.yml"

# Two runs of JOBS jobs, each on a run of its own: the peer (a claim request per job, then its
# completion) and the agent's protocol (each completion claims the agent's next job in the same
# request). The second runs on the fuller tables; `SWAP=1` runs the agent's protocol first.
dispatch() { # MODE (separate|one) -> one JSON line
  echo "== dispatch ($1): $JOBS trivial jobs, $AGENTS simulated agents (no executor)" >&2
  "$PIPE" submit --server "$URL" --token "$UT" -W "$TMP/repo/.github/workflows/many.yml" >/dev/null
  if [ "$1" = separate ]; then CLAIM_LOAD_SEPARATE=1 "$LOAD" "$URL" "$AT" "$AGENTS"; else "$LOAD" "$URL" "$AT" "$AGENTS"; fi
}
if [ -n "${SWAP:-}" ]; then dispatch one; dispatch separate; else dispatch separate; dispatch one; fi

E2E="${E2E:-100}"
mkwf "$E2E" > "$TMP/repo/.github/workflows/e2e.yml"
echo "== end to end: $E2E trivial jobs, 4 agents x 2 slots vs local pipe run -p 8" >&2
for i in 1 2 3 4; do
  "$PIPE" agent --server "$URL" --token "$AT" -c 2 --name "a$i" --work-dir "$TMP/agents/a$i" 2>/dev/null &
  pids+=($!)
done
t0=$(date +%s.%N)
"$PIPE" submit --server "$URL" --token "$UT" -W "$TMP/repo/.github/workflows/e2e.yml" --wait >"$TMP/e2e.out" || { echo "the run failed:" >&2; tail -5 "$TMP/e2e.out" >&2; }
t1=$(date +%s.%N)
(cd "$TMP/repo" && "$PIPE" run -W .github/workflows/e2e.yml -p 8 --progress plain >/dev/null 2>&1)
t2=$(date +%s.%N)
python3 - "$t0" "$t1" "$t2" "$E2E" <<'PY'
import json, sys
t0, t1, t2, n = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(json.dumps({"jobs": n, "server_seconds": round(t1 - t0, 3), "local_seconds": round(t2 - t1, 3),
                  "server_ms_per_job": round((t1 - t0) / n * 1000, 1),
                  "local_ms_per_job": round((t2 - t1) / n * 1000, 1),
                  "ratio": round((t1 - t0) / (t2 - t1), 2)}))
PY
