//! Policy parsing: a full policy, and every kind of mistake reported at its line and column.

use pipe_promote::policy::source::load_text;
use pipe_promote::policy::{Mode, OnInconclusive, Severity, SubjectSource, When};

const FULL: &str = r#"
build:
  workflow: .github/workflows/release.yml
  subjects:
    - name: app
      output: build.image
    - name: cli
      artifact: dist
groups:
  release-managers: [alice, bob, carol]
  security: [sam]
environments:
  staging:
    promote: { from: build, auto: true, refs: { branches: [main] } }
    gates:
      jobs: [lint, "test*"]
      vulnerabilities:
        block_at: critical
        waivers:
          - { id: CVE-2026-0001, justification: not reachable, expires: 2026-12-31 }
  production:
    promote:
      from: [staging]
      expires_after: 72h
    concurrency: { queue: fifo, supersede: skip_older }
    gates:
      jobs: { require: [build, scan], mode: shadow }
      coverage: { min_lines: 80.5, max_drop: 0.5 }
      benchmarks: { on_inconclusive: require_approval }
      soak: { in: staging, min: 24h }
      approvals:
        rules:
          - { name: release-managers, from: [group:release-managers], count: 2 }
          - { name: security, from: [group:security], count: 1, when: waivers_used }
        expires_after: 72h
      windows:
        deny:
          - { name: holidays, from: "2026-12-20T00:00", to: "2027-01-04T00:00", tz: America/New_York }
        allow:
          - { name: weekdays, rrule: "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", start: "09:00", duration: 8h }
      custom:
        - { name: ticket, run: [./check.sh, "${build}"], timeout: 30s }
    deploy:
      strategy: blue_green
      run: ./deploy/start-slot.sh
      blue_green:
        slots: { blue: "127.0.0.1:8081", green: "127.0.0.1:8082" }
        proxy: { config: /etc/nginx/nginx.conf, upstream_file: /etc/nginx/pipe.conf, pid_file: /run/nginx.pid }
    verify:
      count: 5
      checks:
        - http: { url: "http://127.0.0.1:8080/healthz", status: 200 }
    rollback: { auto: true }
"#;

#[test]
fn a_full_policy_parses() {
    let l = load_text(".pipe/environments.yml", FULL);
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    let p = l.policy.expect("policy");
    let build = p.build.as_ref().expect("build");
    assert!(
        matches!(&build.subjects[0].source, SubjectSource::Output { job, output } if job == "build" && output == "image")
    );
    assert!(matches!(&build.subjects[1].source, SubjectSource::Artifact(a) if a == "dist"));
    let staging = p.env("staging").expect("staging");
    assert!(staging.auto);
    assert_eq!(staging.from, ["build"]);
    assert_eq!(
        staging.gates.refs.as_ref().expect("refs").spec.branches,
        ["main"]
    );
    let v = staging.gates.vulnerabilities.as_ref().expect("vulns");
    assert_eq!(v.spec.block_at, Severity::Critical);
    assert_eq!(
        v.spec.waivers[0].expires.to_string(),
        "2026-12-31T00:00:00Z"
    );
    let prod = p.env("production").expect("production");
    assert_eq!(prod.from, ["staging"]);
    assert_eq!(prod.gates.jobs.as_ref().expect("jobs").mode, Mode::Shadow);
    assert_eq!(
        prod.gates.coverage.as_ref().expect("cov").spec.min_lines,
        Some(80.5)
    );
    assert_eq!(
        prod.gates
            .benchmarks
            .as_ref()
            .expect("b")
            .spec
            .on_inconclusive,
        OnInconclusive::RequireApproval
    );
    assert_eq!(
        prod.gates.soak.as_ref().expect("soak").spec.min.as_secs(),
        86_400
    );
    let a = &prod.gates.approvals.as_ref().expect("approvals").spec;
    assert_eq!(a.rules[1].when, When::WaiversUsed);
    assert_eq!(p.members(&a.rules[0].from), ["alice", "bob", "carol"]);
    assert_eq!(
        prod.gates.windows.as_ref().expect("w").spec.deny[0].tz,
        "America/New_York"
    );
    assert_eq!(prod.gates.custom[0].spec.timeout_secs, 30);
    assert_eq!(
        prod.deploy.as_ref().expect("deploy")["strategy"],
        "blue_green"
    );
    assert!(prod.verify.is_some() && prod.rollback.is_some());
    // integers are numbers for the deploy engine, which types the sections
    assert_eq!(prod.verify.as_ref().expect("verify")["count"], 5);
    assert!(
        pipe_deploy::spec::EnvDeploy::from_json_parts(
            prod.deploy.as_ref(),
            prod.verify.as_ref(),
            prod.rollback.as_ref()
        )
        .is_ok()
    );
    // Digests: per environment, stable, and a change to one leaves the other alone.
    let again = load_text("x", FULL).policy.expect("policy");
    assert_eq!(again.env("production").expect("p").digest, prod.digest);
    let changed = load_text("x", &FULL.replace("block_at: critical", "block_at: high"))
        .policy
        .expect("policy");
    assert_ne!(changed.env("staging").expect("s").digest, staging.digest);
    assert_eq!(changed.env("production").expect("p").digest, prod.digest);
    let regroup = load_text(
        "x",
        &FULL.replace("security: [sam]", "security: [sam, tom]"),
    )
    .policy
    .expect("policy");
    assert_ne!(regroup.env("production").expect("p").digest, prod.digest);
}

