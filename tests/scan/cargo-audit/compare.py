#!/usr/bin/env python3
"""Compares `pipe scan` with cargo-audit on the Cargo.lock corpus and records cargo-audit's
verdicts as fixtures (expected/NAME.json), which the test suite then checks without needing
cargo-audit.

Usage (from the repository root):
    python3 tests/scan/cargo-audit/compare.py [--pipe PATH] [--no-update]

Needs `cargo audit` (`cargo install cargo-audit --locked`) and a built `pipe`. Both read the
same advisories: cargo-audit the RustSec git layout in ../shared/advisory-db/rustsec (copied
to a temporary git repository, as its README says), pipe its own database imported from
../shared/advisory-db/osv/crates.io. A verdict is the set of (advisory id, crate, version)
per kind: `vulnerability`, or the informational `unmaintained` / `unsound` / `notice`.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared", "advisory-db"))


# Reviewed disagreements: lockfile → why pipe reports more than cargo-audit there.
KNOWN = {
    "18-sparse-crates-io": (
        "crates.io packages written with the sparse source `sparse+https://index.crates.io/`: "
        "cargo-audit 0.22.2 skips them because cargo-lock 11.0.1's `is_default_registry` compares "
        "the sparse URL wrongly (it means to accept it); pipe treats them as crates.io. Cargo itself "
        "always writes crates.io packages with the git index URL, so real lockfiles do not differ."
    ),
}


def audit_verdicts(db, lock):
    p = subprocess.run(
        ["cargo", "audit", "--db", db, "--no-fetch", "--no-yanked", "--stale", "--json", "--file", lock],
        capture_output=True, text=True)
    if p.returncode not in (0, 1):
        sys.exit(f"cargo audit failed on {lock}: {p.stderr}")
    d = json.loads(p.stdout)
    out = []
    for v in d["vulnerabilities"]["list"]:
        out.append(["vulnerability", v["advisory"]["id"], v["package"]["name"], v["package"]["version"]])
    for kind, items in (d.get("warnings") or {}).items():
        for w in items:
            if kind == "yanked":
                continue
            out.append([w["kind"], w["advisory"]["id"], w["package"]["name"], w["package"]["version"]])
    return sorted(out)


def pipe_verdicts(pipe, db, lock):
    p = subprocess.run([pipe, "scan", "fs", lock, "--db", db, "--fail-on", "none", "--output", "json"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"pipe scan failed on {lock}: {p.stderr}")
    d = json.loads(p.stdout)
    return sorted([f["kind"], f["id"], f["package"]["name"], f["package"]["version"]] for f in d["findings"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipe", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "pipe"))
    ap.add_argument("--no-update", action="store_true", help="do not rewrite expected/*.json")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="pipe-vs-audit-")
    try:
        rdb = os.path.join(tmp, "rustsec")
        shutil.copytree(os.path.join(SHARED, "rustsec"), rdb)
        subprocess.run(["git", "init", "-q"], cwd=rdb, check=True)
        subprocess.run(["git", "add", "-A"], cwd=rdb, check=True)
        subprocess.run(["git", "-c", "user.name=x", "-c", "user.email=x@example.invalid", "commit", "-qm", "db"], cwd=rdb, check=True)
        pdb = os.path.join(tmp, "pipe-db")
        subprocess.run([args.pipe, "scan", "db", "import", os.path.join(SHARED, "osv", "crates.io"), "--db", pdb],
                       check=True, capture_output=True)
        lockdir = os.path.join(HERE, "lockfiles")
        os.makedirs(os.path.join(HERE, "expected"), exist_ok=True)
        total_a = total_p = agree = 0
        rows = []
        for name in sorted(os.listdir(lockdir)):
            lock = os.path.join(lockdir, name, "Cargo.lock")
            a = audit_verdicts(rdb, lock)
            p = pipe_verdicts(args.pipe, pdb, lock)
            sa, sp = {tuple(x) for x in a}, {tuple(x) for x in p}
            total_a += len(sa); total_p += len(sp); agree += len(sa & sp)
            only_a, only_p = sorted(sa - sp), sorted(sp - sa)
            rows.append((name, len(sa), len(sp), only_a, only_p))
            if not args.no_update:
                doc = {"lockfile": f"lockfiles/{name}/Cargo.lock", "tool": "cargo-audit 0.22.2", "findings": a}
                if name in KNOWN and not only_a:
                    doc["pipe_only"] = [list(x) for x in only_p]
                    doc["pipe_only_reason"] = KNOWN[name]
                with open(os.path.join(HERE, "expected", name + ".json"), "w") as fh:
                    json.dump(doc, fh, indent=1)
                    fh.write("\n")
        print(f"{'lockfile':34} {'cargo-audit':>11} {'pipe':>5}  disagreements")
        for name, na, np_, oa, op in rows:
            print(f"{name:34} {na:>11} {np_:>5}  {len(oa) + len(op)}")
            for x in oa:
                print(f"    only cargo-audit: {' '.join(x)}")
            for x in op if name not in KNOWN else []:
                print(f"    only pipe:        {' '.join(x)}")
        print(f"\n{len(rows)} lockfiles; cargo-audit {total_a} findings, pipe {total_p}, identical {agree}")
        unexplained = [r for r in rows if r[3] or (r[4] and r[0] not in KNOWN)]
        for name, reason in KNOWN.items():
            print(f"known difference in {name}: {reason}")
        return 1 if unexplained else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
