//! The host executor: steps run as processes on this machine.
//!
//! Each step runs in its own process group, with stdout and stderr joined on one pipe (so
//! their order is kept, as in GitHub's log). On timeout or cancellation the group gets SIGTERM,
//! a grace period, then SIGKILL; a hard cancel kills at once. A step's shell may leave
//! background processes behind: the step ends when the shell exits (as on GitHub), its output
//! is drained briefly, and the group is killed when the job is cleaned up ("cleaning up orphan
//! processes").
//!
//! Like the runner's `RUNNER_TRACKING_ID`, every step process carries a per-job marker in its
//! environment, so cleanup also finds processes that left the group (`setsid`, daemons); a step
//! that sets the variable itself opts out, as on GitHub.
//!
//! File operations here are small metadata calls on local disk and use `std::fs` directly: a
//! `tokio::fs` call is a hop to the blocking pool and back, which costs more than the call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

mod spare;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod spawn;

pub use spare::{Kind as SpareKind, Spares};

use super::{
    Cancel, ExecError, Executor, JobHandle, JobPaths, JobSetup, OutputSink, StepCommand, StepExit,
    host_arch, host_os,
};

/// How long a step gets between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// The environment variable marking a job's processes.
pub const TRACKING_VAR: &str = "RUNNER_TRACKING_ID";
/// How long output is still read after the shell exited (background processes may hold the
/// pipe open; their later output is not part of the step).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(100);

/// Runs steps on the host.
#[derive(Debug, Clone)]
pub struct HostExecutor {
    /// The machine environment steps inherit.
    base_env: Arc<HashMap<String, String>>,
    /// The same as a sorted environment block, built once (or why it cannot be).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    base_block: BaseBlock,
    /// The base environment with a run's variables over it ([`StepCommand::run_env`]).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    run_block: RunBlock,
    grace: Duration,
    /// Job temp folders that finished jobs left empty, ready for the next job.
    pool: TempPool,
    /// Where step scripts are written when not in the job's `RUNNER_TEMP` (see
    /// [`HostExecutor::with_script_dir`]).
    script_dir: Option<Arc<PathBuf>>,
    /// Empty folders earlier runs left for `RUNNER_TEMP` (see [`HostExecutor::with_spares`]).
    spares: Option<Arc<Spares>>,
}

/// Empty `RUNNER_TEMP` folders of finished jobs: (folder, (its permission bits, its owner) when
/// made).
///
/// Making and removing a folder per job is the most expensive file-system work of a trivial
/// job (on ext4 an inode and a block are allocated and freed, and with the `discard` mount
/// option the freed block is trimmed at once): a job takes, renamed to its own name, a folder
/// an earlier job of the run left empty with the permissions it was made with; only a folder
/// with something left in it is removed. The run's scratch folder, removed at the end, holds
/// the rest.
type TempPool = Arc<std::sync::Mutex<Vec<(PathBuf, (u32, u32))>>>;

/// The base environment as a block for `posix_spawn`, or the error building it gave (a NUL
/// byte, only possible through [`HostExecutor::with_base_env`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
type BaseBlock = Arc<Result<Vec<spawn::EnvVar>, String>>;

/// The last run variables seen ([`StepCommand::run_env`], kept so that its address stays
/// unique) and the base block with them merged in: every step of a run shares one list, so the
/// merge is done once per run, not once per step.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
type RunBlock = Arc<std::sync::Mutex<Option<(Arc<[(String, String)]>, BaseBlock)>>>;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn base_block(env: &HashMap<String, String>) -> BaseBlock {
    Arc::new(
        spawn::env_block(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| e.to_string()),
    )
}

impl Default for HostExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl HostExecutor {
    /// An executor whose steps inherit this process's environment.
    pub fn new() -> Self {
        let base_env: HashMap<String, String> = std::env::vars().collect();
        HostExecutor {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            base_block: base_block(&base_env),
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            run_block: RunBlock::default(),
            base_env: Arc::new(base_env),
            grace: DEFAULT_GRACE,
            pool: TempPool::default(),
            script_dir: None,
            spares: None,
        }
    }

    /// Takes a job's `RUNNER_TEMP`, when no earlier job of the run left one empty, from the
    /// folders earlier runs left in `spares` instead of making it ([`spare`]).
    #[must_use]
    pub fn with_spares(mut self, spares: Arc<Spares>) -> Self {
        self.spares = Some(spares);
        self
    }

    /// The empty `RUNNER_TEMP` folders finished jobs left, for the caller to keep for a later
    /// run ([`Spares::give`]) once the run is over.
    pub fn empty_temps(&self) -> EmptyTemps {
        EmptyTemps(self.pool.clone())
    }

    /// Writes step scripts to `dir` (which must exist) instead of the job's `RUNNER_TEMP`.
    ///
    /// A script is written, run and removed for every step: on a disk file system that is an
    /// inode allocated and freed per step (about a twentieth of pipe's CPU on a run of
    /// 1,000 trivial jobs, measured on ext4), on tmpfs a few page-cache operations. See
    /// [`memory_scratch_dir`].
    #[must_use]
    pub fn with_script_dir(mut self, dir: PathBuf) -> Self {
        self.script_dir = Some(Arc::new(dir));
        self
    }

    /// Sets the grace period between SIGTERM and SIGKILL.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Replaces the inherited environment (tests).
    #[must_use]
    pub fn with_base_env(mut self, env: HashMap<String, String>) -> Self {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            self.base_block = base_block(&env);
            self.run_block = RunBlock::default();
        }
        self.base_env = Arc::new(env);
        self
    }
}

