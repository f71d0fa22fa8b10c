//! The local store: blobs by digest and entries by key, in a versioned folder.
//!
//! ```text
//! $PIPE_CACHE_DIR/cas-v1/
//!   VERSION                 "pipe cache v1"
//!   lock                    flock: shared for reads and writes, exclusive for gc/clear/repair
//!   gc-stamp                mtime = last automatic gc
//!   blobs/ab/cdef…          content-addressed blobs (raw bytes; name = SHA-256 hex)
//!   packs/ab/cdef…          packs: many files' bytes in one file (crate::pack; name = the
//!                           SHA-256 of the index in the manifest that refers to it)
//!   ac/<namespace>/ab/cd…   manifests; name = SHA-256 of (namespace, key)
//!   stat/<root id>.bin      stat caches of hashed trees (crate::hash)
//!   tmp/                    temp files, renamed into place when complete
//! ```
//!
//! Invariants: a file appears under `blobs/` or `ac/` only when complete (temp, rename); a blob
//! is re-hashed whenever it is read, and one that does not match its name is removed and
//! reported as a miss, never returned; a manifest carries its own checksum. Files are not
//! fsynced by default ([`StoreOptions::fsync`]): a crash can leave a torn blob or manifest,
//! which reads detect and treat as a miss, and a blob whose size is not the size being
//! stored is replaced rather than trusted for dedup. Every entry can be re-created by
//! running its step again, so 10,000 fsyncs for a 10,000-file entry buy nothing (Bazel's
//! disk cache, ccache and Turborepo do not fsync either); `PIPE_CACHE_FSYNC=1` turns them on. Identical blobs
//! are stored once (dedup by name). Size and age limits with LRU eviction (by the manifest's
//! mtime, refreshed on every hit) are on by default and enforced by an automatic `gc` at most
//! once per [`StoreOptions::gc_interval`].

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::{Digest, Hasher};
use crate::fsutil::{self, TEMP_PREFIX, TempFile};
use crate::lock::Lock;
use crate::manifest::{Attachment, BlobRef, FileEntry, FileKind, Manifest};

/// Name of the versioned store folder inside the cache directory.
pub const STORE_DIR: &str = "cas-v1";
const VERSION_TEXT: &str = "pipe cache v1\n";
/// Files larger than this are streamed into the store instead of read into memory.
const IN_MEMORY_MAX: u64 = 8 << 20;
/// Temp files older than this are leftovers of dead processes.
const STALE_TEMP: Duration = Duration::from_secs(3600);

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
        source: io::Error,
    },
    /// A namespace name is not `[a-z0-9_-]{1,64}`.
    #[error("invalid cache namespace `{0}`: use 1 to 64 of `a-z`, `0-9`, `_` and `-`")]
    Namespace(String),
    /// A path given to capture is absolute or leaves its root.
    #[error("unsafe path `{0}`: paths must be relative and must not contain `..`")]
    UnsafePath(String),
    /// The folder holds a store of another version.
    #[error("`{path}` holds a cache of another version ({found:?})")]
    Version {
        /// The store folder.
        path: PathBuf,
        /// The version line found.
        found: String,
    },
    /// An entry's pack is missing or truncated: the entry was removed (a miss).
    #[error("cache entry `{key}` is damaged ({why}); treating it as a miss")]
    Damaged {
        /// The entry's key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// A blob downloaded or copied in does not have the expected digest.
    #[error("blob content does not match `{expected}` (got `{actual}`)")]
    DigestMismatch {
        /// What the caller said.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
}

impl StoreError {
    /// Whether the error means the disk is full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if fsutil::is_no_space(source))
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Limits and knobs of a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Evict least recently used entries above this many bytes (blobs + manifests).
    pub max_size: u64,
    /// Evict entries not used for this long.
    pub max_age: Duration,
    /// Run `gc` automatically (at most once per `gc_interval`) after writes.
    pub auto_gc: bool,
    /// How often the automatic `gc` runs.
    pub gc_interval: Duration,
    /// Blobs up to this size are stored inside the manifest.
    pub inline_max: usize,
    /// Fsync files and folders on write. Off by default (see the module's invariants);
    /// on with [`ENV_FSYNC`]`=1`.
    pub fsync: bool,
}

/// Environment variable with the size budget (`500M`, `10G`).
pub const ENV_MAX_SIZE: &str = "PIPE_CACHE_MAX_SIZE";
/// Environment variable with the age budget (`12h`, `30d`).
pub const ENV_MAX_AGE: &str = "PIPE_CACHE_MAX_AGE";
/// Environment variable that makes every store write durable (`1`/`true`).
pub const ENV_FSYNC: &str = "PIPE_CACHE_FSYNC";

/// Parses a size: `10G`, `500M`, `64K`, `1T` (powers of 1024) or plain bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1u64 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        (i, 'T' | 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Parses an age: `14d`, `12h`, `30m`, `90s`.
pub fn parse_age(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (i, unit) = s.char_indices().last()?;
    let n: u64 = s[..i].parse().ok()?;
    let secs = match unit {
        'd' => n.checked_mul(86400)?,
        'h' => n.checked_mul(3600)?,
        'm' => n.checked_mul(60)?,
        's' => n,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

impl StoreOptions {
    /// The defaults with [`ENV_MAX_SIZE`] and [`ENV_MAX_AGE`] applied; `Err` names the bad
    /// variable and value.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut o = StoreOptions::default();
        if let Some(v) = env(ENV_MAX_SIZE).filter(|v| !v.is_empty()) {
            o.max_size =
                parse_size(&v).ok_or_else(|| format!("`{ENV_MAX_SIZE}={v}` is not a size"))?;
        }
        if let Some(v) = env(ENV_MAX_AGE).filter(|v| !v.is_empty()) {
            o.max_age =
                parse_age(&v).ok_or_else(|| format!("`{ENV_MAX_AGE}={v}` is not a duration"))?;
        }
        if let Some(v) = env(ENV_FSYNC).filter(|v| !v.is_empty()) {
            o.fsync = match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => return Err(format!("`{ENV_FSYNC}={v}` is not `1` or `0`")),
            };
        }
        Ok(o)
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_size: 10 << 30,
            max_age: Duration::from_secs(14 * 24 * 3600),
            auto_gc: true,
            gc_interval: Duration::from_secs(24 * 3600),
            inline_max: 16 << 10,
            fsync: false,
        }
    }
}

