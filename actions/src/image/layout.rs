//! The OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), its JSON
//! documents, verification (every blob read back is re-hashed, sizes checked), and the tar
//! that is both an OCI layout and a docker-save archive.
//!
//! JSON is serialised once, from types whose maps are `BTreeMap`s (so the bytes never depend
//! on hash order); every descriptor's digest and size refer to exactly those bytes, and from
//! then on only bytes are read, never re-serialised.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::ImageError;
use super::platform::Platform;

/// `application/vnd.oci.image.index.v1+json`.
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.manifest.v1+json`.
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.config.v1+json`.
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar+gzip`.
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `application/vnd.oci.image.layer.v1.tar+zstd`.
pub const MT_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker's manifest list (read in base images only).
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's manifest (read in base images only).
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The annotation that names a reference in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI platform object.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformJson {
    /// `amd64`.
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// `v7`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

impl From<&Platform> for PlatformJson {
    fn from(p: &Platform) -> Self {
        PlatformJson {
            architecture: p.arch.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
        }
    }
}

/// A content descriptor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// For manifests in an index.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<PlatformJson>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor of `bytes`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: sha256(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// An image manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    pub schema_version: u32,
    /// [`MT_MANIFEST`].
    #[serde(default)]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (also the shape of `index.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// 2.
    pub schema_version: u32,
    /// [`MT_INDEX`].
    #[serde(default)]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks the form of a digest (`sha256:` and 64 lowercase hex digits).
pub fn check_digest(d: &str) -> Result<&str, ImageError> {
    match d.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            Ok(h)
        }
        _ => Err(ImageError::Corrupt(format!("`{d}` is not a sha256 digest"))),
    }
}

