//! The per-environment deploy lock: first come, first served, and honest after a crash.
//!
//! Layout under the environment's folder (`deploy/<env>/` in the state folder):
//!
//! ```text
//! lock            exclusive flock held by the one deploy or rollback in progress
//! queue.lock      flock guarding the ticket counter and ticket files
//! counter         the last ticket handed out
//! queue/<n>       one ticket per waiter, flocked by it for as long as it waits or holds
//! inflight.json   what the holder is doing; removed only when it finished cleanly
//! ```
//!
//! Waiters are served in ticket order (FIFO), not in the kernel's wake-up order. A ticket
//! whose owner died is unlocked and removed by the next waiter that looks. `flock`s die
//! with their process, so a killed `pipe` never blocks the queue — but its
//! `inflight.json` stays: the next holder sees [`EnvLock::interrupted`] and must recover
//! (a rollback) before deploying anything else.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::Cancel;

/// What a deploy or rollback in progress is doing (`inflight.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// `deploy` or `rollback`.
    pub op: String,
    /// The environment.
    pub env: String,
    /// The build being deployed (`sha256:…`).
    pub build: String,
    /// The release record number.
    pub release: u64,
    /// The `pipe` process.
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started: String,
    /// The current phase (`deploying`, `pre-switch checks`, `switching`, `verifying`,
    /// `rolling back`).
    pub phase: String,
    /// The slot the proxy served before (blue-green).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_slot: Option<String>,
    /// The slot being deployed to (blue-green).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_slot: Option<String>,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// I/O on the state folder.
    #[error("environment lock in `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Ctrl-C while waiting.
    #[error("interrupted while waiting for the environment lock")]
    Cancelled,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.to_owned(),
        source,
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

fn lock(path: &Path, arg: FlockArg) -> Result<Option<Flock<File>>, LockError> {
    let f = open(path).map_err(io(path))?;
    match Flock::lock(f, arg) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(LockError::Io {
            path: path.to_owned(),
            source: e.into(),
        }),
    }
}

/// The environment lock, held until dropped (or the process dies).
#[derive(Debug)]
pub struct EnvLock {
    dir: PathBuf,
    ticket_path: PathBuf,
    _lock: Flock<File>,
    _ticket: Flock<File>,
}

/// Who holds or waits, for the "waiting" message.
#[derive(Clone, Debug)]
pub struct Waiting {
    /// Waiters ahead of us (the holder included).
    pub ahead: usize,
    /// The holder's record, when it wrote one.
    pub holder: Option<InFlight>,
}

