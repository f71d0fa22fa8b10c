//! The plan: which jobs and matrix legs exist, what they are called and what they depend on —
//! everything GitHub decides before a step runs.
//!
//! **Invariant: planning is pure.** No I/O, clock or environment: the workflow, the contexts
//! available to `strategy` (github, vars, inputs) and any reusable workflows it calls come in as
//! arguments, so plans are snapshot-testable and `pipe list` shows exactly what `pipe run` will
//! do. Matrices whose expressions read `needs` are dynamic: they are expanded by the scheduler
//! when their needs finish, with the same code ([`expand_job_matrix`]).
//!
//! # The plan as JSON (`pipe list --json`, schema version 1)
//!
//! ```json
//! {"version": 1, "workflow": ".github/workflows/ci.yml", "name": "CI", "event": "push",
//!  "jobs": [{"id": "test", "name": "test", "index": 1, "needs": ["build"], "selected": true,
//!            "if": "github.event_name == 'push'", "runs_on": ["ubuntu-latest"],
//!            "expansion": "expanded", "job_total": 2,
//!            "legs": [{"name": "test (linux)", "matrix": {"os": "linux"}, "job_index": 0,
//!                      "selected": true}],
//!            "error": null, "call": null}],
//!  "order": ["build", "test"], "matrix_filter": [{"key": "os", "value": "linux"}]}
//! ```
//!
//! - `jobs` are in file order; `order` lists job ids in dependency order, ties broken by file
//!   position. `needs` holds the canonical ids of the direct needs (GitHub matches them ignoring
//!   case). `if` is omitted when the job has none; `matrix_filter` when `--matrix` was not given.
//! - `expansion` is `none` (no matrix: one leg, `matrix` null), `expanded`, `dynamic` (the
//!   matrix reads `needs`: `legs` is empty and `job_total` null until they have run) or `error`
//!   (`error` says why; the job fails when it would run).
//! - `legs` are in `strategy.job-index` order; `selected` is false for legs `--matrix` leaves out.
//! - `call` is set for a job that calls a reusable workflow: `{"uses", "kind": "local" |
//!   "remote", "workflow": callee path or null, "expanded": bool, "reason": why it is shown as one
//!   opaque job or null, "jobs": the callee's jobs (ids `caller/callee`, names
//!   `caller name / callee name`, `needs` among themselves) when expanded}`.

pub mod matrix;
pub mod render;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::context::Contexts;
use crate::diag::did_you_mean;
use crate::expr::{Object, Template, Value};
use crate::source::Span;
use crate::workflow::{
    Caseless, CaselessMap, InputType, Job, Matrix, MatrixList, MatrixVector, Workflow,
    WorkflowCall, YStr,
};
use crate::yaml::{Node, NodeKind, ScalarValue};

pub use matrix::{Leg, MatrixError, MatrixSpec, display_name};

/// Version of the JSON form of a plan.
pub const JSON_VERSION: u32 = 1;

/// Which jobs and legs to run (`-j`, `--no-deps`, `--matrix`).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Job ids to run (empty: all).
    pub jobs: Vec<String>,
    /// Do not pull in the needs of selected jobs.
    pub no_deps: bool,
    /// `key=value` filters on matrix legs.
    pub matrix: Vec<(String, String)>,
}

/// A selection that names something that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectionError {
    /// What is wrong, with a did-you-mean where one helps.
    pub message: String,
}

/// One planned leg of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedLeg {
    /// Display name (`test (linux, 1.5)`).
    pub name: String,
    /// Matrix values (an object), null for a job without a matrix.
    pub matrix: Value,
    /// `strategy.job-index`.
    pub job_index: usize,
    /// Whether `--matrix` selected it.
    pub selected: bool,
}

/// How a job's legs are known.
#[derive(Clone, Debug, PartialEq)]
pub enum Legs {
    /// Expanded (one leg for a job without a matrix).
    Expanded {
        /// The legs in `job-index` order.
        legs: Vec<PlannedLeg>,
    },
    /// The matrix reads `needs`: expanded when they finish.
    Dynamic,
    /// Expansion failed; the job fails with this message when it would run.
    Error {
        /// Why.
        message: String,
        /// Where.
        span: Span,
    },
}

/// Where a called reusable workflow comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// `./.github/workflows/x.yml` or `$/.github/workflows/x.yml` in this repository.
    Local,
    /// `owner/repo/.github/workflows/x.yml@ref`.
    Remote,
}

/// A job's call of a reusable workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct CallPlan {
    /// `uses:` as written.
    pub uses: String,
    /// Local or remote.
    pub kind: CallKind,
    /// The callee file, when it was read.
    pub workflow: Option<String>,
    /// The callee's jobs, when they are shown; `None` for one opaque job.
    pub plan: Option<Box<Plan>>,
    /// Why the call is one opaque job.
    pub reason: Option<String>,
}

