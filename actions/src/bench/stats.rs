//! Statistics for benchmark samples: summaries, outliers, the percentile bootstrap on a seeded
//! generator, the Mann-Whitney U test (exact and normal approximation with tie and continuity
//! correction, as scipy computes them), the Hodges-Lehmann shift with its distribution-free
//! interval, and Holm's step-down adjustment.
//!
//! Every function takes plain `f64` slices and never panics on empty or non-finite input: it
//! returns `None` or `NaN` instead.

use serde::{Deserialize, Serialize};

/// A small deterministic generator (SplitMix64): the same seed gives the same resamples on
/// every machine, so a gate decision can be reproduced.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (`n > 0`), without modulo bias worth mentioning for the
    /// sample sizes benchmarks have (Lemire's multiply-shift).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Arithmetic mean (`NaN` when empty).
pub fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (n − 1 in the denominator, as hyperfine and numpy's `ddof=1`);
/// `NaN` below two values.
pub fn stddev(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// Sorted copy (NaNs last).
pub fn sorted(x: &[f64]) -> Vec<f64> {
    let mut v = x.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Quantile `q` in [0, 1] of sorted data with linear interpolation (numpy's default, type 7).
pub fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    if s.is_empty() {
        return f64::NAN;
    }
    let h = (s.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    s[lo] + (h - lo as f64) * (s[hi] - s[lo])
}

/// Median.
pub fn median(x: &[f64]) -> f64 {
    quantile_sorted(&sorted(x), 0.5)
}

/// Median of a buffer it may reorder (linear-time selection; used by the bootstrap, where a
/// sort per resample would cost `n log n` thousands of times).
pub fn median_mut(x: &mut [f64]) -> f64 {
    let n = x.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, hi, _) = x.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *hi;
    if n % 2 == 1 {
        return hi;
    }
    // The lower middle is the largest value of the lower part.
    let lower = x[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower + hi) / 2.0
}

/// Median absolute deviation, unscaled (scipy's `median_abs_deviation(scale=1.0)`).
pub fn mad(x: &[f64]) -> f64 {
    let m = median(x);
    let dev: Vec<f64> = x.iter().map(|v| (v - m).abs()).collect();
    median(&dev)
}

/// Summary statistics of one sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (`NaN` below two values; serialised as null).
    pub stddev: Option<f64>,
    /// Median.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Median absolute deviation.
    pub mad: f64,
}

/// Summarises a sample; `None` when it is empty.
pub fn summarize(x: &[f64]) -> Option<Summary> {
    if x.is_empty() {
        return None;
    }
    let s = sorted(x);
    let sd = stddev(x);
    Some(Summary {
        n: x.len(),
        mean: mean(x),
        stddev: sd.is_finite().then_some(sd),
        median: quantile_sorted(&s, 0.5),
        min: s[0],
        max: s[s.len() - 1],
        mad: mad(x),
    })
}

/// Outlier counts by Tukey's fences on the interquartile range (Criterion's classification:
/// mild beyond 1.5 IQR, severe beyond 3 IQR). Outliers are counted, never dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outliers {
    /// Below Q1 − 3 IQR.
    pub low_severe: usize,
    /// Between Q1 − 3 IQR and Q1 − 1.5 IQR.
    pub low_mild: usize,
    /// Between Q3 + 1.5 IQR and Q3 + 3 IQR.
    pub high_mild: usize,
    /// Above Q3 + 3 IQR.
    pub high_severe: usize,
}

impl Outliers {
    /// All outliers.
    pub fn total(&self) -> usize {
        self.low_severe + self.low_mild + self.high_mild + self.high_severe
    }
}

/// Classifies outliers with Tukey's fences.
pub fn outliers(x: &[f64]) -> Outliers {
    let s = sorted(x);
    let mut o = Outliers::default();
    if s.len() < 4 {
        return o;
    }
    let q1 = quantile_sorted(&s, 0.25);
    let q3 = quantile_sorted(&s, 0.75);
    let iqr = q3 - q1;
    for &v in &s {
        if v < q1 - 3.0 * iqr {
            o.low_severe += 1;
        } else if v < q1 - 1.5 * iqr {
            o.low_mild += 1;
        } else if v > q3 + 3.0 * iqr {
            o.high_severe += 1;
        } else if v > q3 + 1.5 * iqr {
            o.high_mild += 1;
        }
    }
    o
}

/// A confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// Percentile bootstrap interval of `stat` over resamples of `x` (scipy's
/// `bootstrap(method="percentile")`): `resamples` draws with replacement, the
/// `(1 − level)/2` and `(1 + level)/2` quantiles of the statistic.
pub fn bootstrap_ci(
    x: &[f64],
    stat: impl Fn(&mut [f64]) -> f64,
    level: f64,
    resamples: usize,
    seed: u64,
) -> Option<Interval> {
    if x.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = Rng::new(seed);
    let mut buf = vec![0.0; x.len()];
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for b in buf.iter_mut() {
            *b = x[rng.below(x.len())];
        }
        stats.push(stat(&mut buf));
    }
    percentile_interval(stats, level)
}

