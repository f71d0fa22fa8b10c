//! Timing commands the way hyperfine does: one sample is one process, warm-up runs are
//! discarded, each command runs at least `min_runs` times and for at least `min_time`, the
//! commands of one benchmark take turns in a shuffled order each round (so drift and
//! neighbours' noise hit every command alike), and the shell's own start-up time is measured
//! and subtracted.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::compare::{self, Comparison, GateOptions, Pair};
use super::stats::{self, Interval, Outliers, Rng};

/// How commands are started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shell {
    /// Split the command into words and run it directly (hyperfine's `-N`).
    None,
    /// `SHELL -c COMMAND`.
    Program(String),
}

/// What `pipe bench` was asked to do.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The commands, each one shell command.
    pub commands: Vec<String>,
    /// Display names (`--command-name`), by position.
    pub names: Vec<String>,
    /// Warm-up runs per command, not measured.
    pub warmup: u32,
    /// An exact number of runs (overrides min/max and `min_time`).
    pub runs: Option<u32>,
    /// At least this many runs.
    pub min_runs: u32,
    /// At most this many runs.
    pub max_runs: Option<u32>,
    /// Keep running until each command has used this much time (hyperfine: 3 s).
    pub min_time: Duration,
    /// How to start commands.
    pub shell: Shell,
    /// Run before every timed run of every command (not timed).
    pub prepare: Option<String>,
    /// Record non-zero exits instead of failing.
    pub ignore_failure: bool,
    /// Shuffle the order of the commands in every round (default on).
    pub interleave: bool,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Seed of the interleaving shuffle and the bootstrap.
    pub seed: u64,
    /// The gate applied when several commands are compared with the first.
    pub gate: GateOptions,
    /// Rerun the commands that FAIL once and keep FAIL only if the rerun fails too.
    pub confirm: bool,
    /// What the gate and the history read.
    pub metric: Metric,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            commands: Vec::new(),
            names: Vec::new(),
            warmup: 0,
            runs: None,
            min_runs: 10,
            max_runs: None,
            min_time: Duration::from_secs(3),
            shell: Shell::Program("sh".to_string()),
            prepare: None,
            ignore_failure: false,
            interleave: true,
            cwd: None,
            seed: 0x5EED,
            gate: GateOptions::default(),
            confirm: true,
            metric: Metric::Wall,
        }
    }
}

/// What the caller sees while a benchmark runs (a progress bar, or nothing).
pub trait Progress {
    /// A phase starts: `label` with `total` steps.
    fn phase(&self, label: &str, total: u64);
    /// One more step done.
    fn tick(&self);
    /// The phase is over.
    fn done(&self);
}

/// No progress display.
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &str, _: u64) {}
    fn tick(&self) {}
    fn done(&self) {}
}

/// Errors that stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Nothing to time.
    #[error("no command to benchmark")]
    NoCommand,
    /// A command could not be split into words (`--shell=none`).
    #[error("cannot split `{0}` into words: unbalanced quote")]
    Split(String),
    /// A program could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command exited non-zero.
    #[error(
        "command `{command}` exited with code {code}; use `--ignore-failure` to time it anyway"
    )]
    Failed {
        /// The command.
        command: String,
        /// Its exit code (-1 when killed by a signal).
        code: i32,
    },
    /// Interrupted.
    #[error("interrupted")]
    Interrupted,
}

/// One command's results, hyperfine's fields first (seconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The command as given.
    pub command: String,
    /// Mean wall time.
    pub mean: f64,
    /// Sample standard deviation (null with one run).
    pub stddev: Option<f64>,
    /// Median.
    pub median: f64,
    /// Mean user CPU time.
    pub user: f64,
    /// Mean system CPU time.
    pub system: f64,
    /// Fastest run.
    pub min: f64,
    /// Slowest run.
    pub max: f64,
    /// Every timed run, in order.
    pub times: Vec<f64>,
    /// Exit code of every timed run.
    pub exit_codes: Vec<i32>,
    /// pipe: the display name (`--command-name`, else the command).
    pub name: String,
    /// pipe: median absolute deviation.
    pub mad: f64,
    /// pipe: 95 % percentile-bootstrap interval of the median.
    pub median_ci95: Option<Interval>,
    /// pipe: Tukey-fence outlier counts (outliers are kept).
    pub outliers: Outliers,
    /// pipe: warm-up runs done.
    pub warmup: u32,
    /// pipe: user + system CPU time of every timed run (shell's subtracted).
    #[serde(default)]
    pub cpu_times: Vec<f64>,
}

