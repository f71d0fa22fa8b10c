//! Restoring an entry's files into a folder, safely.
//!
//! Rules (Turborepo's restore code had to learn each of them):
//! - a path must be relative, `/`-separated, without `..`, `.` or empty components;
//! - no file is ever written *through* a symlink: every existing parent component must be a
//!   real folder;
//! - a symlink is restored only if its target, resolved lexically from the link's folder,
//!   stays inside the root (absolute targets are refused), and symlinks come last;
//! - every blob is re-hashed while it is copied into a temp file beside its destination; only
//!   when *all* files verified are the temp files renamed into place, so a corrupt or missing
//!   blob makes the whole restore a miss and leaves the folder as it was;
//! - a file already present with the same content and mode is not rewritten.
//!
//! Restored files are not fsynced: they are outputs that can be restored again, and fsync
//! per file would dominate the cost of replaying small entries (performance.md G6).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::fsutil::{self, TEMP_PREFIX};
use crate::manifest::{BlobRef, FileEntry, FileKind, Manifest, PackRef};
use crate::store::LocalStore;

/// Restoring failed; the destination is unchanged except for folders it created.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A path in the entry is absolute, has `..`, or would be written through a symlink.
    #[error("refusing to restore `{path}`: {reason}")]
    Unsafe {
        /// The entry's path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A blob is not in the store.
    #[error("blob `{0}` is missing from the cache")]
    MissingBlob(Digest),
    /// A blob does not hash to its digest (it has been removed from the store).
    #[error("blob `{0}` is corrupt")]
    Corrupt(Digest),
    /// A folder is in the way of a file, or the reverse.
    #[error("cannot restore `{path}`: a {found} is in the way")]
    Conflict {
        /// The path.
        path: String,
        /// What is there.
        found: &'static str,
    },
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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The entry's pack is missing or does not have its recorded size.
    #[error("pack `{0}` is missing or truncated")]
    BadPack(Digest),
}