/// An OCI image layout folder.
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens (creating if needed) a layout at `root`.
    pub fn create(root: &Path) -> Result<Layout, ImageError> {
        let blobs = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(|e| ImageError::io(&blobs, e))?;
        let l = Layout {
            root: root.to_path_buf(),
        };
        l.write_file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(l)
    }

    /// Opens an existing layout, checking `oci-layout`.
    pub fn open(root: &Path) -> Result<Layout, ImageError> {
        let marker = root.join("oci-layout");
        let text = std::fs::read_to_string(&marker).map_err(|e| {
            ImageError::Input(format!(
                "`{}` is not an OCI image layout (cannot read `oci-layout`: {e})",
                root.display()
            ))
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ImageError::Corrupt(format!("`{}`: {e}", marker.display())))?;
        if v.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(ImageError::Corrupt(format!(
                "`{}`: unsupported `imageLayoutVersion` (expected \"1.0.0\")",
                marker.display()
            )));
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/sha256`.
    pub fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// The path of a blob.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = check_digest(digest)?;
        Ok(self.blob_dir().join(hex))
    }

    /// Writes a file of the layout atomically.
    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let path = self.root.join(name);
        if std::fs::read(&path).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        write_atomic(&path, bytes)
    }

    /// Stores a blob (unless one with that digest and size is there) and describes it.
    pub fn put(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, ImageError> {
        let d = Descriptor::of(media_type, bytes);
        let path = self.blob_dir().join(d.hex());
        let present = std::fs::read(&path).is_ok_and(|old| sha256(&old) == d.digest);
        if !present {
            write_atomic(&path, bytes)?;
        }
        Ok(d)
    }

    /// Whether a blob with this digest and size is present (not re-hashed: callers that read
    /// it use [`Layout::read_blob`] or [`Layout::verify`]).
    pub fn has(&self, digest: &str, size: u64) -> bool {
        self.blob_path(digest)
            .ok()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.is_file() && m.len() == size)
    }

    /// Reads a blob and checks its size and digest.
    pub fn read_blob(&self, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(&d.digest)?;
        let bytes = std::fs::read(&path)
            .map_err(|e| ImageError::Corrupt(format!("blob `{}` is missing: {e}", d.digest)))?;
        if bytes.len() as u64 != d.size {
            return Err(ImageError::Corrupt(format!(
                "blob `{}` has {} bytes, its descriptor says {}",
                d.digest,
                bytes.len(),
                d.size
            )));
        }
        let got = sha256(&bytes);
        if got != d.digest {
            return Err(ImageError::Corrupt(format!(
                "blob `{}` is corrupt: its content hashes to `{got}`",
                d.digest
            )));
        }
        Ok(bytes)
    }

    /// Streams a blob through sha256, checking size and digest without holding it in memory.
    pub fn check_blob(&self, d: &Descriptor) -> Result<(), ImageError> {
        let path = self.blob_path(&d.digest)?;
        let f = File::open(&path)
            .map_err(|e| ImageError::Corrupt(format!("blob `{}` is missing: {e}", d.digest)))?;
        let mut r = HashingReader::new(f);
        io::copy(&mut r, &mut io::sink()).map_err(|e| ImageError::io(&path, e))?;
        r.check(d)
    }

    /// Writes `index.json` (one descriptor).
    pub fn set_index(&self, top: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let index = Index {
            schema_version: 2,
            media_type: Some(MT_INDEX.to_owned()),
            manifests: vec![top.clone()],
            annotations: BTreeMap::new(),
        };
        let bytes = to_json(&index)?;
        self.write_file("index.json", &bytes)?;
        Ok(bytes)
    }

    /// Reads `index.json`.
    pub fn index_json(&self) -> Result<Index, ImageError> {
        let path = self.root.join("index.json");
        let bytes = std::fs::read(&path).map_err(|e| ImageError::io(&path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Corrupt(format!("`{}`: {e}", path.display())))
    }

    /// Every blob `index.json` reaches, each read back and re-hashed; returns the digests.
    pub fn verify(&self) -> Result<BTreeSet<String>, ImageError> {
        let top = self.index_json()?;
        let mut seen = BTreeSet::new();
        for d in &top.manifests {
            self.verify_desc(d, &mut seen)?;
        }
        Ok(seen)
    }

    fn verify_desc(&self, d: &Descriptor, seen: &mut BTreeSet<String>) -> Result<(), ImageError> {
        if !seen.insert(d.digest.clone()) {
            return Ok(());
        }
        match d.media_type.as_str() {
            MT_INDEX | MT_DOCKER_LIST => {
                let bytes = self.read_blob(d)?;
                let idx: Index = serde_json::from_slice(&bytes)
                    .map_err(|e| ImageError::Corrupt(format!("index `{}`: {e}", d.digest)))?;
                for m in &idx.manifests {
                    self.verify_desc(m, seen)?;
                }
            }
            MT_MANIFEST | MT_DOCKER_MANIFEST => {
                let bytes = self.read_blob(d)?;
                let m: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| ImageError::Corrupt(format!("manifest `{}`: {e}", d.digest)))?;
                self.verify_desc(&m.config, seen)?;
                for l in &m.layers {
                    self.verify_desc(l, seen)?;
                }
            }
            _ => self.check_blob(d)?,
        }
        Ok(())
    }

    /// Removes blobs that `keep` does not name (what an earlier build left).
    pub fn remove_other_blobs(&self, keep: &BTreeSet<String>) -> Result<usize, ImageError> {
        let dir = self.blob_dir();
        let mut n = 0;
        for e in std::fs::read_dir(&dir).map_err(|e| ImageError::io(&dir, e))? {
            let e = e.map_err(|e| ImageError::io(&dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&format!("sha256:{name}")) {
                let _ = std::fs::remove_file(e.path());
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Serialises a document compactly (the bytes that get hashed).
pub fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| ImageError::Io(format!("cannot serialise JSON: {e}")))
}

/// Writes `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| ImageError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| ImageError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| ImageError::io(path, e.error))?;
    Ok(())
}

