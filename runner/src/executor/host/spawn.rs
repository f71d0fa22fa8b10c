//! Starting a step's shell with a vfork-style `clone` and a ready-made environment block, and
//! waiting for it through a pidfd (Linux with glibc).
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
//! The child is started the way glibc's `posix_spawn` starts it (`clone` with `CLONE_VM |
//! CLONE_VFORK`, every signal blocked until the child has set its own up), with less work
//! while the parent waits: glibc's child makes 62 `rt_sigaction` calls, one per signal, and
//! each spawn maps and unmaps a fresh stack. See [`spawn`].
//!
//! This is the one place in the runner that calls libc directly: neither std nor nix can set a
//! spawned child's working directory without the per-spawn environment copy above, or start
//! it without glibc's per-signal loop; every call is checked.
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

/// The signals a child sets back to their default action before `execve`:
/// [`DEFAULT_SIGNALS`], and every signal this process had a handler for when it first
/// started a child (std's SIGSEGV and SIGBUS, tokio's SIGINT and SIGTERM). Read once.
///
/// A handler would be reset by `execve` anyway; it is reset before the child unblocks its
/// signals so that none can run in the child, which shares this process's memory until
/// `execve`. glibc's `posix_spawn` asks for the action of each of the 64 signals instead, 62
/// system calls per child while the parent waits (vfork). Handlers installed later (tokio's
/// SIGCHLD, say) only write to a self-pipe, which is harmless even from the child.
fn child_reset_signals() -> &'static [libc::c_int] {
    static LIST: OnceLock<Vec<libc::c_int>> = OnceLock::new();
    LIST.get_or_init(|| {
        let mut list = DEFAULT_SIGNALS.to_vec();
        for sig in 1..=libc::SIGRTMAX() {
            // glibc keeps the signals between 31 and SIGRTMIN for itself; SIGKILL and SIGSTOP
            // have no action to set.
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
            let action = ok.then(|| unsafe { old.assume_init() }.sa_sigaction);
            if action.is_some_and(|a| a != libc::SIG_IGN && a != libc::SIG_DFL) {
                list.push(sig);
            }
        }
        list
    })
}

/// What the child needs, all prepared by the parent: until `execve` the child runs on the
/// parent's memory (`CLONE_VM`), so it only makes system calls with what it is given.
struct ChildArgs {
    program: *const libc::c_char,
    argv: *const *mut libc::c_char,
    envp: *const *mut libc::c_char,
    cwd: *const libc::c_char,
    /// `(from, to)`: stdin, stdout and stderr.
    fds: [(RawFd, RawFd); 3],
    reset: *const libc::c_int,
    reset_len: usize,
    /// The `errno` of the step that failed before `execve`, set by the child; 0 otherwise.
    err: libc::c_int,
}

/// Stacks for children, reused: a fresh stack per child is an `mmap`, its first page faults
/// and a `munmap` (glibc's `posix_spawn`). Taken by one `spawn` at a time; the child is done
/// with its stack once `clone` returns (`CLONE_VFORK`). Left uninitialised: zeroing 64 KiB
/// wrote every page of it (15 of a one-job run's page faults), where the child touches one
/// or two at the top.
static STACKS: std::sync::Mutex<Vec<Box<[MaybeUninit<u128>]>>> = std::sync::Mutex::new(Vec::new());

/// 64 KiB (as 16-byte words, which keeps the top aligned): the child needs a few hundred
/// bytes; glibc gives its children 32 KiB and the arguments' size.
const STACK_WORDS: usize = 64 * 1024 / 16;

/// The child: signal actions back to their defaults, its own process group, its descriptors
/// and folder, an empty signal mask, `execve`. On failure it leaves `errno` in `err` and exits
/// with 127 (the parent reaps it and reports the error).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` of `spawn`, which outlives the child's use of it (the
    // parent is suspended until the child calls `execve` or exits); its pointers are valid C
    // strings and null-terminated arrays. Only async-signal-safe libc calls are made; nothing
    // allocates, locks or unwinds.
    unsafe {
        let a = &mut *arg.cast::<ChildArgs>();
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for i in 0..a.reset_len {
            libc::sigaction(*a.reset.add(i), &dfl, std::ptr::null_mut());
        }
        if libc::setpgid(0, 0) != 0 {
            child_fail(a);
        }
        for &(from, to) in &a.fds {
            let ok = if from == to {
                // `dup2` to itself keeps close-on-exec; clear it instead.
                libc::fcntl(to, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(from, to) >= 0
            };
            if !ok {
                child_fail(a);
            }
        }
        if libc::chdir(a.cwd) != 0 {
            child_fail(a);
        }
        let mut empty = MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(empty.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut());
        libc::execve(a.program, a.argv.cast(), a.envp.cast());
        child_fail(a)
    }
}

