//! Operations: Prometheus `/metrics`, `/healthz` and `/readyz`.
//!
//! The exposition is written by hand in the Prometheus text format (version 0.0.4): the server
//! has a dozen fixed families, every hot-path update is an atomic add or one short mutex, and a
//! hand-written writer needs no dependency. The test suite parses the output with
//! `pipe-deploy`'s Prometheus parser, so a malformed line fails a test.
//!
//! Two sources:
//! - **this process** (a global registry, [`global`]): HTTP requests, claims, the time a job
//!   waited in the queue, job durations and results, lease expiries. With several servers
//!   behind one database each exports its own share and Prometheus sums them.
//! - **the database**, read at scrape time: jobs by state (the queue depth), the age of the
//!   oldest queued job, runs by state, agents holding leases. These are the same on every
//!   replica.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::db::Db;

/// Bucket bounds (seconds) of the latency histograms: 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds (seconds) of the queue-wait and job-duration histograms: 10 ms to 1 h.
pub const JOB_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// A histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum in microseconds (an integer, so it can be an atomic add).
    sum_us: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation (seconds; negative values count as 0).
    pub fn observe(&self, secs: f64) {
        let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b)
            && let Some(c) = self.counts.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Truncation is intended: microseconds are plenty.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.sum_us
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// The process's metrics.
#[derive(Debug)]
pub struct Registry {
    /// `(method, route, status)` → requests.
    http_requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// Route → request duration.
    http_duration: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    /// Time from queued to claimed.
    pub queue_wait: Histogram,
    /// Result → duration from claim to accepted result.
    job_duration: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    /// Jobs handed to agents.
    pub jobs_claimed: AtomicU64,
    /// Leases that expired (the job was re-queued or failed).
    pub lease_expiries: AtomicU64,
    /// Agent name → when it last asked for work (this server).
    agents: Mutex<HashMap<String, Instant>>,
}

/// How long an agent counts as connected after its last claim request.
pub const AGENT_SEEN: Duration = Duration::from_secs(90);

impl Registry {
    fn new() -> Registry {
        Registry {
            http_requests: Mutex::new(BTreeMap::new()),
            http_duration: Mutex::new(BTreeMap::new()),
            queue_wait: Histogram::new(JOB_BUCKETS),
            job_duration: Mutex::new(BTreeMap::new()),
            jobs_claimed: AtomicU64::new(0),
            lease_expiries: AtomicU64::new(0),
            agents: Mutex::new(HashMap::new()),
        }
    }

    /// Records one HTTP request.
    pub fn http(&self, method: &str, route: &str, status: u16, secs: f64) {
        if let Ok(mut m) = self.http_requests.lock() {
            *m.entry((method.to_owned(), route.to_owned(), status))
                .or_insert(0) += 1;
        }
        let h = self.http_duration.lock().ok().map(|mut m| {
            m.entry(route.to_owned())
                .or_insert_with(|| std::sync::Arc::new(Histogram::new(LATENCY_BUCKETS)))
                .clone()
        });
        if let Some(h) = h {
            h.observe(secs);
        }
    }

    /// Records a claimed job and how long it waited in the queue.
    pub fn claimed(&self, wait_secs: f64) {
        self.jobs_claimed.fetch_add(1, Ordering::Relaxed);
        self.queue_wait.observe(wait_secs);
    }

    /// Records an accepted result and the attempt's duration.
    pub fn completed(&self, result: &str, secs: f64) {
        let h = self.job_duration.lock().ok().map(|mut m| {
            m.entry(result.to_owned())
                .or_insert_with(|| std::sync::Arc::new(Histogram::new(JOB_BUCKETS)))
                .clone()
        });
        if let Some(h) = h {
            h.observe(secs);
        }
    }

