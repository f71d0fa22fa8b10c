//! `pipe bench` (timing, JSON and markdown exports, history, compare, ingest) and the job
//! `reports:` key feeding the run's results record, driven through the real binary.

use std::path::Path;
use std::process::Command;

use crate::common;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "git {args:?}");
}

fn repo() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tmp");
    std::fs::write(t.path().join("README.md"), "x\n").expect("write");
    git(t.path(), &["init", "-q", "-b", "main"]);
    git(t.path(), &["add", "."]);
    git(t.path(), &["commit", "-q", "-m", "x"]);
    t
}

fn pipe(dir: &Path, state: &Path, args: &[&str]) -> common::Run {
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("PIPE_STATE_DIR", state)
        .env_remove("PIPE_LOG")
        .env_remove("GITHUB_SHA")
        .env_remove("GITHUB_REF_NAME")
        .env_remove("GITHUB_RUN_NUMBER")
        .output()
        .expect("run pipe");
    common::Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    common::repo()
        .join("actions/tests/fixtures/reports")
        .join(name)
}

#[test]
fn times_commands_and_writes_hyperfine_compatible_json() {
    let r = repo();
    let state = tempfile::tempdir().expect("tmp");
    let run = pipe(
        r.path(),
        state.path(),
        &[
            "bench",
            "-N",
            "--runs",
            "5",
            "--warmup",
            "1",
            "--export-json",
            "out.json",
            "--export-markdown",
            "out.md",
            "-n",
            "nothing",
            "--",
            "true",
            "sleep 0.01",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("Benchmark 1: nothing"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Benchmark 2: sleep 0.01"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("5 runs"), "{}", run.stdout);
    // No progress bar when stderr is not a terminal.
    assert!(!run.stderr.contains("benchmarking"), "{}", run.stderr);
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.path().join("out.json")).expect("json"))
            .expect("valid json");
    let res = &j["results"];
    assert_eq!(res[0]["command"], "true");
    assert_eq!(res[0]["name"], "nothing");
    for k in ["mean", "stddev", "median", "user", "system", "min", "max"] {
        assert!(res[1][k].is_number(), "{k}");
    }
    assert_eq!(res[1]["times"].as_array().map(Vec::len), Some(5));
    assert!(res[1]["min"].as_f64().unwrap_or(0.0) >= 0.01);
    assert_eq!(res[1]["exit_codes"], serde_json::json!([0, 0, 0, 0, 0]));
    // Five runs each is below the gate's minimum: the comparison says so.
    assert_eq!(j["pipe"]["comparisons"][0]["verdict"], "INCONCLUSIVE");
    let md = std::fs::read_to_string(r.path().join("out.md")).expect("md");
    assert!(md.starts_with("| Command | Mean ["), "{md}");
    assert!(md.contains("| `sleep 0.01` |"), "{md}");
    // Recorded in the history.
    let h = pipe(r.path(), state.path(), &["bench", "history"]);
    assert_eq!(h.stdout, "nothing\nsleep 0.01\n");
    let h = pipe(r.path(), state.path(), &["bench", "history", "sleep 0.01"]);
    assert_eq!(h.code, Some(0), "{}", h.stderr);
    assert!(h.stdout.contains("(1 results)"), "{}", h.stdout);
}

#[test]
fn failing_commands_and_bad_usage() {
    let r = repo();
    let state = tempfile::tempdir().expect("tmp");
    let run = pipe(
        r.path(),
        state.path(),
        &["bench", "--runs", "2", "--", "exit 4"],
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr,
        "error: command `exit 4` exited with code 4; use `--ignore-failure` to time it anyway\n"
    );
    let run = pipe(r.path(), state.path(), &["bench"]);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.starts_with("error: no command to benchmark"),
        "{}",
        run.stderr
    );
    let run = pipe(r.path(), state.path(), &["bench", "-N", "--", "echo 'open"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

#[test]
fn compare_against_history_decides_pass_and_fail() {
    let r = repo();
    let state = tempfile::tempdir().expect("tmp");
    let bench = |cmd: &str| {
        let run = pipe(
            r.path(),
            state.path(),
            &["bench", "-N", "--runs", "15", "-n", "work", "--", cmd],
        );
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    };
    bench("sleep 0.02");
    git(r.path(), &["commit", "-q", "--allow-empty", "-m", "slower"]);
    bench("sleep 0.1");
    let c = pipe(r.path(), state.path(), &["bench", "compare", "--json"]);
    assert_eq!(c.code, Some(1), "{}{}", c.stdout, c.stderr);
    let j: serde_json::Value = serde_json::from_str(&c.stdout).expect("json");
    assert_eq!(j["verdict"], "FAIL");
    assert_eq!(j["baseline_branch"], "main");
    assert_eq!(j["comparisons"][0]["name"], "work");
    assert!(j["comparisons"][0]["p_regression"].as_f64().unwrap_or(1.0) < 0.01);
    // A baseline given as a file: the candidate is faster, so it passes as an improvement.
    let base = r.path().join("base.json");
    let run = pipe(
        r.path(),
        state.path(),
        &[
            "bench",
            "-N",
            "--runs",
            "15",
            "--no-record",
            "-n",
            "work",
            "--export-json",
            "base.json",
            "--",
            "sleep 0.25",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let c = pipe(
        r.path(),
        state.path(),
        &[
            "bench",
            "compare",
            "--baseline",
            &base.display().to_string(),
        ],
    );
    assert_eq!(c.code, Some(0), "{}{}", c.stdout, c.stderr);
    assert!(
        c.stdout.contains("PASS          work  faster by"),
        "{}",
        c.stdout
    );
    // Nothing recorded for a fresh commit.
    git(r.path(), &["commit", "-q", "--allow-empty", "-m", "new"]);
    let c = pipe(r.path(), state.path(), &["bench", "compare"]);
    assert_eq!(c.code, Some(2));
    assert!(
        c.stderr
            .contains("no benchmark results recorded for commit"),
        "{}",
        c.stderr
    );
}

#[test]
fn ingest_reads_other_tools_and_names_bad_lines() {
    let r = repo();
    let state = tempfile::tempdir().expect("tmp");
    let files = [
        "hyperfine.json",
        "cargo-bench.txt",
        "pytest-benchmark.json",
        "google-benchmark.json",
    ]
    .map(|f| fixture(f).display().to_string());
    let mut args = vec!["bench", "ingest"];
    args.extend(files.iter().map(String::as_str));
    let run = pipe(r.path(), state.path(), &args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let names: Vec<&str> = run
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        [
            "true",
            "sleep 0.001",
            "tests::bench_add",
            "tests::bench_sum",
            "test_calc.py::test_bench",
            "BM_Sort/1024"
        ]
    );
    std::fs::write(
        r.path().join("bad.txt"),
        "ok\ntest x ... bench: fast ns/iter\n",
    )
    .expect("w");
    let run = pipe(r.path(), state.path(), &["bench", "ingest", "bad.txt"]);
    assert_eq!(run.code, Some(2));
    assert_eq!(
        run.stderr,
        "error: bad.txt:2: `fast` is not a number of nanoseconds\n"
    );
}

#[test]
fn job_reports_feed_the_summary_and_run_record() {
    let r = repo();
    let state = tempfile::tempdir().expect("tmp");
    let wf = r.path().join(".github/workflows");
    std::fs::create_dir_all(&wf).expect("mkdir");
    std::fs::create_dir_all(r.path().join("out")).expect("mkdir");
    for f in ["pytest-junit.xml", "coverage.lcov", "pytest-benchmark.json"] {
        std::fs::copy(fixture(f), r.path().join("out").join(f)).expect("copy");
    }
    std::fs::copy(
        fixture("malformed/bad-time.xml"),
        r.path().join("out/broken-junit.xml"),
    )
    .expect("copy");
    std::fs::write(
        wf.join("ci.yml"),
        "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    reports:\n      junit: out/*-junit.xml\n      coverage: out/coverage.lcov\n      benchmark: out/pytest-benchmark.json\n    steps:\n      - run: echo ok\n",
    )
    .expect("write");
    let run = pipe(r.path(), state.path(), &["run", "--summary", "s.json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("out/broken-junit.xml:4: `time` `abc` is not a number of seconds"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("tests: 2 passed, 1 failed, 1 skipped"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("test_calc::test_fails"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("coverage: lines 82.4%, branches 50.0%"),
        "{}",
        run.stderr
    );
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(r.path().join("s.json")).expect("summary"))
            .expect("json");
    let res = &s["results"];
    assert_eq!(res["version"], 1);
    assert_eq!(res["tests"]["failed"], 1);
    assert_eq!(res["coverage"]["lines_covered"], 14);
    assert_eq!(res["benchmarks"][0]["name"], "test_calc.py::test_bench");
    assert_eq!(res["jobs"][0]["failed_tests"][0]["name"], "test_fails");
    // The benchmark went into the history too.
    let h = pipe(r.path(), state.path(), &["bench", "history"]);
    assert_eq!(h.stdout, "test_calc.py::test_bench\n");
    // A second run reports the coverage delta against the first.
    let run = pipe(r.path(), state.path(), &["run", "--summary", "s2.json"]);
    assert!(
        run.stderr.contains("(+0.0 points since run #1)"),
        "{}",
        run.stderr
    );
    // An invalid `reports:` is a workflow error.
    std::fs::write(
        wf.join("ci.yml"),
        "on: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    reports:\n      junk: x.xml\n    steps:\n      - run: echo ok\n",
    )
    .expect("write");
    let v = pipe(r.path(), state.path(), &["validate"]);
    assert_eq!(v.code, Some(1));
    assert!(
        v.stdout.contains("unknown report kind `junk`"),
        "{}",
        v.stdout
    );
}

#[test]
fn the_bench_action_reports_to_the_log_summary_and_evidence() {
    let t = repo();
    let state = tempfile::tempdir().expect("state");
    std::fs::write(
        t.path().join("wf.yml"),
        r#"on: push
jobs:
  perf:
    runs-on: ubuntu-latest
    steps:
      - id: b
        uses: pipe/bench@v1
        with:
          commands: |
            true
            true
          names: |
            base
            same
          runs: 5
          export-json: bench.json
      - run: echo "verdict=${{ steps.b.outputs.verdict }}"
      - uses: pipe/bench@v1
        continue-on-error: true
        with:
          commands: true
          runs: lots
"#,
    )
    .expect("write");
    let summary = t.path().join("summary.json");
    let r = pipe(
        t.path(),
        state.path(),
        &[
            "run",
            "-W",
            "wf.yml",
            "--progress",
            "plain",
            "--summary",
            summary.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    let steps = &s["jobs"][0]["steps"];
    let outputs = &steps[0]["outputs"];
    let verdict = outputs["verdict"].as_str().expect("verdict");
    assert!(
        ["PASS", "FAIL", "INCONCLUSIVE"].contains(&verdict),
        "{verdict}"
    );
    assert!(
        r.stderr.contains(&format!("verdict={verdict}")),
        "{}",
        r.stderr
    );
    let report = std::path::PathBuf::from(outputs["report"].as_str().expect("report"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("evidence")).expect("json");
    assert_eq!(json["results"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        json["results"][0]["times"].as_array().map(Vec::len),
        Some(5)
    );
    assert!(
        t.path().join("bench.json").is_file(),
        "export-json is written"
    );
    // The markdown table is the step summary, printed after the run.
    assert!(
        r.stderr.contains("| `base`") || r.stderr.contains("base"),
        "{}",
        r.stderr
    );
    // A bad input fails its step with the input named.
    assert_eq!(steps[2]["outcome"], "failure", "{s}");
    assert!(
        r.stderr.contains("input `runs` must be a whole number"),
        "{}",
        r.stderr
    );
}
