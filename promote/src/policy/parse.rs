//! Parsing a policy from the spanned YAML tree; every problem is a diagnostic.

use std::collections::BTreeMap;

use jiff::SignedDuration;
use pipe_runner::diag::{Diagnostic, did_you_mean};
use pipe_runner::source::FileId;
use pipe_runner::yaml::{Node, NodeKind, ScalarValue};

use super::window::{Window, WindowKind, parse_rrule};
use super::*;
use crate::ledger::entry::{canonical, sha256_id};

struct P {
    diags: Vec<Diagnostic>,
}

type Fields<'n> = Vec<(&'n str, &'n Node)>;

impl P {
    fn err(&mut self, node: &Node, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(RULE, node.span, msg));
    }

    fn err_hint(&mut self, node: &Node, msg: impl Into<String>, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(RULE, node.span, msg).with_hint(hint));
    }

    /// A mapping's entries; unknown keys are reported with a did-you-mean hint.
    fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let Some(entries) = node.as_map() else {
            self.err(
                node,
                format!("{what} must be a mapping, not {}", node.describe()),
            );
            return None;
        };
        let mut out = Vec::new();
        for e in entries {
            let Some(k) = e.key.as_str() else {
                self.err(&e.key, format!("keys of {what} must be strings"));
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&k) {
                let msg = format!("unknown key `{k}` in {what}");
                match did_you_mean(k, allowed.iter().copied()) {
                    Some(s) => self.err_hint(&e.key, msg, format!("did you mean `{s}`?")),
                    None => self.err_hint(
                        &e.key,
                        msg,
                        format!(
                            "expected one of {}",
                            allowed
                                .iter()
                                .map(|a| format!("`{a}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                }
                continue;
            }
            out.push((k, &e.value));
        }
        Some(out)
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Scalar(s) if s.value != ScalarValue::Null => Some(s.text.clone()),
            _ => {
                self.err(
                    node,
                    format!("{what} must be a string, not {}", node.describe()),
                );
                None
            }
        }
    }

    /// A string or a sequence of strings.
    fn strings(&mut self, node: &Node, what: &str) -> Vec<String> {
        match &node.kind {
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|i| self.string(i, &format!("each entry of {what}")))
                .collect(),
            _ => self.string(node, what).into_iter().collect(),
        }
    }

    /// `value`, or an error at `node` saying what was expected.
    fn expect<T>(
        &mut self,
        node: &Node,
        value: Option<T>,
        message: impl FnOnce() -> String,
    ) -> Option<T> {
        if value.is_none() {
            self.err(node, message());
        }
        value
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        let value = match node.as_scalar().map(|s| s.value) {
            Some(ScalarValue::Bool(b)) => Some(b),
            _ => None,
        };
        self.expect(node, value, || format!("{what} must be `true` or `false`"))
    }

    fn number(&mut self, node: &Node, what: &str) -> Option<f64> {
        let value = match node
            .as_scalar()
            .map(|s| (s.value, s.text.trim_end_matches('%')))
        {
            Some((ScalarValue::Number(n), _)) => Some(n),
            Some((ScalarValue::Str, t)) => t.parse::<f64>().ok(),
            _ => None,
        };
        self.expect(node, value, || {
            format!("{what} must be a number, not {}", node.describe())
        })
    }

    fn count(&mut self, node: &Node, what: &str) -> Option<u32> {
        let value = node
            .as_scalar()
            .filter(|s| s.value != ScalarValue::Null)
            .and_then(|s| s.text.parse::<u32>().ok())
            .filter(|n| *n > 0);
        self.expect(node, value, || {
            format!("{what} must be a whole number of at least 1")
        })
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<SignedDuration> {
        let text = self.string(node, what)?;
        match parse_duration(&text) {
            Some(d) => Some(d),
            None => {
                self.err_hint(
                    node,
                    format!("{what} `{text}` is not a duration"),
                    "write it like `30m`, `24h` or `2d 12h`",
                );
                None
            }
        }
    }

    fn mode(&mut self, node: &Node, what: &str) -> Mode {
        match self.string(node, what).as_deref() {
            Some("shadow") => Mode::Shadow,
            Some("enforce") | None => Mode::Enforce,
            Some(other) => {
                self.err_hint(
                    node,
                    format!("unknown {what} `{other}`"),
                    "use `enforce` or `shadow`",
                );
                Mode::Enforce
            }
        }
    }
}

/// Parses a duration such as `30s`, `24h`, `2d 12h` or ISO 8601 `PT24H`.
pub fn parse_duration(text: &str) -> Option<SignedDuration> {
    if let Ok(d) = text.parse::<SignedDuration>() {
        return Some(d);
    }
    // Days are calendar units for `Span`; a policy's day is 24 hours.
    let span: jiff::Span = text.parse().ok()?;
    let days = span.get_days();
    let rest = span.days(0);
    let secs = rest.total(jiff::Unit::Second).ok()?;
    Some(SignedDuration::from_secs(i64::from(days) * 86_400) + SignedDuration::from_secs_f64(secs))
}

/// JSON of a YAML node (for digests and the opaque `deploy`/`verify`/`rollback` sections).
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        NodeKind::Scalar(s) => match s.value {
            ScalarValue::Null => Value::Null,
            ScalarValue::Bool(b) => Value::Bool(b),
            // Numbers stay text: digests must not depend on float formatting.
            ScalarValue::Number(_) | ScalarValue::Str => Value::String(s.text.clone()),
        },
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| {
                    (
                        e.key.as_str().unwrap_or_default().to_owned(),
                        to_json(&e.value),
                    )
                })
                .collect(),
        ),
    }
}

