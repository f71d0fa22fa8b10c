#!/bin/sh
# Reproduces bench/plan/RESULTS.md: plan benchmarks against make on the same 5,000-task DAG.
#
#   bench/plan/run.sh            # from the repository root; needs python3, make, hyperfine
#
# 1. builds `pipe` (release) and writes the DAGs with /work/shared/bench/peers/gen_dag.py:
#    5,000 independent tasks (the figure of merit) and 10 layers x 100 (90,000 needs edges);
# 2. hyperfine, in one run per DAG: `make -j2 -f Makefile.sh` (the no-op DAG, every recipe
#    through /bin/sh) against `pipe list -W workflow.yml --json` (whole process: read, load,
#    check, plan, JSON) and `pipe graph -W workflow.yml`;
# 3. the in-process benches: `plan_dag` (load, check, plan, JSON of the same file) and
#    `plan_matrix` (a 256-leg matrix with allocations counted).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-/tmp/pipe-plan-bench}
GEN=${GEN:-/work/shared/bench/peers/gen_dag.py}
RUNS=${RUNS:-20}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PIPE="$CARGO_TARGET_DIR/release/pipe"

cd "$ROOT"
cargo build --release --bin pipe
rm -rf "$OUT" && mkdir -p "$OUT"
python3 "$GEN" indep "$OUT/indep" -n 5000
python3 "$GEN" layers "$OUT/layers"

for shape in indep layers; do
    cd "$OUT/$shape"
    hyperfine -N --warmup 3 --runs "$RUNS" --output=null \
        --export-json "$OUT/$shape.json" --export-markdown "$OUT/$shape.md" \
        'make -j2 -f Makefile.sh' \
        "$PIPE list -W workflow.yml --json" \
        "$PIPE graph -W workflow.yml"
done

cd "$ROOT"
PIPE_BENCH_WORKFLOW="$OUT/indep/workflow.yml" cargo bench -p pipe-runner --bench plan_dag
PIPE_BENCH_WORKFLOW="$OUT/layers/workflow.yml" cargo bench -p pipe-runner --bench plan_dag
cargo bench -p pipe-runner --bench plan_matrix
