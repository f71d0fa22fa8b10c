//! Multi-arch OCI images (`pipe image build`, `uses: pipe/image@v1`): per-platform layers from
//! folders or files, an optional base image from a local OCI layout or archive, an image
//! config, one manifest per platform joined in an image index, written as an OCI image
//! layout (and optionally one tar that is both an OCI layout and a docker-save archive);
//! then, on request, loaded into the Docker engine ([`load`]) and pushed to a registry
//! ([`push`]). Dockerfile builds per platform go through the engine's build API
//! ([`dockerfile`]).
//!
//! **Invariants:** the same inputs give the same bytes and so the same index digest (sorted
//! tar entries, one mtime, root owner, gzip without timestamp, JSON from ordered maps
//! serialised once); a blob is only ever named by the digest of its bytes and is re-hashed
//! whenever it is read back (verify, archive, push); nothing here prints or exits.

pub mod action;
pub mod dockerfile;
pub mod layer;
pub mod layout;
pub mod load;
pub mod platform;
pub mod push;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use layer::{LayerOptions, LayerSource};
use layout::{Descriptor, DockerSaveEntry, Index, Layout, Manifest};
pub use platform::Platform;

/// Set by [`cancel`] (the CLI's SIGINT/SIGTERM handler): packing, pushing and Dockerfile
/// builds stop at the next entry, chunk or request and clean up their temporary files.
static CANCELLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks every image operation of this process to stop.
pub fn cancel() {
    CANCELLED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether [`cancel`] was called.
pub fn cancelled() -> bool {
    CANCELLED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Fails with [`ImageError::Interrupted`] once [`cancel`] was called.
pub fn check_cancel() -> Result<(), ImageError> {
    if cancelled() {
        Err(ImageError::Interrupted)
    } else {
        Ok(())
    }
}

/// Why an image operation failed; [`ImageError::exit_code`] maps it to decisions.md's codes.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Bad input: flags, inputs, missing sources (exit 2).
    #[error("{0}")]
    Input(String),
    /// Reading or writing files failed (exit 3).
    #[error("{0}")]
    Io(String),
    /// A blob or document does not match its digest, size or schema (exit 3).
    #[error("{0}")]
    Corrupt(String),
    /// The registry refused or could not be reached (exit 3).
    #[error("{0}")]
    Registry(String),
    /// The Docker engine could not be reached or refused (exit 3).
    #[error("{0}")]
    Engine(String),
    /// The work ran and failed (a Dockerfile build; exit 1).
    #[error("{0}")]
    Failed(String),
    /// Stopped by a signal (exit 130 or 143, decided by the caller).
    #[error("interrupted")]
    Interrupted,
}

impl ImageError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, e: std::io::Error) -> ImageError {
        ImageError::Io(format!("`{}`: {e}", path.display()))
    }

    /// The exit code (decisions.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            ImageError::Input(_) => 2,
            ImageError::Failed(_) => 1,
            ImageError::Interrupted => 130,
            _ => 3,
        }
    }
}

/// The image config fields a build sets (each merged over the base image's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `Entrypoint` (replaces the base's, and then clears its `Cmd` unless `cmd` is given, as
    /// Docker does).
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Env` entries, `NAME=VALUE` (a name the base has is replaced).
    pub env: Vec<(String, String)>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Labels` (merged over the base's).
    pub labels: BTreeMap<String, String>,
    /// `ExposedPorts` (`8080/tcp`; a bare number means tcp).
    pub exposed_ports: Vec<String>,
}

/// Everything a build needs.
#[derive(Clone, Debug)]
pub struct BuildSpec {
    /// The platforms, in the order the index lists them.
    pub platforms: Vec<Platform>,
    /// The layers of each platform, in order (see [`parse_layer_spec`]).
    pub layers: Vec<(Platform, LayerSource)>,
    /// A base image: an OCI layout folder or an OCI layout tar (its layers come first).
    pub base: Option<PathBuf>,
    /// Config fields.
    pub config: ImageConfig,
    /// Annotations on the index and each manifest.
    pub annotations: BTreeMap<String, String>,
    /// The image name (`pipe/hello`).
    pub name: String,
    /// The tag (`v1`); the layout's reference name.
    pub tag: String,
    /// The OCI layout folder to write (replaced wholesale: blobs of earlier builds go).
    pub output: PathBuf,
    /// Also write the layout as one tar (OCI layout + docker-save `manifest.json`).
    pub archive: Option<PathBuf>,
    /// Layer settings.
    pub layer: LayerOptions,
    /// Where layer reuse records live (`$PIPE_CACHE_DIR/image-layers`), if anywhere.
    pub reuse_dir: Option<PathBuf>,
}