/// What the gate compares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Wall-clock time (hyperfine's `times`).
    #[default]
    Wall,
    /// User + system CPU time of the process: far less sensitive to other load on a shared
    /// machine, blind to time spent waiting (I/O, sleeps, other processes).
    Cpu,
}

impl Metric {
    /// The samples of a result this metric reads.
    pub fn of(self, r: &CommandResult) -> &[f64] {
        match self {
            Metric::Wall => &r.times,
            Metric::Cpu => &r.cpu_times,
        }
    }
}

/// Shell start-up time, subtracted from every sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShellSpawn {
    /// Mean wall time of `SHELL -c ''`.
    pub mean: f64,
    /// Its standard deviation.
    pub stddev: Option<f64>,
    /// Mean user time.
    pub user: f64,
    /// Mean system time.
    pub system: f64,
}

/// pipe's own part of the export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipeMeta {
    /// Export format version.
    pub version: u32,
    /// The machine the numbers come from.
    pub fingerprint: super::fingerprint::Fingerprint,
    /// The shell correction, when a shell was used.
    pub shell_spawn: Option<ShellSpawn>,
    /// Every command after the first compared with the first (interleaved samples).
    pub comparisons: Vec<Comparison>,
    /// The commands took turns.
    pub interleaved: bool,
    /// What the comparisons read.
    pub metric: Metric,
}

/// The export: hyperfine's `{"results": [...]}` plus `pipe`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// One entry per command.
    pub results: Vec<CommandResult>,
    /// pipe's additions.
    pub pipe: PipeMeta,
}

struct Sample {
    wall: f64,
    user: f64,
    system: f64,
    code: i32,
}

fn children_cpu() -> (f64, f64) {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| {
                tv.tv_sec() as f64 + f64::from(tv.tv_usec() as i32) / 1e6
            };
            (t(u.user_time()), t(u.system_time()))
        }
        Err(_) => (0.0, 0.0),
    }
}

/// Splits a command into words: whitespace outside quotes, `'…'` literal, `"…"` with `\`
/// escapes, `\` outside quotes.
pub fn split_words(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '\'' => {
                has = true;
                loop {
                    match it.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                has = true;
                loop {
                    match it.next()? {
                        '"' => break,
                        '\\' => cur.push(it.next()?),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                has = true;
                cur.push(it.next()?);
            }
            c if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                has = true;
                cur.push(c);
            }
        }
    }
    if has {
        out.push(cur);
    }
    Some(out)
}

struct Prepared {
    program: String,
    args: Vec<String>,
    display: String,
}

fn prepare(command: &str, shell: &Shell) -> Result<Prepared, BenchError> {
    match shell {
        Shell::None => {
            let words = split_words(command).ok_or_else(|| BenchError::Split(command.into()))?;
            let mut words = words.into_iter();
            let program = words.next().ok_or(BenchError::NoCommand)?;
            Ok(Prepared {
                program,
                args: words.collect(),
                display: command.to_string(),
            })
        }
        Shell::Program(sh) => Ok(Prepared {
            program: sh.clone(),
            args: vec!["-c".to_string(), command.to_string()],
            display: command.to_string(),
        }),
    }
}

