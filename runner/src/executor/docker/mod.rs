//! The Docker executor: jobs with a container run as one container per job, each step an
//! `exec` in it (GitHub's model); jobs without one run on the host (through
//! [`HostExecutor`]), with their service containers if they have any.
//!
//! - The engine is found lazily, on the first job that needs it ([`endpoint`]).
//! - The workspace and the run's scratch folder are bind-mounted at the same paths inside the
//!   job container, so `GITHUB_WORKSPACE`, `RUNNER_TEMP`, the per-step env files and
//!   `GITHUB_EVENT_PATH` mean the same thing inside and outside.
//! - Services run on a per-job bridge network where the service id is the host name; their
//!   ports are published on the host, and readiness is their health check.
//! - Every container, network and volume carries [`LABEL_RUN`] (the run id), [`LABEL_PID`]
//!   and [`LABEL_MANAGED`]: job cleanup removes its own, [`sweep_run`] removes whatever a run
//!   left (after a panic), and [`prune`] removes what a killed `pipe` left.
//! - Timeouts and cancellation stop the step's processes inside the container: SIGTERM, a
//!   grace period, SIGKILL to the exec's process tree.

pub mod endpoint;
pub mod options;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HealthStatusEnum, HostConfig,
    NetworkCreateRequest, NetworkingConfig, PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::host::HostExecutor;
use super::{
    ActionImage, Cancel, ContainerAction, ContainerSpec, ExecError, Executor, JobHandle, JobPaths,
    JobSetup, OutputSink, ServiceInfo, ServiceSpec, StepCommand, StepExit, host_os,
};
use endpoint::short_error;

/// Label holding the run id on everything pipe creates.
pub const LABEL_RUN: &str = "dev.pipe.run";
/// Label holding the pid of the `pipe` process that created it.
pub const LABEL_PID: &str = "dev.pipe.pid";
/// Label marking pipe's own containers, networks and volumes.
pub const LABEL_MANAGED: &str = "dev.pipe.managed";
/// Label holding the job key.
pub const LABEL_JOB: &str = "dev.pipe.job";
/// Label holding the start time of the creating process (clock ticks since boot), so a reused
/// pid is not taken for the creator.
pub const LABEL_STARTED: &str = "dev.pipe.started";
/// PATH when an image sets none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Longest wait for services to become healthy.
const SERVICE_READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The environment variable that marks a step's processes (to find them to stop them).
const STEP_MARKER: &str = "PIPE_STEP_ID";

/// When images are pulled (`--pull`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull only images that are not present (the default).
    #[default]
    Missing,
    /// Pull every image once per run.
    Always,
    /// Never pull: a missing image fails the job.
    Never,
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(format!(
                "`{other}` is not a pull policy (use `missing`, `always` or `never`)"
            )),
        }
    }
}

/// Receives progress lines (image pulls and builds) for the user.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Settings of the Docker executor.
#[derive(Clone)]
pub struct DockerOptions {
    /// The run id every resource is labelled with.
    pub run_id: String,
    /// `--pull`.
    pub pull: PullPolicy,
    /// `--container-platform`: the platform of job containers without their own.
    pub platform: Option<String>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Where progress lines go.
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for DockerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerOptions")
            .field("run_id", &self.run_id)
            .field("pull", &self.pull)
            .field("platform", &self.platform)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            run_id: format!("{}", std::process::id()),
            pull: PullPolicy::Missing,
            platform: None,
            grace: super::host::DEFAULT_GRACE,
            progress: None,
        }
    }
}

/// A connected engine.
#[derive(Clone, Debug)]
pub struct Engine {
    /// The client.
    pub docker: Docker,
    /// Where it was found.
    pub endpoint: endpoint::Candidate,
}

impl Engine {
    /// Finds and connects to the engine.
    pub async fn connect() -> Result<Engine, endpoint::NoEngine> {
        let (docker, endpoint) = endpoint::connect(&endpoint::ProcessEnv).await?;
        Ok(Engine { docker, endpoint })
    }

    /// Whether the engine runs on this machine (its process ids are ours to signal).
    fn local(&self) -> bool {
        self.endpoint.host.starts_with("unix://") || self.endpoint.host.starts_with('/')
    }
}

/// Runs jobs with a container (or services) through the engine, the others on the host.
pub struct DockerExecutor {
    host: HostExecutor,
    opts: DockerOptions,
    engine: Arc<OnceCell<Result<Engine, String>>>,
    /// Images already pulled in this run (`--pull=always` pulls each once).
    pulled: tokio::sync::Mutex<HashSet<String>>,
    /// Per image (and platform): its `PATH` and whether it has `bash`, looked up once a run.
    image_facts: tokio::sync::Mutex<HashMap<String, ImageFacts>>,
    /// Containers, networks and volumes of this run that exist now.
    live: Arc<std::sync::atomic::AtomicUsize>,
    /// Background removals of finished jobs' containers.
    pending: Pending,
}

/// Background removals, awaited by [`DockerExecutor::finish`].
type Pending = Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>;

#[derive(Clone, Debug, Default)]
struct ImageFacts {
    path: String,
    has_bash: Option<bool>,
}

impl DockerExecutor {
    /// An executor with these settings; the engine is found on first use.
    pub fn new(host: HostExecutor, opts: DockerOptions) -> Self {
        DockerExecutor {
            host,
            opts,
            engine: Arc::new(OnceCell::new()),
            pulled: tokio::sync::Mutex::new(HashSet::new()),
            image_facts: tokio::sync::Mutex::new(HashMap::new()),
            live: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            pending: Pending::default(),
        }
    }

    /// An executor using an engine that is already connected.
    pub fn with_engine(host: HostExecutor, opts: DockerOptions, engine: Engine) -> Self {
        let ex = Self::new(host, opts);
        let _ = ex.engine.set(Ok(engine));
        ex
    }

    /// The engine, connecting on first use.
    pub async fn engine(&self) -> Result<Engine, ExecError> {
        self.engine
            .get_or_init(|| async { Engine::connect().await.map_err(|e| e.to_string()) })
            .await
            .clone()
            .map_err(ExecError::Other)
    }

    /// Why the engine could not be reached, if a job needed it and it did not answer.
    pub fn engine_error(&self) -> Option<String> {
        self.engine.get().and_then(|r| r.as_ref().err()).cloned()
    }

    /// Waits for the background removal of finished jobs' containers (call before the run
    /// ends, and before [`sweep_run`]).
    pub async fn finish(&self) {
        loop {
            let batch: Vec<_> = match self.pending.lock() {
                Ok(mut p) => p.drain(..).collect(),
                Err(_) => return,
            };
            if batch.is_empty() {
                return;
            }
            for h in batch {
                let _ = h.await;
            }
        }
    }

    /// Whether a job left a container, network or volume (a panicked job never cleaned up):
    /// then the run sweeps its label.
    pub fn needs_sweep(&self) -> bool {
        self.live.load(Ordering::SeqCst) > 0
    }

    /// Whether the engine was used in this run (so there may be something to sweep).
    pub fn engine_if_connected(&self) -> Option<Engine> {
        self.engine.get().and_then(|r| r.as_ref().ok()).cloned()
    }

    fn labels(&self, job: &str) -> HashMap<String, String> {
        labels(&self.opts.run_id, job)
    }