/// Records `errno` for the parent and ends the child.
///
/// # Safety
/// Only from [`child_main`].
unsafe fn child_fail(a: &mut ChildArgs) -> ! {
    // SAFETY: `errno` of this thread (the child runs with the parent thread's, which is
    // suspended); `_exit` ends the child without running any of the parent's exit handlers.
    unsafe {
        let e = *libc::__errno_location();
        std::ptr::write_volatile(&raw mut a.err, if e == 0 { libc::EINVAL } else { e });
        libc::_exit(127)
    }
}

/// Starts `program` with `args` (argv[0] is the program's path), the environment `env`, in
/// `cwd`, in a new process group, stdin on `/dev/null` and stdout and stderr on the given
/// descriptors.
///
/// Like glibc's `posix_spawn`, the child is cloned with `CLONE_VM | CLONE_VFORK` (no copy of
/// the address space; this thread waits until it has called `execve`) with every signal
/// blocked; unlike it, the child resets only the signals of [`child_reset_signals`], runs on a
/// reused stack, and its pidfd comes with the clone (`CLONE_PIDFD`).
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
    let reset = child_reset_signals();
    let mut child = ChildArgs {
        program: program_c.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd_c.as_ptr(),
        fds: [
            (dev_null()?, 0),
            (stdout.as_raw_fd(), 1),
            (stderr.as_raw_fd(), 2),
        ],
        reset: reset.as_ptr(),
        reset_len: reset.len(),
        err: 0,
    };
    let mut stack = STACKS
        .lock()
        .ok()
        .and_then(|mut s| s.pop())
        .unwrap_or_else(|| Box::new_uninit_slice(STACK_WORDS));
    let (pid, pidfd) = clone_child(&mut child, &mut stack);
    if let Ok(mut s) = STACKS.lock()
        && s.len() < 8
    {
        s.push(stack);
    }
    let pid = pid?;
    // SAFETY: the child wrote `err` (if at all) before it exited or called `execve`, and
    // `clone` returned only after that.
    let err = unsafe { std::ptr::read_volatile(&raw const child.err) };
    if err != 0 {
        let _ = waitpid(Pid::from_raw(pid), None);
        return Err(io::Error::from_raw_os_error(err));
    }
    // A pidfd says when the child exits without a SIGCHLD handler; without one (kernels before
    // 5.3) `wait` polls.
    let pidfd = pidfd.or_else(|| {
        // SAFETY: `pidfd_open` takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
        // SAFETY: a non-negative return is a new descriptor that nothing else owns.
        RawFd::try_from(fd)
            .ok()
            .filter(|fd| *fd >= 0)
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    });
    let pidfd = pidfd.and_then(|owned| {
        if tokio::runtime::Handle::try_current().is_ok() {
            // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which keeps it open and
            // unchanged until it is dropped.
            unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }.ok()
        } else {
            None
        }
    });
    Ok(Child {
        pid,
        pidfd,
        status: None,
    })
}

