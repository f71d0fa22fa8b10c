//! The Docker executor against the real engine: job containers, `-P` mappings, services,
//! `docker://` steps, arm64 steps under qemu, missing images, timeouts, and interrupted runs
//! that must leave no container, network or volume behind.
//!
//! There is no registry: the test images are built here, once, `FROM scratch` with Debian's
//! static busybox (and the host's `bash` with its libraries for the bash image; the arm64
//! busybox comes from `busybox-static:arm64`, which `.ci/run` unpacks). Without an engine
//! these tests skip, except under `CI=true`, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "pipe-test/busybox:1";
pub const BASH: &str = "pipe-test/bash:2";
pub const ARM64: &str = "pipe-test/busybox-arm64:1";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether the engine answers; under CI a missing engine fails the test.
pub fn docker_available() -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !in_ci(),
            "the Docker engine is not reachable and CI=true (`.ci/run` must start it)"
        );
        eprintln!("skipped: no Docker engine");
    }
    ok
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn image_exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A rootfs with busybox and a symlink per applet (names from the host's busybox).
fn busybox_root(root: &Path, busybox: &Path) {
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    std::fs::create_dir_all(root.join("www")).expect("mkdir");
    std::fs::write(root.join("www/index.html"), "hello from the web service\n").expect("write");
    std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(host_busybox())
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).expect("symlink");
        }
    }
}

fn host_busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox-static is installed (apt-get install busybox-static)")
}

