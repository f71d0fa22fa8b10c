//! Remote caches: the Bazel HTTP remote-cache protocol and, with the `s3` feature, S3.
//!
//! Both speak two namespaces of the REAPI model: `/ac/<sha256>` holds manifests (named by
//! [`crate::EntryKey::digest`]) and `/cas/<sha256>` holds blobs named by their content digest.
//! A remote is never trusted with content: every blob is verified against its digest before
//! it enters the local store, and a manifest must carry its own checksum and the key that was
//! asked for. The AC is the trust boundary — give untrusted branches [`RemoteMode::ReadOnly`]
//! (and enforce it on the server too).
//!
//! [`RemoteMode::ReadOnly`]: crate::RemoteMode::ReadOnly

pub mod http;
#[cfg(feature = "s3")]
pub mod s3;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::digest::Digest;

/// The two stores of a remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Action cache: manifests by entry digest.
    Ac,
    /// Content-addressed blobs.
    Cas,
}

impl Kind {
    /// The path segment (`ac` or `cas`).
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Ac => "ac",
            Kind::Cas => "cas",
        }
    }
}

/// What to upload.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A file (streamed).
    File(&'a Path),
}

/// A remote operation failed. Callers turn every one of these into a warning and a miss.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The server answered with an unexpected status.
    #[error("`{url}` answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// No answer in time.
    #[error("`{url}` timed out")]
    Timeout {
        /// The URL.
        url: String,
    },
    /// Connecting or talking failed.
    #[error("`{url}`: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("`{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The remote's address or options are invalid.
    #[error("invalid remote cache `{url}`: {message}")]
    Config {
        /// The configured URL.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl RemoteError {
    /// Whether the remote is unreachable or too slow (as opposed to one bad answer): the
    /// caller stops using it for the rest of the process.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RemoteError::Timeout { .. } | RemoteError::Transport { .. }
        )
    }
}

/// A remote cache backend.
pub trait Remote: Send + Sync + fmt::Debug {
    /// A short description for messages (the URL without credentials).
    fn describe(&self) -> String;
    /// Downloads an object into `out`; `Ok(false)` if it does not exist.
    fn get(&self, kind: Kind, digest: &Digest, out: &mut dyn Write) -> Result<bool, RemoteError>;
    /// Whether an object exists.
    fn contains(&self, kind: Kind, digest: &Digest) -> Result<bool, RemoteError>;
    /// Uploads an object.
    fn put(&self, kind: Kind, digest: &Digest, body: Body<'_>) -> Result<(), RemoteError>;
}

/// How to reach a remote.
#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// `http(s)://host[:port][/prefix]` (Bazel HTTP protocol) or `s3://bucket[/prefix]`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` (HTTP).
    pub token: Option<String>,
    /// Time allowed to connect and to get an answer's headers.
    pub timeout: Duration,
    /// Retries of a failed request (5xx, connection errors) before giving up.
    pub retries: u32,
    /// S3 only: an endpoint for S3-compatible servers (e.g. `http://127.0.0.1:9000`).
    pub s3_endpoint: Option<String>,
    /// S3 only: region (default `us-east-1`).
    pub s3_region: Option<String>,
    /// S3 only: access key id and secret; otherwise the `AWS_*` environment is used.
    pub s3_credentials: Option<(String, String)>,
}

impl RemoteConfig {
    /// A config with default timeouts (5 s) and retries (2).
    pub fn new(url: &str) -> Self {
        RemoteConfig {
            url: url.to_owned(),
            token: None,
            timeout: Duration::from_secs(5),
            retries: 2,
            s3_endpoint: None,
            s3_region: None,
            s3_credentials: None,
        }
    }
}

/// Opens the backend the URL names.
pub fn open(config: &RemoteConfig) -> Result<Box<dyn Remote>, RemoteError> {
    if config.url.starts_with("http://") || config.url.starts_with("https://") {
        return Ok(Box::new(http::HttpRemote::new(config)?));
    }
    if config.url.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(Box::new(s3::S3Remote::new(config)?));
        #[cfg(not(feature = "s3"))]
        return Err(RemoteError::Config {
            url: config.url.clone(),
            message: "this pipe was built without S3 support (feature `s3`)".into(),
        });
    }
    Err(RemoteError::Config {
        url: config.url.clone(),
        message: "use an `http://`, `https://` or `s3://` URL".into(),
    })
}
