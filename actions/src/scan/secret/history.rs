//! Secrets in git history (`--git-history`): every commit reachable from any ref is diffed
//! against its first parent and the added lines are scanned, as gitleaks does. A secret
//! that is still in the working tree is reported once, there; history findings name the
//! commit that added the secret.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::{Rules, detection};
use crate::scan::Warning;
use crate::scan::report::Detection;

/// Added lines of one file in one commit: the text and the new line number of each line.
#[derive(Default)]
struct Added {
    text: Vec<u8>,
    lines: Vec<u32>,
}

/// Scans the history of the repository holding `dir`.
pub fn scan(rules: &Rules, dir: &Path) -> Result<(Vec<Detection>, Vec<Warning>), String> {
    let repo = git2::Repository::discover(dir).map_err(|e| {
        format!(
            "`--git-history`: `{}` is not in a git repository: {}",
            dir.display(),
            e.message().to_lowercase()
        )
    })?;
    let mut walk = repo.revwalk().map_err(|e| e.message().to_lowercase())?;
    walk.push_glob("*")
        .map_err(|e| e.message().to_lowercase())?;
    if let Ok(head) = repo.head()
        && let Some(oid) = head.target()
    {
        let _ = walk.push(oid);
    }
    let _ = walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME);
    let mut out: Vec<Detection> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut warnings = Vec::new();
    for oid in walk {
        let Ok(oid) = oid else { continue };
        let Ok(commit) = repo.find_commit(oid) else {
            continue;
        };
        let Ok(tree) = commit.tree() else { continue };
        let parent = commit.parent(0).ok().and_then(|p| p.tree().ok());
        let mut opts = git2::DiffOptions::new();
        opts.context_lines(0);
        let diff = match repo.diff_tree_to_tree(parent.as_ref(), Some(&tree), Some(&mut opts)) {
            Ok(d) => d,
            Err(e) => {
                warnings.push(Warning::general(
                    "git-history",
                    format!("commit {oid}: {}", e.message().to_lowercase()),
                ));
                continue;
            }
        };
        let mut files: BTreeMap<String, Added> = BTreeMap::new();
        let _ = diff.foreach(
            &mut |_, _| true,
            None,
            None,
            Some(&mut |delta, _hunk, line| {
                if line.origin() == '+'
                    && let Some(p) = delta.new_file().path()
                {
                    let a = files
                        .entry(p.to_string_lossy().replace('\\', "/"))
                        .or_default();
                    a.text.extend_from_slice(line.content());
                    if !line.content().ends_with(b"\n") {
                        a.text.push(b'\n');
                    }
                    a.lines.push(line.new_lineno().unwrap_or(0));
                }
                true
            }),
        );
        let short = oid.to_string();
        for (path, added) in files {
            for h in rules.scan(&path, &added.text) {
                let mut d = detection(rules, &h, &path);
                if !seen.insert(d.fingerprint.clone()) {
                    continue;
                }
                let line = added
                    .lines
                    .get(h.line as usize - 1)
                    .copied()
                    .unwrap_or(h.line);
                d.end_line = line + (d.end_line - d.start_line);
                d.start_line = line;
                if let Some(s) = &mut d.secret {
                    s.commit = Some(short.clone());
                }
                out.push(d);
            }
        }
    }
    Ok((out, warnings))
}
