//! `pipe scan fs|rootfs|image` and `pipe scan db import|status`: the command-line face of
//! [`pipe_actions::scan`], which does all the work and returns what to print.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use pipe_actions::scan::{
    self, Level, OutputSpec, ScanOptions, db, osv::Kind, severity::Severity, time,
};
use pipe_runner::exit;

use crate::args::Cli;
use crate::output::{self, Styles};

// `pipe scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(subcommand)]
    pub command: ScanCommand,
}

// The scan commands (a plain comment: see `args::Command`).
#[derive(Debug, Subcommand)]
pub enum ScanCommand {
    /// Scan a source tree: lockfiles for known vulnerabilities, files for secrets,
    /// Dockerfiles, workflows and Kubernetes manifests for risky configuration.
    Fs(FsArgs),
    /// Scan an unpacked root file system (OS package databases, lockfiles, secrets).
    Rootfs(FsArgs),
    /// Scan a container image: an OCI layout directory, an OCI archive, a `docker save` tar,
    /// or `docker:NAME` for an image of the local engine.
    Image(FsArgs),
    /// Manage the local advisory database.
    Db(DbArgs),
}

fn sev(s: &str) -> Result<Severity, String> {
    scan::parse_severity(s)
}

/// `--fail-on`: a severity or `none` (a newtype because clap reads `Option` as "may be absent").
#[derive(Clone, Copy, Debug)]
pub struct Gate(Option<Severity>);

fn fail_on(s: &str) -> Result<Gate, String> {
    scan::parse_fail_on(s).map(Gate)
}

/// One `--fail-on-kind` comma list.
#[derive(Clone, Debug)]
pub struct Kinds(Vec<Kind>);

fn kinds(s: &str) -> Result<Kinds, String> {
    scan::parse_kinds(s).map(Kinds)
}

fn duration(s: &str) -> Result<i64, String> {
    time::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (e.g. 7d, 36h)"))
}

/// `pipe scan fs`.
#[derive(Debug, Args)]
pub struct FsArgs {
    /// What to scan: a directory or one file (`image`: a layout, an archive or `docker:NAME`).
    #[arg(default_value = ".", value_name = "TARGET")]
    pub dir: PathBuf,
    /// The scanners to run (comma list: vuln, secret, misconfig; default: all three, and
    /// vuln,secret for images).
    #[arg(long, value_name = "LIST", value_parser = scan::parse_scanners)]
    pub scanners: Option<scan::Scanners>,
    /// A gitleaks-format rule file: replaces the built-in secret rules, or adds to them
    /// with `[extend] useDefault = true`.
    #[arg(long, value_name = "FILE")]
    pub secret_config: Option<PathBuf>,
    /// Also scan the git history of the target for secrets (lines added by every commit).
    #[arg(long)]
    pub git_history: bool,
    /// The advisory database directory (default: `$PIPE_CACHE_DIR/scan-db`).
    #[arg(long, value_name = "PATH", env = "PIPE_SCAN_DB")]
    pub db: Option<PathBuf>,
    /// Fail with exit 3 when the newest advisory is older than this (e.g. `7d`).
    #[arg(long, value_name = "AGE", value_parser = duration)]
    pub db_max_age: Option<i64>,
    /// Show findings at or above this severity (display only; the gate is `--fail-on`).
    #[arg(long, value_name = "SEVERITY", default_value = "unknown", value_parser = sev)]
    pub severity: Severity,
    /// Exit 1 when an unsuppressed vulnerability is at or above this severity (`none`: never).
    #[arg(long, value_name = "SEVERITY", default_value = "high", value_parser = fail_on)]
    pub fail_on: Gate,
    /// Also exit 1 on these informational kinds (comma list: unsound, unmaintained, notice).
    #[arg(long, value_name = "KINDS", value_parser = kinds)]
    pub fail_on_kind: Vec<Kinds>,
    /// Suppress vulnerabilities that have no fixed version.
    #[arg(long)]
    pub ignore_unfixed: bool,
    /// The severity that advisories without one gate as.
    #[arg(long, value_name = "SEVERITY", default_value = "medium", value_parser = sev)]
    pub unknown_severity_as: Severity,
    /// Let packages needed only for development fail the gate too.
    #[arg(long)]
    pub include_dev_deps: bool,
    /// The ignore file (default: `DIR/.pipe/scan-ignore.yaml` when it exists).
    #[arg(long, value_name = "FILE")]
    pub ignore_file: Option<PathBuf>,
    /// An OpenVEX document; `not_affected` and `fixed` statements suppress (repeatable).
    #[arg(long, value_name = "FILE")]
    pub vex: Vec<PathBuf>,
    /// An earlier JSON report: only findings not in it fail the gate.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Expired or unused ignore rules are errors (exit 2).
    #[arg(long)]
    pub strict_ignores: bool,
    /// Skip what `.gitignore` files ignore.
    #[arg(long)]
    pub gitignore: bool,
    /// Skip directories matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub skip_dirs: Vec<String>,
    /// Skip files matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub skip_files: Vec<String>,
    /// An output: `table`, `json`, `sarif`, `markdown` or `cyclonedx`, to stdout or `=FILE`
    /// (repeatable; default `table`).
    #[arg(short, long = "output", value_name = "FORMAT[=FILE]")]
    pub output: Vec<OutputSpec>,
    /// Skip (with a warning) files larger than this.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = scan::parse_size)]
    pub max_file_size: u64,
}

