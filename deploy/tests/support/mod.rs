//! Real components for the deploy tests: the example service (python3) and nginx.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether a missing tool must fail the test (decisions.md: `CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The nginx binary, or `None` (the test skips; fails under CI).
pub fn nginx_bin() -> Option<String> {
    for c in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(c).is_file() {
            return Some(c.to_owned());
        }
    }
    if Command::new("nginx").arg("-v").output().is_ok() {
        return Some("nginx".to_owned());
    }
    assert!(
        !in_ci(),
        "nginx is missing (CI=true): .ci/run installs nginx-light"
    );
    eprintln!("skipping: nginx is not installed (apt-get install nginx-light)");
    None
}

/// python3, or `None`.
pub fn python() -> Option<()> {
    if Command::new("python3").arg("-V").output().is_ok() {
        return Some(());
    }
    assert!(!in_ci(), "python3 is missing (CI=true)");
    eprintln!("skipping: python3 is not installed");
    None
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `deploy/testdata/` (this module is also included by the workspace's integration tests,
/// whose manifest folder is the repository root).
pub fn testdata() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if base.join("testdata").join("service.py").is_file() {
        base.join("testdata")
    } else {
        base.join("deploy").join("testdata")
    }
}

/// Waits until `addr` accepts connections.
pub fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The example service, killed on drop.
pub struct Service {
    child: Child,
    pub port: u16,
}

impl Service {
    pub fn start(version: &str, control: Option<&Path>) -> Service {
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(testdata().join("service.py"))
            .args(["--port", &port.to_string(), "--version", version])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(c) = control {
            cmd.arg("--control").arg(c);
        }
        let child = cmd.spawn().expect("start service.py");
        wait_port(port);
        Service { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A non-daemon nginx with its config in `dir`, proxying `127.0.0.1:port` to the
/// `pipe_backend` upstream defined in `dir/upstream.conf`; stopped on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub bin: String,
}

impl Nginx {
    pub fn start(bin: &str, dir: &Path, initial_upstream: &str) -> Nginx {
        let port = free_port();
        let d = dir.display();
        std::fs::create_dir_all(dir.join("tmp")).expect("mkdir");
        std::fs::write(dir.join("upstream.conf"), initial_upstream).expect("upstream");
        let user =
            if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("proc"))
                == 0
            {
                "user root;\n"
            } else {
                ""
            };
        let conf = format!(
            "{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  \
             fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  \
             include {d}/upstream.conf;\n  server {{\n    listen 127.0.0.1:{port};\n    \
             location / {{ proxy_pass http://pipe_backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("conf");
        let child = Command::new(bin)
            .args(["-e", "stderr", "-g", "daemon off;", "-c"])
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        wait_port(port);
        let start = Instant::now();
        while !dir.join("nginx.pid").exists() {
            assert!(start.elapsed() < Duration::from_secs(10), "no nginx.pid");
            std::thread::sleep(Duration::from_millis(10));
        }
        Nginx {
            child,
            port,
            dir: dir.to_owned(),
            bin: bin.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGQUIT,
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET with a short timeout: (status, body) or the error.
/// Kills, when dropped, every process whose pid is in a `*.pid` file of a folder (services a
/// deploy script started in the background). Declare it after whatever owns the folder, so it
/// is dropped first and still finds the files.
pub struct KillPidFiles(pub PathBuf);

impl Drop for KillPidFiles {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid")
                && let Ok(pid) = std::fs::read_to_string(e.path())
            {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

pub fn get(url: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3)))
        .proxy(None)
        .build()
        .into();
    let mut r = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// A bounded load loop against `url` on its own thread until stopped: every response's
/// status and body, and every error.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(Vec<String>, Vec<String>)>,
}

impl Load {
    pub fn start(url: String) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut ok = Vec::new();
            let mut errors = Vec::new();
            // bounded: at most 20,000 requests
            for _ in 0..20_000 {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                match get(&url) {
                    Ok((200, body)) => ok.push(body.trim().to_owned()),
                    Ok((code, body)) => errors.push(format!("status {code}: {}", body.trim())),
                    Err(e) => errors.push(e),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (ok, errors)
        });
        Load { stop, handle }
    }

    /// Stops and returns (bodies of 200s, errors).
    pub fn stop(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.join().expect("load thread")
    }
}
