//! File-system helpers: temp files that become real files only by an atomic rename, and
//! the small conversions every module needs.
//!
//! A cache write is "write a temp file in the same folder tree, (fsync,) rename". A process
//! killed half way leaves only a temp file (collected by `gc`), never a half-written blob
//! or manifest under its real name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prefix of every temp file the cache creates, so `gc` and `verify` recognise them.
pub const TEMP_PREFIX: &str = ".pipe-tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other process or thread will pick: pid, a counter and the clock.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}-{n}-{nanos:x}", std::process::id())
}

/// A file being written under a temporary name; removed on drop unless persisted.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates a new temp file in `dir` (which must exist).
    pub fn new_in(dir: &Path) -> io::Result<Self> {
        let path = dir.join(unique_name(TEMP_PREFIX));
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile {
            path,
            file: Some(file),
        })
    }

    /// The temp file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file.
    pub fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("temp file already closed"))
    }

    /// Flushes (and with `sync`, fsyncs) the file and renames it to `dest`, replacing any
    /// file there. With `sync` the parent folder is fsynced too, so the rename itself is
    /// durable.
    pub fn persist(mut self, dest: &Path, sync: bool) -> io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
            if sync {
                f.sync_all()?;
            }
        }
        fs::rename(&self.path, dest)?;
        // The rename happened: nothing to clean up any more.
        self.path = PathBuf::new();
        if sync && let Some(parent) = dest.parent() {
            sync_dir(parent);
        }
        Ok(())
    }

    /// Like [`persist`](Self::persist), but keeps an existing `dest` (a hard link that fails
    /// with `AlreadyExists` means another writer stored the same content first). Returns
    /// whether this call created `dest`.
    pub fn persist_noclobber(mut self, dest: &Path, sync: bool) -> io::Result<bool> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
            if sync {
                f.sync_all()?;
            }
        }
        let created = match fs::hard_link(&self.path, dest) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            // Some file systems have no hard links: fall back to a rename, which replaces
            // an identical blob at worst.
            Err(_) => {
                fs::rename(&self.path, dest)?;
                self.path = PathBuf::new();
                true
            }
        };
        if created
            && sync
            && let Some(parent) = dest.parent()
        {
            sync_dir(parent);
        }
        Ok(created)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file.take();
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Fsyncs a folder so a rename in it survives a crash. Best effort: some file systems refuse.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `dest` atomically through a temp file in `tmp_dir`.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8], sync: bool) -> io::Result<()> {
    let mut t = TempFile::new_in(tmp_dir)?;
    t.file()?.write_all(bytes)?;
    t.persist(dest, sync)
}

/// Seconds since the epoch of a time, 0 before it.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the epoch, now.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether an I/O error means the disk (or a quota) is full.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_vanish_unless_persisted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = TempFile::new_in(dir.path()).expect("temp");
        let p = t.path().to_path_buf();
        assert!(p.exists());
        drop(t);
        assert!(!p.exists());
        let dest = dir.path().join("dest");
        write_atomic(dir.path(), &dest, b"x", true).expect("write");
        assert_eq!(fs::read(&dest).expect("read"), b"x");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
        let mut t = TempFile::new_in(dir.path()).expect("temp");
        t.file().expect("file").write_all(b"y").expect("write");
        assert!(!t.persist_noclobber(&dest, false).expect("persist"));
        assert_eq!(fs::read(&dest).expect("read"), b"x");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }
}