/// JSON of a `deploy:`/`verify:`/`rollback:` section for `pipe-deploy`'s serde types:
/// integers are JSON numbers (`count: 5`, `status: 200`), everything else as in [`to_json`]
/// (non-integer numbers stay text; the deploy types take thresholds as strings).
pub fn to_typed_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        NodeKind::Scalar(s) => match s.value {
            ScalarValue::Number(_) => s
                .text
                .parse::<u64>()
                .map(Value::from)
                .or_else(|_| s.text.parse::<i64>().map(Value::from))
                .unwrap_or_else(|_| Value::String(s.text.clone())),
            _ => to_json(node),
        },
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_typed_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| {
                    (
                        e.key.as_str().unwrap_or_default().to_owned(),
                        to_typed_json(&e.value),
                    )
                })
                .collect(),
        ),
    }
}

const TOP: &[&str] = &["build", "groups", "environments"];
const ENV: &[&str] = &[
    "promote",
    "gates",
    "concurrency",
    "deploy",
    "verify",
    "rollback",
];
const PROMOTE: &[&str] = &["from", "auto", "refs", "expires_after"];
const GATES: &[&str] = &[
    "jobs",
    "refs",
    "vulnerabilities",
    "coverage",
    "benchmarks",
    "soak",
    "approvals",
    "windows",
    "custom",
];

fn groups(p: &mut P, v: &Node) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    if let Some(gs) = p.map(v, "`groups`", &[]) {
        for (g, members) in gs {
            let m = p.strings(members, &format!("group `{g}`"));
            out.insert(g.to_owned(), m);
        }
    }
    out
}

/// Parses the top-level `environments:` key of a workflow (decisions.md: one of pipe's own
/// workflow keys). `node` is its value: environments by name, plus the reserved keys `build`
/// (whose `workflow` defaults to `workflow`, this file) and `groups`, as in
/// `.pipe/environments.yml`.
pub fn parse_embedded(
    file: FileId,
    node: &Node,
    bytes: &[u8],
    workflow: &str,
) -> (Option<Policy>, Vec<Diagnostic>) {
    let _ = file;
    let mut p = P { diags: Vec::new() };
    let Some(fields) = p.map(node, "`environments`", &[]) else {
        return (None, p.diags);
    };
    let mut policy = Policy {
        build: None,
        groups: BTreeMap::new(),
        environments: Vec::new(),
        digest: sha256_id(bytes),
    };
    for (k, v) in &fields {
        match *k {
            "build" => {
                policy.build = build_spec(&mut p, v).map(|mut b| {
                    b.workflow.get_or_insert_with(|| workflow.to_owned());
                    b
                });
            }
            "groups" => policy.groups = groups(&mut p, v),
            _ => {}
        }
    }
    for (name, n) in fields {
        if name != "build"
            && name != "groups"
            && let Some(e) = environment(&mut p, name, n, &policy.groups)
        {
            policy.environments.push(e);
        }
    }
    if policy.environments.is_empty() {
        p.err(node, "`environments` declares no environment");
    }
    check_graph(&mut p, &policy, node);
    let ok = !p.diags.iter().any(Diagnostic::is_error);
    (ok.then_some(policy), p.diags)
}

