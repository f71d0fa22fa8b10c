//! Command-line arguments (clap derive). Every command takes the global `-q/-v` and `--color`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::ColorMode;

/// pipe — a GitHub Actions-compatible CI pipeline runner.
#[derive(Debug, Parser)]
#[command(name = "pipe", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,
    #[command(subcommand)]
    pub command: Command,
}

// The options every command takes (`global`); flattened into `Cli`, and parsed alone with
// `run` by `parse_run`. A plain comment: the doc comment of a flattened structure would become
// the about line of `pipe --help`.
#[derive(Debug, Args, Clone)]
pub struct Globals {
    /// Print less (only errors).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more (repeat for more detail; `PIPE_LOG` sets a tracing filter).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// When to use colour (`NO_COLOR` is honoured with `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorMode::Auto)]
    pub color: ColorMode,
    /// How log lines on stderr are written: `text`, or `json` (one object a line, for log
    /// collectors; `pipe server` and `pipe agent` in production).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "PIPE_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

/// The format of log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line (timestamp, level, message, fields, span).
    Json,
}

/// The commands. Each is built only when invoked (`defer`): building all 30 with their
/// arguments cost every start of pipe 0.3 ms of CPU and 52 of its 217 page faults (`pipe
/// --version`, `perf stat`). The argument structures of these variants (and the ones they
/// flatten) carry plain comments, not doc comments: a deferred command would take their doc
/// comment for its about line, over the variant's (`tests/integration/help.rs`).
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Run workflows locally, exactly as GitHub would.
    Run(RunArgs),
    /// Check workflow files (and action.yml files) for errors and likely mistakes.
    Validate(ValidateArgs),
    /// List the jobs and matrix legs a run would have (`--json` prints the plan).
    List(ListArgs),
    /// Draw the job graph (ASCII, or Graphviz with `--dot`).
    Graph(GraphArgs),
    /// List recorded runs, newest first.
    Runs(RunsArgs),
    /// Print the logs of a recorded run.
    Logs(LogsArgs),
    /// List the artifacts a recorded run uploaded (`actions/upload-artifact`).
    Artifacts(ArtifactsArgs),
    /// Inspect and maintain the content-addressed cache (`$PIPE_CACHE_DIR`).
    Cache(CacheArgs),
    /// Explain the step cache's last verdict on a job's cached steps (what changed on a miss).
    Why(WhyArgs),
    /// Scan for vulnerabilities, secrets and misconfiguration, offline (`fs`, `rootfs`, `image`, `db`).
    Scan(crate::commands::scan::ScanArgs),
    /// Time commands (hyperfine's flags), compare with baselines, show history.
    Bench(crate::commands::bench::BenchArgs),
    /// Build multi-platform OCI images, load them into Docker, push them (`build`, `push`, `inspect`).
    Image(crate::commands::image::ImageArgs),
    /// Remove containers, networks and volumes that a killed `pipe` left behind.
    Prune(PruneArgs),
    /// List the builds runs registered (promotion).
    Builds(crate::commands::promote::builds::BuildsArgs),
    /// Show a build: subjects, jobs, evidence and its history in the ledger.
    Show(crate::commands::promote::builds::ShowArgs),
    /// Dry-run every gate of an environment for a build and say what is unmet.
    Gates(crate::commands::promote::gates::GatesArgs),
    /// Promote a build to an environment (exit 0 done, 1 denied, 3 pending).
    Promote(crate::commands::promote::gates::PromoteArgs),
    /// Approve a build for an environment, signed with your SSH key.
    Approve(crate::commands::promote::gates::ApproveArgs),
    /// Veto a build for an environment (until a new promotion request).
    Reject(crate::commands::promote::gates::RejectArgs),
    /// Environments: current release, lock, pending requests, windows.
    Status(crate::commands::promote::status::StatusArgs),
    /// The promotion ledger's entries, filtered.
    History(crate::commands::promote::status::HistoryArgs),
    /// Stop the line: refuse promotions to an environment (`--hard` also blocks rollbacks).
    Lock(crate::commands::promote::status::LockArgs),
    /// Lift a lock.
    Unlock(crate::commands::promote::status::UnlockArgs),
    /// Promotion, gate and deploy metrics in the Prometheus text format.
    Metrics(crate::commands::promote::status::MetricsArgs),
    /// Check and export the promotion ledger.
    Ledger(crate::commands::promote::ledger::LedgerArgs),
    /// Roll an environment back to an earlier verified release (recovers an interrupted deploy).
    Rollback(crate::commands::deploy::RollbackArgs),
    /// Signed in-toto evidence for a build (`--export DIR`), or verify an export offline.
    Evidence(crate::commands::deploy::EvidenceArgs),
    /// Serve the job queue API on PostgreSQL (`migrate`, `token` manage it).
    Server(crate::commands::server::ServerArgs),
    /// Claim jobs from a `pipe server` and run them.
    Agent(crate::commands::agent::AgentArgs),
    /// Send a run to a `pipe server`.
    Submit(crate::commands::submit::SubmitArgs),
}

