//! Misconfiguration checks (scan.md §6): Dockerfiles (Trivy's ids), GitHub workflows
//! (security checks named after zizmor's audits) and Kubernetes workloads (Trivy's ids).
//!
//! Every check has a stable id, Trivy's old spellings as aliases (`DS002`, `AVD-DS-0002`) so
//! `.trivyignore`-style ids work in the ignore file, a severity and a resolution. Checks
//! read the file's text only; they never fail a scan (a file that does not parse is skipped
//! with a warning).

mod dockerfile;
mod kubernetes;
mod workflow;

use std::path::Path;

use super::Warning;
use super::osv::Kind;
use super::report::{CheckDetail, Detection, check_fingerprint};
use super::secret::Rules;
use super::severity::Severity;

/// A check.
#[derive(Debug)]
pub struct Check {
    /// Id (`DS-0002`, `KSV-0017`, `GHA-0001`).
    pub id: &'static str,
    /// Other ids.
    pub aliases: &'static [&'static str],
    /// Title.
    pub title: &'static str,
    /// Severity.
    pub severity: Severity,
    /// How to fix it.
    pub resolution: &'static str,
}

/// What kind of file a check reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A Dockerfile.
    Dockerfile,
    /// A GitHub Actions workflow.
    Workflow,
    /// Kubernetes manifests.
    Kubernetes,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Dockerfile => "dockerfile",
            Source::Workflow => "workflow",
            Source::Kubernetes => "kubernetes",
        }
    }
}

/// Every check, for documentation and tests.
pub fn checks() -> Vec<(Source, &'static Check)> {
    let mut v: Vec<(Source, &'static Check)> = Vec::new();
    v.extend(dockerfile::CHECKS.iter().map(|c| (Source::Dockerfile, c)));
    v.extend(workflow::CHECKS.iter().map(|c| (Source::Workflow, c)));
    v.extend(kubernetes::CHECKS.iter().map(|c| (Source::Kubernetes, c)));
    v
}

/// The source kind of a path, if a check reads it (Kubernetes files are recognised by
/// their content, so YAML files are candidates).
pub fn source_of(rel: &str) -> Option<Source> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let lower = name.to_ascii_lowercase();
    if lower == "dockerfile"
        || lower == "containerfile"
        || lower.starts_with("dockerfile.")
        || lower.ends_with(".dockerfile")
    {
        return Some(Source::Dockerfile);
    }
    let yaml = lower.ends_with(".yml") || lower.ends_with(".yaml");
    if yaml && (rel.starts_with(".github/workflows/") || rel.contains("/.github/workflows/")) {
        return Some(Source::Workflow);
    }
    if yaml {
        return Some(Source::Kubernetes);
    }
    None
}

/// One problem found by a check.
#[derive(Debug)]
pub struct Problem {
    /// The check.
    pub check: &'static Check,
    /// 1-based line.
    pub line: u32,
    /// Last line.
    pub end_line: u32,
    /// What is wrong here.
    pub message: String,
    /// What it is about (for the fingerprint: instruction, job and step, container).
    pub subject: String,
}

/// Runs the checks of one file.
pub fn check_text(
    source: Source,
    text: &str,
    rules: Option<&Rules>,
) -> Result<Vec<Problem>, String> {
    match source {
        Source::Dockerfile => Ok(dockerfile::check(text)),
        Source::Workflow => workflow::check(text),
        Source::Kubernetes => Ok(kubernetes::check(text, rules)),
    }
}

