//! `uses:` steps of a leg: built-in, composite and JavaScript actions, with the `pre` and
//! `post` scripts of JavaScript actions (a child module of [`super`], so it shares the leg
//! runner's state).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use super::{
    Exec, FileContents, LegRunner, PostKind, PostStep, Scope, StepFiles, Tee, default_step_name,
    literal, read_files, set_env, step_ids,
};
use crate::context::{Contexts, Status};
use crate::event::{Conclusion, RunEvent, StepRef, StepSummary};
use crate::executor::{Cancel, JobHandle, ShellTemplate, StepCommand, StepExit};
use crate::expr::{Object, Template, Value, parse_condition};
use crate::run::action::{
    BuiltinCall, LoadedAction, MAX_COMPOSITE_DEPTH, Resolved, input_env_name,
};
use crate::run::output::StepOutput;
use crate::run::report::NoticeLevel;
use crate::source::SourceFile;
use crate::workflow::{ActionRuns, Step, YStr};

/// A step's position: index in its list, id and display name.
pub(super) struct StepAt {
    pub(super) index: usize,
    pub(super) id: String,
    pub(super) name: String,
}

/// The major version of `node` on PATH, read once (`None` when it is not installed).
fn node_major() -> Option<u32> {
    static MAJOR: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *MAJOR.get_or_init(|| {
        let out = std::process::Command::new("node")
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .output()
            .ok()?;
        let v = String::from_utf8_lossy(&out.stdout);
        v.trim()
            .trim_start_matches('v')
            .split('.')
            .next()?
            .parse()
            .ok()
    })
}

/// Whether a JavaScript action with this `using:` can run here; `Err` says why not.
fn node_runtime(using: &str) -> Result<(), String> {
    node_runtime_with(using, node_major())
}

/// [`node_runtime`] for a given installed major version.
pub(super) fn node_runtime_with(using: &str, installed: Option<u32>) -> Result<(), String> {
    let Some(major) = installed else {
        return Err(format!(
            "JavaScript actions (`using: {using}`) need `node` on PATH; install Node.js to run them"
        ));
    };
    let wanted: u32 = using
        .strip_prefix("node")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // GitHub runs node12 and node16 actions on node20; pipe runs them on the installed node.
    if wanted >= 24 && major < wanted {
        return Err(format!(
            "`using: {using}` needs node {wanted} or later, but `node` on PATH is version {major}"
        ));
    }
    Ok(())
}

fn locate_in(source: &SourceFile, y: &YStr, offset: usize, len: usize, message: &str) -> String {
    let span = y.span_of(source, offset..offset + len);
    let lc = source.line_col(span.start);
    format!(
        "{}:{}:{}: {message}",
        source.path().display(),
        lc.line,
        lc.col
    )
}

/// Evaluates a value of an action's metadata (a default, a condition) to a string.
fn eval_string_in(source: &SourceFile, y: &YStr, ctx: &Contexts) -> Result<String, String> {
    let v = match literal(y) {
        Some(v) => v,
        None => {
            let t = Template::parse(&y.text)
                .map_err(|e| locate_in(source, y, e.offset, e.len, &e.message))?;
            t.eval(ctx)
                .map_err(|e| locate_in(source, y, e.offset, e.len, &e.message))?
        }
    };
    Ok(v.to_gh_string().unwrap_or_else(|| v.to_json_pretty()))
}

/// Evaluates a `pre-if`/`post-if` condition of an action.
fn condition_in(source: &SourceFile, c: &YStr, ctx: &Contexts) -> Result<bool, String> {
    let cond =
        parse_condition(&c.text).map_err(|e| locate_in(source, c, e.offset, e.len, &e.message))?;
    cond.eval(ctx)
        .map_err(|e| locate_in(source, c, e.offset, e.len, &e.message))
}

impl<'a> LegRunner<'a> {
    /// Where a step's log and events go: a composite action's steps use the outer step's.
    pub(super) fn log_index(&self, index: usize) -> usize {
        self.scope.outer.as_ref().map(|o| o.0).unwrap_or(index)
    }

