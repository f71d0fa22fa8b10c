//! The plan: which jobs and matrix legs exist, what they are called and what they depend on —
//! everything GitHub decides before a step runs.
//!
//! **Invariant: planning is pure.** No I/O, clock or environment: the workflow and the contexts
//! available to `strategy` (github, vars, inputs) come in as arguments, so plans are
//! snapshot-testable and `pipe list` shows exactly what `pipe run` will do. Matrices whose
//! expressions read `needs` are dynamic: they are expanded by the scheduler when their needs
//! finish, with the same code ([`expand_job_matrix`]).

pub mod matrix;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::context::Contexts;
use crate::diag::did_you_mean;
use crate::expr::{Template, Value};
use crate::source::Span;
use crate::workflow::{Job, Matrix, MatrixList, MatrixVector, Workflow, YStr};

pub use matrix::{Leg, MatrixError, display_name};

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
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedLeg {
    /// Display name (`test (linux, 1.5)`).
    pub name: String,
    /// Matrix values (an object), null for a job without a matrix.
    #[serde(serialize_with = "ser_value")]
    pub matrix: Value,
    /// `strategy.job-index`.
    pub job_index: usize,
    /// Whether `--matrix` selected it.
    pub selected: bool,
}

fn ser_value<S: serde::Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
    v.to_json().serialize(s)
}

/// How a job's legs are known.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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
        #[serde(skip)]
        span: Span,
    },
}

/// One job of the plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedJob {
    /// Position in the workflow's `jobs:` (file order).
    pub index: usize,
    /// The job id as written.
    pub id: String,
    /// The name before matrix expansion.
    pub name: String,
    /// Indices of the direct needs.
    pub needs: Vec<usize>,
    /// Ids of the direct needs (for display).
    pub needs_ids: Vec<String>,
    /// Whether the job is selected to run.
    pub selected: bool,
    /// Whether the job has a matrix.
    pub has_matrix: bool,
    /// Its legs.
    pub legs: Legs,
    /// `if:` as written, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// `runs-on` labels as written.
    pub runs_on: Vec<String>,
    /// `uses:` of a reusable-workflow call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
}

/// The plan of one workflow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// Workflow file as given.
    pub workflow: String,
    /// Workflow name.
    pub name: String,
    /// Jobs in file order.
    pub jobs: Vec<PlannedJob>,
    /// Job indices in dependency order, ties broken by file position.
    pub order: Vec<usize>,
    /// `--matrix` filters (applied to dynamic matrices when they expand).
    #[serde(skip_serializing_if = "Vec::is_empty")]
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

/// Whether any expression in the job's strategy reads a context not known at plan time.
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

