//! Prometheus text metrics for deploys, computed from the release records (so they are
//! right after a restart and need no daemon). `pipe metrics` prints them; the server's
//! `/metrics` can serve the same text. Other crates add their families with [`Family`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::promtext::write_sample;
use crate::release::{EnvStore, ReleaseState, StoreError, environments};

/// Upper bounds (seconds) of the deploy duration histogram.
pub const DURATION_BUCKETS: [f64; 9] = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// One metric family being written.
#[derive(Debug)]
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl<'a> Family<'a> {
    /// Starts a family with its `# HELP` and `# TYPE` lines.
    pub fn new(out: &'a mut String, name: &'a str, kind: &str, help: &str) -> Family<'a> {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        Family { out, name }
    }

    /// One sample of the family (`suffix` for `_bucket`, `_sum`, `_count`).
    pub fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        write_sample(self.out, &format!("{}{suffix}", self.name), labels, value);
    }
}

fn result_label(s: ReleaseState) -> &'static str {
    match s {
        ReleaseState::Deploying | ReleaseState::Verifying => "in_progress",
        ReleaseState::Verified => "verified",
        ReleaseState::Held => "held",
        ReleaseState::Failed => "failed",
        ReleaseState::RolledBack => "rolled_back",
        ReleaseState::Interrupted => "interrupted",
    }
}

/// The deploy metrics of every environment of a repository's state folder.
pub fn render(state_dir: &Path) -> Result<String, StoreError> {
    let mut out = String::new();
    let mut per_env = Vec::new();
    for env in environments(state_dir) {
        let store = EnvStore::open(state_dir, &env);
        per_env.push((env, store.list()?, store.state()?));
    }
    {
        let mut f = Family::new(
            &mut out,
            "pipe_deploys_total",
            "counter",
            "Deploys and rollbacks by environment, kind and result.",
        );
        for (env, releases, _) in &per_env {
            let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for r in releases {
                let kind = if r.rollback.is_some() {
                    "rollback"
                } else {
                    "deploy"
                };
                *counts.entry((kind, result_label(r.state))).or_default() += 1;
            }
            for ((kind, result), n) in counts {
                f.sample(
                    "",
                    &[("env", env), ("kind", kind), ("result", result)],
                    n as f64,
                );
            }
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "pipe_rollbacks_total",
            "counter",
            "Rollbacks by environment and trigger (auto after a failed verify, or manual).",
        );
        for (env, releases, _) in &per_env {
            for trigger in ["auto", "manual"] {
                let n = releases
                    .iter()
                    .filter(|r| r.rollback.as_deref() == Some(trigger))
                    .count()
                    + if trigger == "auto" {
                        // a blue-green auto rollback that switched nothing has no record of its own
                        releases
                            .iter()
                            .filter(|r| {
                                r.state == ReleaseState::RolledBack
                                    && !releases.iter().any(|x| {
                                        x.rollback.as_deref() == Some("auto")
                                            && x.previous == Some(r.seq)
                                    })
                            })
                            .count()
                    } else {
                        0
                    };
                f.sample("", &[("env", env), ("trigger", trigger)], n as f64);
            }
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "pipe_deploy_duration_seconds",
            "histogram",
            "Time from the start of a deploy or rollback to its verdict.",
        );
        for (env, releases, _) in &per_env {
            let durations: Vec<f64> = releases
                .iter()
                .filter_map(|r| r.duration_ms)
                .map(|ms| ms as f64 / 1000.0)
                .collect();
            for le in DURATION_BUCKETS {
                let n = durations.iter().filter(|d| **d <= le).count();
                f.sample(
                    "_bucket",
                    &[("env", env), ("le", &format!("{le}"))],
                    n as f64,
                );
            }
            f.sample(
                "_bucket",
                &[("env", env), ("le", "+Inf")],
                durations.len() as f64,
            );
            f.sample("_sum", &[("env", env)], durations.iter().sum());
            f.sample("_count", &[("env", env)], durations.len() as f64);
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "pipe_verify_samples_total",
            "counter",
            "Verify samples by environment and health.",
        );
        for (env, releases, _) in &per_env {
            let (mut h, mut u, mut x) = (0u64, 0u64, 0u64);
            for v in releases.iter().filter_map(|r| r.verify.as_ref()) {
                h += u64::from(v.healthy);
                u += u64::from(v.unhealthy);
                x += u64::from(v.unknown);
            }
            for (health, n) in [("healthy", h), ("unhealthy", u), ("unknown", x)] {
                f.sample("", &[("env", env), ("health", health)], n as f64);
            }
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "pipe_environment_release",
            "gauge",
            "The release an environment runs (1 for the current build), with its state.",
        );
        for (env, releases, state) in &per_env {
            if let Some(r) = state
                .current
                .and_then(|c| releases.iter().find(|r| r.seq == c))
            {
                let seq = r.seq.to_string();
                f.sample(
                    "",
                    &[
                        ("env", env),
                        ("build", &r.build.id),
                        ("release", &seq),
                        ("state", result_label(r.state)),
                    ],
                    1.0,
                );
            }
        }
    }
    {
        let mut f = Family::new(
            &mut out,
            "pipe_environment_held",
            "gauge",
            "1 when automatic promotion to the environment is held after an automatic rollback.",
        );
        for (env, _, state) in &per_env {
            f.sample(
                "",
                &[("env", env)],
                if state.hold.is_some() { 1.0 } else { 0.0 },
            );
        }
    }
    Ok(out)
}