/// One job of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedJob {
    /// Position in the workflow's `jobs:` (file order).
    pub index: usize,
    /// The job id as written (`caller/callee` for the jobs of a called workflow).
    pub id: String,
    /// The name before matrix expansion.
    pub name: String,
    /// Indices of the direct needs.
    pub needs: Vec<usize>,
    /// Ids of the direct needs (for display); jobs with the same needs share one list.
    pub needs_ids: Arc<[String]>,
    /// Whether the job is selected to run.
    pub selected: bool,
    /// Whether the job has a matrix.
    pub has_matrix: bool,
    /// Its legs.
    pub legs: Legs,
    /// `if:` as written, if any.
    pub condition: Option<String>,
    /// `runs-on` labels as written.
    pub runs_on: Vec<String>,
    /// `uses:` of a reusable-workflow call.
    pub uses: Option<String>,
    /// The call of a reusable workflow, planned.
    pub call: Option<CallPlan>,
}

impl PlannedJob {
    /// `strategy.job-total` when the legs are known.
    pub fn job_total(&self) -> Option<usize> {
        match &self.legs {
            Legs::Expanded { legs } => Some(legs.len()),
            _ => None,
        }
    }

    /// The selected legs (none while dynamic or failed).
    pub fn selected_legs(&self) -> impl Iterator<Item = &PlannedLeg> {
        let legs: &[PlannedLeg] = match &self.legs {
            Legs::Expanded { legs } => legs,
            _ => &[],
        };
        legs.iter().filter(|l| l.selected)
    }
}

/// The plan of one workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Workflow file as given.
    pub workflow: String,
    /// Workflow name.
    pub name: String,
    /// `github.event_name` the plan was made for, if known.
    pub event: Option<String>,
    /// Jobs in file order.
    pub jobs: Vec<PlannedJob>,
    /// Job indices in dependency order, ties broken by file position.
    pub order: Vec<usize>,
    /// `--matrix` filters (applied to dynamic matrices when they expand).
    pub matrix_filter: Vec<(String, String)>,
}

/// Inputs of planning (all of them: planning reads nothing else).
pub struct PlanInput<'a> {
    /// The loaded (valid) workflow.
    pub workflow: &'a Workflow,
    /// Its path as shown.
    pub path: &'a str,
    /// Contexts available in `strategy`: `github`, `vars`, `inputs`.
    pub contexts: &'a Contexts,
    /// What to run.
    pub selection: &'a Selection,
}

/// A reusable workflow that a job of the planned workflow calls, as the caller of [`plan_with`]
/// read it.
pub struct Callee<'a> {
    /// The job's `uses:` as written.
    pub uses: &'a str,
    /// The callee file and its model, or why it could not be used.
    pub workflow: Result<(&'a str, &'a Workflow), String>,
}

/// Whether a job's `uses:` names a workflow of this repository.
pub fn is_local_call(uses: &str) -> bool {
    uses.starts_with("./") || uses.starts_with("$/")
}

/// Whether any expression in the job's strategy reads `needs` (known only at run time).
fn strategy_reads_needs(job: &Job) -> bool {
    let Some(strategy) = &job.strategy else {
        return false;
    };
    let mut texts: Vec<&str> = Vec::new();
    match &strategy.matrix {
        Some(Matrix::Expr(y)) => texts.push(&y.text),
        Some(Matrix::Map(m)) => {
            for (_, v) in &m.vectors {
                match v {
                    MatrixVector::Expr(y) => texts.push(&y.text),
                    MatrixVector::Values(items) => collect_node_texts(items, &mut texts),
                }
            }
            for l in [&m.include, &m.exclude].into_iter().flatten() {
                match l {
                    MatrixList::Expr(y) => texts.push(&y.text),
                    MatrixList::Entries(items) => collect_node_texts(items, &mut texts),
                }
            }
        }
        None => {}
    }
    texts.iter().any(|t| mentions_context(t, "needs"))
}

fn collect_node_texts<'a>(nodes: &'a [Node], out: &mut Vec<&'a str>) {
    for n in nodes {
        match &n.kind {
            NodeKind::Scalar(s) => out.push(&s.text),
            NodeKind::Seq(items) => collect_node_texts(items, out),
            NodeKind::Map(entries) => {
                for e in entries {
                    collect_node_texts(std::slice::from_ref(&e.key), out);
                    collect_node_texts(std::slice::from_ref(&e.value), out);
                }
            }
        }
    }
}

/// Whether a template's expressions name a context (case-insensitively).
pub fn mentions_context(text: &str, context: &str) -> bool {
    if !text.contains("${{") {
        return false;
    }
    let Ok(t) = Template::parse(text) else {
        return false;
    };
    t.expressions().any(|(e, _)| {
        let mut found = false;
        e.walk(&mut |node| {
            if let crate::expr::ExprKind::Context(n) = &node.kind
                && &*n.lower == context
            {
                found = true;
            }
        });
        found
    })
}

