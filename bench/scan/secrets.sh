#!/usr/bin/env bash
# Secret-scanning throughput of `pipe scan fs --scanners secret` and detect-secrets on the
# same source text (Rust sources of the crates in cargo's registry, sorted, cut at a size).
#
#   bash bench/scan/secrets.sh            # PIPE=path/to/pipe, SRC=dir of sources, MB=256
#                                         # SKIP_PEER=1 leaves detect-secrets out
#
# Prints MB/s (wall) and MB per CPU-second (user+sys: the per-core figure) for pipe on the
# large corpus, and both tools on a small corpus (detect-secrets is too slow for the large one).
set -euo pipefail
cd "$(dirname "$0")/../.."
PIPE=${PIPE:-${CARGO_TARGET_DIR:-target}/release/pipe}
SRC=${SRC:-$HOME/.cargo/registry/src}
MB=${MB:-256}
SMALL_MB=${SMALL_MB:-16}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

python3 - "$SRC" "$TMP" "$MB" "$SMALL_MB" <<'PY'
import os, shutil, sys
src, tmp, mb, small = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
files = []
for root, dirs, names in os.walk(src):
    dirs.sort()
    for n in sorted(names):
        if n.endswith((".rs", ".toml", ".md", ".py", ".js", ".json", ".yml", ".yaml", ".sh", ".c", ".h")):
            files.append(os.path.join(root, n))
def fill(dest, limit):
    total = 0
    for i, f in enumerate(files):
        size = os.path.getsize(f)
        if size > 4 << 20:
            continue
        out = os.path.join(dest, f"{i // 1000:03d}", f"{i:06d}_" + os.path.basename(f))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copyfile(f, out)
        total += size
        if total >= limit << 20:
            break
    return total
for name, limit in (("big", mb), ("small", small)):
    t = fill(os.path.join(tmp, name), limit)
    open(os.path.join(tmp, name + ".bytes"), "w").write(str(t))
PY
big=$(cat "$TMP/big.bytes"); small=$(cat "$TMP/small.bytes")
echo "corpus: big $((big / 1048576)) MiB, small $((small / 1048576)) MiB, $(find "$TMP/big" -type f | wc -l) / $(find "$TMP/small" -type f | wc -l) files"
echo "pipe: $("$PIPE" --version 2>/dev/null || echo "$PIPE"), detect-secrets $(detect-secrets --version 2>/dev/null || echo missing), cores $(nproc)"

measure() { # name bytes command...: wall and CPU time (user+sys of the whole process tree)
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
name, size, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.monotonic() - t0
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
mib = size / 1048576
print(f"| {name} | {mib:.0f} MiB | {wall:.2f} s | {cpu:.2f} s | {mib / wall:.0f} MB/s | {mib / cpu:.0f} MB/s |")
PY
}
echo
echo "| run | corpus | wall | CPU (user+sys) | throughput (wall) | per core (bytes / CPU s) |"
echo "|---|---:|---:|---:|---:|---:|"
"$PIPE" scan fs "$TMP/big" --scanners secret --output json --fail-on none >/dev/null  # warm the page cache
for i in 1 2 3; do
  measure "pipe, big corpus, run $i" "$big" "$PIPE" scan fs "$TMP/big" --scanners secret --output json --fail-on none
done
for i in 1 2 3; do
  measure "pipe, small corpus, run $i" "$small" "$PIPE" scan fs "$TMP/small" --scanners secret --output json --fail-on none
done
if [ -z "${SKIP_PEER:-}" ] && command -v detect-secrets >/dev/null; then
  measure "detect-secrets, small corpus" "$small" sh -c "cd '$TMP/small' && detect-secrets scan --all-files ."
fi
[ -n "${SKIP_PEER:-}" ] && exit 0
echo
echo "findings on the small corpus: pipe $("$PIPE" scan fs "$TMP/small" --scanners secret --output json --fail-on none | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["findings"]))'), detect-secrets $(cd "$TMP/small" && detect-secrets scan --all-files . | python3 -c 'import json,sys; print(sum(len(v) for v in json.load(sys.stdin)["results"].values()))')"
