//! pipe's job `reports:` key: the result files a job declares (JUnit, coverage, benchmarks,
//! scans). The runner only resolves the declaration and hands each finished leg to a
//! [`ResultsCollector`] (filled in by `pipe-actions`, which holds the parsers) before the
//! job's workspace is cleaned up.
//!
//! ```yaml
//! reports:
//!   junit: target/nextest/ci/junit.xml     # a path or glob, or a list of them
//!   coverage: [coverage.xml, lcov.info]    # LCOV, Cobertura or llvm-cov JSON (guessed)
//!   benchmark: target/criterion            # any format `pipe bench ingest` reads
//! ```

use std::path::Path;

use crate::yaml::Node;

/// The kinds of result files.
pub const KINDS: &[&str] = &["junit", "coverage", "benchmark", "scan"];

/// One kind of result with its paths or globs (relative to the workspace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportFiles {
    /// `junit`, `coverage`, `benchmark` or `scan`.
    pub kind: String,
    /// Paths or globs.
    pub patterns: Vec<String>,
}

/// Reads a `reports:` node: a mapping of kind to a string or a list of strings.
pub fn parse_reports(node: &Node) -> Result<Vec<ReportFiles>, String> {
    let map = node
        .as_map()
        .ok_or_else(|| format!("`reports` must be a mapping, not {}", node.describe()))?;
    let mut out = Vec::new();
    for e in map {
        let kind = e.key.as_str().unwrap_or_default().to_string();
        if !KINDS.contains(&kind.as_str()) {
            return Err(format!(
                "unknown report kind `{kind}` (expected {})",
                KINDS
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let patterns = match (e.value.as_str(), e.value.as_seq()) {
            (Some(s), _) => vec![s.to_string()],
            (None, Some(items)) => items
                .iter()
                .map(|n| {
                    n.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`reports.{kind}` entries must be strings"))
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(format!(
                    "`reports.{kind}` must be a path or a list of paths"
                ));
            }
        };
        out.push(ReportFiles { kind, patterns });
    }
    Ok(out)
}

/// A finished leg whose job declared `reports:`.
pub struct LegResults<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// Display name (with matrix values).
    pub name: &'a str,
    /// The leg's workspace on the host.
    pub workspace: &'a Path,
    /// What the job declared.
    pub reports: &'a [ReportFiles],
}

/// Reads a leg's result files. Returns warnings (missing or unreadable files) for the job's
/// log; never fails the job.
pub trait ResultsCollector: Send + Sync {
    /// Collects one leg's results.
    fn collect(&self, leg: &LegResults<'_>) -> Vec<String>;
}
