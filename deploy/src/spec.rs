//! The `deploy:`, `verify:` and `rollback:` keys of an environment, as serde types.
//!
//! Whoever reads the environment policy (the promotion crate) deserializes these from YAML
//! and calls [`EnvDeploy::validate`]; this crate never reads YAML itself. Durations are
//! written the humantime way (`500ms`, `10s`, `2m`); thresholds are strings so that the
//! recorded configuration hashes the same everywhere (no floats in hashed data).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::promtext::{Condition, Query};

/// Everything an environment says about deploying, verifying and rolling back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvDeploy {
    /// How a build is deployed; `None` = a promotion only marks the target release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeploySpec>,
    /// How a deployed release is verified; `None` = deployed counts as verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
    /// What happens when verification fails.
    #[serde(default)]
    pub rollback: RollbackSpec,
}

impl EnvDeploy {
    /// `sha256:<hex>` over the canonical JSON of this configuration (the release record's
    /// "env config digest").
    pub fn digest(&self) -> String {
        crate::digest_json(self)
    }

    /// Types the three sections of an environment read as JSON (how the policy parser keeps
    /// them), then validates: every problem names its section or field.
    pub fn from_json_parts(
        deploy: Option<&serde_json::Value>,
        verify: Option<&serde_json::Value>,
        rollback: Option<&serde_json::Value>,
    ) -> Result<EnvDeploy, Vec<SpecError>> {
        fn part<T: serde::de::DeserializeOwned>(
            name: &str,
            v: Option<&serde_json::Value>,
            errs: &mut Vec<SpecError>,
        ) -> Option<T> {
            let v = v?;
            match serde_json::from_value::<T>(v.clone()) {
                Ok(t) => Some(t),
                Err(e) => {
                    err(errs, name, e.to_string());
                    None
                }
            }
        }
        let mut errs = Vec::new();
        let out = EnvDeploy {
            deploy: part("deploy", deploy, &mut errs),
            verify: part("verify", verify, &mut errs),
            rollback: part::<RollbackSpec>("rollback", rollback, &mut errs).unwrap_or_default(),
        };
        errs.extend(out.validate());
        if errs.is_empty() { Ok(out) } else { Err(errs) }
    }

    /// Problems a parser cannot see (bad thresholds, slot names, empty commands), each
    /// naming its field (`deploy.blue_green.slots`, `verify.checks[1].metric.success`).
    pub fn validate(&self) -> Vec<SpecError> {
        let mut errs = Vec::new();
        if let Some(d) = &self.deploy {
            d.validate(&mut errs);
        }
        if let Some(v) = &self.verify {
            v.validate(&mut errs);
        }
        errs
    }
}

/// One problem of a deploy configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct SpecError {
    /// Dotted path of the field (`verify.checks[0].http.url`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(errs: &mut Vec<SpecError>, field: impl Into<String>, message: impl Into<String>) {
    errs.push(SpecError {
        field: field.into(),
        message: message.into(),
    });
}

/// The deploy strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Run the `run:` script (deploy in place), then verify.
    #[default]
    Script,
    /// Run the `run:` script against the idle slot, check it, switch the reverse proxy
    /// atomically, verify through the proxy; switch back on failure.
    BlueGreen,
}

/// `deploy:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    /// `script` (default) or `blue_green`.
    #[serde(default)]
    pub strategy: Strategy,
    /// The deploy command, run with `sh -e -c` in the project root with the build's
    /// subjects in its environment (`PIPE_BUILD`, `PIPE_SUBJECT_<NAME>`, …).
    pub run: String,
    /// Extra environment for `run`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Kill the deploy command after this long (default 10m); a timeout is a failed deploy.
    #[serde(default, with = "dur_opt", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Blue-green settings; required with `strategy: blue_green`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenSpec>,
}