    /// Makes sure `image` is present according to the pull policy.
    async fn ensure_image(
        &self,
        engine: &Engine,
        image: &str,
        platform: Option<&str>,
        credentials: Option<&(String, String)>,
    ) -> Result<(), ExecError> {
        // Checked (or pulled) once per run and image, whatever the policy.
        let key = format!("{image}|{}", platform.unwrap_or(""));
        if self.pulled.lock().await.contains(&key) {
            return Ok(());
        }
        let inspected = engine.docker.inspect_image(image).await.ok();
        let present = inspected.is_some();
        if let Some(env) = inspected.and_then(|i| i.config).and_then(|c| c.env) {
            let path = env
                .iter()
                .find_map(|kv| kv.strip_prefix("PATH="))
                .unwrap_or(DEFAULT_PATH)
                .to_owned();
            self.image_facts
                .lock()
                .await
                .entry(key.clone())
                .or_insert(ImageFacts {
                    path,
                    has_bash: None,
                });
        }
        match self.opts.pull {
            PullPolicy::Never if !present => {
                return Err(ExecError::Other(format!(
                    "image `{image}` is not present and `--pull=never` forbids pulling it"
                )));
            }
            PullPolicy::Never | PullPolicy::Missing if present => {}
            _ => {
                pull(
                    engine,
                    image,
                    platform,
                    credentials,
                    self.opts.progress.as_ref(),
                )
                .await?;
            }
        }
        self.pulled.lock().await.insert(key);
        Ok(())
    }
}

/// The labels of a resource of `run`.
pub fn labels(run: &str, job: &str) -> HashMap<String, String> {
    let mut l = HashMap::from([
        (LABEL_MANAGED.to_owned(), "1".to_owned()),
        (LABEL_RUN.to_owned(), run.to_owned()),
        (LABEL_PID.to_owned(), std::process::id().to_string()),
        (LABEL_JOB.to_owned(), job.to_owned()),
    ]);
    if let Some(t) = start_time("self") {
        l.insert(LABEL_STARTED.to_owned(), t);
    }
    l
}

/// A process's start time (field 22 of `/proc/PID/stat`).
fn start_time(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from the last `)`.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// Pulls `image`, reporting progress.
async fn pull(
    engine: &Engine,
    image: &str,
    platform: Option<&str>,
    credentials: Option<&(String, String)>,
    progress: Option<&Progress>,
) -> Result<(), ExecError> {
    let (name, tag) = split_tag(image);
    let mut b = CreateImageOptionsBuilder::default().from_image(name);
    if let Some(t) = tag {
        b = b.tag(t);
    }
    if let Some(p) = platform {
        b = b.platform(p);
    }
    let creds = credentials.map(|(u, p)| bollard::auth::DockerCredentials {
        username: Some(u.clone()),
        password: Some(p.clone()),
        ..Default::default()
    });
    if let Some(p) = progress {
        p(&format!("pulling `{image}`"));
    }
    let mut stream = engine.docker.create_image(Some(b.build()), None, creds);
    let mut last = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    return Err(ExecError::Other(format!(
                        "cannot pull image `{image}`: {e}"
                    )));
                }
                if let (Some(p), Some(status)) = (progress, info.status) {
                    let line = match (&info.id, &info.progress_detail) {
                        (Some(id), Some(d)) if d.total.unwrap_or(0) > 0 => format!(
                            "pulling `{image}`: {id} {status} {}/{} MB",
                            d.current.unwrap_or(0) >> 20,
                            d.total.unwrap_or(0) >> 20
                        ),
                        (Some(id), _) => format!("pulling `{image}`: {id} {status}"),
                        _ => format!("pulling `{image}`: {status}"),
                    };
                    if line != last {
                        p(&line);
                        last = line;
                    }
                }
            }
            Err(e) => {
                return Err(ExecError::Other(format!(
                    "cannot pull image `{image}`: {}",
                    short_error(&e)
                )));
            }
        }
    }
    Ok(())
}

/// `name:tag` → (`name`, `tag`); a digest or a registry port stays in the name.
fn split_tag(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    match image.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (image, Some("latest")),
    }
}

/// A name Docker accepts, made from parts.
fn resource_name(parts: &[&str]) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut s = String::from("pipe");
    for p in parts {
        s.push('-');
        s.extend(p.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        }));
    }
    s.truncate(100);
    format!("{s}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// `8080:80/tcp`, `80`, `127.0.0.1:8080:80` → (`80/tcp`, host ip, host port).
fn parse_port(spec: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let (addr, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let parts: Vec<&str> = addr.split(':').collect();
    let (ip, host, cport) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h), *c),
        _ => return Err(format!("`{spec}` is not a port mapping")),
    };
    if cport.is_empty() || !cport.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return Err(format!("`{spec}` is not a port mapping"));
    }
    Ok((
        format!("{cport}/{proto}"),
        ip.map(str::to_owned),
        host.filter(|h| !h.is_empty()).map(str::to_owned),
    ))
}

/// Whether a volume source is a named volume (not a host path).
fn named_volume(spec: &str) -> Option<&str> {
    let (src, _) = spec.split_once(':')?;
    (!src.is_empty() && !src.starts_with('/') && !src.starts_with('.') && !src.starts_with('~'))
        .then_some(src)
}

/// Everything a job created, removed at cleanup.
#[derive(Default)]
struct Resources {
    /// Resources of the whole run that exist now (created and not yet removed).
    live: Arc<std::sync::atomic::AtomicUsize>,
    containers: Vec<String>,
    /// (service id, container id) for logs.
    services: Vec<(String, String)>,
    network: Option<String>,
    volumes: Vec<String>,
}

/// A container create body for a spec with its options applied.
struct Built {
    body: ContainerCreateBody,
    platform: Option<String>,
}

fn build_body(
    spec: &ContainerSpec,
    labels: &HashMap<String, String>,
    network: Option<&str>,
    aliases: Vec<String>,
    binds: Vec<String>,
    default_platform: Option<&str>,
) -> Result<Built, ExecError> {
    let o = options::parse(&spec.options)
        .map_err(|e| ExecError::Other(format!("in the options of `{}`: {e}", spec.image)))?;
    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(o.env.iter().cloned());
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in spec.ports.iter().chain(&o.ports) {
        let (cport, ip, host) = parse_port(p).map_err(ExecError::Other)?;
        exposed.push(cport.clone());
        bindings
            .entry(cport)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: ip,
                host_port: Some(host.unwrap_or_default()),
            });
    }
    let mut all_binds = binds;
    all_binds.extend(spec.volumes.iter().cloned());
    all_binds.extend(o.volumes.iter().cloned());
    let mut all_labels = labels.clone();
    all_labels.extend(o.labels.iter().cloned());
    let healthcheck = o.health_cmd.as_ref().map(|cmd| HealthConfig {
        test: Some(vec!["CMD-SHELL".to_owned(), cmd.clone()]),
        interval: o.health_interval,
        timeout: o.health_timeout,
        retries: o.health_retries,
        start_period: o.health_start_period,
        ..Default::default()
    });
    let tmpfs: HashMap<String, String> = o
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, opts)) => (p.to_owned(), opts.to_owned()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let mut aliases = aliases;
    aliases.extend(o.aliases.iter().cloned());
    let networking_config = network.map(|n| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            n.to_owned(),
            EndpointSettings {
                aliases: (!aliases.is_empty()).then_some(aliases),
                ..Default::default()
            },
        )])),
    });
    let host_config = HostConfig {
        binds: (!all_binds.is_empty()).then_some(all_binds),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        network_mode: network.map(str::to_owned),
        nano_cpus: o.nano_cpus,
        memory: o.memory,
        privileged: o.privileged.then_some(true),
        init: o.init.then_some(true),
        cap_add: (!o.cap_add.is_empty()).then(|| o.cap_add.clone()),
        cap_drop: (!o.cap_drop.is_empty()).then(|| o.cap_drop.clone()),
        extra_hosts: (!o.extra_hosts.is_empty()).then(|| o.extra_hosts.clone()),
        shm_size: o.shm_size,
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        security_opt: (!o.security_opt.is_empty()).then(|| o.security_opt.clone()),
        pids_limit: o.pids_limit,
        ..Default::default()
    };
    let platform = spec
        .platform
        .clone()
        .or(o.platform.clone())
        .or(default_platform.map(str::to_owned));
    Ok(Built {
        body: ContainerCreateBody {
            image: Some(spec.image.clone()),
            env: (!env.is_empty()).then_some(env),
            user: o.user.clone(),
            hostname: o.hostname.clone(),
            working_dir: o.workdir.clone(),
            entrypoint: o.entrypoint.as_ref().map(|e| vec![e.clone()]),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            labels: Some(all_labels),
            healthcheck,
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        },
        platform,
    })
}

