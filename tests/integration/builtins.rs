//! The built-in GitHub actions across runs, through the real binary: `actions/cache` between
//! two `pipe run`s (miss then exact hit, a restore-key hit after a `hashFiles` key changed, a
//! failed job saving nothing, paths outside the workspace, a truncated pack, entries that
//! follow the repository), artifacts scoped to their run and listed by `pipe artifacts`, and
//! `actions/checkout` under `--isolate`. Single-run behaviour is in `tests/conformance/`
//! (`checkout/`, `cache/`, `artifacts/`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Project {
    dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "git {args:?}");
}

impl Project {
    fn new(workflow: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = Project { dir };
        p.init_repo(&p.root(), workflow);
        std::fs::create_dir_all(p.home()).expect("mkdir");
        p
    }

    fn init_repo(&self, root: &Path, workflow: &str) {
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::write(root.join("wf.yml"), workflow).expect("write");
        std::fs::write(root.join("src/a.txt"), "alpha\n").expect("write");
        git(root, &["init", "-q", "-b", "main"]);
        git(root, &["add", "."]);
        git(root, &["commit", "-qm", "init"]);
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn cmd(&self, cwd: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pipe"));
        c.current_dir(cwd)
            .env("NO_COLOR", "1")
            .env("HOME", self.home())
            .env("PIPE_CACHE_DIR", self.dir.path().join("cache"))
            .env("PIPE_STATE_DIR", self.dir.path().join("state"))
            .env_remove("PIPE_LOG")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("PIPE_CACHE_MAX_SIZE")
            .env_remove("PIPE_CACHE_MAX_AGE");
        c
    }

    /// Runs `wf.yml` in `cwd`; returns (exit code, summary, stderr).
    fn run_in(
        &self,
        cwd: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> (Option<i32>, Value, String) {
        let summary = self.dir.path().join("summary.json");
        let _ = std::fs::remove_file(&summary);
        let mut c = self.cmd(cwd);
        c.args(["run", "-W", "wf.yml", "--progress", "plain", "-p", "1"])
            .arg("--summary")
            .arg(&summary)
            .args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run pipe");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        let text = std::fs::read_to_string(&summary).unwrap_or_else(|_| "null".into());
        (
            out.status.code(),
            serde_json::from_str(&text).expect("summary json"),
            stderr,
        )
    }

    fn run(&self, env: &[(&str, &str)]) -> (Option<i32>, Value, String) {
        self.run_in(&self.root(), env, &[])
    }

    fn pipe(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.cmd(&self.root()).args(args).output().expect("pipe");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// A step of the first job with this id, or `None`.
fn find_step<'a>(summary: &'a Value, id: &str) -> Option<&'a Value> {
    summary["jobs"]
        .as_array()?
        .iter()
        .flat_map(|j| j["steps"].as_array().into_iter().flatten())
        .find(|s| s["id"] == id)
}

fn step<'a>(summary: &'a Value, id: &str) -> &'a Value {
    find_step(summary, id).unwrap_or_else(|| panic!("step `{id}` in {summary}"))
}

const CACHE_WF: &str = r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/cache@v4
        id: c
        with:
          path: |
            build
            ~/tool
          key: deps-${{ hashFiles('src/**') }}
          restore-keys: deps-
      - run: |
          echo "hit=${{ steps.c.outputs.cache-hit }}"
          mkdir -p build ~/tool
          test -f build/out.txt || cat src/a.txt > build/out.txt
          test -f ~/tool/bin || echo tool > ~/tool/bin
          test -z "$FAIL"
"#;

#[test]
fn cache_miss_then_exact_hit_across_runs() {
    let p = Project::new(CACHE_WF);
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    assert!(step(&s, "c")["outputs"].get("cache-hit").is_none(), "{s}");
    assert_eq!(step(&s, "post:c")["outcome"], "success");
    std::fs::remove_dir_all(p.root().join("build")).expect("rm");
    std::fs::remove_dir_all(p.home().join("tool")).expect("rm");
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(step(&s, "c")["outputs"]["cache-hit"], "true");
    let out = std::fs::read_to_string(p.root().join("build/out.txt")).expect("restored");
    assert_eq!(out, "alpha\n");
    let tool = std::fs::read_to_string(p.home().join("tool/bin")).expect("restored home");
    assert_eq!(tool, "tool\n");
    // An exact hit is not saved again.
    let (_, logs, _) = p.pipe(&["logs"]);
    assert!(logs.contains("not saving cache"), "{logs}");
}

