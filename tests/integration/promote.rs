//! Promotion end to end: a workflow produces a build with test, coverage, scan and benchmark
//! evidence; `pipe gates` explains what is unmet; two approvals by different SSH signers (keys
//! made by `ssh-keygen`) promote it to `staging`, then to `production` after the soak; the
//! ledger records every step, `pipe ledger verify` passes, and a tampered ledger exits 4.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::in_ci;

struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
    cache: PathBuf,
}

impl Repo {
    fn pipe(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args(args)
            .current_dir(&self.root)
            .env("NO_COLOR", "1")
            .env("PIPE_STATE_DIR", &self.state)
            .env("PIPE_CACHE_DIR", &self.cache)
            .env_remove("PIPE_LOG")
            .env_remove("PIPE_POLICY_REF")
            .env_remove("PIPE_SIGNING_KEY")
            .env_remove("PIPE_ACTOR")
            .output()
            .expect("run pipe");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "pipe panicked:\n{err}");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err,
        )
    }

    fn json(&self, args: &[&str]) -> (i32, Value) {
        let (code, out, err) = self.pipe(args);
        let v =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}\n{err}"));
        (code, v)
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

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("-?").output().is_ok();
    if !found {
        assert!(!in_ci(), "`{tool}` is missing (CI installs it)");
        eprintln!("skipping: `{tool}` is not installed");
    }
    found
}

fn keygen(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    let mut parts = public.split_whitespace();
    format!(
        "{name} {} {}\n",
        parts.next().expect("type"),
        parts.next().expect("key")
    )
}

const LOCK: &str = r#"version = 3

[[package]]
name = "demo-app"
version = "0.1.0"
dependencies = ["leaky", "slowpoke"]

[[package]]
name = "leaky"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "slowpoke"
version = "0.3.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

fn advisory(id: &str, name: &str, fixed: &str, vector: &str, modified: &str) -> String {
    serde_json::json!({
        "id": id, "summary": id, "modified": modified,
        "severity": [{ "type": "CVSS_V3", "score": vector }],
        "affected": [{ "package": { "ecosystem": "crates.io", "name": name },
            "ranges": [{ "type": "SEMVER", "events": [{ "introduced": "0" }, { "fixed": fixed }] }] }]
    })
    .to_string()
}

fn workflow(db: &Path) -> String {
    format!(
        r#"on: push
jobs:
  build:
    runs-on: ubuntu-latest
    outputs:
      image: ${{{{ steps.digest.outputs.digest }}}}
    steps:
      - id: digest
        run: |
          mkdir -p dist && echo "app v1" > dist/app
          echo "digest=sha256:$(sha256sum dist/app | cut -d' ' -f1)" >> "$GITHUB_OUTPUT"
  test:
    runs-on: ubuntu-latest
    steps:
      - run: |
          printf '<testsuites><testsuite name="unit" tests="2"><testcase name="a"/><testcase name="b"/></testsuite></testsuites>\n' > junit.xml
          printf 'SF:src/lib.rs\nDA:1,1\nDA:2,1\nDA:3,1\nDA:4,0\nend_of_record\n' > lcov.info
    reports:
      junit: junit.xml
      coverage: lcov.info
  scan:
    runs-on: ubuntu-latest
    steps:
      - uses: pipe/scan@v1
        with:
          path: app
          db: {db}
          fail-on: none
  bench:
    runs-on: ubuntu-latest
    steps:
      - uses: pipe/bench@v1
        with:
          commands: |
            true
            true
          names: |
            base
            candidate
          runs: 10
"#,
        db = db.display()
    )
}

fn policy(waiver_expires: &str) -> String {
    format!(
        r#"build:
  workflow: .github/workflows/ci.yml
  subjects:
    - {{ name: app, output: build.image }}
groups:
  release-managers: [alice, bob, carol]
environments:
  staging:
    promote: {{ from: build, auto: true, refs: {{ branches: [main] }} }}
    gates:
      jobs: [build, test, scan, bench]
      vulnerabilities:
        block_at: high
        waivers:
          - {{ id: TEST-RUST-0001, justification: "the leaky code path is not linked", expires: "{waiver_expires}" }}
      coverage: {{ min_lines: 70 }}
      benchmarks: {{ on_inconclusive: pass }}
  production:
    promote: {{ from: [staging] }}
    gates:
      jobs: [build, test, scan, bench]
      soak: {{ in: staging, min: 2s }}
      approvals:
        rules:
          - {{ name: release-managers, from: [group:release-managers], count: 2 }}
"#
    )
}

