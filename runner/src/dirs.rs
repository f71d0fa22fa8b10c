//! Where state and cache live (decisions.md "Where things live").
//!
//! - State (run records, logs, the SQLite store): `$PIPE_STATE_DIR`, else
//!   `$XDG_STATE_HOME/pipe`, else `~/.local/state/pipe`; one folder per repository, named after
//!   the repository folder plus a digest of its canonical path.
//! - Content-addressed cache: `$PIPE_CACHE_DIR`, else `$XDG_CACHE_HOME/pipe`, else
//!   `~/.cache/pipe`.
//!
//! The functions take the environment as a lookup function so they are testable without
//! touching the process environment.

use std::path::{Path, PathBuf};

use pipe_cache::Digest;

/// Environment variable naming the state directory.
pub const PIPE_STATE_DIR: &str = "PIPE_STATE_DIR";
/// Environment variable naming the cache directory.
pub const PIPE_CACHE_DIR: &str = "PIPE_CACHE_DIR";

/// Error resolving a directory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirsError {
    /// Neither the pipe variable, the XDG variable nor `HOME` is set.
    #[error("cannot find a {what} directory: set `{var}` or `HOME`")]
    NoHome {
        /// `state` or `cache`.
        what: &'static str,
        /// The pipe variable to set.
        var: &'static str,
    },
}

fn resolve(
    env: &dyn Fn(&str) -> Option<String>,
    pipe_var: &'static str,
    xdg_var: &str,
    home_rel: &str,
    what: &'static str,
) -> Result<PathBuf, DirsError> {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty(pipe_var) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty(xdg_var).filter(|d| Path::new(d).is_absolute()) {
        return Ok(PathBuf::from(dir).join("pipe"));
    }
    match non_empty("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(home_rel).join("pipe")),
        None => Err(DirsError::NoHome {
            what,
            var: pipe_var,
        }),
    }
}

/// The root state directory.
pub fn state_root(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, DirsError> {
    resolve(
        env,
        PIPE_STATE_DIR,
        "XDG_STATE_HOME",
        ".local/state",
        "state",
    )
}

/// The cache directory.
pub fn cache_root(env: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, DirsError> {
    resolve(env, PIPE_CACHE_DIR, "XDG_CACHE_HOME", ".cache", "cache")
}

/// The state folder of one repository, keyed by its canonical path: `<name>-<12 hex digits>`.
pub fn repo_state_dir(state_root: &Path, canonical_repo: &Path) -> PathBuf {
    let digest = Digest::of(canonical_repo.as_os_str().as_encoded_bytes()).hex();
    let name: String = canonical_repo
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".to_owned())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_root
        .join("repos")
        .join(format!("{name}-{}", &digest[..12]))
}

/// Reads the process environment (for callers outside tests).
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn precedence() {
        let e = env_of(&[
            ("PIPE_STATE_DIR", "/s"),
            ("XDG_STATE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(state_root(&e), Ok(PathBuf::from("/s")));
        let e = env_of(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(state_root(&e), Ok(PathBuf::from("/x/pipe")));
        let e = env_of(&[("XDG_STATE_HOME", "relative"), ("HOME", "/h")]);
        assert_eq!(state_root(&e), Ok(PathBuf::from("/h/.local/state/pipe")));
        let e = env_of(&[("HOME", "/h")]);
        assert_eq!(cache_root(&e), Ok(PathBuf::from("/h/.cache/pipe")));
        let e = env_of(&[]);
        assert!(cache_root(&e).is_err());
    }

    #[test]
    fn repo_dirs_are_distinct_and_stable() {
        let a = repo_state_dir(Path::new("/s"), Path::new("/src/my repo"));
        let b = repo_state_dir(Path::new("/s"), Path::new("/other/my repo"));
        assert_ne!(a, b);
        assert!(a.to_string_lossy().starts_with("/s/repos/my_repo-"));
        assert_eq!(
            a,
            repo_state_dir(Path::new("/s"), Path::new("/src/my repo"))
        );
    }
}