/// What a build wrote for one platform.
#[derive(Clone, Debug)]
pub struct BuiltPlatform {
    /// The platform.
    pub platform: Platform,
    /// Its manifest.
    pub manifest: Descriptor,
    /// Its config (the image id Docker reports after a load).
    pub config: Descriptor,
    /// Its layers, base first.
    pub layers: Vec<Descriptor>,
    /// The docker-save names (`name:tag-arch`, and `name:tag` for the host's platform).
    pub repo_tags: Vec<String>,
}

/// What a build wrote.
#[derive(Clone, Debug)]
pub struct Built {
    /// `name`.
    pub name: String,
    /// `tag`.
    pub tag: String,
    /// The image index.
    pub index: Descriptor,
    /// Per platform.
    pub platforms: Vec<BuiltPlatform>,
    /// The layout folder.
    pub layout: PathBuf,
    /// The archive, if one was written.
    pub archive: Option<PathBuf>,
    /// Layers packed in this build.
    pub layers_written: usize,
    /// Layers whose blob an earlier build left and that were reused without packing.
    pub layers_reused: usize,
}

impl Built {
    /// Every blob (layers, configs, manifests, the index) once.
    pub fn blobs(&self) -> Vec<Descriptor> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for p in &self.platforms {
            for d in p.layers.iter().chain([&p.config, &p.manifest]) {
                if seen.insert(d.digest.clone()) {
                    out.push(d.clone());
                }
            }
        }
        if seen.insert(self.index.digest.clone()) {
            out.push(self.index.clone());
        }
        out
    }

    /// The docker-save `manifest.json` entries.
    pub fn docker_entries(&self) -> Vec<DockerSaveEntry> {
        self.platforms
            .iter()
            .map(|p| DockerSaveEntry {
                config: format!("blobs/sha256/{}", p.config.hex()),
                repo_tags: p.repo_tags.clone(),
                layers: p
                    .layers
                    .iter()
                    .map(|l| format!("blobs/sha256/{}", l.hex()))
                    .collect(),
            })
            .collect()
    }

    /// The JSON form (`pipe image build --json`, the action's `metadata` output).
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "tag": self.tag,
            "digest": self.index.digest,
            "layout": self.layout,
            "archive": self.archive,
            "layers_written": self.layers_written,
            "layers_reused": self.layers_reused,
            "platforms": self.platforms.iter().map(|p| json!({
                "platform": p.platform.to_string(),
                "digest": p.manifest.digest,
                "config": p.config.digest,
                "layers": p.layers.iter().map(|l| json!({"digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
                "tags": p.repo_tags,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Parses a list of platforms (`linux/amd64,linux/arm64` or one a line); at least one, no
/// duplicates.
pub fn parse_platforms(items: &[String]) -> Result<Vec<Platform>, ImageError> {
    let mut out: Vec<Platform> = Vec::new();
    for item in items {
        for s in item
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let p = Platform::parse(s).map_err(ImageError::Input)?;
            if out.contains(&p) {
                return Err(ImageError::Input(format!("platform `{p}` is listed twice")));
            }
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(ImageError::Input(
            "no platform given (e.g. `linux/amd64,linux/arm64`)".to_owned(),
        ));
    }
    Ok(out)
}

/// Parses one layer line `[PLATFORM=]SRC[:TARGET]`: without a platform it applies to every
/// platform, with `{os}`, `{arch}`, `{variant}` and `{platform}` (`amd64`, `arm-v7`) replaced
/// in `SRC`; `TARGET` (absolute, default `/`) is where the folder's content (or the file) goes.
/// Relative sources are relative to `base_dir`.
pub fn parse_layer_spec(
    line: &str,
    platforms: &[Platform],
    base_dir: &Path,
) -> Result<Vec<(Platform, LayerSource)>, ImageError> {
    let line = line.trim();
    let (only, rest) = match line.split_once('=') {
        Some((p, rest)) if p.contains('/') && Platform::parse(p).is_ok() => {
            let p = Platform::parse(p).map_err(ImageError::Input)?;
            if !platforms.contains(&p) {
                return Err(ImageError::Input(format!(
                    "layer `{line}`: platform `{p}` is not one of the platforms being built"
                )));
            }
            (Some(p), rest)
        }
        _ => (None, line),
    };
    let (src, target) = match rest.rsplit_once(":/") {
        Some((s, t)) => (s, format!("/{t}")),
        None => (rest, "/".to_owned()),
    };
    if src.is_empty() {
        return Err(ImageError::Input(format!(
            "layer `{line}`: no source (expected `[PLATFORM=]SRC[:TARGET]`)"
        )));
    }
    layer::target_parts(&target).map_err(|e| ImageError::Input(format!("layer `{line}`: {e}")))?;
    let targets: Vec<&Platform> = match &only {
        Some(p) => vec![p],
        None => platforms.iter().collect(),
    };
    Ok(targets
        .into_iter()
        .map(|p| {
            let s = src
                .replace("{os}", &p.os)
                .replace("{arch}", &p.arch)
                .replace("{variant}", p.variant.as_deref().unwrap_or(""))
                .replace("{platform}", &p.suffix());
            (
                p.clone(),
                LayerSource {
                    src: base_dir.join(s),
                    target: target.clone(),
                },
            )
        })
        .collect())
}

/// Parses `ENTRYPOINT`/`CMD` values: a JSON array (`["/hello", "-v"]`) or words split on
/// whitespace.
pub fn parse_argv(s: &str, what: &str) -> Result<Vec<String>, ImageError> {
    let s = s.trim();
    if s.starts_with('[') {
        serde_json::from_str(s).map_err(|e| {
            ImageError::Input(format!(
                "`{what}` is not a JSON array of strings ({e}): `{s}`"
            ))
        })
    } else {
        Ok(s.split_whitespace().map(str::to_owned).collect())
    }
}

/// Checks an image name (`[registry/]path`, lowercase) and a tag.
pub fn check_name_tag(name: &str, tag: &str) -> Result<(), ImageError> {
    let name_ok = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || matches!(b, b'.' | b'_' | b'-' | b':')
                })
        });
    if !name_ok {
        return Err(ImageError::Input(format!(
            "image name `{name}` is invalid (lowercase letters, digits, `.`, `_`, `-` and `/`)"
        )));
    }
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !tag_ok {
        return Err(ImageError::Input(format!(
            "tag `{tag}` is invalid (up to 128 letters, digits, `.`, `_` and `-`, not first)"
        )));
    }
    Ok(())
}

/// Splits `name[:tag]` (the tag defaults to `latest`; a `:` before the last `/` is a port).
pub fn split_name_tag(s: &str) -> (String, String) {
    match s.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_owned(), t.to_owned()),
        _ => (s.to_owned(), "latest".to_owned()),
    }
}

