//! Node tree → [`Workflow`], reporting every schema and type problem.
//!
//! Position rules follow actionlint's so line numbers agree (validate.md §5): an unknown or
//! duplicate key is reported at the key, a bad value at the value, a missing required key at
//! the owning mapping's key (the job id for a missing `runs-on`), a missing `on`/`jobs` at the
//! first top-level key.

use super::tables::{self, keys};
use super::*;
use crate::diag::{Diagnostic, did_you_mean};
use crate::source::{FileId, Span};
use crate::yaml::{self, Entry, Node, NodeKind, ScalarValue};

/// `needs` lists up to this long are checked for repeats linearly (no allocation).
const LINEAR_NEEDS: usize = 16;

const SYNTAX: &str = "syntax-check";

/// Loads a workflow from source text. Returns the model (when the file is a mapping at all)
/// and every problem found.
pub fn load(file: FileId, text: &str) -> (Option<Workflow>, Vec<Diagnostic>) {
    let loaded = yaml::load(file, text);
    let mut l = Loader {
        file,
        diags: loaded.diagnostics,
        extension_keys: Vec::new(),
    };
    let wf = match &loaded.root {
        Some(root) => l.workflow(root),
        None => {
            if l.diags.is_empty() {
                l.diags.push(
                    Diagnostic::error(SYNTAX, Span::point(file, 0), "workflow is empty")
                        .with_hint("a workflow needs at least `on:` and `jobs:`"),
                );
            }
            None
        }
    };
    crate::diag::sort_and_dedup(&mut l.diags);
    (wf, l.diags)
}

/// Loads a workflow from a string (tests and tools).
pub fn load_str(text: &str) -> (Option<Workflow>, Vec<Diagnostic>) {
    load(FileId(0), text)
}

/// Loads action metadata (`action.yml`).
pub fn load_action(file: FileId, text: &str) -> (Option<ActionMeta>, Vec<Diagnostic>) {
    let loaded = yaml::load(file, text);
    let mut l = Loader {
        file,
        diags: loaded.diagnostics,
        extension_keys: Vec::new(),
    };
    let meta = loaded.root.as_ref().and_then(|root| l.action(root));
    crate::diag::sort_and_dedup(&mut l.diags);
    (meta, l.diags)
}

struct Loader {
    file: FileId,
    diags: Vec<Diagnostic>,
    /// Every pipe extension key met at any level (for `--strict-github`).
    extension_keys: Vec<Sp<String>>,
}

fn key_span(e: &Entry) -> Span {
    e.key.span
}

fn is_single_expr(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("${{") && t.ends_with("}}") && t[3..].find("${{").is_none()
}