// `pipe prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove what running `pipe` processes use.
    #[arg(long)]
    pub all: bool,
}

// Which workflows, jobs and legs (`run`, `list` and `graph` share these; a plain comment:
// see `Command`).
#[derive(Debug, Args, Clone)]
pub struct SelectArgs {
    /// The workflow file to use (default: every workflow in `.github/workflows/` that the
    /// event triggers).
    #[arg(short = 'W', long = "workflow", value_name = "FILE")]
    pub workflow: Option<PathBuf>,
    /// The triggering event.
    #[arg(long, default_value = "push", value_name = "NAME")]
    pub event: String,
    /// A JSON file with the event payload (`github.event`).
    #[arg(long, value_name = "FILE")]
    pub eventpath: Option<PathBuf>,
    /// Run only this job (repeatable); the jobs it needs are included.
    #[arg(short = 'j', long = "job", value_name = "ID")]
    pub job: Vec<String>,
    /// With `-j`, do not include the jobs it needs.
    #[arg(long)]
    pub no_deps: bool,
    /// Run only the matrix legs where KEY has VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub matrix: Vec<String>,
    /// A `workflow_dispatch` input (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    pub input: Vec<String>,
    /// A configuration variable for the `vars` context (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub var: Vec<String>,
    /// A dotenv file of variables.
    #[arg(long = "var-file", value_name = "FILE")]
    pub var_file: Vec<PathBuf>,
    /// Offline action folder: `owner/repo[/path]@ref` actions and remote reusable workflows
    /// are read from `DIR/owner/repo@ref/` (default: `dir` under `[actions]` in
    /// `.pipe/config.toml`); pipe never downloads actions.
    #[arg(long, value_name = "DIR")]
    pub action_dir: Option<PathBuf>,
}

// `pipe run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Legs running at once (default: the number of cores).
    #[arg(short = 'p', long, value_name = "N")]
    pub parallel: Option<usize>,
    /// A secret: `NAME=VALUE`, or `NAME` to read it from the environment (repeatable).
    #[arg(short = 's', long = "secret", value_name = "NAME[=VALUE]")]
    pub secret: Vec<String>,
    /// A dotenv file of secrets.
    #[arg(long = "secret-file", value_name = "FILE")]
    pub secret_file: Vec<PathBuf>,
    /// Write the run summary (JSON, schema version 1) to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Stream versioned JSON events on stdout instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// Give each job a fresh copy of the committed tree instead of running in place.
    #[arg(long)]
    pub isolate: bool,
    /// Skip workflows whose branch, tag and path filters would not trigger on GitHub.
    #[arg(long)]
    pub respect_filters: bool,
    /// Run every job's steps on the host (no job containers; services still run in Docker).
    #[arg(long)]
    pub host: bool,
    /// Run steps with pipe's `cache:` without looking them up or storing them.
    #[arg(long)]
    pub no_cache: bool,
    /// Plan, evaluate and key every step and look cached steps up, but run nothing: the
    /// summary says which cached steps would hit.
    #[arg(long)]
    pub dry_run: bool,
    /// Remote cache URL (`http(s)://…` Bazel HTTP protocol, `s3://bucket/prefix`); overrides
    /// `[cache] remote` of `.pipe/config.toml`. A bearer token is read from `PIPE_CACHE_TOKEN`.
    #[arg(long, value_name = "URL")]
    pub cache_remote: Option<String>,
    /// Read from the remote cache but never write to it (untrusted branches).
    #[arg(long)]
    pub cache_read_only: bool,
    /// Run jobs whose `runs-on` has LABEL in IMAGE (repeatable; adds to `[runners.images]` in
    /// `.pipe/config.toml`).
    #[arg(short = 'P', long = "platform-map", value_name = "LABEL=IMAGE")]
    pub platform_map: Vec<String>,
    /// When to pull images: `missing`, `always` or `never`.
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: String,
    /// Platform of job containers that set none (`linux/arm64` runs under qemu).
    #[arg(long, value_name = "OS/ARCH")]
    pub container_platform: Option<String>,
    /// Live view on a terminal (`auto`) or plain prefixed lines.
    #[arg(long, value_enum, default_value_t = crate::reporter::ProgressMode::Auto)]
    pub progress: crate::reporter::ProgressMode,
    /// Results of jobs that ran elsewhere (JSON `{"job": {"result": "success", "outputs":
    /// {}}}`), for jobs left out with `-j JOB --no-deps`: `pipe agent` runs one job this way.
    #[arg(long, hide = true, value_name = "FILE")]
    pub needs_results: Option<PathBuf>,
}