/// The mtime layers and `created` use: `SOURCE_DATE_EPOCH` when set (must be a number).
pub fn source_date_epoch(value: Option<&str>) -> Result<u64, ImageError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            ImageError::Input(format!(
                "`SOURCE_DATE_EPOCH` must be a number of seconds, not `{v}`"
            ))
        }),
    }
}

/// A base image's manifest and config for one platform.
type BaseImage = (Manifest, Map<String, Value>);

/// A base image: its layout (extracted when it came as a tar) and chosen manifests.
struct Base {
    layout: Layout,
    _tmp: Option<tempfile::TempDir>,
}

impl Base {
    /// Opens an OCI layout (folder or tar) or a docker-save archive (folder or tar, as
    /// Docker < 25 writes it; converted into a temporary layout).
    fn open(path: &Path) -> Result<Base, ImageError> {
        if path.is_dir() {
            if !path.join("oci-layout").exists() && path.join("manifest.json").exists() {
                return Base::from_docker_save(path);
            }
            return Ok(Base {
                layout: Layout::open(path)?,
                _tmp: None,
            });
        }
        let f = std::fs::File::open(path).map_err(|e| {
            ImageError::Input(format!(
                "cannot read the base image `{}`: {e}",
                path.display()
            ))
        })?;
        let tmp = tempfile::tempdir().map_err(|e| ImageError::Io(e.to_string()))?;
        unpack_plain(f, path, tmp.path())?;
        if !tmp.path().join("index.json").exists() {
            if tmp.path().join("manifest.json").exists() {
                return Base::from_docker_save(tmp.path());
            }
            return Err(ImageError::Input(format!(
                "the base image `{}` is neither an OCI layout nor a docker-save archive (no `index.json` or `manifest.json`)",
                path.display()
            )));
        }
        Ok(Base {
            layout: Layout::open(tmp.path())?,
            _tmp: Some(tmp),
        })
    }

