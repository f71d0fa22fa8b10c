//! The JSON report, `pipe.scan/v1`: the evidence promotion gates read, and the model every
//! other output is rendered from.
//!
//! Determinism: no wall-clock time, no absolute paths of the machine, and every list sorted,
//! so the same inputs and the same database give byte-identical JSON.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::Warning;
use super::db::Status;
use super::inventory::Package;
use super::matcher::Match;
use super::osv::Kind;
use super::policy::{Baseline, Ignores, Vex, VexVerdict};
use super::severity::Severity;

/// The report schema id.
pub const SCHEMA: &str = "pipe.scan/v1";

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `pipe.scan/v1`.
    pub schema: &'static str,
    /// The tool.
    pub tool: Tool,
    /// What was scanned.
    pub target: Target,
    /// The scanners that ran (`vuln`, `secret`, `misconfig`).
    pub scanners: Vec<&'static str>,
    /// The image, for image targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<super::image::ImageInfo>,
    /// The digest of the secret rules, when secrets were scanned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_rules: Option<String>,
    /// The database used (none when vulnerabilities were not scanned).
    pub db: Option<DbInfo>,
    /// The ignore file, when one was read.
    pub ignore_file: Option<IgnoreInfo>,
    /// VEX documents read.
    pub vex: Vec<FileInfo>,
    /// The baseline, when given.
    pub baseline: Option<BaselineInfo>,
    /// The policy applied.
    pub policy: Policy,
    /// `pass` or `fail`.
    pub result: String,
    /// Counts.
    pub summary: Summary,
    /// Lockfiles and databases read.
    pub files: Vec<String>,
    /// Every package found.
    pub packages: Vec<Package>,
    /// Every finding, suppressed ones included (marked).
    pub findings: Vec<Finding>,
    /// Problems met.
    pub warnings: Vec<Warning>,
}

/// `tool`.
#[derive(Clone, Debug, Serialize)]
pub struct Tool {
    /// `pipe`.
    pub name: &'static str,
    /// The version.
    pub version: &'static str,
}

/// `target`.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// `fs`, `rootfs` or `image`.
    pub kind: &'static str,
    /// The path as given.
    pub path: String,
}

/// `db`.
#[derive(Clone, Debug, Serialize)]
pub struct DbInfo {
    /// Content digest.
    pub digest: String,
    /// Records.
    pub records: u64,
    /// Newest `modified`.
    pub newest_modified: Option<String>,
    /// Records per ecosystem.
    pub ecosystems: BTreeMap<String, u64>,
}

impl DbInfo {
    /// From the database status.
    pub fn of(s: &Status) -> DbInfo {
        DbInfo {
            digest: s.digest.clone(),
            records: s.records,
            newest_modified: s.newest_modified.clone(),
            ecosystems: s
                .ecosystems
                .iter()
                .map(|(k, v)| (k.clone(), v.records))
                .collect(),
        }
    }
}

/// `ignore_file`.
#[derive(Clone, Debug, Serialize)]
pub struct IgnoreInfo {
    /// Path.
    pub path: String,
    /// Digest.
    pub digest: String,
    /// Rules.
    pub rules: usize,
}

/// A policy input file.
#[derive(Clone, Debug, Serialize)]
pub struct FileInfo {
    /// Path.
    pub path: String,
    /// Digest.
    pub digest: String,
}

/// `baseline`.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineInfo {
    /// Path.
    pub path: String,
    /// Findings in it.
    pub findings: usize,
}

/// `policy`.
#[derive(Clone, Debug, Serialize)]
pub struct Policy {
    /// Display threshold.
    pub severity: Severity,
    /// Gate threshold (`none` = never).
    pub fail_on: Option<Severity>,
    /// Informational kinds that also fail.
    pub fail_on_kind: Vec<Kind>,
    /// Findings without a fix are suppressed.
    pub ignore_unfixed: bool,
    /// How UNKNOWN gates.
    pub unknown_severity_as: Severity,
    /// Dev-only packages gate too.
    pub include_dev_deps: bool,
}

