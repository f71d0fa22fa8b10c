//! The engine over a real ledger: a policy change between request and decision, vetoes lifted
//! by a new request, never moving back to an older build, concurrent promoters.

use std::path::Path;

use pipe_promote::build::{self, Build, RunFacts};
use pipe_promote::engine::{Engine, PolicyRef};
use pipe_promote::gates::Decision;
use pipe_promote::ledger::{Actor, AllowedSigners, Filter, Ledger, SshSigner, kind, system_clock};
use pipe_promote::policy::Policy;
use pipe_promote::policy::source::load_text;
use pipe_runner::event::Summary;

fn signer(seed: u8) -> SshSigner {
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]);
    SshSigner::from_key(ssh_key::PrivateKey::from(pair))
}

fn allowed() -> AllowedSigners {
    let mut text = String::new();
    for (who, seed) in [("alice", 1), ("carol", 3)] {
        text.push_str(&format!(
            "{who} {}\n",
            signer(seed).public().to_openssh().expect("openssh")
        ));
    }
    AllowedSigners::parse(&text).expect("allowed signers")
}

const POLICY: &str = "build:\n  subjects: [{ name: app, output: build.image }]\ngroups:\n  rm: [alice, bob, carol]\nenvironments:\n  production:\n    gates:\n      approvals:\n        rules: [{ name: rm, from: [group:rm], count: 2 }]\n";

fn policy(text: &str) -> Policy {
    load_text("p", text).policy.expect("policy")
}

fn register(ledger: &Ledger, state: &Path, n: u64, p: &Policy) -> Build {
    let summary: Summary = serde_json::from_value(serde_json::json!({
        "version": 1, "run": n, "workflow": "ci.yml", "event": "push", "conclusion": "success",
        "jobs": [{ "id": "build", "name": "build", "matrix": null, "conclusion": "success",
                   "outputs": { "image": format!("sha256:{n:064x}") }, "duration_ms": 1, "steps": [] }]
    }))
    .expect("summary");
    let dir = state.join("runs").join(n.to_string());
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec(&summary).expect("json"),
    )
    .expect("write");
    let facts = RunFacts {
        run_dir: &dir,
        summary: &summary,
        sha: "abc",
        git_ref: "refs/heads/main",
    };
    build::register(
        ledger,
        state,
        p.build.as_ref().expect("build"),
        &facts,
        Actor::system(),
    )
    .expect("register")
    .expect("applies")
}

fn bob() -> Actor {
    Actor {
        id: "bob".into(),
        auth: None,
        via: "cli".into(),
    }
}

fn engine<'a>(
    ledger: &'a Ledger,
    state: &'a Path,
    p: &'a Policy,
    allowed: &'a AllowedSigners,
) -> Engine<'a> {
    Engine {
        ledger,
        state_dir: state,
        root: state,
        policy: PolicyRef {
            policy: p,
            origin: "refs/heads/main:.pipe/environments.yml",
            commit: None,
            allowed: Some(allowed),
        },
    }
}

#[test]
fn a_policy_change_between_request_and_decision_voids_earlier_approvals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    let ledger = Ledger::open_in(state, system_clock()).expect("ledger");
    let allowed = allowed();
    let p1 = policy(POLICY);
    let b = register(&ledger, state, 1, &p1);
    let e1 = engine(&ledger, state, &p1, &allowed);
    let env1 = e1.env("production").expect("env");
    assert_eq!(
        e1.promote(env1, &b, &bob(), None, None)
            .expect("promote")
            .decision,
        Decision::Pending
    );
    e1.approve(env1, &b, &signer(1), None, Some("ok"))
        .expect("alice");
    e1.approve(env1, &b, &signer(3), None, None).expect("carol");

    // The policy changes (a third rule) before the decision.
    let p2 = policy(&POLICY.replace(
        "count: 2 }]",
        "count: 2 }, { name: two, from: [alice, carol], count: 1 }]",
    ));
    let e2 = engine(&ledger, state, &p2, &allowed);
    let env2 = e2.env("production").expect("env");
    assert_ne!(env1.digest, env2.digest);
    let out = e2.promote(env2, &b, &bob(), None, None).expect("promote");
    assert_eq!(out.decision, Decision::Pending, "{:?}", out.evaluation);
    let approvals = out
        .evaluation
        .gates
        .iter()
        .find(|g| g.gate == "approvals")
        .expect("approvals");
    assert!(
        approvals
            .reasons
            .iter()
            .any(|r| r.contains("was for an earlier policy of `production`")),
        "{approvals:?}"
    );
    let changed = ledger
        .select(&Filter {
            kinds: vec![kind::POLICY_CHANGED.into()],
            ..Filter::default()
        })
        .expect("select");
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].body["from"], env1.digest.as_str());
    assert_eq!(changed[0].body["to"], env2.digest.as_str());

    // Approving again under the new policy promotes.
    e2.approve(env2, &b, &signer(1), None, None).expect("alice");
    e2.approve(env2, &b, &signer(3), None, None).expect("carol");
    assert_eq!(
        e2.promote(env2, &b, &bob(), None, None)
            .expect("promote")
            .decision,
        Decision::Allowed
    );
    assert!(ledger.verify().expect("verify").failure.is_none());
}