fn problems(text: &str) -> Vec<String> {
    let l = load_text(".pipe/environments.yml", text);
    assert!(l.policy.is_none(), "expected errors for:\n{text}");
    l.diagnostics
        .iter()
        .map(|d| {
            let f = l.sources.get(d.span.file);
            let lc = f.line_col(d.span.start);
            format!(
                "{}:{}: {}{}",
                lc.line,
                lc.col,
                d.message,
                d.hint
                    .as_ref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn mistakes_are_reported_where_they_are() {
    let text = r#"environments:
  staging:
    gatse: {}
    promote: { from: biuld }
  production:
    promote: { from: [stagign] }
    gates:
      vulnerabilities: { block_at: severe }
      soak: { in: qa, min: soon }
      approvals:
        rules:
          - { from: [group:admins], count: 0 }
      windows:
        deny:
          - { name: w, rrule: "FREQ=MONTHLY", duration: 1h }
      custom:
        - { name: x }
"#;
    let got = problems(text);
    let expected = [
        "3:5: unknown key `gatse` in environment `staging` (did you mean `gates`?)",
        "8:36: unknown severity `severe` (use `low`, `medium`, `high` or `critical`)",
        "9:28: `soak.min` `soon` is not a duration (write it like `30m`, `24h` or `2d 12h`)",
        "12:44: `count` must be a whole number of at least 1",
        "15:31: `rrule` `FREQ=MONTHLY`: `FREQ=MONTHLY` is not supported (`DAILY` or `WEEKLY`)",
        "17:11: a custom gate needs a `name` and a `run` command or an `image` (`run: [./check.sh, \"${build}\"]` or `image: gate:1` with `command: [check, \"${build}\"]`)",
    ];
    for e in expected {
        assert!(got.iter().any(|g| g == e), "missing {e:?} in {got:#?}");
    }
    assert!(
        got.iter()
            .any(|g| g.contains("names unknown group `admins`")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|g| g
            == "4:22: environment `staging` promotes from unknown `biuld` (did you mean `build`?)"),
        "{got:#?}"
    );
    assert!(
        !got.iter()
            .any(|g| g.contains("needs either") || g.contains("needs `in`")),
        "no follow-on errors: {got:#?}"
    );
    assert!(
        got.iter()
            .any(|g| g.contains("promotes from unknown `stagign` (did you mean `staging`?)")),
        "{got:#?}"
    );
}

#[test]
fn cycles_and_bad_waivers_are_refused() {
    let got =
        problems("environments:\n  a: { promote: { from: b } }\n  b: { promote: { from: a } }\n");
    assert!(
        got.iter().any(|g| g.contains("cycle: a <- b <- a")),
        "{got:#?}"
    );
    let got = problems(
        "environments:\n  a:\n    gates:\n      vulnerabilities:\n        waivers: [{ id: CVE-1, justification: \"\" , expires: 2026-01-01 }]\n",
    );
    assert!(
        got.iter()
            .any(|g| g.contains("a waiver needs an `id`, a `justification` and an `expires` date")),
        "{got:#?}"
    );
    let got = problems("environments:\n  a:\n    gates: { soak: { in: qa, min: 1h } }\n");
    assert_eq!(got, ["3:20: `soak.in` names unknown environment `qa`"]);
    let got = problems("environments: [a]\n");
    assert_eq!(
        got,
        ["1:15: `environments` must be a mapping, not a sequence"]
    );
    let got = problems("build: {}\n");
    assert!(
        got.iter().any(|g| g.contains("no `environments:`")),
        "{got:#?}"
    );
}

#[test]
fn deploy_sections_are_checked_at_their_fields() {
    let got = problems(
        "environments:\n  prod:\n    deploy:\n      run: ./deploy.sh\n      stratgy: script\n    verify:\n      count: 3\n      checks:\n        - http: { url: \"\" }\n",
    );
    assert!(
        got.iter()
            .any(|g| g.starts_with("5:7: `prod.deploy`: unknown field `stratgy`")),
        "{got:#?}"
    );
    assert!(
        got.iter()
            .any(|g| g
                .starts_with("9:24: `prod.verify.checks[0].http.url`: `` is not an http(s) URL")),
        "{got:#?}"
    );
}