/// Parses a policy document. `root` is the document (a mapping with `environments:` and
/// optionally `build:` and `groups:`); `bytes` the file's bytes (for its digest).
pub fn parse(file: FileId, root: &Node, bytes: &[u8]) -> (Option<Policy>, Vec<Diagnostic>) {
    let _ = file;
    let mut p = P { diags: Vec::new() };
    let Some(top) = p.map(root, "the policy", TOP) else {
        return (None, p.diags);
    };
    let mut policy = Policy {
        build: None,
        groups: BTreeMap::new(),
        environments: Vec::new(),
        digest: sha256_id(bytes),
    };
    let mut envs_node = None;
    for (k, v) in top {
        match k {
            "build" => policy.build = build_spec(&mut p, v),
            "groups" => policy.groups = groups(&mut p, v),
            _ => envs_node = Some(v),
        }
    }
    let Some(envs_node) = envs_node else {
        p.err(root, "the policy has no `environments:`");
        return (None, p.diags);
    };
    if let Some(envs) = p.map(envs_node, "`environments`", &[]) {
        for (name, node) in envs {
            if let Some(e) = environment(&mut p, name, node, &policy.groups) {
                policy.environments.push(e);
            }
        }
    }
    check_graph(&mut p, &policy, envs_node);
    let ok = !p.diags.iter().any(Diagnostic::is_error);
    (ok.then_some(policy), p.diags)
}

fn build_spec(p: &mut P, node: &Node) -> Option<BuildSpec> {
    let fields = p.map(node, "`build`", &["workflow", "subjects"])?;
    let mut spec = BuildSpec {
        workflow: None,
        subjects: Vec::new(),
    };
    for (k, v) in fields {
        match k {
            "workflow" => spec.workflow = p.string(v, "`build.workflow`"),
            _ => {
                let Some(items) = v.as_seq() else {
                    p.err(v, "`build.subjects` must be a sequence");
                    continue;
                };
                for item in items {
                    let Some(f) = p.map(item, "a subject", &["name", "output", "artifact"]) else {
                        continue;
                    };
                    let mut name = None;
                    let mut source = None;
                    for (k, v) in f {
                        match k {
                            "name" => name = p.string(v, "`name`"),
                            "output" => {
                                let Some(t) = p.string(v, "`output`") else {
                                    continue;
                                };
                                match t.split_once('.') {
                                    Some((job, output))
                                        if !job.is_empty() && !output.is_empty() =>
                                    {
                                        source = Some(SubjectSource::Output {
                                            job: job.to_owned(),
                                            output: output.to_owned(),
                                        })
                                    }
                                    _ => p.err_hint(
                                        v,
                                        format!("`output: {t}` does not name a job output"),
                                        "write `JOB.OUTPUT`, for example `build.image`",
                                    ),
                                }
                            }
                            _ => source = p.string(v, "`artifact`").map(SubjectSource::Artifact),
                        }
                    }
                    match (name, source) {
                        (Some(name), Some(source)) => {
                            spec.subjects.push(SubjectSpec { name, source })
                        }
                        (None, _) => p.err(item, "a subject needs a `name`"),
                        (_, None) => p.err_hint(
                            item,
                            "a subject needs a source",
                            "add `output: JOB.OUTPUT` or `artifact: NAME`",
                        ),
                    }
                }
            }
        }
    }
    if spec.subjects.is_empty() {
        p.err(node, "`build` declares no subjects");
    }
    Some(spec)
}

