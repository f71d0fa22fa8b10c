//! Runs from git pushes: the workflows of a commit, read with the `git` CLI (a GitHub-style
//! push webhook names a repository the server fetches into a bare mirror; a post-receive hook
//! runs `pipe submit --git-dir` in the bare repository itself).

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::SubmitRequest;

/// The parts of a GitHub push payload the server reads.
#[derive(Clone, Debug, Deserialize)]
pub struct PushPayload {
    /// The pushed ref.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The new commit.
    pub after: String,
    /// The repository.
    pub repository: PushRepository,
}

/// The repository of a push payload.
#[derive(Clone, Debug, Deserialize)]
pub struct PushRepository {
    /// Where to fetch from (a URL or a path the server can reach).
    pub clone_url: String,
}

fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `git`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`git {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The workflows at `sha` in the repository at `git_dir` that `event` triggers, as
/// `(path, text)`.
pub fn workflows_at(
    git_dir: &Path,
    sha: &str,
    event: &str,
) -> Result<Vec<(String, String)>, String> {
    if !is_sha(sha) {
        return Err(format!("`{sha}` is not a full commit id"));
    }
    let listing = git(
        git_dir,
        &["ls-tree", "--name-only", sha, ".github/workflows/"],
    )?;
    let mut out = Vec::new();
    for path in String::from_utf8_lossy(&listing).lines() {
        if !(path.ends_with(".yml") || path.ends_with(".yaml")) {
            continue;
        }
        let text = git(git_dir, &["show", &format!("{sha}:{path}")])?;
        let text = String::from_utf8_lossy(&text).into_owned();
        let (wf, _) = pipe_runner::workflow::load_str(&text);
        // A workflow that does not load is submitted anyway: the server refuses it with its
        // diagnostics, which is what the pusher needs to see.
        if wf.as_ref().is_none_or(|w| w.trigger(event).is_some()) {
            out.push((path.to_owned(), text));
        }
    }
    Ok(out)
}

/// The runs a push webhook asks for: fetches the pushed ref into a bare mirror under `cache`
/// and reads its workflows.
pub fn push_requests(
    cache: &Path,
    payload: &PushPayload,
    event: &str,
) -> Result<Vec<SubmitRequest>, String> {
    if payload.after.bytes().all(|b| b == b'0') {
        // A deleted ref runs nothing.
        return Ok(Vec::new());
    }
    if !is_sha(&payload.after) {
        return Err(format!(
            "`after` must be a full commit id, not `{}`",
            payload.after
        ));
    }
    if !payload.git_ref.starts_with("refs/") || payload.git_ref.contains(char::is_whitespace) {
        return Err(format!(
            "`ref` must be a full ref name, not `{}`",
            payload.git_ref
        ));
    }
    let url = &payload.repository.clone_url;
    let mirror = cache.join(format!(
        "{}.git",
        &hex::encode(Sha256::digest(url.as_bytes()))[..16]
    ));
    if !mirror.join("HEAD").exists() {
        std::fs::create_dir_all(&mirror)
            .map_err(|e| format!("cannot create `{}`: {e}", mirror.display()))?;
        git(&mirror, &["init", "--bare", "-q"])?;
    }
    git(
        &mirror,
        &[
            "fetch",
            "-q",
            "--no-tags",
            "--",
            url,
            &format!("+{}:refs/pipe/fetched", payload.git_ref),
        ],
    )?;
    Ok(workflows_at(&mirror, &payload.after, event)?
        .into_iter()
        .map(|(path, text)| SubmitRequest {
            workflow_path: path,
            workflow: text,
            event: Some(event.to_owned()),
            repo: Some(url.clone()),
            sha: Some(payload.after.clone()),
            git_ref: Some(payload.git_ref.clone()),
            secrets: Default::default(),
        })
        .collect())
}
