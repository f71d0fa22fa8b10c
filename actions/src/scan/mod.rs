//! `pipe scan`: dependency vulnerability scanning, offline and deterministic.
//!
//! Data flow:
//!
//! ```text
//! DIR ─walk─▶ lockfiles ─inventory─▶ Package[] ─match (db)─▶ Match[] ─policy─▶ Report ─render─▶ outputs
//!                                                  ▲                      ▲
//!                     OSV JSON ─db import─▶ osv.db (SQLite)    ignore file, VEX, baseline
//! ```
//!
//! [`run_scan`] is the one entry point: the CLI (`pipe scan fs`) and the built-in action
//! (`uses: pipe/scan@v1`, through [`ScanOptions::from_inputs`]) both call it and get a
//! [`ScanOutcome`] with the exit code, the report, what to print and what was written. It
//! never prints and never exits.
//!
//! Exit codes: 0 pass, 1 policy failed, 2 usage or configuration error, 3 advisory database
//! missing, unusable or stale.
//!
//! # As the built-in action `uses: pipe/scan@v1`
//!
//! The action registry (a later issue) needs to:
//!
//! 1. build options with [`ScanOptions::from_inputs`] from the step's `with:` map (input
//!    names are [`ACTION_INPUTS`], each mirroring the flag of the same name; lists are comma-
//!    or newline-separated), then set `cwd` to the job's workspace and `color: false`;
//! 2. append `markdown=$GITHUB_STEP_SUMMARY` and `json=<evidence path>` to `outputs`
//!    (the JSON, `pipe.scan/v1`, is the scan evidence promotion gates read: it carries the
//!    database digest, policy and every finding);
//! 3. call [`run_scan`], write [`ScanOutcome::messages`] to the step log as warnings/errors
//!    and [`ScanOutcome::write_stdout`] (a table unless configured otherwise) to the log;
//! 4. map [`ScanOutcome::exit_code`] to the step outcome: 0 success, 1 failure (policy),
//!    2 and 3 failure with the message as the error annotation;
//! 5. record the paths in [`ScanOutcome::written`] as the run's scan evidence.

pub mod action;
pub mod db;
pub mod image;
pub mod inventory;
pub mod matcher;
pub mod misconfig;
pub mod osv;
pub mod policy;
pub mod render;
pub mod report;
pub mod secret;
pub mod severity;
pub mod time;
pub mod version;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pipe_runner::exit;
use serde::Serialize;

use self::db::{Db, DbError};
use self::inventory::{Origin, WalkOptions};
use self::osv::Kind;
use self::policy::{Baseline, Ignores, Vex};
use self::report::{BaselineInfo, DbInfo, FileInfo, IgnoreInfo, Policy, Report, Target, Tool};
use self::severity::Severity;

/// The default ignore file, relative to the scanned directory.
pub const DEFAULT_IGNORE_FILE: &str = ".pipe/scan-ignore.yaml";
/// The default `--max-file-size`: 64 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// A problem that does not stop the scan (unparsable file, unused ignore rule, …).
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    /// Machine-readable code (`file-invalid`, `ignore-expired`, …).
    pub code: String,
    /// The file concerned.
    pub path: Option<String>,
    /// 1-based line.
    pub line: Option<u32>,
    /// What happened.
    pub message: String,
}

impl Warning {
    /// A warning about a file.
    pub fn at(code: &str, path: &str, line: Option<u32>, message: String) -> Warning {
        Warning {
            code: code.to_owned(),
            path: Some(path.to_owned()),
            line,
            message,
        }
    }

    /// A warning about no file in particular.
    pub fn general(code: &str, message: String) -> Warning {
        Warning {
            code: code.to_owned(),
            path: None,
            line: None,
            message,
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), Some(l)) => write!(f, "{p}:{l}: ")?,
            (Some(p), None) => write!(f, "{p}: ")?,
            _ => {}
        }
        write!(f, "{} [{}]", self.message, self.code)
    }
}

/// A short, lowercase reason for an I/O error.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string().to_lowercase(),
    }
}

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Terminal table.
    Table,
    /// `pipe.scan/v1` JSON.
    Json,
    /// SARIF 2.1.0.
    Sarif,
    /// Markdown summary.
    Markdown,
    /// CycloneDX 1.6 SBOM of the inventory.
    Cyclonedx,
}