fn environment(
    p: &mut P,
    name: &str,
    node: &Node,
    groups: &BTreeMap<String, Vec<String>>,
) -> Option<Environment> {
    let what = format!("environment `{name}`");
    let fields = p.map(node, &what, ENV)?;
    let mut env = Environment {
        name: name.to_owned(),
        span: node.span,
        from: vec!["build".to_owned()],
        auto: false,
        expires_after: None,
        supersede: Supersede::None,
        gates: Gates::default(),
        deploy: None,
        verify: None,
        rollback: None,
        digest: String::new(),
    };
    let mut refs = None;
    let mut sections: Vec<(&str, &Node)> = Vec::new();
    for (k, v) in fields {
        if matches!(k, "deploy" | "verify" | "rollback") {
            sections.push((k, v));
        }
        match k {
            "promote" => {
                let Some(f) = p.map(v, &format!("`{name}.promote`"), PROMOTE) else {
                    continue;
                };
                for (k, v) in f {
                    match k {
                        "from" => env.from = p.strings(v, "`promote.from`"),
                        "auto" => env.auto = p.bool(v, "`promote.auto`").unwrap_or(false),
                        "refs" => refs = ref_rule(p, v).map(|r| (Mode::Enforce, r)),
                        _ => env.expires_after = p.duration(v, "`promote.expires_after`"),
                    }
                }
            }
            "concurrency" => {
                let Some(f) = p.map(v, &format!("`{name}.concurrency`"), &["queue", "supersede"])
                else {
                    continue;
                };
                for (k, v) in f {
                    let Some(t) = p.string(v, &format!("`concurrency.{k}`")) else {
                        continue;
                    };
                    match (k, t.as_str()) {
                        ("queue", "fifo") | ("supersede", "none") => {}
                        ("supersede", "skip_older") => env.supersede = Supersede::SkipOlder,
                        ("queue", _) => p.err_hint(v, format!("unknown queue `{t}`"), "use `fifo`"),
                        _ => p.err_hint(
                            v,
                            format!("unknown supersede `{t}`"),
                            "use `none` or `skip_older`",
                        ),
                    }
                }
            }
            "gates" => {
                if let Some(g) = gates(p, name, v) {
                    env.gates = g;
                }
            }
            "deploy" => env.deploy = Some(to_typed_json(v)),
            "verify" => env.verify = Some(to_typed_json(v)),
            _ => env.rollback = Some(to_typed_json(v)),
        }
    }
    // `deploy:`, `verify:` and `rollback:` are typed by the deploy engine: each problem is
    // reported at the field it names (or its section).
    if !sections.is_empty()
        && let Err(errs) = pipe_deploy::spec::EnvDeploy::from_json_parts(
            env.deploy.as_ref(),
            env.verify.as_ref(),
            env.rollback.as_ref(),
        )
    {
        for e in errs {
            let section = e.field.split(['.', '[']).next().unwrap_or_default();
            let Some((_, root)) = sections.iter().find(|(k, _)| *k == section) else {
                p.err(node, format!("`{name}.{}`: {}", e.field, e.message));
                continue;
            };
            let at = unknown_field(&e.message)
                .and_then(|k| find_key(root, k))
                .unwrap_or_else(|| find_path(root, &e.field));
            p.err(at, format!("`{name}.{}`: {}", e.field, e.message));
        }
    }
    if env.gates.refs.is_none()
        && let Some((mode, r)) = refs
    {
        env.gates.refs = Some(Gate { mode, spec: r });
    }
    // The digest covers the environment as written and the groups its rules name.
    let mut used = BTreeMap::new();
    if let Some(a) = &env.gates.approvals {
        for r in &a.spec.rules {
            for f in &r.from {
                if let Some(g) = f.strip_prefix("group:") {
                    match groups.get(g) {
                        Some(m) => {
                            used.insert(g.to_owned(), m.clone());
                        }
                        None => p.err_hint(
                            node,
                            format!(
                                "approval rule `{}` of {what} names unknown group `{g}`",
                                r.name
                            ),
                            match did_you_mean(g, groups.keys().map(String::as_str)) {
                                Some(s) => format!("did you mean `group:{s}`?"),
                                None => "declare it under the top-level `groups:`".to_owned(),
                            },
                        ),
                    }
                }
            }
        }
    }
    let doc = serde_json::json!({ "name": name, "env": to_json(node), "groups": used });
    env.digest = canonical(&doc).map(|b| sha256_id(&b)).unwrap_or_default();
    Some(env)
}

/// The key of serde's "unknown field `KEY`" message.
fn unknown_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// The first mapping key `key` under `node` (depth first).
fn find_key<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.kind {
        NodeKind::Map(entries) => entries.iter().find_map(|e| {
            if e.key.as_str() == Some(key) {
                Some(&e.key)
            } else {
                find_key(&e.value, key)
            }
        }),
        NodeKind::Seq(items) => items.iter().find_map(|i| find_key(i, key)),
        NodeKind::Scalar(_) => None,
    }
}

