//! [`Cache`]: the local store plus an optional remote, with the failure policy the step
//! cache and `actions/cache` need: **a cache problem is never an error of the work**.
//!
//! - Lookups return [`Lookup::Hit`] or [`Lookup::Miss`] with the reasons (corrupt entry,
//!   remote down, poisoned blob, …) — never an `Err`.
//! - Saves return a [`SaveOutcome`] with warnings — a full disk or a dead remote is a
//!   warning, never an `Err`.
//! - A remote that times out or refuses connections is disabled for the rest of the process
//!   after the first such failure (3 for HTTP errors), so a dead remote costs one timeout,
//!   not one per step.
//! - Remote entries are verified (manifest checksum, key, every blob's digest) before they
//!   enter the local store; only then is the hit reported.
//!
//! Every warning is also logged with `tracing::warn!`.
//!
//! Everything here blocks (file I/O, HTTP, S3 on a private runtime): async callers use
//! `tokio::task::spawn_blocking`. A `Cache` is `Send + Sync`; share one per process.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::manifest::Manifest;
use crate::remote::{Body, Kind, Remote, RemoteError};
use crate::restore::{RestoreError, RestoreReport};
use crate::store::{EntryBuilder, EntryKey, LocalStore, StoreError};

/// Largest manifest accepted from a remote.
const MAX_REMOTE_MANIFEST: usize = 64 << 20;
/// HTTP errors in a row after which the remote is disabled.
const MAX_FAILURES: u32 = 3;

/// Whether this process may write to the remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteMode {
    /// Read and write (trusted branches, CI on the main branch).
    ReadWrite,
    /// Read only (pull requests, untrusted branches, developer machines).
    ReadOnly,
}

/// Where a hit came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The local store.
    Local,
    /// The remote (now also stored locally).
    Remote,
}

/// Why a lookup missed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum MissReason {
    /// No entry under the key anywhere.
    NotFound,
    /// The local store failed (an I/O error).
    Local {
        /// The error.
        message: String,
    },
    /// The remote failed or served something unusable.
    Remote {
        /// What happened.
        message: String,
    },
}

/// The result of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Found and verified.
    Hit {
        /// The entry.
        manifest: Manifest,
        /// Where it came from.
        source: Source,
    },
    /// Not usable; the reasons explain why (for `pipe why`).
    Miss {
        /// Every reason, first to last.
        reasons: Vec<MissReason>,
    },
}

impl Lookup {
    /// The manifest of a hit.
    pub fn manifest(&self) -> Option<&Manifest> {
        match self {
            Lookup::Hit { manifest, .. } => Some(manifest),
            Lookup::Miss { .. } => None,
        }
    }
}

/// What a save did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SaveOutcome {
    /// Stored in the local store.
    pub local: bool,
    /// Uploaded to the remote.
    pub remote: bool,
    /// Blobs uploaded (the remote lacked them).
    pub uploaded_blobs: usize,
    /// Problems, as messages.
    pub warnings: Vec<String>,
}

/// The local store plus an optional remote.
#[derive(Debug)]
pub struct Cache {
    local: LocalStore,
    remote: Option<Box<dyn Remote>>,
    mode: RemoteMode,
    disabled: AtomicBool,
    failures: AtomicU32,
    warnings: Mutex<Vec<String>>,
}

