//! `pipe bench -- COMMAND…`, `pipe bench compare`, `pipe bench history NAME` and
//! `pipe bench ingest FILE…`: the command-line face of [`pipe_actions::bench`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pipe_actions::bench::{
    self, compare::GateOptions, compare::Verdict, fingerprint::Fingerprint, history::History,
    ingest, render, run,
};
use pipe_runner::{dirs, exit};

use crate::args::Cli;
use crate::output::{self, Styles};

// `pipe bench`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub run: RunBenchArgs,
}

// The gate's settings (shared by `pipe bench` and `pipe bench compare`; a plain comment:
// see `args::Command`).
#[derive(Debug, Args, Clone)]
pub struct GateArgs {
    /// The slowdown that counts as a regression, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 5.0)]
    pub threshold: f64,
    /// Family-wise significance level (Holm across benchmarks).
    #[arg(long, value_name = "ALPHA", default_value_t = 0.01)]
    pub alpha: f64,
    /// Fewer samples on either side give INCONCLUSIVE.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub min_samples: usize,
    /// Seed of the shuffles and bootstrap resamples.
    #[arg(long, value_name = "N", default_value_t = 0x5EED)]
    pub seed: u64,
}

impl GateArgs {
    fn options(&self) -> GateOptions {
        GateOptions {
            threshold: self.threshold / 100.0,
            alpha: self.alpha,
            min_samples: self.min_samples,
            seed: self.seed,
            ..GateOptions::default()
        }
    }
}

// `pipe bench [OPTIONS] -- COMMAND…` (hyperfine's flags where they overlap; a plain
// comment: see `args::Command`).
#[derive(Debug, Args)]
pub struct RunBenchArgs {
    /// Shell commands to time; several are compared with the first.
    #[arg(value_name = "COMMAND")]
    pub commands: Vec<String>,
    /// Runs of each command before timing starts.
    #[arg(short, long, value_name = "N", default_value_t = 0)]
    pub warmup: u32,
    /// Exactly this many runs of each command.
    #[arg(short, long, value_name = "N")]
    pub runs: Option<u32>,
    /// At least this many runs of each command.
    #[arg(short, long, value_name = "N", default_value_t = 10)]
    pub min_runs: u32,
    /// At most this many runs of each command.
    #[arg(short = 'M', long, value_name = "N")]
    pub max_runs: Option<u32>,
    /// Keep running each command for at least this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub min_time: f64,
    /// A command run before every timed run (not timed).
    #[arg(short, long, value_name = "CMD")]
    pub prepare: Option<String>,
    /// The shell that runs commands (`none`: run them directly).
    #[arg(short = 'S', long, value_name = "SHELL", default_value = "sh")]
    pub shell: String,
    /// Run commands without a shell (same as `--shell=none`).
    #[arg(short = 'N')]
    pub no_shell: bool,
    /// Time commands that exit non-zero instead of stopping.
    #[arg(short, long)]
    pub ignore_failure: bool,
    /// A display name for the command at the same position (repeatable).
    #[arg(short = 'n', long = "command-name", value_name = "NAME")]
    pub command_name: Vec<String>,
    /// Run the commands in blocks, one after the other, instead of taking turns.
    #[arg(long)]
    pub no_interleave: bool,
    /// Write the results as JSON (hyperfine's fields plus pipe's).
    #[arg(long, value_name = "FILE")]
    pub export_json: Option<PathBuf>,
    /// Write a markdown table (for `$GITHUB_STEP_SUMMARY`).
    #[arg(long, value_name = "FILE")]
    pub export_markdown: Option<PathBuf>,
    /// Print the JSON on stdout instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Do not record the results in the repository's benchmark history.
    #[arg(long)]
    pub no_record: bool,
    /// Exit 1 when a command is a regression against the first (FAIL).
    #[arg(long)]
    pub gate: bool,
    /// Keep a FAIL without measuring the failing commands a second time.
    #[arg(long)]
    pub no_confirm: bool,
    /// What the comparison and the history read: wall-clock time, or the process's user +
    /// system CPU time (steadier on a busy machine, blind to waiting).
    #[arg(long, value_enum, default_value_t = MetricArg::Wall)]
    pub metric: MetricArg,
    #[command(flatten)]
    pub gate_args: GateArgs,
}

