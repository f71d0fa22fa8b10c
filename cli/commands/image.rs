//! `pipe image build|push|inspect`: the command-line face of [`pipe_actions::image`] (which
//! `uses: pipe/image@v1` shares). Data (the index digest, or `--json`) goes to stdout; what
//! happened goes to stderr.

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use pipe_actions::image::ImageError;
use pipe_actions::image::action::{self, Request};
use pipe_actions::image::layout::{self, Layout};
use pipe_actions::image::layout::{Index, Manifest};
use pipe_actions::image::push::{self, PushOptions, Reference};
use pipe_runner::exit;

use crate::args::Cli;
use crate::output;

// `pipe image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

// The image commands (a plain comment: see `args::Command`).
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a multi-platform OCI image from folders (or a Dockerfile), then optionally load
    /// it into Docker and push it.
    Build(Box<BuildArgs>),
    /// Push an OCI image layout to a registry (blobs, then manifests, then the index).
    Push(PushArgs),
    /// Verify an OCI image layout (every blob re-hashed) and list its platforms.
    Inspect(InspectArgs),
}

/// Registry access (shared by `build --push` and `push`).
#[derive(Debug, Args, Clone)]
pub struct RegistryArgs {
    /// A registry (`HOST:PORT`) reached over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure: Vec<String>,
    /// Registry user (or `PIPE_REGISTRY_USERNAME`).
    #[arg(long, env = "PIPE_REGISTRY_USERNAME", value_name = "NAME")]
    pub username: Option<String>,
    /// Read the registry password from stdin (else `PIPE_REGISTRY_PASSWORD`).
    #[arg(long)]
    pub password_stdin: bool,
}

