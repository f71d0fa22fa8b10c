//! Running a shell command with a time limit and a cancellation flag.
//!
//! Output goes to a file, not a pipe: a deploy script commonly starts a service in the
//! background, which would inherit a pipe and keep it open forever. The command runs in a
//! process group of its own; a timeout or a cancel kills that group (SIGTERM, a short grace,
//! then SIGKILL). Background processes that left the group (`setsid`, daemons) are the
//! script's business: a deploy is expected to leave its service running.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::Cancel;

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it (not ours).
    Signalled(i32),
    /// It ran past its time limit and was killed.
    TimedOut,
    /// The operation was cancelled (Ctrl-C) and it was killed.
    Cancelled,
}

/// A finished command.
#[derive(Clone, Debug)]
pub struct Finished {
    /// How it ended.
    pub ended: Ended,
    /// The last lines of its output (at most 2 KiB).
    pub tail: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs `sh -c SCRIPT` in `cwd` with `env` added, output appended to `log`.
pub fn run_shell(
    script: &str,
    cwd: &Path,
    env: &BTreeMap<String, String>,
    timeout: Duration,
    cancel: &Cancel,
    log: &Path,
) -> std::io::Result<Finished> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(log)?;
    let start_len = out.metadata()?.len();
    let err = out.try_clone()?;
    let start = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .spawn()?;
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let ended = loop {
        if let Some(status) = child.try_wait()? {
            use std::os::unix::process::ExitStatusExt;
            break match (status.code(), status.signal()) {
                (Some(c), _) => Ended::Exited(c),
                (None, Some(s)) => Ended::Signalled(s),
                (None, None) => Ended::Signalled(0),
            };
        }
        let why = if cancel.is_cancelled() {
            Some(Ended::Cancelled)
        } else if start.elapsed() >= timeout {
            Some(Ended::TimedOut)
        } else {
            None
        };
        if let Some(why) = why {
            let _ = killpg(pgid, Signal::SIGTERM);
            let grace = Instant::now();
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if grace.elapsed() > Duration::from_secs(2) {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            break why;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Finished {
        ended,
        tail: tail(log, start_len),
        elapsed: start.elapsed(),
    })
}

/// The last 2 KiB written to `log` after `from`, starting at a line boundary.
fn tail(log: &Path, from: u64) -> String {
    let Ok(mut f) = File::open(log) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = from.max(len.saturating_sub(2048));
    if f.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let s = String::from_utf8_lossy(&buf).into_owned();
    let s = if start > from {
        s.split_once('\n').map(|x| x.1.to_owned()).unwrap_or(s)
    } else {
        s
    };
    s.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_timeouts_and_cancels() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("log");
        let env = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
        let c = Cancel::new();
        let f = run_shell(
            "echo $GREETING; exit 3",
            dir.path(),
            &env,
            Duration::from_secs(5),
            &c,
            &log,
        )
        .expect("run");
        assert_eq!(f.ended, Ended::Exited(3));
        assert_eq!(f.tail, "hi");
        let f = run_shell(
            "sleep 5",
            dir.path(),
            &env,
            Duration::from_millis(200),
            &c,
            &log,
        )
        .expect("run");
        assert_eq!(f.ended, Ended::TimedOut);
        assert!(f.elapsed < Duration::from_secs(3));
        let c2 = Cancel::new();
        let c3 = c2.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            c3.cancel();
        });
        let f = run_shell(
            "sleep 5",
            dir.path(),
            &env,
            Duration::from_secs(30),
            &c2,
            &log,
        )
        .expect("run");
        assert_eq!(f.ended, Ended::Cancelled);
    }

    #[test]
    fn a_background_child_does_not_hold_the_command_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("log");
        let t = Instant::now();
        let f = run_shell(
            "sleep 3 & echo started",
            dir.path(),
            &BTreeMap::new(),
            Duration::from_secs(10),
            &Cancel::new(),
            &log,
        )
        .expect("run");
        assert_eq!(f.ended, Ended::Exited(0));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