/// `RUNNER_ARCH` of a platform (`linux/arm64` → `ARM64`).
pub fn platform_arch(platform: &str) -> &'static str {
    let arch = platform.split('/').nth(1).unwrap_or(platform);
    match arch {
        "amd64" | "x86_64" => "X64",
        "arm64" | "aarch64" => "ARM64",
        "arm" => "ARM",
        "386" => "X86",
        _ => super::host_arch(),
    }
}

#[async_trait]
impl Executor for DockerExecutor {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn prepare(&self, setup: &JobSetup) -> Result<Box<dyn JobHandle>, ExecError> {
        if setup.container.is_none() && setup.services.is_empty() {
            let host = self.host.prepare(setup).await?;
            return Ok(Box::new(DockerJob::host_only(host, self)));
        }
        let engine = self.engine().await?;
        let mut job = DockerJob {
            engine: Some(engine.clone()),
            engine_cell: self.engine.clone(),
            pending: self.pending.clone(),
            host: None,
            container: None,
            paths: JobPaths {
                temp_host: PathBuf::new(),
                temp_exec: PathBuf::new(),
                workspace_exec: setup.workspace.clone(),
                os: "Linux",
                arch: super::host_arch(),
                has_bash: None,
                path: None,
                services: Vec::new(),
                container: None,
            },
            res: Resources {
                live: self.live.clone(),
                ..Resources::default()
            },
            labels: self.labels(&setup.key),
            grace: self.opts.grace,
            log_dir: setup.log_dir.clone(),
            workspace: setup.workspace.clone(),
            run_temp: setup.run_temp.clone(),
            temp_dir: None,
            cleaned: false,
            opts: self.opts.clone(),
            pulled: None,
        };
        // A cancelled set-up (Ctrl-C during a pull) stops at once; what it made goes.
        let result = tokio::select! {
            r = self.set_up(&engine, setup, &mut job) => r,
            () = setup.cancel.hard.cancelled() => {
                // A request in flight may still create something: make the run sweep its label.
                self.live.fetch_add(1, Ordering::SeqCst);
                Err(ExecError::Other("cancelled while setting up the job".to_owned()))
            }
        };
        match result {
            Ok(()) => Ok(Box::new(job)),
            Err(e) => {
                let _ = job.cleanup().await;
                Err(e)
            }
        }
    }
}

