//! `pipe list`: the jobs and matrix legs a run would have, with their display names and needs;
//! `--json` prints the plan (schema in `pipe_runner::plan`).
//!
//! With `-W`, every workflow GitHub accepts can be listed: a callee-only `on: workflow_call`
//! file is planned with its input defaults (overridable with `--input`), a job calling a local
//! reusable workflow shows the callee's jobs as `caller/callee` when the call is simple, and a
//! remote one is one opaque job. This module also does the loading and planning that
//! `pipe graph` shares.

use std::path::Path;
use std::sync::Arc;

use pipe_runner::exit;
use pipe_runner::expr::Value;
use pipe_runner::plan::{self, Callee, Plan, Selection};
use pipe_runner::source::FileId;
use pipe_runner::workflow::{self, Workflow};

use crate::args::{Cli, ListArgs, SelectArgs};
use crate::output;

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &ListArgs) -> u8 {
    let plans = match plans(cli, &args.select) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let text = if args.json {
        let v = if plans.len() == 1 {
            serde_json::to_string_pretty(&plans[0])
        } else {
            serde_json::to_string_pretty(&plans)
        };
        match v {
            Ok(s) => s + "\n",
            Err(e) => {
                super::error(cli, &format!("cannot write the plan as JSON: {e}"), None);
                return exit::INFRA;
            }
        }
    } else {
        plans
            .iter()
            .map(plan::render::list)
            .collect::<Vec<_>>()
            .join("\n")
    };
    // A closed stdout (`pipe list | head`) is not an error.
    let _ = output::stdout_write(text.as_bytes());
    exit::SUCCESS
}

/// Loads the selected workflows and plans each, with the contexts known before a run and the
/// local reusable workflows their jobs call. Problems are printed; the error is the exit code.
pub fn plans(cli: &Cli, sel: &SelectArgs) -> Result<Vec<Plan>, u8> {
    let p = super::project(cli)?;
    let loaded = super::load_workflows(cli, &p, sel)?;
    let vars = read_vars(cli, sel)?;
    let given = super::inputs(cli, sel)?;
    let selection = Selection {
        jobs: sel.job.clone(),
        no_deps: sel.no_deps,
        matrix: super::matrix_filters(cli, sel)?,
    };
    let mut out = Vec::with_capacity(loaded.len());
    for l in &loaded {
        let wf: &Workflow = &l.workflow;
        let (mut ctx, _, _) = super::plan_contexts(cli, &p, l, sel, vars.clone())?;
        // A callee-only workflow runs only when called: its inputs are the declared defaults
        // (and `--input`), as a caller passing nothing would get.
        if wf.trigger(&sel.event).is_none()
            && let Some(call) = wf.workflow_call()
        {
            let given: Vec<(String, Value)> = given
                .iter()
                .map(|(k, v)| (k.clone(), Value::str(v)))
                .collect();
            for input in &call.inputs {
                let name = &input.id.value;
                if input.required
                    && input.default.is_none()
                    && !given.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
                {
                    warn(
                        cli,
                        &format!(
                            "`{}`: input `{name}` is required and has no default; planned as empty (pass `--input {name}=VALUE`)",
                            l.path
                        ),
                    );
                }
            }
            let inputs = plan::call_inputs(call, &given, &ctx);
            ctx.set("inputs", inputs);
        }
        let callees = read_callees(&p.root, super::action_dir(&p, sel).as_deref(), wf);
        let callee_refs: Vec<Callee<'_>> = callees
            .iter()
            .map(|c| Callee {
                uses: &c.uses,
                workflow: match &c.workflow {
                    Ok((path, wf)) => Ok((path.as_str(), &**wf)),
                    Err(e) => Err(e.clone()),
                },
            })
            .collect();
        let planned = plan::plan_unchecked(
            &plan::PlanInput {
                workflow: wf,
                path: &l.path,
                contexts: &ctx,
                selection: &selection,
            },
            &callee_refs,
        );
        out.push(planned);
    }
    // The selection is judged across all workflows: `-j deploy` names a job of one of them.
    plan::check_selection(&out, &selection).map_err(|e| {
        super::error(cli, &e.message, None);
        exit::USAGE
    })?;
    if !selection.jobs.is_empty() {
        out.retain(|p| p.jobs.iter().any(|j| j.selected));
    }
    Ok(out)
}

/// Prints `warning: message` on stderr (not with `-q`).
fn warn(cli: &Cli, message: &str) {
    if cli.globals.quiet {
        return;
    }
    let s = super::err_styles(cli);
    output::stderr_write(format!("{} {message}\n", s.paint(s.warning, "warning:")).as_bytes());
}

/// A local reusable workflow read from disk for the plan.
struct ReadCallee {
    uses: String,
    workflow: Result<(String, Arc<Workflow>), String>,
}

/// Reads the reusable workflows the jobs call: local ones (`./path` or `$/path`, relative to
/// the repository root) and remote ones found in the offline action folder
/// (`DIR/owner/repo@ref/path`). Problems become reasons shown on the opaque job, never errors:
/// the caller itself is valid, and `pipe validate` reports the callee.
fn read_callees(root: &Path, action_dir: Option<&Path>, wf: &Workflow) -> Vec<ReadCallee> {
    let mut out: Vec<ReadCallee> = Vec::new();
    for job in &wf.jobs {
        let Some(uses) = &job.uses else { continue };
        let uses = uses.text.as_str();
        if out.iter().any(|c| c.uses == uses) {
            continue;
        }
        let (file, rel) = if plan::is_local_call(uses) {
            (root.join(&uses[2..]), uses[2..].to_owned())
        } else {
            let Some(dir) = action_dir else { continue };
            let Ok(pipe_runner::check::UsesRef::Remote {
                owner,
                repo,
                path,
                git_ref,
            }) = pipe_runner::check::parse_uses(uses)
            else {
                continue;
            };
            let file = dir
                .join(&owner)
                .join(format!("{repo}@{git_ref}"))
                .join(&path);
            if !file.is_file() {
                continue;
            }
            (file, uses.to_owned())
        };
        let workflow = match std::fs::read_to_string(&file) {
            Err(e) => Err(format!("`{rel}` cannot be read: {}", super::io_reason(&e))),
            Ok(text) => match workflow::load(FileId(0), &text) {
                (Some(callee), diags) if !diags.iter().any(|d| d.is_error()) => {
                    Ok((rel.to_owned(), Arc::new(callee)))
                }
                _ => Err(format!(
                    "`{rel}` is invalid (`pipe validate {rel}` shows why)"
                )),
            },
        };
        out.push(ReadCallee {
            uses: uses.to_owned(),
            workflow,
        });
    }
    out
}

/// `--var` and `--var-file` as the `vars` context (later values win), as `pipe run` reads them.
fn read_vars(cli: &Cli, sel: &SelectArgs) -> Result<Value, u8> {
    super::run::read_pairs(cli, &sel.var, &sel.var_file, "--var")
}