    /// A docker-save archive (unpacked in `dir`) as a temporary OCI layout: configs kept byte
    /// for byte, layers gzip-compressed (diff_ids checked), one manifest per image.
    fn from_docker_save(dir: &Path) -> Result<Base, ImageError> {
        let tmp = tempfile::tempdir().map_err(|e| ImageError::Io(e.to_string()))?;
        let out = Layout::create(tmp.path())?;
        let manifests = docker_save_to_layout(dir, &out, LayerOptions::default())?;
        let index = Index {
            schema_version: 2,
            media_type: Some(layout::MT_INDEX.to_owned()),
            manifests,
            annotations: BTreeMap::new(),
        };
        layout::write_atomic(&tmp.path().join("index.json"), &layout::to_json(&index)?)?;
        Ok(Base {
            layout: out,
            _tmp: Some(tmp),
        })
    }

    /// The manifest (and its config JSON) of `platform`.
    fn select(&self, platform: &Platform) -> Result<BaseImage, ImageError> {
        let top = self.layout.index_json()?;
        let mut found = None;
        for d in &top.manifests {
            if let Some(hit) = self.find(d, platform, 0)? {
                found = Some(hit);
                break;
            }
        }
        found.ok_or_else(|| {
            ImageError::Input(format!(
                "the base image `{}` has no manifest for `{platform}`",
                self.layout.root().display()
            ))
        })
    }

    fn find(
        &self,
        d: &Descriptor,
        platform: &Platform,
        depth: usize,
    ) -> Result<Option<BaseImage>, ImageError> {
        if depth > 4 {
            return Ok(None);
        }
        if let Some(p) = &d.platform
            && (p.os != platform.os
                || p.architecture != platform.arch
                || (p.variant.is_some()
                    && platform.variant.is_some()
                    && p.variant != platform.variant))
        {
            return Ok(None);
        }
        match d.media_type.as_str() {
            layout::MT_INDEX | layout::MT_DOCKER_LIST => {
                let idx: Index = serde_json::from_slice(&self.layout.read_blob(d)?)
                    .map_err(|e| ImageError::Corrupt(format!("base index `{}`: {e}", d.digest)))?;
                for m in &idx.manifests {
                    if let Some(hit) = self.find(m, platform, depth + 1)? {
                        return Ok(Some(hit));
                    }
                }
                Ok(None)
            }
            layout::MT_MANIFEST | layout::MT_DOCKER_MANIFEST => {
                let m: Manifest =
                    serde_json::from_slice(&self.layout.read_blob(d)?).map_err(|e| {
                        ImageError::Corrupt(format!("base manifest `{}`: {e}", d.digest))
                    })?;
                let cfg: Map<String, Value> =
                    serde_json::from_slice(&self.layout.read_blob(&m.config)?).map_err(|e| {
                        ImageError::Corrupt(format!("base config `{}`: {e}", m.config.digest))
                    })?;
                let arch = cfg.get("architecture").and_then(Value::as_str);
                let os = cfg.get("os").and_then(Value::as_str);
                if arch == Some(platform.arch.as_str()) && os == Some(platform.os.as_str()) {
                    Ok(Some((m, cfg)))
                } else {
                    Ok(None)
                }
            }
            _ => Ok(None),
        }
    }
}