fn id_ok(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Loader {
    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(SYNTAX, span, msg));
    }

    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Requires a mapping; a null value counts as an empty mapping when `null_ok`.
    fn map<'n>(&mut self, node: &'n Node, what: &str, null_ok: bool) -> Option<&'n [Entry]> {
        match &node.kind {
            NodeKind::Map(m) => Some(m),
            _ if null_ok && node.is_null() => Some(&[]),
            _ => {
                self.err(
                    node.span,
                    format!("expected a mapping for {what}, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// Reports keys not in `allowed`; keys in `ext` are pipe extensions and are recorded.
    fn check_keys(
        &mut self,
        entries: &[Entry],
        allowed: &[&str],
        ext: &[&str],
        what: &str,
        ext_seen: &mut Vec<Sp<String>>,
    ) {
        for e in entries {
            let Some(k) = e.key.as_str() else { continue };
            if allowed.contains(&k) {
                continue;
            }
            if ext.contains(&k) {
                ext_seen.push(Sp::new(k.to_owned(), e.key.span));
                self.extension_keys.push(Sp::new(k.to_owned(), e.key.span));
                continue;
            }
            let all = allowed.iter().chain(ext.iter()).copied();
            let mut d = Diagnostic::error(
                SYNTAX,
                e.key.span,
                format!("unexpected key `{k}` for {what}"),
            );
            if let Some(s) = did_you_mean(k, all) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            } else {
                d = d.with_hint(format!("expected one of {}", list(allowed)));
            }
            self.push(d);
        }
    }

    fn str(&mut self, node: &Node, what: &str) -> Option<YStr> {
        match YStr::from_node(node) {
            Some(s) => Some(s),
            None => {
                self.err(
                    node.span,
                    format!("expected a string for {what}, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn non_empty_str(&mut self, node: &Node, what: &str) -> Option<YStr> {
        let s = self.str(node, what)?;
        if s.text.is_empty() {
            self.err(node.span, format!("{what} must not be empty"));
        }
        Some(s)
    }

    /// A boolean literal or one expression.
    fn bool_or_expr(&mut self, node: &Node, what: &str) -> Option<YStr> {
        let s = self.str(node, what)?;
        match s.value {
            ScalarValue::Bool(_) => Some(s),
            ScalarValue::Str if is_single_expr(&s.text) => Some(s),
            _ => {
                self.err(
                    node.span,
                    format!(
                        "expected a boolean or an expression for {what}, found {} `{}`",
                        node.describe(),
                        s.text
                    ),
                );
                None
            }
        }
    }

    /// A number literal or one expression; `positive` requires a value above zero.
    fn number_or_expr(&mut self, node: &Node, what: &str, positive: bool) -> Option<YStr> {
        let s = self.str(node, what)?;
        match s.value {
            ScalarValue::Number(n) => {
                if positive && (n.is_nan() || n <= 0.0) {
                    self.err(
                        node.span,
                        format!("{what} must be greater than zero, found `{}`", s.text),
                    );
                }
                Some(s)
            }
            ScalarValue::Str if is_single_expr(&s.text) => Some(s),
            _ => {
                self.err(
                    node.span,
                    format!(
                        "expected a number or an expression for {what}, found {} `{}`",
                        node.describe(),
                        s.text
                    ),
                );
                None
            }
        }
    }

    fn bool_lit(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.as_scalar().map(|s| s.value) {
            Some(ScalarValue::Bool(b)) => Some(b),
            _ => {
                self.err(
                    node.span,
                    format!("expected a boolean for {what}, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A string or a sequence of strings (GitHub accepts both for labels, needs, filters).
    fn str_or_seq(&mut self, node: &Node, what: &str) -> Vec<YStr> {
        match &node.kind {
            NodeKind::Seq(items) => items.iter().filter_map(|i| self.str(i, what)).collect(),
            NodeKind::Scalar(_) if node.is_null() => {
                self.err(node.span, format!("{what} must not be empty"));
                Vec::new()
            }
            NodeKind::Scalar(_) => self.str(node, what).into_iter().collect(),
            NodeKind::Map(_) => {
                self.err(
                    node.span,
                    format!(
                        "expected a string or a sequence of strings for {what}, found a mapping"
                    ),
                );
                Vec::new()
            }
        }
    }

    fn seq<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Seq(items) => Some(items),
            _ => {
                self.err(
                    node.span,
                    format!("expected a sequence for {what}, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn str_map(&mut self, node: &Node, what: &str) -> StrMap {
        let mut out = StrMap::new();
        let Some(entries) = self.map(node, what, true) else {
            return out;
        };
        for e in entries {
            let Some(k) = e.key.as_str() else { continue };
            if let Some(v) = self.scalar_value(&e.value, &format!("`{k}` in {what}")) {
                out.insert(k.to_owned(), (e.key.span, v));
            }
        }
        out
    }

    fn scalar_value(&mut self, node: &Node, what: &str) -> Option<YStr> {
        match YStr::from_node(node) {
            Some(s) => Some(s),
            None => {
                self.err(
                    node.span,
                    format!(
                        "expected a scalar value for {what}, found {}",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    fn env(&mut self, node: &Node, what: &str) -> Env {
        if let Some(s) = node.as_scalar() {
            if s.value == ScalarValue::Str && is_single_expr(&s.text) {
                return YStr::from_node(node).map(Env::Expr).unwrap_or_default();
            }
            if node.is_null() {
                return Env::Map(StrMap::new());
            }
        }
        let map = self.str_map(node, what);
        for (k, (span, _)) in &map {
            if k.is_empty() || k.contains(['=', ' ', '\t', '&', '\0']) || k.contains("${{") {
                if k.contains("${{") {
                    continue;
                }
                self.push(Diagnostic::lint(
                    "env-var",
                    *span,
                    format!("environment variable name `{k}` is invalid: it must not be empty or contain `=`, `&` or spaces"),
                ));
            }
        }
        Env::Map(map)
    }

    // ---- workflow ----

    fn workflow(&mut self, root: &Node) -> Option<Workflow> {
        let entries = match &root.kind {
            NodeKind::Map(m) => m,
            _ => {
                self.push(
                    Diagnostic::error(
                        SYNTAX,
                        root.span,
                        format!("a workflow must be a mapping, found {}", root.describe()),
                    )
                    .with_hint("a workflow needs at least `on:` and `jobs:`"),
                );
                return None;
            }
        };
        let mut wf = Workflow::default();
        let mut ext = Vec::new();
        self.check_keys(
            entries,
            keys::WORKFLOW,
            keys::WORKFLOW_EXT,
            "workflow",
            &mut ext,
        );
        let first = entries
            .first()
            .map(key_span)
            .unwrap_or(Span::point(self.file, 0));
        wf.on_span = first;
        let mut saw_on = false;
        let mut saw_jobs = false;
        for e in entries {
            let Some(k) = e.key.as_str() else { continue };
            let v = &e.value;
            match k {
                "name" => wf.name = self.str(v, "`name`"),
                "run-name" => wf.run_name = self.str(v, "`run-name`"),
                "on" => {
                    saw_on = true;
                    wf.on_span = e.key.span;
                    wf.on = self.on(v);
                }
                "env" => wf.env = self.env(v, "`env`"),
                "defaults" => wf.defaults = self.defaults(v),
                "concurrency" => wf.concurrency = self.concurrency(v, e.key.span),
                "permissions" => wf.permissions = self.permissions(v),
                "jobs" => {
                    saw_jobs = true;
                    wf.jobs = self.jobs(e);
                }
                "environments" => wf.environments = Some(v.clone()),
                _ => {}
            }
        }
        if !saw_on {
            self.push(
                Diagnostic::error(SYNTAX, first, "`on` section is missing in workflow")
                    .with_hint("add the events that trigger it, for example `on: push`"),
            );
        }
        if !saw_jobs {
            self.err(first, "`jobs` section is missing in workflow");
        }
        wf.extension_keys = std::mem::take(&mut self.extension_keys);
        Some(wf)
    }

    fn defaults(&mut self, node: &Node) -> Option<Defaults> {
        let entries = self.map(node, "`defaults`", false)?;
        let mut ext = Vec::new();
        self.check_keys(entries, keys::DEFAULTS, &[], "`defaults`", &mut ext);
        let run = entries.iter().find(|e| e.key.as_str() == Some("run"))?;
        let run_entries = self.map(&run.value, "`defaults.run`", false)?;
        self.check_keys(
            run_entries,
            keys::DEFAULTS_RUN,
            &[],
            "`defaults.run`",
            &mut ext,
        );
        let mut d = Defaults::default();
        for e in run_entries {
            match e.key.as_str() {
                Some("shell") => d.shell = self.non_empty_str(&e.value, "`shell`"),
                Some("working-directory") => {
                    d.working_directory = self.non_empty_str(&e.value, "`working-directory`")
                }
                _ => {}
            }
        }
        Some(d)
    }

    /// `key` is where a missing `group` is reported (validate.md: at the owning key).
    fn concurrency(&mut self, node: &Node, key: Span) -> Option<Concurrency> {
        if node.as_scalar().is_some() {
            let group = self.non_empty_str(node, "`concurrency`")?;
            return Some(Concurrency {
                group,
                cancel_in_progress: None,
            });
        }
        let entries = self.map(node, "`concurrency`", false)?;
        let mut ext = Vec::new();
        self.check_keys(entries, keys::CONCURRENCY, &[], "`concurrency`", &mut ext);
        let mut group = None;
        let mut cancel = None;
        for e in entries {
            match e.key.as_str() {
                Some("group") => group = self.non_empty_str(&e.value, "`group`"),
                Some("cancel-in-progress") => {
                    cancel = self.bool_or_expr(&e.value, "`cancel-in-progress`")
                }
                _ => {}
            }
        }
        match group {
            Some(group) => Some(Concurrency {
                group,
                cancel_in_progress: cancel,
            }),
            None => {
                if !entries.iter().any(|e| e.key.as_str() == Some("group")) {
                    self.err(key, "`group` is required in `concurrency`");
                }
                None
            }
        }
    }

    fn permissions(&mut self, node: &Node) -> Option<Permissions> {
        if let Some(s) = node.as_scalar() {
            let y = self.str(node, "`permissions`")?;
            if !(matches!(s.text.as_str(), "read-all" | "write-all") || is_single_expr(&s.text)) {
                self.push(
                    Diagnostic::error(
                        "permissions",
                        node.span,
                        format!("`{}` is not a valid value for `permissions`", y.text),
                    )
                    .with_hint("use `read-all`, `write-all`, `{}` or a mapping of scopes to `read`, `write` or `none`"),
                );
            }
            return Some(Permissions::All(y));
        }
        let entries = self.map(node, "`permissions`", false)?;
        let mut scopes = Vec::new();
        for e in entries {
            let Some(k) = e.key.as_str() else { continue };
            let Some(level) = self.str(&e.value, &format!("permission `{k}`")) else {
                continue;
            };
            match tables::PERMISSION_SCOPES.iter().find(|(s, _)| *s == k) {
                None => {
                    let mut d = Diagnostic::error(
                        "permissions",
                        e.key.span,
                        format!("unknown permission scope `{k}`"),
                    );
                    if let Some(s) =
                        did_you_mean(k, tables::PERMISSION_SCOPES.iter().map(|(s, _)| *s))
                    {
                        d = d.with_hint(format!("did you mean `{s}`?"));
                    }
                    self.push(d);
                }
                Some((_, levels)) => {
                    if !levels.contains(&level.text.as_str()) && !is_single_expr(&level.text) {
                        self.push(Diagnostic::error(
                            "permissions",
                            level.span,
                            format!(
                                "`{}` is not a valid level for permission `{k}`; expected {}",
                                level.text,
                                list(levels)
                            ),
                        ));
                    }
                }
            }
            scopes.push((Sp::new(k.to_owned(), e.key.span), level));
        }
        Some(Permissions::Scopes(scopes))
    }

    // ---- on ----

    fn on(&mut self, node: &Node) -> Vec<EventTrigger> {
        let mut out = Vec::new();
        match &node.kind {
            NodeKind::Scalar(_) => {
                if let Some(s) = self.non_empty_str(node, "`on`") {
                    if !s.text.is_empty() {
                        self.check_event_name(&s.text, s.span);
                    }
                    out.push(EventTrigger {
                        name: Sp::new(s.text, s.span),
                        ..Default::default()
                    });
                }
            }
            NodeKind::Seq(items) => {
                if items.is_empty() {
                    self.err(node.span, "`on` must list at least one event");
                }
                for i in items {
                    if let Some(s) = self.non_empty_str(i, "an event name") {
                        if out.iter().any(|t: &EventTrigger| t.name.value == s.text) {
                            self.err(s.span, format!("event `{}` is listed twice", s.text));
                            continue;
                        }
                        self.check_event_name(&s.text, s.span);
                        out.push(EventTrigger {
                            name: Sp::new(s.text, s.span),
                            ..Default::default()
                        });
                    }
                }
            }
            NodeKind::Map(entries) => {
                if entries.is_empty() {
                    self.err(node.span, "`on` must list at least one event");
                }
                for e in entries {
                    let Some(name) = e.key.as_str() else { continue };
                    out.push(self.event(name, e));
                }
            }
        }
        out
    }

    fn check_event_name(&mut self, name: &str, span: Span) -> Option<&'static tables::EventInfo> {
        let info = tables::event(name);
        if info.is_none() {
            let mut d = Diagnostic::lint("events", span, format!("unknown event `{name}`"));
            if let Some(s) = did_you_mean(name, tables::EVENTS.iter().map(|e| e.name)) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
            self.push(d);
        }
        info
    }

    fn event(&mut self, name: &str, e: &Entry) -> EventTrigger {
        let mut t = EventTrigger {
            name: Sp::new(name.to_owned(), e.key.span),
            ..Default::default()
        };
        let info = self.check_event_name(name, e.key.span);
        let v = &e.value;
        match name {
            "schedule" => {
                let Some(items) = self.seq(v, "`schedule`") else {
                    return t;
                };
                if items.is_empty() {
                    self.err(v.span, "`schedule` must list at least one `cron` entry");
                }
                for item in items {
                    let Some(entries) = self.map(item, "a `schedule` entry", false) else {
                        continue;
                    };
                    let mut ext = Vec::new();
                    self.check_keys(
                        entries,
                        &["cron", "timezone"],
                        &[],
                        "a `schedule` entry",
                        &mut ext,
                    );
                    match item.get("cron") {
                        Some(c) => {
                            if let Some(s) = self.non_empty_str(c, "`cron`") {
                                t.crons.push(s);
                            }
                        }
                        None => self.err(item.span, "`cron` is required in a `schedule` entry"),
                    }
                    if let Some(z) = item.get("timezone")
                        && let Some(s) = self.non_empty_str(z, "`timezone`")
                    {
                        t.timezones.push(s);
                    }
                }
                return t;
            }
            "workflow_dispatch" => {
                let Some(entries) = self.map(v, "`workflow_dispatch`", true) else {
                    return t;
                };
                let mut ext = Vec::new();
                self.check_keys(entries, &["inputs"], &[], "`workflow_dispatch`", &mut ext);
                if let Some(inputs) = v.get("inputs") {
                    t.dispatch_inputs = self.dispatch_inputs(inputs);
                    if t.dispatch_inputs.len() > 25 {
                        self.push(Diagnostic::error(
                            "events",
                            e.key.span,
                            format!(
                                "`workflow_dispatch` allows at most 25 inputs, found {}",
                                t.dispatch_inputs.len()
                            ),
                        ));
                    }
                }
                return t;
            }
            "workflow_call" => {
                let Some(entries) = self.map(v, "`workflow_call`", true) else {
                    return t;
                };
                let mut ext = Vec::new();
                self.check_keys(
                    entries,
                    &["inputs", "outputs", "secrets"],
                    &[],
                    "`workflow_call`",
                    &mut ext,
                );
                t.workflow_call = Some(self.workflow_call(v));
                return t;
            }
            _ => {}
        }
        let Some(entries) = self.map(v, &format!("event `{name}`"), true) else {
            return t;
        };
        for f in entries {
            let Some(fk) = f.key.as_str() else { continue };
            if fk == "types" {
                t.types = self.str_or_seq(&f.value, "`types`");
                match info.and_then(|i| i.types) {
                    None if info.is_some() => self.push(Diagnostic::lint(
                        "events",
                        f.key.span,
                        format!("event `{name}` has no activity types"),
                    )),
                    Some(allowed) if !allowed.is_empty() => {
                        for ty in &t.types {
                            if !allowed.contains(&ty.text.as_str()) && !ty.has_expr() {
                                let mut d = Diagnostic::lint(
                                    "events",
                                    ty.span,
                                    format!(
                                        "unknown activity type `{}` for event `{name}`",
                                        ty.text
                                    ),
                                );
                                d = d.with_hint(
                                    match did_you_mean(&ty.text, allowed.iter().copied()) {
                                        Some(s) => format!("did you mean `{s}`?"),
                                        None => format!("expected one of {}", list(allowed)),
                                    },
                                );
                                self.push(d);
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let allowed = info.map(|i| i.filters.keys()).unwrap_or(&[]);
            if info.is_some() && !allowed.contains(&fk) {
                let mut d = Diagnostic::error(
                    "events",
                    f.key.span,
                    format!("`{fk}` is not a filter of event `{name}`"),
                );
                if !allowed.is_empty() {
                    d = d.with_hint(format!("`{name}` accepts {}", list(allowed)));
                }
                self.push(d);
                continue;
            }
            let patterns = self.str_or_seq(&f.value, &format!("`{fk}`"));
            t.filters
                .push((Sp::new(fk.to_owned(), f.key.span), patterns));
        }
        for base in ["branches", "tags", "paths"] {
            let ignore = format!("{base}-ignore");
            let a = t.filters.iter().find(|(n, _)| n.value == base);
            let b = t.filters.iter().find(|(n, _)| n.value == ignore);
            if let (Some(_), Some((bn, _))) = (a, b) {
                let span = bn.span;
                self.push(
                    Diagnostic::error(
                        "events",
                        span,
                        format!("`{base}` and `{ignore}` cannot both be used for event `{name}`"),
                    )
                    .with_hint(format!("use `!` patterns in `{base}` to exclude")),
                );
            }
        }
        t
    }

    fn input_type(&mut self, node: &Node, allowed: &[&str]) -> Option<InputType> {
        let s = self.str(node, "`type`")?;
        let ty = match s.text.as_str() {
            "string" => InputType::String,
            "boolean" => InputType::Boolean,
            "number" => InputType::Number,
            "choice" => InputType::Choice,
            "environment" => InputType::Environment,
            _ => InputType::String,
        };
        if !allowed.contains(&s.text.as_str()) {
            self.push(Diagnostic::error(
                "events",
                s.span,
                format!(
                    "input type `{}` is invalid; expected {}",
                    s.text,
                    list(allowed)
                ),
            ));
            return None;
        }
        Some(ty)
    }

    fn dispatch_inputs(&mut self, node: &Node) -> Vec<DispatchInput> {
        let mut out: Vec<DispatchInput> = Vec::new();
        let Some(entries) = self.map(node, "`inputs`", true) else {
            return out;
        };
        for e in entries {
            let Some(id) = e.key.as_str() else { continue };
            if out.iter().any(|i| i.id.value.eq_ignore_ascii_case(id)) {
                self.err(
                    e.key.span,
                    format!("input `{id}` is defined twice (input names are case-insensitive)"),
                );
                continue;
            }
            let mut input = DispatchInput {
                id: Sp::new(id.to_owned(), e.key.span),
                description: None,
                required: false,
                default: None,
                ty: InputType::String,
                options: Vec::new(),
            };
            let Some(fields) = self.map(&e.value, &format!("input `{id}`"), true) else {
                continue;
            };
            let mut ext = Vec::new();
            self.check_keys(
                fields,
                keys::DISPATCH_INPUT,
                &[],
                &format!("input `{id}`"),
                &mut ext,
            );
            let mut default_node = None;
            for f in fields {
                match f.key.as_str() {
                    Some("description") => input.description = self.str(&f.value, "`description`"),
                    Some("required") => {
                        input.required = self.bool_lit(&f.value, "`required`").unwrap_or(false)
                    }
                    Some("default") => {
                        default_node = Some(&f.value);
                        input.default = self.scalar_value(&f.value, "`default`");
                    }
                    Some("type") => {
                        if let Some(t) = self.input_type(
                            &f.value,
                            &["string", "boolean", "number", "choice", "environment"],
                        ) {
                            input.ty = t;
                        }
                    }
                    Some("options") => input.options = self.str_or_seq(&f.value, "`options`"),
                    _ => {}
                }
            }
            if input.ty == InputType::Choice && input.options.is_empty() {
                self.push(Diagnostic::error(
                    "events",
                    e.key.span,
                    format!("input `{id}` of type `choice` needs `options`"),
                ));
            }
            if input.ty != InputType::Choice && !input.options.is_empty() {
                self.push(Diagnostic::error(
                    "events",
                    e.key.span,
                    format!("`options` is only allowed for inputs of type `choice`, but `{id}` has type `{}`", input.ty.as_str()),
                ));
            }
            if let (Some(d), Some(dn)) = (&input.default, default_node) {
                self.check_default(id, input.ty, d, dn, &input.options);
            }
            out.push(input);
        }
        out
    }

    fn check_default(&mut self, id: &str, ty: InputType, d: &YStr, node: &Node, options: &[YStr]) {
        if d.has_expr() {
            return;
        }
        let bad = match ty {
            InputType::Boolean => {
                !matches!(
                    node.as_scalar().map(|s| s.value),
                    Some(ScalarValue::Bool(_))
                ) && !matches!(d.text.as_str(), "true" | "false")
            }
            InputType::Number => {
                !matches!(
                    node.as_scalar().map(|s| s.value),
                    Some(ScalarValue::Number(_))
                ) && d.text.trim().parse::<f64>().is_err()
            }
            InputType::Choice => !options.iter().any(|o| o.text == d.text),
            _ => false,
        };
        if bad {
            let msg = if ty == InputType::Choice {
                format!(
                    "default value `{}` of input `{id}` is not one of its options",
                    d.text
                )
            } else {
                format!(
                    "default value `{}` of input `{id}` is not a {}",
                    d.text,
                    ty.as_str()
                )
            };
            self.push(Diagnostic::error("events", d.span, msg));
        }
    }

    fn workflow_call(&mut self, node: &Node) -> WorkflowCall {
        let mut wc = WorkflowCall::default();
        let mut ext = Vec::new();
        if let Some(inputs) = node.get("inputs")
            && let Some(entries) = self.map(inputs, "`inputs`", true)
        {
            for e in entries {
                let Some(id) = e.key.as_str() else { continue };
                if wc
                    .inputs
                    .iter()
                    .any(|i| i.id.value.eq_ignore_ascii_case(id))
                {
                    self.err(
                        e.key.span,
                        format!("input `{id}` is defined twice (input names are case-insensitive)"),
                    );
                    continue;
                }
                let Some(fields) = self.map(&e.value, &format!("input `{id}`"), false) else {
                    continue;
                };
                self.check_keys(
                    fields,
                    keys::CALL_INPUT,
                    &[],
                    &format!("input `{id}`"),
                    &mut ext,
                );
                let mut input = CallInput {
                    id: Sp::new(id.to_owned(), e.key.span),
                    required: false,
                    ty: InputType::String,
                    default: None,
                };
                let mut default_node = None;
                let mut has_type = false;
                for f in fields {
                    match f.key.as_str() {
                        Some("required") => {
                            input.required = self.bool_lit(&f.value, "`required`").unwrap_or(false)
                        }
                        Some("default") => {
                            default_node = Some(&f.value);
                            input.default = self.scalar_value(&f.value, "`default`");
                        }
                        Some("type") => {
                            has_type = true;
                            if let Some(t) =
                                self.input_type(&f.value, &["string", "boolean", "number"])
                            {
                                input.ty = t;
                            }
                        }
                        _ => {}
                    }
                }
                if !has_type {
                    self.err(
                        e.key.span,
                        format!("`type` is required for input `{id}` of `workflow_call`"),
                    );
                }
                if let (Some(d), Some(dn)) = (&input.default, default_node) {
                    self.check_default(id, input.ty, d, dn, &[]);
                }
                wc.inputs.push(input);
            }
        }
        if let Some(outputs) = node.get("outputs")
            && let Some(entries) = self.map(outputs, "`outputs`", true)
        {
            for e in entries {
                let Some(id) = e.key.as_str() else { continue };
                let Some(fields) = self.map(&e.value, &format!("output `{id}`"), false) else {
                    continue;
                };
                self.check_keys(
                    fields,
                    keys::CALL_OUTPUT,
                    &[],
                    &format!("output `{id}`"),
                    &mut ext,
                );
                match e.value.get("value") {
                    Some(v) => {
                        if let Some(value) = self.str(v, "`value`") {
                            wc.outputs.push(CallOutput {
                                id: Sp::new(id.to_owned(), e.key.span),
                                value,
                            });
                        }
                    }
                    None => self.err(
                        e.key.span,
                        format!("`value` is required for output `{id}` of `workflow_call`"),
                    ),
                }
            }
        }
        if let Some(secrets) = node.get("secrets")
            && let Some(entries) = self.map(secrets, "`secrets`", true)
        {
            for e in entries {
                let Some(id) = e.key.as_str() else { continue };
                let fields = self
                    .map(&e.value, &format!("secret `{id}`"), true)
                    .unwrap_or(&[]);
                self.check_keys(
                    fields,
                    keys::CALL_SECRET,
                    &[],
                    &format!("secret `{id}`"),
                    &mut ext,
                );
                let required = e
                    .value
                    .get("required")
                    .and_then(|r| self.bool_lit(r, "`required`"))
                    .unwrap_or(false);
                wc.secrets.push(CallSecret {
                    id: Sp::new(id.to_owned(), e.key.span),
                    required,
                });
            }
        }
        wc
    }

    // ---- jobs ----

    fn jobs(&mut self, e: &Entry) -> Vec<Job> {
        let mut out: Vec<Job> = Vec::new();
        let Some(entries) = self.map(&e.value, "`jobs`", false) else {
            return out;
        };
        if entries.is_empty() {
            self.err(e.key.span, "`jobs` must define at least one job");
        }
        // Lowercased id → position in `out`: job ids are case-insensitive, and a linear search
        // would make large workflows quadratic.
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (index, je) in entries.iter().enumerate() {
            let Some(id) = je.key.as_str() else { continue };
            if !id_ok(id) {
                self.push(
                    Diagnostic::error("id", je.key.span, format!("invalid job id `{id}`"))
                        .with_hint("job ids start with a letter or `_` and contain only letters, digits, `-` and `_`"),
                );
            }
            if let Some(prev) = seen.get(&id.to_ascii_lowercase()).and_then(|&i| out.get(i)) {
                let prev = prev.id.value.clone();
                self.push(Diagnostic::error(
                    "id",
                    je.key.span,
                    format!("job id `{id}` is duplicated; job `{prev}` was defined before (job ids are case-insensitive)"),
                ));
                continue;
            }
            let job = self.job(id, index, je);
            seen.insert(id.to_ascii_lowercase(), out.len());
            out.push(job);
        }
        out
    }

    fn job(&mut self, id: &str, index: usize, je: &Entry) -> Job {
        let mut job = Job {
            id: Sp::new(id.to_owned(), je.key.span),
            index,
            span: je.value.span,
            ..Default::default()
        };
        let what = format!("job `{id}`");
        let Some(entries) = self.map(&je.value, &what, false) else {
            return job;
        };
        let is_call = entries.iter().any(|e| e.key.as_str() == Some("uses"));
        let mut ext = Vec::new();
        if is_call {
            self.check_keys(
                entries,
                keys::CALL_JOB,
                &[],
                &format!("{what}, which calls a reusable workflow"),
                &mut ext,
            );
        } else {
            self.check_keys(entries, keys::JOB, keys::JOB_EXT, &what, &mut ext);
        }
        let mut saw_steps = false;
        for e in entries {
            let Some(k) = e.key.as_str() else { continue };
            let v = &e.value;
            match k {
                "name" => job.name = self.str(v, "`name`"),
                "needs" => {
                    let needs = self.str_or_seq(v, "`needs`");
                    // Short lists are searched linearly; long ones (a job can need hundreds)
                    // through a set, so a job's needs cost linear time, not quadratic.
                    let mut seen = if needs.len() > LINEAR_NEEDS {
                        CaselessSet::with_capacity_and_hasher(needs.len(), Default::default())
                    } else {
                        CaselessSet::default()
                    };
                    let repeated: Vec<bool> = needs
                        .iter()
                        .enumerate()
                        .map(|(i, n)| {
                            if needs.len() <= LINEAR_NEEDS {
                                needs[..i]
                                    .iter()
                                    .any(|m| m.text.eq_ignore_ascii_case(&n.text))
                            } else {
                                !seen.insert(Caseless(&n.text))
                            }
                        })
                        .collect();
                    drop(seen);
                    for (n, repeated) in needs.into_iter().zip(repeated) {
                        if repeated {
                            self.push(Diagnostic::error(
                                "job-needs",
                                n.span,
                                format!(
                                    "job `{}` is listed twice in `needs` of job `{id}`",
                                    n.text
                                ),
                            ));
                            continue;
                        }
                        job.needs.push(Sp::new(n.text, n.span));
                    }
                }
                "if" => job.if_ = self.str(v, "`if`"),
                "runs-on" => job.runs_on = self.runs_on(v),
                "environment" => job.environment = self.environment(v, e.key.span),
                "env" => job.env = self.env(v, "`env`"),
                "defaults" => job.defaults = self.defaults(v),
                "concurrency" => job.concurrency = self.concurrency(v, e.key.span),
                "permissions" => job.permissions = self.permissions(v),
                "outputs" => job.outputs = self.str_map(v, "`outputs`"),
                "timeout-minutes" => {
                    job.timeout_minutes = self.number_or_expr(v, "`timeout-minutes`", true)
                }
                "continue-on-error" => {
                    job.continue_on_error = self.bool_or_expr(v, "`continue-on-error`")
                }
                "strategy" => job.strategy = self.strategy(v),
                "container" => job.container = self.container(v, e.key.span, false, "`container`"),
                "services" => {
                    if let Some(svcs) = self.map(v, "`services`", false) {
                        for s in svcs {
                            let Some(sid) = s.key.as_str() else { continue };
                            if job
                                .services
                                .iter()
                                .any(|(n, _)| n.value.eq_ignore_ascii_case(sid))
                            {
                                self.err(s.key.span, format!("service `{sid}` is defined twice"));
                                continue;
                            }
                            if let Some(c) = self.container(
                                &s.value,
                                s.key.span,
                                true,
                                &format!("service `{sid}`"),
                            ) {
                                if c.image.is_none() {
                                    self.err(
                                        s.key.span,
                                        format!("`image` is required for service `{sid}`"),
                                    );
                                }
                                job.services.push((Sp::new(sid.to_owned(), s.key.span), c));
                            }
                        }
                    }
                }
                "steps" => {
                    saw_steps = true;
                    job.steps = self.steps(v, id);
                }
                "uses" => job.uses = self.non_empty_str(v, "`uses`"),
                "with" => {
                    if let Some(w) = self.map(v, "`with`", true) {
                        for we in w {
                            let Some(wk) = we.key.as_str() else { continue };
                            if !matches!(we.value.kind, NodeKind::Scalar(_)) {
                                self.err(
                                    we.value.span,
                                    format!(
                                        "expected a scalar value for input `{wk}`, found {}",
                                        we.value.describe()
                                    ),
                                );
                                continue;
                            }
                            job.with
                                .push((Sp::new(wk.to_owned(), we.key.span), we.value.clone()));
                        }
                    }
                }
                "secrets" => {
                    if v.as_str() == Some("inherit") {
                        job.secrets = Some(CallSecrets::Inherit(v.span));
                    } else if v.as_scalar().is_some() && !v.is_null() {
                        self.err(v.span, "expected `inherit` or a mapping for `secrets`");
                    } else {
                        job.secrets = Some(CallSecrets::Map(self.str_map(v, "`secrets`")));
                    }
                }
                "cache" => job.cache = Some(v.clone()),
                "reports" => {
                    if let Err(e) = crate::run::results::parse_reports(v) {
                        self.err(v.span, &e);
                    }
                    job.reports = Some(v.clone());
                }
                _ => {}
            }
        }
        if !is_call {
            if job.runs_on.is_none() && !entries.iter().any(|e| e.key.as_str() == Some("runs-on")) {
                self.push(
                    Diagnostic::error(
                        SYNTAX,
                        je.key.span,
                        format!("`runs-on` section is missing in job `{id}`"),
                    )
                    .with_hint(
                        "add `runs-on: ubuntu-latest` (any label runs on the host with `pipe run`)",
                    ),
                );
            }
            if !saw_steps {
                self.err(
                    je.key.span,
                    format!("`steps` section is missing in job `{id}`"),
                );
            }
        }
        job
    }

    fn runs_on(&mut self, node: &Node) -> Option<RunsOn> {
        let mut r = RunsOn {
            span: node.span,
            ..Default::default()
        };
        if let NodeKind::Map(entries) = &node.kind {
            let mut ext = Vec::new();
            self.check_keys(entries, keys::RUNS_ON, &[], "`runs-on`", &mut ext);
            for e in entries {
                match e.key.as_str() {
                    Some("group") => r.group = self.non_empty_str(&e.value, "`group`"),
                    Some("labels") => r.labels = self.str_or_seq(&e.value, "`labels`"),
                    _ => {}
                }
            }
            if r.group.is_none() && r.labels.is_empty() {
                self.err(node.span, "`runs-on` needs `group` or `labels`");
            }
            return Some(r);
        }
        r.labels = self.str_or_seq(node, "`runs-on`");
        for l in &r.labels {
            if l.text.is_empty() {
                self.err(l.span, "a `runs-on` label must not be empty");
            }
        }
        Some(r)
    }

    fn environment(&mut self, node: &Node, key: Span) -> Option<Environment> {
        if node.as_scalar().is_some() {
            let name = self.non_empty_str(node, "`environment`")?;
            return Some(Environment { name, url: None });
        }
        let entries = self.map(node, "`environment`", false)?;
        let mut ext = Vec::new();
        self.check_keys(entries, keys::ENVIRONMENT, &[], "`environment`", &mut ext);
        let mut name = None;
        let mut url = None;
        for e in entries {
            match e.key.as_str() {
                Some("name") => name = self.non_empty_str(&e.value, "`name`"),
                Some("url") => url = self.str(&e.value, "`url`"),
                Some("deployment") => {
                    self.bool_or_expr(&e.value, "`deployment`");
                }
                _ => {}
            }
        }
        match name {
            Some(name) => Some(Environment { name, url }),
            None => {
                self.err(key, "`name` is required in `environment`");
                None
            }
        }
    }

    fn strategy(&mut self, node: &Node) -> Option<Strategy> {
        let entries = self.map(node, "`strategy`", false)?;
        let mut ext = Vec::new();
        self.check_keys(entries, keys::STRATEGY, &[], "`strategy`", &mut ext);
        let mut s = Strategy {
            span: node.span,
            ..Default::default()
        };
        for e in entries {
            match e.key.as_str() {
                Some("matrix") => s.matrix = self.matrix(&e.value),
                Some("fail-fast") => s.fail_fast = self.bool_or_expr(&e.value, "`fail-fast`"),
                Some("max-parallel") => {
                    s.max_parallel = self.number_or_expr(&e.value, "`max-parallel`", true)
                }
                _ => {}
            }
        }
        Some(s)
    }

    fn matrix(&mut self, node: &Node) -> Option<Matrix> {
        if let Some(sc) = node.as_scalar()
            && sc.value == ScalarValue::Str
            && is_single_expr(&sc.text)
        {
            return YStr::from_node(node).map(Matrix::Expr);
        }
        let entries = self.map(node, "`matrix`", false)?;
        let mut m = MatrixMap {
            span: node.span,
            ..Default::default()
        };
        if entries.is_empty() {
            self.push(Diagnostic::error(
                "matrix",
                node.span,
                "`matrix` must define at least one vector or `include`",
            ));
        }
        for e in entries {
            let Some(k) = e.key.as_str() else { continue };
            match k {
                "include" | "exclude" => {
                    let list = self.matrix_list(&e.value, k);
                    if k == "include" {
                        m.include = list;
                    } else {
                        m.exclude = list;
                    }
                }
                _ => {
                    if m.vectors
                        .iter()
                        .any(|(n, _)| n.value.eq_ignore_ascii_case(k))
                    {
                        self.push(Diagnostic::error(
                            "matrix",
                            e.key.span,
                            format!(
                                "matrix key `{k}` is duplicated (matrix keys are case-insensitive)"
                            ),
                        ));
                        continue;
                    }
                    let vector = match &e.value.kind {
                        NodeKind::Seq(items) => {
                            if items.is_empty() {
                                self.push(Diagnostic::error(
                                    "matrix",
                                    e.value.span,
                                    format!("matrix vector `{k}` has no values"),
                                ));
                            }
                            MatrixVector::Values(items.clone())
                        }
                        NodeKind::Scalar(sc)
                            if sc.value == ScalarValue::Str && is_single_expr(&sc.text) =>
                        {
                            match YStr::from_node(&e.value) {
                                Some(y) => MatrixVector::Expr(y),
                                None => continue,
                            }
                        }
                        _ => {
                            self.push(
                                Diagnostic::error(
                                    "matrix",
                                    e.value.span,
                                    format!(
                                        "expected a sequence or an expression for matrix vector `{k}`, found {}",
                                        e.value.describe()
                                    ),
                                )
                                .with_hint(format!("write `{k}: [value]` for a single value")),
                            );
                            continue;
                        }
                    };
                    m.vectors.push((Sp::new(k.to_owned(), e.key.span), vector));
                }
            }
        }
        Some(Matrix::Map(m))
    }

    fn matrix_list(&mut self, node: &Node, what: &str) -> Option<MatrixList> {
        match &node.kind {
            NodeKind::Scalar(sc) if sc.value == ScalarValue::Str && is_single_expr(&sc.text) => {
                YStr::from_node(node).map(MatrixList::Expr)
            }
            NodeKind::Seq(items) => {
                let mut out = Vec::new();
                for i in items {
                    match &i.kind {
                        NodeKind::Map(_) => out.push(i.clone()),
                        NodeKind::Scalar(sc)
                            if sc.value == ScalarValue::Str && is_single_expr(&sc.text) =>
                        {
                            out.push(i.clone())
                        }
                        _ => self.push(Diagnostic::error(
                            "matrix",
                            i.span,
                            format!(
                                "expected a mapping for an entry of `{what}`, found {}",
                                i.describe()
                            ),
                        )),
                    }
                }
                Some(MatrixList::Entries(out))
            }
            _ => {
                self.push(Diagnostic::error(
                    "matrix",
                    node.span,
                    format!(
                        "expected a sequence or an expression for `{what}`, found {}",
                        node.describe()
                    ),
                ));
                None
            }
        }
    }

    fn container(
        &mut self,
        node: &Node,
        key: Span,
        service: bool,
        what: &str,
    ) -> Option<Container> {
        let mut c = Container {
            span: node.span,
            ..Default::default()
        };
        if node.as_scalar().is_some() {
            c.image = Some(self.non_empty_str(node, what)?);
            return Some(c);
        }
        let entries = self.map(node, what, false)?;
        let mut ext = Vec::new();
        let allowed: Vec<&str> = keys::CONTAINER
            .iter()
            .chain(if service { keys::SERVICE_EXTRA } else { &[] }.iter())
            .copied()
            .collect();
        self.check_keys(entries, &allowed, keys::CONTAINER_EXT, what, &mut ext);
        for e in entries {
            let v = &e.value;
            match e.key.as_str() {
                Some("image") => c.image = self.non_empty_str(v, "`image`"),
                Some("credentials") => {
                    if let Some(ce) = self.map(v, "`credentials`", false) {
                        self.check_keys(ce, keys::CREDENTIALS, &[], "`credentials`", &mut ext);
                        c.username = v.get("username").and_then(|u| self.str(u, "`username`"));
                        c.password = v.get("password").and_then(|p| self.str(p, "`password`"));
                        if c.username.is_some() != c.password.is_some() {
                            self.err(
                                e.key.span,
                                "`credentials` needs both `username` and `password`",
                            );
                        }
                    }
                }
                Some("env") => c.env = self.env(v, "`env`"),
                Some("ports") => {
                    if let Some(items) = self.seq(v, "`ports`") {
                        c.ports = items.iter().filter_map(|i| self.str(i, "a port")).collect();
                    }
                }
                Some("volumes") => {
                    if let Some(items) = self.seq(v, "`volumes`") {
                        c.volumes = items
                            .iter()
                            .filter_map(|i| self.str(i, "a volume"))
                            .collect();
                    }
                }
                Some("options") => c.options = self.str(v, "`options`"),
                Some("command") => c.command = self.str(v, "`command`"),
                Some("entrypoint") => c.entrypoint = self.str(v, "`entrypoint`"),
                Some("platform") => c.platform = self.non_empty_str(v, "`platform`"),
                _ => {}
            }
        }
        if c.image.is_none() && !service {
            self.err(key, format!("`image` is required in {what}"));
        }
        Some(c)
    }

    fn steps(&mut self, node: &Node, job_id: &str) -> Vec<Step> {
        let mut out: Vec<Step> = Vec::new();
        let Some(items) = self.seq(node, "`steps`") else {
            return out;
        };
        if items.is_empty() {
            self.err(
                node.span,
                format!("`steps` of job `{job_id}` must not be empty"),
            );
        }
        for (index, item) in items.iter().enumerate() {
            if let Some(step) = self.step(item, index) {
                if let Some(id) = &step.id
                    && let Some(prev) = out
                        .iter()
                        .filter_map(|s| s.id.as_ref())
                        .find(|p| p.value.eq_ignore_ascii_case(&id.value))
                {
                    let msg = format!(
                        "step id `{}` is duplicated in job `{job_id}`; step `{}` was defined before (step ids are case-insensitive)",
                        id.value, prev.value
                    );
                    self.push(Diagnostic::error("id", id.span, msg));
                }
                out.push(step);
            }
        }
        out
    }

    fn step(&mut self, node: &Node, index: usize) -> Option<Step> {
        let entries = self.map(node, "a step", false)?;
        let mut step = Step {
            index,
            span: node.span,
            ..Default::default()
        };
        let mut ext = Vec::new();
        self.check_keys(entries, keys::STEP, keys::STEP_EXT, "a step", &mut ext);
        let has_run = entries.iter().any(|e| e.key.as_str() == Some("run"));
        let has_uses = entries.iter().any(|e| e.key.as_str() == Some("uses"));
        let first = entries.first().map(key_span).unwrap_or(node.span);
        if has_run && has_uses {
            self.err(first, "a step must have either `run` or `uses`, not both");
        } else if !has_run && !has_uses {
            self.err(first, "a step must have `run` or `uses`");
        }
        for e in entries {
            let v = &e.value;
            match e.key.as_str() {
                Some("id") => {
                    if let Some(s) = self.non_empty_str(v, "`id`") {
                        if !id_ok(&s.text) && !s.has_expr() {
                            self.push(
                                Diagnostic::error("id", s.span, format!("invalid step id `{}`", s.text))
                                    .with_hint("step ids start with a letter or `_` and contain only letters, digits, `-` and `_`"),
                            );
                        }
                        step.id = Some(Sp::new(s.text, s.span));
                    }
                }
                Some("if") => step.if_ = self.str(v, "`if`"),
                Some("name") => step.name = self.str(v, "`name`"),
                Some("uses") => step.uses = self.non_empty_str(v, "`uses`"),
                Some("run") => step.run = self.non_empty_str(v, "`run`"),
                Some("shell") => {
                    if has_uses && !has_run {
                        self.err(e.key.span, "`shell` is only available on steps with `run`");
                    }
                    step.shell = self.non_empty_str(v, "`shell`");
                }
                Some("working-directory") => {
                    if has_uses && !has_run {
                        self.err(
                            e.key.span,
                            "`working-directory` is only available on steps with `run`",
                        );
                    }
                    step.working_directory = self.non_empty_str(v, "`working-directory`");
                }
                Some("with") => {
                    if has_run && !has_uses {
                        self.err(e.key.span, "`with` is only available on steps with `uses`");
                    }
                    step.with = self.str_map(v, "`with`");
                }
                Some("env") => step.env = self.env(v, "`env`"),
                Some("continue-on-error") => {
                    step.continue_on_error = self.bool_or_expr(v, "`continue-on-error`")
                }
                Some("timeout-minutes") => {
                    step.timeout_minutes = self.number_or_expr(v, "`timeout-minutes`", true)
                }
                Some("cache") => step.cache = Some(v.clone()),
                _ => {}
            }
        }
        Some(step)
    }

    // ---- action metadata ----

    fn action(&mut self, root: &Node) -> Option<ActionMeta> {
        let entries = match &root.kind {
            NodeKind::Map(m) => m,
            _ => {
                self.push(Diagnostic::error(
                    SYNTAX,
                    root.span,
                    format!(
                        "action metadata must be a mapping, found {}",
                        root.describe()
                    ),
                ));
                return None;
            }
        };
        let mut ext = Vec::new();
        self.check_keys(entries, keys::ACTION, &[], "action metadata", &mut ext);
        let mut meta = ActionMeta::default();
        let first = entries.first().map(key_span).unwrap_or(root.span);
        for e in entries {
            let v = &e.value;
            match e.key.as_str() {
                Some("name") => meta.name = self.str(v, "`name`"),
                Some("description") => meta.description = self.str(v, "`description`"),
                Some("inputs") => {
                    if let Some(inputs) = self.map(v, "`inputs`", true) {
                        for ie in inputs {
                            let Some(id) = ie.key.as_str() else { continue };
                            let fields = self
                                .map(&ie.value, &format!("input `{id}`"), true)
                                .unwrap_or(&[]);
                            self.check_keys(
                                fields,
                                keys::ACTION_INPUT,
                                &[],
                                &format!("input `{id}`"),
                                &mut ext,
                            );
                            let required = match ie.value.get("required") {
                                Some(r) => match YStr::from_node(r) {
                                    // action.yml's `required` is often written as a string
                                    Some(y) => matches!(y.text.as_str(), "true" | "True" | "TRUE"),
                                    None => false,
                                },
                                None => false,
                            };
                            meta.inputs.push(ActionInput {
                                id: Sp::new(id.to_owned(), ie.key.span),
                                required,
                                default: ie
                                    .value
                                    .get("default")
                                    .and_then(|d| self.scalar_value(d, "`default`")),
                                deprecation: ie
                                    .value
                                    .get("deprecationMessage")
                                    .and_then(|d| self.str(d, "`deprecationMessage`")),
                            });
                        }
                    }
                }
                Some("outputs") => {
                    if let Some(outputs) = self.map(v, "`outputs`", true) {
                        for oe in outputs {
                            let Some(id) = oe.key.as_str() else { continue };
                            let fields = self
                                .map(&oe.value, &format!("output `{id}`"), true)
                                .unwrap_or(&[]);
                            self.check_keys(
                                fields,
                                keys::ACTION_OUTPUT,
                                &[],
                                &format!("output `{id}`"),
                                &mut ext,
                            );
                            let value = oe.value.get("value").and_then(|x| self.str(x, "`value`"));
                            meta.outputs
                                .push((Sp::new(id.to_owned(), oe.key.span), value));
                        }
                    }
                }
                Some("runs") => meta.runs = self.action_runs(v),
                _ => {}
            }
        }
        if !entries.iter().any(|e| e.key.as_str() == Some("runs")) {
            self.push(Diagnostic::error(
                SYNTAX,
                first,
                "`runs` section is missing in action metadata",
            ));
        }
        Some(meta)
    }

    fn action_runs(&mut self, node: &Node) -> ActionRuns {
        let Some(entries) = self.map(node, "`runs`", false) else {
            return ActionRuns::Invalid;
        };
        let Some(using_node) = node.get("using") else {
            self.err(node.span, "`using` is required in `runs`");
            return ActionRuns::Invalid;
        };
        let Some(using) = self.non_empty_str(using_node, "`using`") else {
            return ActionRuns::Invalid;
        };
        let mut ext = Vec::new();
        match using.text.as_str() {
            "composite" => {
                self.check_keys(
                    entries,
                    keys::RUNS_COMPOSITE,
                    &[],
                    "`runs` of a composite action",
                    &mut ext,
                );
                let steps = match node.get("steps") {
                    Some(s) => self.steps(s, "composite action"),
                    None => {
                        self.err(
                            node.span,
                            "`steps` is required in `runs` of a composite action",
                        );
                        Vec::new()
                    }
                };
                for s in &steps {
                    if s.run.is_some() && s.shell.is_none() {
                        // GitHub requires an explicit shell for run steps of composite actions.
                        self.err(s.span, "a `run` step of a composite action needs `shell`");
                    }
                }
                ActionRuns::Composite { steps }
            }
            u if u.starts_with("node") => {
                self.check_keys(
                    entries,
                    keys::RUNS_NODE,
                    &[],
                    "`runs` of a JavaScript action",
                    &mut ext,
                );
                let Some(main) = node
                    .get("main")
                    .and_then(|m| self.non_empty_str(m, "`main`"))
                else {
                    self.err(
                        node.span,
                        "`main` is required in `runs` of a JavaScript action",
                    );
                    return ActionRuns::Invalid;
                };
                let opt = |k: &str| node.get(k).and_then(YStr::from_node);
                ActionRuns::Node {
                    using: using.clone(),
                    main,
                    pre: opt("pre"),
                    pre_if: opt("pre-if"),
                    post: opt("post"),
                    post_if: opt("post-if"),
                }
            }
            "docker" => {
                self.check_keys(
                    entries,
                    keys::RUNS_DOCKER,
                    &[],
                    "`runs` of a Docker action",
                    &mut ext,
                );
                let Some(image) = node
                    .get("image")
                    .and_then(|m| self.non_empty_str(m, "`image`"))
                else {
                    self.err(
                        node.span,
                        "`image` is required in `runs` of a Docker action",
                    );
                    return ActionRuns::Invalid;
                };
                let args = node
                    .get("args")
                    .and_then(|a| self.seq(a, "`args`"))
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| self.str(i, "an argument"))
                            .collect()
                    })
                    .unwrap_or_default();
                let env = node
                    .get("env")
                    .map(|e| self.env(e, "`env`"))
                    .unwrap_or_default();
                let opt = |k: &str| node.get(k).and_then(YStr::from_node);
                ActionRuns::Docker {
                    image,
                    args,
                    entrypoint: opt("entrypoint"),
                    env,
                    pre_entrypoint: opt("pre-entrypoint"),
                    post_entrypoint: opt("post-entrypoint"),
                }
            }
            other => {
                self.push(
                    Diagnostic::error(
                        SYNTAX,
                        using.span,
                        format!("unknown `using` value `{other}`"),
                    )
                    .with_hint("expected `composite`, `docker`, `node20` or `node24`"),
                );
                ActionRuns::Invalid
            }
        }
    }
}

/// Formats names as a list: `a`, `b` or `c`.
pub fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diags(src: &str) -> Vec<String> {
        let (_, d) = load_str(src);
        let f = crate::source::SourceFile::new("t.yml", src);
        d.iter()
            .map(|d| {
                let lc = f.line_col(d.span.start);
                format!("{}:{}: {} [{}]", lc.line, lc.col, d.message, d.rule)
            })
            .collect()
    }

    #[test]
    fn repeated_needs_in_short_and_long_lists() {
        // Up to `LINEAR_NEEDS` entries are searched linearly, longer lists through a set: both
        // report a repeat (in any case) once, at the repeat, and keep the first spelling.
        let ids: Vec<String> = (0..20).map(|i| format!("j{i}")).collect();
        for n in [3, LINEAR_NEEDS, 20] {
            let mut needs: Vec<String> = ids[..n].to_vec();
            needs.insert(2, "J1".to_owned());
            let mut src = String::from("on: push\njobs:\n");
            for id in &ids {
                src.push_str(&format!(
                    "  {id}:\n    runs-on: x\n    steps: [{{run: a}}]\n"
                ));
            }
            src.push_str(&format!(
                "  last:\n    needs: [{}]\n    runs-on: x\n    steps: [{{run: a}}]\n",
                needs.join(", ")
            ));
            let d = diags(&src);
            assert_eq!(d.len(), 1, "{n}: {d:?}");
            assert!(
                d[0].contains("job `J1` is listed twice in `needs` of job `last`"),
                "{n}: {}",
                d[0]
            );
            let (wf, _) = load_str(&src);
            let wf = wf.expect("workflow");
            let got: Vec<&str> = wf.jobs[20].needs.iter().map(|s| s.value.as_str()).collect();
            assert_eq!(got, ids[..n].iter().map(String::as_str).collect::<Vec<_>>());
        }
    }

    #[test]
    fn minimal_workflow_is_clean() {
        let src = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n";
        assert_eq!(diags(src), Vec::<String>::new());
        let (wf, _) = load_str(src);
        let wf = wf.expect("workflow");
        assert_eq!(wf.on[0].name.value, "push");
        assert_eq!(
            wf.jobs[0].steps[0].run.as_ref().map(|r| r.text.as_str()),
            Some("echo hi")
        );
    }

    #[test]
    fn reports_every_problem() {
        let src = "on: push\njobs:\n  build:\n    runs-onn: x\n    steps:\n      - run: a\n        with: {x: 1}\n      - name: nothing\n  Build:\n    runs-on: x\n    steps: []\n";
        let d = diags(src);
        assert_eq!(
            d,
            vec![
                "3:3: `runs-on` section is missing in job `build` [syntax-check]",
                "4:5: unexpected key `runs-onn` for job `build` [syntax-check]",
                "7:9: `with` is only available on steps with `uses` [syntax-check]",
                "8:9: a step must have `run` or `uses` [syntax-check]",
                "9:3: job id `Build` is duplicated; job `build` was defined before (job ids are case-insensitive) [id]",
            ]
        );
    }

    #[test]
    fn on_forms_and_filters() {
        let src = "on:\n  push:\n    branches: [main]\n    branches-ignore: [x]\n  pull_request:\n    types: [opened, bogus]\n  schedule:\n    - cron: '0 0 * * *'\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: a\n";
        let d = diags(src);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("cannot both be used"));
        assert!(d[1].starts_with("6:21: unknown activity type `bogus`"));
        let (wf, _) = load_str(src);
        let wf = wf.expect("wf");
        assert_eq!(wf.on.len(), 3);
        assert_eq!(wf.on[2].crons[0].text, "0 0 * * *");
    }

    #[test]
    fn numbers_become_g15_strings() {
        let src = "on: push\nenv:\n  V: 3.10\n  B: true\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: a\n";
        let (wf, d) = load_str(src);
        assert!(d.is_empty());
        let wf = wf.expect("wf");
        let vals: Vec<_> = wf
            .env
            .entries()
            .map(|(k, v)| (k.clone(), v.text.clone()))
            .collect();
        assert_eq!(
            vals,
            vec![("V".into(), "3.1".into()), ("B".into(), "true".into())]
        );
    }

    #[test]
    fn non_mapping_and_empty() {
        assert_eq!(
            diags("- a\n- b\n"),
            vec!["1:1: a workflow must be a mapping, found a sequence [syntax-check]"]
        );
        assert_eq!(diags(""), vec!["1:1: workflow is empty [syntax-check]"]);
        assert_eq!(
            diags("name: x\n"),
            vec![
                "1:1: `jobs` section is missing in workflow [syntax-check]",
                "1:1: `on` section is missing in workflow [syntax-check]",
            ]
        );
    }
}
