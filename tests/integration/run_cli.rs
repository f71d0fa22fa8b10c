//! `pipe run` behaviour around the runs themselves: workflow selection across files, branch
//! and path filters (`--respect-filters`), run records (`pipe runs`, `pipe logs`).

use std::path::Path;
use std::process::Command;

use crate::common;

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "git {args:?}");
}

/// A repository on branch `main` with the given workflows, committed.
fn repo(workflows: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tmp");
    let wf = t.path().join(".github/workflows");
    std::fs::create_dir_all(&wf).expect("mkdir");
    for (name, text) in workflows {
        std::fs::write(wf.join(name), text).expect("write");
    }
    std::fs::write(t.path().join("README.md"), "x\n").expect("write");
    git(t.path(), &["init", "-q", "-b", "main"]);
    git(t.path(), &["add", "."]);
    git(
        t.path(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "-m",
            "x",
        ],
    );
    t
}

fn pipe(dir: &Path, state: &Path, args: &[&str]) -> common::Run {
    let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("PIPE_STATE_DIR", state)
        .env_remove("PIPE_LOG")
        .output()
        .expect("run pipe");
    common::Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const RELEASE_ONLY: &str = "on:\n  push:\n    branches: [release]\njobs:\n  rel:\n    runs-on: ubuntu-latest\n    steps: [{run: echo release-ran}]\n";
const EVERY_PUSH: &str = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps: [{run: echo build-ran}]\n  deploy:\n    needs: build\n    runs-on: ubuntu-latest\n    steps: [{run: echo deploy-ran}]\n";

#[test]
fn filters_are_reported_and_enforced_on_request() {
    let r = repo(&[("a.yml", EVERY_PUSH), ("b.yml", RELEASE_ONLY)]);
    let state = tempfile::tempdir().expect("tmp");
    let run = pipe(r.path(), state.path(), &["run", "--progress", "plain"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("release-ran"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("would not trigger on GitHub: branch `main` does not match `branches`"),
        "{}",
        run.stderr
    );
    let run = pipe(
        r.path(),
        state.path(),
        &["run", "--progress", "plain", "--respect-filters"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("release-ran"), "{}", run.stderr);
    assert!(run.stderr.contains("build-ran"), "{}", run.stderr);
    assert!(
        run.stderr.contains("skipping `.github/workflows/b.yml`"),
        "{}",
        run.stderr
    );
}

#[test]
fn job_selection_spans_workflows() {
    let r = repo(&[("a.yml", EVERY_PUSH), ("b.yml", RELEASE_ONLY)]);
    let state = tempfile::tempdir().expect("tmp");
    // `deploy` exists in a.yml only: b.yml is left out, `build` comes along as a need.
    let run = pipe(
        r.path(),
        state.path(),
        &["run", "--progress", "plain", "-j", "deploy"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("build-ran") && run.stderr.contains("deploy-ran"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("release-ran"), "{}", run.stderr);
    let run = pipe(
        r.path(),
        state.path(),
        &["run", "--progress", "plain", "-j", "deploy", "--no-deps"],
    );
    assert!(
        !run.stderr.contains("build-ran") && run.stderr.contains("deploy-ran"),
        "{}",
        run.stderr
    );
    let run = pipe(r.path(), state.path(), &["run", "-j", "depoly"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("`deploy`"), "{}", run.stderr);
}

#[test]
fn runs_are_numbered_listed_and_their_logs_kept() {
    let r = repo(&[("a.yml", EVERY_PUSH)]);
    let state = tempfile::tempdir().expect("tmp");
    for _ in 0..2 {
        let run = pipe(r.path(), state.path(), &["run", "-q"]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }
    let runs = pipe(r.path(), state.path(), &["runs", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&runs.stdout).expect("json");
    let numbers: Vec<u64> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["number"].as_u64())
        .collect();
    assert_eq!(numbers, vec![2, 1]);
    assert_eq!(v[0]["conclusion"], "success");
    let logs = pipe(r.path(), state.path(), &["logs", "1", "deploy"]);
    assert_eq!(logs.code, Some(0), "{}", logs.stderr);
    assert!(
        logs.stdout.contains("deploy-ran") && !logs.stdout.contains("build-ran"),
        "{}",
        logs.stdout
    );
    let logs = pipe(r.path(), state.path(), &["logs", "#9"]);
    assert_eq!(logs.code, Some(2));

    // Step logs lie side by side in the run's `logs/` folder, no folder per job.
    let logs_dir = find_dir(state.path(), &["runs", "2", "logs"]).expect("run 2 has logs");
    let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&logs_dir)
        .expect("read logs")
        .flatten()
        .collect();
    assert!(
        entries.iter().all(|e| e.path().is_file()),
        "{:?}",
        entries.iter().map(|e| e.file_name()).collect::<Vec<_>>()
    );
    let deploy = entries
        .iter()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("deploy~"))
        })
        .expect("the deploy step's log");
    // A record written by an earlier version (`logs/<job>/<step>.log`) still reads.
    let step = deploy
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("deploy~"))
        .expect("step")
        .to_owned();
    std::fs::create_dir(logs_dir.join("deploy")).expect("mkdir");
    std::fs::rename(&deploy, logs_dir.join("deploy").join(step)).expect("move");
    let logs = pipe(r.path(), state.path(), &["logs", "2", "deploy"]);
    assert_eq!(logs.code, Some(0), "{}", logs.stderr);
    assert!(logs.stdout.contains("deploy-ran"), "{}", logs.stdout);
}

/// The first folder under `root` whose path ends with `tail`.
fn find_dir(root: &Path, tail: &[&str]) -> Option<std::path::PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.ends_with(tail.iter().collect::<std::path::PathBuf>()) {
            return Some(d);
        }
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    None
}

fn spawn_pipe(dir: &Path, state: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("PIPE_STATE_DIR", state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pipe")
}

fn wait_for_file(path: &Path) {
    super::common::wait_for_file(path, std::time::Duration::from_secs(20));
}

const GROUPED: &str = "on: push\nconcurrency:\n  group: deploy\n  cancel-in-progress: ${{ vars.CIP == 'yes' }}\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo start >> \"order-${{ vars.NAME }}\"\n          touch \"started-${{ vars.NAME }}\"\n          sleep ${{ vars.SLEEP }}\n          echo end >> \"order-${{ vars.NAME }}\"\n          date +%s%N > \"ended-${{ vars.NAME }}\"\n";

#[test]
fn concurrency_groups_span_processes() {
    let r = repo(&[("g.yml", GROUPED)]);
    let state = tempfile::tempdir().expect("tmp");
    let d = r.path();
    // A holds the group; B waits for it and starts only after A ended.
    let a = spawn_pipe(
        d,
        state.path(),
        &["run", "--var", "NAME=a", "--var", "SLEEP=1"],
    );
    wait_for_file(&d.join("started-a"));
    let b = spawn_pipe(
        d,
        state.path(),
        &["run", "--var", "NAME=b", "--var", "SLEEP=0"],
    );
    // C replaces B as the pending run: B is cancelled without running.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let c = spawn_pipe(
        d,
        state.path(),
        &["run", "--var", "NAME=c", "--var", "SLEEP=0"],
    );
    let a = a.wait_with_output().expect("a");
    let b = b.wait_with_output().expect("b");
    let c = c.wait_with_output().expect("c");
    assert_eq!(
        a.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert_ne!(b.status.code(), Some(0), "b must be cancelled");
    assert!(!d.join("started-b").exists(), "b must not run");
    assert_eq!(
        c.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&c.stderr)
    );
    let ended_a: u128 = std::fs::read_to_string(d.join("ended-a"))
        .expect("a ended")
        .trim()
        .parse()
        .expect("ns");
    let started_c = std::fs::metadata(d.join("started-c"))
        .expect("c started")
        .modified()
        .expect("mtime");
    let started_c_ns = started_c
        .duration_since(std::time::UNIX_EPOCH)
        .expect("epoch")
        .as_nanos();
    assert!(started_c_ns >= ended_a, "c started before a ended");

    // cancel-in-progress: D cancels the running E.
    let e = spawn_pipe(
        d,
        state.path(),
        &["run", "--var", "NAME=e", "--var", "SLEEP=30"],
    );
    wait_for_file(&d.join("started-e"));
    let started = std::time::Instant::now();
    let f = spawn_pipe(
        d,
        state.path(),
        &[
            "run", "--var", "NAME=f", "--var", "SLEEP=0", "--var", "CIP=yes",
        ],
    );
    let e = e.wait_with_output().expect("e");
    let f = f.wait_with_output().expect("f");
    assert_eq!(
        e.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(
        f.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&f.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(d.join("order-e")).expect("e"),
        "start\n"
    );
}

/// The file-system type of `path` as `stat -f` names it (`tmpfs`, `ext2/ext3`, …).
fn fs_type(path: &str) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T", path])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[test]
fn step_scripts_go_to_memory_when_the_temp_folder_is_on_disk_and_are_removed() {
    const WF: &str = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"script-dir=$(dirname \"$0\") temp=$RUNNER_TEMP\"\n";
    let t = repo(&[("scripts.yml", WF)]);
    let state = tempfile::tempdir().expect("tmp");
    // The step's script folder and RUNNER_TEMP, with TMPDIR set to `tmpdir` or unset.
    let run = |tmpdir: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipe"));
        cmd.args(["run", "--progress", "plain"])
            .current_dir(t.path())
            .env("NO_COLOR", "1")
            .env("PIPE_STATE_DIR", state.path())
            .env_remove("PIPE_LOG")
            .env_remove("TMPDIR");
        if let Some(d) = tmpdir {
            cmd.env("TMPDIR", d);
        }
        let out = cmd.output().expect("run pipe");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{all}");
        let line = all
            .lines()
            .filter(|l| !l.contains("$RUNNER_TEMP"))
            .find_map(|l| l.split_once("script-dir=").map(|(_, rest)| rest.to_owned()))
            .unwrap_or_else(|| panic!("no script-dir line: {all}"));
        let (dir, temp) = line.split_once(" temp=").expect("temp");
        (dir.to_owned(), temp.to_owned())
    };

    // TMPDIR unset: a disk /tmp sends scripts to a private folder on /dev/shm.
    let (dir, temp) = run(None);
    if fs_type("/tmp") != "tmpfs" && fs_type("/dev/shm") == "tmpfs" {
        assert!(dir.starts_with("/dev/shm/pipe-"), "{dir}");
        assert!(
            !Path::new(&dir).exists(),
            "the run's script folder `{dir}` was left behind"
        );
    } else {
        assert_eq!(dir, temp, "scripts stay in RUNNER_TEMP");
    }

    // TMPDIR set: the user chose the scratch place; scripts stay in RUNNER_TEMP under it.
    let tmp = tempfile::tempdir().expect("tmp");
    let (dir, temp) = run(Some(tmp.path()));
    assert_eq!(dir, temp);
    assert!(dir.starts_with(&*tmp.path().to_string_lossy()), "{dir}");
}

/// A `pipe run` killed outright (SIGKILL: no chance to clean up) leaves its scratch folder,
/// and with a disk /tmp its step-script folder on /dev/shm; the next run removes both, and
/// never a folder whose run is still alive.
#[test]
fn scratch_left_by_a_killed_run_is_swept_by_the_next_run() {
    const SLOW: &str = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo $$ > \"$PIDFILE\"; sleep 5\n";
    const QUICK: &str =
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 1\n";
    let t = repo(&[("slow.yml", SLOW), ("quick.yml", QUICK)]);
    let state = tempfile::tempdir().expect("tmp");
    let pidfile = t.path().join("step.pid");
    let pipe = |wf: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipe"));
        cmd.args(["run", "-W", wf, "-q", "--progress", "plain"])
            .current_dir(t.path())
            .env("NO_COLOR", "1")
            .env("PIPE_STATE_DIR", state.path())
            .env("PIDFILE", &pidfile)
            .env_remove("PIPE_LOG")
            .env_remove("TMPDIR")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let scratch_of = |pid: u32| -> Vec<std::path::PathBuf> {
        let prefix = format!("pipe-{pid}-");
        ["/tmp", "/dev/shm"]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    };

    let mut doomed = pipe(".github/workflows/slow.yml").spawn().expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&pidfile).map_or(true, |s| s.trim().is_empty()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let left = scratch_of(doomed.id());
    assert!(!left.is_empty(), "the running run has no scratch folder");
    // A run that is alive keeps its folder while another run sweeps.
    let mut live_sweeper = pipe(".github/workflows/quick.yml").spawn().expect("spawn");
    assert!(live_sweeper.wait().expect("wait").success());
    assert_eq!(
        scratch_of(doomed.id()),
        left,
        "a live run's scratch was swept"
    );

    doomed.kill().expect("SIGKILL");
    doomed.wait().expect("reap");
    // The step's own group outlives pipe; stop it so nothing is left running.
    if let Some(step) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(step),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert_eq!(scratch_of(doomed.id()), left, "SIGKILL cannot clean up");

    // The next run sweeps on its pruning thread while its one-second step runs.
    let status = pipe(".github/workflows/quick.yml")
        .status()
        .expect("run pipe");
    assert!(status.success());
    assert_eq!(
        scratch_of(doomed.id()),
        Vec::<std::path::PathBuf>::new(),
        "the killed run's scratch is still there"
    );
}

/// pipe keeps its heap off transparent huge pages in small runs (`cli/heap.rs`) by advising
/// its own mappings; steps must still get the system's setting, not an inherited
/// `PR_SET_THP_DISABLE` (`THP_enabled: 1` in `/proc/self/status` unless disabled).
#[cfg(target_os = "linux")]
#[test]
fn steps_do_not_inherit_pipes_huge_page_setting() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(mine) = status.lines().find(|l| l.starts_with("THP_enabled:")) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "this kernel does not report `THP_enabled`"
        );
        return;
    };
    const WF: &str = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: grep THP_enabled /proc/self/status\n";
    let t = repo(&[("thp.yml", WF)]);
    let state = tempfile::tempdir().expect("tmp");
    let r = pipe(t.path(), state.path(), &["run", "--progress", "plain"]);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    // Live step output goes to stderr with the job's prefix.
    let step = r
        .stderr
        .lines()
        .find_map(|l| {
            l.split_once("THP_enabled:")
                .map(|(_, v)| v.trim().to_owned())
        })
        .expect("the step printed its THP state");
    assert_eq!(
        step,
        mine.trim_start_matches("THP_enabled:").trim(),
        "a step's THP state differs from the one pipe was started with"
    );
}
