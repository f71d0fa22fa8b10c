//! Container images as scan targets: an OCI layout directory, an OCI archive (a tar of a
//! layout), a `docker save` tar, or an image of the local engine (read with `docker save`).
//!
//! The layers are squashed into a private temporary directory, in order, applying
//! whiteouts (`.wh.NAME` deletes a lower file or folder, `.wh..wh..opq` empties a lower
//! folder), and every file remembers the layer (diff id) that wrote it last, so findings
//! name their layer. The temporary directory is removed when the [`Unpacked`] is dropped.
//!
//! Hostile archives: entries are written only below the temporary directory (absolute paths
//! are made relative, `..` entries are skipped with a warning), symbolic links are never
//! created (so nothing is ever written through one), devices and FIFOs are skipped, files
//! over `--max-file-size` are not written, and an image that unpacks to more than
//! [`MAX_UNPACKED`] stops with an error (decompression bombs).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{TargetKind, Warning};

/// The most an image may unpack to (all layers, files written or not).
pub const MAX_UNPACKED: u64 = 8 * 1024 * 1024 * 1024;

/// Largest manifest, index or config file read.
const MAX_JSON: u64 = 16 * 1024 * 1024;

/// The image in the report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ImageInfo {
    /// `oci-layout`, `oci-archive`, `docker-archive`; `engine` when read from the engine.
    pub source: &'static str,
    /// The config's digest (the image id).
    pub config_digest: String,
    /// OS of the config.
    pub os: String,
    /// Architecture of the config.
    pub architecture: String,
    /// Layers, bottom first.
    pub layers: Vec<LayerInfo>,
}

/// One layer.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LayerInfo {
    /// 0-based, bottom first.
    pub index: usize,
    /// The digest of the uncompressed layer (config `rootfs.diff_ids`).
    pub diff_id: String,
    /// The instruction that made it (config history), when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// Why an image cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The input is not an image or is damaged (exit 2).
    #[error("cannot read image `{path}`: {reason}")]
    Bad {
        /// The target.
        path: String,
        /// Why.
        reason: String,
    },
    /// The engine cannot be reached (exit 3).
    #[error("cannot read image `{reference}` from the container engine: {reason}")]
    Engine {
        /// The image reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The engine has no such image (exit 2).
    #[error("the container engine has no image `{reference}`: {reason}")]
    NoImage {
        /// The image reference.
        reference: String,
        /// What the engine said.
        reason: String,
    },
    /// Local I/O (exit 3).
    #[error("cannot unpack the image: {0}")]
    Io(String),
}

impl ImageError {
    /// Whether this is an infrastructure error (exit 3).
    pub fn is_infra(&self) -> bool {
        matches!(self, ImageError::Engine { .. } | ImageError::Io(_))
    }

    /// What to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            ImageError::Engine { .. } => Some(
                "start Docker, or scan a saved image instead: `docker save -o image.tar NAME && pipe scan image image.tar`"
                    .into(),
            ),
            ImageError::NoImage { .. } => Some("list local images with `docker images`".into()),
            _ => None,
        }
    }
}

/// The image reference to read from the engine, if the target names one: `docker:NAME`
/// (or `docker-daemon:NAME`), or, for image targets, anything that is not a path.
pub fn engine_ref(raw: &Path, resolved: &Path, kind: TargetKind) -> Option<String> {
    if kind != TargetKind::Image {
        return None;
    }
    let s = raw.to_string_lossy();
    for prefix in ["docker:", "docker-daemon:"] {
        if let Some(r) = s.strip_prefix(prefix) {
            return Some(r.trim_start_matches("//").to_owned());
        }
    }
    // What looks like a path is a path (a typo is "no such file", not an engine lookup).
    let pathlike = s.starts_with('/')
        || s.starts_with("./")
        || s.starts_with("../")
        || [".tar", ".tar.gz", ".tgz", ".oci"]
            .iter()
            .any(|e| s.ends_with(e));
    if resolved.exists() || pathlike {
        None
    } else {
        Some(s.into_owned())
    }
}

