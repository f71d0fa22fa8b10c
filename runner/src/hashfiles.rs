//! `hashFiles(patterns…)`: the SHA-256 of the concatenated SHA-256 digests of every file in
//! the workspace that the patterns match (gha-semantics §5.9).
//!
//! Patterns are globs relative to `GITHUB_WORKSPACE` (`*` stays within a path segment, `**`
//! crosses them); a pattern starting with `!` excludes, and for each file the last pattern that
//! matches decides, as in `@actions/glob`. Files are hashed in sorted path order so the result
//! is deterministic (GitHub hashes them in directory-read order). No match gives `''`; files
//! outside the workspace are ignored.

use std::io::Read;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use pipe_cache::digest::Hasher;

fn compile(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid `hashFiles` pattern `{pattern}`: {e}"))
}

/// Computes `hashFiles` over `workspace`.
pub fn hash_files(workspace: &Path, patterns: &[String]) -> Result<String, String> {
    let ws = workspace
        .canonicalize()
        .unwrap_or_else(|_| workspace.to_path_buf());
    let mut rules: Vec<(bool, GlobMatcher)> = Vec::new();
    for p in patterns.iter().flat_map(|p| p.lines()) {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let (negate, body) = match p.strip_prefix('!') {
            Some(b) => (true, b),
            None => (false, p),
        };
        let rel = match Path::new(body).strip_prefix(&ws) {
            Ok(r) => r.to_string_lossy().into_owned(),
            Err(_) if Path::new(body).is_absolute() => continue,
            Err(_) => body.trim_start_matches("./").to_owned(),
        };
        rules.push((negate, compile(&rel)?));
    }
    if !rules.iter().any(|(neg, _)| !neg) {
        return Ok(String::new());
    }
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![ws.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() || ft.is_symlink() {
                let Ok(rel) = path.strip_prefix(&ws) else {
                    continue;
                };
                let mut keep = false;
                for (negate, m) in &rules {
                    if m.is_match(rel) {
                        keep = !negate;
                    }
                }
                if keep && path.is_file() {
                    // A symlink pointing outside the workspace is ignored.
                    if let Ok(real) = path.canonicalize()
                        && real.starts_with(&ws)
                    {
                        files.push(path);
                    }
                }
            }
        }
    }
    if files.is_empty() {
        return Ok(String::new());
    }
    files.sort();
    let mut outer = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    for f in &files {
        let mut inner = Hasher::new();
        let mut file = std::fs::File::open(f)
            .map_err(|e| format!("`hashFiles` cannot read `{}`: {e}", f.display()))?;
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("`hashFiles` cannot read `{}`: {e}", f.display()))?;
            if n == 0 {
                break;
            }
            inner.update(&buf[..n]);
        }
        outer.update(inner.finish().as_bytes());
    }
    Ok(outer.finish().hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_negates_and_hashes() {
        let t = tempfile::tempdir().expect("tmp");
        let w = t.path();
        std::fs::create_dir_all(w.join("a/b")).expect("mkdir");
        std::fs::write(w.join("a/x.lock"), "1").expect("write");
        std::fs::write(w.join("a/b/y.lock"), "2").expect("write");
        std::fs::write(w.join("top.lock"), "3").expect("write");
        let h = |p: &[&str]| {
            hash_files(w, &p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("hash")
        };
        assert_eq!(h(&["nothing/*"]), "");
        let all = h(&["**/*.lock"]);
        assert_eq!(all.len(), 64);
        assert_ne!(h(&["**/*.lock", "!a/b/**"]), all);
        assert_eq!(h(&["*.lock"]), h(&["top.lock"]));
        // The value is sha256 over the raw digests of each file.
        let d3 = pipe_cache::Digest::of(b"3");
        assert_eq!(
            h(&["top.lock"]),
            pipe_cache::Digest::of(d3.as_bytes()).hex()
        );
    }
}