/// `pipe scan db`.
#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

/// The database commands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Build the database from OSV JSON directories or zip files (replaces it whole).
    Import(DbImportArgs),
    /// Print the database's digest, counts per ecosystem and newest advisory.
    Status(DbStatusArgs),
}

/// `pipe scan db import`.
#[derive(Debug, Args)]
pub struct DbImportArgs {
    /// Directories (searched for `*.json`) and zip files of OSV records.
    #[arg(required = true, value_name = "DIR|ZIP")]
    pub sources: Vec<PathBuf>,
    /// The database directory (default: `$PIPE_CACHE_DIR/scan-db`).
    #[arg(long, value_name = "PATH", env = "PIPE_SCAN_DB")]
    pub db: Option<PathBuf>,
}

/// `pipe scan db status`.
#[derive(Debug, Args)]
pub struct DbStatusArgs {
    /// The database directory (default: `$PIPE_CACHE_DIR/scan-db`).
    #[arg(long, value_name = "PATH", env = "PIPE_SCAN_DB")]
    pub db: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `pipe scan …`.
pub fn run(cli: &Cli, args: &ScanArgs) -> u8 {
    match &args.command {
        ScanCommand::Fs(a) => fs(cli, a, scan::TargetKind::Fs),
        ScanCommand::Rootfs(a) => fs(cli, a, scan::TargetKind::Rootfs),
        ScanCommand::Image(a) => fs(cli, a, scan::TargetKind::Image),
        ScanCommand::Db(DbArgs {
            command: DbCommand::Import(a),
        }) => import(cli, a),
        ScanCommand::Db(DbArgs {
            command: DbCommand::Status(a),
        }) => status(cli, a),
    }
}

fn styles(cli: &Cli) -> Styles {
    super::err_styles(cli)
}

fn print_message(cli: &Cli, level: Level, text: &str, hint: Option<&str>) {
    let s = styles(cli);
    match level {
        Level::Error => super::error(cli, text, hint),
        Level::Warning => {
            if cli.globals.quiet {
                return;
            }
            let mut t = format!("{} {text}\n", s.paint(s.warning, "warning:"));
            if let Some(h) = hint {
                t.push_str(&format!("  {} {h}\n", s.paint(s.hint, "hint:")));
            }
            output::stderr_write(t.as_bytes());
        }
    }
}

/// Writes data to stdout; a closed pipe ends quietly.
fn data(text: &str, code: u8) -> u8 {
    match output::stdout_write(text.as_bytes()) {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(_) => exit::INFRA,
    }
}

fn fs(cli: &Cli, a: &FsArgs, kind: scan::TargetKind) -> u8 {
    let opts = ScanOptions {
        target: a.dir.clone(),
        target_kind: kind,
        scanners: a.scanners,
        secret_config: a.secret_config.clone(),
        git_history: a.git_history,
        db: a.db.clone(),
        db_max_age: a.db_max_age,
        severity: a.severity,
        fail_on: a.fail_on.0,
        fail_on_kind: a
            .fail_on_kind
            .iter()
            .flat_map(|k| k.0.iter().copied())
            .collect(),
        ignore_unfixed: a.ignore_unfixed,
        unknown_severity_as: a.unknown_severity_as,
        include_dev_deps: a.include_dev_deps,
        ignore_file: a.ignore_file.clone(),
        vex: a.vex.clone(),
        baseline: a.baseline.clone(),
        strict_ignores: a.strict_ignores,
        gitignore: a.gitignore,
        skip_dirs: a.skip_dirs.clone(),
        skip_files: a.skip_files.clone(),
        outputs: a.output.clone(),
        max_file_size: a.max_file_size,
        color: output::use_color(
            cli.globals.color,
            std::io::IsTerminal::is_terminal(&std::io::stdout()),
        ),
        now: None,
        cwd: None,
    };
    let outcome = scan::run_scan(&opts);
    for m in &outcome.messages {
        print_message(cli, m.level, &m.text, m.hint.as_deref());
    }
    let written = {
        // Rendering buffers by itself.
        let mut out = std::io::stdout().lock();
        outcome
            .write_stdout(&mut out)
            .and_then(|()| std::io::Write::flush(&mut out))
    };
    let code = match written {
        Ok(()) => outcome.exit_code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => outcome.exit_code,
        Err(_) => exit::INFRA,
    };
    // The process ends now: freeing the report piece by piece would only cost time.
    std::mem::forget(outcome);
    code
}

fn db_dir(cli: &Cli, db: Option<&std::path::Path>) -> Result<PathBuf, u8> {
    scan::db_dir(db).map_err(|e| {
        super::error(cli, &e, None);
        exit::INFRA
    })
}

fn import(cli: &Cli, a: &DbImportArgs) -> u8 {
    let dir = match db_dir(cli, a.db.as_deref()) {
        Ok(d) => d,
        Err(c) => return c,
    };
    let now = time::now(&pipe_runner::dirs::process_env);
    match db::import(&a.sources, &dir, now) {
        Ok(r) => {
            for w in &r.warnings {
                print_message(cli, Level::Warning, &w.to_string(), None);
            }
            let text = status_text(&r.path, &r.status);
            data(&text, exit::SUCCESS)
        }
        Err(e @ db::DbError::Source { .. }) => {
            super::error(cli, &e.to_string(), None);
            exit::USAGE
        }
        Err(e) => {
            super::error(cli, &e.to_string(), None);
            exit::INFRA
        }
    }
}

fn status_text(path: &std::path::Path, s: &db::Status) -> String {
    let mut out = String::new();
    out.push_str(&format!("database   {}\n", path.display()));
    out.push_str(&format!("schema     {}\n", s.schema));
    out.push_str(&format!("digest     {}\n", s.digest));
    out.push_str(&format!(
        "records    {} ({} withdrawn)\n",
        s.records, s.withdrawn
    ));
    out.push_str(&format!(
        "newest     {}\n",
        s.newest_modified.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!("imported   {}\n", s.imported_at));
    out.push_str("ecosystems\n");
    let w = s.ecosystems.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, v) in &s.ecosystems {
        out.push_str(&format!(
            "  {k:<w$}  {:>6}{}\n",
            v.records,
            if v.withdrawn > 0 {
                format!(" ({} withdrawn)", v.withdrawn)
            } else {
                String::new()
            }
        ));
    }
    out
}

fn status(cli: &Cli, a: &DbStatusArgs) -> u8 {
    let dir = match db_dir(cli, a.db.as_deref()) {
        Ok(d) => d,
        Err(c) => return c,
    };
    match db::Db::open(&db::file_in(&dir)) {
        Ok(d) => {
            let text = if a.json {
                let mut j = serde_json::to_string_pretty(&d.status).unwrap_or_default();
                j.push('\n');
                j
            } else {
                status_text(&d.path, &d.status)
            };
            data(&text, exit::SUCCESS)
        }
        Err(e) => {
            super::error(cli, &e.to_string(), Some(&scan::import_hint(&dir)));
            exit::INFRA
        }
    }
}
