//! Files that are not workflows: `pipe validate` reports a readable file's problems as
//! findings (exit 1), exits 2 only for bad flags or unreadable paths, and never panics
//! (`common::pipe` fails the test when stderr says "panicked").

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write");
}

/// Validates one file in a fresh directory; returns the run.
fn validate_bytes(name: &str, bytes: &[u8]) -> common::Run {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), name, bytes);
    common::pipe(dir.path(), &["validate", name])
}

fn assert_finding(run: &common::Run, file: &str, needle: &str) {
    assert_eq!(
        run.code,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    let first = run.stdout.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("{file}:")) && first.contains(needle),
        "expected a finding containing {needle:?}, got:\n{}",
        run.stdout
    );
}

#[test]
fn invalid_yaml_is_a_finding() {
    let run = validate_bytes("bad.yml", b"on: push\njobs: [unclosed\n");
    assert_finding(&run, "bad.yml", "could not parse as YAML");
}

#[test]
fn invalid_utf8_is_a_finding() {
    let run = validate_bytes("latin1.yml", b"name: caf\xe9\non: push\n");
    assert_finding(&run, "latin1.yml:1:10", "not valid UTF-8");
}

#[test]
fn binary_file_is_a_finding() {
    let mut bytes = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let run = validate_bytes("binary.yml", &bytes);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stdout.starts_with("binary.yml:"), "{}", run.stdout);
}

#[test]
fn nul_bytes_are_a_finding() {
    let run = validate_bytes("nul.yml", b"on: push\0\njobs: {}\n");
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.starts_with("nul.yml:"), "{}", run.stdout);
}

/// A valid workflow of about 10 MB.
pub fn big_workflow(target_bytes: usize) -> String {
    let mut s = String::from("name: big\non: push\njobs:\n");
    let mut i = 0;
    while s.len() < target_bytes {
        s.push_str(&format!(
            "  job_{i}:\n    name: Job {i}\n    runs-on: ubuntu-latest\n    needs: [job_{p}]\n    env:\n      INDEX: {i}\n    steps:\n      - uses: actions/checkout@v5\n      - name: Build {i}\n        run: |\n          echo building {i}\n          make -j2 target-{i}\n",
            p = if i == 0 { 1 } else { i - 1 }
        ));
        i += 1;
    }
    // job_0 needs job_1 so that the first two jobs make one cycle, a finding at a known place.
    s
}

#[test]
fn ten_megabyte_workflow_loads() {
    let text = big_workflow(10 * 1024 * 1024);
    let start = Instant::now();
    let run = validate_bytes("big.yml", text.as_bytes());
    let took = start.elapsed();
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let first_lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("big.yml:"))
        .collect();
    assert_eq!(
        first_lines,
        vec!["big.yml:19:13: cyclic dependency in `needs`: job_0 -> job_1 -> job_0 [job-needs]"]
    );
    // Generous for a debug build on a 2-core machine; the release figure is in RESULTS.md.
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn alias_bomb_is_a_finding() {
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        s.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let start = Instant::now();
    let run = validate_bytes("bomb.yml", s.as_bytes());
    assert_finding(&run, "bomb.yml", "alias bomb");
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn deep_nesting_is_a_finding() {
    let s = format!("on: push\njobs: {}{}\n", "[".repeat(5000), "]".repeat(5000));
    let run = validate_bytes("deep.yml", s.as_bytes());
    // The parser's own recursion limit or pipe's depth limit, whichever comes first.
    assert_eq!(run.code, Some(1));
    let first = run.stdout.lines().next().unwrap_or("");
    assert!(
        first.starts_with("deep.yml:")
            && (first.contains("recursion limit") || first.contains("nesting deeper than")),
        "{}",
        run.stdout
    );
}

#[test]
fn directory_argument_validates_its_yaml_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = dir.path().join("wf");
    std::fs::create_dir_all(wf.join("nested")).expect("mkdir");
    write(
        &wf,
        "good.yml",
        b"on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: a}]\n",
    );
    write(&wf.join("nested"), "bad.yaml", b"on: push\n");
    write(&wf, "notes.txt", b"not yaml at all: [");
    let run = common::pipe(dir.path(), &["validate", "wf"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let firsts: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("wf/"))
        .collect();
    assert_eq!(
        firsts,
        vec!["wf/nested/bad.yaml:1:1: `jobs` section is missing in workflow [syntax-check]"]
    );
    assert!(run.stderr.contains("in 2 files"), "{}", run.stderr);
    let clean = tempfile::tempdir().expect("tempdir");
    let run = common::pipe(clean.path(), &["validate", "."]);
    assert_eq!(run.code, Some(0), "an empty directory has no problems");
}

#[test]
fn missing_file_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "good.yml",
        b"on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: a}]\n",
    );
    let run = common::pipe(dir.path(), &["validate", "good.yml", "nope.yml"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr
            .contains("cannot read `nope.yml`: no such file or directory"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_flag_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = common::pipe(dir.path(), &["validate", "--no-such-flag"]);
    assert_eq!(run.code, Some(2));
    let run = common::pipe(dir.path(), &["validate", "--format", "xml", "a.yml"]);
    assert_eq!(run.code, Some(2));
}

#[test]
fn empty_file_is_a_finding() {
    let run = validate_bytes("empty.yml", b"");
    assert_finding(&run, "empty.yml:1:1", "workflow is empty");
    let run = validate_bytes("blank.yml", b"\n\n   \n# only a comment\n");
    assert_finding(&run, "blank.yml:1:1", "workflow is empty");
}

#[test]
fn non_mapping_root_is_a_finding() {
    for (text, what) in [
        (&b"- a\n- b\n"[..], "a sequence"),
        (b"hello\n", "a string"),
        (b"42\n", "a number"),
        (b"~\n", "null"),
    ] {
        let run = validate_bytes("root.yml", text);
        assert_finding(
            &run,
            "root.yml:1:1",
            &format!("a workflow must be a mapping, found {what}"),
        );
    }
}

#[test]
fn action_file_is_checked_as_action_metadata() {
    let run = validate_bytes("action.yml", b"name: x\nruns:\n  using: node20\n");
    assert_finding(&run, "action.yml", "`main` is required");
}