// `pipe list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

// `pipe graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print Graphviz DOT.
    #[arg(long)]
    pub dot: bool,
}

// `pipe runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// How many runs to show.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

// `pipe why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// A job (display name or id), optionally `/STEP` (index, id or name).
    pub target: String,
    /// Look at this run (default: the newest run that has the job's cached steps).
    #[arg(long, value_name = "N")]
    pub run: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

// `pipe logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run number (default: the latest), `#N` accepted.
    pub run: Option<String>,
    /// A job (display name or id), optionally `/STEP` (index, id or name).
    pub job: Option<String>,
}

// `pipe artifacts`.
#[derive(Debug, Args)]
pub struct ArtifactsArgs {
    /// The run number (default: the latest), `#N` accepted.
    pub run: Option<String>,
    /// Print JSON (id, name, size, files, job, path of the files).
    #[arg(long)]
    pub json: bool,
    /// Write the files of the artifact with this name (every file verified) instead of listing.
    #[arg(long, value_name = "NAME")]
    pub extract: Option<String>,
    /// Where `--extract` writes the files (default: a folder named after the artifact).
    #[arg(long, value_name = "DIR", requires = "extract")]
    pub to: Option<std::path::PathBuf>,
}

/// Output format of diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// `FILE:LINE:COL: message [rule]` with the source line.
    #[default]
    Human,
    /// A JSON array of findings.
    Json,
    /// SARIF 2.1.0 (GitHub code scanning).
    Sarif,
}

// `pipe validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories to check (default: `.github/workflows/` and `pipelines/`).
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Also report pipe's extension keys, which GitHub rejects.
    #[arg(long)]
    pub strict_github: bool,
    /// Offline action folder whose actions are checked like local ones (default: `dir` under
    /// `[actions]` in `.pipe/config.toml`).
    #[arg(long, value_name = "DIR")]
    pub action_dir: Option<PathBuf>,
}

// `pipe cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

