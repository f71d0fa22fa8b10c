//! `actions/checkout` (v4.3.1 surface), from the local repository, without a token or network.
//!
//! The source is always the repository `pipe run` started in (`repository` naming another
//! repository fails). Without `path`, in place (the workspace *is* the repository), the step
//! changes nothing (decisions.md); with `path`, under `--isolate` and in containers it does
//! what GitHub does: `git init`, a fetch of `fetch-depth` commits (default 1, shallow; 0 = all
//! history with every branch and tag) through `file://`, sparse checkout, `clean`,
//! submodules. Outputs `ref` and `commit`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use indexmap::IndexMap;
use pipe_runner::executor::OutputSink;
use pipe_runner::run::action::{BuiltinAction, BuiltinCall, BuiltinResult};

use crate::util::{env, input, input_bool, input_lines, line, normalise, warn_unexpected, warning};

/// Inputs of `actions/checkout` 4.3.1.
const INPUTS: &[&str] = &[
    "repository",
    "ref",
    "token",
    "ssh-key",
    "ssh-known-hosts",
    "ssh-strict",
    "ssh-user",
    "persist-credentials",
    "path",
    "clean",
    "filter",
    "sparse-checkout",
    "sparse-checkout-cone-mode",
    "fetch-depth",
    "fetch-tags",
    "show-progress",
    "lfs",
    "submodules",
    "set-safe-directory",
    "github-server-url",
];

/// `actions/checkout`.
pub struct Checkout;

/// What a ref names in the source repository.
enum Target {
    Branch(String),
    Tag(String),
    Commit,
}

/// Runs git (no outer `GIT_DIR`…, no prompts) and logs the command; `Err` carries stderr.
async fn git(out: &mut dyn OutputSink, dir: &Path, args: &[&str]) -> Result<String, String> {
    line(out, &format!("[command]git {}", args.join(" ")));
    let o = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run `git`: {e}"))?;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr);
    if !stderr.trim().is_empty() {
        out.write(stderr.as_bytes());
        if !stderr.ends_with('\n') {
            out.write(b"\n");
        }
    }
    if o.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`git {}` failed: {}",
            args.join(" "),
            stderr.trim().lines().last().unwrap_or("no message")
        ))
    }
}

