//! Deploy, verify and roll back with real components: a real nginx switching between two
//! slots of the example service, in-place script deploys, interrupts.

mod support;

use std::path::Path;
use std::time::Duration;

use pipe_deploy::Cancel;
use pipe_deploy::engine::{
    Context, DeployRequest, Ending, EngineError, Event, RollbackTarget, deploy, rollback,
};
use pipe_deploy::release::{BuildRef, EnvStore, ReleaseState, Subject};
use pipe_deploy::spec::EnvDeploy;
use support::{Load, Nginx, get, nginx_bin, python, testdata};

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

fn context(root: &Path, state: &Path) -> Context {
    Context {
        state_dir: state.to_owned(),
        project_root: root.to_owned(),
        actor: "tester".to_owned(),
        cancel: Cancel::new(),
    }
}

fn blue_green(
    nginx: &Nginx,
    services: &Path,
    blue: u16,
    green: u16,
    extra_verify: &str,
) -> EnvDeploy {
    let d = nginx.dir.display();
    let yaml = format!(
        r#"
deploy:
  strategy: blue_green
  run: {script}
  env: {{ SERVICE_DIR: "{services}" }}
  timeout: 30s
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
    - http: {{ url: "{proxy}", status: 200 }}
{extra_verify}
"#,
        script = testdata().join("start-slot.sh").display(),
        services = services.display(),
        bin = nginx.bin,
        proxy = nginx.url("/readyz"),
    );
    let e: EnvDeploy = serde_saphyr::from_str(&yaml).expect("config");
    assert_eq!(e.validate(), vec![]);
    e
}

fn served(nginx: &Nginx) -> String {
    get(&nginx.url("/")).expect("proxy").1.trim().to_owned()
}

fn kill_services(dir: &Path) {
    for slot in ["blue", "green"] {
        if let Ok(pid) = std::fs::read_to_string(dir.join(format!("{slot}.pid"))) {
            let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        }
    }
}

struct Cleanup<'a>(&'a Path);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        kill_services(self.0);
    }
}

