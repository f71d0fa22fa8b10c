//! Diagnostics: problems in user input, with a span, a rule id and an optional hint.
//!
//! Two classes (decisions.md): an [`Severity::Error`] makes a workflow invalid for GitHub itself
//! (YAML syntax, schema and types, unknown or cyclic `needs`, expression syntax, duplicate ids);
//! a [`Severity::Lint`] is everything else `pipe validate` checks. `pipe run`, `list` and
//! `graph` refuse errors and print lints as warnings. Rendering belongs to the CLI.

use serde::Serialize;

use crate::source::Span;

/// Whether a diagnostic makes the workflow invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The workflow is invalid for GitHub: nothing may run.
    Error,
    /// A lint finding: the workflow loads but is probably wrong.
    Lint,
}

/// One problem, reported at one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or lint.
    pub severity: Severity,
    /// Rule id, reusing actionlint's kinds where one fits (`syntax-check`, `expression`, …).
    pub rule: &'static str,
    /// Lowercase message without a trailing period; names in backticks.
    pub message: String,
    /// Where the problem is.
    pub span: Span,
    /// An optional hint shown on its own line.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error diagnostic.
    pub fn error(rule: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            rule,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// A lint finding.
    pub fn lint(rule: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Lint,
            rule,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Whether this is an error (as opposed to a lint finding).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Sorts diagnostics by file and position and removes exact duplicates (anchors and aliases can
/// report the same problem twice).
pub fn sort_and_dedup(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        (a.span.file, a.span.start, a.span.end, a.rule, &a.message).cmp(&(
            b.span.file,
            b.span.start,
            b.span.end,
            b.rule,
            &b.message,
        ))
    });
    diags.dedup_by(|a, b| a.span == b.span && a.rule == b.rule && a.message == b.message);
}

/// The closest candidate to `word` by edit distance, for did-you-mean hints.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&lower, &c.to_ascii_lowercase());
        let limit = (c.len().max(word.len()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Edit distance over chars where an adjacent transposition counts as one edit (optimal
/// string alignment), so `biuld` is one edit from `build`.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("runs-onn", ["runs-on", "steps"]),
            Some("runs-on")
        );
        assert_eq!(
            did_you_mean("Runs-On", ["runs-on", "steps"]),
            Some("runs-on")
        );
        assert_eq!(did_you_mean("zzz", ["runs-on", "steps"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("biuld", "build"), 1);
        assert_eq!(did_you_mean("biuld", ["build", "test"]), Some("build"));
    }
}
