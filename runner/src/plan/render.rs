//! Text forms of a plan: the `pipe list` listing, the `pipe graph` drawing and Graphviz DOT.
//!
//! Pure functions of a [`Plan`] (no colour, no terminal queries) so that the CLI and the
//! snapshot tests print the same thing. Only selected jobs and legs appear.

use std::fmt::Write as _;

use super::{CallKind, Legs, Plan, PlannedJob};

/// More needs than this on one line are shortened (`a, b, … (+N more)`), so wide DAGs stay
/// readable.
const MAX_NEEDS_SHOWN: usize = 8;

fn legs_note(job: &PlannedJob) -> Option<String> {
    match &job.legs {
        Legs::Expanded { legs } if job.has_matrix => {
            let sel = legs.iter().filter(|l| l.selected).count();
            Some(if sel == legs.len() {
                format!("{} leg{}", legs.len(), plural(legs.len()))
            } else {
                format!("{sel} of {} legs", legs.len())
            })
        }
        Legs::Expanded { .. } => None,
        Legs::Dynamic => Some("dynamic matrix".to_owned()),
        Legs::Error { .. } => Some("matrix error".to_owned()),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `a, b, c` or, past [`MAX_NEEDS_SHOWN`], `a, b, … (+N more)`.
fn short_list(items: &[String]) -> String {
    if items.len() <= MAX_NEEDS_SHOWN {
        return items.join(", ");
    }
    let head = &items[..MAX_NEEDS_SHOWN - 2];
    format!(
        "{}, … (+{} more)",
        head.join(", "),
        items.len() - head.len()
    )
}

/// The `pipe list` listing: per workflow a header, then the selected jobs in dependency order
/// with their needs and condition, each matrix job's selected legs by display name, and the
/// jobs of called workflows.
pub fn list(plan: &Plan) -> String {
    let mut out = header(plan);
    list_jobs(plan, 1, &mut out);
    out
}

/// `name (path)`, or the path alone for a workflow without a name.
fn header(plan: &Plan) -> String {
    if plan.name == plan.workflow {
        format!("{}\n", plan.workflow)
    } else {
        format!("{} ({})\n", plan.name, plan.workflow)
    }
}

/// A job's label in drawings: its name, or its id while the name is an unevaluated template.
fn label(j: &PlannedJob) -> &str {
    if j.name.contains("${{") {
        &j.id
    } else {
        &j.name
    }
}

fn list_jobs(plan: &Plan, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    for &i in &plan.order {
        let job = &plan.jobs[i];
        if !job.selected {
            continue;
        }
        let mut line = format!("{pad}{}", job.id);
        if let Some(n) = legs_note(job) {
            let _ = write!(line, "  [{n}]");
        }
        // A job without a matrix shows its display name when it differs from the id.
        if let Legs::Expanded { legs } = &job.legs
            && !job.has_matrix
            && let Some(l) = legs.first()
            && l.name != job.id
        {
            let _ = write!(line, "  name: {}", l.name);
        }
        if !job.needs_ids.is_empty() {
            let _ = write!(line, "  needs: {}", short_list(&job.needs_ids));
        }
        if let Some(c) = &job.condition {
            let _ = write!(line, "  if: {c}");
        }
        out.push_str(&line);
        out.push('\n');
        match &job.legs {
            Legs::Expanded { legs } if job.has_matrix => {
                for l in legs.iter().filter(|l| l.selected) {
                    let _ = writeln!(out, "{pad}  {}", l.name);
                }
            }
            Legs::Expanded { .. } => {}
            Legs::Dynamic => {
                let _ = writeln!(out, "{pad}  (legs are known when its needs have run)");
            }
            Legs::Error { message, .. } => {
                let _ = writeln!(out, "{pad}  error: {message}");
            }
        }
        if let Some(call) = &job.call {
            let _ = write!(out, "{pad}  calls {}", call.uses);
            match (&call.plan, &call.reason) {
                (Some(sub), _) => {
                    let _ = writeln!(out, " ({})", sub.name);
                    list_jobs(sub, depth + 1, out);
                }
                (None, Some(r)) => {
                    let _ = writeln!(out, " (one job: {r})");
                }
                (None, None) => out.push('\n'),
            }
        }
    }
}

/// Depth of each job: 0 without needs, else one more than its deepest need.
fn depths(plan: &Plan) -> Vec<usize> {
    let mut depth = vec![0usize; plan.jobs.len()];
    for &i in &plan.order {
        depth[i] = plan.jobs[i]
            .needs
            .iter()
            .map(|&d| depth[d] + 1)
            .max()
            .unwrap_or(0);
    }
    depth
}

/// The `pipe graph` drawing: jobs grouped in stages (a stage's jobs can start once earlier
/// stages are done), each with the jobs it needs. A job that needs every job of the previous
/// stage says so instead of listing them, and long lists are shortened, so wide DAGs stay one
/// short line per job.
pub fn ascii(plan: &Plan) -> String {
    let mut out = header(plan);
    let depth = depths(plan);
    let max_depth = depth.iter().copied().max().unwrap_or(0);
    let mut stages: Vec<Vec<usize>> = vec![Vec::new(); max_depth + 1];
    for &i in &plan.order {
        if plan.jobs[i].selected {
            stages[depth[i]].push(i);
        }
    }
    let mut number = 0;
    let mut previous: Vec<usize> = Vec::new();
    for members in stages.iter().filter(|m| !m.is_empty()) {
        number += 1;
        let _ = writeln!(
            out,
            "stage {number} ({} job{})",
            members.len(),
            plural(members.len())
        );
        for (k, &i) in members.iter().enumerate() {
            let last = k + 1 == members.len();
            let job = &plan.jobs[i];
            let _ = write!(out, "{} {}", if last { "`--" } else { "|--" }, job.id);
            if let Some(n) = legs_note(job) {
                let _ = write!(out, " [{n}]");
            }
            let mut needs: Vec<usize> = job.needs.clone();
            needs.sort_unstable();
            let all_previous = previous.len() > 2 && needs == previous;
            if all_previous {
                let _ = write!(
                    out,
                    " <- all {} jobs of stage {}",
                    previous.len(),
                    number - 1
                );
            } else if !job.needs_ids.is_empty() {
                let _ = write!(out, " <- {}", short_list(&job.needs_ids));
            }
            out.push('\n');
            if let Some(call) = &job.call {
                let cont = if last { "    " } else { "|   " };
                match &call.plan {
                    Some(sub) => {
                        let _ = writeln!(out, "{cont}calls {}:", call.uses);
                        for &si in &sub.order {
                            let sj = &sub.jobs[si];
                            let _ = write!(out, "{cont}  {}", sj.id);
                            if let Some(n) = legs_note(sj) {
                                let _ = write!(out, " [{n}]");
                            }
                            if !sj.needs_ids.is_empty() {
                                let _ = write!(out, " <- {}", short_list(&sj.needs_ids));
                            }
                            out.push('\n');
                        }
                    }
                    None => {
                        let _ = writeln!(out, "{cont}calls {} (one job)", call.uses);
                    }
                }
            }
        }
        previous = members.clone();
        previous.sort_unstable();
    }
    out
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Graphviz DOT: one node per selected job (labelled with its name and legs), one edge per
/// need; an expanded reusable-workflow call is a cluster of the callee's jobs, entered at its
/// roots and left from its sinks; dynamic matrices and opaque calls are dashed.
pub fn dot(plan: &Plan) -> String {
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n",
        quote(&plan.name)
    );
    for &i in &plan.order {
        let j = &plan.jobs[i];
        if !j.selected {
            continue;
        }
        match j
            .call
            .as_ref()
            .and_then(|c| c.plan.as_ref().map(|p| (c, p)))
        {
            Some((call, sub)) => {
                let _ = writeln!(out, "  subgraph {} {{", quote(&format!("cluster_{}", j.id)));
                let _ = writeln!(
                    out,
                    "    label={};",
                    quote(&format!("{} ({})", label(j), call.uses))
                );
                for &si in &sub.order {
                    let _ = writeln!(out, "    {}", node(&sub.jobs[si]));
                }
                for &si in &sub.order {
                    for &d in &sub.jobs[si].needs {
                        let _ = writeln!(
                            out,
                            "    {} -> {};",
                            quote(&sub.jobs[d].id),
                            quote(&sub.jobs[si].id)
                        );
                    }
                }
                out.push_str("  }\n");
            }
            None => {
                let _ = writeln!(out, "  {}", node(j));
            }
        }
    }
    for &i in &plan.order {
        let j = &plan.jobs[i];
        if !j.selected {
            continue;
        }
        for &d in &j.needs {
            for from in exits(&plan.jobs[d]) {
                for to in entries(j) {
                    let _ = writeln!(out, "  {} -> {};", quote(from), quote(to));
                }
            }
        }
    }
    out.push_str("}\n");
    out
}

fn node(j: &PlannedJob) -> String {
    let mut label = label(j).to_owned();
    let mut dashed = false;
    if let Some(n) = legs_note(j) {
        label.push('\n');
        label.push_str(&n);
        dashed |= matches!(j.legs, Legs::Dynamic);
    }
    if let Some(c) = &j.call
        && c.plan.is_none()
    {
        label.push('\n');
        label.push_str(&format!(
            "calls {}{}",
            if c.kind == CallKind::Remote {
                "remote "
            } else {
                ""
            },
            c.uses
        ));
        dashed = true;
    }
    format!(
        "{} [label={}{}];",
        quote(&j.id),
        quote(&label),
        if dashed { ", style=dashed" } else { "" }
    )
}

/// The nodes an edge into `j` points at: the roots of its expanded call, else `j`.
fn entries(j: &PlannedJob) -> Vec<&str> {
    match j.call.as_ref().and_then(|c| c.plan.as_ref()) {
        Some(sub) => sub
            .jobs
            .iter()
            .filter(|s| s.needs.is_empty())
            .map(|s| s.id.as_str())
            .collect(),
        None => vec![j.id.as_str()],
    }
}

/// The nodes an edge out of `j` starts at: the sinks of its expanded call, else `j`.
fn exits(j: &PlannedJob) -> Vec<&str> {
    match j.call.as_ref().and_then(|c| c.plan.as_ref()) {
        Some(sub) => {
            let mut needed = vec![false; sub.jobs.len()];
            for s in &sub.jobs {
                for &d in &s.needs {
                    needed[d] = true;
                }
            }
            sub.jobs
                .iter()
                .zip(needed)
                .filter(|(_, n)| !n)
                .map(|(s, _)| s.id.as_str())
                .collect()
        }
        None => vec![j.id.as_str()],
    }
}
