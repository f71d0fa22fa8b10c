//! `pipe scan`: end-to-end through the binary, against a database imported once from
//! `../shared/advisory-db/osv` (plus `tests/scan/osv-extra` for RubyGems, Debian and Alpine).
//!
//! The shared data lives beside the repository (CI has the same layout). Without it the tests
//! skip on a laptop and fail under `CI=true`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// 2026-11-25T00:00:00Z: "now" for every scan, so expiry and staleness are reproducible.
const NOW: &str = "1795564800";

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared() -> Option<PathBuf> {
    let p = repo().join("..").join("shared").join("advisory-db");
    if p.join("osv").is_dir() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("`../shared/advisory-db/osv` is missing beside the repository");
    }
    eprintln!("skipping: `../shared/advisory-db/osv` is not beside the repository");
    None
}

pub(crate) fn fixtures() -> PathBuf {
    repo().join("tests").join("scan")
}

pub(crate) fn pipe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipe"));
    c.env("SOURCE_DATE_EPOCH", NOW)
        .env("NO_COLOR", "1")
        .env_remove("PIPE_SCAN_DB")
        .env(
            "PIPE_CACHE_DIR",
            std::env::temp_dir().join("pipe-scan-tests-no-cache"),
        );
    c
}

pub(crate) fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The database every test shares: imported into cargo's per-target temporary directory and
/// reused while the `pipe` binary is the same (a stamp records which), so test processes do
/// not each import 8600 advisories or leave copies behind. Concurrent imports are safe: the
/// import renames a finished file into place.
pub(crate) fn db() -> Option<&'static Path> {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    let shared = shared()?;
    Some(DB.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scan-db");
        let bin = std::fs::metadata(env!("CARGO_BIN_EXE_pipe")).expect("pipe binary");
        let stamp = format!("{:?} {}", bin.modified().ok(), bin.len());
        let stamp_file = dir.join("stamp");
        if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str())
            && dir.join("osv.db").is_file()
        {
            return dir;
        }
        let o = pipe()
            .args(["scan", "db", "import"])
            .arg(shared.join("osv"))
            .arg(fixtures().join("osv-extra"))
            .arg("--db")
            .arg(&dir)
            .output()
            .expect("runs");
        assert!(o.status.success(), "import failed: {:?}", text(&o));
        std::fs::write(&stamp_file, stamp).expect("stamp");
        dir
    }))
}

fn scan(db: &Path, target: &Path, extra: &[&str]) -> Output {
    pipe()
        .args(["scan", "fs"])
        .arg(target)
        .arg("--db")
        .arg(db)
        .args(extra)
        .output()
        .expect("runs")
}

fn scan_json(db: &Path, target: &Path, extra: &[&str]) -> (Value, Output) {
    let mut args = vec!["--output", "json"];
    args.extend_from_slice(extra);
    let o = scan(db, target, &args);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", text(&o)));
    (v, o)
}

fn project() -> PathBuf {
    fixtures().join("fixtures").join("project")
}

pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

// ---------------------------------------------------------------------------------------------
// cargo-audit agreement

#[test]
fn crates_io_verdicts_equal_cargo_audit() {
    let Some(db) = db() else { return };
    let dir = fixtures().join("cargo-audit");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("expected"))
        .expect("expected dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "the corpus has {} lockfiles",
        files.len()
    );
    let mut compared = 0;
    for f in files {
        let expected: Value =
            serde_json::from_slice(&std::fs::read(&f).expect("read")).expect("json");
        let lock = dir.join(expected["lockfile"].as_str().expect("lockfile"));
        let mut want: BTreeSet<Vec<String>> = BTreeSet::new();
        for key in ["findings", "pipe_only"] {
            for x in expected[key].as_array().into_iter().flatten() {
                want.insert(
                    x.as_array()
                        .expect("row")
                        .iter()
                        .map(|s| s.as_str().expect("str").to_owned())
                        .collect(),
                );
            }
        }
        let (report, o) = scan_json(db, &lock, &["--fail-on", "none"]);
        assert_eq!(code(&o), 0, "{:?}", text(&o));
        let got: BTreeSet<Vec<String>> = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| {
                vec![
                    f["kind"].as_str().expect("kind").to_owned(),
                    f["id"].as_str().expect("id").to_owned(),
                    f["package"]["name"].as_str().expect("name").to_owned(),
                    f["package"]["version"]
                        .as_str()
                        .expect("version")
                        .to_owned(),
                ]
            })
            .collect();
        let missing: Vec<_> = want.difference(&got).collect();
        let extra: Vec<_> = got.difference(&want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: missing {missing:?}, extra {extra:?}",
            lock.display()
        );
        compared += want.len();
    }
    assert!(compared > 6000, "only {compared} findings compared");
}