/// `summary`.
#[derive(Clone, Debug, Serialize, Default)]
pub struct Summary {
    /// Packages.
    pub packages: usize,
    /// Findings, suppressed ones included.
    pub findings: usize,
    /// Unsuppressed findings per kind.
    pub by_kind: BTreeMap<Kind, usize>,
    /// Unsuppressed findings per severity.
    pub by_severity: BTreeMap<Severity, usize>,
    /// Suppressed findings.
    pub suppressed: usize,
    /// Findings already in the baseline.
    pub in_baseline: usize,
    /// Findings that fail the policy.
    pub gated: usize,
}

/// A package as a finding names it.
#[derive(Clone, Debug, Serialize)]
pub struct PackageRef {
    /// Ecosystem.
    pub ecosystem: String,
    /// Name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// purl.
    pub purl: String,
    /// Direct dependency.
    pub direct: bool,
    /// Dev-only.
    pub dev: bool,
}

/// Where a finding is.
#[derive(Clone, Debug, Serialize)]
pub struct Location {
    /// Lockfile, relative.
    pub path: String,
    /// First line.
    pub start_line: u32,
    /// Last line.
    pub end_line: u32,
}

/// CVSS details.
#[derive(Clone, Debug, Serialize)]
pub struct Cvss {
    /// The vector.
    pub vector: String,
    /// Base score.
    pub score: f64,
}

/// Why a finding does not count.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Suppression {
    /// An ignore rule.
    Ignore {
        /// The ignore file.
        path: String,
        /// The rule's line.
        line: u32,
        /// Its reason.
        reason: String,
        /// Its expiry.
        expires: Option<String>,
    },
    /// A VEX statement.
    Vex(VexVerdict),
    /// `--ignore-unfixed` and no fixed version exists.
    Unfixed,
}

/// One finding.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Stable identity: advisory, package, version and lockfile (not the line).
    pub fingerprint: String,
    /// Kind.
    pub kind: Kind,
    /// Advisory id.
    pub id: String,
    /// Other ids.
    pub aliases: Vec<String>,
    /// Summary.
    pub summary: String,
    /// Severity.
    pub severity: Severity,
    /// Where the severity came from.
    pub severity_source: String,
    /// CVSS, when the severity came from a vector.
    pub cvss: Option<Cvss>,
    /// The package (vulnerabilities and informational kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageRef>,
    /// Fixed versions above the installed one.
    pub fixed: Vec<String>,
    /// Affected ranges.
    pub affected: Vec<String>,
    /// OS/arch restriction.
    pub platform: Option<String>,
    /// Location.
    pub location: Location,
    /// The secret, redacted (secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<super::secret::SecretDetail>,
    /// The check (misconfigurations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckDetail>,
    /// The image layer (diff id) that added the file (image targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Suppression, when suppressed.
    pub suppressed_by: Option<Suppression>,
    /// Already in the baseline.
    pub in_baseline: bool,
    /// Fails the policy.
    pub gated: bool,
}

impl Finding {
    /// Whether human outputs (table, markdown, SARIF) show the finding at a display
    /// threshold. Suppressed findings are left out; gating, informational and
    /// unknown-severity findings are always shown, so nothing that matters is hidden.
    pub fn shown(&self, threshold: Severity) -> bool {
        self.suppressed_by.is_none()
            && (self.gated
                || !self.kind.by_severity()
                || self.severity == Severity::Unknown
                || self.severity >= threshold)
    }

    /// What the finding is about: the package, or the file for secrets and
    /// misconfigurations.
    pub fn subject(&self) -> String {
        match &self.package {
            Some(p) => format!("{} {}", p.name, p.version),
            None => self.location.path.clone(),
        }
    }

    /// The severity used by the gate.
    pub fn effective_severity(&self, unknown_as: Severity) -> Severity {
        if self.severity == Severity::Unknown {
            unknown_as
        } else {
            self.severity
        }
    }

    /// The id and aliases.
    pub fn ids(&self) -> Vec<&str> {
        let mut v = vec![self.id.as_str()];
        v.extend(self.aliases.iter().map(String::as_str));
        v
    }
}