impl DockerExecutor {
    async fn set_up(
        &self,
        engine: &Engine,
        setup: &JobSetup,
        job: &mut DockerJob,
    ) -> Result<(), ExecError> {
        let d = &engine.docker;
        let labels = self.labels(&setup.key);
        if !setup.services.is_empty() {
            let name = resource_name(&[&self.opts.run_id, &setup.key]);
            d.create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".to_owned()),
                labels: Some(labels.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                ExecError::Other(format!(
                    "cannot create network `{name}`: {}",
                    short_error(&e)
                ))
            })?;
            job.res.live.fetch_add(1, Ordering::SeqCst);
            job.res.network = Some(name);
        }
        let network = job.res.network.clone();
        for s in &setup.services {
            let info = self
                .start_service(engine, setup, s, network.as_deref(), &labels, job)
                .await?;
            job.paths.services.push(info);
        }
        if !setup.services.is_empty() {
            self.wait_ready(engine, setup, job).await?;
        }
        match &setup.container {
            None => {
                let host = self.host.prepare(setup).await?;
                let services = std::mem::take(&mut job.paths.services);
                job.paths = host.paths().clone();
                job.paths.services = services;
                job.host = Some(tokio::sync::Mutex::new(host));
            }
            Some(spec) => {
                let temp = setup.run_temp.join(&setup.key);
                std::fs::create_dir_all(&temp)
                    .map_err(|e| ExecError::io(format!("cannot create `{}`", temp.display()), e))?;
                // Steps may run as another user (`options: --user`): they must be able to create
                // their env files here.
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o777));
                job.temp_dir = Some(temp.clone());
                self.start_job_container(engine, setup, spec, network.as_deref(), &labels, job)
                    .await?;
                job.paths.temp_host = temp.clone();
                job.paths.temp_exec = temp;
            }
        }
        Ok(())
    }

    async fn create_volumes(
        &self,
        engine: &Engine,
        spec: &ContainerSpec,
        labels: &HashMap<String, String>,
        job: &mut DockerJob,
    ) -> Result<(), ExecError> {
        for v in &spec.volumes {
            if let Some(name) = named_volume(v) {
                if job.res.volumes.iter().any(|x| x == name) {
                    continue;
                }
                // An existing volume belongs to the user: use it, never remove it.
                if engine.docker.inspect_volume(name).await.is_ok() {
                    continue;
                }
                engine
                    .docker
                    .create_volume(VolumeCreateRequest {
                        name: Some(name.to_owned()),
                        labels: Some(labels.clone()),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| {
                        ExecError::Other(format!(
                            "cannot create volume `{name}`: {}",
                            short_error(&e)
                        ))
                    })?;
                job.res.live.fetch_add(1, Ordering::SeqCst);
                job.res.volumes.push(name.to_owned());
            }
        }
        Ok(())
    }

    async fn start_service(
        &self,
        engine: &Engine,
        setup: &JobSetup,
        s: &ServiceSpec,
        network: Option<&str>,
        labels: &HashMap<String, String>,
        job: &mut DockerJob,
    ) -> Result<ServiceInfo, ExecError> {
        let d = &engine.docker;
        let spec = &s.container;
        self.ensure_image(
            engine,
            &spec.image,
            spec.platform.as_deref(),
            spec.credentials.as_ref(),
        )
        .await?;
        self.create_volumes(engine, spec, labels, job).await?;
        let mut built = build_body(spec, labels, network, vec![s.id.clone()], Vec::new(), None)?;
        if let Some(c) = &s.command {
            built.body.cmd = Some(options::split_words(c).map_err(ExecError::Other)?);
        }
        if let Some(e) = &s.entrypoint {
            built.body.entrypoint = Some(options::split_words(e).map_err(ExecError::Other)?);
        }
        let name = resource_name(&[&self.opts.run_id, &setup.key, &s.id]);
        let mut opts = CreateContainerOptionsBuilder::default().name(&name);
        if let Some(p) = &built.platform {
            opts = opts.platform(p);
        }
        let created = d
            .create_container(Some(opts.build()), built.body)
            .await
            .map_err(|e| {
                ExecError::Other(format!(
                    "cannot create service `{}` from `{}`: {}",
                    s.id,
                    spec.image,
                    short_error(&e)
                ))
            })?;
        job.res.live.fetch_add(1, Ordering::SeqCst);
        job.res.containers.push(created.id.clone());
        job.res.services.push((s.id.clone(), created.id.clone()));
        d.start_container(&created.id, None).await.map_err(|e| {
            ExecError::Other(format!(
                "cannot start service `{}`: {}",
                s.id,
                short_error(&e)
            ))
        })?;
        let inspect = d
            .inspect_container(&created.id, None)
            .await
            .map_err(|e| ExecError::Other(short_error(&e)))?;
        let mut ports = Vec::new();
        if let Some(map) = inspect.network_settings.and_then(|n| n.ports) {
            for (cport, binds) in map {
                let host = binds
                    .into_iter()
                    .flatten()
                    .find_map(|b| b.host_port.filter(|p| !p.is_empty()));
                if let Some(h) = host {
                    let c = cport.split('/').next().unwrap_or(&cport).to_owned();
                    ports.push((c, h));
                }
            }
        }
        ports.sort();
        Ok(ServiceInfo {
            id: s.id.clone(),
            container_id: created.id,
            network: network.unwrap_or("").to_owned(),
            ports,
        })
    }

    /// Waits until every service is healthy (or running, without a health check).
    async fn wait_ready(
        &self,
        engine: &Engine,
        setup: &JobSetup,
        job: &DockerJob,
    ) -> Result<(), ExecError> {
        let deadline = tokio::time::Instant::now() + SERVICE_READY_TIMEOUT;
        for (id, cid) in &job.res.services {
            let mut delay = Duration::from_millis(50);
            loop {
                let i = engine
                    .docker
                    .inspect_container(cid, None)
                    .await
                    .map_err(|e| ExecError::Other(short_error(&e)))?;
                let state = i.state.unwrap_or_default();
                if !state.running.unwrap_or(false) {
                    return Err(ExecError::Other(format!(
                        "service `{id}` exited with code {} before the job started",
                        state.exit_code.unwrap_or(0)
                    )));
                }
                match state.health.and_then(|h| h.status) {
                    None | Some(HealthStatusEnum::HEALTHY | HealthStatusEnum::NONE) => break,
                    Some(HealthStatusEnum::EMPTY) => break,
                    Some(HealthStatusEnum::UNHEALTHY) => {
                        return Err(ExecError::Other(format!("service `{id}` is unhealthy")));
                    }
                    Some(HealthStatusEnum::STARTING) => {}
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(ExecError::Other(format!(
                        "service `{id}` was not healthy within {} s",
                        SERVICE_READY_TIMEOUT.as_secs()
                    )));
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = setup.cancel.soft.cancelled() => {
                        return Err(ExecError::Other(format!(
                            "cancelled while waiting for service `{id}`"
                        )));
                    }
                }
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
        Ok(())
    }

    async fn start_job_container(
        &self,
        engine: &Engine,
        setup: &JobSetup,
        spec: &ContainerSpec,
        network: Option<&str>,
        labels: &HashMap<String, String>,
        job: &mut DockerJob,
    ) -> Result<(), ExecError> {
        let d = &engine.docker;
        let platform = spec.platform.clone().or(self.opts.platform.clone());
        self.ensure_image(
            engine,
            &spec.image,
            platform.as_deref(),
            spec.credentials.as_ref(),
        )
        .await?;
        self.create_volumes(engine, spec, labels, job).await?;
        let mut binds = vec![
            format!("{0}:{0}", setup.workspace.display()),
            format!("{0}:{0}", setup.run_temp.display()),
        ];
        binds.extend(
            setup
                .extra_mounts
                .iter()
                .filter(|p| p.is_dir() && !p.starts_with(&setup.workspace))
                .map(|p| format!("{0}:{0}:ro", p.display())),
        );
        let mut built = build_body(
            spec,
            labels,
            network,
            Vec::new(),
            binds,
            self.opts.platform.as_deref(),
        )?;
        built.body.entrypoint = Some(vec!["tail".into(), "-f".into(), "/dev/null".into()]);
        built.body.cmd = None;
        if built.body.working_dir.is_none() {
            built.body.working_dir = Some(setup.workspace.display().to_string());
        }
        let name = resource_name(&[&self.opts.run_id, &setup.key]);
        let mut opts = CreateContainerOptionsBuilder::default().name(&name);
        if let Some(p) = &built.platform {
            opts = opts.platform(p);
        }
        let created = d
            .create_container(Some(opts.build()), built.body)
            .await
            .map_err(|e| {
                ExecError::Other(format!(
                    "cannot create a container from `{}`: {}",
                    spec.image,
                    short_error(&e)
                ))
            })?;
        tracing::debug!(image = %spec.image, id = %created.id, "job container created");
        job.res.live.fetch_add(1, Ordering::SeqCst);
        job.res.containers.push(created.id.clone());
        job.container = Some(created.id.clone());
        job.paths.container = Some((created.id.clone(), network.unwrap_or("bridge").to_owned()));
        d.start_container(&created.id, None).await.map_err(|e| {
            ExecError::Other(format!(
                "cannot start the job container (`{}`): {}",
                spec.image,
                short_error(&e)
            ))
        })?;
        tracing::debug!(id = %created.id, "job container started");
        // The image's PATH, the job's architecture and whether `bash` is there (asked once per
        // image and run: both are properties of the image).
        let key = format!("{}|{}", spec.image, built.platform.as_deref().unwrap_or(""));
        let known = self.image_facts.lock().await.get(&key).cloned();
        let mut facts = match known {
            Some(f) => f,
            None => {
                let image_env = d
                    .inspect_image(&spec.image)
                    .await
                    .ok()
                    .and_then(|i| i.config)
                    .and_then(|c| c.env)
                    .unwrap_or_default();
                ImageFacts {
                    path: image_env
                        .iter()
                        .find_map(|kv| kv.strip_prefix("PATH="))
                        .unwrap_or(DEFAULT_PATH)
                        .to_owned(),
                    has_bash: None,
                }
            }
        };
        if let Some(p) = &built.platform {
            job.paths.arch = platform_arch(p);
        }
        job.paths.os = host_os();
        job.paths.path = Some(facts.path.clone());
        job.paths.has_bash = Some(if spec.job_container {
            // GitHub: the default shell inside a `container:` is `sh`.
            false
        } else {
            match facts.has_bash {
                Some(b) => b,
                None => {
                    let b = job
                        .exec_status(&["sh", "-c", "command -v bash >/dev/null 2>&1"])
                        .await
                        .is_ok_and(|code| code == 0);
                    facts.has_bash = Some(b);
                    b
                }
            }
        });
        self.image_facts.lock().await.insert(key, facts);
        Ok(())
    }
}

/// A prepared job: on the host (maybe with services) or in a container.
pub struct DockerJob {
    engine: Option<Engine>,
    /// The executor's engine cell (a host job connects on its first container action).
    engine_cell: Arc<OnceCell<Result<Engine, String>>>,
    /// Where the background removal of this job's resources is registered.
    pending: Pending,
    /// The host job (a tokio mutex only to make this type `Sync`; never contended).
    host: Option<tokio::sync::Mutex<Box<dyn JobHandle>>>,
    container: Option<String>,
    paths: JobPaths,
    res: Resources,
    labels: HashMap<String, String>,
    grace: Duration,
    log_dir: Option<PathBuf>,
    workspace: PathBuf,
    run_temp: PathBuf,
    /// The job's temp folder (container jobs).
    temp_dir: Option<PathBuf>,
    cleaned: bool,
    opts: DockerOptions,
    /// For host-only jobs that run a container action: images pulled by this job.
    pulled: Option<HashSet<String>>,
}

impl DockerJob {
    fn host_only(host: Box<dyn JobHandle>, ex: &DockerExecutor) -> Self {
        let engine = ex.engine_if_connected();
        let engine_cell = ex.engine.clone();
        let paths = host.paths().clone();
        DockerJob {
            engine,
            engine_cell,
            pending: ex.pending.clone(),
            host: Some(tokio::sync::Mutex::new(host)),
            container: None,
            paths,
            res: Resources {
                live: ex.live.clone(),
                ..Resources::default()
            },
            labels: HashMap::new(),
            grace: ex.opts.grace,
            log_dir: None,
            workspace: PathBuf::new(),
            run_temp: PathBuf::new(),
            temp_dir: None,
            cleaned: false,
            opts: ex.opts.clone(),
            pulled: Some(HashSet::new()),
        }
    }

    /// Runs a command in the job container and returns its exit code (no output kept).
    async fn exec_status(&self, argv: &[&str]) -> Result<i64, ExecError> {
        let (Some(engine), Some(c)) = (&self.engine, &self.container) else {
            return Err(ExecError::Other("no job container".to_owned()));
        };
        let d = &engine.docker;
        let exec = d
            .create_exec(
                c,
                CreateExecOptions {
                    cmd: Some(argv.iter().map(|s| (*s).to_owned()).collect()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ExecError::Other(short_error(&e)))?;
        if let StartExecResults::Attached { mut output, .. } = d
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|e| ExecError::Other(short_error(&e)))?
        {
            while output.next().await.is_some() {}
        }
        let i = d
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| ExecError::Other(short_error(&e)))?;
        Ok(i.exit_code.unwrap_or(-1))
    }

    async fn run_in_container(
        &mut self,
        engine: &Engine,
        container: &str,
        step: &StepCommand,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<StepExit, ExecError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let script =
            self.paths
                .temp_host
                .join(format!("step-{}-{n}{}", std::process::id(), step.shell.ext));
        std::fs::write(&script, step.script.as_bytes())
            .map_err(|e| ExecError::io(format!("cannot write `{}`", script.display()), e))?;
        let script_s = script.to_string_lossy().into_owned();
        let argv: Vec<String> = step
            .shell
            .argv
            .iter()
            .map(|a| a.replace("{0}", &script_s))
            .collect();
        let result = self
            .exec_step(engine, container, step, argv, sink, cancel)
            .await;
        let _ = std::fs::remove_file(&script);
        result
    }

    async fn exec_step(
        &mut self,
        engine: &Engine,
        container: &str,
        step: &StepCommand,
        argv: Vec<String>,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<StepExit, ExecError> {
        let Some(program) = argv.first().cloned() else {
            return Ok(StepExit::StartFailed(
                "the shell command is empty".to_owned(),
            ));
        };
        // The bind-mounted folders can be checked from here.
        let under_mounts =
            step.cwd.starts_with(&self.workspace) || step.cwd.starts_with(&self.run_temp);
        if under_mounts && !step.cwd.is_dir() {
            return Ok(StepExit::StartFailed(format!(
                "working directory `{}` does not exist",
                step.cwd.display()
            )));
        }
        let d = &engine.docker;
        let marker = format!("{}-{}", self.opts.run_id, random_suffix());
        let mut env: Vec<String> = step
            .full_env()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("{STEP_MARKER}={marker}"));
        let exec = d
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(argv),
                    env: Some(env),
                    working_dir: Some(step.cwd.display().to_string()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                ExecError::Other(format!("cannot create the step: {}", short_error(&e)))
            })?;
        let started = d
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|e| ExecError::Other(format!("cannot start the step: {}", short_error(&e))))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(ExecError::Other("the step started detached".to_owned()));
        };
        let timeout = async {
            match step.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        let mut stopped: Option<StepExit> = None;
        let mut kill_deadline: Option<tokio::time::Instant> = None;
        let mut first = true;
        let mut start_error: Option<String> = None;
        // After SIGKILL, stop waiting for the stream after a while (a remote engine).
        let mut give_up: Option<tokio::time::Instant> = None;
        loop {
            let kill_at = async {
                match kill_deadline {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let give_up_at = async {
                match give_up {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                item = output.next() => match item {
                    None => break,
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message })) => {
                        if first && message.starts_with(b"OCI runtime exec failed") {
                            start_error = Some(String::from_utf8_lossy(&message).trim().to_owned());
                        } else {
                            sink.write(&message);
                        }
                        first = false;
                    }
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(_)) => break,
                },
                () = &mut timeout, if stopped.is_none() => {
                    stopped = Some(StepExit::TimedOut);
                    self.signal_exec(engine, &exec.id, &marker, nix::sys::signal::Signal::SIGTERM).await;
                    kill_deadline = Some(tokio::time::Instant::now() + self.grace);
                }
                () = cancel.soft.cancelled(), if stopped.is_none() => {
                    stopped = Some(StepExit::Cancelled);
                    self.signal_exec(engine, &exec.id, &marker, nix::sys::signal::Signal::SIGTERM).await;
                    kill_deadline = Some(tokio::time::Instant::now() + self.grace);
                }
                () = cancel.hard.cancelled(), if give_up.is_none() => {
                    if stopped.is_none() {
                        stopped = Some(StepExit::Cancelled);
                    }
                    self.signal_exec(engine, &exec.id, &marker, nix::sys::signal::Signal::SIGKILL).await;
                    kill_deadline = None;
                    give_up = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                }
                () = kill_at => {
                    self.signal_exec(engine, &exec.id, &marker, nix::sys::signal::Signal::SIGKILL).await;
                    kill_deadline = None;
                    give_up = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                }
                () = give_up_at => break,
            }
        }
        if let Some(s) = stopped {
            return Ok(s);
        }
        let mut code = None;
        for _ in 0..50 {
            let i = d
                .inspect_exec(&exec.id)
                .await
                .map_err(|e| ExecError::Other(short_error(&e)))?;
            if !i.running.unwrap_or(false) {
                code = i.exit_code;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let code = i32::try_from(code.unwrap_or(-1)).unwrap_or(-1);
        if let Some(e) = start_error {
            if e.contains("executable file not found") || e.contains("no such file or directory") {
                if e.contains("chdir") {
                    return Ok(StepExit::StartFailed(format!(
                        "working directory `{}` does not exist in the container",
                        step.cwd.display()
                    )));
                }
                return Ok(StepExit::StartFailed(format!(
                    "shell `{program}` is not installed in the container (not found on PATH)"
                )));
            }
            return Ok(StepExit::StartFailed(format!(
                "cannot start `{program}`: {e}"
            )));
        }
        Ok(StepExit::Exited(code))
    }

    /// Signals a step's processes: on a local engine, the exec's process tree (found through
    /// the step's marker, so a reused pid is never hit); otherwise `kill` run in the container.
    async fn signal_exec(
        &self,
        engine: &Engine,
        exec_id: &str,
        marker: &str,
        sig: nix::sys::signal::Signal,
    ) {
        let pid = engine
            .docker
            .inspect_exec(exec_id)
            .await
            .ok()
            .and_then(|i| i.pid)
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0);
        let needle = format!("{STEP_MARKER}={marker}");
        if engine.local()
            && let Some(pid) = pid
            && proc_has_marker(pid, needle.as_bytes())
        {
            for p in process_tree(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), sig);
            }
            return;
        }
        // A remote engine: every process of the container but its init (steps run one at a
        // time, so these are this step's and leftovers of earlier ones).
        let sig_name = if sig == nix::sys::signal::Signal::SIGKILL {
            "KILL"
        } else {
            "TERM"
        };
        let _ = self
            .exec_status(&["sh", "-c", &format!("kill -s {sig_name} -1")])
            .await;
    }

    /// Runs a container action (a `docker://` step or a Docker action).
    async fn run_action(
        &mut self,
        action: &ContainerAction,
        step: &StepCommand,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<StepExit, ExecError> {
        let engine = match &self.engine {
            Some(e) => e.clone(),
            // Connected by another job already, or now (a failure fails this step only: a
            // `docker://` step is not the run's infrastructure).
            None => match self.engine_cell.get().and_then(|r| r.as_ref().ok()) {
                Some(e) => {
                    self.engine = Some(e.clone());
                    e.clone()
                }
                None => match Engine::connect().await {
                    Ok(e) => {
                        let _ = self.engine_cell.set(Ok(e.clone()));
                        self.engine = Some(e.clone());
                        e
                    }
                    Err(e) => return Ok(StepExit::StartFailed(e.to_string())),
                },
            },
        };
        let image = match &action.image {
            ActionImage::Image(i) => i.clone(),
            ActionImage::Dockerfile {
                context,
                dockerfile,
            } => match build_action_image(
                &engine,
                context,
                dockerfile,
                self.opts.platform.as_deref(),
                self.opts.progress.as_ref(),
            )
            .await
            {
                Ok(tag) => tag,
                Err(e) => return Ok(StepExit::StartFailed(e.to_string())),
            },
        };
        let built = matches!(action.image, ActionImage::Dockerfile { .. });
        let present = built || engine.docker.inspect_image(&image).await.is_ok();
        let must_pull = match self.opts.pull {
            PullPolicy::Never => {
                if !present {
                    return Ok(StepExit::StartFailed(format!(
                        "image `{image}` is not present and `--pull=never` forbids pulling it"
                    )));
                }
                false
            }
            PullPolicy::Missing => !present,
            PullPolicy::Always => {
                !built && !self.pulled.as_ref().is_some_and(|p| p.contains(&image))
            }
        };
        if must_pull {
            if let Err(e) = pull(
                &engine,
                &image,
                self.opts.platform.as_deref(),
                None,
                self.opts.progress.as_ref(),
            )
            .await
            {
                return Ok(StepExit::StartFailed(e.to_string()));
            }
            if let Some(p) = self.pulled.as_mut() {
                p.insert(image.clone());
            }
        }
        let workspace = if self.workspace.as_os_str().is_empty() {
            self.paths.workspace_exec.clone()
        } else {
            self.workspace.clone()
        };
        let temp_root = self
            .paths
            .temp_host
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.paths.temp_host.clone());
        let home = self.paths.temp_host.join("_github_home");
        let _ = std::fs::create_dir_all(&home);
        let mut env: Vec<String> = Vec::new();
        for (k, v) in &step.full_env() {
            if k == "GITHUB_WORKSPACE" || k == "HOME" {
                continue;
            }
            env.push(format!("{k}={v}"));
        }
        env.push("GITHUB_WORKSPACE=/github/workspace".to_owned());
        env.push("HOME=/github/home".to_owned());
        let labels = if self.labels.is_empty() {
            labels(&self.opts.run_id, "action")
        } else {
            self.labels.clone()
        };
        let host_config = HostConfig {
            binds: Some(vec![
                format!("{}:/github/workspace", workspace.display()),
                format!("{}:/github/home", home.display()),
                format!("{0}:{0}", temp_root.display()),
            ]),
            network_mode: self.res.network.clone(),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            env: Some(env),
            cmd: (!action.args.is_empty()).then(|| action.args.clone()),
            entrypoint: action.entrypoint.as_ref().map(|e| vec![e.clone()]),
            working_dir: Some("/github/workspace".to_owned()),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        };
        let mut opts = CreateContainerOptionsBuilder::default();
        if let Some(p) = &self.opts.platform {
            opts = opts.platform(p);
        }
        let d = &engine.docker;
        let created = match d.create_container(Some(opts.build()), body).await {
            Ok(c) => c,
            Err(e) => {
                return Ok(StepExit::StartFailed(format!(
                    "cannot create a container from `{image}`: {}",
                    short_error(&e)
                )));
            }
        };
        let id = created.id;
        self.res.live.fetch_add(1, Ordering::SeqCst);
        let result = self
            .follow_action(&engine, &id, step.timeout, sink, cancel)
            .await;
        if d.remove_container(
            &id,
            Some(
                RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await
        .is_ok()
        {
            self.res.live.fetch_sub(1, Ordering::SeqCst);
        }
        result
    }

    async fn follow_action(
        &self,
        engine: &Engine,
        id: &str,
        timeout: Option<Duration>,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<StepExit, ExecError> {
        let d = &engine.docker;
        if let Err(e) = d.start_container(id, None).await {
            return Ok(StepExit::StartFailed(format!(
                "cannot start the action's container: {}",
                short_error(&e)
            )));
        }
        let mut logs = d.logs(
            id,
            Some(
                LogsOptionsBuilder::default()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        );
        let timeout = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        let mut stopped = None;
        let kill = |sig: &str| {
            let sig = sig.to_owned();
            async move {
                let _ = d
                    .kill_container(
                        id,
                        Some(KillContainerOptionsBuilder::default().signal(&sig).build()),
                    )
                    .await;
            }
        };
        let mut kill_deadline: Option<tokio::time::Instant> = None;
        loop {
            let kill_at = async {
                match kill_deadline {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                item = logs.next() => match item {
                    None => break,
                    Some(Ok(out)) => sink.write(out.as_ref()),
                    Some(Err(_)) => break,
                },
                () = &mut timeout, if stopped.is_none() => {
                    stopped = Some(StepExit::TimedOut);
                    kill("SIGTERM").await;
                    kill_deadline = Some(tokio::time::Instant::now() + self.grace);
                }
                () = cancel.soft.cancelled(), if stopped.is_none() => {
                    stopped = Some(StepExit::Cancelled);
                    kill("SIGTERM").await;
                    kill_deadline = Some(tokio::time::Instant::now() + self.grace);
                }
                () = cancel.hard.cancelled() => {
                    stopped.get_or_insert(StepExit::Cancelled);
                    kill("SIGKILL").await;
                    break;
                }
                () = kill_at => {
                    kill("SIGKILL").await;
                    kill_deadline = None;
                }
            }
        }
        if let Some(s) = stopped {
            return Ok(s);
        }
        let i = d
            .inspect_container(id, None)
            .await
            .map_err(|e| ExecError::Other(short_error(&e)))?;
        let code = i.state.and_then(|s| s.exit_code).unwrap_or(-1);
        Ok(StepExit::Exited(i32::try_from(code).unwrap_or(-1)))
    }
}

/// Saves the services' logs (for `pipe logs`), then removes a job's containers, network and
/// volumes; returns what could not be removed.
async fn remove_resources(engine: &Engine, res: Resources, log_dir: Option<&Path>) -> Vec<String> {
    let d = &engine.docker;
    let mut errors = Vec::new();
    if let Some(dir) = log_dir
        && !res.services.is_empty()
    {
        let _ = std::fs::create_dir_all(dir);
        for (id, cid) in &res.services {
            let mut logs = d.logs(
                cid,
                Some(
                    LogsOptionsBuilder::default()
                        .stdout(true)
                        .stderr(true)
                        .build(),
                ),
            );
            let mut bytes = Vec::new();
            while let Some(Ok(out)) = logs.next().await {
                bytes.extend_from_slice(out.as_ref());
            }
            let _ = std::fs::write(dir.join(format!("service-{id}.log")), bytes);
        }
    }
    for c in res.containers.iter().rev() {
        match d
            .remove_container(
                c,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
        {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                res.live.fetch_sub(1, Ordering::SeqCst);
            }
            Err(e) => errors.push(format!("cannot remove container: {}", short_error(&e))),
        }
    }
    if let Some(n) = &res.network {
        match d.remove_network(n).await {
            Ok(()) => {
                res.live.fetch_sub(1, Ordering::SeqCst);
            }
            Err(e) => errors.push(format!("cannot remove network `{n}`: {}", short_error(&e))),
        }
    }
    for v in &res.volumes {
        match d
            .remove_volume(
                v,
                Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
            )
            .await
        {
            Ok(()) => {
                res.live.fetch_sub(1, Ordering::SeqCst);
            }
            Err(e) => errors.push(format!("cannot remove volume `{v}`: {}", short_error(&e))),
        }
    }
    errors
}

/// Builds a Docker action's image from its Dockerfile (the classic builder, no registry
/// needed for `FROM` images that are present). The tag is the digest of the build context, so
/// an unchanged action is built once.
async fn build_action_image(
    engine: &Engine,
    context: &Path,
    dockerfile: &str,
    platform: Option<&str>,
    progress: Option<&Progress>,
) -> Result<String, ExecError> {
    let ctx = context.to_path_buf();
    let tar = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Deterministic);
        b.follow_symlinks(false);
        b.append_dir_all(".", &ctx)?;
        b.into_inner()
    })
    .await
    .map_err(|e| ExecError::Other(format!("the build context task failed: {e}")))?
    .map_err(|e| ExecError::io(format!("cannot pack `{}`", context.display()), e))?;
    let mut h = pipe_cache::digest::Hasher::new();
    h.update(&tar);
    h.update(dockerfile.as_bytes());
    h.update(platform.unwrap_or("").as_bytes());
    let tag = format!("pipe-action:{}", &h.finish().hex()[..16]);
    if engine.docker.inspect_image(&tag).await.is_ok() {
        return Ok(tag);
    }
    if let Some(p) = progress {
        p(&format!(
            "building `{}`",
            context.join(dockerfile).display()
        ));
    }
    let mut opts = bollard::query_parameters::BuildImageOptionsBuilder::default()
        .dockerfile(dockerfile)
        .t(&tag)
        .rm(true)
        .forcerm(true);
    if let Some(pl) = platform {
        opts = opts.platform(pl);
    }
    let mut stream = engine.docker.build_image(
        opts.build(),
        None,
        Some(bollard::body_full(bytes::Bytes::from(tar))),
    );
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| {
            ExecError::Other(format!(
                "cannot build `{}`: {}",
                context.join(dockerfile).display(),
                short_error(&e)
            ))
        })?;
        if let Some(e) = info.error_detail.and_then(|d| d.message) {
            return Err(ExecError::Other(format!(
                "cannot build `{}`: {e}",
                context.join(dockerfile).display()
            )));
        }
        if let (Some(p), Some(line)) = (progress, info.stream) {
            let line = line.trim();
            if line.starts_with("Step ") {
                p(&format!("building `{}`: {line}", context.display()));
            }
        }
    }
    Ok(tag)
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

