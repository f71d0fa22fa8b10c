//! The run-wide values every job sees: the `github` context, the default `GITHUB_*`/`RUNNER_*`
//! environment, the event payload and the `inputs` context (decisions.md's local run model).

use std::path::Path;

use crate::expr::{Object, Value};
use crate::gitinfo::GitInfo;
use crate::workflow::{InputType, Workflow};

/// Facts about one run.
#[derive(Clone, Debug)]
pub struct RunFacts<'a> {
    /// Repository facts.
    pub git: &'a GitInfo,
    /// Triggering event name.
    pub event: &'a str,
    /// The event payload.
    pub payload: &'a Value,
    /// Where the payload file is (`GITHUB_EVENT_PATH`).
    pub event_path: &'a Path,
    /// Workflow file relative to the repository root.
    pub workflow_path: &'a str,
    /// Workflow name (`name:` or the path).
    pub workflow_name: &'a str,
    /// Run number.
    pub run_number: u64,
    /// `GITHUB_WORKSPACE`.
    pub workspace: &'a Path,
}

fn ref_name(git_ref: &str) -> (&str, &'static str) {
    if let Some(b) = git_ref.strip_prefix("refs/heads/") {
        (b, "branch")
    } else if let Some(t) = git_ref.strip_prefix("refs/tags/") {
        (t, "tag")
    } else {
        (git_ref, "branch")
    }
}

/// The `github` context (without `job` and `action`, which jobs and steps add).
pub fn github_context(f: &RunFacts<'_>) -> Value {
    let (name, ty) = ref_name(&f.git.git_ref);
    let owner = f.git.repository.split('/').next().unwrap_or("");
    let s = |x: &str| Value::str(x);
    let workflow_ref = format!("{}/{}@{}", f.git.repository, f.workflow_path, f.git.git_ref);
    let (head_ref, base_ref) = match f.payload {
        Value::Object(o) => match o.get("pull_request") {
            Some(Value::Object(pr)) => (
                pr.get("head").and_then(|h| match h {
                    Value::Object(h) => h.get("ref").and_then(Value::to_gh_string),
                    _ => None,
                }),
                pr.get("base").and_then(|b| match b {
                    Value::Object(b) => b.get("ref").and_then(Value::to_gh_string),
                    _ => None,
                }),
            ),
            _ => (None, None),
        },
        _ => (None, None),
    };
    let run_id = f.run_number.to_string();
    Value::object(vec![
        ("action", s("")),
        ("action_path", s("")),
        ("action_ref", s("")),
        ("action_repository", s("")),
        ("action_status", s("")),
        ("actor", s(&f.git.actor)),
        ("actor_id", s("0")),
        ("api_url", s("https://api.github.com")),
        ("base_ref", s(base_ref.as_deref().unwrap_or(""))),
        ("env", s("")),
        ("event", f.payload.clone()),
        ("event_name", s(f.event)),
        ("event_path", s(&f.event_path.to_string_lossy())),
        ("graphql_url", s("https://api.github.com/graphql")),
        ("head_ref", s(head_ref.as_deref().unwrap_or(""))),
        ("job", s("")),
        ("path", s("")),
        ("ref", s(&f.git.git_ref)),
        ("ref_name", s(name)),
        ("ref_protected", Value::Bool(false)),
        ("ref_type", s(ty)),
        ("repository", s(&f.git.repository)),
        ("repository_id", s("0")),
        ("repository_owner", s(owner)),
        ("repository_owner_id", s("0")),
        (
            "repositoryUrl",
            s(&format!("git://github.com/{}.git", f.git.repository)),
        ),
        ("retention_days", s("90")),
        ("run_attempt", s("1")),
        ("run_id", s(&run_id)),
        ("run_number", s(&run_id)),
        ("secret_source", s("None")),
        ("server_url", s("https://github.com")),
        ("sha", s(&f.git.sha)),
        ("token", s("")),
        ("triggering_actor", s(&f.git.actor)),
        ("workflow", s(f.workflow_name)),
        ("workflow_ref", s(&workflow_ref)),
        ("workflow_sha", s(&f.git.sha)),
        ("workspace", s(&f.workspace.to_string_lossy())),
    ])
}

