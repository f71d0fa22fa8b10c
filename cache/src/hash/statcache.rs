//! The persistent stat cache: (path, size, mtime, ctime, inode, mode) → digest, one binary
//! file per hashed tree under the store's `stat/` folder.
//!
//! A record is trusted only while every stat field still matches, and only if the file's
//! mtime was safely older than the moment its content was read (see [`racy`]): a file
//! modified in the same timestamp tick as that read could otherwise keep a matching stat and
//! a stale digest (git's "racy git" problem). Git's blob id is kept beside the digest when the
//! file was clean in git's index, so a fresh checkout of the same commit can reuse digests
//! without reading files.
//!
//! Format (little-endian): `PIPESTC2`, u64 count, records sorted by path, then a 64-bit
//! checksum of everything before it; a file that fails the check is ignored (the tree is
//! re-hashed, never misread).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::digest::Digest;
use crate::fsutil;

const MAGIC: &[u8; 8] = b"PIPESTC2";

/// The stat fields a record must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// mtime seconds.
    pub mtime_s: i64,
    /// mtime nanoseconds.
    pub mtime_ns: u32,
    /// ctime seconds.
    pub ctime_s: i64,
    /// ctime nanoseconds.
    pub ctime_ns: u32,
    /// Inode number.
    pub ino: u64,
    /// `st_mode` (type and permission bits).
    pub mode: u32,
}

impl Stat {
    /// The stat fields of an `lstat` result.
    pub fn of(m: &fs::Metadata) -> Stat {
        Stat {
            size: m.size(),
            mtime_s: m.mtime(),
            mtime_ns: m.mtime_nsec() as u32,
            ctime_s: m.ctime(),
            ctime_ns: m.ctime_nsec() as u32,
            ino: m.ino(),
            mode: m.mode(),
        }
    }

    /// mtime as a `SystemTime` (the epoch for times before it).
    pub fn mtime(&self) -> SystemTime {
        if self.mtime_s < 0 {
            return UNIX_EPOCH;
        }
        UNIX_EPOCH + Duration::new(self.mtime_s as u64, self.mtime_ns)
    }
}

/// Whether a file whose content was read at `read_at` may have been modified afterwards
/// without its mtime changing. File systems with whole-second timestamps (nanoseconds 0) get
/// a 2 s window; others 20 ms, which covers the kernel's coarse clock used for timestamps.
pub fn racy(stat: &Stat, read_at: SystemTime) -> bool {
    let window = if stat.mtime_ns == 0 {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(20)
    };
    match read_at.checked_sub(window) {
        Some(safe) => stat.mtime() >= safe,
        None => true,
    }
}

/// One record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The stat when hashed.
    pub stat: Stat,
    /// The content digest.
    pub digest: Digest,
    /// Git's blob id, when the file was clean in git's index.
    pub oid: Option<[u8; 20]>,
}

/// A 64-bit checksum of the file body (FxHash-style over 8-byte words). The file is a hint
/// written by atomic rename; the checksum only has to catch damage, and SHA-256 of 8 MB was a
/// visible share of the unchanged-tree check.
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    h
}

/// A loaded stat cache: records sorted by path, paths kept in the file's own buffer (no
/// allocation per record).
#[derive(Debug, Default)]
pub struct StatCache {
    buf: Vec<u8>,
    recs: Vec<(u32, u16, Record)>,
}

/// The stat cache file of a tree: `<dir>/<16 hex digits of the root's digest>.bin`.
pub fn file_for(dir: &Path, root: &Path) -> PathBuf {
    let canonical = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let id = Digest::of(canonical.as_os_str().as_encoded_bytes()).hex();
    dir.join(format!("{}.bin", &id[..16]))
}

