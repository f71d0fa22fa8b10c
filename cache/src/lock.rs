//! `flock`-based locks on the store, so concurrent `pipe` processes share it safely.
//!
//! Readers and writers take the store lock *shared*: many of them run at once, and because
//! every write is a rename of a complete temp file they never see each other's halves.
//! `gc`, `clear` and `verify --repair` take it *exclusive*, so they never delete a blob that a
//! writer has stored but not yet referenced from a manifest. The kernel drops a `flock` when
//! its process dies, so a `kill -9` never leaves the store locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    fn open(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    /// Waits for a shared lock.
    pub fn shared(path: &Path) -> io::Result<Lock> {
        let file = Self::open(path)?;
        file.lock_shared()?;
        Ok(Lock { file })
    }

    /// Waits for an exclusive lock.
    pub fn exclusive(path: &Path) -> io::Result<Lock> {
        let file = Self::open(path)?;
        file.lock()?;
        Ok(Lock { file })
    }

    /// Takes an exclusive lock if nobody holds the lock, else `None`.
    pub fn try_exclusive(path: &Path) -> io::Result<Option<Lock>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_exclusive_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("lock");
        let a = Lock::shared(&p).expect("shared");
        let b = Lock::shared(&p).expect("shared");
        assert!(Lock::try_exclusive(&p).expect("try").is_none());
        drop((a, b));
        let x = Lock::try_exclusive(&p).expect("try");
        assert!(x.is_some());
        assert!(Lock::try_exclusive(&p).expect("try").is_none());
    }
}
