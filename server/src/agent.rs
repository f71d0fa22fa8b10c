//! `pipe agent`: claims jobs from a server (long poll, label routing, up to `concurrency` at
//! once), runs each with the runner exactly as `pipe run -j JOB --no-deps` would (its needs'
//! results given with `--needs-results`), streams its log, heartbeats its lease and reports
//! its result.
//!
//! - Each job runs as a child `pipe run` process, so the agent's own threads (heartbeat, log
//!   shipping) are never starved by the job, and a cancelled or fenced job is stopped with
//!   SIGTERM (the runner's own clean-up) and SIGKILL after a grace period.
//! - Heartbeats run on a thread of their own every third of the lease. A 409 answer means the
//!   lease is gone (expired and re-queued elsewhere): the agent stops the job and drops it.
//! - Log chunks are sent with their byte offsets and retried until the server stores them, so
//!   a server restart loses no log; the result is reported with retries too.
//! - SIGTERM or SIGINT drains the agent: it claims nothing more and exits when its running jobs
//!   have finished. A revoked agent token (401 on claim) stops it the same way; the server has
//!   already re-queued its jobs, so their heartbeats are refused and they stop at once.
//! - Each job gets a state folder of its own whose run number is the server's run id; the run's
//!   artifacts (uploaded by jobs on any agent) are downloaded into it before the job starts,
//!   and the artifacts the job made are uploaded after it (blobs by SHA-256, then the
//!   artifact's record). The step and action cache is the server's, through the signed path the
//!   claim carries (`--cache-remote`).
//! - A matrix leg runs as `pipe run -j JOB --matrix K=V…` with the filters the server planned.
//! - The job's step summaries and its `reports:` results (the `results` record of the run
//!   summary: tests, coverage, benchmarks) are sent before the result, for the web UI.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::api::{ClaimRequest, ClaimedJob, CompleteRequest, NextClaim};
use crate::client::{Client, ClientError, retry};

/// Agent settings.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// The server's base URL.
    pub server: String,
    /// The agent token.
    pub token: String,
    /// The agent's name.
    pub name: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// Jobs at once.
    pub concurrency: usize,
    /// Where job workspaces and the agent's run records live.
    pub work_dir: PathBuf,
    /// The `pipe` binary that runs jobs.
    pub pipe: PathBuf,
    /// Extra arguments for `pipe run` (`-P LABEL=IMAGE`, `--host`).
    pub run_args: Vec<String>,
    /// Exit after this many jobs (0: never).
    pub max_jobs: usize,
}

/// The labels an agent has by default (comma-separated).
pub const DEFAULT_LABELS: &str = "self-hosted,linux,x64,ubuntu-latest,ubuntu-24.04,ubuntu-22.04";

/// Why the agent stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Drained after a signal.
    Drained,
    /// Ran `max_jobs` jobs.
    Done,
}

struct Slots {
    running: Mutex<usize>,
    freed: Condvar,
}

