//! Hashing trees of input files: SHA-256 of every file, as fast as `git status` when nothing
//! changed.
//!
//! One pass walks the tree in parallel (the `ignore` crate's walker: `.gitignore` honoured,
//! hidden files included, `.git` skipped) and `lstat`s every file. Then, per file:
//!
//! 1. **stat cache** ([`statcache`]): if size, mtime, ctime, inode and mode match the record
//!    made when the file was last hashed, reuse that digest. An unchanged tree costs one
//!    walk and one `lstat` per file, no reads — the same work as `git status`.
//! 2. **git index** ([`git`]): for the remaining files, if the file is clean in git's index
//!    and its blob id is the one recorded with a digest, reuse the digest.
//! 3. otherwise read and hash the file, on all cores.
//!
//! The refreshed records are written back, so after a `touch` of every file the first run
//! re-hashes and the second is back on the fast path (Turborepo never writes its refreshed
//! stat data back; performance.md G11).

pub mod git;
pub mod statcache;
mod walk;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::digest::{self, Digest};
use statcache::{Record, StatCache};
use walk::Found;

/// Mode recorded for symbolic links (git's).
pub const SYMLINK_MODE: u32 = 0o120000;

/// Hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The root cannot be read.
    #[error("cannot hash `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Walking the tree failed.
    #[error("cannot walk `{path}`: {message}")]
    Walk {
        /// The root.
        path: PathBuf,
        /// The walker's message.
        message: String,
    },
}

/// One hashed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileDigest {
    /// Path relative to the root, `/`-separated.
    pub path: String,
    /// SHA-256 of the content (of the target path for a symlink).
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// `0o644`, `0o755` or [`SYMLINK_MODE`].
    pub mode: u32,
}

/// How the digests were obtained.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HashStats {
    /// Files in the result.
    pub files: usize,
    /// Digests reused from the stat cache.
    pub stat_hits: usize,
    /// Digests reused through git's index.
    pub git_hits: usize,
    /// Files read and hashed.
    pub hashed: usize,
    /// Bytes read and hashed.
    pub bytes_hashed: u64,
    /// Hashed files too recently modified to be recorded (re-hashed next time).
    pub racy: usize,
    /// Whether the stat cache was written back.
    pub saved: bool,
}

/// The digests of a tree.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TreeSnapshot {
    /// Files sorted by path.
    pub files: Vec<FileDigest>,
    /// How they were obtained.
    pub stats: HashStats,
    /// The root the paths are relative to.
    #[serde(skip)]
    root: PathBuf,
    /// Each file's `lstat` when it was hashed (same order as `files`).
    #[serde(skip)]
    stat_of: Vec<statcache::Stat>,
}

impl TreeSnapshot {
    /// Paths whose `lstat` differs from when they were hashed, or that are gone: a caller
    /// that ran work on these inputs must not cache its result if any changed during the
    /// work (bazel#3360, "guard against concurrent changes").
    pub fn changed_files(&self) -> Vec<String> {
        self.files
            .iter()
            .zip(&self.stat_of)
            .filter(
                |(f, st)| match fs::symlink_metadata(self.root.join(&f.path)) {
                    Ok(m) => statcache::Stat::of(&m) != **st,
                    Err(_) => true,
                },
            )
            .map(|(f, _)| f.path.clone())
            .collect()
    }

    /// The entry for a path.
    pub fn get(&self, path: &str) -> Option<&FileDigest> {
        self.files
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// One digest for the whole tree (paths, modes and digests, in order).
    pub fn digest(&self) -> Digest {
        let mut h = crate::digest::Hasher::new();
        h.update(b"pipe-tree-v1\0");
        for f in &self.files {
            h.update(&(f.path.len() as u64).to_be_bytes());
            h.update(f.path.as_bytes());
            h.update(&f.mode.to_be_bytes());
            h.update(f.digest.as_bytes());
        }
        h.finish()
    }
}

/// Decides which paths (relative, `/`-separated) a hash covers; the flag says whether the
/// path is a folder (return `false` to skip it and everything in it).
pub type PathFilter = Arc<dyn Fn(&str, bool) -> bool + Send + Sync>;

/// Hashes a tree; see the module docs.
#[derive(Clone)]
pub struct TreeHasher {
    root: PathBuf,
    stat_dir: Option<PathBuf>,
    git: bool,
    gitignore: bool,
    threads: usize,
    filter: Option<PathFilter>,
}

impl std::fmt::Debug for TreeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeHasher")
            .field("root", &self.root)
            .field("stat_dir", &self.stat_dir)
            .field("git", &self.git)
            .field("gitignore", &self.gitignore)
            .field("threads", &self.threads)
            .field("filter", &self.filter.is_some())
            .finish()
    }
}

