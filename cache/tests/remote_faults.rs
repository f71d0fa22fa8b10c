//! A remote that fails must cost a warning and a miss, never bad data: HTTP 500s, a server
//! that never answers, a refused connection, a poisoned blob, an entry for another key and
//! garbage. A tiny HTTP server on 127.0.0.1 plays each part.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipe_cache::remote::{self, RemoteConfig};
use pipe_cache::store::{LocalStore, StoreOptions};
use pipe_cache::{Cache, EntryKey, Lookup, Manifest, MissReason, RemoteMode, Source};

#[derive(Clone)]
enum Mode {
    /// Every request gets HTTP 500.
    Error500,
    /// Connections are accepted and never answered.
    Hang,
    /// GETs are served from the map (path → body); PUTs store into it.
    Serve(Arc<Mutex<HashMap<String, Vec<u8>>>>),
}

struct FakeServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mode: Mode) -> FakeServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let requests = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, s) = (requests.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            if s.load(Ordering::Relaxed) {
                break;
            }
            let Ok(conn) = conn else { continue };
            match &mode {
                Mode::Hang => {
                    r.fetch_add(1, Ordering::Relaxed);
                    held.push(conn);
                }
                m => {
                    let m = m.clone();
                    let r = r.clone();
                    std::thread::spawn(move || handle(conn, &m, &r));
                }
            }
        }
    });
    FakeServer {
        port,
        requests,
        stop,
    }
}

fn handle(conn: TcpStream, mode: &Mode, count: &AtomicUsize) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        count.fetch_add(1, Ordering::Relaxed);
        let (status, payload) = match mode {
            Mode::Error500 => ("500 Internal Server Error", Vec::new()),
            Mode::Hang => return,
            Mode::Serve(map) => {
                let mut map = map.lock().expect("lock");
                match method.as_str() {
                    "PUT" => {
                        map.insert(path, body);
                        ("201 Created", Vec::new())
                    }
                    "GET" => match map.get(&path) {
                        Some(b) => ("200 OK", b.clone()),
                        None => ("404 Not Found", Vec::new()),
                    },
                    "HEAD" => match map.get(&path) {
                        Some(_) => ("200 OK", Vec::new()),
                        None => ("404 Not Found", Vec::new()),
                    },
                    _ => ("405 Method Not Allowed", Vec::new()),
                }
            }
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
            if method == "HEAD" { 0 } else { payload.len() }
        );
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method != "HEAD" && conn.write_all(&payload).is_err() {
            return;
        }
    }
}

fn cache_for(dir: &std::path::Path, port: u16, timeout: Duration) -> Cache {
    let store = LocalStore::open(
        dir,
        StoreOptions {
            fsync: false,
            inline_max: 8,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    let mut cfg = RemoteConfig::new(&format!("http://127.0.0.1:{port}/c"));
    cfg.timeout = timeout;
    cfg.retries = 2;
    Cache::new(store).with_remote(remote::open(&cfg).expect("remote"), RemoteMode::ReadWrite)
}

fn key() -> EntryKey {
    EntryKey::new("step", "k1")
}

fn is_remote_miss(l: &Lookup) -> bool {
    matches!(l, Lookup::Miss { reasons } if reasons.iter().any(|r| matches!(r, MissReason::Remote { .. })))
}

#[test]
fn http_500s_are_retried_then_a_miss_and_the_remote_is_dropped() {
    let server = serve(Mode::Error500);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = cache_for(dir.path(), server.port, Duration::from_secs(2));
    for _ in 0..3 {
        assert!(is_remote_miss(&cache.lookup(&key())));
    }
    assert_eq!(
        server.requests.load(Ordering::Relaxed),
        9,
        "3 lookups x 3 attempts"
    );
    let w = cache.take_warnings();
    assert!(w[0].contains("HTTP 500"), "{w:?}");
    assert!(w[2].contains("not using the remote cache"), "{w:?}");
    // Disabled now: a plain miss, no more requests.
    assert_eq!(
        cache.lookup(&key()),
        Lookup::Miss {
            reasons: vec![MissReason::NotFound]
        }
    );
    assert_eq!(server.requests.load(Ordering::Relaxed), 9);
    // Saving still works locally.
    let out = cache.save_with(&key(), |b| {
        b.add_bytes("f", 0o644, b"content")?;
        Ok(())
    });
    assert!(out.local && !out.remote);
}

#[test]
fn a_hanging_remote_costs_one_timeout() {
    let server = serve(Mode::Hang);
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = cache_for(dir.path(), server.port, Duration::from_millis(300));
    let t = Instant::now();
    assert!(is_remote_miss(&cache.lookup(&key())));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(cache.take_warnings()[0].contains("timed out"));
    let t = Instant::now();
    let out = cache.save_with(&key(), |b| {
        b.add_bytes("f", 0o644, b"0123456789")?;
        Ok(())
    });
    assert!(out.local && !out.remote, "{out:?}");
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "the dead remote is not retried"
    );
    assert_eq!(server.requests.load(Ordering::Relaxed), 1);
}

#[test]
fn a_refused_connection_is_a_miss() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = cache_for(dir.path(), port, Duration::from_secs(1));
    assert!(is_remote_miss(&cache.lookup(&key())));
    assert!(matches!(cache.lookup(&key()), Lookup::Miss { .. }));
}

