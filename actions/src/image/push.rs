//! Pushing a layout to a registry with the OCI distribution API (ureq, blocking): blobs first
//! (a `HEAD` skips those the registry has), then each platform's manifest by digest, then the
//! index by tag, so the registry never sees a manifest whose parts it lacks. Anonymous, Basic
//! and Bearer-token auth (the `WWW-Authenticate` challenge decides); plain HTTP only for
//! registries listed as insecure; transient failures (5xx, 429, broken connections) are
//! retried with backoff. Every blob is re-hashed while it is sent (a mismatch aborts the
//! upload before its last byte), and the registry's `Docker-Content-Digest` must equal ours.

use std::fs::File;
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;

use super::ImageError;
use super::layout::{self, Descriptor, Index, Layout, Manifest};

/// `HOST[:PORT]/REPOSITORY[:TAG]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `127.0.0.1:5000`, `registry.example.com`.
    pub registry: String,
    /// `team/app`.
    pub repository: String,
    /// `v1` (default `latest`).
    pub tag: String,
}

impl Reference {
    /// Parses a push target; the registry host is required (pipe never guesses Docker Hub).
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        let bad = |why: &str| {
            ImageError::Input(format!(
                "push target `{s}` {why} (expected `HOST[:PORT]/REPOSITORY[:TAG]`, e.g. `127.0.0.1:5000/team/app:v1`)"
            ))
        };
        let (host, rest) = s
            .split_once('/')
            .ok_or_else(|| bad("has no registry host"))?;
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad("has no registry host"));
        }
        let (repo, tag) = super::split_name_tag(rest);
        super::check_name_tag(&repo, &tag).map_err(|e| bad(&format!("is invalid: {e}")))?;
        Ok(Reference {
            registry: host.to_owned(),
            repository: repo,
            tag,
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

/// How to reach the registry.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Registries (`host:port`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Basic credentials (also used to get a Bearer token).
    pub credentials: Option<(String, String)>,
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// The first backoff (doubled each retry).
    pub backoff: Duration,
    /// Connect/response timeout.
    pub timeout: Duration,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            insecure: Vec::new(),
            credentials: None,
            retries: 3,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
        }
    }
}

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// `HOST/REPO:TAG`.
    pub reference: String,
    /// The index digest the registry reported for the tag.
    pub digest: String,
    /// Blobs sent.
    pub blobs_uploaded: usize,
    /// Blobs the registry already had.
    pub blobs_skipped: usize,
    /// Bytes of blobs sent.
    pub bytes_uploaded: u64,
    /// Manifests and indexes sent.
    pub manifests: usize,
    /// Attempts that were retried.
    pub retried: usize,
}

/// What one attempt gave.
enum Attempt<T> {
    Done(T),
    /// Worth another try.
    Transient(String),
}

type Resp = ureq::http::Response<ureq::Body>;

struct Client {
    agent: ureq::Agent,
    base: String,
    reference: Reference,
    opts: PushOptions,
    auth: Mutex<Option<String>>,
    retried: Mutex<usize>,
}

/// A request body.
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Blob(&'a Layout, &'a Descriptor),
}

