//! A throwaway PostgreSQL cluster for tests: `initdb` into a temp dir and `postgres` on a free
//! loopback port with its socket in that dir. As root (CI), the cluster runs as the `postgres`
//! user through `runuser` (PostgreSQL refuses root). A watchdog shell stops the server when
//! the test process exits, so no cluster outlives its tests.
//!
//! Without PostgreSQL, [`PgCluster::shared`] returns `None` (tests skip with a message) unless
//! `CI=true`, where it panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The loopback port.
    pub port: u16,
    run_as: Option<String>,
}

fn pg_bin() -> Option<PathBuf> {
    if let Ok(b) = std::env::var("PIPE_TEST_PG_BIN") {
        return Some(PathBuf::from(b));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file() && b.join("postgres").is_file())
        .collect();
    found.sort();
    found.pop()
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

impl PgCluster {
    /// The cluster shared by every test of this process, started on first use; `None` when
    /// PostgreSQL is not installed (and `CI` is not `true`).
    pub fn shared() -> Option<&'static PgCluster> {
        static SHARED: OnceLock<Option<PgCluster>> = OnceLock::new();
        SHARED
            .get_or_init(|| match PgCluster::start_new() {
                Ok(c) => Some(c),
                Err(e) if !ci() => {
                    eprintln!("skipping: no PostgreSQL for the test ({e})");
                    None
                }
                Err(e) => panic!("PostgreSQL is required when CI=true: {e}"),
            })
            .as_ref()
    }

    /// A cluster of its own (for tests that stop and restart it).
    pub fn start_new() -> Result<PgCluster, String> {
        let bin =
            pg_bin().ok_or("PostgreSQL's `initdb` was not found under /usr/lib/postgresql")?;
        let dir = tempfile::Builder::new()
            .prefix("pipe-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let run_as = if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| format!("chown: {e}"))?
                .success();
            if !ok {
                return Err("cannot give the temp dir to the `postgres` user".into());
            }
            Some("postgres".to_owned())
        } else {
            None
        };
        let c = PgCluster {
            port: free_port(),
            dir,
            bin,
            run_as,
        };
        let data = c.data_dir();
        let out = c
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        c.start()?;
        Ok(c)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temp dir (socket and log live here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    /// Starts the server (after [`PgCluster::stop`]) and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        // The watchdog stops the postgres it started (fast shutdown) when this test process
        // is gone, or when `stop` removes the `run` flag file.
        let flag = self.dir().join("run");
        std::fs::write(&flag, b"").map_err(|e| format!("cannot write the run flag: {e}"))?;
        let script = format!(
            "\"$0\" -D \"$1\" -p {port} -k \"$2\" -c listen_addresses=127.0.0.1 \
             -c max_connections=300 -c fsync=off -c full_page_writes=off \
             -c synchronous_commit=off >>\"$2/log\" 2>&1 & pg=$!; \
             while [ -d /proc/{parent} ] && [ -e \"$3\" ] && kill -0 $pg 2>/dev/null; do sleep 0.2; done; \
             kill -INT $pg 2>/dev/null; wait $pg; \
             [ -d /proc/{parent} ] || rm -rf \"$2\"",
            port = self.port,
            parent = std::process::id(),
        );
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "sh", "-c"]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.arg("-c");
                c
            }
        };
        cmd.arg(&script)
            .arg(self.bin.join("postgres"))
            .arg(self.data_dir())
            .arg(self.dir())
            .arg(&flag)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        // Reap the watchdog in the background.
        std::thread::spawn(move || child.wait());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir().join("log")).unwrap_or_default();
                return Err(format!("postgres did not start in 30 s: {log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown) and waits until the port is closed.
    pub fn stop(&self) {
        let _ = std::fs::remove_file(self.dir().join("run"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        // The postmaster may still be removing its pid file.
        let pid = self.data_dir().join("postmaster.pid");
        while Instant::now() < deadline && pid.exists() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server with SIGKILL to the postmaster (a crash).
    pub fn kill(&self) {
        if let Ok(pid) = std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            && let Some(pid) = pid.lines().next()
        {
            let _ = self.command("kill").args(["-9", pid.trim()]).status();
        }
        let _ = std::fs::remove_file(self.dir().join("run"));
    }

    /// The URL of a database.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh database and returns its URL.
    pub fn fresh_db(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = self
            .command("psql")
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "CREATE DATABASE failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("psql: {e}"),
        }
        self.url(&name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
