//! Gate semantics (promotion.md §5.3), table-driven: one row per behaviour.

use jiff::{SignedDuration, Timestamp};
use pipe_promote::build::{Build, BuildBody, JobFact};
use pipe_promote::gates::{
    ApprovalFact, Decision, Facts, LockFact, Outcome, RequestFact, VetoFact, evaluate,
};
use pipe_promote::policy::Policy;
use pipe_promote::policy::source::load_text;
use pipe_promote::state::Release;
use serde_json::json;

const NOW: &str = "2026-11-24T15:00:00Z"; // a Tuesday

fn now() -> Timestamp {
    NOW.parse().expect("now")
}

fn ago(h: i64) -> Timestamp {
    now() - SignedDuration::from_hours(h)
}

const BUILD: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn policy(gates: &str) -> Policy {
    let text = format!(
        "groups:\n  rm: [alice, bob, carol]\n  sec: [sam]\nenvironments:\n  staging: {{}}\n  production:\n    promote: {{ from: build }}\n    gates:\n{gates}"
    );
    let l = load_text("p.yml", &text);
    assert!(l.diagnostics.is_empty(), "{text}\n{:?}", l.diagnostics);
    l.policy.expect("policy")
}

fn build() -> Build {
    Build {
        id: BUILD.into(),
        body: BuildBody {
            subjects: vec![],
            alias: "bold-otter-1111".into(),
            run: 7,
            workflow: "ci.yml".into(),
            conclusion: "success".into(),
            sha: "abc".into(),
            git_ref: "refs/heads/main".into(),
            jobs: vec![
                JobFact {
                    id: "lint".into(),
                    name: "lint".into(),
                    conclusion: "success".into(),
                },
                JobFact {
                    id: "test".into(),
                    name: "test (linux)".into(),
                    conclusion: "success".into(),
                },
                JobFact {
                    id: "test".into(),
                    name: "test (mac)".into(),
                    conclusion: "success".into(),
                },
                JobFact {
                    id: "e2e".into(),
                    name: "e2e".into(),
                    conclusion: "failure".into(),
                },
            ],
            evidence: vec![],
        },
        registered: ago(1).to_string(),
        seq: 5,
    }
}

fn approval(seq: u64, who: &str, p: &Policy) -> ApprovalFact {
    ApprovalFact {
        seq,
        approver: who.into(),
        authenticated: true,
        policy: p.env("production").expect("env").digest.clone(),
        rule: None,
        time: ago(1),
    }
}

fn scan(findings: serde_json::Value) -> Vec<(String, serde_json::Value)> {
    vec![("sha256:scan".into(), json!({ "findings": findings }))]
}

fn vuln(id: &str, sev: &str) -> serde_json::Value {
    json!({ "kind": "vulnerability", "id": id, "aliases": [format!("GHSA-{id}")], "severity": sev, "package": { "name": "openssl" } })
}

fn bench(verdicts: &[&str]) -> Vec<(String, serde_json::Value)> {
    let cs: Vec<_> = verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| json!({ "name": format!("b{i}"), "verdict": v, "reason": "r" }))
        .collect();
    vec![(
        "sha256:bench".into(),
        json!({ "pipe": { "comparisons": cs } }),
    )]
}

fn coverage(pct: f64) -> Option<(String, serde_json::Value)> {
    Some((
        "sha256:sum".into(),
        json!({ "results": { "coverage": { "line_percent": pct } } }),
    ))
}

fn request(who: &str, p: &Policy) -> Option<RequestFact> {
    Some(RequestFact {
        seq: 9,
        requester: who.into(),
        policy: p.env("production").expect("env").digest.clone(),
        time: ago(2),
    })
}

fn release(build: &str, hours_ago: i64) -> Vec<Release> {
    vec![Release {
        build: build.into(),
        since: ago(hours_ago).to_string(),
        seq: 3,
    }]
}

type Setup = fn(&Policy, &mut Facts, &mut Build);

struct Row {
    name: &'static str,
    gates: &'static str,
    setup: Setup,
    gate: &'static str,
    outcome: Outcome,
    decision: Decision,
    reason: &'static str,
}