fn registry_errors(text: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let codes: Vec<String> = v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["code"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if codes.is_empty() {
        text.chars().take(200).collect::<String>().trim().to_owned()
    } else {
        codes.join("; ")
    }
}

fn header(r: &Resp, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Parses `Scheme k="v", k2="v2"`.
fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.push((k, v.to_owned()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_ascii_lowercase(), params)
}

impl Client {
    fn new(reference: &Reference, opts: &PushOptions) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(opts.timeout))
            .timeout_recv_response(Some(opts.timeout))
            .timeout_send_request(Some(opts.timeout))
            .timeout_send_body(Some(Duration::from_secs(600)))
            .timeout_recv_body(Some(Duration::from_secs(600)))
            .max_redirects(0)
            .user_agent(concat!("pipe/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let scheme = if opts.insecure.iter().any(|h| h == &reference.registry) {
            "http"
        } else {
            "https"
        };
        Client {
            agent,
            base: format!("{scheme}://{}", reference.registry),
            reference: reference.clone(),
            opts: opts.clone(),
            auth: Mutex::new(None),
            retried: Mutex::new(0),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.reference.repository)
    }

    /// Resolves a `Location` header against the registry.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// One request, answering an auth challenge once.
    fn request(
        &self,
        method: &str,
        url: &str,
        content_type: Option<&str>,
        body: &Body<'_>,
    ) -> Result<Attempt<Resp>, ImageError> {
        let mut challenged = false;
        loop {
            let mut b = ureq::http::Request::builder().method(method).uri(url);
            if let Some(a) = self.auth.lock().ok().and_then(|g| g.clone()) {
                b = b.header("Authorization", a);
            }
            if let Some(ct) = content_type {
                b = b.header("Content-Type", ct);
            }
            let sent = match body {
                Body::Empty => b
                    .header("Content-Length", "0")
                    .body(())
                    .map_err(|e| ImageError::Registry(e.to_string()))
                    .map(|r| self.agent.run(r)),
                Body::Bytes(bytes) => b
                    .body(*bytes)
                    .map_err(|e| ImageError::Registry(e.to_string()))
                    .map(|r| self.agent.run(r)),
                Body::Blob(l, d) => {
                    let path = l.blob_path(&d.digest)?;
                    let f = File::open(&path).map_err(|e| {
                        ImageError::Corrupt(format!("blob `{}` is missing: {e}", d.digest))
                    })?;
                    let mut r = VerifyingReader {
                        inner: Some(layout::HashingReader::new(f.take(d.size + 1))),
                        desc: d,
                        left: d.size,
                        failed: None,
                    };
                    let res = b
                        .header("Content-Length", d.size.to_string())
                        .header("Content-Type", "application/octet-stream")
                        .body(ureq::SendBody::from_reader(&mut r))
                        .map_err(|e| ImageError::Registry(e.to_string()))
                        .map(|req| self.agent.run(req));
                    if let Some(why) = r.failed {
                        return Err(ImageError::Corrupt(why));
                    }
                    res
                }
            }?;
            let resp = match sent {
                Ok(r) => r,
                Err(e) => return Ok(Attempt::Transient(format!("{method} {url}: {e}"))),
            };
            let status = resp.status().as_u16();
            if status == 401 && !challenged {
                challenged = true;
                let Some(ch) = header(&resp, "WWW-Authenticate") else {
                    return Err(ImageError::Registry(format!(
                        "`{}` answered 401 without a challenge",
                        self.reference.registry
                    )));
                };
                self.authenticate(&ch)?;
                continue;
            }
            if status == 401 || status == 403 {
                let mut resp = resp;
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                let how = if self.opts.credentials.is_some() {
                    "the credentials were refused"
                } else {
                    "it needs credentials (`--username` with `--password-stdin`, or `PIPE_REGISTRY_USERNAME`/`PIPE_REGISTRY_PASSWORD`)"
                };
                return Err(ImageError::Registry(format!(
                    "`{}` refused {method} {} ({status}): {how}; {}",
                    self.reference.registry,
                    url.split("/v2/").nth(1).unwrap_or(url),
                    registry_errors(&text)
                )));
            }
            if status >= 500 || status == 429 {
                return Ok(Attempt::Transient(format!("{method} {url}: HTTP {status}")));
            }
            return Ok(Attempt::Done(resp));
        }
    }

    /// Answers a `WWW-Authenticate` challenge: Basic sends the credentials; Bearer fetches a
    /// token from the realm (with the credentials, if any).
    fn authenticate(&self, challenge: &str) -> Result<(), ImageError> {
        let (scheme, params) = parse_challenge(challenge);
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let basic = self.opts.credentials.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let value = match scheme.as_str() {
            "basic" => basic.ok_or_else(|| {
                ImageError::Registry(format!(
                    "`{}` needs credentials (401, Basic realm {:?}): give `--username` with `--password-stdin`, or `PIPE_REGISTRY_USERNAME`/`PIPE_REGISTRY_PASSWORD`",
                    self.reference.registry,
                    param("realm").unwrap_or_default()
                ))
            })?,
            "bearer" => {
                let realm = param("realm").ok_or_else(|| {
                    ImageError::Registry("the Bearer challenge has no `realm`".to_owned())
                })?;
                let scope = param("scope").unwrap_or_else(|| {
                    format!("repository:{}:pull,push", self.reference.repository)
                });
                let mut url = format!("{realm}?scope={scope}");
                if let Some(s) = param("service") {
                    url.push_str(&format!("&service={s}"));
                }
                let mut req = self.agent.get(&url);
                if let Some(b) = &basic {
                    req = req.header("Authorization", b);
                }
                let mut resp = req.call().map_err(|e| {
                    ImageError::Registry(format!("the token server `{realm}` failed: {e}"))
                })?;
                let status = resp.status().as_u16();
                let text = resp.body_mut().read_to_string().unwrap_or_default();
                if status != 200 {
                    return Err(ImageError::Registry(format!(
                        "the token server `{realm}` answered {status}: {}",
                        registry_errors(&text)
                    )));
                }
                let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    ImageError::Registry(format!("the token server `{realm}` sent no JSON: {e}"))
                })?;
                let token = v["token"]
                    .as_str()
                    .or_else(|| v["access_token"].as_str())
                    .ok_or_else(|| {
                        ImageError::Registry(format!("the token server `{realm}` sent no token"))
                    })?;
                format!("Bearer {token}")
            }
            other => {
                return Err(ImageError::Registry(format!(
                    "`{}` asks for unsupported auth scheme `{other}`",
                    self.reference.registry
                )));
            }
        };
        if let Ok(mut g) = self.auth.lock() {
            *g = Some(value);
        }
        Ok(())
    }

    /// Runs `op` until it is done or out of retries.
    fn retry<T>(
        &self,
        what: &str,
        mut op: impl FnMut() -> Result<Attempt<T>, ImageError>,
    ) -> Result<T, ImageError> {
        let mut last = String::new();
        for n in 0..=self.opts.retries {
            if n > 0 {
                if let Ok(mut g) = self.retried.lock() {
                    *g += 1;
                }
                std::thread::sleep(self.opts.backoff * (1 << (n - 1).min(5)));
            }
            match op()? {
                Attempt::Done(t) => return Ok(t),
                Attempt::Transient(why) => last = why,
            }
        }
        Err(ImageError::Registry(format!(
            "{what} failed after {} attempts: {last}",
            self.opts.retries + 1
        )))
    }

    fn blob_exists(&self, d: &Descriptor) -> Result<bool, ImageError> {
        let url = self.url(&format!("blobs/{}", d.digest));
        self.retry(&format!("checking blob `{}`", d.digest), || {
            Ok(match self.request("HEAD", &url, None, &Body::Empty)? {
                Attempt::Done(r) => match r.status().as_u16() {
                    200 => Attempt::Done(true),
                    404 => Attempt::Done(false),
                    s => {
                        return Err(ImageError::Registry(format!(
                            "HEAD blob `{}` answered {s}",
                            d.digest
                        )));
                    }
                },
                Attempt::Transient(w) => Attempt::Transient(w),
            })
        })
    }

    fn upload(&self, l: &Layout, d: &Descriptor) -> Result<(), ImageError> {
        let start = self.url("blobs/uploads/");
        self.retry(&format!("uploading blob `{}`", d.digest), || {
            let mut r = match self.request("POST", &start, None, &Body::Empty)? {
                Attempt::Done(r) => r,
                Attempt::Transient(w) => return Ok(Attempt::Transient(w)),
            };
            if r.status().as_u16() != 202 {
                let text = r.body_mut().read_to_string().unwrap_or_default();
                return Err(ImageError::Registry(format!(
                    "starting the upload of `{}` answered {}: {}",
                    d.digest,
                    r.status().as_u16(),
                    registry_errors(&text)
                )));
            }
            let Some(loc) = header(&r, "Location") else {
                return Err(ImageError::Registry(
                    "the registry gave no upload `Location`".to_owned(),
                ));
            };
            let loc = self.absolute(&loc);
            let sep = if loc.contains('?') { '&' } else { '?' };
            let put = format!("{loc}{sep}digest={}", d.digest);
            let mut r = match self.request("PUT", &put, None, &Body::Blob(l, d))? {
                Attempt::Done(r) => r,
                Attempt::Transient(w) => return Ok(Attempt::Transient(w)),
            };
            match r.status().as_u16() {
                201 | 204 => Ok(Attempt::Done(())),
                s => {
                    let text = r.body_mut().read_to_string().unwrap_or_default();
                    Err(ImageError::Registry(format!(
                        "uploading blob `{}` answered {s}: {}",
                        d.digest,
                        registry_errors(&text)
                    )))
                }
            }
        })
    }

    fn put_manifest(
        &self,
        reference: &str,
        d: &Descriptor,
        bytes: &[u8],
    ) -> Result<(), ImageError> {
        let url = self.url(&format!("manifests/{reference}"));
        self.retry(&format!("pushing manifest `{}`", d.digest), || {
            let mut r = match self.request("PUT", &url, Some(&d.media_type), &Body::Bytes(bytes))? {
                Attempt::Done(r) => r,
                Attempt::Transient(w) => return Ok(Attempt::Transient(w)),
            };
            let s = r.status().as_u16();
            if s != 201 && s != 200 {
                let text = r.body_mut().read_to_string().unwrap_or_default();
                return Err(ImageError::Registry(format!(
                    "pushing manifest `{}` as `{reference}` answered {s}: {}",
                    d.digest,
                    registry_errors(&text)
                )));
            }
            if let Some(got) = header(&r, "Docker-Content-Digest")
                && got != d.digest
            {
                return Err(ImageError::Registry(format!(
                    "the registry stored manifest `{}` as `{got}` (it changed the bytes)",
                    d.digest
                )));
            }
            Ok(Attempt::Done(()))
        })
    }
}