/// What a misconfiguration finding shows about its check.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CheckDetail {
    /// `dockerfile`, `workflow` or `kubernetes`.
    pub source: &'static str,
    /// What is wrong, here.
    pub message: String,
    /// How to fix it.
    pub resolution: String,
}

/// A secret or misconfiguration found by a scanner, before the policy is applied.
#[derive(Clone, Debug)]
pub struct Detection {
    /// `Secret` or `Misconfig`.
    pub kind: Kind,
    /// Rule or check id.
    pub id: String,
    /// Other ids (Trivy's, zizmor's).
    pub aliases: Vec<String>,
    /// One-line title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// The file, relative to the target.
    pub path: String,
    /// First line.
    pub start_line: u32,
    /// Last line.
    pub end_line: u32,
    /// Stable identity (line-independent).
    pub fingerprint: String,
    /// Secret details.
    pub secret: Option<super::secret::SecretDetail>,
    /// Check details.
    pub check: Option<CheckDetail>,
    /// The layer that added the file (images).
    pub layer: Option<String>,
}

/// A line-independent fingerprint of a misconfiguration: check, file and what it is about.
pub fn check_fingerprint(id: &str, path: &str, subject: &str) -> String {
    let mut h = Sha256::new();
    for part in ["misconfig", id, path, subject] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Everything the policy needs.
pub struct PolicyInputs<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// Ignore rules.
    pub ignores: Option<&'a Ignores>,
    /// VEX documents.
    pub vex: &'a [Vex],
    /// The baseline.
    pub baseline: Option<&'a Baseline>,
    /// Today's day number (ignore expiry).
    pub today: i64,
}

