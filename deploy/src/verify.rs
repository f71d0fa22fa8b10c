//! The verify loop: sample every check each `interval` for `count` samples and judge.
//!
//! A sample is healthy when every check is, unhealthy when any check is, unknown otherwise.
//! The judge ([`Judge`]) fails as soon as unhealthy samples exceed `failure_limit` or the
//! health flips between healthy and unhealthy more than `flap_limit` times; it is
//! inconclusive as soon as unknown samples exceed `unknown_limit`. At the end of the window
//! it passes only when the last `consecutive_success` samples were healthy: an unknown tail
//! is inconclusive, an unhealthy one a failure. Unknown never passes.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::health::{Health, Probe, ProbeContext, probe};
use crate::spec::{Check, VerifySpec};

/// The result of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Healthy for the window.
    Passed,
    /// Unhealthy beyond the limits.
    Failed,
    /// Could not tell (unknown samples): never a pass.
    Inconclusive,
    /// Ctrl-C during the window.
    Interrupted,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Interrupted => "interrupted",
        })
    }
}

/// One sample of all checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// 1-based sample number.
    pub n: u32,
    /// When it was taken (RFC 3339).
    pub at: String,
    /// The combined health.
    pub health: Health,
    /// Each check's probe.
    pub probes: Vec<Probe>,
}

/// A finished verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in one line.
    pub reason: String,
    /// Every sample taken.
    pub samples: Vec<Sample>,
}

/// The decision rules, fed one sample health at a time.
#[derive(Clone, Debug)]
pub struct Judge {
    failure_limit: u32,
    unknown_limit: u32,
    consecutive_success: u32,
    flap_limit: u32,
    failures: u32,
    unknowns: u32,
    flaps: u32,
    last_definite: Option<Health>,
    tail: Vec<Health>,
}

impl Judge {
    /// A judge for `spec`'s limits.
    pub fn new(spec: &VerifySpec) -> Judge {
        Judge {
            failure_limit: spec.failure_limit,
            unknown_limit: spec.unknown_limit,
            consecutive_success: spec.consecutive_success.max(1),
            flap_limit: spec.flap_limit,
            failures: 0,
            unknowns: 0,
            flaps: 0,
            last_definite: None,
            tail: Vec::new(),
        }
    }

    /// Takes one sample; `Some` when the verdict is already certain.
    pub fn push(&mut self, h: Health) -> Option<(Verdict, String)> {
        self.tail.push(h);
        match h {
            Health::Unhealthy => self.failures += 1,
            Health::Unknown => self.unknowns += 1,
            Health::Healthy => {}
        }
        if h != Health::Unknown {
            if self.last_definite.is_some_and(|l| l != h) {
                self.flaps += 1;
            }
            self.last_definite = Some(h);
        }
        if self.failures > self.failure_limit {
            return Some((
                Verdict::Failed,
                format!(
                    "{} unhealthy sample{} (limit {})",
                    self.failures,
                    plural(self.failures),
                    self.failure_limit
                ),
            ));
        }
        if self.flaps > self.flap_limit {
            return Some((
                Verdict::Failed,
                format!(
                    "flapping: health changed {} times (limit {})",
                    self.flaps, self.flap_limit
                ),
            ));
        }
        if self.unknowns > self.unknown_limit {
            return Some((
                Verdict::Inconclusive,
                format!(
                    "{} unknown sample{} (limit {})",
                    self.unknowns,
                    plural(self.unknowns),
                    self.unknown_limit
                ),
            ));
        }
        None
    }

    /// The verdict at the end of the window.
    pub fn finish(&self) -> (Verdict, String) {
        let need = self.consecutive_success as usize;
        let tail = &self.tail[self.tail.len().saturating_sub(need)..];
        if tail.len() == need && tail.iter().all(|h| *h == Health::Healthy) {
            let n = self.tail.len();
            return (
                Verdict::Passed,
                format!("{n} sample{}, the last {need} healthy", plural(n as u32)),
            );
        }
        if tail.contains(&Health::Unknown) {
            return (
                Verdict::Inconclusive,
                format!("the last {need} samples were not all known to be healthy"),
            );
        }
        (
            Verdict::Failed,
            format!("not healthy at the end of the window (the last {need} samples)"),
        )
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Probes every check once and combines them.
pub fn sample(checks: &[Check], ctx: &ProbeContext) -> (Health, Vec<Probe>) {
    let probes: Vec<Probe> = checks.iter().map(|c| probe(c, ctx)).collect();
    let health = if probes.iter().any(|p| p.health == Health::Unhealthy) {
        Health::Unhealthy
    } else if probes.iter().all(|p| p.health == Health::Healthy) {
        Health::Healthy
    } else {
        Health::Unknown
    };
    (health, probes)
}

/// Sleeps `d` unless cancelled; false when cancelled.
pub(crate) fn nap(d: Duration, ctx: &ProbeContext) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if ctx.cancel.is_cancelled() {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(25)));
    }
    !ctx.cancel.is_cancelled()
}