/// Clones the child of `args` on `stack` with every signal blocked in this thread meanwhile:
/// its pid, and its pidfd when the kernel gives one (`CLONE_PIDFD`, Linux 5.2).
fn clone_child(
    args: &mut ChildArgs,
    stack: &mut [MaybeUninit<u128>],
) -> (io::Result<libc::pid_t>, Option<OwnedFd>) {
    let top = stack.as_mut_ptr_range().end.cast::<libc::c_void>();
    let mut all = MaybeUninit::<libc::sigset_t>::zeroed();
    let mut old = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `sigfillset` initialises `all`; `pthread_sigmask` reads it and saves the
    // current mask into `old`, restored below whatever `clone` did.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr());
    }
    let base = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let mut pidfd: libc::c_int = -1;
    let arg = std::ptr::from_mut(args).cast::<libc::c_void>();
    // SAFETY: `child_main` only uses `args` (see there); `top` is the 16-byte aligned end of a
    // stack nobody else uses until this returns; with `CLONE_PIDFD` the kernel writes the
    // pidfd to `pidfd` (the parent-tid argument).
    let mut pid = unsafe {
        libc::clone(
            child_main,
            top,
            base | libc::CLONE_PIDFD,
            arg,
            &raw mut pidfd,
        )
    };
    let mut err = io::Error::last_os_error();
    if pid < 0 && err.raw_os_error() == Some(libc::EINVAL) {
        // A kernel without `CLONE_PIDFD`.
        pidfd = -1;
        // SAFETY: as above, without the pidfd.
        pid = unsafe { libc::clone(child_main, top, base, arg) };
        err = io::Error::last_os_error();
    }
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
    }
    if pid < 0 {
        return (Err(err), None);
    }
    // SAFETY: a non-negative value is the new pidfd, owned by nobody else.
    let fd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    (Ok(pid), fd)
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

    /// A zombie (or live) child of this process with this command line, if any.
    fn child_left(parent: u32, needle: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .find_map(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmd)
                    .contains(needle)
                    .then(|| pid.to_owned())
            })
    }

    #[test]
    fn a_missing_folder_fails_the_spawn_and_leaves_no_child() {
        let block = env_block([("PATH", "/usr/bin:/bin")]).expect("env");
        let env = merged(&block, &[]);
        let null = std::fs::File::open("/dev/null").expect("null");
        let fd = std::os::fd::AsFd::as_fd(&null);
        let args = vec!["-c".to_owned(), "echo missing-folder-marker".to_owned()];
        let err = spawn(
            Path::new("/bin/sh"),
            &args,
            &env,
            Path::new("/nonexistent/folder"),
            fd,
            fd,
        )
        .err()
        .expect("spawn must fail");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        // The child that failed before `execve` was reaped: no zombie is left behind (its
        // command line is still pipe's test binary's, so look for children at all).
        let me = std::process::id();
        let children =
            std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            assert!(!zombie, "a zombie child is left: {stat}");
        }
        assert!(child_left(me, "missing-folder-marker").is_none());
    }

    #[tokio::test]
    async fn a_child_starts_with_no_signal_blocked_or_ignored_that_a_shell_needs() {
        // Ignored here (Rust ignores SIGPIPE; SIGHUP as `nohup` would): both are back at
        // their defaults in the child. SIGUSR2 is ignored and stays ignored, as across `exec`.
        // (Handlers need no check from here: `execve` resets them whatever the child did.)
        // SAFETY: setting dispositions of signals this test process does not otherwise use.
        unsafe {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGUSR2, libc::SIG_IGN);
        }
        let (reader, writer) = std::io::pipe().expect("pipe");
        let block = env_block([("PATH", "/usr/bin:/bin")]).expect("env");
        let env = merged(&block, &[]);
        let args = vec!["-c".to_owned(), "cat /proc/self/status".to_owned()];
        let mut child = spawn(
            Path::new("/bin/sh"),
            &args,
            &env,
            Path::new("/"),
            std::os::fd::AsFd::as_fd(&writer),
            std::os::fd::AsFd::as_fd(&writer),
        )
        .expect("spawn");
        drop(writer);
        assert_eq!(child.wait().await.expect("wait").code(), Some(0));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut &reader, &mut out).expect("read");
        let mask = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or_else(|| panic!("no {name} in {out}"))
        };
        let bit = |sig: libc::c_int| 1u64 << (sig - 1);
        // `cat` runs with the mask and dispositions the shell was given (a shell's own
        // handlers end at `exec`; `cat` adds none).
        assert_eq!(mask("SigBlk:"), 0, "{out}");
        let ign = mask("SigIgn:");
        assert_eq!(ign & bit(libc::SIGPIPE), 0, "SIGPIPE ignored: {out}");
        assert_eq!(ign & bit(libc::SIGHUP), 0, "SIGHUP ignored: {out}");
        assert_ne!(ign & bit(libc::SIGUSR2), 0, "SIGUSR2 not ignored: {out}");
        // SAFETY: back to the defaults.
        unsafe {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            libc::signal(libc::SIGUSR2, libc::SIG_DFL);
        }
    }
}
