//! Environment policies: what a build is (`build:`), who belongs to which group (`groups:`)
//! and the environments with their gates (`environments:`).
//!
//! The policy lives in `.pipe/environments.yml` (or `.yaml`) and is read from the trusted ref
//! ([`source`]), never from the candidate's own tree. Parsing walks the spanned YAML tree of
//! `pipe-runner`, so every problem is a [`Diagnostic`] with file, line and column, and unknown
//! keys get a did-you-mean hint, like every workflow key. `deploy:`, `verify:` and `rollback:`
//! are kept as JSON values for the deploy issue to type.
//!
//! Each environment has a digest over its own canonical JSON and the groups it uses, so an
//! approval bound to production's policy survives a change to staging's.

mod parse;
pub mod source;
pub mod window;

use std::collections::BTreeMap;

use jiff::SignedDuration;
use pipe_runner::source::Span;
use serde::Serialize;

pub use parse::{parse, parse_duration, parse_embedded, parse_instant};
pub use window::{Window, WindowKind};

/// The rule id of policy diagnostics.
pub const RULE: &str = "environments";

/// A whole policy file.
#[derive(Clone, Debug, Serialize)]
pub struct Policy {
    /// What makes a build.
    pub build: Option<BuildSpec>,
    /// Groups of principals (`group:NAME` in approval rules).
    pub groups: BTreeMap<String, Vec<String>>,
    /// Environments in file order.
    pub environments: Vec<Environment>,
    /// Digest of the file's bytes.
    pub digest: String,
}

impl Policy {
    /// An environment by name.
    pub fn env(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The principals a rule's `from:` entry stands for (`group:NAME` or a principal).
    pub fn members(&self, from: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in from {
            match f.strip_prefix("group:") {
                Some(g) => out.extend(self.groups.get(g).cloned().unwrap_or_default()),
                None => out.push(f.clone()),
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// How a run declares what it built.
#[derive(Clone, Debug, Serialize)]
pub struct BuildSpec {
    /// Only runs of this workflow file register builds (default: any).
    pub workflow: Option<String>,
    /// The subjects.
    pub subjects: Vec<SubjectSpec>,
}

/// One subject of a build.
#[derive(Clone, Debug, Serialize)]
pub struct SubjectSpec {
    /// Its name (an image repository, a file name).
    pub name: String,
    /// Where its digest comes from.
    pub source: SubjectSource,
}

/// Where a subject's digest comes from.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectSource {
    /// A job output holding a digest (`sha256:…` or `name@sha256:…`): `JOB.OUTPUT`.
    Output {
        /// The job id.
        job: String,
        /// The output name.
        output: String,
    },
    /// Every file of an artifact the run uploaded.
    Artifact(String),
}

/// A gate's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The gate blocks.
    #[default]
    Enforce,
    /// Evaluated and recorded, never blocks (to trial a rule).
    Shadow,
}

/// A gate with its mode.
#[derive(Clone, Debug, Serialize)]
pub struct Gate<T> {
    /// Enforce or shadow.
    pub mode: Mode,
    /// The settings.
    #[serde(flatten)]
    pub spec: T,
}

/// Ref patterns the build's ref must match.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RefRule {
    /// Branch name globs.
    pub branches: Vec<String>,
    /// Tag name globs.
    pub tags: Vec<String>,
}

/// Vulnerability severities, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Unknown severity.
    Unknown,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Parses a name (case-insensitive; `moderate` = medium).
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "unknown" | "none" => Severity::Unknown,
            "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A justified, expiring exception for one vulnerability.
#[derive(Clone, Debug, Serialize)]
pub struct Waiver {
    /// The advisory id or alias (`CVE-…`, `GHSA-…`).
    pub id: String,
    /// Why it does not apply.
    pub justification: String,
    /// When it stops applying.
    pub expires: jiff::Timestamp,
}

/// `gates.vulnerabilities`.
#[derive(Clone, Debug, Serialize)]
pub struct VulnGate {
    /// Findings at or above this block.
    pub block_at: Severity,
    /// The scan must be at most this old at decision time.
    pub max_age: Option<SignedDuration>,
    /// Waivers.
    pub waivers: Vec<Waiver>,
}

/// `gates.coverage`.
#[derive(Clone, Debug, Serialize)]
pub struct CoverageGate {
    /// Minimum line coverage, percent.
    pub min_lines: Option<f64>,
    /// Maximum drop against the environment's current release, percentage points.
    pub max_drop: Option<f64>,
}

/// What an inconclusive benchmark comparison does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// The gate fails.
    Fail,
    /// The gate is pending until the `bench_inconclusive` approval rules are met.
    RequireApproval,
    /// The gate passes (with the result recorded).
    Pass,
}

/// `gates.benchmarks`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchGate {
    /// Handling of INCONCLUSIVE comparisons.
    pub on_inconclusive: OnInconclusive,
}