/// A reader that hashes and counts what it reads.
pub struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: Sha256::new(),
            count: 0,
        }
    }

    /// Compares what was read with a descriptor.
    pub fn check(self, d: &Descriptor) -> Result<(), ImageError> {
        if self.count != d.size {
            return Err(ImageError::Corrupt(format!(
                "blob `{}` has {} bytes, its descriptor says {}",
                d.digest, self.count, d.size
            )));
        }
        let got = format!("sha256:{}", hex::encode(self.hash.finalize()));
        if got != d.digest {
            return Err(ImageError::Corrupt(format!(
                "blob `{}` is corrupt: its content hashes to `{got}`",
                d.digest
            )));
        }
        Ok(())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// One image of a docker-save `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DockerSaveEntry {
    /// `blobs/sha256/<hex>` of the config.
    #[serde(rename = "Config")]
    pub config: String,
    /// `name:tag` names.
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    /// `blobs/sha256/<hex>` of each layer.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// Writes the layout as one tar that is also a docker-save archive: `oci-layout`,
/// `index.json`, the blobs, `manifest.json` and `repositories`; entries sorted, mtime 0,
/// owned by root. Every blob is re-hashed while it is copied in. Written through a temporary
/// file and renamed.
pub fn write_archive(
    layout: &Layout,
    blobs: &[Descriptor],
    docker: &[DockerSaveEntry],
    out: &Path,
) -> Result<(), ImageError> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| ImageError::io(dir, e))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, tmp));
    tar.mode(tar::HeaderMode::Deterministic);
    let header = |size: u64, dir: bool| {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_size(size);
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h
    };
    let err = |e: io::Error| ImageError::io(out, e);
    let manifest_json = to_json(&docker)?;
    let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for d in docker {
        let hex = d.config.trim_start_matches("blobs/sha256/").to_owned();
        for t in &d.repo_tags {
            if let Some((name, tag)) = t.rsplit_once(':') {
                repos
                    .entry(name.to_owned())
                    .or_default()
                    .insert(tag.to_owned(), hex.clone());
            }
        }
    }
    let repos_json = to_json(&repos)?;
    let index_json = std::fs::read(layout.root().join("index.json"))
        .map_err(|e| ImageError::io(&layout.root().join("index.json"), e))?;
    let layout_json = std::fs::read(layout.root().join("oci-layout"))
        .map_err(|e| ImageError::io(&layout.root().join("oci-layout"), e))?;
    // Sorted by name: blobs/, blobs/sha256/, blobs/sha256/<hex>…, index.json, manifest.json,
    // oci-layout, repositories.
    tar.append_data(&mut header(0, true), "blobs/", io::empty())
        .map_err(err)?;
    tar.append_data(&mut header(0, true), "blobs/sha256/", io::empty())
        .map_err(err)?;
    let mut sorted: Vec<&Descriptor> = blobs.iter().collect();
    sorted.sort_by(|a, b| a.digest.cmp(&b.digest));
    sorted.dedup_by(|a, b| a.digest == b.digest);
    for d in sorted {
        let path = layout.blob_path(&d.digest)?;
        let f = File::open(&path)
            .map_err(|e| ImageError::Corrupt(format!("blob `{}` is missing: {e}", d.digest)))?;
        let mut r = HashingReader::new(f.take(d.size + 1));
        tar.append_data(
            &mut header(d.size, false),
            format!("blobs/sha256/{}", d.hex()),
            &mut r,
        )
        .map_err(|e| ImageError::Corrupt(format!("blob `{}` cannot be archived: {e}", d.digest)))?;
        r.check(d)?;
    }
    for (name, bytes) in [
        ("index.json", &index_json),
        ("manifest.json", &manifest_json),
        ("oci-layout", &layout_json),
        ("repositories", &repos_json),
    ] {
        tar.append_data(&mut header(bytes.len() as u64, false), name, &bytes[..])
            .map_err(err)?;
    }
    let w = tar.into_inner().map_err(err)?;
    let tmp = w
        .into_inner()
        .map_err(|e| ImageError::io(out, io::Error::other(e.error().to_string())))?;
    tmp.persist(out).map_err(|e| ImageError::io(out, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_verified_on_read() {
        let t = tempfile::tempdir().expect("tmp");
        let l = Layout::create(t.path()).expect("layout");
        let d = l.put(MT_CONFIG, b"{\"a\":1}").expect("put");
        assert_eq!(l.read_blob(&d).expect("read"), b"{\"a\":1}");
        l.check_blob(&d).expect("check");
        // A wrong size in the descriptor.
        let mut wrong = d.clone();
        wrong.size += 1;
        let e = l.read_blob(&wrong).expect_err("size").to_string();
        assert!(e.contains("has 7 bytes, its descriptor says 8"), "{e}");
        let e = l.check_blob(&wrong).expect_err("size").to_string();
        assert!(e.contains("its descriptor says 8"), "{e}");
        // One flipped byte.
        let p = l.blob_path(&d.digest).expect("path");
        let mut bytes = std::fs::read(&p).expect("read");
        bytes[2] ^= 1;
        std::fs::write(&p, &bytes).expect("write");
        let e = l.read_blob(&d).expect_err("corrupt").to_string();
        assert!(e.contains("is corrupt"), "{e}");
        let e = l.check_blob(&d).expect_err("corrupt").to_string();
        assert!(e.contains("is corrupt"), "{e}");
        // `put` repairs a corrupt blob.
        l.put(MT_CONFIG, b"{\"a\":1}").expect("put");
        l.check_blob(&d).expect("repaired");
        // Not a digest.
        assert!(l.blob_path("sha256:../../etc/passwd").is_err());
        assert!(check_digest("sha256:ABC").is_err());
    }

    #[test]
    fn open_refuses_folders_that_are_not_layouts() {
        let t = tempfile::tempdir().expect("tmp");
        let e = Layout::open(t.path())
            .err()
            .expect("not a layout")
            .to_string();
        assert!(e.contains("is not an OCI image layout"), "{e}");
        std::fs::write(t.path().join("oci-layout"), r#"{"imageLayoutVersion":"2"}"#).expect("w");
        let e = Layout::open(t.path()).err().expect("version").to_string();
        assert!(e.contains("imageLayoutVersion"), "{e}");
    }
}
