//! The conformance suite: every workflow under `tests/conformance/<area>/<case>.yml` runs end to
//! end through the real `pipe` binary, and its run summary must equal `<case>.expected.json`
//! exactly (after normalising the volatile fields: durations, the run number, temp paths, the
//! workspace and the commit sha).
//!
//! Files beside a case (all optional):
//! - `<case>.args`: extra arguments for `pipe run`, one per line (`-s`, `--input`, `-j`…);
//!   `{actions}` stands for the offline action folder `tests/actions` (`--action-dir {actions}`);
//! - `<case>.exit`: the expected exit code, when it is not 0 for a successful run and 1
//!   otherwise; with 2 (invalid workflow) no summary may be written and no expected file exists;
//! - `<case>.stderr-contains`, `<case>.stdout-contains`, `<case>.logs-contains`: lines that must
//!   occur in stderr, stdout, or the output of `pipe logs` for the run;
//! - `<case>.stderr-lacks`, `<case>.stdout-lacks`, `<case>.logs-lacks`: lines that must not occur
//!   (a secret that masking must hide);
//! - `<case>.files/`: files copied into the repository root before the run;
//! - `<case>.known-bug`: a divergence from GitHub that lives outside the runner (named in the
//!   file); the case must fail until it is fixed, and its passing is reported so the file goes;
//! - `<case>.requires`: programs the case needs on PATH (the case is skipped without them,
//!   except under `CI=true`, where a missing program fails it).
//!
//! Every case runs in a fresh git repository (one commit with fixed dates, `origin` pointing at
//! `conformance/suite`) with its own state directory and `TMPDIR`, so cases never touch the
//! user's home and can run in parallel. `PIPE_CONFORMANCE_BLESS=1` writes the actual summaries
//! as expected files (each must then be checked by hand against GitHub's documented behaviour);
//! `PIPE_CONFORMANCE_FILTER=text` runs only the cases whose `area/case` contains `text`.
//!
//! The interrupt tests at the end send SIGINT and SIGTERM at random moments to runs of workflows
//! with running steps (background children, `setsid` daemons, steps ignoring SIGTERM) and check
//! the exit code and that no process of the run is left behind.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

const PIPE: &str = env!("CARGO_BIN_EXE_pipe");
/// A case that runs longer than this is a failure (and is killed).
const CASE_TIMEOUT: Duration = Duration::from_secs(90);

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// The offline action folder the cases share (`{actions}` in `.args` and in output).
fn action_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/actions")
}

#[derive(Debug, Clone)]
struct Case {
    /// `area/case`.
    name: String,
    /// The workflow file.
    yml: PathBuf,
}

impl Case {
    fn side(&self, ext: &str) -> PathBuf {
        let stem = self.yml.with_extension("");
        PathBuf::from(format!("{}.{ext}", stem.display()))
    }

    fn read_side(&self, ext: &str) -> Option<String> {
        std::fs::read_to_string(self.side(ext)).ok()
    }

