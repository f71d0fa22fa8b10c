//! `pipe image` against real tools: skopeo and umoci read what pipe writes (tier 1), a real
//! `docker-registry` on 127.0.0.1 (anonymous and htpasswd) takes pipe's pushes, and the Docker
//! engine loads and runs both architectures, arm64 under qemu (tier 2). The release example
//! `pipelines/release.yml` runs end to end.
//!
//! A missing tool skips a test with a message, except under `CI=true`, where it fails
//! (`.ci/run` installs skopeo, umoci, docker-registry, apache2-utils, the aarch64 cross gcc and
//! qemu).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, in_ci};
use crate::docker::{Repo, docker_available};

/// Whether `name` is on PATH; skips (or fails under CI) when it is not.
fn have(names: &[&str]) -> bool {
    for name in names {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            assert!(
                !in_ci(),
                "CI=true but `{name}` is not installed (`.ci/run`)"
            );
            eprintln!("skipped: `{name}` is not installed");
            return false;
        }
    }
    true
}

fn qemu_arm64() -> bool {
    let ok = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists();
    if !ok {
        assert!(
            !in_ci(),
            "CI=true but the qemu-aarch64 binfmt entry is missing (`.ci/run`)"
        );
        eprintln!("skipped: no qemu-aarch64 binfmt entry");
    }
    ok
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A `docker-registry serve` on a free loopback port, killed (by its pid) on drop.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("tmp");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let auth = match htpasswd {
            Some((user, pass)) => {
                let line = sh(Command::new("htpasswd").args(["-Bbn", user, pass]));
                std::fs::write(dir.path().join("htpasswd"), line).expect("write");
                format!(
                    "auth:\n  htpasswd:\n    realm: pipe-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: \"{addr}\"}}\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let start = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Per-arch trees with text files, an executable and a symlink.
fn trees(root: &Path) {
    for arch in ["amd64", "arm64"] {
        let t = root.join("src").join(arch);
        std::fs::create_dir_all(t.join("etc/app")).expect("mkdir");
        std::fs::write(t.join("etc/app/arch"), format!("{arch}\n")).expect("write");
        std::fs::write(t.join("etc/app/run.sh"), "#!/bin/sh\necho run\n").expect("write");
        sh(Command::new("chmod")
            .arg("0755")
            .arg(t.join("etc/app/run.sh")));
        sh(Command::new("chmod")
            .arg("0600")
            .arg(t.join("etc/app/arch")));
        std::os::unix::fs::symlink("run.sh", t.join("etc/app/link")).expect("symlink");
    }
}

/// `pipe image build -t pipe-it/app:v1 --platform linux/amd64,linux/arm64` in `dir`; returns
/// the `--json` output.
fn build(dir: &Path, extra: &[&str]) -> serde_json::Value {
    build_with(dir, "pipe-it/app:v1", "linux/amd64,linux/arm64", extra)
}

fn build_with(dir: &Path, tag: &str, platforms: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "image",
        "build",
        "-t",
        tag,
        "--platform",
        platforms,
        "--json",
    ];
    args.extend_from_slice(extra);
    let r = common::pipe(dir, &args);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    serde_json::from_str(&r.stdout).expect("json")
}

/// Path, mode and content (or link target) of every file below `root`.
fn listing(root: &Path) -> BTreeMap<String, (u32, String)> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, (u32, String)>) {
        for e in std::fs::read_dir(d).expect("read dir") {
            let p = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&p).expect("meta");
            let rel = p
                .strip_prefix(base)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let mode = std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777;
            if m.file_type().is_symlink() {
                let to = std::fs::read_link(&p).expect("link");
                out.insert(rel, (0, format!("-> {}", to.display())));
            } else if m.is_dir() {
                out.insert(rel.clone(), (mode, "dir".to_owned()));
                walk(base, &p, out);
            } else {
                out.insert(rel, (mode, std::fs::read_to_string(&p).expect("read")));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

#[test]
fn skopeo_and_umoci_read_back_what_pipe_builds() {
    if !have(&["skopeo", "umoci"]) {
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    trees(t.path());
    let v = build(t.path(), &["--layer", "src/{arch}:/", "-o", "out"]);
    let digest = v["digest"].as_str().expect("digest").to_owned();
    // The same inputs in another folder give the same digest.
    let v2 = build(t.path(), &["--layer", "src/{arch}:/", "-o", "out2"]);
    assert_eq!(v2["digest"], v["digest"]);
    let out = t.path().join("out");
    let raw = sh(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:v1", out.display())));
    assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), digest);
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let inspect: serde_json::Value = serde_json::from_str(&sh(Command::new("skopeo")
            .args(["inspect", "--override-arch", arch])
            .arg(format!("oci:{}:v1", out.display()))))
        .expect("json");
        assert_eq!(inspect["Architecture"], *arch);
        assert_eq!(inspect["Digest"], digest.as_str());
        // One platform copied to a flat layout, unpacked by umoci, equals the input tree.
        let flat = t.path().join(format!("flat-{arch}"));
        sh(Command::new("skopeo")
            .args(["copy", "--override-arch", arch])
            .arg(format!("oci:{}:v1", out.display()))
            .arg(format!("oci:{}:{arch}", flat.display())));
        let bundle = t.path().join(format!("bundle-{arch}"));
        sh(Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{arch}", flat.display()))
            .arg(&bundle));
        let got = listing(&bundle.join("rootfs"));
        let want = listing(&t.path().join("src").join(arch));
        assert_eq!(got, want, "{arch}");
        assert_eq!(
            v["platforms"][i]["platform"],
            format!("linux/{arch}").as_str()
        );
    }
    // zstd layers (opt-in, with a warning) hold the same tars: skopeo reads the same diff_ids.
    let r = common::pipe(
        t.path(),
        &[
            "image",
            "build",
            "-t",
            "pipe-it/app:v1",
            "--platform",
            "linux/amd64,linux/arm64",
            "--layer",
            "src/{arch}:/",
            "-o",
            "zout",
            "--compression",
            "zstd",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("warning: zstd layers"), "{}", r.stderr);
    let layers = |dir: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&sh(Command::new("skopeo")
            .args(["inspect", "--override-arch", "arm64"])
            .arg(format!("oci:{}:v1", t.path().join(dir).display()))))
        .expect("json");
        v["Layers"].clone()
    };
    let (z, g) = (layers("zout"), layers("out"));
    assert_eq!(z.as_array().map(Vec::len), Some(1));
    assert_ne!(z, g);
    let zstd_manifests = std::fs::read_dir(t.path().join("zout/blobs/sha256"))
        .expect("blobs")
        .filter(|e| {
            std::fs::read(e.as_ref().expect("entry").path())
                .is_ok_and(|b| String::from_utf8_lossy(&b).contains("tar+zstd"))
        })
        .count();
    assert_eq!(zstd_manifests, 2);
    // `pipe image inspect` re-hashes every blob.
    let r = common::pipe(t.path(), &["image", "inspect", "out", "--json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let i: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(i["blobs_verified"], 7);
    assert_eq!(i["images"][0]["digest"], digest.as_str());
    // A flipped byte is found and is exit 3.
    let layer = v["platforms"][1]["layers"][0]["digest"]
        .as_str()
        .expect("layer");
    let p = out
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[10] ^= 1;
    std::fs::write(&p, bytes).expect("write");
    let r = common::pipe(t.path(), &["image", "inspect", "out"]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        r.stderr.contains(layer) && r.stderr.contains("corrupt"),
        "{}",
        r.stderr
    );
}

#[test]
fn pushes_to_a_real_registry_match_skopeo_byte_for_byte() {
    if !have(&["skopeo", "docker-registry"]) {
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    trees(t.path());
    let v = build(t.path(), &["--layer", "src/{arch}:/", "-o", "out"]);
    let digest = v["digest"].as_str().expect("digest");
    let reg = Registry::start(None);
    let target = format!("{}/team/app:v1", reg.addr);
    let push = |extra: &[&str]| {
        let mut args = vec![
            "image",
            "push",
            "out",
            &target,
            "--insecure-registry",
            &reg.addr,
            "--json",
        ];
        args.extend_from_slice(extra);
        let r = common::pipe(t.path(), &args);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        serde_json::from_str::<serde_json::Value>(&r.stdout).expect("json")
    };
    let first = push(&[]);
    assert_eq!(first["digest"], digest);
    assert_eq!(first["blobs_uploaded"], 4);
    let second = push(&[]);
    assert_eq!(
        (
            second["blobs_uploaded"].as_u64(),
            second["manifests"].as_u64()
        ),
        (Some(0), Some(3))
    );
    assert_eq!(second["blobs_skipped"], 4);
    // The registry serves the exact index bytes.
    let raw = sh(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{target}")));
    let local = std::fs::read(
        t.path()
            .join("out/blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .expect("index blob");
    assert_eq!(raw.as_bytes(), &local[..]);
    // skopeo pulls back the same blobs.
    sh(Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{target}"))
        .arg(format!("oci:{}:v1", t.path().join("back").display())));
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.join("blobs/sha256"))
            .expect("blobs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&t.path().join("back")), names(&t.path().join("out")));
    // skopeo as the pusher gives the same index digest.
    sh(Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", t.path().join("out").display()))
        .arg(format!("docker://{}/other/app:v1", reg.addr)));
    let raw = sh(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/other/app:v1", reg.addr)));
    assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), digest);
    // Without `--insecure-registry`, pipe speaks HTTPS and says the registry failed.
    let r = common::pipe(t.path(), &["image", "push", "out", &target]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
}

#[test]
fn an_htpasswd_registry_takes_pushes_with_credentials_only() {
    if !have(&["docker-registry", "htpasswd", "skopeo"]) {
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    trees(t.path());
    let v = build(t.path(), &["--layer", "src/{arch}:/", "-o", "out"]);
    let reg = Registry::start(Some(("pipe", "s3cret")));
    let target = format!("{}/secure/app:v1", reg.addr);
    let r = common::pipe(
        t.path(),
        &[
            "image",
            "push",
            "out",
            &target,
            "--insecure-registry",
            &reg.addr,
        ],
    );
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stderr.contains("needs credentials"), "{}", r.stderr);
    let run = |pass: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args([
                "image",
                "push",
                "out",
                &target,
                "--insecure-registry",
                &reg.addr,
            ])
            .args(["--username", "pipe", "--password-stdin"])
            .current_dir(t.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(pass.as_bytes())?;
                c.wait_with_output()
            })
            .expect("pipe");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = run("wrong\n");
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("credentials were refused"), "{stderr}");
    let (code, stdout, stderr) = run("s3cret\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), v["digest"].as_str().expect("digest"));
    let raw = sh(Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "pipe:s3cret",
        ])
        .arg(format!("docker://{target}")));
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        v["digest"].as_str().expect("d")
    );
}

#[test]
fn bad_input_is_exit_2_naming_the_problem() {
    let t = tempfile::tempdir().expect("tmp");
    trees(t.path());
    for (args, want) in [
        (
            vec!["--platform", "linux/x86_64", "--layer", "src/amd64"],
            "unknown architecture `x86_64`",
        ),
        (
            vec![
                "--platform",
                "linux/amd64,linux/arm64",
                "--layer",
                "linux/amd64=src/amd64",
            ],
            "no layer for platform `linux/arm64`",
        ),
        (
            vec!["--platform", "linux/amd64", "--layer", "missing:/"],
            "does not exist",
        ),
        (
            vec!["--platform", "linux/amd64", "--layer", "src/amd64:usr"],
            "must be absolute",
        ),
        (
            vec![
                "--platform",
                "linux/amd64",
                "--layer",
                "src/amd64",
                "--compression",
                "lz4",
            ],
            "`lz4` is unknown",
        ),
        (
            vec![
                "--platform",
                "linux/amd64",
                "--layer",
                "src/amd64",
                "--push",
                "app:v1",
            ],
            "has no registry host",
        ),
    ] {
        let mut all = vec!["image", "build", "-t", "pipe-it/app:v1"];
        all.extend(args);
        let r = common::pipe(t.path(), &all);
        assert_eq!(r.code, Some(2), "{all:?}: {}", r.stderr);
        assert!(r.stderr.contains(want), "{all:?}: {}", r.stderr);
        assert!(r.stdout.is_empty());
    }
    let r = common::pipe(t.path(), &["image", "inspect", "src"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("is not an OCI image layout"),
        "{}",
        r.stderr
    );
}

/// Static `hello` programs for amd64 and arm64 (gcc and the aarch64 cross gcc), plus an arm64
/// busybox shell when `.ci/run` fetched one.
fn hello_trees(root: &Path) {
    let c = root.join("hello.c");
    std::fs::write(
        &c,
        "#include <stdio.h>\n#include <sys/utsname.h>\nint main(void){struct utsname u; uname(&u); printf(\"hello from %s\\n\", u.machine); return 0;}\n",
    )
    .expect("write");
    for (arch, cc) in [("amd64", "gcc"), ("arm64", "aarch64-linux-gnu-gcc")] {
        let bin = root.join("src").join(arch).join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        sh(Command::new(cc)
            .args(["-static", "-O2", "-o"])
            .arg(bin.join("hello"))
            .arg(&c));
    }
}

fn arm64_busybox() -> Option<PathBuf> {
    std::env::var_os("PIPE_TEST_BUSYBOX_ARM64")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/local/lib/pipe-test/busybox-arm64")))
        .filter(|p| p.exists())
}

#[test]
fn loaded_images_run_on_both_architectures_and_pull_from_the_registry() {
    if !docker_available()
        || !qemu_arm64()
        || !have(&["gcc", "aarch64-linux-gnu-gcc", "docker-registry"])
    {
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    hello_trees(t.path());
    let reg = Registry::start(None);
    let target = format!("{}/pipe-it/hello:v1", reg.addr);
    let v = build(
        t.path(),
        &[
            "--layer",
            "src/{arch}:/",
            "--entrypoint",
            "/bin/hello",
            "-o",
            "out",
            "--load",
            "--push",
            &target,
            "--insecure-registry",
            &reg.addr,
        ],
    );
    let docker = |args: &[&str]| sh(Command::new("docker").args(args));
    for (i, (arch, machine)) in [("amd64", "x86_64"), ("arm64", "aarch64")]
        .iter()
        .enumerate()
    {
        let tag = format!("pipe-it/app:v1-{arch}");
        let id = docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Architecture}}",
            &tag,
        ]);
        assert_eq!(
            id.trim(),
            format!(
                "{} {arch}",
                v["platforms"][i]["config"].as_str().expect("config")
            )
        );
        assert_eq!(v["loaded"][i]["id"], v["platforms"][i]["config"]);
        let out = docker(&["run", "--rm", "--platform", &format!("linux/{arch}"), &tag]);
        assert_eq!(out.trim(), format!("hello from {machine}"));
        // Through the registry: the index picks the platform.
        docker(&[
            "pull",
            "-q",
            "--platform",
            &format!("linux/{arch}"),
            &target,
        ]);
        let out = docker(&[
            "run",
            "--rm",
            "--platform",
            &format!("linux/{arch}"),
            &target,
        ]);
        assert_eq!(out.trim(), format!("hello from {machine}"));
        let _ = Command::new("docker").args(["rmi", "-f", &target]).output();
    }
    // The host's platform also has the plain tag.
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", "pipe-it/app:v1"]);
    assert_eq!(
        id.trim(),
        v["platforms"][0]["config"].as_str().expect("config")
    );
    assert_eq!(v["pushed"]["digest"], v["digest"]);
    let _ = Command::new("docker")
        .args([
            "rmi",
            "-f",
            "pipe-it/app:v1",
            "pipe-it/app:v1-amd64",
            "pipe-it/app:v1-arm64",
        ])
        .output();
}

#[test]
fn the_docker_executor_runs_a_step_in_the_arm64_image_pipe_built() {
    if !docker_available() || !qemu_arm64() {
        return;
    }
    let Some(bb) = arm64_busybox() else {
        assert!(
            !in_ci(),
            "CI=true but the arm64 busybox is missing (`.ci/run`)"
        );
        eprintln!("skipped: no arm64 busybox");
        return;
    };
    let t = tempfile::tempdir().expect("tmp");
    let bin = t.path().join("root/bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::copy(&bb, bin.join("busybox")).expect("copy");
    for applet in [
        "sh", "tail", "uname", "echo", "cat", "mkdir", "rm", "env", "kill", "ps", "sleep",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
    }
    std::fs::create_dir_all(t.path().join("root/tmp")).expect("mkdir");
    let v = build_with(
        t.path(),
        "pipe-it/bb:v1",
        "linux/arm64",
        &[
            "--layer",
            "root:/",
            "-e",
            "PATH=/bin",
            "-o",
            "out",
            "--load",
        ],
    );
    assert!(v["loaded"].as_array().is_some_and(|a| a.len() == 1));
    let repo = Repo::new(
        r#"on: push
jobs:
  arm:
    runs-on: ubuntu-latest
    container:
      image: pipe-it/bb:v1-arm64
      platform: linux/arm64
    steps:
      - id: s
        run: echo "machine=$(uname -m)" >> "$GITHUB_OUTPUT"
"#,
    );
    let (code, stderr, s) = repo.run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    let machine = s["jobs"][0]["steps"][0]["outputs"]["machine"].clone();
    assert_eq!(machine, "aarch64", "{s}");
    let _ = Command::new("docker")
        .args([
            "rmi",
            "-f",
            "pipe-it/bb:v1",
            "pipe-it/bb:v1-amd64",
            "pipe-it/bb:v1-arm64",
        ])
        .output();
}

#[test]
fn the_release_example_builds_scans_pushes_and_runs_with_stable_digests() {
    if !docker_available()
        || !qemu_arm64()
        || !have(&["gcc", "aarch64-linux-gnu-gcc", "docker-registry", "python3"])
    {
        return;
    }
    let release = common::repo().join("pipelines/release.yml");
    let text = std::fs::read_to_string(&release).expect("pipelines/release.yml");
    let repo = Repo::new(&text);
    common::copy_tree(
        &common::repo().join("pipelines"),
        &repo.path().join("pipelines"),
    );
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let (code, stderr, s) = repo.run(&["-W", "pipelines/release.yml"]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            stderr.contains("linux/arm64: hello from aarch64"),
            "{stderr}"
        );
        assert!(
            stderr.contains("linux/amd64: hello from x86_64"),
            "{stderr}"
        );
        let jobs: BTreeMap<String, serde_json::Value> = s["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| {
                (
                    j["name"].as_str().expect("name").to_owned(),
                    j["outputs"].clone(),
                )
            })
            .collect();
        outputs.push(jobs);
    }
    assert_eq!(outputs[0], outputs[1], "the digests changed between runs");
    let image = &outputs[0]["image"];
    for k in [
        "digest",
        "digest-amd64",
        "digest-arm64",
        "config-amd64",
        "config-arm64",
    ] {
        let d = image[k].as_str().unwrap_or("");
        assert!(d.starts_with("sha256:") && d.len() == 71, "{k}: {image}");
    }
    assert_ne!(image["digest-amd64"], image["digest-arm64"]);
    assert_eq!(image["scan"], "pass");
}

#[test]
fn a_multi_stage_dockerfile_builds_for_both_platforms_through_the_engine() {
    if !docker_available() || !qemu_arm64() {
        return;
    }
    let Some(bb) = arm64_busybox() else {
        assert!(
            !in_ci(),
            "CI=true but the arm64 busybox is missing (`.ci/run`)"
        );
        eprintln!("skipped: no arm64 busybox");
        return;
    };
    let t = tempfile::tempdir().expect("tmp");
    // Per-platform busybox base images, built and loaded by pipe itself.
    for (arch, src) in [("amd64", PathBuf::from("/bin/busybox")), ("arm64", bb)] {
        let bin = t.path().join("bb").join(arch).join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::copy(&src, bin.join("busybox")).expect("copy");
        for applet in ["sh", "mkdir", "uname", "cat"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
        }
    }
    build_with(
        t.path(),
        "pipe-it/dfbase:v1",
        "linux/amd64,linux/arm64",
        &[
            "--layer",
            "bb/{arch}:/",
            "-e",
            "PATH=/bin",
            "-o",
            "base",
            "--load",
        ],
    );
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(
        ctx.join("Dockerfile"),
        "ARG TARGETARCH\nFROM pipe-it/dfbase:v1-${TARGETARCH} AS build\nRUN mkdir -p /out && uname -m > /out/machine\n\nFROM pipe-it/dfbase:v1-${TARGETARCH}\nCOPY --from=build /out/machine /machine\nENTRYPOINT [\"/bin/busybox\", \"cat\", \"/machine\"]\n",
    )
    .expect("write");
    let v = build_with(
        t.path(),
        "pipe-it/df:v1",
        "linux/amd64,linux/arm64",
        &["--dockerfile", "ctx/Dockerfile", "-o", "out", "--load"],
    );
    for (i, (arch, machine)) in [("amd64", "x86_64"), ("arm64", "aarch64")]
        .iter()
        .enumerate()
    {
        let tag = format!("pipe-it/df:v1-{arch}");
        let out = sh(Command::new("docker").args([
            "run",
            "--rm",
            "--platform",
            &format!("linux/{arch}"),
            &tag,
        ]));
        // The RUN step ran on the target architecture (under qemu for arm64).
        assert_eq!(out.trim(), *machine);
        assert_eq!(
            v["platforms"][i]["platform"],
            format!("linux/{arch}").as_str()
        );
        // The config is the engine's own: its digest is the engine's image id.
        let id = sh(Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &tag]));
        assert_eq!(
            id.trim(),
            v["platforms"][i]["config"].as_str().expect("config")
        );
    }
    // The layout is a real multi-arch index.
    if have(&["skopeo"]) {
        let inspect: serde_json::Value = serde_json::from_str(&sh(Command::new("skopeo")
            .args(["inspect", "--override-arch", "arm64"])
            .arg(format!("oci:{}:v1", t.path().join("out").display()))))
        .expect("json");
        assert_eq!(inspect["Architecture"], "arm64");
    }
    // A failing RUN is exit 1 with the build's own message.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM pipe-it/dfbase:v1-amd64\nRUN exit 7\n",
    )
    .expect("write");
    let r = common::pipe(
        t.path(),
        &[
            "image",
            "build",
            "-t",
            "pipe-it/df:bad",
            "--platform",
            "linux/amd64",
            "--dockerfile",
            "ctx/Dockerfile",
            "-o",
            "bad",
        ],
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("the build for `linux/amd64` failed"),
        "{}",
        r.stderr
    );
    let _ = Command::new("docker")
        .args([
            "rmi",
            "-f",
            "pipe-it/df:v1",
            "pipe-it/df:v1-amd64",
            "pipe-it/df:v1-arm64",
            "pipe-it/dfbase:v1",
            "pipe-it/dfbase:v1-amd64",
            "pipe-it/dfbase:v1-arm64",
        ])
        .output();
}