/// `gates.soak`.
#[derive(Clone, Debug, Serialize)]
pub struct SoakGate {
    /// The upstream environment.
    pub in_env: String,
    /// How long the build must have been its release.
    pub min: SignedDuration,
}

/// When an approval rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Always.
    Always,
    /// Only when a vulnerability waiver was used.
    WaiversUsed,
    /// Only when a benchmark comparison was inconclusive.
    BenchInconclusive,
}

/// One approval rule: `count` distinct people from `from`.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalRule {
    /// Its name.
    pub name: String,
    /// Principals and `group:NAME`s.
    pub from: Vec<String>,
    /// How many distinct approvers.
    pub count: u32,
    /// When it applies.
    pub when: When,
}

/// `gates.approvals`.
#[derive(Clone, Debug, Serialize)]
pub struct ApprovalGate {
    /// The rules (all must be met).
    pub rules: Vec<ApprovalRule>,
    /// Whether the requester may approve their own request.
    pub self_approval: bool,
    /// Approvals older than this no longer count.
    pub expires_after: Option<SignedDuration>,
}

/// `gates.windows`.
#[derive(Clone, Debug, Serialize)]
pub struct WindowGate {
    /// Deny windows.
    pub deny: Vec<Window>,
    /// Allow windows (if any, one must be open).
    pub allow: Vec<Window>,
}

/// `gates.custom[]`: a command whose exit status decides (0 pass, 75 inconclusive, else fail),
/// run on the host in the repository root, or in a container of `image` (docker CLI, no
/// network, the repository mounted read-only at `/repo`).
#[derive(Clone, Debug, Serialize)]
pub struct CustomGate {
    /// Its name.
    pub name: String,
    /// The command and its arguments (`${build}` and `${env}` are replaced); with `image`,
    /// empty means the image's own entrypoint and command.
    pub command: Vec<String>,
    /// Run in a container of this image (`run:`/`command:` is its command).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Seconds it may take.
    pub timeout_secs: u64,
}

/// Every gate of an environment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Gates {
    /// Required jobs (globs over job ids).
    pub jobs: Option<Gate<Vec<String>>>,
    /// Ref patterns.
    pub refs: Option<Gate<RefRule>>,
    /// Vulnerabilities.
    pub vulnerabilities: Option<Gate<VulnGate>>,
    /// Coverage.
    pub coverage: Option<Gate<CoverageGate>>,
    /// Benchmarks.
    pub benchmarks: Option<Gate<BenchGate>>,
    /// Soak.
    pub soak: Option<Gate<SoakGate>>,
    /// Approvals.
    pub approvals: Option<Gate<ApprovalGate>>,
    /// Windows.
    pub windows: Option<Gate<WindowGate>>,
    /// Custom commands.
    pub custom: Vec<Gate<CustomGate>>,
}

/// `concurrency.supersede`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Supersede {
    /// Every queued request is served in order.
    #[default]
    None,
    /// A queued request is dropped when a newer build is queued behind it.
    SkipOlder,
}

/// One environment.
#[derive(Clone, Debug, Serialize)]
pub struct Environment {
    /// Its name.
    pub name: String,
    /// Where it is declared.
    #[serde(skip)]
    pub span: Span,
    /// Upstream environments (`build` = straight from a run).
    pub from: Vec<String>,
    /// Promote automatically when the gates pass.
    pub auto: bool,
    /// Unapproved requests lapse after this long.
    pub expires_after: Option<SignedDuration>,
    /// Queueing.
    pub supersede: Supersede,
    /// The gates.
    pub gates: Gates,
    /// `deploy:` as written (typed by the deploy issue).
    pub deploy: Option<serde_json::Value>,
    /// `verify:` as written.
    pub verify: Option<serde_json::Value>,
    /// `rollback:` as written.
    pub rollback: Option<serde_json::Value>,
    /// Digest of this environment's policy (its JSON and the groups it names).
    pub digest: String,
}