/// The node a dotted field path (`verify.checks[1].metric.success`) names below its section
/// node, or the deepest one that exists.
fn find_path<'n>(section: &'n Node, field: &str) -> &'n Node {
    let mut at = section;
    for (i, part) in field.split('.').enumerate() {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if i > 0 {
            match at.get(key) {
                Some(n) => at = n,
                None => return at,
            }
        }
        if let Some(ix) = index {
            match at.as_seq().and_then(|s| s.get(ix)) {
                Some(n) => at = n,
                None => return at,
            }
        }
    }
    at
}

fn ref_rule(p: &mut P, node: &Node) -> Option<RefRule> {
    let f = p.map(node, "`refs`", &["branches", "tags", "mode"])?;
    let mut r = RefRule::default();
    for (k, v) in f {
        let pats = match k {
            "branches" => &mut r.branches,
            "tags" => &mut r.tags,
            _ => continue,
        };
        for pat in p.strings(v, &format!("`refs.{k}`")) {
            if let Err(e) = globset::Glob::new(&pat) {
                p.err(v, format!("bad pattern `{pat}`: {e}"));
            }
            pats.push(pat);
        }
    }
    Some(r)
}

fn gate_mode(p: &mut P, fields: &Fields<'_>) -> Mode {
    fields
        .iter()
        .find(|(k, _)| *k == "mode")
        .map(|(_, v)| p.mode(v, "mode"))
        .unwrap_or_default()
}