/// `FROM scratch` + `root`, built with the classic builder (no registry needed).
fn build(tag: &str, root: &Path, platform: Option<&str>) {
    let ctx = root.parent().expect("parent");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY {}/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin\n",
            root.file_name().expect("name").to_string_lossy()
        ),
    )
    .expect("write Dockerfile");
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag]);
    if let Some(p) = platform {
        cmd.args(["--platform", p]);
    }
    let out = cmd.arg(ctx).output().expect("docker build");
    assert!(
        out.status.success() || image_exists(tag),
        "docker build {tag} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The arm64 busybox `.ci/run` unpacks, if present.
fn arm64_busybox() -> Option<PathBuf> {
    std::env::var_os("PIPE_TEST_BUSYBOX_ARM64")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/local/lib/pipe-test/busybox-arm64")))
        .filter(|p| p.exists())
}

/// Builds the test images that are missing.
pub fn ensure_images() {
    if !image_exists(BUSYBOX) {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("root");
        busybox_root(&root, &host_busybox());
        build(BUSYBOX, &root, None);
    }
    if !image_exists(BASH) {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("root");
        busybox_root(&root, &host_busybox());
        // bash and flock (busybox has none) with the libraries they link (from ldd).
        let mut files = Vec::new();
        for program in ["/bin/bash", "/usr/bin/flock"] {
            files.push(PathBuf::from(program));
            let ldd = Command::new("ldd").arg(program).output().expect("ldd");
            for line in String::from_utf8_lossy(&ldd.stdout).lines() {
                let path = match line.split_once("=>") {
                    Some((_, rest)) => rest.split_whitespace().next(),
                    None => line.split_whitespace().next(),
                };
                if let Some(p) = path.filter(|p| p.starts_with('/')) {
                    files.push(PathBuf::from(p));
                }
            }
        }
        for f in files {
            let target = root.join(f.strip_prefix("/").expect("absolute"));
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            let _ = std::fs::remove_file(&target);
            std::fs::copy(&f, &target).expect("copy");
        }
        build(BASH, &root, None);
    }
}

/// Builds the arm64 image; `false` (skip) when the arm64 busybox or qemu is missing outside CI.
pub fn ensure_arm64() -> bool {
    let qemu = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists();
    let Some(bb) = arm64_busybox().filter(|_| qemu) else {
        assert!(
            !in_ci(),
            "CI=true but the arm64 busybox or the qemu-aarch64 binfmt entry is missing (`.ci/run`)"
        );
        eprintln!("skipped: no arm64 busybox or qemu binfmt");
        return false;
    };
    if !image_exists(ARM64) {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("root");
        busybox_root(&root, &bb);
        build(ARM64, &root, Some("linux/arm64"));
    }
    true
}

/// A git repository with one workflow.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new(workflow: &str) -> Repo {
        let dir = tempfile::tempdir().expect("tmp");
        let wf = dir.path().join(".github/workflows");
        std::fs::create_dir_all(&wf).expect("mkdir");
        std::fs::write(wf.join("ci.yml"), workflow).expect("write");
        std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir .git");
        std::fs::create_dir_all(dir.path().join("state")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("tmp")).expect("mkdir");
        Repo { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipe"));
        cmd.args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("PIPE_STATE_DIR", self.path().join("state"))
            .env("TMPDIR", self.path().join("tmp"))
            .env_remove("PIPE_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `pipe run --summary S ARGS`; returns (exit code, stderr, summary) and checks that
    /// the run left no container, network or volume.
    pub fn run(&self, args: &[&str]) -> (Option<i32>, String, serde_json::Value) {
        let summary = self.path().join("summary.json");
        let _ = std::fs::remove_file(&summary);
        let mut all = vec![
            "run",
            "--progress",
            "plain",
            "--summary",
            summary.to_str().expect("utf8"),
        ];
        all.extend_from_slice(args);
        let child = self
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pipe");
        let pid = child.id();
        let out = child.wait_with_output().expect("wait for pipe");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "pipe panicked:\n{stderr}");
        let left = leftovers(&format!("dev.pipe.pid={pid}"));
        assert!(left.is_empty(), "the run left {left:?}");
        let s = std::fs::read_to_string(&summary)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        (out.status.code(), stderr, s)
    }
}

/// The step outputs of job `job`, step `step` in a summary.
fn output(summary: &serde_json::Value, job: &str, step: &str, key: &str) -> String {
    summary["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .find(|j| j["id"] == job)
        .and_then(|j| {
            j["steps"]
                .as_array()?
                .iter()
                .find(|s| s["id"] == step)
                .map(|s| s["outputs"][key].as_str().unwrap_or("").to_owned())
        })
        .unwrap_or_default()
}

/// Containers, networks and volumes labelled with `label` (`key=value`).
pub fn leftovers(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let mut out = Vec::new();
    for (kind, args) in [
        ("container", vec!["ps", "-aq", "--filter", &filter]),
        ("network", vec!["network", "ls", "-q", "--filter", &filter]),
        ("volume", vec!["volume", "ls", "-q", "--filter", &filter]),
    ] {
        for id in docker(&args).lines().filter(|l| !l.trim().is_empty()) {
            out.push(format!("{kind} {id}"));
        }
    }
    out
}

#[test]
fn job_container_runs_steps_as_execs() {
    if !docker_available() {
        return;
    }
    ensure_images();
    let repo = Repo::new(&format!(
        r#"on: push
jobs:
  c:
    runs-on: ubuntu-latest
    container:
      image: {BUSYBOX}
      env:
        FROM_CONTAINER: yes
      options: --cpus 1 --memory 256m --user 1234
    steps:
      - id: a
        run: |
          echo "ws=$GITHUB_WORKSPACE" >> "$GITHUB_OUTPUT"
          echo "pwd=$(pwd)" >> "$GITHUB_OUTPUT"
          echo "arch=$RUNNER_ARCH" >> "$GITHUB_OUTPUT"
          echo "env=$FROM_CONTAINER" >> "$GITHUB_OUTPUT"
          test -f "$GITHUB_EVENT_PATH" && echo "event=present" >> "$GITHUB_OUTPUT"
          echo "FOO=bar" >> "$GITHUB_ENV"
          echo /opt/extra >> "$GITHUB_PATH"
          echo written-in-container > from-container.txt
          # no bash in this image, and a `container:` job's default shell is sh anyway
          test -z "$BASH_VERSION" && echo "shell=sh" >> "$GITHUB_OUTPUT"
      - id: b
        working-directory: sub
        run: |
          echo "foo=$FOO" >> "$GITHUB_OUTPUT"
          echo "pwd=$(pwd)" >> "$GITHUB_OUTPUT"
          echo "path=$PATH" >> "$GITHUB_OUTPUT"
      - id: user
        run: echo "uid=$(id -u)" >> "$GITHUB_OUTPUT"
      - run: exit 3
      - id: after
        if: always()
        run: |
          echo "svc=${{{{ job.services.x.id }}}}" >> "$GITHUB_OUTPUT"
          echo "net=${{{{ job.container.network }}}}" >> "$GITHUB_OUTPUT"
          echo "id=${{{{ job.container.id }}}}" >> "$GITHUB_OUTPUT"
"#
    ));
    std::fs::create_dir_all(repo.path().join("sub")).expect("mkdir");
    // The steps run as uid 1234: let it write to the workspace.
    use std::os::unix::fs::PermissionsExt;
    for d in [repo.path().to_path_buf(), repo.path().join("sub")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let (code, stderr, s) = repo.run(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    let ws = repo.path().display().to_string();
    assert_eq!(output(&s, "c", "a", "ws"), ws);
    assert_eq!(output(&s, "c", "a", "pwd"), ws);
    assert_eq!(output(&s, "c", "a", "arch"), "X64");
    assert_eq!(output(&s, "c", "a", "env"), "yes");
    assert_eq!(output(&s, "c", "a", "event"), "present");
    assert_eq!(output(&s, "c", "a", "shell"), "sh");
    assert_eq!(output(&s, "c", "b", "foo"), "bar");
    assert_eq!(output(&s, "c", "b", "pwd"), format!("{ws}/sub"));
    assert!(
        output(&s, "c", "b", "path").starts_with("/opt/extra:/usr/local/bin:/usr/bin:/bin"),
        "{}",
        output(&s, "c", "b", "path")
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("from-container.txt")).expect("written"),
        "written-in-container\n"
    );
    assert!(
        stderr.contains("process completed with exit code 3"),
        "{stderr}"
    );
    assert_eq!(output(&s, "c", "user", "uid"), "1234");
    assert_eq!(output(&s, "c", "after", "net"), "bridge");
    assert_eq!(output(&s, "c", "after", "id").len(), 64);
    assert_eq!(s["jobs"][0]["steps"][4]["outcome"], "success");
    assert!(s["run"].as_u64().is_some_and(|r| r > 0));
}

#[test]
fn platform_map_and_config_choose_the_image_and_shell() {
    if !docker_available() {
        return;
    }
    ensure_images();
    let repo = Repo::new(
        r#"on: push
jobs:
  mapped:
    runs-on: ubuntu-latest
    steps:
      - id: s
        run: |
          echo "bash=${BASH_VERSION:+yes}" >> "$GITHUB_OUTPUT"
          echo "in=$(cat /proc/1/cmdline | tr '\0' ' ')" >> "$GITHUB_OUTPUT"
  configured:
    runs-on: [self-hosted, small]
    steps:
      - id: s
        run: echo "bash=${BASH_VERSION:+yes}" >> "$GITHUB_OUTPUT"
  unmapped:
    runs-on: macos-latest
    steps:
      - id: s
        run: echo "host=$(hostname)" >> "$GITHUB_OUTPUT"
"#,
    );
    std::fs::create_dir_all(repo.path().join(".pipe")).expect("mkdir");
    std::fs::write(
        repo.path().join(".pipe/config.toml"),
        format!("[runners]\nlabels = [\"small\"]\n[runners.images]\nsmall = \"{BUSYBOX}\"\n"),
    )
    .expect("write config");
    let (code, stderr, s) = repo.run(&["-P", &format!("ubuntu-latest={BASH}")]);
    assert_eq!(code, Some(0), "{stderr}");
    // A -P job behaves like a runner machine: bash when the image has it, else sh.
    assert_eq!(output(&s, "mapped", "s", "bash"), "yes");
    assert_eq!(output(&s, "mapped", "s", "in"), "tail -f /dev/null ");
    assert_eq!(output(&s, "configured", "s", "bash"), "");
    // The unmapped label ran on the host, with a one-line notice naming it.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(output(&s, "unmapped", "s", "host"), host.trim());
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ran on this host"))
        .collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(
        notes[0].contains("`macos-latest` (a macOS label)"),
        "{stderr}"
    );
    assert!(!notes[0].contains("ubuntu-latest"), "{stderr}");

    // --host forces the host for every job.
    let (code, stderr, s) = repo.run(&[
        "-P",
        &format!("ubuntu-latest={BASH}"),
        "--host",
        "-j",
        "mapped",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!output(&s, "mapped", "s", "in").contains("tail -f"), "{s}");
}

#[test]
fn services_are_reachable_by_name_and_through_published_ports() {
    if !docker_available() {
        return;
    }
    ensure_images();
    let repo = Repo::new(&format!(
        r#"on: push
jobs:
  in-container:
    runs-on: ubuntu-latest
    container: {BUSYBOX}
    services:
      web:
        image: {BUSYBOX}
        entrypoint: httpd
        command: -f -v -p 8080 -h /www
        options: >-
          --health-cmd "wget -q -O /dev/null http://localhost:8080/index.html"
          --health-interval 200ms --health-retries 20
    steps:
      - id: s
        run: echo "page=$(wget -q -O - http://web:8080/index.html)" >> "$GITHUB_OUTPUT"
  on-host:
    runs-on: ubuntu-latest
    services:
      web:
        image: {BUSYBOX}
        entrypoint: httpd
        command: -f -p 8080 -h /www
        ports: ['8080']
        options: --health-cmd "wget -q -O /dev/null http://localhost:8080/" --health-interval 200ms --health-retries 20
    steps:
      - id: s
        run: |
          port=${{{{ job.services.web.ports['8080'] }}}}
          echo "port=$port" >> "$GITHUB_OUTPUT"
          echo "page=$({} wget -q -O - http://127.0.0.1:$port/index.html)" >> "$GITHUB_OUTPUT"
"#,
        host_busybox().display()
    ));
    let (code, stderr, s) = repo.run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        output(&s, "in-container", "s", "page"),
        "hello from the web service"
    );
    assert!(
        output(&s, "on-host", "s", "port").parse::<u16>().is_ok(),
        "{s}"
    );
    assert_eq!(
        output(&s, "on-host", "s", "page"),
        "hello from the web service"
    );
    // The services' logs are kept with the run.
    let logs: Vec<PathBuf> = walk(&repo.path().join("state"))
        .into_iter()
        .filter(|p| p.ends_with("service-web.log"))
        .collect();
    assert_eq!(logs.len(), 2, "{logs:?}");
    let shown = repo.command(&["logs"]).output().expect("pipe logs");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("── in-container / service web ──"), "{text}");
    assert!(text.contains("── on-host / service web ──"), "{text}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn docker_steps_run_with_inputs_and_the_workspace() {
    if !docker_available() {
        return;
    }
    ensure_images();
    let repo = Repo::new(&format!(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: echo from-host > note.txt
      - id: d
        uses: docker://{BUSYBOX}
        with:
          entrypoint: sh
          args: -c "echo got=$INPUT_WHO-$(cat note.txt)-$(pwd) >> $GITHUB_OUTPUT"
          who: me
      - uses: docker://{BUSYBOX}
        with:
          args: sh -c "exit 5"
"#
    ));
    let (code, stderr, s) = repo.run(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        output(&s, "j", "d", "got"),
        "me-from-host-/github/workspace"
    );
    assert!(
        stderr.contains("process completed with exit code 5"),
        "{stderr}"
    );
}

#[test]
fn arm64_steps_run_under_qemu() {
    if !docker_available() || !ensure_arm64() {
        return;
    }
    ensure_images();
    let repo = Repo::new(&format!(
        r#"on: push
jobs:
  arm:
    runs-on: ubuntu-latest
    container:
      image: {ARM64}
      platform: linux/arm64
    steps:
      - id: s
        run: |
          echo "machine=$(uname -m)" >> "$GITHUB_OUTPUT"
          echo "arch=$RUNNER_ARCH" >> "$GITHUB_OUTPUT"
"#
    ));
    let (code, stderr, s) = repo.run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(output(&s, "arm", "s", "machine"), "aarch64");
    assert_eq!(output(&s, "arm", "s", "arch"), "ARM64");

    // --container-platform applies to mapped jobs.
    let repo = Repo::new(
        r#"on: push
jobs:
  arm:
    runs-on: ubuntu-latest
    steps:
      - id: s
        run: echo "machine=$(uname -m)" >> "$GITHUB_OUTPUT"
"#,
    );
    let (code, stderr, s) = repo.run(&[
        "-P",
        &format!("ubuntu-latest={ARM64}"),
        "--container-platform",
        "linux/arm64",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(output(&s, "arm", "s", "machine"), "aarch64");
}

#[test]
fn a_missing_image_fails_the_job_at_once_naming_it() {
    if !docker_available() {
        return;
    }
    let repo = Repo::new(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    container: pipe-test/does-not-exist:1
    steps:
      - run: echo never
"#,
    );
    for pull in ["never", "missing"] {
        let started = Instant::now();
        let (code, stderr, s) = repo.run(&["--pull", pull]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("pipe-test/does-not-exist:1"),
            "--pull={pull}: {stderr}"
        );
        assert_eq!(s["jobs"][0]["conclusion"], "failure");
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    let (code, stderr, _) = repo.run(&["--pull", "sometimes"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not a pull policy"), "{stderr}");
}

#[test]
fn a_step_timeout_stops_the_process_inside_the_container() {
    if !docker_available() {
        return;
    }
    ensure_images();
    let repo = Repo::new(&format!(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    container: {BUSYBOX}
    steps:
      - run: trap '' TERM; sleep 300
        timeout-minutes: 0.02
      - id: after
        if: always()
        run: echo "sleeping=$(ps | grep -c '[s]leep 300')" >> "$GITHUB_OUTPUT"
"#
    ));
    let started = Instant::now();
    let (code, stderr, s) = repo.run(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("has timed out"), "{stderr}");
    assert_eq!(output(&s, "j", "after", "sleeping"), "0");
    // 1.2 s timeout + 5 s grace, far from 300 s.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// The number of interrupted runs (`PIPE_DOCKER_INTERRUPT_RUNS`, default 6).
fn interrupt_runs() -> usize {
    std::env::var("PIPE_DOCKER_INTERRUPT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

#[test]
fn interrupted_runs_leave_no_containers_networks_or_volumes() {
    if !docker_available() {
        return;
    }
    ensure_images();
    let repo = Repo::new(&format!(
        r#"on: push
jobs:
  a:
    runs-on: ubuntu-latest
    container:
      image: {BUSYBOX}
      volumes: ['pipe-test-vol-${{{{ github.run_number }}}}:/data']
    services:
      db:
        image: {BUSYBOX}
        entrypoint: sleep
        command: "300"
    steps:
      - run: sleep 300 &
      - run: trap '' TERM; sleep 300
  b:
    runs-on: ubuntu-latest
    steps:
      - run: sleep 300
"#
    ));
    let mut seed: u64 = std::env::var("PIPE_INTERRUPT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("PIPE_INTERRUPT_SEED={seed}");
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..interrupt_runs() {
        let signal = ["INT", "TERM", "KILL"][i % 3];
        let delay = Duration::from_millis(next() % 2500);
        let mut child = repo
            .command(&["run", "--progress", "plain", "-p", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pipe");
        let pid = child.id();
        std::thread::sleep(delay);
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status();
        // A run that waits for its cleanup gets 60 s; a second signal is not needed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "run {i} ({signal} after {delay:?}) did not end"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        if signal == "KILL" {
            // A request the killed pipe had in flight (a create) may still complete inside the
            // engine after it died: prune until nothing is left, for a bounded while.
            // Done when two looks a second apart find nothing (a create the engine was still
            // finishing shows up in between).
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut pruned = Vec::new();
            let mut clean_looks = 0;
            loop {
                let p = repo.command(&["prune"]).output().expect("prune");
                assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
                pruned.push(String::from_utf8_lossy(&p.stderr).trim().to_owned());
                let left = leftovers(&format!("dev.pipe.pid={pid}"));
                if left.is_empty() {
                    clean_looks += 1;
                    if clean_looks == 2 {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                clean_looks = 0;
                if Instant::now() > deadline {
                    let details: Vec<String> = left
                        .iter()
                        .filter_map(|l| l.split_once(' '))
                        .map(|(kind, id)| docker(&[kind, "inspect", "--format", "{{json .}}", id]))
                        .collect();
                    panic!(
                        "run {i} (KILL after {delay:?}) left {left:?} after pruning {pruned:?}; \
                         pid {pid} is now {:?}: {details:?}",
                        std::fs::read(format!("/proc/{pid}/cmdline")).ok()
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        } else {
            let expected = if signal == "INT" { 130 } else { 143 };
            // A run that finished before the signal arrived exits on its own; one signalled
            // before its handlers were installed dies of the signal.
            assert!(
                matches!(out.status.code(), Some(c) if c == expected || c == 0 || c == 1)
                    || out.status.code().is_none(),
                "run {i} ({signal} after {delay:?}) exited {:?}: {stderr}",
                out.status.code()
            );
        }
        let left = leftovers(&format!("dev.pipe.pid={pid}"));
        assert!(
            left.is_empty(),
            "run {i} ({signal} after {delay:?}) left {left:?}: {stderr}"
        );
    }
}

#[test]
fn no_engine_is_an_infrastructure_error_naming_what_was_tried() {
    let repo = Repo::new(&format!(
        r#"on: push
jobs:
  c:
    runs-on: ubuntu-latest
    container: {BUSYBOX}
    steps:
      - run: echo never
  h:
    runs-on: ubuntu-latest
    steps:
      - run: echo on the host
"#
    ));
    let sock = repo.path().join("nobody.sock");
    let out = repo
        .command(&["run", "--progress", "plain"])
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .output()
        .expect("run pipe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no Docker engine answered (tried `DOCKER_HOST` `unix://{}`: no such socket)",
            sock.display()
        )),
        "{stderr}"
    );
    // The host job ran all the same.
    assert!(stderr.contains("on the host"), "{stderr}");
}

#[test]
fn prune_keeps_what_a_running_pipe_uses() {
    if !docker_available() {
        return;
    }
    ensure_images();
    let repo = Repo::new(&format!(
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    container: {BUSYBOX}
    steps:
      - run: sleep 300
"#
    ));
    let mut child = repo
        .command(&["run", "--progress", "plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pipe");
    let label = format!("dev.pipe.pid={}", child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while leftovers(&label).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the job container never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let p = repo.command(&["prune"]).output().expect("prune");
    assert!(p.status.success());
    // (Another test's killed runs may be pruned meanwhile: only this run's resources count.)
    assert!(
        !leftovers(&label).is_empty(),
        "prune removed a running job's container"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143));
    assert!(leftovers(&label).is_empty());
}
