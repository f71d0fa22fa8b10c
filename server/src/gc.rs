//! Retention and garbage collection of what the server stores: artifacts expire after their
//! `retention-days` (capped by the server's maximum, as GitHub caps it by the repository's),
//! action-cache entries after some days without use (GitHub: 7), and a blob goes once nothing
//! refers to it any more.
//!
//! A blob is live while an artifact file or an action-cache entry names it, or while a live
//! cache entry's manifest names it (the `/cas/` blobs of the Bazel protocol are referred to
//! only from inside the manifests, so every live manifest is read). Nothing younger than the
//! grace period is collected: an upload stores its blobs before it registers what refers to
//! them, and storing a blob again (a deduplicated upload) refreshes both its row
//! (`blobs.created_at`) and its file's mtime, so a collection running at the same moment keeps
//! it. Files on disk with no row (a server killed between writing a blob and recording it) and
//! stale upload temp files are removed after the grace period too.
//!
//! `pipe server` collects every `--gc-interval`; `pipe server gc` collects once and reports.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::blobs::{BlobStore, valid_digest};
use crate::db::{Db, DbError};

/// What to keep.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Days an artifact is kept when it names no `retention-days` (or 0, GitHub's "the
    /// default"), and the most it may name.
    pub artifact_days: u32,
    /// Days an action-cache entry is kept after it was last written or read.
    pub cache_days: u32,
    /// Nothing stored more recently than this is collected.
    pub grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            artifact_days: 90,
            cache_days: 7,
            grace: Duration::from_secs(3600),
        }
    }
}

/// What one collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Artifacts past their retention.
    pub artifacts: u64,
    /// Action-cache entries unused for longer than the cache retention.
    pub cache_entries: u64,
    /// Blobs nothing refers to (rows and files).
    pub blobs: u64,
    /// Bytes those blobs held.
    pub bytes: u64,
    /// Files with no row, and stale upload temp files.
    pub stray_files: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "removed {} expired artifact(s), {} unused cache entr{}, {} unreferenced blob(s) ({} bytes) and {} stray file(s)",
            self.artifacts,
            self.cache_entries,
            if self.cache_entries == 1 { "y" } else { "ies" },
            self.blobs,
            self.bytes,
            self.stray_files
        )
    }
}

/// A failed collection (what was removed before the failure stays removed).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The blob folder.
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
}

impl From<tokio_postgres::Error> for GcError {
    fn from(e: tokio_postgres::Error) -> Self {
        GcError::Db(DbError::Pg(e))
    }
}