/// Runs the agent until `stop` is set (then drains) or `max_jobs` jobs ran. Errors that stop
/// the agent (a refused token) are returned.
pub fn run(opts: &AgentOptions, stop: Arc<AtomicBool>) -> Result<Stopped, String> {
    std::fs::create_dir_all(&opts.work_dir)
        .map_err(|e| format!("cannot create `{}`: {e}", opts.work_dir.display()))?;
    let client = Client::new(&opts.server, &opts.token);
    let slots = Arc::new(Slots {
        running: Mutex::new(0),
        freed: Condvar::new(),
    });
    let started = Arc::new(AtomicUsize::new(0));
    let concurrency = opts.concurrency.max(1);
    let mut backoff = Duration::from_millis(200);
    let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::new();
    let outcome = loop {
        if stop.load(Ordering::SeqCst) {
            break Stopped::Drained;
        }
        if opts.max_jobs > 0 && started.load(Ordering::SeqCst) >= opts.max_jobs {
            break Stopped::Done;
        }
        let free = {
            let mut running = slots.running.lock().map_err(|_| "poisoned")?;
            while *running >= concurrency && !stop.load(Ordering::SeqCst) {
                running = slots
                    .freed
                    .wait_timeout(running, Duration::from_millis(200))
                    .map_err(|_| "poisoned")?
                    .0;
            }
            concurrency.saturating_sub(*running)
        };
        if free == 0 {
            continue;
        }
        let want = if opts.max_jobs > 0 {
            free.min(opts.max_jobs - started.load(Ordering::SeqCst))
        } else {
            free
        };
        let req = ClaimRequest {
            agent: opts.name.clone(),
            labels: opts.labels.clone(),
            slots: Some(u32::try_from(want).unwrap_or(1)),
            wait_ms: Some(5_000),
        };
        let jobs = match client.claim(&req) {
            Ok(r) => {
                backoff = Duration::from_millis(200);
                r.jobs
            }
            Err(ClientError::Status {
                status: 401,
                message,
            }) => {
                // Revoked: take nothing more; the running jobs were re-queued by the server
                // and stop when their next heartbeat is refused.
                for t in threads {
                    let _ = t.join();
                }
                return Err(format!("the server refused the agent token: {message}"));
            }
            Err(e) => {
                tracing::warn!("claim failed (retrying in {backoff:?}): {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        for job in jobs {
            started.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut r) = slots.running.lock() {
                *r += 1;
            }
            let agent = client.clone();
            let opts = opts.clone();
            let slots = slots.clone();
            let stop = stop.clone();
            let started = started.clone();
            threads.push(std::thread::spawn(move || {
                let mut job = job;
                loop {
                    let key = format!(
                        "job {} (`{}`) attempt {}",
                        job.job_id, job.job_key, job.attempt
                    );
                    // The slot's next job comes with the result (one request), unless the
                    // agent counts its jobs or drains (checked when the result is sent).
                    let next = (opts.max_jobs == 0).then(|| NextClaim {
                        agent: opts.name.clone(),
                        labels: opts.labels.clone(),
                        slots: Some(1),
                    });
                    let client = agent.with_token(&job.token);
                    let mut more = match run_job(&opts, &client, &job, next, &stop) {
                        Ok((result, more)) => {
                            tracing::info!("{key}: {result}");
                            more
                        }
                        Err(e) => {
                            tracing::warn!("{key}: {e}");
                            Vec::new()
                        }
                    };
                    match more.pop() {
                        Some(j) => {
                            started.fetch_add(1, Ordering::SeqCst);
                            job = j;
                        }
                        None => break,
                    }
                }
                if let Ok(mut r) = slots.running.lock() {
                    *r -= 1;
                }
                slots.freed.notify_all();
            }));
        }
        threads.retain(|t| !t.is_finished());
    };
    for t in threads {
        let _ = t.join();
    }
    Ok(outcome)
}

/// The log of a running job: what the child printed, and how much of it the server has.
#[derive(Default)]
struct LogBuf {
    data: Vec<u8>,
    sent: usize,
    closed: bool,
}

fn dotenv_quote(v: &str) -> String {
    let mut s = String::from("\"");
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn prepare(dir: &Path, job: &ClaimedJob) -> Result<(), String> {
    if let Some(repo) = &job.repo {
        let out = Command::new("git")
            .args(["clone", "-q", "--no-checkout", "--", repo])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run `git`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot clone `{repo}`: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if let Some(sha) = &job.sha {
            if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("`{sha}` is not a commit id"));
            }
            let out = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(["checkout", "-q", "--detach", sha])
                .output()
                .map_err(|e| format!("cannot run `git`: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "cannot check out `{sha}`: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    } else {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the workspace: {e}"))?;
    }
    let rel = Path::new(&job.workflow_path);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "the workflow path `{}` must be relative and stay in the workspace",
            job.workflow_path
        ));
    }
    let wf = dir.join(rel);
    if let Some(parent) = wf.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    }
    std::fs::write(&wf, &job.workflow).map_err(|e| format!("cannot write `{}`: {e}", wf.display()))
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Runs one claimed job to its end; returns the result reported and the jobs the server
/// leased with its answer when `next` asked for them (never once `stop` is set).
fn run_job(
    opts: &AgentOptions,
    client: &Client,
    job: &ClaimedJob,
    next: Option<NextClaim>,
    stop: &AtomicBool,
) -> Result<(String, Vec<ClaimedJob>), String> {
    let base = opts
        .work_dir
        .join(format!("job-{}-{}", job.job_id, job.attempt));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)
        .map_err(|e| format!("cannot create `{}`: {e}", base.display()))?;
    let ws = base.join("workspace");
    let log = Arc::new(Mutex::new(LogBuf::default()));
    let fenced = Arc::new(AtomicBool::new(false));
    let cancel = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));

    // Heartbeats, from the start (cloning may take a while).
    let hb = {
        let client = client.clone();
        let (job_id, attempt) = (job.job_id, job.attempt);
        let (fenced, cancel, finished) = (fenced.clone(), cancel.clone(), finished.clone());
        let every = Duration::from_millis((job.lease_ms / 3).max(50));
        std::thread::spawn(move || {
            let mut next = Instant::now() + every;
            while !finished.load(Ordering::SeqCst) {
                if Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(20).min(every));
                    continue;
                }
                next = Instant::now() + every;
                match client.heartbeat(job_id, attempt) {
                    Ok(r) if r.cancel => cancel.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(e) if e.fenced() => {
                        fenced.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => tracing::debug!("heartbeat: {e}"),
                }
            }
        })
    };

    let result = execute(opts, client, job, &base, &ws, &log, &fenced, &cancel);
    // `pipe run`'s summary, read once for the step summaries and the results.
    let mut summary = read_json(&base.join("summary.json"));
    let run = summary
        .as_ref()
        .and_then(|v| v.get("run"))
        .and_then(serde_json::Value::as_u64);
    let step_summaries = step_summaries(&base.join("state"), &ws, run);
    if !step_summaries.is_empty() && !fenced.load(Ordering::SeqCst) {
        // For the web UI; best effort (a lost summary never fails the job).
        let deadline = Instant::now() + Duration::from_secs(30);
        if let Err(e) = retry(deadline, || {
            client.put_summary(job.job_id, job.attempt, &step_summaries)
        }) {
            tracing::debug!("step summary upload: {e}");
        }
    }
    if let Some(results) = summary.as_mut().and_then(job_results)
        && !fenced.load(Ordering::SeqCst)
    {
        // Test, coverage and benchmark results for the run page and the run API; best
        // effort as well (the job's own steps decide its result).
        let deadline = Instant::now() + Duration::from_secs(30);
        if let Err(e) = retry(deadline, || {
            client.put_results(job.job_id, job.attempt, &results)
        }) {
            tracing::warn!("results upload: {e}");
        }
    }
    finished.store(true, Ordering::SeqCst);
    let _ = hb.join();
    let _ = std::fs::remove_dir_all(&base);
    if fenced.load(Ordering::SeqCst) {
        return Err("the lease was lost; the job was stopped and dropped".to_owned());
    }
    let (result, outputs) = result;
    // Report, retrying through a server or database restart.
    let req = CompleteRequest {
        result: result.clone(),
        outputs,
        next: next.filter(|_| !stop.load(Ordering::SeqCst)),
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    match retry(deadline, || client.complete(job.job_id, job.attempt, &req)) {
        Ok(r) => Ok((result, r.jobs)),
        Err(e) if e.fenced() => Err("the result was refused: the lease had been lost".to_owned()),
        Err(e) => Err(format!("cannot report the result: {e}")),
    }
}

