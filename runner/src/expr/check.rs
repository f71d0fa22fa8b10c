//! Static checks of expressions, run before anything executes.
//!
//! GitHub itself rejects some mistakes when it loads a workflow (an unknown function or a wrong
//! number of arguments, a context that is not available at that key); others only fail later or
//! silently yield `null`. This module reports the former exactly and the latter only where the
//! shape of the data is fully known, so it never flags something that works on github.com:
//! `github.foo`, `runner.bogus`, `steps.<id>.bogus`, `strategy.bogus`, `job.bogus` are reported,
//! while the contents of `github.event`, `env`, `vars`, `secrets`, unknown `inputs` or a matrix
//! built by an expression are never guessed at. Where actionlint has a check we reuse its kind
//! (`expression`) and the spirit of its messages.

use super::ast::{Call, Expr, ExprKind, Func};
use super::availability::{
    ContextName, ContextSet, FunctionSet, SpecialFunction, WorkflowKey, availability, keys_allowing,
};
use super::eval::{Segment, arity_message, parse_format};
use super::json;

/// One problem found by [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// Byte offset in the checked expression's source.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
    /// Lowercase message without a trailing period.
    pub message: String,
    /// Rule id (`expression`).
    pub rule: &'static str,
    /// Whether GitHub itself rejects the workflow for it when loading (unknown context or
    /// function, wrong arity, a context or function not available at that key); otherwise it is
    /// a lint finding (it evaluates, but probably not as meant).
    pub error: bool,
}

/// A job known by id, with its outputs if they are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRef {
    /// The job id.
    pub id: String,
    /// Declared output names; `None` when unknown.
    pub outputs: Option<Vec<String>>,
}

impl JobRef {
    /// A job whose outputs are not known.
    pub fn new(id: impl Into<String>) -> JobRef {
        JobRef {
            id: id.into(),
            outputs: None,
        }
    }

    /// A job with known output names.
    pub fn with_outputs(id: impl Into<String>, outputs: &[&str]) -> JobRef {
        JobRef {
            id: id.into(),
            outputs: Some(outputs.iter().map(|s| (*s).to_owned()).collect()),
        }
    }
}

/// What an expression may refer to at the place it is written. `None` in a list means "not known
/// here" and switches the corresponding checks off.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Contexts allowed here.
    pub contexts: ContextSet,
    /// Special functions (status functions, `hashFiles`) allowed here.
    pub functions: FunctionSet,
    /// Ids of the steps of the job that come before this place.
    pub steps: Option<Vec<String>>,
    /// The job's direct `needs` (shared: jobs with the same needs list share one).
    pub needs: Option<std::sync::Arc<[JobRef]>>,
    /// The jobs of a reusable workflow (the `jobs` context in `on.workflow_call.outputs`).
    pub jobs: Option<Vec<JobRef>>,
    /// Matrix keys; `None` when the matrix is built dynamically.
    pub matrix: Option<Vec<String>>,
    /// Declared inputs.
    pub inputs: Option<Vec<String>>,
}

impl Default for Scope {
    /// Everything allowed, nothing known.
    fn default() -> Self {
        Scope {
            contexts: ContextSet::ALL,
            functions: FunctionSet::ALL,
            steps: None,
            needs: None,
            jobs: None,
            matrix: None,
            inputs: None,
        }
    }
}

impl Scope {
    /// The scope at a workflow key: contexts and functions from GitHub's availability table,
    /// everything else unknown.
    pub fn at(key: WorkflowKey) -> Scope {
        let (contexts, functions) = availability(key);
        Scope {
            contexts,
            functions,
            ..Scope::default()
        }
    }
}

/// Checks `expr` against `scope`; issues are in source order.
pub fn check(expr: &Expr, scope: &Scope) -> Vec<Issue> {
    let mut c = Checker {
        scope,
        issues: Vec::new(),
    };
    c.expr(expr);
    c.issues.sort_by_key(|i| i.offset);
    c.issues
}

/// What is statically known about a value.
#[derive(Clone, Debug)]
enum Ty {
    /// Nothing.
    Any,
    /// A string, number, boolean or null.
    Leaf,
    /// An object with exactly these (lower-case) properties.
    Strict(Vec<(String, Ty)>),
    /// An object with any keys, all of this shape.
    Map(Box<Ty>),
}

fn strict(props: &[(&str, Ty)]) -> Ty {
    Ty::Strict(
        props
            .iter()
            .map(|(k, t)| ((*k).to_ascii_lowercase(), t.clone()))
            .collect(),
    )
}

fn leaves(names: &[&str]) -> Ty {
    Ty::Strict(
        names
            .iter()
            .map(|k| (k.to_ascii_lowercase(), Ty::Leaf))
            .collect(),
    )
}

