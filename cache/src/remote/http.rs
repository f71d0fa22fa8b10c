//! The Bazel HTTP remote-cache protocol: `GET`/`PUT`/`HEAD` on `<base>/ac/<sha256>` and
//! `<base>/cas/<sha256>`, as served by bazel-remote, nginx with WebDAV `PUT`, and S3
//! gateways. A 404 is a miss; 5xx answers and connection errors are retried with a short
//! backoff; a request that gets no answer within the timeout fails. Only the request's
//! headers are retried: once body bytes reached the caller, a failure is final.

use std::fs::File;
use std::io::{Read, Write};
use std::time::Duration;

use super::{Body, Kind, Remote, RemoteConfig, RemoteError};
use crate::digest::Digest;

/// A Bazel HTTP remote cache.
#[derive(Debug)]
pub struct HttpRemote {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    retries: u32,
}

impl HttpRemote {
    /// A client for `config.url`.
    pub fn new(config: &RemoteConfig) -> Result<Self, RemoteError> {
        let base = config.url.trim_end_matches('/').to_owned();
        if base.contains('?') || base.contains('#') {
            return Err(RemoteError::Config {
                url: config.url.clone(),
                message: "the URL must not have a query or fragment".into(),
            });
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.timeout))
            .timeout_recv_response(Some(config.timeout))
            .timeout_send_request(Some(config.timeout))
            // Bodies may be large: allow them time, but not forever.
            .timeout_send_body(Some(Duration::from_secs(600)))
            .timeout_recv_body(Some(Duration::from_secs(600)))
            .user_agent(concat!("pipe/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpRemote {
            agent,
            base,
            token: config.token.clone(),
            retries: config.retries,
        })
    }

    fn url(&self, kind: Kind, digest: &Digest) -> String {
        format!("{}/{}/{}", self.base, kind.segment(), digest.hex())
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// Runs `attempt` until it gives an answer that is not a 5xx, at most `retries + 1`
    /// times.
    fn with_retries(
        &self,
        url: &str,
        mut attempt: impl FnMut() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, RemoteError> {
        let mut last = None;
        for n in 0..=self.retries {
            if n > 0 {
                std::thread::sleep(Duration::from_millis(100 << (n - 1).min(4)));
            }
            match attempt() {
                Ok(r) if r.status().as_u16() >= 500 => {
                    last = Some(RemoteError::Status {
                        url: url.to_owned(),
                        status: r.status().as_u16(),
                    });
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    let err = map_err(url, e);
                    // A server that does not answer in time will not answer a retry either.
                    if matches!(err, RemoteError::Timeout { .. } | RemoteError::Io { .. }) {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| RemoteError::Transport {
            url: url.to_owned(),
            message: "no attempt was made".into(),
        }))
    }
}

fn map_err(url: &str, e: ureq::Error) -> RemoteError {
    match e {
        ureq::Error::Timeout(_) => RemoteError::Timeout {
            url: url.to_owned(),
        },
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => RemoteError::Timeout {
            url: url.to_owned(),
        },
        other => RemoteError::Transport {
            url: url.to_owned(),
            message: other.to_string(),
        },
    }
}

impl Remote for HttpRemote {
    fn describe(&self) -> String {
        self.base.clone()
    }

    fn get(&self, kind: Kind, digest: &Digest, out: &mut dyn Write) -> Result<bool, RemoteError> {
        let url = self.url(kind, digest);
        let resp = self.with_retries(&url, || self.auth(self.agent.get(&url)).call())?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(false),
            status => return Err(RemoteError::Status { url, status }),
        }
        let mut reader = resp.into_body().into_with_config().limit(u64::MAX).reader();
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(RemoteError::Timeout { url });
                }
                Err(e) => {
                    return Err(RemoteError::Transport {
                        url,
                        message: e.to_string(),
                    });
                }
            };
            out.write_all(&buf[..n])
                .map_err(|e| RemoteError::Transport {
                    url: url.clone(),
                    message: format!("cannot store the download: {e}"),
                })?;
        }
        Ok(true)
    }

    fn contains(&self, kind: Kind, digest: &Digest) -> Result<bool, RemoteError> {
        let url = self.url(kind, digest);
        let resp = self.with_retries(&url, || self.auth(self.agent.head(&url)).call())?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(RemoteError::Status { url, status }),
        }
    }

    fn put(&self, kind: Kind, digest: &Digest, body: Body<'_>) -> Result<(), RemoteError> {
        let url = self.url(kind, digest);
        let resp = self.with_retries(&url, || {
            let req = self.auth(self.agent.put(&url));
            match body {
                Body::Bytes(b) => req.send(b),
                Body::File(p) => match File::open(p) {
                    Ok(f) => req.send(&f),
                    Err(e) => Err(ureq::Error::Io(e)),
                },
            }
        })?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(RemoteError::Status { url, status }),
        }
    }
}