impl RegistryArgs {
    fn password(&self) -> Result<Option<String>, String> {
        if self.password_stdin {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
            return Ok(Some(s.trim_end_matches(['\n', '\r']).to_owned()));
        }
        Ok(std::env::var("PIPE_REGISTRY_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty()))
    }
}

/// `pipe image build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The image name and tag (`team/app:v1`).
    #[arg(short, long, value_name = "NAME:TAG")]
    pub tag: String,
    /// Target platforms, comma-separated or repeated (`linux/amd64,linux/arm64`).
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]", required = true)]
    pub platforms: Vec<String>,
    /// A layer: `[PLATFORM=]SRC[:TARGET]` (repeatable, in order); `{arch}`, `{os}`,
    /// `{variant}` and `{platform}` in SRC are replaced per platform.
    #[arg(long = "layer", value_name = "SPEC")]
    pub layers: Vec<String>,
    /// A base image: an OCI layout (folder or tar), a docker-save archive, or `docker:NAME`
    /// (exported from the engine).
    #[arg(long, value_name = "PATH")]
    pub base: Option<String>,
    /// Build this Dockerfile once per platform with the Docker engine instead.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["layers", "base"])]
    pub dockerfile: Option<String>,
    /// The Dockerfile's build context (default: its folder).
    #[arg(long, value_name = "DIR", requires = "dockerfile")]
    pub context: Option<String>,
    /// A Dockerfile build argument (repeatable).
    #[arg(long = "build-arg", value_name = "NAME=VALUE", requires = "dockerfile")]
    pub build_args: Vec<String>,
    /// `ENTRYPOINT`: a JSON array or words.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// `CMD`: a JSON array or words.
    #[arg(long, value_name = "CMD")]
    pub cmd: Option<String>,
    /// An environment variable (repeatable).
    #[arg(short, long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// The working directory.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "NAME=VALUE")]
    pub labels: Vec<String>,
    /// An exposed port (`8080`, `53/udp`; repeatable).
    #[arg(long = "expose", value_name = "PORT")]
    pub expose: Vec<String>,
    /// An annotation on the index and manifests (repeatable).
    #[arg(long = "annotation", value_name = "NAME=VALUE")]
    pub annotations: Vec<String>,
    /// The OCI layout folder to write.
    #[arg(short, long, value_name = "DIR", default_value = "oci-image")]
    pub output: String,
    /// Also write one tar that is an OCI layout and a docker-save archive.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<String>,
    /// Layer compression: `gzip`, or `zstd` (Docker before 23 and umoci 0.4.7 cannot read it).
    #[arg(long, value_name = "KIND")]
    pub compression: Option<String>,
    /// Compression level: gzip 0–9 (default 1), zstd 0–19.
    #[arg(long, value_name = "N")]
    pub compression_level: Option<String>,
    /// Load the image into the Docker engine (`name:tag-<arch>`, and `name:tag` for this
    /// machine's platform).
    #[arg(long)]
    pub load: bool,
    /// Push to `HOST[:PORT]/REPO[:TAG]`.
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print what was built as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `pipe image push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The OCI layout folder.
    pub layout: PathBuf,
    /// `HOST[:PORT]/REPO[:TAG]`.
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pipe image inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The OCI layout folder.
    pub layout: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `pipe image …`.
pub fn run(cli: &Cli, args: &ImageArgs) -> u8 {
    let styles = super::err_styles(cli);
    let result = match &args.command {
        ImageCommand::Build(a) => build(cli, a),
        ImageCommand::Push(a) => push_cmd(cli, a),
        ImageCommand::Inspect(a) => inspect(a),
    };
    match result {
        Ok(()) => exit::SUCCESS,
        Err(ImageError::Interrupted) => {
            output::stderr_write(b"interrupted\n");
            SIGNAL_CODE.load(std::sync::atomic::Ordering::SeqCst)
        }
        Err(e) => {
            output::stderr_write(
                format!("{} {e}\n", styles.paint(styles.error, "error:")).as_bytes(),
            );
            e.exit_code()
        }
    }
}

fn print_stdout(text: &str) -> Result<(), ImageError> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match writeln!(o, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| ImageError::Io(format!("stdout: {e}"))),
    }
}

fn build(cli: &Cli, a: &BuildArgs) -> Result<(), ImageError> {
    let cwd = std::env::current_dir().map_err(|e| ImageError::Io(e.to_string()))?;
    let req = Request {
        platforms: a.platforms.clone(),
        layers: a.layers.clone(),
        base: a.base.clone(),
        dockerfile: a.dockerfile.clone(),
        context: a.context.clone(),
        build_args: a.build_args.clone(),
        entrypoint: a.entrypoint.clone(),
        cmd: a.cmd.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        labels: a.labels.clone(),
        exposed_ports: a.expose.clone(),
        annotations: a.annotations.clone(),
        tag: a.tag.clone(),
        output: a.output.clone(),
        archive: a.archive.clone(),
        compression: a.compression.clone(),
        level: a.compression_level.clone(),
        load: a.load,
        push: a.push.clone(),
        insecure: a.registry.insecure.clone(),
        username: a.registry.username.clone(),
        password: a.registry.password().map_err(ImageError::Input)?,
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
        reuse_dir: pipe_runner::dirs::cache_root(&pipe_runner::dirs::process_env)
            .ok()
            .map(|d| d.join("image-layers")),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ImageError::Io(format!("cannot start the async runtime: {e}")))?;
    let outcome = rt.block_on(async {
        // SIGINT/SIGTERM stop the build at its next entry, chunk or request; what it wrote
        // into temporary files goes with them.
        tokio::spawn(watch_signals());
        action::run_request(&req, &cwd).await
    });
    let outcome = outcome?;
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    if !cli.globals.quiet {
        for l in action::describe(&outcome) {
            eprintln!("{l}");
        }
    }
    if a.json {
        print_stdout(&serde_json::to_string_pretty(&action::metadata(&outcome)).unwrap_or_default())
    } else {
        print_stdout(&outcome.built.index.digest)
    }
}

/// The signal that interrupted us (143 for SIGTERM, else 130).
static SIGNAL_CODE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(130);

async fn watch_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let code = tokio::select! {
        _ = int.recv() => 130,
        _ = term.recv() => 143,
    };
    SIGNAL_CODE.store(code, std::sync::atomic::Ordering::SeqCst);
    pipe_actions::image::cancel();
}

fn push_cmd(cli: &Cli, a: &PushArgs) -> Result<(), ImageError> {
    let target = Reference::parse(&a.reference)?;
    let l = Layout::open(&a.layout)?;
    let password = a.registry.password().map_err(ImageError::Input)?;
    let credentials = match (a.registry.username.clone(), password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => {
            return Err(ImageError::Input(
                "give both `--username` and a password (`--password-stdin` or `PIPE_REGISTRY_PASSWORD`), or neither".to_owned(),
            ));
        }
    };
    let opts = PushOptions {
        insecure: a.registry.insecure.clone(),
        credentials,
        ..PushOptions::default()
    };
    let r = push::push(&l, &target, &opts)?;
    if !cli.globals.quiet {
        eprintln!(
            "pushed `{}` {} ({} blob(s) sent, {} already there, {} manifest(s))",
            r.reference, r.digest, r.blobs_uploaded, r.blobs_skipped, r.manifests
        );
    }
    if a.json {
        print_stdout(
            &serde_json::json!({
                "reference": r.reference,
                "digest": r.digest,
                "blobs_uploaded": r.blobs_uploaded,
                "blobs_skipped": r.blobs_skipped,
                "bytes_uploaded": r.bytes_uploaded,
                "manifests": r.manifests,
                "retried": r.retried,
            })
            .to_string(),
        )
    } else {
        print_stdout(&r.digest)
    }
}

fn inspect(a: &InspectArgs) -> Result<(), ImageError> {
    let l = Layout::open(&a.layout)?;
    let blobs = l.verify()?;
    let top = l.index_json()?;
    let mut images = Vec::new();
    for d in &top.manifests {
        let mut platforms = Vec::new();
        if d.media_type == layout::MT_INDEX {
            let idx: Index = serde_json::from_slice(&l.read_blob(d)?)
                .map_err(|e| ImageError::Corrupt(format!("index `{}`: {e}", d.digest)))?;
            for m in &idx.manifests {
                let man: Manifest = serde_json::from_slice(&l.read_blob(m)?)
                    .map_err(|e| ImageError::Corrupt(format!("manifest `{}`: {e}", m.digest)))?;
                let p = m
                    .platform
                    .as_ref()
                    .map(|p| {
                        let mut s = format!("{}/{}", p.os, p.architecture);
                        if let Some(v) = &p.variant {
                            s.push('/');
                            s.push_str(v);
                        }
                        s
                    })
                    .unwrap_or_default();
                platforms.push(serde_json::json!({
                    "platform": p,
                    "digest": m.digest,
                    "config": man.config.digest,
                    "layers": man.layers.len(),
                    "size": man.layers.iter().map(|l| l.size).sum::<u64>(),
                }));
            }
        }
        images.push(serde_json::json!({
            "ref": d.annotations.get(layout::REF_NAME),
            "digest": d.digest,
            "media_type": d.media_type,
            "platforms": platforms,
        }));
    }
    if a.json {
        return print_stdout(
            &serde_json::to_string_pretty(&serde_json::json!({
                "layout": a.layout,
                "blobs_verified": blobs.len(),
                "images": images,
            }))
            .unwrap_or_default(),
        );
    }
    let mut text = String::new();
    for i in &images {
        text.push_str(&format!(
            "{} {}\n",
            i["ref"].as_str().unwrap_or("-"),
            i["digest"].as_str().unwrap_or("")
        ));
        for p in i["platforms"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "  {:<14} {}  {} layer(s), {} bytes\n",
                p["platform"].as_str().unwrap_or(""),
                p["digest"].as_str().unwrap_or(""),
                p["layers"],
                p["size"]
            ));
        }
    }
    text.push_str(&format!("{} blob(s) verified", blobs.len()));
    print_stdout(&text)
}
