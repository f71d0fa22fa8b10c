//! `pipe server`, `pipe agent` and `pipe submit` end to end, on a real PostgreSQL (a cluster
//! of the test process's own; skipped without PostgreSQL unless `CI=true`), with real agent
//! processes and the failure cases: an agent killed mid-job, an agent cut off from the
//! network, the server and PostgreSQL restarted during 1,000 jobs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pipe_server::api::RunStatus;
use pipe_server::client::Client;
use pipe_server::testing::PgCluster;

const PIPE: &str = env!("CARGO_BIN_EXE_pipe");

/// A child process killed (with everything in its session) when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    /// SIGKILL to every process of its session: the machine it ran on is gone.
    fn kill_session(&mut self) {
        let _ = Command::new("pkill")
            .args(["-9", "-s", &self.pid().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status();
    }
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill_session();
        }
    }
}

/// `setsid pipe ARGS`: its own session, so a test can kill it with all its children.
fn spawn(args: &[&str], dir: &Path, stdout: Stdio) -> Proc {
    let child = Command::new("setsid")
        .arg(PIPE)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("PIPE_STATE_DIR", dir.join("state"))
        .env("PIPE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("processes.log"))
                .expect("log file"),
        ))
        .spawn()
        .expect("spawn pipe");
    Proc { child }
}