fn gate<'v>(v: &'v Value, name: &str) -> &'v Value {
    v["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["gate"] == name)
        .unwrap_or_else(|| panic!("no gate `{name}` in {v:#}"))
}

fn setup() -> Option<Repo> {
    if !have("ssh-keygen") || !have("git") {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    let keys = dir.path().join("keys");
    for d in [
        &root,
        &keys,
        &root.join(".github/workflows"),
        &root.join(".pipe"),
        &root.join("app"),
    ] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let repo = Repo {
        state: dir.path().join("state"),
        cache: dir.path().join("cache"),
        root,
        _dir: dir,
    };
    // A tiny advisory database: one critical advisory (waived by policy), one medium.
    let osv = repo._dir.path().join("osv");
    std::fs::create_dir_all(osv.join("crates.io")).expect("mkdir");
    let now = pipe_now();
    std::fs::write(
        osv.join("crates.io/TEST-RUST-0001.json"),
        advisory(
            "TEST-RUST-0001",
            "leaky",
            "1.0.1",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            &now,
        ),
    )
    .expect("write");
    std::fs::write(
        osv.join("crates.io/TEST-RUST-0002.json"),
        advisory(
            "TEST-RUST-0002",
            "slowpoke",
            "0.3.1",
            "CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:U/C:L/I:L/A:N",
            &now,
        ),
    )
    .expect("write");
    let db = repo._dir.path().join("db");
    let (code, _, err) = repo.pipe(&[
        "scan",
        "db",
        "import",
        osv.to_str().expect("utf-8"),
        "--db",
        db.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");

    std::fs::write(repo.root.join("app/Cargo.lock"), LOCK).expect("write");
    std::fs::write(repo.root.join(".github/workflows/ci.yml"), workflow(&db)).expect("write");
    std::fs::write(
        repo.root.join(".pipe/environments.yml"),
        policy("2099-01-01"),
    )
    .expect("write");
    let mut signers = String::new();
    for who in ["alice", "bob", "carol"] {
        signers.push_str(&keygen(&keys, who));
    }
    std::fs::write(repo.root.join(".pipe/allowed_signers"), signers).expect("write");
    std::fs::write(
        repo.root.join(".gitignore"),
        "dist/\njunit.xml\nlcov.info\n",
    )
    .expect("write");
    git(&repo.root, &["init", "-q", "-b", "main"]);
    git(&repo.root, &["config", "user.name", "bob"]);
    git(&repo.root, &["config", "user.email", "bob@example.test"]);
    git(&repo.root, &["add", "-A"]);
    git(&repo.root, &["commit", "-q", "-m", "app"]);
    Some(repo)
}

fn pipe_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    // Days to a civil date (Howard Hinnant's algorithm), for the advisory's `modified`.
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T00:00:00Z")
}

fn key(repo: &Repo, who: &str) -> String {
    repo._dir
        .path()
        .join("keys")
        .join(who)
        .display()
        .to_string()
}

#[test]
fn a_build_is_promoted_through_staging_to_production() {
    let Some(repo) = setup() else { return };

    // The run registers the build.
    let (code, _, run_err) = repo.pipe(&[
        "run",
        "-W",
        ".github/workflows/ci.yml",
        "--progress",
        "plain",
    ]);
    assert_eq!(code, 0, "{run_err}");
    assert!(run_err.contains("registered build `"), "{run_err}");
    let (_, builds) = repo.json(&["builds", "--json"]);
    let builds = builds.as_array().expect("array");
    assert_eq!(builds.len(), 1, "{builds:?}");
    let b = &builds[0];
    let alias = b["alias"].as_str().expect("alias").to_owned();
    let id = b["id"].as_str().expect("id").to_owned();
    let kinds: Vec<&str> = b["evidence"]
        .as_array()
        .expect("evidence")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert!(
        kinds.contains(&"summary") && kinds.contains(&"scan") && kinds.contains(&"bench"),
        "{kinds:?}"
    );
    assert_eq!(b["subjects"][0]["name"], "app");
    let (code, show, _) = repo.pipe(&["show", &id[..19]]);
    assert_eq!(code, 0);
    assert!(show.contains(&format!("alias {alias}")), "{show}");

    // Production waits: staging took the build (`auto: true`), but no approvals yet.
    let (code, g) = repo.json(&["gates", &alias, "--to", "production", "--json"]);
    assert_eq!(code, 3, "{g:#}");
    assert_eq!(g["decision"], "PENDING");
    assert_eq!(gate(&g, "from")["reasons"][0], "released in `staging`");
    assert_eq!(gate(&g, "approvals")["result"], "PENDING");
    let (_, human, _) = repo.pipe(&["gates", &alias, "--to", "production"]);
    assert!(
        human.contains("`release-managers`: needs 2 approvals from alice, bob, carol, has 0"),
        "{human}"
    );

    // Staging: the critical finding is waived, the medium one is below `block_at`.
    let (code, g) = repo.json(&["gates", &alias, "--to", "staging", "--json"]);
    assert_eq!(code, 0, "{g:#}");
    let v = gate(&g, "vulnerabilities");
    assert_eq!(v["result"], "WAIVED", "{v:#}");
    assert!(
        v["reasons"][0]
            .as_str()
            .expect("reason")
            .contains("TEST-RUST-0001 in `leaky` waived until 2099-01-01T00:00:00Z"),
        "{v:#}"
    );
    assert_eq!(gate(&g, "coverage")["result"], "PASS");
    assert!(
        gate(&g, "coverage")["reasons"][0]
            .as_str()
            .expect("r")
            .contains("75.00%")
    );
    assert_ne!(gate(&g, "benchmarks")["result"], "FAIL", "{g:#}");
    assert_eq!(gate(&g, "jobs")["result"], "PASS");
    // `auto: true` promoted it at the end of the run already; promoting again changes nothing.
    assert!(
        run_err.contains(&format!("auto-promotion `{alias}` -> `staging`: promoted")),
        "{run_err}"
    );
    let (code, _, err) = repo.pipe(&["promote", &alias, "--to", "staging", "--reason", "nightly"]);
    assert_eq!(code, 0, "{err}");
    let (_, hist) = repo.json(&["history", "staging", "--json"]);
    let releases = hist
        .as_array()
        .expect("history")
        .iter()
        .filter(|h| h["kind"] == "release.recorded")
        .count();
    assert_eq!(releases, 1, "{hist:#}");
    assert!(
        err.contains(&format!("`{alias}` is now the release of `staging`")),
        "{err}"
    );

    // Production: pending (exit 3) on soak and approvals.
    let (code, p) = repo.json(&["promote", &alias, "--to", "production", "--json"]);
    assert_eq!(code, 3, "{p:#}");
    assert_eq!(p["decision"], "PENDING");
    // bob asked, so bob's approval is refused; alice and carol approve.
    let (code, _, err) = repo.pipe(&[
        "approve",
        &alias,
        "--to",
        "production",
        "--key",
        &key(&repo, "bob"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`bob` requested this promotion and may not approve it"),
        "{err}"
    );
    for who in ["alice", "carol"] {
        let (code, _, err) = repo.pipe(&[
            "approve",
            &alias,
            "--to",
            "production",
            "--key",
            &key(&repo, who),
            "--comment",
            "lgtm",
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains(&format!("as `{who}`")), "{err}");
    }
    // A key that is not listed is refused.
    let stranger = repo._dir.path().join("keys/stranger");
    keygen(&repo._dir.path().join("keys"), "stranger");
    let (code, _, err) = repo.pipe(&[
        "approve",
        &alias,
        "--to",
        "production",
        "--key",
        stranger.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not in `.pipe/allowed_signers`"), "{err}");

    // `--wait` re-evaluates until the soak is over.
    let (code, p) = repo.json(&[
        "promote",
        &alias,
        "--to",
        "production",
        "--wait",
        "--poll",
        "1s",
        "--timeout",
        "60s",
        "--json",
    ]);
    assert_eq!(code, 0, "{p:#}");
    assert_eq!(p["decision"], "ALLOWED");
    let approvals = p["evaluation"]["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["gate"] == "approvals")
        .expect("approvals");
    assert_eq!(
        approvals["reasons"][0],
        "`release-managers`: 2 of 2 (alice, carol)"
    );

    let (_, st) = repo.json(&["status", "--json"]);
    for env in st.as_array().expect("status") {
        assert_eq!(env["release"]["build"], id.as_str(), "{st:#}");
    }
    let (_, hist) = repo.json(&["history", "production", "--json"]);
    let kinds: Vec<&str> = hist
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["kind"].as_str().expect("kind"))
        .collect();
    // Pending evaluations are recorded when a gate's result changes (how many depends on timing).
    assert_eq!(kinds[1], "gate.evaluated", "{kinds:?}");
    let decisive: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| *k != "gate.evaluated")
        .collect();
    assert_eq!(
        decisive,
        [
            "promotion.requested",
            "approval.granted",
            "approval.granted",
            "promotion.decided",
            "release.recorded"
        ],
        "{kinds:?}"
    );
    let (code, out, err) = repo.pipe(&["ledger", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ledger ok: "), "{out}");
    let (_, metrics, _) = repo.pipe(&["metrics"]);
    assert!(
        metrics
            .contains("pipe_promotions_total{environment=\"production\",decision=\"allowed\"} 1"),
        "{metrics}"
    );

    // Lock stops the line.
    let (code, _, err) = repo.pipe(&["lock", "production", "--reason", "incident 42"]);
    assert_eq!(code, 0, "{err}");
    let (code, g) = repo.json(&["gates", &alias, "--to", "production", "--json"]);
    assert_eq!(code, 3);
    assert_eq!(
        gate(&g, "lock")["reasons"][0],
        "`production` is locked by bob: incident 42"
    );
    let (code, _, _) = repo.pipe(&["unlock", "production"]);
    assert_eq!(code, 0);

    // Tampering with a stored entry is found, and named.
    let db = std::fs::read_dir(&repo.state)
        .expect("state")
        .flatten()
        .find_map(|e| {
            let p = e.path().join("ledger.db");
            p.is_file().then_some(p)
        })
        .or_else(|| {
            std::fs::read_dir(repo.state.join("repos"))
                .ok()?
                .flatten()
                .find_map(|e| {
                    let p = e.path().join("ledger.db");
                    p.is_file().then_some(p)
                })
        })
        .expect("ledger.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    conn.execute(
        "UPDATE entries SET text = replace(text, '\"lgtm\"', '\"LGTM\"') WHERE kind = 'approval.granted'",
        [],
    )
    .expect("tamper");
    drop(conn);
    let (code, _, err) = repo.pipe(&["ledger", "verify"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("hash does not match the content (altered)"),
        "{err}"
    );
}

#[test]
fn the_policy_comes_from_the_trusted_ref_and_errors_name_the_line() {
    let Some(repo) = setup() else { return };
    // A weaker policy in the working tree is ignored: the committed one is read.
    std::fs::write(
        repo.root.join(".pipe/environments.yml"),
        "environments:\n  staging: {}\n",
    )
    .expect("write");
    let (code, _, err) = repo.pipe(&[
        "run",
        "-W",
        ".github/workflows/ci.yml",
        "--progress",
        "plain",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, builds) = repo.json(&["builds", "--json"]);
    let alias = builds[0]["alias"].as_str().expect("alias").to_owned();
    let (_, g) = repo.json(&["gates", &alias, "--to", "production", "--json"]);
    assert_eq!(
        gate(&g, "approvals")["result"],
        "PENDING",
        "the committed policy's gates apply"
    );
    assert!(
        g["policy"]["source"]
            .as_str()
            .expect("source")
            .starts_with("refs/heads/main:"),
        "{g:#}"
    );

    // A committed policy with a mistake: file, line and column, did-you-mean, exit 2.
    std::fs::write(
        repo.root.join(".pipe/environments.yml"),
        "environments:\n  staging:\n    gatse: {}\n",
    )
    .expect("write");
    git(&repo.root, &["commit", "-q", "-am", "typo"]);
    let (code, _, err) = repo.pipe(&["gates", &alias, "--to", "staging"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(".pipe/environments.yml:3:5: unknown key `gatse` in environment `staging` [environments]"), "{err}");
    assert!(err.contains("did you mean `gates`?"), "{err}");
    // An unknown environment and an unknown build are usage errors.
    git(
        &repo.root,
        &["checkout", "-q", "HEAD~1", "--", ".pipe/environments.yml"],
    );
    git(&repo.root, &["commit", "-q", "-am", "fix"]);
    let (code, _, err) = repo.pipe(&["gates", &alias, "--to", "prodution"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no environment `prodution` in the policy")
            && err.contains("did you mean `production`?"),
        "{err}"
    );
    let (code, _, err) = repo.pipe(&["gates", "sha256:0000000000000", "--to", "staging"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no build matches"), "{err}");
}
