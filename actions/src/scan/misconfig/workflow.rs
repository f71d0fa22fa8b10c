//! GitHub workflow security checks, named after zizmor's audits (their names are the
//! aliases): script injection from attacker-controlled contexts, `pull_request_target` or
//! `workflow_run` checking out the pull request's head, third-party actions not pinned to a
//! commit, and `permissions: write-all`.

use pipe_runner::source::FileId;
use pipe_runner::yaml::{self, Node};

use super::{Check, Problem, line_at};
use crate::scan::severity::Severity;

/// The workflow checks.
pub static CHECKS: [Check; 4] = [
    Check {
        id: "GHA-0001",
        aliases: &["template-injection"],
        title: "Script injection from an attacker-controlled context",
        severity: Severity::High,
        resolution: "Pass the value through `env:` and use the variable in the script (`\"$TITLE\"`), never `${{ … }}` inside `run:` or `script:`.",
    },
    Check {
        id: "GHA-0002",
        aliases: &["dangerous-triggers"],
        title: "Privileged trigger checks out the pull request's code",
        severity: Severity::Critical,
        resolution: "Do not check out the pull request's head under `pull_request_target` or `workflow_run`; use `pull_request` for untrusted code, or keep the checkout away from secrets and write tokens.",
    },
    Check {
        id: "GHA-0003",
        aliases: &["unpinned-uses"],
        title: "Third-party action not pinned to a commit",
        severity: Severity::Medium,
        resolution: "Pin the action to a full commit SHA (`uses: owner/repo@<40 hex digits> # v1.2.3`).",
    },
    Check {
        id: "GHA-0004",
        aliases: &["excessive-permissions"],
        title: "`permissions: write-all`",
        severity: Severity::High,
        resolution: "Grant only the scopes the job needs (`permissions: { contents: read }`).",
    },
];

/// Contexts an outsider controls (GitHub's security hardening guide).
fn untrusted(token: &str) -> bool {
    let t = token.trim();
    if t == "github.head_ref" {
        return true;
    }
    let Some(rest) = t.strip_prefix("github.event.") else {
        return false;
    };
    const ENDS: [&str; 11] = [
        ".title",
        ".body",
        ".head.ref",
        ".head.label",
        ".message",
        ".email",
        ".name",
        ".head_branch",
        ".default_branch",
        ".page_name",
        ".label",
    ];
    let r = format!(".{rest}");
    ENDS.iter().any(|e| r.ends_with(e))
        && !r.ends_with(".repository.name")
        && !r.ends_with(".repo.name")
        && !r.ends_with(".owner.name")
}

/// The `${{ … }}` expressions of a text: (start, end, inner text).
fn expressions(s: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = s[from..].find("${{") {
        let start = from + i;
        let Some(j) = s[start..].find("}}") else {
            break;
        };
        let end = start + j + 2;
        out.push((start, end, &s[start + 3..end - 2]));
        from = end;
    }
    out
}

fn tokens(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| {
        !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '[' | ']'))
    })
    .filter(|t| !t.is_empty())
}

