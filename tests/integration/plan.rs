//! `pipe list` and `pipe graph`: human listing, plan JSON, stage drawing and DOT, selection and
//! its errors, reusable workflows, callee-only workflows.

use std::path::Path;
use std::process::{Command, Output};

const CI: &str = "name: CI
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps: [{run: echo}]
  test:
    needs: BUILD
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [linux, mac]
        node: [18, 20]
        exclude:
          - os: mac
            node: 18
        include:
          - os: linux
            experimental: true
    steps: [{run: echo}]
  docs:
    runs-on: ubuntu-latest
    steps: [{run: echo}]
  release:
    needs: [test, docs]
    if: github.ref == 'refs/heads/main'
    runs-on: ubuntu-latest
    steps: [{run: echo}]
";

/// A temporary repository with the given files.
fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

fn pipe(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("PIPE_STATE_DIR", dir.join(".state"))
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("run pipe")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(o));
    stdout(o)
}

#[test]
fn list_shows_jobs_in_order_with_legs_and_needs() {
    let r = repo(&[(".github/workflows/ci.yml", CI)]);
    let out = ok(&pipe(r.path(), &["list", "-W", ".github/workflows/ci.yml"]));
    assert_eq!(
        out,
        "CI (.github/workflows/ci.yml)
  build
  test  [3 legs]  needs: build
    test (linux, 18)
    test (linux, 20)
    test (mac, 20)
  docs
  release  needs: test, docs  if: github.ref == 'refs/heads/main'
"
    );
}