    /// Records expired leases.
    pub fn expired(&self, n: usize) {
        self.lease_expiries
            .fetch_add(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
    }

    /// Notes that an agent asked for work.
    pub fn agent_seen(&self, agent: &str) {
        if let Ok(mut m) = self.agents.lock() {
            if let Some(t) = m.get_mut(agent) {
                *t = Instant::now();
            } else {
                if m.len() > 10_000 {
                    m.retain(|_, t| t.elapsed() < AGENT_SEEN);
                }
                m.insert(agent.to_owned(), Instant::now());
            }
        }
    }

    /// Agents that asked for work within [`AGENT_SEEN`].
    pub fn agents_connected(&self) -> usize {
        self.agents
            .lock()
            .map(|m| m.values().filter(|t| t.elapsed() < AGENT_SEEN).count())
            .unwrap_or(0)
    }

    /// The process's families in the text format.
    pub fn render(&self, out: &mut String) {
        family(
            out,
            "pipe_server_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route and status",
        );
        if let Ok(m) = self.http_requests.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "pipe_server_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(method),
                    escape(route)
                );
            }
        }
        family(
            out,
            "pipe_server_http_request_duration_seconds",
            "histogram",
            "time to answer an HTTP request, by route (claims include their long-poll wait)",
        );
        if let Ok(m) = self.http_duration.lock() {
            for (route, h) in m.iter() {
                h.write(
                    out,
                    "pipe_server_http_request_duration_seconds",
                    &format!("route=\"{}\"", escape(route)),
                );
            }
        }
        family(
            out,
            "pipe_server_jobs_claimed_total",
            "counter",
            "jobs handed to agents by this server",
        );
        let _ = writeln!(
            out,
            "pipe_server_jobs_claimed_total {}",
            self.jobs_claimed.load(Ordering::Relaxed)
        );
        family(
            out,
            "pipe_server_queue_wait_seconds",
            "histogram",
            "time a job waited in the queue before an agent claimed it",
        );
        self.queue_wait
            .write(out, "pipe_server_queue_wait_seconds", "");
        family(
            out,
            "pipe_server_job_duration_seconds",
            "histogram",
            "time from claim to accepted result, by result",
        );
        if let Ok(m) = self.job_duration.lock() {
            for (result, h) in m.iter() {
                h.write(
                    out,
                    "pipe_server_job_duration_seconds",
                    &format!("result=\"{}\"", escape(result)),
                );
            }
        }
        family(
            out,
            "pipe_server_lease_expiries_total",
            "counter",
            "leases that expired without a result (the job was re-queued or failed)",
        );
        let _ = writeln!(
            out,
            "pipe_server_lease_expiries_total {}",
            self.lease_expiries.load(Ordering::Relaxed)
        );
        family(
            out,
            "pipe_server_agents_connected",
            "gauge",
            "agents that asked this server for work in the last 90 seconds",
        );
        let _ = writeln!(
            out,
            "pipe_server_agents_connected {}",
            self.agents_connected()
        );
    }
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static R: LazyLock<Registry> = LazyLock::new(Registry::new);
    &R
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The database's families (read at scrape time).
async fn render_db(db: &Db, out: &mut String) -> Result<(), crate::db::DbError> {
    let c = db.client().await?;
    let jobs = c
        .query(
            "SELECT s.state, count(j.id)
             FROM unnest(ARRAY['blocked', 'queued', 'leased', 'done']) AS s(state)
             LEFT JOIN jobs j ON j.state = s.state GROUP BY s.state ORDER BY s.state",
            &[],
        )
        .await?;
    let oldest = c
        .query_one(
            "SELECT coalesce(extract(epoch FROM now() - min(queued_at))::float8, 0)
             FROM jobs WHERE state = 'queued'",
            &[],
        )
        .await?;
    let runs = c
        .query(
            "SELECT s.state, count(r.id)
             FROM unnest(ARRAY['running', 'done']) AS s(state)
             LEFT JOIN runs r ON r.state = s.state GROUP BY s.state ORDER BY s.state",
            &[],
        )
        .await?;
    let busy = c
        .query_one(
            "SELECT count(DISTINCT lease_owner) FROM jobs WHERE state = 'leased'",
            &[],
        )
        .await?;
    family(out, "pipe_server_jobs", "gauge", "jobs by state");
    for r in &jobs {
        let _ = writeln!(
            out,
            "pipe_server_jobs{{state=\"{}\"}} {}",
            r.get::<_, String>(0),
            r.get::<_, i64>(1)
        );
    }
    let queued = jobs
        .iter()
        .find(|r| r.get::<_, String>(0) == "queued")
        .map_or(0, |r| r.get::<_, i64>(1));
    family(
        out,
        "pipe_server_queue_depth",
        "gauge",
        "jobs waiting for an agent",
    );
    let _ = writeln!(out, "pipe_server_queue_depth {queued}");
    family(
        out,
        "pipe_server_queue_oldest_seconds",
        "gauge",
        "age of the oldest job waiting for an agent (0 when none waits)",
    );
    let _ = writeln!(
        out,
        "pipe_server_queue_oldest_seconds {}",
        oldest.get::<_, f64>(0)
    );
    family(out, "pipe_server_runs", "gauge", "runs by state");
    for r in &runs {
        let _ = writeln!(
            out,
            "pipe_server_runs{{state=\"{}\"}} {}",
            r.get::<_, String>(0),
            r.get::<_, i64>(1)
        );
    }
    family(
        out,
        "pipe_server_agents_busy",
        "gauge",
        "agents holding at least one lease",
    );
    let _ = writeln!(out, "pipe_server_agents_busy {}", busy.get::<_, i64>(0));
    Ok(())
}