impl RestoreError {
    /// Whether this is a cache miss (missing or corrupt content) rather than a failure to
    /// write the destination.
    pub fn is_miss(&self) -> bool {
        matches!(
            self,
            RestoreError::MissingBlob(_) | RestoreError::Corrupt(_) | RestoreError::BadPack(_)
        )
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RestoreError + 'a {
    move |source| RestoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    /// Files (and links) written.
    pub written: usize,
    /// Files already present with the same content.
    pub unchanged: usize,
    /// Folders created.
    pub dirs: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Checks a relative path and returns it normalised (no trailing `/`).
pub fn check_rel_path(p: &str) -> Result<String, &'static str> {
    if p.is_empty() {
        return Err("empty path");
    }
    if p.starts_with('/') {
        return Err("absolute path");
    }
    if p.contains('\0') || p.contains('\\') {
        return Err("path contains NUL or a backslash");
    }
    let trimmed = p.trim_end_matches('/');
    for c in trimmed.split('/') {
        match c {
            "" | "." => return Err("empty or `.` component"),
            ".." => return Err("`..` component"),
            _ => {}
        }
    }
    Ok(trimmed.to_owned())
}

/// Whether a symlink at `link` (relative to the root) pointing at `target` stays inside the
/// root, resolving `..` lexically.
fn link_stays_inside(link: &str, target: &str) -> bool {
    if target.is_empty() || Path::new(target).is_absolute() {
        return false;
    }
    let mut depth: Vec<&str> = link.split('/').collect();
    depth.pop();
    for c in Path::new(target).components() {
        match c {
            Component::Normal(n) => depth.push(n.to_str().unwrap_or("?")),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Creates the folders leading to `rel` under `root`, refusing to pass through a symlink or
/// a non-folder.
fn make_parents(root: &Path, rel: &str, report: &mut RestoreReport) -> Result<(), RestoreError> {
    let mut cur = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(RestoreError::Unsafe {
                    path: rel.to_owned(),
                    reason: "a parent folder is a symlink",
                });
            }
            Ok(_) => {
                return Err(RestoreError::Conflict {
                    path: rel.to_owned(),
                    found: "file",
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::create_dir(&cur) {
                    Ok(()) => report.dirs += 1,
                    // A concurrent restore made it: fine if it is a folder (checked next time).
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("cannot create", &cur)(e)),
                }
            }
            Err(e) => return Err(io_err("cannot stat", &cur)(e)),
        }
    }
    Ok(())
}

/// A verified temp file waiting to be renamed into place.
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl LocalStore {
    /// Restores the entry's files under `root` (see the module docs for the rules).
    pub fn restore(&self, m: &Manifest, root: &Path) -> Result<RestoreReport, RestoreError> {
        if let Some(pack) = &m.pack {
            return self.restore_packed(m, pack, root);
        }
        let mut report = RestoreReport::default();
        // Check every path before touching anything.
        for f in &m.files {
            check_entry(f)?;
        }
        fs::create_dir_all(root).map_err(io_err("cannot create", root))?;
        let _lock = self.lock_shared()?;
        let mut staged: Vec<Staged> = Vec::new();
        let mut buf = Vec::new();
        for f in &m.files {
            let dest = root.join(&f.path);
            match &f.kind {
                FileKind::Dir => {
                    make_parents(root, &format!("{}/x", f.path), &mut report)?;
                }
                FileKind::Symlink { .. } => {}
                FileKind::File { mode, blob, .. } => {
                    make_parents(root, &f.path, &mut report)?;
                    match fs::symlink_metadata(&dest) {
                        Ok(meta) if meta.file_type().is_dir() => {
                            return Err(RestoreError::Conflict {
                                path: f.path.clone(),
                                found: "folder",
                            });
                        }
                        Ok(meta)
                            if meta.file_type().is_file()
                                && meta.len() == blob.size
                                && crate::store::mode_of(&meta) == *mode
                                && same_content(&dest, &blob.digest, &mut buf) =>
                        {
                            report.unchanged += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let tmp = self.stage(blob, &dest, *mode)?;
                    report.bytes += blob.size;
                    staged.push(Staged { tmp, dest });
                }
            }
        }
        // Everything verified: move into place.
        for mut s in staged {
            fs::rename(&s.tmp, &s.dest).map_err(io_err("cannot write", &s.dest))?;
            s.tmp = PathBuf::new();
            report.written += 1;
        }
        restore_links(&m.files, root, &mut report)?;
        Ok(report)
    }

    /// Restores an entry with a pack: see [`unpack`]. A pack that is missing, truncated or
    /// corrupt is removed (so saving the key again rewrites it) and the restore is a miss.
    fn restore_packed(
        &self,
        m: &Manifest,
        pack: &PackRef,
        root: &Path,
    ) -> Result<RestoreReport, RestoreError> {
        let _lock = self.lock_shared()?;
        let path = self.pack_path(&pack.id);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RestoreError::BadPack(pack.id));
            }
            Err(e) => return Err(io_err("cannot read", &path)(e)),
        };
        if file.metadata().map(|md| md.len()).ok() != Some(pack.size) {
            self.quarantine(&path, "pack is truncated");
            return Err(RestoreError::BadPack(pack.id));
        }
        let r = unpack(&file, &m.files, root, crate::pack::threads());
        if let Err(RestoreError::Corrupt(_)) = &r {
            self.quarantine(&path, "pack content does not match its index");
        }
        r
    }

    /// Copies a blob into a temp file beside `dest`, hashing as it goes.
    fn stage(&self, blob: &BlobRef, dest: &Path, mode: u32) -> Result<PathBuf, RestoreError> {
        let (mut out, guard) = create_staged(dest, mode)?;
        let tmp = guard.tmp.clone();
        let digest = match &blob.inline {
            Some(bytes) => {
                out.write_all(bytes).map_err(io_err("cannot write", &tmp))?;
                Digest::of(bytes)
            }
            None => {
                let Some(mut src) = self.open_blob(&blob.digest)? else {
                    return Err(RestoreError::MissingBlob(blob.digest));
                };
                let mut h = Hasher::new();
                let mut buf = vec![0u8; (blob.size as usize).clamp(1, 1 << 20)];
                loop {
                    let n = match src.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(io_err("cannot read", &self.blob_path(&blob.digest))(e));
                        }
                    };
                    h.update(&buf[..n]);
                    out.write_all(&buf[..n])
                        .map_err(io_err("cannot write", &tmp))?;
                }
                h.finish()
            }
        };
        if digest != blob.digest {
            if blob.inline.is_none() {
                self.quarantine(
                    &self.blob_path(&blob.digest),
                    "blob content does not match its digest",
                );
            } else {
                tracing::warn!(
                    "cache: inline blob `{}` is corrupt; treating as a miss",
                    blob.digest
                );
            }
            return Err(RestoreError::Corrupt(blob.digest));
        }
        // The umask may have cleared bits of `mode`; set them exactly.
        out.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io_err("cannot chmod", &tmp))?;
        drop(out);
        let mut guard = guard;
        guard.tmp = PathBuf::new();
        Ok(tmp)
    }

    /// Reads an attachment (e.g. a step log), verified; `None` if absent or corrupt.
    pub fn read_attachment(
        &self,
        m: &Manifest,
        name: &str,
    ) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
        match m.attachment(name) {
            Some(a) => self.read_ref(&a.blob),
            None => Ok(None),
        }
    }
}