/// Evaluates a template to a value, mapping errors to the value's span.
pub fn eval_ystr(y: &YStr, ctx: &Contexts) -> Result<Value, MatrixError> {
    let t = Template::parse(&y.text).map_err(|e| MatrixError {
        message: e.message,
        span: y.span,
    })?;
    t.eval(ctx).map_err(|e| MatrixError {
        message: e.message,
        span: y.span,
    })
}

/// A strategy setting's value: a literal keeps its YAML type, an expression is evaluated.
fn setting(y: &YStr, ctx: &Contexts) -> Option<Value> {
    if y.has_expr() {
        return eval_ystr(y, ctx).ok();
    }
    Some(match y.value {
        ScalarValue::Bool(b) => Value::Bool(b),
        ScalarValue::Number(n) => Value::Number(n),
        ScalarValue::Null => Value::Null,
        ScalarValue::Str => Value::str(&y.text),
    })
}

/// `fail-fast` (default true) and `max-parallel` (default: all legs) as the `strategy` context
/// shows them.
fn strategy_settings(job: &Job, ctx: &Contexts, total: usize) -> (bool, usize) {
    let s = job.strategy.as_ref();
    let fail_fast = s
        .and_then(|s| s.fail_fast.as_ref())
        .and_then(|y| setting(y, ctx))
        .map(|v| v.is_truthy())
        .unwrap_or(true);
    let max_parallel = s
        .and_then(|s| s.max_parallel.as_ref())
        .and_then(|y| setting(y, ctx))
        .map(|v| v.to_number())
        .filter(|n| n.is_finite() && *n >= 1.0)
        .map(|n| n as usize)
        .unwrap_or(total);
    (fail_fast, max_parallel)
}

/// Expands one job's matrix in `ctx` and names its legs (used by the plan and, for dynamic
/// matrices, by the scheduler once the needs are known). A job without a matrix, or whose every
/// combination is excluded, gets one leg with a null matrix, as on GitHub.
pub fn expand_job_matrix(job: &Job, ctx: &Contexts) -> Result<Vec<PlannedLeg>, MatrixError> {
    let raw = match job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) {
        Some(m) => matrix::expand(m, &|y: &YStr| eval_ystr(y, ctx))?,
        None => Vec::new(),
    };
    let total = raw.len().max(1);
    let (fail_fast, mut max_parallel) = strategy_settings(job, ctx, total);
    if raw.is_empty() {
        // GitHub's default configuration (no matrix, or every combination excluded) fixes it.
        max_parallel = 1;
    }
    let name_template = job.name.as_ref().filter(|n| n.has_expr());
    let leg = |i: usize, leg: Option<&Leg>| {
        let name = match name_template {
            Some(t) => {
                let mut c = ctx.clone();
                c.set("matrix", leg.map(|l| l.values.clone()).unwrap_or_default());
                c.set(
                    "strategy",
                    Value::object([
                        ("fail-fast", Value::Bool(fail_fast)),
                        ("job-index", Value::Number(i as f64)),
                        ("job-total", Value::Number(total as f64)),
                        ("max-parallel", Value::Number(max_parallel as f64)),
                    ]),
                );
                evaluated_name(job, t, leg, &c)
            }
            None => built_name(job.display_name(), leg),
        };
        PlannedLeg {
            name,
            matrix: leg.map(|l| l.values.clone()).unwrap_or_default(),
            job_index: i,
            selected: true,
        }
    };
    if raw.is_empty() {
        return Ok(vec![leg(0, None)]);
    }
    Ok(raw
        .iter()
        .enumerate()
        .map(|(i, l)| leg(i, Some(l)))
        .collect())
}

/// `name (values)`, or the name alone without a matrix, cut like GitHub's `JobNameBuilder`.
fn built_name(base: &str, leg: Option<&Leg>) -> String {
    match leg {
        Some(leg) => display_name(base, leg),
        None => matrix::truncate_name(base.to_owned()),
    }
}

/// A job `name:` with an expression, evaluated for one leg. GitHub evaluates it after the
/// strategy and uses it as it is (no values appended); an empty result falls back to the name
/// built from the job id. When it cannot be evaluated yet (it reads `needs` before they ran)
/// the text is shown as written.
fn evaluated_name(job: &Job, template: &YStr, leg: Option<&Leg>, ctx: &Contexts) -> String {
    match eval_ystr(template, ctx) {
        Ok(v) => {
            let s = v.as_gh_str();
            if s.is_empty() {
                built_name(&job.id.value, leg)
            } else {
                s.into_owned()
            }
        }
        Err(_) => template.text.clone(),
    }
}

