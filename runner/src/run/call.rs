//! Calling a reusable workflow (`jobs.<id>.uses`).
//!
//! Each leg of the calling job (a matrix on the caller gives one call per leg) reads the callee
//! (`./.github/workflows/x.yml` in the workspace, or `owner/repo/.github/workflows/x.yml@ref`
//! from the offline action folder), evaluates `with:` and `secrets:` in the caller's contexts,
//! checks them against `on.workflow_call`, plans the callee's jobs as `caller/callee` (names
//! `caller name / callee name`) and runs them with the same scheduler. The callee's
//! `workflow_call.outputs` are evaluated with its `jobs` context and become the caller's job
//! outputs. Calls nest up to GitHub's limit of ten workflow levels.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::check::{UsesRef, parse_uses};
use crate::context::Contexts;
use crate::event::{Conclusion, RunEvent};
use crate::executor::Cancel;
use crate::expr::{Object, Value};
use crate::run::job::{LegOutcome, LegSpec, Shared};
use crate::run::report::NoticeLevel;
use crate::run::scheduler::{RunOptions, run_plan};
use crate::source::{FileId, SourceFile};
use crate::workflow::{CallSecrets, InputType, Workflow, WorkflowCall};

/// Levels of workflows that may call each other, the top one included (GitHub's limit).
pub const MAX_CALL_DEPTH: usize = 10;

/// Where a `uses:` of a job points: the file on disk and how to name it.
fn callee_path(shared: &Shared, uses: &str) -> Result<std::path::PathBuf, String> {
    if let Some(rel) = uses.strip_prefix("./").or_else(|| uses.strip_prefix("$/")) {
        if rel.contains('@') {
            return Err(format!(
                "local reusable workflow `{uses}` must not have a ref"
            ));
        }
        return Ok(shared.workspace.join(rel));
    }
    match parse_uses(uses) {
        Ok(UsesRef::Remote {
            owner,
            repo,
            path,
            git_ref,
        }) if !path.is_empty() => {
            let Some(base) = shared.actions.action_dir() else {
                return Err(format!(
                    "reusable workflow `{uses}` is not available offline: pipe never downloads workflows; put a copy of the repository at `DIR/{owner}/{repo}@{git_ref}` and pass `--action-dir DIR` (or set `dir` under `[actions]` in `.pipe/config.toml`)"
                ));
            };
            let root = base.join(&owner).join(format!("{repo}@{git_ref}"));
            let file = root.join(&path);
            if !file.is_file() {
                return Err(format!(
                    "reusable workflow `{uses}` is not available offline: copy it to `{}` in the action folder",
                    file.display()
                ));
            }
            Ok(file)
        }
        _ => Err(format!(
            "`{uses}` is not a valid reusable workflow reference: expected `owner/repo/.github/workflows/file.yml@ref` or `./.github/workflows/file.yml`"
        )),
    }
}