fn nothing(_: &Policy, _: &mut Facts, _: &mut Build) {}

const APPROVALS: &str = "      approvals:\n        rules:\n          - { name: rm, from: [group:rm], count: 2 }\n          - { name: security, from: [group:sec], count: 1, when: waivers_used }\n        expires_after: 24h\n";

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "jobs: every listed job succeeded (glob over matrix legs)",
            gates: "      jobs: [lint, \"t*\"]\n",
            setup: nothing,
            gate: "jobs",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "`test (mac)` succeeded",
        },
        Row {
            name: "jobs: a listed job failed",
            gates: "      jobs: [lint, e2e]\n",
            setup: nothing,
            gate: "jobs",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "`e2e` did not succeed: failure",
        },
        Row {
            name: "jobs: a listed job is missing",
            gates: "      jobs: [deploy]\n",
            setup: nothing,
            gate: "jobs",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "no job matches `deploy` in run #7",
        },
        Row {
            name: "refs: branch allowed",
            gates: "      refs: { branches: [main, \"release/*\"] }\n",
            setup: nothing,
            gate: "refs",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "built from branch `main`",
        },
        Row {
            name: "refs: tag allowed by pattern",
            gates: "      refs: { tags: [\"v*\"] }\n",
            setup: |_, _, b| b.body.git_ref = "refs/tags/v1.2".into(),
            gate: "refs",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "built from tag `v1.2`",
        },
        Row {
            name: "refs: other branch refused",
            gates: "      refs: { branches: [main] }\n",
            setup: |_, _, b| b.body.git_ref = "refs/heads/feature".into(),
            gate: "refs",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "branch `feature`, which is not allowed",
        },
        Row {
            name: "vulnerabilities: nothing at or above block_at",
            gates: "      vulnerabilities: { block_at: high }\n",
            setup: |_, f, _| f.scans = scan(json!([vuln("CVE-1", "MEDIUM")])),
            gate: "vulnerabilities",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "highest: medium",
        },
        Row {
            name: "vulnerabilities: a high finding blocks",
            gates: "      vulnerabilities: { block_at: high }\n",
            setup: |_, f, _| f.scans = scan(json!([vuln("CVE-1", "HIGH")])),
            gate: "vulnerabilities",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "high CVE-1 in `openssl` is at or above `high`",
        },
        Row {
            name: "vulnerabilities: a valid waiver (by alias) waives",
            gates: "      vulnerabilities:\n        block_at: high\n        waivers: [{ id: GHSA-CVE-1, justification: not reachable, expires: 2026-12-31 }]\n",
            setup: |_, f, _| f.scans = scan(json!([vuln("CVE-1", "CRITICAL")])),
            gate: "vulnerabilities",
            outcome: Outcome::Waived,
            decision: Decision::Allowed,
            reason: "waived until 2026-12-31T00:00:00Z: not reachable",
        },
        Row {
            name: "vulnerabilities: an expired waiver no longer waives",
            gates: "      vulnerabilities:\n        block_at: high\n        waivers: [{ id: CVE-1, justification: not reachable, expires: 2026-11-01 }]\n",
            setup: |_, f, _| f.scans = scan(json!([vuln("CVE-1", "HIGH")])),
            gate: "vulnerabilities",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "its waiver expired on 2026-11-01",
        },
        Row {
            name: "vulnerabilities: no scan is inconclusive (never a silent pass)",
            gates: "      vulnerabilities: { block_at: high }\n",
            setup: nothing,
            gate: "vulnerabilities",
            outcome: Outcome::Inconclusive,
            decision: Decision::Denied,
            reason: "no scan report",
        },
        Row {
            name: "vulnerabilities: a scan older than max_age",
            gates: "      vulnerabilities: { block_at: high, max_age: 30m }\n",
            setup: |_, f, _| f.scans = scan(json!([])),
            gate: "vulnerabilities",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "more than `max_age` 30m00s",
        },
        Row {
            name: "waiver used: the security rule applies",
            gates: "      vulnerabilities:\n        block_at: high\n        waivers: [{ id: CVE-1, justification: not reachable, expires: 2026-12-31 }]\n      approvals:\n        rules:\n          - { name: rm, from: [group:rm], count: 2 }\n          - { name: security, from: [group:sec], count: 1, when: waivers_used }\n",
            setup: |p, f, _| {
                f.scans = scan(json!([vuln("CVE-1", "HIGH")]));
                f.approvals = vec![approval(20, "alice", p), approval(21, "bob", p)];
            },
            gate: "approvals",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "`security`: needs 1 approval from sam, has 0",
        },
        Row {
            name: "coverage: at the minimum",
            gates: "      coverage: { min_lines: 80 }\n",
            setup: |_, f, _| f.summary = coverage(80.0),
            gate: "coverage",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "80.00% meets minimum 80.00%",
        },
        Row {
            name: "coverage: below the minimum",
            gates: "      coverage: { min_lines: 80 }\n",
            setup: |_, f, _| f.summary = coverage(79.5),
            gate: "coverage",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "79.50% is below the minimum",
        },
        Row {
            name: "coverage: drops too much against the release",
            gates: "      coverage: { max_drop: 0.5 }\n",
            setup: |_, f, _| {
                f.summary = coverage(80.0);
                f.release_coverage = Some((OTHER.into(), 81.0));
            },
            gate: "coverage",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "drops 1.00 points",
        },
        Row {
            name: "coverage: no report is inconclusive",
            gates: "      coverage: { min_lines: 1 }\n",
            setup: nothing,
            gate: "coverage",
            outcome: Outcome::Inconclusive,
            decision: Decision::Denied,
            reason: "no coverage report",
        },
        Row {
            name: "benchmarks: all PASS",
            gates: "      benchmarks: {}\n",
            setup: |_, f, _| f.benches = bench(&["PASS", "PASS"]),
            gate: "benchmarks",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "`b1`: PASS",
        },
        Row {
            name: "benchmarks: a FAIL blocks",
            gates: "      benchmarks: {}\n",
            setup: |_, f, _| f.benches = bench(&["PASS", "FAIL"]),
            gate: "benchmarks",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "`b1`: FAIL",
        },
        Row {
            name: "benchmarks: INCONCLUSIVE blocks by default",
            gates: "      benchmarks: {}\n",
            setup: |_, f, _| f.benches = bench(&["INCONCLUSIVE"]),
            gate: "benchmarks",
            outcome: Outcome::Inconclusive,
            decision: Decision::Denied,
            reason: "`b0`: INCONCLUSIVE",
        },
        Row {
            name: "benchmarks: INCONCLUSIVE with require_approval activates the rule",
            gates: "      benchmarks: { on_inconclusive: require_approval }\n      approvals:\n        rules: [{ name: perf, from: [carol], count: 1, when: bench_inconclusive }]\n",
            setup: |_, f, _| f.benches = bench(&["INCONCLUSIVE"]),
            gate: "approvals",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "`perf`: needs 1 approval from carol, has 0",
        },
        Row {
            name: "soak: long enough in staging",
            gates: "      soak: { in: staging, min: 24h }\n",
            setup: |_, f, _| {
                f.releases.insert("staging".into(), release(BUILD, 25));
            },
            gate: "soak",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "the release of `staging` for 1d1h",
        },
        Row {
            name: "soak: still soaking",
            gates: "      soak: { in: staging, min: 24h }\n",
            setup: |_, f, _| {
                f.releases.insert("staging".into(), release(BUILD, 2));
            },
            gate: "soak",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "soaking in `staging`: 2h00m of 1d0h (ready at 2026-11-25T13:00:00Z)",
        },
        Row {
            name: "soak: replaced in staging (clock restarts)",
            gates: "      soak: { in: staging, min: 24h }\n",
            setup: |_, f, _| {
                let mut r = release(BUILD, 48);
                r.push(Release {
                    build: OTHER.into(),
                    since: ago(1).to_string(),
                    seq: 4,
                });
                f.releases.insert("staging".into(), r);
            },
            gate: "soak",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "not the current release of `staging`",
        },
        Row {
            name: "approvals: two distinct approvers",
            gates: APPROVALS,
            setup: |p, f, _| f.approvals = vec![approval(20, "alice", p), approval(21, "bob", p)],
            gate: "approvals",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "`rm`: 2 of 2 (alice, bob)",
        },
        Row {
            name: "approvals: one person never counts twice",
            gates: APPROVALS,
            setup: |p, f, _| f.approvals = vec![approval(20, "alice", p), approval(21, "alice", p)],
            gate: "approvals",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "has 1 (alice)",
        },
        Row {
            name: "approvals: self-approval refused",
            gates: APPROVALS,
            setup: |p, f, _| {
                f.request = request("alice", p);
                f.approvals = vec![approval(20, "alice", p), approval(21, "bob", p)];
            },
            gate: "approvals",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "alice's approval does not count: they requested this promotion",
        },
        Row {
            name: "approvals: self-approval allowed when configured",
            gates: "      approvals:\n        rules: [{ name: rm, from: [group:rm], count: 1 }]\n        self_approval: true\n",
            setup: |p, f, _| {
                f.request = request("alice", p);
                f.approvals = vec![approval(20, "alice", p)];
            },
            gate: "approvals",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "`rm`: 1 of 1 (alice)",
        },
        Row {
            name: "approvals: expired approvals do not count",
            gates: APPROVALS,
            setup: |p, f, _| {
                let mut a = approval(20, "alice", p);
                a.time = ago(30);
                f.approvals = vec![a, approval(21, "bob", p)];
            },
            gate: "approvals",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "alice's approval (ledger#20) expired",
        },
        Row {
            name: "approvals: revoked approvals do not count",
            gates: APPROVALS,
            setup: |p, f, _| {
                f.approvals = vec![approval(20, "alice", p), approval(21, "bob", p)];
                f.revoked.insert(21);
            },
            gate: "approvals",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "has 1 (alice)",
        },
        Row {
            name: "approvals: unsigned approvals do not count",
            gates: APPROVALS,
            setup: |p, f, _| {
                let mut a = approval(20, "alice", p);
                a.authenticated = false;
                f.approvals = vec![a, approval(21, "bob", p)];
            },
            gate: "approvals",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "has 1 (bob)",
        },
        Row {
            name: "approvals: outsiders do not count",
            gates: APPROVALS,
            setup: |p, f, _| {
                f.approvals = vec![approval(20, "alice", p), approval(21, "mallory", p)]
            },
            gate: "approvals",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "has 1 (alice)",
        },
        Row {
            name: "approvals: policy changed between request and decision",
            gates: APPROVALS,
            setup: |p, f, _| {
                let mut a = approval(20, "alice", p);
                a.policy = "sha256:old".into();
                f.approvals = vec![a, approval(21, "bob", p)];
            },
            gate: "approvals",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "alice's approval (ledger#20) was for an earlier policy of `production`",
        },
        Row {
            name: "veto: a rejected build is denied",
            gates: APPROVALS,
            setup: |p, f, _| {
                f.approvals = vec![approval(20, "alice", p), approval(21, "bob", p)];
                f.veto = Some(VetoFact {
                    seq: 22,
                    by: "carol".into(),
                    reason: "bad smell".into(),
                });
            },
            gate: "veto",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "rejected by carol: bad smell",
        },
        Row {
            name: "lock: a locked environment waits",
            gates: "      jobs: [lint]\n",
            setup: |_, f, _| {
                f.lock = Some(LockFact {
                    seq: 3,
                    by: "ops".into(),
                    reason: "incident".into(),
                    hard: false,
                })
            },
            gate: "lock",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "`production` is locked by ops: incident",
        },
        Row {
            name: "windows: open allow window",
            gates: "      windows:\n        allow: [{ name: weekdays, rrule: \"FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR\", start: \"09:00\", duration: 8h }]\n",
            setup: nothing,
            gate: "windows",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "open: weekdays",
        },
        Row {
            name: "windows: a closed window waits",
            gates: "      windows:\n        deny: [{ name: freeze, from: \"2026-11-20T00:00\", to: \"2026-11-30T00:00\", tz: Europe/Paris }]\n",
            setup: nothing,
            gate: "windows",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "closed: deny window `freeze` active",
        },
        Row {
            name: "windows: no allow window open",
            gates: "      windows:\n        allow: [{ name: mornings, rrule: FREQ=DAILY, start: \"06:00\", duration: 2h }]\n",
            setup: nothing,
            gate: "windows",
            outcome: Outcome::Pending,
            decision: Decision::Pending,
            reason: "closed: no allow window is open",
        },
        Row {
            name: "windows: break-glass override",
            gates: "      windows:\n        deny: [{ name: freeze, from: \"2026-11-20T00:00\", to: \"2026-11-30T00:00\" }]\n",
            setup: |_, f, _| f.window_override = Some(("ops".into(), "hotfix".into())),
            gate: "windows",
            outcome: Outcome::Waived,
            decision: Decision::Allowed,
            reason: "overridden by ops: hotfix",
        },
        Row {
            name: "custom: exit 0 passes",
            gates: "      custom: [{ name: ticket, run: [true] }]\n",
            setup: |_, f, _| {
                f.custom.insert("ticket".into(), Some(0));
            },
            gate: "custom:ticket",
            outcome: Outcome::Pass,
            decision: Decision::Allowed,
            reason: "exited 0",
        },
        Row {
            name: "custom: exit 75 is inconclusive",
            gates: "      custom: [{ name: ticket, run: [x] }]\n",
            setup: |_, f, _| {
                f.custom.insert("ticket".into(), Some(75));
            },
            gate: "custom:ticket",
            outcome: Outcome::Inconclusive,
            decision: Decision::Denied,
            reason: "exited 75",
        },
        Row {
            name: "custom: other exits fail",
            gates: "      custom: [{ name: ticket, run: [x] }]\n",
            setup: |_, f, _| {
                f.custom.insert("ticket".into(), Some(3));
            },
            gate: "custom:ticket",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "exited 3",
        },
        Row {
            name: "custom: a command that never finished fails",
            gates: "      custom: [{ name: ticket, run: [x] }]\n",
            setup: |_, f, _| {
                f.custom.insert("ticket".into(), None);
            },
            gate: "custom:ticket",
            outcome: Outcome::Fail,
            decision: Decision::Denied,
            reason: "did not run to completion",
        },
        Row {
            name: "shadow: a failing shadow gate is recorded but does not block",
            gates: "      jobs: { require: [e2e], mode: shadow }\n",
            setup: nothing,
            gate: "jobs",
            outcome: Outcome::Fail,
            decision: Decision::Allowed,
            reason: "`e2e` did not succeed",
        },
    ]
}

