//! S3 (and S3-compatible servers) through `object_store`, with the same `ac/` and `cas/`
//! layout as the HTTP protocol: objects `<prefix>/ac/<sha256>` and `<prefix>/cas/<sha256>`.
//!
//! `object_store` is async; this backend owns a small current-thread runtime and blocks on
//! it, so it must be called from blocking code (as everything in this crate is; the runner
//! calls the cache from `spawn_blocking`). Downloads are fetched in 8 MiB ranges so a large
//! blob never sits in memory whole.

use std::io::{Read, Write};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};

use super::{Body, Kind, Remote, RemoteConfig, RemoteError};
use crate::digest::Digest;

const RANGE: u64 = 8 << 20;

/// An S3 remote cache.
#[derive(Debug)]
pub struct S3Remote {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    prefix: String,
    describe: String,
}

impl S3Remote {
    /// A client for `s3://bucket[/prefix]`.
    pub fn new(config: &RemoteConfig) -> Result<Self, RemoteError> {
        let bad = |message: &str| RemoteError::Config {
            url: config.url.clone(),
            message: message.to_owned(),
        };
        let rest = config
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an `s3://` URL"))?;
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            return Err(bad("the URL names no bucket"));
        }
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(
                config
                    .s3_region
                    .clone()
                    .unwrap_or_else(|| "us-east-1".into()),
            )
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(config.timeout)
                    .with_timeout(config.timeout.max(std::time::Duration::from_secs(60))),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: config.retries as usize,
                retry_timeout: config.timeout * (config.retries + 1),
            });
        if let Some(ep) = &config.s3_endpoint {
            b = b
                .with_endpoint(ep)
                .with_allow_http(ep.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some((id, secret)) = &config.s3_credentials {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        let store = b.build().map_err(|e| bad(&e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bad(&format!("cannot start the S3 client: {e}")))?;
        Ok(S3Remote {
            store: Arc::new(store),
            runtime,
            prefix: prefix.to_owned(),
            describe: config.url.clone(),
        })
    }

    fn path(&self, kind: Kind, digest: &Digest) -> ObjectPath {
        let name = if self.prefix.is_empty() {
            format!("{}/{}", kind.segment(), digest.hex())
        } else {
            format!("{}/{}/{}", self.prefix, kind.segment(), digest.hex())
        };
        ObjectPath::from(name)
    }

    fn err(&self, path: &ObjectPath, e: object_store::Error) -> RemoteError {
        RemoteError::Transport {
            url: format!("{}/{path}", self.describe.trim_end_matches('/')),
            message: e.to_string(),
        }
    }
}

impl Remote for S3Remote {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn get(&self, kind: Kind, digest: &Digest, out: &mut dyn Write) -> Result<bool, RemoteError> {
        let path = self.path(kind, digest);
        let size = match self.runtime.block_on(self.store.head(&path)) {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.err(&path, e)),
        };
        let mut at = 0;
        while at < size {
            let end = (at + RANGE).min(size);
            let bytes = self
                .runtime
                .block_on(self.store.get_range(&path, at..end))
                .map_err(|e| self.err(&path, e))?;
            out.write_all(&bytes).map_err(|e| RemoteError::Transport {
                url: path.to_string(),
                message: format!("cannot store the download: {e}"),
            })?;
            at = end;
        }
        Ok(true)
    }

    fn contains(&self, kind: Kind, digest: &Digest) -> Result<bool, RemoteError> {
        let path = self.path(kind, digest);
        match self.runtime.block_on(self.store.head(&path)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(&path, e)),
        }
    }

    fn put(&self, kind: Kind, digest: &Digest, body: Body<'_>) -> Result<(), RemoteError> {
        let path = self.path(kind, digest);
        match body {
            Body::Bytes(b) => self
                .runtime
                .block_on(self.store.put(&path, PutPayload::from(b.to_vec())))
                .map(|_| ())
                .map_err(|e| self.err(&path, e)),
            Body::File(p) => {
                let io = |source| RemoteError::Io {
                    path: p.to_path_buf(),
                    source,
                };
                let mut f = std::fs::File::open(p).map_err(io)?;
                let len = f.metadata().map_err(io)?.len();
                if len <= RANGE {
                    let mut buf = Vec::with_capacity(len as usize);
                    f.read_to_end(&mut buf).map_err(io)?;
                    return self
                        .runtime
                        .block_on(self.store.put(&path, PutPayload::from(buf)))
                        .map(|_| ())
                        .map_err(|e| self.err(&path, e));
                }
                let upload = self
                    .runtime
                    .block_on(self.store.put_multipart(&path))
                    .map_err(|e| self.err(&path, e))?;
                // `WriteMultipart` spawns its part uploads onto the current runtime.
                let _enter = self.runtime.enter();
                let mut w = WriteMultipart::new(upload);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    w.write(&buf[..n]);
                }
                self.runtime
                    .block_on(w.finish())
                    .map(|_| ())
                    .map_err(|e| self.err(&path, e))
            }
        }
    }
}
