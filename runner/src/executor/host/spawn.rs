//! Starting a step's shell with `posix_spawn` and a ready-made environment block, and waiting
//! for it through a pidfd (Linux with glibc).
//!
//! std's `Command` keeps the environment in a `BTreeMap<OsString, _>`, copies it into a second
//! map at spawn and then into C strings: with the 80-odd variables of a step that was a third
//! of the instructions `pipe` spent per job (callgrind, 100-job chain: 17 of 51 million). Here
//! the executor's base environment is a sorted block built once, and a step's own variables are
//! merged over it by name (a later name wins, and the block is sorted by name, as std does);
//! the child starts with the attributes std gives it: its own process group, an empty signal
//! mask, and SIGPIPE (which Rust ignores) back at its default, together with the other signals
//! a shell expects at their defaults.
//!
//! This is the one place in the runner that calls libc directly: neither std nor nix can set a
//! spawned child's working directory without the per-spawn environment copy above
//! (`posix_spawn_file_actions_addchdir_np` is not in nix), and every call is checked.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use rustc_hash::FxHashMap;
use tokio::io::unix::AsyncFd;

/// Signals reset to their default action in the child even when this process ignores them.
const DEFAULT_SIGNALS: [libc::c_int; 9] = [
    libc::SIGPIPE,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCHLD,
];

/// One `NAME=value` entry of an environment block.
#[derive(Debug)]
pub(super) struct EnvVar {
    name_len: usize,
    entry: CString,
}

impl EnvVar {
    fn name(&self) -> &[u8] {
        self.entry
            .as_bytes()
            .get(..self.name_len)
            .unwrap_or_default()
    }

    /// The `NAME=value` C string.
    pub(super) fn entry(&self) -> &CStr {
        &self.entry
    }
}

/// An environment block: `NAME=value` entries, each name once (the last given wins), sorted
/// by name.
pub(super) fn env_block<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> io::Result<Vec<EnvVar>> {
    let mut index: FxHashMap<&str, usize> = FxHashMap::default();
    let mut list: Vec<(&str, &str)> = Vec::with_capacity(96);
    for (k, v) in vars {
        match index.get(k) {
            Some(&i) => list[i].1 = v,
            None => {
                index.insert(k, list.len());
                list.push((k, v));
            }
        }
    }
    list.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    list.into_iter()
        .map(|(k, v)| {
            let mut b = Vec::with_capacity(k.len() + v.len() + 2);
            b.extend_from_slice(k.as_bytes());
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            let entry = CString::new(b).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("environment variable `{k}` contains a NUL byte"),
                )
            })?;
            Ok(EnvVar {
                name_len: k.len(),
                entry,
            })
        })
        .collect()
}

/// The environment of one step: the executor's `base` block (built once per run) with the
/// step's own block laid over it, merged by name (a name in `over` wins). Both are sorted, so
/// this is one pass with no copies: rebuilding and sorting the 80-odd variables per step was
/// a fifth of pipe's instructions per job on a chain of trivial jobs.
pub(super) fn merged<'a>(base: &'a [EnvVar], over: &'a [EnvVar]) -> Vec<&'a CStr> {
    let mut out = Vec::with_capacity(base.len() + over.len());
    let (mut b, mut o) = (base.iter().peekable(), over.iter().peekable());
    loop {
        match (b.peek(), o.peek()) {
            (Some(x), Some(y)) => match x.name().cmp(y.name()) {
                std::cmp::Ordering::Less => {
                    out.push(x.entry());
                    b.next();
                }
                std::cmp::Ordering::Greater => {
                    out.push(y.entry());
                    o.next();
                }
                std::cmp::Ordering::Equal => {
                    out.push(y.entry());
                    b.next();
                    o.next();
                }
            },
            (Some(x), None) => {
                out.push(x.entry());
                b.next();
            }
            (None, Some(y)) => {
                out.push(y.entry());
                o.next();
            }
            (None, None) => return out,
        }
    }
}

fn c_string(bytes: &[u8], what: &str) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// `/dev/null`, opened once (close-on-exec) and given to every child as its stdin.
fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<Option<OwnedFd>> = OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").ok().map(OwnedFd::from))
        .as_ref()
        .map(AsRawFd::as_raw_fd)
        .ok_or_else(|| io::Error::other("cannot open `/dev/null`"))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