/// Takes the environment lock in FIFO order. `on_wait` is called once when we have to wait.
pub fn acquire(
    env_dir: &Path,
    cancel: &Cancel,
    on_wait: &mut dyn FnMut(&Waiting),
) -> Result<EnvLock, LockError> {
    let queue = env_dir.join("queue");
    std::fs::create_dir_all(&queue).map_err(io(&queue))?;
    let (n, ticket_path, ticket) = take_ticket(env_dir)?;
    let lock_path = env_dir.join("lock");
    let mut told = false;
    loop {
        let ahead = live_tickets_before(env_dir, n)?;
        if ahead == 0
            && let Some(l) = lock(&lock_path, FlockArg::LockExclusiveNonblock)?
        {
            return Ok(EnvLock {
                dir: env_dir.to_owned(),
                ticket_path,
                _lock: l,
                _ticket: ticket,
            });
        }
        if !told {
            told = true;
            on_wait(&Waiting {
                ahead: ahead.max(1),
                holder: read_inflight(env_dir),
            });
        }
        if cancel.is_cancelled() {
            let _ = std::fs::remove_file(&ticket_path);
            return Err(LockError::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn take_ticket(env_dir: &Path) -> Result<(u64, PathBuf, Flock<File>), LockError> {
    let ql = env_dir.join("queue.lock");
    let _guard = lock(&ql, FlockArg::LockExclusive)?;
    let counter = env_dir.join("counter");
    let mut s = String::new();
    if let Ok(mut f) = File::open(&counter) {
        let _ = f.read_to_string(&mut s);
    }
    let n = s.trim().parse::<u64>().unwrap_or(0) + 1;
    crate::write_atomic(&counter, n.to_string().as_bytes()).map_err(io(&counter))?;
    let path = env_dir.join("queue").join(format!("{n:020}"));
    let t = lock(&path, FlockArg::LockExclusiveNonblock)?.ok_or_else(|| LockError::Io {
        path: path.clone(),
        source: std::io::Error::other("a fresh ticket is locked by someone else"),
    })?;
    Ok((n, path, t))
}

/// Counts live tickets before `n`, removing those whose owner died.
fn live_tickets_before(env_dir: &Path, n: u64) -> Result<usize, LockError> {
    let queue = env_dir.join("queue");
    let ql = env_dir.join("queue.lock");
    let _guard = lock(&ql, FlockArg::LockExclusive)?;
    let mut live = 0;
    for e in std::fs::read_dir(&queue).map_err(io(&queue))? {
        let e = e.map_err(io(&queue))?;
        let Some(m) = e.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if m >= n {
            continue;
        }
        match lock(&e.path(), FlockArg::LockExclusiveNonblock)? {
            Some(_dead) => {
                let _ = std::fs::remove_file(e.path());
            }
            None => live += 1,
        }
    }
    Ok(live)
}

/// The in-flight record of the environment, if any.
pub fn read_inflight(env_dir: &Path) -> Option<InFlight> {
    let text = std::fs::read_to_string(env_dir.join("inflight.json")).ok()?;
    serde_json::from_str(&text).ok()
}

impl EnvLock {
    /// A record left by a deploy or rollback that did not finish (its process died or was
    /// interrupted): the environment needs a rollback before anything else deploys.
    pub fn interrupted(&self) -> Option<InFlight> {
        read_inflight(&self.dir)
    }

    /// Records what we are about to do (replacing an interrupted record: recovery).
    pub fn begin(&self, rec: &InFlight) -> std::io::Result<()> {
        crate::write_json(&self.dir.join("inflight.json"), rec)
    }

    /// Updates the phase of the record.
    pub fn phase(&self, rec: &mut InFlight, phase: &str) -> std::io::Result<()> {
        rec.phase = phase.to_owned();
        self.begin(rec)
    }

    /// The operation finished (successfully or not, but cleanly): drop the record.
    pub fn finish(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.dir.join("inflight.json")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for EnvLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ticket_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn rec(pid: u32) -> InFlight {
        InFlight {
            op: "deploy".into(),
            env: "staging".into(),
            build: "sha256:ab".into(),
            release: 1,
            pid,
            started: crate::now_rfc3339(),
            phase: "deploying".into(),
            from_slot: None,
            to_slot: None,
        }
    }

    #[test]
    fn waiters_are_served_in_arrival_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let env = dir.path().to_owned();
        let first =
            acquire(&env, &Cancel::new(), &mut |_| panic!("free lock waited")).expect("lock");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..4 {
            let env = env.clone();
            let order = order.clone();
            threads.push(std::thread::spawn(move || {
                let mut waited = false;
                let l = acquire(&env, &Cancel::new(), &mut |_| waited = true).expect("lock");
                order.lock().expect("mutex").push(i);
                std::thread::sleep(Duration::from_millis(30));
                drop(l);
                waited
            }));
            // the next one arrives strictly later
            std::thread::sleep(Duration::from_millis(80));
        }
        drop(first);
        for t in threads {
            assert!(t.join().expect("thread"), "every later arrival waited");
        }
        assert_eq!(*order.lock().expect("mutex"), vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_dead_waiter_does_not_block_the_queue_and_waiting_can_be_cancelled() {
        let dir = tempfile::tempdir().expect("tmp");
        let env = dir.path();
        let held = acquire(env, &Cancel::new(), &mut |_| {}).expect("lock");
        held.begin(&rec(4242)).expect("begin");
        // a waiter gives up (Ctrl-C): its ticket goes away
        let c = Cancel::new();
        c.cancel();
        let mut seen = None;
        let r = acquire(env, &c, &mut |w| seen = Some(w.clone()));
        assert!(matches!(r, Err(LockError::Cancelled)));
        let w = seen.expect("told to wait");
        assert_eq!(w.holder.expect("holder").pid, 4242);
        // a ticket left by a dead process (no flock on it) is skipped and removed
        std::fs::write(env.join("queue").join(format!("{:020}", 0)), "").expect("ticket");
        held.finish().expect("finish");
        drop(held);
        let l = acquire(env, &Cancel::new(), &mut |_| {}).expect("lock");
        assert!(l.interrupted().is_none());
        assert_eq!(std::fs::read_dir(env.join("queue")).expect("ls").count(), 1);
    }

    #[test]
    fn an_unfinished_holder_leaves_its_record_for_the_next() {
        let dir = tempfile::tempdir().expect("tmp");
        let env = dir.path();
        let l = acquire(env, &Cancel::new(), &mut |_| {}).expect("lock");
        let mut r = rec(7);
        l.begin(&r).expect("begin");
        l.phase(&mut r, "switching").expect("phase");
        drop(l); // what a killed process does: the flock goes, the record stays
        let next = acquire(env, &Cancel::new(), &mut |_| panic!("no wait")).expect("lock");
        let left = next.interrupted().expect("record");
        assert_eq!((left.pid, left.phase.as_str()), (7, "switching"));
        next.finish().expect("finish");
        assert!(next.interrupted().is_none());
    }
}
