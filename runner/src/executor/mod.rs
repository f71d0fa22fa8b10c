//! Executors: where a job's steps run (the host, a container, or a fake for tests).
//!
//! The trait is shaped around the job and step lifecycle, not around one backend's verbs
//! (style.md §2.2, woodpecker's backend interface): [`Executor::prepare`] sets up a job and
//! returns a [`JobHandle`]; [`JobHandle::run`] runs one step command to completion;
//! [`JobHandle::cleanup`] tears the job down.
//!
//! Contracts:
//! - `prepare` may run concurrently for different jobs; one handle's methods are called
//!   sequentially (steps of a job run one after another).
//! - `run` returns only when the step's process has ended (exited, been killed on timeout or
//!   cancellation); a step failure is an [`StepExit`], never an `Err`. `Err` means the executor
//!   could not do its job (the shell could not be started is a `StepExit::StartFailed`).
//! - `cleanup` is idempotent and safe after a failed or partial `prepare`; it stops anything a
//!   step left running (orphaned background processes) and removes the job's temp dir.

pub mod docker;
pub mod fake;
pub mod host;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

/// What an executor needs to set a job up.
#[derive(Clone, Debug, Default)]
pub struct JobSetup {
    /// A unique key for the job within the run (used for temp dir names).
    pub key: String,
    /// The run's scratch directory on the host; jobs get sub-directories.
    pub run_temp: PathBuf,
    /// The workspace on the host.
    pub workspace: PathBuf,
    /// Run the job's steps in this container (`container:`, or an image mapped to a
    /// `runs-on` label); `None` runs them on the host.
    pub container: Option<ContainerSpec>,
    /// `services:` of the job.
    pub services: Vec<ServiceSpec>,
    /// Where service logs go (`<dir>/service-<id>.log`), if the run is recorded.
    pub log_dir: Option<PathBuf>,
    /// The job's cancellation: a long set-up (a pull, services becoming healthy) stops on it.
    pub cancel: Cancel,
    /// Host folders a job container also needs at the same path, read-only (the offline
    /// action folder, whose actions' scripts steps run).
    pub extra_mounts: Vec<PathBuf>,
}

/// A container to run: the job container or a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The image reference.
    pub image: String,
    /// A `container:` job (GitHub's container rules: the default shell is `sh`) rather than a
    /// runner image mapped from a label (the default shell is `bash` when the image has it).
    pub job_container: bool,
    /// `env:`.
    pub env: Vec<(String, String)>,
    /// `ports:` (`8080`, `8080:80`, `127.0.0.1:8080:80/tcp`).
    pub ports: Vec<String>,
    /// `volumes:` (`name:/path`, `/host:/path[:ro]`).
    pub volumes: Vec<String>,
    /// `options:`, the `docker create` flags as written.
    pub options: String,
    /// `credentials:` (username, password) for the pull.
    pub credentials: Option<(String, String)>,
    /// Platform (`linux/arm64`): `container.platform` or `--container-platform`.
    pub platform: Option<String>,
}

/// A service container of a job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The service id (its host name on the job network).
    pub id: String,
    /// The container.
    pub container: ContainerSpec,
    /// `command:` (replaces the image's command).
    pub command: Option<String>,
    /// `entrypoint:` (replaces the image's entrypoint).
    pub entrypoint: Option<String>,
}

/// A running service, as the `services` context shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The service id.
    pub id: String,
    /// The container id.
    pub container_id: String,
    /// The job network.
    pub network: String,
    /// Container port (`80/tcp` → `80`) → host port.
    pub ports: Vec<(String, String)>,
}

/// A container action step: `uses: docker://IMAGE`, or a local action with
/// `runs.using: docker` once its image is known (see [`docker::container_action`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerAction {
    /// The image to run (pulled by the pull policy) or a build to make first.
    pub image: ActionImage,
    /// `entrypoint:` (replaces the image's).
    pub entrypoint: Option<String>,
    /// `args:` (replace the image's command).
    pub args: Vec<String>,
}

/// Where a container action's image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionImage {
    /// An image reference (`alpine:3`, a local tag).
    Image(String),
    /// A Dockerfile to build: the context folder and the Dockerfile inside it.
    Dockerfile {
        /// The build context on the host.
        context: PathBuf,
        /// The Dockerfile, relative to the context.
        dockerfile: String,
    },
}

impl Default for ActionImage {
    fn default() -> Self {
        ActionImage::Image(String::new())
    }
}