struct FileActions(MaybeUninit<libc::posix_spawn_file_actions_t>);

impl FileActions {
    fn new() -> io::Result<Self> {
        let mut fa = FileActions(MaybeUninit::uninit());
        // SAFETY: initialises the storage it is given; destroyed in Drop only after success.
        check(unsafe { libc::posix_spawn_file_actions_init(fa.0.as_mut_ptr()) })?;
        Ok(fa)
    }
    fn ptr(&mut self) -> *mut libc::posix_spawn_file_actions_t {
        self.0.as_mut_ptr()
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: the value was initialised by `posix_spawn_file_actions_init` in `new`.
        unsafe { libc::posix_spawn_file_actions_destroy(self.0.as_mut_ptr()) };
    }
}

struct Attr(MaybeUninit<libc::posix_spawnattr_t>);

impl Attr {
    fn new() -> io::Result<Self> {
        let mut a = Attr(MaybeUninit::uninit());
        // SAFETY: initialises the storage it is given; destroyed in Drop only after success.
        check(unsafe { libc::posix_spawnattr_init(a.0.as_mut_ptr()) })?;
        Ok(a)
    }
    fn ptr(&mut self) -> *mut libc::posix_spawnattr_t {
        self.0.as_mut_ptr()
    }
}

impl Drop for Attr {
    fn drop(&mut self) {
        // SAFETY: the value was initialised by `posix_spawnattr_init` in `new`.
        unsafe { libc::posix_spawnattr_destroy(self.0.as_mut_ptr()) };
    }
}

fn sigset(signals: &[libc::c_int]) -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises the set; `sigaddset` takes valid signal numbers.
    unsafe {
        if libc::sigemptyset(set.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        for s in signals {
            if libc::sigaddset(set.as_mut_ptr(), *s) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(set.assume_init())
    }
}

/// The signals a child starts with at their default action: [`DEFAULT_SIGNALS`], and every
/// other signal this process does not ignore (an ignored signal stays ignored, as across
/// `exec`). Read once.
///
/// Left to itself, glibc's child asks for the action of each of the 64 signals before setting
/// it back to the default: two system calls a signal while the parent waits (vfork). A
/// signal named here costs one.
fn child_default_signals() -> &'static [libc::c_int] {
    static LIST: OnceLock<Vec<libc::c_int>> = OnceLock::new();
    LIST.get_or_init(|| {
        let mut list = DEFAULT_SIGNALS.to_vec();
        for sig in 1..=libc::SIGRTMAX() {
            // glibc keeps the signals between 31 and SIGRTMIN for itself (`sigaddset` refuses
            // them); SIGKILL and SIGSTOP have no action to set.
            if (32..libc::SIGRTMIN()).contains(&sig)
                || sig == libc::SIGKILL
                || sig == libc::SIGSTOP
                || DEFAULT_SIGNALS.contains(&sig)
            {
                continue;
            }
            let mut old = MaybeUninit::<libc::sigaction>::zeroed();
            // SAFETY: a null new action only reads the current one into `old`.
            let ok = unsafe { libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr()) } == 0;
            // SAFETY: `sigaction` filled `old` when it returned 0.
            if ok && unsafe { old.assume_init() }.sa_sigaction != libc::SIG_IGN {
                list.push(sig);
            }
        }
        list
    })
}