fn pipe_out(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(PIPE)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("PIPE_STATE_DIR", dir.join("state"))
        .envs(env.iter().copied())
        .output()
        .expect("run pipe");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

use super::common::free_port;

/// A database, a server and the two tokens.
struct Fixture {
    dir: tempfile::TempDir,
    db_url: String,
    port: u16,
    url: String,
    server: Option<Proc>,
    lease_ms: u64,
    agent_token: String,
    user_token: String,
}

impl Fixture {
    fn new(cluster: &PgCluster, lease_ms: u64, extra: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_url = cluster.fresh_db();
        let env = [("PIPE_DATABASE_URL", db_url.as_str())];
        let (code, _, err) = pipe_out(&["server", "migrate"], dir.path(), &env);
        assert_eq!(code, Some(0), "{err}");
        let (_, agent_token, _) = pipe_out(
            &["server", "token", "--kind", "agent", "--name", "agents"],
            dir.path(),
            &env,
        );
        let (_, user_token, _) = pipe_out(
            &["server", "token", "--kind", "user", "--name", "me"],
            dir.path(),
            &env,
        );
        let port = free_port();
        let mut f = Fixture {
            dir,
            url: format!("http://127.0.0.1:{port}"),
            db_url,
            port,
            server: None,
            lease_ms,
            agent_token: agent_token.trim().to_owned(),
            user_token: user_token.trim().to_owned(),
        };
        f.start_server(extra);
        f
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn start_server(&mut self, extra: &[&str]) {
        let listen = format!("127.0.0.1:{}", self.port);
        let lease = self.lease_ms.to_string();
        let mut args = vec![
            "server",
            "--database",
            &self.db_url,
            "--listen",
            &listen,
            "--lease-ms",
            &lease,
            "--rate-limit",
            "0",
        ];
        args.extend_from_slice(extra);
        let mut p = spawn(&args, self.dir.path(), Stdio::piped());
        let mut line = String::new();
        BufReader::new(p.child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert!(
            line.starts_with("listening on http://"),
            "server said {line:?}"
        );
        self.server = Some(p);
    }

    fn agent(&self, name: &str, concurrency: usize, server: &str) -> Proc {
        let c = concurrency.to_string();
        let work = self.dir.path().join("agents").join(name);
        spawn(
            &[
                "agent",
                "--server",
                server,
                "--token",
                &self.agent_token,
                "--name",
                name,
                "-c",
                &c,
                "--work-dir",
                work.to_str().expect("utf-8"),
            ],
            self.dir.path(),
            Stdio::null(),
        )
    }

    /// An agent with its own labels, token and local cache folder (a machine of its own).
    fn agent_on(&self, name: &str, labels: &str, token: &str, server: &str) -> Proc {
        let work = self.dir.path().join("agents").join(name);
        let mut cmd = Command::new("setsid");
        cmd.arg(PIPE);
        agent_command(
            &mut cmd,
            &work,
            name,
            labels,
            token,
            server,
            self.dir.path(),
        );
        Proc {
            child: cmd.spawn().expect("spawn agent"),
        }
    }

    fn user(&self) -> Client {
        Client::new(&self.url, &self.user_token)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }

    fn submit(&self, workflow: &str, extra: &[&str]) -> i64 {
        let mut args = vec![
            "submit",
            "--server",
            &self.url,
            "--token",
            &self.user_token,
            "-W",
            workflow,
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = pipe_out(&args, self.dir.path(), &[]);
        assert_eq!(code, Some(0), "{err}");
        out.trim().parse().expect("run id")
    }

    fn wait_run(&self, run: i64, timeout: Duration) -> RunStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(st) = self.user().run(run)
                && st.state == "done"
            {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "run {run} did not finish: {:?}\n{}",
                self.user().run(run),
                std::fs::read_to_string(self.dir.path().join("processes.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn sql(&self, query: &str) -> String {
        let out = Command::new("psql")
            .args(["-At", &self.db_url, "-c", query])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// The arguments and environment of a `pipe agent` with its own state and cache folders.
fn agent_command(
    cmd: &mut Command,
    work: &Path,
    name: &str,
    labels: &str,
    token: &str,
    server: &str,
    dir: &Path,
) {
    cmd.args([
        "agent", "--server", server, "--token", token, "--name", name,
    ])
    .args(["--labels", labels, "-c", "1", "--work-dir"])
    .arg(work)
    .current_dir(dir)
    .env("NO_COLOR", "1")
    .env("PIPE_STATE_DIR", work.join("state"))
    .env("PIPE_CACHE_DIR", work.join("cache"))
    .env("PIPE_LOG", "info")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::from(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("agent-{name}.log")))
            .expect("log file"),
    ));
}

fn cluster() -> Option<&'static PgCluster> {
    let c = PgCluster::shared();
    if c.is_none() {
        eprintln!("skipping: PostgreSQL is not installed");
    }
    c
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

const PIPELINE: &str = r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      version: ${{ steps.v.outputs.version }}
    steps:
      - id: v
        run: |
          echo "version=1.2.3" >> "$GITHUB_OUTPUT"
          echo "deploying with ${{ secrets.DEPLOY_KEY }}"
  test:
    needs: build
    runs-on: ubuntu-latest
    strategy:
      matrix:
        shard: [1, 2]
    steps:
      - run: echo "shard ${{ matrix.shard }} tests ${{ needs.build.outputs.version }}"
  skipped:
    needs: test
    if: failure()
    runs-on: ubuntu-latest
    steps:
      - run: echo never
  report:
    needs: [build, test]
    runs-on: ubuntu-latest
    steps:
      - run: echo "report for ${{ needs.build.outputs.version }} after ${{ needs.test.result }}"
"#;

#[test]
fn a_workflow_runs_across_agents_with_needs_outputs_and_masked_logs() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let _a = f.agent("a", 2, &f.url);
    let _b = f.agent("b", 1, &f.url);
    let wf = f.write(".github/workflows/ci.yml", PIPELINE);
    let (code, out, err) = pipe_out(
        &[
            "submit",
            "--server",
            &f.url,
            "--token",
            &f.user_token,
            "-W",
            wf.to_str().expect("utf-8"),
            "-s",
            "DEPLOY_KEY=s3cr3t-k3y-value",
            "--wait",
            "--json",
        ],
        f.path(),
        &[],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    let runs: serde_json::Value = serde_json::from_str(&out).expect("json");
    // The answer matches the API document.
    let doc: serde_json::Value =
        serde_json::from_str(pipe_server::http::OPENAPI).expect("openapi.json");
    let mut schema = doc["components"]["schemas"]["RunStatus"].clone();
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&schema).expect("valid schema");
    assert!(
        validator.is_valid(&runs[0]),
        "{:?}",
        validator
            .iter_errors(&runs[0])
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    let st: RunStatus = serde_json::from_value(runs[0].clone()).expect("run");
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    let result = |k: &str| {
        st.jobs
            .iter()
            .find(|j| j.key == k)
            .and_then(|j| j.result.clone())
            .expect("job")
    };
    assert_eq!(
        [
            result("build"),
            result("test"),
            result("skipped"),
            result("report")
        ],
        ["success", "success", "skipped", "success"]
    );
    let build = &st.jobs[0];
    assert_eq!(build.outputs["version"], "1.2.3");
    let user = f.user();
    let build_log = user.log(build.id).expect("log");
    assert!(build_log.contains("deploying with ***"), "{build_log}");
    assert!(!build_log.contains("s3cr3t-k3y-value"));
    // Each matrix leg is a job row of its own, with its own log.
    let legs: Vec<_> = st.jobs.iter().filter(|j| j.key == "test").collect();
    assert_eq!(legs.len(), 2, "{:?}", st.jobs);
    let test_log = user.log(legs[0].id).expect("log");
    assert!(test_log.contains("shard 1 tests 1.2.3"), "{test_log}");
    let test_log = user.log(legs[1].id).expect("log");
    assert!(test_log.contains("shard 2 tests 1.2.3"), "{test_log}");
    let report = st.jobs.iter().find(|j| j.key == "report").expect("report");
    let report_log = user.log(report.id).expect("log");
    assert!(
        report_log.contains("report for 1.2.3 after success"),
        "{report_log}"
    );
    // No job ran twice; the secret is in no stored chunk.
    assert_eq!(
        f.sql("SELECT count(*) FROM attempts WHERE outcome <> 'accepted'"),
        "0"
    );
    assert_eq!(
        f.sql("SELECT count(*) FROM log_chunks WHERE data LIKE '%s3cr3t%'"),
        "0"
    );
    // The human summary of `--wait`.
    let (code, out, err) = pipe_out(
        &[
            "submit",
            "--server",
            &f.url,
            "--token",
            &f.user_token,
            "-W",
            wf.to_str().expect("utf-8"),
            "--wait",
        ],
        f.path(),
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    insta::with_settings!({filters => vec![(r"run \d+ ", "run [ID] ")]}, {
        insta::assert_snapshot!("submit_wait", out);
    });
    assert_eq!(
        f.sql("SELECT count(*) FROM tokens WHERE hash LIKE 'pip%'"),
        "0"
    );
}

#[test]
fn bad_tokens_and_invalid_workflows_are_refused() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let wf = f.write(
        ".github/workflows/bad.yml",
        "on: push\njobs:\n  a:\n    needs: nope\n    runs-on: x\n    steps: [{run: 'true'}]\n",
    );
    let (code, _, err) = pipe_out(
        &[
            "submit",
            "--server",
            &f.url,
            "--token",
            &f.user_token,
            "-W",
            wf.to_str().expect("utf-8"),
        ],
        f.path(),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(".github/workflows/bad.yml:4:"), "{err}");
    assert!(err.contains("nope"), "{err}");
    let ok = f.write(
        ".github/workflows/ok.yml",
        "on: push\njobs:\n  a: {runs-on: x, steps: [{run: 'true'}]}\n",
    );
    // An agent token cannot submit.
    let (code, _, err) = pipe_out(
        &[
            "submit",
            "--server",
            &f.url,
            "--token",
            &f.agent_token,
            "-W",
            ok.to_str().expect("utf-8"),
        ],
        f.path(),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("user token"), "{err}");
    let (code, _, err) = pipe_out(&["server"], f.path(), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("PIPE_DATABASE_URL"), "{err}");
}

#[test]
fn an_agent_killed_mid_job_is_requeued_and_the_job_runs_exactly_once_more() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 3_000, &[]);
    let marks = f.path().join("marks");
    let wf = f.write(
        ".github/workflows/slow.yml",
        &format!(
            "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo started >> {m}\n          sleep 3\n          echo finished-by-$PPID >> {m}.done\n",
            m = marks.display()
        ),
    );
    let mut doomed = f.agent("doomed", 1, &f.url);
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    wait_for(
        "the first attempt to start",
        Duration::from_secs(30),
        || lines(&marks).len() == 1,
    );
    doomed.kill_session();
    let _rescuer = f.agent("rescuer", 1, &f.url);
    let st = f.wait_run(run, Duration::from_secs(60));
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    assert_eq!(st.jobs[0].accepted_attempt, Some(2));
    assert_eq!(
        lines(&marks),
        ["started", "started"],
        "ran exactly once more"
    );
    assert_eq!(
        lines(&marks.with_extension("done")).len(),
        1,
        "only the second attempt finished"
    );
    assert_eq!(
        f.sql("SELECT string_agg(attempt || ':' || agent || ':' || outcome, ' ' ORDER BY attempt) FROM attempts"),
        "1:doomed:lost 2:rescuer:accepted"
    );
}

/// Complete-and-claim-next over HTTP: the completion's answer carries the agent's next job;
/// when the agent dies before it runs that job, the lease expires, the job is re-queued and
/// another agent runs it once more; the dead agent's late result is refused.
#[test]
fn a_completion_hands_out_the_next_job_and_an_agent_dying_before_running_it_loses_nothing() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 1_500, &[]);
    let wf = f.write(
        ".github/workflows/n.yml",
        "on: push\njobs:\n  a: {runs-on: self-hosted, steps: [{run: 'true'}]}\n  b: {runs-on: self-hosted, steps: [{run: 'true'}]}\n  c: {needs: a, runs-on: self-hosted, steps: [{run: 'echo ${{ needs.a.result }}'}]}\n",
    );
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    let agent = Client::new(&f.url, &f.agent_token);
    let labels = vec!["self-hosted".to_owned()];
    let a = agent
        .claim(&pipe_server::api::ClaimRequest {
            agent: "dies".into(),
            labels: labels.clone(),
            slots: None,
            wait_ms: Some(2_000),
        })
        .expect("claim")
        .jobs
        .remove(0);
    assert_eq!(a.job_key, "a");
    let req = pipe_server::api::CompleteRequest {
        result: "success".into(),
        outputs: Default::default(),
        next: Some(pipe_server::api::NextClaim {
            agent: "dies".into(),
            labels,
            slots: Some(1),
        }),
    };
    let answer = agent
        .with_token(&a.token)
        .complete(a.job_id, a.attempt, &req)
        .expect("complete");
    assert!(answer.recorded);
    assert_eq!(answer.jobs.len(), 1, "{answer:?}");
    let b = &answer.jobs[0];
    assert_eq!((b.job_key.as_str(), b.attempt), ("b", 1));
    assert!(b.cache_path.is_some(), "a next job has its cache grant");
    // A retried completion (the answer was lost) leases nothing more.
    let retried = agent
        .with_token(&a.token)
        .complete(a.job_id, a.attempt, &req)
        .expect("retry");
    assert!(!retried.recorded && retried.jobs.is_empty(), "{retried:?}");
    // The agent died before running `b`; a real agent runs what is left.
    let _rescuer = f.agent("rescuer", 2, &f.url);
    let st = f.wait_run(run, Duration::from_secs(60));
    assert_eq!(st.conclusion.as_deref(), Some("success"), "{st:?}");
    assert_eq!(
        f.sql(
            "SELECT string_agg(j.job_key || ':' || a.attempt || ':' || a.agent || ':' || a.outcome, ' '
                    ORDER BY j.job_key, a.attempt)
             FROM attempts a JOIN jobs j ON j.id = a.job_id"
        ),
        "a:1:dies:accepted b:1:dies:lost b:2:rescuer:accepted c:1:rescuer:accepted"
    );
    let late = agent
        .with_token(&b.token)
        .complete(b.job_id, b.attempt, &req)
        .expect_err("fenced");
    assert!(late.fenced(), "{late}");
}

