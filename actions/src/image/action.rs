//! `uses: pipe/image@v1` and what `pipe image build` shares with it: a [`Request`] of plain
//! strings (inputs or flags) turned into a [`BuildSpec`] and run ([`run_request`]): build (or
//! Dockerfile builds per platform), then `load`, then `push`.
//!
//! Inputs: `platforms` (comma or line list), `layers` (one `[PLATFORM=]SRC[:TARGET]` a line;
//! `{arch}`, `{os}`, `{variant}`, `{platform}` are replaced), `base` (OCI layout, docker-save
//! archive or `docker:NAME`), `dockerfile`, `context`,
//! `build-args`, `entrypoint`, `cmd`, `env`, `workdir`, `user`, `labels`, `exposed-ports`,
//! `annotations`, `tags` (`name:tag`), `output` (layout folder), `archive` (tar),
//! `compression` (`gzip`, or `zstd` with a warning), `compression-level`, `load`, `push` (`HOST/REPO:TAG`),
//! `insecure-registries`, `username`, `password`.
//! Outputs: `digest` (the index), `digests` (JSON: platform → manifest digest),
//! `digest-<os>-<arch>[-<variant>]`, `config-<os>-<arch>[-<variant>]` (= the engine's image id
//! after a load), `layout`, `archive`, `image`, `pushed` (`HOST/REPO@sha256:…`), `metadata`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use indexmap::IndexMap;
use pipe_runner::executor::OutputSink;
use pipe_runner::run::action::{BuiltinAction, BuiltinCall, BuiltinResult};

use super::layer::{Compression, LayerOptions};
use super::load::Loaded;
use super::push::{PushOptions, PushReport, Reference};
use super::{BuildSpec, Built, ImageConfig, ImageError};

/// The inputs `pipe/image` declares.
pub const INPUTS: &[&str] = &[
    "platforms",
    "layers",
    "base",
    "dockerfile",
    "context",
    "build-args",
    "entrypoint",
    "cmd",
    "env",
    "workdir",
    "user",
    "labels",
    "exposed-ports",
    "annotations",
    "tags",
    "output",
    "archive",
    "compression",
    "compression-level",
    "load",
    "push",
    "insecure-registries",
    "username",
    "password",
];

/// A build request as strings (action inputs or command-line flags).
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `linux/amd64,linux/arm64`.
    pub platforms: Vec<String>,
    /// `[PLATFORM=]SRC[:TARGET]` lines.
    pub layers: Vec<String>,
    /// A base image (OCI layout folder or tar).
    pub base: Option<String>,
    /// A Dockerfile to build once per platform with the engine.
    pub dockerfile: Option<String>,
    /// The Dockerfile build context (default: the Dockerfile's folder).
    pub context: Option<String>,
    /// `NAME=VALUE` build arguments.
    pub build_args: Vec<String>,
    /// `ENTRYPOINT` (JSON array or words).
    pub entrypoint: Option<String>,
    /// `CMD`.
    pub cmd: Option<String>,
    /// `NAME=VALUE` lines.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `NAME=VALUE` labels.
    pub labels: Vec<String>,
    /// Ports.
    pub exposed_ports: Vec<String>,
    /// `NAME=VALUE` annotations.
    pub annotations: Vec<String>,
    /// `name:tag`.
    pub tag: String,
    /// Layout folder.
    pub output: String,
    /// Archive path.
    pub archive: Option<String>,
    /// `gzip` (or `zstd`, refused for now).
    pub compression: Option<String>,
    /// gzip level.
    pub level: Option<String>,
    /// Import into the engine.
    pub load: bool,
    /// `HOST/REPO:TAG`.
    pub push: Option<String>,
    /// Plain-HTTP registries.
    pub insecure: Vec<String>,
    /// Registry user.
    pub username: Option<String>,
    /// Registry password.
    pub password: Option<String>,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<String>,
    /// Layer reuse records folder.
    pub reuse_dir: Option<PathBuf>,
}

/// What a request did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The build.
    pub built: Built,
    /// Images loaded into the engine.
    pub loaded: Vec<Loaded>,
    /// The push.
    pub pushed: Option<PushReport>,
    /// Warnings for the log.
    pub warnings: Vec<String>,
}

