#!/usr/bin/env python3
"""Recall and precision of pipe and detect-secrets on the seeded corpus.

    python3 tests/scan/secrets/compare.py [PIPE_BINARY]

A finding is a true positive when it is on the line of a planted secret (one per line, so a
line counts once whatever the number of rules that fire on it); every other line a tool
reports is a false positive. detect-secrets runs with its default plugins and filters
(`detect-secrets scan --all-files`); it is skipped when not installed.
"""

import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def score(name, found, expected, seconds):
    secrets = {(e["path"], e["line"]) for e in expected if e["label"] == "secret"}
    tp = len(found & secrets)
    fp = len(found - secrets)
    recall = tp / len(secrets)
    precision = tp / (tp + fp) if tp + fp else 0.0
    print(f"| {name} | {tp} | {len(secrets) - tp} | {fp} | {recall:.3f} | {precision:.3f} | {seconds*1000:.0f} ms |")
    return recall, precision, found - secrets, secrets - found


def main():
    expected = json.load(open(os.path.join(HERE, "expected.json")))
    pipe = sys.argv[1] if len(sys.argv) > 1 else shutil.which("pipe") or "target/debug/pipe"
    print("| tool | true positives | missed | false positives | recall | precision | time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    t = time.monotonic()
    out = subprocess.run(
        [pipe, "scan", "fs", CORPUS, "--scanners", "secret", "--output", "json", "--fail-on", "none"],
        capture_output=True, check=True,
    )
    secs = time.monotonic() - t
    report = json.loads(out.stdout)
    found = {(f["location"]["path"], f["location"]["start_line"]) for f in report["findings"]}
    _, _, fps, misses = score("pipe", found, expected, secs)
    details = {"pipe": {"false_positives": sorted(fps), "missed": sorted(misses)}}
    if shutil.which("detect-secrets"):
        t = time.monotonic()
        out = subprocess.run(["detect-secrets", "scan", "--all-files", "."], cwd=CORPUS, capture_output=True, check=True)
        secs = time.monotonic() - t
        res = json.loads(out.stdout)["results"]
        found = {(p, h["line_number"]) for p, hs in res.items() for h in hs}
        _, _, fps, misses = score("detect-secrets", found, expected, secs)
        details["detect-secrets"] = {"false_positives": sorted(fps), "missed": sorted(misses)}
    else:
        print("| detect-secrets | not installed (`pip install detect-secrets`) | | | | | |")
    if os.environ.get("VERBOSE"):
        kinds = {(e["path"], e["line"]): e["kind"] for e in expected}
        for tool, d in details.items():
            for k, v in d.items():
                for item in v:
                    print(tool, k, item, kinds.get(tuple(item), "filler"))


if __name__ == "__main__":
    main()