impl Format {
    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Sarif => "sarif",
            Format::Markdown => "markdown",
            Format::Cyclonedx => "cyclonedx",
        }
    }
}

/// `--output FORMAT[=FILE]`; no file means stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    /// The format.
    pub format: Format,
    /// The file, or stdout.
    pub path: Option<PathBuf>,
}

impl FromStr for OutputSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (f, p) = match s.split_once('=') {
            Some((f, p)) => (f, Some(p)),
            None => (s, None),
        };
        let format = match f.trim() {
            "table" => Format::Table,
            "json" => Format::Json,
            "sarif" => Format::Sarif,
            "markdown" | "md" => Format::Markdown,
            "cyclonedx" | "cyclonedx-json" => Format::Cyclonedx,
            other => {
                return Err(format!(
                    "unknown output format `{other}` (expected table, json, sarif, markdown or cyclonedx)"
                ));
            }
        };
        if p.is_some_and(|p| p.trim().is_empty()) {
            return Err(format!("`{s}` names no file after `=`"));
        }
        Ok(OutputSpec {
            format,
            path: p.map(|p| PathBuf::from(p.trim())),
        })
    }
}

/// What kind of thing is scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TargetKind {
    /// A source tree.
    #[default]
    Fs,
    /// An unpacked root filesystem.
    Rootfs,
    /// A container image: OCI layout, OCI archive, docker-save tar or an engine image.
    Image,
}

impl TargetKind {
    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Fs => "fs",
            TargetKind::Rootfs => "rootfs",
            TargetKind::Image => "image",
        }
    }

    /// The scanners that run when `--scanners` is not given.
    pub fn default_scanners(self) -> Scanners {
        match self {
            TargetKind::Fs | TargetKind::Rootfs => Scanners::ALL,
            TargetKind::Image => Scanners {
                vuln: true,
                secret: true,
                misconfig: false,
            },
        }
    }
}

/// `--scanners vuln,secret,misconfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanners {
    /// Known vulnerabilities in packages.
    pub vuln: bool,
    /// Secrets in files.
    pub secret: bool,
    /// Risky configuration.
    pub misconfig: bool,
}

impl Scanners {
    /// All three.
    pub const ALL: Scanners = Scanners {
        vuln: true,
        secret: true,
        misconfig: true,
    };

    /// The names, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.vuln {
            v.push("vuln");
        }
        if self.secret {
            v.push("secret");
        }
        if self.misconfig {
            v.push("misconfig");
        }
        v
    }
}

/// Parses a comma list of scanners.
pub fn parse_scanners(s: &str) -> Result<Scanners, String> {
    let mut out = Scanners {
        vuln: false,
        secret: false,
        misconfig: false,
    };
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.to_ascii_lowercase().as_str() {
            "vuln" | "vulnerability" | "vulnerabilities" => out.vuln = true,
            "secret" | "secrets" => out.secret = true,
            "misconfig" | "misconfiguration" | "config" => out.misconfig = true,
            _ => {
                return Err(format!(
                    "`{part}` is not a scanner (vuln, secret or misconfig)"
                ));
            }
        }
    }
    if out.names().is_empty() {
        return Err("`--scanners` names no scanner (vuln, secret or misconfig)".into());
    }
    Ok(out)
}

/// Parses `--fail-on`: a severity or `none`.
pub fn parse_fail_on(s: &str) -> Result<Option<Severity>, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Severity::parse(s).map(Some).ok_or_else(|| {
        format!("`{s}` is not a severity (critical, high, medium, low, unknown or none)")
    })
}

/// Parses a severity.
pub fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s)
        .ok_or_else(|| format!("`{s}` is not a severity (critical, high, medium, low or unknown)"))
}

/// Parses a comma list of informational kinds.
pub fn parse_kinds(s: &str) -> Result<Vec<Kind>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match Kind::parse(part) {
            Some(Kind::Vulnerability | Kind::Secret | Kind::Misconfig) | None => {
                return Err(format!(
                    "`{part}` is not an informational kind (unsound, unmaintained or notice)"
                ));
            }
            Some(k) => out.push(k),
        }
    }
    Ok(out)
}

