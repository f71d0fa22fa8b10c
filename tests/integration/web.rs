//! The server's operations endpoints and web UI (issue 17), against a real PostgreSQL (the
//! test cluster of `pipe_server::testing`), a real `pipe server` and real `pipe agent`
//! processes; the UI is driven in headless Chromium (Debian's `chromium`) through the DevTools
//! protocol (`cdp.py`, python3 + `websockets`). Screenshots land in
//! `$PIPE_TEST_ARTIFACTS` (default `target/tmp/web-ui/`). The Compose test builds the image
//! from Debian packages and runs `deploy/compose.yaml` with docker-compose.
//!
//! Each test skips when a tool is missing on a developer machine and fails when `CI=true`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipe_server::testing::PgCluster;
use serde_json::{Value, json};

use crate::common::in_ci;

const PIPE: &str = env!("CARGO_BIN_EXE_pipe");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-9", "-s", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)], stdout: Stdio) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("processes.log"))
        .expect("log");
    Proc(
        Command::new("setsid")
            .arg(PIPE)
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("PIPE_STATE_DIR", dir.join("state"))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn pipe"),
    )
}

fn pipe_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(PIPE)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("PIPE_STATE_DIR", dir.join("state"))
        .env_remove("PIPE_LOG")
        .env_remove("PIPE_ACTOR")
        .env_remove("PIPE_POLICY_REF")
        .envs(env.iter().copied())
        .output()
        .expect("run pipe");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

use super::common::free_port;

/// A database, a server and two tokens.
struct Server {
    dir: tempfile::TempDir,
    db_url: String,
    url: String,
    agent_token: String,
    user_token: String,
    _proc: Proc,
}

impl Server {
    /// `users`: names of extra user tokens to create (returned in order).
    /// `env`: more environment for the server process.
    fn start(
        cluster: &PgCluster,
        extra: &[&str],
        users: &[&str],
        env: &[(&str, &str)],
    ) -> (Server, Vec<String>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_url = cluster.fresh_db();
        let db_env = [("PIPE_DATABASE_URL", db_url.as_str())];
        let (code, _, err) = pipe_in(dir.path(), &["server", "migrate"], &db_env);
        assert_eq!(code, 0, "{err}");
        let token = |kind: &str, name: &str| {
            let (code, out, err) = pipe_in(
                dir.path(),
                &["server", "token", "--kind", kind, "--name", name],
                &db_env,
            );
            assert_eq!(code, 0, "{err}");
            out.trim().to_owned()
        };
        let agent_token = token("agent", "agents");
        let user_token = token("user", "me");
        let more: Vec<String> = users.iter().map(|u| token("user", u)).collect();
        let mut args = vec![
            "server",
            "--database",
            &db_url,
            "--listen",
            "127.0.0.1:0",
            "--lease-ms",
            "10000",
            "--rate-limit",
            "0",
        ];
        args.extend_from_slice(extra);
        let mut server_env = vec![("PIPE_LOG", "info")];
        server_env.extend_from_slice(env);
        let mut p = spawn(dir.path(), &args, &server_env, Stdio::piped());
        let mut line = String::new();
        BufReader::new(p.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("server said {line:?}"))
            .to_owned();
        (
            Server {
                dir,
                db_url,
                url,
                agent_token,
                user_token,
                _proc: p,
            },
            more,
        )
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn agent(&self, name: &str, slots: usize) -> Proc {
        let work = self.path().join("agents").join(name);
        spawn(
            self.path(),
            &[
                "agent",
                "--server",
                &self.url,
                "--token",
                &self.agent_token,
                "--name",
                name,
                "-c",
                &slots.to_string(),
                "--work-dir",
                work.to_str().expect("utf-8"),
            ],
            &[],
            Stdio::null(),
        )
    }

    fn submit(&self, rel: &str, text: &str) -> i64 {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        let (code, out, err) = pipe_in(
            self.path(),
            &[
                "submit",
                "--server",
                &self.url,
                "--token",
                &self.user_token,
                "-W",
                p.to_str().expect("utf-8"),
            ],
            &[],
        );
        assert_eq!(code, 0, "{err}");
        out.trim().parse().expect("run id")
    }

    fn run(&self, run: i64) -> Value {
        let (code, body) = get(
            &format!("{}/api/v1/runs/{run}", self.url),
            Some(&self.user_token),
        );
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("json")
    }

    fn wait_run(&self, run: i64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.run(run);
            if st["state"] == "done" {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "run {run} did not finish: {st}\n{}",
                std::fs::read_to_string(self.path().join("processes.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn processes_log(&self) -> String {
        std::fs::read_to_string(self.path().join("processes.log")).unwrap_or_default()
    }
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call().expect("GET");
    let code = r.status().as_u16();
    (code, r.body_mut().read_to_string().expect("body"))
}

fn cluster() -> Option<&'static PgCluster> {
    let c = PgCluster::shared();
    if c.is_none() {
        eprintln!("skipping: PostgreSQL is not installed");
    }
    c
}

/// The value of one sample (by name and a label subset) in a Prometheus exposition.
fn sample(samples: &[pipe_deploy::promtext::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

const THREE_JOBS: &str = r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo built
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo tested
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: exit 3
"#;

#[test]
fn metrics_health_readiness_and_json_logs_of_a_real_server() {
    let Some(cluster) = cluster() else { return };
    let (s, _) = Server::start(cluster, &["--log-format", "json"], &[], &[]);
    let (code, body) = get(&format!("{}/healthz", s.url), None);
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, body) = get(&format!("{}/readyz", s.url), None);
    assert_eq!(code, 200, "{body}");
    let ready: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["ready"], true);

    let _a = s.agent("ops-agent", 2);
    let run = s.submit(".github/workflows/ops.yml", THREE_JOBS);
    let st = s.wait_run(run, Duration::from_secs(90));
    assert_eq!(st["conclusion"], "failure", "{st}");

    let (code, text) = get(&format!("{}/metrics", s.url), None);
    assert_eq!(code, 200);
    let samples = pipe_deploy::promtext::parse(&text)
        .unwrap_or_else(|e| panic!("/metrics is not valid Prometheus text: {e}\n{text}"));
    let v = |name: &str, labels: &[(&str, &str)]| sample(&samples, name, labels);
    assert_eq!(v("pipe_server_jobs_claimed_total", &[]), 3.0, "{text}");
    assert_eq!(
        v("pipe_server_queue_wait_seconds_count", &[]),
        3.0,
        "{text}"
    );
    assert_eq!(
        v(
            "pipe_server_job_duration_seconds_count",
            &[("result", "success")]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        v(
            "pipe_server_job_duration_seconds_count",
            &[("result", "failure")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(v("pipe_server_jobs", &[("state", "done")]), 3.0, "{text}");
    assert_eq!(v("pipe_server_queue_depth", &[]), 0.0, "{text}");
    assert_eq!(v("pipe_server_runs", &[("state", "done")]), 1.0, "{text}");
    assert_eq!(v("pipe_server_agents_connected", &[]), 1.0, "{text}");
    assert_eq!(v("pipe_server_database_up", &[]), 1.0, "{text}");
    assert_eq!(v("pipe_server_lease_expiries_total", &[]), 0.0, "{text}");
    // Requests are counted by route pattern, never by raw path.
    assert!(
        v(
            "pipe_server_http_requests_total",
            &[("route", "/api/v1/agent/claim"), ("status", "200")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        v(
            "pipe_server_http_requests_total",
            &[("route", "/api/v1/runs/{run}"), ("method", "GET")]
        ) >= 1.0,
        "{text}"
    );
    assert!(!text.contains(&format!("/api/v1/runs/{run}\"")), "{text}");

    // Every metric the Grafana dashboard charts exists.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana-dashboard.json"),
        )
        .expect("dashboard"),
    )
    .expect("dashboard json");
    let names: Vec<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    let mut charted = 0;
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let expr = t["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("pipe_server_") {
                    assert!(
                        names.contains(&word),
                        "the dashboard charts `{word}`, which /metrics lacks"
                    );
                    charted += 1;
                }
            }
        }
    }
    assert!(charted >= 10, "{charted}");

    // Structured logs: one JSON object a line with level, fields and target.
    let log = s.processes_log();
    let json_lines: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        json_lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"].is_string()),
        "{log}"
    );

    // Not ready while a migration this server knows is missing.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let db = pipe_server::db::Db::connect(&s.db_url, 1).expect("db");
        db.client()
            .await
            .expect("client")
            .execute("DELETE FROM schema_migrations WHERE version = 12", &[])
            .await
            .expect("delete");
    });
    let (code, body) = get(&format!("{}/readyz", s.url), None);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("0012_web") && body.contains("pipe server migrate"),
        "{body}"
    );
    let (code, _) = get(&format!("{}/healthz", s.url), None);
    assert_eq!(code, 200);
}

