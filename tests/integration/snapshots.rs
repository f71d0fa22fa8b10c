//! Snapshots of what `pipe validate` prints: the human form for every rule, and the shape of
//! the JSON and SARIF output. The SARIF log is also validated against the SARIF 2.1.0 schema.

use std::path::{Path, PathBuf};

use crate::common;

/// Representative corpus cases per rule id.
const RULES: &[(&str, &[&str])] = &[
    (
        "syntax-check",
        &[
            "unknown-step-key",
            "missing-runs-on",
            "duplicate-key-step",
            "yaml-unclosed-flow",
            "merge-key",
            "timeout-string",
        ],
    ),
    ("id", &["invalid-step-id", "duplicate-job-id"]),
    ("job-needs", &["needs-cycle", "needs-unknown"]),
    (
        "matrix",
        &["matrix-exclude-unknown-value", "matrix-duplicate-value"],
    ),
    (
        "runner-label",
        &[
            "unknown-label",
            "conflicting-labels",
            "unknown-label-matrix",
        ],
    ),
    (
        "action",
        &["uses-missing-ref", "local-action-unknown-input"],
    ),
    (
        "events",
        &[
            "unknown-activity-type",
            "dispatch-default-not-in-options",
            "filter-not-allowed",
        ],
    ),
    (
        "cron",
        &["cron-dow-7", "cron-too-frequent", "timezone-invalid"],
    ),
    (
        "glob",
        &[
            "glob-unclosed-bracket",
            "glob-path-dot-slash",
            "glob-ref-space",
            "glob-first-negated",
        ],
    ),
    ("shell-name", &["shell-typo", "defaults-shell-unknown"]),
    ("env-var", &["env-var-space"]),
    (
        "permissions",
        &["permissions-unknown-scope", "permissions-bad-level"],
    ),
    (
        "workflow-call",
        &["call-unknown-input", "call-missing-required-secret"],
    ),
    ("if-cond", &["if-always-true-job", "if-always-true-step"]),
    (
        "deprecated-commands",
        &["deprecated-set-output", "deprecated-save-state"],
    ),
];

fn err_files(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{n}.yml")).collect()
}

fn validate(dir: &Path, extra: &[&str], files: &[String]) -> common::Run {
    let mut args = vec!["validate"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend(files.iter().map(String::as_str));
    common::pipe(dir, &args)
}

#[test]
fn human_output_per_rule() {
    let sb = common::sandbox();
    let dir = sb.path().join("err");
    for (rule, cases) in RULES {
        let run = validate(&dir, &[], &err_files(cases));
        assert_eq!(run.code, Some(1), "{rule}");
        insta::assert_snapshot!(format!("human-{rule}"), run.stdout);
    }
}

#[test]
fn human_output_pipe_extension_with_strict_github() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("ext.yml"),
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    cache: {key: x}\n    steps:\n      - run: make\n        cache: {outputs: [target]}\n",
    )
    .expect("write");
    let files = vec!["ext.yml".to_owned()];
    let plain = validate(dir.path(), &[], &files);
    assert_eq!(
        plain.code,
        Some(0),
        "extensions are fine without --strict-github"
    );
    let strict = validate(dir.path(), &["--strict-github"], &files);
    assert_eq!(strict.code, Some(1));
    insta::assert_snapshot!("human-pipe-extension", strict.stdout);
}

fn sample_files() -> Vec<String> {
    err_files(&[
        "needs-cycle",
        "cron-dow-7",
        "glob-first-negated",
        "unknown-label",
    ])
}

#[test]
fn json_output_shape() {
    let sb = common::sandbox();
    let run = validate(
        &sb.path().join("err"),
        &["--format", "json"],
        &sample_files(),
    );
    assert_eq!(run.code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    insta::assert_json_snapshot!("json-output", v);
}

#[test]
fn json_output_is_an_empty_array_when_clean() {
    let sb = common::sandbox();
    let run = validate(
        &sb.path().join("ok"),
        &["--format", "json"],
        &["rust-ci.yml".to_owned()],
    );
    assert_eq!(run.code, Some(0));
    assert_eq!(run.stdout.trim(), "[]");
}

fn sarif_of(files: &[String]) -> serde_json::Value {
    let sb = common::sandbox();
    let run = validate(&sb.path().join("err"), &["--format", "sarif"], files);
    assert_eq!(run.code, Some(1));
    serde_json::from_str(&run.stdout).expect("sarif is json")
}

#[test]
fn sarif_output_shape() {
    let v = sarif_of(&sample_files());
    insta::assert_json_snapshot!("sarif-output", v, {
        ".runs[].tool.driver.version" => "[version]",
    });
}

/// The SARIF 2.1.0 schema from the shared folder next to the repository (`PIPE_SHARED_DIR`
/// overrides where that is).
fn sarif_schema_path() -> PathBuf {
    let shared = std::env::var_os("PIPE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo().join("..").join("shared"));
    shared.join("schemas").join("sarif-schema-2.1.0.json")
}

#[test]
fn sarif_output_validates_against_the_schema() {
    let path = sarif_schema_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        assert!(
            !common::in_ci(),
            "the SARIF schema is missing at {} (CI must have shared/ next to the clone)",
            path.display()
        );
        eprintln!(
            "skipped: SARIF schema not found at {} (set PIPE_SHARED_DIR)",
            path.display()
        );
        return;
    };
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is json");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    // Every rule at once, plus a clean run (an empty results array).
    let all: Vec<String> = RULES
        .iter()
        .flat_map(|(_, cases)| err_files(cases))
        .collect();
    let logs = vec![sarif_of(&all), {
        let sb = common::sandbox();
        let run = validate(
            &sb.path().join("ok"),
            &["--format", "sarif"],
            &["rust-ci.yml".to_owned()],
        );
        serde_json::from_str(&run.stdout).expect("json")
    }];
    for log in logs {
        let errors: Vec<String> = validator
            .iter_errors(&log)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "SARIF does not validate:\n{}",
            errors.join("\n")
        );
    }
    // A broken log must fail, or the check above proves nothing.
    let broken = serde_json::json!({"version": "2.1.0", "runs": [{"results": []}]});
    assert!(!validator.is_valid(&broken));
}