/// Evaluates a YAML value (a `with:` entry) keeping its type; strings may hold expressions.
pub fn node_value(node: &Node, ctx: &Contexts) -> Result<Value, MatrixError> {
    Ok(match &node.kind {
        NodeKind::Scalar(s) => match s.value {
            ScalarValue::Null => Value::Null,
            ScalarValue::Bool(b) => Value::Bool(b),
            ScalarValue::Number(n) => Value::Number(n),
            ScalarValue::Str => match YStr::from_node(node) {
                Some(y) if y.has_expr() => eval_ystr(&y, ctx)?,
                _ => Value::str(&s.text),
            },
        },
        NodeKind::Seq(items) => Value::array(
            items
                .iter()
                .map(|i| node_value(i, ctx))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        NodeKind::Map(entries) => {
            let mut o = Object::new();
            for e in entries {
                o.insert(
                    e.key.as_str().unwrap_or_default(),
                    node_value(&e.value, ctx)?,
                );
            }
            Value::from_object(o)
        }
    })
}

/// A string as an input of the declared type (`--input`, defaults): booleans and numbers are
/// converted when they read as one, anything else stays a string.
fn typed_input(ty: InputType, text: &str) -> Value {
    match ty {
        InputType::Boolean => match text {
            "true" => Value::Bool(true),
            "false" | "" => Value::Bool(false),
            other => Value::str(other),
        },
        InputType::Number => text
            .trim()
            .parse::<f64>()
            .map(Value::Number)
            .unwrap_or_else(|_| Value::str(text)),
        _ => Value::str(text),
    }
}

/// The `inputs` context of a called workflow: given values (by declared name, ignoring case),
/// else the declared defaults (evaluated in `ctx` when they hold expressions), else the type's
/// empty value (`false`, null, `''`). Undeclared values are ignored, as GitHub only passes
/// declared inputs.
pub fn call_inputs(call: &WorkflowCall, given: &[(String, Value)], ctx: &Contexts) -> Value {
    let mut o = Object::new();
    for input in &call.inputs {
        let name = &input.id.value;
        let given = given
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone());
        let v = match given {
            Some(Value::String(s)) if input.ty != InputType::String => typed_input(input.ty, &s),
            Some(v) => v,
            None => match &input.default {
                Some(d) if d.has_expr() => eval_ystr(d, ctx).unwrap_or_default(),
                Some(d) => match (input.ty, d.value) {
                    (InputType::Boolean, ScalarValue::Bool(b)) => Value::Bool(b),
                    (InputType::Number, ScalarValue::Number(n)) => Value::Number(n),
                    (ty, _) => typed_input(ty, &d.text),
                },
                None => match input.ty {
                    InputType::Boolean => Value::Bool(false),
                    InputType::Number => Value::Null,
                    _ => Value::str(""),
                },
            },
        };
        o.insert(name.clone(), v);
    }
    Value::from_object(o)
}

/// Plans a workflow that calls no reusable workflow (or whose calls are shown as opaque jobs).
/// Selection errors (unknown `-j` ids, unknown `--matrix` keys) are returned as `Err`.
pub fn plan(input: &PlanInput<'_>) -> Result<Plan, SelectionError> {
    plan_with(input, &[])
}

/// Plans a workflow; jobs calling a local reusable workflow listed in `callees` show the
/// callee's jobs when the call is simple (see [`plan_call`]). Selection errors are returned as
/// `Err`, judged for this workflow alone (see [`check_selection`] for several).
pub fn plan_with(input: &PlanInput<'_>, callees: &[Callee<'_>]) -> Result<Plan, SelectionError> {
    let plan = plan_unchecked(input, callees);
    check_selection(std::slice::from_ref(&plan), input.selection)?;
    Ok(plan)
}

/// Plans a workflow and applies the selection without judging it: `-j` ids this workflow does
/// not have select nothing here (when none of them is here, no job is selected) and `--matrix`
/// keys its legs lack filter nothing. For several workflows at once, plan each like this and
/// call [`check_selection`] on them together.
pub fn plan_unchecked(input: &PlanInput<'_>, callees: &[Callee<'_>]) -> Plan {
    let mut plan = plan_jobs(input.workflow, input.path, input.contexts, callees, "", "");
    select_jobs(&mut plan, input.selection);
    select_matrix(&mut plan, &input.selection.matrix);
    plan
}