/// Unpacks plain files and folders of a tar below `to` (`unpack_in` refuses `..`; links and
/// devices are skipped).
pub(crate) fn unpack_plain(f: std::fs::File, path: &Path, to: &Path) -> Result<(), ImageError> {
    let mut a = tar::Archive::new(f);
    for e in a.entries().map_err(|e| ImageError::io(path, e))? {
        let mut e = e.map_err(|e| ImageError::io(path, e))?;
        let kind = e.header().entry_type();
        if kind.is_file() || kind.is_dir() {
            e.unpack_in(to).map_err(|e| ImageError::io(path, e))?;
        }
    }
    Ok(())
}

/// One image of a docker-save `manifest.json`.
#[derive(serde::Deserialize)]
pub(crate) struct SaveEntry {
    #[serde(rename = "Config")]
    pub(crate) config: String,
    #[serde(rename = "Layers")]
    pub(crate) layers: Vec<String>,
}

/// One image of a docker-save archive, stored in a layout: its config (bytes as the archive
/// has them, and parsed) and its layers, gzip-compressed with their diff_ids checked.
pub(crate) struct SavedImage {
    pub(crate) config_bytes: Vec<u8>,
    pub(crate) config: Value,
    pub(crate) layers: Vec<Descriptor>,
}

/// Stores the images of an unpacked docker-save archive (`dir`) in `out`.
pub(crate) fn docker_save_images(
    dir: &Path,
    out: &Layout,
    opts: LayerOptions,
) -> Result<Vec<SavedImage>, ImageError> {
    let manifest_path = dir.join("manifest.json");
    let entries: Vec<SaveEntry> = std::fs::read(&manifest_path)
        .map_err(|e| ImageError::io(&manifest_path, e))
        .and_then(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| ImageError::Corrupt(format!("`{}`: {e}", manifest_path.display())))
        })?;
    let inside = |rel: &str| -> Result<PathBuf, ImageError> {
        if rel.split('/').any(|p| p == "..") || rel.starts_with('/') {
            return Err(ImageError::Corrupt(format!(
                "`{}` names `{rel}` outside the archive",
                manifest_path.display()
            )));
        }
        Ok(dir.join(rel))
    };
    let mut images = Vec::new();
    for entry in &entries {
        let cfg_path = inside(&entry.config)?;
        let config_bytes = std::fs::read(&cfg_path).map_err(|e| ImageError::io(&cfg_path, e))?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| ImageError::Corrupt(format!("`{}`: {e}", cfg_path.display())))?;
        let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut layers = Vec::new();
        for (i, l) in entry.layers.iter().enumerate() {
            check_cancel()?;
            let blob = layer::compress_tar_file(&inside(l)?, opts, &out.blob_dir())?;
            if diff_ids.get(i) != Some(&blob.diff_id) {
                return Err(ImageError::Corrupt(format!(
                    "layer `{l}` hashes to {}, its config says {}",
                    blob.diff_id,
                    diff_ids.get(i).map(String::as_str).unwrap_or("nothing")
                )));
            }
            layers.push(Descriptor {
                media_type: opts.compression.media_type().to_owned(),
                digest: blob.digest,
                size: blob.size,
                platform: None,
                annotations: BTreeMap::new(),
            });
        }
        images.push(SavedImage {
            config_bytes,
            config,
            layers,
        });
    }
    Ok(images)
}