/// A string value of a typed input, converted the way GitHub does, or why it does not fit.
fn typed(name: &str, ty: InputType, v: Value) -> Result<Value, String> {
    let kind = v.kind_name().to_ascii_lowercase();
    match (ty, v) {
        (InputType::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
        (InputType::Boolean, Value::String(s)) if s.as_ref() == "true" || s.as_ref() == "false" => {
            Ok(Value::Bool(s.as_ref() == "true"))
        }
        (InputType::Number, Value::Number(n)) => Ok(Value::Number(n)),
        (InputType::Number, Value::String(s)) if s.trim().parse::<f64>().is_ok() => {
            Ok(Value::Number(s.trim().parse::<f64>().unwrap_or(0.0)))
        }
        (InputType::String, v @ Value::String(_)) => Ok(v),
        (InputType::String, v @ (Value::Number(_) | Value::Bool(_))) => {
            Ok(Value::str(v.to_gh_string().unwrap_or_default()))
        }
        (InputType::String, Value::Null) => Ok(Value::str("")),
        (ty, _) => Err(format!(
            "input `{name}` is a {}, but the value given is a {kind}",
            ty.as_str()
        )),
    }
}

/// The callee's `inputs` context from the caller's `with:`; errors for undeclared inputs,
/// missing required ones and values of the wrong type.
fn callee_inputs(
    wc: &WorkflowCall,
    given: &[(String, Value)],
    ctx: &Contexts,
    uses: &str,
) -> Result<Value, String> {
    let mut checked: Vec<(String, Value)> = Vec::with_capacity(given.len());
    for (k, v) in given {
        let Some(decl) = wc
            .inputs
            .iter()
            .find(|i| i.id.value.eq_ignore_ascii_case(k))
        else {
            return Err(format!(
                "input `{k}` is not defined in reusable workflow `{uses}`"
            ));
        };
        checked.push((decl.id.value.clone(), typed(k, decl.ty, v.clone())?));
    }
    for i in &wc.inputs {
        if i.required
            && i.default.is_none()
            && !checked
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(&i.id.value))
        {
            return Err(format!(
                "input `{}` is required by reusable workflow `{uses}` but not given",
                i.id.value
            ));
        }
    }
    Ok(crate::plan::call_inputs(wc, &checked, ctx))
}

/// Runs one leg of a job that calls a reusable workflow.
pub(crate) fn run_call(
    shared: Arc<Shared>,
    spec: LegSpec,
    cancel: Cancel,
) -> Pin<Box<dyn Future<Output = LegOutcome> + Send>> {
    Box::pin(async move {
        let started = Instant::now();
        match prepare(&shared, &spec) {
            Err(e) => {
                let e = shared.masker.mask(&e);
                shared
                    .reporter
                    .notice(Some(&spec.job_ref), NoticeLevel::Error, &e);
                shared.reporter.event(&RunEvent::JobFinished {
                    job: spec.job_ref.clone(),
                    conclusion: Conclusion::Failure,
                    outputs: IndexMap::new(),
                    duration_ms: 0,
                });
                failed(started.elapsed())
            }
            Ok(call) => run_prepared(&shared, &spec, call, cancel, started).await,
        }
    })
}

fn failed(duration: Duration) -> LegOutcome {
    LegOutcome {
        conclusion: Conclusion::Failure,
        continue_on_error: false,
        outputs: IndexMap::new(),
        steps: Vec::new(),
        step_summary: String::new(),
        duration,
        called: None,
    }
}

/// A call ready to run.
struct Prepared {
    shared: Shared,
    plan: crate::plan::Plan,
    wc: WorkflowCall,
    workflow: Arc<Workflow>,
    continue_on_error: bool,
}