    /// A sink for a step's output.
    pub(super) fn sink(&self, index: usize) -> StepOutput {
        let li = self.log_index(index);
        let log =
            self.shared.log_dir.as_ref().map(|d| {
                crate::store::step_log_path(d, &crate::store::safe_name(&self.spec.key), li)
            });
        let sink = StepOutput::new(
            self.spec.job_ref.clone(),
            li,
            self.shared.reporter.clone(),
            self.shared.masker.clone(),
            log,
            self.shared.debug,
        );
        if self.scope.outer.is_some() {
            sink.appending()
        } else {
            sink
        }
    }

    /// A line of the runner's own in the log of the outer step (composite actions).
    pub(super) fn nested_line(&self, text: &str) {
        let mut sink = self.sink(0);
        sink.runner_line(text);
        sink.finish();
    }

    /// Announces a step: an event for the job's steps, a log line for a composite's.
    pub(super) fn step_started(&self, step: StepRef) {
        if self.scope.outer.is_some() {
            self.nested_line(&format!("▸ {}", step.name));
        } else {
            self.shared.reporter.event(&RunEvent::StepStarted {
                job: self.spec.job_ref.clone(),
                step,
            });
        }
    }

    /// Runs a prepared command, streams its output and applies its environment files (also
    /// after a failure).
    pub(super) async fn exec(
        &mut self,
        h: &mut dyn JobHandle,
        command: &StepCommand,
        files: &StepFiles,
        index: usize,
        cancel: &Cancel,
        capture: bool,
    ) -> Exec {
        let mut sink = self.sink(index);
        let mut captured = None;
        let exit = if capture {
            let mut tee = Tee {
                inner: &mut sink,
                buf: Some(Vec::new()),
            };
            let exit = h.run(command, &mut tee, cancel).await;
            captured = tee.buf.take();
            exit
        } else {
            h.run(command, &mut sink, cancel).await
        };
        let mut error: Option<String> = None;
        let mut outcome = match &exit {
            Ok(StepExit::Exited(0)) => Conclusion::Success,
            Ok(StepExit::Exited(code)) => {
                error = Some(format!("process completed with exit code {code}"));
                Conclusion::Failure
            }
            Ok(StepExit::Signaled(sig)) => {
                error = Some(format!("process was killed by signal {sig}"));
                Conclusion::Failure
            }
            Ok(StepExit::TimedOut) => {
                error = Some(format!(
                    "the step has timed out after {} minutes",
                    command
                        .timeout
                        .map(|t| crate::expr::number::format_g15(t.as_secs_f64() / 60.0))
                        .unwrap_or_else(|| "?".to_owned())
                ));
                Conclusion::Failure
            }
            Ok(StepExit::Cancelled) => Conclusion::Cancelled,
            Ok(StepExit::StartFailed(m)) => {
                error = Some(m.clone());
                Conclusion::Failure
            }
            Err(e) => {
                error = Some(format!("the executor failed: {e}"));
                Conclusion::Failure
            }
        };
        if let Some(e) = &error {
            sink.runner_line(&format!("Error: {e}"));
        }
        sink.finish();
        // A workflow command that could not be processed fails the step.
        if let Some(e) = sink.command_error.take()
            && outcome == Conclusion::Success
        {
            outcome = Conclusion::Failure;
            error = Some(e);
        }
        // Environment files apply even when the step failed.
        let mut outputs = sink.outputs.clone();
        let mut state = sink.state.clone();
        let contents = read_files(files);
        if let Err(e) = self.apply_files(&contents, &mut outputs, &mut state) {
            if outcome == Conclusion::Success {
                outcome = Conclusion::Failure;
            }
            error = Some(error.map(|x| format!("{x}; {e}")).unwrap_or(e));
        }
        if let Some(e) = &error
            && outcome == Conclusion::Failure
        {
            self.error_annotation(Some(index), e);
        }
        Exec {
            outcome,
            error,
            outputs,
            state,
            captured,
            contents,
        }
    }

