//! What `github` context defaults need from the repository (decisions.md's local run model):
//! HEAD's sha and ref, the `origin` remote's `owner/name`, and `user.name`.
//!
//! Read straight from `.git` (HEAD, loose refs, `packed-refs`, `config`) instead of spawning
//! `git`: a run of a one-job workflow must cost little more than its script, and a `git`
//! process costs about a millisecond. Worktrees (`.git` files and `commondir`) are followed.

use std::path::{Path, PathBuf};

/// Zero sha for a repository without commits.
pub const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// Repository facts for the `github` context.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct GitInfo {
    /// HEAD's commit (40 zeros without commits or outside git).
    pub sha: String,
    /// `refs/heads/<branch>`, the sha when detached.
    pub git_ref: String,
    /// `owner/name` from `origin`, or `local/<folder>`.
    pub repository: String,
    /// `user.name`, else `$USER`.
    pub actor: String,
    /// Whether this is a git repository at all.
    pub is_git: bool,
}

fn git_dir(root: &Path) -> Option<PathBuf> {
    let dot = root.join(".git");
    if dot.is_dir() {
        return Some(dot);
    }
    let text = std::fs::read_to_string(&dot).ok()?;
    let rel = text.trim().strip_prefix("gitdir:")?.trim();
    let p = Path::new(rel);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    })
}

fn common_dir(git_dir: &Path) -> PathBuf {
    match std::fs::read_to_string(git_dir.join("commondir")) {
        Ok(t) => {
            let p = Path::new(t.trim());
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                git_dir.join(p)
            }
        }
        Err(_) => git_dir.to_path_buf(),
    }
}

fn resolve_ref(git_dir: &Path, common: &Path, name: &str) -> Option<String> {
    for dir in [git_dir, common] {
        if let Ok(t) = std::fs::read_to_string(dir.join(name)) {
            let t = t.trim();
            if let Some(next) = t.strip_prefix("ref:") {
                return resolve_ref(git_dir, common, next.trim());
            }
            if t.len() == 40 {
                return Some(t.to_owned());
            }
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (sha, r) = l.split_once(' ')?;
        (r.trim() == name && sha.len() == 40).then(|| sha.to_owned())
    })
}

/// A value from a git config file: `section.key`, or `remote "origin".url` style via
/// `subsection`.
fn config_value(text: &str, section: &str, subsection: Option<&str>, key: &str) -> Option<String> {
    let mut in_section = false;
    let mut found = None;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            let inner = l.trim_start_matches('[').trim_end_matches(']').trim();
            let (sec, sub) = match inner.split_once(' ') {
                Some((s, rest)) => (s, Some(rest.trim().trim_matches('"'))),
                None => (inner, None),
            };
            in_section = sec.eq_ignore_ascii_case(section) && sub == subsection;
            continue;
        }
        if !in_section || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=')
            && k.trim().eq_ignore_ascii_case(key)
        {
            found = Some(v.trim().trim_matches('"').to_owned());
        }
    }
    found
}

/// `owner/name` from a remote URL (`git@host:owner/name.git`, `https://host/owner/name`).
pub fn repo_from_url(url: &str) -> Option<String> {
    let url = url.trim().trim_end_matches('/');
    let path = if let Some((_, rest)) = url.split_once("://") {
        rest.split_once('/')?.1
    } else if let Some((_, rest)) = url.split_once(':') {
        rest
    } else {
        return None;
    };
    let path = path.trim_end_matches(".git");
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() < 2 {
        return None;
    }
    Some(format!(
        "{}/{}",
        parts[parts.len() - 2],
        parts[parts.len() - 1]
    ))
}

/// Reads the facts; `env` supplies `USER` and `HOME`.
pub fn read(root: &Path, env: &dyn Fn(&str) -> Option<String>) -> GitInfo {
    let folder = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".to_owned());
    let user = env("USER").unwrap_or_else(|| "pipe".to_owned());
    let global_name = env("HOME")
        .and_then(|h| std::fs::read_to_string(Path::new(&h).join(".gitconfig")).ok())
        .and_then(|t| config_value(&t, "user", None, "name"));
    let Some(gd) = git_dir(root) else {
        return GitInfo {
            sha: ZERO_SHA.to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            repository: format!("local/{folder}"),
            actor: global_name.unwrap_or(user),
            is_git: false,
        };
    };
    let common = common_dir(&gd);
    let head = std::fs::read_to_string(gd.join("HEAD")).unwrap_or_default();
    let head = head.trim();
    let (git_ref, sha) = match head.strip_prefix("ref:") {
        Some(r) => {
            let r = r.trim().to_owned();
            let sha = resolve_ref(&gd, &common, &r).unwrap_or_else(|| ZERO_SHA.to_owned());
            (r, sha)
        }
        None if head.len() == 40 => (head.to_owned(), head.to_owned()),
        None => ("refs/heads/main".to_owned(), ZERO_SHA.to_owned()),
    };
    let config = std::fs::read_to_string(common.join("config")).unwrap_or_default();
    let repository = config_value(&config, "remote", Some("origin"), "url")
        .and_then(|u| repo_from_url(&u))
        .unwrap_or_else(|| format!("local/{folder}"));
    let actor = config_value(&config, "user", None, "name")
        .or(global_name)
        .unwrap_or(user);
    GitInfo {
        sha,
        git_ref,
        repository,
        actor,
        is_git: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            repo_from_url("git@github.com:o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            repo_from_url("https://github.com/o/r").as_deref(),
            Some("o/r")
        );
        assert_eq!(
            repo_from_url("ssh://git@host:22/a/b/c.git").as_deref(),
            Some("b/c")
        );
        assert_eq!(repo_from_url("/local/path"), None);
    }

    #[test]
    fn reads_a_real_repository() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("proj");
        std::fs::create_dir_all(&root).expect("mkdir");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args(args)
                .current_dir(&root)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            assert!(ok, "git {args:?}");
        };
        let env = |k: &str| {
            if k == "USER" {
                Some("someone".to_owned())
            } else {
                None
            }
        };
        let info = read(&root, &env);
        assert_eq!(info.repository, "local/proj");
        assert!(!info.is_git);
        git(&["init", "-q", "-b", "trunk"]);
        let info = read(&root, &env);
        assert_eq!(
            (info.sha.as_str(), info.git_ref.as_str()),
            (ZERO_SHA, "refs/heads/trunk")
        );
        git(&["config", "user.name", "Ada"]);
        git(&["config", "user.email", "a@b"]);
        git(&["remote", "add", "origin", "git@github.com:acme/widget.git"]);
        git(&["commit", "-q", "--allow-empty", "-m", "x"]);
        let info = read(&root, &env);
        assert_eq!(info.sha.len(), 40);
        assert_ne!(info.sha, ZERO_SHA);
        assert_eq!(info.repository, "acme/widget");
        assert_eq!(info.actor, "Ada");
        git(&["pack-refs", "--all"]);
        assert_eq!(read(&root, &env).sha, info.sha);
    }
}