#[async_trait]
impl Executor for HostExecutor {
    fn name(&self) -> &'static str {
        "host"
    }

    async fn prepare(&self, setup: &JobSetup) -> Result<Box<dyn JobHandle>, ExecError> {
        // A folder an earlier job left empty is reused; otherwise the folder is made when the
        // first step runs (`HostJob::ensure_temp`): a job whose steps are all replayed from the
        // cache never needs one.
        let temp = setup.run_temp.join(&setup.key);
        let reused = self.pool.lock().ok().and_then(|mut pool| {
            let i = pool
                .iter()
                .rposition(|(p, _)| p.parent() == Some(setup.run_temp.as_path()))?;
            Some(pool.swap_remove(i))
        });
        // Renamed to this job's name (`RUNNER_TEMP` is `<run scratch>/<job key>`, as before):
        // a rename allocates and frees nothing.
        let temp_mode = match reused {
            Some((p, mode)) => match std::fs::rename(&p, &temp) {
                Ok(()) => Some(mode),
                Err(_) => {
                    let _ = std::fs::remove_dir_all(&p);
                    None
                }
            },
            None => None,
        };
        let n = JOB_COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(HostJob {
            tracking_id: format!("pipe_{}_{n}", std::process::id()),
            paths: JobPaths {
                temp_host: temp.clone(),
                temp_exec: temp,
                workspace_exec: setup.workspace.clone(),
                os: host_os(),
                arch: host_arch(),
                has_bash: None,
                path: None,
                services: Vec::new(),
                container: None,
            },
            base_env: self.base_env.clone(),
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            base_block: self.base_block.clone(),
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            run_block: self.run_block.clone(),
            grace: self.grace,
            groups: Vec::new(),
            cleaned: false,
            temp_mode,
            pool: self.pool.clone(),
            script_dir: self.script_dir.clone(),
            spares: self.spares.clone(),
        }))
    }
}

struct HostJob {
    /// The value of [`TRACKING_VAR`] in this job's steps.
    tracking_id: String,
    paths: JobPaths,
    base_env: Arc<HashMap<String, String>>,
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    base_block: BaseBlock,
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    run_block: RunBlock,
    grace: Duration,
    /// Process groups of steps that ran, killed at cleanup.
    groups: Vec<i32>,
    cleaned: bool,
    /// The permission bits and owner of `RUNNER_TEMP` once it exists (reused from the pool, or
    /// made by the first step that ran).
    temp_mode: Option<(u32, u32)>,
    pool: TempPool,
    script_dir: Option<Arc<PathBuf>>,
    spares: Option<Arc<Spares>>,
}

/// The empty `RUNNER_TEMP` folders of a run's finished jobs ([`HostExecutor::empty_temps`]).
#[derive(Clone)]
pub struct EmptyTemps(TempPool);

impl EmptyTemps {
    /// Takes them all.
    pub fn take(&self) -> Vec<PathBuf> {
        self.0
            .lock()
            .map(|mut p| p.drain(..).map(|(d, _)| d).collect())
            .unwrap_or_default()
    }
}

static SCRIPT_COUNTER: AtomicU64 = AtomicU64::new(0);
static JOB_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Step shells this process spawned and has not waited for yet: they are our children too,
/// and an orphan sweep must neither kill nor reap them.
static ACTIVE: std::sync::Mutex<std::collections::BTreeSet<i32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Whether this process is a child subreaper (set once, on first use).
fn subreaper() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        #[cfg(target_os = "linux")]
        {
            nix::sys::prctl::set_child_subreaper(true).is_ok()
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    })
}

/// Removes a spawned step's pid from [`ACTIVE`] once it has been waited for (or given up).
struct ActiveGuard(i32);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut a) = ACTIVE.lock() {
            a.remove(&self.0);
        }
    }
}

/// A running step shell: started by `posix_spawn` and waited for through a pidfd on Linux
/// with glibc (see the `spawn` module), by tokio's `Command` elsewhere.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
type StepChild = spawn::Child;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type StepChild = tokio::process::Child;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn child_pid(c: &StepChild) -> i32 {
    c.id()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn child_pid(c: &StepChild) -> i32 {
    c.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0)
}

/// Spawns a step under the [`ACTIVE`] lock and records its pid there, so an orphan sweep
/// never takes it for an orphan.
fn tracked(spawn: impl FnOnce() -> std::io::Result<StepChild>) -> std::io::Result<StepChild> {
    let mut active = ACTIVE
        .lock()
        .map_err(|_| std::io::Error::other("process table lock poisoned"))?;
    let child = spawn()?;
    active.insert(child_pid(&child));
    Ok(child)
}

fn has_marker(pid: i32, needle: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle))
}