/// Parses a size such as `64MiB`, `100MB`, `512k` or bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(format!("`{s}` is not a size (use e.g. 64MiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Everything a scan needs. [`Default`] is the CLI's defaults.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// The directory (or single lockfile) to scan; for images a layout directory, an
    /// archive, or `docker:NAME` for an image of the local engine.
    pub target: PathBuf,
    /// What the target is.
    pub target_kind: TargetKind,
    /// The scanners (default: per target kind).
    pub scanners: Option<Scanners>,
    /// A gitleaks-format rule file (replaces the built-in rules, or extends them with
    /// `[extend] useDefault = true`).
    pub secret_config: Option<PathBuf>,
    /// Also scan every commit of the target's git history for secrets.
    pub git_history: bool,
    /// The database directory (default `$PIPE_CACHE_DIR/scan-db`).
    pub db: Option<PathBuf>,
    /// Maximum age of the newest advisory, in seconds; older exits 3.
    pub db_max_age: Option<i64>,
    /// Display threshold for human outputs.
    pub severity: Severity,
    /// Gate threshold (`None` = never fail on severity).
    pub fail_on: Option<Severity>,
    /// Informational kinds that also fail.
    pub fail_on_kind: Vec<Kind>,
    /// Suppress findings without a fixed version.
    pub ignore_unfixed: bool,
    /// How UNKNOWN severities gate.
    pub unknown_severity_as: Severity,
    /// Let dev-only packages gate.
    pub include_dev_deps: bool,
    /// The ignore file (default `DIR/.pipe/scan-ignore.yaml` when present).
    pub ignore_file: Option<PathBuf>,
    /// OpenVEX documents.
    pub vex: Vec<PathBuf>,
    /// An earlier report; only new findings gate.
    pub baseline: Option<PathBuf>,
    /// Expired or unused ignore rules are errors (exit 2).
    pub strict_ignores: bool,
    /// Honour `.gitignore`.
    pub gitignore: bool,
    /// Directory globs to skip.
    pub skip_dirs: Vec<String>,
    /// File globs to skip.
    pub skip_files: Vec<String>,
    /// Outputs (default: a table on stdout).
    pub outputs: Vec<OutputSpec>,
    /// Files larger than this are skipped with a warning.
    pub max_file_size: u64,
    /// Colour for the table.
    pub color: bool,
    /// "Now" in Unix seconds (default: `SOURCE_DATE_EPOCH` or the clock).
    pub now: Option<i64>,
    /// The directory relative output and policy paths are resolved against (default: the
    /// process's current directory).
    pub cwd: Option<PathBuf>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            target: PathBuf::from("."),
            target_kind: TargetKind::Fs,
            scanners: None,
            secret_config: None,
            git_history: false,
            db: None,
            db_max_age: None,
            severity: Severity::Unknown,
            fail_on: Some(Severity::High),
            fail_on_kind: Vec::new(),
            ignore_unfixed: false,
            unknown_severity_as: Severity::Medium,
            include_dev_deps: false,
            ignore_file: None,
            vex: Vec::new(),
            baseline: None,
            strict_ignores: false,
            gitignore: false,
            skip_dirs: Vec::new(),
            skip_files: Vec::new(),
            outputs: Vec::new(),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            color: false,
            now: None,
            cwd: None,
        }
    }
}

/// The inputs of `uses: pipe/scan@v1`; each mirrors the flag of the same name.
pub const ACTION_INPUTS: &[&str] = &[
    "path",
    "kind",
    "scanners",
    "secret-config",
    "git-history",
    "db",
    "db-max-age",
    "severity",
    "fail-on",
    "fail-on-kind",
    "ignore-unfixed",
    "unknown-severity-as",
    "include-dev-deps",
    "ignore-file",
    "vex",
    "baseline",
    "strict-ignores",
    "gitignore",
    "skip-dirs",
    "skip-files",
    "output",
    "max-file-size",
];

fn list(v: &str) -> Vec<String> {
    v.split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn boolean(k: &str, v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" | "" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("input `{k}` must be `true` or `false`, not `{v}`")),
    }
}