fn prepare(shared: &Arc<Shared>, spec: &LegSpec) -> Result<Prepared, String> {
    let job = &shared.workflow.jobs[spec.job_index];
    let uses = job.uses.as_ref().map(|u| u.text.as_str()).unwrap_or("");
    if shared.call_depth + 1 >= MAX_CALL_DEPTH {
        return Err(format!(
            "job `{}` cannot call `{uses}`: reusable workflows nest at most {MAX_CALL_DEPTH} levels deep",
            job.id.value
        ));
    }
    let path = callee_path(shared, uses)?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read reusable workflow `{uses}` (`{}`): {e}",
            path.display()
        )
    })?;
    let shown = path
        .strip_prefix(&shared.workspace)
        .unwrap_or(&path)
        .to_path_buf();
    let source = Arc::new(SourceFile::new(shown.clone(), text.clone()));
    let (wf, diags) = crate::workflow::load(FileId(0), &text);
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == crate::Severity::Error)
        .map(|d| {
            let lc = source.line_col(d.span.start);
            format!("{}:{}:{}: {}", shown.display(), lc.line, lc.col, d.message)
        })
        .collect();
    let wf = match wf {
        Some(w) if errors.is_empty() => Arc::new(w),
        _ => {
            return Err(format!(
                "reusable workflow `{uses}` is invalid: {}",
                errors.join("; ")
            ));
        }
    };
    let no_settings = WorkflowCall::default();
    let wc = match wf.workflow_call() {
        Some(wc) => wc.clone(),
        None if wf.trigger("workflow_call").is_some() => no_settings,
        None => {
            return Err(format!(
                "`{uses}` cannot be called: it has no `on: workflow_call`"
            ));
        }
    };

    // The caller's contexts for `with:`, `secrets:` and `continue-on-error`.
    let caller = Contexts::new()
        .with("github", shared.github.clone())
        .with("needs", spec.needs.clone())
        .with("strategy", spec.strategy.clone())
        .with("matrix", spec.matrix.clone())
        .with("vars", shared.vars.clone())
        .with("secrets", shared.secrets.clone())
        .with("inputs", shared.inputs.clone());
    let locate = |span: crate::source::Span, msg: &str| {
        let lc = shared.source.line_col(span.start);
        format!(
            "{}:{}:{}: {msg}",
            shared.source.path().display(),
            lc.line,
            lc.col
        )
    };
    let mut given = Vec::with_capacity(job.with.len());
    for (k, node) in &job.with {
        let v = crate::plan::node_value(node, &caller).map_err(|e| locate(e.span, &e.message))?;
        given.push((k.value.clone(), v));
    }
    let base = Contexts::new()
        .with("github", shared.github.clone())
        .with("vars", shared.vars.clone());
    let inputs = callee_inputs(&wc, &given, &base, uses)?;

    let secrets = match &job.secrets {
        Some(CallSecrets::Inherit(_)) => shared.secrets.clone(),
        Some(CallSecrets::Map(m)) => {
            let mut o = Object::new();
            for (k, (_, y)) in m {
                let v =
                    crate::plan::eval_ystr(y, &caller).map_err(|e| locate(e.span, &e.message))?;
                let s = v.to_gh_string().unwrap_or_else(|| v.to_json_pretty());
                if !wc
                    .secrets
                    .iter()
                    .any(|d| d.id.value.eq_ignore_ascii_case(k))
                {
                    return Err(format!(
                        "secret `{k}` is not defined in reusable workflow `{uses}`"
                    ));
                }
                if !s.is_empty() {
                    shared.masker.add(&s);
                }
                o.insert(k.clone(), Value::str(s));
            }
            Value::from_object(o)
        }
        None => Value::from_object(Object::new()),
    };
    if !matches!(job.secrets, Some(CallSecrets::Inherit(_))) {
        for d in &wc.secrets {
            if d.required && secrets.get(&d.id.value).is_none() {
                return Err(format!(
                    "secret `{}` is required by reusable workflow `{uses}` but not given",
                    d.id.value
                ));
            }
        }
    }
    let continue_on_error = match &job.continue_on_error {
        Some(y) => match crate::run::job::literal(y) {
            Some(v) => v.is_truthy(),
            None => crate::plan::eval_ystr(y, &caller)
                .map_err(|e| locate(e.span, &e.message))?
                .is_truthy(),
        },
        None => false,
    };

    let pctx = Contexts::new()
        .with("github", shared.github.clone())
        .with("vars", shared.vars.clone())
        .with("inputs", inputs.clone());
    let plan = crate::plan::plan_callee(
        &wf,
        &shown.to_string_lossy(),
        &pctx,
        &format!("{}/", spec.job_ref.id),
        &format!("{} / ", spec.job_ref.name),
    );
    let callee = Shared {
        workflow: wf.clone(),
        source,
        executor: shared.executor.clone(),
        reporter: shared.reporter.clone(),
        masker: shared.masker.clone(),
        github: shared.github.clone(),
        vars: shared.vars.clone(),
        secrets,
        inputs,
        run_temp: shared.run_temp.clone(),
        workspace: shared.workspace.clone(),
        default_env: shared.default_env.clone(),
        log_dir: shared.log_dir.clone(),
        debug: shared.debug,
        has_bash: shared.has_bash,
        isolate: shared.isolate,
        actions: shared.actions.clone(),
        call_depth: shared.call_depth + 1,
        parallel: shared.parallel,
        key_prefix: format!("{}/", spec.key),
        step_cache: shared.step_cache.clone(),
        dry_run: shared.dry_run,
        results: shared.results.clone(),
        placement: shared.placement.clone(),
    };
    Ok(Prepared {
        shared: callee,
        plan,
        wc,
        workflow: wf,
        continue_on_error,
    })
}