/// Environment every step gets from the run (`CI`, `GITHUB_*`, `RUNNER_*` of the run).
pub fn default_env(f: &RunFacts<'_>, github: &Value) -> Vec<(String, String)> {
    let g = |k: &str| match github {
        Value::Object(o) => o.get(k).and_then(Value::to_gh_string).unwrap_or_default(),
        _ => String::new(),
    };
    let mut env = vec![
        ("CI".to_owned(), "true".to_owned()),
        ("GITHUB_ACTIONS".to_owned(), "true".to_owned()),
        ("PIPE".to_owned(), "true".to_owned()),
        ("RUNNER_NAME".to_owned(), "pipe".to_owned()),
        ("RUNNER_ENVIRONMENT".to_owned(), "self-hosted".to_owned()),
    ];
    for (var, key) in [
        ("GITHUB_ACTOR", "actor"),
        ("GITHUB_ACTOR_ID", "actor_id"),
        ("GITHUB_API_URL", "api_url"),
        ("GITHUB_BASE_REF", "base_ref"),
        ("GITHUB_EVENT_NAME", "event_name"),
        ("GITHUB_EVENT_PATH", "event_path"),
        ("GITHUB_GRAPHQL_URL", "graphql_url"),
        ("GITHUB_HEAD_REF", "head_ref"),
        ("GITHUB_REF", "ref"),
        ("GITHUB_REF_NAME", "ref_name"),
        ("GITHUB_REF_PROTECTED", "ref_protected"),
        ("GITHUB_REF_TYPE", "ref_type"),
        ("GITHUB_REPOSITORY", "repository"),
        ("GITHUB_REPOSITORY_ID", "repository_id"),
        ("GITHUB_REPOSITORY_OWNER", "repository_owner"),
        ("GITHUB_REPOSITORY_OWNER_ID", "repository_owner_id"),
        ("GITHUB_RETENTION_DAYS", "retention_days"),
        ("GITHUB_RUN_ATTEMPT", "run_attempt"),
        ("GITHUB_RUN_ID", "run_id"),
        ("GITHUB_RUN_NUMBER", "run_number"),
        ("GITHUB_SERVER_URL", "server_url"),
        ("GITHUB_SHA", "sha"),
        ("GITHUB_TRIGGERING_ACTOR", "triggering_actor"),
        ("GITHUB_WORKFLOW", "workflow"),
        ("GITHUB_WORKFLOW_REF", "workflow_ref"),
        ("GITHUB_WORKFLOW_SHA", "workflow_sha"),
        ("GITHUB_WORKSPACE", "workspace"),
    ] {
        env.push((var.to_owned(), g(key)));
    }
    let _ = f;
    env
}

/// A minimal event payload for `event` when no `--eventpath` is given.
pub fn default_payload(event: &str, git: &GitInfo, inputs: &Value) -> Value {
    let s = |x: &str| Value::str(x);
    let owner = git.repository.split('/').next().unwrap_or("");
    let name = git.repository.split('/').nth(1).unwrap_or("");
    let repository = Value::object(vec![
        ("full_name", s(&git.repository)),
        ("name", s(name)),
        ("owner", Value::object(vec![("login", s(owner))])),
        ("default_branch", s("main")),
    ]);
    let sender = Value::object(vec![("login", s(&git.actor))]);
    let branch = git
        .git_ref
        .strip_prefix("refs/heads/")
        .unwrap_or(&git.git_ref);
    match event {
        "push" => Value::object(vec![
            ("ref", s(&git.git_ref)),
            ("before", s(crate::gitinfo::ZERO_SHA)),
            ("after", s(&git.sha)),
            ("created", Value::Bool(false)),
            ("deleted", Value::Bool(false)),
            ("forced", Value::Bool(false)),
            ("commits", Value::array(Vec::new())),
            ("head_commit", Value::object(vec![("id", s(&git.sha))])),
            ("pusher", Value::object(vec![("name", s(&git.actor))])),
            ("repository", repository),
            ("sender", sender),
        ]),
        "pull_request" | "pull_request_target" => Value::object(vec![
            ("action", s("opened")),
            ("number", Value::Number(1.0)),
            (
                "pull_request",
                Value::object(vec![
                    ("number", Value::Number(1.0)),
                    (
                        "head",
                        Value::object(vec![("ref", s(branch)), ("sha", s(&git.sha))]),
                    ),
                    ("base", Value::object(vec![("ref", s("main"))])),
                ]),
            ),
            ("repository", repository),
            ("sender", sender),
        ]),
        "workflow_dispatch" => {
            // github.event.inputs holds the inputs as strings.
            let mut o = Object::new();
            if let Value::Object(i) = inputs {
                for (k, v) in i.iter() {
                    o.insert(k, Value::str(v.to_gh_string().unwrap_or_default()));
                }
            }
            Value::object(vec![
                ("inputs", Value::from_object(o)),
                ("ref", s(&git.git_ref)),
                ("repository", repository),
                ("sender", sender),
            ])
        }
        _ => Value::object(vec![("repository", repository), ("sender", sender)]),
    }
}

/// An `--input` that does not fit the workflow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InputError(pub String);

/// An input as declared: name, type, default, required, options.
type DeclaredInput = (String, InputType, Option<String>, bool, Vec<String>);