#[test]
fn a_veto_denies_until_a_new_request_and_older_builds_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path();
    let ledger = Ledger::open_in(state, system_clock()).expect("ledger");
    let allowed = allowed();
    let p = policy(
        "build:\n  subjects: [{ name: app, output: build.image }]\nenvironments:\n  production: {}\n",
    );
    let e = engine(&ledger, state, &p, &allowed);
    let env = e.env("production").expect("env");
    let old = register(&ledger, state, 1, &p);
    let new = register(&ledger, state, 2, &p);
    e.reject(
        env,
        &new,
        Actor {
            id: "carol".into(),
            auth: None,
            via: "cli".into(),
        },
        None,
        "smells",
    )
    .expect("reject");
    let out = e.promote(env, &new, &bob(), None, None).expect("promote");
    // The veto came after no request: a fresh request lifts it at once.
    assert_eq!(out.decision, Decision::Allowed, "{:?}", out.evaluation);
    // A veto during an open request denies that request.
    let p2 = policy(
        "build:\n  subjects: [{ name: app, output: build.image }]\nenvironments:\n  production:\n    gates: { approvals: { rules: [{ from: [alice], count: 1 }] } }\n",
    );
    let e2 = engine(&ledger, state, &p2, &allowed);
    let env2 = e2.env("production").expect("env");
    let newer = register(&ledger, state, 3, &p2);
    assert_eq!(
        e2.promote(env2, &newer, &bob(), None, None)
            .expect("promote")
            .decision,
        Decision::Pending
    );
    e2.reject(env2, &newer, bob(), Some(&signer(3)), "not today")
        .expect("carol signs the veto");
    e2.approve(env2, &newer, &signer(1), None, None)
        .expect("alice");
    let out = e2
        .promote(env2, &newer, &bob(), None, None)
        .expect("promote");
    assert_eq!(out.decision, Decision::Denied);
    let veto = out
        .evaluation
        .gates
        .iter()
        .find(|g| g.gate == "veto")
        .expect("veto");
    assert_eq!(
        veto.reasons[0],
        "rejected by carol: not today (a new `pipe promote` request lifts it)"
    );
    // The next request lifts it; alice's approval came after the veto and still counts.
    assert_eq!(
        e2.promote(env2, &newer, &bob(), None, None)
            .expect("promote")
            .decision,
        Decision::Allowed
    );
    // Going back to an older build is a rollback, not a promotion.
    let out = e.promote(env, &old, &bob(), None, None).expect("promote");
    assert_eq!(out.decision, Decision::Denied);
    assert!(
        out.evaluation.gates.iter().any(|g| g.gate == "order"),
        "{:?}",
        out.evaluation
    );
    assert!(ledger.verify().expect("verify").failure.is_none());
}