/// An entry's path, checked: relative, no `..`, and a symlink must point inside the folder.
fn check_entry(f: &FileEntry) -> Result<(), RestoreError> {
    let p = check_rel_path(&f.path).map_err(|reason| RestoreError::Unsafe {
        path: f.path.clone(),
        reason,
    })?;
    if let FileKind::Symlink { target } = &f.kind
        && !link_stays_inside(&p, target)
    {
        return Err(RestoreError::Unsafe {
            path: f.path.clone(),
            reason: "the link points outside the restore folder",
        });
    }
    Ok(())
}

/// Unpacks a pack stored beside its index (a JSON list of [`FileEntry`], as the artifact
/// actions write them) into `root`: files and folders as [`unpack`] writes them (every file
/// verified before any is moved into place), then the symlinks as stored, after the files, so
/// none is ever written through.
pub fn unpack_packed(pack: &Path, index: &Path, root: &Path) -> Result<(), RestoreError> {
    let read_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| RestoreError::Io { what, path, source }
    };
    let bytes = fs::read(index).map_err(read_err("cannot read", index))?;
    let entries: Vec<FileEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        .map_err(read_err("malformed index", index))?;
    let file = fs::File::open(pack).map_err(read_err("cannot read", pack))?;
    let (links, rest): (Vec<FileEntry>, Vec<FileEntry>) = entries
        .into_iter()
        .partition(|e| matches!(e.kind, FileKind::Symlink { .. }));
    unpack(&file, &rest, root, crate::pack::threads())?;
    for l in links {
        let FileKind::Symlink { target } = &l.kind else {
            continue;
        };
        let rel = check_rel_path(&l.path).map_err(|reason| RestoreError::Unsafe {
            path: l.path.clone(),
            reason,
        })?;
        let dest = root.join(rel);
        if let Some(p) = dest.parent() {
            fs::create_dir_all(p).map_err(read_err("cannot create", p))?;
        }
        let _ = fs::remove_file(&dest);
        std::os::unix::fs::symlink(target, &dest).map_err(read_err("cannot link", &dest))?;
    }
    Ok(())
}

/// Writes the files of `entries` whose content is in `pack` (`at` set) under `root`, with
/// their folders and symlinks, on `threads` threads. The same rules as
/// [`LocalStore::restore`]: paths checked first, every file streamed into a temp file beside
/// its destination while hashed, and nothing renamed into place until every file matched
/// its digest (a corrupt pack restores nothing). Files are always rewritten, as `tar -x`
/// does; modes and recorded mtimes are set.
pub fn unpack(
    pack: &fs::File,
    entries: &[FileEntry],
    root: &Path,
    threads: usize,
) -> Result<RestoreReport, RestoreError> {
    let mut report = RestoreReport::default();
    for f in entries {
        check_entry(f)?;
        if let FileKind::File { at: None, .. } = &f.kind {
            return Err(RestoreError::Unsafe {
                path: f.path.clone(),
                reason: "the file is not in the pack",
            });
        }
    }
    fs::create_dir_all(root).map_err(io_err("cannot create", root))?;
    // Folders first (each parent checked once), then the files' destinations.
    let mut made: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut files = Vec::new();
    for f in entries {
        match &f.kind {
            FileKind::Dir => {
                if made.insert(f.path.as_str()) {
                    make_parents(root, &format!("{}/x", f.path), &mut report)?;
                }
            }
            FileKind::Symlink { .. } => {}
            FileKind::File {
                mode,
                blob,
                at: Some(at),
                mtime_ns,
            } => {
                let parent = f.path.rsplit_once('/').map_or("", |(p, _)| p);
                if made.insert(parent) {
                    make_parents(root, &f.path, &mut report)?;
                }
                let dest = root.join(&f.path);
                if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
                    return Err(RestoreError::Conflict {
                        path: f.path.clone(),
                        found: "folder",
                    });
                }
                files.push((dest, *mode, blob, *at, *mtime_ns));
            }
            FileKind::File { at: None, .. } => {}
        }
    }
    let failed = std::sync::atomic::AtomicBool::new(false);
    let parts = crate::pack::split_by_bytes(&files, threads, |f| f.2.size);
    type Part = Result<Vec<Staged>, RestoreError>;
    let results: Vec<Part> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                let failed = &failed;
                s.spawn(move || -> Part {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut staged = Vec::with_capacity(part.len());
                    for (dest, mode, blob, at, mtime_ns) in part.iter() {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let r = stage_region(pack, dest, *mode, blob, *at, *mtime_ns, &mut buf);
                        match r {
                            Ok(s) => staged.push(s),
                            Err(e) => {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(staged)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(RestoreError::Io {
                        what: "a restoring thread panicked in",
                        path: root.to_path_buf(),
                        source: io::Error::other("panic"),
                    })
                })
            })
            .collect()
    });
    let mut staged = Vec::with_capacity(files.len());
    let mut first_err = None;
    for r in results {
        match r {
            Ok(s) => staged.push(s),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    // Everything verified: move into place.
    for part in staged {
        for mut s in part {
            fs::rename(&s.tmp, &s.dest).map_err(io_err("cannot write", &s.dest))?;
            s.tmp = PathBuf::new();
            report.written += 1;
        }
    }
    report.bytes = files.iter().map(|f| f.2.size).sum();
    restore_links(entries, root, &mut report)?;
    Ok(report)
}

/// A new temp file beside `dest` with `mode`, and the guard that removes it unless it is
/// renamed into place.
fn create_staged(dest: &Path, mode: u32) -> Result<(fs::File, Staged), RestoreError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(fsutil::unique_name(TEMP_PREFIX));
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err("cannot create", &tmp))?;
    Ok((
        out,
        Staged {
            tmp,
            dest: dest.to_path_buf(),
        },
    ))
}

