//! Run records: the local store of runs, their events, logs and summaries.
//!
//! Layout under the repository's state folder (`dirs::repo_state_dir`):
//!
//! ```text
//! runs/.counter          the last run number handed out (under an exclusive `flock`)
//! runs/<N>/run.json       the run's index entry (workflow, event, start, conclusion, time)
//! runs/<N>/events.jsonl   the run's event stream (log lines excluded)
//! runs/<N>/logs/<job>~<step>.log   one file per step, masked (folders per job before 2026-11-27)
//! runs/<N>/logs/<job>/service-<id>.log   a job's service containers' logs
//! runs/<N>/summary.json   the `--summary` document
//! runs/<N>/summaries/<job>.md      step summaries (GITHUB_STEP_SUMMARY) per job
//! runs/.spare             an emptied run folder `prune` kept for the next run (not a run)
//! ```
//!
//! Run numbers come from a counter file read and rewritten under an exclusive `flock`, so
//! concurrent `pipe` processes of one repository never get the same number; a lock dies with
//! its process. Why not SQLite for this index: opening a database costs several milliseconds
//! of a run whose whole budget, for a one-job workflow, is about as long as running its script
//! (the index is a counter and one small JSON file per run). Recording is best effort: a store
//! failure is a warning for the caller, never a failed run (nextest's recording design). Only
//! the last [`DEFAULT_KEEP`] runs are kept.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::event::{Conclusion, RunEvent, Summary};

/// How many runs are kept by default.
pub const DEFAULT_KEEP: usize = 100;