/// Whether the selection names only things that exist in these plans: every `-j` id is a job of
/// one of them, and every `--matrix` key is a matrix key of a selected job (not checked while a
/// selected matrix is still dynamic). Errors carry a did-you-mean where one helps.
pub fn check_selection(plans: &[Plan], sel: &Selection) -> Result<(), SelectionError> {
    for id in &sel.jobs {
        let found = plans
            .iter()
            .any(|p| p.jobs.iter().any(|j| j.id.eq_ignore_ascii_case(id)));
        if found {
            continue;
        }
        let mut message = match plans {
            [one] => format!("workflow `{}` has no job `{id}`", one.workflow),
            _ => format!("no workflow has a job `{id}`"),
        };
        let all = plans
            .iter()
            .flat_map(|p| p.jobs.iter().map(|j| j.id.as_str()));
        if let Some(s) = did_you_mean(id, all) {
            message.push_str(&format!("; did you mean `{s}`?"));
        }
        return Err(SelectionError { message });
    }
    if sel.matrix.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut dynamic = false;
    for p in plans {
        visit_jobs(p, &mut |job| {
            if !job.selected {
                return;
            }
            match &job.legs {
                Legs::Expanded { legs } => {
                    for l in legs {
                        if let Value::Object(o) = &l.matrix {
                            for k in o.keys() {
                                if !keys.contains(&k) {
                                    keys.push(k);
                                }
                            }
                        }
                    }
                }
                Legs::Dynamic => dynamic = true,
                Legs::Error { .. } => {}
            }
        });
    }
    if dynamic {
        return Ok(());
    }
    for (key, _) in &sel.matrix {
        let found = plans.iter().any(|p| {
            let mut hit = false;
            visit_jobs(p, &mut |job| {
                hit |=
                    job.selected && all_legs(job).any(|l| matrix_lookup(&l.matrix, key).is_some());
            });
            hit
        });
        if found {
            continue;
        }
        let mut message = format!("no selected job has a matrix key `{key}`");
        if let Some(s) = did_you_mean(key, keys.iter().copied()) {
            message.push_str(&format!("; did you mean `{s}`?"));
        } else if keys.is_empty() {
            message.push_str("; no selected job has a matrix");
        }
        return Err(SelectionError { message });
    }
    Ok(())
}

fn all_legs(job: &PlannedJob) -> impl Iterator<Item = &PlannedLeg> {
    let legs: &[PlannedLeg] = match &job.legs {
        Legs::Expanded { legs } => legs,
        _ => &[],
    };
    legs.iter()
}

/// Calls `f` on every job, including the jobs of called workflows.
fn visit_jobs<'p>(plan: &'p Plan, f: &mut dyn FnMut(&'p PlannedJob)) {
    for job in &plan.jobs {
        f(job);
        if let Some(sub) = job.call.as_ref().and_then(|c| c.plan.as_ref()) {
            visit_jobs(sub, f);
        }
    }
}

/// Finds jobs by id ignoring case, as GitHub matches `needs` (job ids are ASCII); the first
/// job wins (the loader reports and drops later duplicates).
struct JobIds<'w> {
    ids: CaselessMap<'w, usize>,
}

impl<'w> JobIds<'w> {
    fn new(wf: &'w Workflow) -> Self {
        let mut ids = CaselessMap::with_capacity_and_hasher(wf.jobs.len(), Default::default());
        for (i, j) in wf.jobs.iter().enumerate() {
            ids.entry(Caseless(j.id.value.as_str())).or_insert(i);
        }
        JobIds { ids }
    }

    fn get(&self, id: &str) -> Option<usize> {
        self.ids.get(&Caseless(id)).copied()
    }
}