/// A TCP proxy that can cut every connection and refuse new ones.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let c = cut.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    let c = c.clone();
                    std::thread::spawn(move || {
                        let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
                        let mut buf = [0u8; 16384];
                        loop {
                            if c.load(Ordering::SeqCst) {
                                let _ = from.shutdown(std::net::Shutdown::Both);
                                let _ = to.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => {
                                    let _ = to.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        std::io::ErrorKind::WouldBlock
                                            | std::io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        Proxy { port, cut }
    }
}

#[test]
fn an_agent_cut_off_from_the_network_is_fenced_and_its_late_result_refused() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 3_000, &[]);
    let proxy = Proxy::start(f.port);
    let marks = f.path().join("marks");
    let wf = f.write(
        ".github/workflows/slow.yml",
        &format!(
            "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo started >> {m}\n          sleep 6\n          echo finished >> {m}.done\n",
            m = marks.display()
        ),
    );
    let mut isolated = f.agent("isolated", 1, &format!("http://127.0.0.1:{}", proxy.port));
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    wait_for(
        "the first attempt to start",
        Duration::from_secs(30),
        || lines(&marks).len() == 1,
    );
    proxy.cut.store(true, Ordering::SeqCst);
    let _other = f.agent("other", 1, &f.url);
    wait_for(
        "the second attempt to start",
        Duration::from_secs(30),
        || lines(&marks).len() == 2,
    );
    // The network comes back while both attempts exist: the isolated agent is fenced.
    proxy.cut.store(false, Ordering::SeqCst);
    let st = f.wait_run(run, Duration::from_secs(60));
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    assert_eq!(st.jobs[0].accepted_attempt, Some(2));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        f.sql("SELECT string_agg(attempt || ':' || agent || ':' || outcome, ' ' ORDER BY attempt) FROM attempts"),
        "1:isolated:lost 2:other:accepted"
    );
    // The fenced agent dropped the job and lives on.
    assert!(
        isolated.child.try_wait().expect("wait").is_none(),
        "the isolated agent exited"
    );
}

