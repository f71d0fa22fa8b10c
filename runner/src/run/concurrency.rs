//! Workflow-level `concurrency` groups across concurrent `pipe` processes of one repository
//! (decisions.md): at most one running and one pending run per group; a newer pending run
//! cancels the older pending one; `cancel-in-progress: true` cancels the running one.
//!
//! Each group is a folder under the repository's state folder holding `running.lock` (an
//! exclusive `flock` held for the whole run), `running.pid`, and `pending.pid` guarded by
//! `queue.lock`. A lock dies with its process, so a killed `pipe` never blocks a group. Runs
//! are cancelled by sending their process SIGINT, which `pipe run` turns into a graceful
//! cancellation (steps stopped, exit 130), the way GitHub cancels a run.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

/// Holding a group: released when dropped (or when the process dies).
#[derive(Debug)]
pub struct GroupGuard {
    _running: Flock<File>,
    dir: PathBuf,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("running.pid"));
    }
}

/// What happened while waiting for a group.
#[derive(Debug)]
pub enum Acquired {
    /// The run may start.
    Run(GroupGuard),
    /// The run was cancelled while pending (a newer run took its place, or Ctrl-C).
    Cancelled,
}

/// The folder of a group.
pub fn group_dir(state_dir: &Path, group: &str) -> PathBuf {
    let digest = pipe_cache::Digest::of(group.as_bytes()).hex();
    state_dir.join("concurrency").join(&digest[..16])
}

fn open(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn read_pid(path: &Path) -> Option<i32> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

fn write_pid(path: &Path, pid: u32) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(pid.to_string().as_bytes())
}

fn try_running(dir: &Path) -> std::io::Result<Option<Flock<File>>> {
    let f = open(&dir.join("running.lock"))?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(std::io::Error::from(e)),
    }
}

/// Waits for the group: starts at once when it is free; otherwise becomes its pending run
/// (cancelling an older pending run) and, with `cancel_in_progress`, cancels the running one.
/// `on_wait` is called once if the run has to wait. Returns `Cancelled` when `cancel` fires
/// while waiting.
pub async fn acquire(
    state_dir: &Path,
    group: &str,
    cancel_in_progress: bool,
    cancel: &CancellationToken,
    on_wait: &mut (dyn FnMut(Option<i32>) + Send),
) -> std::io::Result<Acquired> {
    let dir = group_dir(state_dir, group);
    std::fs::create_dir_all(&dir)?;
    let me = std::process::id();
    // Claim the pending slot under the queue lock.
    {
        let queue = Flock::lock(open(&dir.join("queue.lock"))?, FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        if let Some(lock) = try_running(&dir)? {
            write_pid(&dir.join("running.pid"), me)?;
            drop(queue);
            return Ok(Acquired::Run(GroupGuard {
                _running: lock,
                dir,
            }));
        }
        if let Some(old) = read_pid(&dir.join("pending.pid"))
            && old != me as i32
        {
            // The older pending run is cancelled by the newer one.
            let _ = kill(Pid::from_raw(old), Signal::SIGINT);
        }
        write_pid(&dir.join("pending.pid"), me)?;
        let running = read_pid(&dir.join("running.pid"));
        if cancel_in_progress && let Some(pid) = running {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        on_wait(running);
        drop(queue);
    }
    loop {
        if cancel.is_cancelled() {
            let _queue = Flock::lock(open(&dir.join("queue.lock"))?, FlockArg::LockExclusive)
                .map_err(|(_, e)| std::io::Error::from(e))?;
            if read_pid(&dir.join("pending.pid")) == Some(me as i32) {
                let _ = std::fs::remove_file(dir.join("pending.pid"));
            }
            return Ok(Acquired::Cancelled);
        }
        if let Some(lock) = try_running(&dir)? {
            let _queue = Flock::lock(open(&dir.join("queue.lock"))?, FlockArg::LockExclusive)
                .map_err(|(_, e)| std::io::Error::from(e))?;
            if read_pid(&dir.join("pending.pid")) == Some(me as i32) {
                let _ = std::fs::remove_file(dir.join("pending.pid"));
            }
            write_pid(&dir.join("running.pid"), me)?;
            return Ok(Acquired::Run(GroupGuard {
                _running: lock,
                dir,
            }));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
            () = cancel.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_run_waits_until_the_first_ends() {
        let t = tempfile::tempdir().expect("tmp");
        let cancel = CancellationToken::new();
        let mut waited = false;
        let first = match acquire(t.path(), "g", false, &cancel, &mut |_| waited = true)
            .await
            .expect("acquire")
        {
            Acquired::Run(g) => g,
            Acquired::Cancelled => panic!("cancelled"),
        };
        assert!(!waited);
        let dir = t.path().to_path_buf();
        let waiter = tokio::spawn(async move {
            let c = CancellationToken::new();
            matches!(
                acquire(&dir, "g", false, &c, &mut |_| {}).await,
                Ok(Acquired::Run(_))
            )
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!waiter.is_finished(), "the second run must wait");
        drop(first);
        assert!(waiter.await.expect("join"));
    }

    #[tokio::test]
    async fn cancelled_while_pending() {
        let t = tempfile::tempdir().expect("tmp");
        let cancel = CancellationToken::new();
        let _first = acquire(t.path(), "g", false, &cancel, &mut |_| {})
            .await
            .expect("a");
        let c2 = CancellationToken::new();
        let c3 = c2.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c3.cancel();
        });
        let r = acquire(t.path(), "g", false, &c2, &mut |_| {})
            .await
            .expect("b");
        assert!(matches!(r, Acquired::Cancelled));
        assert!(!group_dir(t.path(), "g").join("pending.pid").exists());
    }
}