impl StatCache {
    /// Loads a stat cache; a missing, foreign or damaged file gives an empty cache.
    pub fn load(path: &Path) -> StatCache {
        match fs::read(path) {
            // Another format version: rebuilt silently.
            Ok(bytes) if !bytes.starts_with(MAGIC) => StatCache::default(),
            Ok(bytes) => match Self::decode(bytes) {
                Some(c) => c,
                None => {
                    tracing::warn!(
                        "cache: stat cache `{}` is damaged; re-hashing the tree",
                        path.display()
                    );
                    StatCache::default()
                }
            },
            Err(_) => StatCache::default(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// The path of record `i`.
    pub fn path(&self, i: usize) -> &[u8] {
        let (off, len, _) = self.recs[i];
        &self.buf[off as usize..off as usize + len as usize]
    }

    /// Record `i`.
    pub fn record(&self, i: usize) -> &Record {
        &self.recs[i].2
    }

    /// The record of a path (binary search).
    pub fn get(&self, path: &str) -> Option<&Record> {
        let i = self
            .recs
            .binary_search_by(|(off, len, _)| {
                self.buf[*off as usize..*off as usize + *len as usize].cmp(path.as_bytes())
            })
            .ok()?;
        Some(&self.recs[i].2)
    }

    fn decode(bytes: Vec<u8>) -> Option<StatCache> {
        if bytes.len() < 8 + 8 + 8 || &bytes[..8] != MAGIC {
            return None;
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if checksum(body).to_le_bytes() != sum {
            return None;
        }
        let mut r = Reader { b: body, at: 8 };
        let count = r.u64()? as usize;
        let mut recs = Vec::with_capacity(count.min(1 << 24));
        let mut prev: &[u8] = &[];
        for n in 0..count {
            let len = r.u16()?;
            let off = r.at;
            let path = r.take(len as usize)?;
            // Sorted and unique, or it is not a file we wrote.
            if n > 0 && path <= prev {
                return None;
            }
            prev = path;
            let stat = Stat {
                size: r.u64()?,
                mtime_s: r.u64()? as i64,
                mtime_ns: r.u32()?,
                ctime_s: r.u64()? as i64,
                ctime_ns: r.u32()?,
                ino: r.u64()?,
                mode: r.u32()?,
            };
            let oid = match r.take(1)?[0] {
                0 => None,
                _ => {
                    let mut o = [0u8; 20];
                    o.copy_from_slice(r.take(20)?);
                    Some(o)
                }
            };
            let mut d = [0u8; 32];
            d.copy_from_slice(r.take(32)?);
            recs.push((
                u32::try_from(off).ok()?,
                len,
                Record {
                    stat,
                    digest: Digest::from_bytes(d),
                    oid,
                },
            ));
        }
        Some(StatCache { buf: bytes, recs })
    }

    /// Encodes records, which must be sorted by path, and writes them atomically (through a
    /// temp file in `tmp_dir`).
    pub fn save<'a>(
        path: &Path,
        tmp_dir: &Path,
        count: usize,
        records: impl Iterator<Item = (&'a str, &'a Record)>,
    ) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(16 + count * 120);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&0u64.to_le_bytes());
        let mut n = 0u64;
        for (path, rec) in records {
            let p = path.as_bytes();
            // Paths longer than 64 KiB are not recorded (they are simply re-hashed).
            let Ok(len) = u16::try_from(p.len()) else {
                continue;
            };
            n += 1;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(p);
            let s = &rec.stat;
            out.extend_from_slice(&s.size.to_le_bytes());
            out.extend_from_slice(&(s.mtime_s as u64).to_le_bytes());
            out.extend_from_slice(&s.mtime_ns.to_le_bytes());
            out.extend_from_slice(&(s.ctime_s as u64).to_le_bytes());
            out.extend_from_slice(&s.ctime_ns.to_le_bytes());
            out.extend_from_slice(&s.ino.to_le_bytes());
            out.extend_from_slice(&s.mode.to_le_bytes());
            match &rec.oid {
                Some(o) => {
                    out.push(1);
                    out.extend_from_slice(o);
                }
                None => out.push(0),
            }
            out.extend_from_slice(rec.digest.as_bytes());
        }
        out[8..16].copy_from_slice(&n.to_le_bytes());
        let sum = checksum(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        // A stat cache is a hint: no fsync, a torn file fails its checksum and is ignored.
        fsutil::write_atomic(tmp_dir, path, &out, false)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stat = Stat {
            size: 5,
            mtime_s: 1_700_000_000,
            mtime_ns: 7,
            ctime_s: 1_700_000_001,
            ctime_ns: 8,
            ino: 42,
            mode: 0o100644,
        };
        let a = Record {
            stat,
            digest: Digest::of(b"x"),
            oid: Some([9; 20]),
        };
        let c = Record {
            stat,
            digest: Digest::of(b"y"),
            oid: None,
        };
        let p = dir.path().join("s.bin");
        StatCache::save(&p, dir.path(), 2, [("a/b", &a), ("c", &c)].into_iter()).expect("save");
        let back = StatCache::load(&p);
        assert_eq!(back.len(), 2);
        assert_eq!(back.get("a/b"), Some(&a));
        assert_eq!(back.get("c"), Some(&c));
        assert_eq!(back.get("b"), None);
        assert_eq!(back.path(1), b"c");
        let mut bytes = fs::read(&p).expect("read");
        bytes[20] ^= 1;
        fs::write(&p, &bytes).expect("write");
        assert!(StatCache::load(&p).is_empty());
        // Unsorted input is not a file we wrote.
        StatCache::save(&p, dir.path(), 2, [("c", &c), ("a/b", &a)].into_iter()).expect("save");
        assert!(StatCache::load(&p).is_empty());
    }

    #[test]
    fn racy_window() {
        let now = SystemTime::now();
        let st = |age: Duration, ns: u32| {
            let t = (now - age).duration_since(UNIX_EPOCH).expect("time");
            Stat {
                size: 0,
                mtime_s: t.as_secs() as i64,
                mtime_ns: if ns == 0 { 0 } else { t.subsec_nanos().max(1) },
                ctime_s: 0,
                ctime_ns: 0,
                ino: 0,
                mode: 0,
            }
        };
        assert!(racy(&st(Duration::from_millis(5), 1), now));
        assert!(!racy(&st(Duration::from_millis(100), 1), now));
        assert!(racy(&st(Duration::from_millis(500), 0), now));
        assert!(!racy(&st(Duration::from_secs(5), 0), now));
    }
}
