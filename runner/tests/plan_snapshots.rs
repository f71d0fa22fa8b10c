//! Plan snapshots: every workflow under `tests/data/plan/` is loaded, planned and rendered (the
//! `pipe list` listing plus each leg's `job-index`, display name and matrix values), and the text
//! is compared with `tests/snapshots/plan_snapshots__<file>.snap`.
//!
//! Lines starting with `# plan:` at the top of a workflow adjust the run:
//! `event=NAME`, `job=ID` (repeatable), `no-deps`, `matrix=KEY=VALUE`, `input=NAME=VALUE`,
//! `var=NAME=VALUE`, `callee=USES=FILE` (a reusable workflow read from `callees/FILE`),
//! `needs=JSON` (the rest of the line: the `needs` context used to expand dynamic matrices afterwards, as the scheduler
//! does), `json` (append the plan JSON) and `graph` (append `pipe graph` text and DOT).

use std::path::{Path, PathBuf};

use pipe_runner::context::Contexts;
use pipe_runner::expr::Value;
use pipe_runner::plan::{self, Callee, Legs, Plan, PlanInput, Selection, render};
use pipe_runner::source::FileId;
use pipe_runner::workflow::{self, Workflow};

#[derive(Default)]
struct Directives {
    event: Option<String>,
    selection: Selection,
    inputs: Vec<(String, String)>,
    vars: Vec<(String, String)>,
    callees: Vec<(String, String)>,
    needs: Option<String>,
    json: bool,
    graph: bool,
}

fn directives(text: &str) -> Directives {
    let mut d = Directives::default();
    for line in text.lines() {
        let Some(mut rest) = line.strip_prefix("# plan:") else {
            continue;
        };
        // `needs=JSON` takes the rest of the line (JSON may contain spaces).
        if let Some(at) = rest.find("needs=") {
            d.needs = Some(rest[at + "needs=".len()..].trim().to_owned());
            rest = &rest[..at];
        }
        for item in rest.split_whitespace() {
            let (k, v) = item.split_once('=').unwrap_or((item, ""));
            let pair = |v: &str| {
                let (a, b) = v.split_once('=').expect("KEY=VALUE");
                (a.to_owned(), b.to_owned())
            };
            match k {
                "event" => d.event = Some(v.to_owned()),
                "job" => d.selection.jobs.push(v.to_owned()),
                "no-deps" => d.selection.no_deps = true,
                "matrix" => d.selection.matrix.push(pair(v)),
                "input" => d.inputs.push(pair(v)),
                "var" => d.vars.push(pair(v)),
                "callee" => d.callees.push(pair(v)),
                "json" => d.json = true,
                "graph" => d.graph = true,
                other => panic!("unknown directive `{other}`"),
            }
        }
    }
    d
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/plan")
}

fn load(text: &str) -> Workflow {
    // Snapshots may show plans of workflows the checker rejects (to pin down the plan's own
    // errors), so load diagnostics are not fatal here.
    workflow::load(FileId(0), text)
        .0
        .expect("the workflow loads")
}

fn contexts(wf: &Workflow, d: &Directives) -> Contexts {
    let event = d.event.clone().unwrap_or_else(|| "push".to_owned());
    let github = Value::object([
        ("event_name", Value::str(&event)),
        ("ref", Value::str("refs/heads/main")),
        ("ref_name", Value::str("main")),
        ("repository", Value::str("octo/repo")),
        (
            "sha",
            Value::str("0123456789abcdef0123456789abcdef01234567"),
        ),
        ("event", Value::object(Vec::<(String, Value)>::new())),
    ]);
    let vars = Value::object(d.vars.iter().map(|(k, v)| (k.clone(), Value::str(v))));
    let mut ctx = Contexts::new().with("github", github).with("vars", vars);
    // As `pipe list` does: dispatch inputs for the event, else a callee-only workflow's
    // `workflow_call` defaults.
    let inputs = if wf.trigger(&event).is_none()
        && let Some(call) = wf.workflow_call()
    {
        let given: Vec<(String, Value)> = d
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), Value::str(v)))
            .collect();
        plan::call_inputs(call, &given, &ctx)
    } else {
        pipe_runner::run::setup::inputs_context(wf, &event, &d.inputs).expect("inputs")
    };
    ctx.set("inputs", inputs);
    ctx
}