#[test]
fn list_without_w_plans_every_workflow_the_event_triggers() {
    let r = repo(&[
        (".github/workflows/ci.yml", CI),
        (
            ".github/workflows/nightly.yml",
            "on: schedule\njobs:\n  n:\n    runs-on: ubuntu-latest\n    steps: [{run: echo}]\n",
        ),
        (
            ".github/workflows/push.yml",
            "name: Other\non: [push]\njobs:\n  o:\n    runs-on: ubuntu-latest\n    steps: [{run: echo}]\n",
        ),
    ]);
    let out = ok(&pipe(r.path(), &["list"]));
    assert!(out.contains("CI (.github/workflows/ci.yml)"), "{out}");
    assert!(
        out.contains("Other (.github/workflows/push.yml)\n  o\n"),
        "{out}"
    );
    assert!(!out.contains("nightly"), "{out}");
    // `-j` names a job of any of them; workflows without a selected job are left out.
    let out = ok(&pipe(r.path(), &["list", "-j", "o"]));
    assert_eq!(out, "Other (.github/workflows/push.yml)\n  o\n");
    let o = pipe(r.path(), &["graph", "-j", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no workflow has a job `nope`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn list_json_is_the_plan() {
    let r = repo(&[(".github/workflows/ci.yml", CI)]);
    let out = ok(&pipe(
        r.path(),
        &["list", "-W", ".github/workflows/ci.yml", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["version"], 1);
    assert_eq!(v["name"], "CI");
    assert_eq!(v["event"], "push");
    assert_eq!(
        v["order"],
        serde_json::json!(["build", "test", "docs", "release"])
    );
    let test = &v["jobs"][1];
    assert_eq!(test["id"], "test");
    assert_eq!(test["needs"], serde_json::json!(["build"]));
    assert_eq!(test["expansion"], "expanded");
    assert_eq!(test["job_total"], 3);
    assert_eq!(test["legs"][0]["name"], "test (linux, 18)");
    assert_eq!(
        test["legs"][0]["matrix"],
        serde_json::json!({"os": "linux", "node": 18, "experimental": true})
    );
    assert_eq!(test["legs"][2]["job_index"], 2);
    assert_eq!(v["jobs"][3]["if"], "github.ref == 'refs/heads/main'");
    assert_eq!(v["jobs"][0]["expansion"], "none");
    assert!(v["jobs"][0]["legs"][0]["matrix"].is_null());
}

#[test]
fn graph_draws_stages() {
    let r = repo(&[(".github/workflows/ci.yml", CI)]);
    let out = ok(&pipe(
        r.path(),
        &["graph", "-W", ".github/workflows/ci.yml"],
    ));
    assert_eq!(
        out,
        "CI (.github/workflows/ci.yml)
stage 1 (2 jobs)
|-- build
`-- docs
stage 2 (1 job)
`-- test [3 legs] <- build
stage 3 (1 job)
`-- release <- test, docs
"
    );
}

#[test]
fn graph_dot() {
    let r = repo(&[(".github/workflows/ci.yml", CI)]);
    let out = ok(&pipe(
        r.path(),
        &["graph", "-W", ".github/workflows/ci.yml", "--dot"],
    ));
    assert!(out.starts_with("digraph \"CI\" {\n"), "{out}");
    assert!(
        out.contains("  \"test\" [label=\"test\\n3 legs\"];\n"),
        "{out}"
    );
    assert!(out.contains("  \"build\" -> \"test\";\n"), "{out}");
    assert!(out.contains("  \"docs\" -> \"release\";\n"), "{out}");
    assert!(out.ends_with("}\n"), "{out}");
}

#[test]
fn job_selection_includes_needs_unless_no_deps() {
    let r = repo(&[(".github/workflows/ci.yml", CI)]);
    let w = ".github/workflows/ci.yml";
    let out = ok(&pipe(r.path(), &["list", "-W", w, "-j", "test"]));
    assert!(
        out.contains("  build\n") && out.contains("  test  "),
        "{out}"
    );
    assert!(!out.contains("docs") && !out.contains("release"), "{out}");
    let out = ok(&pipe(
        r.path(),
        &["list", "-W", w, "-j", "TEST", "--no-deps"],
    ));
    assert!(!out.contains("\n  build\n"), "{out}");
    let out = ok(&pipe(r.path(), &["graph", "-W", w, "-j", "docs"]));
    assert_eq!(
        out,
        "CI (.github/workflows/ci.yml)\nstage 1 (1 job)\n`-- docs\n"
    );
}

#[test]
fn unknown_job_is_a_usage_error_with_a_suggestion() {
    let r = repo(&[(".github/workflows/ci.yml", CI)]);
    for cmd in ["list", "graph"] {
        let o = pipe(
            r.path(),
            &[cmd, "-W", ".github/workflows/ci.yml", "-j", "tset"],
        );
        assert_eq!(o.status.code(), Some(2));
        assert!(stdout(&o).is_empty());
        assert!(
            stderr(&o).contains(
                "workflow `.github/workflows/ci.yml` has no job `tset`; did you mean `test`?"
            ),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn matrix_selection() {
    let r = repo(&[(".github/workflows/ci.yml", CI)]);
    let w = ".github/workflows/ci.yml";
    let out = ok(&pipe(r.path(), &["list", "-W", w, "--matrix", "node=20"]));
    assert!(
        out.contains(
            "  test  [2 of 3 legs]  needs: build\n    test (linux, 20)\n    test (mac, 20)\n"
        ),
        "{out}"
    );
    let o = pipe(r.path(), &["list", "-W", w, "--matrix", "nod=20"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no selected job has a matrix key `nod`; did you mean `node`?"),
        "{}",
        stderr(&o)
    );
    let o = pipe(r.path(), &["list", "-W", w, "--matrix", "node"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn invalid_workflow_is_refused() {
    let r = repo(&[(
        ".github/workflows/bad.yml",
        "on: push\njobs:\n  a:\n    needs: nope\n    runs-on: ubuntu-latest\n    steps: [{run: echo}]\n",
    )]);
    let o = pipe(r.path(), &["list", "-W", ".github/workflows/bad.yml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

const CALLEE: &str = "name: Build
on:
  workflow_call:
    inputs:
      targets:
        type: string
        default: '[\"linux\"]'
      debug:
        type: boolean
        default: false
jobs:
  compile:
    name: compile ${{ matrix.target }}${{ inputs.debug && ' (debug)' || '' }}
    runs-on: ubuntu-latest
    strategy:
      matrix:
        target: ${{ fromJSON(inputs.targets) }}
    steps: [{run: echo}]
  package:
    needs: compile
    runs-on: ubuntu-latest
    steps: [{run: echo}]
";

#[test]
fn callee_only_workflow_is_planned_with_input_defaults() {
    let r = repo(&[(".github/workflows/build.yml", CALLEE)]);
    let w = ".github/workflows/build.yml";
    let out = ok(&pipe(r.path(), &["list", "-W", w]));
    assert_eq!(
        out,
        "Build (.github/workflows/build.yml)
  compile  [1 leg]
    compile linux
  package  needs: compile
"
    );
    let out = ok(&pipe(
        r.path(),
        &[
            "list",
            "-W",
            w,
            "--input",
            "targets=[\"a\",\"b\"]",
            "--input",
            "debug=true",
        ],
    ));
    assert!(
        out.contains("    compile a (debug)\n    compile b (debug)\n"),
        "{out}"
    );
}

#[test]
fn reusable_workflow_calls() {
    let caller = "name: Release
on: push
jobs:
  build:
    uses: ./.github/workflows/build.yml
    with:
      targets: '[\"linux\", \"mac\"]'
  lint:
    uses: octo/shared/.github/workflows/lint.yml@v1
  publish:
    needs: [build, lint]
    runs-on: ubuntu-latest
    steps: [{run: echo}]
";
    let r = repo(&[
        (".github/workflows/build.yml", CALLEE),
        (".github/workflows/release.yml", caller),
    ]);
    let w = ".github/workflows/release.yml";
    let out = ok(&pipe(r.path(), &["list", "-W", w]));
    assert_eq!(
        out,
        "Release (.github/workflows/release.yml)
  build
    calls ./.github/workflows/build.yml (Build)
    build/compile  [2 legs]
      build / compile linux
      build / compile mac
    build/package  name: build / package  needs: build/compile
  lint
    calls octo/shared/.github/workflows/lint.yml@v1 (one job: remote reusable workflows are not fetched)
  publish  needs: build, lint
"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&pipe(r.path(), &["list", "-W", w, "--json"]))).expect("JSON");
    let call = &json["jobs"][0]["call"];
    assert_eq!(call["kind"], "local");
    assert_eq!(call["expanded"], true);
    assert_eq!(call["jobs"][1]["id"], "build/package");
    assert_eq!(
        call["jobs"][1]["needs"],
        serde_json::json!(["build/compile"])
    );
    assert_eq!(json["jobs"][1]["call"]["kind"], "remote");
    assert_eq!(json["jobs"][1]["call"]["expanded"], false);
    let dot = ok(&pipe(r.path(), &["graph", "-W", w, "--dot"]));
    assert!(dot.contains("subgraph \"cluster_build\""), "{dot}");
    assert!(dot.contains("\"build/package\" -> \"publish\";"), "{dot}");
    assert!(dot.contains("\"lint\" -> \"publish\";"), "{dot}");
}

#[test]
fn remote_calls_from_the_action_folder_are_expanded() {
    let caller = "on: push
jobs:
  call:
    uses: pipe-test/workflows/.github/workflows/reusable.yml@v1
    with:
      who: lister
  missing:
    uses: pipe-test/workflows/.github/workflows/reusable.yml@v9
";
    let r = repo(&[(".github/workflows/c.yml", caller)]);
    let w = ".github/workflows/c.yml";
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/actions");
    let out = ok(&pipe(
        r.path(),
        &["list", "-W", w, "--action-dir", &folder.to_string_lossy()],
    ));
    assert!(
        out.contains("  call\n    calls pipe-test/workflows/.github/workflows/reusable.yml@v1 (remote reusable)\n    call/say  name: call / say\n"),
        "{out}"
    );
    assert!(
        out.contains("(one job: remote reusable workflows are not fetched)"),
        "{out}"
    );
}

#[test]
fn dynamic_matrix_is_shown_unexpanded() {
    let wf = "on: push
jobs:
  gen:
    runs-on: ubuntu-latest
    outputs: {m: '${{ steps.s.outputs.m }}'}
    steps: [{id: s, run: echo}]
  test:
    needs: gen
    runs-on: ubuntu-latest
    strategy:
      matrix: ${{ fromJSON(needs.gen.outputs.m) }}
    steps: [{run: echo}]
";
    let r = repo(&[(".github/workflows/dyn.yml", wf)]);
    let w = ".github/workflows/dyn.yml";
    let out = ok(&pipe(r.path(), &["list", "-W", w]));
    assert!(
        out.contains(
            "  test  [dynamic matrix]  needs: gen\n    (legs are known when its needs have run)\n"
        ),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&pipe(r.path(), &["list", "-W", w, "--json"]))).expect("JSON");
    assert_eq!(json["jobs"][1]["expansion"], "dynamic");
    assert!(json["jobs"][1]["job_total"].is_null());
    // A `--matrix` key cannot be checked before a dynamic matrix expands.
    ok(&pipe(r.path(), &["list", "-W", w, "--matrix", "os=linux"]));
}

#[test]
fn vars_feed_the_matrix() {
    let wf = "on: push
jobs:
  t:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        target: ${{ fromJSON(vars.TARGETS || '[\"none\"]') }}
    steps: [{run: echo}]
";
    let r = repo(&[(".github/workflows/v.yml", wf)]);
    let w = ".github/workflows/v.yml";
    let out = ok(&pipe(r.path(), &["list", "-W", w]));
    assert!(out.contains("    t (none)\n"), "{out}");
    let out = ok(&pipe(
        r.path(),
        &["list", "-W", w, "--var", "TARGETS=[\"x\",\"y\"]"],
    ));
    assert!(out.contains("    t (x)\n    t (y)\n"), "{out}");
}

#[test]
fn matrix_errors_are_listed_not_fatal() {
    let a17 = (0..17)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let wf = format!(
        "on: push\njobs:\n  big:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        a: [{a17}]\n        b: [{a17}]\n    steps: [{{run: echo}}]\n"
    );
    let r = repo(&[(".github/workflows/big.yml", &wf)]);
    let out = ok(&pipe(
        r.path(),
        &["list", "-W", ".github/workflows/big.yml"],
    ));
    assert!(
        out.contains("  big  [matrix error]\n    error: the matrix expands to 289 jobs; GitHub allows at most 256 jobs per matrix\n"),
        "{out}"
    );
}

#[test]
fn required_callee_input_without_default_warns() {
    let callee = CALLEE.replace(
        "        type: string\n        default: '[\"linux\"]'",
        "        type: string\n        required: true",
    );
    let r = repo(&[(".github/workflows/build.yml", &callee)]);
    let o = pipe(r.path(), &["list", "-W", ".github/workflows/build.yml"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("warning: `.github/workflows/build.yml`: input `targets` is required and has no default; planned as empty (pass `--input targets=VALUE`)"),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("  compile  [matrix error]\n"),
        "{}",
        stdout(&o)
    );
}