/// A private temporary directory, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, ImageError> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for k in 0..100u32 {
            let p = base.join(format!(
                "pipe-scan-image-{}-{nanos}-{k}",
                std::process::id()
            ));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(TempDir(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(ImageError::Io(super::io_reason(&e))),
            }
        }
        Err(ImageError::Io("cannot create a temporary directory".into()))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An image squashed into a temporary directory.
#[derive(Debug)]
pub struct Unpacked {
    tmp: TempDir,
    /// The image.
    pub info: ImageInfo,
    /// Problems met while unpacking.
    pub warnings: Vec<Warning>,
    /// File → diff id of the layer that wrote it.
    owners: BTreeMap<String, usize>,
}

impl Unpacked {
    /// The squashed root file system.
    pub fn root(&self) -> PathBuf {
        self.tmp.0.join("rootfs")
    }

    /// The layer (diff id) that wrote a file, by its path relative to the root.
    pub fn layer_of(&self, rel: &str) -> Option<String> {
        let i = *self.owners.get(rel.trim_start_matches('/'))?;
        self.info.layers.get(i).map(|l| l.diff_id.clone())
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Bad {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// A path inside an archive made safe: relative, no `..`, `/`-separated. `None` when it
/// would leave the root.
fn clean(name: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => return None,
        }
    }
    Some(parts.join("/"))
}

/// Opens a file that may be gzip-compressed; zstd is refused with a clear reason.
fn open_maybe_compressed(path: &Path) -> Result<Box<dyn Read>, String> {
    let mut f = std::fs::File::open(path).map_err(|e| super::io_reason(&e))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(|e| super::io_reason(&e))?;
    let f = std::fs::File::open(path).map_err(|e| super::io_reason(&e))?;
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        return Ok(Box::new(flate2::read::MultiGzDecoder::new(
            std::io::BufReader::new(f),
        )));
    }
    if n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        return Err("zstd-compressed layers are not supported".into());
    }
    Ok(Box::new(std::io::BufReader::new(f)))
}

/// Unpacks an outer archive (OCI archive, docker-save tar) into `dest`: regular files and
/// folders only, safe paths only.
fn extract_outer(archive: &Path, dest: &Path) -> Result<(), ImageError> {
    let reader = open_maybe_compressed(archive).map_err(|r| bad(archive, r))?;
    let mut ar = tar::Archive::new(reader);
    let entries = ar
        .entries()
        .map_err(|e| bad(archive, format!("not a tar archive: {e}")))?;
    let mut total = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(archive, format!("damaged tar archive: {e}")))?;
        let kind = entry.header().entry_type();
        let Ok(name) = entry.path().map(|p| p.into_owned()) else {
            continue;
        };
        let Some(rel) = clean(&name) else {
            continue;
        };
        if rel.is_empty() {
            continue;
        }
        let out = dest.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&out).map_err(|e| ImageError::Io(super::io_reason(&e)))?;
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        total = total.saturating_add(entry.size());
        if total > MAX_UNPACKED {
            return Err(bad(archive, "the archive is larger than 8 GiB unpacked"));
        }
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ImageError::Io(super::io_reason(&e)))?;
        }
        let mut f =
            std::fs::File::create(&out).map_err(|e| ImageError::Io(super::io_reason(&e)))?;
        std::io::copy(&mut entry, &mut f)
            .map_err(|e| bad(archive, format!("damaged tar archive: {e}")))?;
    }
    Ok(())
}

fn read_json(path: &Path, shown: &Path) -> Result<serde_json::Value, ImageError> {
    let meta = std::fs::metadata(path).map_err(|_| {
        bad(
            shown,
            format!(
                "`{}` is missing",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ),
        )
    })?;
    if meta.len() > MAX_JSON {
        return Err(bad(shown, "a manifest or config is larger than 16 MiB"));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(shown, super::io_reason(&e)))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| bad(shown, format!("invalid JSON in `{}`: {e}", path.display())))
}