// ---------------------------------------------------------------------------------------------
// Inventory and matching across ecosystems

/// One line per package and finding: the whole inventory and verdict in a reviewable form.
fn compact(report: &Value) -> String {
    let mut out = String::new();
    for p in report["packages"].as_array().expect("packages") {
        out.push_str(&format!(
            "pkg {}:{} {} {} {} {}{}{} {}\n",
            p["source_file"].as_str().unwrap_or(""),
            p["line"],
            p["ecosystem"].as_str().unwrap_or(""),
            p["name"].as_str().unwrap_or(""),
            p["version"].as_str().unwrap_or(""),
            p["origin"].as_str().unwrap_or(""),
            if p["direct"] == true { " direct" } else { "" },
            if p["dev"] == true { " dev" } else { "" },
            p["purl"].as_str().unwrap_or(""),
        ));
    }
    for f in report["findings"].as_array().expect("findings") {
        let fixed: Vec<&str> = f["fixed"]
            .as_array()
            .expect("fixed")
            .iter()
            .filter_map(|x| x.as_str())
            .collect();
        out.push_str(&format!(
            "find {}:{} {} {} {}@{} {} fixed=[{}]{}{}\n",
            f["location"]["path"].as_str().unwrap_or(""),
            f["location"]["start_line"],
            f["kind"].as_str().unwrap_or(""),
            f["id"].as_str().unwrap_or(""),
            f["package"]["name"].as_str().unwrap_or(""),
            f["package"]["version"].as_str().unwrap_or(""),
            f["severity"].as_str().unwrap_or(""),
            fixed.join(", "),
            if f["gated"] == true { " GATED" } else { "" },
            match f["suppressed_by"]["type"].as_str() {
                Some(t) => format!(" suppressed-by={t}"),
                None => String::new(),
            },
        ));
    }
    for w in report["warnings"].as_array().expect("warnings") {
        out.push_str(&format!(
            "warn {} {}:{} {}\n",
            w["code"].as_str().unwrap_or(""),
            w["path"].as_str().unwrap_or("-"),
            w["line"],
            w["message"].as_str().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "result {} {}\n",
        report["result"], report["summary"]
    ));
    out
}

#[test]
fn every_lockfile_kind_is_read_and_matched() {
    let Some(db) = db() else { return };
    let (report, o) = scan_json(db, &project(), &[]);
    assert_eq!(code(&o), 1, "{:?}", text(&o));
    let files: Vec<&str> = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    for want in [
        "rust/Cargo.lock",
        "node-v3/package-lock.json",
        "node-v1/package-lock.json",
        "yarn-classic/yarn.lock",
        "yarn-berry/yarn.lock",
        "pnpm-v9/pnpm-lock.yaml",
        "pnpm-v6/pnpm-lock.yaml",
        "python/requirements.txt",
        "python/requirements-dev.txt",
        "poetry/poetry.lock",
        "pipenv/Pipfile.lock",
        "uv/uv.lock",
        "go/go.mod",
        "go-sum-only/go.sum",
        "ruby/Gemfile.lock",
        "debian/var/lib/dpkg/status",
        "alpine/lib/apk/db/installed",
    ] {
        assert!(files.contains(&want), "{want} not read: {files:?}");
    }
    insta::assert_snapshot!("scan_project_compact", compact(&report));
}

#[test]
fn go_toolchain_is_matched_as_stdlib() {
    let Some(db) = db() else { return };
    let (report, _) = scan_json(db, &fixtures().join("fixtures").join("stdlib"), &[]);
    let ids: Vec<&str> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["package"]["name"] == "stdlib")
        .filter_map(|f| f["id"].as_str())
        .collect();
    // GO-2024-2687 (net/http, fixed in 1.21.9 and 1.22.2) affects go1.22.1.
    assert!(ids.contains(&"GO-2024-2687"), "{ids:?}");
}

// ---------------------------------------------------------------------------------------------
// Reports

fn rust_only() -> PathBuf {
    project().join("rust")
}