fn gates(p: &mut P, env: &str, node: &Node) -> Option<Gates> {
    let fields = p.map(node, &format!("`{env}.gates`"), GATES)?;
    let mut g = Gates::default();
    for (k, v) in fields {
        match k {
            "jobs" => {
                // `jobs: [a, b]` or `jobs: { require: [a, b], mode: shadow }`.
                if v.as_map().is_some() {
                    let Some(f) = p.map(v, "`gates.jobs`", &["require", "mode"]) else {
                        continue;
                    };
                    let mode = gate_mode(p, &f);
                    let req = f
                        .iter()
                        .find(|(k, _)| *k == "require")
                        .map(|(_, v)| p.strings(v, "`jobs.require`"))
                        .unwrap_or_default();
                    g.jobs = Some(Gate { mode, spec: req });
                } else {
                    g.jobs = Some(Gate {
                        mode: Mode::Enforce,
                        spec: p.strings(v, "`gates.jobs`"),
                    });
                }
            }
            "refs" => {
                let mode = p
                    .map(v, "`refs`", &["branches", "tags", "mode"])
                    .map(|f| gate_mode(p, &f))
                    .unwrap_or_default();
                if let Some(r) = ref_rule(p, v) {
                    g.refs = Some(Gate { mode, spec: r });
                }
            }
            "vulnerabilities" => {
                let Some(f) = p.map(
                    v,
                    "`gates.vulnerabilities`",
                    &["block_at", "max_age", "waivers", "mode"],
                ) else {
                    continue;
                };
                let mut spec = VulnGate {
                    block_at: Severity::High,
                    max_age: None,
                    waivers: Vec::new(),
                };
                for (k, v) in &f {
                    match *k {
                        "block_at" => {
                            let Some(t) = p.string(v, "`block_at`") else {
                                continue;
                            };
                            match Severity::parse(&t) {
                                Some(s) => spec.block_at = s,
                                None => p.err_hint(
                                    v,
                                    format!("unknown severity `{t}`"),
                                    "use `low`, `medium`, `high` or `critical`",
                                ),
                            }
                        }
                        "max_age" => spec.max_age = p.duration(v, "`max_age`"),
                        "waivers" => spec.waivers = waivers(p, v),
                        _ => {}
                    }
                }
                g.vulnerabilities = Some(Gate {
                    mode: gate_mode(p, &f),
                    spec,
                });
            }
            "coverage" => {
                let Some(f) = p.map(v, "`gates.coverage`", &["min_lines", "max_drop", "mode"])
                else {
                    continue;
                };
                let mut spec = CoverageGate {
                    min_lines: None,
                    max_drop: None,
                };
                for (k, v) in &f {
                    match *k {
                        "min_lines" => spec.min_lines = p.number(v, "`min_lines`"),
                        "max_drop" => spec.max_drop = p.number(v, "`max_drop`"),
                        _ => {}
                    }
                }
                g.coverage = Some(Gate {
                    mode: gate_mode(p, &f),
                    spec,
                });
            }
            "benchmarks" => {
                let Some(f) = p.map(v, "`gates.benchmarks`", &["on_inconclusive", "mode"]) else {
                    continue;
                };
                let mut spec = BenchGate {
                    on_inconclusive: OnInconclusive::Fail,
                };
                for (k, v) in &f {
                    if *k == "on_inconclusive" {
                        match p.string(v, "`on_inconclusive`").as_deref() {
                            Some("fail") => spec.on_inconclusive = OnInconclusive::Fail,
                            Some("require_approval") => {
                                spec.on_inconclusive = OnInconclusive::RequireApproval
                            }
                            Some("pass") => spec.on_inconclusive = OnInconclusive::Pass,
                            Some(t) => p.err_hint(
                                v,
                                format!("unknown `on_inconclusive` `{t}`"),
                                "use `fail`, `require_approval` or `pass`",
                            ),
                            None => {}
                        }
                    }
                }
                g.benchmarks = Some(Gate {
                    mode: gate_mode(p, &f),
                    spec,
                });
            }
            "soak" => {
                let Some(f) = p.map(v, "`gates.soak`", &["in", "min", "mode"]) else {
                    continue;
                };
                let mut in_env = None;
                let mut min = None;
                for (k, v) in &f {
                    match *k {
                        "in" => in_env = p.string(v, "`soak.in`"),
                        "min" => min = p.duration(v, "`soak.min`"),
                        _ => {}
                    }
                }
                let has = |key: &str| f.iter().any(|(k, _)| *k == key);
                match (in_env, min) {
                    (Some(in_env), Some(min)) => {
                        g.soak = Some(Gate {
                            mode: gate_mode(p, &f),
                            spec: SoakGate { in_env, min },
                        })
                    }
                    _ if has("in") && has("min") => {}
                    _ => p.err(
                        v,
                        "`soak` needs `in` (an environment) and `min` (a duration)",
                    ),
                }
            }
            "approvals" => {
                let Some(f) = p.map(
                    v,
                    "`gates.approvals`",
                    &["rules", "self_approval", "expires_after", "mode"],
                ) else {
                    continue;
                };
                let mut spec = ApprovalGate {
                    rules: Vec::new(),
                    self_approval: false,
                    expires_after: None,
                };
                for (k, v) in &f {
                    match *k {
                        "rules" => spec.rules = rules(p, v),
                        "self_approval" => {
                            spec.self_approval = p.bool(v, "`self_approval`").unwrap_or(false)
                        }
                        "expires_after" => spec.expires_after = p.duration(v, "`expires_after`"),
                        _ => {}
                    }
                }
                if spec.rules.is_empty() {
                    p.err(v, "`approvals` needs at least one rule");
                }
                g.approvals = Some(Gate {
                    mode: gate_mode(p, &f),
                    spec,
                });
            }
            "windows" => {
                let Some(f) = p.map(v, "`gates.windows`", &["deny", "allow", "mode"]) else {
                    continue;
                };
                let mut spec = WindowGate {
                    deny: Vec::new(),
                    allow: Vec::new(),
                };
                for (k, v) in &f {
                    match *k {
                        "deny" => spec.deny = windows(p, v),
                        "allow" => spec.allow = windows(p, v),
                        _ => {}
                    }
                }
                g.windows = Some(Gate {
                    mode: gate_mode(p, &f),
                    spec,
                });
            }
            _ => {
                let Some(items) = v.as_seq() else {
                    p.err(v, "`gates.custom` must be a sequence");
                    continue;
                };
                for item in items {
                    let Some(f) = p.map(
                        item,
                        "a custom gate",
                        &["name", "run", "command", "image", "timeout", "mode"],
                    ) else {
                        continue;
                    };
                    let mut name = None;
                    let mut command = Vec::new();
                    let mut image = None;
                    let mut timeout_secs = 300;
                    for (k, v) in &f {
                        match *k {
                            "name" => name = p.string(v, "`name`"),
                            "run" | "command" => command = p.strings(v, &format!("`{k}`")),
                            "image" => {
                                image = p.string(v, "`image`");
                                if image.as_deref().is_some_and(|i| {
                                    i.is_empty()
                                        || i.starts_with('-')
                                        || i.contains(char::is_whitespace)
                                }) {
                                    p.err_hint(
                                        v,
                                        "`image` is not an image reference",
                                        "write it like `alpine:3.20` or `registry.example/gate@sha256:…`",
                                    );
                                }
                            }
                            "timeout" => {
                                if let Some(d) = p.duration(v, "`timeout`") {
                                    timeout_secs = d.as_secs().max(1) as u64;
                                }
                            }
                            _ => {}
                        }
                    }
                    match name {
                        Some(name) if !command.is_empty() || image.is_some() => {
                            g.custom.push(Gate {
                                mode: gate_mode(p, &f),
                                spec: CustomGate {
                                    name,
                                    command,
                                    image,
                                    timeout_secs,
                                },
                            })
                        }
                        _ => p.err_hint(
                            item,
                            "a custom gate needs a `name` and a `run` command or an `image`",
                            "`run: [./check.sh, \"${build}\"]` or `image: gate:1` with `command: [check, \"${build}\"]`",
                        ),
                    }
                }
            }
        }
    }
    Some(g)
}

