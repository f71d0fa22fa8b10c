//! `pipe cache …` end to end, and the cache's fault tests: `kill -9` during writes,
//! concurrent writers, a full disk (tmpfs), and a real nginx WebDAV server as a Bazel HTTP
//! remote cache (bearer token, poisoned blobs, read-only mode).
//!
//! Tests that need a tool (nginx, mounting a tmpfs) skip with a message on a developer
//! machine and fail when `CI=true` (decisions.md "Tests").

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pipe_cache::remote::{self, RemoteConfig};
use pipe_cache::store::{LocalStore, StoreOptions};
use pipe_cache::{Cache, Digest, EntryKey, Lookup, RemoteMode, Source};

fn pipe(cache_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pipe"));
    c.env("PIPE_CACHE_DIR", cache_dir)
        .env("NO_COLOR", "1")
        .env_remove("PIPE_LOG")
        .env_remove("PIPE_CACHE_MAX_SIZE")
        .env_remove("PIPE_CACHE_MAX_AGE");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run pipe")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether a tool-dependent test may run; skips locally, fails in CI.
pub(crate) fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required when CI=true");
    }
    eprintln!("skipping: {what} is not available");
    false
}

#[test]
fn cache_commands_list_show_verify_gc_and_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("c");
    let o = run(pipe(&c).args(["cache", "torture", "--count", "5", "--seed", "7"]));
    assert!(o.status.success(), "{}", text(&o.stderr));

    let o = run(pipe(&c).args(["cache", "ls", "--json"]));
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v.as_array().expect("array").len(), 5);
    let o = run(pipe(&c).args(["cache", "ls"]));
    assert!(text(&o.stdout).contains("torture"), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("5 entries"), "{}", text(&o.stderr));

    let o = run(pipe(&c).args(["cache", "show", "7/3"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let shown = text(&o.stdout);
    assert!(shown.contains("key        7/3"), "{shown}");
    assert!(
        shown.contains("(inline)"),
        "small files are inlined: {shown}"
    );
    let o = run(pipe(&c).args(["cache", "show", "nope"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("no cache entry matches `nope`"));

    let o = run(pipe(&c).args(["cache", "verify"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("5 entries and 5 blobs ok"),
        "{}",
        text(&o.stderr)
    );

    // Damage one blob: verify reports it (exit 3); --repair removes it and the entry.
    let blob = first_blob(&c);
    std::fs::write(&blob, b"rotten").expect("corrupt");
    let o = run(pipe(&c).args(["cache", "verify"]));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("content hashes to"),
        "{}",
        text(&o.stdout)
    );
    let o = run(pipe(&c).args(["cache", "verify", "--repair"]));
    assert_eq!(o.status.code(), Some(0));
    let o = run(pipe(&c).args(["cache", "verify", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["entries_ok"], 4);
    assert_eq!(v["problems"].as_array().expect("problems").len(), 0);
    // The damaged entry is a miss now; the others still restore exactly.
    let o = run(pipe(&c).args(["cache", "torture", "--check"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("4 hits, 0 wrong"),
        "{}",
        text(&o.stderr)
    );

    let o = run(pipe(&c).args(["cache", "gc", "--max-size", "0", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["entries_removed"], 4, "{v}");
    assert_eq!(v["entries_kept"], 0);
    let o = run(pipe(&c).args(["cache", "gc", "--max-size", "lots"]));
    assert_eq!(o.status.code(), Some(2));

    run(pipe(&c).args(["cache", "torture", "--count", "2"]));
    let o = run(pipe(&c).args(["cache", "clear"]));
    assert!(o.status.success());
    let o = run(pipe(&c).args(["cache", "ls", "--json"]));
    assert_eq!(text(&o.stdout).trim(), "[]");
}

fn first_blob(cache_dir: &Path) -> PathBuf {
    let blobs = cache_dir.join("cas-v1/blobs");
    for fan in std::fs::read_dir(&blobs).expect("blobs").flatten() {
        if let Some(f) = std::fs::read_dir(fan.path()).expect("fan").flatten().next() {
            return f.path();
        }
    }
    panic!("no blob in {}", blobs.display());
}

#[test]
fn hash_command_prints_sha256_and_uses_the_stat_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("c");
    let t = dir.path().join("t");
    std::fs::create_dir_all(t.join("sub")).expect("mkdir");
    std::fs::write(t.join("a"), b"abc").expect("write");
    std::fs::write(t.join("sub/b"), b"").expect("write");
    // Old mtimes, so the first run's records are not "racy" and the second run reuses them.
    for f in ["a", "sub/b"] {
        std::fs::File::options()
            .write(true)
            .open(t.join(f))
            .expect("open")
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
            .expect("mtime");
    }
    let o = run(pipe(&c).args(["cache", "hash"]).arg(&t));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains(&format!("{}  644  a\n", Digest::of(b"abc").hex())),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}  644  sub/b\n", Digest::of(b"").hex())),
        "{out}"
    );
    assert!(text(&o.stderr).contains("2 hashed"), "{}", text(&o.stderr));
    let o = run(pipe(&c).args(["cache", "hash", "--summary"]).arg(&t));
    assert!(
        text(&o.stderr).contains("2 from the stat cache, 0 via git, 0 hashed"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout).lines().count(), 1);
    let o = run(pipe(&c).args(["cache", "hash"]).arg(t.join("a")));
    assert_eq!(
        text(&o.stdout),
        format!("{}  {}\n", Digest::of(b"abc").hex(), t.join("a").display())
    );
    // Hidden from help, but there.
    let o = run(pipe(&c).args(["cache", "--help"]));
    assert!(!text(&o.stdout).contains("torture"));
}

/// Starts `pipe cache torture` writers and SIGKILLs them at varied moments; afterwards the
/// store must verify clean and every hit must restore exactly the content written.
#[test]
fn kill_9_during_writes_never_leaves_a_corrupt_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("c");
    let mut killed_mid_write = 0;
    for round in 0..8u64 {
        let mut child = pipe(&c)
            .args([
                "cache", "torture", "--count", "100", "--shape", "big", "--seed",
            ])
            .arg(round.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(15 + round * 23));
        if child.try_wait().expect("wait").is_none() {
            killed_mid_write += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        killed_mid_write >= 4,
        "too few rounds were cut short: {killed_mid_write}"
    );
    let o = run(pipe(&c).args(["cache", "verify"]));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let o = run(pipe(&c).args(["cache", "torture", "--check"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let summary = text(&o.stderr);
    assert!(summary.contains(" 0 wrong"), "{summary}");
    assert!(
        !summary.starts_with("0 hits"),
        "some writes must have completed: {summary}"
    );
    // gc cleans what the dead writers left behind once it is stale; --repair at once.
    let o = run(pipe(&c).args(["cache", "verify", "--repair", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        v["problems"].as_array().expect("problems").is_empty(),
        "{v}"
    );
    assert!(
        std::fs::read_dir(c.join("cas-v1/tmp"))
            .expect("tmp")
            .next()
            .is_none()
    );
}

#[test]
fn concurrent_writers_share_one_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("c");
    // Two writers of the same keys and blobs, one of others, all at once.
    let spawn = |seed: &str| -> Child {
        pipe(&c)
            .args(["cache", "torture", "--count", "100", "--seed", seed])
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let children = [spawn("1"), spawn("1"), spawn("2")];
    for ch in children {
        let o = ch.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    let o = run(pipe(&c).args(["cache", "verify"]));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = run(pipe(&c).args(["cache", "torture", "--check"]));
    assert!(
        text(&o.stderr).contains("200 hits, 0 wrong"),
        "{}",
        text(&o.stderr)
    );
    // Identical blobs were stored once: 100 distinct 40 KB blobs per seed.
    let o = run(pipe(&c).args(["cache", "verify", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["blobs_ok"], 200, "{v}");
}

/// A tmpfs of 1 MiB: writing a bigger entry fails with ENOSPC, which `Cache::save_with`
/// turns into a warning; the store stays consistent and usable.
#[test]
fn full_disk_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("small");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !require("mounting a tmpfs (root)", mounted) {
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let store = LocalStore::open(&mnt, StoreOptions::default()).expect("open");
    let cache = Cache::new(store);
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("big"), vec![1u8; 3 << 20]).expect("write");
    std::fs::write(src.join("small"), b"fits").expect("write");
    let out = cache.save_with(&EntryKey::new("step", "big"), |b| {
        b.add_path(&src, "big")?;
        Ok(())
    });
    assert!(!out.local);
    assert!(
        out.warnings[0].contains("the disk is full"),
        "{:?}",
        out.warnings
    );
    assert!(matches!(
        cache.lookup(&EntryKey::new("step", "big")),
        Lookup::Miss { .. }
    ));
    // Still usable for what fits, and consistent.
    let out = cache.save_with(&EntryKey::new("step", "small"), |b| {
        b.add_path(&src, "small")?;
        Ok(())
    });
    assert!(out.local, "{:?}", out.warnings);
    assert!(matches!(
        cache.lookup(&EntryKey::new("step", "small")),
        Lookup::Hit { .. }
    ));
    let v = cache.local().verify(false).expect("verify");
    assert!(v.problems.is_empty(), "{v:?}");
}

/// nginx with WebDAV `PUT` on 127.0.0.1, requiring a bearer token.
pub(crate) struct Nginx {
    child: Child,
    pub(crate) port: u16,
    root: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

pub(crate) fn start_nginx(dir: &Path) -> Option<Nginx> {
    let bin = nginx_binary()?;
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let root = dir.join("www");
    std::fs::create_dir_all(root.join("cache")).ok()?;
    std::fs::create_dir_all(dir.join("tmp")).ok()?;
    // Worker processes may run as another user: let them write.
    let _ = Command::new("chmod").args(["-R", "0777"]).arg(dir).status();
    let user = if nix_is_root() { "user root;" } else { "" };
    let conf = format!(
        r#"{user}
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    client_max_body_size 0;
    location /cache/ {{
      if ($http_authorization != "Bearer s3cret") {{ return 401; }}
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:rw all:r;
    }}
  }}
}}
"#,
        dir = dir.display(),
        root = root.display(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).ok()?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let n = Nginx { child, port, root };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(n);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn remote_cache(local: &Path, url: &str, token: Option<&str>, mode: RemoteMode) -> Cache {
    let store = LocalStore::open(
        local,
        StoreOptions {
            inline_max: 16,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    let mut cfg = RemoteConfig::new(url);
    cfg.token = token.map(str::to_owned);
    cfg.timeout = Duration::from_secs(3);
    Cache::new(store).with_remote(remote::open(&cfg).expect("remote"), mode)
}

#[test]
fn nginx_webdav_remote_round_trip_token_poison_and_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_nginx(&dir.path().join("nginx"));
    if !require("nginx (apt: nginx-light)", server.is_some()) {
        return;
    }
    let Some(server) = server else { return };
    let url = format!("http://127.0.0.1:{}/cache", server.port);
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("out")).expect("mkdir");
    std::fs::write(src.join("out/lib.a"), vec![5u8; 200_000]).expect("write");
    std::fs::write(src.join("out/tiny"), b"x").expect("write");
    let key = EntryKey::new("step", &"ab".repeat(32));

    // A trusted writer saves: blobs first, then the entry.
    let writer = remote_cache(
        &dir.path().join("w"),
        &url,
        Some("s3cret"),
        RemoteMode::ReadWrite,
    );
    let out = writer.save_with(&key, |b| {
        b.add_path(&src, "out")?;
        b.attach("log", b"built lib.a\n")?;
        b.metadata(br#"{"exit":0}"#);
        Ok(())
    });
    assert!(out.local && out.remote, "{out:?}");
    assert_eq!(out.uploaded_blobs, 1);
    assert!(
        server
            .root
            .join("cache/ac")
            .join(key.digest().hex())
            .is_file()
    );

    // Another machine (empty local store) gets a verified hit from the remote.
    let reader = remote_cache(
        &dir.path().join("r"),
        &url,
        Some("s3cret"),
        RemoteMode::ReadOnly,
    );
    let hit = reader.lookup(&key);
    let Lookup::Hit { manifest, source } = hit else {
        panic!(
            "expected a remote hit: {hit:?} {:?}",
            reader.take_warnings()
        );
    };
    assert_eq!(source, Source::Remote);
    assert_eq!(manifest.metadata, br#"{"exit":0}"#);
    let dest = dir.path().join("dest");
    reader.restore(&manifest, &dest).expect("restore");
    assert_eq!(
        std::fs::read(dest.join("out/lib.a")).expect("read"),
        vec![5u8; 200_000]
    );
    assert_eq!(
        reader
            .local()
            .read_attachment(&manifest, "log")
            .expect("log"),
        Some(b"built lib.a\n".to_vec())
    );
    // Now local.
    assert!(matches!(
        reader.lookup(&key),
        Lookup::Hit {
            source: Source::Local,
            ..
        }
    ));

    // Without the token the server says 401: a warning and a miss, never an error.
    let anon = remote_cache(&dir.path().join("a"), &url, None, RemoteMode::ReadOnly);
    assert!(matches!(anon.lookup(&key), Lookup::Miss { .. }));
    assert!(anon.take_warnings()[0].contains("401"));

    // Read-only mode never uploads.
    let key2 = EntryKey::new("step", &"cd".repeat(32));
    let out = reader.save_with(&key2, |b| {
        b.add_bytes("f", 0o644, &[9u8; 1000])?;
        Ok(())
    });
    assert!(out.local && !out.remote, "{out:?}");
    assert!(
        !server
            .root
            .join("cache/ac")
            .join(key2.digest().hex())
            .exists()
    );

    // Poison the remote blob: a fresh reader rejects the entry and stores nothing of it.
    let blob = manifest.cas_blobs().next().expect("a CAS blob").digest;
    std::fs::write(
        server.root.join("cache/cas").join(blob.hex()),
        vec![6u8; 200_000],
    )
    .expect("poison");
    let victim = remote_cache(
        &dir.path().join("v"),
        &url,
        Some("s3cret"),
        RemoteMode::ReadOnly,
    );
    let r = victim.lookup(&key);
    assert!(matches!(r, Lookup::Miss { .. }), "{r:?}");
    let warnings = victim.take_warnings();
    assert!(
        warnings.iter().any(|w| w.contains("rejecting the entry")),
        "{warnings:?}"
    );
    assert!(!victim.local().has_blob(&blob));
    assert!(victim.local().entries().expect("entries").is_empty());
}
