//! Deploying, verifying and rolling back releases of builds to environments.
//!
//! This crate knows nothing about gates, approvals or the ledger: the promotion crate
//! decides *whether* a build goes to an environment and calls [`engine::deploy`] /
//! [`engine::rollback`] to make it so, recording the [`engine::Event`]s it is handed.
//!
//! - [`spec`]: the `deploy:`, `verify:` and `rollback:` keys (serde types + validation).
//! - [`health`]: one probe of a check (HTTP, command exit code, Prometheus threshold);
//!   [`promtext`]: the Prometheus text format and the query language.
//! - [`verify`]: the verify loop and its judge (failure, unknown and flap limits).
//! - [`lock`]: the per-environment FIFO lock and the in-flight record that survives a
//!   killed `pipe`.
//! - [`proxy`]: the nginx blue-green switch (write, `nginx -t`, rename, reload, confirm).
//! - [`release`]: release records and the environment's state (`deploy/<env>/` in the
//!   repository's state folder).
//! - [`engine`]: deploy → verify → automatic rollback, and manual rollback.
//! - [`evidence`]: in-toto statements (SLSA provenance, deployments) in signed DSSE
//!   envelopes, and their offline verification.
//! - [`metrics`]: Prometheus text metrics computed from the release records.

pub mod engine;
pub mod evidence;
pub mod health;
pub mod lock;
pub mod metrics;
pub mod proc;
pub mod promtext;
pub mod proxy;
pub mod release;
pub mod spec;
pub mod verify;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cancellation flag shared with the signal handler (Ctrl-C).
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A fresh, unset flag.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Sets the flag.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes `value` as pretty JSON atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// `sha256:<hex>` over the compact JSON of `value` (struct fields in declaration order,
/// maps sorted: the types hashed here hold no floats and no unordered maps).
pub fn digest_json<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    format!("sha256:{}", spec::sha256_hex(&bytes))
}

/// The current time as RFC 3339 (seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