    fn lines(&self, ext: &str) -> Vec<String> {
        self.read_side(ext)
            .map(|t| {
                t.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn all_cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut areas: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .expect("tests/conformance exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    areas.sort();
    for area in areas {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&area)
            .expect("area dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        files.sort();
        for yml in files {
            let name = format!(
                "{}/{}",
                area.file_name().expect("name").to_string_lossy(),
                yml.file_stem().expect("stem").to_string_lossy()
            );
            out.push(Case { name, yml });
        }
    }
    out
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "conformance")
        .env("GIT_AUTHOR_EMAIL", "conformance@example.com")
        .env("GIT_COMMITTER_NAME", "conformance")
        .env("GIT_COMMITTER_EMAIL", "conformance@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs (install git)");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A repository template (one commit), copied for every case.
struct Template {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    sha: String,
}

fn template() -> Template {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "conformance"]);
    git(
        &repo,
        &[
            "remote",
            "add",
            "origin",
            "https://github.com/conformance/suite.git",
        ],
    );
    std::fs::write(repo.join("README.md"), "conformance fixture\n").expect("write");
    std::fs::create_dir_all(repo.join("src")).expect("mkdir");
    std::fs::write(repo.join("src/a.txt"), "a\n").expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "fixture"]);
    let sha = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&repo)
            .output()
            .expect("git")
            .stdout,
    )
    .expect("utf8")
    .trim()
    .to_owned();
    Template {
        _dir: dir,
        repo,
        sha,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

/// Output of one `pipe` invocation.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

/// Environment of a `pipe` process: hermetic (no outer `GITHUB_*`/`RUNNER_*`), with state and
/// temp files inside `tmp`.
fn pipe_command(tmp: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(PIPE);
    cmd.current_dir(cwd).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("GITHUB_")
            || k.starts_with("RUNNER_")
            || k.starts_with("ACTIONS_")
            || k.starts_with("PIPE_")
            || k == "NO_COLOR"
        {
            cmd.env_remove(&k);
        }
    }
    let tmpdir = tmp.join("tmp");
    std::fs::create_dir_all(&tmpdir).expect("mkdir");
    cmd.env("PIPE_STATE_DIR", tmp.join("state"))
        .env("PIPE_CACHE_DIR", tmp.join("cache"))
        .env("XDG_STATE_HOME", tmp.join("xdg-state"))
        .env("XDG_CACHE_HOME", tmp.join("xdg-cache"))
        .env("TMPDIR", &tmpdir)
        .env("USER", "conformance")
        .env("TZ", "UTC")
        .env("LC_ALL", "C");
    cmd
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Ran {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pipe starts");
    let pid = child.id();
    let done = Arc::new(Mutex::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < timeout {
                std::thread::sleep(Duration::from_millis(50));
                if *done.lock().expect("lock") {
                    return false;
                }
            }
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            true
        })
    };
    let out = child.wait_with_output().expect("wait");
    *done.lock().expect("lock") = true;
    let timed_out = watchdog.join().unwrap_or(false);
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        timed_out,
    }
}

