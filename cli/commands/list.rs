//! `pipe list`: the jobs and matrix legs a run would have, with their display names and needs;
//! `--json` prints the plan.

use pipe_runner::exit;
use pipe_runner::plan::Legs;

use crate::args::{Cli, ListArgs};
use crate::output;

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &ListArgs) -> u8 {
    let p = match super::project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let loaded = match super::load_workflows(cli, &p, &args.select) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let mut plans = Vec::new();
    for l in &loaded {
        let vars =
            pipe_runner::expr::Value::object(Vec::<(String, pipe_runner::expr::Value)>::new());
        let (ctx, _, _) = match super::plan_contexts(cli, &p, l, &args.select, vars) {
            Ok(x) => x,
            Err(code) => return code,
        };
        match super::plan_one(cli, l, &args.select, &ctx) {
            Ok(plan) => plans.push(plan),
            Err(code) => return code,
        }
    }
    let text = if args.json {
        let v = if plans.len() == 1 {
            serde_json::to_value(&plans[0])
        } else {
            serde_json::to_value(&plans)
        };
        format!(
            "{}\n",
            serde_json::to_string_pretty(&v.unwrap_or_default()).unwrap_or_default()
        )
    } else {
        let s = super::err_styles(cli);
        let mut out = String::new();
        for plan in &plans {
            out.push_str(&format!("{} ({})\n", plan.name, plan.workflow));
            for &i in &plan.order {
                let job = &plan.jobs[i];
                if !job.selected {
                    continue;
                }
                let needs = if job.needs_ids.is_empty() {
                    String::new()
                } else {
                    format!("  needs: {}", job.needs_ids.join(", "))
                };
                let cond = job
                    .condition
                    .as_ref()
                    .map(|c| format!("  if: {c}"))
                    .unwrap_or_default();
                out.push_str(&format!("  {}{needs}{cond}\n", job.id));
                match &job.legs {
                    Legs::Expanded { legs } => {
                        if job.has_matrix || legs.iter().any(|l| l.name != job.id) {
                            for leg in legs.iter().filter(|l| l.selected) {
                                out.push_str(&format!("    {}\n", leg.name));
                            }
                        }
                    }
                    Legs::Dynamic => {
                        out.push_str("    (matrix expanded when its needs have run)\n")
                    }
                    Legs::Error { message, .. } => {
                        out.push_str(&format!(
                            "    {} {message}\n",
                            s.paint(s.error, "matrix error:")
                        ));
                    }
                }
            }
        }
        out
    };
    if output::stdout_write(text.as_bytes()).is_err() {
        return exit::SUCCESS;
    }
    exit::SUCCESS
}
