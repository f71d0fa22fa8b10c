//! `pipe rollback`, `pipe evidence` and `pipe metrics` against release records made by the
//! deploy engine (the same records `pipe promote` writes), and Ctrl-C during a rollback.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pipe_deploy::Cancel;
use pipe_deploy::engine::{Context, DeployRequest, Ending, deploy};
use pipe_deploy::release::{BuildRef, EnvStore, ReleaseState, Subject};
use pipe_deploy::spec::EnvDeploy;

struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(tmp.path().join("repo").join(".git")).expect("git marker");
        Sandbox { tmp }
    }

    fn repo(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    fn state_root(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    /// The repository's state folder, as `pipe` computes it.
    fn state(&self) -> PathBuf {
        let canonical = self.repo().canonicalize().expect("canonical");
        pipe_runner::dirs::repo_state_dir(&self.state_root(), &canonical)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipe"));
        c.args(args)
            .current_dir(self.repo())
            .env("NO_COLOR", "1")
            .env("PIPE_STATE_DIR", self.state_root())
            .env_remove("PIPE_LOG");
        c
    }

    fn pipe(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out: Output = self.cmd(args).output().expect("run pipe");
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(!e.contains("panicked"), "{e}");
        (out.status.code(), o, e)
    }

    fn deploy(&self, alias: &str, sleep: &str) -> Ending {
        let ctx = Context {
            state_dir: self.state(),
            project_root: self.repo(),
            actor: "tester".to_owned(),
            cancel: Cancel::new(),
        };
        let config: EnvDeploy = serde_saphyr::from_str(&format!(
            r#"
deploy:
  run: 'sleep {sleep}; echo "$PIPE_BUILD_ALIAS rollback=$PIPE_ROLLBACK" > current.txt'
verify:
  interval: 10ms
  count: 2
  checks: [ {{ command: {{ run: 'test -f current.txt' }} }} ]
"#
        ))
        .expect("config");
        let req = DeployRequest {
            env: "staging".into(),
            build: build(alias),
            config,
            reason: None,
        };
        deploy(&ctx, &req, &mut |_| {}).expect("deploy").result
    }

    fn current(&self) -> String {
        std::fs::read_to_string(self.repo().join("current.txt"))
            .expect("current")
            .trim()
            .to_owned()
    }
}

fn build(alias: &str) -> BuildRef {
    use sha2::Digest as _;
    let digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(alias.as_bytes()))
    );
    BuildRef {
        id: digest.clone(),
        alias: Some(alias.to_owned()),
        subjects: vec![Subject {
            name: "app.tar.gz".to_owned(),
            digest,
            uri: None,
        }],
    }
}