/// Kills every leftover process whose environment holds `TRACKING_VAR=id`, like the GitHub
/// runner's orphan cleanup.
///
/// pipe is a child subreaper, so a process that left its step's group and was orphaned (a
/// `setsid` daemon, a double fork) is re-parented to pipe: only pipe's own children need
/// looking at, not every process of the machine, which keeps the per-job cost to a few small
/// reads. Orphans that already exited are reaped here. Without subreaper support the whole of
/// `/proc` is scanned.
fn kill_tracked(id: &str) {
    #[cfg(target_os = "linux")]
    {
        let needle = format!("{TRACKING_VAR}={id}");
        for pass in 0..6 {
            let mut found = false;
            if subreaper() {
                // Hold the lock so no step is spawned (and mistaken for an orphan) meanwhile.
                let Ok(active) = ACTIVE.lock() else { return };
                for pid in own_children() {
                    if active.contains(&pid) {
                        continue;
                    }
                    let state =
                        std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let zombie = state
                        .rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
                    if zombie {
                        // An orphan that already exited: reap it (nobody else will).
                        let _ = nix::sys::wait::waitpid(
                            Pid::from_raw(pid),
                            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                        );
                    } else if has_marker(pid, needle.as_bytes()) {
                        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                        found = true;
                    }
                }
            } else {
                let Ok(entries) = std::fs::read_dir("/proc") else {
                    return;
                };
                let me = std::process::id();
                for e in entries.flatten() {
                    let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
                    else {
                        continue;
                    };
                    if u32::try_from(pid).is_ok_and(|p| p == me) {
                        continue;
                    }
                    if has_marker(pid, needle.as_bytes()) {
                        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                        found = true;
                    }
                }
            }
            if !found {
                return;
            }
            // Killed processes' own children are re-parented to us when they die: look again.
            std::thread::sleep(Duration::from_millis(2 << pass.min(4)));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = id;
}

/// The pids of the children of this process's main thread: the orphans pipe adopted as a
/// child subreaper, and the step shells the main thread spawned (single-threaded runs).
///
/// The kernel hands an orphan to the first live thread of the subreaper's thread group, its
/// leader (`find_new_reaper` and `find_alive_thread` in kernel/exit.c), so only the main
/// thread's `children` list can hold orphans: one small read per job instead of a directory
/// walk and one read per thread. Other threads' children are step shells and helper commands
/// pipe waits for itself.
#[cfg(target_os = "linux")]
fn own_children() -> Vec<i32> {
    use std::os::unix::fs::FileExt;
    // Opened once and read from the start each time (`pread` at 0 makes the kernel list the
    // children afresh): one system call per job instead of `open`, `read` and `close`.
    static FILE: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    let mut out = Vec::new();
    let Some(f) = FILE
        .get_or_init(|| {
            std::fs::File::open(format!("/proc/self/task/{}/children", std::process::id())).ok()
        })
        .as_ref()
    else {
        return out;
    };
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match f.read_at(&mut buf, text.len() as u64) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out.extend(
        text.split(|b| b.is_ascii_whitespace())
            .filter_map(|p| std::str::from_utf8(p).ok()?.parse::<i32>().ok()),
    );
    out.sort_unstable();
    out.dedup();
    out
}

/// Finds `program` on `path` (a `PATH` value); a program containing `/` is used as given.
/// Results are remembered per (program, PATH): a run of a thousand steps would otherwise stat
/// the same missing directories a thousand times.
pub fn find_program(program: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    type Found = std::collections::HashMap<(String, String), PathBuf>;
    static FOUND: std::sync::Mutex<Option<Found>> = std::sync::Mutex::new(None);
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let key = (program.to_owned(), path.to_owned());
    if let Some(p) = FOUND
        .lock()
        .ok()
        .and_then(|f| f.as_ref()?.get(&key).cloned())
    {
        return Some(p);
    }
    let found = std::env::split_paths(path).find_map(|dir| {
        let candidate = dir.join(program);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })?;
    if let Ok(mut f) = FOUND.lock() {
        f.get_or_insert_with(Found::new).insert(key, found.clone());
    }
    Some(found)
}

/// Read buffers for step output, reused across steps: a fresh 256 KiB buffer per step is an
/// `mmap` and `munmap` each time. They are empty vectors with that capacity: reads fill the
/// spare capacity (`read_buf`), so only the pages a step's output reaches are ever touched (a
/// zeroed buffer was 64 page faults before the first step of a run).
static BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Makes `NAME` in a memory file system for a run's step scripts, when the system temp folder
/// is not one already and the user did not choose it (`TMPDIR` unset): `/dev/shm/NAME`,
/// private to this user (mode 0700, never an existing folder). `None` when that is not
/// possible; scripts then go to `RUNNER_TEMP`. The caller removes the folder at the end of
/// the run.
pub fn memory_scratch_dir(name: &str) -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::statfs::{TMPFS_MAGIC, statfs};
        use std::os::unix::fs::DirBuilderExt;
        if std::env::var_os("TMPDIR").is_some() {
            return None;
        }
        let on_tmpfs = |p: &Path| statfs(p).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC);
        if on_tmpfs(&std::env::temp_dir()) || !on_tmpfs(Path::new("/dev/shm")) {
            return None;
        }
        let dir = Path::new("/dev/shm").join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .ok()
            .map(|()| dir)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = name;
        None
    }
}

/// The lock file inside a run's scratch folder (see [`hold_scratch`]).
const SCRATCH_LOCK: &str = ".pipe-lock";

/// Marks a run's scratch folder as in use until the returned lock is dropped or the process
/// ends, however it ends: an exclusive `flock` on a file inside it, which the kernel releases
/// even after SIGKILL. [`sweep_stale_scratch`] leaves a held folder alone.
pub fn hold_scratch(dir: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(SCRATCH_LOCK))
        .ok()?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).ok()
}

/// The event payload's file in a run's scratch folder (`GITHUB_EVENT_PATH`).
pub const SCRATCH_EVENT: &str = "event.json";

/// Makes a run's scratch folder `dir`, renaming into place one that an earlier run left in
/// `spares` when there is one ([`Spares`]).
pub fn make_scratch(dir: &Path, spares: &Spares) -> std::io::Result<()> {
    if spares.adopt(SpareKind::Run, dir) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
}