/// Plans every job; ids get `id_prefix` and names `name_prefix` (for a called workflow's jobs).
fn plan_jobs(
    wf: &Workflow,
    path: &str,
    ctx: &Contexts,
    callees: &[Callee<'_>],
    id_prefix: &str,
    name_prefix: &str,
) -> Plan {
    let ids = JobIds::new(wf);
    let mut jobs: Vec<PlannedJob> = Vec::with_capacity(wf.jobs.len());
    // `seen[i] == k + 1` while planning job `k` marks job `i` as already among its needs, so
    // duplicates are dropped in constant time even for jobs with hundreds of needs.
    let mut seen: Vec<usize> = vec![0; wf.jobs.len()];
    // The id lists of distinct needs lists, built once: in a layered graph every job of a
    // layer needs the same hundred jobs.
    let mut needs_ids_of: FxHashMap<Vec<usize>, Arc<[String]>> = FxHashMap::default();
    for (k, job) in wf.jobs.iter().enumerate() {
        let mut needs: Vec<usize> = Vec::with_capacity(job.needs.len());
        for n in &job.needs {
            if let Some(i) = ids.get(&n.value)
                && seen[i] != k + 1
            {
                seen[i] = k + 1;
                needs.push(i);
            }
        }
        let has_matrix = job.strategy.as_ref().is_some_and(|s| s.matrix.is_some());
        let legs = if strategy_reads_needs(job) {
            Legs::Dynamic
        } else {
            match expand_job_matrix(job, ctx) {
                Ok(mut legs) => {
                    if !name_prefix.is_empty() {
                        for l in &mut legs {
                            l.name = format!("{name_prefix}{}", l.name);
                        }
                    }
                    Legs::Expanded { legs }
                }
                Err(e) => Legs::Error {
                    message: e.message,
                    span: e.span,
                },
            }
        };
        let call = job
            .uses
            .as_ref()
            .map(|u| plan_call(job, &u.text, ctx, callees, has_matrix));
        jobs.push(PlannedJob {
            index: job.index,
            id: prefixed(id_prefix, &job.id.value),
            name: prefixed(name_prefix, job.display_name()),
            needs_ids: match needs_ids_of.get(&needs) {
                Some(ids) => ids.clone(),
                None => {
                    let ids: Arc<[String]> = needs
                        .iter()
                        .map(|&i| prefixed(id_prefix, &wf.jobs[i].id.value))
                        .collect();
                    needs_ids_of.insert(needs.clone(), ids.clone());
                    ids
                }
            },
            needs,
            selected: true,
            has_matrix,
            legs,
            condition: job.if_.as_ref().map(|c| c.text.clone()),
            runs_on: job
                .runs_on
                .as_ref()
                .map(|r| r.labels.iter().map(|l| l.text.clone()).collect())
                .unwrap_or_default(),
            uses: job.uses.as_ref().map(|u| u.text.clone()),
            call,
        });
    }
    let order = topo_order(&jobs);
    Plan {
        workflow: path.to_owned(),
        name: wf
            .name
            .as_ref()
            .map(|n| n.text.clone())
            .unwrap_or_else(|| path.to_owned()),
        event: ctx
            .get("github")
            .and_then(|g| g.get("event_name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        jobs,
        order,
        matrix_filter: Vec::new(),
    }
}

/// Plans the jobs of a called workflow at run time: ids get `id_prefix` (`caller/`) and names
/// `name_prefix` (`caller name / `); `ctx` holds the callee's `github`, `vars` and `inputs`.
pub fn plan_callee(
    wf: &Workflow,
    path: &str,
    ctx: &Contexts,
    id_prefix: &str,
    name_prefix: &str,
) -> Plan {
    plan_jobs(wf, path, ctx, &[], id_prefix, name_prefix)
}

fn prefixed(prefix: &str, s: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + s.len());
    out.push_str(prefix);
    out.push_str(s);
    out
}

/// Plans a job's call of a reusable workflow. The callee's jobs are shown (as
/// `caller/callee`) when the call is simple: a local callee that was read and is valid, a
/// caller without a matrix, `with:` values known before the run (no `needs`), and a callee that
/// calls no further workflow. Anything else is one opaque job, with the reason.
fn plan_call(
    job: &Job,
    uses: &str,
    ctx: &Contexts,
    callees: &[Callee<'_>],
    caller_has_matrix: bool,
) -> CallPlan {
    let local = is_local_call(uses);
    let mut call = CallPlan {
        uses: uses.to_owned(),
        kind: if local {
            CallKind::Local
        } else {
            CallKind::Remote
        },
        workflow: None,
        plan: None,
        reason: None,
    };
    let found = callees.iter().find(|c| c.uses == uses);
    if !local && found.is_none() {
        call.reason = Some("remote reusable workflows are not fetched".to_owned());
        return call;
    }
    let (path, callee) = match found.map(|c| &c.workflow) {
        Some(Ok(x)) => *x,
        Some(Err(why)) => {
            call.reason = Some(why.clone());
            return call;
        }
        None => {
            call.reason = Some(format!("`{uses}` was not read"));
            return call;
        }
    };
    call.workflow = Some(path.to_owned());
    // `on: workflow_call` without settings has no `WorkflowCall`: no inputs then.
    let no_settings = WorkflowCall::default();
    let wc = match callee.workflow_call() {
        Some(wc) => wc,
        None if callee.trigger("workflow_call").is_some() => &no_settings,
        None => {
            call.reason = Some(format!("`{path}` has no `on: workflow_call`"));
            return call;
        }
    };
    let reason = if caller_has_matrix {
        Some("the calling job has a matrix".to_owned())
    } else if let Some(nested) = callee.jobs.iter().find(|j| j.uses.is_some()) {
        Some(format!(
            "its job `{}` calls another reusable workflow",
            nested.id.value
        ))
    } else {
        job.with
            .iter()
            .find(|(_, v)| {
                let mut texts = Vec::new();
                collect_node_texts(std::slice::from_ref(v), &mut texts);
                texts.iter().any(|t| mentions_context(t, "needs"))
            })
            .map(|(k, _)| format!("input `{}` is known only when `needs` have run", k.value))
    };
    if reason.is_some() {
        call.reason = reason;
        return call;
    }
    let mut given = Vec::with_capacity(job.with.len());
    for (k, v) in &job.with {
        match node_value(v, ctx) {
            Ok(v) => given.push((k.value.clone(), v)),
            Err(e) => {
                call.reason = Some(format!(
                    "input `{}` cannot be evaluated: {}",
                    k.value, e.message
                ));
                return call;
            }
        }
    }
    let mut cctx = Contexts::new();
    for name in ["github", "vars"] {
        if let Some(v) = ctx.get(name) {
            cctx.set(name, v.clone());
        }
    }
    let inputs = call_inputs(wc, &given, &cctx);
    cctx.set("inputs", inputs);
    let id_prefix = format!("{}/", job.id.value);
    let name_prefix = format!("{} / ", job.display_name());
    let sub = plan_jobs(callee, path, &cctx, &[], &id_prefix, &name_prefix);
    call.plan = Some(Box::new(sub));
    call
}

/// Applies `-j` and `--no-deps`; ids this workflow lacks are ignored (see [`check_selection`]).
fn select_jobs(plan: &mut Plan, sel: &Selection) {
    if sel.jobs.is_empty() {
        return;
    }
    let mut chosen: Vec<bool> = plan
        .jobs
        .iter()
        .map(|j| sel.jobs.iter().any(|id| j.id.eq_ignore_ascii_case(id)))
        .collect();
    if !sel.no_deps {
        let mut stack: Vec<usize> = (0..plan.jobs.len()).filter(|&i| chosen[i]).collect();
        while let Some(i) = stack.pop() {
            for &n in &plan.jobs[i].needs {
                if !chosen[n] {
                    chosen[n] = true;
                    stack.push(n);
                }
            }
        }
    }
    for (j, c) in plan.jobs.iter_mut().zip(chosen) {
        j.selected = c;
    }
}

/// Applies `--matrix` to every expanded job, including the jobs of called workflows (which are
/// selected with their caller).
fn select_matrix(plan: &mut Plan, filters: &[(String, String)]) {
    plan.matrix_filter = filters.to_vec();
    visit_jobs_mut(plan, &mut |job| {
        if let Legs::Expanded { legs } = &mut job.legs
            && !filters.is_empty()
        {
            select_legs(legs, filters);
        }
    });
}

/// Calls `f` on every job, including the jobs of called workflows.
fn visit_jobs_mut(plan: &mut Plan, f: &mut dyn FnMut(&mut PlannedJob)) {
    for job in &mut plan.jobs {
        f(job);
        let selected = job.selected;
        if let Some(sub) = job.call.as_mut().and_then(|c| c.plan.as_mut()) {
            for j in &mut sub.jobs {
                j.selected = selected;
            }
            visit_jobs_mut(sub, f);
        }
    }
}

/// A matrix value by key (ignoring case); `a.b` reaches into an object value when no key is
/// literally `a.b`.
pub fn matrix_lookup<'v>(matrix: &'v Value, key: &str) -> Option<&'v Value> {
    if let Some(v) = matrix.get(key) {
        return Some(v);
    }
    let mut parts = key.split('.');
    let mut cur = matrix.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    Some(cur)
}

/// Whether a matrix value matches a `--matrix` value: its string form (numbers in G15, booleans
/// `true`/`false`) ignoring case, or equal as GitHub's `==` compares (so `3.10` matches `3.1`);
/// arrays and objects by their compact JSON.
pub fn value_matches(v: &Value, text: &str) -> bool {
    if v.is_primitive() {
        v.as_gh_str().eq_ignore_ascii_case(text) || v.loose_eq(&Value::str(text))
    } else {
        serde_json::to_string(&v.to_json()).is_ok_and(|json| json == text)
    }
}

/// Whether a leg's matrix values match the filters: for every filtered key the leg has, one of
/// the values given for that key matches (values of one key are alternatives). Keys the leg
/// lacks do not filter it (used for one leg at a time; see [`select_legs`] for a whole job).
pub fn leg_matches(matrix: &Value, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, _)| match matrix_lookup(matrix, k) {
        None => true,
        Some(v) => filters
            .iter()
            .filter(|(k2, _)| k2.eq_ignore_ascii_case(k))
            .any(|(_, want)| value_matches(v, want)),
    })
}

