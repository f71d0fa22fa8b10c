//! The regression gate (design: promotion.md §2.5). Per benchmark, candidate samples `C` are
//! compared with baseline samples `B` for "lower is better" metrics:
//!
//! - the one-sided Mann-Whitney U test of `ln C − ln(1+τ)` against `ln B` (is the candidate
//!   slower than the baseline by more than τ?), with Holm's adjustment across benchmarks;
//! - a percentile bootstrap interval (seeded, so reproducible) of `median(C) / median(B)`;
//! - the Hodges-Lehmann ratio with its distribution-free interval, reported alongside.
//!
//! **FAIL** needs both: a significant U test *and* the whole bootstrap interval above `1+τ`.
//! **PASS** needs the mirror image: the test that the ratio stays below `1+τ` significant and
//! the bootstrap interval's upper end at or below `1+τ`. Anything else — too few samples, an
//! interval too wide to resolve τ, different machines — is **INCONCLUSIVE**. A decision is
//! never taken from one number.

use serde::{Deserialize, Serialize};

use super::stats::{self, Alternative, Interval};

/// The decision for one benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Shown to be within the threshold (or faster).
    Pass,
    /// Shown to be slower than the threshold allows.
    Fail,
    /// Neither could be shown.
    Inconclusive,
}

impl Verdict {
    /// `PASS`, `FAIL` or `INCONCLUSIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "INCONCLUSIVE",
        }
    }

    /// The gate over several benchmarks: FAIL if any failed, else INCONCLUSIVE if any was,
    /// else PASS.
    pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut out = Verdict::Pass;
        for v in verdicts {
            match v {
                Verdict::Fail => return Verdict::Fail,
                Verdict::Inconclusive => out = Verdict::Inconclusive,
                Verdict::Pass => {}
            }
        }
        out
    }
}

/// Gate settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateOptions {
    /// τ: the slowdown that counts as a regression (0.05 = 5 %).
    pub threshold: f64,
    /// Family-wise significance level (Holm across the benchmarks compared together).
    pub alpha: f64,
    /// Fewer samples on either side give INCONCLUSIVE.
    pub min_samples: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            threshold: 0.05,
            alpha: 0.01,
            min_samples: 10,
            resamples: 10_000,
            seed: 0x5EED,
        }
    }
}

/// The comparison of one benchmark.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Benchmark name.
    pub name: String,
    /// The decision.
    pub verdict: Verdict,
    /// Why, in a few words.
    pub reason: String,
    /// Baseline sample count.
    pub n_baseline: usize,
    /// Candidate sample count.
    pub n_candidate: usize,
    /// `median(C) / median(B)`.
    pub median_ratio: f64,
    /// Percentile bootstrap interval of the median ratio (level `1 − 2α`).
    pub bootstrap_ci: Option<Interval>,
    /// Hodges-Lehmann ratio estimate.
    pub hl_ratio: f64,
    /// Its distribution-free interval (each end one-sided at α).
    pub hl_ci: Option<Interval>,
    /// Holm-adjusted p-value of "slower than 1+τ".
    pub p_regression: f64,
    /// Holm-adjusted p-value of "within 1+τ".
    pub p_within: f64,
    /// Candidate faster than the baseline (significant, whole interval below 1).
    pub improved: bool,
    /// The method, for records: `mwu+bootstrap-median-ratio/1`.
    pub method: String,
    /// For a FAIL in `pipe bench`: whether the confirmation rerun failed too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<bool>,
}

/// One benchmark's samples for [`compare_all`].
pub struct Pair<'a> {
    /// Name.
    pub name: &'a str,
    /// Baseline samples.
    pub baseline: &'a [f64],
    /// Candidate samples.
    pub candidate: &'a [f64],
}

fn logs(x: &[f64]) -> Vec<f64> {
    // A corrected time can reach zero; keep it finite in log space.
    x.iter().map(|v| v.max(1e-12).ln()).collect()
}

