//! Tier-0 tests of whole builds and of the push protocol against an in-process fake registry
//! that records request order and injects 401 challenges, 500s and digest errors.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::layer::LayerOptions;
use super::layout::{self, Layout};
use super::push::{self, PushOptions, Reference};
use super::*;

fn tree(root: &Path, arch: &str) {
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::write(root.join("bin/hello"), format!("#!/bin/sh\necho {arch}\n")).expect("write");
    std::fs::write(root.join("README"), "same on every platform\n").expect("write");
}

fn spec(dir: &Path, out: &str) -> BuildSpec {
    let platforms = parse_platforms(&["linux/amd64,linux/arm64".to_owned()]).expect("platforms");
    if !dir.join("src").exists() {
        for p in &platforms {
            tree(&dir.join("src").join(&p.arch), &p.arch);
        }
        // Older than the racy window, so that reuse records are kept.
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    let layers = parse_layer_spec("src/{arch}:/app", &platforms, dir).expect("layers");
    BuildSpec {
        platforms,
        layers,
        base: None,
        config: ImageConfig {
            entrypoint: Some(vec!["/app/bin/hello".to_owned()]),
            env: vec![("A".to_owned(), "1".to_owned())],
            labels: BTreeMap::from([("org.example".to_owned(), "yes".to_owned())]),
            exposed_ports: vec!["8080".to_owned()],
            workdir: Some("/app".to_owned()),
            user: Some("1000".to_owned()),
            cmd: None,
        },
        annotations: BTreeMap::from([(
            "org.opencontainers.image.source".to_owned(),
            "https://example.com/x".to_owned(),
        )]),
        name: "pipe/hello".to_owned(),
        tag: "v1".to_owned(),
        output: dir.join(out),
        archive: Some(dir.join(format!("{out}.tar"))),
        layer: LayerOptions::default(),
        reuse_dir: Some(dir.join("reuse")),
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

#[test]
fn builds_are_byte_identical_and_parse_back_with_oci_spec() {
    let t = tempfile::tempdir().expect("tmp");
    let s = spec(t.path(), "out");
    let one = build(&s).expect("build");
    assert_eq!(one.layers_written, 2);
    let first = files(&s.output);
    let first_tar = std::fs::read(t.path().join("out.tar")).expect("archive");
    // Again, into a fresh folder, without reuse records: the same bytes.
    let mut s2 = spec(t.path(), "out2");
    s2.reuse_dir = None;
    let two = build(&s2).expect("build");
    assert_eq!(one.index.digest, two.index.digest);
    assert_eq!(first, files(&s2.output));
    assert_eq!(
        first_tar,
        std::fs::read(t.path().join("out2.tar")).expect("archive")
    );
    // A rebuild into the same folder reuses both layers.
    let again = build(&s).expect("rebuild");
    assert_eq!((again.layers_written, again.layers_reused), (0, 2));
    assert_eq!(again.index.digest, one.index.digest);
    assert_eq!(first, files(&s.output));

    // oci-spec reads every document.
    let l = Layout::open(&s.output).expect("layout");
    let top =
        oci_spec::image::ImageIndex::from_file(s.output.join("index.json")).expect("index.json");
    assert_eq!(top.manifests().len(), 1);
    let d = &top.manifests()[0];
    assert_eq!(d.digest().to_string(), one.index.digest);
    assert_eq!(
        d.annotations().as_ref().expect("annotations")[layout::REF_NAME],
        "v1"
    );
    let idx =
        oci_spec::image::ImageIndex::from_reader(&l.read_blob(&one.index).expect("index")[..])
            .expect("index");
    assert_eq!(
        idx.media_type(),
        &Some(oci_spec::image::MediaType::ImageIndex)
    );
    let plats: Vec<String> = idx
        .manifests()
        .iter()
        .map(|m| {
            let p = m.platform().as_ref().expect("platform");
            format!("{}/{}", p.os(), p.architecture())
        })
        .collect();
    assert_eq!(plats, ["linux/amd64", "linux/arm64"]);
    for (m, built) in idx.manifests().iter().zip(&one.platforms) {
        assert_eq!(m.digest().to_string(), built.manifest.digest);
        let man = oci_spec::image::ImageManifest::from_reader(
            &l.read_blob(&built.manifest).expect("manifest")[..],
        )
        .expect("manifest");
        assert_eq!(man.layers().len(), 1);
        assert_eq!(
            man.layers()[0].media_type(),
            &oci_spec::image::MediaType::ImageLayerGzip
        );
        let cfg = oci_spec::image::ImageConfiguration::from_reader(
            &l.read_blob(&built.config).expect("config")[..],
        )
        .expect("config");
        assert_eq!(cfg.architecture().to_string(), built.platform.arch);
        let c = cfg.config().as_ref().expect("config");
        assert_eq!(
            c.entrypoint().as_deref(),
            Some(&["/app/bin/hello".to_owned()][..])
        );
        assert_eq!(c.env().as_deref(), Some(&["A=1".to_owned()][..]));
        assert_eq!(c.working_dir().as_deref(), Some("/app"));
        assert_eq!(c.user().as_deref(), Some("1000"));
        assert_eq!(
            c.exposed_ports().as_deref(),
            Some(&["8080/tcp".to_owned()][..])
        );
        assert_eq!(c.labels().as_ref().expect("labels")["org.example"], "yes");
        assert_eq!(cfg.rootfs().diff_ids().len(), 1);
        assert_eq!(cfg.created().as_deref(), Some("1970-01-01T00:00:00Z"));
    }
    // The docker-save side of the archive names each platform and the host's plain tag.
    let mut a = tar::Archive::new(&first_tar[..]);
    let mut names = Vec::new();
    let mut manifest_json = Vec::new();
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        if name == "manifest.json" {
            e.read_to_end(&mut manifest_json).expect("read");
        }
        names.push(name);
    }
    assert!(names.contains(&"oci-layout".to_owned()) && names.contains(&"index.json".to_owned()));
    let m: serde_json::Value = serde_json::from_slice(&manifest_json).expect("json");
    assert_eq!(
        m[0]["RepoTags"],
        serde_json::json!(["pipe/hello:v1-amd64", "pipe/hello:v1"])
    );
    assert_eq!(m[1]["RepoTags"], serde_json::json!(["pipe/hello:v1-arm64"]));
    assert_eq!(
        m[1]["Config"],
        format!("blobs/sha256/{}", one.platforms[1].config.hex())
    );
}

#[test]
fn a_change_in_one_platform_changes_only_that_manifest() {
    let t = tempfile::tempdir().expect("tmp");
    let s = spec(t.path(), "out");
    let one = build(&s).expect("build");
    std::fs::write(t.path().join("src/arm64/bin/hello"), "changed").expect("write");
    std::thread::sleep(std::time::Duration::from_millis(150));
    let two = build(&s).expect("build");
    assert_eq!((two.layers_written, two.layers_reused), (1, 1));
    assert_eq!(one.platforms[0].manifest, two.platforms[0].manifest);
    assert_ne!(one.platforms[1].manifest, two.platforms[1].manifest);
    assert_ne!(one.index.digest, two.index.digest);
    // The old arm64 layer is gone from the layout; what is left verifies.
    let l = Layout::open(&s.output).expect("layout");
    assert!(!l.has(
        &one.platforms[1].layers[0].digest,
        one.platforms[1].layers[0].size
    ));
    assert_eq!(l.verify().expect("verify").len(), two.blobs().len());
}

#[test]
fn verify_finds_corrupt_and_resized_blobs() {
    let t = tempfile::tempdir().expect("tmp");
    let s = spec(t.path(), "out");
    let built = build(&s).expect("build");
    let l = Layout::open(&s.output).expect("layout");
    l.verify().expect("clean");
    let layer = &built.platforms[1].layers[0];
    let p = l.blob_path(&layer.digest).expect("path");
    let good = std::fs::read(&p).expect("read");
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x40;
    std::fs::write(&p, &bad).expect("write");
    let e = l.verify().expect_err("corrupt").to_string();
    assert!(e.contains(&layer.digest) && e.contains("is corrupt"), "{e}");
    // Writing the archive re-hashes too.
    let e = layout::write_archive(
        &l,
        &built.blobs(),
        &built.docker_entries(),
        &t.path().join("x.tar"),
    )
    .expect_err("corrupt")
    .to_string();
    assert!(
        e.contains("corrupt") || e.contains("cannot be archived"),
        "{e}"
    );
    assert!(!t.path().join("x.tar").exists());
    // A same-size corruption is repaired by the next build too: the reuse record no longer
    // matches the blob file.
    build(&s).expect("rebuild");
    l.verify().expect("repaired in place");
    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(&p, &longer).expect("write");
    let e = l.verify().expect_err("size").to_string();
    assert!(e.contains("its descriptor says"), "{e}");
    // The next build repairs the layout (the reuse record does not trust a wrong size).
    std::fs::write(&p, &longer).expect("write");
    build(&s).expect("rebuild");
    l.verify().expect("repaired");
}

#[test]
fn a_base_image_contributes_its_layers_and_config() {
    let t = tempfile::tempdir().expect("tmp");
    let mut base = spec(t.path(), "base");
    base.config.cmd = Some(vec!["base-cmd".to_owned()]);
    base.config.entrypoint = None;
    base.config.env = vec![
        ("PATH".to_owned(), "/bin".to_owned()),
        ("A".to_owned(), "0".to_owned()),
    ];
    let b = build(&base).expect("base");
    std::fs::create_dir_all(t.path().join("extra")).expect("mkdir");
    std::fs::write(t.path().join("extra/x"), "x").expect("write");
    let platforms = base.platforms.clone();
    let mut s = spec(t.path(), "derived");
    s.layers = parse_layer_spec("extra:/opt", &platforms, t.path()).expect("layers");
    s.base = Some(t.path().join("base.tar"));
    s.config = ImageConfig {
        env: vec![("A".to_owned(), "2".to_owned())],
        ..ImageConfig::default()
    };
    let d = build(&s).expect("derived");
    let l = Layout::open(&s.output).expect("layout");
    l.verify().expect("verify");
    for (bp, dp) in b.platforms.iter().zip(&d.platforms) {
        assert_eq!(dp.layers.len(), 2);
        assert_eq!(dp.layers[0].digest, bp.layers[0].digest);
        let cfg: serde_json::Value =
            serde_json::from_slice(&l.read_blob(&dp.config).expect("config")).expect("json");
        assert_eq!(
            cfg["config"]["Env"],
            serde_json::json!(["PATH=/bin", "A=2"])
        );
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["base-cmd"]));
        assert_eq!(cfg["rootfs"]["diff_ids"].as_array().expect("ids").len(), 2);
        assert_eq!(cfg["history"].as_array().expect("history").len(), 2);
    }
    // From the folder as well as the tar; and a platform the base lacks is named.
    s.base = Some(t.path().join("base"));
    assert_eq!(build(&s).expect("derived").index.digest, d.index.digest);
    s.platforms
        .push(Platform::parse("linux/arm/v7").expect("p"));
    let e = build(&s).expect_err("no arm").to_string();
    assert!(e.contains("has no manifest for `linux/arm/v7`"), "{e}");
}

