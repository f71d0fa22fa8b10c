//! Run records: the local store of runs, their events, logs and summaries.
//!
//! Layout under the repository's state folder (`dirs::repo_state_dir`):
//!
//! ```text
//! store.sqlite            index of runs (number, workflow, event, conclusion, times)
//! runs/<N>/events.jsonl   the run's event stream (log lines excluded)
//! runs/<N>/logs/<job>/<step>.log   one file per step, masked
//! runs/<N>/summary.json   the `--summary` document
//! runs/<N>/summaries/<job>.md      step summaries (GITHUB_STEP_SUMMARY) per job
//! ```
//!
//! Run numbers come from SQLite (`AUTOINCREMENT`), so concurrent `pipe` processes of one
//! repository never get the same number. Recording is best effort: a store failure is a warning
//! for the caller, never a failed run (nextest's recording design). Only the last
//! [`DEFAULT_KEEP`] runs are kept.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::event::{Conclusion, RunEvent, Summary};

/// How many runs are kept by default.
pub const DEFAULT_KEEP: usize = 100;

/// The store could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The database failed.
    #[error("run index `{path}`: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// A record is malformed.
    #[error("run record `{path}` is corrupt: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One run in the index.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunInfo {
    /// Run number.
    pub number: u64,
    /// Workflow file.
    pub workflow: String,
    /// Triggering event.
    pub event: String,
    /// Conclusion, `None` while running (or if the process died).
    pub conclusion: Option<Conclusion>,
    /// Start time, seconds since the epoch.
    pub started: u64,
    /// Duration in milliseconds, when finished.
    pub duration_ms: Option<u64>,
}

/// A repository's run store.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    db_path: PathBuf,
    conn: Connection,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir.join("runs")).map_err(|source| StoreError::Io {
            what: "cannot create",
            path: dir.to_path_buf(),
            source,
        })?;
        let db_path = dir.join("store.sqlite");
        let db = |source| StoreError::Db {
            path: db_path.clone(),
            source,
        };
        let conn = Connection::open(&db_path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        // The index is a convenience over the run folders: losing its newest rows to a power
        // cut is acceptable, an fsync per run (15 ms on slow disks) is not.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = OFF;
             CREATE TABLE IF NOT EXISTS runs (
                 number INTEGER PRIMARY KEY AUTOINCREMENT,
                 workflow TEXT NOT NULL,
                 event TEXT NOT NULL,
                 conclusion TEXT,
                 started INTEGER NOT NULL,
                 duration_ms INTEGER
             );",
        )
        .map_err(db)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            db_path,
            conn,
        })
    }

    fn db_err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Db {
            path: self.db_path.clone(),
            source,
        }
    }

    /// The folder of run `n`.
    pub fn run_dir(&self, n: u64) -> PathBuf {
        self.dir.join("runs").join(n.to_string())
    }

    /// Allocates the next run number and creates its folder.
    pub fn begin_run(&self, workflow: &str, event: &str) -> Result<RunRecord, StoreError> {
        let number: u64 = self
            .conn
            .query_row(
                "INSERT INTO runs (workflow, event, started) VALUES (?1, ?2, ?3) RETURNING number",
                params![workflow, event, now_secs() as i64],
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| self.db_err(e))? as u64;
        let dir = self.run_dir(number);
        std::fs::create_dir_all(dir.join("logs")).map_err(|source| StoreError::Io {
            what: "cannot create",
            path: dir.clone(),
            source,
        })?;
        let events_path = dir.join("events.jsonl");
        let events = File::create(&events_path).map_err(|source| StoreError::Io {
            what: "cannot create",
            path: events_path,
            source,
        })?;
        Ok(RunRecord {
            number,
            dir,
            events: Some(BufWriter::new(events)),
        })
    }

    /// Records a run's end.
    pub fn finish_run(
        &self,
        number: u64,
        conclusion: Conclusion,
        duration_ms: u64,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET conclusion = ?1, duration_ms = ?2 WHERE number = ?3",
                params![conclusion.as_str(), duration_ms as i64, number as i64],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Runs, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<RunInfo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT number, workflow, event, conclusion, started, duration_ms FROM runs
                 ORDER BY number DESC LIMIT ?1",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                let conclusion: Option<String> = r.get(3)?;
                Ok(RunInfo {
                    number: r.get::<_, i64>(0)? as u64,
                    workflow: r.get(1)?,
                    event: r.get(2)?,
                    conclusion: conclusion.and_then(|c| parse_conclusion(&c)),
                    started: r.get::<_, i64>(4)? as u64,
                    duration_ms: r.get::<_, Option<i64>>(5)?.map(|d| d as u64),
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db_err(e))
    }

    /// The newest run's number.
    pub fn latest(&self) -> Result<Option<u64>, StoreError> {
        self.conn
            .query_row("SELECT MAX(number) FROM runs", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map(|v| v.flatten().map(|n| n as u64))
            .map_err(|e| self.db_err(e))
    }

    /// Deletes all but the newest `keep` runs.
    pub fn prune(&self, keep: usize) -> Result<usize, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT number FROM runs ORDER BY number DESC LIMIT -1 OFFSET ?1")
            .map_err(|e| self.db_err(e))?;
        let old: Vec<i64> = stmt
            .query_map(params![keep as i64], |r| r.get(0))
            .map_err(|e| self.db_err(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.db_err(e))?;
        for n in &old {
            let _ = std::fs::remove_dir_all(self.run_dir(*n as u64));
            self.conn
                .execute("DELETE FROM runs WHERE number = ?1", params![n])
                .map_err(|e| self.db_err(e))?;
        }
        Ok(old.len())
    }

    /// Reads a run's summary.
    pub fn summary(&self, number: u64) -> Result<Option<Summary>, StoreError> {
        let path = self.run_dir(number).join("summary.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        path,
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                what: "cannot read",
                path,
                source,
            }),
        }
    }
}