#[test]
fn run_takes_the_results_of_needs_that_ran_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = dir.path().join("wf.yml");
    std::fs::write(
        &wf,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    outputs: {v: '${{ steps.s.outputs.v }}'}\n    steps: [{id: s, run: echo v=local >> $GITHUB_OUTPUT}]\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"a said ${{ needs.a.outputs.v }} with ${{ needs.a.result }}\"\n  c:\n    needs: a\n    runs-on: ubuntu-latest\n    steps: [{run: echo c ran}]\n",
    )
    .expect("write");
    let needs = dir.path().join("needs.json");
    std::fs::write(
        &needs,
        r#"{"a": {"result": "success", "outputs": {"v": "remote"}}}"#,
    )
    .expect("write");
    let (code, out, err) = pipe_out(
        &[
            "run",
            "-W",
            "wf.yml",
            "-j",
            "b",
            "--no-deps",
            "--needs-results",
            "needs.json",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains("a said remote with success"),
        "{out}{err}"
    );
    // A failed need skips its dependants, as on GitHub.
    std::fs::write(&needs, r#"{"a": {"result": "failure"}}"#).expect("write");
    let (code, out, err) = pipe_out(
        &[
            "run",
            "-W",
            "wf.yml",
            "-j",
            "c",
            "--no-deps",
            "--needs-results",
            "needs.json",
        ],
        dir.path(),
        &[],
    );
    assert!(!format!("{out}{err}").contains("c ran"), "{out}{err}");
    assert_eq!(
        code,
        Some(0),
        "a skipped job is no failure of its own: {out}{err}"
    );
    std::fs::write(&needs, r#"{"a": {"result": "bogus"}}"#).expect("write");
    let (code, _, err) = pipe_out(
        &[
            "run",
            "-W",
            "wf.yml",
            "-j",
            "c",
            "--no-deps",
            "--needs-results",
            "needs.json",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown result `bogus`"), "{err}");
}

#[test]
fn sigterm_drains_an_agent() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let marks = f.path().join("marks");
    let wf = f.write(
        ".github/workflows/two.yml",
        &format!(
            "on: push\njobs:\n  first:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo started >> {m}; sleep 2; echo finished >> {m}\n  second:\n    needs: first\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo second >> {m}\n",
            m = marks.display()
        ),
    );
    let mut agent = f.agent("drainer", 1, &f.url);
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    wait_for("the job to start", Duration::from_secs(30), || {
        lines(&marks).len() == 1
    });
    agent.signal("-TERM");
    assert_eq!(agent.wait_exit(Duration::from_secs(30)), Some(143));
    assert_eq!(
        lines(&marks),
        ["started", "finished"],
        "the running job finished; no new one was taken"
    );
    let st = f.user().run(run).expect("status");
    assert_eq!(st.jobs[0].result.as_deref(), Some("success"));
    assert_eq!(st.jobs[1].state, "queued");
}

#[test]
fn restarting_the_server_and_postgres_during_1000_jobs_loses_nothing() {
    if PgCluster::shared().is_none() {
        return;
    }
    let own = PgCluster::start_new().expect("cluster");
    let mut f = Fixture::new(&own, 5_000, &[]);
    let mut wf = String::from("on: push\njobs:\n");
    for i in 0..100 {
        wf.push_str(&format!(
            "  j{i}:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"line of ${{{{ github.job }}}} in run $GITHUB_RUN_ID\"\n"
        ));
    }
    let path = f.write(".github/workflows/many.yml", &wf);
    let agents: Vec<Proc> = (0..4)
        .map(|i| f.agent(&format!("a{i}"), 2, &f.url))
        .collect();
    let runs: Vec<i64> = (0..10)
        .map(|_| f.submit(path.to_str().expect("utf-8"), &[]))
        .collect();
    let done = |f: &Fixture| {
        f.sql("SELECT count(*) FROM jobs WHERE state = 'done'")
            .parse::<usize>()
            .unwrap_or(0)
    };
    wait_for("100 jobs", Duration::from_secs(120), || done(&f) >= 100);
    // The server dies and comes back on the same address.
    if let Some(mut s) = f.server.take() {
        s.kill_session();
    }
    std::thread::sleep(Duration::from_millis(500));
    f.start_server(&[]);
    wait_for("400 jobs", Duration::from_secs(180), || done(&f) >= 400);
    // PostgreSQL restarts (fast shutdown), with agents mid-job.
    own.stop();
    std::thread::sleep(Duration::from_millis(500));
    own.start().expect("restart postgres");
    for run in &runs {
        let st = f.wait_run(*run, Duration::from_secs(400));
        assert_eq!(st.conclusion.as_deref(), Some("success"), "{st:?}");
    }
    drop(agents);
    assert_eq!(
        f.sql("SELECT count(*) FROM jobs WHERE state = 'done' AND result = 'success'"),
        "1000"
    );
    // Exactly one accepted result per job.
    assert_eq!(
        f.sql("SELECT count(*) FROM (SELECT job_id FROM attempts WHERE outcome = 'accepted' GROUP BY job_id HAVING count(*) = 1) s"),
        "1000"
    );
    assert_eq!(
        f.sql("SELECT count(*) FROM jobs WHERE accepted_attempt IS NULL"),
        "0"
    );
    // No log lost: every job's accepted attempt has its own line.
    assert_eq!(
        f.sql("SELECT count(*) FROM jobs j WHERE EXISTS (SELECT 1 FROM log_chunks c WHERE c.job_id = j.id AND c.attempt = j.accepted_attempt AND c.data LIKE '%line of ' || j.job_key || ' in run %')"),
        "1000"
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const PUSHED: &str = "on: push\njobs:\n  hello:\n    runs-on: ubuntu-latest\n    steps:\n      - run: cat greeting.txt\n";

fn work_repo(f: &Fixture) -> PathBuf {
    let work = f.path().join("work");
    std::fs::create_dir_all(work.join(".github/workflows")).expect("mkdir");
    std::fs::write(work.join(".github/workflows/ci.yml"), PUSHED).expect("write");
    std::fs::write(work.join("greeting.txt"), "hello from the pushed tree\n").expect("write");
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "first"]);
    work
}

#[test]
fn a_push_to_a_bare_repository_runs_its_workflow_through_the_post_receive_hook() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let bare = f.path().join("origin.git");
    git(
        f.path(),
        &["init", "-q", "--bare", bare.to_str().expect("utf-8")],
    );
    let hook = bare.join("hooks/post-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nwhile read old new ref; do\n  \"{PIPE}\" submit --server {} --token {} --git-dir \"$PWD\" --sha \"$new\" --ref \"$ref\"\ndone\n",
            f.url, f.user_token
        ),
    )
    .expect("hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _agent = f.agent("a", 1, &f.url);
    let work = work_repo(&f);
    let out = Command::new("git")
        .args(["push", "-q", bare.to_str().expect("utf-8"), "main"])
        .current_dir(&work)
        .output()
        .expect("push");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let run: i64 = said
        .lines()
        .find_map(|l| {
            l.strip_prefix("remote: ")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("the hook printed no run id: {said}"));
    let st = f.wait_run(run, Duration::from_secs(60));
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    let log = f.user().log(st.jobs[0].id).expect("log");
    assert!(log.contains("hello from the pushed tree"), "{log}");
}

#[test]
fn a_signed_github_webhook_starts_a_run_and_a_bad_signature_is_refused() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &["--webhook-secret", "hook-secret"]);
    let _agent = f.agent("a", 1, &f.url);
    let work = work_repo(&f);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    let body = serde_json::json!({
        "ref": "refs/heads/main",
        "after": sha,
        "repository": {"clone_url": work.to_str().expect("utf-8")},
    })
    .to_string();
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let post = |sig: &str, delivery: &str| {
        let mut r = http
            .post(format!("{}/api/v1/webhooks/github", f.url))
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", delivery)
            .header("X-Hub-Signature-256", sig)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .expect("post");
        let code = r.status().as_u16();
        (code, r.body_mut().read_to_string().expect("body"))
    };
    let forged = pipe_server::secret::sign(b"wrong-secret", body.as_bytes());
    let (code, text) = post(&forged, "d1");
    assert_eq!(code, 401, "{text}");
    let sig = pipe_server::secret::sign(b"hook-secret", body.as_bytes());
    let (code, text) = post(&sig, "d2");
    assert_eq!(code, 201, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let run = v["runs"][0].as_i64().expect("run id");
    // A redelivery of the same event does not start a second run.
    let (_, again) = post(&sig, "d2");
    let again: serde_json::Value = serde_json::from_str(&again).expect("json");
    assert_eq!(again["runs"][0].as_i64(), Some(run));
    let st = f.wait_run(run, Duration::from_secs(60));
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    let log = f.user().log(st.jobs[0].id).expect("log");
    assert!(log.contains("hello from the pushed tree"), "{log}");
}

#[test]
fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let Some(cluster) = cluster() else { return };
    let st = Command::new("schemathesis").arg("--version").output();
    if !st.is_ok_and(|o| o.status.success()) {
        assert!(
            !crate::common::in_ci(),
            "schemathesis is required when CI=true"
        );
        eprintln!("skipping: schemathesis is not installed");
        return;
    }
    let f = Fixture::new(cluster, 10_000, &["--webhook-secret", "s"]);
    // Some data for the read endpoints.
    let wf = f.write(
        ".github/workflows/a.yml",
        "on: push\njobs:\n  a: {runs-on: x, steps: [{run: 'true'}]}\n",
    );
    f.submit(wf.to_str().expect("utf-8"), &[]);
    let out = Command::new("schemathesis")
        .args(["run", &format!("{}/openapi.json", f.url)])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        .args(["--header", &format!("Authorization: Bearer {}", f.user_token)])
        .args(["--max-examples", "30", "--workers", "1", "--phases", "examples,coverage,fuzzing"])
        .current_dir(f.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
}

#[test]
fn cancelling_a_run_stops_its_running_job_and_its_queued_ones() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 3_000, &[]);
    let marks = f.path().join("marks");
    let wf = f.write(
        ".github/workflows/long.yml",
        &format!(
            "on: push\njobs:\n  long:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo started >> {m}; sleep 60; echo finished >> {m}\n  after:\n    needs: long\n    if: always()\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo after >> {m}\n",
            m = marks.display()
        ),
    );
    let _agent = f.agent("a", 1, &f.url);
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    wait_for("the job to start", Duration::from_secs(30), || {
        lines(&marks).len() == 1
    });
    let started = Instant::now();
    f.user().cancel(run).expect("cancel");
    let st = f.wait_run(run, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the job was not stopped"
    );
    assert_eq!(st.conclusion.as_deref(), Some("cancelled"));
    assert_eq!(st.jobs[0].result.as_deref(), Some("cancelled"));
    assert_eq!(st.jobs[1].result.as_deref(), Some("cancelled"));
    assert_eq!(lines(&marks), ["started"]);
}