/// `--metric`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricArg {
    /// Wall-clock time.
    Wall,
    /// User + system CPU time.
    Cpu,
}

// The `pipe bench` subcommands (a plain comment: see `args::Command`).
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Decide PASS, FAIL or INCONCLUSIVE per benchmark against a baseline.
    Compare(CompareArgs),
    /// Show a benchmark's trend (sparkline; `--svg` draws a chart).
    History(HistoryArgs),
    /// Record other tools' results (criterion, hyperfine, libtest, Google Benchmark,
    /// pytest-benchmark) in the history.
    Ingest(IngestArgs),
}

/// `pipe bench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Candidate result files (default: what the history holds for HEAD).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The baseline: a result file, a commit or a branch (default: the newest other commit).
    #[arg(long, value_name = "REF")]
    pub baseline: Option<String>,
    /// The format of the files (default: guessed).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Exit 1 on INCONCLUSIVE too.
    #[arg(long)]
    pub fail_on_inconclusive: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the verdict table as markdown.
    #[arg(long, value_name = "FILE")]
    pub export_markdown: Option<PathBuf>,
    #[command(flatten)]
    pub gate_args: GateArgs,
}

/// `pipe bench history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The benchmark (omit to list every name).
    pub name: Option<String>,
    /// Include results from other machines.
    #[arg(long)]
    pub all_machines: bool,
    /// Draw the trend as an SVG chart.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Draw the trend as a PNG chart.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pipe bench ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Result files or criterion folders.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The format (default: guessed): hyperfine, criterion, libtest, google-benchmark,
    /// pytest-benchmark.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

/// Runs `pipe bench` and returns the exit code.
pub fn run(cli: &Cli, args: &BenchArgs) -> u8 {
    match &args.command {
        Some(BenchCommand::Compare(a)) => compare(cli, a),
        Some(BenchCommand::History(a)) => history(cli, a),
        Some(BenchCommand::Ingest(a)) => ingest_cmd(cli, a),
        None => time(cli, &args.run),
    }
}

struct Bar(Option<ProgressBar>);

impl run::Progress for Bar {
    fn phase(&self, label: &str, total: u64) {
        if let Some(b) = &self.0 {
            b.reset();
            b.set_length(total);
            b.set_position(0);
            b.set_message(label.to_string());
        }
    }
    fn tick(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }
    fn done(&self) {
        if let Some(b) = &self.0 {
            b.set_position(b.length().unwrap_or(0));
        }
    }
}

fn write_out(text: &str) -> u8 {
    match output::stdout_write(text.as_bytes()) {
        Ok(()) => exit::SUCCESS,
        Err(_) => exit::SUCCESS,
    }
}

fn state_dir(cli: &Cli) -> Result<PathBuf, u8> {
    let p = super::project(cli)?;
    let root = dirs::state_root(&dirs::process_env).map_err(|e| {
        super::error(cli, &e.to_string(), None);
        exit::INFRA
    })?;
    let canonical = p.root.canonicalize().unwrap_or_else(|_| p.root.clone());
    Ok(dirs::repo_state_dir(&root, &canonical))
}

fn open_history(cli: &Cli) -> Result<History, u8> {
    let dir = state_dir(cli)?;
    History::open(&bench::history::path_in(&dir)).map_err(|e| {
        super::error(cli, &e.to_string(), None);
        exit::INFRA
    })
}

fn provenance(cli: &Cli) -> Result<bench::history::Provenance, u8> {
    let p = super::project(cli)?;
    Ok(bench::provenance(&p.root, &dirs::process_env))
}

struct Colors(Styles);