/// `sha256:<64 hex>` to a blob path, refusing anything else (a digest is part of a path).
fn blob(layout: &Path, digest: &str, shown: &Path) -> Result<PathBuf, ImageError> {
    let (alg, hex) = digest
        .split_once(':')
        .ok_or_else(|| bad(shown, format!("`{digest}` is not a digest")))?;
    let ok = matches!(alg, "sha256" | "sha512")
        && !hex.is_empty()
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !ok {
        return Err(bad(shown, format!("`{digest}` is not a digest")));
    }
    let p = layout.join("blobs").join(alg).join(hex);
    if !p.is_file() {
        return Err(bad(
            shown,
            format!("blob `{digest}` is missing from the layout"),
        ));
    }
    Ok(p)
}

/// The config file and the layer files, bottom first.
struct Parts {
    config: PathBuf,
    layers: Vec<PathBuf>,
}

fn from_layout(layout: &Path, shown: &Path) -> Result<Parts, ImageError> {
    let index = read_json(&layout.join("index.json"), shown)?;
    let mut desc = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .and_then(|m| pick_manifest(m))
        .ok_or_else(|| bad(shown, "`index.json` lists no manifest"))?;
    for _ in 0..4 {
        let digest = desc
            .get("digest")
            .and_then(|d| d.as_str())
            .unwrap_or("")
            .to_owned();
        let doc = read_json(&blob(layout, &digest, shown)?, shown)?;
        if let Some(ms) = doc.get("manifests").and_then(|m| m.as_array()) {
            desc =
                pick_manifest(ms).ok_or_else(|| bad(shown, "an image index lists no manifest"))?;
            continue;
        }
        let config = doc
            .get("config")
            .and_then(|c| c.get("digest"))
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad(shown, "the manifest has no config"))?;
        let config = blob(layout, config, shown)?;
        let layers = doc
            .get("layers")
            .and_then(|l| l.as_array())
            .ok_or_else(|| bad(shown, "the manifest has no layers"))?
            .iter()
            .map(|l| {
                blob(
                    layout,
                    l.get("digest").and_then(|d| d.as_str()).unwrap_or(""),
                    shown,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Parts { config, layers });
    }
    Err(bad(shown, "image indexes nest too deep"))
}

/// The manifest for linux/amd64 when an index lists several platforms, else the first.
fn pick_manifest(ms: &[serde_json::Value]) -> Option<serde_json::Value> {
    let plat = |m: &serde_json::Value, k: &str| {
        m.get("platform")
            .and_then(|p| p.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    ms.iter()
        .find(|m| {
            plat(m, "os").as_deref() == Some("linux")
                && plat(m, "architecture").as_deref() == Some("amd64")
        })
        .or_else(|| {
            ms.iter()
                .find(|m| plat(m, "architecture").as_deref() != Some("unknown"))
        })
        .cloned()
}

fn from_docker_archive(dir: &Path, shown: &Path) -> Result<Parts, ImageError> {
    let manifest = read_json(&dir.join("manifest.json"), shown)?;
    let first = manifest
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| bad(shown, "`manifest.json` lists no image"))?;
    let inside = |p: &str| -> Result<PathBuf, ImageError> {
        let rel = clean(Path::new(p))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| bad(shown, format!("`{p}` leaves the archive")))?;
        let full = dir.join(rel);
        if !full.is_file() {
            return Err(bad(shown, format!("`{p}` is missing from the archive")));
        }
        Ok(full)
    };
    let config = inside(first.get("Config").and_then(|c| c.as_str()).unwrap_or(""))?;
    let layers = first
        .get("Layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| bad(shown, "`manifest.json` has no `Layers`"))?
        .iter()
        .map(|l| inside(l.as_str().unwrap_or("")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Parts { config, layers })
}

/// Reads `docker save` of an engine image into `dest`.
fn save_from_engine(reference: &str, dest: &Path) -> Result<(), ImageError> {
    let out = std::process::Command::new("docker")
        .arg("save")
        .arg("-o")
        .arg(dest)
        .arg(reference)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ImageError::Engine {
            reference: reference.to_owned(),
            reason: format!("cannot run `docker`: {}", super::io_reason(&e)),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let lower = err.to_lowercase();
    let first = lower
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("error response from daemon: ")
        .trim_start_matches("error: ")
        .to_owned();
    if lower.contains("cannot connect")
        || lower.contains("is the docker daemon running")
        || lower.contains("permission denied")
    {
        return Err(ImageError::Engine {
            reference: reference.to_owned(),
            reason: first,
        });
    }
    Err(ImageError::NoImage {
        reference: reference.to_owned(),
        reason: first,
    })
}

/// Reads an image and squashes its layers into a temporary directory.
pub fn unpack(
    target: &Path,
    engine: Option<&str>,
    max_file_size: u64,
) -> Result<Unpacked, ImageError> {
    let tmp = TempDir::new()?;
    let (parts, source, shown) = if let Some(reference) = engine {
        let tar = tmp.0.join("engine.tar");
        save_from_engine(reference, &tar)?;
        let dir = tmp.0.join("archive");
        extract_outer(&tar, &dir)?;
        let _ = std::fs::remove_file(&tar);
        let shown = PathBuf::from(format!("docker:{reference}"));
        (archive_parts(&dir, &shown)?, "engine", shown)
    } else if target.is_dir() {
        if target.join("index.json").is_file() {
            (
                from_layout(target, target)?,
                "oci-layout",
                target.to_path_buf(),
            )
        } else if target.join("manifest.json").is_file() {
            (
                from_docker_archive(target, target)?,
                "docker-archive",
                target.to_path_buf(),
            )
        } else {
            return Err(bad(
                target,
                "a directory without `index.json` (OCI layout) or `manifest.json` (docker save); scan an unpacked file system with `pipe scan rootfs`",
            ));
        }
    } else {
        let dir = tmp.0.join("archive");
        extract_outer(target, &dir)?;
        let source = if dir.join("manifest.json").is_file() {
            "docker-archive"
        } else {
            "oci-archive"
        };
        (archive_parts(&dir, target)?, source, target.to_path_buf())
    };
    let config_bytes =
        std::fs::read(&parts.config).map_err(|e| bad(&shown, super::io_reason(&e)))?;
    let config: serde_json::Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| bad(&shown, format!("invalid image config: {e}")))?;
    let diff_ids: Vec<String> = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != parts.layers.len() {
        return Err(bad(
            &shown,
            format!(
                "the config lists {} layers but the manifest {}",
                diff_ids.len(),
                parts.layers.len()
            ),
        ));
    }
    let history: Vec<String> = config
        .get("history")
        .and_then(|h| h.as_array())
        .map(|a| {
            a.iter()
                .filter(|h| {
                    !h.get("empty_layer")
                        .and_then(|e| e.as_bool())
                        .unwrap_or(false)
                })
                .map(|h| {
                    h.get("created_by")
                        .and_then(|c| c.as_str())
                        .unwrap_or("")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    let info = ImageInfo {
        source,
        config_digest: format!("sha256:{}", hex::encode(Sha256::digest(&config_bytes))),
        os: config
            .get("os")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned(),
        architecture: config
            .get("architecture")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned(),
        layers: diff_ids
            .iter()
            .enumerate()
            .map(|(index, d)| LayerInfo {
                index,
                diff_id: d.clone(),
                created_by: history.get(index).filter(|h| !h.is_empty()).cloned(),
            })
            .collect(),
    };
    let root = tmp.0.join("rootfs");
    std::fs::create_dir_all(&root).map_err(|e| ImageError::Io(super::io_reason(&e)))?;
    let mut sq = Squash {
        root,
        owners: BTreeMap::new(),
        warnings: Vec::new(),
        total: 0,
        max_file_size,
    };
    for (i, layer) in parts.layers.iter().enumerate() {
        sq.apply(i, layer, &shown)?;
    }
    // The outer archive's copy of the layers is no longer needed.
    let _ = std::fs::remove_dir_all(tmp.0.join("archive"));
    Ok(Unpacked {
        tmp,
        info,
        warnings: sq.warnings,
        owners: sq.owners,
    })
}

fn archive_parts(dir: &Path, shown: &Path) -> Result<Parts, ImageError> {
    if dir.join("manifest.json").is_file() {
        from_docker_archive(dir, shown)
    } else if dir.join("index.json").is_file() {
        from_layout(dir, shown)
    } else {
        Err(bad(
            shown,
            "not an image archive (no `manifest.json` or `index.json`)",
        ))
    }
}

struct Squash {
    root: PathBuf,
    owners: BTreeMap<String, usize>,
    warnings: Vec<Warning>,
    total: u64,
    max_file_size: u64,
}

impl Squash {
    /// Removes lower-layer files at or below `rel` (`only_children`: below only).
    fn remove_lower(&mut self, rel: &str, layer: usize, only_children: bool) {
        let prefix = if rel.is_empty() {
            String::new()
        } else {
            format!("{rel}/")
        };
        let doomed: Vec<String> = self
            .owners
            .iter()
            .filter(|(k, l)| {
                **l < layer && ((!only_children && k.as_str() == rel) || k.starts_with(&prefix))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.owners.remove(&k);
            let _ = std::fs::remove_file(self.root.join(&k));
        }
    }

    fn apply(&mut self, layer: usize, file: &Path, shown: &Path) -> Result<(), ImageError> {
        let reader =
            open_maybe_compressed(file).map_err(|r| bad(shown, format!("layer {layer}: {r}")))?;
        let mut ar = tar::Archive::new(reader);
        let entries = ar
            .entries()
            .map_err(|e| bad(shown, format!("layer {layer} is not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.warnings.push(Warning::general(
                        "image-layer-damaged",
                        format!(
                            "layer {layer} is damaged ({}); the rest of it was not read",
                            e.to_string().to_lowercase()
                        ),
                    ));
                    break;
                }
            };
            let Ok(name) = entry.path().map(|p| p.into_owned()) else {
                continue;
            };
            let Some(rel) = clean(&name) else {
                self.warnings.push(Warning::general(
                    "image-path-traversal",
                    format!(
                        "layer {layer}: entry `{}` leaves the root; skipped",
                        name.display()
                    ),
                ));
                continue;
            };
            if rel.is_empty() {
                continue;
            }
            let (dir, base) = match rel.rsplit_once('/') {
                Some((d, b)) => (d.to_owned(), b.to_owned()),
                None => (String::new(), rel.clone()),
            };
            if base == ".wh..wh..opq" {
                self.remove_lower(&dir, layer, true);
                continue;
            }
            if let Some(name) = base.strip_prefix(".wh.") {
                let target = if dir.is_empty() {
                    name.to_owned()
                } else {
                    format!("{dir}/{name}")
                };
                self.remove_lower(&target, layer, false);
                continue;
            }
            let kind = entry.header().entry_type();
            let size = entry.size();
            self.total = self.total.saturating_add(size);
            if self.total > MAX_UNPACKED {
                return Err(bad(
                    shown,
                    "the image is larger than 8 GiB unpacked; stopped (a decompression bomb?)",
                ));
            }
            let out = self.root.join(&rel);
            if kind.is_dir() {
                let _ = std::fs::remove_file(&out);
                let _ = std::fs::create_dir_all(&out);
                continue;
            }
            if kind.is_hard_link() {
                let target = entry.link_name().ok().flatten().and_then(|l| clean(&l));
                if let Some(t) = target.filter(|t| self.owners.contains_key(t)) {
                    self.prepare(&out, &rel);
                    if std::fs::copy(self.root.join(&t), &out).is_ok() {
                        self.owners.insert(rel, layer);
                    }
                }
                continue;
            }
            if !kind.is_file() {
                // Symbolic links are not created (nothing is written through one); a link
                // replaces a lower file of the same name.
                if kind.is_symlink() {
                    self.remove_lower(&rel, layer + 1, false);
                }
                continue;
            }
            if self.max_file_size > 0 && size > self.max_file_size {
                self.remove_lower(&rel, layer + 1, false);
                self.warnings.push(Warning::at(
                    "file-too-large",
                    &rel,
                    None,
                    format!(
                        "layer {layer}: not scanned: {} MiB is over the {} MiB limit (`--max-file-size`)",
                        size / (1024 * 1024),
                        self.max_file_size / (1024 * 1024)
                    ),
                ));
                // Read through it: the decompressed size is checked as we go.
                let mut sink = std::io::sink();
                let copied = std::io::copy(&mut (&mut entry).take(size), &mut sink);
                if copied.is_err() {
                    self.warnings.push(Warning::general(
                        "image-layer-damaged",
                        format!("layer {layer} is damaged; the rest of it was not read"),
                    ));
                    break;
                }
                continue;
            }
            self.prepare(&out, &rel);
            let written =
                std::fs::File::create(&out).and_then(|mut f| std::io::copy(&mut entry, &mut f));
            match written {
                Ok(_) => {
                    self.owners.insert(rel, layer);
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&out);
                    self.warnings.push(Warning::general(
                        "image-layer-damaged",
                        format!(
                            "layer {layer}: cannot unpack `{rel}`: {}",
                            e.to_string().to_lowercase()
                        ),
                    ));
                    if e.kind() != std::io::ErrorKind::PermissionDenied {
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes room for a file at `out`: its folders exist (a lower file in the way of a
    /// folder is removed), and a folder in the way of the file is removed.
    fn prepare(&mut self, out: &Path, rel: &str) {
        let mut cur = self.root.clone();
        let mut acc = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            cur.push(p);
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            if cur.is_file() {
                let _ = std::fs::remove_file(&cur);
                self.owners.remove(&acc);
            }
        }
        if let Some(parent) = out.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if out.is_dir() {
            let prefix = format!("{rel}/");
            self.owners.retain(|k, _| !k.starts_with(&prefix));
            let _ = std::fs::remove_dir_all(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_never_leave_the_root() {
        assert_eq!(
            clean(Path::new("/etc/passwd")).as_deref(),
            Some("etc/passwd")
        );
        assert_eq!(clean(Path::new("./a/./b")).as_deref(), Some("a/b"));
        assert_eq!(clean(Path::new("a/../../etc")), None);
    }

    #[test]
    fn engine_references_and_paths() {
        let missing = Path::new("/nonexistent/x");
        let r = |s: &str| engine_ref(Path::new(s), missing, TargetKind::Image);
        assert_eq!(r("docker:alpine:3.20").as_deref(), Some("alpine:3.20"));
        assert_eq!(
            r("registry.local/app:1.2").as_deref(),
            Some("registry.local/app:1.2")
        );
        assert_eq!(r("image.tar"), None);
        assert_eq!(r("./layout"), None);
        assert_eq!(engine_ref(Path::new("app"), missing, TargetKind::Fs), None);
    }

    #[test]
    fn digests_are_checked_before_they_become_paths() {
        let d = Path::new("/nonexistent");
        assert!(blob(d, "sha256:../../etc/passwd", d).is_err());
        assert!(blob(d, "md5:abc", d).is_err());
    }
}