#[test]
fn bad_specs_are_input_errors() {
    let t = tempfile::tempdir().expect("tmp");
    let ps = parse_platforms(&["linux/amd64".to_owned()]).expect("p");
    let e = parse_layer_spec("linux/arm64=x:/y", &ps, t.path()).expect_err("platform");
    assert!(e.to_string().contains("not one of the platforms"), "{e}");
    assert_eq!(e.exit_code(), 2);
    let e = parse_layer_spec("x:/a/../b", &ps, t.path()).expect_err("dotdot");
    assert!(e.to_string().contains("`..`"), "{e}");
    assert!(parse_platforms(&["linux/amd64, linux/amd64".to_owned()]).is_err());
    assert!(parse_platforms(&[String::new()]).is_err());
    let mut s = spec(t.path(), "out");
    s.layers[1].1.src = t.path().join("missing");
    let e = build(&s).expect_err("missing");
    assert!(e.to_string().contains("does not exist"), "{e}");
    let mut s = spec(t.path(), "out");
    s.layers.truncate(1);
    let e = build(&s).expect_err("no layer");
    assert!(
        e.to_string()
            .contains("no layer for platform `linux/arm64`"),
        "{e}"
    );
    let mut s = spec(t.path(), "src");
    s.output = t.path().join("src");
    let e = build(&s).expect_err("not a layout");
    assert!(
        e.to_string().contains("not empty and not an OCI layout"),
        "{e}"
    );
    assert!(check_name_tag("Pipe/x", "v1").is_err());
    assert!(check_name_tag("pipe/x", ".v1").is_err());
    assert_eq!(
        parse_argv(r#"["a b", "c"]"#, "cmd").expect("json"),
        ["a b", "c"]
    );
    assert_eq!(parse_argv("a  b", "cmd").expect("words"), ["a", "b"]);
    assert!(parse_argv("[1]", "cmd").is_err());
    assert!(source_date_epoch(Some("x")).is_err());
    assert_eq!(source_date_epoch(Some("12")).expect("n"), 12);
}

// ---- the fake registry -------------------------------------------------------------------

#[derive(Default)]
struct State {
    blobs: HashMap<String, Vec<u8>>,
    manifests: HashMap<String, (String, Vec<u8>)>,
    log: Vec<String>,
    uploads: usize,
    /// Requests (`METHOD path-prefix`) that get one 500 each.
    fail_once: Vec<String>,
    /// Basic `user:pass` the registry demands.
    basic: Option<String>,
    /// A Bearer token the registry demands (issued by `/token` for `basic`).
    bearer: Option<String>,
    /// Answer manifest PUTs with a wrong `Docker-Content-Digest`.
    lie_about_digest: bool,
}

struct Fake {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Fake {
    fn start(state: State) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(state));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, port, &st));
            }
        });
        Fake { port, state }
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().expect("lock").log.clone()
    }

    fn reference(&self, repo: &str) -> Reference {
        Reference::parse(&format!("127.0.0.1:{}/{repo}", self.port)).expect("ref")
    }

    fn opts(&self) -> PushOptions {
        PushOptions {
            insecure: vec![format!("127.0.0.1:{}", self.port)],
            backoff: std::time::Duration::from_millis(1),
            ..PushOptions::default()
        }
    }
}