#[test]
fn gate_semantics_table() {
    let mut failures = Vec::new();
    for row in rows() {
        let p = policy(row.gates);
        let env = p.env("production").expect("env");
        let mut b = build();
        let mut f = Facts {
            now: Some(now()),
            ..Facts::default()
        };
        (row.setup)(&p, &mut f, &mut b);
        let ev = evaluate(&p, env, &b, &f);
        let Some(g) = ev.gates.iter().find(|g| g.gate == row.gate) else {
            failures.push(format!(
                "{}: no `{}` gate in {:?}",
                row.name, row.gate, ev.gates
            ));
            continue;
        };
        if g.result != row.outcome
            || ev.decision != row.decision
            || !g.reasons.iter().any(|r| r.contains(row.reason))
        {
            failures.push(format!(
                "{}:\n  expected {:?}/{:?} with {:?}\n  got {:?}/{:?} {:?}",
                row.name, row.outcome, row.decision, row.reason, g.result, ev.decision, g.reasons
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn from_upstream_requires_a_release_there() {
    let l = load_text(
        "p",
        "environments:\n  staging: {}\n  production:\n    promote: { from: [staging] }\n",
    );
    let p = l.policy.expect("policy");
    let env = p.env("production").expect("env");
    let mut f = Facts {
        now: Some(now()),
        ..Facts::default()
    };
    let ev = evaluate(&p, env, &build(), &f);
    assert_eq!(ev.decision, Decision::Denied);
    assert_eq!(ev.gates[0].reasons, ["never released in `staging`"]);
    f.releases.insert("staging".into(), release(BUILD, 1));
    assert_eq!(evaluate(&p, env, &build(), &f).decision, Decision::Allowed);
}