impl ScanOptions {
    /// Options from the action's `with:` inputs (names as in [`ACTION_INPUTS`]; lists are
    /// comma- or newline-separated). Unknown inputs are errors, like unknown flags.
    pub fn from_inputs(inputs: &BTreeMap<String, String>) -> Result<ScanOptions, String> {
        let mut o = ScanOptions::default();
        for (k, v) in inputs {
            match k.as_str() {
                "path" => o.target = PathBuf::from(v.trim()),
                // What `path` is, as the subcommands of `pipe scan` say it.
                "kind" => {
                    o.target_kind = match v.trim() {
                        "" | "fs" => TargetKind::Fs,
                        "rootfs" => TargetKind::Rootfs,
                        "image" => TargetKind::Image,
                        other => {
                            return Err(format!(
                                "input `kind`: `{other}` is not `fs`, `rootfs` or `image`"
                            ));
                        }
                    }
                }
                "scanners" => o.scanners = Some(parse_scanners(v)?),
                "secret-config" => o.secret_config = Some(PathBuf::from(v.trim())),
                "git-history" => o.git_history = boolean(k, v)?,
                "db" => o.db = Some(PathBuf::from(v.trim())),
                "db-max-age" => {
                    o.db_max_age = Some(time::parse_duration(v).ok_or_else(|| {
                        format!("input `db-max-age`: `{v}` is not a duration (e.g. 7d)")
                    })?)
                }
                "severity" => o.severity = parse_severity(v)?,
                "fail-on" => o.fail_on = parse_fail_on(v)?,
                "fail-on-kind" => o.fail_on_kind = parse_kinds(v)?,
                "ignore-unfixed" => o.ignore_unfixed = boolean(k, v)?,
                "unknown-severity-as" => o.unknown_severity_as = parse_severity(v)?,
                "include-dev-deps" => o.include_dev_deps = boolean(k, v)?,
                "ignore-file" => o.ignore_file = Some(PathBuf::from(v.trim())),
                "vex" => o.vex = list(v).into_iter().map(PathBuf::from).collect(),
                "baseline" => o.baseline = Some(PathBuf::from(v.trim())),
                "strict-ignores" => o.strict_ignores = boolean(k, v)?,
                "gitignore" => o.gitignore = boolean(k, v)?,
                "skip-dirs" => o.skip_dirs = list(v),
                "skip-files" => o.skip_files = list(v),
                "output" => {
                    o.outputs = list(v)
                        .iter()
                        .map(|s| s.parse())
                        .collect::<Result<_, _>>()?
                }
                "max-file-size" => o.max_file_size = parse_size(v)?,
                other => {
                    return Err(format!(
                        "unknown input `{other}` (known: {})",
                        ACTION_INPUTS.join(", ")
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// How loud a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The scan could not be done as asked.
    Error,
    /// Something the user should know.
    Warning,
}

/// A message for stderr.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Level.
    pub level: Level,
    /// Text (lowercase, names in backticks).
    pub text: String,
    /// What to do.
    pub hint: Option<String>,
}

/// The result of [`run_scan`].
#[derive(Debug)]
pub struct ScanOutcome {
    /// 0 pass, 1 policy failed, 2 usage or configuration error, 3 database missing or stale.
    pub exit_code: u8,
    /// The report, when the scan ran.
    pub report: Option<Report>,
    /// The output without a file, rendered on demand by [`ScanOutcome::write_stdout`]
    /// (streamed, so a large report is never held as one string).
    pub stdout: Option<Format>,
    /// Colour for a stdout table.
    pub color: bool,
    /// Messages for stderr.
    pub messages: Vec<Message>,
    /// Files written, by format.
    pub written: Vec<(Format, PathBuf)>,
}

impl ScanOutcome {
    /// Writes the stdout output (if any) to `w`, e.g. the terminal or a step log.
    pub fn write_stdout(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        match (&self.report, self.stdout) {
            (Some(r), Some(f)) => render::write(f, r, self.color, w),
            _ => Ok(()),
        }
    }

    fn error(code: u8, text: String, hint: Option<String>) -> ScanOutcome {
        ScanOutcome {
            exit_code: code,
            report: None,
            stdout: None,
            color: false,
            messages: vec![Message {
                level: Level::Error,
                text,
                hint,
            }],
            written: Vec::new(),
        }
    }
}

/// Where the database lives for these options.
pub fn db_dir(db: Option<&Path>) -> Result<PathBuf, String> {
    match db {
        Some(p) => Ok(p.to_path_buf()),
        None => db::default_dir(&pipe_runner::dirs::process_env).ok_or_else(|| {
            "cannot find a cache directory for the advisory database: set `PIPE_CACHE_DIR`, `HOME` or pass `--db`".to_owned()
        }),
    }
}

/// The hint printed when no database exists.
pub fn import_hint(dir: &Path) -> String {
    format!(
        "import OSV advisories first: `pipe scan db import DIR|ZIP --db {}`",
        dir.display()
    )
}

/// Opens the database for a scan, checking its age; errors are exit 3.
fn open_db(opts: &ScanOptions, now: i64) -> Result<Db, Box<ScanOutcome>> {
    let dir = db_dir(opts.db.as_deref())
        .map_err(|e| Box::new(ScanOutcome::error(exit::INFRA, e, None)))?;
    let db = Db::open(&db::file_in(&dir)).map_err(|e| {
        let hint = match &e {
            DbError::Missing(_) | DbError::Corrupt { .. } => Some(import_hint(&dir)),
            _ => None,
        };
        Box::new(ScanOutcome::error(exit::INFRA, e.to_string(), hint))
    })?;
    if let Some(max) = opts.db_max_age {
        let newest = db
            .status
            .newest_modified
            .as_deref()
            .and_then(time::parse_rfc3339);
        let stale = newest.is_none_or(|n| now - n > max);
        if stale {
            return Err(Box::new(ScanOutcome::error(
                exit::INFRA,
                format!(
                    "the advisory database is stale: its newest advisory is from {}, more than {} ago",
                    db.status
                        .newest_modified
                        .as_deref()
                        .unwrap_or("an unknown time"),
                    human_duration(max)
                ),
                Some(format!(
                    "import fresh advisories with `pipe scan db import`, or raise `--db-max-age` (database `{}`)",
                    db.path.display()
                )),
            )));
        }
    }
    Ok(db)
}

fn human_duration(secs: i64) -> String {
    if secs % 86_400 == 0 {
        format!("{}d", secs / 86_400)
    } else if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

/// The ignore file, the VEX documents and the baseline.
type PolicyFiles = (Option<Ignores>, Vec<Vex>, Option<Baseline>);

/// The ignore file (given, or `.pipe/scan-ignore.yaml` of the target when present), VEX
/// documents and the baseline; any problem in them is a configuration error.
fn load_policy_files(
    opts: &ScanOptions,
    cwd: &Path,
    target: &Path,
) -> Result<PolicyFiles, policy::PolicyError> {
    let shown = |p: &Path| p.display().to_string();
    let ignores = match &opts.ignore_file {
        Some(p) => Some(Ignores::load(&policy::resolve(cwd, p), &shown(p))?),
        None => {
            let dir = if target.is_dir() {
                target
            } else {
                target.parent().unwrap_or(target)
            };
            let p = dir.join(DEFAULT_IGNORE_FILE);
            if p.is_file() {
                Some(Ignores::load(&p, DEFAULT_IGNORE_FILE)?)
            } else {
                None
            }
        }
    };
    let vex = opts
        .vex
        .iter()
        .map(|p| Vex::load(&policy::resolve(cwd, p), &shown(p)))
        .collect::<Result<Vec<_>, _>>()?;
    let baseline = match &opts.baseline {
        Some(p) => Some(Baseline::load(&policy::resolve(cwd, p), &shown(p))?),
        None => None,
    };
    Ok((ignores, vex, baseline))
}

/// Writes one output file, creating its directory.
fn write_output(path: &Path, format: Format, report: &Report) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    render::write(format, report, false, &mut f)?;
    std::io::Write::flush(&mut f)
}

/// Runs a scan: inventory, match, policy, outputs. Never prints, never exits.
pub fn run_scan(opts: &ScanOptions) -> ScanOutcome {
    let cwd = opts
        .cwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let now = opts
        .now
        .unwrap_or_else(|| time::now(&pipe_runner::dirs::process_env));
    let today = now.div_euclid(86_400);
    let scanners = opts
        .scanners
        .unwrap_or_else(|| opts.target_kind.default_scanners());
    let outputs = if opts.outputs.is_empty() {
        vec![OutputSpec {
            format: Format::Table,
            path: None,
        }]
    } else {
        opts.outputs.clone()
    };
    if outputs.iter().filter(|o| o.path.is_none()).count() > 1 {
        return ScanOutcome::error(
            exit::USAGE,
            "more than one `--output` goes to stdout".into(),
            Some("give all but one a file: `--output json=pipe-scan.json`".into()),
        );
    }
    let given = policy::resolve(&cwd, &opts.target);
    let engine_ref = image::engine_ref(&opts.target, &given, opts.target_kind);
    if engine_ref.is_none() && !given.exists() {
        return ScanOutcome::error(
            exit::USAGE,
            format!(
                "cannot scan `{}`: no such file or directory",
                opts.target.display()
            ),
            None,
        );
    }
    let started = std::time::Instant::now();
    let db = if scanners.vuln {
        match open_db(opts, now) {
            Ok(db) => Some(db),
            Err(outcome) => return *outcome,
        }
    } else {
        None
    };
    let (ignores, vex, baseline) = match load_policy_files(opts, &cwd, &given) {
        Ok(files) => files,
        Err(e) => return ScanOutcome::error(exit::USAGE, e.to_string(), None),
    };
    let loaded_rules;
    let rules: Option<&secret::Rules> = if scanners.secret {
        match &opts.secret_config {
            Some(p) => {
                match secret::Rules::load(&policy::resolve(&cwd, p), &p.display().to_string()) {
                    Ok(r) => {
                        loaded_rules = r;
                        Some(&loaded_rules)
                    }
                    Err(e) => return ScanOutcome::error(exit::USAGE, e.to_string(), None),
                }
            }
            // The built-in rules are parsed on first use (below), so a scan of a lockfile
            // does not pay for them.
            None => None,
        }
    } else {
        None
    };
    let mut warnings = Vec::new();
    // Images are unpacked (squashed, whiteouts applied) into a temporary directory that
    // lives until the report is built; files remember the layer that added them.
    let unpacked = if opts.target_kind == TargetKind::Image {
        match image::unpack(&given, engine_ref.as_deref(), opts.max_file_size) {
            Ok(u) => Some(u),
            Err(e) => {
                let code = if e.is_infra() {
                    exit::INFRA
                } else {
                    exit::USAGE
                };
                return ScanOutcome::error(code, e.to_string(), e.hint());
            }
        }
    } else {
        None
    };
    let target: PathBuf = match &unpacked {
        Some(u) => {
            warnings.extend(u.warnings.iter().cloned());
            u.root().to_path_buf()
        }
        None => given.clone(),
    };
    let walk = WalkOptions {
        gitignore: opts.gitignore,
        skip_dirs: opts.skip_dirs.clone(),
        skip_files: opts.skip_files.clone(),
        max_file_size: opts.max_file_size,
    };
    tracing::debug!(elapsed = ?started.elapsed(), "database and policy inputs loaded");
    let wants_inventory = scanners.vuln || outputs.iter().any(|o| o.format == Format::Cyclonedx);
    let mut inv = if wants_inventory {
        match inventory::collect(&target, &walk) {
            Ok(i) => i,
            Err(e) => return ScanOutcome::error(exit::USAGE, e.to_string(), None),
        }
    } else {
        inventory::Inventory::default()
    };
    warnings.append(&mut inv.warnings);
    if scanners.vuln && inv.files.is_empty() {
        warnings.push(Warning::general(
            "nothing-scanned",
            format!(
                "no lockfile or package database found below `{}`",
                opts.target.display()
            ),
        ));
    }
    let mut detections = Vec::new();
    if scanners.secret || scanners.misconfig {
        let files = match inventory::walk_files(&target, &walk) {
            Ok(f) => f,
            Err(e) => return ScanOutcome::error(exit::USAGE, e.to_string(), None),
        };
        let base = if target.is_dir() {
            target.clone()
        } else {
            target.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        // Lockfiles are allowlisted by the built-in rules: a tree of nothing else needs no
        // rules at all.
        let builtin = if scanners.secret
            && rules.is_none()
            && files.iter().any(|f| {
                !matches!(
                    inventory::kind_of(f),
                    Some(k) if k != inventory::Kind::Dpkg && k != inventory::Kind::Apk
                )
            }) {
            match secret::Rules::builtin() {
                Ok(r) => Some(r),
                Err(e) => return ScanOutcome::error(exit::INFRA, e, None),
            }
        } else {
            None
        };
        if let Some(rules) = rules.or(builtin) {
            detections.extend(secret::scan_files(
                rules,
                &base,
                &files,
                opts.max_file_size,
                &mut warnings,
            ));
            if opts.git_history {
                match secret::history::scan(rules, &given) {
                    Ok((d, mut w)) => {
                        // A secret still in the tree is reported there, once.
                        let tree: std::collections::HashSet<String> =
                            detections.iter().map(|x| x.fingerprint.clone()).collect();
                        detections.extend(d.into_iter().filter(|x| !tree.contains(&x.fingerprint)));
                        warnings.append(&mut w);
                    }
                    Err(e) => return ScanOutcome::error(exit::USAGE, e, None),
                }
            }
        }
        if scanners.misconfig {
            detections.extend(misconfig::scan_files(
                &base,
                &files,
                opts.max_file_size,
                rules.or(builtin),
                &mut warnings,
            ));
        }
    }
    if let Some(u) = &unpacked {
        for p in &mut inv.packages {
            p.layer = u.layer_of(&p.source_file);
        }
        for d in &mut detections {
            d.layer = u.layer_of(&d.path);
        }
    }
    let mut matches = Vec::new();
    if let Some(db) = &db {
        // Ecosystems with packages but no advisories would pass silently: say so.
        let mut missing: BTreeMap<&str, usize> = BTreeMap::new();
        for p in inv.packages.iter().filter(|p| p.origin == Origin::Registry) {
            if !db.has_ecosystem(&p.ecosystem) {
                *missing.entry(p.ecosystem.as_str()).or_default() += 1;
            }
        }
        for (eco, n) in missing {
            warnings.push(Warning::general(
                "ecosystem-not-in-db",
                format!(
                    "the advisory database has no `{eco}` advisories; {n} packages were not checked"
                ),
            ));
        }
        tracing::debug!(elapsed = ?started.elapsed(), packages = inv.packages.len(), "inventory read");
        matches = match matcher::match_all(db, &inv.packages) {
            Ok(m) => m,
            Err(e) => {
                return ScanOutcome::error(exit::INFRA, e.to_string(), Some(import_hint(&db.path)));
            }
        };
    }
    let policy = Policy {
        severity: opts.severity,
        fail_on: opts.fail_on,
        fail_on_kind: {
            let s: BTreeSet<Kind> = opts.fail_on_kind.iter().copied().collect();
            s.into_iter().collect()
        },
        ignore_unfixed: opts.ignore_unfixed,
        unknown_severity_as: opts.unknown_severity_as,
        include_dev_deps: opts.include_dev_deps,
    };
    let inputs = report::PolicyInputs {
        policy: &policy,
        ignores: ignores.as_ref(),
        vex: &vex,
        baseline: baseline.as_ref(),
        today,
    };
    tracing::debug!(elapsed = ?started.elapsed(), matches = matches.len(), "packages matched");
    let findings = report::findings(&inv.packages, matches, detections, &inputs, &mut warnings);
    warnings.sort();
    warnings.dedup();
    let summary = report::summarize(inv.packages.len(), &findings);
    let rep = Report {
        schema: report::SCHEMA,
        tool: Tool {
            name: "pipe",
            version: env!("CARGO_PKG_VERSION"),
        },
        target: Target {
            kind: opts.target_kind.as_str(),
            path: opts.target.display().to_string(),
        },
        scanners: scanners.names(),
        image: unpacked.as_ref().map(|u| u.info.clone()),
        secret_rules: match rules {
            Some(r) => Some(r.digest.clone()),
            None if scanners.secret => Some(secret::builtin_digest()),
            None => None,
        },
        db: db.as_ref().map(|d| DbInfo::of(&d.status)),
        ignore_file: ignores.as_ref().map(|i| IgnoreInfo {
            path: i.path.clone(),
            digest: i.digest.clone(),
            rules: i.rules.len(),
        }),
        vex: vex
            .iter()
            .map(|v| FileInfo {
                path: v.path.clone(),
                digest: v.digest.clone(),
            })
            .collect(),
        baseline: baseline.as_ref().map(|b| BaselineInfo {
            path: b.path.clone(),
            findings: b.findings,
        }),
        policy,
        result: if summary.gated > 0 { "fail" } else { "pass" }.into(),
        summary,
        files: inv.files,
        packages: inv.packages,
        findings,
        warnings,
    };
    drop(unpacked);
    let mut outcome = ScanOutcome {
        exit_code: if rep.result == "fail" {
            exit::FAILURE
        } else {
            exit::SUCCESS
        },
        report: None,
        stdout: None,
        color: opts.color,
        messages: rep
            .warnings
            .iter()
            .map(|w| Message {
                level: Level::Warning,
                text: w.to_string(),
                hint: None,
            })
            .collect(),
        written: Vec::new(),
    };
    for o in &outputs {
        match &o.path {
            None => outcome.stdout = Some(o.format),
            Some(p) => {
                let full = policy::resolve(&cwd, p);
                match write_output(&full, o.format, &rep) {
                    Ok(()) => outcome.written.push((o.format, full)),
                    Err(e) => {
                        outcome.messages.push(Message {
                            level: Level::Error,
                            text: format!("cannot write `{}`: {}", p.display(), io_reason(&e)),
                            hint: None,
                        });
                        outcome.exit_code = exit::INFRA;
                    }
                }
            }
        }
    }
    if opts.strict_ignores
        && outcome.exit_code != exit::INFRA
        && let Some(w) = rep
            .warnings
            .iter()
            .find(|w| w.code == "ignore-expired" || w.code == "ignore-unused")
    {
        outcome.messages.push(Message {
            level: Level::Error,
            text: format!("`--strict-ignores`: {w}"),
            hint: Some("remove or renew the rule".into()),
        });
        outcome.exit_code = exit::USAGE;
    }
    tracing::debug!(elapsed = ?started.elapsed(), "outputs written");
    outcome.report = Some(rep);
    outcome
}

#[cfg(test)]
mod advisory_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn action_inputs_mirror_the_flags() {
        let o = ScanOptions::from_inputs(&inputs(&[
            ("path", "services/api"),
            ("fail-on", "critical"),
            ("fail-on-kind", "unsound, unmaintained"),
            ("severity", "medium"),
            ("ignore-unfixed", "true"),
            ("db-max-age", "7d"),
            ("vex", "a.openvex.json\nb.openvex.json"),
            ("skip-dirs", "vendor,testdata"),
            ("output", "table\njson=pipe-scan.json\nmarkdown=summary.md"),
            ("max-file-size", "10MiB"),
            ("scanners", "secret, misconfig"),
            ("git-history", "true"),
        ]))
        .expect("valid inputs");
        assert_eq!(
            o.scanners,
            Some(Scanners {
                vuln: false,
                secret: true,
                misconfig: true
            })
        );
        assert!(o.git_history);
        assert_eq!(o.target, PathBuf::from("services/api"));
        assert_eq!(o.fail_on, Some(Severity::Critical));
        assert_eq!(o.fail_on_kind, [Kind::Unsound, Kind::Unmaintained]);
        assert_eq!(o.severity, Severity::Medium);
        assert!(o.ignore_unfixed);
        assert_eq!(o.db_max_age, Some(7 * 86_400));
        assert_eq!(o.vex.len(), 2);
        assert_eq!(o.skip_dirs, ["vendor", "testdata"]);
        assert_eq!(o.outputs.len(), 3);
        assert_eq!(o.outputs[1].format, Format::Json);
        assert_eq!(o.max_file_size, 10 * 1024 * 1024);
        assert_eq!(
            ScanOptions::from_inputs(&inputs(&[("kind", "image")]))
                .expect("kind")
                .target_kind,
            TargetKind::Image
        );
        assert_eq!(
            ScanOptions::from_inputs(&inputs(&[("fail-on", "none")]))
                .expect("none")
                .fail_on,
            None
        );
        for bad in [
            ("fail-on", "severe"),
            ("fail-on-kind", "vulnerability"),
            ("ignore-unfixed", "yes"),
            ("output", "xml"),
            ("typo", "x"),
            ("scanners", "licenses"),
            ("scanners", ","),
            ("kind", "container"),
        ] {
            assert!(
                ScanOptions::from_inputs(&inputs(&[bad])).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn run_scan_without_database_exits_3() {
        let tmp = tempfile::tempdir().expect("tmp");
        let o = run_scan(&ScanOptions {
            target: tmp.path().to_path_buf(),
            db: Some(tmp.path().join("no-db")),
            ..ScanOptions::default()
        });
        assert_eq!(o.exit_code, exit::INFRA);
        assert!(o.report.is_none());
        assert!(o.messages[0].text.starts_with("no advisory database at"));
        assert!(
            o.messages[0]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("pipe scan db import"))
        );
    }
}