#[test]
fn public_endpoints_are_rate_limited() {
    let Some(cluster) = cluster() else { return };
    let mut f = Fixture::new(cluster, 10_000, &[]);
    if let Some(mut s) = f.server.take() {
        s.kill_session();
    }
    // The fixture's server has no limit; this one allows 2 requests a second (bursts of 4).
    f.port = free_port();
    f.url = format!("http://127.0.0.1:{}", f.port);
    let listen = format!("127.0.0.1:{}", f.port);
    let mut p = spawn(
        &[
            "server",
            "--database",
            &f.db_url,
            "--listen",
            &listen,
            "--rate-limit",
            "2",
        ],
        f.path(),
        Stdio::piped(),
    );
    let mut line = String::new();
    BufReader::new(p.child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let codes: Vec<u16> = (0..12)
        .map(|_| match f.user().run(1) {
            Ok(_) => 200,
            Err(pipe_server::client::ClientError::Status { status, .. }) => status,
            Err(e) => panic!("{e}"),
        })
        .collect();
    assert!(codes.contains(&429), "{codes:?}");
    assert!(
        codes.iter().filter(|&&c| c == 429).count() >= 6,
        "{codes:?}"
    );
    // Agents' job calls are not limited: a claim still answers.
    let agent = Client::new(&f.url, &f.agent_token);
    for _ in 0..10 {
        agent
            .claim(&pipe_server::api::ClaimRequest {
                agent: "x".into(),
                labels: vec![],
                slots: None,
                wait_ms: None,
            })
            .expect("claim is not rate limited");
    }
}

#[test]
fn an_agent_runs_a_job_in_a_container_with_the_docker_executor() {
    let Some(cluster) = cluster() else { return };
    if !crate::docker::docker_available() {
        return;
    }
    crate::docker::ensure_images();
    let f = Fixture::new(cluster, 10_000, &[]);
    let wf = f.write(
        ".github/workflows/boxed.yml",
        "on: push\njobs:\n  boxed:\n    runs-on: ubuntu-latest\n    outputs:\n      init: ${{ steps.s.outputs.init }}\n    steps:\n      - id: s\n        run: echo \"init=$(cat /proc/1/cmdline | tr '\\0' ' ')\" >> \"$GITHUB_OUTPUT\"\n",
    );
    let work = f.path().join("agents/docker");
    let map = format!("ubuntu-latest={}", crate::docker::BASH);
    let _agent = spawn(
        &[
            "agent",
            "--server",
            &f.url,
            "--token",
            &f.agent_token,
            "--name",
            "docker",
            "--work-dir",
            work.to_str().expect("utf-8"),
            "-P",
            &map,
        ],
        f.path(),
        Stdio::null(),
    );
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    let st = f.wait_run(run, Duration::from_secs(120));
    let log = f.user().log(st.jobs[0].id).expect("log");
    assert_eq!(st.conclusion.as_deref(), Some("success"), "{log}");
    // PID 1 is the job container's keep-alive process, not the host's init.
    let init = &st.jobs[0].outputs["init"];
    assert!(
        !init.contains("systemd") && !init.contains("/sbin/init"),
        "{init}"
    );
    assert!(!init.is_empty());
}

#[test]
fn the_server_speaks_tls_when_configured_and_clients_trust_pipe_ca_cert() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let (cert, key) = (f.path().join("cert.pem"), f.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(!crate::common::in_ci(), "openssl is required when CI=true");
        eprintln!("skipping: openssl could not make a certificate");
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut tls = spawn(
        &[
            "server",
            "--database",
            &f.db_url,
            "--listen",
            &listen,
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
        f.path(),
        Stdio::piped(),
    );
    let mut line = String::new();
    BufReader::new(tls.child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    let url = format!("https://127.0.0.1:{port}");
    assert_eq!(line.trim(), format!("listening on {url}"));
    // An agent and a submit over HTTPS, trusting the server's certificate.
    let ca = cert.to_str().expect("utf-8");
    let work = f.path().join("agents/tls");
    let _agent = Proc {
        child: Command::new("setsid")
            .arg(PIPE)
            .args([
                "agent",
                "--server",
                &url,
                "--token",
                &f.agent_token,
                "--name",
                "tls",
            ])
            .arg("--work-dir")
            .arg(&work)
            .env("PIPE_CA_CERT", ca)
            .env("PIPE_STATE_DIR", f.path().join("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    };
    let wf = f.write(
        ".github/workflows/tls.yml",
        "on: push\njobs:\n  a: {runs-on: ubuntu-latest, steps: [{run: echo over tls}]}\n",
    );
    let (code, out, err) = pipe_out(
        &[
            "submit",
            "--server",
            &url,
            "--token",
            &f.user_token,
            "-W",
            wf.to_str().expect("utf-8"),
            "--wait",
        ],
        f.path(),
        &[("PIPE_CA_CERT", ca)],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("a success"), "{out}");
    // Without the CA the certificate is refused; plain HTTP gets no answer.
    let (code, _, err) = pipe_out(
        &[
            "submit",
            "--server",
            &url,
            "--token",
            &f.user_token,
            "-W",
            wf.to_str().expect("utf-8"),
        ],
        f.path(),
        &[("PIPE_CA_CERT", "/nonexistent")],
    );
    assert_eq!(code, Some(3), "{err}");
    let plain = Client::new(&format!("http://127.0.0.1:{port}"), &f.user_token);
    assert!(plain.run(1).is_err());
}

/// A token of its own for one agent.
fn agent_token(f: &Fixture, name: &str) -> String {
    let env = [("PIPE_DATABASE_URL", f.db_url.as_str())];
    let (code, out, err) = pipe_out(
        &["server", "token", "--kind", "agent", "--name", name],
        f.path(),
        &env,
    );
    assert_eq!(code, Some(0), "{err}");
    out.trim().to_owned()
}

fn agent_log(f: &Fixture, name: &str) -> String {
    std::fs::read_to_string(f.path().join(format!("agent-{name}.log"))).unwrap_or_default()
}

#[test]
fn secrets_are_sealed_at_rest_and_delivered_only_to_jobs_that_read_them() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let wf = f.write(
        ".github/workflows/s.yml",
        "on: push\njobs:\n  reads:\n    runs-on: [self-hosted]\n    steps: [{run: 'echo ${{ secrets.API_KEY }}'}]\n  reads-not:\n    runs-on: [self-hosted]\n    steps: [{run: 'echo nothing secret'}]\n",
    );
    let run = f.submit(
        wf.to_str().expect("utf-8"),
        &["-s", "API_KEY=pl41nt3xt-v4lu3", "-s", "OTHER=0th3r-v4lu3"],
    );
    // The database row holds sealed values only.
    let row = f.sql(&format!("SELECT secrets::text FROM runs WHERE id = {run}"));
    assert!(row.contains("pipe1:"), "{row}");
    assert!(
        !row.contains("pl41nt3xt") && !row.contains("0th3r"),
        "{row}"
    );
    assert_eq!(
        f.sql("SELECT count(*) FROM runs WHERE secrets::text LIKE '%v4lu3%'"),
        "0"
    );
    // The server key file was created private.
    use std::os::unix::fs::PermissionsExt;
    let key = f.path().join("state").join("server").join("server.key");
    let mode = std::fs::metadata(&key)
        .expect("server.key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    // Claiming as an agent: each job receives only the secrets it reads.
    let agent = Client::new(&f.url, &f.agent_token);
    let claimed = agent
        .claim(&pipe_server::api::ClaimRequest {
            agent: "probe".into(),
            labels: vec!["self-hosted".into()],
            slots: Some(2),
            wait_ms: Some(2_000),
        })
        .expect("claim")
        .jobs;
    assert_eq!(claimed.len(), 2);
    for job in &claimed {
        let want: Vec<(&str, &str)> = match job.job_key.as_str() {
            "reads" => vec![("API_KEY", "pl41nt3xt-v4lu3")],
            _ => vec![],
        };
        let got: Vec<(&str, &str)> = job
            .secrets
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want, "job `{}`", job.job_key);
    }
    // The log is masked with the opened secrets before it is stored.
    let reads = claimed
        .iter()
        .find(|j| j.job_key == "reads")
        .expect("reads");
    let jc = agent.with_token(&reads.token);
    jc.append_log(
        reads.job_id,
        reads.attempt,
        0,
        b"key pl41nt3xt-v4lu3 and 0th3r-v4lu3\n",
    )
    .expect("log");
    let log = f.user().log(reads.job_id).expect("log");
    assert_eq!(log, "key *** and ***\n");
}

#[test]
fn a_revoked_agent_token_gets_401_and_its_agent_stops_and_its_job_runs_elsewhere() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let marks = f.path().join("marks");
    let wf = f.write(
        ".github/workflows/slow.yml",
        &format!(
            "on: push\njobs:\n  slow:\n    runs-on: [self-hosted]\n    steps:\n      - run: |\n          echo started >> {m}\n          sleep 4\n          echo finished >> {m}.done\n",
            m = marks.display()
        ),
    );
    let doomed_token = agent_token(&f, "doomed-machine");
    let mut doomed = f.agent_on("doomed", "self-hosted", &doomed_token, &f.url);
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    wait_for("the job to start", Duration::from_secs(30), || {
        lines(&marks).len() == 1
    });
    let env = [("PIPE_DATABASE_URL", f.db_url.as_str())];
    let (code, _, err) = pipe_out(
        &["server", "token", "revoke", "doomed-machine"],
        f.path(),
        &env,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("revoked token"), "{err}");
    // The agent is refused at its next claim and stops; its job was re-queued at once.
    let code = doomed.wait_exit(Duration::from_secs(30));
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}");
    assert!(
        agent_log(&f, "doomed").contains("refused the agent token"),
        "{}",
        agent_log(&f, "doomed")
    );
    let probe = Client::new(&f.url, &doomed_token).claim(&pipe_server::api::ClaimRequest {
        agent: "x".into(),
        labels: vec![],
        slots: None,
        wait_ms: None,
    });
    assert!(
        matches!(
            probe,
            Err(pipe_server::client::ClientError::Status { status: 401, .. })
        ),
        "{probe:?}"
    );
    let rescuer_token = agent_token(&f, "rescuer-machine");
    let _rescuer = f.agent_on("rescuer", "self-hosted", &rescuer_token, &f.url);
    let st = f.wait_run(run, Duration::from_secs(60));
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    assert_eq!(st.jobs[0].accepted_attempt, Some(2));
    assert_eq!(
        f.sql("SELECT string_agg(attempt || ':' || agent || ':' || outcome, ' ' ORDER BY attempt) FROM attempts"),
        "1:doomed:lost 2:rescuer:accepted"
    );
    // The listing shows who holds which token and which are revoked, never a token.
    let (code, out, err) = pipe_out(&["server", "token", "list", "--json"], f.path(), &env);
    assert_eq!(code, Some(0), "{err}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    let by_name = |n: &str| {
        list.iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {out}"))
            .clone()
    };
    assert!(by_name("doomed-machine")["revoked"].is_string(), "{out}");
    assert!(by_name("rescuer-machine")["revoked"].is_null(), "{out}");
    assert!(
        !out.contains(&doomed_token) && !out.contains("pipa_"),
        "{out}"
    );
    let (code, _, err) = pipe_out(&["server", "token", "revoke", "nobody"], f.path(), &env);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("pipe server token list"), "{err}");
}

#[test]
fn a_job_on_agent_two_reads_the_artifact_a_job_on_agent_one_uploaded_and_the_cache_is_shared() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let wf = f.write(
        ".github/workflows/art.yml",
        "on: push\njobs:\n  make:\n    runs-on: [self-hosted, one]\n    steps:\n      - run: mkdir -p out/sub && echo built-on-one > out/a.txt && echo nested > out/sub/b.txt\n      - uses: actions/upload-artifact@v4\n        with: {name: bundle, path: out}\n  use:\n    needs: make\n    runs-on: [self-hosted, two]\n    steps:\n      - uses: actions/download-artifact@v4\n        with: {name: bundle, path: got}\n      - run: |\n          echo \"read $(cat got/a.txt) and $(cat got/sub/b.txt)\"\n",
    );
    let t1 = agent_token(&f, "one");
    let t2 = agent_token(&f, "two");
    let _a1 = f.agent_on("one", "self-hosted,one", &t1, &f.url);
    let _a2 = f.agent_on("two", "self-hosted,two", &t2, &f.url);
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    let st = f.wait_run(run, Duration::from_secs(90));
    let use_job = st.jobs.iter().find(|j| j.key == "use").expect("use");
    let log = f.user().log(use_job.id).expect("log");
    assert_eq!(
        st.conclusion.as_deref(),
        Some("success"),
        "{log}\n{}",
        agent_log(&f, "two")
    );
    assert!(log.contains("read built-on-one and nested"), "{log}");
    assert_eq!(
        f.sql("SELECT string_agg(agent, ',' ORDER BY job_id) FROM attempts"),
        "one,two"
    );
    // The server lists the artifact; its files are blobs on the server's disk by SHA-256.
    let list = f.user().run_artifacts(run).expect("artifacts");
    assert_eq!(list.artifacts.len(), 1);
    let a = &list.artifacts[0];
    assert_eq!(a.name, "bundle");
    let mut paths: Vec<&str> = a.files.iter().map(|f| f.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["a.txt", "sub/b.txt"]);
    let file = a.files.iter().find(|f| f.path == "a.txt").expect("a.txt");
    let blob = f
        .path()
        .join("state/server/blobs/sha256")
        .join(&file.digest[..2])
        .join(&file.digest);
    assert_eq!(
        std::fs::read_to_string(&blob).expect("blob"),
        "built-on-one\n"
    );
    // The web UI's run page lists the artifact and serves its files by digest.
    let curl = |url: &str| -> (String, String) {
        let out = Command::new("curl")
            .args(["-s", "-D", "-", "-H"])
            .arg(format!("Authorization: Bearer {}", f.user_token))
            .arg(url)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.to_owned(), body.to_owned())
    };
    let (_, page) = curl(&format!("{}/ui/runs/{run}", f.url));
    let link = format!("/ui/runs/{run}/blobs/{}?file=a.txt", file.digest);
    assert!(
        page.contains("id=\"artifacts\"") && page.contains("bundle"),
        "{page}"
    );
    assert!(page.contains(&link) && page.contains("sub/b.txt"), "{page}");
    let (head, body) = curl(&format!("{}{link}", f.url));
    assert_eq!(body, "built-on-one\n", "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-disposition: attachment; filename=\"a.txt\""),
        "{head}"
    );
    // A digest that is not a file of this run is not served.
    let (head, _) = curl(&format!(
        "{}/ui/runs/{}/blobs/{}",
        f.url,
        run + 1,
        file.digest
    ));
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // The step cache goes through the server: a cached step that ran on agent one is a hit
    // on agent two, whose own cache folder is empty.
    let counts = f.path().join("counts");
    let cached = |machine: &str| {
        f.write(
            &format!(".github/workflows/cached-{machine}.yml"),
            &format!(
                "on: push\njobs:\n  c:\n    runs-on: [self-hosted, {machine}]\n    steps:\n      - run: echo ran >> {c}; echo cached-output > result.txt\n        cache:\n          outputs: [result.txt]\n      - run: cat result.txt\n      - uses: actions/cache@v4\n        with: {{path: data, key: fixed-key-1}}\n      - run: test -f data/x || {{ mkdir -p data; echo v > data/x; echo made >> {c}.actions; }}\n",
                c = counts.display()
            ),
        )
    };
    let first = f.submit(cached("one").to_str().expect("utf-8"), &[]);
    let st = f.wait_run(first, Duration::from_secs(60));
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    assert_eq!(lines(&counts).len(), 1);
    let second = f.submit(cached("two").to_str().expect("utf-8"), &[]);
    let st = f.wait_run(second, Duration::from_secs(60));
    let log = f.user().log(st.jobs[0].id).expect("log");
    assert_eq!(st.conclusion.as_deref(), Some("success"), "{log}");
    assert_eq!(lines(&counts).len(), 1, "the step ran again:\n{log}");
    // `actions/cache` too: agent two restored what agent one saved.
    assert_eq!(lines(&counts.with_extension("actions")), ["made"], "{log}");
    assert!(log.contains("cache hit"), "{log}");
    assert!(log.contains("cached-output"), "{log}");
    assert_eq!(
        f.sql(&format!(
            "SELECT agent FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.run_id = {second}"
        )),
        "two"
    );
    assert_ne!(f.sql("SELECT count(*) FROM cache_ac"), "0");
}