fn pairs(items: &[String], what: &str) -> Result<Vec<(String, String)>, ImageError> {
    items
        .iter()
        .flat_map(|i| i.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ImageError::Input(format!("{what} `{l}` is not `NAME=VALUE`")))
        })
        .collect()
}

fn list(items: &[String]) -> Vec<String> {
    items
        .iter()
        .flat_map(|i| i.split([',', '\n']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Request {
    /// The build spec, with relative paths resolved against `cwd`.
    pub fn spec(&self, cwd: &Path) -> Result<BuildSpec, ImageError> {
        let platforms = super::parse_platforms(&self.platforms)?;
        let mut layers = Vec::new();
        for line in self.layers.iter().flat_map(|l| l.lines()).map(str::trim) {
            if !line.is_empty() {
                layers.extend(super::parse_layer_spec(line, &platforms, cwd)?);
            }
        }
        let (name, tag) = super::split_name_tag(self.tag.trim());
        super::check_name_tag(&name, &tag)?;
        let compression = match self.compression.as_deref().map(str::trim) {
            None | Some("") | Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some(other) => {
                return Err(ImageError::Input(format!(
                    "compression `{other}` is unknown (use `gzip` or `zstd`)"
                )));
            }
        };
        let max = if compression == Compression::Zstd {
            19
        } else {
            9
        };
        let level = match self
            .level
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => LayerOptions::default().level,
            Some(l) => l.parse().ok().filter(|n| *n <= max).ok_or_else(|| {
                ImageError::Input(format!("compression level `{l}` is not 0–{max}"))
            })?,
        };
        let argv = |v: &Option<String>, what: &str| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| super::parse_argv(s, what))
                .transpose()
        };
        let nonempty = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(BuildSpec {
            platforms,
            layers,
            base: nonempty(&self.base).map(|b| cwd.join(b)),
            config: ImageConfig {
                entrypoint: argv(&self.entrypoint, "entrypoint")?,
                cmd: argv(&self.cmd, "cmd")?,
                env: pairs(&self.env, "env")?,
                workdir: nonempty(&self.workdir),
                user: nonempty(&self.user),
                labels: pairs(&self.labels, "label")?.into_iter().collect(),
                exposed_ports: list(&self.exposed_ports),
            },
            annotations: pairs(&self.annotations, "annotation")?
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            name,
            tag,
            output: cwd.join(self.output.trim()),
            archive: nonempty(&self.archive).map(|a| cwd.join(a)),
            layer: LayerOptions {
                mtime: super::source_date_epoch(self.source_date_epoch.as_deref())?,
                level,
                compression,
            },
            reuse_dir: self.reuse_dir.clone(),
        })
    }

    fn push_options(&self) -> Result<PushOptions, ImageError> {
        let credentials = match (
            self.username.as_deref().filter(|s| !s.is_empty()),
            self.password.as_deref().filter(|s| !s.is_empty()),
        ) {
            (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
            (None, None) => None,
            _ => {
                return Err(ImageError::Input(
                    "give both a registry username and a password, or neither".to_owned(),
                ));
            }
        };
        Ok(PushOptions {
            insecure: list(&self.insecure),
            credentials,
            ..PushOptions::default()
        })
    }
}

/// Builds, then loads and pushes as asked.
pub async fn run_request(req: &Request, cwd: &Path) -> Result<Outcome, ImageError> {
    let mut spec = req.spec(cwd)?;
    let push_target = req
        .push
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Reference::parse)
        .transpose()?;
    let push_opts = req.push_options()?;
    let mut warnings = Vec::new();
    if spec.layer.compression == Compression::Zstd {
        warnings.push(
            "zstd layers cannot be read by Docker before 23 (20.10 fails to pull or load them) nor by umoci 0.4.7; use gzip for images older engines or tools must read".to_owned(),
        );
    }
    if req.load && spec.archive.is_none() {
        spec.archive = Some(spec.output.with_extension("tar"));
    }
    // `docker:NAME` bases come out of the engine as a docker-save archive first.
    let mut _exported = None;
    if let Some(name) = req
        .base
        .as_deref()
        .map(str::trim)
        .and_then(|b| b.strip_prefix("docker:"))
    {
        let docker = super::load::connect().await?;
        let tmp = tempfile::tempdir().map_err(|e| ImageError::Io(e.to_string()))?;
        spec.base = Some(super::dockerfile::export(&docker, name, tmp.path()).await?);
        _exported = Some(tmp);
    }
    let built = match req
        .dockerfile
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(df) => {
            let docker = super::load::connect().await?;
            let dockerfile = cwd.join(df);
            let context = match req
                .context
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                Some(c) => cwd.join(c),
                None => dockerfile
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| cwd.to_path_buf()),
            };
            let args = pairs(&req.build_args, "build argument")?;
            super::dockerfile::build(&docker, &spec, &dockerfile, &context, &args, &mut warnings)
                .await?
        }
        None => {
            let s = spec.clone();
            tokio::task::spawn_blocking(move || super::build(&s))
                .await
                .map_err(|e| ImageError::Io(format!("the build task failed: {e}")))??
        }
    };
    let mut loaded = Vec::new();
    if req.load
        && let Some(archive) = &built.archive
    {
        let docker = super::load::connect().await?;
        loaded = super::load::load(&docker, archive, &built).await?;
    }
    let mut pushed = None;
    if let Some(target) = push_target {
        let root = built.layout.clone();
        pushed = Some(
            tokio::task::spawn_blocking(move || {
                let l = super::layout::Layout::open(&root)?;
                super::push::push(&l, &target, &push_opts)
            })
            .await
            .map_err(|e| ImageError::Io(format!("the push task failed: {e}")))??,
        );
    }
    Ok(Outcome {
        built,
        loaded,
        pushed,
        warnings,
    })
}