impl TreeHasher {
    /// A hasher for the tree at `root`, with git's index used when `root` is in a work tree,
    /// `.gitignore` honoured, no stat cache, and one thread per core.
    pub fn new(root: &Path) -> Self {
        TreeHasher {
            root: root.to_path_buf(),
            stat_dir: None,
            git: true,
            gitignore: true,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            filter: None,
        }
    }

    /// Hashes only the paths `filter` accepts (e.g. a step's `inputs` globs); folders it
    /// rejects are not entered. Stat records of other paths are kept.
    pub fn filter(mut self, filter: impl Fn(&str, bool) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Keeps a stat cache in `dir` (normally [`crate::LocalStore::stat_dir`]).
    pub fn stat_cache(mut self, dir: &Path) -> Self {
        self.stat_dir = Some(dir.to_path_buf());
        self
    }

    /// Whether to use git's index (default on).
    pub fn git(mut self, on: bool) -> Self {
        self.git = on;
        self
    }

    /// Whether to skip files `.gitignore` ignores (default on).
    pub fn gitignore(mut self, on: bool) -> Self {
        self.gitignore = on;
        self
    }

    /// Threads for walking and hashing.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Walks and hashes the whole tree.
    pub fn hash(&self) -> Result<TreeSnapshot, HashError> {
        let meta = fs::metadata(&self.root).map_err(|source| HashError::Io {
            path: self.root.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(HashError::Io {
                path: self.root.clone(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a folder"),
            });
        }
        let cache_file = self
            .stat_dir
            .as_ref()
            .map(|d| statcache::file_for(d, &self.root));
        let t0 = std::time::Instant::now();
        // Load the stat cache on its own thread while the tree is walked: both take tens of
        // milliseconds on a 100k-file tree and neither needs the other.
        let (loaded, found) = std::thread::scope(|s| {
            let loader = s.spawn(|| match &cache_file {
                Some(f) => StatCache::load(f),
                None => StatCache::default(),
            });
            let found = self.walk();
            (loader.join(), found)
        });
        let cache = loaded.unwrap_or_default();
        let mut found = found?;
        let t_walk = t0.elapsed();
        found.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
        let t_sort = t0.elapsed();
        let mut stats = HashStats::default();
        // Merge the sorted walk with the sorted records: one comparison per file.
        let mut digests: Vec<Option<Digest>> = vec![None; found.len()];
        let mut records: Vec<Option<Record>> = vec![None; found.len()];
        let mut misses: Vec<usize> = Vec::new();
        let mut j = 0;
        for (i, f) in found.iter().enumerate() {
            while j < cache.len() && cache.path(j) < f.rel.as_bytes() {
                j += 1;
            }
            if j < cache.len()
                && cache.path(j) == f.rel.as_bytes()
                && cache.record(j).stat == f.stat
            {
                stats.stat_hits += 1;
                digests[i] = Some(cache.record(j).digest);
                records[i] = Some(*cache.record(j));
            } else {
                misses.push(i);
            }
        }
        let mut changed = stats.stat_hits != cache.len();
        if !misses.is_empty() {
            changed = true;
            let index = if self.git {
                git::GitIndex::open(&self.root)
            } else {
                None
            };
            let mut to_hash: Vec<(usize, Option<[u8; 20]>)> = Vec::new();
            for i in misses {
                let f = &found[i];
                let oid = match (&index, f.symlink) {
                    (Some(ix), false) => ix.clean_oid(&f.rel, &f.stat),
                    _ => None,
                };
                if let (Some(o), Some(rec)) = (oid, cache.get(&f.rel))
                    && rec.oid == Some(o)
                    && rec.stat.size == f.stat.size
                {
                    stats.git_hits += 1;
                    digests[i] = Some(rec.digest);
                    records[i] = Some(Record {
                        stat: f.stat,
                        digest: rec.digest,
                        oid,
                    });
                    continue;
                }
                to_hash.push((i, oid));
            }
            for (i, oid, digest, read_at) in self.hash_files(&found, to_hash)? {
                let f = &found[i];
                stats.hashed += 1;
                if !f.symlink {
                    stats.bytes_hashed += f.stat.size;
                }
                digests[i] = Some(digest);
                if statcache::racy(&f.stat, read_at) {
                    stats.racy += 1;
                } else {
                    records[i] = Some(Record {
                        stat: f.stat,
                        digest,
                        oid,
                    });
                }
            }
        }
        let t_match = t0.elapsed();
        if changed && let (Some(cf), Some(dir)) = (&cache_file, &self.stat_dir) {
            let tmp = dir
                .parent()
                .map(|p| p.join("tmp"))
                .unwrap_or_else(|| dir.clone());
            let tmp = if tmp.is_dir() { tmp } else { dir.clone() };
            let fresh: Vec<(&str, &Record)> = found
                .iter()
                .zip(&records)
                .filter_map(|(f, r)| r.as_ref().map(|r| (f.rel.as_str(), r)))
                .collect();
            // With a filter the walk saw only part of the tree: keep the other records.
            let kept: Vec<(&str, &Record)> = match &self.filter {
                Some(keep_out) => (0..cache.len())
                    .filter_map(|i| {
                        let p = std::str::from_utf8(cache.path(i)).ok()?;
                        (!keep_out(p, false)).then(|| (p, cache.record(i)))
                    })
                    .collect(),
                None => Vec::new(),
            };
            let count = fresh.len() + kept.len();
            let merged = merge_sorted(fresh, kept);
            match fs::create_dir_all(dir)
                .and_then(|_| StatCache::save(cf, &tmp, count, merged.into_iter()))
            {
                Ok(()) => stats.saved = true,
                Err(e) => {
                    tracing::warn!("cache: cannot save the stat cache `{}`: {e}", cf.display())
                }
            }
        }
        // Files deleted between the walk and their read have no digest: they are left out.
        let mut stat_of = Vec::with_capacity(found.len());
        let files: Vec<FileDigest> = found
            .into_iter()
            .zip(digests)
            .filter_map(|(f, d)| {
                let d = d?;
                stat_of.push(f.stat);
                Some(file_digest(f, d))
            })
            .collect();
        stats.files = files.len();
        tracing::debug!(
            "cache: hash `{}`: walk {:?}, sort {:?}, match+hash {:?}, total {:?}",
            self.root.display(),
            t_walk,
            t_sort - t_walk,
            t_match - t_sort,
            t0.elapsed()
        );
        Ok(TreeSnapshot {
            files,
            stats,
            root: self.root.clone(),
            stat_of,
        })
    }

    /// Lists files and symlinks with their stat, in parallel.
    fn walk(&self) -> Result<Vec<Found>, HashError> {
        let abs = fs::canonicalize(&self.root).map_err(|source| HashError::Io {
            path: self.root.clone(),
            source,
        })?;
        walk::walk(&abs, self.threads, self.gitignore, self.filter.as_ref()).map_err(|message| {
            HashError::Walk {
                path: self.root.clone(),
                message,
            }
        })
    }

    /// Reads and hashes `found[i]` for each item on all threads; returns each with the time
    /// its read began. Files deleted since the walk are left out.
    fn hash_files(
        &self,
        found: &[Found],
        items: Vec<(usize, Option<[u8; 20]>)>,
    ) -> Result<Vec<Hashed>, HashError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let next = AtomicUsize::new(0);
        let threads = self.threads.min(items.len().div_ceil(64)).max(1);
        let results: Mutex<Vec<Hashed>> = Mutex::new(Vec::with_capacity(items.len()));
        let failure: Mutex<Option<HashError>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut buf = Vec::with_capacity(64 << 10);
                    let mut local = Vec::new();
                    loop {
                        let start = next.fetch_add(16, Ordering::Relaxed);
                        if start >= items.len() {
                            break;
                        }
                        for &(i, oid) in items.iter().skip(start).take(16) {
                            let f = &found[i];
                            let path = self.root.join(&f.rel);
                            let read_at = SystemTime::now();
                            let r = if f.symlink {
                                fs::read_link(&path)
                                    .map(|t| Digest::of(t.as_os_str().as_encoded_bytes()))
                            } else {
                                digest::hash_file_with(&path, &mut buf).map(|(d, _)| d)
                            };
                            match r {
                                Ok(d) => local.push((i, oid, d, read_at)),
                                // Deleted since the walk: it has no result, so it is left out.
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                Err(source) => {
                                    if let Ok(mut g) = failure.lock() {
                                        g.get_or_insert(HashError::Io { path, source });
                                    }
                                    return;
                                }
                            }
                        }
                    }
                    if let Ok(mut g) = results.lock() {
                        g.extend(local);
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(results.into_inner().unwrap_or_default())
    }
}

/// Merges two path-sorted lists of records (the fresh ones win on equal paths; the filtered
/// and the unfiltered paths never overlap, so that cannot happen in practice).
fn merge_sorted<'a>(
    a: Vec<(&'a str, &'a Record)>,
    b: Vec<(&'a str, &'a Record)>,
) -> Vec<(&'a str, &'a Record)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(b[j].0) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// A hashed file: index into the walk, git blob id, digest, and when its read began.
type Hashed = (usize, Option<[u8; 20]>, Digest, SystemTime);

fn file_digest(f: Found, digest: Digest) -> FileDigest {
    let mode = if f.symlink {
        SYMLINK_MODE
    } else if f.stat.mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    FileDigest {
        path: f.rel,
        digest,
        size: f.stat.size,
        mode,
    }
}

#[cfg(test)]
mod tests;