async fn run_prepared(
    caller: &Shared,
    spec: &LegSpec,
    call: Prepared,
    cancel: Cancel,
    started: Instant,
) -> LegOutcome {
    let Prepared {
        shared,
        plan,
        wc,
        workflow,
        continue_on_error,
    } = call;
    let shared = Arc::new(shared);
    let opts = RunOptions {
        parallel: shared.parallel.max(1),
        ..RunOptions::default()
    };
    let result = run_plan(shared.clone(), &plan, &opts, cancel).await;

    // The `jobs` context: each callee job's result (legs aggregated) and merged outputs.
    let mut jobs = Object::new();
    for (index, result_of, outputs) in &result.job_results {
        let Some(job) = workflow.jobs.get(*index) else {
            continue;
        };
        let mut outs = Object::new();
        for (k, v) in outputs {
            outs.insert(k.clone(), Value::str(v));
        }
        jobs.insert(
            job.id.value.clone(),
            Value::object(vec![
                ("result".to_owned(), Value::str(result_of.as_str())),
                ("outputs".to_owned(), Value::from_object(outs)),
            ]),
        );
    }
    let ctx = Contexts::new()
        .with("github", shared.github.clone())
        .with("vars", shared.vars.clone())
        .with("inputs", shared.inputs.clone())
        .with("jobs", Value::from_object(jobs));
    let mut outputs = IndexMap::new();
    let mut conclusion = result.conclusion;
    for o in &wc.outputs {
        match crate::plan::eval_ystr(&o.value, &ctx) {
            Ok(v) => {
                let s = v.to_gh_string().unwrap_or_else(|| v.to_json_pretty());
                if s.is_empty() {
                    continue;
                }
                if caller.masker.contains_secret(&s) {
                    caller.reporter.notice(
                        Some(&spec.job_ref),
                        NoticeLevel::Warning,
                        &format!("skip output `{}` since it may contain secret", o.id.value),
                    );
                    continue;
                }
                outputs.insert(o.id.value.clone(), s);
            }
            Err(e) => {
                let lc = shared.source.line_col(e.span.start);
                caller.reporter.notice(
                    Some(&spec.job_ref),
                    NoticeLevel::Error,
                    &format!(
                        "{}:{}:{}: {}",
                        shared.source.path().display(),
                        lc.line,
                        lc.col,
                        e.message
                    ),
                );
                conclusion = Conclusion::Failure;
            }
        }
    }
    LegOutcome {
        conclusion,
        continue_on_error,
        outputs,
        steps: Vec::new(),
        step_summary: String::new(),
        duration: started.elapsed(),
        called: Some((result.jobs, result.step_summaries)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_types() {
        assert_eq!(
            typed("a", InputType::Boolean, Value::str("true")),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            typed("a", InputType::Number, Value::str("3")),
            Ok(Value::Number(3.0))
        );
        assert_eq!(
            typed("a", InputType::String, Value::Number(1.5)),
            Ok(Value::str("1.5"))
        );
        let e = typed("a", InputType::Boolean, Value::str("yes")).err();
        assert!(e.is_some_and(|e| {
            e.contains("input `a` is a boolean, but the value given is a string")
        }));
    }
}