impl Cache {
    /// A cache with only the local store.
    pub fn new(local: LocalStore) -> Self {
        Cache {
            local,
            remote: None,
            mode: RemoteMode::ReadOnly,
            disabled: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Adds a remote.
    pub fn with_remote(mut self, remote: Box<dyn Remote>, mode: RemoteMode) -> Self {
        self.remote = Some(remote);
        self.mode = mode;
        self
    }

    /// The local store.
    pub fn local(&self) -> &LocalStore {
        &self.local
    }

    /// Whether a remote is configured (a lookup may then wait on the network).
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Every warning so far (also logged), oldest first; clears the list.
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    fn warn(&self, message: String) -> String {
        tracing::warn!("cache: {message}");
        if let Ok(mut w) = self.warnings.lock() {
            w.push(message.clone());
        }
        message
    }

    fn remote(&self) -> Option<&dyn Remote> {
        if self.disabled.load(Ordering::Relaxed) {
            return None;
        }
        self.remote.as_deref()
    }

    /// Records a remote failure and disables the remote when it looks down.
    fn remote_failed(&self, e: &RemoteError) -> String {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let mut msg = format!("remote cache: {e}");
        if (e.is_unavailable() || n >= MAX_FAILURES) && !self.disabled.swap(true, Ordering::Relaxed)
        {
            msg.push_str("; not using the remote cache for the rest of this run");
        }
        self.warn(msg)
    }

    fn remote_ok(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    /// Looks a key up: locally, then on the remote.
    pub fn lookup(&self, key: &EntryKey) -> Lookup {
        let mut reasons = Vec::new();
        match self.local.get_entry(key) {
            Ok(Some(manifest)) => {
                return Lookup::Hit {
                    manifest,
                    source: Source::Local,
                };
            }
            Ok(None) => {}
            Err(e) => reasons.push(MissReason::Local {
                message: self.warn(e.to_string()),
            }),
        }
        if let Some(remote) = self.remote() {
            match self.fetch(remote, key) {
                Ok(Some(manifest)) => {
                    self.remote_ok();
                    return Lookup::Hit {
                        manifest,
                        source: Source::Remote,
                    };
                }
                Ok(None) => self.remote_ok(),
                Err(message) => reasons.push(MissReason::Remote { message }),
            }
        }
        if reasons.is_empty() {
            reasons.push(MissReason::NotFound);
        }
        Lookup::Miss { reasons }
    }

    /// The newest local entry whose key starts with `prefix` (`actions/cache`
    /// restore-keys). Remotes have no listing in the Bazel protocol, so this is local only.
    pub fn lookup_prefix(&self, namespace: &str, prefix: &str) -> Lookup {
        match self.local.find_prefix(namespace, prefix) {
            Ok(Some(manifest)) => Lookup::Hit {
                manifest,
                source: Source::Local,
            },
            Ok(None) => Lookup::Miss {
                reasons: vec![MissReason::NotFound],
            },
            Err(e) => Lookup::Miss {
                reasons: vec![MissReason::Local {
                    message: self.warn(e.to_string()),
                }],
            },
        }
    }

    /// Downloads an entry and its blobs, verifying everything, into the local store.
    fn fetch(&self, remote: &dyn Remote, key: &EntryKey) -> Result<Option<Manifest>, String> {
        let id = key.digest();
        let mut bytes = Vec::new();
        let mut limited = LimitedWriter {
            inner: &mut bytes,
            left: MAX_REMOTE_MANIFEST,
        };
        match remote.get(Kind::Ac, &id, &mut limited) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(self.remote_failed(&e)),
        }
        let manifest = match Manifest::decode(&bytes) {
            Ok(m) if m.namespace == key.namespace && m.key == key.key => m,
            Ok(_) => {
                return Err(self.warn(format!(
                    "remote cache `{}` served an entry for another key under `{id}`; ignoring it",
                    remote.describe()
                )));
            }
            Err(e) => {
                return Err(self.warn(format!(
                    "remote cache `{}` served a bad entry for `{id}`: {e}; ignoring it",
                    remote.describe()
                )));
            }
        };
        if manifest.pack.is_some() {
            return Err(self.warn(format!(
                "remote cache `{}` served a packed entry for `{id}`; ignoring it",
                remote.describe()
            )));
        }
        for blob in manifest.cas_blobs() {
            if self.local.has_blob_sized(&blob.digest, blob.size) {
                continue;
            }
            let mut w = self
                .local
                .blob_writer()
                .map_err(|e| self.warn(e.to_string()))?;
            match remote.get(Kind::Cas, &blob.digest, &mut w) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(self.warn(format!(
                        "remote cache `{}` lacks blob `{}` of an entry; treating it as a miss",
                        remote.describe(),
                        blob.digest
                    )));
                }
                Err(e) => return Err(self.remote_failed(&e)),
            }
            match w.finish(&blob.digest) {
                Ok(_) => {}
                Err(StoreError::DigestMismatch { expected, actual }) => {
                    return Err(self.warn(format!(
                        "remote cache `{}` served blob `{expected}` with content `{actual}`; \
                         rejecting the entry",
                        remote.describe()
                    )));
                }
                Err(e) => return Err(self.warn(e.to_string())),
            }
        }
        if let Err(e) = self.local.put_entry(&manifest) {
            // Still a hit: the blobs are verified and local; only the manifest is not kept.
            self.warn(format!("cannot keep the remote entry locally: {e}"));
        }
        Ok(Some(manifest))
    }