/// Compares many benchmarks at once (Holm's adjustment over the set).
pub fn compare_all(pairs: &[Pair<'_>], opts: &GateOptions) -> Vec<Comparison> {
    struct Raw {
        p_reg: f64,
        p_within: f64,
        p_faster: f64,
    }
    let tau_ln = (1.0 + opts.threshold).ln();
    let raws: Vec<Option<Raw>> = pairs
        .iter()
        .map(|p| {
            let y = logs(p.baseline);
            let x: Vec<f64> = logs(p.candidate).iter().map(|v| v - tau_ln).collect();
            let xs = logs(p.candidate);
            let reg = stats::mann_whitney(&x, &y, Alternative::Greater, None)?;
            let within = stats::mann_whitney(&x, &y, Alternative::Less, None)?;
            let faster = stats::mann_whitney(&xs, &y, Alternative::Less, None)?;
            Some(Raw {
                p_reg: reg.p,
                p_within: within.p,
                p_faster: faster.p,
            })
        })
        .collect();
    let pick = |f: fn(&Raw) -> f64| -> Vec<f64> {
        raws.iter().map(|r| r.as_ref().map_or(1.0, f)).collect()
    };
    let adj_reg = stats::holm(&pick(|r| r.p_reg));
    let adj_within = stats::holm(&pick(|r| r.p_within));
    let adj_faster = stats::holm(&pick(|r| r.p_faster));
    pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            decide(
                p,
                opts,
                raws[i].is_some(),
                adj_reg[i],
                adj_within[i],
                adj_faster[i],
            )
        })
        .collect()
}

/// Compares one benchmark.
pub fn compare(name: &str, baseline: &[f64], candidate: &[f64], opts: &GateOptions) -> Comparison {
    let mut v = compare_all(
        &[Pair {
            name,
            baseline,
            candidate,
        }],
        opts,
    );
    v.swap_remove(0)
}

