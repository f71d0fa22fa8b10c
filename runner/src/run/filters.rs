//! Whether an event would trigger a workflow on GitHub, given its branch, tag and path filters
//! (decisions.md: reported by `pipe run`, enforced only with `--respect-filters`).
//!
//! GitHub's rules: for `push`, a branch push is filtered by `branches`/`branches-ignore` and a
//! tag push by `tags`/`tags-ignore`; when only tag filters are given, branch pushes do not
//! trigger (and the other way round). For `pull_request(_target)`, `branches` filters the base
//! branch. `paths` needs at least one changed file to match; `paths-ignore` needs at least one
//! changed file not ignored. When branch and path filters are both given, both must pass.
//! Patterns are applied in order with `!` negation ([`crate::check::glob::filter_matches`]).

use crate::check::glob::filter_matches;
use crate::workflow::EventTrigger;

fn texts(t: &EventTrigger, name: &str) -> Option<Vec<String>> {
    t.filter(name)
        .map(|ps| ps.iter().map(|p| p.text.clone()).collect())
}

/// Why the trigger would not fire, or `None` when it would. `git_ref` is the pushed ref (or the
/// pull request's base branch as `refs/heads/<base>`); `changed` lists the changed files, and is
/// only consulted when the trigger has path filters (`None`: unknown, path filters pass).
pub fn not_triggered_because(
    t: &EventTrigger,
    git_ref: &str,
    changed: Option<&[String]>,
) -> Option<String> {
    let (kind, name) = if let Some(b) = git_ref.strip_prefix("refs/heads/") {
        ("branch", b)
    } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
        ("tag", tag)
    } else {
        ("branch", git_ref)
    };
    let (inc, exc, other_inc, other_exc) = if kind == "branch" {
        ("branches", "branches-ignore", "tags", "tags-ignore")
    } else {
        ("tags", "tags-ignore", "branches", "branches-ignore")
    };
    let has = |n: &str| t.filter(n).is_some();
    if let Some(ps) = texts(t, inc) {
        if !filter_matches(&ps, name) {
            return Some(format!("{kind} `{name}` does not match `{inc}`"));
        }
    } else if let Some(ps) = texts(t, exc) {
        if filter_matches(&ps, name) {
            return Some(format!("{kind} `{name}` matches `{exc}`"));
        }
    } else if t.name.value == "push" && (has(other_inc) || has(other_exc)) {
        return Some(format!(
            "the workflow filters {} only, and this push is a {kind} push",
            if kind == "branch" { "tags" } else { "branches" }
        ));
    }
    let changed = changed?;
    if let Some(ps) = texts(t, "paths") {
        if !changed.iter().any(|f| filter_matches(&ps, f)) {
            return Some("no changed file matches `paths`".to_owned());
        }
    } else if let Some(ps) = texts(t, "paths-ignore")
        && !changed.is_empty()
        && changed.iter().all(|f| filter_matches(&ps, f))
    {
        return Some("every changed file matches `paths-ignore`".to_owned());
    }
    None
}

/// Whether the trigger has path filters (so the caller knows to list changed files).
pub fn has_path_filters(t: &EventTrigger) -> bool {
    t.filter("paths").is_some() || t.filter("paths-ignore").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(src: &str, event: &str) -> EventTrigger {
        let (wf, d) = crate::workflow::load_str(src);
        assert!(d.is_empty(), "{d:?}");
        wf.expect("wf").trigger(event).expect("trigger").clone()
    }

    #[test]
    fn branches_tags_and_paths() {
        let t = trigger(
            "on:\n  push:\n    branches: [main, 'releases/**', '!releases/**-alpha']\n    paths: ['src/**']\njobs:\n  j:\n    runs-on: x\n    steps: [{run: a}]\n",
            "push",
        );
        let src = vec!["src/a.rs".to_owned()];
        let docs = vec!["docs/a.md".to_owned()];
        assert_eq!(
            not_triggered_because(&t, "refs/heads/main", Some(&src)),
            None
        );
        assert_eq!(
            not_triggered_because(&t, "refs/heads/releases/v1", None),
            None
        );
        assert!(not_triggered_because(&t, "refs/heads/releases/v1-alpha", None).is_some());
        assert!(not_triggered_because(&t, "refs/heads/dev", Some(&src)).is_some());
        assert!(not_triggered_because(&t, "refs/heads/main", Some(&docs)).is_some());
        // Branch filters only: a tag push does not trigger.
        assert!(not_triggered_because(&t, "refs/tags/v1", None).is_some());
    }

    #[test]
    fn ignore_forms() {
        let t = trigger(
            "on:\n  push:\n    tags-ignore: ['v*']\n    paths-ignore: ['**.md']\njobs:\n  j:\n    runs-on: x\n    steps: [{run: a}]\n",
            "push",
        );
        let md = vec!["README.md".to_owned()];
        let mixed = vec!["README.md".to_owned(), "src/x.rs".to_owned()];
        assert!(not_triggered_because(&t, "refs/tags/v1.0", None).is_some());
        assert_eq!(
            not_triggered_because(&t, "refs/tags/release", Some(&mixed)),
            None
        );
        assert!(not_triggered_because(&t, "refs/tags/release", Some(&md)).is_some());
        // Tag filters only: a branch push does not trigger.
        assert!(not_triggered_because(&t, "refs/heads/main", None).is_some());
    }
}
