#!/usr/bin/env python3
"""Reference values for pipe's benchmark statistics, computed once with scipy.

Writes actions/tests/fixtures/bench/scipy_stats.json; `cargo nextest run -p pipe-actions
bench::` checks pipe's statistics against it. Rerun only to add cases:

    pip install scipy && python3 bench/bench/scipy_fixtures.py
"""
import json
import pathlib

import numpy as np
import scipy
from scipy import stats

rng = np.random.default_rng(20261126)
cases = []


def add(name, x, y):
    x = [float(v) for v in x]
    y = [float(v) for v in y]
    case = {"name": name, "x": x, "y": y, "mwu": []}
    for method in ("exact", "asymptotic"):
        if method == "exact" and (len(set(x + y)) < len(x + y)):
            continue
        for alt in ("two-sided", "greater", "less"):
            r = stats.mannwhitneyu(x, y, alternative=alt, method=method)
            case["mwu"].append(
                {"method": method, "alternative": alt, "u": float(r.statistic), "p": float(r.pvalue)}
            )
    xa = np.array(x)
    case["median"] = float(np.median(xa))
    case["mean"] = float(np.mean(xa))
    case["stddev"] = float(np.std(xa, ddof=1))
    case["mad"] = float(stats.median_abs_deviation(xa, scale=1.0))
    case["quantiles"] = {str(q): float(np.quantile(xa, q)) for q in (0.05, 0.25, 0.75, 0.95)}
    b = stats.bootstrap(
        (xa,), np.median, confidence_level=0.95, n_resamples=20000, method="percentile",
        random_state=np.random.default_rng(1),
    )
    case["bootstrap_median_95"] = [float(b.confidence_interval.low), float(b.confidence_interval.high)]
    cases.append(case)


add("small-no-ties", rng.normal(10, 1, 6), rng.normal(11, 1, 7))
add("shifted-lognormal", np.exp(rng.normal(0.0, 0.05, 15)), np.exp(rng.normal(0.1, 0.05, 12)))
add("aa-same", np.exp(rng.normal(0.0, 0.03, 20)), np.exp(rng.normal(0.0, 0.03, 20)))
add("ties", [1, 2, 2, 3, 3, 3, 4, 5], [2, 3, 4, 4, 5, 6, 6])
add("large-timings", rng.gamma(50, 0.0004, 40), rng.gamma(50, 0.00042, 35))
add("two-each", [1.0, 1.5], [2.0, 3.0])

out = {"scipy": scipy.__version__, "numpy": np.__version__, "cases": cases}
path = pathlib.Path(__file__).resolve().parents[2] / "actions/tests/fixtures/bench/scipy_stats.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {path}")