/// Marks the legs of one job that `--matrix` selects. A filter applies to the job when any of
/// its legs has the key; a leg is then selected when, for each applying key, it has the key and
/// one of the values given for it matches.
pub fn select_legs(legs: &mut [PlannedLeg], filters: &[(String, String)]) {
    let applying: Vec<&(String, String)> = filters
        .iter()
        .filter(|(k, _)| legs.iter().any(|l| matrix_lookup(&l.matrix, k).is_some()))
        .collect();
    for leg in legs.iter_mut() {
        leg.selected = applying.iter().all(|(k, _)| {
            matrix_lookup(&leg.matrix, k).is_some_and(|v| {
                applying
                    .iter()
                    .filter(|(k2, _)| k2.eq_ignore_ascii_case(k))
                    .any(|(_, want)| value_matches(v, want))
            })
        });
    }
}

/// Kahn's algorithm; among ready jobs the earliest in the file goes first.
fn topo_order(jobs: &[PlannedJob]) -> Vec<usize> {
    let n = jobs.len();
    let mut indegree = vec![0usize; n];
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, j) in jobs.iter().enumerate() {
        for &d in &j.needs {
            indegree[i] += 1;
            dependants[d].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &d in &dependants[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(Reverse(d));
            }
        }
    }
    order
}

