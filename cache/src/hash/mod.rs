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

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use serde::Serialize;

use crate::digest::{self, Digest};
use statcache::{Record, Stat, StatCache};

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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TreeSnapshot {
    /// Files sorted by path.
    pub files: Vec<FileDigest>,
    /// How they were obtained.
    pub stats: HashStats,
}

impl TreeSnapshot {
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

/// Hashes a tree; see the module docs.
#[derive(Clone, Debug)]
pub struct TreeHasher {
    root: PathBuf,
    stat_dir: Option<PathBuf>,
    git: bool,
    gitignore: bool,
    threads: usize,
}

struct Found {
    rel: String,
    stat: Stat,
    symlink: bool,
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
        }
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
        let mut cache = match &cache_file {
            Some(f) => StatCache::load(f),
            None => StatCache::default(),
        };
        let found = self.walk()?;
        let mut stats = HashStats::default();
        let mut files: Vec<FileDigest> = Vec::with_capacity(found.len());
        let mut misses: Vec<Found> = Vec::new();
        for f in found {
            match cache.records.get(&f.rel) {
                Some(rec) if rec.stat == f.stat => {
                    stats.stat_hits += 1;
                    files.push(file_digest(&f, rec.digest));
                }
                _ => misses.push(f),
            }
        }
        let mut changed = files.len() != cache.records.len();
        if !misses.is_empty() {
            changed = true;
            let index = if self.git {
                git::GitIndex::open(&self.root)
            } else {
                None
            };
            let mut to_hash: Vec<(Found, Option<[u8; 20]>)> = Vec::new();
            for f in misses {
                let oid = match (&index, f.symlink) {
                    (Some(ix), false) => ix.clean_oid(&f.rel, &f.stat),
                    _ => None,
                };
                if let (Some(o), Some(rec)) = (oid, cache.records.get(&f.rel))
                    && rec.oid == Some(o)
                {
                    stats.git_hits += 1;
                    let digest = rec.digest;
                    cache.records.insert(
                        f.rel.clone(),
                        Record {
                            stat: f.stat,
                            digest,
                            oid,
                        },
                    );
                    files.push(file_digest(&f, digest));
                    continue;
                }
                to_hash.push((f, oid));
            }
            let hashed = self.hash_files(to_hash)?;
            for (f, oid, digest, read_at) in hashed {
                stats.hashed += 1;
                if !f.symlink {
                    stats.bytes_hashed += f.stat.size;
                }
                if statcache::racy(&f.stat, read_at) {
                    stats.racy += 1;
                    cache.records.remove(&f.rel);
                } else {
                    cache.records.insert(
                        f.rel.clone(),
                        Record {
                            stat: f.stat,
                            digest,
                            oid,
                        },
                    );
                }
                files.push(file_digest(&f, digest));
            }
        }
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        stats.files = files.len();
        if changed && let (Some(cf), Some(dir)) = (&cache_file, &self.stat_dir) {
            // Forget records of files that are gone, so the cache tracks the tree.
            let live: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
            cache.records.retain(|k, _| live.contains(k.as_str()));
            let tmp = dir
                .parent()
                .map(|p| p.join("tmp"))
                .unwrap_or_else(|| dir.clone());
            let tmp = if tmp.is_dir() { tmp } else { dir.clone() };
            match fs::create_dir_all(dir).and_then(|_| cache.save(cf, &tmp)) {
                Ok(()) => stats.saved = true,
                Err(e) => {
                    tracing::warn!("cache: cannot save the stat cache `{}`: {e}", cf.display())
                }
            }
        }
        Ok(TreeSnapshot { files, stats })
    }

    /// Lists files and symlinks with their stat, in parallel.
    fn walk(&self) -> Result<Vec<Found>, HashError> {
        let results: Mutex<Vec<Vec<Found>>> = Mutex::new(Vec::new());
        let error: Mutex<Option<String>> = Mutex::new(None);
        let root = self.root.clone();
        let mut b = ignore::WalkBuilder::new(&self.root);
        b.hidden(false)
            .parents(self.gitignore)
            .ignore(false)
            .git_ignore(self.gitignore)
            .git_exclude(self.gitignore)
            .git_global(false)
            .require_git(false)
            .follow_links(false)
            .threads(self.threads)
            .filter_entry(|e| e.file_name() != ".git");
        b.build_parallel().run(|| {
            let results = &results;
            let error = &error;
            let root = &root;
            let mut local = Collector {
                out: Vec::new(),
                sink: results,
            };
            Box::new(move |entry| {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        if let Ok(mut g) = error.lock() {
                            g.get_or_insert_with(|| e.to_string());
                        }
                        return ignore::WalkState::Continue;
                    }
                };
                let Some(ft) = entry.file_type() else {
                    return ignore::WalkState::Continue;
                };
                if !(ft.is_file() || ft.is_symlink()) {
                    return ignore::WalkState::Continue;
                }
                let path = entry.path();
                let Some(rel) = path.strip_prefix(root).ok().and_then(|r| r.to_str()) else {
                    tracing::warn!(
                        "cache: skipping `{}`: its name is not UTF-8",
                        path.display()
                    );
                    return ignore::WalkState::Continue;
                };
                match fs::symlink_metadata(path) {
                    Ok(m) => local.out.push(Found {
                        rel: rel.to_owned(),
                        stat: Stat::of(&m),
                        symlink: m.file_type().is_symlink(),
                    }),
                    // Deleted while walking: it is simply not part of the tree.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        if let Ok(mut g) = error.lock() {
                            g.get_or_insert_with(|| format!("{}: {e}", path.display()));
                        }
                    }
                }
                ignore::WalkState::Continue
            })
        });
        if let Some(message) = error.into_inner().ok().flatten() {
            return Err(HashError::Walk {
                path: self.root.clone(),
                message,
            });
        }
        Ok(results
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect())
    }

    /// Reads and hashes files on all threads; returns each with the time its read began.
    #[allow(clippy::type_complexity)]
    fn hash_files(
        &self,
        items: Vec<(Found, Option<[u8; 20]>)>,
    ) -> Result<Vec<(Found, Option<[u8; 20]>, Digest, SystemTime)>, HashError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let next = AtomicUsize::new(0);
        let threads = self.threads.min(items.len().div_ceil(64)).max(1);
        let results: Mutex<Vec<(usize, Digest, SystemTime)>> =
            Mutex::new(Vec::with_capacity(items.len()));
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
                        for (i, (f, _)) in items.iter().enumerate().skip(start).take(16) {
                            let path = self.root.join(&f.rel);
                            let read_at = SystemTime::now();
                            let r = if f.symlink {
                                fs::read_link(&path)
                                    .map(|t| Digest::of(t.as_os_str().as_encoded_bytes()))
                            } else {
                                digest::hash_file_with(&path, &mut buf).map(|(d, _)| d)
                            };
                            match r {
                                Ok(d) => local.push((i, d, read_at)),
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
        let mut done: Vec<Option<(Digest, SystemTime)>> = vec![None; items.len()];
        for (i, d, t) in results.into_inner().unwrap_or_default() {
            done[i] = Some((d, t));
        }
        Ok(items
            .into_iter()
            .zip(done)
            .filter_map(|((f, oid), r)| r.map(|(d, t)| (f, oid, d, t)))
            .collect())
    }
}

struct Collector<'a> {
    out: Vec<Found>,
    sink: &'a Mutex<Vec<Vec<Found>>>,
}

impl Drop for Collector<'_> {
    fn drop(&mut self) {
        if let Ok(mut g) = self.sink.lock() {
            g.push(std::mem::take(&mut self.out));
        }
    }
}

fn file_digest(f: &Found, digest: Digest) -> FileDigest {
    let mode = if f.symlink {
        SYMLINK_MODE
    } else if f.stat.mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    FileDigest {
        path: f.rel.clone(),
        digest,
        size: f.stat.size,
        mode,
    }
}

#[cfg(test)]
mod tests;
