//! The server's blob store: file contents by SHA-256 on the server's disk
//! (`<data>/blobs/sha256/ab/abcd…`), written once through a temporary file and a rename, so a
//! reader never sees half a blob. Artifacts' files and cache entries are blobs; what refers to
//! them lives in PostgreSQL (`blobs`, `artifact_files`, `cache_ac`).
//!
//! Servers sharing a database must share this folder too (a network file system); object
//! storage is a later step.

use std::path::{Path, PathBuf};

use axum::body::Body;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The largest blob accepted (4 GiB).
pub const MAX_BLOB: u64 = 4 << 30;

/// A failed upload.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The content's digest is not the one named.
    #[error("the content's SHA-256 is `{actual}`, not `{expected}`")]
    Mismatch {
        /// Named.
        expected: String,
        /// Found.
        actual: String,
    },
    /// Too large.
    #[error("a blob must not exceed {MAX_BLOB} bytes")]
    TooLarge,
    /// The client went away.
    #[error("the upload was cut: {0}")]
    Body(String),
    /// The disk.
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether `s` is a SHA-256 in lower-case hex.
pub fn valid_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The store.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// A store under `root` (created on first write).
    pub fn new(root: &Path) -> BlobStore {
        BlobStore {
            root: root.to_path_buf(),
        }
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it exists). `digest` must be valid.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.root
            .join("sha256")
            .join(digest.get(..2).unwrap_or("00"))
            .join(digest)
    }

    /// Whether the blob is stored.
    pub async fn exists(&self, digest: &str) -> bool {
        valid_digest(digest) && tokio::fs::metadata(self.path(digest)).await.is_ok()
    }

    /// Streams `body` into the store; returns its digest and size. With `expected`, the
    /// content must have that digest (else nothing is stored).
    pub async fn put(
        &self,
        body: Body,
        expected: Option<&str>,
    ) -> Result<(String, u64), BlobError> {
        let tmp_dir = self.root.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let tmp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&tmp_dir)?
            .into_temp_path();
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > MAX_BLOB {
                return Err(BlobError::TooLarge);
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        drop(file);
        let digest = hex::encode(hasher.finalize());
        if let Some(e) = expected
            && e != digest
        {
            return Err(BlobError::Mismatch {
                expected: e.to_owned(),
                actual: digest,
            });
        }
        let dest = self.path(&digest);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        if tokio::fs::metadata(&dest).await.is_err() {
            tmp.persist(&dest).map_err(|e| BlobError::Io(e.error))?;
        } else {
            // Stored again: a fresh mtime keeps a collection running now from removing it
            // before the upload records what refers to it (see `gc`).
            let dest = dest.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::File::options()
                    .write(true)
                    .open(&dest)
                    .and_then(|f| f.set_modified(std::time::SystemTime::now()))
            })
            .await
            .map_err(std::io::Error::other)??;
        }
        Ok((digest, size))
    }

    /// A blob's content as a streamed response body, with its size; `None` when missing.
    pub async fn open(&self, digest: &str) -> Option<(Body, u64)> {
        if !valid_digest(digest) {
            return None;
        }
        let file = tokio::fs::File::open(self.path(digest)).await.ok()?;
        let size = file.metadata().await.ok()?.len();
        let stream = tokio_util::io::ReaderStream::new(file);
        Some((Body::from_stream(stream), size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_are_stored_by_digest_and_a_wrong_digest_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = BlobStore::new(dir.path());
        let digest = hex::encode(Sha256::digest(b"hello"));
        let (d, n) = store
            .put(Body::from("hello"), Some(&digest))
            .await
            .expect("put");
        assert_eq!((d.as_str(), n), (digest.as_str(), 5));
        assert!(store.exists(&digest).await);
        assert_eq!(
            std::fs::read(store.path(&digest)).expect("read"),
            b"hello".to_vec()
        );
        let err = store
            .put(Body::from("other"), Some(&digest))
            .await
            .expect_err("mismatch");
        assert!(matches!(err, BlobError::Mismatch { .. }), "{err}");
        assert!(!valid_digest("ABC"));
        assert!(store.open(&"0".repeat(64)).await.is_none());
    }
}
