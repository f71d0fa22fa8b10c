//! `pipe submit`: sends a workflow (or, in a bare repository's post-receive hook, every
//! workflow a pushed commit triggers) to a `pipe server`; `--wait` follows the run to its end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use pipe_runner::exit;
use pipe_server::api::{RunStatus, SubmitRequest};
use pipe_server::client::{Client, retry};

use crate::args::Cli;
use crate::output;

// `pipe submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The workflow file to run.
    #[arg(
        short = 'W',
        long = "workflow",
        value_name = "FILE",
        required_unless_present = "git_dir"
    )]
    pub workflow: Option<PathBuf>,
    /// The server's URL.
    #[arg(long, env = "PIPE_SERVER", value_name = "URL")]
    pub server: String,
    /// A user token (`pipe server token --kind user`).
    #[arg(long, env = "PIPE_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: String,
    /// The triggering event.
    #[arg(long, default_value = "push", value_name = "NAME")]
    pub event: String,
    /// A secret for the run's jobs, `NAME=VALUE` or `NAME` from the environment (repeatable).
    #[arg(short = 's', long = "secret", value_name = "NAME[=VALUE]")]
    pub secret: Vec<String>,
    /// A bare repository: submit the workflows of `--sha` that the event triggers (for a
    /// post-receive hook).
    #[arg(long, value_name = "DIR", requires = "sha")]
    pub git_dir: Option<PathBuf>,
    /// The commit (with `--git-dir`).
    #[arg(long, value_name = "SHA")]
    pub sha: Option<String>,
    /// The pushed ref (with `--git-dir`).
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// What agents clone (default: the `--git-dir` path).
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,
    /// Wait for the run(s) to finish; exit 1 unless all succeeded.
    #[arg(long)]
    pub wait: bool,
    /// Print the run(s) as JSON.
    #[arg(long)]
    pub json: bool,
}

fn secrets(cli: &Cli, args: &SubmitArgs) -> Result<BTreeMap<String, String>, u8> {
    let mut out = BTreeMap::new();
    for s in &args.secret {
        match s.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            None => match std::env::var(s) {
                Ok(v) => {
                    out.insert(s.clone(), v);
                }
                Err(_) => {
                    super::error(
                        cli,
                        &format!("secret `{s}` is not set in the environment"),
                        Some("pass `-s NAME=VALUE`, or export the variable first"),
                    );
                    return Err(exit::USAGE);
                }
            },
        }
    }
    Ok(out)
}

fn requests(cli: &Cli, args: &SubmitArgs) -> Result<Vec<SubmitRequest>, u8> {
    let secrets = secrets(cli, args)?;
    if let Some(dir) = &args.git_dir {
        let sha = args.sha.clone().unwrap_or_default();
        let found = pipe_server::git::workflows_at(dir, &sha, &args.event).map_err(|e| {
            super::error(cli, &format!("`{}`: {e}", dir.display()), None);
            exit::USAGE
        })?;
        let repo = args.repo.clone().unwrap_or_else(|| {
            dir.canonicalize()
                .unwrap_or_else(|_| dir.clone())
                .display()
                .to_string()
        });
        return Ok(found
            .into_iter()
            .map(|(path, text)| SubmitRequest {
                workflow_path: path,
                workflow: text,
                event: Some(args.event.clone()),
                repo: Some(repo.clone()),
                sha: Some(sha.clone()),
                git_ref: args.git_ref.clone(),
                secrets: secrets.clone(),
            })
            .collect());
    }
    let Some(file) = &args.workflow else {
        return Err(exit::USAGE);
    };
    let text = std::fs::read_to_string(file).map_err(|e| {
        super::error(
            cli,
            &format!("cannot read `{}`: {}", file.display(), super::io_reason(&e)),
            None,
        );
        exit::USAGE
    })?;
    Ok(vec![SubmitRequest {
        workflow_path: workflow_path(file),
        workflow: text,
        event: Some(args.event.clone()),
        repo: args.repo.clone(),
        sha: args.sha.clone(),
        git_ref: args.git_ref.clone(),
        secrets,
    }])
}

/// The workflow's path as agents write it: relative to the repository root when the file is
/// inside one, else `.github/workflows/NAME`.
fn workflow_path(file: &Path) -> String {
    let abs = file.canonicalize().unwrap_or_else(|_| file.to_path_buf());
    let parent = abs.parent().unwrap_or(Path::new("/"));
    let root = pipe_runner::project::find_root(parent);
    let in_git = root.join(".git").exists();
    match abs.strip_prefix(&root) {
        Ok(rel) if in_git && !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => format!(
            ".github/workflows/{}",
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "workflow.yml".to_owned())
        ),
    }
}

fn request_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("submit-{}-{nanos}", std::process::id())
}

/// Runs the command.
pub fn run(cli: &Cli, args: &SubmitArgs) -> u8 {
    let reqs = match requests(cli, args) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let client = Client::new(&args.server, &args.token);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut runs: Vec<RunStatus> = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        // One request id per run, reused by every retry: a retried submit never runs twice.
        let rid = format!("{}-{i}", request_id());
        match retry(deadline, || client.submit(req, &rid)) {
            Ok(st) => {
                if !args.json && !args.wait {
                    let _ = output::stdout_write(format!("{}\n", st.id).as_bytes());
                }
                runs.push(st)
            }
            Err(pipe_server::client::ClientError::Status {
                status: 422,
                message,
            }) => {
                output::stderr_write(format!("{message}\n").as_bytes());
                super::error(
                    cli,
                    &format!("the server refused `{}`", req.workflow_path),
                    None,
                );
                return exit::USAGE;
            }
            Err(e) => {
                super::error(cli, &e.to_string(), None);
                return if matches!(
                    e,
                    pipe_server::client::ClientError::Status { status: 401, .. }
                ) {
                    exit::USAGE
                } else {
                    exit::INFRA
                };
            }
        }
    }
    if args.wait {
        for st in runs.iter_mut() {
            loop {
                if st.state == "done" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
                match retry(Instant::now() + Duration::from_secs(60), || {
                    client.run(st.id)
                }) {
                    Ok(s) => *st = s,
                    Err(e) => {
                        super::error(cli, &e.to_string(), None);
                        return exit::INFRA;
                    }
                }
            }
        }
    }
    if args.json {
        let text = serde_json::to_string_pretty(&runs).unwrap_or_default();
        let _ = output::stdout_write(format!("{text}\n").as_bytes());
    } else if args.wait {
        let mut text = String::new();
        for st in &runs {
            text.push_str(&format!(
                "run {} {}: {}\n",
                st.id,
                st.workflow_path,
                st.conclusion.as_deref().unwrap_or("?")
            ));
            for j in &st.jobs {
                // A matrix leg shows its leg name (`test (linux, 2)`).
                let name = match (&j.leg, &j.name) {
                    (Some(_), Some(n)) => n.as_str(),
                    _ => j.key.as_str(),
                };
                text.push_str(&format!(
                    "  {} {} (attempt {})\n",
                    name,
                    j.result.as_deref().unwrap_or(&j.state),
                    j.accepted_attempt.unwrap_or(j.attempt)
                ));
            }
        }
        let _ = output::stdout_write(text.as_bytes());
    }
    if args.wait
        && runs
            .iter()
            .any(|r| r.conclusion.as_deref() != Some("success"))
    {
        return exit::FAILURE;
    }
    exit::SUCCESS
}