/// The key of an entry: a namespace (`step`, `actions`, …) and a key string.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryKey {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
}

impl EntryKey {
    /// An entry key; the namespace is checked when used.
    pub fn new(namespace: &str, key: &str) -> Self {
        EntryKey {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
        }
    }

    /// The digest that names the entry locally and on a remote's `/ac/`.
    pub fn digest(&self) -> Digest {
        let mut h = Hasher::new();
        h.update(b"pipe-ac-v1\0");
        h.update(self.namespace.as_bytes());
        h.update(b"\0");
        h.update(self.key.as_bytes());
        h.finish()
    }
}

fn check_namespace(ns: &str) -> Result<(), StoreError> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Namespace(ns.to_owned()))
    }
}

/// Summary of one entry, for `pipe cache ls`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EntryInfo {
    /// Namespace.
    pub namespace: String,
    /// Key.
    pub key: String,
    /// Creation time, ms since the epoch.
    pub created_ms: u64,
    /// Last use (the manifest's mtime), seconds since the epoch.
    pub last_used: u64,
    /// Number of output paths.
    pub files: usize,
    /// Bytes of outputs and attachments.
    pub size: u64,
    /// The manifest file.
    pub path: PathBuf,
}

/// What `gc` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Entries removed (too old or over the size limit).
    pub entries_removed: usize,
    /// Blobs removed (no longer referenced).
    pub blobs_removed: usize,
    /// Temp files of dead processes removed.
    pub temp_removed: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Entries left.
    pub entries_kept: usize,
    /// Bytes left (blobs + manifests).
    pub bytes_kept: u64,
}

/// Limits for one `gc` run.
#[derive(Clone, Copy, Debug)]
pub struct GcLimits {
    /// Size budget in bytes.
    pub max_size: u64,
    /// Age budget since last use.
    pub max_age: Duration,
}

/// One problem `verify` found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Entries that decode and whose blobs are present.
    pub entries_ok: usize,
    /// Blobs whose content matches their name.
    pub blobs_ok: usize,
    /// Packs whose every file matches the index of the entry that names it.
    pub packs_ok: usize,
    /// Temp files (unfinished writes; harmless, `gc` removes stale ones).
    pub temp_files: usize,
    /// Problems.
    pub problems: Vec<Problem>,
    /// Whether the problems were repaired (corrupt files removed).
    pub repaired: bool,
}

/// Space used by the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Number of entries.
    pub entries: usize,
    /// Number of blob files.
    pub blobs: usize,
    /// Number of pack files.
    pub packs: usize,
    /// Bytes of blobs and manifests.
    pub bytes: u64,
}

/// The local content-addressed store.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
    opts: StoreOptions,
}

