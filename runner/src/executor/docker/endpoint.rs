//! Finding the Docker engine: `DOCKER_HOST`, the current Docker context, then the usual socket
//! paths (rootful Docker, rootless Docker, Podman, Colima, OrbStack), the first that answers a
//! ping wins. API versions are negotiated, never pinned.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;

/// Seconds a request may take before bollard gives up (pulls and builds stream, so this only
/// bounds waiting for the response headers).
const REQUEST_TIMEOUT_S: u64 = 600;
/// How long a candidate gets to answer `/_ping`.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Where one candidate came from and its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// `DOCKER_HOST`, `context NAME`, `rootless Docker`…
    pub source: String,
    /// `unix:///path` or `tcp://host:port`.
    pub host: String,
}

/// The environment discovery reads (tests pass their own).
pub trait Env: Sync {
    /// A variable's value.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<F: Fn(&str) -> Option<String> + Sync> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// The engine could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("no Docker engine answered (tried {tried}){hint}")]
pub struct NoEngine {
    /// What was tried, with each failure.
    pub tried: String,
    /// A hint for the user.
    pub hint: String,
}

fn home(env: &dyn Env) -> Option<PathBuf> {
    env.var("HOME").map(PathBuf::from)
}

/// The Docker CLI's configuration folder (`DOCKER_CONFIG` or `~/.docker`).
fn docker_config_dir(env: &dyn Env) -> Option<PathBuf> {
    env.var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| home(env).map(|h| h.join(".docker")))
}

/// The endpoint of the current Docker context (`DOCKER_CONTEXT`, else `currentContext` in
/// `config.json`), read from `contexts/meta/<sha256(name)>/meta.json`; `None` for the
/// `default` context or when nothing is configured.
pub fn context_endpoint(env: &dyn Env) -> Option<Candidate> {
    let dir = docker_config_dir(env)?;
    let name = env.var("DOCKER_CONTEXT").or_else(|| {
        let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v.get("currentContext")?.as_str().map(str::to_owned)
    })?;
    if name.is_empty() || name == "default" {
        return None;
    }
    let digest = pipe_cache::digest::Digest::of(name.as_bytes()).hex();
    let meta = dir
        .join("contexts")
        .join("meta")
        .join(digest)
        .join("meta.json");
    let text = std::fs::read_to_string(meta).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let host = v.get("Endpoints")?.get("docker")?.get("Host")?.as_str()?;
    Some(Candidate {
        source: format!("Docker context `{name}`"),
        host: host.to_owned(),
    })
}

/// Every candidate in the order they are tried. An explicit `DOCKER_HOST` (or
/// `PIPE_DOCKER_HOST`) is the only candidate: a user who names an engine means that one.
pub fn candidates(env: &dyn Env) -> Vec<Candidate> {
    for var in ["PIPE_DOCKER_HOST", "DOCKER_HOST"] {
        if let Some(h) = env.var(var) {
            return vec![Candidate {
                source: format!("`{var}`"),
                host: h,
            }];
        }
    }
    let mut out = Vec::new();
    if let Some(c) = context_endpoint(env) {
        out.push(c);
    }
    let sock = |source: &str, p: PathBuf| Candidate {
        source: source.to_owned(),
        host: format!("unix://{}", p.display()),
    };
    out.push(sock(
        "the Docker socket",
        PathBuf::from("/var/run/docker.sock"),
    ));
    let runtime = env.var("XDG_RUNTIME_DIR").map(PathBuf::from).or_else(|| {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        (uid != 0).then(|| PathBuf::from(format!("/run/user/{uid}")))
    });
    if let Some(r) = &runtime {
        out.push(sock("rootless Docker", r.join("docker.sock")));
        out.push(sock("Podman", r.join("podman").join("podman.sock")));
    }
    out.push(sock("Podman", PathBuf::from("/run/podman/podman.sock")));
    if let Some(h) = home(env) {
        out.push(sock("Colima", h.join(".colima/default/docker.sock")));
        out.push(sock("OrbStack", h.join(".orbstack/run/docker.sock")));
        out.push(sock("Docker Desktop", h.join(".docker/run/docker.sock")));
    }
    out.dedup_by(|a, b| a.host == b.host);
    out
}

