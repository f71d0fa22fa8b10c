//! One probe of one health check: healthy, unhealthy or unknown.
//!
//! Semantics (README "Deploy and verify"): an HTTP check is healthy when the status is
//! accepted (default any 2xx) and the body matches; a refused connection or a timeout is
//! unhealthy. A command's exit 0 is healthy, 1 unhealthy, 2 unknown; any other exit, a
//! signal or a failure to start is unknown too (the check itself is broken), a timeout is
//! unhealthy. A metric check is unknown when the series is missing, the value is NaN or it
//! satisfies neither `success` nor `failure`; a failed scrape is unhealthy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Cancel;
use crate::promtext::{self, Condition, Query};
use crate::spec::{Check, CommandCheck, HttpCheck, MetricCheck, StatusMatch};

/// The outcome of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The check passed.
    Healthy,
    /// The check failed.
    Unhealthy,
    /// The check could not tell.
    Unknown,
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Unknown => "unknown",
        })
    }
}

/// One probe's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The check's label.
    pub check: String,
    /// The outcome.
    pub health: Health,
    /// Why, in a few words (`status 503`, `exit 2: db unreachable`).
    pub detail: String,
    /// Milliseconds the probe took.
    pub elapsed_ms: u64,
}

/// What probes need from their surroundings.
#[derive(Clone, Debug, Default)]
pub struct ProbeContext {
    /// Working directory of command checks (the project root).
    pub cwd: PathBuf,
    /// Environment added to command checks (`PIPE_BUILD`, slot variables…).
    pub env: BTreeMap<String, String>,
    /// `{name}` placeholders replaced in URLs and commands (`slot`, `slot_addr`).
    pub vars: BTreeMap<String, String>,
    /// Where command checks' output goes (a scratch file; default a temp file).
    pub log_dir: Option<PathBuf>,
    /// Ctrl-C.
    pub cancel: Cancel,
}