fn serve(conn: TcpStream, port: u16, st: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, extra, out) = answer(&method, &target, &headers, body, port, st);
        let mut resp = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", out.len());
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        if conn.write_all(resp.as_bytes()).is_err()
            || (method != "HEAD" && conn.write_all(&out).is_err())
        {
            return;
        }
    }
}

fn err(code: &str) -> Vec<u8> {
    format!(r#"{{"errors":[{{"code":"{code}","message":"fake"}}]}}"#).into_bytes()
}

fn answer(
    method: &str,
    target: &str,
    headers: &HashMap<String, String>,
    body: Vec<u8>,
    port: u16,
    st: &Mutex<State>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = st.lock().expect("lock");
    let path = target.split('?').next().unwrap_or("").to_owned();
    let b64 = |c: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(c)
    };
    if path == "/token" {
        let ok = s
            .basic
            .as_ref()
            .is_none_or(|c| headers.get("authorization") == Some(&format!("Basic {}", b64(c))));
        return if ok {
            let t = s.bearer.clone().unwrap_or_default();
            (200, vec![], format!(r#"{{"token":"{t}"}}"#).into_bytes())
        } else {
            (401, vec![], err("UNAUTHORIZED"))
        };
    }
    s.log.push(format!("{method} {path}"));
    let auth = headers.get("authorization").cloned().unwrap_or_default();
    if let Some(tok) = &s.bearer {
        if auth != format!("Bearer {tok}") {
            let ch = format!(
                r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:x:push""#
            );
            return (
                401,
                vec![("WWW-Authenticate".into(), ch)],
                err("UNAUTHORIZED"),
            );
        }
    } else if let Some(c) = &s.basic
        && auth != format!("Basic {}", b64(c))
    {
        return (
            401,
            vec![("WWW-Authenticate".into(), r#"Basic realm="fake""#.into())],
            err("UNAUTHORIZED"),
        );
    }
    let key = format!("{method} {path}");
    if let Some(i) = s.fail_once.iter().position(|f| key.starts_with(f.as_str())) {
        s.fail_once.remove(i);
        return (500, vec![], err("UNKNOWN"));
    }
    let rest = path.trim_start_matches("/v2/");
    if let Some((_, digest)) = rest.split_once("/blobs/sha256:") {
        let d = format!("sha256:{digest}");
        return if s.blobs.contains_key(&d) {
            (200, vec![], vec![])
        } else {
            (404, vec![], err("BLOB_UNKNOWN"))
        };
    }
    if method == "POST" && rest.ends_with("/blobs/uploads/") {
        s.uploads += 1;
        let loc = format!("{path}{}", s.uploads);
        return (202, vec![("Location".into(), loc)], vec![]);
    }
    if method == "PUT" && rest.contains("/blobs/uploads/") {
        let digest = target.split("digest=").nth(1).unwrap_or("").to_owned();
        if layout::sha256(&body) != digest {
            return (400, vec![], err("DIGEST_INVALID"));
        }
        s.blobs.insert(digest, body);
        return (201, vec![], vec![]);
    }
    if let Some((_, reference)) = rest.split_once("/manifests/") {
        if method == "GET" {
            return match s.manifests.get(reference) {
                Some((ct, b)) => (200, vec![("Content-Type".into(), ct.clone())], b.clone()),
                None => (404, vec![], err("MANIFEST_UNKNOWN")),
            };
        }
        let ct = headers.get("content-type").cloned().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut needed = Vec::new();
        if let Some(c) = v["config"]["digest"].as_str() {
            needed.push((c.to_owned(), false));
        }
        for l in v["layers"].as_array().into_iter().flatten() {
            needed.push((l["digest"].as_str().unwrap_or("").to_owned(), false));
        }
        for m in v["manifests"].as_array().into_iter().flatten() {
            needed.push((m["digest"].as_str().unwrap_or("").to_owned(), true));
        }
        for (d, is_manifest) in needed {
            let have = if is_manifest {
                s.manifests.contains_key(&d)
            } else {
                s.blobs.contains_key(&d)
            };
            if !have {
                return (400, vec![], err("MANIFEST_BLOB_UNKNOWN"));
            }
        }
        let digest = layout::sha256(&body);
        if reference.starts_with("sha256:") && reference != digest {
            return (400, vec![], err("DIGEST_INVALID"));
        }
        s.manifests
            .insert(digest.clone(), (ct.clone(), body.clone()));
        s.manifests.insert(reference.to_owned(), (ct, body));
        let told = if s.lie_about_digest {
            layout::sha256(b"something else")
        } else {
            digest
        };
        return (201, vec![("Docker-Content-Digest".into(), told)], vec![]);
    }
    if path == "/v2/" {
        return (200, vec![], vec![]);
    }
    (404, vec![], err("NAME_UNKNOWN"))
}

fn built(t: &Path) -> (Built, Layout) {
    let s = spec(t, "out");
    let b = build(&s).expect("build");
    let l = Layout::open(&s.output).expect("layout");
    (b, l)
}

#[test]
fn push_sends_blobs_then_manifests_then_the_index_and_skips_what_is_there() {
    let t = tempfile::tempdir().expect("tmp");
    let (b, l) = built(t.path());
    let fake = Fake::start(State::default());
    let r = push::push(&l, &fake.reference("team/hello:v1"), &fake.opts()).expect("push");
    assert_eq!(r.digest, b.index.digest);
    // 2 layers + 2 configs; the README is in each platform's layer, so nothing is shared.
    assert_eq!((r.blobs_uploaded, r.blobs_skipped, r.manifests), (4, 0, 3));
    let log = fake.log();
    let puts: Vec<&String> = log.iter().filter(|l| l.starts_with("PUT")).collect();
    let first_manifest = puts
        .iter()
        .position(|l| l.contains("/manifests/"))
        .expect("manifest");
    assert_eq!(first_manifest, 4, "{log:#?}");
    assert_eq!(
        puts.last().expect("last").as_str(),
        "PUT /v2/team/hello/manifests/v1"
    );
    for p in &b.platforms {
        assert!(log.contains(&format!(
            "PUT /v2/team/hello/manifests/{}",
            p.manifest.digest
        )));
    }
    // The tag serves the exact index bytes.
    let s = fake.state.lock().expect("lock");
    assert_eq!(s.manifests["v1"].1, l.read_blob(&b.index).expect("index"));
    assert_eq!(s.manifests["v1"].0, layout::MT_INDEX);
    drop(s);
    // A second push only sends manifests.
    let before = fake.log().len();
    let r = push::push(&l, &fake.reference("team/hello:v1"), &fake.opts()).expect("again");
    assert_eq!((r.blobs_uploaded, r.blobs_skipped, r.manifests), (0, 4, 3));
    let after = fake.log();
    assert!(
        after[before..]
            .iter()
            .all(|l| l.starts_with("HEAD") || l.contains("/manifests/")),
        "{:#?}",
        &after[before..]
    );
}

#[test]
fn push_retries_500s_and_answers_basic_and_bearer_challenges() {
    let t = tempfile::tempdir().expect("tmp");
    let (b, l) = built(t.path());
    let fake = Fake::start(State {
        fail_once: vec![
            "POST /v2/a/blobs/uploads/".into(),
            "PUT /v2/a/blobs/uploads/".into(),
            "PUT /v2/a/manifests/v1".into(),
        ],
        basic: Some("pipe:s3cret".into()),
        ..State::default()
    });
    // Without credentials: a clear error, nothing stored.
    let e = push::push(&l, &fake.reference("a:v1"), &fake.opts()).expect_err("401");
    assert!(e.to_string().contains("needs credentials"), "{e}");
    assert_eq!(e.exit_code(), 3);
    // Wrong ones.
    let mut o = fake.opts();
    o.credentials = Some(("pipe".into(), "wrong".into()));
    let e = push::push(&l, &fake.reference("a:v1"), &o).expect_err("401");
    assert!(e.to_string().contains("credentials were refused"), "{e}");
    o.credentials = Some(("pipe".into(), "s3cret".into()));
    let r = push::push(&l, &fake.reference("a:v1"), &o).expect("push");
    assert_eq!(r.digest, b.index.digest);
    assert_eq!(r.retried, 3);
    assert!(fake.state.lock().expect("lock").fail_once.is_empty());

    // Bearer: the token server takes the same Basic credentials.
    let fake = Fake::start(State {
        basic: Some("pipe:s3cret".into()),
        bearer: Some("t0k".into()),
        ..State::default()
    });
    let mut o = fake.opts();
    o.credentials = Some(("pipe".into(), "s3cret".into()));
    push::push(&l, &fake.reference("b:v1"), &o).expect("bearer push");
    o.credentials = Some(("pipe".into(), "nope".into()));
    let e = push::push(&l, &fake.reference("b:v1"), &o).expect_err("token refused");
    assert!(e.to_string().contains("token server"), "{e}");
}

#[test]
fn push_gives_up_after_retries_and_reports_digest_errors() {
    let t = tempfile::tempdir().expect("tmp");
    let (b, l) = built(t.path());
    let fake = Fake::start(State {
        fail_once: vec!["HEAD /v2/c/blobs/".into(); 10],
        ..State::default()
    });
    let e = push::push(&l, &fake.reference("c:v1"), &fake.opts()).expect_err("500s");
    assert!(e.to_string().contains("failed after 4 attempts"), "{e}");
    // A registry that stores other bytes than we sent.
    let fake = Fake::start(State {
        lie_about_digest: true,
        ..State::default()
    });
    let e = push::push(&l, &fake.reference("d:v1"), &fake.opts()).expect_err("digest");
    assert!(e.to_string().contains("changed the bytes"), "{e}");
    // A corrupt local blob is never uploaded whole: the registry sees no stored blob for it.
    let fake = Fake::start(State::default());
    let layer = &b.platforms[0].layers[0];
    let p = l.blob_path(&layer.digest).expect("path");
    let mut bytes = std::fs::read(&p).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&p, &bytes).expect("write");
    let e = push::push(&l, &fake.reference("e:v1"), &fake.opts()).expect_err("corrupt");
    assert!(e.to_string().contains("is corrupt"), "{e}");
    assert_eq!(e.exit_code(), 3);
    assert!(
        !fake
            .state
            .lock()
            .expect("lock")
            .blobs
            .contains_key(&layer.digest)
    );
    // An index whose manifest the registry lacks is refused by the registry, and said so.
    let e = {
        let fake = Fake::start(State::default());
        let idx = l.read_blob(&b.index).expect("index");
        let url = format!("http://127.0.0.1:{}/v2/f/manifests/v1", fake.port);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .put(&url)
            .header("Content-Type", layout::MT_INDEX)
            .send(&idx[..])
            .expect("put");
        r.body_mut().read_to_string().expect("body")
    };
    assert!(e.contains("MANIFEST_BLOB_UNKNOWN"), "{e}");
}

#[test]
fn variants_reach_the_index_and_the_config() {
    let t = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(t.path().join("src")).expect("mkdir");
    std::fs::write(t.path().join("src/f"), "x").expect("write");
    let platforms = parse_platforms(&["linux/arm/v7,linux/arm64".to_owned()]).expect("platforms");
    let layers = parse_layer_spec("src:/", &platforms, t.path()).expect("layers");
    let s = BuildSpec {
        platforms,
        layers,
        base: None,
        config: ImageConfig::default(),
        annotations: BTreeMap::new(),
        name: "pipe/v".to_owned(),
        tag: "1".to_owned(),
        output: t.path().join("out"),
        archive: None,
        layer: LayerOptions::default(),
        reuse_dir: None,
    };
    let b = build(&s).expect("build");
    assert_eq!(b.platforms[0].repo_tags, ["pipe/v:1-arm-v7"]);
    let l = Layout::open(&s.output).expect("layout");
    let idx = oci_spec::image::ImageIndex::from_reader(&l.read_blob(&b.index).expect("index")[..])
        .expect("index");
    let p = idx.manifests()[0].platform().as_ref().expect("platform");
    assert_eq!(p.variant().as_deref(), Some("v7"));
    assert_eq!(p.architecture().to_string(), "arm");
    assert_eq!(
        idx.manifests()[1].platform().as_ref().expect("p").variant(),
        &None
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&l.read_blob(&b.platforms[0].config).expect("config"))
            .expect("json");
    assert_eq!(
        (cfg["architecture"].as_str(), cfg["variant"].as_str()),
        (Some("arm"), Some("v7"))
    );
    // One layer content, two platforms: the blob is stored once.
    assert_eq!(b.platforms[0].layers[0], b.platforms[1].layers[0]);
    assert_eq!(l.verify().expect("verify").len(), 6);
}