impl render::Paint for Colors {
    fn verdict(&self, v: Verdict, text: &str) -> String {
        let st = match v {
            Verdict::Pass => self.0.success,
            Verdict::Fail => self.0.error,
            Verdict::Inconclusive => self.0.warning,
        };
        self.0.paint(st, text)
    }
    fn bold(&self, text: &str) -> String {
        self.0.paint(self.0.bold, text)
    }
}

fn out_styles(cli: &Cli) -> Styles {
    Styles::new(output::use_color(
        cli.globals.color,
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
    ))
}

fn write_file(cli: &Cli, path: &Path, text: &str) -> Result<(), u8> {
    std::fs::write(path, text).map_err(|e| {
        super::error(
            cli,
            &format!(
                "cannot write `{}`: {}",
                path.display(),
                super::io_reason(&e)
            ),
            None,
        );
        exit::USAGE
    })
}

fn time(cli: &Cli, a: &RunBenchArgs) -> u8 {
    if a.commands.is_empty() {
        super::error(
            cli,
            "no command to benchmark",
            Some("give commands after `--`: `pipe bench -- 'sleep 0.1'`"),
        );
        return exit::USAGE;
    }
    if !(a.min_time >= 0.0 && a.min_time.is_finite()) {
        super::error(cli, "`--min-time` must be a number of seconds", None);
        return exit::USAGE;
    }
    let shell = if a.no_shell || a.shell == "none" {
        run::Shell::None
    } else {
        run::Shell::Program(a.shell.clone())
    };
    let opts = run::BenchOptions {
        commands: a.commands.clone(),
        names: a.command_name.clone(),
        warmup: a.warmup,
        runs: a.runs,
        min_runs: a.min_runs,
        max_runs: a.max_runs,
        min_time: Duration::from_secs_f64(a.min_time),
        shell,
        prepare: a.prepare.clone(),
        ignore_failure: a.ignore_failure,
        interleave: !a.no_interleave,
        cwd: None,
        seed: a.gate_args.seed,
        gate: a.gate_args.options(),
        confirm: !a.no_confirm,
        metric: match a.metric {
            MetricArg::Wall => run::Metric::Wall,
            MetricArg::Cpu => run::Metric::Cpu,
        },
    };
    let show_bar = !cli.globals.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = Bar(show_bar.then(|| {
        let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{msg:30} {wide_bar} {pos}/{len} ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        b.set_style(style);
        b
    }));
    let result = run::run_bench(&opts, &bar, &|| false);
    if let Some(b) = &bar.0 {
        b.finish_and_clear();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            super::error(cli, &e.to_string(), None);
            return match e {
                run::BenchError::NoCommand | run::BenchError::Split(_) => exit::USAGE,
                run::BenchError::Interrupted => 130,
                _ => exit::FAILURE,
            };
        }
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
    if let Some(p) = &a.export_json
        && let Err(c) = write_file(cli, p, &json)
    {
        return c;
    }
    if let Some(p) = &a.export_markdown
        && let Err(c) = write_file(cli, p, &render::markdown(&report))
    {
        return c;
    }
    if !a.no_record {
        record(cli, &bench::series_of(&report), &report.pipe.fingerprint);
    }
    let text = if a.json {
        json
    } else {
        render::text(&report, &Colors(out_styles(cli)))
    };
    write_out(&text);
    if a.gate
        && report
            .pipe
            .comparisons
            .iter()
            .any(|c| c.verdict == Verdict::Fail)
    {
        return exit::FAILURE;
    }
    exit::SUCCESS
}

/// Records results; a failure is a warning, never a failed benchmark.
fn record(cli: &Cli, series: &[ingest::BenchSeries], fp: &Fingerprint) {
    let prov = match provenance(cli) {
        Ok(p) => p,
        Err(_) => return,
    };
    let res = open_history(cli).and_then(|mut h| {
        h.record(series, fp, &prov).map_err(|e| {
            super::warn(cli, &e.to_string());
            exit::INFRA
        })
    });
    if res.is_ok() {
        tracing::info!(
            "recorded {} results for commit {}",
            series.len(),
            prov.commit
        );
    }
}