/// Ships the log buffer's unsent bytes (whole lines when the job still runs).
fn ship(client: &Client, job: &ClaimedJob, log: &Mutex<LogBuf>, fenced: &AtomicBool, all: bool) {
    let (offset, chunk) = {
        let Ok(b) = log.lock() else { return };
        let pending = &b.data[b.sent..];
        let end = if all || b.closed {
            pending.len()
        } else {
            pending
                .iter()
                .rposition(|&c| c == b'\n')
                .map_or(0, |i| i + 1)
        };
        // At most 1 MiB a call, cut after a line (or a UTF-8 boundary) when possible.
        let mut end = end.min(1 << 20);
        if end < pending.len() {
            if let Some(i) = pending[..end].iter().rposition(|&c| c == b'\n') {
                end = i + 1;
            } else {
                while end > 0 && std::str::from_utf8(&pending[..end]).is_err() {
                    end -= 1;
                }
            }
        }
        (b.sent, pending[..end].to_vec())
    };
    if chunk.is_empty() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(if all { 600 } else { 5 });
    match retry(deadline, || {
        client.append_log(job.job_id, job.attempt, offset as u64, &chunk)
    }) {
        Ok(()) => {
            if let Ok(mut b) = log.lock() {
                b.sent = offset + chunk.len();
            }
        }
        Err(e) if e.fenced() => fenced.store(true, Ordering::SeqCst),
        Err(e) => tracing::debug!("log upload: {e}"),
    }
}