impl DeploySpec {
    /// The deploy command's time limit.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(600))
    }

    fn validate(&self, errs: &mut Vec<SpecError>) {
        if self.run.trim().is_empty() {
            err(errs, "deploy.run", "the deploy command is empty");
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                err(errs, format!("deploy.env.{k}"), "not a valid variable name");
            }
        }
        match (self.strategy, &self.blue_green) {
            (Strategy::BlueGreen, None) => err(
                errs,
                "deploy.blue_green",
                "`strategy: blue_green` needs a `blue_green:` block with `slots` and `proxy`",
            ),
            (Strategy::Script, Some(_)) => err(
                errs,
                "deploy.blue_green",
                "`blue_green:` is only read with `strategy: blue_green`",
            ),
            (Strategy::BlueGreen, Some(bg)) => bg.validate(errs),
            (Strategy::Script, None) => {}
        }
    }
}

/// `deploy.blue_green:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreenSpec {
    /// Exactly two slots: name → `host:port` the slot's service listens on.
    pub slots: BTreeMap<String, String>,
    /// The reverse proxy that points at one slot.
    pub proxy: NginxSpec,
    /// Checks run against the idle slot after deploying to it and before the switch; URLs
    /// and commands may use `{slot}` and `{slot_addr}`. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_switch: Vec<Check>,
    /// How long the pre-switch checks may take to all pass once (default 30s).
    #[serde(default, with = "dur_opt", skip_serializing_if = "Option::is_none")]
    pub pre_switch_timeout: Option<Duration>,
}

impl BlueGreenSpec {
    /// The pre-switch time limit.
    pub fn pre_switch_timeout(&self) -> Duration {
        self.pre_switch_timeout.unwrap_or(Duration::from_secs(30))
    }

    fn validate(&self, errs: &mut Vec<SpecError>) {
        if self.slots.len() != 2 {
            err(
                errs,
                "deploy.blue_green.slots",
                format!(
                    "a blue-green deploy needs exactly two slots, found {}",
                    self.slots.len()
                ),
            );
        }
        for (name, addr) in &self.slots {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                err(
                    errs,
                    format!("deploy.blue_green.slots.{name}"),
                    "slot names are letters, digits, `-` and `_`",
                );
            }
            if addr.is_empty()
                || addr.contains(|c: char| c.is_whitespace() || c == ';' || c == '{' || c == '}')
            {
                err(
                    errs,
                    format!("deploy.blue_green.slots.{name}"),
                    format!("`{addr}` is not a `host:port` nginx accepts"),
                );
            }
        }
        self.proxy.validate(errs);
        for (i, c) in self.pre_switch.iter().enumerate() {
            c.validate(&format!("deploy.blue_green.pre_switch[{i}]"), errs);
        }
    }
}

/// The nginx reverse proxy a blue-green deploy switches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxSpec {
    /// The main configuration file (`nginx -t -c` tests it); it `include`s `upstream_file`.
    pub config: String,
    /// The file pipe owns and rewrites: `upstream NAME { server ADDR; }`.
    pub upstream_file: String,
    /// The upstream's name (default `pipe_backend`).
    #[serde(default = "default_upstream")]
    pub upstream: String,
    /// The master's pid file (reload = SIGHUP to that pid).
    pub pid_file: String,
    /// The nginx binary (default `nginx`, then `/usr/sbin/nginx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx: Option<String>,
}

fn default_upstream() -> String {
    "pipe_backend".to_owned()
}

impl NginxSpec {
    fn validate(&self, errs: &mut Vec<SpecError>) {
        if !self
            .upstream
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            || self.upstream.is_empty()
        {
            err(
                errs,
                "deploy.blue_green.proxy.upstream",
                "an upstream name is letters, digits, `-` and `_`",
            );
        }
        for (f, v) in [
            ("config", &self.config),
            ("upstream_file", &self.upstream_file),
            ("pid_file", &self.pid_file),
        ] {
            if v.is_empty() {
                err(errs, format!("deploy.blue_green.proxy.{f}"), "empty path");
            }
        }
    }
}

