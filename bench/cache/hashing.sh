#!/usr/bin/env bash
# pipe's hashing and store against the peers of performance.md §D, in the same run.
#
#   G9   first hash of 100k x 4 KiB files (no stat cache)   vs  xargs -0 -P2 -n 5000 sha256sum
#   G10  re-check of the unchanged tree                      vs  git status --porcelain
#   G11  first run after `touch` of every file               vs  git status after the same touch
#        second run after the touch (must be back on the fast path, like G10)
#   G8   one 1 GiB file                                      vs  openssl dgst -sha256
#   G15  files per cache entry (a step-like entry and a mixed one)
#
# Usage: bench/cache/hashing.sh [setup|bench|all]   (PIPE=path/to/pipe, WORK=/tmp/pipe-bench,
# RUNS=5). The fixture is the one from shared/bench/peers/hashing.sh: mktree.py's tree,
# committed to git, and 1 GiB of random bytes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
W=${WORK:-/tmp/pipe-bench}
PIPE=${PIPE:-$repo/target/release/pipe}
R=${RUNS:-5}
T=$W/tree
MKTREE=${MKTREE:-$repo/../shared/bench/peers/mktree.py}
[ -f "$MKTREE" ] || MKTREE=/work/shared/bench/peers/mktree.py

setup() {
  mkdir -p "$W"
  [ -f "$W/big.bin" ] || head -c 1G /dev/urandom > "$W/big.bin"
  if [ ! -d "$T/.git" ]; then
    rm -rf "$T"
    python3 "$MKTREE" "$T" 100000 4096
    (cd "$T" && find . -type f -print0 | sort -z > "$W/list0")
    (cd "$T" && git init -q && git add -A && git -c user.email=b@localhost -c user.name=b commit -qm tree)
  fi
  sync
}

bench() {
  [ -x "$PIPE" ] || { echo "build pipe first: cargo build --release (or set PIPE)" >&2; exit 2; }
  export PIPE_CACHE_DIR=$W/pipe-cache
  rm -rf "$PIPE_CACHE_DIR"
  out=$W/results; mkdir -p "$out"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  grep -q -w sha_ni /proc/cpuinfo && echo "# sha_ni: yes" || echo "# sha_ni: no"

  # G9: first hash, no stat cache at all (git's index is read but has no digests to offer).
  hyperfine -N --warmup 1 --runs "$R" --export-json "$out/g9.json" \
    "$PIPE cache hash --summary --no-stat-cache $T" \
    "bash -c 'cd $T && xargs -0 -P2 -n 5000 sha256sum < $W/list0 > /dev/null'"

  # G10: unchanged tree; the stat cache is primed by the warm-up run.
  (cd "$T" && git status --porcelain > /dev/null)
  hyperfine -N --warmup 2 --runs "$R" --export-json "$out/g10.json" \
    "$PIPE cache hash --summary $T" \
    "git -C $T status --porcelain"

  # G11: every file touched (same content) before each run of either command.
  hyperfine -N --warmup 1 --runs "$R" --export-json "$out/g11.json" \
    --prepare "bash -c 'cd $T && xargs -0 touch < $W/list0'" \
    "$PIPE cache hash --summary $T" \
    "git -C $T status --porcelain"
  # G11, second run: touch, one pipe run (re-hash, refresh), then time the next run.
  hyperfine -N --warmup 1 --runs "$R" --export-json "$out/g11b.json" \
    --prepare "bash -c 'cd $T && xargs -0 touch < $W/list0 && $PIPE cache hash --summary $T > /dev/null 2>&1'" \
    "$PIPE cache hash --summary $T"
  "$PIPE" cache hash --summary "$T" 2>&1 >/dev/null | sed 's/^/# after the second run: /'

  # G8: one large file.
  hyperfine -N --warmup 1 --runs "$R" --export-json "$out/g8.json" \
    "$PIPE cache hash $W/big.bin" \
    "openssl dgst -sha256 $W/big.bin"

  # G15: files per entry.
  for shape in step mixed; do
    d=$W/entries-$shape; rm -rf "$d"
    PIPE_CACHE_DIR=$d "$PIPE" cache torture --count 1000 --shape "$shape"
    entries=$(find "$d/cas-v1/ac" -type f | wc -l)
    files=$(find "$d/cas-v1/ac" "$d/cas-v1/blobs" -type f | wc -l)
    bytes=$(du -sb "$d/cas-v1/ac" "$d/cas-v1/blobs" | awk '{s+=$1} END {print s}')
    echo "# G15 $shape: $entries entries, $files files, $(awk "BEGIN{printf \"%.2f\", $files/$entries}") files/entry, $((bytes / entries)) bytes/entry"
  done

  python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
def med(f, i):
    return json.load(open(os.path.join(out, f)))["results"][i]["median"]
rows = [
  ("G9 first hash, 100k x 4 KiB", "g9.json", 0, 1, 1.0),
  ("G10 unchanged tree", "g10.json", 0, 1, 1.5),
  ("G11 first run after touch", "g11.json", 0, 1, 1.0),
  ("G8 1 GiB file", "g8.json", 0, 1, 1.1),
]
for name, f, a, b, goal in rows:
    pa, pb = med(f, a), med(f, b)
    print(f"| {name} | {pa:.3f} s | {pb:.3f} s | {pa/pb:.2f} | <= {goal} |")
g11b = med("g11b.json", 0); g10 = med("g10.json", 1)
print(f"| G11 second run after touch | {g11b:.3f} s | {g10:.3f} s (git status, clean) | {g11b/g10:.2f} | <= 1.5 |")
PY
}

case ${1:-all} in
  setup) setup ;;
  bench) bench ;;
  all) setup; bench ;;
  *) echo "usage: $0 [setup|bench|all]" >&2; exit 2 ;;
esac