fn proc_has_marker(pid: i32, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle))
}

/// `pid` and all its descendants (children first is not needed: signals go to all).
fn process_tree(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        i += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
                for c in list
                    .split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok())
                {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
        }
    }
    out
}

#[async_trait]
impl JobHandle for DockerJob {
    fn paths(&self) -> &JobPaths {
        &self.paths
    }

    async fn run(
        &mut self,
        step: &StepCommand,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<StepExit, ExecError> {
        if cancel.soft.is_cancelled() || cancel.hard.is_cancelled() {
            return Ok(StepExit::Cancelled);
        }
        if let Some(action) = &step.action {
            let action = action.clone();
            return self.run_action(&action, step, sink, cancel).await;
        }
        if let Some(h) = self.host.as_mut() {
            return h.get_mut().run(step, sink, cancel).await;
        }
        let (Some(engine), Some(c)) = (self.engine.clone(), self.container.clone()) else {
            return Err(ExecError::Other("the job has no container".to_owned()));
        };
        self.run_in_container(&engine, &c, step, sink, cancel).await
    }

    async fn cleanup(&mut self) -> Result<(), ExecError> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut errors = Vec::new();
        if let Some(h) = self.host.as_mut()
            && let Err(e) = h.get_mut().cleanup().await
        {
            errors.push(e.to_string());
        }
        let has_resources = !self.res.containers.is_empty()
            || self.res.network.is_some()
            || !self.res.volumes.is_empty();
        if let (Some(engine), true) = (self.engine.clone(), has_resources) {
            let res = Resources {
                live: self.res.live.clone(),
                containers: std::mem::take(&mut self.res.containers),
                services: std::mem::take(&mut self.res.services),
                network: self.res.network.take(),
                volumes: std::mem::take(&mut self.res.volumes),
            };
            let log_dir = self.log_dir.clone();
            // Removing a running container (kill, unmount, veth) takes a few hundred ms: it
            // runs in the background while the next job starts; `DockerExecutor::finish`
            // waits for it before the run ends.
            let task = tokio::spawn(async move {
                for e in remove_resources(&engine, res, log_dir.as_deref()).await {
                    tracing::warn!("cleanup failed: {e}");
                }
            });
            if let Ok(mut p) = self.pending.lock() {
                p.push(task);
            }
        }
        if let Some(t) = self.temp_dir.take() {
            match std::fs::remove_dir_all(&t) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("cannot remove `{}`: {e}", t.display())),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ExecError::Other(errors.join("; ")))
        }
    }
}

