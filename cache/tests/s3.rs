//! The S3 backend against a real S3-compatible server on 127.0.0.1 (`moto_server` from
//! PyPI: `pip install 'moto[server]'`). Built only with `--features s3`; skips without
//! `moto_server` locally and fails when `CI=true`.
#![cfg(feature = "s3")]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipe_cache::remote::{self, Body, Kind, RemoteConfig};
use pipe_cache::store::{LocalStore, StoreOptions};
use pipe_cache::{Cache, EntryKey, Lookup, RemoteMode, Source};

struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let m = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Create the bucket (moto accepts unsigned requests).
            let ok = ureq::put(&format!("http://127.0.0.1:{port}/pipe-cache"))
                .send_empty()
                .is_ok();
            if ok {
                return Some(m);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn cache(dir: &std::path::Path, port: u16, mode: RemoteMode) -> Cache {
    let store = LocalStore::open(
        dir,
        StoreOptions {
            fsync: false,
            inline_max: 8,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    let mut cfg = RemoteConfig::new("s3://pipe-cache/ci");
    cfg.s3_endpoint = Some(format!("http://127.0.0.1:{port}"));
    cfg.s3_credentials = Some(("testing".into(), "testing".into()));
    cfg.timeout = Duration::from_secs(5);
    Cache::new(store).with_remote(remote::open(&cfg).expect("s3 remote"), mode)
}

#[test]
fn s3_round_trip_and_poisoned_blob() {
    let moto = start_moto();
    if moto.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("moto_server is required when CI=true (pip install 'moto[server]')");
        }
        eprintln!("skipping: moto_server is not available");
        return;
    }
    let Some(moto) = moto else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let key = EntryKey::new("step", &"ef".repeat(32));
    let big = vec![7u8; (9 << 20) + 3];

    let writer = cache(&dir.path().join("w"), moto.port, RemoteMode::ReadWrite);
    let out = writer.save_with(&key, |b| {
        b.add_bytes("out/big.bin", 0o644, &big)?;
        b.add_bytes("out/small", 0o644, b"tiny")?;
        b.attach("log", b"hello from s3\n")?;
        Ok(())
    });
    assert!(out.local && out.remote, "{out:?}");
    assert_eq!(out.uploaded_blobs, 2, "big.bin and the log");

    let reader = cache(&dir.path().join("r"), moto.port, RemoteMode::ReadOnly);
    let hit = reader.lookup(&key);
    let Lookup::Hit { manifest, source } = hit else {
        panic!("expected a hit: {hit:?} {:?}", reader.take_warnings());
    };
    assert_eq!(source, Source::Remote);
    let dest = dir.path().join("dest");
    reader.restore(&manifest, &dest).expect("restore");
    assert_eq!(std::fs::read(dest.join("out/big.bin")).expect("read"), big);
    assert_eq!(
        reader
            .local()
            .read_attachment(&manifest, "log")
            .expect("log"),
        Some(b"hello from s3\n".to_vec())
    );

    // Poison the log blob on the server: a fresh reader rejects the entry.
    let log = manifest.attachment("log").expect("log").blob.digest;
    // The raw backend does not check what it uploads: it plays the attacker here.
    let mut cfg = RemoteConfig::new("s3://pipe-cache/ci");
    cfg.s3_endpoint = Some(format!("http://127.0.0.1:{}", moto.port));
    cfg.s3_credentials = Some(("testing".into(), "testing".into()));
    remote::open(&cfg)
        .expect("remote")
        .put(Kind::Cas, &log, Body::Bytes(b"forged log"))
        .expect("poison");
    let victim = cache(&dir.path().join("v"), moto.port, RemoteMode::ReadOnly);
    assert!(matches!(victim.lookup(&key), Lookup::Miss { .. }));
    assert!(!victim.local().has_blob(&log));
    assert!(
        victim
            .take_warnings()
            .iter()
            .any(|w| w.contains("rejecting the entry"))
    );
}
