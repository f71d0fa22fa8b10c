#!/usr/bin/env bash
# `pipe bench` against hyperfine on the same command in the same run: each tool times `true`
# (no shell, 1000 runs, 50 warm-up) in alternation, ROUNDS times, and the means and medians
# are compared. Needs hyperfine (`apt-get install hyperfine`) and a release build of pipe.
#
#   cargo build --release -p pipe && bash bench/bench/overhead.sh [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pipe=${PIPE:-$here/../../target/release/pipe}
[ -x "$pipe" ] || pipe=${CARGO_TARGET_DIR:-$here/../../target}/release/pipe
rounds=${1:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$rounds"); do
  hyperfine -N --runs 1000 --warmup 50 --style none --export-json "$tmp/h$i.json" true >/dev/null 2>&1
  "$pipe" bench -N --runs 1000 --warmup 50 --no-record --export-json "$tmp/p$i.json" -- true >/dev/null
done
python3 - "$tmp" "$rounds" <<'PY'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
def load(p):
    r = json.load(open(p))["results"][0]
    return r["mean"], r["median"]
h = [load(f"{tmp}/h{i}.json") for i in range(1, rounds + 1)]
p = [load(f"{tmp}/p{i}.json") for i in range(1, rounds + 1)]
print("| round | hyperfine mean | pipe mean | hyperfine median | pipe median |")
print("|---:|---:|---:|---:|---:|")
for i, (a, b) in enumerate(zip(h, p), 1):
    print(f"| {i} | {a[0]*1e6:.0f} µs | {b[0]*1e6:.0f} µs | {a[1]*1e6:.0f} µs | {b[1]*1e6:.0f} µs |")
hm = statistics.median(x[0] for x in h); pm = statistics.median(x[0] for x in p)
hd = statistics.median(x[1] for x in h); pd = statistics.median(x[1] for x in p)
print(f"| median of rounds | {hm*1e6:.0f} µs | {pm*1e6:.0f} µs | {hd*1e6:.0f} µs | {pd*1e6:.0f} µs |")
print()
print(f"pipe/hyperfine: mean {pm/hm:.3f}, median {pd/hd:.3f}")
PY