/// Percentile bootstrap interval of the ratio `stat(c) / stat(b)` of two independent samples,
/// each resampled on its own.
pub fn bootstrap_ratio_ci(
    c: &[f64],
    b: &[f64],
    stat: impl Fn(&mut [f64]) -> f64,
    level: f64,
    resamples: usize,
    seed: u64,
) -> Option<Interval> {
    if c.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = Rng::new(seed);
    let mut bc = vec![0.0; c.len()];
    let mut bb = vec![0.0; b.len()];
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for v in bc.iter_mut() {
            *v = c[rng.below(c.len())];
        }
        for v in bb.iter_mut() {
            *v = b[rng.below(b.len())];
        }
        stats.push(stat(&mut bc) / stat(&mut bb));
    }
    percentile_interval(stats, level)
}

fn percentile_interval(mut stats: Vec<f64>, level: f64) -> Option<Interval> {
    stats.retain(|v| v.is_finite());
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(f64::total_cmp);
    let a = (1.0 - level) / 2.0;
    Some(Interval {
        low: quantile_sorted(&stats, a),
        high: quantile_sorted(&stats, 1.0 - a),
    })
}

/// Which way a one- or two-sided test looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    /// `x` and `y` differ.
    TwoSided,
    /// `x` tends to be larger than `y`.
    Greater,
    /// `x` tends to be smaller than `y`.
    Less,
}

/// How a p-value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The exact null distribution (no ties).
    Exact,
    /// The normal approximation with tie and continuity correction.
    Asymptotic,
}

/// The result of a Mann-Whitney U test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// U of the first sample (scipy's `statistic`).
    pub u: f64,
    /// The p-value.
    pub p: f64,
    /// How `p` was computed.
    pub method: Method,
}

/// Midranks (1-based) of the concatenation of `x` and `y`, and the tie term Σ(t³ − t).
fn ranks(x: &[f64], y: &[f64]) -> (Vec<f64>, f64) {
    let mut all: Vec<(f64, usize)> = x.iter().chain(y).copied().zip(0..).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut r = vec![0.0; all.len()];
    let mut ties = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for item in &all[i..=j] {
            r[item.1] = rank;
        }
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        i = j + 1;
    }
    (r, ties)
}

/// Exact null distribution of U for sample sizes `n` and `m`: `P(U = u)` for `u` in `0..=n·m`.
/// Counts obey `f(n, m, u) = f(n − 1, m, u − m) + f(n, m − 1, u)`; kept as probabilities
/// `p(n, m, u) = n/(n+m)·p(n − 1, m, u − m) + m/(n+m)·p(n, m − 1, u)` so nothing overflows.
pub fn u_null_distribution(n: usize, m: usize) -> Vec<f64> {
    // layer[j] = distribution for (i, j) at the current i.
    let mut prev: Vec<Vec<f64>> = (0..=m).map(|_| vec![1.0]).collect();
    for i in 1..=n {
        let mut cur: Vec<Vec<f64>> = Vec::with_capacity(m + 1);
        cur.push(vec![1.0]);
        for j in 1..=m {
            let size = i * j + 1;
            let mut d = vec![0.0; size];
            let wi = i as f64 / (i + j) as f64;
            let wj = j as f64 / (i + j) as f64;
            // From (i − 1, j): U shifted by j (the new x value beats all j values of y).
            for (u, p) in prev[j].iter().enumerate() {
                d[u + j] += wi * p;
            }
            for (u, p) in cur[j - 1].iter().enumerate() {
                d[u] += wj * p;
            }
            cur.push(d);
        }
        prev = cur;
    }
    prev.swap_remove(m)
}