/// What [`sweep`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Containers removed.
    pub containers: usize,
    /// Networks removed.
    pub networks: usize,
    /// Volumes removed.
    pub volumes: usize,
}

/// Removes every container, network and volume carrying `label` (`key=value` or `key`) for
/// which `keep` is false (it gets the resource's labels).
pub async fn sweep(
    engine: &Engine,
    label: &str,
    keep: &(dyn Fn(&HashMap<String, String>) -> bool + Sync),
) -> Result<Swept, ExecError> {
    let d = &engine.docker;
    let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![label])]);
    let err = |what: &str, e: bollard::errors::Error| {
        ExecError::Other(format!("cannot list {what}: {}", short_error(&e)))
    };
    let mut swept = Swept::default();
    let containers = d
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| err("containers", e))?;
    for c in containers {
        if keep(&c.labels.clone().unwrap_or_default()) {
            continue;
        }
        if let Some(id) = c.id
            && d.remove_container(
                &id,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
            .is_ok()
        {
            swept.containers += 1;
        }
    }
    let networks = d
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| err("networks", e))?;
    for n in networks {
        if keep(&n.labels.clone().unwrap_or_default()) {
            continue;
        }
        if let Some(id) = n.id
            && d.remove_network(&id).await.is_ok()
        {
            swept.networks += 1;
        }
    }
    let volumes = d
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| err("volumes", e))?;
    for v in volumes.volumes.unwrap_or_default() {
        if keep(&v.labels) {
            continue;
        }
        if d.remove_volume(
            &v.name,
            Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
        )
        .await
        .is_ok()
        {
            swept.volumes += 1;
        }
    }
    Ok(swept)
}

