//! A blocking client of the server's API (ureq), for `pipe submit`, `pipe agent` and tests.
//! Transient failures (no connection, 429, 5xx) are retried with exponential backoff until a
//! deadline; every retried call is idempotent on the server.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    Artifact, ArtifactList, ArtifactUpload, ClaimRequest, ClaimResponse, CompleteRequest,
    CompleteResponse, HeartbeatResponse, RunStatus, SubmitRequest,
};

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("the server answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Its error message.
        message: String,
    },
    /// No answer (connection refused, reset, timeout).
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// A failure retrying cannot mend (TLS: an untrusted certificate; a bad URL).
    #[error("cannot talk to the server: {0}")]
    Fatal(String),
}

impl ClientError {
    /// Whether retrying may help.
    pub fn transient(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Status { status, .. } => *status == 429 || *status >= 500,
            ClientError::Fatal(_) => false,
        }
    }

    /// Whether the server refused because the lease is not held (HTTP 409).
    pub fn fenced(&self) -> bool {
        matches!(self, ClientError::Status { status: 409, .. })
    }
}

/// A server and a bearer token.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: ureq::Agent,
}

/// The HTTP agent. `PIPE_CA_CERT` names a PEM file of certificates to trust (a server with
/// its own CA) instead of the built-in web roots.
fn agent(timeout: Duration) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout));
    if let Some(path) = std::env::var_os("PIPE_CA_CERT") {
        match std::fs::read(&path) {
            Ok(pem) => {
                let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                config = config.tls_config(
                    ureq::tls::TlsConfig::builder()
                        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                        .build(),
                );
            }
            Err(e) => tracing::warn!("cannot read `PIPE_CA_CERT`: {e}"),
        }
    }
    config.build().into()
}

impl Client {
    /// A client of `base` (`http://host:port`) with `token`.
    pub fn new(base: &str, token: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: agent(Duration::from_secs(60)),
        }
    }

    /// The same server with another token (a job token).
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            base: self.base.clone(),
            token: token.to_owned(),
            http: self.http.clone(),
        }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn finish(
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, ClientError> {
        let mut resp = resp.map_err(|e| match &e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                ClientError::Fatal(e.to_string())
            }
            ureq::Error::Tls(_)
            | ureq::Error::Rustls(_)
            | ureq::Error::Pem(_)
            | ureq::Error::BadUri(_)
            | ureq::Error::Http(_) => ClientError::Fatal(e.to_string()),
            _ => ClientError::Transport(e.to_string()),
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if status >= 400 {
            let message = serde_json::from_str::<crate::api::ErrorBody>(&text)
                .map(|b| b.error)
                .unwrap_or(text);
            return Err(ClientError::Status { status, message });
        }
        Ok(text)
    }

    fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ClientError> {
        serde_json::from_str(text)
            .map_err(|e| ClientError::Transport(format!("unexpected answer: {e}")))
    }

    fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {}", self.token));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::parse(&Self::finish(req.send_json(body))?)
    }

    fn get_text(&self, path: &str) -> Result<String, ClientError> {
        Self::finish(
            self.http
                .get(format!("{}{path}", self.base))
                .header("Authorization", &format!("Bearer {}", self.token))
                .call(),
        )
    }

    /// Submits a run; `request_id` makes a retried submit return the first run.
    pub fn submit(&self, req: &SubmitRequest, request_id: &str) -> Result<RunStatus, ClientError> {
        self.post("/api/v1/runs", req, &[("Idempotency-Key", request_id)])
    }

    /// A run's status.
    pub fn run(&self, run: i64) -> Result<RunStatus, ClientError> {
        Self::parse(&self.get_text(&format!("/api/v1/runs/{run}"))?)
    }

    /// Cancels a run.
    pub fn cancel(&self, run: i64) -> Result<RunStatus, ClientError> {
        self.post(
            &format!("/api/v1/runs/{run}/cancel"),
            &serde_json::json!({}),
            &[],
        )
    }

    /// A job's stored log.
    pub fn log(&self, job: i64) -> Result<String, ClientError> {
        self.get_text(&format!("/api/v1/jobs/{job}/log"))
    }

    /// Claims jobs (long poll).
    pub fn claim(&self, req: &ClaimRequest) -> Result<ClaimResponse, ClientError> {
        self.post("/api/v1/agent/claim", req, &[])
    }

    /// Extends the lease (with the job token).
    pub fn heartbeat(&self, job: i64, attempt: i32) -> Result<HeartbeatResponse, ClientError> {
        self.post(
            &format!("/api/v1/jobs/{job}/attempts/{attempt}/heartbeat"),
            &serde_json::json!({}),
            &[],
        )
    }

    /// Appends a log chunk at its byte offset (with the job token).
    pub fn append_log(
        &self,
        job: i64,
        attempt: i32,
        offset: u64,
        data: &[u8],
    ) -> Result<(), ClientError> {
        Self::finish(
            self.http
                .put(format!(
                    "{}/api/v1/jobs/{job}/attempts/{attempt}/log?offset={offset}",
                    self.base
                ))
                .header("Authorization", &format!("Bearer {}", self.token))
                .header("Content-Type", "text/plain; charset=utf-8")
                .send(data),
        )
        .map(|_| ())
    }

    /// Stores the attempt's step summaries, Markdown (with the job token).
    pub fn put_summary(&self, job: i64, attempt: i32, markdown: &str) -> Result<(), ClientError> {
        Self::finish(
            self.http
                .put(format!(
                    "{}/api/v1/jobs/{job}/attempts/{attempt}/summary",
                    self.base
                ))
                .header("Authorization", &format!("Bearer {}", self.token))
                .header("Content-Type", "text/markdown; charset=utf-8")
                .send(markdown.as_bytes()),
        )
        .map(|_| ())
    }

    /// Stores the attempt's test, coverage and benchmark results (the `results` record of
    /// `pipe run --summary`) for the web UI and the run API (with the job token).
    pub fn put_results(
        &self,
        job: i64,
        attempt: i32,
        results: &serde_json::Value,
    ) -> Result<(), ClientError> {
        Self::finish(
            self.http
                .put(format!(
                    "{}/api/v1/jobs/{job}/attempts/{attempt}/results",
                    self.base
                ))
                .header("Authorization", &format!("Bearer {}", self.token))
                .send_json(results),
        )
        .map(|_| ())
    }

    /// Reports the attempt's result (with the job token).
    pub fn complete(
        &self,
        job: i64,
        attempt: i32,
        req: &CompleteRequest,
    ) -> Result<CompleteResponse, ClientError> {
        self.post(
            &format!("/api/v1/jobs/{job}/attempts/{attempt}/complete"),
            req,
            &[],
        )
    }
}