/// Each leg: `id #index name {matrix}`; dynamic matrices expanded with `needs` when given.
fn legs_text(plan: &Plan, wf: &Workflow, ctx: &Contexts, needs: Option<&str>) -> String {
    let mut out = String::new();
    for &i in &plan.order {
        let job = &plan.jobs[i];
        if !job.selected {
            continue;
        }
        match &job.legs {
            Legs::Expanded { legs } => {
                for l in legs {
                    out.push_str(&format!(
                        "{} #{}{} {} {}\n",
                        job.id,
                        l.job_index,
                        if l.selected { "" } else { " (not selected)" },
                        l.name,
                        l.matrix.to_json()
                    ));
                }
            }
            Legs::Dynamic => {
                out.push_str(&format!("{} dynamic\n", job.id));
                if let Some(needs) = needs {
                    let json: serde_json::Value = serde_json::from_str(needs).expect("needs JSON");
                    let mut c = ctx.clone();
                    c.set("needs", Value::from_json(json));
                    let wjob = &wf.jobs[job.index];
                    match plan::expand_job_matrix(wjob, &c) {
                        Ok(mut legs) => {
                            plan::select_legs(&mut legs, &plan.matrix_filter);
                            for l in legs {
                                out.push_str(&format!(
                                    "  at run time: #{}{} {} {}\n",
                                    l.job_index,
                                    if l.selected { "" } else { " (not selected)" },
                                    l.name,
                                    l.matrix.to_json()
                                ));
                            }
                        }
                        Err(e) => out.push_str(&format!("  at run time: error: {}\n", e.message)),
                    }
                }
            }
            Legs::Error { message, .. } => {
                out.push_str(&format!("{} error: {message}\n", job.id));
            }
        }
        if let Some(sub) = job.call.as_ref().and_then(|c| c.plan.as_ref()) {
            out.push_str(&legs_text(sub, wf, ctx, None));
        }
    }
    out
}

fn snapshot_one(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read workflow");
    let d = directives(&text);
    let wf = load(&text);
    let ctx = contexts(&wf, &d);
    let callee_wfs: Vec<(String, String, Workflow)> = d
        .callees
        .iter()
        .map(|(uses, file)| {
            let text = std::fs::read_to_string(data_dir().join("callees").join(file))
                .expect("read callee");
            (
                uses.clone(),
                format!(".github/workflows/{file}"),
                load(&text),
            )
        })
        .collect();
    let callees: Vec<Callee<'_>> = callee_wfs
        .iter()
        .map(|(uses, path, wf)| Callee {
            uses,
            workflow: Ok((path.as_str(), wf)),
        })
        .collect();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("x");
    let input = PlanInput {
        workflow: &wf,
        path: name,
        contexts: &ctx,
        selection: &d.selection,
    };
    let plan = match plan::plan_with(&input, &callees) {
        Ok(p) => p,
        Err(e) => return format!("selection error: {}\n", e.message),
    };
    let mut out = render::list(&plan);
    out.push_str("--- legs\n");
    out.push_str(&legs_text(&plan, &wf, &ctx, d.needs.as_deref()));
    if d.graph {
        out.push_str("--- graph\n");
        out.push_str(&render::ascii(&plan));
        out.push_str("--- dot\n");
        out.push_str(&render::dot(&plan));
    }
    if d.json {
        out.push_str("--- json\n");
        out.push_str(&serde_json::to_string_pretty(&plan).expect("json"));
        out.push('\n');
    }
    out
}

fn workflows() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("data dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn plan_snapshots() {
    let files = workflows();
    assert!(files.len() >= 60, "only {} workflows", files.len());
    for path in files {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_owned();
        let text = snapshot_one(&path);
        insta::with_settings!({ description => format!("tests/data/plan/{stem}.yml"), omit_expression => true }, {
            insta::assert_snapshot!(stem, text);
        });
    }
}

/// Plans must not depend on anything but their inputs: planning twice gives the same plan.
#[test]
fn planning_is_deterministic() {
    for path in workflows() {
        assert_eq!(
            snapshot_one(&path),
            snapshot_one(&path),
            "{}",
            path.display()
        );
    }
}