/// Stores the images of an unpacked docker-save archive in `out`; returns their manifest
/// descriptors (with `platform` from each config).
pub(crate) fn docker_save_to_layout(
    dir: &Path,
    out: &Layout,
    opts: LayerOptions,
) -> Result<Vec<Descriptor>, ImageError> {
    let mut descs = Vec::new();
    for img in docker_save_images(dir, out, opts)? {
        let config = out.put(layout::MT_CONFIG, &img.config_bytes)?;
        let m = Manifest {
            schema_version: 2,
            media_type: Some(layout::MT_MANIFEST.to_owned()),
            config,
            layers: img.layers,
            annotations: BTreeMap::new(),
        };
        let mut d = out.put(layout::MT_MANIFEST, &layout::to_json(&m)?)?;
        let cfg = &img.config;
        d.platform = Some(layout::PlatformJson {
            architecture: cfg["architecture"].as_str().unwrap_or("amd64").to_owned(),
            os: cfg["os"].as_str().unwrap_or("linux").to_owned(),
            variant: cfg["variant"].as_str().map(str::to_owned),
        });
        descs.push(d);
    }
    Ok(descs)
}

/// Copies a blob from one layout to another, re-hashing it on the way.
fn copy_blob(from: &Layout, to: &Layout, d: &Descriptor) -> Result<(), ImageError> {
    if to.has(&d.digest, d.size) {
        return Ok(());
    }
    let src = from.blob_path(&d.digest)?;
    let f = std::fs::File::open(&src)
        .map_err(|e| ImageError::Corrupt(format!("base blob `{}` is missing: {e}", d.digest)))?;
    let dir = to.blob_dir();
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| ImageError::io(&dir, e))?;
    let mut r = layout::HashingReader::new(f);
    std::io::copy(&mut r, &mut tmp).map_err(|e| ImageError::io(&src, e))?;
    r.check(d)?;
    tmp.persist(dir.join(d.hex()))
        .map_err(|e| ImageError::io(&dir, e.error))?;
    Ok(())
}

/// The image config of one platform: the base's (if any) with the spec's fields merged in.
fn make_config(
    base: Option<&Map<String, Value>>,
    platform: &Platform,
    spec: &BuildSpec,
    diff_ids: &[String],
    own_layers: &[LayerSource],
) -> Value {
    let created = crate::scan::time::format_rfc3339(spec.layer.mtime as i64);
    let mut cfg = base.cloned().unwrap_or_default();
    cfg.insert("architecture".into(), json!(platform.arch));
    cfg.insert("os".into(), json!(platform.os));
    match &platform.variant {
        Some(v) => {
            cfg.insert("variant".into(), json!(v));
        }
        None => {
            cfg.remove("variant");
        }
    }
    cfg.insert("created".into(), json!(created));
    let mut c = cfg
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let ic = &spec.config;
    if !ic.env.is_empty() {
        let mut env: Vec<String> = c
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for (k, v) in &ic.env {
            let prefix = format!("{k}=");
            env.retain(|e| !e.starts_with(&prefix));
            env.push(format!("{k}={v}"));
        }
        c.insert("Env".into(), json!(env));
    }
    if let Some(ep) = &ic.entrypoint {
        c.insert("Entrypoint".into(), json!(ep));
        if ic.cmd.is_none() {
            c.remove("Cmd");
        }
    }
    if let Some(cmd) = &ic.cmd {
        c.insert("Cmd".into(), json!(cmd));
    }
    if let Some(w) = &ic.workdir {
        c.insert("WorkingDir".into(), json!(w));
    }
    if let Some(u) = &ic.user {
        c.insert("User".into(), json!(u));
    }
    if !ic.labels.is_empty() {
        let mut labels: BTreeMap<String, Value> = c
            .get("Labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (k, v) in &ic.labels {
            labels.insert(k.clone(), json!(v));
        }
        c.insert("Labels".into(), json!(labels));
    }
    if !ic.exposed_ports.is_empty() {
        let mut ports: BTreeMap<String, Value> = c
            .get("ExposedPorts")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for p in &ic.exposed_ports {
            let p = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            ports.insert(p, json!({}));
        }
        c.insert("ExposedPorts".into(), json!(ports));
    }
    cfg.insert("config".into(), Value::Object(c));
    let mut ids: Vec<Value> = cfg
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ids.extend(diff_ids.iter().map(|d| json!(d)));
    cfg.insert("rootfs".into(), json!({"type": "layers", "diff_ids": ids}));
    let mut history: Vec<Value> = cfg
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for l in own_layers {
        history.push(json!({
            "created": created,
            "created_by": format!("pipe image build: layer at {}", l.target),
        }));
    }
    cfg.insert("history".into(), Value::Array(history));
    Value::Object(cfg)
}

