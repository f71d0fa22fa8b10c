//! `pipe bench`: timing commands, ingesting other tools' results, history and the regression
//! gate. The CLI and the `pipe/bench@v1` action ([`action`]) call these functions; nothing here
//! prints or exits.
//!
//! - [`run::run_bench`] times commands and returns a hyperfine-compatible [`run::BenchReport`];
//! - [`ingest::read_path`] reads criterion, hyperfine, libtest, Google Benchmark and
//!   pytest-benchmark results into [`ingest::BenchSeries`];
//! - [`history::History`] keeps samples by name, commit, branch and machine fingerprint;
//! - [`compare_with_baseline`] applies the gate in [`compare`] to a candidate and a baseline.

pub mod action;
pub mod chart;
pub mod compare;
pub mod fingerprint;
pub mod history;
pub mod ingest;
pub mod render;
pub mod run;
pub mod stats;

use std::path::Path;

use serde::{Deserialize, Serialize};

use compare::{Comparison, GateOptions, Pair, Verdict};
use history::{Provenance, Record};
use ingest::BenchSeries;

/// The commit, branch and run a result belongs to: `GITHUB_SHA`, `GITHUB_REF_NAME` and
/// `GITHUB_RUN_NUMBER` inside a run, else read from the repository at `root`.
pub fn provenance(root: &Path, env: &dyn Fn(&str) -> Option<String>) -> Provenance {
    let git = pipe_runner::gitinfo::read(root, env);
    let branch = env("GITHUB_REF_NAME")
        .or_else(|| git.git_ref.strip_prefix("refs/heads/").map(str::to_string))
        .unwrap_or_default();
    Provenance {
        commit: env("GITHUB_SHA").unwrap_or(git.sha),
        branch,
        run: env("GITHUB_RUN_NUMBER").and_then(|r| r.parse().ok()),
    }
}

/// The series of a `pipe bench` report (one per command, named by its display name; CPU-time
/// series get ` (cpu)` appended so they never meet wall-time ones in a comparison).
pub fn series_of(report: &run::BenchReport) -> Vec<BenchSeries> {
    let m = report.pipe.metric;
    report
        .results
        .iter()
        .map(|r| BenchSeries {
            name: match m {
                run::Metric::Wall => r.name.clone(),
                run::Metric::Cpu => format!("{} (cpu)", r.name),
            },
            samples: m.of(r).to_vec(),
            source: "pipe-bench".to_string(),
            aggregate: false,
        })
        .collect()
}

/// The outcome of `pipe bench compare`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// FAIL if any benchmark failed, else INCONCLUSIVE if any was, else PASS.
    pub verdict: Verdict,
    /// The baseline's commit (empty when none was found).
    pub baseline_commit: String,
    /// The baseline's branch.
    pub baseline_branch: String,
    /// One entry per benchmark present on both sides.
    pub comparisons: Vec<Comparison>,
    /// Candidate benchmarks without a baseline (not gated).
    pub new: Vec<String>,
    /// Baseline benchmarks the candidate lacks.
    pub missing: Vec<String>,
}

/// Compares candidate series (measured on machine `candidate_fp`) with baseline records.
/// A pair measured on different machines is INCONCLUSIVE whatever its numbers.
pub fn compare_with_baseline(
    candidate: &[BenchSeries],
    candidate_fp: &str,
    baseline: &[Record],
    opts: &GateOptions,
) -> CompareReport {
    let mut pairs: Vec<Pair<'_>> = Vec::new();
    let mut foreign: Vec<(String, String)> = Vec::new();
    let mut new = Vec::new();
    for c in candidate {
        match baseline.iter().find(|b| b.name == c.name) {
            Some(b) if b.fingerprint != candidate_fp => {
                foreign.push((c.name.clone(), b.fingerprint.clone()));
            }
            Some(b) => pairs.push(Pair {
                name: &c.name,
                baseline: &b.samples,
                candidate: &c.samples,
            }),
            None => new.push(c.name.clone()),
        }
    }
    let mut comparisons = compare::compare_all(&pairs, opts);
    for (name, fp) in foreign {
        let b = baseline.iter().find(|b| b.name == name);
        let c = candidate.iter().find(|c| c.name == name);
        let (bs, cs) = (
            b.map(|b| b.samples.as_slice()).unwrap_or(&[]),
            c.map(|c| c.samples.as_slice()).unwrap_or(&[]),
        );
        let mut cmp = compare::compare(&name, bs, cs, opts);
        cmp.verdict = Verdict::Inconclusive;
        cmp.reason = format!(
            "measured on a different machine (baseline `{fp}`, candidate `{candidate_fp}`)"
        );
        comparisons.push(cmp);
    }
    comparisons.sort_by(|a, b| a.name.cmp(&b.name));
    let missing = baseline
        .iter()
        .filter(|b| !candidate.iter().any(|c| c.name == b.name))
        .map(|b| b.name.clone())
        .collect();
    CompareReport {
        verdict: Verdict::combine(comparisons.iter().map(|c| c.verdict)),
        baseline_commit: baseline
            .first()
            .map(|b| b.commit.clone())
            .unwrap_or_default(),
        baseline_branch: baseline
            .first()
            .map(|b| b.branch.clone())
            .unwrap_or_default(),
        comparisons,
        new,
        missing,
    }
}