#[allow(clippy::too_many_arguments)]
fn execute(
    opts: &AgentOptions,
    client: &Client,
    job: &ClaimedJob,
    base: &Path,
    ws: &Path,
    log: &Arc<Mutex<LogBuf>>,
    fenced: &AtomicBool,
    cancel: &AtomicBool,
) -> (String, BTreeMap<String, String>) {
    let note = |text: &str| {
        if let Ok(mut b) = log.lock() {
            b.data.extend_from_slice(text.as_bytes());
        }
    };
    if let Err(e) = prepare(ws, job) {
        note(&format!("pipe agent: {e}\n"));
        ship(client, job, log, fenced, true);
        return ("failure".to_owned(), BTreeMap::new());
    }
    let state = base.join("state");
    let run_dir = match seed_state(&state, ws, job.run_id) {
        Ok(d) => d,
        Err(e) => {
            note(&format!("pipe agent: {e}\n"));
            ship(client, job, log, fenced, true);
            return ("failure".to_owned(), BTreeMap::new());
        }
    };
    let downloaded = match download_artifacts(client, job, &run_dir) {
        Ok(d) => d,
        Err(e) => {
            if e.fenced() {
                fenced.store(true, Ordering::SeqCst);
                return ("cancelled".to_owned(), BTreeMap::new());
            }
            note(&format!(
                "pipe agent: cannot download the run's artifacts: {e}\n"
            ));
            ship(client, job, log, fenced, true);
            return ("failure".to_owned(), BTreeMap::new());
        }
    };
    let needs = base.join("needs.json");
    let secrets = base.join("secrets.env");
    let summary = base.join("summary.json");
    let needs_text = serde_json::to_string(&job.needs).unwrap_or_else(|_| "{}".into());
    let secrets_text: String = job
        .secrets
        .iter()
        .map(|(k, v)| format!("{k}={}\n", dotenv_quote(v)))
        .collect();
    if let Err(e) =
        write_private(&needs, &needs_text).and_then(|()| write_private(&secrets, &secrets_text))
    {
        note(&format!("pipe agent: {e}\n"));
        ship(client, job, log, fenced, true);
        return ("failure".to_owned(), BTreeMap::new());
    }
    let mut cmd = Command::new(&opts.pipe);
    cmd.arg("run")
        .arg("-W")
        .arg(&job.workflow_path)
        .args(["-j", &job.job_key, "--no-deps", "--event", &job.event])
        .arg("--needs-results")
        .arg(&needs)
        .arg("--secret-file")
        .arg(&secrets)
        .arg("--summary")
        .arg(&summary)
        .args(["--color", "never", "--progress", "plain"]);
    for (k, v) in &job.matrix {
        cmd.arg("--matrix").arg(format!("{k}={v}"));
    }
    if let Some(path) = &job.cache_path
        && !opts.run_args.iter().any(|a| a == "--cache-remote")
    {
        // The step cache (`--cache-remote`) and `actions/cache` (`PIPE_CACHE_REMOTE`) both
        // use the server's cache through the job's grant; a read-only grant is read-only.
        let url = format!("{}{path}", client.base());
        let read_only = path.contains(".ro.");
        cmd.arg("--cache-remote").arg(&url);
        cmd.env("PIPE_CACHE_REMOTE", &url);
        if read_only {
            cmd.arg("--cache-read-only");
            cmd.env("PIPE_CACHE_READ_ONLY", "1");
        }
    }
    cmd.args(&opts.run_args)
        .current_dir(ws)
        .env("PIPE_STATE_DIR", &state)
        .env_remove("PIPE_CACHE_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            note(&format!(
                "pipe agent: cannot start `{}`: {e}\n",
                opts.pipe.display()
            ));
            ship(client, job, log, fenced, true);
            return ("failure".to_owned(), BTreeMap::new());
        }
    };
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                if let Ok(mut b) = log.lock() {
                    b.data.extend_from_slice(&line);
                }
                line.clear();
            }
        })
    })
    .collect();
    let mut stopping: Option<Instant> = None;
    let mut last_ship = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        let stop = fenced.load(Ordering::SeqCst) || cancel.load(Ordering::SeqCst);
        match stopping {
            None if stop => {
                signal(&child, nix::sys::signal::Signal::SIGTERM);
                stopping = Some(Instant::now());
            }
            Some(t) if t.elapsed() > Duration::from_secs(10) => {
                let _ = child.kill();
            }
            _ => {}
        }
        if last_ship.elapsed() > Duration::from_millis(250) && !fenced.load(Ordering::SeqCst) {
            ship(client, job, log, fenced, false);
            last_ship = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    for r in readers {
        let _ = r.join();
    }
    if fenced.load(Ordering::SeqCst) {
        return ("cancelled".to_owned(), BTreeMap::new());
    }
    match upload_artifacts(client, job, &run_dir, &downloaded) {
        Ok(names) => {
            for n in names {
                note(&format!(
                    "pipe agent: uploaded artifact `{n}` to the server\n"
                ));
            }
        }
        Err(e) if e.fenced() => {
            fenced.store(true, Ordering::SeqCst);
            return ("cancelled".to_owned(), BTreeMap::new());
        }
        Err(e) => {
            note(&format!(
                "pipe agent: cannot upload the job's artifacts: {e}\n"
            ));
            if let Ok(mut b) = log.lock() {
                b.closed = true;
            }
            ship(client, job, log, fenced, true);
            return ("failure".to_owned(), BTreeMap::new());
        }
    }
    if let Ok(mut b) = log.lock() {
        b.closed = true;
    }
    let (result, outputs) = read_summary(&summary, status.and_then(|s| s.code()));
    if cancel.load(Ordering::SeqCst) && result != "success" {
        ship(client, job, log, fenced, true);
        return ("cancelled".to_owned(), outputs);
    }
    ship(client, job, log, fenced, true);
    (result, outputs)
}

