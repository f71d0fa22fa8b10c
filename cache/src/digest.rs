//! SHA-256 digests as a newtype, rendered as `sha256:<hex>`, and streaming file hashing.
//!
//! Every digest in the cache is SHA-256 (file contents, blobs, keys), so one type serves all
//! of them. `sha2` picks its SHA-NI path at run time, which hashes at about 1.8 GB/s here; for
//! large files reading and hashing overlap on two threads, so the read costs almost nothing
//! on top (performance.md §D, goal G8).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc;

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Digest of a byte slice.
    pub fn of(bytes: &[u8]) -> Self {
        let out = Sha256::digest(bytes);
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&out);
        Digest(raw)
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(raw: [u8; 32]) -> Self {
        Digest(raw)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// An incremental SHA-256 hasher producing a [`Digest`].
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// Finishes the digest.
    pub fn finish(self) -> Digest {
        let out = self.0.finalize();
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&out);
        Digest(raw)
    }
}

/// Files at least this large are hashed with a reader thread feeding the hashing thread.
const PIPELINE_MIN: u64 = 4 << 20;
/// Read size for large files: big enough that syscalls cost nothing next to hashing.
const CHUNK: usize = 1 << 20;

/// Hashes everything `reader` yields, returning the digest and the byte count.
pub fn hash_reader(mut reader: impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finish(), total))
}

/// Hashes a file's content. Small files are read in one go into `buf` (reused by the caller
/// across files to avoid an allocation per file); large ones go through [`hash_large`].
pub fn hash_file_with(path: &Path, buf: &mut Vec<u8>) -> io::Result<(Digest, u64)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len >= PIPELINE_MIN {
        return hash_large(file);
    }
    buf.clear();
    // One extra byte so a file that grew since the stat is still read to its end.
    buf.reserve(len as usize + 1);
    file.read_to_end(buf)?;
    Ok((Digest::of(buf), buf.len() as u64))
}

/// Hashes a file's content (see [`hash_file_with`]).
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    hash_file_with(path, &mut Vec::new())
}

/// Hashes a large file with a reader thread and the calling thread hashing, passing 1 MiB
/// buffers back and forth, so the wall time is about max(read, hash) instead of their sum.
pub fn hash_large(mut file: File) -> io::Result<(Digest, u64)> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(3);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(4);
    for _ in 0..4 {
        // The channel has room for all four buffers, so this cannot block or fail.
        let _ = empty_tx.send(vec![0u8; CHUNK]);
    }
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> io::Result<()> {
            while let Ok(mut buf) = empty_rx.recv() {
                let mut filled = 0;
                while filled < buf.len() {
                    match file.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                let done = filled < buf.len();
                if full_tx.send((buf, filled)).is_err() || done {
                    return Ok(());
                }
            }
            Ok(())
        });
        let mut hasher = Hasher::new();
        let mut total = 0u64;
        while let Ok((buf, n)) = full_rx.recv() {
            hasher.update(&buf[..n]);
            total += n as u64;
            if n < buf.len() {
                break;
            }
            // The reader may already have finished; a closed channel just ends the loop.
            let _ = empty_tx.send(buf);
        }
        drop(empty_tx);
        drop(full_rx);
        match reader.join() {
            Ok(Ok(())) => Ok((hasher.finish(), total)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("hashing reader thread panicked")),
        }
    })
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error parsing a digest string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest `{0}`: expected `sha256:` followed by 64 hex digits")]
pub struct ParseDigestError(String);

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        if hex_part.len() != 64 {
            return Err(ParseDigestError(s.to_owned()));
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut raw).map_err(|_| ParseDigestError(s.to_owned()))?;
        Ok(Digest(raw))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), d);
        assert!("sha256:zz".parse::<Digest>().is_err());
    }

    #[test]
    fn file_hashing_paths_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        for len in [0usize, 1, 4096, (4 << 20) - 1, 4 << 20, (9 << 20) + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            std::fs::write(&p, &data).expect("write");
            let (d, n) = hash_file(&p).expect("hash");
            assert_eq!(n, len as u64);
            assert_eq!(d, Digest::of(&data), "len {len}");
            assert_eq!(hash_reader(&data[..]).expect("reader").0, d);
        }
    }
}