fn collect_node_texts<'a>(nodes: &'a [crate::yaml::Node], out: &mut Vec<&'a str>) {
    for n in nodes {
        match &n.kind {
            crate::yaml::NodeKind::Scalar(s) => out.push(&s.text),
            crate::yaml::NodeKind::Seq(items) => collect_node_texts(items, out),
            crate::yaml::NodeKind::Map(entries) => {
                for e in entries {
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

/// Expands one job's matrix in `ctx` and names its legs (used by the plan and, for dynamic
/// matrices, by the scheduler once the needs are known).
pub fn expand_job_matrix(job: &Job, ctx: &Contexts) -> Result<Vec<PlannedLeg>, MatrixError> {
    let base = job.display_name();
    let Some(m) = job.strategy.as_ref().and_then(|s| s.matrix.as_ref()) else {
        return Ok(vec![PlannedLeg {
            name: leg_name(job, None, ctx),
            matrix: Value::Null,
            job_index: 0,
            selected: true,
        }]);
    };
    let eval = |y: &YStr| eval_ystr(y, ctx);
    let legs = matrix::expand(m, &eval)?;
    let _ = base;
    Ok(legs
        .into_iter()
        .enumerate()
        .map(|(i, leg)| {
            let name = leg_name(job, Some(&leg), ctx);
            PlannedLeg {
                name,
                matrix: leg.values,
                job_index: i,
                selected: true,
            }
        })
        .collect())
}

/// A leg's display name: a job `name:` with an expression is evaluated per leg (with the
/// leg's matrix); otherwise the name (or id) gets the matrix values appended.
fn leg_name(job: &Job, leg: Option<&Leg>, ctx: &Contexts) -> String {
    if let Some(n) = job.name.as_ref().filter(|n| n.has_expr()) {
        let mut c = ctx.clone();
        if let Some(leg) = leg {
            c.set("matrix", leg.values.clone());
        }
        return match eval_ystr(n, &c) {
            Ok(v) => matrix::truncate_name(v.to_gh_string().unwrap_or_else(|| n.text.clone())),
            Err(_) => n.text.clone(),
        };
    }
    match leg {
        Some(leg) => display_name(job.display_name(), leg),
        None => matrix::truncate_name(job.display_name().to_owned()),
    }
}

/// Plans a workflow. Selection errors (unknown `-j` ids) are returned as `Err`.
pub fn plan(input: &PlanInput<'_>) -> Result<Plan, SelectionError> {
    let wf = input.workflow;
    let find = |id: &str| {
        wf.jobs
            .iter()
            .position(|j| j.id.value.eq_ignore_ascii_case(id))
    };
    let mut jobs: Vec<PlannedJob> = wf
        .jobs
        .iter()
        .map(|job| {
            let needs: Vec<usize> = job.needs.iter().filter_map(|n| find(&n.value)).collect();
            let has_matrix = job.strategy.as_ref().is_some_and(|s| s.matrix.is_some());
            let legs = if strategy_reads_needs(job) {
                Legs::Dynamic
            } else {
                match expand_job_matrix(job, input.contexts) {
                    Ok(legs) => Legs::Expanded { legs },
                    Err(e) => Legs::Error {
                        message: e.message,
                        span: e.span,
                    },
                }
            };
            PlannedJob {
                index: job.index,
                id: job.id.value.clone(),
                name: job.display_name().to_owned(),
                needs_ids: needs.iter().map(|&i| wf.jobs[i].id.value.clone()).collect(),
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
            }
        })
        .collect();

    // Job selection.
    if !input.selection.jobs.is_empty() {
        let mut chosen = vec![false; jobs.len()];
        for id in &input.selection.jobs {
            match find(id) {
                Some(i) => chosen[i] = true,
                None => {
                    let ids = wf.jobs.iter().map(|j| j.id.value.as_str());
                    let mut message = format!("workflow `{}` has no job `{id}`", input.path);
                    if let Some(s) = did_you_mean(id, ids) {
                        message.push_str(&format!("; did you mean `{s}`?"));
                    }
                    return Err(SelectionError { message });
                }
            }
        }
        if !input.selection.no_deps {
            let mut stack: Vec<usize> = (0..jobs.len()).filter(|&i| chosen[i]).collect();
            while let Some(i) = stack.pop() {
                for &n in &jobs[i].needs {
                    if !chosen[n] {
                        chosen[n] = true;
                        stack.push(n);
                    }
                }
            }
        }
        for (j, c) in jobs.iter_mut().zip(chosen) {
            j.selected = c;
        }
    }

    // Leg selection.
    if !input.selection.matrix.is_empty() {
        for job in &mut jobs {
            if let Legs::Expanded { legs } = &mut job.legs {
                for leg in legs.iter_mut() {
                    leg.selected = leg_matches(&leg.matrix, &input.selection.matrix);
                }
            }
        }
    }

    let order = topo_order(&jobs);
    Ok(Plan {
        workflow: input.path.to_owned(),
        name: wf
            .name
            .as_ref()
            .map(|n| n.text.clone())
            .unwrap_or_else(|| input.path.to_owned()),
        jobs,
        order,
        matrix_filter: input.selection.matrix.clone(),
    })
}

/// Whether a leg's matrix values match every `key=value` filter whose key it has.
pub fn leg_matches(matrix: &Value, filters: &[(String, String)]) -> bool {
    let Value::Object(o) = matrix else {
        return true;
    };
    filters.iter().all(|(k, v)| match o.get(k) {
        None => true,
        Some(val) => match val.to_gh_string() {
            Some(s) => s == *v,
            None => {
                let json = val.to_json().to_string();
                json == *v
            }
        },
    })
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