/// The run counter's digits, padded with spaces (`u64::MAX` has 20).
const COUNTER_WIDTH: usize = 20;

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
    /// The run counter could not be locked.
    #[error("cannot lock the run counter `{path}`: {source}")]
    Lock {
        /// The counter file.
        path: PathBuf,
        /// The error.
        source: nix::Error,
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of run `n`.
    pub fn run_dir(&self, n: u64) -> PathBuf {
        self.dir.join("runs").join(n.to_string())
    }

    fn io<'p>(
        what: &'static str,
        path: &'p Path,
    ) -> impl FnOnce(std::io::Error) -> StoreError + 'p {
        move |source| StoreError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Hands out the next run number.
    fn next_number(&self) -> Result<u64, StoreError> {
        use std::io::{Read, Seek};
        let path = self.dir.join("runs").join(".counter");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Self::io("cannot open", &path))?;
        let mut lock =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, source)| StoreError::Lock {
                path: path.clone(),
                source,
            })?;
        let mut text = String::new();
        lock.read_to_string(&mut text)
            .map_err(Self::io("cannot read", &path))?;
        // A missing or damaged counter restarts above the newest run folder.
        let last = match text.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => self.numbers()?.into_iter().max().unwrap_or(0),
        };
        let next = last + 1;
        // Overwritten in place at a fixed width, never truncated: truncating frees the file's
        // block, and on ext4 mounted with `discard` (no journal) that is a synchronous trim on
        // every run. Only a longer, damaged counter is cut.
        let line = format!("{next:<COUNTER_WIDTH$}\n");
        if text.len() > line.len() {
            lock.set_len(line.len() as u64)
                .map_err(Self::io("cannot write", &path))?;
        }
        lock.rewind().map_err(Self::io("cannot write", &path))?;
        lock.write_all(line.as_bytes())
            .map_err(Self::io("cannot write", &path))?;
        Ok(next)
    }

    /// Numbers of the recorded runs, in no particular order.
    fn numbers(&self) -> Result<Vec<u64>, StoreError> {
        let runs = self.dir.join("runs");
        let rd = std::fs::read_dir(&runs).map_err(Self::io("cannot read", &runs))?;
        Ok(rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
            .collect())
    }

    /// Allocates the next run number and creates its folder.
    pub fn begin_run(&self, workflow: &str, event: &str) -> Result<RunRecord, StoreError> {
        let number = self.next_number()?;
        let dir = self.run_dir(number);
        // The folder (and its `logs/`) of a pruned run when one is spare (see `prune`);
        // otherwise a new folder, whose `logs/` is made by the first step that prints.
        let spare = self.dir.join("runs").join(SPARE);
        if std::fs::rename(&spare, &dir).is_err() {
            std::fs::create_dir(&dir)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(Self::io("cannot create", &dir))?;
        }
        let info = RunInfo {
            number,
            workflow: workflow.to_owned(),
            event: event.to_owned(),
            conclusion: None,
            started: now_secs(),
            duration_ms: None,
        };
        let meta = serde_json::to_vec(&info).unwrap_or_default();
        // A new file in a new folder: written in place (a reader that catches it half-written
        // skips the run, as it skips any unreadable `run.json`); `finish_run` replaces it
        // atomically.
        std::fs::write(dir.join("run.json"), &meta).map_err(Self::io("cannot write", &dir))?;
        let events_path = dir.join("events.jsonl");
        let events = File::create(&events_path).map_err(Self::io("cannot create", &events_path))?;
        Ok(RunRecord {
            number,
            dir,
            events: Some(BufWriter::new(events)),
        })
    }

    fn info(&self, number: u64) -> Option<RunInfo> {
        let bytes = std::fs::read(self.run_dir(number).join("run.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records a run's end.
    pub fn finish_run(
        &self,
        number: u64,
        conclusion: Conclusion,
        duration_ms: u64,
    ) -> Result<(), StoreError> {
        let path = self.run_dir(number).join("run.json");
        let mut info = self.info(number).ok_or_else(|| StoreError::Corrupt {
            path: path.clone(),
            message: "missing or unreadable".to_owned(),
        })?;
        info.conclusion = Some(conclusion);
        info.duration_ms = Some(duration_ms);
        let meta = serde_json::to_vec(&info).unwrap_or_default();
        write_replace(&path, &meta, false).map_err(Self::io("cannot write", &path))
    }

    /// Runs, newest first.
    pub fn list(&self, limit: usize) -> Result<Vec<RunInfo>, StoreError> {
        let mut numbers = self.numbers()?;
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        Ok(numbers
            .into_iter()
            .filter_map(|n| self.info(n))
            .take(limit)
            .collect())
    }

    /// The newest run's number.
    pub fn latest(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.numbers()?.into_iter().max())
    }

    /// Deletes all but the newest `keep` runs.
    pub fn prune(&self, keep: usize) -> Result<usize, StoreError> {
        let mut numbers = self.numbers()?;
        if numbers.len() <= keep {
            return Ok(0);
        }
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        let old = &numbers[keep..];
        let spare = self.dir.join("runs").join(SPARE);
        for n in old {
            let dir = self.run_dir(*n);
            // `run.json` goes first, so a prune cut short leaves nothing that is listed.
            let _ = std::fs::remove_file(dir.join("run.json"));
            // One emptied folder, with its `logs/`, is kept for the next run to rename into
            // place: on ext4 with `discard`, making and removing two folders per run (an inode
            // and a block each, trimmed when freed) cost more than the rest of the record.
            if !spare.exists() && empty_run_folder(&dir) && std::fs::rename(&dir, &spare).is_ok() {
                continue;
            }
            std::fs::remove_dir_all(&dir).map_err(Self::io("cannot remove", &dir))?;
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

/// The name of the emptied run folder [`Store::prune`] keeps for the next run in `runs/`.
const SPARE: &str = ".spare";

/// Empties a pruned run's folder for reuse, all but an empty `logs/` folder; true when it is
/// empty but for that (a real folder, not a link).
fn empty_run_folder(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut ok = true;
    for e in rd.flatten() {
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        let path = e.path();
        ok &= if is_dir && e.file_name() == "logs" {
            empty_run_folder_logs(&path)
        } else if is_dir {
            std::fs::remove_dir_all(&path).is_ok()
        } else {
            std::fs::remove_file(&path).is_ok()
        };
    }
    ok
}

fn empty_run_folder_logs(logs: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(logs) else {
        return false;
    };
    rd.flatten().all(|e| {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(e.path()).is_ok()
        } else {
            std::fs::remove_file(e.path()).is_ok()
        }
    })
}

/// A step's log file in a run's `logs/` folder: `<job folder>~<step>.log`, side by side.
///
/// One flat folder, not a folder per job: a replay of 1,000 cached jobs made and, when the run
/// was pruned, removed 1,000 folders (on ext4 each is an inode and a block, and with the
/// `discard` mount option a synchronous trim on removal). `~` never occurs in a
/// [`safe_name`], so the name is unambiguous. Records written before this layout keep their
/// logs at `logs/<job folder>/<step>.log` ([`legacy_step_log_path`]); services' logs stay in
/// the job's folder (`logs/<job folder>/service-<id>.log`).
pub fn step_log_path(logs: &Path, job_folder: &str, step_index: usize) -> PathBuf {
    logs.join(format!("{job_folder}~{step_index}.log"))
}

/// Where records written before [`step_log_path`]'s layout keep a step's log.
pub fn legacy_step_log_path(logs: &Path, job_folder: &str, step_index: usize) -> PathBuf {
    logs.join(job_folder).join(format!("{step_index}.log"))
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

/// Writes `bytes` to `path` atomically but without fsync (data that may be lost in a crash
/// but must never be seen half-written).
pub fn write_replace_quick(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_replace(path, bytes, false)
}

fn write_replace(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        // The folder is made only when it is missing: it nearly always exists, and making it
        // first cost two system calls per file (`mkdir`, failing, and a `stat`).
        let mut f = match File::create(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                File::create(&tmp)?
            }
            other => other?,
        };
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
    fn a_pruned_folder_is_emptied_and_becomes_the_next_runs() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().expect("tmp");
        let store = Store::open(t.path()).expect("open");
        let old = store.begin_run("ci.yml", "push").expect("run");
        std::fs::create_dir_all(old.dir.join("logs/build")).expect("logs");
        std::fs::write(old.dir.join("logs/build~0.log"), "hello").expect("log");
        std::fs::write(old.dir.join("logs/build/service-db.log"), "db").expect("log");
        std::fs::create_dir_all(old.dir.join("summaries")).expect("summaries");
        std::fs::write(old.dir.join("summaries/0-build.md"), "# hi").expect("md");
        let ino = std::fs::metadata(&old.dir).expect("meta").ino();
        store.begin_run("ci.yml", "push").expect("run");
        assert_eq!(store.prune(1).expect("prune"), 1);
        assert!(!old.dir.exists());
        assert_eq!(
            store.list(10).expect("list").len(),
            1,
            "the spare is not a run"
        );
        let next = store.begin_run("ci.yml", "push").expect("run");
        assert_eq!(next.number, 3);
        assert_eq!(std::fs::metadata(&next.dir).expect("meta").ino(), ino);
        let mut left: Vec<String> = std::fs::read_dir(&next.dir)
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["events.jsonl", "logs", "run.json"]);
        assert_eq!(
            std::fs::read_dir(next.dir.join("logs"))
                .expect("logs")
                .count(),
            0
        );
        assert_eq!(store.info(3).map(|i| i.conclusion), Some(None));
        // With no spare left, the next run makes its folder.
        let fresh = store.begin_run("ci.yml", "push").expect("run");
        assert!(fresh.dir.is_dir() && !fresh.dir.join("logs").exists());
    }

    #[test]
    fn counter_is_rewritten_in_place_and_reads_old_and_damaged_files() {
        let t = tempfile::tempdir().expect("tmp");
        let store = Store::open(t.path()).expect("open");
        let counter = t.path().join("runs/.counter");
        // A counter written by an earlier version: the bare number.
        std::fs::write(&counter, "41").expect("write");
        assert_eq!(store.begin_run("w.yml", "push").expect("run").number, 42);
        let text = std::fs::read_to_string(&counter).expect("read");
        assert_eq!(text.len(), COUNTER_WIDTH + 1);
        assert_eq!(text.trim(), "42");
        // Same inode, same length: the file was overwritten, not replaced or truncated.
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(&counter).expect("meta").ino();
        assert_eq!(store.begin_run("w.yml", "push").expect("run").number, 43);
        assert_eq!(std::fs::metadata(&counter).expect("meta").ino(), ino);
        assert_eq!(
            std::fs::read_to_string(&counter).expect("read").trim(),
            "43"
        );
        // A damaged, longer counter restarts above the newest run folder and is cut.
        std::fs::write(&counter, "garbage ".repeat(10)).expect("write");
        assert_eq!(store.begin_run("w.yml", "push").expect("run").number, 44);
        let text = std::fs::read_to_string(&counter).expect("read");
        assert_eq!((text.len(), text.trim()), (COUNTER_WIDTH + 1, "44"));
    }

    #[test]
    fn concurrent_writers_never_share_a_number() {
        let t = tempfile::tempdir().expect("tmp");
        let dir = t.path().to_path_buf();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let store = Store::open(&dir).expect("open");
                    (0..10)
                        .map(|_| store.begin_run("w.yml", "push").expect("run").number)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("join"))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (1..=80).collect::<Vec<_>>());
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