    /// Restores a hit's files under `root` (see [`LocalStore::restore`]). A corrupt or
    /// missing blob is reported as an error with [`RestoreError::is_miss`]; the caller then
    /// runs the work as on a miss.
    pub fn restore(
        &self,
        manifest: &Manifest,
        root: &std::path::Path,
    ) -> Result<RestoreReport, RestoreError> {
        let r = self.local.restore(manifest, root);
        if let Err(e) = &r
            && e.is_miss()
        {
            self.warn(format!("{e}; treating entry `{}` as a miss", manifest.key));
            let _ = self
                .local
                .remove_entry(&EntryKey::new(&manifest.namespace, &manifest.key));
        }
        r
    }

    /// Builds and saves an entry: `build` adds files, attachments and metadata. Never fails:
    /// problems (a full disk, a dead remote) come back as warnings.
    pub fn save_with(
        &self,
        key: &EntryKey,
        build: impl FnOnce(&mut EntryBuilder<'_>) -> Result<(), StoreError>,
    ) -> SaveOutcome {
        let manifest = match self.local.builder(key) {
            Ok(mut b) => match build(&mut b) {
                Ok(()) => b.finish(),
                Err(e) => {
                    return SaveOutcome {
                        warnings: vec![self.save_failed(&e)],
                        ..SaveOutcome::default()
                    };
                }
            },
            Err(e) => {
                return SaveOutcome {
                    warnings: vec![self.save_failed(&e)],
                    ..SaveOutcome::default()
                };
            }
        };
        self.save(&manifest)
    }

    fn save_failed(&self, e: &StoreError) -> String {
        if e.is_no_space() {
            self.warn(format!("the disk is full; the result was not cached ({e})"))
        } else {
            self.warn(format!("the result was not cached: {e}"))
        }
    }

    /// Saves a finished manifest (its blobs already in the local store) locally and, in
    /// read-write mode, on the remote (blobs first, the entry last, so a remote hit always
    /// has its blobs).
    pub fn save(&self, manifest: &Manifest) -> SaveOutcome {
        let mut out = SaveOutcome::default();
        match self.local.put_entry(manifest) {
            Ok(()) => out.local = true,
            Err(e) => {
                out.warnings.push(self.save_failed(&e));
                return out;
            }
        }
        // A pack is local only: a remote stores blobs by their content's digest.
        if self.mode != RemoteMode::ReadWrite || manifest.pack.is_some() {
            return out;
        }
        let Some(remote) = self.remote() else {
            return out;
        };
        match self.upload(remote, manifest) {
            Ok(n) => {
                self.remote_ok();
                out.remote = true;
                out.uploaded_blobs = n;
            }
            Err(e) => out.warnings.push(self.remote_failed(&e)),
        }
        out
    }

    fn upload(&self, remote: &dyn Remote, m: &Manifest) -> Result<usize, RemoteError> {
        let mut n = 0;
        for blob in m.cas_blobs() {
            if remote.contains(Kind::Cas, &blob.digest)? {
                continue;
            }
            let path = self.local.blob_path(&blob.digest);
            remote.put(Kind::Cas, &blob.digest, Body::File(&path))?;
            n += 1;
        }
        let id = EntryKey::new(&m.namespace, &m.key).digest();
        remote.put(Kind::Ac, &id, Body::Bytes(&m.encode()))?;
        Ok(n)
    }
}

/// A writer that fails once more than `left` bytes were written (a remote cannot make us
/// buffer an endless manifest).
struct LimitedWriter<'a> {
    inner: &'a mut Vec<u8>,
    left: usize,
}

impl std::io::Write for LimitedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.left {
            return Err(std::io::Error::other("remote entry is too large"));
        }
        self.left -= buf.len();
        self.inner.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Cache>();
        shared::<LocalStore>();
    }
}