/// Makes the job's state folder, numbered so that `pipe run` records the job as run
/// `run_id` (its `GITHUB_RUN_ID`); returns that run's folder (where artifacts live).
fn seed_state(state: &Path, ws: &Path, run_id: i64) -> Result<PathBuf, String> {
    let canonical = ws
        .canonicalize()
        .map_err(|e| format!("cannot resolve `{}`: {e}", ws.display()))?;
    let runs = pipe_runner::dirs::repo_state_dir(state, &canonical).join("runs");
    std::fs::create_dir_all(&runs)
        .map_err(|e| format!("cannot create `{}`: {e}", runs.display()))?;
    let run = u64::try_from(run_id).unwrap_or(1).max(1);
    std::fs::write(runs.join(".counter"), format!("{}\n", run - 1))
        .map_err(|e| format!("cannot write `{}`: {e}", runs.display()))?;
    Ok(runs.join(run.to_string()))
}

/// The mode bits the server records for a symbolic link (its content is the link's target).
const SYMLINK_MODE: i32 = 0o120_777;

/// Downloads every artifact of the job's run into `run_dir/artifacts/<name>/` as
/// `actions/upload-artifact` lays them out; returns each one's recorded digest by name.
fn download_artifacts(
    client: &Client,
    job: &ClaimedJob,
    run_dir: &Path,
) -> Result<BTreeMap<String, String>, ClientError> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let list = retry(deadline, || client.job_artifacts(job.job_id, job.attempt))?;
    let io = |e: std::io::Error, p: &Path| ClientError::Fatal(format!("`{}`: {e}", p.display()));
    let mut got = BTreeMap::new();
    let root = run_dir.join("artifacts");
    for a in list.artifacts {
        if a.name.contains(['/', '\\']) || a.name == ".." || a.name == "." {
            continue;
        }
        let dir = root.join(&a.name);
        let files = dir.join("files");
        std::fs::create_dir_all(&files).map_err(|e| io(e, &files))?;
        for f in &a.files {
            if f.path.split('/').any(|c| c == ".." || c.is_empty()) {
                continue;
            }
            let dest = files.join(&f.path);
            if let Some(p) = dest.parent() {
                std::fs::create_dir_all(p).map_err(|e| io(e, p))?;
            }
            let mut bytes = Vec::new();
            retry(deadline, || {
                bytes.clear();
                client.get_blob(job.job_id, job.attempt, &f.digest, &mut bytes)
            })?;
            if f.mode == SYMLINK_MODE {
                let target = String::from_utf8_lossy(&bytes).into_owned();
                std::os::unix::fs::symlink(target, &dest).map_err(|e| io(e, &dest))?;
            } else {
                use std::os::unix::fs::PermissionsExt;
                std::fs::write(&dest, &bytes).map_err(|e| io(e, &dest))?;
                let mode = u32::try_from(f.mode & 0o777).unwrap_or(0o644);
                let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode));
            }
        }
        let text = serde_json::to_string(&a.info).unwrap_or_default();
        std::fs::write(dir.join("artifact.json"), text).map_err(|e| io(e, &dir))?;
        if let Some(id) = a.info.get("id").and_then(serde_json::Value::as_u64) {
            let ids = root.join("artifact-ids").join(id.to_string());
            let _ = std::fs::create_dir_all(ids);
        }
        got.insert(
            a.name.clone(),
            a.info
                .get("digest")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        );
    }
    Ok(got)
}

