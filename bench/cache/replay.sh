#!/usr/bin/env bash
# Step-cache benchmarks (issue "Content-addressed step caching"), peers in the same run:
#   - full-hit replay of a 1000-job DAG (each job: one `cache:` step that prints 3 lines and
#     writes out/<task>.txt) vs the per-task spawn floor (`spawn_floor 1000 posix_spawn
#     /bin/sh -c true`, ../shared/bench/peers/spawn_floor.c), goal <= 0.3x;
#   - a dry run (plan, evaluate and key 1000 cached jobs, run nothing) vs `make -j2` running the
#     same DAG (Makefile.sh), goal <= 0.1x.
# Usage: bench/cache/replay.sh            (RUNS=10 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PEERS=${PEERS:-$ROOT/../shared/bench/peers}
WORK=${WORK:-/tmp/pipe-bench-replay}
RUNS=${RUNS:-10}
command -v hyperfine >/dev/null || { echo "hyperfine is required (apt-get install hyperfine)" >&2; exit 2; }
cargo build --release -q
PIPE=${PIPE:-$ROOT/target/release/pipe}
rm -rf "$WORK" && mkdir -p "$WORK"
export PIPE_CACHE_DIR=$WORK/cache PIPE_STATE_DIR=$WORK/state
gcc -O2 -o "$WORK/spawn_floor" "$PEERS/spawn_floor.c"

for shape in indep layers; do
  python3 "$PEERS/gen_dag.py" "$shape" "$WORK/$shape" --body cacheable >/dev/null
  # The same DAG with pipe's `cache:` on every step (its one output declared).
  python3 - "$WORK/$shape/workflow.yml" <<'PY'
import re, sys
p = sys.argv[1]
out, cur = [], None
for line in open(p).read().splitlines():
    m = re.match(r"  ([A-Za-z0-9_]+):$", line)
    if m:
        cur = m.group(1)
    out.append(line)
    if line.startswith("        run: "):
        out += ["        cache:", f"          outputs: [out/{cur}.txt]"]
open(p, "w").write("\n".join(out) + "\n")
PY
  (cd "$WORK/$shape" && git init -q . && printf 'out/\n' > .gitignore)
  (cd "$WORK/$shape" && "$PIPE" run -W workflow.yml -p 2 -q --progress plain >/dev/null 2>&1)
done

echo "## full-hit replay of 1000 cached jobs vs the spawn floor (1000 x sh -c true)"
for shape in indep layers; do
  (cd "$WORK/$shape" && hyperfine -N -w 2 -r "$RUNS" --export-json "$WORK/replay-$shape.json" \
    -n "spawn floor (1000 x posix_spawn sh -c true)" "$WORK/spawn_floor 1000 posix_spawn /bin/sh -c true" \
    -n "pipe full-hit replay ($shape)" "$PIPE run -W workflow.yml -p 2 -q --progress plain")
done

echo "## dry run (plan + key 1000 cached jobs) vs make -j2 running the DAG"
for shape in indep layers; do
  (cd "$WORK/$shape" && hyperfine -N -w 2 -r "$RUNS" --export-json "$WORK/dry-$shape.json" \
    -n "make -j2 ($shape)" "make -s -j2 -f Makefile.sh" \
    -n "pipe --dry-run ($shape)" "$PIPE run -W workflow.yml -p 2 -q --progress plain --dry-run")
done
echo "raw results: $WORK/*.json"