fn waivers(p: &mut P, node: &Node) -> Vec<Waiver> {
    let Some(items) = node.as_seq() else {
        p.err(node, "`waivers` must be a sequence");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(f) = p.map(item, "a waiver", &["id", "justification", "expires"]) else {
            continue;
        };
        let (mut id, mut just, mut exp) = (None, None, None);
        for (k, v) in f {
            match k {
                "id" => id = p.string(v, "`id`"),
                "justification" => just = p.string(v, "`justification`"),
                _ => {
                    let Some(t) = p.string(v, "`expires`") else {
                        continue;
                    };
                    match parse_instant(&t) {
                        Some(ts) => exp = Some(ts),
                        None => p.err_hint(
                            v,
                            format!("`expires` `{t}` is not a date"),
                            "write `2026-12-31` or `2026-12-31T00:00:00Z`",
                        ),
                    }
                }
            }
        }
        match (id, just, exp) {
            (Some(id), Some(justification), Some(expires)) if !justification.trim().is_empty() => {
                out.push(Waiver {
                    id,
                    justification,
                    expires,
                })
            }
            _ => p.err_hint(
                item,
                "a waiver needs an `id`, a `justification` and an `expires` date",
                "waivers that never expire or say nothing are refused",
            ),
        }
    }
    out
}

/// A timestamp or a date (midnight UTC).
pub fn parse_instant(t: &str) -> Option<jiff::Timestamp> {
    t.parse::<jiff::Timestamp>().ok().or_else(|| {
        t.parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.in_tz("UTC").ok())
            .map(|z| z.timestamp())
    })
}

fn rules(p: &mut P, node: &Node) -> Vec<ApprovalRule> {
    let Some(items) = node.as_seq() else {
        p.err(node, "`rules` must be a sequence");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(f) = p.map(item, "an approval rule", &["name", "from", "count", "when"]) else {
            continue;
        };
        let mut r = ApprovalRule {
            name: format!("rule-{}", i + 1),
            from: Vec::new(),
            count: 1,
            when: When::Always,
        };
        for (k, v) in f {
            match k {
                "name" => r.name = p.string(v, "`name`").unwrap_or(r.name),
                "from" => r.from = p.strings(v, "`from`"),
                "count" => r.count = p.count(v, "`count`").unwrap_or(1),
                _ => match p.string(v, "`when`").as_deref() {
                    Some("always") => r.when = When::Always,
                    Some("waivers_used") => r.when = When::WaiversUsed,
                    Some("bench_inconclusive") => r.when = When::BenchInconclusive,
                    Some(t) => p.err_hint(
                        v,
                        format!("unknown `when` `{t}`"),
                        "use `always`, `waivers_used` or `bench_inconclusive`",
                    ),
                    None => {}
                },
            }
        }
        if r.from.is_empty() {
            p.err_hint(
                item,
                format!("approval rule `{}` names nobody", r.name),
                "add `from: [group:NAME]`",
            );
        }
        out.push(r);
    }
    out
}

