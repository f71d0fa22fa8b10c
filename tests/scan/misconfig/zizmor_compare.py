#!/usr/bin/env python3
"""Agreement of pipe's workflow checks with zizmor on the workflow fixtures.

    python3 tests/scan/misconfig/zizmor_compare.py PIPE_BINARY [--write]

Runs `zizmor --offline` (default persona) and `pipe scan fs --scanners misconfig` on every
`workflow/<ID>/.github/workflows/{bad,good}.yml`, maps pipe's ids to zizmor's audit names
(pipe's aliases) and prints, per fixture, both verdicts. `--write` records zizmor's verdicts
in `zizmor.json`, which the test suite compares pipe against without zizmor installed.
"""

import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
AUDIT = {"GHA-0001": "template-injection", "GHA-0002": "dangerous-triggers",
         "GHA-0003": "unpinned-uses", "GHA-0004": "excessive-permissions"}


def main():
    pipe = sys.argv[1]
    files = sorted(glob.glob(os.path.join(HERE, "workflow", "*", ".github", "workflows", "*.yml")))
    zizmor = {}
    rows = []
    for f in files:
        rel = os.path.relpath(f, HERE)
        out = subprocess.run(["zizmor", "--offline", "--format", "json", f], capture_output=True)
        z = sorted({x["ident"] for x in json.loads(out.stdout or b"[]")} & set(AUDIT.values()))
        zizmor[rel] = z
        root = os.path.dirname(os.path.dirname(os.path.dirname(f)))
        out = subprocess.run([pipe, "scan", "fs", root, "--scanners", "misconfig", "--output", "json",
                              "--fail-on", "none"], capture_output=True, check=True)
        rep = json.loads(out.stdout)
        p = sorted({AUDIT[x["id"]] for x in rep["findings"]
                    if x["location"]["path"].endswith(os.path.basename(f)) and x["id"] in AUDIT})
        rows.append((rel, z, p))
    agree = sum(1 for _, z, p in rows if z == p)
    print("| fixture | zizmor | pipe | agree |")
    print("|---|---|---|---|")
    for rel, z, p in rows:
        print(f"| `{rel}` | {', '.join(z) or '-'} | {', '.join(p) or '-'} | {'yes' if z == p else 'no'} |")
    print(f"\n{agree}/{len(rows)} fixtures agree")
    if "--write" in sys.argv:
        with open(os.path.join(HERE, "zizmor.json"), "w") as fh:
            json.dump(zizmor, fh, indent=1, sort_keys=True)
            fh.write("\n")


if __name__ == "__main__":
    main()
