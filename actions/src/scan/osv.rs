//! OSV records (ossf/osv-schema) as read at import, and what the database keeps of them.
//!
//! Only the fields the matcher, the severity policy and the reports use are read; everything
//! else (prose, references, credits) is ignored, which also keeps the database small.

use serde::{Deserialize, Serialize};

use super::severity::{self, Severity};

/// An OSV record as found in a file.
#[derive(Debug, Deserialize)]
pub struct Record {
    /// The advisory id.
    pub id: String,
    /// Other ids of the same vulnerability.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Short text.
    #[serde(default)]
    pub summary: Option<String>,
    /// Last modification time (RFC 3339).
    #[serde(default)]
    pub modified: Option<String>,
    /// Publication time.
    #[serde(default)]
    pub published: Option<String>,
    /// Present when the record was withdrawn: it never matches.
    #[serde(default)]
    pub withdrawn: Option<String>,
    /// Severity vectors.
    #[serde(default)]
    pub severity: Vec<SeverityEntry>,
    /// Affected packages.
    #[serde(default)]
    pub affected: Vec<Affected>,
    /// Source-defined data (GHSA `severity` word).
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

/// `severity[]`.
#[derive(Clone, Debug, Deserialize)]
pub struct SeverityEntry {
    /// `CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector (or word).
    pub score: String,
}

/// `affected[]`.
#[derive(Debug, Deserialize)]
pub struct Affected {
    /// The package.
    #[serde(default)]
    pub package: Option<OsvPackage>,
    /// Version ranges.
    #[serde(default)]
    pub ranges: Vec<Range>,
    /// Explicit affected versions.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Per-package severity overriding the record's.
    #[serde(default)]
    pub severity: Vec<SeverityEntry>,
    /// RustSec's `informational`.
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
    /// RustSec's `affects.os/arch`.
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
}

/// `affected[].package`.
#[derive(Debug, Deserialize)]
pub struct OsvPackage {
    /// Ecosystem string (`crates.io`, `Debian:12`, …).
    pub ecosystem: String,
    /// Package name.
    pub name: String,
}

/// `affected[].ranges[]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Range {
    /// `SEMVER`, `ECOSYSTEM` or `GIT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Events.
    #[serde(default)]
    pub events: Vec<Event>,
}

/// One range event; exactly one field is set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Event {
    /// Start of a vulnerable interval (`0` = before everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    /// First version with the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// Last vulnerable version (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    /// Exclusive upper limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// The kind of a finding: vulnerabilities gate by severity, RustSec's informational kinds
/// only with `--fail-on-kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A vulnerability.
    Vulnerability,
    /// RustSec `unsound`.
    Unsound,
    /// RustSec `unmaintained`.
    Unmaintained,
    /// RustSec `notice`.
    Notice,
    /// A secret in a file.
    Secret,
    /// A risky configuration (Dockerfile, workflow, Kubernetes).
    Misconfig,
}

impl Kind {
    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "vulnerability" => Kind::Vulnerability,
            "unsound" => Kind::Unsound,
            "unmaintained" => Kind::Unmaintained,
            "notice" => Kind::Notice,
            "secret" => Kind::Secret,
            "misconfig" => Kind::Misconfig,
            _ => return None,
        })
    }

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Vulnerability => "vulnerability",
            Kind::Unsound => "unsound",
            Kind::Unmaintained => "unmaintained",
            Kind::Notice => "notice",
            Kind::Secret => "secret",
            Kind::Misconfig => "misconfig",
        }
    }

    /// Whether findings of this kind gate by severity (the informational kinds gate only
    /// with `--fail-on-kind`).
    pub fn by_severity(self) -> bool {
        matches!(self, Kind::Vulnerability | Kind::Secret | Kind::Misconfig)
    }

    /// All kinds, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::Vulnerability,
        Kind::Unsound,
        Kind::Unmaintained,
        Kind::Notice,
        Kind::Secret,
        Kind::Misconfig,
    ];
}

/// What the database keeps of a record (shared by all its affected packages).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Advisory {
    /// The id.
    pub id: String,
    /// Aliases, sorted.
    pub aliases: Vec<String>,
    /// Summary (may be empty).
    pub summary: String,
    /// Modified time as given.
    pub modified: String,
    /// The record-level severity, rated by the policy.
    pub severity: Rated,
}

/// What the database keeps of one `affected[]` entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AffectedEntry {
    /// Ranges other than `GIT` (commit ranges mean nothing for a lockfile).
    pub ranges: Vec<Range>,
    /// Explicit versions.
    pub versions: Vec<String>,
    /// The finding kind.
    pub kind: Kind,
    /// A per-package severity, when the entry has its own.
    pub severity: Option<Rated>,
    /// OS/arch restriction note (`os: windows`).
    pub platform: Option<String>,
}

/// A severity with where it came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rated {
    /// The rating.
    pub severity: Severity,
    /// `cvss_v4`, `cvss_v3`, `cvss_v2`, `database_specific` or `none`.
    pub source: String,
    /// The vector the rating came from.
    pub vector: Option<String>,
    /// The base score, one decimal.
    pub score: Option<f64>,
}

impl Record {
    /// The advisory part stored in the database.
    pub fn advisory(&self) -> Advisory {
        let mut aliases: Vec<String> = self
            .aliases
            .iter()
            .filter(|a| **a != self.id)
            .cloned()
            .collect();
        aliases.sort();
        aliases.dedup();
        let word = self
            .database_specific
            .as_ref()
            .and_then(|d| d.get("severity"))
            .and_then(|s| s.as_str());
        Advisory {
            id: self.id.clone(),
            aliases,
            summary: self.summary.clone().unwrap_or_default(),
            modified: self.modified.clone().unwrap_or_default(),
            severity: severity::rate(&self.severity, word),
        }
    }
}

impl Affected {
    /// The entry stored in the database.
    pub fn entry(&self) -> AffectedEntry {
        let informational = self
            .database_specific
            .as_ref()
            .and_then(|d| d.get("informational"))
            .and_then(|v| v.as_str())
            .and_then(Kind::parse)
            .unwrap_or(Kind::Vulnerability);
        let word = self
            .database_specific
            .as_ref()
            .and_then(|d| d.get("severity"))
            .and_then(|s| s.as_str());
        let severity = (!self.severity.is_empty() || word.is_some())
            .then(|| severity::rate(&self.severity, word));
        let platform = self.ecosystem_specific.as_ref().and_then(|e| {
            let affects = e.get("affects")?;
            let list = |k: &str| -> Vec<String> {
                affects
                    .get(k)
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let (os, arch) = (list("os"), list("arch"));
            let mut parts = Vec::new();
            if !os.is_empty() {
                parts.push(format!("os: {}", os.join(", ")));
            }
            if !arch.is_empty() {
                parts.push(format!("arch: {}", arch.join(", ")));
            }
            (!parts.is_empty()).then(|| parts.join("; "))
        });
        AffectedEntry {
            ranges: self
                .ranges
                .iter()
                .filter(|r| r.kind != "GIT")
                .cloned()
                .collect(),
            versions: self.versions.clone(),
            kind: informational,
            severity,
            platform,
        }
    }
}