/// Runs the verify loop; `on_sample` sees every sample as it is taken.
pub fn verify(
    spec: &VerifySpec,
    ctx: &ProbeContext,
    on_sample: &mut dyn FnMut(&Sample),
) -> Verification {
    let mut judge = Judge::new(spec);
    let mut samples = Vec::new();
    let interrupted = |samples: Vec<Sample>| Verification {
        verdict: Verdict::Interrupted,
        reason: "interrupted".to_owned(),
        samples,
    };
    if !nap(spec.initial_delay.unwrap_or_default(), ctx) {
        return interrupted(samples);
    }
    let count = spec.count();
    let mut next = Instant::now();
    for n in 1..=count {
        let (health, probes) = sample(&spec.checks, ctx);
        if ctx.cancel.is_cancelled() {
            return interrupted(samples);
        }
        let s = Sample {
            n,
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            health,
            probes,
        };
        on_sample(&s);
        samples.push(s);
        if let Some((verdict, reason)) = judge.push(health) {
            return Verification {
                verdict,
                reason,
                samples,
            };
        }
        if n < count {
            next += spec.interval();
            let now = Instant::now();
            if next > now && !nap(next - now, ctx) {
                return interrupted(samples);
            }
        }
    }
    let (verdict, reason) = judge.finish();
    Verification {
        verdict,
        reason,
        samples,
    }
}

/// Waits until every check is healthy in one sample, at most `timeout` (the pre-switch
/// checks of a blue-green deploy). Returns the last sample's probes and whether it passed.
pub fn wait_healthy(
    checks: &[Check],
    ctx: &ProbeContext,
    timeout: Duration,
    interval: Duration,
) -> (Verdict, Vec<Probe>) {
    let start = Instant::now();
    loop {
        let (h, probes) = sample(checks, ctx);
        if ctx.cancel.is_cancelled() {
            return (Verdict::Interrupted, probes);
        }
        if h == Health::Healthy {
            return (Verdict::Passed, probes);
        }
        if start.elapsed() + interval > timeout {
            let v = if h == Health::Unknown {
                Verdict::Inconclusive
            } else {
                Verdict::Failed
            };
            return (v, probes);
        }
        if !nap(interval, ctx) {
            return (Verdict::Interrupted, probes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::{Healthy as H, Unhealthy as U, Unknown as X};

    fn spec(failure_limit: u32, unknown_limit: u32, consecutive: u32, flaps: u32) -> VerifySpec {
        VerifySpec {
            checks: vec![],
            interval: None,
            initial_delay: None,
            count: None,
            window: None,
            failure_limit,
            unknown_limit,
            consecutive_success: consecutive,
            flap_limit: flaps,
        }
    }

    fn judge(s: &VerifySpec, seq: &[Health]) -> (Verdict, String, usize) {
        let mut j = Judge::new(s);
        for (i, h) in seq.iter().enumerate() {
            if let Some((v, r)) = j.push(*h) {
                return (v, r, i + 1);
            }
        }
        let (v, r) = j.finish();
        (v, r, seq.len())
    }

    /// The judge's rules, one row each: limits, samples, verdict, samples consumed.
    #[test]
    fn judge_table() {
        let rows: &[(VerifySpec, &[Health], Verdict, usize, &str)] = &[
            (
                spec(0, 0, 1, 2),
                &[H, H, H],
                Verdict::Passed,
                3,
                "3 samples, the last 1 healthy",
            ),
            (
                spec(0, 0, 1, 2),
                &[H, U, H],
                Verdict::Failed,
                2,
                "1 unhealthy sample (limit 0)",
            ),
            (
                spec(1, 0, 1, 2),
                &[H, U, H, H],
                Verdict::Passed,
                4,
                "4 samples",
            ),
            (
                spec(1, 0, 1, 2),
                &[U, H, U],
                Verdict::Failed,
                3,
                "2 unhealthy samples (limit 1)",
            ),
            // unknown never passes silently
            (
                spec(0, 0, 1, 2),
                &[H, X, H],
                Verdict::Inconclusive,
                2,
                "1 unknown sample (limit 0)",
            ),
            (
                spec(0, 1, 1, 2),
                &[H, X, H],
                Verdict::Passed,
                3,
                "3 samples",
            ),
            (
                spec(0, 1, 1, 2),
                &[H, H, X],
                Verdict::Inconclusive,
                3,
                "the last 1 samples were not all known",
            ),
            (
                spec(0, 5, 2, 2),
                &[X, X, X],
                Verdict::Inconclusive,
                3,
                "the last 2 samples",
            ),
            // flapping: health changes more often than the limit fail even under the failure limit
            (
                spec(5, 0, 1, 2),
                &[H, U, H, U, H],
                Verdict::Failed,
                4,
                "flapping: health changed 3 times (limit 2)",
            ),
            (
                spec(5, 0, 1, 4),
                &[H, U, H, U, H],
                Verdict::Passed,
                5,
                "5 samples",
            ),
            // unknowns in between do not count as changes
            (
                spec(5, 5, 1, 1),
                &[H, X, H, X, H],
                Verdict::Passed,
                5,
                "5 samples",
            ),
            // the end of the window must be settled
            (
                spec(2, 0, 2, 4),
                &[H, H, U],
                Verdict::Failed,
                3,
                "not healthy at the end of the window",
            ),
            (
                spec(2, 0, 2, 4),
                &[U, H, H],
                Verdict::Passed,
                3,
                "3 samples",
            ),
            (
                spec(0, 0, 3, 2),
                &[H, H],
                Verdict::Failed,
                2,
                "not healthy at the end",
            ),
        ];
        for (i, (s, seq, verdict, used, reason)) in rows.iter().enumerate() {
            let (v, r, n) = judge(s, seq);
            assert_eq!((v, n), (*verdict, *used), "row {i}: {r}");
            assert!(
                r.starts_with(reason),
                "row {i}: {r:?} does not start with {reason:?}"
            );
        }
    }
}