#[test]
fn cache_grants_are_signed_scoped_to_their_run_and_end_with_it() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let wf = f.write(
        ".github/workflows/g.yml",
        "on: push\njobs:\n  a: {runs-on: [self-hosted], steps: [{run: 'true'}]}\n",
    );
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    let agent = Client::new(&f.url, &f.agent_token);
    let job = agent
        .claim(&pipe_server::api::ClaimRequest {
            agent: "probe".into(),
            labels: vec!["self-hosted".into()],
            slots: None,
            wait_ms: Some(2_000),
        })
        .expect("claim")
        .jobs
        .remove(0);
    let path = job.cache_path.clone().expect("a cache path");
    assert!(path.starts_with(&format!("/api/v1/cache/{run}.")), "{path}");
    let http = |method: &str, url: &str, body: &[u8]| -> u16 {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
            .args(["--data-binary", "@-", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().expect("stdin").write_all(body)?;
                c.wait_with_output()
            })
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
    };
    let body = b"cached bytes";
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(body))
    };
    let url = format!("{}{path}/cas/{digest}", f.url);
    assert_eq!(http("PUT", &url, body), 204);
    assert_eq!(http("GET", &url, b""), 200);
    // Content that does not match its name is refused.
    let wrong = format!("{}{path}/cas/{}", f.url, "0".repeat(64));
    assert_eq!(http("PUT", &wrong, body), 422);
    // A tampered grant (another run, a later expiry) is refused.
    let parts: Vec<&str> = path
        .trim_start_matches("/api/v1/cache/")
        .split('.')
        .collect();
    let forged = format!(
        "{}/api/v1/cache/{}.{}.{}.{}/cas/{digest}",
        f.url,
        parts[0],
        parts[1].parse::<u64>().expect("expiry") + 3600,
        parts[2],
        parts[3]
    );
    assert_eq!(http("GET", &forged, b""), 403);
    let other_run = format!(
        "{}/api/v1/cache/{}.{}.{}.{}/cas/{digest}",
        f.url,
        run + 1,
        parts[1],
        parts[2],
        parts[3]
    );
    assert_eq!(http("GET", &other_run, b""), 403);
    // When the run ends, its grant stops working.
    agent
        .with_token(&job.token)
        .complete(
            job.job_id,
            job.attempt,
            &pipe_server::api::CompleteRequest {
                result: "success".into(),
                outputs: Default::default(),
                next: None,
            },
        )
        .expect("complete");
    assert_eq!(http("GET", &url, b""), 403);
}