#[test]
fn rollback_restores_the_previous_release_and_explains_refusals() {
    let sb = Sandbox::new();
    assert_eq!(sb.deploy("first", "0"), Ending::Verified);
    assert_eq!(sb.deploy("second", "0"), Ending::Verified);
    assert_eq!(sb.current(), "second rollback=false");

    let (code, out, err) = sb.pipe(&["rollback", "staging", "--reason", "error budget"]);
    assert_eq!(code, Some(0), "{err}");
    let id = build("first").id;
    assert_eq!(
        out,
        format!(
            "`staging` is back on sha256:{} (first) (release 3, restoring release 1)\n",
            &id[7..19]
        )
    );
    insta::with_settings!({filters => vec![(r"done in \d+(\.\d+)?\s?m?s", "done in [time]")]}, {
        insta::assert_snapshot!("rollback_stderr", err);
    });
    assert_eq!(sb.current(), "first rollback=true");
    let r = EnvStore::open(&sb.state(), "staging")
        .load(3)
        .expect("release 3");
    assert_eq!(
        (r.rollback.as_deref(), r.reason.as_deref()),
        (Some("manual"), Some("error budget"))
    );

    // `--to` the build that is current, `--steps` past the history, an unknown env, no reason
    let (code, _, err) = sb.pipe(&["rollback", "staging", "--to", "first", "--reason", "x"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "error: build `first` is the current release of `staging`; nothing to roll back"
        ),
        "{err}"
    );
    let (code, _, err) = sb.pipe(&["rollback", "staging", "--steps", "3", "--reason", "x"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("has 1 earlier verified build, `--steps 3` goes past them"),
        "{err}"
    );
    let (code, _, err) = sb.pipe(&["rollback", "prod", "--reason", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("error: environment `prod` has no releases to roll back"),
        "{err}"
    );
    let (code, _, _) = sb.pipe(&["rollback", "staging"]);
    assert_eq!(code, Some(2), "`--reason` is required");
    // `--json` prints the record
    let (code, out, err) = sb.pipe(&[
        "rollback", "staging", "--to", "second", "--reason", "fixed", "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["build"]["alias"], "second");
    assert_eq!(v["state"], "verified");

    // metrics: a valid exposition with the deploys and rollbacks counted
    let (code, out, _) = sb.pipe(&["metrics"]);
    assert_eq!(code, Some(0));
    let samples = pipe_deploy::promtext::parse(&out).expect("valid exposition");
    let manual = samples
        .iter()
        .find(|s| s.name == "pipe_rollbacks_total" && s.labels["trigger"] == "manual")
        .expect("rollbacks");
    assert_eq!(manual.value, 2.0);
    let verified = samples
        .iter()
        .find(|s| {
            s.name == "pipe_deploys_total"
                && s.labels["kind"] == "deploy"
                && s.labels["result"] == "verified"
        })
        .expect("deploys");
    assert_eq!(verified.value, 2.0);
}

#[test]
fn evidence_exports_signed_statements_that_verify_offline() {
    let sb = Sandbox::new();
    assert_eq!(sb.deploy("first", "0"), Ending::Verified);
    let out_dir = sb.tmp.path().join("evidence");
    let d = out_dir.to_str().expect("utf8");
    let (code, _, err) = sb.pipe(&["evidence", "first", "--export", d]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("wrote 2 statements"), "{err}");
    let (code, out, err) = sb.pipe(&["evidence", "--verify", d]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "ok    deployment-staging-000001.intoto.json  https://pipe.dev/attestation/deployment/v1\n\
         ok    provenance.intoto.json  https://slsa.dev/provenance/v1\n"
    );
    // an independent verifier: openssl checks the DSSE signature over the PAE bytes
    openssl_verifies(&out_dir, "provenance.intoto.json");

    // a statement changed after signing is caught (exit 4)
    let path = out_dir.join("deployment-staging-000001.intoto.json");
    let mut env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = String::from_utf8(
        b64.decode(env["payload"].as_str().expect("payload"))
            .expect("b64"),
    )
    .expect("utf8");
    let forged = body.replace("\"verified\"", "\"failed\"");
    assert_ne!(forged, body);
    env["payload"] = serde_json::Value::String(b64.encode(forged));
    std::fs::write(&path, env.to_string()).expect("write");
    let (code, out, err) = sb.pipe(&["evidence", "--verify", d]);
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(
        out.starts_with(
            "FAIL  deployment-staging-000001.intoto.json  no valid signature by key SHA256:"
        ),
        "{out}"
    );
    assert!(
        err.contains("1 of 2 envelopes failed verification"),
        "{err}"
    );
    // an unknown build is a usage error
    let (code, _, err) = sb.pipe(&["evidence", "nothing-like-it"]);
    assert_eq!(code, Some(2), "{err}");
}

fn openssl_verifies(dir: &Path, file: &str) {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(!common_ci(), "openssl is missing (CI=true)");
        eprintln!("skipping the openssl cross-check: openssl is not installed");
        return;
    }
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(file)).expect("read"))
            .expect("json");
    let body = b64
        .decode(env["payload"].as_str().expect("payload"))
        .expect("b64");
    let ty = env["payloadType"].as_str().expect("type");
    let mut pae = format!("DSSEv1 {} {ty} {} ", ty.len(), body.len()).into_bytes();
    pae.extend_from_slice(&body);
    let sig = b64
        .decode(env["signatures"][0]["sig"].as_str().expect("sig"))
        .expect("b64");
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("pae"), &pae).expect("pae");
    std::fs::write(tmp.path().join("sig"), &sig).expect("sig");
    let out = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
        .arg(dir.join("pipe-evidence.pub.pem"))
        .arg("-in")
        .arg(tmp.path().join("pae"))
        .arg("-sigfile")
        .arg(tmp.path().join("sig"))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl refused the signature: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn common_ci() -> bool {
    super::common::in_ci()
}

#[test]
fn ctrl_c_during_a_rollback_leaves_the_environment_locked_and_recoverable() {
    let sb = Sandbox::new();
    // the first release's deploy command takes 30 s when replayed (its recorded config)
    assert_eq!(sb.deploy("slow", "${PIPE_SLOW:-0}"), Ending::Verified);
    assert_eq!(sb.deploy("second", "0"), Ending::Verified);
    let child = sb
        .cmd(&["rollback", "staging", "--reason", "try"])
        .env("PIPE_SLOW", "30")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // wait until the rollback is in flight
    let inflight = sb
        .state()
        .join("deploy")
        .join("staging")
        .join("inflight.json");
    let start = super::common::wait_for_file(&inflight, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    super::common::signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "stopped promptly"
    );
    assert!(
        err.contains("interrupted: `staging` stays locked with release 3 in flight"),
        "{err}"
    );
    assert!(inflight.exists(), "the in-flight record stays");
    let store = EnvStore::open(&sb.state(), "staging");
    assert_eq!(store.load(3).expect("3").state, ReleaseState::Interrupted);

    // a deploy now refuses and says what to do
    let ctx = Context {
        state_dir: sb.state(),
        project_root: sb.repo(),
        actor: "tester".into(),
        cancel: Cancel::new(),
    };
    let req = DeployRequest {
        env: "staging".into(),
        build: build("third"),
        config: store.load(2).expect("2").config,
        reason: None,
    };
    let e = deploy(&ctx, &req, &mut |_| {}).expect_err("locked");
    assert!(
        e.to_string().contains("was interrupted while deploying"),
        "{e}"
    );

    // the next rollback recovers (the replay is quick this time)
    let (code, out, err) = sb.pipe(&["rollback", "staging", "--reason", "recover"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("recovered `staging` from the interrupted rollback of build"),
        "{err}"
    );
    // recovery restores the last verified release: the interrupted rollback never finished
    assert!(out.contains("(second)"), "{out}");
    assert!(!inflight.exists());
    assert_eq!(sb.current(), "second rollback=true");
}

#[test]
fn concurrent_rollbacks_wait_their_turn() {
    let sb = Sandbox::new();
    assert_eq!(sb.deploy("slow", "${PIPE_SLOW:-0}"), Ending::Verified);
    assert_eq!(sb.deploy("second", "0"), Ending::Verified);
    let first = sb
        .cmd(&["rollback", "staging", "--reason", "first in line"])
        .env("PIPE_SLOW", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let inflight = sb
        .state()
        .join("deploy")
        .join("staging")
        .join("inflight.json");
    super::common::wait_for_file(&inflight, Duration::from_secs(20));
    // the second one queues behind the first, then rolls back from what the first restored
    let (code, out, err) = sb.pipe(&["rollback", "staging", "--reason", "second in line"]);
    let first = first.wait_with_output().expect("wait");
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("(slow)"));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.starts_with("waiting for `staging`: a rollback of build sha256:")
            && err.contains("1 ahead in the queue"),
        "{err}"
    );
    assert!(out.contains("(second)"), "{out}");
    let rs = EnvStore::open(&sb.state(), "staging").list().expect("list");
    let reasons: Vec<_> = rs.iter().filter_map(|r| r.reason.clone()).collect();
    assert_eq!(reasons, ["first in line", "second in line"]);
}

#[path = "../../deploy/tests/support/mod.rs"]
pub mod support;

/// The issue's end-to-end flow with the deploy engine standing in for `pipe promote`
/// (which calls the same `deploy`): `staging` (script deploy of the example service behind
/// its own nginx) and `production` (blue-green behind nginx); a build whose health check
/// fails is rolled back automatically while a load loop sees no error; then `pipe rollback`
/// switches production back to the earlier build, again without an error.
#[test]
fn staging_then_blue_green_production_with_automatic_and_manual_rollback() {
    let (Some(bin), Some(())) = (support::nginx_bin(), support::python()) else {
        return;
    };
    let sb = Sandbox::new();
    let services = sb.tmp.path().join("svc");
    std::fs::create_dir_all(&services).expect("mkdir");
    let _kill = support::KillPidFiles(services.clone());
    let script = support::testdata().join("start-slot.sh");
    let ctx = Context {
        state_dir: sb.state(),
        project_root: sb.repo(),
        actor: "release-manager".into(),
        cancel: Cancel::new(),
    };

    // staging: one slot behind its own nginx, deployed in place
    let stg_port = support::free_port();
    let stg = support::Nginx::start(
        &bin,
        &sb.tmp.path().join("nginx-staging"),
        &format!("upstream pipe_backend {{ server 127.0.0.1:{stg_port}; }}\n"),
    );
    let staging: EnvDeploy = serde_saphyr::from_str(&format!(
        r#"
deploy:
  run: PIPE_SLOT=staging PIPE_SLOT_PORT={stg_port} {script}
  env: {{ SERVICE_DIR: "{services}" }}
verify:
  initial_delay: 300ms
  interval: 100ms
  count: 5
  checks:
    - http: {{ url: "{healthz}", body: ok }}
    - http: {{ url: "{readyz}" }}
"#,
        script = script.display(),
        services = services.display(),
        healthz = stg.url("/healthz"),
        readyz = stg.url("/readyz"),
    ))
    .expect("staging config");
    let req = |env: &str, alias: &str, config: &EnvDeploy| DeployRequest {
        env: env.into(),
        build: build(alias),
        config: config.clone(),
        reason: Some(format!("promote {alias} to {env}")),
    };
    let out = deploy(&ctx, &req("staging", "good-one", &staging), &mut |_| {}).expect("staging");
    assert_eq!(out.result, Ending::Verified, "{:?}", out.release.failure);
    assert_eq!(
        support::get(&stg.url("/")).expect("staging").1.trim(),
        "hello from good-one"
    );

    // production: blue-green behind nginx
    let (blue, green) = (support::free_port(), support::free_port());
    let prod = support::Nginx::start(
        &bin,
        &sb.tmp.path().join("nginx-production"),
        "upstream pipe_backend { server 127.0.0.1:9; }\n",
    );
    let d = prod.dir.display();
    let production: EnvDeploy = serde_saphyr::from_str(&format!(
        r#"
deploy:
  strategy: blue_green
  run: {script}
  env: {{ SERVICE_DIR: "{services}" }}
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
    - http: {{ url: "{readyz}" }}
"#,
        script = script.display(),
        services = services.display(),
        readyz = prod.url("/readyz"),
    ))
    .expect("production config");
    let out = deploy(
        &ctx,
        &req("production", "good-one", &production),
        &mut |_| {},
    )
    .expect("prod 1");
    assert_eq!(out.result, Ending::Verified, "{:?}", out.release.failure);

    // a second build with a failing health check: rolled back, production keeps serving
    let load = support::Load::start(prod.url("/"));
    std::thread::sleep(Duration::from_millis(100));
    let out = deploy(
        &ctx,
        &req("production", "bad-two", &production),
        &mut |_| {},
    )
    .expect("prod 2");
    let (ok, errors) = load.stop();
    assert!(
        matches!(out.result, Ending::RolledBack { to: 1, .. }),
        "{:?}",
        out.result
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        ok.len() > 10 && ok.iter().all(|b| b == "hello from good-one"),
        "{} requests",
        ok.len()
    );

    // a third, good build goes live; then `pipe rollback` returns to the first, under load
    let out = deploy(
        &ctx,
        &req("production", "good-three", &production),
        &mut |_| {},
    )
    .expect("prod 3");
    assert_eq!(out.result, Ending::Verified, "{:?}", out.release.failure);
    assert_eq!(
        support::get(&prod.url("/")).expect("prod").1.trim(),
        "hello from good-three"
    );
    let load = support::Load::start(prod.url("/"));
    let (code, out, err) = sb.pipe(&["rollback", "production", "--reason", "latency regression"]);
    let (ok, errors) = load.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("(good-one)"), "{out}");
    assert!(
        err.contains("proxy switched from slot `green` to `blue`"),
        "{err}"
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        ok.iter()
            .all(|b| b == "hello from good-one" || b == "hello from good-three")
    );
    assert_eq!(
        support::get(&prod.url("/")).expect("prod").1.trim(),
        "hello from good-one"
    );

    // the evidence of the first build covers both environments and verifies offline
    let dir = sb.tmp.path().join("evidence");
    let d = dir.to_str().expect("utf8");
    let (code, _, err) = sb.pipe(&["evidence", "good-one", "--export", d]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = sb.pipe(&["evidence", "--verify", d]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("deployment-production-000001") && out.contains("deployment-staging-000001"),
        "{out}"
    );
}

#[test]
fn sigterm_during_a_rollback_exits_143_and_keeps_the_record() {
    let sb = Sandbox::new();
    assert_eq!(sb.deploy("slow", "${PIPE_SLOW:-0}"), Ending::Verified);
    assert_eq!(sb.deploy("second", "0"), Ending::Verified);
    let child = sb
        .cmd(&["rollback", "staging", "--reason", "try"])
        .env("PIPE_SLOW", "30")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let inflight = sb
        .state()
        .join("deploy")
        .join("staging")
        .join("inflight.json");
    super::common::wait_for_file(&inflight, Duration::from_secs(20));
    super::common::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(inflight.exists());
    let left = pipe_deploy::lock::read_inflight(&sb.state().join("deploy").join("staging"))
        .expect("record");
    assert_eq!(
        (left.op.as_str(), left.phase.as_str()),
        ("rollback", "deploying")
    );
}