fn windows(p: &mut P, node: &Node) -> Vec<Window> {
    let Some(items) = node.as_seq() else {
        p.err(node, "windows must be a sequence");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(f) = p.map(
            item,
            "a window",
            &["name", "from", "to", "rrule", "start", "duration", "tz"],
        ) else {
            continue;
        };
        let mut name = format!("window-{}", i + 1);
        let mut tz = "UTC".to_owned();
        let (mut from, mut to, mut rrule, mut start, mut duration) = (None, None, None, None, None);
        for (k, v) in f {
            match k {
                "name" => name = p.string(v, "`name`").unwrap_or(name),
                "tz" => {
                    if let Some(t) = p.string(v, "`tz`") {
                        if jiff::tz::TimeZone::get(&t).is_err() {
                            p.err(v, format!("unknown time zone `{t}`"));
                        }
                        tz = t;
                    }
                }
                "from" | "to" => {
                    let Some(t) = p.string(v, &format!("`{k}`")) else {
                        continue;
                    };
                    match t.parse::<jiff::civil::DateTime>() {
                        Ok(d) if k == "from" => from = Some(d),
                        Ok(d) => to = Some(d),
                        Err(_) => p.err_hint(
                            v,
                            format!("`{k}` `{t}` is not a local date-time"),
                            "write `2026-12-20T00:00` (in the window's `tz`)",
                        ),
                    }
                }
                "rrule" => {
                    let Some(t) = p.string(v, "`rrule`") else {
                        continue;
                    };
                    match parse_rrule(&t) {
                        Ok(days) => rrule = Some(days),
                        Err(e) => p.err(v, format!("`rrule` `{t}`: {e}")),
                    }
                }
                "start" => {
                    let Some(t) = p.string(v, "`start`") else {
                        continue;
                    };
                    match t.parse::<jiff::civil::Time>() {
                        Ok(s) => start = Some(s),
                        Err(_) => p.err(v, format!("`start` `{t}` is not a time like `09:00`")),
                    }
                }
                _ => duration = p.duration(v, "`duration`"),
            }
        }
        let written = |key: &str| item.get(key).is_some();
        let kind = match (from, to, rrule) {
            (Some(from), Some(to), None) => Some(WindowKind::Range { from, to }),
            (None, None, Some(days)) => match duration {
                Some(duration) => Some(WindowKind::Recurring {
                    days,
                    start: start.unwrap_or(jiff::civil::Time::midnight()),
                    duration,
                }),
                None => {
                    p.err(
                        item,
                        format!("window `{name}` has an `rrule` but no `duration`"),
                    );
                    None
                }
            },
            // A value that was written but bad is already reported.
            _ if (written("from") && written("to")) || written("rrule") => None,
            _ => {
                p.err_hint(
                    item,
                    format!(
                        "window `{name}` needs either `from` and `to`, or `rrule` and `duration`"
                    ),
                    "`{ name: weekends, rrule: \"FREQ=WEEKLY;BYDAY=SA,SU\", duration: 24h }`",
                );
                None
            }
        };
        if let Some(kind) = kind {
            out.push(Window { name, kind, tz });
        }
    }
    out
}

/// Unknown `from:`/`soak.in` environments, and cycles in the `from:` graph.
fn check_graph(p: &mut P, policy: &Policy, envs_node: &Node) {
    let names: Vec<&str> = policy
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let node_of = |name: &str| envs_node.get(name).unwrap_or(envs_node);
    for e in &policy.environments {
        let n = node_of(&e.name);
        for f in &e.from {
            if f != "build" && !names.contains(&f.as_str()) {
                let hint = match did_you_mean(f, names.iter().copied().chain(["build"])) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "use `build` (straight from a run) or another environment".into(),
                };
                let at = n.get("promote").and_then(|pn| pn.get("from")).unwrap_or(n);
                p.err_hint(
                    at,
                    format!("environment `{}` promotes from unknown `{f}`", e.name),
                    hint,
                );
            }
        }
        if let Some(s) = &e.gates.soak
            && !names.contains(&s.spec.in_env.as_str())
        {
            let at = n.get("gates").and_then(|g| g.get("soak")).unwrap_or(n);
            p.err(
                at,
                format!("`soak.in` names unknown environment `{}`", s.spec.in_env),
            );
        }
    }
    // Cycles: depth-first over `from`.
    fn visit<'a>(
        policy: &'a Policy,
        name: &'a str,
        stack: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if done.contains(&name) {
            return None;
        }
        if let Some(i) = stack.iter().position(|s| *s == name) {
            let mut cycle: Vec<String> = stack[i..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        stack.push(name);
        if let Some(e) = policy.env(name) {
            for f in &e.from {
                if let Some(c) = visit(policy, f, stack, done) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        done.push(name);
        None
    }
    let mut done = Vec::new();
    for e in &policy.environments {
        if let Some(cycle) = visit(policy, &e.name, &mut Vec::new(), &mut done) {
            let at = node_of(&cycle[0]);
            p.err(
                at,
                format!(
                    "environments promote from each other in a cycle: {}",
                    cycle.join(" <- ")
                ),
            );
            break;
        }
    }
}