    /// Fails a step before it ran anything (a missing action, a bad input); its
    /// `continue-on-error` applies.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fail_step(
        &mut self,
        step: &Step,
        sctx: &Contexts,
        at: &StepAt,
        summary: StepSummary,
        started: Instant,
        e: String,
    ) -> StepSummary {
        self.error_annotation(Some(at.index), &e);
        {
            let mut sink = self.sink(at.index);
            sink.runner_line(&format!("Error: {e}"));
            sink.finish();
        }
        let coe = self.continue_on_error(step, sctx, at.index);
        let step_ref = StepRef {
            id: at.id.clone(),
            name: at.name.clone(),
            index: self.log_index(at.index),
        };
        self.finish_step(
            summary,
            step_ref,
            Conclusion::Failure,
            coe,
            IndexMap::new(),
            started,
            Some(e),
        )
    }

    /// The inputs an action gets: the declared ones (given values, else defaults evaluated in
    /// the step's contexts), then any undeclared given ones (with a warning, as GitHub does).
    /// Names are lower-cased.
    pub(super) fn action_inputs(
        &self,
        a: &LoadedAction,
        given: &IndexMap<String, String>,
        ctx: &Contexts,
        uses: &str,
    ) -> Result<IndexMap<String, String>, String> {
        let mut out = IndexMap::new();
        for input in &a.meta.inputs {
            let key = input.id.value.to_ascii_lowercase();
            let v = match given.get(&key) {
                Some(v) => v.clone(),
                None => match &input.default {
                    Some(d) => eval_string_in(&a.source, d, ctx)?,
                    None => {
                        if input.required {
                            self.notice(
                                NoticeLevel::Warning,
                                &format!(
                                    "input `{}` is required by action `{uses}` but not given",
                                    input.id.value
                                ),
                            );
                        }
                        String::new()
                    }
                },
            };
            out.insert(key, v);
        }
        let unexpected: Vec<&String> = given.keys().filter(|k| !out.contains_key(*k)).collect();
        if !unexpected.is_empty() {
            let names: Vec<String> = unexpected.iter().map(|k| format!("`{k}`")).collect();
            self.notice(
                NoticeLevel::Warning,
                &format!("unexpected input {} for action `{uses}`", names.join(", ")),
            );
            for k in unexpected {
                out.insert(k.clone(), given.get(k).cloned().unwrap_or_default());
            }
        }
        Ok(out)
    }

    /// `uses: docker://IMAGE`: `with.args` and `with.entrypoint` go to the container, every
    /// other input becomes `INPUT_<NAME>`; the workspace is `/github/workspace` inside.
    #[allow(clippy::too_many_arguments)]
    async fn run_docker_uses(
        &mut self,
        h: &mut dyn JobHandle,
        step: &Step,
        at: StepAt,
        sctx: Contexts,
        step_env: Vec<(String, String)>,
        cancel: Cancel,
        summary: StepSummary,
        started: Instant,
    ) -> StepSummary {
        let index = at.index;
        let step_ref = StepRef {
            id: at.id.clone(),
            name: at.name.clone(),
            index: self.log_index(index),
        };
        let uses = step
            .uses
            .as_ref()
            .map(|u| u.text.clone())
            .unwrap_or_default();
        let timeout = match &step.timeout_minutes {
            Some(t) => match self.eval(t, &sctx) {
                Ok(m) => {
                    let m = m.to_number();
                    (m > 0.0 && m.is_finite()).then(|| Duration::from_secs_f64(m * 60.0))
                }
                Err(e) => return self.fail_step(step, &sctx, &at, summary, started, e),
            },
            None => None,
        };
        let paths = h.paths().clone();
        let (mut env, files) = self.command_env(&step_env, &paths, &at.id, index);
        let mut args = Vec::new();
        let mut entrypoint = None;
        for (name, (_, y)) in &step.with {
            let v = match self.eval_string(y, &sctx) {
                Ok(v) => v,
                Err(e) => return self.fail_step(step, &sctx, &at, summary, started, e),
            };
            match name.as_str() {
                "args" => match crate::executor::docker::options::split_words(&v) {
                    Ok(a) => args = a,
                    Err(e) => {
                        let e = format!("`with.args`: {e}");
                        return self.fail_step(step, &sctx, &at, summary, started, e);
                    }
                },
                "entrypoint" => entrypoint = Some(v),
                _ => set_env(&mut env, &input_env_name(name), v),
            }
        }
        let command = crate::executor::docker::container_action(
            &uses,
            None,
            entrypoint,
            args,
            env,
            paths.workspace_exec.clone(),
            timeout,
        );
        let res = self.exec(h, &command, &files, index, &cancel, false).await;
        let coe = res.outcome == Conclusion::Failure && self.continue_on_error(step, &sctx, index);
        self.finish_step(
            summary,
            step_ref,
            res.outcome,
            coe,
            res.outputs,
            started,
            res.error,
        )
    }

    /// Runs a `uses:` step: a built-in, composite, JavaScript or container action.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_action<'b>(
        &'b mut self,
        h: &'b mut dyn JobHandle,
        step: &'b Step,
        at: StepAt,
        sctx: Contexts,
        step_env: Vec<(String, String)>,
        cancel: Cancel,
        summary: StepSummary,
        started: Instant,
    ) -> Pin<Box<dyn Future<Output = StepSummary> + Send + 'b>> {
        Box::pin(async move {
            let index = at.index;
            let step_ref = StepRef {
                id: at.id.clone(),
                name: at.name.clone(),
                index: self.log_index(index),
            };
            let uses = step.uses.as_ref().map(|u| u.text.as_str()).unwrap_or("");
            if uses.starts_with("docker://") {
                return self
                    .run_docker_uses(h, step, at, sctx, step_env, cancel, summary, started)
                    .await;
            }
            let resolved = self.shared.actions.resolve(uses, &self.workspace);
            let mut given = IndexMap::new();
            let mut bad_input = None;
            for (k, (_, v)) in &step.with {
                match self.eval_string(v, &sctx) {
                    Ok(x) => {
                        given.insert(k.to_ascii_lowercase(), x);
                    }
                    Err(e) => {
                        bad_input = Some(e);
                        break;
                    }
                }
            }
            let resolved = match (resolved, bad_input) {
                (Err(e), _) | (_, Some(e)) => {
                    return self.fail_step(step, &sctx, &at, summary, started, e);
                }
                (Ok(r), None) => r,
            };
            let timeout = match &step.timeout_minutes {
                Some(t) => match self.eval(t, &sctx) {
                    Ok(m) => {
                        let m = m.to_number();
                        (m > 0.0 && m.is_finite()).then(|| Duration::from_secs_f64(m * 60.0))
                    }
                    Err(e) => return self.fail_step(step, &sctx, &at, summary, started, e),
                },
                None => None,
            };
            let a = match resolved {
                Resolved::Builtin { action, git_ref } => {
                    let paths = h.paths().clone();
                    let mut sink = self.sink(index);
                    let workspace = self.workspace.clone();
                    let mut env = self.builtin_env(&at.id, &step_env);
                    let run_dir = self.shared.log_dir.as_ref().and_then(|d| d.parent());
                    let mut state = IndexMap::new();
                    // A built-in writes Markdown to its step summary like any step.
                    let summary_file = paths
                        .temp_host
                        .join(format!("step_summary_builtin_{}", self.log_index(index)));
                    // The executor makes `RUNNER_TEMP` when a process step first runs; a
                    // built-in may be the job's first step.
                    let _ = std::fs::create_dir_all(&paths.temp_host);
                    set_env(
                        &mut env,
                        "GITHUB_STEP_SUMMARY",
                        summary_file.to_string_lossy().into_owned(),
                    );
                    let r = action
                        .run(
                            BuiltinCall {
                                uses,
                                git_ref: &git_ref,
                                inputs: &given,
                                env: &env,
                                workspace: &workspace,
                                temp: &paths.temp_host,
                                cancel: &cancel,
                                repository: &self.shared.workspace,
                                run_dir,
                                state: &mut state,
                            },
                            &mut sink,
                        )
                        .await;
                    if let Some(condition) = action.post_if() {
                        self.posts.push(PostStep {
                            kind: PostKind::Builtin {
                                action: action.clone(),
                                uses: uses.to_owned(),
                                git_ref: git_ref.clone(),
                                condition,
                            },
                            inputs: given.clone(),
                            env: step_env.clone(),
                            state,
                            id: at.id.clone(),
                            name: format!("Post {}", at.name),
                        });
                    }
                    let mut outputs = std::mem::take(&mut sink.outputs);
                    let written = std::fs::read_to_string(&summary_file).unwrap_or_default();
                    let _ = std::fs::remove_file(&summary_file);
                    let contents = FileContents {
                        summary: written,
                        ..FileContents::default()
                    };
                    let mut ignored_state = IndexMap::new();
                    let _ = self.apply_files(&contents, &mut outputs, &mut ignored_state);
                    let (outcome, error) = match r {
                        Ok(o) => {
                            outputs.extend(o);
                            (Conclusion::Success, None)
                        }
                        Err(e) => {
                            sink.runner_line(&format!("Error: {e}"));
                            (Conclusion::Failure, Some(e))
                        }
                    };
                    sink.finish();
                    if let Some(e) = &error {
                        self.error_annotation(Some(index), e);
                    }
                    let coe = outcome == Conclusion::Failure
                        && self.continue_on_error(step, &sctx, index);
                    return self
                        .finish_step(summary, step_ref, outcome, coe, outputs, started, error);
                }
                Resolved::Meta(a) => a,
            };
            let inputs = match self.action_inputs(&a, &given, &sctx, uses) {
                Ok(i) => i,
                Err(e) => return self.fail_step(step, &sctx, &at, summary, started, e),
            };
            match &a.meta.runs {
                ActionRuns::Composite { steps } => {
                    let depth = self.scope.depth + 1;
                    if depth > MAX_COMPOSITE_DEPTH {
                        let e = format!(
                            "composite action `{uses}` is nested too deeply: at most {MAX_COMPOSITE_DEPTH} levels of composite actions may call each other"
                        );
                        return self.fail_step(step, &sctx, &at, summary, started, e);
                    }
                    let mut inputs_obj = Object::new();
                    for (k, v) in &inputs {
                        inputs_obj.insert(k.clone(), Value::str(v));
                    }
                    let outer = self
                        .scope
                        .outer
                        .clone()
                        .unwrap_or_else(|| (index, at.id.clone(), at.name.clone()));
                    let saved_scope = std::mem::replace(
                        &mut self.scope,
                        Scope {
                            source: a.source.clone(),
                            inputs: Some(Value::from_object(inputs_obj)),
                            action: Some(a.clone()),
                            depth,
                            outer: Some(outer),
                        },
                    );
                    let saved_steps = std::mem::take(&mut self.steps_ctx);
                    let saved_status = self.status;
                    self.status = Status {
                        failed: false,
                        cancelled: saved_status.cancelled,
                        skipped_ancestor: false,
                    };
                    let saved_env = std::mem::replace(&mut self.env, step_env.clone());
                    // The inner steps stop with the calling step: its cancellation (which an
                    // `always()` step survives) and its `timeout-minutes`.
                    let inner_cancel = Cancel {
                        soft: cancel.soft.child_token(),
                        hard: cancel.hard.clone(),
                    };
                    let saved_cancel = std::mem::replace(&mut self.cancel, inner_cancel.clone());
                    let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let timer = timeout.map(|t| {
                        let soft = inner_cancel.soft.clone();
                        let flag = timed_out.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(t).await;
                            flag.store(true, std::sync::atomic::Ordering::SeqCst);
                            soft.cancel();
                        })
                    });
                    let mark = self.env_log.len();
                    let ids = step_ids(steps);
                    for (i, s) in steps.iter().enumerate() {
                        if self.cancel.soft.is_cancelled() || self.cancel.hard.is_cancelled() {
                            self.status.cancelled = true;
                        }
                        let _ = self.run_step(h, s, i, &ids[i]).await;
                    }
                    if let Some(t) = timer {
                        t.abort();
                    }
                    self.cancel = saved_cancel;
                    let timed_out = timed_out.load(std::sync::atomic::Ordering::SeqCst);
                    let paths = h.paths().clone();
                    let octx = self.step_contexts(&at.id, &self.env, &paths);
                    let mut outputs = IndexMap::new();
                    let mut errors = Vec::new();
                    for (name, value) in &a.meta.outputs {
                        let Some(value) = value else { continue };
                        match eval_string_in(&a.source, value, &octx) {
                            Ok(v) => {
                                outputs.insert(name.value.clone(), v);
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                    let inner = self.status;
                    self.scope = saved_scope;
                    self.steps_ctx = saved_steps;
                    self.status = saved_status;
                    let written: Vec<(String, String)> = self.env_log[mark..].to_vec();
                    self.env = saved_env;
                    for (k, v) in written {
                        set_env(&mut self.env, &k, v);
                    }
                    let mut error = None;
                    let outcome = if timed_out {
                        let e = format!(
                            "the step has timed out after {} minutes",
                            timeout
                                .map(|t| crate::expr::number::format_g15(t.as_secs_f64() / 60.0))
                                .unwrap_or_else(|| "?".to_owned())
                        );
                        self.error_annotation(Some(index), &e);
                        error = Some(e);
                        Conclusion::Failure
                    } else if inner.cancelled && !saved_status.cancelled {
                        Conclusion::Cancelled
                    } else if !errors.is_empty() {
                        let e = errors.join("; ");
                        self.error_annotation(Some(index), &e);
                        error = Some(e);
                        Conclusion::Failure
                    } else if inner.failed {
                        Conclusion::Failure
                    } else {
                        Conclusion::Success
                    };
                    let coe = outcome == Conclusion::Failure
                        && self.continue_on_error(step, &sctx, index);
                    self.finish_step(summary, step_ref, outcome, coe, outputs, started, error)
                }
                ActionRuns::Node {
                    using,
                    main,
                    post,
                    post_if,
                    ..
                } => {
                    if let Err(e) = node_runtime(&using.text) {
                        return self.fail_step(step, &sctx, &at, summary, started, e);
                    }
                    let state = self.states.remove(&at.id).unwrap_or_default();
                    let res = self
                        .run_node(
                            h,
                            &a,
                            &main.text,
                            &inputs,
                            &step_env,
                            &state,
                            (index, &at.id),
                            timeout,
                            &cancel,
                        )
                        .await;
                    if let Some(post) = post {
                        let mut all_state = state;
                        all_state.extend(res.state.clone());
                        self.posts.push(PostStep {
                            kind: PostKind::Node {
                                action: a.clone(),
                                script: post.text.clone(),
                                condition: post_if.clone(),
                            },
                            inputs: inputs.clone(),
                            env: step_env.clone(),
                            state: all_state,
                            id: at.id.clone(),
                            name: format!("Post {}", at.name),
                        });
                    }
                    let coe = res.outcome == Conclusion::Failure
                        && self.continue_on_error(step, &sctx, index);
                    self.finish_step(
                        summary,
                        step_ref,
                        res.outcome,
                        coe,
                        res.outputs,
                        started,
                        res.error,
                    )
                }
                ActionRuns::Docker {
                    image,
                    args,
                    entrypoint,
                    env: action_env,
                    ..
                } => {
                    // A container action: the image (`docker://…`) or the action's Dockerfile,
                    // built through the engine; inputs as `INPUT_*`, `args` evaluated with the
                    // `inputs` context.
                    let mut ictx = sctx.clone();
                    let mut inputs_obj = Object::new();
                    for (k, v) in &inputs {
                        inputs_obj.insert(k.clone(), Value::str(v));
                    }
                    ictx.set("inputs", Value::from_object(inputs_obj));
                    let mut argv = Vec::new();
                    for y in args {
                        match self.eval_string(y, &ictx) {
                            Ok(v) => argv.push(v),
                            Err(e) => return self.fail_step(step, &sctx, &at, summary, started, e),
                        }
                    }
                    let entry = match entrypoint.as_ref().map(|y| self.eval_string(y, &ictx)) {
                        Some(Err(e)) => {
                            return self.fail_step(step, &sctx, &at, summary, started, e);
                        }
                        Some(Ok(v)) => Some(v),
                        None => None,
                    };
                    let paths = h.paths().clone();
                    let (mut env, files) = self.command_env(&step_env, &paths, &at.id, index);
                    if let Err(e) = self.eval_env(action_env, &ictx, &mut env) {
                        return self.fail_step(step, &sctx, &at, summary, started, e);
                    }
                    for (k, v) in &inputs {
                        set_env(&mut env, &input_env_name(k), v.clone());
                    }
                    let command = crate::executor::docker::container_action(
                        &image.text,
                        Some(&a.dir),
                        entry,
                        argv,
                        env,
                        paths.workspace_exec.clone(),
                        timeout,
                    );
                    let res = self.exec(h, &command, &files, index, &cancel, false).await;
                    let coe = res.outcome == Conclusion::Failure
                        && self.continue_on_error(step, &sctx, index);
                    self.finish_step(
                        summary,
                        step_ref,
                        res.outcome,
                        coe,
                        res.outputs,
                        started,
                        res.error,
                    )
                }
                ActionRuns::Invalid => {
                    let e = format!("action `{uses}` has no valid `runs`");
                    self.fail_step(step, &sctx, &at, summary, started, e)
                }
            }
        })
    }

    /// Runs one script of a JavaScript action with `node`: `INPUT_*`, `STATE_*` and
    /// `GITHUB_ACTION_PATH` set, in the workspace.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_node(
        &mut self,
        h: &mut dyn JobHandle,
        a: &LoadedAction,
        script: &str,
        inputs: &IndexMap<String, String>,
        step_env: &[(String, String)],
        state: &IndexMap<String, String>,
        (index, id): (usize, &str),
        timeout: Option<Duration>,
        cancel: &Cancel,
    ) -> Exec {
        let paths = h.paths().clone();
        let (mut env, files) = self.command_env(step_env, &paths, id, index);
        for (k, v) in inputs {
            set_env(&mut env, &input_env_name(k), v.clone());
        }
        for (k, v) in state {
            set_env(&mut env, &format!("STATE_{k}"), v.clone());
        }
        set_env(
            &mut env,
            "GITHUB_ACTION_PATH",
            a.dir.to_string_lossy().into_owned(),
        );
        set_env(&mut env, "GITHUB_ACTION_REPOSITORY", a.repository.clone());
        set_env(&mut env, "GITHUB_ACTION_REF", a.git_ref.clone());
        let program = a.dir.join(script);
        let command = StepCommand {
            script: String::new(),
            shell: ShellTemplate {
                argv: vec!["node".to_owned(), program.to_string_lossy().into_owned()],
                ext: ".js",
            },
            env,
            run_env: Arc::default(),
            cwd: paths.workspace_exec.clone(),
            timeout,
            action: None,
        };
        self.exec(h, &command, &files, index, cancel, false).await
    }

    /// Runs the `pre` scripts of the job's remote JavaScript actions, before the first step.
    pub(super) async fn run_pre_steps(&mut self, h: &mut dyn JobHandle, ids: &[String]) {
        let job = self.job;
        for (i, step) in job.steps.iter().enumerate() {
            // Local actions are read when their step runs (the repository may not be checked
            // out before), so GitHub runs no `pre` for them.
            let Some(u) = step
                .uses
                .as_ref()
                .filter(|u| !u.text.starts_with("./") && !u.text.starts_with("$/"))
            else {
                continue;
            };
            let Ok(Resolved::Meta(a)) = self.shared.actions.resolve(&u.text, &self.workspace)
            else {
                continue;
            };
            let ActionRuns::Node {
                using,
                pre: Some(pre),
                pre_if,
                ..
            } = &a.meta.runs
            else {
                continue;
            };
            if node_runtime(&using.text).is_err() {
                continue;
            }
            let id = &ids[i];
            let index = job.steps.len() + self.extra_steps.len();
            let paths = h.paths().clone();
            let ctx = self.step_contexts(id, &self.env, &paths);
            let run_it = match pre_if {
                None => true,
                Some(c) => match condition_in(&a.source, c, &ctx) {
                    Ok(b) => b,
                    Err(e) => {
                        self.error_annotation(None, &e);
                        false
                    }
                },
            };
            if !run_it {
                continue;
            }
            let summary = StepSummary {
                id: format!("pre:{id}"),
                name: format!("Pre {}", default_step_name(step)),
                outcome: Conclusion::Skipped,
                conclusion: Conclusion::Skipped,
                outputs: IndexMap::new(),
                duration_ms: 0,
                cache: None,
            };
            let step_ref = StepRef {
                id: summary.id.clone(),
                name: summary.name.clone(),
                index,
            };
            let started = Instant::now();
            self.step_started(step_ref.clone());
            let mut given = IndexMap::new();
            for (k, (_, v)) in &step.with {
                if let Ok(x) = self.eval_string(v, &ctx) {
                    given.insert(k.to_ascii_lowercase(), x);
                }
            }
            let env = self.env.clone();
            let res = match self.action_inputs(&a, &given, &ctx, &u.text) {
                Ok(inputs) => {
                    let cancel = self.cancel.clone();
                    self.run_node(
                        h,
                        &a,
                        &pre.text,
                        &inputs,
                        &env,
                        &IndexMap::new(),
                        (index, id),
                        None,
                        &cancel,
                    )
                    .await
                }
                Err(e) => {
                    self.error_annotation(Some(index), &e);
                    Exec {
                        outcome: Conclusion::Failure,
                        error: Some(e),
                        outputs: IndexMap::new(),
                        state: IndexMap::new(),
                        captured: None,
                        contents: FileContents::default(),
                    }
                }
            };
            self.states.insert(id.clone(), res.state.clone());
            let s = self.finish_step(
                summary,
                step_ref,
                res.outcome,
                false,
                IndexMap::new(),
                started,
                res.error,
            );
            self.extra_steps.push(s);
        }
    }

    /// Runs the `post` scripts of the actions whose main step ran, last first; they run after
    /// a failure or cancellation too (unless their `post-if` says otherwise).
    pub(super) async fn run_post_steps(&mut self, h: &mut dyn JobHandle) {
        let posts = std::mem::take(&mut self.posts);
        for p in posts.into_iter().rev() {
            let index = self.job.steps.len() + self.extra_steps.len();
            let paths = h.paths().clone();
            let ctx = self.step_contexts(&p.id, &self.env, &paths);
            let run_it = match &p.kind {
                PostKind::Node {
                    condition: None, ..
                } => true,
                PostKind::Node {
                    action,
                    condition: Some(c),
                    ..
                } => match condition_in(&action.source, c, &ctx) {
                    Ok(b) => b,
                    Err(e) => {
                        self.error_annotation(None, &e);
                        false
                    }
                },
                PostKind::Builtin { condition, .. } => parse_condition(condition)
                    .map_err(|e| e.message)
                    .and_then(|c| c.eval(&ctx).map_err(|e| e.message))
                    .unwrap_or(false),
            };
            if !run_it {
                continue;
            }
            let summary = StepSummary {
                id: format!("post:{}", p.id),
                name: p.name.clone(),
                outcome: Conclusion::Skipped,
                conclusion: Conclusion::Skipped,
                outputs: IndexMap::new(),
                duration_ms: 0,
                cache: None,
            };
            let step_ref = StepRef {
                id: summary.id.clone(),
                name: summary.name.clone(),
                index,
            };
            let started = Instant::now();
            self.step_started(step_ref.clone());
            // A cancelled job still runs its post steps; only a hard cancel stops them.
            let cancel = Cancel {
                soft: tokio_util::sync::CancellationToken::new(),
                hard: self.cancel.hard.clone(),
            };
            let mut p = p;
            let (outcome, error) = match &p.kind {
                PostKind::Node { action, script, .. } => {
                    let res = self
                        .run_node(
                            h,
                            action,
                            script,
                            &p.inputs,
                            &p.env,
                            &p.state,
                            (index, &p.id),
                            None,
                            &cancel,
                        )
                        .await;
                    (res.outcome, res.error)
                }
                PostKind::Builtin {
                    action,
                    uses,
                    git_ref,
                    ..
                } => {
                    let mut sink = self.sink(index);
                    let workspace = self.workspace.clone();
                    let env = self.builtin_env(&p.id, &p.env);
                    let run_dir = self.shared.log_dir.as_ref().and_then(|d| d.parent());
                    let r = action
                        .post(
                            BuiltinCall {
                                uses,
                                git_ref,
                                inputs: &p.inputs,
                                env: &env,
                                workspace: &workspace,
                                temp: &paths.temp_host,
                                cancel: &cancel,
                                repository: &self.shared.workspace,
                                run_dir,
                                state: &mut p.state,
                            },
                            &mut sink,
                        )
                        .await;
                    let res = match r {
                        Ok(()) => (Conclusion::Success, None),
                        Err(e) => {
                            sink.runner_line(&format!("Error: {e}"));
                            (Conclusion::Failure, Some(e))
                        }
                    };
                    sink.finish();
                    if let Some(e) = &res.1 {
                        self.error_annotation(Some(index), e);
                    }
                    res
                }
            };
            let s = self.finish_step(
                summary,
                step_ref,
                outcome,
                false,
                IndexMap::new(),
                started,
                error,
            );
            self.extra_steps.push(s);
        }
    }

    /// The environment a built-in action sees: the run's default variables (`GITHUB_SHA`,
    /// `GITHUB_REPOSITORY`…), the job's, then the step's env.
    fn builtin_env(&self, id: &str, step_env: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = self.shared.default_env.to_vec();
        set_env(&mut env, "GITHUB_JOB", self.job.id.value.clone());
        set_env(&mut env, "GITHUB_ACTION", id.to_owned());
        set_env(
            &mut env,
            "GITHUB_WORKSPACE",
            self.workspace.to_string_lossy().into_owned(),
        );
        for (k, v) in step_env {
            set_env(&mut env, k, v.clone());
        }
        env
    }
}