/// Every file under `dir` (symbolic links as links), with paths relative to `dir`.
fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf, std::fs::Metadata)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_dir() {
            walk(&e.path(), &r, out);
        } else {
            out.push((r, e.path(), meta));
        }
    }
}

/// Unpacks a packed artifact (`files.pack` with its index `pack.json`, as
/// `actions/upload-artifact` stores it) into a temporary folder, every file verified.
fn unpack_artifact(dir: &Path) -> Result<tempfile::TempDir, ClientError> {
    let fail = |e: String| ClientError::Fatal(format!("artifact `{}`: {e}", dir.display()));
    let tmp = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    pipe_cache::restore::unpack_packed(&dir.join("files.pack"), &dir.join("pack.json"), tmp.path())
        .map_err(|e| fail(e.to_string()))?;
    Ok(tmp)
}

/// SHA-256 of a file, hex.
fn file_digest(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Uploads the artifacts the job made (those it did not download unchanged); returns their
/// names.
fn upload_artifacts(
    client: &Client,
    job: &ClaimedJob,
    run_dir: &Path,
    downloaded: &BTreeMap<String, String>,
) -> Result<Vec<String>, ClientError> {
    use std::os::unix::fs::PermissionsExt;
    let root = run_dir.join("artifacts");
    let Ok(rd) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut names = Vec::new();
    let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Ok(text) = std::fs::read_to_string(dir.join("artifact.json")) else {
            continue;
        };
        let Ok(info) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(name) = info.get("name").and_then(|n| n.as_str()).map(str::to_owned) else {
            continue;
        };
        let digest = info.get("digest").and_then(|d| d.as_str()).unwrap_or("");
        if downloaded.get(&name).is_some_and(|d| d == digest) {
            continue;
        }
        // A packed artifact (`files.pack` + `pack.json`) is unpacked (verified) first.
        let unpacked = if dir.join("files.pack").is_file() {
            Some(unpack_artifact(&dir)?)
        } else {
            None
        };
        let files_dir = unpacked
            .as_ref()
            .map_or_else(|| dir.join("files"), |t| t.path().to_path_buf());
        let mut entries = Vec::new();
        walk(&files_dir, "", &mut entries);
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut files = Vec::with_capacity(entries.len());
        for (rel, path, meta) in entries {
            let io = |e: std::io::Error| ClientError::Fatal(format!("`{}`: {e}", path.display()));
            let (upload, mode, size) = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(io)?;
                let tmp = tempfile::NamedTempFile::new().map_err(io)?;
                std::fs::write(tmp.path(), target.as_os_str().as_encoded_bytes()).map_err(io)?;
                let len = target.as_os_str().len() as i64;
                (Some(tmp), SYMLINK_MODE, len)
            } else {
                let mode = i32::try_from(meta.permissions().mode() & 0o777).unwrap_or(0o644);
                (None, mode, i64::try_from(meta.len()).unwrap_or(i64::MAX))
            };
            let source = upload.as_ref().map_or(path.as_path(), |t| t.path());
            let digest = file_digest(source).map_err(io)?;
            retry(deadline, || {
                client.put_blob(job.job_id, job.attempt, &digest, source)
            })?;
            files.push(crate::api::ArtifactFile {
                path: rel,
                digest,
                size,
                mode,
            });
        }
        let up = crate::api::ArtifactUpload {
            name: name.clone(),
            info,
            files,
        };
        retry(deadline, || {
            client.add_artifact(job.job_id, job.attempt, &up)
        })?;
        names.push(name);
    }
    Ok(names)
}