/// Writes `bytes` to `path` over what is there, cutting the file only when it was longer: a
/// file truncated to nothing frees its block, which on ext4 with `discard` is a trim per write.
pub fn write_in_place(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let old = f.metadata()?.len();
    f.write_all(bytes)?;
    let len = bytes.len() as u64;
    if old > len {
        f.set_len(len)?;
    }
    Ok(())
}

/// Ends a run's scratch folder `dir` once its jobs are over: the jobs' empty `RUNNER_TEMP`
/// folders (`empty_jobs`) and the folder itself, emptied of all but its lock file and event
/// payload, are kept in `spares` for a later run; when something in it cannot be removed, the
/// folder is removed. `lock` ([`hold_scratch`]) is released before the folder is handed on.
pub fn retire_scratch(
    dir: &Path,
    lock: Option<nix::fcntl::Flock<std::fs::File>>,
    spares: &Spares,
    empty_jobs: Vec<PathBuf>,
) {
    spares.give(
        SpareKind::Job,
        empty_jobs.into_iter().filter(|d| d.parent() == Some(dir)),
    );
    let mut clean = true;
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let kind = e.file_type();
                let name = e.file_name();
                if (name == SCRATCH_LOCK || name == SCRATCH_EVENT)
                    && kind.as_ref().is_ok_and(|k| k.is_file())
                {
                    continue;
                }
                let gone = if kind.is_ok_and(|k| k.is_dir()) {
                    std::fs::remove_dir_all(e.path())
                } else {
                    std::fs::remove_file(e.path())
                };
                clean &= gone.is_ok();
            }
        }
        Err(_) => clean = false,
    }
    drop(lock);
    if clean {
        spares.give(SpareKind::Run, [dir.to_path_buf()]);
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The pid in a run scratch folder's name, `pipe-PID-N`.
fn scratch_pid(name: &str) -> Option<i32> {
    let (pid, n) = name.strip_prefix("pipe-")?.split_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok().filter(|p: &i32| *p > 0)
}

/// Whether a folder is a real folder (not a link) owned by this user.
fn own_dir(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p)
        .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw())
}

/// Removes the scratch folders that `pipe` processes killed outright (SIGKILL, the OOM
/// killer, a lost agent's session) could not: `pipe-PID-N` in `temp`, with their step-script
/// twins in `/dev/shm`. A folder goes only when it is this user's, its process is gone, and
/// nobody holds its lock ([`hold_scratch`]); folders without a lock are left alone. Returns how
/// many folders went.
pub fn sweep_stale_scratch(temp: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return 0;
    };
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = scratch_pid(name) else {
            continue;
        };
        // `kill(pid, 0)` fails with ESRCH only when no such process exists.
        if pid == me
            || !matches!(
                nix::sys::signal::kill(Pid::from_raw(pid), None),
                Err(nix::errno::Errno::ESRCH)
            )
        {
            continue;
        }
        let dir = e.path();
        if !own_dir(&dir) {
            continue;
        }
        let Ok(f) = std::fs::File::open(dir.join(SCRATCH_LOCK)) else {
            continue;
        };
        let Ok(_held) = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        else {
            continue;
        };
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
        let twin = Path::new("/dev/shm").join(name);
        if own_dir(&twin) {
            let _ = std::fs::remove_dir_all(&twin);
        }
    }
    removed
}

fn take_buffer() -> Vec<u8> {
    BUFFERS
        .lock()
        .ok()
        .and_then(|mut b| b.pop())
        .unwrap_or_else(|| Vec::with_capacity(256 * 1024))
}

fn give_buffer(buf: Vec<u8>) {
    if let Ok(mut b) = BUFFERS.lock()
        && b.len() < 8
    {
        b.push(buf);
    }
}

fn signal_group(pgid: i32, sig: Signal) {
    // ESRCH (no such group) is the normal case once everything has exited.
    let _ = killpg(Pid::from_raw(pgid), sig);
}

impl HostJob {
    /// Creates the job's `RUNNER_TEMP` on first use.
    fn ensure_temp(&mut self) -> Result<(), ExecError> {
        if self.temp_mode.is_none() {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let temp = &self.paths.temp_host;
            let adopted = self
                .spares
                .as_ref()
                .is_some_and(|s| s.adopt(SpareKind::Job, temp));
            let made = if adopted {
                Ok(())
            } else {
                std::fs::create_dir_all(temp)
            };
            made.and_then(|()| std::fs::symlink_metadata(temp))
                .map(|m| self.temp_mode = Some((m.permissions().mode() & 0o7777, m.uid())))
                .map_err(|e| ExecError::io(format!("cannot create `{}`", temp.display()), e))?;
        }
        Ok(())
    }