// ---- JSON form ----------------------------------------------------------------------------

#[derive(Serialize)]
struct PlanJson<'a> {
    version: u32,
    workflow: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    jobs: Vec<JobJson<'a>>,
    order: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    matrix_filter: Vec<FilterJson<'a>>,
}

#[derive(Serialize)]
struct FilterJson<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct JobJson<'a> {
    id: &'a str,
    name: &'a str,
    index: usize,
    needs: &'a [String],
    selected: bool,
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    condition: Option<&'a str>,
    runs_on: &'a [String],
    expansion: &'static str,
    job_total: Option<usize>,
    legs: Vec<LegJson<'a>>,
    error: Option<&'a str>,
    call: Option<CallJson<'a>>,
}

#[derive(Serialize)]
struct LegJson<'a> {
    name: &'a str,
    matrix: serde_json::Value,
    job_index: usize,
    selected: bool,
}

#[derive(Serialize)]
struct CallJson<'a> {
    uses: &'a str,
    kind: CallKind,
    workflow: Option<&'a str>,
    expanded: bool,
    reason: Option<&'a str>,
    jobs: Vec<JobJson<'a>>,
}

fn job_json(j: &PlannedJob) -> JobJson<'_> {
    let (expansion, legs, error): (&'static str, &[PlannedLeg], Option<&str>) = match &j.legs {
        Legs::Expanded { legs } if j.has_matrix => ("expanded", legs, None),
        Legs::Expanded { legs } => ("none", legs, None),
        Legs::Dynamic => ("dynamic", &[], None),
        Legs::Error { message, .. } => ("error", &[], Some(message)),
    };
    JobJson {
        id: &j.id,
        name: &j.name,
        index: j.index,
        needs: &j.needs_ids,
        selected: j.selected,
        condition: j.condition.as_deref(),
        runs_on: &j.runs_on,
        expansion,
        job_total: j.job_total(),
        legs: legs
            .iter()
            .map(|l| LegJson {
                name: &l.name,
                matrix: l.matrix.to_json(),
                job_index: l.job_index,
                selected: l.selected,
            })
            .collect(),
        error,
        call: j.call.as_ref().map(|c| CallJson {
            uses: &c.uses,
            kind: c.kind,
            workflow: c.workflow.as_deref(),
            expanded: c.plan.is_some(),
            reason: c.reason.as_deref(),
            jobs: c
                .plan
                .as_ref()
                .map(|p| p.jobs.iter().map(job_json).collect())
                .unwrap_or_default(),
        }),
    }
}

impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PlanJson {
            version: JSON_VERSION,
            workflow: &self.workflow,
            name: &self.name,
            event: self.event.as_deref(),
            jobs: self.jobs.iter().map(job_json).collect(),
            order: self
                .order
                .iter()
                .map(|&i| self.jobs[i].id.as_str())
                .collect(),
            matrix_filter: self
                .matrix_filter
                .iter()
                .map(|(key, value)| FilterJson { key, value })
                .collect(),
        }
        .serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_id_lists_shared_only_between_equal_needs() {
        // `c` and `d` need the same jobs (spelled in another case, repeated: one shared list);
        // `e` needs them in another order and `f` fewer, so theirs are their own.
        let src = "on: push\njobs:\n  a: {runs-on: x, steps: [{run: a}]}\n  b: {runs-on: x, steps: [{run: a}]}\n  c: {needs: [a, b], runs-on: x, steps: [{run: a}]}\n  d: {needs: [A, B], runs-on: x, steps: [{run: a}]}\n  e: {needs: [b, a], runs-on: x, steps: [{run: a}]}\n  f: {needs: [a], runs-on: x, steps: [{run: a}]}\n";
        let (wf, _) = crate::workflow::load_str(src);
        let wf = wf.expect("workflow");
        let ctx = Contexts::new();
        let p = plan(&PlanInput {
            workflow: &wf,
            path: "t.yml",
            contexts: &ctx,
            selection: &Selection::default(),
        })
        .expect("plans");
        let ids =
            |j: usize| -> Vec<&str> { p.jobs[j].needs_ids.iter().map(String::as_str).collect() };
        assert_eq!(ids(2), ["a", "b"]);
        assert_eq!(ids(3), ["a", "b"]);
        assert!(Arc::ptr_eq(&p.jobs[2].needs_ids, &p.jobs[3].needs_ids));
        assert_eq!(ids(4), ["b", "a"]);
        assert_eq!(ids(5), ["a"]);
        assert!(ids(0).is_empty() && ids(1).is_empty());
        assert_eq!(p.jobs[4].needs, [1, 0]);
    }
}
