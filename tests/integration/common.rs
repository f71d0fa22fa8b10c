//! Helpers shared by the integration tests: running `pipe` and building the corpus sandbox.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What one run of `pipe` did.
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "pipe panicked:\n{}",
            run.stderr
        );
        run
    }
}

/// Runs `pipe ARGS` in `dir` with colour off and a clean environment for the knobs that
/// change output.
pub fn pipe(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("PIPE_LOG")
        .output()
        .expect("run pipe");
    Run::from(out)
}

/// The repository root (where Cargo.toml of the `pipe` package is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/validate/`.
pub fn corpus_dir() -> PathBuf {
    repo().join("tests").join("validate")
}

/// Copies a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The corpus laid out as a project (what `tests/validate/sandbox.sh` does for the
/// comparison script): a `.git` marker makes the temp dir the repository root, and
/// `tests/validate/project/` supplies the local action, reusable workflows and labels.
pub fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir .git");
    copy_tree(&corpus_dir().join("project"), dir.path());
    for sub in ["ok", "err", "expr"] {
        copy_tree(&corpus_dir().join(sub), &dir.path().join(sub));
    }
    dir
}

/// The `.yml` files of a directory, sorted by name.
pub fn yml_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .collect();
    names.sort();
    names
}

/// A diagnostic of `--format json`, reduced to what the corpus compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub rule: String,
}

impl Finding {
    /// The first line of the human form: `FILE:LINE:COL: message [rule]`.
    pub fn first_line(&self) -> String {
        format!(
            "{}:{}:{}: {} [{}]",
            self.file, self.line, self.column, self.message, self.rule
        )
    }
}

/// Runs `pipe validate --format json` on `files` in `dir` and returns the findings and the
/// exit code.
pub fn validate_json(dir: &Path, files: &[String]) -> (Vec<Finding>, Option<i32>) {
    let mut args = vec!["validate", "--format", "json", "--"];
    args.extend(files.iter().map(String::as_str));
    let run = pipe(dir, &args);
    let v: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout));
    let findings = v
        .as_array()
        .expect("array")
        .iter()
        .map(|d| Finding {
            file: d["file"].as_str().expect("file").to_owned(),
            line: d["line"].as_u64().expect("line"),
            column: d["column"].as_u64().expect("column"),
            message: d["message"].as_str().expect("message").to_owned(),
            rule: d["rule"].as_str().expect("rule").to_owned(),
        })
        .collect();
    (findings, run.code)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// Waits until `path` exists, failing the test after `limit`; returns when the wait began.
pub fn wait_for_file(path: &Path, limit: std::time::Duration) -> std::time::Instant {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < limit,
            "{} never appeared within {limit:?}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    start
}

/// Sends `signal` to a child process.
pub fn signal(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, signal).expect("signal the child");
}

/// Whether tests that need an outside tool must fail instead of skipping (decisions.md).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}