/// One layer: reused from an earlier build when its reuse record matches and the blob is in
/// the layout, otherwise packed.
fn build_layer(
    spec: &BuildSpec,
    out: &Layout,
    src: &LayerSource,
) -> Result<(layer::LayerBlob, bool), ImageError> {
    let entries = layer::entries(src)?;
    let key = layer::reuse_key(&entries, spec.layer);
    let record = spec.reuse_dir.as_ref().map(|d| d.join(&key));
    if let Some(r) = &record
        && let Ok(text) = std::fs::read_to_string(r)
    {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if let [digest, diff_id, size, stamp] = parts.as_slice()
            && let Ok(size) = size.parse::<u64>()
            && out.has(digest, size)
            && blob_stamp(out, digest).as_deref() == Some(*stamp)
        {
            return Ok((
                layer::LayerBlob {
                    digest: (*digest).to_owned(),
                    diff_id: (*diff_id).to_owned(),
                    size,
                },
                true,
            ));
        }
    }
    let blob = layer::write_layer_blob(&entries, spec.layer, &out.blob_dir())?;
    if let Some(r) = &record
        && !layer::is_racy(&entries)
        && let Some(dir) = r.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        // A lost record only costs a repack.
        let stamp = blob_stamp(out, &blob.digest).unwrap_or_default();
        let _ = layout::write_atomic(
            r,
            format!("{} {} {} {stamp}\n", blob.digest, blob.diff_id, blob.size).as_bytes(),
        );
    }
    Ok((blob, false))
}

/// The blob file's mtime (ns), ctime (ns) and inode: a blob changed in place (even to the
/// same size) no longer matches its reuse record and is packed again.
fn blob_stamp(out: &Layout, digest: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(out.blob_path(digest).ok()?).ok()?;
    Some(format!(
        "{}.{}/{}.{}/{}",
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        m.ino()
    ))
}