impl ProbeContext {
    fn subst(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (k, v) in &self.vars {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        out
    }
}

/// Probes one check once.
pub fn probe(check: &Check, ctx: &ProbeContext) -> Probe {
    let start = Instant::now();
    let (health, detail) = match check {
        Check::Http(h) => http(h, ctx),
        Check::Command(c) => command(c, ctx),
        Check::Metric(m) => metric(m, ctx),
    };
    Probe {
        check: ctx.subst(&check.label()),
        health,
        detail,
        elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .proxy(None)
        .max_redirects(0)
        .build()
        .into()
}

fn fetch(url: &str, timeout: Duration) -> Result<(u16, String), (Health, String)> {
    match agent(timeout).get(url).call() {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let body = resp
                .body_mut()
                .with_config()
                .limit(4 << 20)
                .read_to_string()
                .map_err(|e| {
                    (
                        Health::Unhealthy,
                        format!("reading the body: {}", short(&e)),
                    )
                })?;
            Ok((status, body))
        }
        Err(e) => Err((Health::Unhealthy, short(&e))),
    }
}

fn short(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".to_owned(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => "timed out".to_owned(),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

fn http(h: &HttpCheck, ctx: &ProbeContext) -> (Health, String) {
    let url = ctx.subst(&h.url);
    let timeout = h.timeout.unwrap_or(Duration::from_secs(2));
    let (status, body) = match fetch(&url, timeout) {
        Ok(x) => x,
        Err((h, d)) if d == "timed out" => {
            return (
                h,
                format!("timed out after {}", humantime::format_duration(timeout)),
            );
        }
        Err(e) => return e,
    };
    let ok = match &h.status {
        Some(m) => m.accepts(status),
        None => (200..300).contains(&status),
    };
    if !ok {
        let want = match &h.status {
            None => "2xx".to_owned(),
            Some(StatusMatch::One(c)) => c.to_string(),
            Some(StatusMatch::Many(v)) => {
                v.iter().map(u16::to_string).collect::<Vec<_>>().join("|")
            }
        };
        return (
            Health::Unhealthy,
            format!("status {status}, expected {want}"),
        );
    }
    if let Some(want) = &h.body
        && !body.contains(want.as_str())
    {
        return (
            Health::Unhealthy,
            format!("status {status}, body does not contain `{want}`"),
        );
    }
    if let Some(re) = &h.body_regex {
        match regex::Regex::new(re) {
            Ok(re) if re.is_match(&body) => {}
            Ok(_) => {
                return (
                    Health::Unhealthy,
                    format!("status {status}, body does not match `{re}`"),
                );
            }
            Err(e) => return (Health::Unknown, format!("bad `body_regex`: {e}")),
        }
    }
    (Health::Healthy, format!("status {status}"))
}

fn command(c: &CommandCheck, ctx: &ProbeContext) -> (Health, String) {
    let timeout = c.timeout.unwrap_or(Duration::from_secs(10));
    let script = ctx.subst(&c.run);
    let tmp;
    let log = match &ctx.log_dir {
        Some(d) => d.join("checks.log"),
        None => match tempfile::NamedTempFile::new() {
            Ok(f) => {
                tmp = f;
                tmp.path().to_owned()
            }
            Err(e) => return (Health::Unknown, format!("no scratch file: {e}")),
        },
    };
    let f = match crate::proc::run_shell(&script, &ctx.cwd, &ctx.env, timeout, &ctx.cancel, &log) {
        Ok(f) => f,
        Err(e) => return (Health::Unknown, format!("could not start `sh`: {e}")),
    };
    let last = f.tail.lines().last().unwrap_or("").trim().to_owned();
    let with = |s: String| {
        if last.is_empty() {
            s
        } else {
            format!("{s}: {last}")
        }
    };
    use crate::proc::Ended;
    match f.ended {
        Ended::Exited(0) => (Health::Healthy, with("exit 0".to_owned())),
        Ended::Exited(1) => (Health::Unhealthy, with("exit 1".to_owned())),
        Ended::Exited(2) => (Health::Unknown, with("exit 2".to_owned())),
        Ended::Exited(n) => (
            Health::Unknown,
            with(format!(
                "exit {n} (only 0 healthy, 1 unhealthy and 2 unknown have a meaning)"
            )),
        ),
        Ended::Signalled(s) => (Health::Unknown, with(format!("killed by signal {s}"))),
        Ended::TimedOut => (
            Health::Unhealthy,
            format!("timed out after {}", humantime::format_duration(timeout)),
        ),
        Ended::Cancelled => (Health::Unknown, "cancelled".to_owned()),
    }
}

fn metric(m: &MetricCheck, ctx: &ProbeContext) -> (Health, String) {
    let url = ctx.subst(&m.url);
    let timeout = m.timeout.unwrap_or(Duration::from_secs(2));
    let query: Query = match m.query.parse() {
        Ok(q) => q,
        Err(e) => return (Health::Unknown, format!("bad query: {e}")),
    };
    let cond = |c: &Option<String>| -> Result<Option<Condition>, String> {
        c.as_deref().map(str::parse).transpose()
    };
    let (success, failure) = match (cond(&m.success), cond(&m.failure)) {
        (Ok(s), Ok(f)) => (s, f),
        (Err(e), _) | (_, Err(e)) => return (Health::Unknown, e),
    };
    let (status, body) = match fetch(&url, timeout) {
        Ok(x) => x,
        Err((h, d)) if d == "timed out" => {
            return (
                h,
                format!(
                    "scrape timed out after {}",
                    humantime::format_duration(timeout)
                ),
            );
        }
        Err((h, d)) => return (h, format!("scrape failed: {d}")),
    };
    if !(200..300).contains(&status) {
        return (
            Health::Unhealthy,
            format!("scrape returned status {status}"),
        );
    }
    let samples = match promtext::parse(&body) {
        Ok(s) => s,
        Err(e) => return (Health::Unknown, format!("{url}:{e}")),
    };
    let v = match query.eval(&samples) {
        Ok(v) => v,
        Err(e) => return (Health::Unknown, e),
    };
    let shown = promtext::format_value(v);
    if failure.is_some_and(|f| f.holds(v)) {
        let f = m.failure.as_deref().unwrap_or_default();
        return (
            Health::Unhealthy,
            format!("value {shown} matches failure `{f}`"),
        );
    }
    match (success, &m.success) {
        (Some(s), Some(text)) if s.holds(v) => (
            Health::Healthy,
            format!("value {shown} matches success `{text}`"),
        ),
        (Some(_), Some(text)) if failure.is_none() => (
            Health::Unhealthy,
            format!("value {shown} does not match success `{text}`"),
        ),
        (None, _) => (
            Health::Healthy,
            format!(
                "value {shown} does not match failure `{}`",
                m.failure.as_deref().unwrap_or_default()
            ),
        ),
        _ => (
            Health::Unknown,
            format!("value {shown} matches neither success nor failure"),
        ),
    }
}
