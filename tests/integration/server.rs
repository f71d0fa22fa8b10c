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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

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
    let test_log = user.log(st.jobs[1].id).expect("log");
    assert!(test_log.contains("shard 1 tests 1.2.3"), "{test_log}");
    assert!(test_log.contains("shard 2 tests 1.2.3"), "{test_log}");
    let report_log = user.log(st.jobs[3].id).expect("log");
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