#[test]
fn matrix_legs_run_on_different_agents_needs_wait_for_all_and_fail_fast_cancels_across_agents() {
    let Some(cluster) = cluster() else { return };
    let f = Fixture::new(cluster, 10_000, &[]);
    let marks = f.path().join("marks");
    let wf = f.write(
        ".github/workflows/m.yml",
        &format!(
            "on: push\njobs:\n  m:\n    runs-on: [self-hosted]\n    strategy:\n      matrix:\n        n: [1, 2, 3]\n    outputs:\n      last: ${{{{ steps.o.outputs.v }}}}\n    steps:\n      - id: o\n        run: |\n          sleep $(( 4 - ${{{{ matrix.n }}}} ))\n          echo \"leg ${{{{ matrix.n }}}} done\" >> {m}\n          echo \"v=${{{{ matrix.n }}}}\" >> \"$GITHUB_OUTPUT\"\n  after:\n    needs: m\n    runs-on: [self-hosted]\n    steps:\n      - run: echo \"after $(wc -l < {m}) legs, result ${{{{ needs.m.result }}}}\"\n",
            m = marks.display()
        ),
    );
    let tokens: Vec<String> = (1..=3).map(|i| agent_token(&f, &format!("m{i}"))).collect();
    let _agents: Vec<Proc> = (1..=3)
        .map(|i| f.agent_on(&format!("m{i}"), "self-hosted", &tokens[i - 1], &f.url))
        .collect();
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    let st = f.wait_run(run, Duration::from_secs(90));
    assert_eq!(st.conclusion.as_deref(), Some("success"), "{st:?}");
    let legs: Vec<_> = st.jobs.iter().filter(|j| j.key == "m").collect();
    assert_eq!(legs.len(), 3, "{st:?}");
    assert_eq!(
        legs.iter().map(|j| j.leg).collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2)]
    );
    // Three legs at once on three agents (each runs one job at a time).
    assert_eq!(
        f.sql(&format!(
            "SELECT count(DISTINCT a.agent) FROM attempts a JOIN jobs j ON j.id = a.job_id
             WHERE j.run_id = {run} AND j.job_key = 'm'"
        )),
        "3"
    );
    let after = st.jobs.iter().find(|j| j.key == "after").expect("after");
    let log = f.user().log(after.id).expect("log");
    assert!(log.contains("after 3 legs, result success"), "{log}");
    // The dependant was queued only when the last leg had finished.
    assert_eq!(
        f.sql(&format!(
            "SELECT (SELECT queued_at FROM jobs WHERE run_id = {run} AND job_key = 'after')
                    >= (SELECT max(finished_at) FROM jobs WHERE run_id = {run} AND job_key = 'm')"
        )),
        "t"
    );

    // Fail-fast: one leg fails quickly; its siblings, running on other agents, are cancelled.
    let wf = f.write(
        ".github/workflows/ff.yml",
        &format!(
            "on: push\njobs:\n  m:\n    runs-on: [self-hosted]\n    strategy:\n      matrix:\n        n: [1, 2, 3]\n    steps:\n      - run: |\n          echo \"start ${{{{ matrix.n }}}}\" >> {m}.ff\n          if [ ${{{{ matrix.n }}}} = 1 ]; then sleep 2; exit 1; fi\n          sleep 60\n  after:\n    needs: m\n    runs-on: [self-hosted]\n    steps: [{{run: 'echo never'}}]\n",
            m = marks.display()
        ),
    );
    let started = Instant::now();
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    let st = f.wait_run(run, Duration::from_secs(60));
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "siblings ran on"
    );
    assert_eq!(st.conclusion.as_deref(), Some("failure"));
    let results: Vec<(Option<i32>, Option<String>)> = st
        .jobs
        .iter()
        .filter(|j| j.key == "m")
        .map(|j| (j.leg, j.result.clone()))
        .collect();
    assert_eq!(
        results,
        [
            (Some(0), Some("failure".to_owned())),
            (Some(1), Some("cancelled".to_owned())),
            (Some(2), Some("cancelled".to_owned())),
        ]
    );
    assert_eq!(
        lines(&marks.with_extension("ff")).len(),
        3,
        "all three legs had started"
    );
    let after = st.jobs.iter().find(|j| j.key == "after").expect("after");
    assert_eq!(after.result.as_deref(), Some("skipped"));
}

/// A network namespace joined to the host by a veth pair; removed when dropped.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

impl Netns {
    /// `None` (skip) without root or `ip`; fails under `CI=true`.
    fn create() -> Option<Netns> {
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        let id = std::process::id() % 10_000;
        let name = format!("pipet{id}");
        let (host_if, ns_if) = (format!("pvh{id}"), format!("pvn{id}"));
        let net = format!("10.213.{}", id % 250);
        let (host_ip, ns_ip) = (format!("{net}.1"), format!("{net}.2"));
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = Command::new("ip").args(["link", "del", &host_if]).status();
        if !ok(&["netns", "add", &name]) {
            assert!(
                !crate::common::in_ci(),
                "network namespaces (root and `ip`) are required when CI=true"
            );
            eprintln!("skipping: cannot create a network namespace (needs root)");
            return None;
        }
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
        };
        for args in [
            vec![
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
            ],
            vec!["link", "set", &ns_if, "netns", &name],
            vec!["addr", "add", &format!("{host_ip}/30"), "dev", &host_if],
            vec!["link", "set", &host_if, "up"],
            vec![
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_ip}/30"),
                "dev",
                &ns_if,
            ],
            vec!["-n", &name, "link", "set", &ns_if, "up"],
            vec!["-n", &name, "link", "set", "lo", "up"],
        ] {
            assert!(ok(&args), "ip {args:?} failed");
        }
        Some(ns)
    }

    fn link(&self, up: bool) {
        let st = Command::new("ip")
            .args(["link", "set", &self.host_if, if up { "up" } else { "down" }])
            .status()
            .expect("ip");
        assert!(st.success());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}