#[test]
fn changed_hashfiles_key_restores_by_prefix_then_saves_the_new_key() {
    let p = Project::new(CACHE_WF);
    assert_eq!(p.run(&[]).0, Some(0));
    std::fs::write(p.root().join("src/a.txt"), "beta\n").expect("write");
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(step(&s, "c")["outputs"]["cache-hit"], "false");
    // The old entry's file came back (the step keeps an existing build/out.txt).
    let out = std::fs::read_to_string(p.root().join("build/out.txt")).expect("restored");
    assert_eq!(out, "alpha\n");
    let (_, logs, _) = p.pipe(&["logs"]);
    assert!(logs.contains("Cache saved with key: deps-"), "{logs}");
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(step(&s, "c")["outputs"]["cache-hit"], "true");
}

#[test]
fn a_failed_job_saves_nothing() {
    let p = Project::new(CACHE_WF);
    let (code, s, _) = p.run(&[("FAIL", "1")]);
    assert_eq!(code, Some(1));
    assert!(find_step(&s, "post:c").is_none(), "{s}");
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    assert!(step(&s, "c")["outputs"].get("cache-hit").is_none(), "{s}");
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(step(&s, "c")["outputs"]["cache-hit"], "true");
}

#[test]
fn entries_follow_the_repository_to_another_folder() {
    let p = Project::new(CACHE_WF);
    assert_eq!(p.run(&[]).0, Some(0));
    let other = p.dir.path().join("clone");
    p.init_repo(&other, CACHE_WF);
    let (code, s, _) = p.run_in(&other, &[], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(step(&s, "c")["outputs"]["cache-hit"], "true");
    assert!(other.join("build/out.txt").is_file());
    let (_, ls, _) = p.pipe(&["cache", "ls"]);
    assert!(ls.contains("actions"), "{ls}");
}

const ARTIFACT_WF: &str = r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: mkdir -p dist && echo "$GITHUB_RUN_NUMBER" > dist/run.txt
        if: vars.UPLOAD == '1'
      - uses: actions/upload-artifact@v4
        if: vars.UPLOAD == '1'
        with: {name: dist, path: dist}
      - uses: actions/download-artifact@v4
        id: d
        if: vars.UPLOAD != '1'
        continue-on-error: true
        with: {name: dist, path: got}
      - uses: actions/download-artifact@v4
        id: old
        if: vars.UPLOAD != '1'
        with: {name: dist, path: old, run-id: '1'}
"#;

#[test]
fn artifacts_belong_to_their_run() {
    let p = Project::new(ARTIFACT_WF);
    let (code, _, err) = p.run_in(&p.root(), &[], &["--var", "UPLOAD=1"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    // Run 2 has no artifact `dist`; run 1's is reachable with `run-id`.
    assert_eq!(step(&s, "d")["outcome"], "failure");
    assert_eq!(step(&s, "old")["outcome"], "success");
    let got = std::fs::read_to_string(p.root().join("old/run.txt")).expect("downloaded");
    assert_eq!(got.trim(), "1");
    let (code, out, _) = p.pipe(&["artifacts", "1"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("dist") && out.contains("ID"), "{out}");
    let (code, out, _) = p.pipe(&["artifacts", "#1", "--json"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v[0]["id"], 1);
    assert_eq!(v[0]["name"], "dist");
    assert_eq!(v[0]["files"], 1);
    assert_eq!(v[0]["job"], "j");
    // The files are one pack beside its index.
    let pack = Path::new(v[0]["path"].as_str().unwrap_or(""));
    assert!(pack.ends_with("files.pack") && pack.is_file(), "{pack:?}");
    assert!(pack.with_file_name("pack.json").is_file());
    // `--extract` writes the files out, verified; a corrupt pack writes nothing.
    let out_dir = p.dir.path().join("extracted");
    let dir_arg = out_dir.display().to_string();
    let (code, _, err) = p.pipe(&["artifacts", "1", "--extract", "dist", "--to", &dir_arg]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("extracted `dist` of run #1"), "{err}");
    let got = std::fs::read_to_string(out_dir.join("run.txt")).expect("extracted file");
    assert_eq!(got.trim(), "1");
    let (code, _, err) = p.pipe(&["artifacts", "1", "--extract", "nope"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no artifact named `nope`") && err.contains("`dist`"),
        "{err}"
    );
    let mut bytes = std::fs::read(pack).expect("pack");
    bytes[0] ^= 0xff;
    std::fs::write(pack, &bytes).expect("corrupt the pack");
    let bad = p.dir.path().join("bad");
    let bad_arg = bad.display().to_string();
    let (code, _, err) = p.pipe(&["artifacts", "1", "--extract", "dist", "--to", &bad_arg]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("cannot extract `dist`"), "{err}");
    assert!(!bad.join("run.txt").exists());
    let (code, out, _) = p.pipe(&["artifacts"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("run #2 has no artifacts"), "{out}");
    let (code, _, err) = p.pipe(&["artifacts", "99"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("run #99 is not recorded"), "{err}");
    let (code, _, err) = p.pipe(&["artifacts", "x"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("`x` is not a run number"), "{err}");
}

#[test]
fn checkout_under_isolate_checks_the_commit_out() {
    let p = Project::new(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        id: co
      - run: |
          test "$(git rev-parse HEAD)" = "${{ github.sha }}"
          test "$(git rev-parse --is-shallow-repository)" = true
          test ! -e untracked.txt
"#,
    );
    std::fs::write(p.root().join("untracked.txt"), "x").expect("write");
    let (code, s, err) = p.run_in(&p.root(), &[], &["--isolate"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(step(&s, "co")["outcome"], "success");
    // The user's tree is untouched.
    assert!(p.root().join("untracked.txt").is_file());
}

/// The one pack file of the store's `actions/cache` entries.
fn the_pack(p: &Project) -> PathBuf {
    let packs = p.dir.path().join("cache/cas-v1/packs");
    let found: Vec<PathBuf> = std::fs::read_dir(&packs)
        .expect("packs")
        .flatten()
        .flat_map(|fan| std::fs::read_dir(fan.path()).expect("fan").flatten())
        .map(|e| e.path())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[test]
fn a_truncated_pack_is_a_miss_with_a_warning_and_the_cache_commands_see_packs() {
    let p = Project::new(CACHE_WF);
    assert_eq!(p.run(&[]).0, Some(0));
    let (code, _, err) = p.pipe(&["cache", "verify"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("1 packs ok"), "{err}");
    let pack = the_pack(&p);
    let len = std::fs::metadata(&pack).expect("pack").len();
    std::fs::File::options()
        .write(true)
        .open(&pack)
        .expect("open")
        .set_len(len - 1)
        .expect("truncate");
    std::fs::remove_dir_all(p.root().join("build")).expect("rm");
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    assert!(step(&s, "c")["outputs"].get("cache-hit").is_none(), "{s}");
    let (_, logs, _) = p.pipe(&["logs"]);
    assert!(
        logs.contains("is damaged") && logs.contains("treating it as a miss"),
        "{logs}"
    );
    // The post step saved the key again; the next run hits it.
    assert!(logs.contains("Cache saved with key: deps-"), "{logs}");
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(step(&s, "c")["outputs"]["cache-hit"], "true");
    let (code, _, err) = p.pipe(&["cache", "gc"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, _) = p.pipe(&["cache", "clear"]);
    assert_eq!(code, Some(0));
    let (code, s, _) = p.run(&[]);
    assert_eq!(code, Some(0));
    assert!(step(&s, "c")["outputs"].get("cache-hit").is_none(), "{s}");
}