/// Builds an entry with one CAS blob in a scratch store and returns its manifest bytes and
/// the blob.
fn entry_with_blob(dir: &std::path::Path, key: &EntryKey) -> (Manifest, Vec<u8>) {
    let store = LocalStore::open(
        dir,
        StoreOptions {
            fsync: false,
            inline_max: 8,
            ..StoreOptions::default()
        },
    )
    .expect("open");
    let data = b"the real output, longer than eight bytes".to_vec();
    let mut b = store.builder(key).expect("builder");
    b.add_bytes("out.bin", 0o644, &data).expect("add");
    (b.finish(), data)
}

#[test]
fn remote_round_trip_and_poisoned_blobs_are_rejected() {
    let map = Arc::new(Mutex::new(HashMap::new()));
    let server = serve(Mode::Serve(map.clone()));
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, data) = entry_with_blob(&dir.path().join("scratch"), &key());
    let blob = m.cas_blobs().next().expect("blob").digest;
    let ac = format!("/c/ac/{}", key().digest().hex());
    let cas = format!("/c/cas/{}", blob.hex());

    // The honest case first.
    map.lock().expect("lock").insert(ac.clone(), m.encode());
    map.lock().expect("lock").insert(cas.clone(), data.clone());
    let good = cache_for(
        &dir.path().join("good"),
        server.port,
        Duration::from_secs(2),
    );
    assert!(matches!(
        good.lookup(&key()),
        Lookup::Hit {
            source: Source::Remote,
            ..
        }
    ));
    assert_eq!(
        good.local().read_blob(&blob).expect("read"),
        Some(data.clone())
    );

    // A blob whose bytes do not hash to its name.
    map.lock()
        .expect("lock")
        .insert(cas.clone(), b"evil bytes instead of the output".to_vec());
    let victim = cache_for(
        &dir.path().join("victim"),
        server.port,
        Duration::from_secs(2),
    );
    assert!(is_remote_miss(&victim.lookup(&key())));
    assert!(!victim.local().has_blob(&blob));
    assert!(victim.local().entries().expect("entries").is_empty());
    assert!(victim.take_warnings()[0].contains("rejecting the entry"));

    // An entry stored under this key's name but made for another key.
    let (other, _) = entry_with_blob(&dir.path().join("scratch2"), &EntryKey::new("step", "k2"));
    map.lock().expect("lock").insert(cas, data);
    map.lock().expect("lock").insert(ac.clone(), other.encode());
    let c = cache_for(&dir.path().join("c3"), server.port, Duration::from_secs(2));
    assert!(is_remote_miss(&c.lookup(&key())));
    assert!(c.take_warnings()[0].contains("another key"));

    // Garbage and a tampered manifest (checksum no longer matches).
    let mut tampered = m.encode();
    let n = tampered.len();
    tampered[n - 5] ^= 1;
    for bad in [b"not a manifest".to_vec(), tampered] {
        map.lock().expect("lock").insert(ac.clone(), bad);
        let c = cache_for(&dir.path().join("c4"), server.port, Duration::from_secs(2));
        assert!(is_remote_miss(&c.lookup(&key())));
        assert!(c.take_warnings()[0].contains("bad entry"));
    }
}

#[test]
fn saves_upload_blobs_then_the_entry() {
    let map = Arc::new(Mutex::new(HashMap::new()));
    let server = serve(Mode::Serve(map.clone()));
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = cache_for(&dir.path().join("w"), server.port, Duration::from_secs(2));
    let out = cache.save_with(&key(), |b| {
        b.add_bytes("big", 0o644, &[1u8; 5000])?;
        b.add_bytes("small", 0o644, b"tiny")?;
        Ok(())
    });
    assert!(out.local && out.remote, "{out:?}");
    assert_eq!(out.uploaded_blobs, 1);
    let paths: Vec<String> = map.lock().expect("lock").keys().cloned().collect();
    assert!(paths.iter().any(|p| p.starts_with("/c/cas/")), "{paths:?}");
    assert!(paths.contains(&format!("/c/ac/{}", key().digest().hex())));
    // Saving again uploads no blob (HEAD finds it).
    let out = cache.save_with(&key(), |b| {
        b.add_bytes("big", 0o644, &[1u8; 5000])?;
        Ok(())
    });
    assert_eq!(out.uploaded_blobs, 0);
    assert!(server.requests.load(Ordering::Relaxed) >= 4);
}
