//! Reading the policy from the trusted ref.
//!
//! The policy (`.pipe/environments.yml` or `.yaml`) and the approvers' keys
//! (`.pipe/allowed_signers`) are read from the trusted ref's committed tree, never from the
//! working tree: a candidate build cannot weaken its own gates. The trusted ref is, in order:
//! the caller's choice (`--policy-ref`, `PIPE_POLICY_REF`), the branch `origin/HEAD` points
//! at, `main`, `master`.

use std::path::Path;

use pipe_runner::diag::Diagnostic;
use pipe_runner::source::{SourceFile, SourceMap};

use super::Policy;

/// Policy file names, in the order they are looked for.
pub const POLICY_FILES: &[&str] = &[".pipe/environments.yml", ".pipe/environments.yaml"];
/// The approvers' keys.
pub const ALLOWED_SIGNERS: &str = ".pipe/allowed_signers";

/// The policy could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Not a git repository.
    #[error("`{0}` is not a git repository: promotion reads its policy from a trusted ref")]
    NoRepo(String),
    /// The ref does not exist.
    #[error("the trusted ref `{0}` does not exist")]
    NoRef(String),
    /// No policy file at the ref.
    #[error(
        "no `.pipe/environments.yml` (nor a workflow with a top-level `environments:`) at the trusted ref `{0}`"
    )]
    NoPolicy(String),
    /// Git failed.
    #[error("git: {0}")]
    Git(String),
}

impl SourceError {
    /// A hint for the user.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            SourceError::NoRef(_) => Some("set `--policy-ref REF` or `PIPE_POLICY_REF`"),
            SourceError::NoPolicy(_) => {
                Some("commit the policy to the trusted ref; the working tree's copy is never used")
            }
            _ => None,
        }
    }
}

/// A policy as read.
#[derive(Debug)]
pub struct Loaded {
    /// The source (for rendering diagnostics).
    pub sources: SourceMap,
    /// The policy, when it has no errors.
    pub policy: Option<Policy>,
    /// Problems.
    pub diagnostics: Vec<Diagnostic>,
    /// Where it came from: `REF:PATH`.
    pub origin: String,
    /// The commit it was read at.
    pub commit: Option<String>,
    /// `.pipe/allowed_signers` at the same ref, if present.
    pub allowed_signers: Option<String>,
}

/// Parses policy text (`path` is what diagnostics show).
pub fn load_text(path: &str, text: &str) -> Loaded {
    let mut sources = SourceMap::new();
    let id = sources.add(SourceFile::new(path, text));
    let loaded = pipe_runner::yaml::load(id, text);
    let mut diagnostics = loaded.diagnostics;
    let mut policy = None;
    if diagnostics.iter().any(Diagnostic::is_error) {
        // Syntax errors: nothing to walk.
    } else if let Some(root) = loaded.root {
        let (p, d) = super::parse(id, &root, text.as_bytes());
        policy = p;
        diagnostics.extend(d);
    } else {
        diagnostics.push(Diagnostic::error(
            super::RULE,
            pipe_runner::source::Span::point(id, 0),
            "the policy file is empty",
        ));
    }
    Loaded {
        sources,
        policy,
        diagnostics,
        origin: path.to_owned(),
        commit: None,
        allowed_signers: None,
    }
}

/// Where workflows live; one with a top-level `environments:` key declares the policy when
/// the trusted ref has no `.pipe/environments.yml`.
pub const WORKFLOWS: &str = ".github/workflows";

/// The policy a workflow declares in its top-level `environments:` key, if it has one
/// (`path` is what diagnostics show).
pub fn load_workflow_text(path: &str, text: &str) -> Option<Loaded> {
    let mut sources = SourceMap::new();
    let id = sources.add(SourceFile::new(path, text));
    let loaded = pipe_runner::yaml::load(id, text);
    let node = loaded.root.as_ref()?.get("environments")?;
    let mut diagnostics = loaded.diagnostics.clone();
    let (policy, d) = super::parse_embedded(id, node, text.as_bytes(), path);
    diagnostics.extend(d);
    Some(Loaded {
        sources,
        policy,
        diagnostics,
        origin: path.to_owned(),
        commit: None,
        allowed_signers: None,
    })
}

/// Whether the working tree has a policy at all (a cheap check before reading the trusted
/// ref): `.pipe/environments.yml`, or a workflow with a top-level `environments:` line.
pub fn has_policy(root: &Path) -> bool {
    POLICY_FILES.iter().any(|f| root.join(f).exists())
        || std::fs::read_dir(root.join(WORKFLOWS))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path())
                    .is_ok_and(|t| t.starts_with("environments:") || t.contains("\nenvironments:"))
            })
}

/// The trusted ref of a repository.
pub fn trusted_ref(repo: &git2::Repository, explicit: Option<&str>) -> Result<String, SourceError> {
    if let Some(r) = explicit.filter(|r| !r.is_empty()) {
        return repo
            .revparse_single(r)
            .map(|_| r.to_owned())
            .map_err(|_| SourceError::NoRef(r.to_owned()));
    }
    if let Ok(r) = repo.find_reference("refs/remotes/origin/HEAD")
        && let Ok(Some(target)) = r.symbolic_target()
    {
        return Ok(target.to_owned());
    }
    for r in ["refs/heads/main", "refs/heads/master"] {
        if repo.find_reference(r).is_ok() {
            return Ok(r.to_owned());
        }
    }
    Err(SourceError::NoRef("main".into()))
}

/// Reads and parses the policy at the trusted ref of the repository at `root`.
pub fn load_from_ref(root: &Path, explicit: Option<&str>) -> Result<Loaded, SourceError> {
    let repo = git2::Repository::discover(root)
        .map_err(|_| SourceError::NoRepo(root.display().to_string()))?;
    let refname = trusted_ref(&repo, explicit)?;
    let commit = repo
        .revparse_single(&refname)
        .and_then(|o| o.peel_to_commit())
        .map_err(|_| SourceError::NoRef(refname.clone()))?;
    let tree = commit.tree().map_err(|e| SourceError::Git(e.to_string()))?;
    let read = |path: &str| -> Option<String> {
        let entry = tree.get_path(Path::new(path)).ok()?;
        let blob = repo.find_blob(entry.id()).ok()?;
        Some(String::from_utf8_lossy(blob.content()).into_owned())
    };
    let mut loaded = match POLICY_FILES.iter().find_map(|p| read(p).map(|t| (*p, t))) {
        Some((path, text)) => load_text(path, &text),
        None => {
            // A workflow's top-level `environments:` at the same ref.
            let dir = tree
                .get_path(Path::new(WORKFLOWS))
                .ok()
                .and_then(|e| repo.find_tree(e.id()).ok());
            let mut names: Vec<String> = dir
                .iter()
                .flat_map(|t| t.iter())
                .filter_map(|e| e.name().ok().map(str::to_owned))
                .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
                .collect();
            names.sort();
            names
                .iter()
                .find_map(|n| {
                    let path = format!("{WORKFLOWS}/{n}");
                    let text = read(&path)?;
                    load_workflow_text(&path, &text)
                })
                .ok_or_else(|| SourceError::NoPolicy(refname.clone()))?
        }
    };
    let path = loaded.origin.clone();
    loaded.origin = format!("{refname}:{path}");
    loaded.commit = Some(commit.id().to_string());
    loaded.allowed_signers = read(ALLOWED_SIGNERS);
    Ok(loaded)
}