/// The step summaries (`GITHUB_STEP_SUMMARY`) the job's `pipe run` recorded, one Markdown
/// text for all its legs (empty when there are none); `state` is the job's own state folder,
/// `run` the run number its summary gives.
fn step_summaries(state: &Path, ws: &Path, run: Option<u64>) -> String {
    let Some(run) = run else {
        return String::new();
    };
    let root = ws.canonicalize().unwrap_or_else(|_| ws.to_path_buf());
    let dir = pipe_runner::dirs::repo_state_dir(state, &root)
        .join("runs")
        .join(run.to_string())
        .join("summaries");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter(|t| !t.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `results` record (the job's `reports:`: tests, coverage, benchmarks) of the job's
/// `pipe run` summary, when it declared reports.
fn job_results(summary: &mut serde_json::Value) -> Option<serde_json::Value> {
    summary
        .get_mut("results")
        .map(serde_json::Value::take)
        .filter(serde_json::Value::is_object)
}

/// A JSON file, when it exists and parses.
fn read_json(path: &Path) -> Option<serde_json::Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// The job's result as its dependants see it, and its merged outputs, from `pipe run`'s
/// summary (the run's conclusion covers job-level `continue-on-error`; a job whose legs were
/// all skipped is skipped).
fn read_summary(path: &Path, code: Option<i32>) -> (String, BTreeMap<String, String>) {
    let Some(v) = read_json(path) else {
        return ("failure".to_owned(), BTreeMap::new());
    };
    let mut outputs = BTreeMap::new();
    let legs = v["jobs"].as_array().cloned().unwrap_or_default();
    for leg in &legs {
        if let Some(o) = leg["outputs"].as_object() {
            for (k, val) in o {
                if let Some(s) = val.as_str() {
                    outputs.insert(k.clone(), s.to_owned());
                }
            }
        }
    }
    let all_skipped = !legs.is_empty() && legs.iter().all(|l| l["conclusion"] == "skipped");
    let result = if all_skipped {
        "skipped".to_owned()
    } else {
        match v["conclusion"].as_str() {
            Some(c @ ("success" | "failure" | "cancelled")) => c.to_owned(),
            _ if code == Some(0) => "success".to_owned(),
            _ => "failure".to_owned(),
        }
    };
    (result, outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn summary(json: &str) -> (String, BTreeMap<String, String>) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.json");
        std::fs::write(&p, json).expect("write");
        read_summary(&p, Some(0))
    }

    #[test]
    fn the_result_is_the_runs_and_outputs_merge_over_legs() {
        let (r, o) = summary(
            r#"{"conclusion": "success", "jobs": [
                {"conclusion": "success", "outputs": {"a": "1"}},
                {"conclusion": "failure", "outputs": {"b": "2"}}]}"#,
        );
        assert_eq!(r, "success");
        assert_eq!(o.len(), 2);
        let (r, _) = summary(r#"{"conclusion": "success", "jobs": [{"conclusion": "skipped"}]}"#);
        assert_eq!(r, "skipped");
        let (r, _) = summary(r#"{"conclusion": "failure", "jobs": []}"#);
        assert_eq!(r, "failure");
    }

    #[test]
    fn results_come_from_the_summary_when_reports_were_declared() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("s.json");
        std::fs::write(
            &p,
            r#"{"conclusion": "success", "jobs": [], "results": {"version": 1, "jobs": []}}"#,
        )
        .expect("write");
        let results = |p: &Path| read_json(p).as_mut().and_then(job_results);
        assert_eq!(
            results(&p),
            Some(serde_json::json!({"version": 1, "jobs": []}))
        );
        std::fs::write(&p, r#"{"conclusion": "success", "jobs": []}"#).expect("write");
        assert_eq!(results(&p), None);
        assert_eq!(results(&dir.path().join("none")), None);
    }

    #[test]
    fn no_summary_is_a_failure() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(read_summary(&dir.path().join("none"), Some(0)).0, "failure");
    }

    proptest! {
        /// Secrets written for `--secret-file` read back as they were.
        #[test]
        fn secret_files_round_trip(value in "[ -~\t\n]{0,40}") {
            let text = format!("S={}\n", dotenv_quote(&value));
            let parsed = pipe_runner::run::setup::parse_dotenv(&text).expect("parses");
            prop_assert_eq!(parsed, vec![("S".to_owned(), value)]);
        }
    }
}