/// `verify:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// The health checks; a sample probes all of them.
    pub checks: Vec<Check>,
    /// Time between samples (default 1s).
    #[serde(default, with = "dur_opt", skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Wait before the first sample (default 0).
    #[serde(default, with = "dur_opt", skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<Duration>,
    /// Number of samples (default: `window / interval`, else 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The verification window; sets `count` when `count` is absent.
    #[serde(default, with = "dur_opt", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// Unhealthy samples tolerated (default 0: the first one fails the verify).
    #[serde(default)]
    pub failure_limit: u32,
    /// Unknown samples tolerated (default 0); beyond that the result is inconclusive,
    /// never a pass.
    #[serde(default)]
    pub unknown_limit: u32,
    /// How many samples at the end of the window must be healthy (default 1).
    #[serde(default = "one")]
    pub consecutive_success: u32,
    /// Healthy↔unhealthy changes tolerated before the check counts as flapping, which
    /// fails (default 2).
    #[serde(default = "two")]
    pub flap_limit: u32,
}

fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}

impl VerifySpec {
    /// Time between samples.
    pub fn interval(&self) -> Duration {
        self.interval.unwrap_or(Duration::from_secs(1))
    }

    /// Number of samples.
    pub fn count(&self) -> u32 {
        if let Some(c) = self.count {
            return c.max(1);
        }
        match self.window {
            Some(w) => {
                let i = self.interval().as_millis().max(1);
                u32::try_from(w.as_millis().div_ceil(i))
                    .unwrap_or(u32::MAX)
                    .max(1)
            }
            None => 5,
        }
    }

    fn validate(&self, errs: &mut Vec<SpecError>) {
        if self.checks.is_empty() {
            err(
                errs,
                "verify.checks",
                "no checks: a verify needs at least one",
            );
        }
        if self.count == Some(0) {
            err(errs, "verify.count", "must be at least 1");
        }
        if self.consecutive_success > self.count() {
            err(
                errs,
                "verify.consecutive_success",
                format!(
                    "{} is more than the {} samples of the window",
                    self.consecutive_success,
                    self.count()
                ),
            );
        }
        for (i, c) in self.checks.iter().enumerate() {
            c.validate(&format!("verify.checks[{i}]"), errs);
        }
    }
}

/// One health check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// An HTTP GET: status and optionally body.
    Http(HttpCheck),
    /// A command: exit 0 healthy, 1 unhealthy, 2 unknown.
    Command(CommandCheck),
    /// A Prometheus text-format endpoint and a threshold.
    Metric(MetricCheck),
}

impl Check {
    /// A short label for messages: the name, else the URL or command.
    pub fn label(&self) -> String {
        match self {
            Check::Http(h) => h.name.clone().unwrap_or_else(|| format!("GET {}", h.url)),
            Check::Command(c) => c
                .name
                .clone()
                .unwrap_or_else(|| format!("command `{}`", c.run)),
            Check::Metric(m) => m
                .name
                .clone()
                .unwrap_or_else(|| format!("metric `{}`", m.query)),
        }
    }

    fn validate(&self, at: &str, errs: &mut Vec<SpecError>) {
        match self {
            Check::Http(h) => {
                if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                    err(
                        errs,
                        format!("{at}.http.url"),
                        format!("`{}` is not an http(s) URL", h.url),
                    );
                }
                if let Some(re) = &h.body_regex
                    && let Err(e) = regex::Regex::new(re)
                {
                    err(errs, format!("{at}.http.body_regex"), e.to_string());
                }
                if let Some(StatusMatch::Many(v)) = &h.status
                    && v.is_empty()
                {
                    err(
                        errs,
                        format!("{at}.http.status"),
                        "an empty list matches nothing",
                    );
                }
            }
            Check::Command(c) => {
                if c.run.trim().is_empty() {
                    err(errs, format!("{at}.command.run"), "the command is empty");
                }
            }
            Check::Metric(m) => {
                if !(m.url.starts_with("http://") || m.url.starts_with("https://")) {
                    err(
                        errs,
                        format!("{at}.metric.url"),
                        format!("`{}` is not an http(s) URL", m.url),
                    );
                }
                if let Err(e) = m.query.parse::<Query>() {
                    err(errs, format!("{at}.metric.query"), e);
                }
                for (f, v) in [("success", &m.success), ("failure", &m.failure)] {
                    if let Some(v) = v
                        && let Err(e) = v.parse::<Condition>()
                    {
                        err(errs, format!("{at}.metric.{f}"), e);
                    }
                }
                if m.success.is_none() && m.failure.is_none() {
                    err(
                        errs,
                        format!("{at}.metric"),
                        "give `success`, `failure` or both (for example `success: \"<= 0.01\"`)",
                    );
                }
            }
        }
    }
}