/// Streams one file's region of a pack into a temp file beside `dest`, verifying it.
fn stage_region(
    pack: &fs::File,
    dest: &Path,
    mode: u32,
    blob: &BlobRef,
    at: u64,
    mtime_ns: Option<u64>,
    buf: &mut [u8],
) -> Result<Staged, RestoreError> {
    let (mut out, mut guard) = create_staged(dest, mode)?;
    let tmp = guard.tmp.clone();
    let digest = crate::pack::hash_region(pack, at, blob.size, buf, &mut |b| out.write_all(b))
        .map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                RestoreError::BadPack(blob.digest)
            } else {
                io_err("cannot write", &tmp)(e)
            }
        })?;
    if digest != blob.digest {
        return Err(RestoreError::Corrupt(blob.digest));
    }
    // The umask may have cleared bits of `mode`; set them exactly.
    out.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("cannot chmod", &tmp))?;
    if let Some(ns) = mtime_ns {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
        let _ = out.set_times(fs::FileTimes::new().set_modified(t));
    }
    drop(out);
    let done = Staged {
        tmp: std::mem::take(&mut guard.tmp),
        dest: std::mem::take(&mut guard.dest),
    };
    Ok(done)
}

/// Creates the symlinks of `entries` (after the files, so none is written through them).
fn restore_links(
    entries: &[FileEntry],
    root: &Path,
    report: &mut RestoreReport,
) -> Result<(), RestoreError> {
    for f in entries {
        if let FileKind::Symlink { target } = &f.kind {
            make_parents(root, &f.path, report)?;
            let dest = root.join(&f.path);
            if let Ok(cur) = fs::read_link(&dest)
                && cur == Path::new(target)
            {
                report.unchanged += 1;
                continue;
            }
            if let Ok(meta) = fs::symlink_metadata(&dest) {
                if meta.is_dir() {
                    return Err(RestoreError::Conflict {
                        path: f.path.clone(),
                        found: "folder",
                    });
                }
                fs::remove_file(&dest).map_err(io_err("cannot replace", &dest))?;
            }
            std::os::unix::fs::symlink(target, &dest)
                .map_err(io_err("cannot create link", &dest))?;
            report.written += 1;
        }
    }
    Ok(())
}