fn decide(
    p: &Pair<'_>,
    opts: &GateOptions,
    tested: bool,
    p_reg: f64,
    p_within: f64,
    p_faster: f64,
) -> Comparison {
    let limit = 1.0 + opts.threshold;
    let mb = stats::median(p.baseline);
    let mc = stats::median(p.candidate);
    let level = 1.0 - 2.0 * opts.alpha;
    let boot = stats::bootstrap_ratio_ci(
        p.candidate,
        p.baseline,
        stats::median_mut,
        level,
        opts.resamples,
        opts.seed,
    );
    let hl = stats::hodges_lehmann(&logs(p.candidate), &logs(p.baseline), opts.alpha);
    let mut c = Comparison {
        name: p.name.to_string(),
        verdict: Verdict::Inconclusive,
        reason: String::new(),
        n_baseline: p.baseline.len(),
        n_candidate: p.candidate.len(),
        median_ratio: mc / mb,
        bootstrap_ci: boot,
        hl_ratio: hl.map_or(f64::NAN, |h| h.0.exp()),
        hl_ci: hl.map(|h| Interval {
            low: h.1.low.exp(),
            high: h.1.high.exp(),
        }),
        p_regression: p_reg,
        p_within,
        improved: false,
        method: "mwu+bootstrap-median-ratio/1".to_string(),
        confirmed: None,
    };
    let n = p.baseline.len().min(p.candidate.len());
    if !tested || n < opts.min_samples {
        c.reason = format!(
            "too few samples ({n}, at least {} needed on each side)",
            opts.min_samples
        );
        return c;
    }
    let Some(b) = boot else {
        c.reason = "no finite bootstrap interval".to_string();
        return c;
    };
    let pct = |r: f64| format!("{:+.1}%", (r - 1.0) * 100.0);
    if p_reg < opts.alpha && b.low > limit {
        c.verdict = Verdict::Fail;
        c.reason = format!(
            "slower by {} (interval {} … {}), beyond the {} threshold",
            pct(c.median_ratio),
            pct(b.low),
            pct(b.high),
            pct(limit)
        );
        return c;
    }
    let wide = c.hl_ci.is_none_or(|h| {
        !h.low.is_finite() || !h.high.is_finite() || h.high / h.low > 1.0 + 2.0 * opts.threshold
    });
    // Width does not matter here: an interval wholly below 1+τ has resolved τ.
    if p_within < opts.alpha && b.high <= limit {
        c.verdict = Verdict::Pass;
        c.improved = p_faster < opts.alpha && b.high < 1.0;
        c.reason = if c.improved {
            format!("faster by {}", pct(c.median_ratio).trim_start_matches('-'))
        } else {
            format!("within the {} threshold", pct(limit))
        };
        return c;
    }
    c.reason = if wide {
        format!(
            "too noisy to resolve a {} change (interval {} … {})",
            pct(limit),
            pct(b.low),
            pct(b.high)
        )
    } else {
        format!(
            "change {} not shown to be above or below the {} threshold (interval {} … {})",
            pct(c.median_ratio),
            pct(limit),
            pct(b.low),
            pct(b.high)
        )
    };
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rng: &mut stats::Rng, n: usize, center: f64, cv: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                // Sum of uniforms: roughly normal, deterministic.
                let z: f64 = (0..12).map(|_| rng.unit()).sum::<f64>() - 6.0;
                center * (z * cv).exp()
            })
            .collect()
    }

    #[test]
    fn clear_regression_fails_and_same_passes() {
        let mut rng = stats::Rng::new(1);
        let b = sample(&mut rng, 30, 1.0, 0.01);
        let slow = sample(&mut rng, 30, 1.2, 0.01);
        let same = sample(&mut rng, 30, 1.0, 0.01);
        let o = GateOptions::default();
        let f = compare("x", &b, &slow, &o);
        assert_eq!(f.verdict, Verdict::Fail, "{f:?}");
        assert!(f.reason.starts_with("slower by +"), "{}", f.reason);
        let p = compare("x", &b, &same, &o);
        assert_eq!(p.verdict, Verdict::Pass, "{p:?}");
        assert!(!p.improved);
        let fast = sample(&mut rng, 30, 0.8, 0.01);
        let i = compare("x", &b, &fast, &o);
        assert_eq!(i.verdict, Verdict::Pass);
        assert!(i.improved, "{i:?}");
    }

    #[test]
    fn noise_and_small_samples_are_inconclusive() {
        let mut rng = stats::Rng::new(2);
        let o = GateOptions::default();
        let b = sample(&mut rng, 5, 1.0, 0.01);
        let c = sample(&mut rng, 5, 1.5, 0.01);
        let r = compare("x", &b, &c, &o);
        assert_eq!(r.verdict, Verdict::Inconclusive);
        assert!(r.reason.contains("too few samples"), "{}", r.reason);
        let b = sample(&mut rng, 12, 1.0, 0.3);
        let c = sample(&mut rng, 12, 1.0, 0.3);
        let r = compare("x", &b, &c, &o);
        assert_eq!(r.verdict, Verdict::Inconclusive, "{r:?}");
    }

    #[test]
    fn holm_protects_many_benchmarks() {
        // 40 A/A comparisons: the family-wise rule keeps every one of them from failing.
        let mut rng = stats::Rng::new(3);
        let data: Vec<(String, Vec<f64>, Vec<f64>)> = (0..40)
            .map(|i| {
                (
                    format!("b{i}"),
                    sample(&mut rng, 15, 1.0, 0.05),
                    sample(&mut rng, 15, 1.0, 0.05),
                )
            })
            .collect();
        let pairs: Vec<Pair<'_>> = data
            .iter()
            .map(|(n, b, c)| Pair {
                name: n,
                baseline: b,
                candidate: c,
            })
            .collect();
        let r = compare_all(&pairs, &GateOptions::default());
        assert!(r.iter().all(|c| c.verdict != Verdict::Fail));
        assert_eq!(
            Verdict::combine(r.iter().map(|c| c.verdict)),
            if r.iter().any(|c| c.verdict == Verdict::Inconclusive) {
                Verdict::Inconclusive
            } else {
                Verdict::Pass
            }
        );
    }
}
