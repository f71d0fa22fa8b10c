//! Issue 15 end to end through `pipe run` and `pipe promote`: a release workflow builds a
//! small service (the example `service.py`, configured by a content-addressed `app.env` the
//! build job writes), `staging` takes every build automatically (script deploy behind its own
//! nginx on 127.0.0.1), `production` is promoted by hand with blue-green behind nginx. A build
//! whose health check fails is rolled back automatically while a load loop sees no error;
//! Ctrl-C during a production deploy leaves it locked, never half-switched, and the next
//! command says what to do; `pipe lock --hard` blocks the recovering rollback, a plain lock
//! does not; an automatic rollback in `staging` holds automatic promotion. The ledger holds
//! every deploy, verify and rollback; evidence and metrics come from the same records.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::deploy::support;

struct Repo {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Repo {
    fn state_root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The repository's state folder, as `pipe` computes it.
    fn state(&self) -> PathBuf {
        let canonical = self.root.canonicalize().expect("canonical");
        pipe_runner::dirs::repo_state_dir(&self.state_root(), &canonical)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipe"));
        c.args(args)
            .current_dir(&self.root)
            .env("NO_COLOR", "1")
            .env("PIPE_STATE_DIR", self.state_root())
            .env("PIPE_CACHE_DIR", self.dir.path().join("cache"))
            .env_remove("PIPE_LOG")
            .env_remove("PIPE_POLICY_REF")
            .env_remove("PIPE_ACTOR");
        c
    }

    fn pipe(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).output().expect("run pipe");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "pipe panicked:\n{err}");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err,
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        let (code, out, err) = self.pipe(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
    }

    fn json_code(&self, args: &[&str], want: i32) -> Value {
        let (code, out, err) = self.pipe(args);
        assert_eq!(code, want, "{args:?}: {out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
    }

    /// Runs the release workflow for `version`; the registered build's alias.
    fn release(&self, version: &str) -> (String, String) {
        let var = format!("APP_VERSION={version}");
        let (code, _, err) = self.pipe(&[
            "run",
            "-W",
            ".github/workflows/release.yml",
            "--var",
            &var,
            "--progress",
            "plain",
        ]);
        assert_eq!(code, 0, "{err}");
        let alias = err
            .split("registered build `")
            .nth(1)
            .and_then(|r| r.split('`').next())
            .unwrap_or_else(|| panic!("no build registered:\n{err}"))
            .to_owned();
        (alias, err)
    }
}

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

/// The example deploy: the build's `app.env` (found by the subject's digest) says which
/// version to start; `slow*` builds take 30 s in production, `broken*` builds fail to deploy.
const DEPLOY_SH: &str = r#"#!/bin/sh
set -eu
. "$BUILD_STORE/${PIPE_SUBJECT_APP#sha256:}"
case "$APP_VERSION:$PIPE_ENV" in
  slow*:production) sleep 30 ;;
  broken*:*) echo "cannot start $APP_VERSION" >&2; exit 3 ;;
esac
PIPE_BUILD_ALIAS="$APP_VERSION" exec sh "$START_SLOT"
"#;

fn workflow(store: &Path) -> String {
    format!(
        r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      app: ${{{{ steps.pack.outputs.digest }}}}
    steps:
      - id: pack
        run: |
          printf 'APP_VERSION=%s\n' "${{{{ vars.APP_VERSION }}}}" > app.env
          d=$(sha256sum app.env | cut -d' ' -f1)
          mkdir -p "{store}" && cp app.env "{store}/$d"
          echo "digest=sha256:$d" >> "$GITHUB_OUTPUT"
"#,
        store = store.display()
    )
}

fn have_git() -> bool {
    let ok = Command::new("git").arg("--version").output().is_ok();
    if !ok {
        assert!(!super::common::in_ci(), "git is missing (CI=true)");
        eprintln!("skipping: git is not installed");
    }
    ok
}

fn served(url: &str) -> String {
    support::get(url).expect("served").1.trim().to_owned()
}