fn time_once(p: &Prepared, cwd: Option<&PathBuf>) -> Result<Sample, BenchError> {
    let mut cmd = Command::new(&p.program);
    cmd.args(&p.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let (u0, s0) = children_cpu();
    let start = Instant::now();
    let status = cmd.status().map_err(|source| BenchError::Spawn {
        command: p.display.clone(),
        source,
    })?;
    let wall = start.elapsed().as_secs_f64();
    let (u1, s1) = children_cpu();
    let code = status.code().unwrap_or(-1);
    Ok(Sample {
        wall,
        user: u1 - u0,
        system: s1 - s0,
        code,
    })
}

fn check_exit(s: &Sample, p: &Prepared, ignore: bool) -> Result<(), BenchError> {
    if s.code != 0 && !ignore {
        return Err(BenchError::Failed {
            command: p.display.clone(),
            code: s.code,
        });
    }
    Ok(())
}

/// Runs the benchmark. `cancelled` is polled between runs.
pub fn run_bench(
    opts: &BenchOptions,
    progress: &dyn Progress,
    cancelled: &dyn Fn() -> bool,
) -> Result<BenchReport, BenchError> {
    if opts.commands.is_empty() {
        return Err(BenchError::NoCommand);
    }
    let cwd = opts.cwd.as_ref();
    let cmds: Vec<Prepared> = opts
        .commands
        .iter()
        .map(|c| prepare(c, &opts.shell))
        .collect::<Result<_, _>>()?;
    let prep = match &opts.prepare {
        Some(p) => Some(prepare(p, &opts.shell)?),
        None => None,
    };
    let run_prepare = || -> Result<(), BenchError> {
        if let Some(p) = &prep {
            let s = time_once(p, cwd)?;
            check_exit(&s, p, false)?;
        }
        Ok(())
    };

    // Shell start-up time: hyperfine's 50 runs of an empty command.
    let shell_spawn = match &opts.shell {
        Shell::None => None,
        Shell::Program(sh) => {
            let empty = Prepared {
                program: sh.clone(),
                args: vec!["-c".to_string(), String::new()],
                display: format!("{sh} -c ''"),
            };
            progress.phase("measuring shell spawning time", 50);
            let mut w = Vec::with_capacity(50);
            let (mut u, mut s) = (0.0, 0.0);
            for _ in 0..50 {
                if cancelled() {
                    return Err(BenchError::Interrupted);
                }
                let x = time_once(&empty, cwd)?;
                w.push(x.wall);
                u += x.user;
                s += x.system;
                progress.tick();
            }
            progress.done();
            let sd = stats::stddev(&w);
            Some(ShellSpawn {
                mean: stats::mean(&w),
                stddev: sd.is_finite().then_some(sd),
                user: u / 50.0,
                system: s / 50.0,
            })
        }
    };

    let mut rng = Rng::new(opts.seed);
    let order = |rng: &mut Rng, n: usize, interleave: bool| -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        if interleave {
            for i in (1..n).rev() {
                let j = rng.below(i + 1);
                v.swap(i, j);
            }
        }
        v
    };

    // Warm-up, interleaved like the timed runs.
    if opts.warmup > 0 {
        progress.phase("warming up", u64::from(opts.warmup) * cmds.len() as u64);
        for _ in 0..opts.warmup {
            for i in order(&mut rng, cmds.len(), opts.interleave) {
                if cancelled() {
                    return Err(BenchError::Interrupted);
                }
                run_prepare()?;
                let s = time_once(&cmds[i], cwd)?;
                check_exit(&s, &cmds[i], opts.ignore_failure)?;
                progress.tick();
            }
        }
        progress.done();
    }

    let mut samples: Vec<Vec<Sample>> = (0..cmds.len()).map(|_| Vec::new()).collect();
    // The first round also sizes the run count from each command's first time.
    let first: Vec<usize> = order(&mut rng, cmds.len(), opts.interleave);
    let mut targets = vec![0u64; cmds.len()];
    for &i in &first {
        if cancelled() {
            return Err(BenchError::Interrupted);
        }
        run_prepare()?;
        let s = time_once(&cmds[i], cwd)?;
        check_exit(&s, &cmds[i], opts.ignore_failure)?;
        targets[i] = match opts.runs {
            Some(n) => u64::from(n.max(1)),
            None => {
                let per = s.wall.max(1e-6);
                let by_time = (opts.min_time.as_secs_f64() / per).ceil() as u64;
                let mut n = by_time.max(u64::from(opts.min_runs.max(1)));
                if let Some(m) = opts.max_runs {
                    n = n.min(u64::from(m.max(1)));
                }
                n
            }
        };
        samples[i].push(s);
    }
    // Interleaved comparisons need the same count on each side.
    if opts.interleave && cmds.len() > 1 && opts.runs.is_none() {
        let mut n = targets.iter().copied().max().unwrap_or(1);
        if let Some(m) = opts.max_runs {
            n = n.min(u64::from(m.max(1)));
        }
        targets.iter_mut().for_each(|t| *t = n);
    }
    let total: u64 = targets.iter().sum();
    progress.phase("benchmarking", total);
    for _ in 0..cmds.len() {
        progress.tick();
    }
    loop {
        let mut any = false;
        for i in order(&mut rng, cmds.len(), opts.interleave) {
            if samples[i].len() as u64 >= targets[i] {
                continue;
            }
            any = true;
            if cancelled() {
                return Err(BenchError::Interrupted);
            }
            run_prepare()?;
            let s = time_once(&cmds[i], cwd)?;
            check_exit(&s, &cmds[i], opts.ignore_failure)?;
            samples[i].push(s);
            progress.tick();
        }
        if !any {
            break;
        }
    }
    progress.done();

    let results: Vec<CommandResult> = samples
        .iter()
        .enumerate()
        .map(|(i, ss)| {
            let (dw, du, ds) = shell_spawn.map_or((0.0, 0.0, 0.0), |s| (s.mean, s.user, s.system));
            let times: Vec<f64> = ss.iter().map(|s| (s.wall - dw).max(0.0)).collect();
            let user = stats::mean(
                &ss.iter()
                    .map(|s| (s.user - du).max(0.0))
                    .collect::<Vec<_>>(),
            );
            let system = stats::mean(
                &ss.iter()
                    .map(|s| (s.system - ds).max(0.0))
                    .collect::<Vec<_>>(),
            );
            let mut r = result_from_times(
                &opts.commands[i],
                opts.names.get(i).cloned(),
                times,
                ss.iter().map(|s| s.code).collect(),
                user,
                system,
                opts.warmup,
                opts.seed,
            );
            r.cpu_times = ss
                .iter()
                .map(|s| (s.user + s.system - du - ds).max(0.0))
                .collect();
            r
        })
        .collect();
    let comparisons = if results.len() > 1 {
        let pairs: Vec<Pair<'_>> = results[1..]
            .iter()
            .map(|r| Pair {
                name: &r.name,
                baseline: opts.metric.of(&results[0]),
                candidate: opts.metric.of(r),
            })
            .collect();
        compare::compare_all(&pairs, &opts.gate)
    } else {
        Vec::new()
    };
    let comparisons = confirm(opts, comparisons, progress, cancelled)?;
    Ok(BenchReport {
        results,
        pipe: PipeMeta {
            version: 1,
            fingerprint: super::fingerprint::Fingerprint::current(),
            shell_spawn,
            comparisons,
            interleaved: opts.interleave && cmds.len() > 1,
            metric: opts.metric,
        },
    })
}

