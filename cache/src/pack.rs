//! Packs: the content of many files in one file.
//!
//! A pack is the files' bytes back to back, uncompressed, in index order; the index (paths,
//! modes, mtimes, sizes, offsets and each file's SHA-256) is kept beside it — in the entry's
//! manifest for `actions/cache`, in `pack.json` for an artifact. Writing one sequential file
//! instead of one file per input is what makes saving 10,000 files cost about what
//! `tar -c` costs; each file keeps its own digest, so a restore verifies every file while it
//! streams it out and renames nothing into place until all of them matched.
//!
//! Files are read, hashed and written on several threads, each owning a contiguous byte
//! range of the pack (positional writes, so the threads never share a cursor). The pack's
//! name ([`pack_id`]) is the SHA-256 of its index, which commits to every byte through the
//! files' digests; hashing the pack's bytes a second time would buy nothing.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::digest::{Digest, Hasher};
use crate::manifest::{BlobRef, FileEntry, FileKind};
use crate::store::StoreError;

/// Buffer size per thread for copying.
const BUF: usize = 1 << 20;

/// One path to pack: `path` on disk, stored as `rel` (a `/`-separated relative path).
#[derive(Clone, Debug)]
pub struct Source {
    /// Where it is.
    pub path: PathBuf,
    /// The path it is stored under.
    pub rel: String,
}

/// The number of threads packing and unpacking use: the cores, at least 2 (the work waits
/// on the disk as much as on the CPU), at most 8.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A file to copy into the pack.
struct Planned {
    index: usize,
    path: PathBuf,
    at: u64,
    size: u64,
}

/// Lists `sources` (folders with everything in them, children in name order) as index
/// entries with their offsets; returns the entries, the files to copy and the pack size.
fn plan(sources: &[Source]) -> Result<(Vec<FileEntry>, Vec<Planned>, u64), StoreError> {
    let mut entries = Vec::new();
    let mut files = Vec::new();
    let mut at = 0u64;
    let mut stack: Vec<Source> = sources.iter().rev().cloned().collect();
    while let Some(s) = stack.pop() {
        let rel = crate::restore::check_rel_path(&s.rel)
            .map_err(|_| StoreError::UnsafePath(s.rel.clone()))?;
        let meta = fs::symlink_metadata(&s.path).map_err(io_err("cannot stat", &s.path))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&s.path).map_err(io_err("cannot read link", &s.path))?;
            entries.push(FileEntry {
                path: rel,
                kind: FileKind::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
            });
        } else if ft.is_dir() {
            entries.push(FileEntry {
                path: rel.clone(),
                kind: FileKind::Dir,
            });
            let mut children = Vec::new();
            for e in fs::read_dir(&s.path).map_err(io_err("cannot list", &s.path))? {
                let e = e.map_err(io_err("cannot list", &s.path))?;
                match e.file_name().to_str() {
                    Some(n) => children.push(Source {
                        path: e.path(),
                        rel: format!("{rel}/{n}"),
                    }),
                    None => tracing::warn!(
                        "cache: skipping `{}`: its name is not UTF-8",
                        e.path().display()
                    ),
                }
            }
            children.sort_by(|a, b| b.rel.cmp(&a.rel));
            stack.extend(children);
        } else if ft.is_file() {
            let size = meta.len();
            let mtime_ns = u64::try_from(meta.mtime())
                .ok()
                .and_then(|s| s.checked_mul(1_000_000_000))
                .and_then(|s| s.checked_add(u64::try_from(meta.mtime_nsec()).ok()?));
            files.push(Planned {
                index: entries.len(),
                path: s.path.clone(),
                at,
                size,
            });
            entries.push(FileEntry {
                path: rel,
                kind: FileKind::File {
                    mode: meta.mode() & 0o777,
                    blob: BlobRef {
                        digest: Digest::of(b""),
                        size,
                        inline: None,
                    },
                    at: Some(at),
                    mtime_ns,
                },
            });
            at += size;
        } else {
            tracing::warn!(
                "cache: skipping `{}`: not a file, folder or link",
                s.path.display()
            );
        }
    }
    Ok((entries, files, at))
}