fn fingerprint(kind: Kind, id: &str, p: &Package) -> String {
    let mut h = Sha256::new();
    for part in [
        kind.as_str(),
        id,
        &p.ecosystem,
        &p.name,
        &p.version,
        &p.source_file,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// Builds the findings from matches and applies the policy; also reports expired and unused
/// ignore rules as warnings.
pub fn findings(
    packages: &[Package],
    matches: Vec<Match>,
    detections: Vec<Detection>,
    inputs: &PolicyInputs<'_>,
    warnings: &mut Vec<Warning>,
) -> Vec<Finding> {
    let policy = inputs.policy;
    let mut used = vec![false; inputs.ignores.map_or(0, |i| i.rules.len())];
    let mut out: Vec<Finding> = Vec::new();
    for m in matches {
        let Some(p) = packages.get(m.package) else {
            continue;
        };
        let mut f = Finding {
            fingerprint: fingerprint(m.kind, &m.advisory.id, p),
            kind: m.kind,
            id: m.advisory.id,
            aliases: m.aliases,
            summary: m.advisory.summary,
            severity: m.severity.severity,
            severity_source: m.severity.source,
            cvss: match (m.severity.vector, m.severity.score) {
                (Some(vector), Some(score)) => Some(Cvss { vector, score }),
                _ => None,
            },
            package: Some(PackageRef {
                ecosystem: p.ecosystem.clone(),
                name: p.name.clone(),
                version: p.version.clone(),
                purl: p.purl.clone(),
                direct: p.direct,
                dev: p.dev,
            }),
            fixed: m.fixed,
            affected: m.affected,
            platform: m.platform,
            location: Location {
                path: p.source_file.clone(),
                start_line: p.line,
                end_line: p.line,
            },
            secret: None,
            check: None,
            layer: p.layer.clone(),
            suppressed_by: None,
            in_baseline: false,
            gated: false,
        };
        let ids = f.ids();
        let rule = inputs.ignores.and_then(|ig| {
            ig.rules
                .iter()
                .position(|r| !r.expired(inputs.today) && r.matches(&ids, Some(p), &p.source_file))
                .map(|k| (ig, k))
        });
        let suppressed = if let Some((ig, k)) = rule {
            used[k] = true;
            let r = &ig.rules[k];
            Some(Suppression::Ignore {
                path: ig.path.clone(),
                line: r.line,
                reason: r.reason.clone(),
                expires: r.expires.clone(),
            })
        } else if let Some(v) = inputs.vex.iter().find_map(|v| v.find(&ids, p)) {
            Some(Suppression::Vex(v))
        } else if policy.ignore_unfixed && f.fixed.is_empty() && f.kind == Kind::Vulnerability {
            Some(Suppression::Unfixed)
        } else {
            None
        };
        let in_baseline = inputs.baseline.is_some_and(|b| b.contains(&ids, p));
        f.suppressed_by = suppressed;
        f.in_baseline = in_baseline;
        let counts =
            f.suppressed_by.is_none() && !f.in_baseline && (policy.include_dev_deps || !p.dev);
        let by_severity = f.kind.by_severity()
            && policy
                .fail_on
                .is_some_and(|t| f.effective_severity(policy.unknown_severity_as) >= t);
        let by_kind = !f.kind.by_severity() && policy.fail_on_kind.contains(&f.kind);
        f.gated = counts && (by_severity || by_kind);
        out.push(f);
    }
    for d in detections {
        let mut f = Finding {
            fingerprint: d.fingerprint,
            kind: d.kind,
            id: d.id,
            aliases: d.aliases,
            summary: d.title,
            severity: d.severity,
            severity_source: match d.kind {
                Kind::Secret => "secret rule".into(),
                _ => "check".into(),
            },
            cvss: None,
            package: None,
            fixed: Vec::new(),
            affected: Vec::new(),
            platform: None,
            location: Location {
                path: d.path,
                start_line: d.start_line,
                end_line: d.end_line,
            },
            secret: d.secret,
            check: d.check,
            layer: d.layer,
            suppressed_by: None,
            in_baseline: false,
            gated: false,
        };
        let ids = f.ids();
        let rule = inputs.ignores.and_then(|ig| {
            ig.rules
                .iter()
                .position(|r| !r.expired(inputs.today) && r.matches(&ids, None, &f.location.path))
                .map(|k| (ig, k))
        });
        if let Some((ig, k)) = rule {
            used[k] = true;
            let r = &ig.rules[k];
            f.suppressed_by = Some(Suppression::Ignore {
                path: ig.path.clone(),
                line: r.line,
                reason: r.reason.clone(),
                expires: r.expires.clone(),
            });
        }
        f.in_baseline = inputs
            .baseline
            .is_some_and(|b| b.contains_fingerprint(&f.fingerprint));
        f.gated = f.suppressed_by.is_none()
            && !f.in_baseline
            && policy.fail_on.is_some_and(|t| f.severity >= t);
        out.push(f);
    }
    if let Some(ig) = inputs.ignores {
        for (k, r) in ig.rules.iter().enumerate() {
            if r.expired(inputs.today) {
                warnings.push(Warning::at(
                    "ignore-expired",
                    &ig.path,
                    Some(r.line),
                    format!(
                        "the rule for `{}` expired on {}; it no longer suppresses anything",
                        r.id,
                        r.expires.as_deref().unwrap_or("")
                    ),
                ));
            } else if !used[k] {
                warnings.push(Warning::at(
                    "ignore-unused",
                    &ig.path,
                    Some(r.line),
                    format!("the rule for `{}` matched no finding; remove it", r.id),
                ));
            }
        }
    }
    let key = |f: &Finding| {
        (
            f.location.path.clone(),
            f.location.start_line,
            f.package
                .as_ref()
                .map(|p| (p.name.clone(), p.version.clone())),
            f.id.clone(),
            f.fingerprint.clone(),
        )
    };
    out.sort_by_cached_key(key);
    out
}

/// Counts for the summary.
pub fn summarize(packages: usize, findings: &[Finding]) -> Summary {
    let mut s = Summary {
        packages,
        findings: findings.len(),
        ..Summary::default()
    };
    for k in Kind::ALL {
        s.by_kind.insert(k, 0);
    }
    for sev in Severity::DESCENDING {
        s.by_severity.insert(sev, 0);
    }
    for f in findings {
        if f.suppressed_by.is_some() {
            s.suppressed += 1;
            continue;
        }
        *s.by_kind.entry(f.kind).or_default() += 1;
        if f.kind.by_severity() {
            *s.by_severity.entry(f.severity).or_default() += 1;
        }
        s.in_baseline += usize::from(f.in_baseline);
        s.gated += usize::from(f.gated);
    }
    s
}
