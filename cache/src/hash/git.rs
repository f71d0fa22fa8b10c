//! Git's index as a second fast path: a tracked file whose stat matches its index entry has
//! the content git recorded (the same test `git status` makes), so a digest recorded for that
//! blob id is still right even when our own stat record is stale (a fresh checkout of the
//! same commit, a `git checkout` back and forth).
//!
//! The index is read only when the stat cache missed some files, so an unchanged tree never
//! pays for it.
//!
//! Git's "clean" means the file matches the blob *after* git's filters (end-of-line
//! conversion, LFS and other smudge filters), so the same blob id can stand for different
//! bytes under another configuration. The fast path is therefore off in repositories that
//! convert content (`core.autocrlf`, or `filter`/`eol`/`text`/`working-tree-encoding` in the
//! top-level `.gitattributes`), and a reused digest also needs the recorded size to match.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::statcache::Stat;

/// A repository's index, opened for lookups relative to a tree root inside its work tree.
pub struct GitIndex {
    index: git2::Index,
    /// The tree root relative to the work tree, with a trailing `/` (empty at the top).
    prefix: String,
    /// The index file's mtime: entries not older than it are "racy" and never trusted.
    index_mtime: Option<SystemTime>,
}

impl GitIndex {
    /// Opens the index of the repository containing `root`, if any.
    pub fn open(root: &Path) -> Option<GitIndex> {
        let repo = git2::Repository::discover(root).ok()?;
        let workdir = std::fs::canonicalize(repo.workdir()?).ok()?;
        let root = std::fs::canonicalize(root).ok()?;
        let rel: PathBuf = root.strip_prefix(&workdir).ok()?.to_path_buf();
        let mut prefix = rel.to_str()?.to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        if converts_content(&repo, &workdir) {
            tracing::debug!("cache: git filters or eol conversion in use; not using git's index");
            return None;
        }
        let index_mtime = std::fs::metadata(repo.path().join("index"))
            .and_then(|m| m.modified())
            .ok();
        let index = repo.index().ok()?;
        Some(GitIndex {
            index,
            prefix,
            index_mtime,
        })
    }

    /// The blob id of `rel` if the file is clean: its stat matches the index entry and the
    /// entry is not racy.
    pub fn clean_oid(&self, rel: &str, st: &Stat) -> Option<[u8; 20]> {
        let full = format!("{}{rel}", self.prefix);
        let e = self.index.get_path(Path::new(&full), 0)?;
        let same_time = |t: &git2::IndexTime, s: i64, ns: u32| {
            i64::from(t.seconds()) == s && (t.nanoseconds() == 0 || t.nanoseconds() == ns)
        };
        let type_bits = st.mode & 0o170000;
        let entry_type = e.mode & 0o170000;
        let clean = same_time(&e.mtime, st.mtime_s, st.mtime_ns)
            && same_time(&e.ctime, st.ctime_s, st.ctime_ns)
            && e.ino == st.ino as u32
            && e.file_size == st.size as u32
            && type_bits == entry_type
            && (e.mode & 0o111 != 0) == (st.mode & 0o111 != 0);
        if !clean {
            return None;
        }
        // Racy git: an entry modified no earlier than the index was written may have changed
        // within the same timestamp tick.
        let racy = match self.index_mtime {
            Some(im) => st.mtime() >= im,
            None => true,
        };
        if racy {
            return None;
        }
        let mut out = [0u8; 20];
        out.copy_from_slice(e.id.as_bytes());
        Some(out)
    }
}

/// Whether checkouts of this repository may differ from the blobs (see the module docs).
fn converts_content(repo: &git2::Repository, workdir: &Path) -> bool {
    if let Ok(cfg) = repo.config()
        && let Ok(v) = cfg.get_string("core.autocrlf")
        && !v.eq_ignore_ascii_case("false")
    {
        return true;
    }
    match std::fs::read_to_string(workdir.join(".gitattributes")) {
        Ok(text) => ["filter", "eol", "text", "working-tree-encoding", "ident"]
            .iter()
            .any(|w| text.contains(w)),
        Err(_) => false,
    }
}