    /// Hands `RUNNER_TEMP` to the pool when the job left it empty, a folder (not a link) with
    /// the permissions it was made with; otherwise removes it.
    fn release_temp(&mut self) -> Result<(), ExecError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let temp = &self.paths.temp_host;
        let meta = match std::fs::symlink_metadata(temp) {
            Ok(m) => m,
            // A job none of whose steps ran made no folder.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(ExecError::io(
                    format!("cannot read `{}`", temp.display()),
                    e,
                ));
            }
        };
        if let Some(mode) = self.temp_mode
            && meta.is_dir()
            && (meta.permissions().mode() & 0o7777, meta.uid()) == mode
            && std::fs::read_dir(temp).is_ok_and(|mut d| d.next().is_none())
            && let Ok(mut pool) = self.pool.lock()
        {
            pool.push((temp.clone(), mode));
            return Ok(());
        }
        match std::fs::remove_dir_all(temp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ExecError::io(
                format!("cannot remove `{}`", temp.display()),
                e,
            )),
        }
    }

    /// Starts a step's shell with stdout and stderr on `out`, and records it in [`ACTIVE`].
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn spawn_step(
        &self,
        program: &Path,
        args: &[String],
        step: &StepCommand,
        out: std::io::PipeWriter,
    ) -> std::io::Result<StepChild> {
        use std::os::fd::AsFd;
        let block = self.block_for(&step.run_env);
        let base = block
            .as_ref()
            .as_ref()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.clone()))?;
        let own = spawn::env_block(
            std::iter::once((TRACKING_VAR, self.tracking_id.as_str()))
                .chain(step.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        )?;
        let env = spawn::merged(base, &own);
        let child =
            tracked(|| spawn::spawn(program, args, &env, &step.cwd, out.as_fd(), out.as_fd()))?;
        // Our copy of the write end goes here, or the pipe never reports end of file.
        drop(out);
        Ok(child)
    }

    /// The base block with `run_env` over it: made on the first step of a run, then reused.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn block_for(&self, run_env: &Arc<[(String, String)]>) -> BaseBlock {
        if run_env.is_empty() {
            return self.base_block.clone();
        }
        let Ok(mut cache) = self.run_block.lock() else {
            return self.run_block_of(run_env);
        };
        match &*cache {
            Some((seen, block)) if Arc::ptr_eq(seen, run_env) => block.clone(),
            _ => {
                let block = self.run_block_of(run_env);
                *cache = Some((run_env.clone(), block.clone()));
                block
            }
        }
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn run_block_of(&self, run_env: &[(String, String)]) -> BaseBlock {
        Arc::new(
            spawn::env_block(
                self.base_env
                    .iter()
                    .chain(run_env.iter().map(|(k, v)| (k, v)))
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .map_err(|e| e.to_string()),
        )
    }

    /// Starts a step's shell with stdout and stderr on `out` (std's `Command`), and records it
    /// in [`ACTIVE`].
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn spawn_step(
        &self,
        program: &Path,
        args: &[String],
        step: &StepCommand,
        out: std::io::PipeWriter,
    ) -> std::io::Result<StepChild> {
        let out2 = out.try_clone()?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(self.base_env.iter())
            .envs(step.run_env.iter().map(|(k, v)| (k, v)))
            .env(TRACKING_VAR, &self.tracking_id)
            .envs(step.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&step.cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(out2)
            .process_group(0)
            .kill_on_drop(true);
        tracked(|| cmd.spawn())
    }

    fn script_path(&self, ext: &str) -> PathBuf {
        let n = SCRIPT_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.script_dir
            .as_deref()
            .unwrap_or(&self.paths.temp_host)
            .join(format!("step-{}-{n}{ext}", std::process::id()))
    }
}

#[async_trait]
impl JobHandle for HostJob {
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
        self.ensure_temp()?;
        let script = self.script_path(step.shell.ext);
        std::fs::write(&script, step.script.as_bytes())
            .map_err(|e| ExecError::io(format!("cannot write `{}`", script.display()), e))?;
        let script_s = script.to_string_lossy().into_owned();
        let argv: Vec<String> = step
            .shell
            .argv
            .iter()
            .map(|a| a.replace("{0}", &script_s))
            .collect();
        let Some((program, args)) = argv.split_first() else {
            return Ok(StepExit::StartFailed(
                "the shell command is empty".to_owned(),
            ));
        };
        // The working directory is checked only when the step cannot start (the child's
        // `chdir` fails first): a `stat` per step saved, the same message.
        let start_failed = |why: String| {
            let _ = std::fs::remove_file(&script);
            Ok(StepExit::StartFailed(if step.cwd.is_dir() {
                why
            } else {
                format!("working directory `{}` does not exist", step.cwd.display())
            }))
        };

        // Resolve the program on the step's PATH ourselves: std only uses the cheap
        // posix_spawn path (vfork) when the program is a path, not when it searches a PATH that
        // the command's environment changed.
        let path_var = step
            .var("PATH")
            .or_else(|| self.base_env.get("PATH").map(String::as_str))
            .unwrap_or("/usr/local/bin:/usr/bin:/bin");
        let Some(program_path) = find_program(program, path_var) else {
            return start_failed(format!(
                "shell `{program}` is not installed (not found on PATH)"
            ));
        };
        let (reader, writer) =
            std::io::pipe().map_err(|e| ExecError::io("cannot create a pipe", e))?;
        // A larger pipe buffer means fewer wake-ups when a step prints a lot (the default is
        // 64 KiB); failure is harmless.
        let _ = nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1024 * 1024));
        // Our end does not block (tokio needs that); the step's end does. Set here rather
        // than by `Receiver::from_owned_fd`, which first checks the descriptor is a pipe and
        // reads its flags: two more system calls per step.
        nix::fcntl::fcntl(
            &reader,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| ExecError::io("cannot set up the output pipe", e.into()))?;
        let _ = subreaper();
        let spawned = self.spawn_step(&program_path, args, step, writer);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return start_failed(format!(
                    "shell `{program}` is not installed (not found on PATH)"
                ));
            }
            Err(e) => return start_failed(format!("cannot start `{program}`: {e}")),
        };
        let pgid = child_pid(&child);
        let _active = ActiveGuard(pgid);
        if pgid > 0 {
            self.groups.push(pgid);
        }
        let mut rx = pipe::Receiver::from_owned_fd_unchecked(reader.into())
            .map_err(|e| ExecError::io("cannot read step output", e))?;

        let mut buf = take_buffer();
        let mut eof = false;
        let mut status = None;
        let mut stopped: Option<StepExit> = None;
        let timeout = async {
            match step.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(timeout);
        let mut kill_deadline: Option<tokio::time::Instant> = None;

        while status.is_none() || !eof {
            let kill_at = async {
                match kill_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                r = rx.read_buf(&mut buf), if !eof => match r {
                    Ok(0) => eof = true,
                    Ok(_) => {
                        sink.write(&buf);
                        buf.clear();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => eof = true,
                },
                s = child.wait(), if status.is_none() => {
                    status = Some(s.map_err(|e| ExecError::io("cannot wait for the step", e))?);
                    if !eof {
                        // Drain what is already written; later output of orphans is not ours.
                        let deadline = tokio::time::Instant::now() + DRAIN_AFTER_EXIT;
                        loop {
                            match tokio::time::timeout_at(deadline, rx.read_buf(&mut buf)).await {
                                Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                                Ok(Ok(_)) => {
                                    sink.write(&buf);
                                    buf.clear();
                                }
                            }
                        }
                        eof = true;
                    }
                }
                () = &mut timeout, if stopped.is_none() => {
                    stopped = Some(StepExit::TimedOut);
                    signal_group(pgid, Signal::SIGTERM);
                    kill_deadline = Some(tokio::time::Instant::now() + self.grace);
                }
                () = cancel.soft.cancelled(), if stopped.is_none() => {
                    stopped = Some(StepExit::Cancelled);
                    signal_group(pgid, Signal::SIGTERM);
                    kill_deadline = Some(tokio::time::Instant::now() + self.grace);
                }
                () = cancel.hard.cancelled(), if kill_deadline.is_some() || stopped.is_none() => {
                    if stopped.is_none() {
                        stopped = Some(StepExit::Cancelled);
                    }
                    signal_group(pgid, Signal::SIGKILL);
                    kill_deadline = None;
                }
                () = kill_at => {
                    signal_group(pgid, Signal::SIGKILL);
                    kill_deadline = None;
                }
            }
        }
        let _ = std::fs::remove_file(&script);
        give_buffer(buf);
        if let Some(s) = stopped {
            // Anything still alive in the group goes now.
            signal_group(pgid, Signal::SIGKILL);
            return Ok(s);
        }
        let status = status.ok_or_else(|| ExecError::Other("step status missing".to_owned()))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(match (status.code(), status.signal()) {
            (Some(c), _) => StepExit::Exited(c),
            (None, Some(sig)) => StepExit::Signaled(sig),
            (None, None) => StepExit::Exited(1),
        })
    }

    async fn cleanup(&mut self) -> Result<(), ExecError> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        // Only a job that started a process can have left one behind (a fully cached job
        // spawns nothing and skips the sweep).
        let spawned = !self.groups.is_empty();
        for pgid in self.groups.drain(..) {
            signal_group(pgid, Signal::SIGKILL);
        }
        if spawned {
            kill_tracked(&self.tracking_id);
        }
        self.release_temp()
    }
}