impl LocalStore {
    /// Opens (creating if needed) the store inside `cache_dir` (normally `PIPE_CACHE_DIR`).
    pub fn open(cache_dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let root = cache_dir.join(STORE_DIR);
        for sub in ["blobs", "packs", "ac", "tmp", "stat"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err("cannot create", &p))?;
        }
        let vpath = root.join("VERSION");
        match fs::read_to_string(&vpath) {
            Ok(v) if v == VERSION_TEXT => {}
            Ok(v) if !v.is_empty() => {
                return Err(StoreError::Version {
                    path: root,
                    found: v.trim().to_owned(),
                });
            }
            // Missing, or empty because a creator died: (re)write it.
            _ => fsutil::write_atomic(&root.join("tmp"), &vpath, VERSION_TEXT.as_bytes(), true)
                .map_err(io_err("cannot write", &vpath))?,
        }
        Ok(LocalStore { root, opts })
    }

    /// The store folder (`…/cas-v1`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options it was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Where tree hashers keep their stat caches.
    pub fn stat_dir(&self) -> PathBuf {
        self.root.join("stat")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub(crate) fn lock_shared(&self) -> Result<Lock, StoreError> {
        let p = self.lock_path();
        Lock::shared(&p).map_err(io_err("cannot lock", &p))
    }

    fn lock_exclusive(&self) -> Result<Lock, StoreError> {
        let p = self.lock_path();
        Lock::exclusive(&p).map_err(io_err("cannot lock", &p))
    }

    /// Path of a blob.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        let h = d.hex();
        self.root.join("blobs").join(&h[..2]).join(&h[2..])
    }

    /// Path of a pack.
    pub fn pack_path(&self, id: &Digest) -> PathBuf {
        let h = id.hex();
        self.root.join("packs").join(&h[..2]).join(&h[2..])
    }

    fn entry_path(&self, key: &EntryKey) -> PathBuf {
        let h = key.digest().hex();
        self.root
            .join("ac")
            .join(&key.namespace)
            .join(&h[..2])
            .join(&h[2..])
    }

    /// Whether the blob is present (its content is checked when read).
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Whether the blob is present with `size` bytes: the check before skipping a write, so
    /// a blob torn by a crash (files are not fsynced) is written again, not trusted.
    pub fn has_blob_sized(&self, d: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(d)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    fn ensure_parent(path: &Path) -> Result<(), StoreError> {
        if let Some(parent) = path.parent()
            && !parent.is_dir()
        {
            fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
        }
        Ok(())
    }

    /// Moves a complete temp file of `size` bytes into the CAS under `d`, keeping an existing
    /// copy of the same size (one of another size was torn by a crash and is replaced).
    fn commit_blob(&self, tmp: TempFile, d: &Digest, size: u64) -> Result<(), StoreError> {
        let dest = self.blob_path(d);
        Self::ensure_parent(&dest)?;
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.len() != size) {
            let _ = fs::remove_file(&dest);
        }
        tmp.persist_noclobber(&dest, self.opts.fsync)
            .map_err(io_err("cannot store blob", &dest))?;
        Ok(())
    }

    /// Stores bytes as a blob; returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(bytes);
        let _lock = self.lock_shared()?;
        self.put_bytes_locked(&d, bytes)?;
        Ok(d)
    }

    fn put_bytes_locked(&self, d: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        if self.has_blob_sized(d, bytes.len() as u64) {
            return Ok(());
        }
        let tmp_dir = self.tmp_dir();
        let mut t =
            TempFile::new_in(&tmp_dir).map_err(io_err("cannot create temp in", &tmp_dir))?;
        let tp = t.path().to_path_buf();
        t.file()
            .and_then(|f| f.write_all(bytes))
            .map_err(io_err("cannot write", &tp))?;
        self.commit_blob(t, d, bytes.len() as u64)
    }

    /// Copies a file into the CAS (hashing while copying); returns its digest and size.
    pub fn put_file(&self, path: &Path) -> Result<(Digest, u64), StoreError> {
        let _lock = self.lock_shared()?;
        let blob = self.blob_from_file(path, 0)?;
        Ok((blob.digest, blob.size))
    }

    /// Stores a file's content as a blob reference: inline when at most `inline_max` bytes,
    /// else in the CAS. Must be called with the shared lock held.
    fn blob_from_file(&self, path: &Path, inline_max: usize) -> Result<BlobRef, StoreError> {
        let mut f = File::open(path).map_err(io_err("cannot read", path))?;
        let len = f.metadata().map_err(io_err("cannot stat", path))?.len();
        if len <= IN_MEMORY_MAX {
            let mut buf = Vec::with_capacity(len as usize + 1);
            f.read_to_end(&mut buf)
                .map_err(io_err("cannot read", path))?;
            let digest = Digest::of(&buf);
            let size = buf.len() as u64;
            if buf.len() <= inline_max {
                return Ok(BlobRef {
                    digest,
                    size,
                    inline: Some(buf),
                });
            }
            self.put_bytes_locked(&digest, &buf)?;
            return Ok(BlobRef {
                digest,
                size,
                inline: None,
            });
        }
        let (digest, size) = self.put_stream(&mut f, None)?;
        Ok(BlobRef {
            digest,
            size,
            inline: None,
        })
    }

    /// Streams `reader` into a temp file while hashing, then commits it under its digest.
    /// With `expected`, a mismatch discards the data and fails.
    fn put_stream(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        let tmp_dir = self.tmp_dir();
        let mut t =
            TempFile::new_in(&tmp_dir).map_err(io_err("cannot create temp in", &tmp_dir))?;
        let tp = t.path().to_path_buf();
        let mut h = Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        {
            let f = t.file().map_err(io_err("cannot write", &tp))?;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("cannot read blob source for", &tp)(e)),
                };
                h.update(&buf[..n]);
                f.write_all(&buf[..n])
                    .map_err(io_err("cannot write", &tp))?;
                total += n as u64;
            }
        }
        let digest = h.finish();
        if let Some(want) = expected
            && *want != digest
        {
            return Err(StoreError::DigestMismatch {
                expected: *want,
                actual: digest,
            });
        }
        self.commit_blob(t, &digest, total)?;
        Ok((digest, total))
    }

    /// Stores what `reader` yields as the blob `expected`, verifying the digest first (for
    /// downloads: a poisoned blob never enters the store).
    pub fn put_verified(
        &self,
        expected: &Digest,
        reader: &mut dyn Read,
    ) -> Result<u64, StoreError> {
        let _lock = self.lock_shared()?;
        self.put_stream(reader, Some(expected)).map(|(_, n)| n)
    }

    /// A writer for a blob downloaded from elsewhere (see [`BlobWriter`]).
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>, StoreError> {
        let tmp_dir = self.tmp_dir();
        let tmp = TempFile::new_in(&tmp_dir).map_err(io_err("cannot create temp in", &tmp_dir))?;
        Ok(BlobWriter {
            store: self,
            tmp,
            hasher: Hasher::new(),
            size: 0,
            _lock: self.lock_shared()?,
        })
    }

    /// Reads a blob, checking its digest. A corrupt blob is removed, logged and reported as
    /// absent.
    pub fn read_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let p = self.blob_path(d);
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot read", &p)(e)),
        };
        if Digest::of(&bytes) != *d {
            self.quarantine(&p, "blob content does not match its digest");
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Content of a blob reference (inline or from the CAS), verified.
    pub fn read_ref(&self, blob: &BlobRef) -> Result<Option<Vec<u8>>, StoreError> {
        match &blob.inline {
            Some(b) if Digest::of(b) == blob.digest => Ok(Some(b.clone())),
            Some(_) => {
                tracing::warn!(
                    "cache: inline blob `{}` is corrupt; treating as a miss",
                    blob.digest
                );
                Ok(None)
            }
            None => self.read_blob(&blob.digest),
        }
    }

    /// Opens a blob for streaming (the caller must verify the digest of what it reads).
    pub fn open_blob(&self, d: &Digest) -> Result<Option<File>, StoreError> {
        let p = self.blob_path(d);
        match File::open(&p) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot read", &p)(e)),
        }
    }

    /// Removes a corrupt file and warns: a corrupt entry is a miss plus a warning.
    pub(crate) fn quarantine(&self, path: &Path, why: &str) {
        tracing::warn!(
            "cache: {why}; removing `{}` (a miss, not an error)",
            path.display()
        );
        let _ = fs::remove_file(path);
    }

    /// Starts a manifest for `key`; files added to it are stored as blobs right away.
    pub fn builder(&self, key: &EntryKey) -> Result<EntryBuilder<'_>, StoreError> {
        check_namespace(&key.namespace)?;
        Ok(EntryBuilder {
            store: self,
            manifest: Manifest::new(&key.namespace, &key.key),
            _lock: self.lock_shared()?,
        })
    }

    /// Writes an entry (its CAS blobs must already be stored, e.g. by [`EntryBuilder`]).
    /// Replaces an older entry of the same key.
    pub fn put_entry(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let key = EntryKey::new(&manifest.namespace, &manifest.key);
        check_namespace(&key.namespace)?;
        {
            let _lock = self.lock_shared()?;
            let dest = self.entry_path(&key);
            Self::ensure_parent(&dest)?;
            fsutil::write_atomic(&self.tmp_dir(), &dest, &manifest.encode(), self.opts.fsync)
                .map_err(io_err("cannot write entry", &dest))?;
        }
        if self.opts.auto_gc {
            self.maybe_auto_gc();
        }
        Ok(())
    }

    /// Looks an entry up by exact key. A hit needs a valid manifest whose CAS blobs are all
    /// present; a hit refreshes the entry's last-use time (LRU). Corrupt manifests are
    /// removed with a warning and count as misses.
    pub fn get_entry(&self, key: &EntryKey) -> Result<Option<Manifest>, StoreError> {
        check_namespace(&key.namespace)?;
        let p = self.entry_path(key);
        let Some(m) = self.load_manifest(&p)? else {
            return Ok(None);
        };
        if m.namespace != key.namespace || m.key != key.key {
            self.quarantine(&p, "entry is stored under another key's name");
            return Ok(None);
        }
        if let Some(why) = self.pack_problem(&m) {
            self.quarantine(&p, &why);
            return Err(StoreError::Damaged { key: m.key, why });
        }
        if !self.blobs_present(&m, &p) {
            return Ok(None);
        }
        touch(&p);
        Ok(Some(m))
    }

    /// What is wrong with an entry's pack, if it has one: missing or not its size. (Its
    /// content is verified file by file when restored.)
    fn pack_problem(&self, m: &Manifest) -> Option<String> {
        let pack = m.pack.as_ref()?;
        let p = self.pack_path(&pack.id);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.len() == pack.size => None,
            Ok(md) => Some(format!(
                "pack `{}` has {} bytes, not {}",
                pack.id,
                md.len(),
                pack.size
            )),
            Err(_) => Some(format!("pack `{}` is missing", pack.id)),
        }
    }

    fn blobs_present(&self, m: &Manifest, manifest_path: &Path) -> bool {
        for b in m.cas_blobs() {
            if !self.has_blob_sized(&b.digest, b.size) {
                tracing::debug!(
                    "cache: entry `{}` misses blob `{}`",
                    manifest_path.display(),
                    b.digest
                );
                return false;
            }
        }
        true
    }

    fn load_manifest(&self, p: &Path) -> Result<Option<Manifest>, StoreError> {
        let bytes = match fs::read(p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot read", p)(e)),
        };
        match Manifest::decode(&bytes) {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                self.quarantine(p, &e.to_string());
                Ok(None)
            }
        }
    }

    /// The newest entry (by creation time) of `namespace` whose key starts with `prefix`
    /// (`actions/cache` restore-keys). Entries with missing blobs are skipped.
    pub fn find_prefix(
        &self,
        namespace: &str,
        prefix: &str,
    ) -> Result<Option<Manifest>, StoreError> {
        check_namespace(namespace)?;
        let mut best: Option<(Manifest, PathBuf)> = None;
        for p in self.manifest_files(Some(namespace))? {
            let Some(m) = self.load_manifest(&p)? else {
                continue;
            };
            if m.namespace != namespace || !m.key.starts_with(prefix) {
                continue;
            }
            if best
                .as_ref()
                .is_some_and(|(b, _)| b.created_ms >= m.created_ms)
            {
                continue;
            }
            if let Some(why) = self.pack_problem(&m) {
                self.quarantine(&p, &why);
                continue;
            }
            if self.blobs_present(&m, &p) {
                best = Some((m, p));
            }
        }
        Ok(best.map(|(m, p)| {
            touch(&p);
            m
        }))
    }

    /// Removes one entry; returns whether it existed.
    pub fn remove_entry(&self, key: &EntryKey) -> Result<bool, StoreError> {
        check_namespace(&key.namespace)?;
        let p = self.entry_path(key);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("cannot remove", &p)(e)),
        }
    }

    /// Every manifest file, of one namespace or all.
    fn manifest_files(&self, namespace: Option<&str>) -> Result<Vec<PathBuf>, StoreError> {
        let ac = self.root.join("ac");
        let namespaces: Vec<PathBuf> = match namespace {
            Some(ns) => vec![ac.join(ns)],
            None => list_dir(&ac)?,
        };
        let mut out = Vec::new();
        for ns in namespaces {
            for fan in list_dir(&ns)? {
                for f in list_dir(&fan)? {
                    out.push(f);
                }
            }
        }
        Ok(out)
    }

    fn blob_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut out = Vec::new();
        for fan in list_dir(&self.root.join("blobs"))? {
            out.extend(list_dir(&fan)?);
        }
        Ok(out)
    }

    fn pack_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut out = Vec::new();
        for fan in list_dir(&self.root.join("packs"))? {
            out.extend(list_dir(&fan)?);
        }
        Ok(out)
    }

    /// Every valid entry, newest use first (corrupt ones are skipped with a warning).
    pub fn entries(&self) -> Result<Vec<EntryInfo>, StoreError> {
        let mut out = Vec::new();
        for p in self.manifest_files(None)? {
            let last_used = match fs::metadata(&p) {
                Ok(m) => m.modified().map(fsutil::unix_secs).unwrap_or(0),
                Err(_) => continue,
            };
            let Some(m) = self.load_manifest(&p)? else {
                continue;
            };
            out.push(EntryInfo {
                namespace: m.namespace.clone(),
                key: m.key.clone(),
                created_ms: m.created_ms,
                last_used,
                files: m.files.len(),
                size: m.content_size(),
                path: p,
            });
        }
        out.sort_by(|a, b| {
            b.last_used
                .cmp(&a.last_used)
                .then(b.created_ms.cmp(&a.created_ms))
        });
        Ok(out)
    }

    /// Space used.
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let mut u = Usage::default();
        for p in self.manifest_files(None)? {
            u.entries += 1;
            u.bytes += fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
        for p in self.blob_files()? {
            u.blobs += 1;
            u.bytes += fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
        for p in self.pack_files()? {
            u.packs += 1;
            u.bytes += fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
        Ok(u)
    }

    /// Runs `gc` if the last one is older than the interval and nobody holds the lock.
    fn maybe_auto_gc(&self) {
        let stamp = self.root.join("gc-stamp");
        let due = match fs::metadata(&stamp).and_then(|m| m.modified()) {
            Ok(t) => t
                .elapsed()
                .map(|e| e >= self.opts.gc_interval)
                .unwrap_or(false),
            Err(_) => {
                // A new store: start the clock instead of collecting right away.
                let _ = fs::write(&stamp, b"");
                false
            }
        };
        if !due {
            return;
        }
        let Ok(Some(lock)) = Lock::try_exclusive(&self.lock_path()) else {
            return;
        };
        let _ = fs::write(&stamp, b"");
        let limits = GcLimits {
            max_size: self.opts.max_size,
            max_age: self.opts.max_age,
        };
        match self.gc_locked(limits) {
            Ok(r) => tracing::debug!("cache: automatic gc: {r:?}"),
            Err(e) => tracing::warn!("cache: automatic gc failed: {e}"),
        }
        drop(lock);
    }

    /// Evicts entries unused for longer than `max_age`, then least recently used entries
    /// until the store fits `max_size`, then unreferenced blobs and stale temp files.
    pub fn gc(&self, limits: GcLimits) -> Result<GcReport, StoreError> {
        let _lock = self.lock_exclusive()?;
        let r = self.gc_locked(limits)?;
        let _ = fs::write(self.root.join("gc-stamp"), b"");
        Ok(r)
    }

    fn gc_locked(&self, limits: GcLimits) -> Result<GcReport, StoreError> {
        let mut report = GcReport {
            temp_removed: self.remove_temps(STALE_TEMP)?,
            ..GcReport::default()
        };
        let now = SystemTime::now();
        struct Ent {
            path: PathBuf,
            used: SystemTime,
            size: u64,
            // Blob and pack files the entry needs.
            blobs: Vec<PathBuf>,
        }
        let mut entries = Vec::new();
        for p in self.manifest_files(None)? {
            let Ok(meta) = fs::metadata(&p) else { continue };
            let Some(m) = self.load_manifest(&p)? else {
                continue;
            };
            entries.push(Ent {
                used: meta.modified().unwrap_or(now),
                size: meta.len(),
                blobs: m
                    .cas_blobs()
                    .map(|b| self.blob_path(&b.digest))
                    .chain(m.pack.as_ref().map(|k| self.pack_path(&k.id)))
                    .collect(),
                path: p,
            });
        }
        // Blob and pack files by path, with their sizes.
        let mut blob_sizes: HashMap<PathBuf, u64> = HashMap::new();
        let mut young_packs: HashSet<PathBuf> = HashSet::new();
        for p in self.pack_files()? {
            let meta = fs::symlink_metadata(&p);
            let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
            // A pack is written before the manifest that names it: a young unreferenced one
            // may belong to a save in progress in another process.
            if meta
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() < STALE_TEMP)
            {
                young_packs.insert(p.clone());
            }
            blob_sizes.insert(p, size);
        }
        for p in self.blob_files()? {
            let digest = blob_digest_of_path(&p);
            let size = fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
            match digest {
                Some(_) => {
                    blob_sizes.insert(p, size);
                }
                None => {
                    // Not a blob name: nothing we wrote; remove it so sizes stay honest.
                    if fs::remove_file(&p).is_ok() {
                        report.bytes_freed += size;
                    }
                }
            }
        }
        // Newest use first; evict from the back.
        entries.sort_by_key(|e| std::cmp::Reverse(e.used));
        let mut refs: HashMap<PathBuf, usize> = HashMap::new();
        for e in &entries {
            for d in &e.blobs {
                *refs.entry(d.clone()).or_default() += 1;
            }
        }
        // Packs of evicted entries go now; only packs no entry named yet wait.
        young_packs.retain(|p| !refs.contains_key(p));
        let referenced: u64 = refs.keys().filter_map(|d| blob_sizes.get(d)).sum();
        let mut total: u64 = entries.iter().map(|e| e.size).sum::<u64>() + referenced;
        let mut keep = entries.len();
        while keep > 0 {
            let e = &entries[keep - 1];
            let too_old = now.duration_since(e.used).unwrap_or_default() > limits.max_age;
            if !too_old && total <= limits.max_size {
                break;
            }
            total -= e.size;
            for d in &e.blobs {
                if let Some(n) = refs.get_mut(d) {
                    *n -= 1;
                    if *n == 0 {
                        total -= blob_sizes.get(d).copied().unwrap_or(0);
                    }
                }
            }
            if fs::remove_file(&e.path).is_ok() {
                report.entries_removed += 1;
                report.bytes_freed += e.size;
            }
            keep -= 1;
        }
        for (p, size) in &blob_sizes {
            if refs.get(p).copied().unwrap_or(0) == 0
                && !young_packs.contains(p)
                && fs::remove_file(p).is_ok()
            {
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        report.entries_kept = keep;
        report.bytes_kept = total;
        Ok(report)
    }

    fn remove_temps(&self, older_than: Duration) -> Result<usize, StoreError> {
        let mut n = 0;
        for p in list_dir(&self.tmp_dir())? {
            let old = fs::symlink_metadata(&p)
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() >= older_than)
                .unwrap_or(true);
            if old && fs::remove_file(&p).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Re-hashes every blob and decodes every manifest. With `repair`, corrupt files,
    /// entries that reference missing blobs and all temp files are removed (under the
    /// exclusive lock, so no writer is cut short).
    pub fn verify(&self, repair: bool) -> Result<VerifyReport, StoreError> {
        let _lock = if repair {
            self.lock_exclusive()?
        } else {
            self.lock_shared()?
        };
        let mut r = VerifyReport {
            repaired: repair,
            ..VerifyReport::default()
        };
        let mut good_blobs: HashSet<Digest> = HashSet::new();
        for p in self.blob_files()? {
            let Some(want) = blob_digest_of_path(&p) else {
                r.problems.push(Problem {
                    path: p.clone(),
                    message: "not a blob name".into(),
                });
                if repair {
                    let _ = fs::remove_file(&p);
                }
                continue;
            };
            let got = File::open(&p).and_then(crate::digest::hash_reader);
            match got {
                Ok((d, _)) if d == want => {
                    r.blobs_ok += 1;
                    good_blobs.insert(d);
                }
                Ok((d, _)) => {
                    r.problems.push(Problem {
                        path: p.clone(),
                        message: format!("content hashes to `{d}`"),
                    });
                    if repair {
                        let _ = fs::remove_file(&p);
                    }
                }
                Err(e) => r.problems.push(Problem {
                    path: p.clone(),
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        for p in self.manifest_files(None)? {
            let bytes = match fs::read(&p) {
                Ok(b) => b,
                Err(e) => {
                    r.problems.push(Problem {
                        path: p,
                        message: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            let problem = match Manifest::decode(&bytes) {
                Err(e) => Some(e.to_string()),
                Ok(m) => {
                    let named = self.entry_path(&EntryKey::new(&m.namespace, &m.key));
                    if named != p {
                        Some("entry is stored under another key's name".to_owned())
                    } else if let Some(pack) = &m.pack {
                        // A pack is checked file by file against the index in its entry.
                        let pp = self.pack_path(&pack.id);
                        let problem = match File::open(&pp) {
                            Ok(f) => crate::pack::check(&f, pack.size, &m.files).err(),
                            Err(e) => Some(format!("cannot read: {e}")),
                        };
                        match problem {
                            Some(why) => {
                                if repair {
                                    let _ = fs::remove_file(&pp);
                                }
                                Some(format!("pack `{}` is damaged: {why}", pack.id))
                            }
                            None => {
                                r.packs_ok += 1;
                                m.cas_blobs()
                                    .find(|b| !good_blobs.contains(&b.digest))
                                    .map(|b| format!("blob `{}` is missing or corrupt", b.digest))
                            }
                        }
                    } else {
                        m.blobs()
                            .find(|b| match &b.inline {
                                Some(bytes) => Digest::of(bytes) != b.digest,
                                None => !good_blobs.contains(&b.digest),
                            })
                            .map(|b| format!("blob `{}` is missing or corrupt", b.digest))
                    }
                }
            };
            match problem {
                None => r.entries_ok += 1,
                Some(message) => {
                    if repair {
                        let _ = fs::remove_file(&p);
                    }
                    r.problems.push(Problem { path: p, message });
                }
            }
        }
        r.temp_files = list_dir(&self.tmp_dir())?.len();
        if repair {
            self.remove_temps(Duration::ZERO)?;
        }
        Ok(r)
    }

    /// Removes every entry, blob, stat cache and temp file. Returns the bytes freed.
    pub fn clear(&self) -> Result<u64, StoreError> {
        let _lock = self.lock_exclusive()?;
        let mut freed = 0;
        for sub in ["ac", "blobs", "packs", "stat", "tmp"] {
            let p = self.root.join(sub);
            freed += dir_size(&p);
            match fs::remove_dir_all(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot remove", &p)(e)),
            }
            fs::create_dir_all(&p).map_err(io_err("cannot create", &p))?;
        }
        Ok(freed)
    }

    /// Finds entries whose key or entry digest starts with `prefix` (for `pipe cache show`).
    pub fn find_any(&self, prefix: &str) -> Result<Vec<(Manifest, PathBuf)>, StoreError> {
        let mut out = Vec::new();
        for p in self.manifest_files(None)? {
            let Some(m) = self.load_manifest(&p)? else {
                continue;
            };
            let id = EntryKey::new(&m.namespace, &m.key).digest().hex();
            if m.key == prefix || m.key.starts_with(prefix) || id.starts_with(prefix) {
                out.push((m, p));
            }
        }
        out.sort_by_key(|b| std::cmp::Reverse(b.0.created_ms));
        Ok(out)
    }
}

/// Writes a blob whose digest is known in advance (a download), hashing as it goes;
/// [`BlobWriter::finish`] stores it only if the content matches.
#[derive(Debug)]
pub struct BlobWriter<'a> {
    store: &'a LocalStore,
    tmp: TempFile,
    hasher: Hasher,
    size: u64,
    _lock: Lock,
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tmp.file()?.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.file()?.flush()
    }
}

impl BlobWriter<'_> {
    /// Commits the blob if it hashes to `expected`; otherwise discards it.
    pub fn finish(self, expected: &Digest) -> Result<u64, StoreError> {
        let actual = self.hasher.finish();
        if actual != *expected {
            return Err(StoreError::DigestMismatch {
                expected: *expected,
                actual,
            });
        }
        self.store.commit_blob(self.tmp, expected, self.size)?;
        Ok(self.size)
    }
}

/// Adds outputs to a new manifest, storing their blobs as it goes. Holds the store's shared
/// lock until dropped, so `gc` cannot remove a blob before the manifest refers to it.
#[derive(Debug)]
pub struct EntryBuilder<'a> {
    store: &'a LocalStore,
    manifest: Manifest,
    _lock: Lock,
}

impl EntryBuilder<'_> {
    /// Adds a path under `root`: a file, a symlink, or a folder with everything in it.
    pub fn add_path(&mut self, root: &Path, rel: &str) -> Result<&mut Self, StoreError> {
        let rel = crate::restore::check_rel_path(rel)
            .map_err(|_| StoreError::UnsafePath(rel.to_owned()))?;
        let full = root.join(&rel);
        let meta = fs::symlink_metadata(&full).map_err(io_err("cannot stat", &full))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(io_err("cannot read link", &full))?;
            self.manifest.files.push(FileEntry {
                path: rel,
                kind: FileKind::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
            });
        } else if ft.is_dir() {
            self.manifest.files.push(FileEntry {
                path: rel.clone(),
                kind: FileKind::Dir,
            });
            let mut children: Vec<String> = Vec::new();
            for e in fs::read_dir(&full).map_err(io_err("cannot list", &full))? {
                let e = e.map_err(io_err("cannot list", &full))?;
                let name = e.file_name();
                match name.to_str() {
                    Some(n) => children.push(format!("{rel}/{n}")),
                    None => tracing::warn!(
                        "cache: skipping `{}`: its name is not UTF-8",
                        e.path().display()
                    ),
                }
            }
            children.sort();
            for c in children {
                self.add_path(root, &c)?;
            }
        } else if ft.is_file() {
            let blob = self
                .store
                .blob_from_file(&full, self.store.opts.inline_max)?;
            self.manifest.files.push(FileEntry {
                path: rel,
                kind: FileKind::File {
                    mode: mode_of(&meta),
                    blob,
                    at: None,
                    mtime_ns: None,
                },
            });
        } else {
            tracing::warn!(
                "cache: skipping `{}`: not a file, folder or link",
                full.display()
            );
        }
        Ok(self)
    }

    /// Adds a file with the given content.
    pub fn add_bytes(
        &mut self,
        rel: &str,
        mode: u32,
        bytes: &[u8],
    ) -> Result<&mut Self, StoreError> {
        let rel = crate::restore::check_rel_path(rel)
            .map_err(|_| StoreError::UnsafePath(rel.to_owned()))?;
        let blob = self.blob_from_bytes(bytes)?;
        self.manifest.files.push(FileEntry {
            path: rel,
            kind: FileKind::File {
                mode: if mode & 0o111 != 0 { 0o755 } else { 0o644 },
                blob,
                at: None,
                mtime_ns: None,
            },
        });
        Ok(self)
    }

    fn blob_from_bytes(&self, bytes: &[u8]) -> Result<BlobRef, StoreError> {
        let digest = Digest::of(bytes);
        if bytes.len() <= self.store.opts.inline_max {
            return Ok(BlobRef {
                digest,
                size: bytes.len() as u64,
                inline: Some(bytes.to_vec()),
            });
        }
        self.store.put_bytes_locked(&digest, bytes)?;
        Ok(BlobRef {
            digest,
            size: bytes.len() as u64,
            inline: None,
        })
    }

    /// Attaches a named blob (e.g. the step's log).
    pub fn attach(&mut self, name: &str, bytes: &[u8]) -> Result<&mut Self, StoreError> {
        let blob = self.blob_from_bytes(bytes)?;
        self.manifest.attachments.retain(|a| a.name != name);
        self.manifest.attachments.push(Attachment {
            name: name.to_owned(),
            blob,
        });
        Ok(self)
    }

    /// Adds `sources` (files, symlinks, folders with everything in them) as one pack: their
    /// content goes into a single file under `packs/`, read, hashed and written on
    /// `threads` threads (see [`crate::pack`]), instead of one blob per file. An entry has
    /// at most one pack; a second call fails.
    pub fn add_packed(
        &mut self,
        sources: &[crate::pack::Source],
        threads: usize,
    ) -> Result<&mut Self, StoreError> {
        if self.manifest.pack.is_some() {
            return Err(StoreError::Io {
                what: "an entry has one pack; cannot add another for",
                path: self.store.root.clone(),
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        let tmp_dir = self.store.tmp_dir();
        let mut t =
            TempFile::new_in(&tmp_dir).map_err(io_err("cannot create temp in", &tmp_dir))?;
        let tp = t.path().to_path_buf();
        let file = t.file().map_err(io_err("cannot write", &tp))?;
        let (entries, size) = crate::pack::write(file, &tp, sources, threads)?;
        let id = crate::pack::pack_id(&entries);
        let dest = self.store.pack_path(&id);
        LocalStore::ensure_parent(&dest)?;
        // The same id is the same content: keep a copy of the right size (one of another
        // size was torn by a crash and is replaced).
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.len() != size) {
            let _ = fs::remove_file(&dest);
        }
        t.persist_noclobber(&dest, self.store.opts.fsync)
            .map_err(io_err("cannot store pack", &dest))?;
        self.manifest.files.extend(entries);
        self.manifest.pack = Some(crate::manifest::PackRef { id, size });
        Ok(self)
    }

    /// Attaches a file's content under a name.
    pub fn attach_file(&mut self, name: &str, path: &Path) -> Result<&mut Self, StoreError> {
        let blob = self
            .store
            .blob_from_file(path, self.store.opts.inline_max)?;
        self.manifest.attachments.retain(|a| a.name != name);
        self.manifest.attachments.push(Attachment {
            name: name.to_owned(),
            blob,
        });
        Ok(self)
    }

    /// Sets the opaque metadata.
    pub fn metadata(&mut self, bytes: &[u8]) -> &mut Self {
        self.manifest.metadata = bytes.to_vec();
        self
    }

    /// The manifest (files sorted by path, duplicates removed); write it with
    /// [`LocalStore::put_entry`] or `Cache::save`.
    pub fn finish(mut self) -> Manifest {
        self.manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
        self.manifest.files.dedup_by(|a, b| a.path == b.path);
        self.manifest
    }
}

/// `0o755` if any executable bit is set, else `0o644` (git's rule).
pub fn mode_of(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Sets a file's mtime to now (the LRU clock) by path: no open and close per hit.
fn touch(p: &Path) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        },
    };
    let _ = rustix::fs::utimensat(CWD, p, &times, AtFlags::empty());
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(rd.flatten().map(|e| e.path()).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("cannot list", dir)(e)),
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_size(&e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

/// The digest a blob file is named after (`blobs/ab/cdef…`), if the name is one.
fn blob_digest_of_path(p: &Path) -> Option<Digest> {
    let name = p.file_name()?.to_str()?;
    if name.starts_with(TEMP_PREFIX) {
        return None;
    }
    let fan = p.parent()?.file_name()?.to_str()?;
    format!("{fan}{name}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> LocalStore {
        LocalStore::open(
            dir,
            StoreOptions {
                fsync: false,
                inline_max: 8,
                ..StoreOptions::default()
            },
        )
        .expect("open")
    }

    #[test]
    fn limits_parse_from_the_environment() {
        assert_eq!(parse_size("10G"), Some(10 << 30));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_age("14d"), Some(Duration::from_secs(14 * 86400)));
        assert_eq!(parse_age("12"), None);
        let env = |k: &str| match k {
            ENV_MAX_SIZE => Some("2M".to_owned()),
            ENV_MAX_AGE => Some("1h".to_owned()),
            _ => None,
        };
        let o = StoreOptions::from_env(&env).expect("parse");
        assert_eq!(
            (o.max_size, o.max_age),
            (2 << 20, Duration::from_secs(3600))
        );
        let bad = |k: &str| (k == ENV_MAX_AGE).then(|| "soon".to_owned());
        assert_eq!(
            StoreOptions::from_env(&bad).expect_err("bad"),
            "`PIPE_CACHE_MAX_AGE=soon` is not a duration"
        );
    }

    #[test]
    fn blobs_dedup_and_verify_on_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        let a = s.put_bytes(b"hello").expect("put");
        assert_eq!(s.put_bytes(b"hello").expect("put"), a);
        assert_eq!(s.blob_files().expect("ls").len(), 1);
        assert_eq!(s.read_blob(&a).expect("read"), Some(b"hello".to_vec()));
        fs::write(s.blob_path(&a), b"hellO").expect("corrupt");
        assert_eq!(
            s.read_blob(&a).expect("read"),
            None,
            "corrupt blob is a miss"
        );
        assert!(!s.blob_path(&a).exists(), "and is removed");
        let err = s
            .put_verified(&Digest::of(b"x"), &mut &b"y"[..])
            .expect_err("mismatch");
        assert!(matches!(err, StoreError::DigestMismatch { .. }));
        assert!(!s.has_blob(&Digest::of(b"y")));
    }

    #[test]
    fn entries_round_trip_and_lookup_by_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        let mut b = s
            .builder(&EntryKey::new("actions", "linux-deps-1"))
            .expect("b");
        b.add_bytes("small", 0o644, b"tiny").expect("add");
        b.add_bytes("big", 0o755, b"more than eight bytes")
            .expect("add");
        b.metadata(b"meta");
        let mut m1 = b.finish();
        m1.created_ms = 1000;
        s.put_entry(&m1).expect("put");
        let mut m2 = m1.clone();
        m2.key = "linux-deps-2".into();
        m2.created_ms = 2000;
        s.put_entry(&m2).expect("put");
        let got = s
            .get_entry(&EntryKey::new("actions", "linux-deps-1"))
            .expect("get")
            .expect("hit");
        assert_eq!(got, m1);
        assert_eq!(got.cas_blobs().count(), 1);
        let newest = s
            .find_prefix("actions", "linux-")
            .expect("find")
            .expect("hit");
        assert_eq!(newest.key, "linux-deps-2");
        assert!(s.find_prefix("actions", "mac-").expect("find").is_none());
        assert!(
            s.get_entry(&EntryKey::new("step", "linux-deps-1"))
                .expect("get")
                .is_none()
        );
        assert!(matches!(
            s.get_entry(&EntryKey::new("Bad NS", "k")),
            Err(StoreError::Namespace(_))
        ));
        // Losing a blob turns the entry into a miss.
        let big = got.cas_blobs().next().expect("blob").digest;
        fs::remove_file(s.blob_path(&big)).expect("rm");
        assert!(
            s.get_entry(&EntryKey::new("actions", "linux-deps-1"))
                .expect("get")
                .is_none()
        );
        let v = s.verify(false).expect("verify");
        assert_eq!(v.problems.len(), 2, "{v:?}");
    }

    #[test]
    fn torn_blob_is_rewritten_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        let bytes = vec![7u8; 4096];
        let d = s.put_bytes(&bytes).expect("put");
        // A crash before the data reached the disk leaves an empty or short file.
        fs::write(s.blob_path(&d), b"").expect("tear");
        assert!(s.has_blob(&d));
        assert!(!s.has_blob_sized(&d, 4096));
        assert_eq!(s.put_bytes(&bytes).expect("put again"), d);
        assert_eq!(s.read_blob(&d).expect("read"), Some(bytes.clone()));
        // The streaming path (files above the in-memory limit) replaces a torn blob too.
        let big = vec![3u8; (IN_MEMORY_MAX + 1) as usize];
        let src = dir.path().join("big");
        fs::write(&src, &big).expect("write");
        let (bd, n) = s.put_file(&src).expect("put file");
        fs::write(s.blob_path(&bd), &big[..10]).expect("tear");
        assert_eq!(s.put_file(&src).expect("put file again"), (bd, n));
        assert_eq!(fs::metadata(s.blob_path(&bd)).expect("stat").len(), n);
    }

    #[test]
    fn fsync_is_off_by_default_and_on_with_the_env() {
        assert!(!StoreOptions::default().fsync);
        let on = StoreOptions::from_env(&|k| (k == ENV_FSYNC).then(|| "1".to_string()));
        assert!(on.expect("parse").fsync);
        let bad = StoreOptions::from_env(&|k| (k == ENV_FSYNC).then(|| "maybe".to_string()));
        assert!(bad.expect_err("bad").contains("PIPE_CACHE_FSYNC"));
    }

    #[test]
    fn corrupt_manifest_is_a_miss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        let key = EntryKey::new("step", "k");
        let m = s.builder(&key).expect("b").finish();
        s.put_entry(&m).expect("put");
        let p = s.entry_path(&key);
        let mut bytes = fs::read(&p).expect("read");
        let n = bytes.len();
        bytes[n - 3] ^= 1;
        fs::write(&p, &bytes).expect("write");
        assert_eq!(s.verify(false).expect("verify").problems.len(), 1);
        assert!(s.get_entry(&key).expect("get").is_none());
        assert!(!p.exists());
        assert!(s.verify(false).expect("verify").problems.is_empty());
    }

    #[test]
    fn gc_evicts_lru_and_unreferenced_blobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        let payload = vec![7u8; 1000];
        for i in 0..5u8 {
            let mut b = s
                .builder(&EntryKey::new("step", &format!("k{i}")))
                .expect("b");
            let mut data = payload.clone();
            data[0] = i;
            b.add_bytes("f", 0o644, &data).expect("add");
            s.put_entry(&b.finish()).expect("put");
            let p = s.entry_path(&EntryKey::new("step", &format!("k{i}")));
            let t = SystemTime::now() - Duration::from_secs(100 - u64::from(i));
            File::options()
                .write(true)
                .open(&p)
                .expect("open")
                .set_modified(t)
                .expect("mtime");
        }
        s.put_bytes(&[9u8; 100]).expect("orphan");
        // k0 is the least recently used; using it makes k1 the oldest.
        s.get_entry(&EntryKey::new("step", "k0"))
            .expect("get")
            .expect("hit");
        let manifest_len = fs::metadata(s.entry_path(&EntryKey::new("step", "k0")))
            .expect("meta")
            .len();
        // Room for three entries: k1 and k2 (least recently used) must go.
        let budget = 3 * (1000 + manifest_len) + 50;
        let r = s
            .gc(GcLimits {
                max_size: budget,
                max_age: Duration::from_secs(3600),
            })
            .expect("gc");
        assert_eq!(r.blobs_removed, 3, "{r:?}");
        assert_eq!(r.entries_removed, 2, "{r:?}");
        assert!(
            s.get_entry(&EntryKey::new("step", "k0"))
                .expect("get")
                .is_some()
        );
        assert!(
            s.get_entry(&EntryKey::new("step", "k1"))
                .expect("get")
                .is_none()
        );
        assert!(
            s.get_entry(&EntryKey::new("step", "k2"))
                .expect("get")
                .is_none()
        );
        assert!(r.bytes_kept <= budget);
        let r = s
            .gc(GcLimits {
                max_size: u64::MAX,
                max_age: Duration::from_secs(1),
            })
            .expect("gc");
        assert_eq!(
            r.entries_kept, 1,
            "only the entry used just now survives: {r:?}"
        );
        assert!(s.verify(false).expect("verify").problems.is_empty());
        s.clear().expect("clear");
        assert_eq!(s.usage().expect("usage"), Usage::default());
    }
}
