#!/usr/bin/env bash
# Benchmarks of `pipe run` on the host executor against peers measured in the same run
# (issue "Execution"). Usage: bench/run/bench.sh [--quick]
#
# Needs: hyperfine, make, python3; builds pipe in release mode. Fixtures come from
# ../shared/bench/peers/gen_dag.py (the same DAG as Makefiles and as a workflow).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PEERS=${PEERS:-$ROOT/../shared/bench/peers}
WORK=${WORK:-/tmp/pipe-bench-run}
RUNS=${RUNS:-10}
[ "${1:-}" = "--quick" ] && RUNS=3
command -v hyperfine >/dev/null || { echo "hyperfine is required (apt-get install hyperfine)" >&2; exit 2; }

cargo build --release -q
PIPE=$ROOT/target/release/pipe
# The linker lays out the functions of cli/hot-symbols.txt together; names change with the
# code and the dependencies, so say how much of the list still matches.
if command -v nm >/dev/null; then
  found=$(nm --defined-only "$PIPE" | awk '{print $NF}' | sort -u | comm -12 - <(sort -u cli/hot-symbols.txt) | wc -l)
  echo "hot symbol list: $found of $(wc -l < cli/hot-symbols.txt) functions found (bench/order/hot-symbols.sh rewrites it)"
fi
export PIPE_STATE_DIR=$WORK/state
rm -rf "$WORK" && mkdir -p "$WORK"
for shape in indep chain layers; do
  python3 "$PEERS/gen_dag.py" "$shape" "$WORK/$shape" >/dev/null
  (cd "$WORK/$shape" && git init -q . && git add -A >/dev/null 2>&1 && git -c user.name=b -c user.email=b@b commit -qm f >/dev/null)
done
python3 "$PEERS/gen_dag.py" indep "$WORK/indep5000" -n 5000 >/dev/null

echo "## scheduler overhead: pipe run vs make -j2 (same /bin/sh recipe), -p 2"
for shape in indep chain layers; do
  (cd "$WORK/$shape" && hyperfine -N -w 1 -r "$RUNS" --export-json "$WORK/$shape.json" \
    -n "make-sh $shape" "make -s -j2 -f Makefile.sh" \
    -n "pipe $shape" "$PIPE run -W workflow.yml -p 2 -q --progress plain")
done

echo "## one-job workflow vs its script run directly"
mkdir -p "$WORK/one" && cd "$WORK/one"
printf 'echo hello\n' > script.sh
cp "$ROOT/bench/run/one.yml" one.yml
# The floor: programs that do nothing but start the same script and wait, in C and in Rust
# (bench/run/floor/). What `pipe run` adds is its time minus theirs.
floor=()
if command -v cc >/dev/null && cc -O2 -o "$WORK/floor-spawn" "$ROOT/bench/run/floor/spawn.c"; then
  floor+=(-n "C posix_spawn + wait" "$WORK/floor-spawn")
fi
if rustc -C opt-level=3 -o "$WORK/floor-command" "$ROOT/bench/run/floor/command.rs"; then
  floor+=(-n "Rust Command + wait" "$WORK/floor-command")
fi
hyperfine -N -w 3 -r $((RUNS * 3)) --export-json "$WORK/one.json" \
  -n "bash -e script.sh" "bash -e script.sh" \
  "${floor[@]}" \
  -n "pipe run (1 job)" "$PIPE run -W one.yml -q --progress plain"

echo "## capturing 1 GiB of step output vs cat > file"
cat > big.yml <<'YML'
on: push
jobs:
  big:
    runs-on: ubuntu-latest
    steps:
      - shell: sh
        run: yes | head -c 1073741824
YML
# Both sides write 1 GiB to a fresh file: the previous output (cat's file, pipe's run records)
# is deleted before each run. Keeping pipe's records while cat overwrites its one file measured
# how fast the VM hands out memory it has never touched, not capture (bench/run/RESULTS.md).
hyperfine -w 1 -r $(( RUNS < 10 ? 3 : RUNS / 2 )) --export-json "$WORK/big.json" \
  -n "yes | head -c 1G | cat > file" --prepare "rm -f $WORK/big.out" \
  "yes | head -c 1073741824 | cat > $WORK/big.out" \
  -n "pipe run (1 GiB step)" --prepare "rm -rf $WORK/state" \
  "$PIPE run -W big.yml -q --progress plain 2>/dev/null"

echo "## peak memory of a 5,000-job run"
cd "$WORK/indep5000"
/usr/bin/time -f "pipe 5000 jobs: %e s, max RSS %M KiB" "$PIPE" run -W workflow.yml -p 2 -q --progress plain
/usr/bin/time -f "make 5000 targets: %e s, max RSS %M KiB" make -s -j2 -f Makefile.sh
