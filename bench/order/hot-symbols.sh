#!/usr/bin/env bash
# Regenerates cli/hot-symbols.txt: the functions of `pipe` that a one-job `pipe run` executes,
# which cli/build.rs hands to the linker (`--symbol-ordering-file`) so that they sit together
# at the start of `.text` instead of spread over 25 MB of code.
#
# Why: every 4 KiB page a process touches first is a page fault, and on the 2-vCPU VMs here a
# fault costs about 4 µs (bench/run/RESULTS.md, 2026-11-27). With the list, a one-job run took
# 95 fewer page faults (508 to 413, pipe and its bash together).
#
# The list is a hint: symbols that no longer exist are skipped, and new functions land after the
# listed ones, so a stale list costs speed, never correctness. The workspace's crates are one
# codegen unit each in release (Cargo.toml), so their names do not carry the `.llvm.<hash>`
# suffix that changed with every moved line; the list holds across small edits. Regenerate it
# after larger changes to the run path or to the dependencies:
#
#   cargo build --release && bash bench/order/hot-symbols.sh
#
# Needs valgrind (callgrind) and python3.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pipe=${PIPE:-$root/target/release/pipe}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
git init -q .
cp "$root/bench/run/one.yml" one.yml
export XDG_STATE_HOME="$work/state"
# A steady state: more runs than the store keeps, so the run also prunes and reuses folders.
for _ in $(seq 102); do "$pipe" run -W one.yml -q --progress plain >/dev/null; done
valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.out" \
  "$pipe" run -W one.yml -q --progress plain >/dev/null 2>&1
nm --defined-only "$pipe" | awk '{print $NF}' | sort -u > "$work/defined"
python3 - "$work/cg.out" "$work/defined" > "$root/cli/hot-symbols.txt" <<'PY'
import re, sys
defined = set(open(sys.argv[2]).read().split())
names, order = {}, []
for line in open(sys.argv[1]):
    m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
    if m:
        if m.group(2):
            names[m.group(1)] = m.group(2).split("'")[0]
        order.append(m.group(1))
seen = set()
for i in order:
    n = names.get(i)
    if n and n in defined and n not in seen:
        seen.add(n)
        print(n)
PY
echo "wrote $(wc -l < "$root/cli/hot-symbols.txt") symbols to cli/hot-symbols.txt" >&2