/// Checks the files (relative to `base`) that checks read.
pub fn scan_files(
    base: &Path,
    files: &[String],
    max_size: u64,
    rules: Option<&Rules>,
    warnings: &mut Vec<Warning>,
) -> Vec<Detection> {
    let mut out = Vec::new();
    for rel in files {
        let Some(source) = source_of(rel) else {
            continue;
        };
        let path = base.join(rel);
        let size = std::fs::symlink_metadata(&path)
            .map(|m| m.len())
            .unwrap_or(0);
        if max_size > 0 && size > max_size {
            continue; // the secret scanner (or the inventory) already warns
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            if source != Source::Kubernetes {
                warnings.push(Warning::at(
                    "file-invalid",
                    rel,
                    None,
                    "not a text file (invalid UTF-8); not checked".into(),
                ));
            }
            continue;
        };
        match check_text(source, text, rules) {
            Ok(problems) => {
                for p in problems {
                    out.push(Detection {
                        kind: Kind::Misconfig,
                        id: p.check.id.to_owned(),
                        aliases: p.check.aliases.iter().map(|a| (*a).to_owned()).collect(),
                        title: p.check.title.to_owned(),
                        severity: p.check.severity,
                        path: rel.clone(),
                        start_line: p.line,
                        end_line: p.end_line.max(p.line),
                        fingerprint: check_fingerprint(p.check.id, rel, &p.subject),
                        secret: None,
                        check: Some(CheckDetail {
                            source: source.as_str(),
                            message: p.message,
                            resolution: p.check.resolution.to_owned(),
                        }),
                        layer: None,
                    });
                }
            }
            Err(e) => warnings.push(Warning::at(
                "file-invalid",
                rel,
                None,
                format!("cannot check: {e}; skipped"),
            )),
        }
    }
    out
}

/// 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> u32 {
    super::inventory::line_of(text.as_bytes(), offset)
}

#[cfg(test)]
mod tests {
    //! One fixture pair per check in `tests/scan/misconfig/<source>/<ID>/`: `bad.*` must
    //! raise the check, `good.*` must raise nothing at all.

    use super::*;

    fn dir() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/scan/misconfig")
    }

    fn file(source: Source, id: &str, which: &str) -> String {
        let base = dir();
        let p = match source {
            Source::Dockerfile => base
                .join("dockerfile")
                .join(id)
                .join(format!("{which}.Dockerfile")),
            Source::Workflow => base
                .join("workflow")
                .join(id)
                .join(".github/workflows")
                .join(format!("{which}.yml")),
            Source::Kubernetes => base
                .join("kubernetes")
                .join(id)
                .join(format!("{which}.yaml")),
        };
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
    }

    #[test]
    fn every_check_has_a_positive_and_a_negative_fixture() {
        let rules = Rules::builtin().expect("rules");
        for (source, c) in checks() {
            let bad = check_text(source, &file(source, c.id, "bad"), Some(rules)).expect("checks");
            assert!(
                bad.iter().any(|p| p.check.id == c.id),
                "{}: bad fixture not flagged: {:?}",
                c.id,
                bad.iter().map(|p| p.check.id).collect::<Vec<_>>()
            );
            let good =
                check_text(source, &file(source, c.id, "good"), Some(rules)).expect("checks");
            assert!(
                good.is_empty(),
                "{}: good fixture flagged: {:?}",
                c.id,
                good.iter()
                    .map(|p| (p.check.id, &p.message))
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn problems_point_at_their_lines() {
        let p = check_text(Source::Dockerfile, "FROM debian:12\n\nRUN apt-get update \\\n  && apt-get install curl\nUSER app\nHEALTHCHECK CMD true\n", None).expect("checks");
        let ids: Vec<(&str, u32, u32)> =
            p.iter().map(|p| (p.check.id, p.line, p.end_line)).collect();
        assert_eq!(
            ids,
            [("DS-0021", 3, 4), ("DS-0029", 3, 4), ("PIPE-DS-0003", 3, 4)]
        );
        let wf = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: |\n          echo hi\n          echo \"${{ github.event.head_commit.message }}\"\n";
        let p = check_text(Source::Workflow, wf, None).expect("checks");
        assert_eq!(
            p.iter().map(|p| (p.check.id, p.line)).collect::<Vec<_>>(),
            [("GHA-0001", 8)]
        );
    }

    #[test]
    fn kubernetes_reads_every_document_and_workload_kind() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n      hostNetwork: true\n      containers: []\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: b\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          hostPID: true\n          containers: []\n";
        let p = check_text(Source::Kubernetes, text, None).expect("checks");
        assert_eq!(
            p.iter().map(|p| (p.check.id, p.line)).collect::<Vec<_>>(),
            [("KSV-0009", 8), ("KSV-0010", 20)]
        );
    }
}