// ---- the browser ------------------------------------------------------------------------

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"]
        .iter()
        .map(|c| {
            Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .output()
        })
        .filter_map(Result::ok)
        .find(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let websockets = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success());
    match (found, websockets) {
        (Some(c), true) => Some(c),
        (c, w) => {
            let why = format!(
                "{}{}",
                if c.is_none() {
                    "Debian's `chromium` is not installed; "
                } else {
                    ""
                },
                if w {
                    ""
                } else {
                    "python3's `websockets` is not installed"
                }
            );
            assert!(
                !in_ci(),
                "the web UI tests need {why} (.ci/run installs them)"
            );
            eprintln!("skipping: {why}");
            None
        }
    }
}

fn artifacts() -> PathBuf {
    let dir = std::env::var_os("PIPE_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join("web-ui");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// Runs a `cdp.py` script; its report.
fn browse(chromium: &Path, dir: &Path, script: &Value) -> Value {
    let path = dir.join(format!("cdp-{}.json", std::process::id()));
    std::fs::write(&path, script.to_string()).expect("script");
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/cdp.py"))
        .arg(chromium)
        .arg(&path)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "cdp.py: {e}\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn assert_clean(report: &Value, context: &str) {
    assert!(
        report["failed"].is_null(),
        "{context}: {}",
        report["failed"]
    );
    assert_eq!(report["errors"], json!([]), "{context}: browser errors");
    assert_eq!(report["console"], json!([]), "{context}: console messages");
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    assert!(width >= 800 && height >= 300, "{width}x{height}");
    assert!(bytes.len() > 10_000, "{} is nearly empty", path.display());
}

const LIVE: &str = r##"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      version: ${{ steps.v.outputs.version }}
    steps:
      - id: v
        run: |
          echo "::group::Install toolchain"
          echo "inside the group"
          echo "::endgroup::"
          printf '\033[31mred alert\033[0m and \033[1;32mbold green\033[0m\n'
          for i in 1 2 3 4 5 6 7 8; do echo "tick $i"; sleep 0.5; done
          echo "version=4.5.6" >> "$GITHUB_OUTPUT"
          echo "# Build report" >> "$GITHUB_STEP_SUMMARY"
          echo "all **8** ticks <script>no</script>" >> "$GITHUB_STEP_SUMMARY"
  test:
    needs: build
    runs-on: ubuntu-latest
    steps:
      - run: echo "testing ${{ needs.build.outputs.version }}"
  deploy:
    needs: [build, test]
    runs-on: ubuntu-latest
    steps:
      - run: echo deployed
"##;

#[test]
fn run_page_streams_a_live_log_with_colours_groups_and_summaries_in_chromium() {
    let Some(cluster) = cluster() else { return };
    let Some(chromium) = chromium() else { return };
    let (s, _) = Server::start(cluster, &[], &[], &[]);
    let run = s.submit(".github/workflows/live.yml", LIVE);
    let st = s.run(run);
    let build = st["jobs"][0]["id"].as_i64().expect("job id");
    assert_eq!(st["jobs"][0]["key"], "build");
    let out = artifacts();
    let shot_running = out.join("run-page-running.png");
    let shot_done = out.join("run-page-done.png");
    let shot_list = out.join("runs-list.png");
    let log_text = "document.getElementById('log').innerText";
    let card = format!("document.getElementById('job-{build}').className");
    let script = json!([
            {"goto": format!("{}/ui/runs/{run}", s.url)},
            // Not signed in: the sign-in page.
            {"eval": "location.pathname", "as": "redirected"},
            {"fill": "#token", "value": "pipu_not-a-token"},
            {"click": "#sign-in", "navigates": true},
            {"eval": "!!document.getElementById('login-error')", "as": "refused"},
            {"fill": "#token", "value": s.user_token},
            {"click": "#sign-in", "navigates": true},
            {"eval": "location.pathname", "as": "home"},
            {"goto": format!("{}/ui/runs/{run}?job={build}", s.url)},
            {"wait": format!("{log_text}.includes('tick 1')"), "timeout": 60},
            {"screenshot": shot_running.to_str().expect("utf-8")},
            {"sample": format!("[{card}, {log_text}.split('tick').length - 1]"), "as": "samples",
             "until": format!("{card}.includes('success')"), "every": 0.25, "timeout": 60},
            {"wait": format!("{card}.includes('success')"), "timeout": 60},
            {"wait": "document.querySelector('#summary h1')", "timeout": 30},
            {"eval": "document.querySelector('#summary h1').textContent", "as": "summary_title"},
            {"eval": "document.getElementById('summary').innerHTML", "as": "summary_html"},
            {"eval": "[...document.querySelectorAll('#log span.fg1')].map(e => e.textContent)", "as": "red"},
            {"eval": "[...document.querySelectorAll('#log span.fg2.b')].map(e => e.textContent)", "as": "bold_green"},
            {"eval": "[...document.querySelectorAll('#log details.group')].map(d => [d.querySelector('summary').textContent, d.open, d.querySelector('.group-body').textContent])", "as": "groups"},
            {"wait": "document.querySelector('#run-state .badge') && document.querySelector('#run-state .badge').textContent === 'success'", "timeout": 60},
            {"wait": "document.querySelector('#outputs').innerText.includes('4.5.6')", "timeout": 10},
            {"eval": "document.querySelector('#outputs').innerText", "as": "outputs"},
            {"eval": "[...document.querySelectorAll('#dag .level')].map(l => [...l.querySelectorAll('.name')].map(n => n.textContent))", "as": "levels"},
            {"eval": "[...document.querySelectorAll('#dag a.job')].map(a => a.className)", "as": "final_classes"},
            {"screenshot": shot_done.to_str().expect("utf-8")},
            {"goto": format!("{}/", s.url)},
            {"eval": "[...document.querySelectorAll('#runs tr')].map(r => r.innerText)", "as": "runs"},
            {"screenshot": shot_list.to_str().expect("utf-8")},
    ]);
    // The browser opens the run page while the job still waits; the agent starts once the
    // page polls the run, so the whole log arrives while the page watches.
    let browser = {
        let (chromium, dir) = (chromium.clone(), s.path().to_owned());
        std::thread::spawn(move || browse(&chromium, &dir, &script))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = get(&format!("{}/metrics", s.url), None);
        let samples = pipe_deploy::promtext::parse(&text).expect("metrics");
        if sample(
            &samples,
            "pipe_server_http_requests_total",
            &[("route", "/ui/api/jobs/{job}/log")],
        ) >= 2.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline && !browser.is_finished(),
            "the browser never opened the run page"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _a = s.agent("web-agent", 2);
    let report = browser.join().expect("browser thread");
    assert_clean(&report, "run page");
    let v = &report["values"];
    assert_eq!(v["redirected"], "/ui/login");
    assert_eq!(v["refused"], true);
    assert_eq!(v["home"], "/");
    // Live: while the job's card said running, the log already showed some ticks and then
    // more of them, before the job finished.
    let samples = v["samples"].as_array().expect("samples");
    let running: Vec<i64> = samples
        .iter()
        .filter(|s| s[0].as_str().is_some_and(|c| c.contains("running")))
        .map(|s| s[1].as_i64().expect("count"))
        .collect();
    assert!(
        running.len() >= 3,
        "too few samples while running: {samples:?}"
    );
    let first = *running.first().expect("first");
    let last = *running.last().expect("last");
    assert!(
        first >= 1 && last > first,
        "the log did not grow while the job ran: {running:?}"
    );
    assert!(first < 8, "the log arrived only at the end: {running:?}");
    // ANSI colours and the folded group.
    assert_eq!(v["red"], json!(["red alert"]), "{v}");
    assert_eq!(v["bold_green"], json!(["bold green"]), "{v}");
    let groups = v["groups"].as_array().expect("groups");
    assert!(
        groups.iter().any(|g| g[0] == "Install toolchain"
            && g[1] == false
            && g[2]
                .as_str()
                .is_some_and(|b| b.contains("inside the group"))),
        "{groups:?}"
    );
    // Step summary rendered, its HTML shown as text; outputs listed.
    assert_eq!(v["summary_title"], "Build report");
    let summary = v["summary_html"].as_str().expect("html");
    assert!(
        summary.contains("<strong>8</strong>") && summary.contains("&lt;script&gt;"),
        "{summary}"
    );
    assert!(
        v["outputs"].as_str().expect("outputs").contains("4.5.6"),
        "{v}"
    );
    // The DAG by level, every job green at the end.
    assert_eq!(v["levels"], json!([["build"], ["test"], ["deploy"]]));
    let classes = v["final_classes"].as_array().expect("classes");
    assert!(
        classes
            .iter()
            .all(|c| c.as_str().is_some_and(|c| c.contains("success"))),
        "{classes:?}"
    );
    assert!(
        v["runs"][0]
            .as_str()
            .expect("row")
            .contains(&format!("#{run}")),
        "{v}"
    );
    assert_png(&shot_running);
    assert_png(&shot_done);
    assert_png(&shot_list);
    eprintln!("screenshots: {}", out.display());
}

// ---- results ------------------------------------------------------------------------------

/// A job with a JUnit report (one passing case, one failing with markup in its message), LCOV
/// coverage (3 of 4 lines) and a hyperfine benchmark whose median is 10 ms × the run number;
/// its `image` output is the same digest on every run.
const REPORTS: &str = r##"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      image: ${{ steps.b.outputs.image }}
    reports:
      junit: out/junit.xml
      coverage: out/lcov.info
      benchmark: out/bench.json
    steps:
      - id: b
        run: |
          mkdir -p out
          cat > out/junit.xml <<'XML'
          <?xml version="1.0" encoding="UTF-8"?>
          <testsuites>
            <testsuite name="unit" tests="2" failures="1">
              <testcase classname="math" name="adds" time="0.01"/>
              <testcase classname="math" name="divides" time="0.02">
                <failure message="expected &lt;b&gt;2&lt;/b&gt; got 3">at math.rs:9</failure>
              </testcase>
            </testsuite>
          </testsuites>
          XML
          printf 'SF:src/lib.rs\nDA:1,1\nDA:2,1\nDA:3,0\nDA:4,1\nend_of_record\n' > out/lcov.info
          m=$(awk "BEGIN { print 0.01 * $GITHUB_RUN_NUMBER }")
          printf '{"results":[{"command":"parse <input>","mean":%s,"times":[%s,%s,%s]}]}\n' "$m" "$m" "$m" "$m" > out/bench.json
          echo "image=registry.local/app@sha256:$(printf app | sha256sum | cut -d' ' -f1)" >> "$GITHUB_OUTPUT"
  lint:
    runs-on: ubuntu-latest
    steps:
      - run: echo no reports here
"##;

#[test]
fn test_and_benchmark_results_reach_the_run_json_and_page_through_an_agent() {
    let Some(cluster) = cluster() else { return };
    let (s, _) = Server::start(cluster, &[], &[], &[]);
    let _a = s.agent("results-agent", 2);
    let first = s.submit(".github/workflows/reports.yml", REPORTS);
    let st = s.wait_run(first, Duration::from_secs(120));
    assert_eq!(st["conclusion"], "success", "{st}");
    let second = s.submit(".github/workflows/reports.yml", REPORTS);
    let st = s.wait_run(second, Duration::from_secs(120));
    assert_eq!(st["conclusion"], "success", "{st}");

    // The run API: the job's results record as `pipe run` wrote it; none for `lint`.
    let job = |k: &str| {
        st["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .find(|j| j["key"] == k)
            .cloned()
            .expect("job")
    };
    let r = &job("build")["results"];
    assert_eq!(r["tests"]["passed"], 1, "{r}");
    assert_eq!(r["tests"]["failed"], 1, "{r}");
    let failed = &r["jobs"][0]["failed_tests"][0];
    assert_eq!(failed["name"], "divides", "{r}");
    assert_eq!(failed["message"], "expected <b>2</b> got 3", "{r}");
    assert_eq!(r["coverage"]["line_percent"], 75.0, "{r}");
    assert_eq!(r["benchmarks"][0]["name"], "parse <input>", "{r}");
    assert!(job("lint").get("results").is_none(), "{st}");

    // The UI's run JSON: totals over the jobs and the benchmark against the first run.
    let (code, body) = get(
        &format!("{}/ui/api/runs/{second}", s.url),
        Some(&s.user_token),
    );
    assert_eq!(code, 200, "{body}");
    let ui: Value = serde_json::from_str(&body).expect("json");
    let res = &ui["results"];
    assert_eq!(
        res["tests"],
        json!({"tests": 2, "passed": 1, "failed": 1, "skipped": 0}),
        "{res}"
    );
    assert_eq!(res["line_percent"], 75.0, "{res}");
    assert_eq!(res["baseline_run"], first, "{res}");
    let b = &res["benchmarks"][0];
    assert_eq!(
        (b["name"].as_str(), b["unit"].as_str()),
        (Some("parse <input>"), Some("ms"))
    );
    assert!(
        (b["value"].as_f64().expect("value") - 20.0).abs() < 1e-6,
        "{b}"
    );
    assert!(
        (b["change_percent"].as_f64().expect("change") - 100.0).abs() < 1e-6,
        "{b}"
    );
    let (_, body) = get(
        &format!("{}/ui/api/runs/{first}", s.url),
        Some(&s.user_token),
    );
    let ui_first: Value = serde_json::from_str(&body).expect("json");
    assert!(ui_first["results"]["benchmarks"][0]["change_percent"].is_null());

    // The page: totals, the failed case with its message escaped, coverage, the benchmark.
    let (code, html) = get(&format!("{}/ui/runs/{second}", s.url), Some(&s.user_token));
    assert_eq!(code, 200, "{html}");
    assert!(
        html.contains("<b>1</b> passed, <b>1</b> failed, <b>0</b> skipped of 2 tests"),
        "{html}"
    );
    assert!(
        html.contains("<code class=\"case\">math::divides</code>"),
        "{html}"
    );
    assert!(
        html.contains("expected &lt;b&gt;2&lt;/b&gt; got 3"),
        "{html}"
    );
    assert!(!html.contains("expected <b>2</b>"), "{html}");
    assert!(html.contains("75.0%"), "{html}");
    assert!(html.contains("<code>parse &lt;input&gt;</code>"), "{html}");
    assert!(html.contains("+100.0%") && html.contains(&format!("vs run #{first}")));
    // Promotion is not configured on this server; the page says so.
    assert!(html.contains("promotion is not configured"), "{html}");
    let (code, frag) = get(
        &format!("{}/ui/runs/{second}/results", s.url),
        Some(&s.user_token),
    );
    assert_eq!(code, 200);
    assert!(
        frag.starts_with("<section class=\"results\" id=\"results\">"),
        "{frag}"
    );

    // Results are written only under the attempt's lease.
    let id = job("build")["id"].as_i64().expect("id");
    let put = http()
        .put(format!("{}/api/v1/jobs/{id}/attempts/1/results", s.url))
        .header("Authorization", &format!("Bearer {}", s.agent_token))
        .send_json(json!({"version": 1, "jobs": []}))
        .expect("put");
    assert_eq!(put.status().as_u16(), 409);
    let (_, body) = get(
        &format!("{}/api/v1/runs/{second}", s.url),
        Some(&s.user_token),
    );
    assert!(body.contains("divides"), "{body}");
}

// ---- approvals ------------------------------------------------------------------------------

fn git(root: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .expect("git");
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn approve_button_promotes_a_build_under_the_cli_rules_in_chromium() {
    let Some(cluster) = cluster() else { return };
    let Some(chromium) = chromium() else { return };
    // A repository whose policy needs two approvals from release-managers for production;
    // bob requests the promotion, so only alice and carol may approve.
    let repo_dir = tempfile::tempdir().expect("tempdir");
    let root = repo_dir.path().join("repo");
    std::fs::create_dir_all(root.join(".github/workflows")).expect("mkdir");
    std::fs::create_dir_all(root.join(".pipe")).expect("mkdir");
    std::fs::write(
        root.join(".github/workflows/ci.yml"),
        "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    outputs:\n      image: ${{ steps.b.outputs.image }}\n    steps:\n      - id: b\n        run: echo \"image=registry.local/app@sha256:$(printf app | sha256sum | cut -d' ' -f1)\" >> \"$GITHUB_OUTPUT\"\n",
    )
    .expect("workflow");
    std::fs::write(
        root.join(".pipe/environments.yml"),
        "build:\n  workflow: .github/workflows/ci.yml\n  subjects:\n    - { name: app, output: build.image }\ngroups:\n  release-managers: [alice, bob, carol]\nenvironments:\n  production:\n    promote: { from: build }\n    gates:\n      jobs: [build]\n      approvals:\n        rules:\n          - { name: release-managers, from: [group:release-managers], count: 2 }\n",
    )
    .expect("policy");
    git(&root, &["init", "-q", "-b", "main"]);
    git(
        &root,
        &["-c", "user.name=t", "-c", "user.email=t@e", "add", "."],
    );
    git(
        &root,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "init",
        ],
    );
    let state = repo_dir.path().join("state");
    let state_s = state.to_str().expect("utf-8");
    let local = |args: &[&str], actor: &str| -> (i32, String, String) {
        let out = Command::new(PIPE)
            .args(args)
            .current_dir(&root)
            .env("NO_COLOR", "1")
            .env("PIPE_STATE_DIR", state_s)
            .env("PIPE_ACTOR", actor)
            .env_remove("PIPE_LOG")
            .output()
            .expect("pipe");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = local(&["run"], "bob");
    assert_eq!(code, 0, "{err}");
    let (code, builds, err) = local(&["builds", "--json"], "bob");
    assert_eq!(code, 0, "{err}");
    let builds: Value = serde_json::from_str(&builds).expect("json");
    let alias = builds[0]["alias"].as_str().expect("alias").to_owned();
    let (code, _, err) = local(&["promote", &alias, "--to", "production"], "bob");
    assert_eq!(code, 3, "pending on approvals: {err}");

    // The server opens the repository's ledger in the same state folder.
    let root_s = root.to_str().expect("utf-8");
    let (s, users) = Server::start(
        cluster,
        &["--promotion-repo", root_s],
        &["alice", "bob", "carol", "mallory"],
        &[("PIPE_STATE_DIR", state_s)],
    );
    let [alice, bob, carol, mallory] = [&users[0], &users[1], &users[2], &users[3]];
    let out = artifacts();
    let shot = out.join("promotions-approved.png");
    let page = format!("{}/ui/promotions", s.url);
    let login = |token: &str| {
        json!([
            {"goto": format!("{}/ui/login", s.url)},
            {"fill": "#token", "value": token},
            {"click": "#sign-in", "navigates": true},
            {"goto": page.clone()},
        ])
    };
    let flash =
        "document.getElementById('flash') ? document.getElementById('flash').textContent : ''";
    let approve = |token: &str| -> Value {
        let mut steps = login(token).as_array().expect("steps").clone();
        steps.extend([
            json!({"eval": "!!document.getElementById('approve-production')", "as": "button"}),
            json!({"click": "#approve-production", "navigates": true}),
            json!({"eval": flash, "as": "flash"}),
            json!({"eval": "document.querySelector('#env-production .release').textContent", "as": "release"}),
        ]);
        Value::Array(steps)
    };
    // bob asked: his own approval is refused, as on the CLI.
    let r = browse(&chromium, s.path(), &approve(bob));
    assert_clean(&r, "bob");
    assert!(
        r["values"]["flash"]
            .as_str()
            .expect("flash")
            .contains("`bob` requested this promotion and may not approve it"),
        "{r}"
    );
    // mallory is no release manager.
    let r = browse(&chromium, s.path(), &approve(mallory));
    assert_clean(&r, "mallory");
    assert!(
        r["values"]["flash"]
            .as_str()
            .expect("flash")
            .contains("`mallory` is not an approver of `production`"),
        "{r}"
    );
    // alice: one of two.
    let r = browse(&chromium, s.path(), &approve(alice));
    assert_clean(&r, "alice");
    let f = r["values"]["flash"].as_str().expect("flash");
    assert!(f.contains("approved") && f.contains("still waits"), "{r}");
    assert_eq!(r["values"]["release"], "none");
    // carol: the second approval promotes the build.
    let mut steps = approve(carol).as_array().expect("steps").clone();
    steps.push(json!({"screenshot": shot.to_str().expect("utf-8")}));
    let r = browse(&chromium, s.path(), &Value::Array(steps));
    assert_clean(&r, "carol");
    let f = r["values"]["flash"].as_str().expect("flash");
    assert!(
        f.contains(&format!("`{alias}` is now the release of `production`")),
        "{r}"
    );
    assert!(
        r["values"]["release"]
            .as_str()
            .expect("release")
            .contains(&alias),
        "{r}"
    );
    assert_png(&shot);

    // The CLI sees the same ledger: production runs the build, approved by alice and carol
    // through the web, and the chain verifies.
    let (code, status, err) = local(&["status", "--json"], "bob");
    assert_eq!(code, 0, "{err}");
    assert!(status.contains(&alias), "{status}");
    let (code, hist, err) = local(&["history", "production", "--json"], "bob");
    assert_eq!(code, 0, "{err}");
    let hist: Value = serde_json::from_str(&hist).expect("json");
    let approvers: Vec<&str> = hist
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["kind"] == "approval.granted")
        .map(|h| {
            h["actor"]["id"]
                .as_str()
                .unwrap_or_else(|| h["actor"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(approvers, ["alice", "carol"], "{hist:#}");
    let (code, _, err) = local(&["ledger", "verify"], "bob");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn run_page_shows_results_and_approves_the_runs_build_in_chromium() {
    let Some(cluster) = cluster() else { return };
    let Some(chromium) = chromium() else { return };
    // The run's build is promoted to staging, waits for one approval in production (bob
    // asked, so alice approves) and is blocked for qa, which takes builds from production.
    let repo_dir = tempfile::tempdir().expect("tempdir");
    let root = repo_dir.path().join("repo");
    std::fs::create_dir_all(root.join(".github/workflows")).expect("mkdir");
    std::fs::create_dir_all(root.join(".pipe")).expect("mkdir");
    std::fs::write(root.join(".github/workflows/ci.yml"), REPORTS).expect("workflow");
    std::fs::write(root.join(".gitignore"), "out/\n").expect("gitignore");
    std::fs::write(
        root.join(".pipe/environments.yml"),
        "build:\n  workflow: .github/workflows/ci.yml\n  subjects:\n    - { name: app, output: build.image }\ngroups:\n  release-managers: [alice, bob]\nenvironments:\n  staging:\n    promote: { from: build }\n    gates:\n      jobs: [build]\n  production:\n    promote: { from: build }\n    gates:\n      jobs: [build]\n      approvals:\n        rules:\n          - { name: release-managers, from: [group:release-managers], count: 1 }\n  qa:\n    promote: { from: production }\n",
    )
    .expect("policy");
    git(&root, &["init", "-q", "-b", "main"]);
    git(
        &root,
        &["-c", "user.name=t", "-c", "user.email=t@e", "add", "."],
    );
    git(
        &root,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "init",
        ],
    );
    let state = repo_dir.path().join("state");
    let state_s = state.to_str().expect("utf-8");
    let local = |args: &[&str]| -> (i32, String, String) {
        let out = Command::new(PIPE)
            .args(args)
            .current_dir(&root)
            .env("NO_COLOR", "1")
            .env("PIPE_STATE_DIR", state_s)
            .env("PIPE_ACTOR", "bob")
            .env_remove("PIPE_LOG")
            .output()
            .expect("pipe");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = local(&["run"]);
    assert_eq!(code, 0, "{err}");
    let (code, builds, err) = local(&["builds", "--json"]);
    assert_eq!(code, 0, "{err}");
    let builds: Value = serde_json::from_str(&builds).expect("json");
    let alias = builds[0]["alias"].as_str().expect("alias").to_owned();
    let (code, _, err) = local(&["promote", &alias, "--to", "staging"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = local(&["promote", &alias, "--to", "production"]);
    assert_eq!(code, 3, "pending on approvals: {err}");

    let root_s = root.to_str().expect("utf-8");
    let (s, users) = Server::start(
        cluster,
        &["--promotion-repo", root_s],
        &["alice"],
        &[("PIPE_STATE_DIR", state_s)],
    );
    let alice = &users[0];
    // The same workflow on the server: its job output names the same build.
    let wf = root.join(".github/workflows/ci.yml");
    let (code, out, err) = pipe_in(
        s.path(),
        &[
            "submit",
            "--server",
            &s.url,
            "--token",
            &s.user_token,
            "-W",
            wf.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let run: i64 = out.trim().parse().expect("run id");

    let out_dir = artifacts();
    let shot_results = out_dir.join("run-page-results.png");
    let shot_approved = out_dir.join("run-page-approved.png");
    let state_of = |env: &str| {
        format!(
            "(document.getElementById('promotion-{env}') || {{dataset: {{}}}}).dataset.state || ''"
        )
    };
    let script = json!([
        {"goto": format!("{}/ui/login", s.url)},
        {"fill": "#token", "value": alice},
        {"click": "#sign-in", "navigates": true},
        {"goto": format!("{}/ui/runs/{run}", s.url)},
        {"eval": "document.getElementById('promotion').innerText", "as": "promotion_while_running"},
        // The sections fill in as the job finishes and the run ends, without a reload.
        {"wait": "!!document.getElementById('results-totals')", "timeout": 90},
        {"wait": format!("{} === 'pending approval'", state_of("production")), "timeout": 60},
        {"eval": "document.getElementById('results-totals').textContent", "as": "totals"},
        {"eval": "document.getElementById('failed-tests').innerText", "as": "failed"},
        {"eval": "document.querySelector('#failed-tests pre').innerHTML", "as": "failed_html"},
        {"eval": "document.getElementById('benchmarks').innerText", "as": "benchmarks"},
        {"eval": "document.querySelector('#results-jobs .coverage').textContent", "as": "coverage"},
        {"eval": "document.getElementById('build-alias').textContent", "as": "alias"},
        {"eval": format!("[{}, {}, {}]", state_of("staging"), state_of("production"), state_of("qa")), "as": "before"},
        {"eval": "document.getElementById('promotion-qa').innerText", "as": "qa"},
        {"screenshot": shot_results.to_str().expect("utf-8")},
        {"click": "#approve-production", "navigates": true},
        {"eval": "location.pathname", "as": "back_at"},
        {"eval": "document.getElementById('flash').textContent", "as": "flash"},
        {"eval": format!("[{}, {}, {}]", state_of("staging"), state_of("production"), state_of("qa")), "as": "after"},
        {"eval": "!!document.getElementById('approve-production')", "as": "button_left"},
        {"screenshot": shot_approved.to_str().expect("utf-8")},
    ]);
    let browser = {
        let (chromium, dir) = (chromium.clone(), s.path().to_owned());
        std::thread::spawn(move || browse(&chromium, &dir, &script))
    };
    // The agent starts once the page polls the run, so the page sees the run finish.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = get(&format!("{}/metrics", s.url), None);
        let samples = pipe_deploy::promtext::parse(&text).expect("metrics");
        if sample(
            &samples,
            "pipe_server_http_requests_total",
            &[("route", "/ui/api/runs/{run}")],
        ) >= 1.0
            || Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _a = s.agent("browser-agent", 2);
    let r = browser.join().expect("browser thread");
    assert_clean(&r, "run page");
    let v = &r["values"];
    assert!(
        v["promotion_while_running"]
            .as_str()
            .is_some_and(|t| t.contains("when the run has finished")),
        "{v}"
    );
    assert_eq!(
        v["totals"], "1 passed, 1 failed, 0 skipped of 2 tests",
        "{v}"
    );
    let failed = v["failed"].as_str().expect("failed");
    assert!(
        failed.contains("math::divides") && failed.contains("expected <b>2</b> got 3"),
        "{failed}"
    );
    assert_eq!(
        v["failed_html"], "expected &lt;b&gt;2&lt;/b&gt; got 3",
        "{v}"
    );
    assert!(
        v["benchmarks"]
            .as_str()
            .is_some_and(|b| b.contains("parse <input>") && b.contains("10.00")),
        "{v}"
    );
    assert_eq!(v["coverage"], "75.0%", "{v}");
    assert_eq!(v["alias"], alias.as_str(), "{v}");
    assert_eq!(
        v["before"],
        json!(["promoted", "pending approval", "blocked"]),
        "{v}"
    );
    assert!(
        v["qa"]
            .as_str()
            .is_some_and(|t| t.contains("from") && t.contains("never released in `production`")),
        "{v}"
    );
    assert_eq!(v["back_at"], format!("/ui/runs/{run}"), "{v}");
    assert!(
        v["flash"].as_str().is_some_and(|f| f.contains("approved")
            && f.contains(&format!("`{alias}` is now the release of `production`"))),
        "{v}"
    );
    assert_eq!(
        v["after"],
        json!(["promoted", "promoted", "not requested"]),
        "{v}"
    );
    assert_eq!(v["button_left"], false, "{v}");
    assert_png(&shot_results);
    assert_png(&shot_approved);

    // The CLI sees the approval: production runs the build.
    let (code, status, err) = local(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&status).expect("json");
    let prod = status
        .as_array()
        .expect("envs")
        .iter()
        .find(|e| e["env"] == "production")
        .expect("production");
    assert_eq!(prod["alias"], alias.as_str(), "{status}");
}

// ---- Docker Compose ---------------------------------------------------------------------------

fn compose_tools() -> bool {
    let ok = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let have = ok("docker", &["info"])
        && ok("docker-compose", &["version"])
        && ok("apt-get", &["--version"]);
    if !have {
        assert!(
            !in_ci(),
            "the Compose test needs Docker, docker-compose and apt-get"
        );
        eprintln!("skipping: Docker, docker-compose or apt-get is missing");
    }
    have
}

/// `docker-compose -p PROJECT -f deploy/compose.yaml …`, torn down (`down -v`) when dropped.
struct Compose {
    project: String,
    file: PathBuf,
    port: u16,
}

impl Compose {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker-compose")
            .args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .args(args)
            .env("PIPE_HTTP_PORT", self.port.to_string())
            .output()
            .expect("docker-compose")
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "docker-compose {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&self.cmd(&["logs", "--no-color", "--tail", "50"]).stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "-v", "--remove-orphans", "-t", "2"]);
    }
}

#[test]
fn compose_brings_up_postgres_a_server_and_three_agents_that_run_a_workflow() {
    if !compose_tools() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = Command::new("bash")
        .arg(repo.join("deploy/image/build-rootfs.sh"))
        .arg(PIPE)
        .output()
        .expect("build-rootfs.sh");
    assert!(
        build.status.success(),
        "build-rootfs.sh: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let c = Compose {
        project: format!("pipetest{}", std::process::id()),
        file: repo.join("deploy/compose.yaml"),
        port: free_port(),
    };
    c.ok(&["down", "-v", "--remove-orphans"]);
    c.ok(&["up", "-d", "--build"]);
    let url = format!("http://127.0.0.1:{}", c.port);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ready = http()
            .get(format!("{url}/readyz"))
            .call()
            .is_ok_and(|r| r.status().as_u16() == 200);
        if ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not become ready:\n{}",
            String::from_utf8_lossy(&c.cmd(&["logs", "--no-color", "--tail", "80"]).stdout)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let token = c.ok(&["exec", "-T", "server", "cat", "/shared/user.token"]);
    let token = token.trim();
    assert!(token.starts_with("pipu_"), "{token}");
    // Six jobs that take a while, so every agent (one slot each) gets some.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut wf = String::from("on: push\njobs:\n");
    for i in 1..=6 {
        wf.push_str(&format!(
            "  job{i}:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo \"worker=$(cat /etc/hostname)\"\n          sleep 2\n"
        ));
    }
    wf.push_str("  gather:\n    needs: [job1, job2, job3, job4, job5, job6]\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo all done\n");
    let path = dir.path().join("compose.yml");
    std::fs::write(&path, wf).expect("workflow");
    let (code, out, err) = pipe_in(
        dir.path(),
        &[
            "submit",
            "--server",
            &url,
            "--token",
            token,
            "-W",
            path.to_str().expect("utf-8"),
            "--wait",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let runs: Value = serde_json::from_str(&out).expect("json");
    let st = &runs[0];
    assert_eq!(st["conclusion"], "success", "{st}");
    let mut hosts = std::collections::BTreeSet::new();
    for j in st["jobs"].as_array().expect("jobs") {
        let id = j["id"].as_i64().expect("id");
        let (code, log) = get(&format!("{url}/api/v1/jobs/{id}/log"), Some(token));
        assert_eq!(code, 200);
        if let Some(h) = log
            .lines()
            .filter_map(|l| l.split("worker=").nth(1))
            .find(|h| !h.starts_with('$'))
        {
            hosts.insert(h.trim().to_owned());
        }
    }
    assert_eq!(
        hosts.into_iter().collect::<Vec<_>>(),
        ["agent1", "agent2", "agent3"],
        "the jobs did not run across the three agents"
    );
    let (_, metrics) = get(&format!("{url}/metrics"), None);
    let samples = pipe_deploy::promtext::parse(&metrics).expect("metrics");
    assert_eq!(
        sample(&samples, "pipe_server_agents_connected", &[]),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&samples, "pipe_server_jobs_claimed_total", &[]),
        7.0,
        "{metrics}"
    );
}