/// Removes whatever run `run_id` left behind (after a panic or a killed job).
pub async fn sweep_run(engine: &Engine, run_id: &str) -> Result<Swept, ExecError> {
    sweep(engine, &format!("{LABEL_RUN}={run_id}"), &|_| false).await
}

/// Whether the `pipe` process that created a resource is still running.
fn creator_alive(labels: &HashMap<String, String>) -> bool {
    let Some(pid) = labels.get(LABEL_PID).and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    if pid <= 0 || u32::try_from(pid).is_ok_and(|p| p == std::process::id()) {
        return false;
    }
    // A pid reused by another process (even another `pipe`) started at another time.
    if let Some(started) = labels.get(LABEL_STARTED)
        && start_time(&pid.to_string()).as_ref() != Some(started)
    {
        return false;
    }
    // The pid must still be a `pipe` (pids are reused).
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let argv0 = c.split(|b| *b == 0).next().unwrap_or(&[]);
        Path::new(std::ffi::OsStr::new(&*String::from_utf8_lossy(argv0)))
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pipe"))
    })
}

/// `pipe prune`: removes pipe's containers, networks and volumes whose `pipe` process is gone
/// (all of them with `all`).
pub async fn prune(engine: &Engine, all: bool) -> Result<Swept, ExecError> {
    sweep(engine, LABEL_MANAGED, &|l| !all && creator_alive(l)).await
}

