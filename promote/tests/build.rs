//! Registering builds from a run folder as `pipe run` leaves it.

use pipe_promote::build::{self, RunFacts};
use pipe_promote::ledger::{Actor, Ledger, system_clock};
use pipe_promote::policy::source::load_text;
use pipe_runner::event::Summary;

const POLICY: &str = "build:\n  subjects:\n    - { name: app, output: build.image }\n    - { name: cli, artifact: dist }\nenvironments:\n  staging: {}\n";

fn summary(run: u64, digest: &str) -> Summary {
    serde_json::from_value(serde_json::json!({
        "version": 1, "run": run, "workflow": ".github/workflows/ci.yml", "event": "push",
        "conclusion": "success",
        "jobs": [
            {"id": "build", "name": "build", "matrix": null, "conclusion": "success",
             "outputs": {"image": format!("127.0.0.1:5000/app@{digest}")}, "duration_ms": 1, "steps": []},
            {"id": "test", "name": "test", "matrix": null, "conclusion": "failure",
             "outputs": {}, "duration_ms": 1, "steps": []}
        ]
    }))
    .expect("summary")
}

fn run_dir(root: &std::path::Path, n: u64, s: &Summary, cli: &[u8]) -> std::path::PathBuf {
    let dir = root.join("runs").join(n.to_string());
    std::fs::create_dir_all(dir.join("artifacts/dist/files/bin")).expect("mkdir");
    std::fs::create_dir_all(dir.join("evidence")).expect("mkdir");
    std::fs::write(dir.join("artifacts/dist/files/bin/app"), cli).expect("write");
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec(s).expect("json"),
    )
    .expect("write");
    std::fs::write(
        dir.join("evidence/scan-scan-__pipe_scan.json"),
        b"{\"findings\": []}",
    )
    .expect("write");
    dir
}

#[test]
fn a_run_registers_a_build_with_its_evidence() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path();
    let ledger = Ledger::open_in(state, system_clock()).expect("ledger");
    let spec = load_text("p", POLICY)
        .policy
        .expect("policy")
        .build
        .expect("build");
    let d1 = format!("sha256:{}", "a".repeat(64));
    let s1 = summary(1, &d1);
    let dir = run_dir(state, 1, &s1, b"v1");
    let facts = RunFacts {
        run_dir: &dir,
        summary: &s1,
        sha: "abc",
        git_ref: "refs/heads/main",
    };
    let b = build::register(&ledger, state, &spec, &facts, Actor::system())
        .expect("register")
        .expect("applies");
    assert_eq!(b.body.subjects.len(), 2);
    assert_eq!(b.body.subjects[0].name, "app");
    assert_eq!(b.body.subjects[0].digest, d1);
    assert_eq!(b.body.subjects[1].name, "cli/bin/app");
    assert_eq!(b.body.jobs[1].conclusion, "failure");
    let kinds: Vec<&str> = b.body.evidence.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["summary", "scan"]);
    let scan = build::read_evidence(state, &b.body.evidence[1].digest).expect("evidence");
    assert_eq!(scan, b"{\"findings\": []}");
    // Evidence survives the run folder and is checked against its digest.
    std::fs::remove_dir_all(&dir).expect("prune");
    assert!(build::read_evidence(state, &b.body.evidence[0].digest).is_ok());
    let blob =
        build::evidence_dir(state).join(b.body.evidence[1].digest.trim_start_matches("sha256:"));
    std::fs::write(&blob, b"{\"findings\": [1]}").expect("tamper");
    assert!(build::read_evidence(state, &b.body.evidence[1].digest).is_err());

    // A second run with other subjects is another build; resolve by alias and prefix.
    let s2 = summary(2, &format!("sha256:{}", "b".repeat(64)));
    let dir2 = run_dir(state, 2, &s2, b"v2");
    let facts = RunFacts {
        run_dir: &dir2,
        summary: &s2,
        sha: "def",
        git_ref: "refs/heads/main",
    };
    let b2 = build::register(&ledger, state, &spec, &facts, Actor::system())
        .expect("register")
        .expect("applies");
    assert_ne!(b.id, b2.id);
    let all = build::list(&ledger).expect("list");
    assert_eq!(all.iter().map(|b| b.body.run).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        build::resolve(&ledger, &b2.body.alias).expect("alias").id,
        b2.id
    );
    assert_eq!(
        build::resolve(&ledger, &b.id[7..19]).expect("prefix").id,
        b.id
    );
    assert_eq!(build::resolve(&ledger, &b.id).expect("full").id, b.id);
    assert!(matches!(
        build::resolve(&ledger, &b.id[7..15]),
        Err(build::BuildError::NotFound(_))
    ));

    // A run without the declared output registers nothing and says why.
    let mut s3 = summary(3, "latest");
    s3.jobs[0].outputs.clear();
    let dir3 = run_dir(state, 3, &s3, b"v3");
    let facts = RunFacts {
        run_dir: &dir3,
        summary: &s3,
        sha: "x",
        git_ref: "refs/heads/main",
    };
    let err =
        build::register(&ledger, state, &spec, &facts, Actor::system()).expect_err("no output");
    assert_eq!(
        err.to_string(),
        "subject `app`: job `build` has no output `image` in run 3"
    );
    assert!(ledger.verify().expect("verify").failure.is_none());

    // A lost ledger key is not silently replaced.
    drop(ledger);
    std::fs::remove_file(state.join("promote/ledger.key")).expect("remove key");
    let err = Ledger::open_in(state, system_clock()).expect_err("key mismatch");
    assert!(
        err.to_string()
            .contains("is not the key the genesis entry names"),
        "{err}"
    );
}
