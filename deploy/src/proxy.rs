//! The blue-green switch of a local nginx reverse proxy.
//!
//! pipe owns one file, the upstream include (`upstream NAME { server ADDR; }` plus a marker
//! line naming the slot). A switch writes the new file next to the old one and renames it
//! into place, tests the whole configuration with `nginx -t`, and only then sends the master
//! SIGHUP; it waits until the master has started new workers (the reload took). When the
//! test or the reload fails, the old file is put back and nginx never saw the new one:
//! nginx only reads files on reload, so traffic is never half-switched — it is served by the
//! old configuration until the new one is complete and valid.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::spec::NginxSpec;

const MARKER: &str = "# managed by pipe; slot: ";

/// A proxy switch that did not happen (the old configuration is still in place).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Reading or writing the upstream file, or reading the pid file.
    #[error("`{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `nginx -t` refused the new configuration.
    #[error("`nginx -t` refused the new configuration (the old one is back in place):\n{output}")]
    ConfigTest {
        /// nginx's output.
        output: String,
    },
    /// nginx could not be run.
    #[error("could not run `{bin}`: {source}")]
    Spawn {
        /// The binary.
        bin: String,
        /// The error.
        source: std::io::Error,
    },
    /// The master is not running or did not reload.
    #[error("nginx (pid {pid}) did not reload: {why} (the old configuration is back in place)")]
    Reload {
        /// The master pid.
        pid: i32,
        /// What happened.
        why: String,
    },
}

/// A configured nginx.
#[derive(Clone, Debug)]
pub struct Nginx {
    /// The binary.
    pub bin: String,
    /// The main configuration.
    pub config: PathBuf,
    /// The upstream include pipe rewrites.
    pub upstream_file: PathBuf,
    /// The upstream's name.
    pub upstream: String,
    /// The master's pid file.
    pub pid_file: PathBuf,
}

impl Nginx {
    /// Resolves `spec` (relative paths against `base`, the project root).
    pub fn from_spec(spec: &NginxSpec, base: &Path) -> Nginx {
        let bin = spec.nginx.clone().unwrap_or_else(default_bin);
        Nginx {
            bin,
            config: base.join(&spec.config),
            upstream_file: base.join(&spec.upstream_file),
            upstream: spec.upstream.clone(),
            pid_file: base.join(&spec.pid_file),
        }
    }

    /// The upstream file for `slot` at `addr`.
    pub fn render(&self, slot: &str, addr: &str) -> String {
        format!(
            "{MARKER}{slot}\nupstream {} {{\n    server {addr};\n}}\n",
            self.upstream
        )
    }

    /// The slot the upstream file points at, from pipe's marker line.
    pub fn current_slot(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.upstream_file).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(MARKER))
            .map(|s| s.trim().to_owned())
    }

    /// Points the proxy at `slot` (`addr`) and reloads; on any failure the previous file is
    /// restored and nginx keeps serving the old upstream.
    pub fn switch(&self, slot: &str, addr: &str) -> Result<(), ProxyError> {
        let path = &self.upstream_file;
        let old = match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ProxyError::Io {
                    path: path.clone(),
                    source,
                });
            }
        };
        let restore = || match &old {
            Some(b) => {
                let _ = crate::write_atomic(path, b);
            }
            None => {
                let _ = std::fs::remove_file(path);
            }
        };
        crate::write_atomic(path, self.render(slot, addr).as_bytes()).map_err(|source| {
            ProxyError::Io {
                path: path.clone(),
                source,
            }
        })?;
        if let Err(e) = self.test() {
            restore();
            return Err(e);
        }
        if let Err(e) = self.reload() {
            restore();
            return Err(e);
        }
        Ok(())
    }

    /// `nginx -t` on the main configuration.
    pub fn test(&self) -> Result<(), ProxyError> {
        let out = Command::new(&self.bin)
            .args(["-t", "-q", "-e", "stderr", "-c"])
            .arg(&self.config)
            .output()
            .map_err(|source| ProxyError::Spawn {
                bin: self.bin.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if output.is_empty() {
            output = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        Err(ProxyError::ConfigTest { output })
    }

    fn master(&self) -> Result<i32, ProxyError> {
        let text = std::fs::read_to_string(&self.pid_file).map_err(|source| ProxyError::Io {
            path: self.pid_file.clone(),
            source,
        })?;
        text.trim().parse().map_err(|_| ProxyError::Io {
            path: self.pid_file.clone(),
            source: std::io::Error::other(format!("`{}` is not a pid", text.trim())),
        })
    }

    /// SIGHUP to the master, then wait until it runs a new generation of workers.
    fn reload(&self) -> Result<(), ProxyError> {
        let pid = self.master()?;
        let before = children(pid);
        kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|e| ProxyError::Reload {
            pid,
            why: format!("cannot signal it: {e}"),
        })?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let now = children(pid);
            if now.iter().any(|c| !before.contains(c)) {
                // new workers run; give the old ones (told to quit after the new ones
                // started) a moment to close their listeners
                let grace = Instant::now();
                while grace.elapsed() < Duration::from_secs(2)
                    && children(pid).iter().any(|c| before.contains(c))
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(ProxyError::Reload {
            pid,
            why: "no new worker process started within 10s (see nginx's error log)".to_owned(),
        })
    }
}

fn default_bin() -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nginx").is_file()));
    if on_path {
        "nginx".to_owned()
    } else {
        "/usr/sbin/nginx".to_owned()
    }
}

/// The pids whose parent is `pid` (from `/proc/*/stat`).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces and parentheses
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}