/// Replaces `pipe-<digits>-` (the run's scratch folder) with `pipe-PID-`.
fn normalise_pid(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("pipe-") {
        out.push_str(&rest[..i + 5]);
        rest = &rest[i + 5..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with('-') {
            out.push_str("PID");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

struct Norm {
    replacements: Vec<(String, String)>,
}

impl Norm {
    fn string(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for (from, to) in &self.replacements {
            if !from.is_empty() {
                s = s.replace(from.as_str(), to);
            }
        }
        normalise_pid(&s)
    }

    fn value(&self, v: &mut Value) {
        match v {
            Value::Object(o) => {
                for (k, v) in o.iter_mut() {
                    if k == "duration_ms" {
                        *v = Value::from(0);
                    } else {
                        self.value(v);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| self.value(v)),
            Value::String(s) => *s = self.string(s),
            _ => {}
        }
    }
}

/// A line diff of two texts (LCS; the texts are small).
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    let mut lines: Vec<(char, &str)> = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            lines.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            lines.push(('+', b[j]));
            j += 1;
        } else {
            lines.push(('-', a[i]));
            i += 1;
        }
    }
    // Show changed lines with two lines of context.
    let changed: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| *c != ' ')
        .map(|(k, _)| k)
        .collect();
    let mut last_shown: Option<usize> = None;
    for (k, (c, l)) in lines.iter().enumerate() {
        let near = changed.iter().any(|&x| x.abs_diff(k) <= 2);
        if near {
            if last_shown.is_some_and(|s| s + 1 < k) {
                out.push_str("   ...\n");
            }
            out.push_str(&format!(" {c} {l}\n"));
            last_shown = Some(k);
        }
    }
    out
}

fn has_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

enum CaseResult {
    Pass,
    Skip(String),
    Fail(String),
    Known(String),
}

fn run_case(case: &Case, tpl: &Template, bless: bool) -> CaseResult {
    run_case_with(case, tpl, bless, &[])
}

fn run_case_with(case: &Case, tpl: &Template, bless: bool, extra: &[String]) -> CaseResult {
    for prog in case.lines("requires") {
        if !has_program(prog.trim()) {
            let msg = format!("needs `{}` on PATH", prog.trim());
            return if ci() {
                CaseResult::Fail(msg)
            } else {
                CaseResult::Skip(msg)
            };
        }
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    copy_dir(&tpl.repo, &repo);
    let wf_dir = repo.join(".github/workflows");
    std::fs::create_dir_all(&wf_dir).expect("mkdir");
    let file_name = case.yml.file_name().expect("name");
    std::fs::copy(&case.yml, wf_dir.join(file_name)).expect("copy case");
    let fixtures = case.side("files");
    if fixtures.is_dir() {
        copy_dir(&fixtures, &repo);
    }
    let rel = format!(".github/workflows/{}", file_name.to_string_lossy());
    let summary = tmp.path().join("summary.json");

    let mut cmd = pipe_command(tmp.path(), &repo);
    cmd.args(["run", "-W", &rel, "--summary"])
        .arg(&summary)
        .args(["--progress", "plain"]);
    let actions = action_folder();
    for a in case.lines("args") {
        cmd.arg(a.trim().replace("{actions}", &actions.to_string_lossy()));
    }
    cmd.args(extra);
    let ran = run_with_timeout(cmd, CASE_TIMEOUT);
    let mut problems: Vec<String> = Vec::new();
    if ran.timed_out {
        problems.push(format!("timed out after {}s", CASE_TIMEOUT.as_secs()));
    }

    let norm = Norm {
        replacements: vec![
            (
                repo.canonicalize()
                    .unwrap_or(repo.clone())
                    .to_string_lossy()
                    .into_owned(),
                "{workspace}".to_owned(),
            ),
            (
                repo.to_string_lossy().into_owned(),
                "{workspace}".to_owned(),
            ),
            (
                tmp.path().join("tmp").to_string_lossy().into_owned(),
                "{tmp}".to_owned(),
            ),
            (tpl.sha.clone(), "{sha}".to_owned()),
            (
                action_folder().to_string_lossy().into_owned(),
                "{actions}".to_owned(),
            ),
        ],
    };
    let expected_exit: Option<i32> = case
        .read_side("exit")
        .map(|t| t.trim().parse().expect("a number in .exit"));
    let expected_path = case.side("expected.json");

    let actual: Option<Value> = std::fs::read_to_string(&summary).ok().map(|t| {
        let mut v: Value = serde_json::from_str(&t).expect("the summary is JSON");
        if let Some(o) = v.as_object_mut() {
            o.insert("run".into(), Value::from(0));
        }
        norm.value(&mut v);
        v
    });

    if expected_exit == Some(2) {
        if actual.is_some() {
            problems.push("exit 2 expected, but a summary was written (something ran)".into());
        }
    } else {
        match &actual {
            None => problems.push(format!("no summary was written\nstderr:\n{}", ran.stderr)),
            Some(actual) => {
                let actual_text = serde_json::to_string_pretty(actual).expect("json") + "\n";
                if bless {
                    std::fs::write(&expected_path, &actual_text).expect("bless");
                } else {
                    match std::fs::read_to_string(&expected_path) {
                        Err(_) => problems.push(format!(
                            "missing {}; the actual summary is:\n{actual_text}",
                            expected_path.display()
                        )),
                        Ok(exp) => {
                            let exp_v: Value =
                                serde_json::from_str(&exp).expect("expected file is JSON");
                            if exp_v != *actual {
                                let exp_text =
                                    serde_json::to_string_pretty(&exp_v).expect("json") + "\n";
                                problems.push(format!(
                                    "summary differs (- expected, + actual):\n{}",
                                    diff(&exp_text, &actual_text)
                                ));
                            }
                        }
                    }
                }
            }
        }
    }

    let want_code = expected_exit.unwrap_or_else(|| {
        match actual
            .as_ref()
            .and_then(|a| a.get("conclusion"))
            .and_then(Value::as_str)
        {
            Some("success") => 0,
            _ => 1,
        }
    });
    if ran.code != Some(want_code) && !ran.timed_out {
        problems.push(format!("exit code {:?}, expected {want_code}", ran.code));
    }

    let stdout = norm.string(&ran.stdout);
    let stderr = norm.string(&ran.stderr);
    let mut check = |what: &str, text: &str, contains: Vec<String>, lacks: Vec<String>| {
        for l in contains {
            if !text.contains(l.as_str()) {
                problems.push(format!("{what} lacks `{l}`"));
            }
        }
        for l in lacks {
            if text.contains(l.as_str()) {
                problems.push(format!("{what} contains `{l}`"));
            }
        }
    };
    check(
        "stdout",
        &stdout,
        case.lines("stdout-contains"),
        case.lines("stdout-lacks"),
    );
    check(
        "stderr",
        &stderr,
        case.lines("stderr-contains"),
        case.lines("stderr-lacks"),
    );
    let logs_contains = case.lines("logs-contains");
    let logs_lacks = case.lines("logs-lacks");
    if !logs_contains.is_empty() || !logs_lacks.is_empty() {
        let mut cmd = pipe_command(tmp.path(), &repo);
        cmd.arg("logs");
        let logs = run_with_timeout(cmd, Duration::from_secs(30));
        let text = norm.string(&logs.stdout);
        check("`pipe logs`", &text, logs_contains, logs_lacks);
    }

    if let Some(known) = case.read_side("known-bug") {
        return if problems.is_empty() {
            CaseResult::Fail(format!(
                "passes now: remove {} ({})",
                case.side("known-bug").display(),
                known.trim()
            ))
        } else {
            CaseResult::Known(known.trim().to_owned())
        };
    }
    if problems.is_empty() {
        CaseResult::Pass
    } else {
        let mut msg = problems.join("\n");
        if !msg.contains("stderr:") {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            msg.push_str(&format!("\nstderr (last lines):\n{}", tail.join("\n")));
        }
        CaseResult::Fail(msg)
    }
}

/// Runs `cases` on 4 threads; returns the results sorted by name.
fn run_all(cases: &[Case], bless: bool, extra: &[String]) -> Vec<(String, CaseResult)> {
    let tpl = Arc::new(template());
    let queue = Arc::new(Mutex::new(cases.iter().cloned().collect::<VecDeque<_>>()));
    let results = Arc::new(Mutex::new(Vec::<(String, CaseResult)>::new()));
    let extra: Arc<Vec<String>> = Arc::new(extra.to_vec());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            let results = results.clone();
            let tpl = tpl.clone();
            let extra = extra.clone();
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().expect("lock").pop_front();
                    let Some(case) = next else { break };
                    let r = run_case_with(&case, &tpl, bless, &extra);
                    results.lock().expect("lock").push((case.name.clone(), r));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    let mut results = std::mem::take(&mut *results.lock().expect("lock"));
    results.sort_by(|a, b| a.0.cmp(&b.0));
    results
}

/// Cases that cannot give the host's summary inside the test image, and why.
const NOT_IN_CONTAINERS: &[(&str, &str)] = &[];

/// The suite with every job mapped into a container image that has `bash` and busybox
/// (`-P LABEL=IMAGE` for the labels the cases use): the summaries must equal the host's.
/// Cases that need programs the image lacks (`.requires`) are left out.
/// `PIPE_CONFORMANCE_FILTER` applies here too.
#[test]
fn conformance_suite_in_containers() {
    if !crate::docker::docker_available() {
        return;
    }
    crate::docker::ensure_images();
    let filter = std::env::var("PIPE_CONFORMANCE_FILTER").ok();
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|c| filter.as_ref().is_none_or(|f| c.name.contains(f.as_str())))
        .filter(|c| c.lines("requires").is_empty())
        .filter(|c| !NOT_IN_CONTAINERS.iter().any(|(n, _)| *n == c.name))
        .collect();
    let mut extra = Vec::new();
    for label in [
        "ubuntu-latest",
        "ubuntu-24.04",
        "ubuntu-22.04",
        "self-hosted",
        "linux",
    ] {
        extra.push("-P".to_owned());
        extra.push(format!("{label}={}", crate::docker::BASH));
    }
    let results = run_all(&cases, false, &extra);
    let mut failures = Vec::new();
    let mut passed = 0;
    for (name, r) in &results {
        match r {
            CaseResult::Pass => passed += 1,
            CaseResult::Skip(why) => eprintln!("skipped {name}: {why}"),
            CaseResult::Known(why) => eprintln!("known divergence {name}: {why}"),
            CaseResult::Fail(why) => failures.push(format!("── {name} ──\n{why}")),
        }
    }
    eprintln!(
        "conformance in containers: {passed} passed, {} failed, {} skipped",
        failures.len(),
        results.len() - passed - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} conformance case(s) failed in containers:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Every case of every area; one failure report names every failing case.
#[test]
fn conformance_suite() {
    let bless = std::env::var("PIPE_CONFORMANCE_BLESS").is_ok_and(|v| v == "1");
    let filter = std::env::var("PIPE_CONFORMANCE_FILTER").ok();
    let cases: Vec<Case> = all_cases()
        .into_iter()
        .filter(|c| filter.as_ref().is_none_or(|f| c.name.contains(f.as_str())))
        .collect();
    assert!(
        filter.is_some() || cases.len() >= 150,
        "the suite must have at least 150 cases, it has {}",
        cases.len()
    );
    let tpl = Arc::new(template());
    let queue = Arc::new(Mutex::new(cases.iter().cloned().collect::<VecDeque<_>>()));
    let results = Arc::new(Mutex::new(Vec::<(String, CaseResult)>::new()));
    let workers = 4;
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let queue = queue.clone();
            let results = results.clone();
            let tpl = tpl.clone();
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().expect("lock").pop_front();
                    let Some(case) = next else { break };
                    let r = run_case(&case, &tpl, bless);
                    results.lock().expect("lock").push((case.name.clone(), r));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    let mut results = std::mem::take(&mut *results.lock().expect("lock"));
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut failures = Vec::new();
    let mut passed = 0;
    for (name, r) in &results {
        match r {
            CaseResult::Pass => passed += 1,
            CaseResult::Skip(why) => eprintln!("skipped {name}: {why}"),
            CaseResult::Known(why) => eprintln!("known divergence {name}: {why}"),
            CaseResult::Fail(why) => failures.push(format!("── {name} ──\n{why}")),
        }
    }
    eprintln!(
        "conformance: {passed} passed, {} failed, {} skipped",
        failures.len(),
        results.len() - passed - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} conformance case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// ── Interrupts ─────────────────────────────────────────────────────────────────────────────

/// A small deterministic generator (xorshift), so a failing sequence can be replayed with
/// `PIPE_INTERRUPT_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Workflows whose steps are running when the signal comes. `MARKER` is replaced by a value
/// unique to the run, put in the workflow env so every process of the run carries it.
const INTERRUPT_WORKFLOWS: &[(&str, &str)] = &[
    (
        "sleep",
        "on: push\nenv:\n  PIPE_TEST_MARKER: MARKER\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 30\n",
    ),
    (
        "background-children",
        "on: push\nenv:\n  PIPE_TEST_MARKER: MARKER\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          sleep 40 &\n          (while true; do sleep 1; done) &\n          nohup sleep 50 >/dev/null 2>&1 &\n          sleep 30\n",
    ),
    (
        "daemon",
        "on: push\nenv:\n  PIPE_TEST_MARKER: MARKER\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          setsid sleep 60 </dev/null >/dev/null 2>&1 &\n          setsid sh -c 'sleep 70' </dev/null >/dev/null 2>&1 &\n          sleep 30\n",
    ),
    (
        "ignores-sigterm",
        "on: push\nenv:\n  PIPE_TEST_MARKER: MARKER\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          trap '' TERM\n          sleep 30 &\n          sleep 30\n",
    ),
    (
        "traps-sigterm",
        "on: push\nenv:\n  PIPE_TEST_MARKER: MARKER\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          trap 'echo stopping; exit 0' TERM\n          sleep 30 &\n          wait\n",
    ),
    (
        "matrix-and-needs",
        "on: push\nenv:\n  PIPE_TEST_MARKER: MARKER\njobs:\n  m:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        n: [1, 2, 3]\n    steps:\n      - run: sleep 30 & sleep 30\n      - if: always()\n        run: echo cleanup\n  after:\n    needs: m\n    runs-on: ubuntu-latest\n    steps: [{run: sleep 30}]\n  report:\n    needs: m\n    if: always()\n    runs-on: ubuntu-latest\n    steps: [{run: sleep 0.2}]\n",
    ),
];

/// Processes whose environment holds `PIPE_TEST_MARKER=marker`, as `pid cmdline`.
fn processes_with_marker(marker: &str) -> Vec<String> {
    let needle = format!("PIPE_TEST_MARKER={marker}");
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            let cmdline = std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default();
            found.push(format!("{pid} {}", cmdline.trim()));
        }
    }
    found
}

/// Leftovers of a run: processes with its marker that are still there after a short grace
/// (SIGKILLed processes take a moment to disappear from `/proc`).
fn leftovers(marker: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let found = processes_with_marker(marker);
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Interrupted {
    code: Option<i32>,
    /// Scratch folders (`RUNNER_TEMP` parents) left in the run's `TMPDIR`.
    temp_left: Vec<String>,
    stderr: String,
    elapsed: Duration,
    summary: Option<Value>,
}

/// Runs `workflow` and sends `signal` (`INT` or `TERM`) `delay` after the run printed its first
/// line (by then the signal handlers are installed).
fn run_and_interrupt(
    tpl: &Template,
    workflow: &str,
    signal: &str,
    delay: Duration,
    wait_for: &str,
) -> Interrupted {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    copy_dir(&tpl.repo, &repo);
    std::fs::write(repo.join("wf.yml"), workflow).expect("write workflow");
    let summary = tmp.path().join("summary.json");
    let mut cmd = pipe_command(tmp.path(), &repo);
    cmd.args([
        "run",
        "-W",
        "wf.yml",
        "-p",
        "8",
        "--progress",
        "plain",
        "--summary",
    ])
    .arg(&summary)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("pipe starts");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // Wait for the awaited line (or any line when it is empty).
    let ready_by = Instant::now() + Duration::from_secs(20);
    while Instant::now() < ready_by {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) if line.contains(wait_for) => break,
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    std::thread::sleep(delay);
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status();
    // A run must stop within the grace period plus a margin.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stderr = reader.join().unwrap_or_default();
    let summary = std::fs::read_to_string(&summary)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let temp_left = std::fs::read_dir(tmp.path().join("tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pipe-"))
                .collect()
        })
        .unwrap_or_default();
    Interrupted {
        temp_left,
        code: status.and_then(|s| s.code()),
        stderr,
        elapsed,
        summary,
    }
}

/// 100 runs interrupted by SIGINT or SIGTERM at random moments: each exits 130 or 143 and
/// leaves no process of the run behind (background children, `setsid` daemons and steps that
/// ignore SIGTERM included).
#[test]
fn interrupts_leave_no_process_behind() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: the leftover check reads /proc");
        return;
    }
    let runs: u64 = std::env::var("PIPE_INTERRUPT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("PIPE_INTERRUPT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("interrupts: {runs} runs, PIPE_INTERRUPT_SEED={seed}");
    let tpl = Arc::new(template());
    let mut rng = Rng(seed);
    // The plan of every run, drawn up front so the sequence depends only on the seed.
    let plan: Vec<(usize, &str, Duration)> = (0..runs)
        .map(|_| {
            let w = rng.below(INTERRUPT_WORKFLOWS.len() as u64) as usize;
            let sig = if rng.below(2) == 0 { "INT" } else { "TERM" };
            let delay = Duration::from_millis(rng.below(700));
            (w, sig, delay)
        })
        .collect();
    let queue = Arc::new(Mutex::new(
        plan.into_iter().enumerate().collect::<VecDeque<_>>(),
    ));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let stats = Arc::new(Mutex::new((0usize, Duration::ZERO)));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (queue, failures, tpl, stats) =
                (queue.clone(), failures.clone(), tpl.clone(), stats.clone());
            std::thread::spawn(move || {
                loop {
                    let next = queue.lock().expect("lock").pop_front();
                    let Some((i, (w, sig, delay))) = next else {
                        break;
                    };
                    let (name, text) = INTERRUPT_WORKFLOWS[w];
                    let marker = format!(
                        "conformance-{}-{i}-{}",
                        std::process::id(),
                        Instant::now().elapsed().as_nanos()
                    );
                    let wf = text.replace("MARKER", &marker);
                    // Wait until a step is running, then for the random delay.
                    let r = run_and_interrupt(&tpl, &wf, sig, delay, "] ");
                    let want = if sig == "INT" { 130 } else { 143 };
                    let mut problems = Vec::new();
                    if r.code != Some(want) {
                        problems.push(format!("exit code {:?}, expected {want}", r.code));
                    }
                    if !r.temp_left.is_empty() {
                        problems.push(format!("temp folders left: {}", r.temp_left.join(", ")));
                    }
                    let left = leftovers(&marker);
                    if !left.is_empty() {
                        problems.push(format!("left behind: {}", left.join("; ")));
                        for l in &left {
                            if let Some(pid) = l.split(' ').next() {
                                let _ = Command::new("kill").args(["-KILL", pid]).status();
                            }
                        }
                    }
                    {
                        let mut st = stats.lock().expect("lock");
                        st.0 += 1;
                        st.1 = st.1.max(r.elapsed);
                    }
                    if !problems.is_empty() {
                        failures.lock().expect("lock").push(format!(
                            "run {i} ({name}, SIG{sig} after {}ms): {}\nstderr:\n{}",
                            delay.as_millis(),
                            problems.join("; "),
                            r.stderr
                        ));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    let failures = failures.lock().expect("lock");
    let (done, slowest) = *stats.lock().expect("lock");
    eprintln!(
        "interrupts: {done} runs, {} with problems, slowest {}ms",
        failures.len(),
        slowest.as_millis()
    );
    assert!(
        failures.is_empty(),
        "{} of {runs} interrupted runs went wrong (seed {seed}):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A cancelled run behaves like GitHub's "cancel workflow": the running job is cancelled, a
/// job waiting for it is cancelled without running, an `always()` job still runs, and the
/// run's conclusion is `cancelled` (exit 130 for SIGINT).
#[test]
fn interrupt_cancels_the_run_like_github() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let tpl = template();
    let wf = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - id: slow\n        run: sleep 30\n      - id: cleanup\n        if: always()\n        run: echo cleanup\n      - id: default\n        run: echo never\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps: [{run: echo never}]\n  c:\n    needs: a\n    if: always()\n    runs-on: ubuntu-latest\n    outputs:\n      a: ${{ needs.a.result }}\n    steps: [{run: echo report}]\n";
    let r = run_and_interrupt(&tpl, wf, "INT", Duration::from_millis(200), "sleep 30");
    assert_eq!(r.code, Some(130), "stderr:\n{}", r.stderr);
    let s = r
        .summary
        .expect("a summary is written for an interrupted run");
    let brief: Vec<String> = s["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| {
            let steps: Vec<String> = j["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .map(|st| {
                    format!(
                        "{}={}",
                        st["id"].as_str().unwrap_or(""),
                        st["conclusion"].as_str().unwrap_or("")
                    )
                })
                .collect();
            format!(
                "{}:{}:{}:[{}]",
                j["id"].as_str().unwrap_or(""),
                j["conclusion"].as_str().unwrap_or(""),
                j["outputs"],
                steps.join(",")
            )
        })
        .collect();
    assert_eq!(s["conclusion"], "cancelled");
    assert_eq!(
        brief,
        vec![
            "a:cancelled:{}:[slow=cancelled,cleanup=success,default=skipped]".to_owned(),
            "b:cancelled:{}:[__run=skipped]".to_owned(),
            "c:success:{\"a\":\"cancelled\"}:[__run=success]".to_owned(),
        ]
    );
}

/// `--json` prints only JSON on stdout: one versioned event a line, `run_started` first and
/// `run_finished` last, every step between its job's start and finish.
#[test]
fn json_stream_shape() {
    let tpl = template();
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    copy_dir(&tpl.repo, &repo);
    std::fs::write(
        repo.join("wf.yml"),
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo one\n      - run: echo two\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        n: [1, 2]\n    steps: [{run: echo leg}]\n  c:\n    if: false\n    runs-on: ubuntu-latest\n    steps: [{run: echo never}]\n",
    )
    .expect("write");
    let mut cmd = pipe_command(tmp.path(), &repo);
    cmd.args(["run", "-W", "wf.yml", "--json"]);
    let r = run_with_timeout(cmd, Duration::from_secs(60));
    assert_eq!(r.code, Some(0), "stderr:\n{}", r.stderr);
    let events: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    for e in &events {
        assert_eq!(e["version"], 1, "{e}");
        assert!(e["event"].is_string(), "{e}");
    }
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"));
    assert_eq!(kinds.last(), Some(&"run_finished"));
    assert_eq!(
        events.last().map(|e| &e["conclusion"]),
        Some(&Value::from("success"))
    );
    // Per leg: job_started, then its steps (started before finished), then job_finished.
    let mut open: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut finished_jobs = Vec::new();
    for e in &events {
        let key = e["job"]["key"].as_str().unwrap_or("").to_owned();
        match e["event"].as_str().unwrap_or("") {
            "job_started" => {
                assert!(!open.contains_key(&key), "{key} started twice");
                open.insert(key, Vec::new());
            }
            "step_started" => open
                .get_mut(&key)
                .unwrap_or_else(|| panic!("step of {key} outside its job"))
                .push(e["step"]["id"].as_str().unwrap_or("").to_owned()),
            "step_finished" | "log" => assert!(open.contains_key(&key), "{e} outside its job"),
            "job_finished" => {
                finished_jobs.push((key, e["conclusion"].as_str().unwrap_or("").to_owned()))
            }
            _ => {}
        }
    }
    assert_eq!(open.get("a").map(Vec::len), Some(2));
    // Every leg finishes once (their order depends on timing).
    finished_jobs.sort();
    assert_eq!(
        finished_jobs,
        vec![
            ("a".to_owned(), "success".to_owned()),
            ("b-0".to_owned(), "success".to_owned()),
            ("b-1".to_owned(), "success".to_owned()),
            ("c".to_owned(), "skipped".to_owned()),
        ]
    );
    let logs: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "log")
        .filter_map(|e| e["line"].as_str())
        .collect();
    assert!(
        logs.contains(&"one") && logs.contains(&"two") && logs.contains(&"leg"),
        "{logs:?}"
    );
}