/// Builds the image: layers, configs, manifests, the index, `index.json`; then removes blobs
/// of earlier builds from the layout and writes the archive if asked.
pub fn build(spec: &BuildSpec) -> Result<Built, ImageError> {
    check_name_tag(&spec.name, &spec.tag)?;
    for p in &spec.platforms {
        if spec.base.is_none() && !spec.layers.iter().any(|(lp, _)| lp == p) {
            return Err(ImageError::Input(format!(
                "no layer for platform `{p}` (and no base image)"
            )));
        }
    }
    for (_, l) in &spec.layers {
        if !l.src.exists() && std::fs::symlink_metadata(&l.src).is_err() {
            let hint = if l.src.to_string_lossy().contains(':') {
                " (hint: a target after `:` must be absolute, e.g. `SRC:/usr/bin`)"
            } else {
                ""
            };
            return Err(ImageError::Input(format!(
                "the layer source `{}` does not exist{hint}",
                l.src.display()
            )));
        }
    }
    let base = spec.base.as_deref().map(Base::open).transpose()?;
    let out = output_layout(spec)?;
    let mut platforms = Vec::new();
    let (mut written, mut reused) = (0, 0);
    for p in &spec.platforms {
        let (base_manifest, base_cfg) = match &base {
            Some(b) => {
                let (m, c) = b.select(p)?;
                for l in &m.layers {
                    copy_blob(&b.layout, &out, l)?;
                }
                (Some(m), Some(c))
            }
            None => (None, None),
        };
        let mut layers: Vec<Descriptor> = base_manifest
            .as_ref()
            .map(|m| {
                m.layers
                    .iter()
                    .map(|l| Descriptor {
                        platform: None,
                        annotations: BTreeMap::new(),
                        ..l.clone()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let own: Vec<LayerSource> = spec
            .layers
            .iter()
            .filter(|(lp, _)| lp == p)
            .map(|(_, s)| s.clone())
            .collect();
        let mut diff_ids = Vec::new();
        for src in &own {
            check_cancel()?;
            let (blob, was_reused) = build_layer(spec, &out, src)?;
            if was_reused {
                reused += 1;
            } else {
                written += 1;
            }
            diff_ids.push(blob.diff_id.clone());
            layers.push(Descriptor {
                media_type: spec.layer.compression.media_type().to_owned(),
                digest: blob.digest,
                size: blob.size,
                platform: None,
                annotations: BTreeMap::new(),
            });
        }
        let cfg = make_config(base_cfg.as_ref(), p, spec, &diff_ids, &own);
        let entry = add_platform(spec, &out, p, &layout::to_json(&cfg)?, layers, &platforms)?;
        platforms.push(entry);
    }
    assemble(spec, &out, platforms, written, reused)
}

/// Opens the output layout, refusing a folder that holds something else.
pub(crate) fn output_layout(spec: &BuildSpec) -> Result<Layout, ImageError> {
    if spec.output.exists()
        && !spec.output.join("oci-layout").exists()
        && std::fs::read_dir(&spec.output).is_ok_and(|mut d| d.next().is_some())
    {
        return Err(ImageError::Input(format!(
            "the output folder `{}` is not empty and not an OCI layout (pipe replaces what it holds)",
            spec.output.display()
        )));
    }
    Layout::create(&spec.output)
}

/// Stores one platform's config and manifest; names it for docker-save (`name:tag-<arch>`, and
/// `name:tag` for the first platform that matches this machine).
pub(crate) fn add_platform(
    spec: &BuildSpec,
    out: &Layout,
    p: &Platform,
    config_bytes: &[u8],
    layers: Vec<Descriptor>,
    earlier: &[BuiltPlatform],
) -> Result<BuiltPlatform, ImageError> {
    let host = Platform::host();
    let config = out.put(layout::MT_CONFIG, config_bytes)?;
    let manifest_doc = Manifest {
        schema_version: 2,
        media_type: Some(layout::MT_MANIFEST.to_owned()),
        config: config.clone(),
        layers: layers.clone(),
        annotations: spec.annotations.clone(),
    };
    let mut manifest = out.put(layout::MT_MANIFEST, &layout::to_json(&manifest_doc)?)?;
    manifest.platform = Some(p.into());
    let mut repo_tags = vec![format!("{}:{}-{}", spec.name, spec.tag, p.suffix())];
    if p.os == host.os && p.arch == host.arch && !earlier.iter().any(|b| b.repo_tags.len() > 1) {
        repo_tags.push(format!("{}:{}", spec.name, spec.tag));
    }
    Ok(BuiltPlatform {
        platform: p.clone(),
        manifest,
        config,
        layers,
        repo_tags,
    })
}

/// Writes the index and `index.json`, drops blobs of earlier builds, writes the archive.
pub(crate) fn assemble(
    spec: &BuildSpec,
    out: &Layout,
    platforms: Vec<BuiltPlatform>,
    written: usize,
    reused: usize,
) -> Result<Built, ImageError> {
    let index_doc = Index {
        schema_version: 2,
        media_type: Some(layout::MT_INDEX.to_owned()),
        manifests: platforms.iter().map(|p| p.manifest.clone()).collect(),
        annotations: spec.annotations.clone(),
    };
    let index = out.put(layout::MT_INDEX, &layout::to_json(&index_doc)?)?;
    let mut top = index.clone();
    top.annotations
        .insert(layout::REF_NAME.to_owned(), spec.tag.clone());
    top.annotations.insert(
        "io.containerd.image.name".to_owned(),
        format!("{}:{}", spec.name, spec.tag),
    );
    out.set_index(&top)?;
    let built = Built {
        name: spec.name.clone(),
        tag: spec.tag.clone(),
        index,
        platforms,
        layout: spec.output.clone(),
        archive: spec.archive.clone(),
        layers_written: written,
        layers_reused: reused,
    };
    let keep: BTreeSet<String> = built.blobs().into_iter().map(|d| d.digest).collect();
    out.remove_other_blobs(&keep)?;
    if let Some(a) = &spec.archive {
        layout::write_archive(out, &built.blobs(), &built.docker_entries(), a)?;
    }
    Ok(built)
}

#[cfg(test)]
mod tests;