/// On FAIL, the failing commands are measured once more against the first with fresh
/// samples (promotion.md §2.3 point 9): a FAIL stands only if the rerun fails too, which
/// squares the false-alarm rate. An unconfirmed one becomes INCONCLUSIVE.
fn confirm(
    opts: &BenchOptions,
    mut comparisons: Vec<Comparison>,
    progress: &dyn Progress,
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<Comparison>, BenchError> {
    if !opts.confirm {
        return Ok(comparisons);
    }
    let failing: Vec<usize> = comparisons
        .iter()
        .enumerate()
        .filter(|(_, c)| c.verdict == compare::Verdict::Fail)
        .map(|(i, _)| i + 1)
        .collect();
    if failing.is_empty() {
        return Ok(comparisons);
    }
    let mut again = opts.clone();
    again.confirm = false;
    again.warmup = 0;
    again.seed = opts.seed.wrapping_add(1);
    again.commands = std::iter::once(0)
        .chain(failing.iter().copied())
        .map(|i| opts.commands[i].clone())
        .collect();
    again.names = std::iter::once(0)
        .chain(failing.iter().copied())
        .map(|i| {
            opts.names
                .get(i)
                .cloned()
                .unwrap_or_else(|| opts.commands[i].clone())
        })
        .collect();
    let rerun = run_bench(&again, progress, cancelled)?;
    for (k, &i) in failing.iter().enumerate() {
        let Some(second) = rerun.pipe.comparisons.get(k) else {
            continue;
        };
        let c = &mut comparisons[i - 1];
        c.confirmed = Some(second.verdict == compare::Verdict::Fail);
        if second.verdict != compare::Verdict::Fail {
            c.verdict = compare::Verdict::Inconclusive;
            c.reason = format!("{}; not confirmed by a rerun ({})", c.reason, second.reason);
        }
    }
    Ok(comparisons)
}

/// Builds one result from its times (seconds).
#[allow(clippy::too_many_arguments)]
pub fn result_from_times(
    command: &str,
    name: Option<String>,
    times: Vec<f64>,
    exit_codes: Vec<i32>,
    user: f64,
    system: f64,
    warmup: u32,
    seed: u64,
) -> CommandResult {
    let s = stats::summarize(&times);
    CommandResult {
        command: command.to_string(),
        mean: s.as_ref().map_or(f64::NAN, |s| s.mean),
        stddev: s.as_ref().and_then(|s| s.stddev),
        median: s.as_ref().map_or(f64::NAN, |s| s.median),
        user,
        system,
        min: s.as_ref().map_or(f64::NAN, |s| s.min),
        max: s.as_ref().map_or(f64::NAN, |s| s.max),
        median_ci95: stats::bootstrap_ci(&times, stats::median_mut, 0.95, 10_000, seed),
        outliers: stats::outliers(&times),
        mad: s.as_ref().map_or(f64::NAN, |s| s.mad),
        times,
        exit_codes,
        name: name.unwrap_or_else(|| command.to_string()),
        warmup,
        cpu_times: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words_like_a_shell() {
        assert_eq!(
            split_words(r#"echo 'a b' "c \" d" e\ f  "#),
            Some(vec![
                "echo".to_string(),
                "a b".to_string(),
                "c \" d".to_string(),
                "e f".to_string()
            ])
        );
        assert_eq!(split_words("echo 'open"), None);
        assert_eq!(split_words("''"), Some(vec![String::new()]));
    }

    #[test]
    fn times_and_compares_commands() {
        let opts = BenchOptions {
            commands: vec!["true".into(), "sleep 0.1".into()],
            runs: Some(10),
            warmup: 1,
            shell: Shell::None,
            ..BenchOptions::default()
        };
        let r = run_bench(&opts, &NoProgress, &|| false).expect("bench");
        assert_eq!(r.results.len(), 2);
        assert_eq!(r.results[0].times.len(), 10);
        assert!(r.results[1].min >= 0.1, "{:?}", r.results[1]);
        assert!(r.results[0].exit_codes.iter().all(|c| *c == 0));
        assert_eq!(r.pipe.comparisons.len(), 1);
        assert_eq!(
            r.pipe.comparisons[0].verdict,
            compare::Verdict::Fail,
            "{:?}",
            r.pipe.comparisons[0]
        );
        assert_eq!(r.pipe.comparisons[0].confirmed, Some(true));
        assert!(r.pipe.shell_spawn.is_none());
    }

    #[test]
    fn cpu_metric_reads_cpu_times() {
        // The baseline does measurable work: `true` costs less CPU than the shell it runs
        // in, so its corrected CPU times are often 0, the median ratio is infinite and the
        // verdict inconclusive (seen under a loaded CI run).
        let opts = BenchOptions {
            commands: vec![
                "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done".into(),
                "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done".into(),
            ],
            runs: Some(12),
            metric: Metric::Cpu,
            ..BenchOptions::default()
        };
        let r = run_bench(&opts, &NoProgress, &|| false).expect("bench");
        assert_eq!(r.pipe.metric, Metric::Cpu);
        assert_eq!(r.results[1].cpu_times.len(), 12);
        assert!(
            stats::median(&r.results[1].cpu_times) > 0.005,
            "{:?}",
            r.results[1]
        );
        assert!(
            stats::median(&r.results[0].cpu_times) > 0.0,
            "{:?}",
            r.results[0]
        );
        assert_eq!(
            r.pipe.comparisons[0].verdict,
            compare::Verdict::Fail,
            "{:?}",
            r.pipe.comparisons[0]
        );
        let s = super::super::series_of(&r);
        assert_eq!(
            s[1].name,
            "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done (cpu)"
        );
        assert_eq!(s[1].samples, r.results[1].cpu_times);
    }

    #[test]
    fn failing_command_is_an_error_unless_ignored() {
        let mut opts = BenchOptions {
            commands: vec!["exit 3".into()],
            runs: Some(2),
            ..BenchOptions::default()
        };
        let e = run_bench(&opts, &NoProgress, &|| false).expect_err("fails");
        assert_eq!(
            e.to_string(),
            "command `exit 3` exited with code 3; use `--ignore-failure` to time it anyway"
        );
        opts.ignore_failure = true;
        let r = run_bench(&opts, &NoProgress, &|| false).expect("ignored");
        assert_eq!(r.results[0].exit_codes, vec![3, 3]);
        assert!(r.pipe.shell_spawn.is_some());
    }
}
