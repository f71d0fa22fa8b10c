//! Health-check semantics against real HTTP services and real commands.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use pipe_deploy::health::{Health, ProbeContext, probe};
use pipe_deploy::spec::{Check, VerifySpec};
use pipe_deploy::verify::{Verdict, verify};
use support::{Service, python};

fn check(yaml: &str) -> Check {
    serde_saphyr::from_str(yaml).expect("check")
}

fn ctx(dir: &Path) -> ProbeContext {
    ProbeContext {
        cwd: dir.to_owned(),
        ..ProbeContext::default()
    }
}

fn control(path: &Path, json: &str) {
    std::fs::write(path, json).expect("control");
}

#[test]
fn http_status_and_body() {
    let Some(()) = python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let ctl = dir.path().join("control.json");
    control(&ctl, r#"{"health": 200}"#);
    let svc = Service::start("v1", Some(&ctl));
    let c = ctx(dir.path());
    let rows: &[(String, Health, &str)] = &[
        (
            format!("http: {{ url: '{}' }}", svc.url("/healthz")),
            Health::Healthy,
            "status 200",
        ),
        (
            format!(
                "http: {{ url: '{}', status: 200, body: ok }}",
                svc.url("/healthz")
            ),
            Health::Healthy,
            "status 200",
        ),
        (
            format!("http: {{ url: '{}', body: nope }}", svc.url("/healthz")),
            Health::Unhealthy,
            "status 200, body does not contain `nope`",
        ),
        (
            format!(
                "http: {{ url: '{}', body_regex: '^hello from v\\d$' }}",
                svc.url("/")
            ),
            Health::Unhealthy,
            "status 200, body does not match",
        ),
        (
            format!(
                "http: {{ url: '{}', body_regex: '^hello from v\\d\\n' }}",
                svc.url("/")
            ),
            Health::Healthy,
            "status 200",
        ),
        (
            format!(
                "http: {{ url: '{}', status: [201, 204] }}",
                svc.url("/readyz")
            ),
            Health::Unhealthy,
            "status 200, expected 201|204",
        ),
    ];
    for (yaml, health, detail) in rows {
        let p = probe(&check(yaml), &c);
        assert_eq!(p.health, *health, "{yaml}: {}", p.detail);
        assert!(p.detail.starts_with(detail), "{yaml}: {}", p.detail);
    }
    // the service turns unhealthy: any 2xx is no longer met
    control(&ctl, r#"{"health": 503}"#);
    let p = probe(
        &check(&format!("http: {{ url: '{}' }}", svc.url("/healthz"))),
        &c,
    );
    assert_eq!(
        (p.health, p.detail.as_str()),
        (Health::Unhealthy, "status 503, expected 2xx")
    );
    // nothing listening: unhealthy, not unknown
    let port = support::free_port();
    let p = probe(
        &check(&format!(
            "http: {{ url: 'http://127.0.0.1:{port}/healthz' }}"
        )),
        &c,
    );
    assert_eq!(p.health, Health::Unhealthy, "{}", p.detail);
}

#[test]
fn http_timeout_is_unhealthy_and_bounded() {
    let Some(()) = python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let ctl = dir.path().join("control.json");
    control(&ctl, r#"{"delay": 3}"#);
    let svc = Service::start("v1", Some(&ctl));
    let t = Instant::now();
    let p = probe(
        &check(&format!(
            "http: {{ url: '{}', timeout: 300ms }}",
            svc.url("/slow")
        )),
        &ctx(dir.path()),
    );
    assert_eq!(
        (p.health, p.detail.as_str()),
        (Health::Unhealthy, "timed out after 300ms")
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn command_exit_codes_mean_healthy_unhealthy_unknown() {
    let dir = tempfile::tempdir().expect("tmp");
    let c = ctx(dir.path());
    let rows = [
        (
            "command: { run: 'echo fine; exit 0' }",
            Health::Healthy,
            "exit 0: fine",
        ),
        (
            "command: { run: 'echo db down >&2; exit 1' }",
            Health::Unhealthy,
            "exit 1: db down",
        ),
        ("command: { run: 'exit 2' }", Health::Unknown, "exit 2"),
        (
            "command: { run: 'exit 3' }",
            Health::Unknown,
            "exit 3 (only 0 healthy, 1 unhealthy and 2 unknown have a meaning)",
        ),
        (
            "command: { run: 'kill -9 $$' }",
            Health::Unknown,
            "killed by signal 9",
        ),
        (
            "command: { run: 'sleep 5', timeout: 200ms }",
            Health::Unhealthy,
            "timed out after 200ms",
        ),
        (
            "command: { run: 'test -f marker' }",
            Health::Unhealthy,
            "exit 1",
        ),
    ];
    for (yaml, health, detail) in rows {
        let p = probe(&check(yaml), &c);
        assert_eq!((p.health, p.detail.as_str()), (health, detail), "{yaml}");
    }
    // commands run in the project root with the deploy's environment
    std::fs::write(dir.path().join("marker"), "").expect("marker");
    let mut c = ctx(dir.path());
    c.env.insert("PIPE_BUILD".into(), "sha256:ab".into());
    let p = probe(
        &check("command: { run: 'test -f marker && test \"$PIPE_BUILD\" = sha256:ab' }"),
        &c,
    );
    assert_eq!(p.health, Health::Healthy, "{}", p.detail);
}

#[test]
fn prometheus_thresholds() {
    let Some(()) = python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let ctl = dir.path().join("control.json");
    control(&ctl, r#"{"errors": 0}"#);
    let svc = Service::start("v1", Some(&ctl));
    let c = ctx(dir.path());
    // 100 good requests
    for _ in 0..100 {
        support::get(&svc.url("/")).expect("get");
    }
    let m = svc.url("/metrics");
    let ratio = |s: &str, f: &str| {
        let mut y = format!(
            "metric: {{ url: '{m}', query: 'http_requests_total{{code=\"500\"}} / http_requests_total'"
        );
        if !s.is_empty() {
            y.push_str(&format!(", success: '{s}'"));
        }
        if !f.is_empty() {
            y.push_str(&format!(", failure: '{f}'"));
        }
        y.push_str(" }");
        probe(&check(&y), &c)
    };
    let p = ratio("<= 0.01", "> 0.05");
    assert_eq!(p.health, Health::Healthy, "{}", p.detail);
    assert_eq!(p.detail, "value 0 matches success `<= 0.01`");
    // 3 errors in 103: neither ≤ 1 % nor > 5 %: unknown, never a pass
    control(&ctl, r#"{"errors": 3}"#);
    let p = ratio("<= 0.01", "> 0.05");
    assert_eq!(p.health, Health::Unknown, "{}", p.detail);
    assert!(p.detail.starts_with("value 0.029"), "{}", p.detail);
    assert_eq!(ratio("<= 0.01", "").health, Health::Unhealthy);
    assert_eq!(ratio("", "> 0.05").health, Health::Healthy);
    control(&ctl, r#"{"errors": 50}"#);
    let p = ratio("<= 0.01", "> 0.05");
    assert_eq!(p.health, Health::Unhealthy, "{}", p.detail);
    assert!(
        p.detail.ends_with("matches failure `> 0.05`"),
        "{}",
        p.detail
    );
    // a series the endpoint does not have is unknown
    let p = probe(
        &check(&format!(
            "metric: {{ url: '{m}', query: 'nope_total', success: '< 1' }}"
        )),
        &c,
    );
    assert_eq!(
        (p.health, p.detail.as_str()),
        (Health::Unknown, "no series matches `nope_total`")
    );
    // a label selector picks one series
    let p = probe(
        &check(&format!(
            "metric: {{ url: '{m}', query: 'app_build_info{{version=\"v1\"}}', success: '== 1' }}"
        )),
        &c,
    );
    assert_eq!(p.health, Health::Healthy, "{}", p.detail);
}

fn spec(yaml: &str) -> VerifySpec {
    serde_saphyr::from_str(yaml).expect("verify spec")
}

#[test]
fn a_flapping_check_fails_the_verify() {
    let Some(()) = python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let ctl = dir.path().join("control.json");
    control(&ctl, r#"{"flap": true}"#);
    let svc = Service::start("v1", Some(&ctl));
    // tolerant of failures, not of flapping
    let v = verify(
        &spec(&format!(
            "{{ interval: 20ms, count: 10, failure_limit: 5, flap_limit: 2, checks: [ {{ http: {{ url: '{}' }} }} ] }}",
            svc.url("/healthz")
        )),
        &ctx(dir.path()),
        &mut |_| {},
    );
    assert_eq!(v.verdict, Verdict::Failed, "{}", v.reason);
    assert_eq!(v.reason, "flapping: health changed 3 times (limit 2)");
    assert_eq!(v.samples.len(), 4);
}

#[test]
fn a_verify_window_of_healthy_samples_passes_and_an_unknown_does_not() {
    let Some(()) = python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let svc = Service::start("v1", None);
    let c = ctx(dir.path());
    let t = Instant::now();
    let v = verify(
        &spec(&format!(
            "{{ interval: 100ms, window: 500ms, checks: [ {{ http: {{ url: '{}', body: ok }} }}, {{ command: {{ run: 'true' }} }} ] }}",
            svc.url("/healthz")
        )),
        &c,
        &mut |_| {},
    );
    assert_eq!(
        (v.verdict, v.samples.len()),
        (Verdict::Passed, 5),
        "{}",
        v.reason
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "samples are spaced by the interval"
    );
    // one check that cannot tell makes the whole verify inconclusive
    let v = verify(
        &spec(&format!(
            "{{ interval: 10ms, count: 3, checks: [ {{ http: {{ url: '{}' }} }}, {{ command: {{ run: 'exit 2' }} }} ] }}",
            svc.url("/healthz")
        )),
        &c,
        &mut |_| {},
    );
    assert_eq!(v.verdict, Verdict::Inconclusive, "{}", v.reason);
    assert_eq!(v.reason, "1 unknown sample (limit 0)");
}