#[test]
fn json_report_snapshot() {
    let Some(db) = db() else { return };
    let (mut report, _) = scan_json(db, &rust_only(), &["--fail-on-kind", "unmaintained"]);
    // The database block follows the shared data, not this code: keep the snapshot stable.
    report["db"] = Value::String("[db]".into());
    report["target"]["path"] = Value::String("[target]".into());
    // The secret rules have their own tests; their digest changes with every rule.
    report["secret_rules"] = Value::String("[secret rules]".into());
    insta::assert_json_snapshot!("scan_report_rust", report);
}

#[test]
fn same_inputs_give_byte_identical_outputs() {
    let Some(db) = db() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let run = |n: &str| {
        let outs: Vec<String> = ["json", "sarif", "markdown", "cyclonedx"]
            .iter()
            .map(|f| format!("{f}={}", tmp.path().join(format!("{n}.{f}")).display()))
            .collect();
        let mut args: Vec<&str> = Vec::new();
        for o in &outs {
            args.push("--output");
            args.push(o);
        }
        let o = scan(db, &project(), &args);
        assert_eq!(code(&o), 1, "{:?}", text(&o));
    };
    run("a");
    run("b");
    for f in ["json", "sarif", "markdown", "cyclonedx"] {
        let a = std::fs::read(tmp.path().join(format!("a.{f}"))).expect("a");
        let b = std::fs::read(tmp.path().join(format!("b.{f}"))).expect("b");
        assert!(!a.is_empty());
        assert!(a == b, "{f} differs between two runs");
    }
}

/// Serves the schemas' cross-references from `../shared/schemas` (no network).
struct LocalSchemas(PathBuf);