/// Properties of `github` (docs "github context" plus the undocumented ones actionlint knows).
const GITHUB_PROPS: &[&str] = &[
    "action",
    "action_path",
    "action_ref",
    "action_repository",
    "action_status",
    "actor",
    "actor_id",
    "api_url",
    "artifact_cache_size_limit",
    "artifacts",
    "artifacts_list",
    "base_ref",
    "env",
    "event_name",
    "event_path",
    "graphql_url",
    "head_ref",
    "job",
    "output",
    "path",
    "ref",
    "ref_name",
    "ref_protected",
    "ref_type",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "repository_visibility",
    "repositoryUrl",
    "retention_days",
    "run_attempt",
    "run_id",
    "run_number",
    "secret_source",
    "server_url",
    "sha",
    "state",
    "step_summary",
    "token",
    "triggering_actor",
    "workflow",
    "workflow_ref",
    "workflow_sha",
    "workspace",
];

fn github_ty() -> Ty {
    let Ty::Strict(mut props) = leaves(GITHUB_PROPS) else {
        return Ty::Any;
    };
    props.push(("event".to_owned(), Ty::Any));
    Ty::Strict(props)
}

fn job_ty() -> Ty {
    strict(&[
        ("check_run_id", Ty::Leaf),
        ("container", leaves(&["id", "network"])),
        (
            "services",
            Ty::Map(Box::new(strict(&[
                ("id", Ty::Leaf),
                ("network", Ty::Leaf),
                ("ports", Ty::Any),
            ]))),
        ),
        ("status", Ty::Leaf),
        ("workflow_ref", Ty::Leaf),
        ("workflow_sha", Ty::Leaf),
        ("workflow_repository", Ty::Leaf),
        ("workflow_file_path", Ty::Leaf),
    ])
}

fn job_result_ty(outputs: Option<&[String]>) -> Ty {
    let outputs = match outputs {
        Some(names) => Ty::Strict(
            names
                .iter()
                .map(|n| (n.to_ascii_lowercase(), Ty::Leaf))
                .collect(),
        ),
        None => Ty::Any,
    };
    strict(&[("outputs", outputs), ("result", Ty::Leaf)])
}

fn jobs_ty(jobs: Option<&[JobRef]>) -> Ty {
    match jobs {
        Some(jobs) => Ty::Strict(
            jobs.iter()
                .map(|j| {
                    (
                        j.id.to_ascii_lowercase(),
                        job_result_ty(j.outputs.as_deref()),
                    )
                })
                .collect(),
        ),
        None => Ty::Map(Box::new(job_result_ty(None))),
    }
}

fn keys_ty(keys: Option<&[String]>) -> Ty {
    match keys {
        Some(keys) => Ty::Strict(
            keys.iter()
                .map(|k| (k.to_ascii_lowercase(), Ty::Any))
                .collect(),
        ),
        None => Ty::Any,
    }
}

struct Checker<'a> {
    scope: &'a Scope,
    issues: Vec<Issue>,
}