fn parse_conclusion(s: &str) -> Option<Conclusion> {
    Some(match s {
        "success" => Conclusion::Success,
        "failure" => Conclusion::Failure,
        "cancelled" => Conclusion::Cancelled,
        "skipped" => Conclusion::Skipped,
        _ => return None,
    })
}

/// Turns a job key into a file-name-safe folder name.
pub fn safe_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An open run: where its files go.
#[derive(Debug)]
pub struct RunRecord {
    /// The run number.
    pub number: u64,
    /// Its folder.
    pub dir: PathBuf,
    events: Option<BufWriter<File>>,
}

impl RunRecord {
    /// Appends an event (log events are not recorded here; logs have their own files).
    pub fn append(&mut self, event: &RunEvent) -> std::io::Result<()> {
        if matches!(event, RunEvent::Log { .. }) {
            return Ok(());
        }
        if let Some(w) = self.events.as_mut() {
            serde_json::to_writer(&mut *w, event)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The log file path of one step (`job_folder` from [`safe_name`]).
    pub fn log_path(&self, job_folder: &str, step_index: usize) -> PathBuf {
        self.dir
            .join("logs")
            .join(job_folder)
            .join(format!("{step_index}.log"))
    }

    /// Writes a file of the run atomically (temp file, then rename; no fsync: a run record
    /// is not worth a disk flush, and a torn write is impossible either way).
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
        write_replace(&self.dir.join(rel), bytes, false)
    }

    /// Flushes the event file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.events.as_mut() {
            w.flush()?;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically and durably: a temp file in the same folder, fsync,
/// rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_replace(path, bytes, true)
}

fn write_replace(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

/// Records a run's events in its [`RunRecord`]; a write failure becomes one warning.
pub struct Recording {
    record: std::sync::Mutex<RunRecord>,
    failed: std::sync::atomic::AtomicBool,
}

impl Recording {
    /// Wraps an open run.
    pub fn new(record: RunRecord) -> Self {
        Recording {
            record: std::sync::Mutex::new(record),
            failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether writing failed at some point.
    pub fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` on the record (to write the summary, flush…).
    pub fn with<R>(&self, f: impl FnOnce(&mut RunRecord) -> R) -> Option<R> {
        self.record.lock().ok().map(|mut r| f(&mut r))
    }
}

impl crate::run::report::Reporter for Recording {
    fn event(&self, event: &RunEvent) {
        if let Ok(mut r) = self.record.lock()
            && r.append(event).is_err()
        {
            self.failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn output(&self, _job: &crate::event::JobRef, _step: usize, _lines: &[u8]) {}
    fn annotation(
        &self,
        _job: &crate::event::JobRef,
        _step: Option<usize>,
        _annotation: &crate::run::commands::Annotation,
    ) {
    }
    fn notice(
        &self,
        _job: Option<&crate::event::JobRef>,
        _level: crate::run::report::NoticeLevel,
        _message: &str,
    ) {
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_increase_and_prune_keeps_newest() {
        let t = tempfile::tempdir().expect("tmp");
        let store = Store::open(t.path()).expect("open");
        let a = store.begin_run("ci.yml", "push").expect("run");
        let b = store.begin_run("ci.yml", "push").expect("run");
        assert!(b.number > a.number);
        store
            .finish_run(a.number, Conclusion::Success, 5)
            .expect("finish");
        // A second process on the same store gets the next number.
        let other = Store::open(t.path()).expect("open");
        let c = other.begin_run("x.yml", "pull_request").expect("run");
        assert_eq!(c.number, b.number + 1);
        let runs = store.list(10).expect("list");
        assert_eq!(
            runs.iter().map(|r| r.number).collect::<Vec<_>>(),
            vec![3, 2, 1]
        );
        assert_eq!(runs[2].conclusion, Some(Conclusion::Success));
        assert_eq!(store.prune(2).expect("prune"), 1);
        assert!(!store.run_dir(1).exists());
        assert_eq!(store.latest().expect("latest"), Some(3));
    }

    #[test]
    fn atomic_write_replaces() {
        let t = tempfile::tempdir().expect("tmp");
        let p = t.path().join("a/b.json");
        write_atomic(&p, b"1").expect("write");
        write_atomic(&p, b"2").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"2");
        assert_eq!(
            std::fs::read_dir(t.path().join("a")).expect("dir").count(),
            1
        );
    }
}