/// `http:` check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// A name for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The URL (`{slot}`/`{slot_addr}` are replaced in pre-switch checks).
    pub url: String,
    /// Expected status: one code or a list (default: any 2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusMatch>,
    /// The body must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body must match this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
    /// Time limit for the whole request (default 2s); a timeout is unhealthy.
    #[serde(default, with = "dur_opt", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// `status:` of an HTTP check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StatusMatch {
    /// One code.
    One(u16),
    /// Any of these codes.
    Many(Vec<u16>),
}

impl StatusMatch {
    /// Whether `code` is accepted.
    pub fn accepts(&self, code: u16) -> bool {
        match self {
            StatusMatch::One(c) => *c == code,
            StatusMatch::Many(v) => v.contains(&code),
        }
    }
}

/// `command:` check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// A name for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Run with `sh -c` in the project root: exit 0 healthy, 1 unhealthy, 2 unknown (any
    /// other exit is unknown too).
    pub run: String,
    /// Time limit (default 10s); a timeout is unhealthy.
    #[serde(default, with = "dur_opt", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// `metric:` check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricCheck {
    /// A name for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `/metrics` URL (Prometheus text exposition format).
    pub url: String,
    /// A series selector (`name{label="v"}`; matching samples are summed) or a ratio of
    /// two (`errors_total / requests_total`).
    pub query: String,
    /// Healthy when the value satisfies this (`"<= 0.01"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<String>,
    /// Unhealthy when the value satisfies this (`"> 0.05"`). A value that satisfies
    /// neither, or a missing series, is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Time limit for the scrape (default 2s); a timeout is unhealthy.
    #[serde(default, with = "dur_opt", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// `rollback:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackSpec {
    /// Roll back automatically when verification fails (default true).
    #[serde(default = "yes")]
    pub auto: bool,
    /// An inconclusive verify: `rollback` (default) or `hold` (keep the release, unverified,
    /// and ask a human: `pipe rollback` or promote again).
    #[serde(default)]
    pub on_inconclusive: OnInconclusive,
}

fn yes() -> bool {
    true
}

impl Default for RollbackSpec {
    fn default() -> Self {
        RollbackSpec {
            auto: true,
            on_inconclusive: OnInconclusive::Rollback,
        }
    }
}

/// What an inconclusive verify does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// Roll back like a failure.
    #[default]
    Rollback,
    /// Keep the release unverified and stop with "pending".
    Hold,
}