/// The step outputs of an outcome.
pub fn outputs(o: &Outcome) -> IndexMap<String, String> {
    let mut out = IndexMap::new();
    let b = &o.built;
    out.insert("digest".to_owned(), b.index.digest.clone());
    let digests: BTreeMap<String, String> = b
        .platforms
        .iter()
        .map(|p| (p.platform.to_string(), p.manifest.digest.clone()))
        .collect();
    out.insert(
        "digests".to_owned(),
        serde_json::to_string(&digests).unwrap_or_default(),
    );
    for p in &b.platforms {
        let key = p.platform.to_string().replace('/', "-");
        out.insert(format!("digest-{key}"), p.manifest.digest.clone());
        out.insert(format!("config-{key}"), p.config.digest.clone());
    }
    out.insert("layout".to_owned(), b.layout.to_string_lossy().into_owned());
    if let Some(a) = &b.archive {
        out.insert("archive".to_owned(), a.to_string_lossy().into_owned());
    }
    out.insert("image".to_owned(), format!("{}:{}", b.name, b.tag));
    if let Some(p) = &o.pushed {
        let repo = p
            .reference
            .rsplit_once(':')
            .map(|(r, _)| r)
            .unwrap_or(&p.reference);
        out.insert("pushed".to_owned(), format!("{repo}@{}", p.digest));
    }
    out.insert("metadata".to_owned(), metadata(o).to_string());
    out
}

/// The JSON form of an outcome.
pub fn metadata(o: &Outcome) -> serde_json::Value {
    let mut v = o.built.to_json();
    v["loaded"] = serde_json::json!(
        o.loaded
            .iter()
            .map(|l| serde_json::json!({"platform": l.platform, "tags": l.tags, "id": l.id}))
            .collect::<Vec<_>>()
    );
    v["pushed"] = match &o.pushed {
        Some(p) => serde_json::json!({
            "reference": p.reference,
            "digest": p.digest,
            "blobs_uploaded": p.blobs_uploaded,
            "blobs_skipped": p.blobs_skipped,
            "bytes_uploaded": p.bytes_uploaded,
            "manifests": p.manifests,
            "retried": p.retried,
        }),
        None => serde_json::Value::Null,
    };
    v
}