#[test]
fn blue_green_switches_rolls_back_and_never_drops_a_request() {
    let (Some(bin), Some(())) = (nginx_bin(), python()) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let (root, state, services) = (
        tmp.path().join("repo"),
        tmp.path().join("state"),
        tmp.path().join("svc"),
    );
    for d in [&root, &state, &services] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let _cleanup = Cleanup(&services);
    let (blue, green) = (support::free_port(), support::free_port());
    // nginx starts pointing at nothing; pipe's first deploy gives it a backend
    let nginx = Nginx::start(
        &bin,
        &tmp.path().join("nginx"),
        "upstream pipe_backend { server 127.0.0.1:9; }\n",
    );
    let metric = format!(
        "    - metric: {{ url: \"{}\", query: 'http_requests_total{{code=\"500\"}}', success: \"< 10\", failure: \">= 10\" }}",
        nginx.url("/metrics")
    );
    let config = blue_green(&nginx, &services, blue, green, &metric);
    let ctx = context(&root, &state);
    let mut events = Vec::new();
    let mut obs = |e: &Event| events.push(serde_json::to_value(e).expect("json"));

    // 1. the first build: deployed to `blue`, switched, verified
    let req = |b: &str| DeployRequest {
        env: "production".into(),
        build: build(b),
        config: config.clone(),
        reason: None,
    };
    let out = deploy(&ctx, &req("good-one"), &mut obs).expect("deploy 1");
    assert_eq!(out.result, Ending::Verified, "{:?}", out.release.failure);
    assert_eq!(out.release.plan.slot.as_deref(), Some("blue"));
    assert_eq!(served(&nginx), "hello from good-one");
    // nginx got the marker and the right server line
    let up = std::fs::read_to_string(nginx.dir.join("upstream.conf")).expect("upstream");
    assert!(up.contains(&format!("server 127.0.0.1:{blue};")), "{up}");

    // 2. a build whose health check fails: the idle slot never gets traffic
    let load = Load::start(nginx.url("/"));
    std::thread::sleep(Duration::from_millis(200));
    let out = deploy(&ctx, &req("bad-two"), &mut obs).expect("deploy 2");
    let (ok, errors) = load.stop();
    assert_eq!(
        out.result,
        Ending::RolledBack {
            to: 1,
            reason: out.release.failure.clone().expect("failure"),
        }
    );
    let failure = out.release.failure.clone().expect("failure");
    assert!(
        failure.starts_with("pre-switch checks on slot `green` failed: GET http://"),
        "{failure}"
    );
    assert!(failure.contains("status 503"), "{failure}");
    assert_eq!(out.release.state, ReleaseState::RolledBack);
    assert!(errors.is_empty(), "the load loop saw errors: {errors:?}");
    assert!(ok.len() > 10, "the load loop ran ({} requests)", ok.len());
    assert!(
        ok.iter().all(|b| b == "hello from good-one"),
        "production served something else"
    );

    // 3. a build that passes the pre-switch check but fails verification after the switch
    //    (its error ratio): switched back to `blue`, which kept running
    let load = Load::start(nginx.url("/"));
    let out = deploy(&ctx, &req("noisy-three"), &mut obs).expect("deploy 3");
    let (ok, errors) = load.stop();
    assert!(
        matches!(out.result, Ending::RolledBack { to: 1, .. }),
        "{:?}",
        out.result
    );
    assert!(
        out.release
            .failure
            .as_deref()
            .expect("failure")
            .starts_with("verify failed: 1 unhealthy sample"),
        "{:?}",
        out.release.failure
    );
    assert!(errors.is_empty(), "the load loop saw errors: {errors:?}");
    assert_eq!(served(&nginx), "hello from good-one");
    assert!(
        ok.iter()
            .all(|b| b == "hello from good-one" || b == "hello from noisy-three")
    );

    let store = EnvStore::open(&state, "production");
    let st = store.state().expect("state");
    let releases = store.list().expect("list");
    // 1 good, 2 bad (no switch), 3 noisy (switched and back), 4 = the switch back to 1
    assert_eq!(releases.len(), 4);
    assert_eq!(releases[3].rollback.as_deref(), Some("auto"));
    assert_eq!(releases[3].restores, Some(1));
    assert_eq!(releases[3].state, ReleaseState::Verified);
    assert_eq!(st.current, Some(4));
    assert_eq!(st.active_slot.as_deref(), Some("blue"));
    assert!(
        st.hold
            .as_deref()
            .expect("hold")
            .starts_with("automatic rollback of release 3")
    );
    // a rollback restores the configuration it ran with
    assert_eq!(releases[3].config_digest, releases[0].config_digest);

    // 4. a good build, then a manual rollback to the previous one (instant: its slot runs it)
    let out = deploy(&ctx, &req("good-five"), &mut obs).expect("deploy 5");
    assert_eq!(out.result, Ending::Verified);
    assert_eq!(served(&nginx), "hello from good-five");
    assert!(st.hold.is_some());
    assert!(
        store.state().expect("state").hold.is_none(),
        "a verified deploy clears the hold"
    );
    let out = rollback(
        &ctx,
        "production",
        &RollbackTarget::Previous,
        "customer report",
        &mut obs,
    )
    .expect("rollback");
    assert_eq!(out.result, Ending::Verified, "{:?}", out.release.failure);
    assert_eq!(out.release.build.alias.as_deref(), Some("good-one"));
    assert_eq!(out.release.reason.as_deref(), Some("customer report"));
    assert_eq!(served(&nginx), "hello from good-one");
    // `--to` a build never verified here is refused with a reason
    let e = rollback(
        &ctx,
        "production",
        &RollbackTarget::Build("bad-two".into()),
        "x",
        &mut obs,
    )
    .expect_err("bad-two was never verified");
    assert!(
        e.to_string().contains("was never verified in `production`"),
        "{e}"
    );

    // the events tell the story in order
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert!(kinds.contains(&"verify.pre_switch") && kinds.contains(&"rollback.finished"));
    assert_eq!(kinds.iter().filter(|k| **k == "proxy.switched").count(), 5);

    // metrics: parse back with the same parser a scraper would use
    let text = pipe_deploy::metrics::render(&state).expect("metrics");
    let samples = pipe_deploy::promtext::parse(&text).expect("valid exposition");
    let get = |name: &str, labels: &[(&str, &str)]| {
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
    assert_eq!(
        get("pipe_rollbacks_total", &[("trigger", "auto")]),
        Some(2.0)
    );
    assert_eq!(
        get("pipe_rollbacks_total", &[("trigger", "manual")]),
        Some(1.0)
    );
    assert_eq!(
        get(
            "pipe_deploy_duration_seconds_count",
            &[("env", "production")]
        ),
        Some(6.0)
    );
    assert_eq!(
        get("pipe_environment_held", &[("env", "production")]),
        Some(0.0)
    );
}

fn script_config(root: &Path, extra_env: &str, verify_ok: &str) -> EnvDeploy {
    let yaml = format!(
        r#"
deploy:
  run: 'echo "$PIPE_BUILD_ALIAS $GREETING rollback=$PIPE_ROLLBACK" > current.txt; sleep "${{DEPLOY_SLEEP:-0}}"'
  env: {{ GREETING: "{extra_env}" }}
verify:
  interval: 20ms
  count: 3
  checks:
    - command: {{ run: '{verify_ok}' }}
"#
    );
    let _ = root;
    serde_saphyr::from_str(&yaml).expect("config")
}

#[test]
fn a_script_deploy_rolls_back_by_replaying_the_recorded_release() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (root, state) = (tmp.path().join("repo"), tmp.path().join("state"));
    std::fs::create_dir_all(&root).expect("mkdir");
    let ctx = context(&root, &state);
    let current = || {
        std::fs::read_to_string(root.join("current.txt"))
            .expect("current")
            .trim()
            .to_owned()
    };
    let ok = "grep -qv broken current.txt";
    let r1 = DeployRequest {
        env: "staging".into(),
        build: build("first"),
        config: script_config(&root, "hello", ok),
        reason: Some("release 1".into()),
    };
    let out = deploy(&ctx, &r1, &mut |_| {}).expect("deploy");
    assert_eq!(out.result, Ending::Verified);
    assert_eq!(current(), "first hello rollback=false");
    // the configuration changes, and the new build is broken
    let r2 = DeployRequest {
        env: "staging".into(),
        build: build("broken"),
        config: script_config(&root, "howdy", ok),
        reason: None,
    };
    let out = deploy(&ctx, &r2, &mut |_| {}).expect("deploy");
    assert!(
        matches!(out.result, Ending::RolledBack { to: 1, .. }),
        "{:?}",
        out.result
    );
    // the rollback replayed release 1 with *its* configuration
    assert_eq!(current(), "first hello rollback=true");
    let store = EnvStore::open(&state, "staging");
    let rs = store.list().expect("list");
    assert_eq!(rs.len(), 3);
    assert_eq!(
        (rs[1].state, rs[1].rolled_back_to),
        (ReleaseState::RolledBack, Some(1))
    );
    assert_eq!(
        (rs[2].restores, rs[2].rollback.as_deref()),
        (Some(1), Some("auto"))
    );
    assert_eq!(rs[2].plan.env["GREETING"], "hello");
    assert_eq!(rs[2].config_digest, rs[0].config_digest);
    assert_ne!(rs[1].config_digest, rs[0].config_digest);
    // the deploy command's output is kept per release
    assert!(store.log_path(1).exists());

    // a deploy whose command fails, with nothing verified before, fails without a rollback
    let ctx2 = context(&root, &tmp.path().join("state2"));
    let mut bad = r1.clone();
    bad.config.deploy.as_mut().expect("deploy").run = "echo cannot reach host >&2; exit 4".into();
    let out = deploy(&ctx2, &bad, &mut |_| {}).expect("deploy");
    let Ending::Failed { reason } = out.result else {
        panic!("{:?}", out.result)
    };
    assert_eq!(
        reason,
        "the deploy command exited with 4; no earlier verified release to roll back to"
    );
}