/// Splits `items` into at most `n` contiguous runs of about equal bytes.
pub(crate) fn split_by_bytes<T>(items: &[T], n: usize, size: impl Fn(&T) -> u64) -> Vec<&[T]> {
    let total: u64 = items.iter().map(&size).sum();
    let n = n.max(1) as u64;
    let mut out = Vec::new();
    let mut start = 0;
    let mut acc = 0u64;
    let mut part = 1u64;
    for (i, it) in items.iter().enumerate() {
        acc += size(it) + 1;
        if acc * n >= (total + items.len() as u64) * part && i + 1 < items.len() {
            out.push(&items[start..=i]);
            start = i + 1;
            part += 1;
        }
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// Packs `sources` into `out` (an empty file) on `threads` threads. Returns the index (files
/// carry their offset in `at`, folders and symlinks are listed too) and the pack's size.
/// A file that shrinks while it is read fails the pack.
pub fn write(
    out: &File,
    out_path: &Path,
    sources: &[Source],
    threads: usize,
) -> Result<(Vec<FileEntry>, u64), StoreError> {
    let (mut entries, files, total) = plan(sources)?;
    if total > 0 {
        out.set_len(total)
            .map_err(io_err("cannot write", out_path))?;
    }
    let failed = AtomicBool::new(false);
    let parts = split_by_bytes(&files, threads, |f| f.size);
    let results: Vec<Result<Vec<(usize, Digest)>, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                let failed = &failed;
                s.spawn(move || {
                    let r = copy_in(out, out_path, part, failed);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StoreError::Io {
                        what: "a packing thread panicked writing",
                        path: out_path.to_path_buf(),
                        source: io::Error::other("panic"),
                    })
                })
            })
            .collect()
    });
    for r in results {
        for (index, digest) in r? {
            if let FileKind::File { blob, .. } = &mut entries[index].kind {
                blob.digest = digest;
            }
        }
    }
    Ok((entries, total))
}

fn copy_in(
    out: &File,
    out_path: &Path,
    part: &[Planned],
    failed: &AtomicBool,
) -> Result<Vec<(usize, Digest)>, StoreError> {
    let mut buf = vec![0u8; BUF];
    let mut done = Vec::with_capacity(part.len());
    for f in part {
        if failed.load(Ordering::Relaxed) {
            break;
        }
        let mut src = File::open(&f.path).map_err(io_err("cannot read", &f.path))?;
        let mut h = Hasher::new();
        let mut left = f.size;
        let mut pos = f.at;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let n = match src.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(StoreError::Io {
                        what: "file changed while being packed:",
                        path: f.path.clone(),
                        source: io::Error::from(io::ErrorKind::UnexpectedEof),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("cannot read", &f.path)(e)),
            };
            h.update(&buf[..n]);
            out.write_all_at(&buf[..n], pos)
                .map_err(io_err("cannot write", out_path))?;
            pos += n as u64;
            left -= n as u64;
        }
        done.push((f.index, h.finish()));
    }
    Ok(done)
}

/// The id of a pack: the SHA-256 of its index (each packed file's path, digest, size and
/// offset), which commits to every byte through the files' digests.
pub fn pack_id(entries: &[FileEntry]) -> Digest {
    let mut h = Hasher::new();
    h.update(b"pipe-pack v1\n");
    for e in entries {
        if let FileKind::File {
            blob, at: Some(at), ..
        } = &e.kind
        {
            h.update(e.path.as_bytes());
            h.update(b"\0");
            h.update(blob.digest.as_bytes());
            h.update(&blob.size.to_le_bytes());
            h.update(&at.to_le_bytes());
        }
    }
    h.finish()
}

