//! `pipe graph`: the job graph as ASCII (one line per job in dependency order, with edges
//! drawn to the jobs it needs) or as Graphviz DOT.

use pipe_runner::exit;
use pipe_runner::plan::{Legs, Plan};

use crate::args::{Cli, GraphArgs};
use crate::output;

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &GraphArgs) -> u8 {
    let p = match super::project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let loaded = match super::load_workflows(cli, &p, &args.select) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let mut text = String::new();
    for l in &loaded {
        let vars =
            pipe_runner::expr::Value::object(Vec::<(String, pipe_runner::expr::Value)>::new());
        let (ctx, _, _) = match super::plan_contexts(cli, &p, l, &args.select, vars) {
            Ok(x) => x,
            Err(code) => return code,
        };
        let plan = match super::plan_one(cli, l, &args.select, &ctx) {
            Ok(plan) => plan,
            Err(code) => return code,
        };
        text.push_str(&if args.dot { dot(&plan) } else { ascii(&plan) });
    }
    let _ = output::stdout_write(text.as_bytes());
    exit::SUCCESS
}

fn legs_label(plan: &Plan, i: usize) -> String {
    match &plan.jobs[i].legs {
        Legs::Expanded { legs } if plan.jobs[i].has_matrix => {
            format!(" ×{}", legs.iter().filter(|l| l.selected).count())
        }
        Legs::Dynamic => " ×?".to_owned(),
        _ => String::new(),
    }
}

/// Graphviz DOT of the plan.
pub fn dot(plan: &Plan) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n",
        q(&plan.name)
    );
    for &i in &plan.order {
        let j = &plan.jobs[i];
        if !j.selected {
            continue;
        }
        let label = format!("{}{}", j.name, legs_label(plan, i));
        out.push_str(&format!("  {} [label={}];\n", q(&j.id), q(&label)));
    }
    for &i in &plan.order {
        let j = &plan.jobs[i];
        if !j.selected {
            continue;
        }
        for n in &j.needs {
            out.push_str(&format!("  {} -> {};\n", q(&plan.jobs[*n].id), q(&j.id)));
        }
    }
    out.push_str("}\n");
    out
}

/// An ASCII drawing: jobs in dependency order by depth, each with the jobs it needs.
pub fn ascii(plan: &Plan) -> String {
    let n = plan.jobs.len();
    let mut depth = vec![0usize; n];
    for &i in &plan.order {
        depth[i] = plan.jobs[i]
            .needs
            .iter()
            .map(|&d| depth[d] + 1)
            .max()
            .unwrap_or(0);
    }
    let mut out = format!("{} ({})\n", plan.name, plan.workflow);
    let max_depth = depth.iter().copied().max().unwrap_or(0);
    for level in 0..=max_depth {
        let members: Vec<usize> = plan
            .order
            .iter()
            .copied()
            .filter(|&i| depth[i] == level && plan.jobs[i].selected)
            .collect();
        if members.is_empty() {
            continue;
        }
        for (k, &i) in members.iter().enumerate() {
            let j = &plan.jobs[i];
            let branch = if k + 1 == members.len() {
                "└─"
            } else {
                "├─"
            };
            let needs = if j.needs.is_empty() {
                String::new()
            } else {
                format!(
                    " ◀── {}",
                    j.needs
                        .iter()
                        .map(|&d| plan.jobs[d].id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            out.push_str(&format!(
                "{}{branch} {}{}{needs}\n",
                "   ".repeat(level),
                j.id,
                legs_label(plan, i)
            ));
        }
    }
    out
}