/// A client for one address (no I/O yet).
fn client_for(host: &str) -> Result<Docker, String> {
    let r = if let Some(path) = host.strip_prefix("unix://") {
        if !Path::new(path).exists() {
            return Err("no such socket".to_owned());
        }
        Docker::connect_with_unix(path, REQUEST_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
    } else if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, REQUEST_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
    } else if host.starts_with('/') {
        if !Path::new(host).exists() {
            return Err("no such socket".to_owned());
        }
        Docker::connect_with_unix(host, REQUEST_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
    } else {
        return Err("unsupported address (use `unix://` or `tcp://`)".to_owned());
    };
    r.map_err(|e| e.to_string())
}

/// Connects to the first candidate that answers, negotiating the API version.
pub async fn connect(env: &dyn Env) -> Result<(Docker, Candidate), NoEngine> {
    connect_any(&candidates(env)).await
}

/// Connects to the first of `all` that answers.
pub async fn connect_any(all: &[Candidate]) -> Result<(Docker, Candidate), NoEngine> {
    let mut tried = Vec::new();
    for c in all {
        let attempt = async {
            let d = client_for(&c.host)?;
            match tokio::time::timeout(PING_TIMEOUT, d.ping()).await {
                Err(_) => return Err("no answer within 3 s".to_owned()),
                Ok(Err(e)) => return Err(short_error(&e)),
                Ok(Ok(_)) => {}
            }
            d.negotiate_version().await.map_err(|e| short_error(&e))
        };
        match attempt.await {
            Ok(d) => return Ok((d, c.clone())),
            Err(e) => tried.push(format!("{} `{}`: {e}", c.source, c.host)),
        }
    }
    let explicit = all.len() == 1;
    Err(NoEngine {
        tried: tried.join("; "),
        hint: if explicit {
            String::new()
        } else {
            "; start Docker or Podman, or set `DOCKER_HOST`".to_owned()
        },
    })
}

/// A one-line reason from a bollard error.
pub fn short_error(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError { message, .. } => message.trim().to_owned(),
        other => {
            let s = other.to_string();
            s.lines().next().unwrap_or("").trim().to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn docker_host_is_the_only_candidate() {
        let e = env(&[("DOCKER_HOST", "tcp://127.0.0.1:2375".into())]);
        let c = candidates(&e);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].host, "tcp://127.0.0.1:2375");
        assert_eq!(c[0].source, "`DOCKER_HOST`");
    }

    #[test]
    fn current_context_comes_first() {
        let t = tempfile::tempdir().expect("tmp");
        let cfg = t.path().join(".docker");
        let digest = pipe_cache::digest::Digest::of(b"colima").hex();
        let meta = cfg.join("contexts/meta").join(digest);
        std::fs::create_dir_all(&meta).expect("mkdir");
        std::fs::write(cfg.join("config.json"), r#"{"currentContext": "colima"}"#).expect("write");
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"colima","Endpoints":{"docker":{"Host":"unix:///tmp/colima.sock"}}}"#,
        )
        .expect("write");
        let e = env(&[
            ("HOME", t.path().display().to_string()),
            ("XDG_RUNTIME_DIR", "/run/user/1000".into()),
        ]);
        let c = candidates(&e);
        assert_eq!(c[0].host, "unix:///tmp/colima.sock");
        assert_eq!(c[0].source, "Docker context `colima`");
        let hosts: Vec<&str> = c.iter().map(|c| c.host.as_str()).collect();
        assert!(hosts.contains(&"unix:///var/run/docker.sock"));
        assert!(hosts.contains(&"unix:///run/user/1000/docker.sock"));
        assert!(hosts.contains(&"unix:///run/user/1000/podman/podman.sock"));
        // DOCKER_CONTEXT overrides the file; `default` means no context endpoint.
        let e2 = env(&[
            ("HOME", t.path().display().to_string()),
            ("DOCKER_CONTEXT", "default".into()),
        ]);
        assert_eq!(candidates(&e2)[0].host, "unix:///var/run/docker.sock");
    }

    #[tokio::test]
    async fn names_everything_it_tried() {
        let t = tempfile::tempdir().expect("tmp");
        // A socket file nobody listens on, and a missing one.
        let dead = t.path().join("dead.sock");
        let l = std::os::unix::net::UnixListener::bind(&dead).expect("bind");
        drop(l);
        let e = env(&[("DOCKER_HOST", format!("unix://{}", dead.display()))]);
        let err = connect(&e).await.expect_err("nothing answers");
        let msg = err.to_string();
        assert!(
            msg.starts_with("no Docker engine answered (tried `DOCKER_HOST`"),
            "{msg}"
        );
        assert!(msg.contains(&dead.display().to_string()), "{msg}");

        let e = env(&[
            ("HOME", t.path().display().to_string()),
            ("XDG_RUNTIME_DIR", t.path().display().to_string()),
            (
                "PIPE_DOCKER_HOST",
                format!("unix://{}/missing.sock", t.path().display()),
            ),
        ]);
        let msg = connect(&e).await.expect_err("missing").to_string();
        assert!(msg.contains("no such socket"), "{msg}");
    }

    /// A fake engine on a Unix socket that answers `/_ping` and `/version` like Podman's
    /// compatibility API: discovery finds it at the rootless Podman path.
    #[tokio::test]
    async fn finds_a_podman_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let t = tempfile::tempdir().expect("tmp");
        let dir = t.path().join("podman");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("podman.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let body = if req.contains("/version") {
                        r#"{"Version":"4.3.1","ApiVersion":"1.41","MinAPIVersion":"1.24","Components":[{"Name":"Podman Engine","Version":"4.3.1"}]}"#
                    } else {
                        "OK"
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        let e = env(&[
            ("HOME", t.path().join("nohome").display().to_string()),
            ("XDG_RUNTIME_DIR", t.path().display().to_string()),
        ]);
        // The machine's own sockets are left out: only the ones under the temp folder count.
        let mine: Vec<Candidate> = candidates(&e)
            .into_iter()
            .filter(|c| c.host.contains(&t.path().display().to_string()))
            .collect();
        assert_eq!(mine[0].source, "rootless Docker");
        let (docker, c) = connect_any(&mine).await.expect("podman answers");
        assert_eq!(c.source, "Podman");
        assert_eq!(c.host, format!("unix://{}", path.display()));
        assert_eq!(docker.client_version().to_string(), "1.41");
        server.abort();
    }
}