#[test]
fn inspect_output_is_stable() {
    let t = tempfile::tempdir().expect("tmp");
    trees(t.path());
    build(
        t.path(),
        &["--layer", "src/{arch}:/", "--label", "a=b", "-o", "out"],
    );
    let r = common::pipe(t.path(), &["image", "inspect", "out"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    insta::assert_snapshot!("image-inspect", r.stdout);
}

#[test]
fn an_interrupted_build_exits_130_and_leaves_no_temporary_blob() {
    let t = tempfile::tempdir().expect("tmp");
    let big = t.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    // Random bytes compress slowly: enough to be interrupted in the middle.
    sh(Command::new("sh").arg("-c").arg(format!(
        "head -c 300000000 /dev/urandom > {}/blob",
        big.display()
    )));
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args([
            "image",
            "build",
            "-t",
            "pipe-it/big:v1",
            "--platform",
            "linux/amd64",
        ])
        .args(["--layer", "big:/", "-o", "out"])
        .current_dir(t.path())
        .env("PIPE_CACHE_DIR", t.path().join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pipe");
    // Wait until the layer's temporary file exists, then interrupt.
    let blobs = t.path().join("out/blobs/sha256");
    let start = Instant::now();
    while std::fs::read_dir(&blobs).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no temporary blob appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .expect("blobs")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!t.path().join("out/index.json").exists());
}

#[test]
fn an_engine_image_or_its_docker_save_tar_is_a_base() {
    if !docker_available() {
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    let bin = t.path().join("bb/bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static");
    for applet in ["sh", "cat"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
    }
    std::fs::create_dir_all(t.path().join("extra")).expect("mkdir");
    std::fs::write(t.path().join("extra/x"), "from the derived layer\n").expect("write");
    let base = build_with(
        t.path(),
        "pipe-it/base:v1",
        "linux/amd64",
        &["--layer", "bb:/", "-e", "PATH=/bin", "-o", "base", "--load"],
    );
    sh(Command::new("sh")
        .current_dir(t.path())
        .arg("-c")
        .arg("docker save pipe-it/base:v1-amd64 > saved.tar"));
    let derive = |base_arg: &str, out: &str, load: bool| {
        let mut extra = vec![
            "--base",
            base_arg,
            "--layer",
            "extra:/opt",
            "--cmd",
            "cat /opt/x",
            "-o",
            out,
        ];
        if load {
            extra.push("--load");
        }
        build_with(t.path(), "pipe-it/derived:v1", "linux/amd64", &extra)
    };
    let from_engine = derive("docker:pipe-it/base:v1-amd64", "d1", true);
    let from_tar = derive("saved.tar", "d2", false);
    let from_layout = derive("base", "d3", false);
    assert_eq!(from_engine["digest"], from_tar["digest"]);
    // The base's layer is the same content whichever way it came (the engine's export
    // recompressed by pipe gives the same bytes as pipe's own layer).
    assert_eq!(
        from_engine["platforms"][0]["layers"][0]["digest"],
        base["platforms"][0]["layers"][0]["digest"]
    );
    assert_eq!(
        from_layout["platforms"][0]["layers"][0],
        base["platforms"][0]["layers"][0]
    );
    let out = sh(Command::new("docker").args(["run", "--rm", "pipe-it/derived:v1-amd64"]));
    assert_eq!(out, "from the derived layer\n");
    let path = sh(Command::new("docker").args([
        "run",
        "--rm",
        "pipe-it/derived:v1-amd64",
        "sh",
        "-c",
        "echo $PATH",
    ]));
    assert_eq!(path.trim(), "/bin");
    let _ = Command::new("docker")
        .args([
            "rmi",
            "-f",
            "pipe-it/derived:v1",
            "pipe-it/derived:v1-amd64",
            "pipe-it/base:v1",
            "pipe-it/base:v1-amd64",
        ])
        .output();
}