/// Runs one collection.
pub async fn collect(db: &Db, store: &BlobStore, policy: &Policy) -> Result<Report, GcError> {
    let mut report = Report::default();
    let c = db.client().await?;
    let max_days = i32::try_from(policy.artifact_days.max(1)).unwrap_or(i32::MAX);
    report.artifacts = c
        .execute(
            "DELETE FROM artifacts
              WHERE created_at < now() - make_interval(days => LEAST($1::int,
                    CASE WHEN jsonb_typeof(info -> 'retention_days') = 'number'
                              AND (info ->> 'retention_days')::numeric >= 1
                         THEN LEAST((info ->> 'retention_days')::numeric, 100000)::int
                         ELSE $1::int END))",
            &[&max_days],
        )
        .await?;
    let cache_days = i32::try_from(policy.cache_days.max(1)).unwrap_or(i32::MAX);
    report.cache_entries = c
        .execute(
            "DELETE FROM cache_ac WHERE updated_at < now() - make_interval(days => $1::int)",
            &[&cache_days],
        )
        .await?;

    // The `/cas/` blobs that live manifests name.
    let manifests: Vec<String> = c
        .query("SELECT DISTINCT blob FROM cache_ac", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut named = HashSet::new();
    for m in &manifests {
        if let Ok(text) = tokio::fs::read_to_string(store.path(m)).await {
            digests_in_manifest(&text, &mut named);
        }
    }
    let named: Vec<String> = named.into_iter().collect();
    let grace_ms = i64::try_from(policy.grace.as_millis()).unwrap_or(i64::MAX);
    // A row can gain a reference between the check and the delete (a deduplicated upload
    // registering an artifact); the foreign key then refuses the delete and we try again.
    let mut deleted: Vec<(String, i64)> = Vec::new();
    for attempt in 0..3 {
        let r = c
            .query(
                "DELETE FROM blobs b
                  WHERE b.created_at < now() - make_interval(secs => $1::bigint / 1000.0)
                    AND NOT EXISTS (SELECT 1 FROM artifact_files f WHERE f.digest = b.digest)
                    AND NOT EXISTS (SELECT 1 FROM cache_ac a WHERE a.blob = b.digest)
                    AND NOT (b.digest = ANY($2::text[]))
                 RETURNING b.digest, b.size",
                &[&grace_ms, &named],
            )
            .await;
        match r {
            Ok(rows) => {
                deleted = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                break;
            }
            Err(e)
                if attempt < 2
                    && e.code()
                        == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let cutoff = SystemTime::now()
        .checked_sub(policy.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for (digest, size) in &deleted {
        // Stored again since the row was read (its mtime refreshed): the upload that did so
        // records a new row; keep the file.
        if remove_if_older(&store.path(digest), cutoff).await? {
            report.bytes += u64::try_from(*size).unwrap_or(0);
        }
    }
    report.blobs = deleted.len() as u64;

    // Files with no row.
    let mut candidates = Vec::new();
    let sha = store.root().join("sha256");
    if let Ok(mut dirs) = tokio::fs::read_dir(&sha).await {
        while let Some(d) = dirs.next_entry().await? {
            let Ok(mut files) = tokio::fs::read_dir(d.path()).await else {
                continue;
            };
            while let Some(f) = files.next_entry().await? {
                let name = f.file_name().to_string_lossy().into_owned();
                if valid_digest(&name) && older(&f.path(), cutoff).await {
                    candidates.push(name);
                }
            }
        }
    }
    for chunk in candidates.chunks(1000) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let stray: Vec<String> = c
            .query(
                "SELECT d FROM unnest($1::text[]) AS d
                  WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE digest = d)",
                &[&chunk],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for d in stray {
            if remove_if_older(&store.path(&d), cutoff).await? {
                report.stray_files += 1;
            }
        }
    }
    if let Ok(mut tmp) = tokio::fs::read_dir(store.root().join("tmp")).await {
        while let Some(f) = tmp.next_entry().await? {
            if remove_if_older(&f.path(), cutoff).await? {
                report.stray_files += 1;
            }
        }
    }
    Ok(report)
}

/// Adds every SHA-256 digest a cache manifest names (`hex` or `sha256:hex` strings anywhere in
/// its JSON body, after the `pipe-entry` header line) to `out`.
pub fn digests_in_manifest(text: &str, out: &mut HashSet<String>) {
    let body = match text.split_once('\n') {
        Some((first, rest)) if first.starts_with("pipe-entry") => rest,
        _ => text,
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return;
    };
    let mut stack = vec![&value];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::String(s) => {
                let hex = s.strip_prefix("sha256:").unwrap_or(s);
                if valid_digest(hex) {
                    out.insert(hex.to_owned());
                }
            }
            serde_json::Value::Array(items) => stack.extend(items),
            serde_json::Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
}

async fn older(path: &Path, cutoff: SystemTime) -> bool {
    tokio::fs::metadata(path)
        .await
        .and_then(|m| m.modified())
        .is_ok_and(|t| t < cutoff)
}

/// Removes `path` when it was last modified before `cutoff`; whether it did.
async fn remove_if_older(path: &Path, cutoff: SystemTime) -> std::io::Result<bool> {
    if !older(path, cutoff).await {
        return Ok(false);
    }
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Collects every `every` until the task is dropped; failures are logged and retried next time.
pub async fn periodically(db: Db, store: BlobStore, policy: Policy, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match collect(&db, &store, &policy).await {
            Ok(r) if r == Report::default() => tracing::debug!("gc: nothing to remove"),
            Ok(r) => tracing::info!("gc: {r}"),
            Err(e) => tracing::warn!("gc failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_name_their_blobs_in_either_spelling() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let text = format!(
            "pipe-entry v1 {}\n{{\"files\":[{{\"blob\":{{\"digest\":\"sha256:{a}\"}}}}],\"attachments\":[\"{b}\"],\"key\":\"{}\"}}",
            "c".repeat(64),
            "not-a-digest"
        );
        let mut out = HashSet::new();
        digests_in_manifest(&text, &mut out);
        assert_eq!(out, HashSet::from([a, b]));
        // the header's own digest is not a reference, and garbage names nothing
        let mut none = HashSet::new();
        digests_in_manifest("pipe-entry v1 x\n{not json", &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn the_report_reads_as_a_sentence() {
        let r = Report {
            artifacts: 2,
            cache_entries: 1,
            blobs: 3,
            bytes: 10,
            stray_files: 0,
        };
        assert_eq!(
            r.to_string(),
            "removed 2 expired artifact(s), 1 unused cache entry, 3 unreferenced blob(s) (10 bytes) and 0 stray file(s)"
        );
    }
}
