#!/usr/bin/env python3
"""A/A and 10%-slowdown simulation of `pipe bench`'s regression gate on this machine.

Each trial times two commands with `pipe bench` (interleaved, one process per sample, no
shell) and reads the verdict of the second against the first:

- A/A: the same CPU loop twice (`spin N` vs `spin N`): any FAIL is a false alarm;
- slowdown: `spin N` vs `spin 1.1·N` (a real 10 % longer loop): FAIL is a detection.

The same samples are also judged by the naive rule "mean(candidate)/mean(baseline) > 1 + τ".

    cargo build --release -p pipe
    python3 bench/bench/simulate.py --trials 200 --runs 20 [--pipe target/release/pipe]

Prints a markdown table; `--write` replaces the simulation section of bench/bench/RESULTS.md.
"""
import argparse
import json
import os
import pathlib
import subprocess
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent


def build_spin(tmp):
    exe = pathlib.Path(tmp) / "spin"
    subprocess.run(["cc", "-O2", "-o", str(exe), str(HERE / "spin.c")], check=True)
    return exe


def calibrate(spin, target_s):
    n = 1_000_000
    while True:
        t = time.perf_counter()
        subprocess.run([str(spin), str(n)], check=True)
        dt = time.perf_counter() - t
        if dt > target_s / 4:
            return int(n * target_s / dt)
        n *= 4


def trial(pipe, a, b, runs, threshold, seed, metric):
    out = subprocess.run(
        [pipe, "bench", "-N", "--runs", str(runs), "--no-record", "--json", "--metric", metric,
         "--threshold", str(threshold), "--seed", str(seed), "--", a, b],
        check=True, capture_output=True, text=True,
    ).stdout
    j = json.loads(out)
    key = "times" if metric == "wall" else "cpu_times"
    base, cand = j["results"][0][key], j["results"][1][key]
    verdict = j["pipe"]["comparisons"][0]["verdict"]
    naive = (sum(cand) / len(cand)) / (sum(base) / len(base)) > 1 + threshold / 100
    return verdict, naive


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threshold", type=float, default=5.0)
    ap.add_argument("--loop-ms", type=float, default=15.0)
    ap.add_argument("--pipe", default=str(HERE.parents[1] / "target/release/pipe"))
    ap.add_argument("--metric", choices=["wall", "cpu"], default="wall")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spin = build_spin(tmp)
        n = calibrate(spin, args.loop_ms / 1000)
        a = f"{spin} {n}"
        slow = f"{spin} {int(n * 1.1)}"
        counts = {}
        started = time.time()
        for name, cand in (("A/A (same loop)", a), ("10% slower loop", slow)):
            c = {"FAIL": 0, "PASS": 0, "INCONCLUSIVE": 0, "naive": 0}
            for i in range(args.trials):
                v, naive = trial(args.pipe, a, cand, args.runs, args.threshold, i + 1, args.metric)
                c[v] += 1
                c["naive"] += naive
            counts[name] = c
        minutes = (time.time() - started) / 60
    load = os.getloadavg()
    lines = [
        f"`--metric {args.metric}`: {args.trials} trials per row, {args.runs} interleaved runs "
        f"per command per trial, "
        f"loop ≈ {args.loop_ms:g} ms, τ = {args.threshold:g} %, family α = 0.01; "
        f"{minutes:.1f} min, load average at the end {load[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| case | pipe FAIL (flagged) | PASS | INCONCLUSIVE | naive mean rule flags |",
        "|:---|---:|---:|---:|---:|",
    ]
    for name, c in counts.items():
        t = args.trials
        lines.append(
            f"| {name} | {c['FAIL']}/{t} ({100 * c['FAIL'] / t:.1f} %) | {c['PASS']} | "
            f"{c['INCONCLUSIVE']} | {c['naive']}/{t} ({100 * c['naive'] / t:.1f} %) |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.write:
        path = HERE / "RESULTS.md"
        text = path.read_text() if path.exists() else ""
        tag = args.metric if args.runs == 20 else f"{args.metric} {args.runs}"
        start = f"<!-- simulation {tag} -->\n"
        end = f"<!-- /simulation {tag} -->\n"
        block = start + table + end
        if start in text and end in text:
            text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
        else:
            text += "\n" + block
        path.write_text(text)


if __name__ == "__main__":
    main()