/// `GET /metrics`.
pub async fn metrics(State(db): State<Db>) -> Response {
    let mut out = String::with_capacity(8 * 1024);
    global().render(&mut out);
    let up = match render_db(&db, &mut out).await {
        Ok(()) => 1,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the database");
            0
        }
    };
    family(
        &mut out,
        "pipe_server_database_up",
        "gauge",
        "whether the last scrape could read the database",
    );
    let _ = writeln!(out, "pipe_server_database_up {up}");
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// `GET /healthz`: the process is up (no database access).
pub async fn healthz() -> Response {
    "ok\n".into_response()
}

/// `GET /readyz`: the database answers and has every migration this server knows.
pub async fn readyz(State(db): State<Db>) -> Response {
    let unready = |why: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "ready": false, "error": why })),
        )
            .into_response()
    };
    let c = match db.client().await {
        Ok(c) => c,
        Err(e) => return unready(format!("the database is unreachable: {e}")),
    };
    let applied: Vec<i32> = match c.query("SELECT version FROM schema_migrations", &[]).await {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(e) => return unready(format!("cannot read `schema_migrations`: {e}")),
    };
    let missing: Vec<String> = crate::db::MIGRATIONS
        .iter()
        .filter(|(v, _, _)| !applied.contains(v))
        .map(|(v, name, _)| format!("{v:04}_{name}"))
        .collect();
    if !missing.is_empty() {
        return unready(format!(
            "migrations not applied: {} (run `pipe server migrate`)",
            missing.join(", ")
        ));
    }
    axum::Json(serde_json::json!({ "ready": true, "migrations": applied.len() })).into_response()
}

/// Middleware: counts and times every request by its route pattern (never the raw path, so
/// ids do not make new series).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    global().http(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(LATENCY_BUCKETS);
        for s in [0.0005, 0.003, 0.003, 7.0, 60.0] {
            h.observe(s);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "route=\"/a\"");
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"0.005\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{route=\"/a\",le=\"5\"} 3\n"), "{out}");
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"10\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"+Inf\"} 5\n"),
            "{out}"
        );
        assert!(out.contains("x_count{route=\"/a\"} 5\n"), "{out}");
        assert!(out.contains("x_sum{route=\"/a\"} 67.0065\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn registry_renders_parseable_text() {
        let r = Registry::new();
        r.http("GET", "/api/v1/runs/{run}", 200, 0.002);
        r.claimed(0.3);
        r.completed("success", 1.5);
        r.expired(2);
        r.agent_seen("a1");
        let mut out = String::new();
        r.render(&mut out);
        let parsed = pipe_deploy::promtext::parse(&out).expect("valid exposition");
        let find = |name: &str| {
            parsed
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.value)
                .unwrap_or_else(|| panic!("no {name} in {out}"))
        };
        assert_eq!(find("pipe_server_lease_expiries_total"), 2.0);
        assert_eq!(find("pipe_server_jobs_claimed_total"), 1.0);
        assert_eq!(find("pipe_server_agents_connected"), 1.0);
        assert_eq!(find("pipe_server_queue_wait_seconds_count"), 1.0);
    }
}