fn read_files(
    cli: &Cli,
    files: &[PathBuf],
    format: Option<&str>,
) -> Result<Vec<ingest::BenchSeries>, u8> {
    let format = match format {
        Some(f) => Some(ingest::Format::parse(f).ok_or_else(|| {
            super::error(
                cli,
                &format!("unknown format `{f}`"),
                Some("use hyperfine, criterion, libtest, google-benchmark or pytest-benchmark"),
            );
            exit::USAGE
        })?),
        None => None,
    };
    let mut out = Vec::new();
    for f in files {
        match ingest::read_path(f, format) {
            Ok(s) => out.extend(s),
            Err(e) => {
                super::error(cli, &e.to_string(), None);
                return Err(exit::USAGE);
            }
        }
    }
    Ok(out)
}

fn ingest_cmd(cli: &Cli, a: &IngestArgs) -> u8 {
    let series = match read_files(cli, &a.files, a.format.as_deref()) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let prov = match provenance(cli) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let mut h = match open_history(cli) {
        Ok(h) => h,
        Err(c) => return c,
    };
    let fp = Fingerprint::current();
    if let Err(e) = h.record(&series, &fp, &prov) {
        super::error(cli, &e.to_string(), None);
        return exit::INFRA;
    }
    let mut text = String::new();
    for s in &series {
        text.push_str(&format!(
            "{}\t{}\t{} samples\t{}\n",
            s.name,
            render::format_time(bench::stats::median(&s.samples)),
            s.samples.len(),
            s.source
        ));
    }
    write_out(&text)
}

fn compare(cli: &Cli, a: &CompareArgs) -> u8 {
    let opts = a.gate_args.options();
    let fp = Fingerprint::current();
    let prov = match provenance(cli) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let hist = match open_history(cli) {
        Ok(h) => h,
        Err(c) => return c,
    };
    let candidate: Vec<ingest::BenchSeries> = if a.files.is_empty() {
        match hist.latest_for_commit(&prov.commit) {
            Ok(r) if !r.is_empty() => r
                .into_iter()
                .map(|r| ingest::BenchSeries {
                    name: r.name,
                    samples: r.samples,
                    source: r.source,
                    aggregate: false,
                })
                .collect(),
            Ok(_) => {
                super::error(
                    cli,
                    &format!(
                        "no benchmark results recorded for commit `{}`",
                        short(&prov.commit)
                    ),
                    Some(
                        "run `pipe bench` or `pipe bench ingest FILE` first, or give result files",
                    ),
                );
                return exit::USAGE;
            }
            Err(e) => {
                super::error(cli, &e.to_string(), None);
                return exit::INFRA;
            }
        }
    } else {
        match read_files(cli, &a.files, a.format.as_deref()) {
            Ok(s) => s,
            Err(c) => return c,
        }
    };
    // The baseline: a file, else a commit or branch in the history.
    let baseline = match &a.baseline {
        Some(b) if Path::new(b).exists() => {
            match read_files(cli, &[PathBuf::from(b)], a.format.as_deref()) {
                Ok(s) => s
                    .into_iter()
                    .map(|s| bench::history::Record {
                        id: 0,
                        median: bench::stats::median(&s.samples),
                        name: s.name,
                        commit: b.clone(),
                        branch: String::new(),
                        fingerprint: fp.id.clone(),
                        recorded_at: 0,
                        source: s.source,
                        run: None,
                        samples: s.samples,
                    })
                    .collect(),
                Err(c) => return c,
            }
        }
        reference => match hist.latest_for_ref(reference.as_deref(), Some(&prov.commit)) {
            Ok(r) => r,
            Err(e) => {
                super::error(cli, &e.to_string(), None);
                return exit::INFRA;
            }
        },
    };
    if baseline.is_empty() {
        super::error(
            cli,
            &match &a.baseline {
                Some(b) => format!("no baseline results for `{b}`"),
                None => "no baseline results in the history".to_string(),
            },
            Some(
                "record a baseline with `pipe bench` on the base commit, or pass `--baseline FILE`",
            ),
        );
        return exit::USAGE;
    }
    let report = bench::compare_with_baseline(&candidate, &fp.id, &baseline, &opts);
    if let Some(p) = &a.export_markdown {
        let base = if report.baseline_commit.is_empty() {
            "baseline".to_string()
        } else {
            short(&report.baseline_commit).to_string()
        };
        if let Err(c) = write_file(
            cli,
            p,
            &render::comparisons_markdown(&report.comparisons, &base),
        ) {
            return c;
        }
    }
    let text = if a.json {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        let c = Colors(out_styles(cli));
        let mut t = format!(
            "baseline {}{}\n",
            short(&report.baseline_commit),
            if report.baseline_branch.is_empty() {
                String::new()
            } else {
                format!(" ({})", report.baseline_branch)
            }
        );
        for x in &report.comparisons {
            t.push_str(&format!(
                "{:<13} {}  {}\n",
                render::Paint::verdict(&c, x.verdict, x.verdict.as_str()),
                x.name,
                x.reason
            ));
        }
        for n in &report.new {
            t.push_str(&format!("{:<13} {n}  no baseline\n", "NEW"));
        }
        t.push_str(&format!(
            "{}\n",
            render::Paint::verdict(&c, report.verdict, report.verdict.as_str())
        ));
        t
    };
    write_out(&text);
    match report.verdict {
        Verdict::Fail => exit::FAILURE,
        Verdict::Inconclusive if a.fail_on_inconclusive => exit::FAILURE,
        _ => exit::SUCCESS,
    }
}