#[test]
fn concurrent_promoters_never_fork_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_path_buf();
    let p = policy(
        "build:\n  subjects: [{ name: app, output: build.image }]\nenvironments:\n  staging: {}\n  production: {}\n",
    );
    let builds: Vec<Build> = {
        let ledger = Ledger::open_in(&state, system_clock()).expect("ledger");
        (1..=6).map(|n| register(&ledger, &state, n, &p)).collect()
    };
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let state = state.clone();
            let p = p.clone();
            let builds = builds.clone();
            std::thread::spawn(move || {
                let ledger = Ledger::open_in(&state, system_clock()).expect("ledger");
                let allowed = AllowedSigners::default();
                let e = engine(&ledger, &state, &p, &allowed);
                let env = e
                    .env(if t % 2 == 0 { "staging" } else { "production" })
                    .expect("env");
                for b in &builds {
                    let _ = e.promote(env, b, &bob(), None, None).expect("promote");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("promoter");
    }
    let ledger = Ledger::open_in(&state, system_clock()).expect("ledger");
    let report = ledger.verify().expect("verify");
    assert_eq!(report.failure, None);
    // Each environment's releases never go back to an older build.
    for env in ["staging", "production"] {
        let rs = pipe_promote::state::releases(&ledger, env).expect("releases");
        let order: Vec<usize> = rs
            .iter()
            .map(|r| builds.iter().position(|b| b.id == r.build).expect("known"))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{env}: {order:?}");
        assert_eq!(order.last(), Some(&5), "{env} ends at the newest build");
    }
}

const DEPLOYING: &str = r#"build:
  subjects: [{ name: app, output: build.image }]
environments:
  staging:
    deploy:
      run: 'case "$PIPE_SUBJECT_APP" in *2) echo broken > current.txt;; *) echo "$PIPE_BUILD_ALIAS" > current.txt;; esac'
    verify:
      interval: 10ms
      count: 2
      checks:
        - command: { run: "! grep -q broken current.txt" }
"#;

fn deploy_events(ledger: &Ledger, env: &str) -> Vec<String> {
    ledger
        .select(&Filter {
            env: Some(env.into()),
            ..Filter::default()
        })
        .expect("select")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// An environment with `deploy:`: the decision leaves the deploy to `deploy::deploy`, whose
/// events all land in the ledger; the release is recorded only after verify passed; a failed
/// verify rolls back and records nothing; a hard lock refuses `deploy::rollback`.
#[test]
fn an_allowed_promotion_is_deployed_and_recorded_after_verify() {
    use pipe_deploy::engine::Ending;
    use pipe_promote::deploy::{self, Allowed, DeployError};
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path();
    let ledger = Ledger::open_in(state, system_clock()).expect("ledger");
    let p = policy(DEPLOYING);
    let a = allowed();
    let eng = engine(&ledger, state, &p, &a);
    let env = eng.env("staging").expect("env");
    let ctx = deploy::context(state, state, "bob", pipe_deploy::Cancel::new());
    let go = |b: &Build| {
        let out = eng.promote(env, b, &bob(), None, None).expect("promote");
        assert_eq!(out.decision, Decision::Allowed);
        assert!(out.deploy && out.release.is_none(), "{out:?}");
        let allowed = Allowed {
            env,
            build: b,
            actor: &bob(),
            request: out.request,
            reason: None,
        };
        deploy::deploy(&eng, allowed, &ctx, &mut |_| {}).expect("deploy")
    };

    let one = register(&ledger, state, 1, &p);
    let d = go(&one);
    assert_eq!(d.outcome.result, Ending::Verified);
    let rel = d.release.expect("release recorded");
    assert_eq!(rel.build.as_deref(), Some(one.id.as_str()));
    assert_eq!(rel.body["deploy"]["release"], 1);
    let kinds = deploy_events(&ledger, "staging");
    let at = |k: &str| kinds.iter().position(|x| x == k).expect(k);
    assert!(at("promotion.decided") < at("deploy.started"));
    assert!(at("verify.passed") < at("release.recorded"), "{kinds:?}");

    // build 2 fails its verify: rolled back, the release stays build 1
    let two = register(&ledger, state, 2, &p);
    let d = go(&two);
    assert!(
        matches!(d.outcome.result, Ending::RolledBack { to: 1, .. }),
        "{:?}",
        d.outcome.result
    );
    assert!(d.release.is_none());
    let cur = pipe_promote::state::releases(&ledger, "staging").expect("releases");
    assert_eq!(cur.last().map(|r| r.build.as_str()), Some(one.id.as_str()));
    assert!(
        deploy::hold(state, "staging").is_some(),
        "an auto rollback holds"
    );
    let kinds = deploy_events(&ledger, "staging");
    assert!(kinds.iter().any(|k| k == "verify.failed"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "rollback.finished"), "{kinds:?}");

    // build 3 verifies; a hard lock refuses the rollback, a plain one does not
    let three = register(&ledger, state, 3, &p);
    assert_eq!(go(&three).outcome.result, Ending::Verified);
    assert!(
        deploy::hold(state, "staging").is_none(),
        "a verified deploy lifts it"
    );
    eng.set_lock(env, bob(), Some(("incident", true)))
        .expect("lock");
    let target = pipe_deploy::engine::RollbackTarget::Previous;
    let e = deploy::rollback(
        &ledger,
        &ctx,
        "staging",
        &target,
        "oops",
        &bob(),
        &mut |_| {},
    )
    .expect_err("hard-locked");
    assert!(
        matches!(&e, DeployError::HardLocked { by, reason, .. } if by == "bob" && reason == "incident"),
        "{e}"
    );
    eng.set_lock(env, bob(), Some(("freeze", false)))
        .expect("lock");
    let d = deploy::rollback(
        &ledger,
        &ctx,
        "staging",
        &target,
        "oops",
        &bob(),
        &mut |_| {},
    )
    .expect("rollback");
    assert_eq!(d.outcome.result, Ending::Verified);
    let rel = d.release.expect("the restored build is the release");
    assert_eq!(rel.build.as_deref(), Some(one.id.as_str()));
    assert_eq!(rel.body["rollback"], "manual");
    ledger.verify().expect("the chain verifies");

    // evidence: provenance, one decision per promotion of build 1, its deployments
    let names: Vec<String> = deploy::statements(&ledger, state, &one)
        .expect("statements")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names[0], "provenance");
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("decision-staging-"))
            .count(),
        1
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("deployment-staging-"))
            .count(),
        3,
        "release 1, its replay after build 2 and the manual rollback: {names:?}"
    );
}