/// The `inputs` context: `workflow_dispatch` (or `workflow_call`) inputs from `--input k=v`
/// with the declared defaults, typed as declared.
pub fn inputs_context(
    wf: &Workflow,
    event: &str,
    given: &[(String, String)],
) -> Result<Value, InputError> {
    let mut declared: Vec<DeclaredInput> = Vec::new();
    if let Some(t) = wf.trigger(event) {
        for i in &t.dispatch_inputs {
            declared.push((
                i.id.value.clone(),
                i.ty,
                i.default.as_ref().map(|d| d.text.clone()),
                i.required,
                i.options.iter().map(|o| o.text.clone()).collect(),
            ));
        }
    }
    if event == "workflow_call"
        && let Some(c) = wf.workflow_call()
    {
        for i in &c.inputs {
            declared.push((
                i.id.value.clone(),
                i.ty,
                i.default.as_ref().map(|d| d.text.clone()),
                i.required,
                Vec::new(),
            ));
        }
    }
    let mut o = Object::new();
    for (k, _) in given {
        if !declared.is_empty() && !declared.iter().any(|(n, ..)| n.eq_ignore_ascii_case(k)) {
            let names: Vec<&str> = declared.iter().map(|(n, ..)| n.as_str()).collect();
            return Err(InputError(format!(
                "input `{k}` is not declared by the workflow; it declares {}",
                crate::workflow::list_names(&names)
            )));
        }
    }
    for (name, ty, default, required, options) in &declared {
        let raw = given
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .or_else(|| default.clone());
        let Some(raw) = raw else {
            if *required {
                return Err(InputError(format!(
                    "input `{name}` is required: pass `--input {name}=VALUE`"
                )));
            }
            o.insert(
                name.clone(),
                match ty {
                    InputType::Boolean => Value::Bool(false),
                    InputType::Number => Value::Null,
                    _ => Value::str(""),
                },
            );
            continue;
        };
        let v = match ty {
            InputType::Boolean => match raw.as_str() {
                "true" => Value::Bool(true),
                "false" | "" => Value::Bool(false),
                other => {
                    return Err(InputError(format!(
                        "input `{name}` is a boolean, `{other}` is not `true` or `false`"
                    )));
                }
            },
            InputType::Number => match raw.trim().parse::<f64>() {
                Ok(n) => Value::Number(n),
                Err(_) => {
                    return Err(InputError(format!(
                        "input `{name}` is a number, `{raw}` is not"
                    )));
                }
            },
            InputType::Choice => {
                if !options.is_empty() && !options.contains(&raw) {
                    return Err(InputError(format!(
                        "input `{name}` must be one of {}, not `{raw}`",
                        crate::workflow::list_names(
                            &options.iter().map(String::as_str).collect::<Vec<_>>()
                        )
                    )));
                }
                Value::str(&raw)
            }
            _ => Value::str(&raw),
        };
        o.insert(name.clone(), v);
    }
    if declared.is_empty() {
        for (k, v) in given {
            o.insert(k.clone(), Value::str(v));
        }
    }
    Ok(Value::from_object(o))
}

/// Parses dotenv-style `NAME=VALUE` lines (`--secret-file`, `--var-file`): `#` comments, blank
/// lines, optional `export `, single or double quotes (double quotes unescape `\n`, `\"`, `\\`).
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let Some((k, v)) = l.split_once('=') else {
            return Err(format!("line {}: expected `NAME=VALUE`", i + 1));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("line {}: empty name", i + 1));
        }
        let v = v.trim();
        let value = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            let inner = &v[1..v.len() - 1];
            let mut s = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some(o) => s.push(o),
                        None => s.push('\\'),
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
            v[1..v.len() - 1].to_owned()
        } else {
            v.split(" #").next().unwrap_or(v).trim().to_owned()
        };
        out.push((k.to_owned(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv() {
        let v =
            parse_dotenv("# c\nA=1\nexport B=\"x\\ny\"\nC='q r'\nD=plain # comment\n").expect("ok");
        assert_eq!(
            v,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x\ny".into()),
                ("C".into(), "q r".into()),
                ("D".into(), "plain".into())
            ]
        );
        assert!(parse_dotenv("novalue").is_err());
    }

    #[test]
    fn typed_inputs() {
        let src = "on:\n  workflow_dispatch:\n    inputs:\n      flag: {type: boolean, default: true}\n      n: {type: number}\n      who: {type: choice, options: [a, b], default: a}\njobs:\n  j:\n    runs-on: x\n    steps: [{run: a}]\n";
        let (wf, d) = crate::workflow::load_str(src);
        assert!(d.is_empty(), "{d:?}");
        let wf = wf.expect("wf");
        let v =
            inputs_context(&wf, "workflow_dispatch", &[("n".into(), "3.5".into())]).expect("ok");
        let Value::Object(o) = v else {
            panic!("object")
        };
        assert_eq!(o.get("flag"), Some(&Value::Bool(true)));
        assert_eq!(o.get("n"), Some(&Value::Number(3.5)));
        assert_eq!(
            o.get("who").and_then(Value::to_gh_string).as_deref(),
            Some("a")
        );
        assert!(inputs_context(&wf, "workflow_dispatch", &[("who".into(), "c".into())]).is_err());
        assert!(inputs_context(&wf, "workflow_dispatch", &[("nope".into(), "c".into())]).is_err());
    }
}