impl Checker<'_> {
    fn issue(&mut self, e: &Expr, message: String) {
        self.push(e, message, false);
    }

    fn error(&mut self, e: &Expr, message: String) {
        self.push(e, message, true);
    }

    fn push(&mut self, e: &Expr, message: String, error: bool) {
        self.issues.push(Issue {
            offset: e.span.start,
            len: e.span.end - e.span.start,
            message,
            rule: "expression",
            error,
        });
    }

    fn context_ty(&self, c: ContextName) -> Ty {
        let s = self.scope;
        match c {
            ContextName::Github => github_ty(),
            ContextName::Job => job_ty(),
            ContextName::Runner => leaves(&[
                "name",
                "os",
                "arch",
                "temp",
                "tool_cache",
                "debug",
                "environment",
                "workspace",
            ]),
            ContextName::Strategy => {
                leaves(&["fail-fast", "job-index", "job-total", "max-parallel"])
            }
            ContextName::Steps => {
                let step = strict(&[
                    ("outputs", Ty::Any),
                    ("outcome", Ty::Leaf),
                    ("conclusion", Ty::Leaf),
                ]);
                match &s.steps {
                    Some(ids) => Ty::Strict(
                        ids.iter()
                            .map(|i| (i.to_ascii_lowercase(), step.clone()))
                            .collect(),
                    ),
                    None => Ty::Map(Box::new(step)),
                }
            }
            ContextName::Needs => jobs_ty(s.needs.as_deref()),
            ContextName::Jobs => jobs_ty(s.jobs.as_deref()),
            ContextName::Matrix => keys_ty(s.matrix.as_deref()),
            ContextName::Inputs => keys_ty(s.inputs.as_deref()),
            ContextName::Env | ContextName::Vars | ContextName::Secrets => Ty::Any,
        }
    }

    fn expr(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Null | ExprKind::Bool(_) | ExprKind::Number(_) | ExprKind::String(_) => {
                Ty::Leaf
            }
            ExprKind::Context(name) => self.context(e, &name.text),
            ExprKind::Property { receiver, name } => {
                let t = self.expr(receiver);
                self.property(e, receiver, t, &name.text)
            }
            ExprKind::Index { receiver, index } => {
                let t = self.expr(receiver);
                self.expr(index);
                match (&index.kind, t) {
                    (ExprKind::String(key), t) => self.property(e, receiver, t, key),
                    (_, Ty::Map(inner)) => *inner,
                    _ => Ty::Any,
                }
            }
            ExprKind::Filter { receiver } => {
                self.expr(receiver);
                Ty::Any
            }
            ExprKind::Not(x) => {
                self.expr(x);
                Ty::Leaf
            }
            ExprKind::Binary { left, right, .. } => {
                self.expr(left);
                self.expr(right);
                Ty::Leaf
            }
            ExprKind::Logical { operands, .. } => {
                for x in operands {
                    self.expr(x);
                }
                Ty::Any
            }
            ExprKind::Call(call) => {
                for a in &call.args {
                    self.expr(a);
                }
                self.call(e, call);
                Ty::Any
            }
        }
    }

    fn context(&mut self, e: &Expr, name: &str) -> Ty {
        let Some(c) = ContextName::from_name(name) else {
            let hint = match name {
                "True" | "TRUE" | "False" | "FALSE" | "Null" | "NULL" => {
                    "; the literals `true`, `false` and `null` are lower case"
                }
                _ => "",
            };
            let all = list(ContextName::ALL.iter().map(|c| c.as_str()));
            self.error(
                e,
                format!("unknown context `{name}`{hint}; available contexts are {all}"),
            );
            return Ty::Any;
        };
        if !self.scope.contexts.contains(c) {
            let avail: Vec<&str> = self
                .scope
                .contexts
                .iter()
                .map(ContextName::as_str)
                .collect();
            let tail = if avail.is_empty() {
                "no context is available here".to_owned()
            } else {
                format!("available contexts here are {}", list(avail.into_iter()))
            };
            self.error(e, format!("context `{c}` is not allowed here; {tail}"));
        }
        self.context_ty(c)
    }

    fn property(&mut self, e: &Expr, receiver: &Expr, t: Ty, name: &str) -> Ty {
        match t {
            Ty::Strict(props) => {
                let lower = name.to_ascii_lowercase();
                match props.into_iter().find(|(k, _)| *k == lower) {
                    Some((_, t)) => t,
                    None => {
                        self.issue(
                            e,
                            format!("property `{name}` is not defined in `{receiver}`"),
                        );
                        Ty::Any
                    }
                }
            }
            Ty::Map(inner) => *inner,
            Ty::Any | Ty::Leaf => Ty::Any,
        }
    }

    fn call(&mut self, e: &Expr, call: &Call) {
        let Some(func) = call.func else {
            let all = list(Func::ALL.iter().map(|f| f.name()));
            self.error(
                e,
                format!(
                    "unknown function `{}`; available functions are {all}",
                    call.name.text
                ),
            );
            return;
        };
        let n = call.args.len();
        if n < func.min_args() || n > func.max_args() {
            self.error(e, arity_message(func, n));
            return;
        }
        let special = match func {
            Func::Success => Some(SpecialFunction::Success),
            Func::Failure => Some(SpecialFunction::Failure),
            Func::Cancelled => Some(SpecialFunction::Cancelled),
            Func::Always => Some(SpecialFunction::Always),
            Func::HashFiles => Some(SpecialFunction::HashFiles),
            _ => None,
        };
        if let Some(sf) = special
            && !self.scope.functions.contains(sf)
        {
            let keys = list(keys_allowing(sf).map(|k| k.as_str()));
            self.error(
                e,
                format!(
                    "function `{}` is not allowed here; it can only be used in {keys}",
                    call.name.text
                ),
            );
        }
        match func {
            Func::Case if n.is_multiple_of(2) => self.error(
                e,
                format!(
                    "`case` needs an odd number of arguments (predicate and value pairs, then a default), got {n}"
                ),
            ),
            Func::Format => {
                if let ExprKind::String(f) = &call.args[0].kind {
                    self.format(e, f, n - 1);
                }
            }
            Func::FromJson => {
                if let ExprKind::String(s) = &call.args[0].kind
                    && let Err(err) = json::read(s)
                {
                    self.issue(
                        &call.args[0],
                        format!(
                            "`fromJSON` argument is not valid JSON: {} (at byte {})",
                            err.message, err.offset
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    fn format(&mut self, e: &Expr, f: &str, nargs: usize) {
        match parse_format(f, nargs) {
            Err(message) => self.issue(e, message),
            Ok(segs) => {
                let mut used = vec![false; nargs];
                for s in &segs {
                    if let Segment::Arg(i, _) = s
                        && let Some(u) = used.get_mut(*i)
                    {
                        *u = true;
                    }
                }
                for (i, _) in used.iter().enumerate().filter(|(_, u)| !**u) {
                    self.issue(
                        e,
                        format!(
                            "format string `{f}` does not use placeholder `{{{i}}}`; remove the unused argument or add the placeholder"
                        ),
                    );
                }
            }
        }
    }
}

/// Formats names as a list: `` `a`, `b` and `c` ``.
fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.map(|s| format!("`{s}`")).collect();
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse::parse;

    fn issues(src: &str, scope: &Scope) -> Vec<String> {
        let e = parse(src).expect("parses");
        check(&e, scope).into_iter().map(|i| i.message).collect()
    }

    #[test]
    fn unknown_names() {
        let s = Scope::default();
        assert!(issues("github.sha", &s).is_empty());
        assert!(issues("GITHUB.SHA", &s).is_empty());
        assert!(issues("github.event.anything.at.all", &s).is_empty());
        assert!(issues("env.ANY || vars.x || secrets.y", &s).is_empty());
        assert_eq!(
            issues("github.foo", &s),
            ["property `foo` is not defined in `github`"]
        );
        assert_eq!(issues("runner.bogus", &s).len(), 1);
        assert_eq!(issues("strategy['bogus']", &s).len(), 1);
        assert!(issues("strategy.job-index", &s).is_empty());
        assert_eq!(issues("job.bogus", &s).len(), 1);
        assert!(issues("job.services.pg.ports[5432]", &s).is_empty());
        assert_eq!(issues("job.services.pg.bogus", &s).len(), 1);
        assert_eq!(issues("steps.x.bogus", &s).len(), 1);
        assert!(issues("steps.x.outputs.anything", &s).is_empty());
        assert!(issues("foo.bar", &s)[0].starts_with("unknown context `foo`"));
        assert!(issues("True", &s)[0].contains("lower case"));
        assert!(issues("nope(1)", &s)[0].starts_with("unknown function `nope`"));
    }

    #[test]
    fn contextual() {
        let mut s = Scope::at(WorkflowKey::StepRun);
        s.steps = Some(vec!["build".into()]);
        s.needs = Some(vec![JobRef::with_outputs("setup", &["version"])].into());
        s.matrix = Some(vec!["os".into()]);
        assert!(
            issues(
                "steps.build.outputs.x && needs.setup.outputs.version && matrix.os",
                &s
            )
            .is_empty()
        );
        assert_eq!(issues("steps.later.outcome", &s).len(), 1);
        assert_eq!(issues("needs.other.result", &s).len(), 1);
        assert_eq!(issues("needs.setup.outputs.nope", &s).len(), 1);
        assert_eq!(issues("matrix.arch", &s).len(), 1);
        assert!(issues("success()", &s)[0].contains("is not allowed here"));
        assert!(issues("hashFiles('x')", &s).is_empty());
        let env = Scope::at(WorkflowKey::Env);
        assert!(issues("env.X", &env)[0].starts_with("context `env` is not allowed here"));
        assert!(issues("hashFiles('x')", &env)[0].contains("can only be used in"));
    }

    #[test]
    fn functions() {
        let s = Scope::default();
        assert_eq!(
            issues("contains('a')", &s),
            ["function `contains` takes exactly 2 arguments but 1 was given"]
        );
        assert_eq!(issues("format('{0} {1}', 1)", &s).len(), 1);
        assert_eq!(issues("format('{0}', 1, 2)", &s).len(), 1);
        assert!(issues("format('{0}', 1)", &s).is_empty());
        assert!(issues("format('{{0}}')", &s).is_empty());
        assert_eq!(issues("format('{', 1)", &s).len(), 1);
        assert_eq!(issues("fromJSON('{')", &s).len(), 1);
        assert!(issues("fromJSON('{\"a\": [1]}')", &s).is_empty());
        assert_eq!(issues("case(true, 1, false, 2)", &s).len(), 1);
        assert!(issues("case(true, 1, 2)", &s).is_empty());
        assert!(issues("toJson(github) && FROMJSON('1')", &s).is_empty());
    }
}