fn kinds(history: &Value) -> Vec<String> {
    history
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["kind"].as_str().expect("kind").to_owned())
        .collect()
}

#[test]
fn a_release_is_deployed_verified_and_rolled_back_through_pipe_promote() {
    let (Some(bin), Some(())) = (support::nginx_bin(), support::python()) else {
        return;
    };
    if !have_git() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("repo");
    let (svc, store) = (dir.path().join("svc"), dir.path().join("store"));
    for d in [&root.join(".github/workflows"), &root.join(".pipe"), &svc] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let repo = Repo { dir, root };
    // After `repo`, so it is dropped first: the pid files are read before the folder goes.
    let _kill = support::KillPidFiles(svc.clone());

    let stg_port = support::free_port();
    let stg = support::Nginx::start(
        &bin,
        &repo.dir.path().join("nginx-staging"),
        &format!("upstream pipe_backend {{ server 127.0.0.1:{stg_port}; }}\n"),
    );
    let prod = support::Nginx::start(
        &bin,
        &repo.dir.path().join("nginx-production"),
        "upstream pipe_backend { server 127.0.0.1:9; }\n",
    );
    let (blue, green) = (support::free_port(), support::free_port());
    let env = format!(
        "{{ SERVICE_DIR: \"{}\", BUILD_STORE: \"{}\", START_SLOT: \"{}\" }}",
        svc.display(),
        store.display(),
        support::testdata().join("start-slot.sh").display()
    );
    let d = prod.dir.display();
    // Staging checks readiness only, so the bad build passes it; production's pre-switch
    // health check is the one that catches it.
    let policy = format!(
        r#"build:
  workflow: .github/workflows/release.yml
  subjects:
    - {{ name: app, output: build.app }}
environments:
  staging:
    promote: {{ from: build, auto: true }}
    gates:
      jobs: [build]
    deploy:
      run: PIPE_SLOT=staging PIPE_SLOT_PORT={stg_port} sh deploy.sh
      env: {env}
    verify:
      initial_delay: 200ms
      interval: 100ms
      count: 4
      checks:
        - http: {{ url: "{stg_ready}" }}
  production:
    promote: {{ from: [staging] }}
    gates:
      jobs: [build]
    deploy:
      strategy: blue_green
      run: sh deploy.sh
      env: {env}
      timeout: 60s
      blue_green:
        slots: {{ blue: "127.0.0.1:{blue}", green: "127.0.0.1:{green}" }}
        proxy: {{ config: {d}/nginx.conf, upstream_file: {d}/upstream.conf, pid_file: {d}/nginx.pid, nginx: {bin} }}
        pre_switch:
          - http: {{ url: "http://{{slot_addr}}/healthz", status: 200, body: ok }}
        pre_switch_timeout: 3s
    verify:
      interval: 100ms
      count: 5
      checks:
        - http: {{ url: "{prod_ready}", status: 200 }}
"#,
        stg_ready = stg.url("/readyz"),
        prod_ready = prod.url("/readyz"),
    );
    std::fs::write(repo.root.join(".pipe/environments.yml"), policy).expect("policy");
    std::fs::write(repo.root.join("deploy.sh"), DEPLOY_SH).expect("deploy.sh");
    std::fs::write(
        repo.root.join(".github/workflows/release.yml"),
        workflow(&store),
    )
    .expect("workflow");
    std::fs::write(repo.root.join(".gitignore"), "app.env\n").expect("gitignore");
    git(&repo.root, &["init", "-q", "-b", "main"]);
    git(&repo.root, &["config", "user.name", "rita"]);
    git(&repo.root, &["config", "user.email", "rita@example.test"]);
    git(&repo.root, &["add", "-A"]);
    git(&repo.root, &["commit", "-q", "-m", "release pipeline"]);

    // `pipe validate` checks the policy with the workflows: no findings
    let (code, out, err) = repo.pipe(&["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("no problems in 2 files"), "{err}");

    // 1. the first build goes to staging automatically at the end of its run
    let (one, err) = repo.release("good-one");
    assert!(
        err.contains(&format!(
            "auto-promotion `{one}` -> `staging`: allowed, deploying"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "promoted: `{one}` is now the release of `staging`"
        )),
        "{err}"
    );
    assert_eq!(served(&stg.url("/")), "hello from good-one");

    // 2. promoted by hand to production: blue-green, verified, recorded
    let (code, _, err) = repo.pipe(&["promote", &one, "--to", "production"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("proxy switched to slot `blue`"), "{err}");
    assert!(err.contains("verify passed"), "{err}");
    assert!(
        err.contains(&format!(
            "promoted: `{one}` is now the release of `production`"
        )),
        "{err}"
    );
    assert_eq!(served(&prod.url("/")), "hello from good-one");

    // 3. a second build with a failing health check: staging takes it (readiness only);
    //    production's pre-switch check fails, it is rolled back, nobody sees an error — the
    //    load loop runs from here through the interrupted deploy and its recovery (step 4)
    let (two, _) = repo.release("bad-two");
    assert_eq!(served(&stg.url("/")), "hello from bad-two");
    let load = support::Load::start(prod.url("/"));
    std::thread::sleep(Duration::from_millis(100));
    let (code, out, err) = repo.pipe(&["promote", &two, "--to", "production"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("{two} (")) && out.contains("-> `production`: ALLOWED"),
        "the gates allowed it: {out}"
    );
    assert!(
        err.contains("pre-switch checks on slot `green` failed"),
        "{err}"
    );
    assert!(
        err.contains("error: release 2 of `production` failed and was rolled back to release 1"),
        "{err}"
    );
    let status = repo.json(&["status", "production", "--json"]);
    let one_id = status[0]["release"]["build"]
        .as_str()
        .expect("release")
        .to_owned();
    assert_eq!(status[0]["alias"], one.as_str(), "{status:#}");

    // the ledger has every step of both production deploys, and verifies
    let history = repo.json(&["history", "production", "--json"]);
    let k = kinds(&history);
    for want in [
        "promotion.decided",
        "deploy.started",
        "verify.pre_switch",
        "proxy.switched",
        "verify.sample",
        "verify.passed",
        "rollback.started",
        "rollback.finished",
        "deploy.finished",
    ] {
        assert!(k.iter().any(|x| x == want), "no `{want}` in {k:?}");
    }
    // only the verified build became production's release
    let released: Vec<&str> = history
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["kind"] == "release.recorded")
        .map(|h| h["build"].as_str().expect("build"))
        .collect();
    assert_eq!(released, [one_id.as_str()]);
    let (code, _, err) = repo.pipe(&["ledger", "verify"]);
    assert_eq!(code, 0, "{err}");

    // 4. Ctrl-C during a production deploy: locked, not switched, and explained
    let (three, _) = repo.release("slow-three");
    let upstream_before =
        std::fs::read_to_string(prod.dir.join("upstream.conf")).expect("upstream");
    let child = repo
        .cmd(&["promote", &three, "--to", "production"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let inflight = repo.state().join("deploy/production/inflight.json");
    let start = super::common::wait_for_file(&inflight, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    super::common::signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "stopped promptly"
    );
    assert!(
        err.contains("interrupted: `production` stays locked with release 3 in flight"),
        "{err}"
    );
    assert!(
        err.contains("hint: run `pipe rollback production --reason TEXT`"),
        "{err}"
    );
    assert!(inflight.exists(), "the in-flight record stays");
    assert_eq!(
        std::fs::read_to_string(prod.dir.join("upstream.conf")).expect("upstream"),
        upstream_before,
        "never half-switched"
    );
    assert_eq!(served(&prod.url("/")), "hello from good-one");

    // `pipe status` shows what is in flight and what to do
    let (code, out, err) = repo.pipe(&["status", "production"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("  inflight a deploy of sha256:")
            && out.contains("(release 3, pid ")
            && out.contains("if that process is gone: `pipe rollback production --reason TEXT`"),
        "{out}"
    );

    // the next promotion refuses and says what to do
    let (code, _, err) = repo.pipe(&["promote", &three, "--to", "production"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: environment `production` is locked: a deploy of build")
            && err.contains("was interrupted while deploying"),
        "{err}"
    );
    assert!(
        err.contains("hint: run `pipe rollback production --reason TEXT` to restore the last verified release, then promote again"),
        "{err}"
    );

    // a hard lock blocks the rollback; a plain lock lets it through
    let (code, _, err) = repo.pipe(&["lock", "production", "--hard", "--reason", "incident 42"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = repo.pipe(&["rollback", "production", "--reason", "recover"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("error: `production` is hard-locked by rita: incident 42"),
        "{err}"
    );
    assert!(
        err.contains("hint: `pipe unlock production` first"),
        "{err}"
    );
    assert!(inflight.exists());
    assert_eq!(repo.pipe(&["unlock", "production"]).0, 0);
    assert_eq!(
        repo.pipe(&["lock", "production", "--reason", "freeze"]).0,
        0
    );
    let (code, out, err) = repo.pipe(&["rollback", "production", "--reason", "recover"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("recovered `production` from the interrupted deploy of build"),
        "{err}"
    );
    assert!(out.contains(&format!("({one})")), "{out}");
    assert!(!inflight.exists());
    assert_eq!(served(&prod.url("/")), "hello from good-one");
    let (ok, errors) = load.stop();
    assert!(errors.is_empty(), "the load loop saw errors: {errors:?}");
    assert!(ok.len() > 50, "the load loop ran ({} requests)", ok.len());
    assert!(
        ok.iter().all(|b| b == "hello from good-one"),
        "production served something else"
    );
    assert_eq!(repo.pipe(&["unlock", "production"]).0, 0);

    // 5. a build that fails to deploy in staging is rolled back there and holds automatic
    //    promotion; the next build waits for a person, whose promotion lifts the hold
    let (_, err) = repo.release("broken-four");
    assert!(
        err.contains("failed and was rolled back to release"),
        "{err}"
    );
    assert_eq!(served(&stg.url("/")), "hello from slow-three");
    let status = repo.json(&["status", "staging", "--json"]);
    assert!(
        status[0]["hold"]
            .as_str()
            .is_some_and(|h| h.starts_with("automatic rollback of release")),
        "{status:#}"
    );
    let (five, err) = repo.release("good-five");
    assert!(
        err.contains(&format!(
            "auto-promotion of `{five}` to `staging` skipped: the environment is on hold"
        )),
        "{err}"
    );
    assert_eq!(served(&stg.url("/")), "hello from slow-three");
    let (code, _, err) = repo.pipe(&["promote", &five, "--to", "staging"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(served(&stg.url("/")), "hello from good-five");
    assert!(repo.json(&["status", "staging", "--json"])[0]["hold"].is_null());
    let (six, err) = repo.release("good-six");
    assert!(
        err.contains(&format!(
            "promoted: `{six}` is now the release of `staging`"
        )),
        "the hold is lifted: {err}"
    );

    // 6. evidence: provenance from the build's run, the gate decisions and the deployments,
    //    signed and verifiable offline
    let ev = repo.dir.path().join("evidence");
    let evs = ev.to_str().expect("utf8");
    let (code, _, err) = repo.pipe(&["evidence", &one, "--export", evs]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = repo.pipe(&["evidence", "--verify", evs]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "provenance.intoto.json  https://slsa.dev/provenance/v1",
        "decision-staging-",
        "decision-production-",
        "https://pipe.dev/attestation/promotion-decision/v1",
        "deployment-production-000001.intoto.json",
        "deployment-staging-000001.intoto.json",
    ] {
        assert!(out.contains(want), "no `{want}` in:\n{out}");
    }
    let payload = |file: &str| -> Value {
        use base64::Engine as _;
        let env: Value =
            serde_json::from_str(&std::fs::read_to_string(ev.join(file)).expect("read"))
                .expect("json");
        let body = base64::engine::general_purpose::STANDARD
            .decode(env["payload"].as_str().expect("payload"))
            .expect("b64");
        serde_json::from_slice(&body).expect("statement")
    };
    let prov = payload("provenance.intoto.json");
    let params = &prov["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(params["workflow"], ".github/workflows/release.yml");
    assert_eq!(params["ref"], "refs/heads/main");
    assert_eq!(
        prov["predicate"]["runDetails"]["metadata"]["invocationId"],
        "run/1"
    );
    assert_eq!(
        prov["subject"][0]["digest"]["sha256"]
            .as_str()
            .map(str::len),
        Some(64)
    );
    let decision = std::fs::read_dir(&ev)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("decision-production-"))
        .expect("a production decision");
    let st = payload(&decision);
    assert_eq!(st["predicate"]["decision"], "ALLOWED");
    assert_eq!(st["predicate"]["environment"], "production");
    let gates = st["predicate"]["gates"].as_array().expect("gates");
    let jobs = gates
        .iter()
        .find(|g| g["gate"] == "jobs")
        .expect("jobs gate");
    assert_eq!(jobs["result"], "PASS");
    assert!(
        gates
            .iter()
            .any(|g| g["gate"] == "from" && g["result"] == "PASS"),
        "{gates:?}"
    );

    // 7. metrics: promotions, gate results and deploy durations from the same records
    let (code, out, err) = repo.pipe(&["metrics"]);
    assert_eq!(code, 0, "{err}");
    let samples = pipe_deploy::promtext::parse(&out).expect("valid exposition");
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    };
    // production: one, two, three, three again (refused at the lock)
    assert_eq!(
        value(
            "pipe_promotions_total",
            &[("environment", "production"), ("decision", "allowed")]
        ),
        Some(4.0),
        "{out}"
    );
    assert_eq!(
        value(
            "pipe_gate_results_total",
            &[
                ("environment", "production"),
                ("gate", "jobs"),
                ("result", "pass")
            ]
        ),
        Some(4.0),
        "{out}"
    );
    assert!(
        value(
            "pipe_deploy_duration_seconds_count",
            &[("env", "production")]
        )
        .is_some_and(|n| n >= 2.0),
        "{out}"
    );
    assert_eq!(
        value("pipe_rollbacks_total", &[("trigger", "manual")]),
        Some(1.0),
        "{out}"
    );
}

/// A repository with a one-job release workflow and `policy` committed on `main`.
fn small_repo(policy: &str) -> Repo {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("repo");
    for d in [&root.join(".github/workflows"), &root.join(".pipe")] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let store = dir.path().join("store");
    let repo = Repo { dir, root };
    std::fs::write(repo.root.join(".pipe/environments.yml"), policy).expect("policy");
    std::fs::write(
        repo.root.join(".github/workflows/release.yml"),
        workflow(&store),
    )
    .expect("workflow");
    std::fs::write(repo.root.join(".gitignore"), "app.env\nok\n").expect("gitignore");
    git(&repo.root, &["init", "-q", "-b", "main"]);
    git(&repo.root, &["config", "user.name", "rita"]);
    git(&repo.root, &["config", "user.email", "rita@example.test"]);
    git(&repo.root, &["add", "-A"]);
    git(&repo.root, &["commit", "-q", "-m", "release pipeline"]);
    repo
}

fn gate<'v>(v: &'v Value, name: &str) -> &'v Value {
    v["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["gate"] == name)
        .unwrap_or_else(|| panic!("no gate `{name}` in {v:#}"))
}

/// Custom gates run as containers of a local image (built here `FROM scratch` with a static
/// busybox; there is no registry): the exit status decides, the repository is mounted
/// read-only, there is no network, and an image that is not there fails the gate.
#[test]
fn custom_gates_run_in_containers() {
    if !have_git() || !super::docker::docker_available() {
        return;
    }
    super::docker::ensure_images();
    let image = super::docker::BUSYBOX;
    let repo = small_repo(&format!(
        r#"build:
  subjects:
    - {{ name: app, output: build.app }}
environments:
  staging:
    gates:
      custom:
        - name: marker
          image: {image}
          command: [sh, -c, 'test -f /repo/ok && test "$PIPE_ENV" = staging && test "$1" = "$PIPE_BUILD"', gate, "${{build}}"]
        - name: offline
          image: {image}
          command: [sh, -c, 'if wget -q -T 2 -O /dev/null http://127.0.0.1:9/; then exit 1; fi; ip -o link | grep -v " lo:" | grep -q . && exit 1; exit 0']
        - name: read-only
          image: {image}
          command: [sh, -c, 'touch /repo/written && exit 1 || exit 0']
        - name: ghost
          image: pipe-test/not-built-here:0
          mode: shadow
"#
    ));
    let (alias, _) = repo.release("one");

    let v = repo.json_code(&["gates", &alias, "--to", "staging", "--json"], 1);
    assert_eq!(v["decision"], "DENIED");
    assert_eq!(gate(&v, "custom:marker")["result"], "FAIL", "{v:#}");
    assert_eq!(gate(&v, "custom:offline")["result"], "PASS", "{v:#}");
    assert_eq!(gate(&v, "custom:read-only")["result"], "PASS", "{v:#}");
    let ghost = gate(&v, "custom:ghost");
    assert_eq!(ghost["result"], "FAIL");
    assert_eq!(ghost["mode"], "shadow");
    assert!(
        ghost["reasons"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("did not run to completion")),
        "{ghost}"
    );
    assert!(!repo.root.join("written").exists());

    // the marker the gate looks for: now it passes, and the shadow gate does not block
    std::fs::write(repo.root.join("ok"), "").expect("marker");
    let v = repo.json_code(&["gates", &alias, "--to", "staging", "--json"], 0);
    assert_eq!(gate(&v, "custom:marker")["result"], "PASS", "{v:#}");
    assert_eq!(v["decision"], "ALLOWED");
    let (code, _, err) = repo.pipe(&["promote", &alias, "--to", "staging"]);
    assert_eq!(code, 0, "{err}");
    // no container is left behind
    let ps = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "name=pipe-gate-",
            "--format",
            "{{.Names}}",
        ])
        .output()
        .expect("docker ps");
    assert_eq!(String::from_utf8_lossy(&ps.stdout).trim(), "");
}

/// `pipe validate` checks `.pipe/environments.yml`: each problem at its file:line:col with
/// the rule id, unknown keys with a did-you-mean hint, and the deploy sections' fields.
#[test]
fn validate_checks_the_environment_policy() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join(".pipe")).expect("mkdir");
    std::fs::create_dir_all(root.join(".git")).expect("git marker");
    std::fs::write(
        root.join(".pipe/environments.yml"),
        r#"environments:
  staging:
    promote: { from: [production] }
    gates:
      jobs: [build]
      aprovals: { rules: [] }
      windows:
        deny: [ { rrule: "FREQ=HOURLY", duration: 1h, tz: UTC } ]
      custom:
        - { name: c, image: "bad image" }
    deploy:
      run: ./deploy.sh
      stratgy: script
    verify:
      interval: soon
      checks: []
  production:
    promote: { from: [staging] }
"#,
    )
    .expect("policy");
    let repo = Repo { dir, root };
    let (code, out, err) = repo.pipe(&["validate", ".pipe/environments.yml"]);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with(".pipe/environments.yml:"))
        .collect();
    let has = |prefix: &str, text: &str| {
        lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(text) && l.ends_with("[environments]"))
    };
    assert!(has(".pipe/environments.yml:6:7:", "aprovals"), "{out}");
    assert!(out.contains("did you mean `approvals`?"), "{out}");
    assert!(has(".pipe/environments.yml:8:", "FREQ=HOURLY"), "{out}");
    assert!(has(".pipe/environments.yml:10:", "image"), "{out}");
    assert!(has(".pipe/environments.yml:13:7:", "stratgy"), "{out}");
    assert!(has(".pipe/environments.yml:15:", "soon"), "{out}");
    assert!(
        lines.iter().any(
            |l| l.contains("in a cycle: staging <- production <- staging")
                || l.contains("in a cycle: production <- staging <- production")
        ),
        "the `from:` cycle is spelled out: {out}"
    );
    // a clean policy has no findings
    std::fs::write(
        repo.root.join(".pipe/environments.yml"),
        "environments:\n  staging: {}\n  production:\n    promote: { from: [staging] }\n",
    )
    .expect("policy");
    let (code, out, err) = repo.pipe(&["validate", ".pipe/environments.yml"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
}

/// Environments declared in the workflow itself (pipe's top-level `environments:` key, with
/// `build` and `groups` reserved): read from the trusted ref when `.pipe/environments.yml` is
/// absent, the build's workflow defaulting to that file; `pipe validate` checks the key in
/// place, and `--strict-github` flags it as a pipe extension.
#[test]
fn environments_declared_in_the_workflow() {
    if !have_git() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join(".github/workflows")).expect("mkdir");
    let store = dir.path().join("store");
    let repo = Repo { dir, root };
    let wf = format!(
        "{}environments:\n  build:\n    subjects:\n      - {{ name: app, output: build.app }}\n  staging:\n    promote: {{ from: build, auto: true }}\n    gates:\n      jobs: [build]\n  production:\n    promote: {{ from: [staging] }}\n",
        workflow(&store)
    );
    std::fs::write(repo.root.join(".github/workflows/release.yml"), &wf).expect("workflow");
    std::fs::write(repo.root.join(".gitignore"), "app.env\n").expect("gitignore");
    git(&repo.root, &["init", "-q", "-b", "main"]);
    git(&repo.root, &["config", "user.name", "rita"]);
    git(&repo.root, &["config", "user.email", "rita@example.test"]);
    git(&repo.root, &["add", "-A"]);
    git(&repo.root, &["commit", "-q", "-m", "release pipeline"]);

    let (code, out, err) = repo.pipe(&["validate"]);
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let (code, out, _) = repo.pipe(&["validate", "--strict-github"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("environments"), "{out}");

    let (alias, err) = repo.release("one");
    assert!(
        err.contains(&format!("auto-promotion `{alias}` -> `staging`: promoted")),
        "{err}"
    );
    let status = repo.json(&["status", "--json"]);
    assert_eq!(status[0]["env"], "staging");
    assert_eq!(status[0]["alias"], alias.as_str());
    assert!(status[1]["release"].is_null(), "{status:#}");
    let (code, _, err) = repo.pipe(&["promote", &alias, "--to", "production"]);
    assert_eq!(code, 0, "{err}");
    // the ledger says where the policy came from
    let history = repo.json(&["history", "production", "--json"]);
    let decided = history
        .as_array()
        .expect("history")
        .iter()
        .find(|h| h["kind"] == "promotion.decided")
        .expect("decided");
    assert_eq!(
        decided["body"]["source"],
        "refs/heads/main:.github/workflows/release.yml"
    );

    // a mistake in the key is reported in the workflow, at its line and column
    let bad = wf.replace(
        "      jobs: [build]\n",
        "      jobs: [build]\n      sok: { in: staging, min: 1h }\n",
    );
    std::fs::write(repo.root.join(".github/workflows/release.yml"), &bad).expect("workflow");
    let (code, out, _) = repo.pipe(&["validate"]);
    assert_eq!(code, 1, "{out}");
    let line = bad.lines().position(|l| l.contains("sok:")).expect("line") + 1;
    assert!(
        out.contains(&format!(
            ".github/workflows/release.yml:{line}:7: unknown key `sok` in `staging.gates` [environments]"
        )),
        "{out}"
    );
    assert!(out.contains("did you mean `soak`?"), "{out}");
}