#[test]
fn an_agent_in_a_network_namespace_cut_off_mid_job_is_fenced_and_the_job_runs_once_elsewhere() {
    let Some(cluster) = cluster() else { return };
    let Some(ns) = Netns::create() else { return };
    let mut f = Fixture::new(cluster, 3_000, &[]);
    // A second server (servers are stateless) on the host's end of the veth pair, for the
    // agent in the namespace.
    let port = free_port();
    let listen = format!("{}:{port}", ns.host_ip);
    let mut second = spawn(
        &[
            "server",
            "--database",
            &f.db_url,
            "--listen",
            &listen,
            "--lease-ms",
            "3000",
            "--rate-limit",
            "0",
        ],
        f.path(),
        Stdio::piped(),
    );
    let mut line = String::new();
    BufReader::new(second.child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert!(line.starts_with("listening on http://"), "{line:?}");
    let marks = f.path().join("marks");
    let wf = f.write(
        ".github/workflows/slow.yml",
        &format!(
            "on: push\njobs:\n  slow:\n    runs-on: [self-hosted]\n    steps:\n      - run: |\n          echo started >> {m}\n          sleep 8\n          echo finished >> {m}.done\n",
            m = marks.display()
        ),
    );
    let remote_token = agent_token(&f, "remote");
    let work = f.path().join("agents").join("remote");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, "setsid", PIPE]);
    agent_command(
        &mut cmd,
        &work,
        "remote",
        "self-hosted",
        &remote_token,
        &format!("http://{listen}"),
        f.path(),
    );
    let remote = Proc {
        child: cmd.spawn().expect("agent in the namespace"),
    };
    let run = f.submit(wf.to_str().expect("utf-8"), &[]);
    wait_for(
        "the first attempt to start",
        Duration::from_secs(30),
        || lines(&marks).len() == 1,
    );
    // The remote machine's link goes down mid-job.
    ns.link(false);
    let local_token = agent_token(&f, "local");
    let _local = f.agent_on("local", "self-hosted", &local_token, &f.url);
    wait_for(
        "the second attempt to start",
        Duration::from_secs(30),
        || lines(&marks).len() == 2,
    );
    // The first attempt ends while cut off; the link comes back and its result is refused.
    std::thread::sleep(Duration::from_secs(9));
    ns.link(true);
    let st = f.wait_run(run, Duration::from_secs(60));
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    assert_eq!(st.jobs[0].accepted_attempt, Some(2));
    wait_for(
        "the stale result to be refused",
        Duration::from_secs(60),
        || {
            let log = agent_log(&f, "remote");
            log.contains("the result was refused") || log.contains("the lease was lost")
        },
    );
    assert_eq!(
        f.sql("SELECT string_agg(attempt || ':' || agent || ':' || outcome, ' ' ORDER BY attempt) FROM attempts"),
        "1:remote:lost 2:local:accepted"
    );
    assert_eq!(
        lines(&marks),
        ["started", "started"],
        "ran exactly once more"
    );
    assert_eq!(f.sql("SELECT count(*) FROM jobs WHERE state = 'done'"), "1");
    drop(remote);
    f.server.take();
}

#[test]
fn the_postgres_ledger_never_forks_under_two_concurrent_writers_and_verifies() {
    use pipe_promote::ledger::{
        Actor, Draft, Head, Ledger, LedgerStore, NewRow, PgStore, StoreError, system_clock,
    };
    let Some(cluster) = cluster() else { return };
    let url = cluster.fresh_db();
    let state = tempfile::tempdir().expect("tmp");
    // Compare-and-swap: two stores appending after the same head; exactly one wins.
    let a = PgStore::connect(&url, "cas/test").expect("connect");
    let b = PgStore::connect(&url, "cas/test").expect("connect");
    let row = |seq: u64, hash: &str| NewRow {
        head: Head {
            seq,
            hash: hash.into(),
        },
        kind: "k".into(),
        env: None,
        build: None,
        text: "{}".into(),
    };
    a.append(None, &[row(0, "h0")], "sig").expect("first");
    let h0 = a.head().expect("head");
    let ra = a.append(h0.as_ref(), &[row(1, "ha")], "sig");
    let rb = b.append(h0.as_ref(), &[row(1, "hb")], "sig");
    assert!(ra.is_ok());
    assert!(
        matches!(rb, Err(StoreError::Conflict(Some(ref h))) if h.hash == "ha"),
        "{rb:?}"
    );

    // Two writers on two connections, many appends at once: one chain, and it verifies.
    let first =
        Ledger::open_with(state.path(), Some((&url, "acme/app")), system_clock()).expect("open");
    first
        .append(Draft::new(
            "build.registered",
            Actor::system(),
            serde_json::json!({"n": -1}),
        ))
        .expect("append");
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (url, dir, barrier) = (url.clone(), state.path().to_path_buf(), barrier.clone());
            std::thread::spawn(move || {
                let l = Ledger::open_with(&dir, Some((&url, "acme/app")), system_clock())
                    .expect("open");
                barrier.wait();
                for i in 0..40 {
                    l.append(Draft::new(
                        "build.registered",
                        Actor::system(),
                        serde_json::json!({"writer": w, "n": i}),
                    ))
                    .expect("append");
                }
            })
        })
        .collect();
    for t in writers {
        t.join().expect("writer");
    }
    let report = first.verify().expect("verify");
    assert_eq!(report.failure, None, "{report:?}");
    // genesis + 1 + 2 × 40, at consecutive positions.
    assert_eq!(report.entries, 82, "{report:?}");
    let mut seqs = Vec::new();
    first
        .store()
        .scan(0, &mut |r| {
            seqs.push(r.seq);
            true
        })
        .expect("scan");
    assert_eq!(seqs, (0..82).collect::<Vec<u64>>());
    // Another repository's ledger in the same database is separate.
    let other = PgStore::connect(&url, "acme/other").expect("connect");
    assert_eq!(other.head().expect("head"), None);
}

#[test]
fn pipe_ledger_commands_use_postgres_when_pipe_database_url_is_set() {
    let Some(cluster) = cluster() else { return };
    let url = cluster.fresh_db();
    let dir = tempfile::tempdir().expect("tmp");
    git(dir.path(), &["init", "-q"]);
    let env = [("PIPE_DATABASE_URL", url.as_str())];
    let (code, out, err) = pipe_out(&["ledger", "verify"], dir.path(), &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ledger ok"), "{out}");
    // The ledger lives in the database, not in a `ledger.db` of the state folder.
    let psql = |q: &str| {
        let o = Command::new("psql")
            .args(["-At", &url, "-c", q])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    assert_eq!(
        psql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'ledger_entries'"),
        "1"
    );
    let sqlite = std::process::Command::new("find")
        .args([
            dir.path().join("state").to_str().expect("utf-8"),
            "-name",
            "ledger.db",
        ])
        .output()
        .expect("find");
    assert!(
        sqlite.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&sqlite.stdout)
    );
    // An unreachable database is an infrastructure error that names it (without a password).
    let (code, _, err) = pipe_out(
        &["ledger", "verify"],
        dir.path(),
        &[("PIPE_DATABASE_URL", "postgres://u:pw@127.0.0.1:1/x")],
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("postgres://u@127.0.0.1:1/x"), "{err}");
    assert!(!err.contains(":pw@"), "{err}");
}