/// Standard normal survival function `P(Z > z)`.
pub fn norm_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// Standard normal quantile (Acklam's rational approximation refined by one Halley step on
/// `erfc`; accurate to about 1e-15).
pub fn norm_ppf(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) || p.is_nan() {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let plow = 0.02425;
    let x = if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley step.
    let e = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// Mann-Whitney U test of `x` against `y`, as `scipy.stats.mannwhitneyu` computes it.
/// `method: None` picks exact when there are no ties and `n·m ≤ 400`, else asymptotic.
pub fn mann_whitney(
    x: &[f64],
    y: &[f64],
    alternative: Alternative,
    method: Option<Method>,
) -> Option<MannWhitney> {
    let (n, m) = (x.len(), y.len());
    if n == 0 || m == 0 || x.iter().chain(y).any(|v| !v.is_finite()) {
        return None;
    }
    let (r, ties) = ranks(x, y);
    let r1: f64 = r[..n].iter().sum();
    let nf = n as f64;
    let mf = m as f64;
    let u1 = r1 - nf * (nf + 1.0) / 2.0;
    let u2 = nf * mf - u1;
    let method = method.unwrap_or(if ties == 0.0 && n * m <= 400 {
        Method::Exact
    } else {
        Method::Asymptotic
    });
    let p = match method {
        Method::Exact => {
            let dist = u_null_distribution(n, m);
            // P(U ≥ u) for the statistic in question (U is integer without ties).
            let sf = |u: f64| -> f64 {
                let k = u.ceil().max(0.0) as usize;
                dist.iter().skip(k).sum::<f64>()
            };
            match alternative {
                Alternative::Greater => sf(u1),
                Alternative::Less => sf(u2),
                Alternative::TwoSided => (2.0 * sf(u1.max(u2))).min(1.0),
            }
        }
        Method::Asymptotic => {
            let big_n = nf + mf;
            let mu = nf * mf / 2.0;
            let var = nf * mf / 12.0 * ((big_n + 1.0) - ties / (big_n * (big_n - 1.0)));
            let s = var.sqrt();
            let z = |u: f64| (u - mu - 0.5) / s;
            let p = match alternative {
                Alternative::Greater => norm_sf(z(u1)),
                Alternative::Less => norm_sf(z(u2)),
                Alternative::TwoSided => 2.0 * norm_sf(z(u1.max(u2))),
            };
            if s == 0.0 { 1.0 } else { p.clamp(0.0, 1.0) }
        }
    };
    Some(MannWhitney { u: u1, p, method })
}

/// The Hodges-Lehmann estimate of the shift `x − y` (median of all pairwise differences) with
/// the distribution-free interval obtained by inverting the U test: each bound is one-sided at
/// `alpha`, so `[low, high]` is a two-sided `1 − 2·alpha` interval.
pub fn hodges_lehmann(x: &[f64], y: &[f64], alpha: f64) -> Option<(f64, Interval)> {
    let (n, m) = (x.len(), y.len());
    // All pairwise differences: bounded so thousands of runs per side stay cheap.
    if n == 0 || m == 0 || n.saturating_mul(m) > 4_000_000 {
        return None;
    }
    let mut d: Vec<f64> = Vec::with_capacity(n * m);
    for a in x {
        for b in y {
            d.push(a - b);
        }
    }
    d.sort_by(f64::total_cmp);
    let est = quantile_sorted(&d, 0.5);
    let nm = n * m;
    // k: the number of differences cut off at each end (1-based index of the bound).
    let (_, ties) = ranks(x, y);
    let k = if ties == 0.0 && nm <= 400 {
        // Largest c with P(U ≤ c − 1) ≤ alpha → the bound is D_(c).
        let dist = u_null_distribution(n, m);
        let mut cum = 0.0;
        let mut c = 0;
        for p in &dist {
            if cum + p > alpha {
                break;
            }
            cum += p;
            c += 1;
        }
        c
    } else {
        let nf = n as f64;
        let mf = m as f64;
        let big_n = nf + mf;
        let var = nf * mf / 12.0 * ((big_n + 1.0) - ties / (big_n * (big_n - 1.0)));
        let c = nf * mf / 2.0 - norm_ppf(1.0 - alpha) * var.sqrt() - 0.5;
        c.floor().max(0.0) as usize
    };
    if k == 0 {
        // Too few samples to bound the shift at this level.
        return Some((
            est,
            Interval {
                low: f64::NEG_INFINITY,
                high: f64::INFINITY,
            },
        ));
    }
    let k = k.min(nm);
    Some((
        est,
        Interval {
            low: d[k - 1],
            high: d[nm - k],
        },
    ))
}

/// Holm's step-down adjusted p-values (family-wise error control), in input order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let n = p.len();
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; n];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let adj = ((n - rank) as f64 * p[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_small_sample() {
        let s = summarize(&[1.0, 2.0, 3.0, 4.0, 100.0]).expect("non-empty");
        assert_eq!(s.median, 3.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.mad, 1.0);
        assert!(summarize(&[]).is_none());
        assert_eq!(summarize(&[2.0]).expect("one").stddev, None);
    }

    #[test]
    fn tukey_fences_classify_outliers() {
        let mut x: Vec<f64> = (0..20).map(|i| 10.0 + f64::from(i % 5) * 0.1).collect();
        x.push(100.0);
        x.push(10.9);
        let o = outliers(&x);
        assert_eq!(o.high_severe, 1);
        assert_eq!(o.high_mild, 1);
        assert_eq!(o.total(), 2);
    }

    #[test]
    fn null_distribution_sums_to_one_and_is_symmetric() {
        let d = u_null_distribution(4, 6);
        assert_eq!(d.len(), 25);
        assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for u in 0..d.len() {
            assert!((d[u] - d[d.len() - 1 - u]).abs() < 1e-15);
        }
        // 1 / C(10, 4): only one arrangement gives U = 0.
        assert!((d[0] - 1.0 / 210.0).abs() < 1e-15);
    }

    #[test]
    fn median_mut_matches_median() {
        let mut rng = Rng::new(9);
        for n in 1..40 {
            let x: Vec<f64> = (0..n).map(|_| rng.unit()).collect();
            let mut y = x.clone();
            assert_eq!(median_mut(&mut y), median(&x), "{n}");
        }
        assert!(median_mut(&mut []).is_nan());
    }

    #[test]
    fn holm_is_monotone_and_capped() {
        assert_eq!(holm(&[0.01, 0.04, 0.03]), vec![0.03, 0.06, 0.06]);
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
    }

    #[test]
    fn ppf_inverts_sf() {
        for p in [1e-10, 0.001, 0.01, 0.2, 0.5, 0.7, 0.99, 0.999_999] {
            let z = norm_ppf(p);
            assert!((norm_sf(-z) - p).abs() < 1e-14 * p.max(1e-3), "{p}");
        }
    }

    #[test]
    fn rng_is_reproducible() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(7);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert!((0..1000).all(|_| r.below(3) < 3));
    }

    #[test]
    fn matches_scipy() {
        let fx: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/bench/scipy_stats.json"))
                .expect("fixture");
        let floats = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .expect("array")
                .iter()
                .map(|x| x.as_f64().expect("number"))
                .collect()
        };
        let close = |a: f64, b: f64, tol: f64, what: &str| {
            assert!(
                (a - b).abs() <= tol * b.abs().max(1e-300),
                "{what}: pipe {a} vs scipy {b}"
            );
        };
        let cases = fx["cases"].as_array().expect("cases");
        assert!(cases.len() >= 6);
        for c in cases {
            let name = c["name"].as_str().expect("name");
            let x = floats(&c["x"]);
            let y = floats(&c["y"]);
            close(median(&x), c["median"].as_f64().expect("f"), 1e-12, name);
            close(mean(&x), c["mean"].as_f64().expect("f"), 1e-12, name);
            close(stddev(&x), c["stddev"].as_f64().expect("f"), 1e-10, name);
            close(mad(&x), c["mad"].as_f64().expect("f"), 1e-12, name);
            let s = sorted(&x);
            for (q, v) in c["quantiles"].as_object().expect("obj") {
                let q: f64 = q.parse().expect("q");
                close(quantile_sorted(&s, q), v.as_f64().expect("f"), 1e-12, name);
            }
            for t in c["mwu"].as_array().expect("mwu") {
                let method = match t["method"].as_str() {
                    Some("exact") => Method::Exact,
                    _ => Method::Asymptotic,
                };
                let alt = match t["alternative"].as_str() {
                    Some("greater") => Alternative::Greater,
                    Some("less") => Alternative::Less,
                    _ => Alternative::TwoSided,
                };
                let r = mann_whitney(&x, &y, alt, Some(method)).expect("test");
                let what = format!("{name} {method:?} {alt:?}");
                close(r.u, t["u"].as_f64().expect("u"), 1e-12, &what);
                close(r.p, t["p"].as_f64().expect("p"), 1e-9, &what);
            }
            // Different generators: the percentile bootstrap agrees within Monte Carlo error
            // (a tenth of the interval's width with 20 000 resamples on each side).
            let want = floats(&c["bootstrap_median_95"]);
            let got = bootstrap_ci(&x, median_mut, 0.95, 20_000, 1).expect("ci");
            let tol = (want[1] - want[0]) * 0.1 + 1e-12;
            assert!(
                (got.low - want[0]).abs() <= tol,
                "{name}: low {} vs {}",
                got.low,
                want[0]
            );
            assert!(
                (got.high - want[1]).abs() <= tol,
                "{name}: high {} vs {}",
                got.high,
                want[1]
            );
        }
    }
}