fn short(sha: &str) -> &str {
    if sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        &sha[..12]
    } else {
        sha
    }
}

fn history(cli: &Cli, a: &HistoryArgs) -> u8 {
    let hist = match open_history(cli) {
        Ok(h) => h,
        Err(c) => return c,
    };
    let Some(name) = &a.name else {
        return match hist.names() {
            Ok(n) => write_out(&n.iter().map(|n| format!("{n}\n")).collect::<String>()),
            Err(e) => {
                super::error(cli, &e.to_string(), None);
                exit::INFRA
            }
        };
    };
    let fp = Fingerprint::current();
    let records = match hist.series(name, (!a.all_machines).then_some(fp.id.as_str())) {
        Ok(r) => r,
        Err(e) => {
            super::error(cli, &e.to_string(), None);
            return exit::INFRA;
        }
    };
    if records.is_empty() {
        super::error(
            cli,
            &format!("no results for `{name}` on this machine"),
            Some("`pipe bench history` lists the names; `--all-machines` includes other machines"),
        );
        return exit::USAGE;
    }
    for (path, png) in [(&a.svg, false), (&a.png, true)] {
        if let Some(p) = path
            && let Err(e) = bench::chart::draw(name, &records, p, png)
        {
            super::error(cli, &format!("cannot draw `{}`: {e}", p.display()), None);
            return exit::INFRA;
        }
    }
    if a.json {
        return write_out(&(serde_json::to_string_pretty(&records).unwrap_or_default() + "\n"));
    }
    let medians: Vec<f64> = records.iter().map(|r| r.median).collect();
    let mut t = format!(
        "{name}  {}  {} … {}  ({} results)\n",
        render::sparkline(&medians),
        render::format_time(medians.iter().copied().fold(f64::INFINITY, f64::min)),
        render::format_time(medians.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        records.len()
    );
    for r in &records {
        t.push_str(&format!(
            "  {}  {:<12} {:<16} {:>10}  n={}\n",
            pipe_actions::scan::time::format_rfc3339(r.recorded_at),
            short(&r.commit).get(..12).unwrap_or(short(&r.commit)),
            r.branch,
            render::format_time(r.median),
            r.samples.len()
        ));
    }
    write_out(&t)
}