fn triggers(on: Option<&Node>) -> Vec<String> {
    match on {
        Some(n) => match (n.as_str(), n.as_seq(), n.as_map()) {
            (Some(s), _, _) => vec![s.to_owned()],
            (_, Some(seq), _) => seq
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            (_, _, Some(m)) => m
                .iter()
                .filter_map(|e| e.key.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    }
}

/// Checks a workflow file.
pub fn check(text: &str) -> Result<Vec<Problem>, String> {
    let loaded = yaml::load(FileId(0), text);
    let Some(root) = loaded.root else {
        return Err("not YAML".into());
    };
    if root.as_map().is_none() {
        return Err("not a workflow (no mapping at the top)".into());
    }
    let mut out = Vec::new();
    let line = |n: &Node| line_at(text, n.span.start as usize);
    let on = root.get("on").or_else(|| root.get("true"));
    let trig = triggers(on);
    let privileged = trig
        .iter()
        .any(|t| t == "pull_request_target" || t == "workflow_run");
    if let Some(p) = root.get("permissions")
        && p.as_str() == Some("write-all")
    {
        out.push(Problem {
            check: &CHECKS[3],
            line: line(p),
            end_line: line(p),
            message: "the workflow grants every scope for writing".into(),
            subject: "workflow".into(),
        });
    }
    let Some(jobs) = root.get("jobs").and_then(Node::as_map) else {
        return Ok(out);
    };
    for job in jobs {
        let jname = job.key.as_str().unwrap_or("");
        if let Some(p) = job.value.get("permissions")
            && p.as_str() == Some("write-all")
        {
            out.push(Problem {
                check: &CHECKS[3],
                line: line(p),
                end_line: line(p),
                message: format!("job `{jname}` grants every scope for writing"),
                subject: format!("job {jname}"),
            });
        }
        // A reusable workflow call is a `uses` on the job.
        if let Some(u) = job.value.get("uses") {
            unpinned(u, &format!("job {jname}"), &line, &mut out);
        }
        let Some(steps) = job.value.get("steps").and_then(Node::as_seq) else {
            continue;
        };
        for (k, step) in steps.iter().enumerate() {
            let subject = format!(
                "job {jname} step {}",
                step.get("id")
                    .or(step.get("name"))
                    .and_then(Node::as_str)
                    .map_or_else(|| (k + 1).to_string(), str::to_owned)
            );
            if let Some(u) = step.get("uses") {
                unpinned(u, &subject, &line, &mut out);
                let action = u.as_str().unwrap_or("");
                if privileged && action.starts_with("actions/checkout@") {
                    let r = step
                        .get("with")
                        .and_then(|w| w.get("ref"))
                        .and_then(Node::as_str)
                        .unwrap_or("");
                    if r.contains("github.event.pull_request.head")
                        || r.contains("github.head_ref")
                        || r.contains("github.event.workflow_run.head")
                        || r.contains("refs/pull/")
                    {
                        out.push(Problem {
                            check: &CHECKS[1],
                            line: line(u),
                            end_line: line(u),
                            message: format!(
                                "`{}` checks out the pull request's head under `{}`",
                                action,
                                trig.iter()
                                    .find(|t| *t == "pull_request_target" || *t == "workflow_run")
                                    .map_or("", String::as_str)
                            ),
                            subject: subject.clone(),
                        });
                    }
                }
                if action.starts_with("actions/github-script@")
                    && let Some(script) = step.get("with").and_then(|w| w.get("script"))
                {
                    inject(script, text, &subject, "script", &mut out);
                }
            }
            if let Some(run) = step.get("run") {
                inject(run, text, &subject, "run", &mut out);
            }
        }
    }
    Ok(out)
}

fn inject(node: &Node, text: &str, subject: &str, what: &str, out: &mut Vec<Problem>) {
    let Some(s) = node.as_str() else { return };
    for (a, b, inner) in expressions(s) {
        if let Some(t) = tokens(inner).find(|t| untrusted(t)) {
            let span = node.text_span(text, a..b);
            let l = line_at(text, span.start as usize);
            out.push(Problem {
                check: &CHECKS[0],
                line: l,
                end_line: l,
                message: format!("`{t}` is expanded into `{what}:`, so its text runs as code"),
                subject: format!("{subject} {t}"),
            });
        }
    }
}

fn unpinned(u: &Node, subject: &str, line: &dyn Fn(&Node) -> u32, out: &mut Vec<Problem>) {
    let Some(action) = u.as_str() else { return };
    if action.starts_with("./") || action.starts_with("docker://") {
        return;
    }
    let (repo, r) = action.split_once('@').unwrap_or((action, ""));
    let owner = repo.split('/').next().unwrap_or("");
    if matches!(owner, "actions" | "github" | "dependabot") && !r.is_empty() {
        return;
    }
    let sha = r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit());
    if !sha {
        out.push(Problem {
            check: &CHECKS[2],
            line: line(u),
            end_line: line(u),
            message: if r.is_empty() {
                format!("`{action}` names no version")
            } else {
                format!("`{action}` is pinned to a tag or branch, which can be moved")
            },
            subject: format!("{subject} {repo}"),
        });
    }
}