fn same_content(path: &Path, want: &Digest, buf: &mut Vec<u8>) -> bool {
    match crate::digest::hash_file_with(path, buf) {
        Ok((d, _)) => d == *want,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FileEntry;
    use crate::store::{EntryKey, StoreOptions};

    fn store(dir: &Path) -> LocalStore {
        LocalStore::open(
            dir,
            StoreOptions {
                fsync: false,
                inline_max: 4,
                ..StoreOptions::default()
            },
        )
        .expect("open")
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(check_rel_path("a/b/"), Ok("a/b".into()));
        for bad in ["", "/etc/passwd", "a/../b", "..", "./a", "a//b", "a\\b"] {
            assert!(check_rel_path(bad).is_err(), "{bad}");
        }
        assert!(link_stays_inside("a/l", "b"));
        assert!(link_stays_inside("a/l", "../b"));
        assert!(!link_stays_inside("a/l", "../../b"));
        assert!(!link_stays_inside("l", "/etc"));
    }

    #[test]
    fn capture_and_restore_a_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir.path().join("cache"));
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("out/sub")).expect("mkdir");
        fs::create_dir_all(src.join("out/empty")).expect("mkdir");
        fs::write(src.join("out/a.txt"), b"a").expect("write");
        fs::write(src.join("out/sub/big.bin"), vec![3u8; 100_000]).expect("write");
        fs::write(src.join("out/run.sh"), b"#!/bin/sh\n").expect("write");
        fs::set_permissions(src.join("out/run.sh"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::os::unix::fs::symlink("sub/big.bin", src.join("out/link")).expect("link");
        let mut b = s.builder(&EntryKey::new("step", "k")).expect("builder");
        b.add_path(&src, "out").expect("add");
        let m = b.finish();
        s.put_entry(&m).expect("put");
        let m = s
            .get_entry(&EntryKey::new("step", "k"))
            .expect("get")
            .expect("hit");

        let dst = dir.path().join("dst");
        let r = s.restore(&m, &dst).expect("restore");
        assert_eq!(r.written, 4, "{r:?}");
        assert_eq!(
            fs::read(dst.join("out/sub/big.bin")).expect("read").len(),
            100_000
        );
        assert_eq!(
            fs::read_link(dst.join("out/link")).expect("link"),
            Path::new("sub/big.bin")
        );
        assert!(dst.join("out/empty").is_dir());
        let mode = fs::metadata(dst.join("out/run.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        // Again: nothing to write.
        let r = s.restore(&m, &dst).expect("restore");
        assert_eq!((r.written, r.unchanged), (0, 4), "{r:?}");
        // A changed file is rewritten.
        fs::write(dst.join("out/a.txt"), b"b").expect("write");
        let r = s.restore(&m, &dst).expect("restore");
        assert_eq!(r.written, 1);
        assert_eq!(fs::read(dst.join("out/a.txt")).expect("read"), b"a");
        // No temp files are left behind.
        let leftovers = fs::read_dir(dst.join("out"))
            .expect("ls")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn corrupt_blob_restores_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir.path().join("cache"));
        let mut b = s.builder(&EntryKey::new("step", "k")).expect("builder");
        b.add_bytes("one", 0o644, b"first file").expect("add");
        b.add_bytes("two", 0o644, b"second file").expect("add");
        let m = b.finish();
        let second = match &m.files[1].kind {
            FileKind::File { blob, .. } => blob.digest,
            _ => unreachable!(),
        };
        fs::write(s.blob_path(&second), b"second filE").expect("corrupt");
        let dst = dir.path().join("dst");
        let err = s.restore(&m, &dst).expect_err("corrupt");
        assert!(err.is_miss(), "{err}");
        assert!(!dst.join("one").exists(), "nothing was restored");
        assert_eq!(
            fs::read_dir(&dst).expect("ls").count(),
            0,
            "no temp files left"
        );
        let err = s.restore(&m, &dst).expect_err("now missing");
        assert!(matches!(err, RestoreError::MissingBlob(_)));
    }

    #[test]
    fn unsafe_entries_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(&dir.path().join("cache"));
        let dst = dir.path().join("dst");
        fs::create_dir_all(&dst).expect("mkdir");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, dst.join("escape")).expect("link");
        let file = |path: &str| FileEntry {
            path: path.into(),
            kind: FileKind::File {
                mode: 0o644,
                blob: BlobRef {
                    digest: Digest::of(b"x"),
                    size: 1,
                    inline: Some(b"x".to_vec()),
                },
                at: None,
                mtime_ns: None,
            },
        };
        for (entry, why) in [
            (file("../x"), "dotdot"),
            (file("/tmp/x"), "absolute"),
            (file("escape/x"), "through a symlink"),
            (
                FileEntry {
                    path: "l".into(),
                    kind: FileKind::Symlink {
                        target: "/etc/passwd".into(),
                    },
                },
                "absolute link",
            ),
            (
                FileEntry {
                    path: "a/l".into(),
                    kind: FileKind::Symlink {
                        target: "../../x".into(),
                    },
                },
                "escaping link",
            ),
        ] {
            let mut m = Manifest::new("step", "k");
            m.files.push(entry);
            let err = s.restore(&m, &dst).expect_err(why);
            assert!(matches!(err, RestoreError::Unsafe { .. }), "{why}: {err}");
        }
        assert_eq!(fs::read_dir(&outside).expect("ls").count(), 0);
    }
}