#[test]
fn an_interrupted_deploy_leaves_the_environment_locked_until_a_rollback() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (root, state) = (tmp.path().join("repo"), tmp.path().join("state"));
    std::fs::create_dir_all(&root).expect("mkdir");
    let ctx = context(&root, &state);
    let ok = "true";
    let mut req = DeployRequest {
        env: "staging".into(),
        build: build("first"),
        config: script_config(&root, "hello", ok),
        reason: None,
    };
    assert_eq!(
        deploy(&ctx, &req, &mut |_| {}).expect("deploy").result,
        Ending::Verified
    );
    // the second deploy hangs and is interrupted
    req.build = build("second");
    req.config
        .deploy
        .as_mut()
        .expect("deploy")
        .env
        .insert("DEPLOY_SLEEP".into(), "30".into());
    let ctx_i = context(&root, &state);
    let cancel = ctx_i.cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let t = std::time::Instant::now();
    let out = deploy(&ctx_i, &req, &mut |_| {}).expect("deploy");
    assert_eq!(out.result, Ending::Interrupted);
    assert!(t.elapsed() < Duration::from_secs(10));
    // the next deploy refuses and says what to do
    let e = deploy(&ctx, &req, &mut |_| {}).expect_err("locked");
    assert!(matches!(e, EngineError::NeedsRecovery(_)));
    let msg = e.to_string();
    assert!(
        msg.starts_with("environment `staging` is locked: a deploy of build sha256:")
            && msg.contains("was interrupted while deploying"),
        "{msg}"
    );
    assert!(
        msg.contains("hint: run `pipe rollback staging --reason TEXT`"),
        "{msg}"
    );
    // a rollback recovers it
    let out = rollback(
        &ctx,
        "staging",
        &RollbackTarget::Previous,
        "recover",
        &mut |_| {},
    )
    .expect("rollback");
    assert_eq!(out.result, Ending::Verified);
    assert_eq!(out.recovered.expect("recovered").build, build("second").id);
    let store = EnvStore::open(&state, "staging");
    assert_eq!(store.load(2).expect("2").state, ReleaseState::Interrupted);
    req.config
        .deploy
        .as_mut()
        .expect("deploy")
        .env
        .remove("DEPLOY_SLEEP");
    assert_eq!(
        deploy(&ctx, &req, &mut |_| {}).expect("deploy").result,
        Ending::Verified
    );
}