/// Re-hashes a blob while it is sent; a mismatch fails the read before the last byte goes.
struct VerifyingReader<'a> {
    inner: Option<layout::HashingReader<std::io::Take<File>>>,
    desc: &'a Descriptor,
    left: u64,
    failed: Option<String>,
}

impl Read for VerifyingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        let n = inner.read(buf)?;
        if n as u64 > self.left || (n == 0 && self.left > 0) {
            let why = format!(
                "blob `{}` does not have the {} bytes its descriptor says",
                self.desc.digest, self.desc.size
            );
            self.failed = Some(why.clone());
            return Err(std::io::Error::other(why));
        }
        self.left -= n as u64;
        if self.left == 0 && n > 0 {
            // The last chunk: check the digest before handing it over.
            if let Some(done) = self.inner.take()
                && let Err(e) = done.check(self.desc)
            {
                self.failed = Some(e.to_string());
                return Err(std::io::Error::other(e.to_string()));
            }
        }
        Ok(n)
    }
}

/// Pushes the image `index.json` names in `layout` to `target`.
pub fn push(
    layout: &Layout,
    target: &Reference,
    opts: &PushOptions,
) -> Result<PushReport, ImageError> {
    let top = layout.index_json()?;
    let [root] = top.manifests.as_slice() else {
        return Err(ImageError::Input(format!(
            "`{}` holds {} images; pipe pushes a layout with exactly one",
            layout.root().display(),
            top.manifests.len()
        )));
    };
    let root = Descriptor {
        annotations: Default::default(),
        platform: None,
        ..root.clone()
    };
    // What to send: blobs, then manifests (by digest), then the root (by tag).
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut manifests: Vec<(Descriptor, Vec<u8>)> = Vec::new();
    let root_bytes = layout.read_blob(&root)?;
    let mut add_manifest = |d: &Descriptor, bytes: &[u8]| -> Result<(), ImageError> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::Corrupt(format!("manifest `{}`: {e}", d.digest)))?;
        for b in m.layers.iter().chain([&m.config]) {
            if !blobs.iter().any(|x| x.digest == b.digest) {
                blobs.push(b.clone());
            }
        }
        Ok(())
    };
    match root.media_type.as_str() {
        layout::MT_INDEX | layout::MT_DOCKER_LIST => {
            let idx: Index = serde_json::from_slice(&root_bytes)
                .map_err(|e| ImageError::Corrupt(format!("index `{}`: {e}", root.digest)))?;
            for m in &idx.manifests {
                let bytes = layout.read_blob(m)?;
                add_manifest(m, &bytes)?;
                manifests.push((m.clone(), bytes));
            }
        }
        _ => add_manifest(&root, &root_bytes)?,
    }
    let client = Client::new(target, opts);
    let mut report = PushReport {
        reference: target.to_string(),
        ..PushReport::default()
    };
    for b in &blobs {
        super::check_cancel()?;
        if client.blob_exists(b)? {
            report.blobs_skipped += 1;
        } else {
            client.upload(layout, b)?;
            report.blobs_uploaded += 1;
            report.bytes_uploaded += b.size;
        }
    }
    for (d, bytes) in &manifests {
        client.put_manifest(&d.digest, d, bytes)?;
        report.manifests += 1;
    }
    client.put_manifest(&target.tag, &root, &root_bytes)?;
    report.manifests += 1;
    report.digest = root.digest.clone();
    report.retried = client.retried.lock().map(|g| *g).unwrap_or(0);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_need_a_host_and_default_to_latest() {
        let r = Reference::parse("127.0.0.1:5000/team/app:v1").expect("ok");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000", "team/app", "v1")
        );
        let r = Reference::parse("localhost/app").expect("ok");
        assert_eq!(r.tag, "latest");
        for bad in [
            "app:v1",
            "team/app",
            "host.io/App",
            "host.io/app:-x",
            "host.io/",
        ] {
            let e = Reference::parse(bad).expect_err(bad).to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn challenges_parse() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(
            p,
            [
                ("realm".to_owned(), "http://127.0.0.1:1/token".to_owned()),
                ("service".to_owned(), "reg".to_owned()),
                ("scope".to_owned(), "repository:a/b:pull,push".to_owned()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="pipe-test""#);
        assert_eq!((s.as_str(), p[0].1.as_str()), ("basic", "pipe-test"));
    }
}
