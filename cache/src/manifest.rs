//! Cache entries: what a key maps to.
//!
//! A manifest lists output files (paths, modes, blob digests), named attachments (a step's
//! log, for instance) and opaque metadata bytes that the caller fills (exit status, step
//! outputs, env-file effects). Blobs up to [`crate::store::StoreOptions::inline_max`] bytes
//! live inside the manifest, so a typical small entry is one file on disk.
//!
//! On disk (and on a remote's `/ac/`) a manifest is one header line and a JSON body:
//!
//! ```text
//! pipe-entry v1 <sha256 of the body, hex>\n
//! {"namespace":"step","key":"…","created_ms":…,"files":[…],"attachments":[…],"metadata":"<base64>"}
//! ```
//!
//! Decoding re-hashes the body, so a torn or bit-flipped manifest is rejected, never used.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// First word of the header line; the number after `v` is the format version.
pub const MANIFEST_MAGIC: &str = "pipe-entry v1";

/// A blob referenced by a manifest, stored in the CAS or inlined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Digest of the content.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// The content itself when small enough to inline.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub inline: Option<Vec<u8>>,
}

/// What one output path is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File {
        /// Permission bits (`0o644` or `0o755`: only the executable bit is kept).
        mode: u32,
        /// Its content.
        #[serde(flatten)]
        blob: BlobRef,
        /// Where its content starts in the entry's pack ([`Manifest::pack`]); `None`: the
        /// blob is inlined or in the CAS.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<u64>,
        /// Modification time in nanoseconds since the epoch, restored when recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtime_ns: Option<u64>,
    },
    /// A symbolic link (restored only if its target stays inside the restore root).
    Symlink {
        /// The link target as written.
        target: String,
    },
    /// A folder (recorded so empty folders come back).
    Dir,
}

/// One output path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the restore root, `/`-separated.
    pub path: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: FileKind,
}

/// A named blob that is not a file in the workspace (e.g. `log`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Its name.
    pub name: String,
    /// Its content.
    #[serde(flatten)]
    pub blob: BlobRef,
}

/// The pack of an entry: one file holding the content of every file whose `at` is set,
/// back to back (see [`crate::pack`]). Its name is [`crate::pack::pack_id`] of those files,
/// and each file's region is verified against the file's own digest when read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRef {
    /// The pack's id (`packs/ab/cdef…` in the store).
    pub id: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A cache entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The namespace the key lives in (`step`, `actions`, …).
    pub namespace: String,
    /// The key, exactly as looked up.
    pub key: String,
    /// When the entry was made, milliseconds since the epoch ("newest wins" uses it).
    pub created_ms: u64,
    /// Output files, sorted by path.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Named blobs.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Bytes the caller owns (exit status, outputs, …); the store never looks inside.
    #[serde(default, with = "b64")]
    pub metadata: Vec<u8>,
    /// The pack holding the content of packed files (`at` set), if any. A binary that
    /// predates packs ignores the field and sees their blobs missing: a miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<PackRef>,
}

/// A manifest that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// The header line is missing or has another version.
    #[error("not a pipe cache entry (bad header)")]
    BadHeader,
    /// The body does not hash to the digest in the header.
    #[error("entry is corrupt: its checksum does not match")]
    Checksum,
    /// The body is not a valid manifest.
    #[error("entry is malformed: {0}")]
    Malformed(String),
}

impl Manifest {
    /// A new, empty manifest.
    pub fn new(namespace: &str, key: &str) -> Self {
        Manifest {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            created_ms: crate::fsutil::now_millis(),
            files: Vec::new(),
            attachments: Vec::new(),
            metadata: Vec::new(),
            pack: None,
        }
    }

    /// Encodes the manifest for disk or a remote.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data into a Vec cannot fail; an empty body would be rejected on
        // decode, never misread.
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(body.len() + 80);
        out.extend_from_slice(MANIFEST_MAGIC.as_bytes());
        out.push(b' ');
        out.extend_from_slice(Digest::of(&body).hex().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&body);
        out
    }

    /// Decodes and checks a manifest.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(ManifestError::BadHeader)?;
        let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| ManifestError::BadHeader)?;
        let sum = header
            .strip_prefix(MANIFEST_MAGIC)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(ManifestError::BadHeader)?;
        let want: Digest = sum.parse().map_err(|_| ManifestError::BadHeader)?;
        let body = &bytes[nl + 1..];
        if Digest::of(body) != want {
            return Err(ManifestError::Checksum);
        }
        let m: Manifest =
            serde_json::from_slice(body).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        Ok(m)
    }

    /// Every blob the manifest references (files and attachments), inline or not.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobRef> {
        self.files
            .iter()
            .filter_map(|f| match &f.kind {
                FileKind::File { blob, .. } => Some(blob),
                _ => None,
            })
            .chain(self.attachments.iter().map(|a| &a.blob))
    }

    /// Blobs that live in the CAS (not inlined, not packed): what a store must hold for a
    /// hit, besides the pack.
    pub fn cas_blobs(&self) -> impl Iterator<Item = &BlobRef> {
        self.files
            .iter()
            .filter_map(|f| match &f.kind {
                FileKind::File { blob, at: None, .. } => Some(blob),
                _ => None,
            })
            .chain(self.attachments.iter().map(|a| &a.blob))
            .filter(|b| b.inline.is_none())
    }

    /// The attachment with this name.
    pub fn attachment(&self, name: &str) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.name == name)
    }

    /// Total size of the outputs and attachments in bytes.
    pub fn content_size(&self) -> u64 {
        self.blobs().map(|b| b.size).sum()
    }
}

mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

mod b64_opt {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&B64.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| B64.decode(s.as_bytes()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new("step", "abc");
        m.files.push(FileEntry {
            path: "out/a.txt".into(),
            kind: FileKind::File {
                mode: 0o644,
                blob: BlobRef {
                    digest: Digest::of(b"hi"),
                    size: 2,
                    inline: Some(b"hi".to_vec()),
                },
                at: None,
                mtime_ns: None,
            },
        });
        m.files.push(FileEntry {
            path: "out/link".into(),
            kind: FileKind::Symlink {
                target: "a.txt".into(),
            },
        });
        m.files.push(FileEntry {
            path: "out/empty".into(),
            kind: FileKind::Dir,
        });
        m.attachments.push(Attachment {
            name: "log".into(),
            blob: BlobRef {
                digest: Digest::of(b"big"),
                size: 3,
                inline: None,
            },
        });
        m.metadata = vec![0, 1, 2, 255];
        m
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = m.encode();
        assert!(bytes.starts_with(b"pipe-entry v1 "));
        assert_eq!(Manifest::decode(&bytes), Ok(m.clone()));
        assert_eq!(m.cas_blobs().count(), 1);
        assert_eq!(m.content_size(), 5);
    }

    #[test]
    fn damage_is_detected() {
        let bytes = sample().encode();
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(Manifest::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in [0, 20, bytes.len() / 2, bytes.len() - 2] {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            assert!(Manifest::decode(&b).is_err(), "flip at {at}");
        }
    }
}