/// Paths a job's steps use, as the host sees them and as the step sees them.
#[derive(Clone, Debug)]
pub struct JobPaths {
    /// `RUNNER_TEMP` on the host (env files are read from here).
    pub temp_host: PathBuf,
    /// `RUNNER_TEMP` as the step sees it.
    pub temp_exec: PathBuf,
    /// `GITHUB_WORKSPACE` as the step sees it.
    pub workspace_exec: PathBuf,
    /// `RUNNER_OS` (`Linux`, `macOS`, `Windows`).
    pub os: &'static str,
    /// `RUNNER_ARCH` (`X64`, `ARM64`, …).
    pub arch: &'static str,
    /// Whether the default shell is `bash` (`None`: ask the host, as the host executor does).
    pub has_bash: Option<bool>,
    /// `PATH` the steps start with when it is not the host's (a container's).
    pub path: Option<String>,
    /// Running services (`job.services`).
    pub services: Vec<ServiceInfo>,
    /// The job container's id and network (`job.container`), for container jobs.
    pub container: Option<(String, String)>,
}

/// A shell invocation template: the program, its arguments with `{0}` for the script path,
/// and the script file's extension.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShellTemplate {
    /// Program and arguments; one argument contains `{0}`.
    pub argv: Vec<String>,
    /// Script file extension (`.sh`, `.py`, …).
    pub ext: &'static str,
}

/// One step to run.
#[derive(Clone, Debug, Default)]
pub struct StepCommand {
    /// The script text.
    pub script: String,
    /// How to invoke it.
    pub shell: ShellTemplate,
    /// Environment variables of this step (the job's and step's `env:`, `GITHUB_ENV`, the
    /// step's env files…), over [`StepCommand::run_env`]; the executor adds the machine's own
    /// underneath both. A later entry for a name wins.
    pub env: Vec<(String, String)>,
    /// Variables every step of the run gets (`CI`, `GITHUB_SHA`, `GITHUB_REPOSITORY`…), under
    /// `env`: one shared list, so an executor can prepare it once per run rather than once per
    /// step (the host executor merges it into its environment block once).
    pub run_env: Arc<[(String, String)]>,
    /// Working directory as the step sees it.
    pub cwd: PathBuf,
    /// Kill the step after this long.
    pub timeout: Option<Duration>,
    /// Run this container action instead of `script` (`docker://` steps, Docker actions).
    pub action: Option<ContainerAction>,
}

impl StepCommand {
    /// The step's whole environment: [`StepCommand::run_env`] with [`StepCommand::env`] over
    /// it, each name once (where `env` repeats a name, its last entry).
    pub fn full_env(&self) -> Vec<(String, String)> {
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut out: Vec<(String, String)> =
            Vec::with_capacity(self.run_env.len() + self.env.len());
        for (k, v) in self.run_env.iter().chain(self.env.iter()) {
            match index.get(k.as_str()) {
                Some(&i) => out[i].1.clone_from(v),
                None => {
                    index.insert(k, out.len());
                    out.push((k.clone(), v.clone()));
                }
            }
        }
        out
    }

    /// The value the step sees for `name` (from `env`, else from `run_env`), not counting the
    /// machine's environment.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .chain(self.run_env.iter().rev())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a step's process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepExit {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal (not by us).
    Signaled(i32),
    /// Its timeout expired and it was stopped.
    TimedOut,
    /// The job or run was cancelled and it was stopped.
    Cancelled,
    /// It could not be started (missing shell, missing working directory…).
    StartFailed(String),
}

impl StepExit {
    /// Whether the step succeeded.
    pub fn success(&self) -> bool {
        *self == StepExit::Exited(0)
    }
}

/// Receives a step's combined stdout and stderr as it arrives.
pub trait OutputSink: Send {
    /// Some bytes of output (not necessarily whole lines).
    fn write(&mut self, bytes: &[u8]);
}

impl OutputSink for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Cancellation signals for a step: `soft` asks for SIGTERM then SIGKILL after a grace period,
/// `hard` kills at once (second Ctrl-C).
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    /// Graceful stop.
    pub soft: CancellationToken,
    /// Immediate kill.
    pub hard: CancellationToken,
}

/// An executor failed (as opposed to a step failing).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl ExecError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ExecError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Sets up jobs.
#[async_trait]
pub trait Executor: Send + Sync {
    /// A short name (`host`, `docker`, `fake`).
    fn name(&self) -> &'static str;
    /// Sets up a job.
    async fn prepare(&self, setup: &JobSetup) -> Result<Box<dyn JobHandle>, ExecError>;
}

/// A prepared job.
#[async_trait]
pub trait JobHandle: Send {
    /// The job's paths.
    fn paths(&self) -> &JobPaths;
    /// Runs one step to completion, streaming its output into `sink`.
    async fn run(
        &mut self,
        step: &StepCommand,
        sink: &mut dyn OutputSink,
        cancel: &Cancel,
    ) -> Result<StepExit, ExecError>;
    /// Stops leftovers and removes the job's temp dir; idempotent.
    async fn cleanup(&mut self) -> Result<(), ExecError>;
}

/// `RUNNER_OS` of this machine.
pub fn host_os() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "macOS",
        "windows" => "Windows",
        _ => "Linux",
    }
}

/// `RUNNER_ARCH` of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "x86" => "X86",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        _ => "X64",
    }
}