/// `git rev-parse --verify` without logging; `None` when the name does not resolve.
async fn rev_parse(dir: &Path, name: &str) -> Option<String> {
    let o = tokio::process::Command::new("git")
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{name}^{{commit}}"),
        ])
        .current_dir(dir)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn is_sha(s: &str) -> bool {
    s.len() >= 7 && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolves `ref` in the source repository: the ref name checked out and its commit.
async fn resolve_ref(source: &Path, r: &str) -> Result<(Target, String, String), String> {
    if let Some(b) = r.strip_prefix("refs/heads/") {
        if let Some(c) = rev_parse(source, r).await {
            return Ok((Target::Branch(b.to_owned()), r.to_owned(), c));
        }
    } else if let Some(t) = r.strip_prefix("refs/tags/") {
        if let Some(c) = rev_parse(source, r).await {
            return Ok((Target::Tag(t.to_owned()), r.to_owned(), c));
        }
    } else if is_sha(r) {
        if let Some(c) = rev_parse(source, r).await {
            return Ok((Target::Commit, c.clone(), c));
        }
    } else {
        let branch = format!("refs/heads/{r}");
        if let Some(c) = rev_parse(source, &branch).await {
            return Ok((Target::Branch(r.to_owned()), branch, c));
        }
        let tag = format!("refs/tags/{r}");
        if let Some(c) = rev_parse(source, &tag).await {
            return Ok((Target::Tag(r.to_owned()), tag, c));
        }
    }
    Err(format!(
        "a branch or tag with the name `{r}` could not be found"
    ))
}

#[async_trait]
impl BuiltinAction for Checkout {
    async fn run(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> BuiltinResult {
        let i = call.inputs;
        warn_unexpected(out, i, INPUTS, call.uses);
        let ours = env(call.env, "GITHUB_REPOSITORY").unwrap_or("");
        let repo = input(i, "repository");
        if !repo.is_empty() && !repo.eq_ignore_ascii_case(ours) {
            return Err(format!(
                "checking out `{repo}` is not available offline: pipe checks out only the local repository (`{ours}`)"
            ));
        }
        let depth: u64 = match input(i, "fetch-depth") {
            "" => 1,
            v => v
                .parse()
                .map_err(|_| format!("invalid `fetch-depth` `{v}`: expected a number"))?,
        };
        let clean = input_bool(i, "clean", true)?;
        let fetch_tags = input_bool(i, "fetch-tags", false)?;
        let cone = input_bool(i, "sparse-checkout-cone-mode", true)?;
        let lfs = input_bool(i, "lfs", false)?;
        let sparse = input_lines(i, "sparse-checkout");
        let submodules = match input(i, "submodules") {
            "" | "false" | "False" | "FALSE" => None,
            "true" | "True" | "TRUE" => Some(false),
            "recursive" => Some(true),
            v => {
                return Err(format!(
                    "invalid `submodules` `{v}`: expected `true`, `false` or `recursive`"
                ));
            }
        };
        if lfs {
            warning(
                out,
                "`lfs: true` is ignored: pipe checks out the local repository, whose LFS files are already there",
            );
        }
        let rel = input(i, "path");
        let dest = normalise(&call.workspace.join(rel));
        if !dest.starts_with(normalise(call.workspace)) {
            return Err(format!(
                "repository path `{}` is not under `{}`",
                dest.display(),
                call.workspace.display()
            ));
        }
        let source = call.repository;
        // The ref and commit: `ref`, else the run's `GITHUB_REF`/`GITHUB_SHA`.
        let wanted = input(i, "ref");
        let (target, ref_name, commit) = if wanted.is_empty() {
            let sha = env(call.env, "GITHUB_SHA").unwrap_or("").to_owned();
            if sha.is_empty() || sha.bytes().all(|b| b == b'0') {
                return Err("the repository has no commits to check out".to_owned());
            }
            let r = env(call.env, "GITHUB_REF").unwrap_or("").to_owned();
            let target = if let Some(b) = r.strip_prefix("refs/heads/") {
                Target::Branch(b.to_owned())
            } else if let Some(t) = r.strip_prefix("refs/tags/") {
                Target::Tag(t.to_owned())
            } else {
                Target::Commit
            };
            (target, r, sha)
        } else {
            resolve_ref(source, wanted).await?
        };
        let mut outputs = IndexMap::new();
        outputs.insert("ref".to_owned(), ref_name.clone());
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        };
        if same(&dest, source) {
            line(
                out,
                "the workspace is the repository itself: `actions/checkout` without `path` leaves it as it is",
            );
            let head = rev_parse(source, "HEAD").await.unwrap_or(commit);
            outputs.insert("commit".to_owned(), head);
            return Ok(outputs);
        }
        line(out, &format!("Syncing repository: {ours}"));
        let fresh = !dest.join(".git").exists();
        if fresh {
            if dest.exists() {
                line(
                    out,
                    &format!("Deleting the contents of '{}'", dest.display()),
                );
                clear_dir(&dest)?;
            }
            std::fs::create_dir_all(&dest)
                .map_err(|e| format!("cannot create `{}`: {e}", dest.display()))?;
            git(out, &dest, &["init", "-q", &dest.to_string_lossy()]).await?;
            let url = format!("file://{}", source.display());
            git(out, &dest, &["remote", "add", "origin", &url]).await?;
        } else if clean {
            git(out, &dest, &["clean", "-ffdx"]).await?;
            git(out, &dest, &["reset", "--hard", "HEAD"]).await?;
        }
        // Fetching a commit that is no ref tip needs `allowAnySHA1InWant` on the serving side.
        let upload = "--upload-pack=git -c uploadpack.allowAnySHA1InWant=true upload-pack";
        let (refspec, tracking) = match &target {
            Target::Branch(b) => (
                format!("+{commit}:refs/remotes/origin/{b}"),
                Some(format!("refs/remotes/origin/{b}")),
            ),
            Target::Tag(t) => (
                format!("+{commit}:refs/tags/{t}"),
                Some(format!("refs/tags/{t}")),
            ),
            Target::Commit => (commit.clone(), None),
        };
        if depth == 0 {
            git(
                out,
                &dest,
                &[
                    "fetch",
                    "-q",
                    upload,
                    "--prune",
                    "--no-recurse-submodules",
                    "--tags",
                    "origin",
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
            )
            .await?;
            // The ref may have moved since the run started: like GitHub, point it back at the
            // run's commit.
            let at = match &tracking {
                Some(r) => rev_parse(&dest, r).await,
                None => rev_parse(&dest, &commit).await,
            };
            if at.as_deref() != Some(commit.as_str()) {
                git(out, &dest, &["fetch", "-q", upload, "origin", &refspec]).await?;
            }
        } else {
            let depth_arg = format!("--depth={depth}");
            let mut args = vec!["fetch", "-q", upload];
            if !fetch_tags {
                args.push("--no-tags");
            }
            args.extend(["--prune", "--no-recurse-submodules", &depth_arg, "origin"]);
            args.push(&refspec);
            git(out, &dest, &args).await?;
        }
        if !sparse.is_empty() {
            let mut args = vec!["sparse-checkout", "set"];
            if !cone {
                args.push("--no-cone");
            }
            args.extend(sparse.iter().map(String::as_str));
            git(out, &dest, &args).await?;
        } else if !fresh {
            let _ = git(out, &dest, &["sparse-checkout", "disable"]).await;
        }
        match &target {
            Target::Branch(b) => {
                let upstream = format!("refs/remotes/origin/{b}");
                let start = if rev_parse(&dest, &upstream).await.is_some() {
                    upstream
                } else {
                    commit.clone()
                };
                git(out, &dest, &["checkout", "-q", "--force", "-B", b, &start]).await?;
            }
            Target::Tag(t) => {
                let tag = format!("refs/tags/{t}");
                git(out, &dest, &["checkout", "-q", "--force", &tag]).await?;
            }
            Target::Commit => {
                git(out, &dest, &["checkout", "-q", "--force", &commit]).await?;
            }
        }
        if let Some(recursive) = submodules {
            let mut sync = vec!["submodule", "sync"];
            let mut update = vec![
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "update",
                "--init",
                "--force",
            ];
            if recursive {
                sync.push("--recursive");
                update.push("--recursive");
            }
            git(out, &dest, &sync).await?;
            git(out, &dest, &update).await?;
        }
        let head = rev_parse(&dest, "HEAD")
            .await
            .ok_or_else(|| "cannot read the checked-out commit".to_owned())?;
        line(out, &format!("HEAD is now at {head}"));
        outputs.insert("commit".to_owned(), head);
        Ok(outputs)
    }
}

/// Removes everything inside `dir` (not `dir` itself).
fn clear_dir(dir: &PathBuf) -> Result<(), String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
    for e in rd.flatten() {
        let p = e.path();
        let r = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
            _ => std::fs::remove_file(&p),
        };
        r.map_err(|e| format!("cannot remove `{}`: {e}", p.display()))?;
    }
    Ok(())
}