/// serde for `Option<Duration>` as humantime strings (`"1s"`, `"250ms"`); a bare number is
/// seconds.
pub mod dur_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as `"1s"`.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    /// Reads `"1s"`, `"1m 30s"`, `"250ms"` or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Secs(s)) => Ok(Some(Duration::from_secs(s))),
            Some(Raw::Text(t)) => humantime::parse_duration(t.trim()).map(Some).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{t}` is not a duration ({e}); write it like `500ms`, `10s` or `2m`"
                ))
            }),
        }
    }
}

/// `sha256:<hex>` of bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> EnvDeploy {
        serde_saphyr::from_str(yaml).expect("parse")
    }

    #[test]
    fn a_blue_green_environment_reads_and_validates() {
        let e = parse(
            r#"
deploy:
  strategy: blue_green
  run: ./start.sh
  timeout: 2m
  blue_green:
    slots: { blue: "127.0.0.1:18081", green: "127.0.0.1:18082" }
    proxy: { config: nginx.conf, upstream_file: upstream.conf, pid_file: nginx.pid }
    pre_switch:
      - http: { url: "http://{slot_addr}/healthz", status: 200, body: ok }
verify:
  interval: 250ms
  window: 2s
  failure_limit: 1
  checks:
    - http: { url: "http://127.0.0.1:8080/readyz", status: [200, 204] }
    - command: { run: "./check.sh", timeout: 3s }
    - metric: { url: "http://127.0.0.1:8080/metrics", query: "errors_total / requests_total", success: "<= 0.01", failure: "> 0.05" }
rollback: { on_inconclusive: hold }
"#,
        );
        assert_eq!(e.validate(), vec![]);
        let d = e.deploy.as_ref().expect("deploy");
        assert_eq!(d.strategy, Strategy::BlueGreen);
        assert_eq!(d.timeout(), Duration::from_secs(120));
        let v = e.verify.as_ref().expect("verify");
        assert_eq!(v.count(), 8);
        assert_eq!(v.interval(), Duration::from_millis(250));
        assert!(e.rollback.auto);
        assert_eq!(e.rollback.on_inconclusive, OnInconclusive::Hold);
        // the digest is stable across a serialize/parse round trip
        let json = serde_json::to_string(&e).expect("json");
        let back: EnvDeploy = serde_json::from_str(&json).expect("back");
        assert_eq!(back.digest(), e.digest());
        assert!(e.digest().starts_with("sha256:"));
    }

    #[test]
    fn validation_names_each_bad_field() {
        let e = parse(
            r#"
deploy:
  strategy: blue_green
  run: " "
  blue_green:
    slots: { blue: "127.0.0.1:1 ;" }
    proxy: { config: a, upstream_file: b, pid_file: c, upstream: "x y" }
verify:
  count: 2
  consecutive_success: 3
  checks:
    - http: { url: "ftp://x", body_regex: "(" }
    - metric: { url: "http://x/metrics", query: "a /", success: "about 3" }
"#,
        );
        let fields: Vec<String> = e.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "deploy.run",
                "deploy.blue_green.slots",
                "deploy.blue_green.slots.blue",
                "deploy.blue_green.proxy.upstream",
                "verify.consecutive_success",
                "verify.checks[0].http.url",
                "verify.checks[0].http.body_regex",
                "verify.checks[1].metric.query",
                "verify.checks[1].metric.success",
            ]
        );
    }

    #[test]
    fn a_bad_duration_says_how_to_write_one() {
        let r: Result<EnvDeploy, _> =
            serde_saphyr::from_str("verify: { interval: soon, checks: [] }");
        let msg = r.expect_err("bad duration").to_string();
        assert!(msg.contains("`soon` is not a duration"), "{msg}");
    }

    #[test]
    fn json_sections_are_typed_with_the_section_named() {
        let d = serde_json::json!({ "run": "./deploy.sh", "timeout": "1m" });
        let v = serde_json::json!({ "count": 3, "checks": [ { "http": { "url": "http://127.0.0.1:1/healthz", "status": 200 } } ] });
        let e = EnvDeploy::from_json_parts(Some(&d), Some(&v), None).expect("valid");
        assert_eq!(e.verify.as_ref().map(VerifySpec::count), Some(3));
        assert!(e.rollback.auto);
        let bad = serde_json::json!({ "run": "x", "stratgy": "script" });
        let errs = EnvDeploy::from_json_parts(
            Some(&bad),
            None,
            Some(&serde_json::json!({ "auto": "yes" })),
        )
        .expect_err("invalid");
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].field, "deploy");
        assert!(
            errs[0].message.contains("unknown field `stratgy`"),
            "{}",
            errs[0].message
        );
        assert_eq!(errs[1].field, "rollback");
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let r: Result<EnvDeploy, _> = serde_saphyr::from_str("deploy: { run: x, stratgy: script }");
        assert!(r.is_err());
    }
}