/// Starts `program` with `args` (argv[0] is the program's path), the environment `env`, in
/// `cwd`, in a new process group, stdin on `/dev/null` and stdout and stderr on the given
/// descriptors.
pub(super) fn spawn(
    program: &Path,
    args: &[String],
    env: &[&CStr],
    cwd: &Path,
    stdout: BorrowedFd<'_>,
    stderr: BorrowedFd<'_>,
) -> io::Result<Child> {
    let program_c = c_string(program.as_os_str().as_bytes(), "the program path")?;
    let cwd_c = c_string(cwd.as_os_str().as_bytes(), "the working directory")?;
    let mut argv_c = Vec::with_capacity(args.len() + 1);
    argv_c.push(program_c.clone());
    for a in args {
        argv_c.push(c_string(a.as_bytes(), "an argument")?);
    }
    let mut argv: Vec<*mut libc::c_char> = argv_c.iter().map(|c| c.as_ptr().cast_mut()).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = env.iter().map(|c| c.as_ptr().cast_mut()).collect();
    envp.push(std::ptr::null_mut());

    let null = dev_null()?;
    let mut fa = FileActions::new()?;
    let mut attr = Attr::new()?;
    let empty = sigset(&[])?;
    let defaults = sigset(child_default_signals())?;
    let flags =
        libc::POSIX_SPAWN_SETPGROUP | libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer handed to libc lives until `posix_spawn` returns: the C strings
    // (`argv_c`, `env`, `cwd_c`, `program_c`), the null-terminated pointer arrays, the
    // initialised attribute and file-action objects, and the signal sets. The descriptors are
    // open for the whole call (borrowed, or the process-wide `/dev/null`).
    unsafe {
        check(libc::posix_spawn_file_actions_adddup2(fa.ptr(), null, 0))?;
        check(libc::posix_spawn_file_actions_adddup2(
            fa.ptr(),
            stdout.as_raw_fd(),
            1,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            fa.ptr(),
            stderr.as_raw_fd(),
            2,
        ))?;
        check(libc::posix_spawn_file_actions_addchdir_np(
            fa.ptr(),
            cwd_c.as_ptr(),
        ))?;
        check(libc::posix_spawnattr_setflags(
            attr.ptr(),
            flags as libc::c_short,
        ))?;
        check(libc::posix_spawnattr_setpgroup(attr.ptr(), 0))?;
        check(libc::posix_spawnattr_setsigmask(attr.ptr(), &empty))?;
        check(libc::posix_spawnattr_setsigdefault(attr.ptr(), &defaults))?;
        check(libc::posix_spawn(
            &mut pid,
            program_c.as_ptr(),
            fa.ptr(),
            attr.ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
        ))?;
    }
    // A pidfd says when the child exits without a SIGCHLD handler; without one (kernels before
    // 5.3) `wait` polls.
    // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
    let pidfd = match RawFd::try_from(fd) {
        Ok(fd) if fd >= 0 => {
            // SAFETY: a non-negative return is a new descriptor that nothing else owns.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            if tokio::runtime::Handle::try_current().is_ok() {
                // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which keeps it open and
                // unchanged until it is dropped.
                unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
                    .ok()
            } else {
                None
            }
        }
        _ => None,
    };
    Ok(Child {
        pid,
        pidfd,
        status: None,
    })
}

/// A spawned step process. Dropped before it was waited for, it is killed (like tokio's
/// `kill_on_drop`); a zombie left then is reaped by the job's orphan sweep.
pub(super) struct Child {
    pid: libc::pid_t,
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
}