impl jsonschema::Retrieve for LocalSchemas {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or("");
        let bytes = std::fs::read(self.0.join(name))?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

pub(crate) fn schema(name: &str) -> Option<(Value, PathBuf)> {
    let dir = shared()?.join("..").join("schemas");
    let v = serde_json::from_slice(&std::fs::read(dir.join(name)).expect("schema")).expect("json");
    Some((v, dir))
}

pub(crate) fn assert_valid(schema: &Value, dir: PathBuf, doc: &Value) {
    let validator = jsonschema::options()
        .with_retriever(LocalSchemas(dir))
        .build(schema)
        .expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn sarif_is_valid_and_fit_for_github() {
    let Some(db) = db() else { return };
    let Some((schema, dir)) = schema("sarif-schema-2.1.0.json") else {
        return;
    };
    let o = scan(db, &project(), &["--output", "sarif"]);
    let doc: Value = serde_json::from_slice(&o.stdout).expect("sarif json");
    assert_valid(&schema, dir, &doc);
    let run = &doc["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    let results = run["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for rule in rules {
        assert!(rule["help"]["text"].is_string() && rule["help"]["markdown"].is_string());
    }
    for r in results {
        let idx = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        let loc = &r["locations"][0]["physicalLocation"];
        let uri = loc["artifactLocation"]["uri"].as_str().expect("uri");
        assert!(!uri.starts_with('/') && !uri.contains("://"), "{uri}");
        assert!(
            project().join(uri).is_file(),
            "{uri} is not a file of the scanned tree"
        );
        assert!(loc["region"]["startLine"].as_u64().expect("line") >= 1);
        assert!(r["partialFingerprints"]["pipeScan/v1"].is_string());
    }
    let sev = |id: &str| -> Option<String> {
        rules.iter().find(|r| r["id"] == id).and_then(|r| {
            r["properties"]["security-severity"]
                .as_str()
                .map(str::to_owned)
        })
    };
    // regex RUSTSEC-2022-0013 is CVSS 7.5.
    assert_eq!(sev("RUSTSEC-2022-0013").as_deref(), Some("7.5"));
}

#[test]
fn cyclonedx_is_valid() {
    let Some(db) = db() else { return };
    let Some((schema, dir)) = schema("bom-1.6.schema.json") else {
        return;
    };
    let o = scan(db, &project(), &["--output", "cyclonedx"]);
    let doc: Value = serde_json::from_slice(&o.stdout).expect("cyclonedx json");
    assert_valid(&schema, dir, &doc);
    let comps = doc["components"].as_array().expect("components");
    assert!(comps.iter().any(|c| c["purl"] == "pkg:cargo/regex@1.5.4"));
    assert!(
        comps
            .iter()
            .any(|c| c["purl"] == "pkg:npm/%40scope/pkg@1.0.0")
    );
}

#[test]
fn several_outputs_from_one_run() {
    let Some(db) = db() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let json = tmp.path().join("out/pipe-scan.json");
    let md = tmp.path().join("summary.md");
    let o = scan(
        db,
        &rust_only(),
        &[
            "--output",
            "table",
            "--output",
            &format!("json={}", json.display()),
            "--output",
            &format!("markdown={}", md.display()),
        ],
    );
    let (stdout, _) = text(&o);
    assert!(stdout.contains("RUSTSEC-2022-0013"), "{stdout}");
    assert!(stdout.contains("fail the policy: fail"), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("v");
    assert_eq!(report["schema"], "pipe.scan/v1");
    let md = std::fs::read_to_string(&md).expect("md");
    assert!(md.starts_with("## ❌ pipe scan: fail"), "{md}");
    // Two outputs cannot share stdout.
    let o = scan(db, &rust_only(), &["--output", "table", "--output", "json"]);
    assert_eq!(code(&o), 2);
    assert!(
        text(&o)
            .1
            .contains("more than one `--output` goes to stdout")
    );
}

// ---------------------------------------------------------------------------------------------
// Policy and exit codes

#[test]
fn exit_codes_follow_the_policy() {
    let Some(db) = db() else { return };
    let rust = rust_only();
    assert_eq!(code(&scan(db, &rust, &[])), 1, "regex is HIGH");
    assert_eq!(
        code(&scan(db, &rust, &["--fail-on", "critical"])),
        1,
        "smallvec is 9.8"
    );
    assert_eq!(code(&scan(db, &rust, &["--fail-on", "none"])), 0);
    let kinds = scan(
        db,
        &rust,
        &["--fail-on", "none", "--fail-on-kind", "unmaintained"],
    );
    assert_eq!(code(&kinds), 1, "tempdir is unmaintained");
    // --severity only filters what is shown, never the gate.
    let o = scan(db, &rust, &["--severity", "critical"]);
    assert_eq!(code(&o), 1);
    assert!(
        text(&o).0.contains("RUSTSEC-2022-0013"),
        "gated findings stay visible"
    );
    // Usage errors.
    assert_eq!(code(&scan(db, &rust, &["--severity", "bad"])), 2);
    assert_eq!(
        code(&scan(db, &rust, &["--fail-on-kind", "vulnerability"])),
        2
    );
    assert_eq!(code(&scan(db, Path::new("/nonexistent/dir"), &[])), 2);
    // Dev-only packages do not gate unless asked.
    let node = project().join("node-v3");
    let (r, o) = scan_json(db, &node, &["--fail-on", "critical"]);
    assert_eq!(code(&o), 0, "sequelize is dev-only: {}", r["summary"]);
    let o = scan(db, &node, &["--fail-on", "critical", "--include-dev-deps"]);
    assert_eq!(code(&o), 1);
    // UNKNOWN gates as --unknown-severity-as.
    let py = project().join("poetry");
    assert_eq!(code(&scan(db, &py, &["--include-dev-deps"])), 0);
    let o = scan(
        db,
        &py,
        &["--include-dev-deps", "--unknown-severity-as", "critical"],
    );
    assert_eq!(code(&o), 1);
}

#[test]
fn missing_or_stale_database_exits_3() {
    let tmp = tempfile::tempdir().expect("tmp");
    let o = scan(&tmp.path().join("none"), &repo(), &[]);
    assert_eq!(code(&o), 3);
    let (_, err) = text(&o);
    assert!(err.contains("no advisory database at"), "{err}");
    assert!(err.contains("pipe scan db import"), "{err}");
    let Some(db) = db() else { return };
    // The newest shared advisory is from 2026-08-21; "now" is 2026-11-25.
    let o = scan(db, &rust_only(), &["--db-max-age", "30d"]);
    assert_eq!(code(&o), 3);
    assert!(
        text(&o).1.contains("the advisory database is stale"),
        "{:?}",
        text(&o)
    );
    assert_ne!(code(&scan(db, &rust_only(), &["--db-max-age", "120d"])), 3);
}

pub(crate) fn write(dir: &Path, rel: &str, content: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, content).expect("write");
    p
}

fn copy_rust(dir: &Path) {
    std::fs::copy(rust_only().join("Cargo.lock"), dir.join("Cargo.lock")).expect("copy");
}

#[test]
fn ignore_rules_need_reasons_expire_and_are_reported() {
    let Some(db) = db() else { return };
    let (report, o) = scan_json(db, &project(), &[]);
    let smallvec = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == "RUSTSEC-2021-0003")
        .expect("smallvec finding");
    assert_eq!(
        smallvec["suppressed_by"]["type"], "ignore",
        "suppressed through its CVE alias"
    );
    assert_eq!(smallvec["gated"], false);
    let (_, err) = text(&o);
    assert!(
        err.contains(".pipe/scan-ignore.yaml:7: the rule for `RUSTSEC-2020-0071` expired"),
        "{err}"
    );
    assert!(err.contains("[ignore-unused]"), "{err}");
    assert_eq!(code(&scan(db, &project(), &["--strict-ignores"])), 2);

    let tmp = tempfile::tempdir().expect("tmp");
    copy_rust(tmp.path());
    write(
        tmp.path(),
        ".pipe/scan-ignore.yaml",
        "version: 1\nignore:\n  - id: RUSTSEC-2022-0013\n    packages: [\"regex@1.5.4\"]\n",
    );
    let o = scan(db, tmp.path(), &[]);
    assert_eq!(code(&o), 2);
    let (_, err) = text(&o);
    assert!(
        err.contains(".pipe/scan-ignore.yaml:3: the rule for `RUSTSEC-2022-0013` needs a `reason`"),
        "{err}"
    );
    write(
        tmp.path(),
        ".pipe/scan-ignore.yaml",
        "version: 1\nignore:\n  - id: RUSTSEC-2022-0013\n    packages: [\"regex@1.5.4\"]\n    reason: not reachable\n    expires: 2027-01-01\n  - id: RUSTSEC-2021-0003\n    paths: [\"Cargo.lock\"]\n    reason: insert_many unused\n",
    );
    assert_eq!(code(&scan(db, tmp.path(), &[])), 0);
    write(
        tmp.path(),
        ".pipe/scan-ignore.yaml",
        "version: 1\nignore:\n  - id: X\n    reson: typo\n",
    );
    let o = scan(db, tmp.path(), &[]);
    assert_eq!(code(&o), 2, "{:?}", text(&o));
}

#[test]
fn vex_and_unfixed_suppress() {
    let Some(db) = db() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    copy_rust(tmp.path());
    let vex = write(
        tmp.path(),
        "vex.json",
        r#"{"@context": "https://openvex.dev/ns/v0.2.0", "@id": "x", "author": "t", "timestamp": "2026-01-01T00:00:00Z", "version": 1,
            "statements": [{"vulnerability": {"name": "CVE-2022-24713"},
                            "products": [{"@id": "pkg:cargo/regex@1.5.4"}],
                            "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
                           {"vulnerability": {"name": "CVE-2021-25900"},
                            "products": [{"@id": "pkg:cargo/smallvec"}],
                            "status": "fixed"}]}"#,
    );
    let (r, o) = scan_json(db, tmp.path(), &["--vex", vex.to_str().expect("utf8")]);
    assert_eq!(code(&o), 0, "{}", r["summary"]);
    let f = r["findings"]
        .as_array()
        .expect("f")
        .iter()
        .find(|f| f["id"] == "RUSTSEC-2022-0013")
        .expect("regex finding");
    assert_eq!(f["suppressed_by"]["type"], "vex");
    assert_eq!(
        f["suppressed_by"]["justification"],
        "vulnerable_code_not_in_execute_path"
    );
    // --ignore-unfixed: npm findings without a fix are suppressed.
    let (r, _) = scan_json(db, &project().join("yarn-classic"), &["--ignore-unfixed"]);
    assert!(
        r["findings"]
            .as_array()
            .expect("f")
            .iter()
            .all(|f| f["suppressed_by"]["type"] == "unfixed")
    );
}

#[test]
fn baseline_gates_only_new_findings() {
    let Some(db) = db() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    copy_rust(tmp.path());
    let base = tmp.path().join("base.json");
    let o = scan(
        db,
        tmp.path(),
        &["--output", &format!("json={}", base.display())],
    );
    assert_eq!(code(&o), 1);
    assert_eq!(
        code(&scan(
            db,
            tmp.path(),
            &["--baseline", base.to_str().expect("utf8")]
        )),
        0
    );
    // A new vulnerable package fails again.
    let lock = std::fs::read_to_string(tmp.path().join("Cargo.lock")).expect("lock");
    let lock = lock.replace(
        "[[package]]\nname = \"smallvec\"",
        "[[package]]\nname = \"hyper\"\nversion = \"0.14.9\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"smallvec\"",
    );
    std::fs::write(tmp.path().join("Cargo.lock"), lock).expect("write");
    let (r, o) = scan_json(
        db,
        tmp.path(),
        &["--baseline", base.to_str().expect("utf8")],
    );
    assert_eq!(code(&o), 1, "{}", r["summary"]);
    let gated: Vec<&str> = r["findings"]
        .as_array()
        .expect("f")
        .iter()
        .filter(|f| f["gated"] == true)
        .filter_map(|f| f["package"]["name"].as_str())
        .collect();
    assert!(gated.iter().all(|n| *n == "hyper"), "{gated:?}");
}

// ---------------------------------------------------------------------------------------------
// Walking

#[test]
fn gitignore_and_skip_globs() {
    let Some(db) = db() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    for d in ["a", "b", "vendor/c"] {
        std::fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
        std::fs::copy(
            rust_only().join("Cargo.lock"),
            tmp.path().join(d).join("Cargo.lock"),
        )
        .expect("copy");
    }
    write(tmp.path(), ".gitignore", "b/\n");
    let files = |extra: &[&str]| -> Vec<String> {
        let (r, _) = scan_json(db, tmp.path(), extra);
        r["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        files(&[]),
        ["a/Cargo.lock", "b/Cargo.lock", "vendor/c/Cargo.lock"]
    );
    assert_eq!(
        files(&["--gitignore"]),
        ["a/Cargo.lock", "vendor/c/Cargo.lock"]
    );
    assert_eq!(
        files(&["--skip-dirs", "vendor"]),
        ["a/Cargo.lock", "b/Cargo.lock"]
    );
    assert_eq!(
        files(&["--skip-files", "a/Cargo.lock"]),
        ["b/Cargo.lock", "vendor/c/Cargo.lock"]
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_lockfiles_warn_with_file_and_line() {
    let Some(db) = db() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let lock = std::fs::read_to_string(rust_only().join("Cargo.lock")).expect("lock");
    write(tmp.path(), "truncated/Cargo.lock", &lock[..lock.len() / 2]);
    write(
        tmp.path(),
        "json/package-lock.json",
        "{\n  \"lockfileVersion\": 3,\n  \"packages\": {\n",
    );
    let bin = tmp.path().join("bin/yarn.lock");
    std::fs::create_dir_all(bin.parent().expect("parent")).expect("mkdir");
    std::fs::write(&bin, b"a\nb\n\xff\xfe\x00\x01binary").expect("write");
    write(
        tmp.path(),
        "yaml/pnpm-lock.yaml",
        "lockfileVersion: '9.0'\n???\n",
    );
    write(
        tmp.path(),
        "gem/Gemfile.lock",
        "GEM\n  specs:\n    rack 2.2.3\n",
    );
    write(
        tmp.path(),
        "go/go.mod",
        "module x\nrequire (\n  example.com/a\n)\n",
    );
    copy_rust(tmp.path());
    let (r, o) = scan_json(db, tmp.path(), &[]);
    // The good lockfile is still scanned and gates.
    assert_eq!(code(&o), 1, "{:?}", text(&o));
    let warnings: Vec<String> = r["warnings"]
        .as_array()
        .expect("w")
        .iter()
        .map(|w| {
            format!(
                "{} {}:{}",
                w["code"].as_str().unwrap_or(""),
                w["path"].as_str().unwrap_or(""),
                w["line"]
            )
        })
        .collect();
    for want in [
        "file-invalid truncated/Cargo.lock:",
        "file-invalid json/package-lock.json:4",
        "file-invalid bin/yarn.lock:3",
        "file-invalid yaml/pnpm-lock.yaml:2",
        "file-invalid gem/Gemfile.lock:3",
        "file-invalid go/go.mod:3",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(want)),
            "{want} not in {warnings:#?}"
        );
    }
    let (_, err) = text(&o);
    assert!(
        err.contains("warning: bin/yarn.lock:3: not a text file"),
        "{err}"
    );
}

#[test]
fn huge_lockfiles_are_skipped_or_parsed_without_crashing() {
    let Some(db) = db() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    // 100 MB of requirements: one real pin and a lot of filler lines.
    let mut big = String::with_capacity(101 * 1024 * 1024);
    big.push_str("django==1.6.4\n");
    let line = "# filler filler filler filler filler filler filler filler filler filler filler\n";
    while big.len() < 100 * 1024 * 1024 {
        big.push_str(line);
    }
    write(tmp.path(), "requirements.txt", &big);
    drop(big);
    let (r, o) = scan_json(db, tmp.path(), &[]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        r["warnings"][0]["code"], "file-too-large",
        "{}",
        r["warnings"]
    );
    let (r, o) = scan_json(db, tmp.path(), &["--max-file-size", "200MiB"]);
    assert_eq!(code(&o), 0, "{:?}", text(&o).1);
    assert!(r["summary"]["findings"].as_u64().expect("n") > 5);
}

#[test]
fn malformed_advisories_are_skipped_with_a_warning() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("osv");
    write(
        &src,
        "crates.io/GOOD-1.json",
        r#"{"id": "GOOD-1", "modified": "2024-05-01T00:00:00Z", "affected": [{"package": {"ecosystem": "crates.io", "name": "regex"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.5.5"}]}]}]}"#,
    );
    write(
        &src,
        "crates.io/BAD-1.json",
        "{\n  \"id\": \"BAD-1\",\n  \"affected\": [\n",
    );
    write(&src, "crates.io/BAD-2.json", "{\"id\": 5}");
    let db = tmp.path().join("db");
    let o = pipe()
        .args(["scan", "db", "import"])
        .arg(&src)
        .arg("--db")
        .arg(&db)
        .output()
        .expect("runs");
    assert_eq!(code(&o), 0, "{:?}", text(&o));
    let (out, err) = text(&o);
    assert!(err.contains("BAD-1.json:4: not an OSV record"), "{err}");
    assert!(err.contains("BAD-2.json:1: not an OSV record"), "{err}");
    assert!(out.contains("records    1 (0 withdrawn)"), "{out}");
    let (r, o) = scan_json(&db, &rust_only(), &[]);
    assert_eq!(
        code(&o),
        0,
        "GOOD-1 has no severity: UNKNOWN gates as MEDIUM"
    );
    assert_eq!(r["findings"][0]["id"], "GOOD-1");
    // A source that does not exist, or is not a zip, is a usage error.
    let o = pipe()
        .args(["scan", "db", "import", "/nonexistent"])
        .arg("--db")
        .arg(&db)
        .output()
        .expect("runs");
    assert_eq!(code(&o), 2);
    let notzip = write(tmp.path(), "x.zip", "not a zip");
    let o = pipe()
        .args(["scan", "db", "import"])
        .arg(&notzip)
        .arg("--db")
        .arg(&db)
        .output()
        .expect("runs");
    assert_eq!(code(&o), 2, "{:?}", text(&o));
}

// ---------------------------------------------------------------------------------------------
// Database

#[test]
fn database_digest_is_content_addressed_and_zip_imports() {
    let Some(shared) = shared() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    // A zip of the npm folder, as osv.dev's `npm/all.zip`.
    let zip_path = tmp.path().join("all.zip");
    {
        let file = std::fs::File::create(&zip_path).expect("zip");
        let mut z = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default();
        let mut names: Vec<PathBuf> = std::fs::read_dir(shared.join("osv/npm"))
            .expect("npm")
            .map(|e| e.expect("e").path())
            .collect();
        names.sort();
        names.reverse(); // a different order than the directory walk
        for p in names {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            z.start_file(name, opts).expect("start");
            std::io::Write::write_all(&mut z, &std::fs::read(&p).expect("read")).expect("write");
        }
        z.finish().expect("finish");
    }
    let import = |src: &Path, db: &Path| {
        let o = pipe()
            .args(["scan", "db", "import"])
            .arg(src)
            .arg("--db")
            .arg(db)
            .output()
            .expect("runs");
        assert!(o.status.success(), "{:?}", text(&o));
    };
    import(&zip_path, &tmp.path().join("a"));
    import(&shared.join("osv/npm"), &tmp.path().join("b"));
    let status = |db: &Path| -> Value {
        let o = pipe()
            .args(["scan", "db", "status", "--json", "--db"])
            .arg(db)
            .output()
            .expect("runs");
        assert!(o.status.success(), "{:?}", text(&o));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    let (a, b) = (status(&tmp.path().join("a")), status(&tmp.path().join("b")));
    assert_eq!(a["digest"], b["digest"]);
    assert_eq!(a["ecosystems"]["npm"]["records"], 456);
    assert!(a["digest"].as_str().expect("digest").starts_with("sha256:"));
    let o = pipe()
        .args(["scan", "db", "status", "--db"])
        .arg(tmp.path().join("a"))
        .output()
        .expect("runs");
    let (out, _) = text(&o);
    assert!(
        out.contains("records    456 (0 withdrawn)") && out.contains("npm"),
        "{out}"
    );
    let o = pipe()
        .args(["scan", "db", "status", "--db"])
        .arg(tmp.path().join("none"))
        .output()
        .expect("runs");
    assert_eq!(code(&o), 3);
}

#[test]
fn withdrawn_advisories_never_match() {
    let Some(db) = db() else { return };
    // RUSTSEC-2020-0063 is withdrawn; lockfile 14 has its crate at affected versions.
    let lock = fixtures().join("cargo-audit/lockfiles/14-withdrawn/Cargo.lock");
    let (r, _) = scan_json(db, &lock, &["--fail-on", "none"]);
    let withdrawn: BTreeSet<String> =
        std::fs::read_dir(shared().expect("shared").join("osv/crates.io"))
            .expect("dir")
            .filter_map(|e| {
                let v: Value = serde_json::from_slice(&std::fs::read(e.ok()?.path()).ok()?).ok()?;
                v.get("withdrawn")?;
                Some(v["id"].as_str()?.to_owned())
            })
            .collect();
    assert!(withdrawn.len() >= 13);
    for f in r["findings"].as_array().expect("f") {
        assert!(
            !withdrawn.contains(f["id"].as_str().expect("id")),
            "{}",
            f["id"]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `uses: pipe/scan@v1` in a pipeline.

fn scan_workflow(db: &Path, fail_on: &str) -> String {
    format!(
        r#"on: push
jobs:
  scan:
    runs-on: ubuntu-latest
    steps:
      - id: deps
        uses: pipe/scan@v1
        with:
          path: app
          db: {db}
          fail-on: {fail_on}
          output: sarif=scan.sarif
      - if: always()
        run: echo "result=${{{{ steps.deps.outputs.result }}}} gated=${{{{ steps.deps.outputs.gated }}}}"
"#,
        db = db.display()
    )
}

#[test]
fn the_scan_action_gates_the_step_and_keeps_its_report_as_evidence() {
    let Some(db) = db() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("app")).expect("mkdir");
    std::fs::copy(
        fixtures().join("cargo-audit/lockfiles/04-v4-basic/Cargo.lock"),
        root.join("app/Cargo.lock"),
    )
    .expect("copy lockfile");
    std::fs::create_dir_all(root.join(".git")).expect("git marker");
    let state = dir.path().join("state");
    let run = |fail_on: &str| {
        std::fs::write(root.join("wf.yml"), scan_workflow(db, fail_on)).expect("write");
        let summary = dir.path().join(format!("summary-{fail_on}.json"));
        let o = pipe()
            .current_dir(&root)
            .env("PIPE_STATE_DIR", &state)
            .args(["run", "-W", "wf.yml", "--progress", "plain", "--summary"])
            .arg(&summary)
            .output()
            .expect("runs");
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary"))
            .expect("json");
        (o, s)
    };

    // A blocking policy fails the step, names why, and still reports.
    let (o, s) = run("low");
    let (_, err) = text(&o);
    assert_eq!(code(&o), 1, "{err}");
    let step = &s["jobs"][0]["steps"][0];
    assert_eq!(step["conclusion"], "failure", "{s}");
    assert!(err.contains("the scan policy failed"), "{err}");
    assert!(err.contains("RUSTSEC-"), "the table is in the log: {err}");
    assert!(
        root.join("scan.sarif").is_file(),
        "the sarif output is written"
    );
    // The failed scan is evidence too.
    let evidence_dir = std::fs::read_dir(state.join("repos"))
        .expect("state")
        .flatten()
        .next()
        .expect("repo state")
        .path()
        .join("runs/1/evidence");
    assert!(
        evidence_dir.join("scan-scan-deps.json").is_file(),
        "{}",
        evidence_dir.display()
    );

    // A passing policy: outputs, the step summary and the evidence file.
    let (o, s) = run("none");
    let (_, err) = text(&o);
    assert_eq!(code(&o), 0, "{err}");
    let outputs = &s["jobs"][0]["steps"][0]["outputs"];
    assert_eq!(outputs["result"], "pass", "{s}");
    assert!(
        outputs["findings"]
            .as_str()
            .and_then(|n| n.parse::<u32>().ok())
            > Some(0),
        "{s}"
    );
    let report = PathBuf::from(outputs["report"].as_str().expect("report output"));
    assert!(report.starts_with(&state), "{}", report.display());
    let evidence: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("evidence")).expect("json");
    assert_eq!(evidence["schema"], "pipe.scan/v1");
    // The markdown report is the step summary, printed at the end of the run.
    assert!(err.contains("## ✅ pipe scan: pass"), "{err}");
    assert!(err.contains("result=pass"), "{err}");
}