/// Human lines describing an outcome (the step log, `pipe image build` on stderr).
pub fn describe(o: &Outcome) -> Vec<String> {
    let b = &o.built;
    let mut lines = vec![format!(
        "built `{}:{}` {} ({} platform(s), {} layer(s) packed, {} reused) in `{}`",
        b.name,
        b.tag,
        b.index.digest,
        b.platforms.len(),
        b.layers_written,
        b.layers_reused,
        b.layout.display()
    )];
    for p in &b.platforms {
        lines.push(format!(
            "  {}: {} (config {})",
            p.platform, p.manifest.digest, p.config.digest
        ));
    }
    if let Some(a) = &b.archive {
        lines.push(format!("archive `{}`", a.display()));
    }
    for l in &o.loaded {
        lines.push(format!("loaded {} as {}", l.tags.join(", "), l.id));
    }
    if let Some(p) = &o.pushed {
        lines.push(format!(
            "pushed `{}` {} ({} blob(s) sent, {} already there, {} manifest(s))",
            p.reference, p.digest, p.blobs_uploaded, p.blobs_skipped, p.manifests
        ));
    }
    lines
}

/// `pipe/image`.
pub struct ImageAction;

#[async_trait]
impl BuiltinAction for ImageAction {
    async fn run(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> BuiltinResult {
        use crate::util::{input, input_bool, input_lines};
        crate::util::warn_unexpected(out, call.inputs, INPUTS, call.uses);
        let i = call.inputs;
        let opt = |name: &str| Some(input(i, name).to_owned()).filter(|s| !s.is_empty());
        let env = |name: &str| crate::util::env(call.env, name).map(str::to_owned);
        let tag = opt("tags").unwrap_or_default();
        let tag = tag.lines().next().unwrap_or("").trim().to_owned();
        if tag.is_empty() {
            return Err("input `tags` is required (e.g. `tags: team/app:v1`)".to_owned());
        }
        let password = opt("password").or_else(|| env("PIPE_REGISTRY_PASSWORD"));
        if let Some(p) = &password {
            out.write(format!("::add-mask::{p}\n").as_bytes());
        }
        let default_output = call
            .temp
            .join(format!("image-{}", tag.replace(['/', ':'], "-")));
        let req = Request {
            platforms: vec![input(i, "platforms").to_owned()],
            layers: input_lines(i, "layers"),
            base: opt("base"),
            dockerfile: opt("dockerfile"),
            context: opt("context"),
            build_args: input_lines(i, "build-args"),
            entrypoint: opt("entrypoint"),
            cmd: opt("cmd"),
            env: input_lines(i, "env"),
            workdir: opt("workdir"),
            user: opt("user"),
            labels: input_lines(i, "labels"),
            exposed_ports: input_lines(i, "exposed-ports"),
            annotations: input_lines(i, "annotations"),
            tag,
            output: opt("output").unwrap_or_else(|| default_output.to_string_lossy().into_owned()),
            archive: opt("archive"),
            compression: opt("compression"),
            level: opt("compression-level"),
            load: input_bool(i, "load", false)?,
            push: opt("push"),
            insecure: input_lines(i, "insecure-registries"),
            username: opt("username").or_else(|| env("PIPE_REGISTRY_USERNAME")),
            password,
            source_date_epoch: env("SOURCE_DATE_EPOCH"),
            reuse_dir: pipe_runner::dirs::cache_root(&|k| env(k).or_else(|| std::env::var(k).ok()))
                .ok()
                .map(|d| d.join("image-layers")),
        };
        // A cancelled step ends now; a layer being packed finishes in the background and is
        // swept from the layout by the next build.
        let outcome = tokio::select! {
            r = run_request(&req, call.workspace) => r.map_err(|e| e.to_string())?,
            _ = call.cancel.soft.cancelled() => return Err("the image build was cancelled".to_owned()),
            _ = call.cancel.hard.cancelled() => return Err("the image build was cancelled".to_owned()),
        };
        for w in &outcome.warnings {
            crate::util::warning(out, w);
        }
        for l in describe(&outcome) {
            crate::util::line(out, &l);
        }
        let mut md = format!(
            "### Image `{}:{}`\n\nIndex `{}`\n\n| platform | manifest | config |\n|---|---|---|\n",
            outcome.built.name, outcome.built.tag, outcome.built.index.digest
        );
        for p in &outcome.built.platforms {
            md.push_str(&format!(
                "| {} | `{}` | `{}` |\n",
                p.platform, p.manifest.digest, p.config.digest
            ));
        }
        crate::util::append_step_summary(&call, md.as_bytes());
        Ok(outputs(&outcome))
    }
}