fn try_wait(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Ok(Some(ExitStatus::from_raw((code & 0xff) << 8))),
        Ok(WaitStatus::Signaled(_, sig, core)) => Ok(Some(ExitStatus::from_raw(
            sig as i32 | if core { 0x80 } else { 0 },
        ))),
        Ok(_) => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

impl Child {
    /// The process id (also the process group id).
    pub(super) fn id(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits for the process to exit and reaps it; cancel-safe.
    ///
    /// With a pidfd, `waitpid` is called only once the pidfd is readable (the process has
    /// exited): the output loop polls this future again after every chunk it reads, and a
    /// `waitpid` per chunk was 100,000 system calls for a step printing 1 GiB.
    pub(super) async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(s) = self.status {
                return Ok(s);
            }
            match &self.pidfd {
                Some(fd) => {
                    let mut ready = fd.readable().await?;
                    if let Some(s) = try_wait(self.pid)? {
                        self.status = Some(s);
                    } else {
                        ready.clear_ready();
                    }
                }
                None => {
                    if let Some(s) = try_wait(self.pid)? {
                        self.status = Some(s);
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = try_wait(self.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_value_of_a_name_wins_and_names_are_sorted() {
        let block = env_block([("B", "1"), ("A", "x"), ("B", "2"), ("C", "")]).expect("block");
        let got: Vec<&str> = block
            .iter()
            .map(|c| c.entry().to_str().expect("utf-8"))
            .collect();
        assert_eq!(got, ["A=x", "B=2", "C="]);
    }

    #[test]
    fn a_step_block_is_laid_over_the_base_by_name() {
        let base = env_block([("A", "1"), ("AB", "2"), ("C", "3"), ("E", "5")]).expect("base");
        // `A=` and `AB` sort apart from `A` by name, not by the whole entry
        let over = env_block([("E", "x"), ("A", "y"), ("B", "z"), ("F", "w")]).expect("over");
        let got: Vec<&str> = merged(&base, &over)
            .iter()
            .map(|c| c.to_str().expect("utf-8"))
            .collect();
        assert_eq!(got, ["A=y", "AB=2", "B=z", "C=3", "E=x", "F=w"]);
        assert_eq!(merged(&base, &[]).len(), 4);
        assert_eq!(merged(&[], &over).len(), 4);
    }

    #[test]
    fn a_nul_byte_in_a_value_is_an_error_naming_the_variable() {
        let err = env_block([("BAD", "a\0b")]).expect_err("nul");
        assert!(err.to_string().contains("`BAD`"), "{err}");
    }

    #[tokio::test]
    async fn a_child_runs_in_its_own_group_with_its_environment_and_folder() {
        let dir = tempfile::tempdir().expect("tmp");
        let (reader, writer) = std::io::pipe().expect("pipe");
        let block = env_block([("GREETING", "hi"), ("PATH", "/usr/bin:/bin")]).expect("env");
        let env = merged(&block, &[]);
        let args = vec![
            "-c".to_owned(),
            "echo \"$GREETING $(pwd) $$ $(ps -o pgid= -p $$ 2>/dev/null || echo -)\"; exit 3"
                .to_owned(),
        ];
        let mut child = spawn(
            Path::new("/bin/sh"),
            &args,
            &env,
            dir.path(),
            std::os::fd::AsFd::as_fd(&writer),
            std::os::fd::AsFd::as_fd(&writer),
        )
        .expect("spawn");
        drop(writer);
        let status = child.wait().await.expect("wait");
        assert_eq!(status.code(), Some(3));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut &reader, &mut out).expect("read");
        let canonical = dir.path().canonicalize().expect("canonical");
        assert!(
            out.starts_with(&format!("hi {} {}", canonical.display(), child.id())),
            "{out}"
        );
        // The group is the child's own (when `ps` is there to tell).
        let pgid = out.split_whitespace().nth(3).unwrap_or("-");
        if pgid != "-" {
            assert_eq!(pgid, child.id().to_string(), "{out}");
        }
    }

    #[tokio::test]
    async fn a_signal_death_is_reported_and_a_dropped_child_is_killed() {
        let block = env_block([("PATH", "/usr/bin:/bin")]).expect("env");
        let env = merged(&block, &[]);
        let null = std::fs::File::open("/dev/null").expect("null");
        let fd = std::os::fd::AsFd::as_fd(&null);
        let args = vec!["-c".to_owned(), "kill -TERM $$".to_owned()];
        let mut child =
            spawn(Path::new("/bin/sh"), &args, &env, Path::new("/"), fd, fd).expect("spawn");
        let status = child.wait().await.expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGTERM));

        let args = vec!["-c".to_owned(), "sleep 30".to_owned()];
        let child =
            spawn(Path::new("/bin/sh"), &args, &env, Path::new("/"), fd, fd).expect("spawn");
        let pid = child.id();
        drop(child);
        // Killed at once; reaped here or, failing that, a zombie: either way not running.
        std::thread::sleep(Duration::from_millis(50));
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
        assert!(!running, "{state}");
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    }

    #[test]
    fn a_missing_program_is_not_found() {
        let block = env_block([("PATH", "/usr/bin")]).expect("env");
        let env = merged(&block, &[]);
        let null = std::fs::File::open("/dev/null").expect("null");
        let fd = std::os::fd::AsFd::as_fd(&null);
        let err = spawn(
            Path::new("/nonexistent/sh"),
            &[],
            &env,
            Path::new("/"),
            fd,
            fd,
        )
        .err()
        .expect("spawn must fail");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