impl Client {
    fn error_of(
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let resp = resp.map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        if status >= 400 {
            return Err(match Self::finish(Ok(resp)) {
                Err(e) => e,
                Ok(message) => ClientError::Status { status, message },
            });
        }
        Ok(resp)
    }

    /// Uploads a file as the blob `digest` of the job's attempt (with the job token).
    pub fn put_blob(
        &self,
        job: i64,
        attempt: i32,
        digest: &str,
        file: &std::path::Path,
    ) -> Result<(), ClientError> {
        let f = std::fs::File::open(file)
            .map_err(|e| ClientError::Fatal(format!("cannot read `{}`: {e}", file.display())))?;
        Self::finish(
            self.http
                .put(format!(
                    "{}/api/v1/jobs/{job}/attempts/{attempt}/blobs/{digest}",
                    self.base
                ))
                .header("Authorization", &format!("Bearer {}", self.token))
                .header("Content-Type", "application/octet-stream")
                .send(f),
        )
        .map(|_| ())
    }

    /// Downloads the blob `digest` of one of the run's artifacts into `out`.
    pub fn get_blob(
        &self,
        job: i64,
        attempt: i32,
        digest: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, ClientError> {
        let resp = Self::error_of(
            self.http
                .get(format!(
                    "{}/api/v1/jobs/{job}/attempts/{attempt}/blobs/{digest}",
                    self.base
                ))
                .header("Authorization", &format!("Bearer {}", self.token))
                .call(),
        )?;
        let mut reader = resp.into_body().into_reader();
        std::io::copy(&mut reader, out).map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// Records an artifact whose blobs were uploaded (with the job token).
    pub fn add_artifact(
        &self,
        job: i64,
        attempt: i32,
        up: &ArtifactUpload,
    ) -> Result<Artifact, ClientError> {
        self.post(
            &format!("/api/v1/jobs/{job}/attempts/{attempt}/artifacts"),
            up,
            &[],
        )
    }

    /// The artifacts of the job's run (with the job token).
    pub fn job_artifacts(&self, job: i64, attempt: i32) -> Result<ArtifactList, ClientError> {
        Self::parse(&self.get_text(&format!("/api/v1/jobs/{job}/attempts/{attempt}/artifacts"))?)
    }

    /// The artifacts of a run (with a user token).
    pub fn run_artifacts(&self, run: i64) -> Result<ArtifactList, ClientError> {
        Self::parse(&self.get_text(&format!("/api/v1/runs/{run}/artifacts"))?)
    }
}

/// Calls `f` until it succeeds, fails for good, or `deadline` passes (then the last error),
/// sleeping 100 ms, 200 ms, … up to 5 s between tries.
pub fn retry<T>(
    deadline: Instant,
    mut f: impl FnMut() -> Result<T, ClientError>,
) -> Result<T, ClientError> {
    let mut pause = Duration::from_millis(100);
    loop {
        match f() {
            Err(e) if e.transient() && Instant::now() + pause < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