// The `pipe cache` subcommands (a plain comment: see `Command`).
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List entries, most recently used first.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Only this namespace (`step`, `actions`, …).
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
    },
    /// Show one entry: files, attachments, metadata size.
    Show {
        /// A key, a key prefix, or a prefix of the entry id.
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evict old and least recently used entries and unreferenced blobs.
    Gc {
        /// Size budget (default `PIPE_CACHE_MAX_SIZE` or 10G).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Age budget since last use (default `PIPE_CACHE_MAX_AGE` or 14d).
        #[arg(long, value_name = "AGE")]
        max_age: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every blob and check every entry (exit 3 on corruption).
    Verify {
        /// Remove corrupt files, broken entries and unfinished writes.
        #[arg(long)]
        repair: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove every entry, blob and stat cache.
    Clear,
    /// Debugging aid: print SHA-256 digests of files and trees as the step cache sees them.
    #[command(hide = true)]
    Hash {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Do not use or update the stat cache.
        #[arg(long)]
        no_stat_cache: bool,
        /// Do not use git's index.
        #[arg(long)]
        no_git: bool,
        /// Print only the tree digest, not one line per file.
        #[arg(long)]
        summary: bool,
    },
    /// Fault-test aid: write COUNT deterministic entries, or `--check` every one.
    #[command(hide = true)]
    Torture {
        /// Entries to write.
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Seed of the keys and contents.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Check instead of write: every hit must restore exactly the expected content.
        #[arg(long)]
        check: bool,
        /// Entry shape: `mixed`, `big` (adds a 1 MiB blob) or `step` (one tiny output and a log).
        #[arg(long, default_value = "mixed")]
        shape: String,
    },
}

/// Parses `pipe run …` with the `run` command alone, or gives `None` to leave the command line
/// to [`Cli`]'s full parser.
///
/// Building the full parser copies each of the 4 global options into all 30 commands before
/// it reads a word (clap's `_build_self`): 217,000 of the 2.1 million instructions of a
/// one-job run (callgrind). Here the globals go to `run` alone. Any error (`--help`,
/// `--version`, a misspelt option) also gives `None`: the full parser then says what it
/// always says, with the same exit code, so the two can differ only in speed
/// (`tests::the_run_parser_agrees_with_the_full_one`).
pub fn parse_run(args: &[std::ffi::OsString]) -> Option<Cli> {
    use clap::{ArgMatches, FromArgMatches};
    if args.get(1).is_none_or(|a| a != "run") {
        return None;
    }
    let run = RunArgs::augment_args(clap::Command::new("run"));
    let root = Globals::augment_args(clap::Command::new("pipe")).subcommand(run);
    let mut matches: ArgMatches = root.try_get_matches_from(args).ok()?;
    let globals = Globals::from_arg_matches_mut(&mut matches).ok()?;
    let (_, mut run) = matches.remove_subcommand()?;
    let run = RunArgs::from_arg_matches_mut(&mut run).ok()?;
    Some(Cli {
        globals,
        command: Command::Run(run),
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use clap::Parser;
    use proptest::prelude::*;

    use super::{Cli, Command, parse_run};

    fn both(words: &[&str]) -> (Option<Cli>, Result<Cli, clap::Error>) {
        let args: Vec<OsString> = std::iter::once("pipe")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect();
        (parse_run(&args), Cli::try_parse_from(&args))
    }

    #[test]
    fn the_run_parser_takes_run_and_its_globals() {
        let (fast, full) = both(&[
            "run",
            "-W",
            "ci.yml",
            "-q",
            "-p",
            "3",
            "--progress",
            "plain",
        ]);
        let fast = fast.expect("the run parser accepts a plain `run`");
        assert!(fast.globals.quiet);
        let Command::Run(a) = &fast.command else {
            panic!("not a run: {fast:?}");
        };
        assert_eq!(a.parallel, Some(3));
        assert_eq!(a.select.workflow.as_deref(), Some("ci.yml".as_ref()));
        assert_eq!(
            format!("{fast:?}"),
            format!("{:?}", full.expect("full parse"))
        );
    }

    #[test]
    fn the_run_parser_leaves_everything_else_to_the_full_one() {
        for words in [
            &["list"][..],
            &["-q", "run"],
            &["run", "--help"],
            &["run", "-h"],
            &["run", "--version"],
            &["run", "--no-such-option"],
            &["run", "-q", "-v"],
            &["run", "--color", "sometimes"],
            &["run", "-p", "many"],
        ] {
            let (fast, _) = both(words);
            assert!(fast.is_none(), "{words:?} went the fast way: {fast:?}");
        }
    }

    /// Options of `pipe run` with their values.
    const VALID: &[&[&str]] = &[
        &["-q"],
        &["-v"],
        &["-vv"],
        &["--verbose"],
        &["--color", "always"],
        &["--color=never"],
        &["--log-format", "json"],
        &["-W", "ci.yml"],
        &["--workflow=x.yml"],
        &["--event", "pull_request"],
        &["-j", "build"],
        &["--job=test"],
        &["-p", "2"],
        &["-p0"],
        &["-s", "TOKEN"],
        &["-s", "A=b"],
        &["--secret-file", "s.env"],
        &["--var", "X=1"],
        &["--var-file", "v.env"],
        &["--summary", "out.json"],
        &["--json"],
        &["--isolate"],
        &["--respect-filters"],
        &["--host"],
        &["--no-cache"],
        &["--dry-run"],
        &["--cache-remote", "s3://b/p"],
        &["--cache-read-only"],
        &["-P", "ubuntu-latest=img"],
        &["--pull", "never"],
        &["--container-platform", "linux/arm64"],
        &["--progress", "plain"],
        &["--needs-results", "n.json"],
        &["--matrix", "os:linux"],
        &["--action-dir", "actions"],
        &["--eventpath", "e.json"],
        &["--no-deps"],
        &["--input", "name=x"],
    ];

    /// Wrong: a value missing, a value not allowed, an unknown option, a stray word.
    const WRONG: &[&[&str]] = &[&["-W"], &["--progress", "fancy"], &["-x"], &["extra"]];

    #[test]
    fn the_run_parser_takes_every_option_of_run() {
        for option in VALID {
            let mut words = vec!["run"];
            words.extend(option.iter());
            let (fast, full) = both(&words);
            let fast = fast.unwrap_or_else(|| panic!("{words:?} went the slow way"));
            assert_eq!(
                format!("{fast:?}"),
                format!("{:?}", full.expect("full parse"))
            );
        }
        for option in WRONG {
            let mut words = vec!["run"];
            words.extend(option.iter());
            assert!(both(&words).0.is_none(), "{words:?} went the fast way");
        }
    }

    /// Mostly accepted command lines, some not.
    fn option() -> impl Strategy<Value = &'static [&'static str]> {
        prop::sample::select([VALID, VALID, VALID, WRONG].concat())
    }

    proptest! {
        /// Whatever the run parser accepts, the full parser reads the same way.
        #[test]
        fn the_run_parser_agrees_with_the_full_one(options in prop::collection::vec(option(), 0..6)) {
            let mut all = vec!["run"];
            all.extend(options.into_iter().flatten());
            let (fast, full) = both(&all);
            if let Some(fast) = fast {
                let full = full.map_err(|e| TestCaseError::fail(format!("{all:?}: {e}")))?;
                prop_assert_eq!(format!("{:?}", fast), format!("{:?}", full));
            }
        }
    }
}
