//! Spare scratch folders: empty folders a finished run hands to the next one.
//!
//! Every run used to make its scratch folder (`$TMPDIR/pipe-PID-N`) and a `RUNNER_TEMP` folder
//! per job, and remove them at the end. On ext4 a `mkdir` allocates an inode and a block and a
//! removal frees them, and with the `discard` mount option the freed block is trimmed at once:
//! for a one-job run the folders' `mkdir`s and removals took about a millisecond of a
//! ten-millisecond run (`perf trace`, 2026-11-27). Renaming a folder allocates and frees
//! nothing, so a run that ends renames its scratch folder and its jobs' empty `RUNNER_TEMP`
//! folders into a private spare folder (`$TMPDIR/.pipe-spare-<uid>`, mode 0700), and the next
//! run renames them back into place instead of making new ones. GitHub's runner does the same
//! in spirit: its `RUNNER_TEMP` is one folder that is emptied, not remade.
//!
//! Only empty folders are kept (a run's scratch folder keeps its lock file and its event
//! payload, both rewritten by the next run), at most [`KEEP`] of each kind, all owned by this
//! user; `rename` is atomic, so two runs never adopt the same folder. A spare folder that is
//! not a private folder of this user is never used.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How many spare folders of each kind are kept.
pub const KEEP: usize = 8;

/// The kind of a spare folder, its name's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A run's scratch folder (`r-…`), holding its lock file and event payload.
    Run,
    /// A job's empty `RUNNER_TEMP` (`j-…`).
    Job,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Run => "r-",
            Kind::Job => "j-",
        }
    }
}

static GIVEN: AtomicU64 = AtomicU64::new(0);

/// The spare folder of this user under `temp` (the system temp folder), made on first use.
#[derive(Debug)]
pub struct Spares {
    dir: PathBuf,
    /// Set once a look found no job folder: later jobs do not look again.
    no_jobs: AtomicBool,
}

impl Spares {
    /// The spare folder under `temp`, without touching the disk.
    pub fn new(temp: &Path) -> Spares {
        Spares {
            dir: temp.join(format!(".pipe-spare-{}", nix::unistd::geteuid().as_raw())),
            no_jobs: AtomicBool::new(false),
        }
    }

    /// The spare folder's path.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the spare folder is a real folder of this user that nobody else can enter.
    fn private(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(&self.dir).is_ok_and(|m| {
            m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o077 == 0
        })
    }

    /// Names of the spare folders of `kind`.
    fn names(&self, kind: Kind) -> Vec<std::ffi::OsString> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .map(|e| e.file_name())
            .filter(|n| n.as_encoded_bytes().starts_with(kind.prefix().as_bytes()))
            .collect()
    }

    /// Renames a spare folder of `kind` to `dest` (which must not exist). False when there is
    /// none (or none could be taken): the caller makes `dest` itself.
    pub fn adopt(&self, kind: Kind, dest: &Path) -> bool {
        if kind == Kind::Job && self.no_jobs.load(Ordering::Relaxed) {
            return false;
        }
        let names = self.names(kind);
        if names.is_empty() {
            if kind == Kind::Job {
                self.no_jobs.store(true, Ordering::Relaxed);
            }
            return false;
        }
        // The folder is checked only when it has something to give: a missing one costs one
        // failed `open`.
        if !self.private() {
            return false;
        }
        // Another run may take a folder between the listing and the rename: its rename wins
        // and ours fails, so the next name is tried.
        names
            .iter()
            .any(|n| std::fs::rename(self.dir.join(n), dest).is_ok())
    }

    /// Keeps `dirs` (empty folders of `kind`, this user's) for a later run; those that cannot
    /// be kept (already [`KEEP`] spares, no private spare folder) are removed. `dirs` must be on
    /// the spare folder's file system (a rename across file systems fails; the folder is then
    /// removed).
    pub fn give(&self, kind: Kind, dirs: impl IntoIterator<Item = PathBuf>) {
        let mut room = None;
        for d in dirs {
            let room = room.get_or_insert_with(|| {
                if self.make() {
                    KEEP.saturating_sub(self.names(kind).len())
                } else {
                    0
                }
            });
            if *room > 0 {
                let n = GIVEN.fetch_add(1, Ordering::Relaxed);
                let name = format!("{}{}-{n}", kind.prefix(), std::process::id());
                if std::fs::rename(&d, self.dir.join(name)).is_ok() {
                    *room -= 1;
                    continue;
                }
            }
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    /// Makes the spare folder (mode 0700) unless it exists; true when it is usable.
    fn make(&self) -> bool {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.private(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_folder_is_adopted_once_and_only_empty_private_ones_are_kept() {
        let t = tempfile::tempdir().expect("tempdir");
        let spares = Spares::new(t.path());
        let job = t.path().join("pipe-1-1").join("build");
        std::fs::create_dir_all(&job).expect("job folder");
        spares.give(Kind::Job, [job.clone()]);
        assert!(!job.exists(), "a kept folder is moved away");
        // A run's folder is not a job's.
        assert!(!spares.adopt(Kind::Run, &t.path().join("run")));
        let dest = t.path().join("pipe-2-1").join("test");
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("run folder");
        assert!(spares.adopt(Kind::Job, &dest));
        assert!(dest.is_dir());
        // Nothing left: the next job makes its own and stops looking.
        let other = t.path().join("pipe-2-1").join("lint");
        assert!(!spares.adopt(Kind::Job, &other));
        assert!(!other.exists());
    }

    #[test]
    fn no_more_than_keep_are_kept() {
        let t = tempfile::tempdir().expect("tempdir");
        let spares = Spares::new(t.path());
        let dirs: Vec<PathBuf> = (0..KEEP + 3)
            .map(|i| {
                let d = t.path().join(format!("d{i}"));
                std::fs::create_dir(&d).expect("folder");
                d
            })
            .collect();
        spares.give(Kind::Run, dirs.clone());
        assert!(dirs.iter().all(|d| !d.exists()), "the rest are removed");
        assert_eq!(spares.names(Kind::Run).len(), KEEP);
    }

    #[test]
    fn a_spare_folder_others_can_enter_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().expect("tempdir");
        let spares = Spares::new(t.path());
        std::fs::create_dir(spares.dir()).expect("spare folder");
        std::fs::create_dir(spares.dir().join("j-1-1")).expect("spare");
        std::fs::set_permissions(spares.dir(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let dest = t.path().join("x");
        assert!(!spares.adopt(Kind::Job, &dest));
        assert!(!dest.exists());
        let d = t.path().join("d");
        std::fs::create_dir(&d).expect("folder");
        spares.give(Kind::Job, [d.clone()]);
        assert!(!d.exists(), "removed, not kept");
        assert_eq!(spares.names(Kind::Job).len(), 1);
    }
}