#[test]
fn a_switch_nginx_refuses_leaves_the_old_upstream_serving() {
    let (Some(bin), Some(())) = (nginx_bin(), python()) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let svc = support::Service::start("old", None);
    let upstream = format!(
        "upstream pipe_backend {{ server 127.0.0.1:{}; }}\n",
        svc.port
    );
    let nginx = Nginx::start(&bin, &tmp.path().join("nginx"), &upstream);
    assert_eq!(served(&nginx), "hello from old");
    let d = nginx.dir.display();
    let spec: pipe_deploy::spec::NginxSpec = serde_saphyr::from_str(&format!(
        "{{ config: {d}/nginx.conf, upstream_file: {d}/upstream.conf, pid_file: {d}/nginx.pid, nginx: {bin} }}"
    ))
    .expect("spec");
    let proxy = pipe_deploy::proxy::Nginx::from_spec(&spec, tmp.path());
    // a port nginx rejects: `nginx -t` fails, the old file is back, nothing reloaded
    let workers = pipe_deploy::proxy::children(
        std::fs::read_to_string(nginx.dir.join("nginx.pid"))
            .expect("pid")
            .trim()
            .parse()
            .expect("pid"),
    );
    let e = proxy
        .switch("green", "127.0.0.1:99999")
        .expect_err("nginx -t refuses");
    assert!(
        e.to_string()
            .starts_with("`nginx -t` refused the new configuration"),
        "{e}"
    );
    assert!(e.to_string().contains("invalid port"), "{e}");
    assert_eq!(
        std::fs::read_to_string(nginx.dir.join("upstream.conf")).expect("read"),
        upstream
    );
    let pid = std::fs::read_to_string(nginx.dir.join("nginx.pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(
        pipe_deploy::proxy::children(pid),
        workers,
        "no reload happened"
    );
    assert_eq!(served(&nginx), "hello from old");
    assert_eq!(proxy.current_slot(), None);
    // a good switch writes pipe's marker and the new server, and reloads
    proxy
        .switch("blue", &format!("127.0.0.1:{}", svc.port))
        .expect("switch");
    assert_eq!(proxy.current_slot().as_deref(), Some("blue"));
    assert_ne!(pipe_deploy::proxy::children(pid), workers, "new workers");
    assert_eq!(served(&nginx), "hello from old");
}