impl Drop for HostJob {
    fn drop(&mut self) {
        // A job dropped without cleanup (a panic, an aborted task) still must not leave
        // processes behind.
        for pgid in &self.groups {
            signal_group(*pgid, Signal::SIGKILL);
        }
        if !self.cleaned {
            kill_tracked(&self.tracking_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ShellTemplate;
    use super::*;

    #[test]
    fn scratch_names_give_their_pid() {
        assert_eq!(scratch_pid("pipe-123-4"), Some(123));
        assert_eq!(scratch_pid("pipe-123-"), None);
        assert_eq!(scratch_pid("pipe-bench-run"), None);
        assert_eq!(scratch_pid("pipe-12x-3"), None);
        assert_eq!(scratch_pid("pipe-0-3"), None);
        assert_eq!(scratch_pid("other-1-2"), None);
    }

    #[test]
    fn only_unlocked_scratch_of_dead_processes_is_swept() {
        let t = tempfile::tempdir().expect("tmp");
        // A pid that is surely gone: a child that has exited and been reaped.
        let dead = std::process::Command::new("true")
            .spawn()
            .and_then(|mut c| {
                let id = c.id();
                c.wait().map(|_| id)
            })
            .expect("true");
        let stale = t.path().join(format!("pipe-{dead}-7"));
        let unlocked_legacy = t.path().join(format!("pipe-{dead}-8"));
        let held = t.path().join(format!("pipe-{dead}-9"));
        let alive = t.path().join(format!("pipe-{}-1", std::process::id()));
        let other = t.path().join("pipe-bench-run");
        for d in [&stale, &unlocked_legacy, &held, &alive, &other] {
            std::fs::create_dir_all(d.join("job")).expect("mkdir");
        }
        for d in [&stale, &held, &alive] {
            std::fs::write(d.join(SCRATCH_LOCK), "").expect("lock file");
        }
        let _lock = hold_scratch(&held).expect("hold");
        assert_eq!(sweep_stale_scratch(t.path()), 1);
        assert!(!stale.exists());
        for d in [&unlocked_legacy, &held, &alive, &other] {
            assert!(d.exists(), "{} was removed", d.display());
        }
    }

    fn sh() -> ShellTemplate {
        ShellTemplate {
            argv: vec!["sh".into(), "-e".into(), "{0}".into()],
            ext: ".sh",
        }
    }

    async fn job(dir: &std::path::Path) -> Box<dyn JobHandle> {
        HostExecutor::new()
            .with_grace(Duration::from_millis(200))
            .prepare(&JobSetup {
                key: "j".into(),
                run_temp: dir.join("tmp"),
                workspace: dir.to_path_buf(),
                ..Default::default()
            })
            .await
            .expect("prepare")
    }

    fn step(script: &str, dir: &std::path::Path) -> StepCommand {
        StepCommand {
            script: script.into(),
            shell: sh(),
            env: vec![("GREETING".into(), "hi".into())],
            run_env: Arc::default(),
            cwd: dir.to_path_buf(),
            timeout: None,
            action: None,
        }
    }

    #[tokio::test]
    async fn run_variables_lie_under_the_step_ones_and_over_the_machine() {
        let t = tempfile::tempdir().expect("tmp");
        let machine: HashMap<String, String> = [
            ("PATH", "/usr/bin:/bin"),
            ("FROM_MACHINE", "m"),
            ("OVERRIDDEN_BY_RUN", "m"),
            ("OVERRIDDEN_BY_STEP", "m"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let exec = HostExecutor::new().with_base_env(machine);
        let mut j = exec
            .prepare(&JobSetup {
                key: "j".into(),
                run_temp: t.path().join("tmp"),
                workspace: t.path().to_path_buf(),
                ..Default::default()
            })
            .await
            .expect("prepare");
        let run_env: Arc<[(String, String)]> = vec![
            ("OVERRIDDEN_BY_RUN".to_owned(), "r".to_owned()),
            ("OVERRIDDEN_BY_STEP".to_owned(), "r".to_owned()),
            ("FROM_RUN".to_owned(), "r".to_owned()),
        ]
        .into();
        let script =
            "echo $FROM_MACHINE $OVERRIDDEN_BY_RUN $OVERRIDDEN_BY_STEP $FROM_RUN $GREETING";
        let mut s = step(script, t.path());
        s.run_env = run_env.clone();
        s.env.push(("OVERRIDDEN_BY_STEP".into(), "s".into()));
        let mut out = Vec::new();
        let exit = j.run(&s, &mut out, &Cancel::default()).await.expect("run");
        assert_eq!(exit, StepExit::Exited(0));
        assert_eq!(String::from_utf8_lossy(&out), "m r s r hi\n");
        // The same run list again comes from the cache; another list (another run through the
        // same executor) is merged afresh, not mixed with the first.
        let mut out = Vec::new();
        j.run(&s, &mut out, &Cancel::default()).await.expect("run");
        assert_eq!(String::from_utf8_lossy(&out), "m r s r hi\n");
        let mut other = step(script, t.path());
        other.run_env = vec![("FROM_RUN".to_owned(), "r2".to_owned())].into();
        let mut out = Vec::new();
        j.run(&other, &mut out, &Cancel::default())
            .await
            .expect("run");
        assert_eq!(String::from_utf8_lossy(&out), "m m m r2 hi\n");
        // `full_env` and `var` see the same layering.
        assert_eq!(s.var("OVERRIDDEN_BY_STEP"), Some("s"));
        assert_eq!(s.var("FROM_RUN"), Some("r"));
        assert_eq!(s.var("FROM_MACHINE"), None);
        let full = s.full_env();
        let get = |k: &str| full.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("OVERRIDDEN_BY_STEP"), Some("s"));
        assert_eq!(get("OVERRIDDEN_BY_RUN"), Some("r"));
        assert_eq!(
            full.iter()
                .filter(|(n, _)| n == "OVERRIDDEN_BY_STEP")
                .count(),
            1
        );
        j.cleanup().await.expect("cleanup");
    }

    #[tokio::test]
    async fn runs_and_captures_both_streams_in_order() {
        let t = tempfile::tempdir().expect("tmp");
        let mut j = job(t.path()).await;
        let mut out = Vec::new();
        let exit = j
            .run(
                &step("echo $GREETING; echo err >&2; echo after", t.path()),
                &mut out,
                &Cancel::default(),
            )
            .await
            .expect("run");
        assert_eq!(exit, StepExit::Exited(0));
        assert_eq!(String::from_utf8_lossy(&out), "hi\nerr\nafter\n");
        let exit = j
            .run(
                &step("exit 3", t.path()),
                &mut Vec::new(),
                &Cancel::default(),
            )
            .await
            .expect("run");
        assert_eq!(exit, StepExit::Exited(3));
        j.cleanup().await.expect("cleanup");
        j.cleanup().await.expect("idempotent");
        // The job left its folder empty: it waits, empty, for the next job of the run.
        let left = t.path().join("tmp/j");
        assert!(!left.exists() || std::fs::read_dir(&left).expect("dir").next().is_none());
    }

    #[tokio::test]
    async fn temp_folders_are_reused_only_when_left_empty() {
        let t = tempfile::tempdir().expect("tmp");
        let exec = HostExecutor::new().with_grace(Duration::from_millis(200));
        let setup = |key: &str| JobSetup {
            key: key.into(),
            run_temp: t.path().join("tmp"),
            workspace: t.path().to_path_buf(),
            ..Default::default()
        };
        let temp_of = |j: &dyn JobHandle| j.paths().temp_host.clone();
        // A job that never ran a step makes no folder.
        let mut idle = exec.prepare(&setup("idle")).await.expect("prepare");
        idle.cleanup().await.expect("cleanup");
        assert!(!t.path().join("tmp/idle").exists());
        // A job that left its folder empty hands it to the next job.
        let mut a = exec.prepare(&setup("a")).await.expect("prepare");
        let mut s = step("echo $RUNNER_TEMP", t.path());
        s.env.push((
            "RUNNER_TEMP".into(),
            temp_of(a.as_ref()).display().to_string(),
        ));
        let exit = a.run(&s, &mut Vec::new(), &Cancel::default()).await;
        assert_eq!(exit.expect("run"), StepExit::Exited(0));
        let a_temp = temp_of(a.as_ref());
        assert!(a_temp.is_dir());
        a.cleanup().await.expect("cleanup");
        let mut b = exec.prepare(&setup("b")).await.expect("prepare");
        let b_temp = temp_of(b.as_ref());
        assert_eq!(b_temp, t.path().join("tmp/b"), "named after its job");
        assert!(
            b_temp.is_dir() && !a_temp.exists(),
            "the empty folder is reused"
        );
        // A job that leaves a file behind: its folder is removed, never handed on.
        let mut s = step("touch \"$RUNNER_TEMP/left\"", t.path());
        s.env
            .push(("RUNNER_TEMP".into(), b_temp.display().to_string()));
        let exit = b.run(&s, &mut Vec::new(), &Cancel::default()).await;
        assert_eq!(exit.expect("run"), StepExit::Exited(0));
        assert!(b_temp.join("left").exists());
        b.cleanup().await.expect("cleanup");
        assert!(!b_temp.exists(), "a folder with leftovers is removed");
        let c = exec.prepare(&setup("c")).await.expect("prepare");
        assert_eq!(temp_of(c.as_ref()), t.path().join("tmp/c"));
    }

    #[tokio::test]
    async fn timeout_kills_the_group() {
        let t = tempfile::tempdir().expect("tmp");
        let mut j = job(t.path()).await;
        let mut s = step("sleep 30 & sleep 30; echo never", t.path());
        s.timeout = Some(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let exit = j
            .run(&s, &mut Vec::new(), &Cancel::default())
            .await
            .expect("run");
        assert_eq!(exit, StepExit::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        j.cleanup().await.expect("cleanup");
    }

    #[tokio::test]
    async fn ignoring_sigterm_gets_sigkill_after_grace() {
        let t = tempfile::tempdir().expect("tmp");
        let mut j = job(t.path()).await;
        let s = step("trap '' TERM; sleep 30", t.path());
        let cancel = Cancel::default();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c2.soft.cancel();
        });
        let started = std::time::Instant::now();
        let exit = j.run(&s, &mut Vec::new(), &cancel).await.expect("run");
        assert_eq!(exit, StepExit::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn background_process_does_not_hold_the_step() {
        let t = tempfile::tempdir().expect("tmp");
        let mut j = job(t.path()).await;
        let started = std::time::Instant::now();
        let exit = j
            .run(
                &step("sleep 30 &\necho done", t.path()),
                &mut Vec::new(),
                &Cancel::default(),
            )
            .await
            .expect("run");
        assert_eq!(exit, StepExit::Exited(0));
        assert!(started.elapsed() < Duration::from_secs(5));
        j.cleanup().await.expect("cleanup");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn cleanup_kills_processes_that_left_the_group() {
        let t = tempfile::tempdir().expect("tmp");
        let mut j = job(t.path()).await;
        let pidfile = t.path().join("daemon.pid");
        let script = format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 30' </dev/null >/dev/null 2>&1 &\nwhile [ ! -s {} ]; do sleep 0.01; done",
            pidfile.display(),
            pidfile.display()
        );
        let exit = j
            .run(
                &step(&script, t.path()),
                &mut Vec::new(),
                &Cancel::default(),
            )
            .await
            .expect("run");
        assert_eq!(exit, StepExit::Exited(0));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let alive = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        };
        assert!(alive(pid), "the daemon runs after its step");
        j.cleanup().await.expect("cleanup");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(pid), "cleanup killed the daemon");
    }

    #[tokio::test]
    async fn missing_shell_and_directory() {
        let t = tempfile::tempdir().expect("tmp");
        let mut j = job(t.path()).await;
        let mut s = step("x", t.path());
        s.shell.argv = vec!["pwsh-not-here".into(), "{0}".into()];
        let exit = j
            .run(&s, &mut Vec::new(), &Cancel::default())
            .await
            .expect("run");
        assert!(matches!(exit, StepExit::StartFailed(m) if m.contains("not installed")));
        let mut s = step("x", t.path());
        s.cwd = t.path().join("nope");
        let exit = j
            .run(&s, &mut Vec::new(), &Cancel::default())
            .await
            .expect("run");
        assert!(matches!(exit, StepExit::StartFailed(m) if m.contains("does not exist")));
        // A file is no working directory either, and a missing folder is reported before a
        // missing shell.
        std::fs::write(t.path().join("file"), "").expect("write");
        let mut s = step("x", t.path());
        s.cwd = t.path().join("file");
        let exit = j.run(&s, &mut Vec::new(), &Cancel::default()).await;
        assert!(
            matches!(exit.expect("run"), StepExit::StartFailed(m) if m.contains("does not exist"))
        );
        let mut s = step("x", t.path());
        s.cwd = t.path().join("nope");
        s.shell.argv = vec!["pwsh-not-here".into(), "{0}".into()];
        let exit = j.run(&s, &mut Vec::new(), &Cancel::default()).await;
        assert!(
            matches!(exit.expect("run"), StepExit::StartFailed(m) if m.contains("does not exist"))
        );
        // Nothing started, so nothing is left: the scripts are gone.
        j.cleanup().await.expect("cleanup");
    }
}