/// Checks every packed file's region of `pack` against its digest, streaming; returns the
/// first problem.
pub fn check(pack: &File, pack_size: u64, entries: &[FileEntry]) -> Result<(), String> {
    let len = pack.metadata().map_err(|e| e.to_string())?.len();
    if len != pack_size {
        return Err(format!("the pack has {len} bytes, not {pack_size}"));
    }
    let mut buf = vec![0u8; BUF];
    for e in entries {
        let FileKind::File {
            blob, at: Some(at), ..
        } = &e.kind
        else {
            continue;
        };
        let d = hash_region(pack, *at, blob.size, &mut buf, &mut |_| Ok(()))
            .map_err(|e| e.to_string())?;
        if d != blob.digest {
            return Err(format!("`{}` does not match its digest", e.path));
        }
    }
    Ok(())
}

/// Reads `size` bytes of `pack` from `at`, hashing them and handing each chunk to `sink`.
pub(crate) fn hash_region(
    pack: &File,
    at: u64,
    size: u64,
    buf: &mut [u8],
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<Digest> {
    let mut h = Hasher::new();
    let mut pos = at;
    let end = at + size;
    while pos < end {
        let n = ((end - pos) as usize).min(buf.len());
        pack.read_exact_at(&mut buf[..n], pos)?;
        h.update(&buf[..n]);
        sink(&buf[..n])?;
        pos += n as u64;
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EntryKey, GcLimits, LocalStore, StoreError, StoreOptions};
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    fn store(dir: &Path) -> LocalStore {
        LocalStore::open(dir, StoreOptions::default()).expect("open")
    }

    /// A tree with an executable, a private file, an empty file, a nested folder, an empty
    /// folder and a symlink, with a known mtime.
    fn tree(root: &Path) {
        fs::create_dir_all(root.join("d/sub")).expect("mkdir");
        fs::create_dir_all(root.join("d/empty")).expect("mkdir");
        fs::write(root.join("d/run.sh"), "#!/bin/sh\necho hi\n").expect("w");
        fs::set_permissions(root.join("d/run.sh"), fs::Permissions::from_mode(0o755)).expect("m");
        fs::write(root.join("d/secret"), "s").expect("w");
        fs::set_permissions(root.join("d/secret"), fs::Permissions::from_mode(0o600)).expect("m");
        fs::write(root.join("d/sub/big.bin"), vec![42u8; 3 << 20]).expect("w");
        fs::write(root.join("d/sub/empty.txt"), "").expect("w");
        std::os::unix::fs::symlink("sub/big.bin", root.join("d/link")).expect("ln");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        File::options()
            .write(true)
            .open(root.join("d/secret"))
            .expect("open")
            .set_modified(t)
            .expect("mtime");
    }

    fn save(s: &LocalStore, root: &Path, key: &str) -> crate::Manifest {
        let mut b = s.builder(&EntryKey::new("actions", key)).expect("b");
        b.add_packed(
            &[Source {
                path: root.join("d"),
                rel: "d".into(),
            }],
            3,
        )
        .expect("pack");
        let m = b.finish();
        s.put_entry(&m).expect("put");
        m
    }

    #[test]
    fn pack_round_trip_keeps_modes_links_empty_folders_and_mtimes() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = dir.path().join("src");
        tree(&src);
        let s = store(&dir.path().join("cache"));
        let m = save(&s, &src, "k");
        let pack = m.pack.clone().expect("packed");
        assert_eq!(pack.size, (3 << 20) + 18 + 1);
        assert_eq!(m.cas_blobs().count(), 0, "packed files are not CAS blobs");
        assert!(s.pack_path(&pack.id).is_file());
        let got = s
            .get_entry(&EntryKey::new("actions", "k"))
            .expect("get")
            .expect("hit");
        assert_eq!(got, m);
        let dst = dir.path().join("dst");
        let r = s.restore(&got, &dst).expect("restore");
        assert_eq!(r.written, 5, "{r:?}");
        let mode = |p: &str| fs::metadata(dst.join(p)).expect(p).permissions().mode() & 0o777;
        assert_eq!(mode("d/run.sh"), 0o755);
        assert_eq!(mode("d/secret"), 0o600);
        assert_eq!(
            fs::read(dst.join("d/sub/big.bin")).expect("r"),
            vec![42u8; 3 << 20]
        );
        assert_eq!(fs::read(dst.join("d/sub/empty.txt")).expect("r"), b"");
        assert_eq!(
            fs::read_to_string(dst.join("d/run.sh")).expect("r"),
            "#!/bin/sh\necho hi\n"
        );
        assert_eq!(
            fs::read_link(dst.join("d/link")).expect("link"),
            Path::new("sub/big.bin")
        );
        assert!(dst.join("d/empty").is_dir());
        assert_eq!(
            fs::metadata(dst.join("d/secret"))
                .expect("m")
                .modified()
                .expect("t"),
            fs::metadata(src.join("d/secret"))
                .expect("m")
                .modified()
                .expect("t")
        );
        // Restoring over the restored tree rewrites it, identically.
        s.restore(&got, &dst).expect("again");
        assert_eq!(fs::read(dst.join("d/secret")).expect("r"), b"s");
        let v = s.verify(false).expect("verify");
        assert!(v.problems.is_empty(), "{v:?}");
        assert_eq!((v.entries_ok, v.packs_ok), (1, 1));
        assert_eq!(s.usage().expect("usage").packs, 1);
    }

    #[test]
    fn truncated_pack_is_a_miss_with_a_warning() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = dir.path().join("src");
        tree(&src);
        let s = store(&dir.path().join("cache"));
        let m = save(&s, &src, "k");
        let pack = m.pack.clone().expect("packed");
        File::options()
            .write(true)
            .open(s.pack_path(&pack.id))
            .expect("open")
            .set_len(pack.size / 2)
            .expect("truncate");
        let key = EntryKey::new("actions", "k");
        match s.get_entry(&key) {
            Err(e @ StoreError::Damaged { .. }) => {
                assert!(e.to_string().contains("treating it as a miss"), "{e}");
            }
            other => panic!("expected a damaged entry, got {other:?}"),
        }
        // The entry is gone: the next lookup is a plain miss and the key can be saved again.
        assert!(s.get_entry(&key).expect("get").is_none());
        assert!(s.find_prefix("actions", "").expect("find").is_none());
        // A restore of the manifest in hand does not write anything either.
        let dst = dir.path().join("dst");
        let e = s.restore(&m, &dst).expect_err("miss");
        assert!(e.is_miss(), "{e}");
        assert!(!dst.join("d/run.sh").exists());
        let m2 = save(&s, &src, "k");
        assert_eq!(m2.pack.as_ref().map(|p| p.id), Some(pack.id));
        s.restore(&m2, &dst).expect("restore after re-save");
        assert_eq!(fs::read(dst.join("d/secret")).expect("r"), b"s");
    }

    #[test]
    fn corrupt_pack_restores_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = dir.path().join("src");
        tree(&src);
        let s = store(&dir.path().join("cache"));
        let m = save(&s, &src, "k");
        let pack = m.pack.clone().expect("packed");
        let pp = s.pack_path(&pack.id);
        let mut bytes = fs::read(&pp).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&pp, &bytes).expect("write");
        let v = s.verify(false).expect("verify");
        assert_eq!(v.problems.len(), 1, "{v:?}");
        let dst = dir.path().join("dst");
        let e = s.restore(&m, &dst).expect_err("corrupt");
        assert!(e.is_miss(), "{e}");
        let mut left = Vec::new();
        for e in walkdir(&dst) {
            if !e.is_dir() {
                left.push(e);
            }
        }
        assert!(
            left.is_empty(),
            "nothing is restored from a corrupt pack: {left:?}"
        );
        assert!(!pp.exists(), "the corrupt pack is removed");
    }

    fn walkdir(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                out.push(e.path());
                if e.path().is_dir() {
                    out.extend(walkdir(&e.path()));
                }
            }
        }
        out
    }

    #[test]
    fn concurrent_saves_of_one_key_leave_one_whole_entry() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = dir.path().join("cache");
        store(&cache);
        let srcs: Vec<PathBuf> = (0..4u8)
            .map(|i| {
                let src = dir.path().join(format!("src{i}"));
                fs::create_dir_all(src.join("d")).expect("mkdir");
                for f in 0..20 {
                    fs::write(src.join(format!("d/f{f}")), vec![i; 50_000 + f]).expect("w");
                }
                src
            })
            .collect();
        std::thread::scope(|sc| {
            for src in &srcs {
                let cache = &cache;
                sc.spawn(move || save(&store(cache), src, "same"));
            }
        });
        let s = store(&cache);
        let m = s
            .get_entry(&EntryKey::new("actions", "same"))
            .expect("get")
            .expect("hit");
        let dst = dir.path().join("dst");
        s.restore(&m, &dst).expect("restore");
        let first = fs::read(dst.join("d/f0")).expect("r")[0];
        for f in 0..20 {
            assert_eq!(
                fs::read(dst.join(format!("d/f{f}"))).expect("r"),
                vec![first; 50_000 + f],
                "every file comes from the same save"
            );
        }
    }

    #[test]
    fn gc_counts_and_evicts_packs() {
        let dir = tempfile::tempdir().expect("tmp");
        let src = dir.path().join("src");
        tree(&src);
        let s = store(&dir.path().join("cache"));
        let a = save(&s, &src, "a");
        fs::write(src.join("d/secret"), "changed").expect("w");
        let b = save(&s, &src, "b");
        let (pa, pb) = (a.pack.expect("a").id, b.pack.expect("b").id);
        assert_ne!(pa, pb);
        let old = SystemTime::now() - Duration::from_secs(60);
        let ea = s.root().join("ac/actions");
        for fan in fs::read_dir(&ea).expect("ls").flatten() {
            for f in fs::read_dir(fan.path()).expect("ls").flatten() {
                let m = crate::Manifest::decode(&fs::read(f.path()).expect("r")).expect("m");
                if m.key == "a" {
                    File::options()
                        .write(true)
                        .open(f.path())
                        .expect("open")
                        .set_modified(old)
                        .expect("mtime");
                }
            }
        }
        // Room for one pack: the least recently used entry and its pack go.
        let r = s
            .gc(GcLimits {
                max_size: (3 << 20) + (1 << 20),
                max_age: Duration::from_secs(3600),
            })
            .expect("gc");
        assert_eq!((r.entries_removed, r.blobs_removed), (1, 1), "{r:?}");
        assert!(r.bytes_freed >= 3 << 20, "{r:?}");
        assert!(!s.pack_path(&pa).exists());
        assert!(s.pack_path(&pb).exists());
        // A young pack no entry names yet (a save in progress) is kept.
        let mut bld = s.builder(&EntryKey::new("actions", "c")).expect("b");
        bld.add_packed(
            &[Source {
                path: src.join("d/secret"),
                rel: "x".into(),
            }],
            1,
        )
        .expect("pack");
        let c = bld.finish();
        s.gc(GcLimits {
            max_size: u64::MAX,
            max_age: Duration::from_secs(3600),
        })
        .expect("gc");
        assert!(s.pack_path(&c.pack.expect("c").id).exists());
        s.clear().expect("clear");
        assert_eq!(s.usage().expect("usage").packs, 0);
    }

    #[test]
    fn split_is_contiguous_and_balanced() {
        let sizes = [10u64, 10, 10, 10, 10, 10, 10, 10];
        let parts = split_by_bytes(&sizes, 2, |s| *s);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 4);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 8);
        let parts = split_by_bytes(&[100u64, 1, 1, 1], 4, |s| *s);
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 4);
        assert!(split_by_bytes(&[] as &[u64], 3, |s| *s).is_empty());
        assert_eq!(split_by_bytes(&[5u64], 3, |s| *s).len(), 1);
    }
}