/// A [`StepCommand`] for a container action, for the action runner: `env` is the step's
/// environment (with `INPUT_*` already added), the image comes from `uses: docker://IMAGE` or
/// from the action's `runs.image` (`docker://…` or a `Dockerfile`, relative to `action_dir`).
pub fn container_action(
    image: &str,
    action_dir: Option<&Path>,
    entrypoint: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    timeout: Option<Duration>,
) -> StepCommand {
    let image = match (image.strip_prefix("docker://"), action_dir) {
        (Some(i), _) => ActionImage::Image(i.to_owned()),
        (None, Some(dir)) => ActionImage::Dockerfile {
            context: dir.to_path_buf(),
            dockerfile: image.to_owned(),
        },
        (None, None) => ActionImage::Image(image.to_owned()),
    };
    StepCommand {
        env,
        cwd,
        timeout,
        action: Some(ContainerAction {
            image,
            entrypoint,
            args,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_volumes_and_tags() {
        assert_eq!(
            parse_port("8080:80"),
            Ok(("80/tcp".into(), None, Some("8080".into())))
        );
        assert_eq!(parse_port("5432"), Ok(("5432/tcp".into(), None, None)));
        assert_eq!(
            parse_port("127.0.0.1:1053:53/udp"),
            Ok((
                "53/udp".into(),
                Some("127.0.0.1".into()),
                Some("1053".into())
            ))
        );
        assert!(parse_port("a:b:c:d").is_err());
        assert_eq!(named_volume("data:/data"), Some("data"));
        assert_eq!(named_volume("/host:/data"), None);
        assert_eq!(named_volume("/only"), None);
        assert_eq!(split_tag("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_tag("reg:5000/x:1"), ("reg:5000/x", Some("1")));
        assert_eq!(split_tag("reg:5000/x"), ("reg:5000/x", Some("latest")));
        assert_eq!(platform_arch("linux/arm64"), "ARM64");
        assert_eq!(platform_arch("linux/amd64"), "X64");
    }

    /// A Docker action built from a Dockerfile runs with its inputs (needs the engine; skips
    /// without one, fails under `CI=true`).
    #[tokio::test]
    async fn builds_and_runs_a_dockerfile_action() {
        let Ok(engine) = Engine::connect().await else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but no Docker engine answered"
            );
            eprintln!("skipped: no Docker engine");
            return;
        };
        let t = tempfile::tempdir().expect("tmp");
        let action = t.path().join("action");
        std::fs::create_dir_all(&action).expect("mkdir");
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is installed");
        std::fs::copy(busybox, action.join("busybox")).expect("copy");
        std::fs::write(
            action.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\", \"sh\", \"-c\"]\n",
        )
        .expect("write");
        let ws = t.path().join("ws");
        std::fs::create_dir_all(&ws).expect("mkdir");
        let ex = DockerExecutor::with_engine(
            HostExecutor::new(),
            DockerOptions {
                run_id: format!("unit-{}", std::process::id()),
                ..DockerOptions::default()
            },
            engine.clone(),
        );
        let mut job = ex
            .prepare(&JobSetup {
                key: "j".into(),
                run_temp: t.path().join("tmp"),
                workspace: ws.clone(),
                ..Default::default()
            })
            .await
            .expect("prepare");
        let step = container_action(
            "Dockerfile",
            Some(&action),
            None,
            vec!["echo built $INPUT_WHO in $(/bin/busybox pwd); exit 4".into()],
            vec![("INPUT_WHO".into(), "me".into())],
            ws,
            None,
        );
        let mut out = Vec::new();
        let exit = job
            .run(&step, &mut out, &Cancel::default())
            .await
            .expect("runs");
        job.cleanup().await.expect("cleanup");
        assert_eq!(exit, StepExit::Exited(4));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "built me in /github/workspace\n"
        );
        let left = sweep_run(&engine, &format!("unit-{}", std::process::id()))
            .await
            .expect("sweep");
        assert_eq!(left, Swept::default());
    }

    #[test]
    fn creators_are_told_apart_from_reused_pids() {
        let me = labels("r", "j");
        assert_eq!(me.get(LABEL_STARTED), start_time("self").as_ref());
        // This process is never its own creator (prune runs in a fresh process).
        assert!(!creator_alive(&me));
        // The parent (cargo or nextest, alive) with the wrong start time is not the creator.
        let parent = std::os::unix::process::parent_id().to_string();
        let mut other = HashMap::from([(LABEL_PID.to_owned(), parent.clone())]);
        other.insert(LABEL_STARTED.to_owned(), "1".to_owned());
        assert!(!creator_alive(&other));
        assert!(start_time(&parent).is_some());
    }

    #[test]
    fn container_action_commands() {
        let c = container_action(
            "docker://alpine:3",
            None,
            None,
            vec!["echo".into()],
            vec![],
            PathBuf::from("/w"),
            None,
        );
        assert_eq!(
            c.action.map(|a| a.image),
            Some(ActionImage::Image("alpine:3".into()))
        );
        let c = container_action(
            "Dockerfile",
            Some(Path::new("/a")),
            None,
            vec![],
            vec![],
            PathBuf::from("/w"),
            None,
        );
        assert!(matches!(
            c.action.map(|a| a.image),
            Some(ActionImage::Dockerfile { .. })
        ));
    }
}
