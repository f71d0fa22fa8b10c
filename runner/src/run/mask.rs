//! Secret masking: every registered secret (and `::add-mask::` value) is replaced by `***` in
//! every output — logs, live view, summaries and events.
//!
//! Multi-line secrets are also registered line by line, as GitHub does, because output is
//! processed a line at a time. Matching uses aho-corasick with leftmost-longest semantics so a
//! secret that contains another is masked whole.

use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};

const MASK: &str = "***";

#[derive(Default)]
struct Inner {
    values: Vec<String>,
    matcher: Option<AhoCorasick>,
}

/// A set of values to mask, shared by every writer of one run.
#[derive(Clone, Default)]
pub struct Masker {
    inner: Arc<RwLock<Inner>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.read().map(|i| i.values.len()).unwrap_or(0);
        write!(f, "Masker({n} values)")
    }
}

impl Masker {
    /// An empty masker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a value (and each of its lines). Empty values are ignored.
    pub fn add(&self, value: &str) {
        let mut candidates: Vec<&str> = vec![value];
        if value.contains('\n') {
            candidates.extend(value.split('\n').map(|l| l.trim_end_matches('\r')));
        }
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        let mut changed = false;
        for c in candidates {
            if c.trim().is_empty() || inner.values.iter().any(|v| v == c) {
                continue;
            }
            inner.values.push(c.to_owned());
            changed = true;
        }
        if changed {
            inner.matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&inner.values)
                .ok();
        }
    }

    /// Whether anything is registered.
    pub fn is_empty(&self) -> bool {
        self.inner
            .read()
            .map(|i| i.values.is_empty())
            .unwrap_or(true)
    }

    /// Whether `text` contains a registered value.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.inner
            .read()
            .ok()
            .and_then(|i| i.matcher.as_ref().map(|m| m.is_match(text)))
            .unwrap_or(false)
    }

    /// Masks a string.
    pub fn mask(&self, text: &str) -> String {
        match self.inner.read() {
            Ok(i) => match &i.matcher {
                Some(m) => m.replace_all(text, &vec![MASK; i.values.len()]),
                None => text.to_owned(),
            },
            Err(_) => text.to_owned(),
        }
    }

    /// Masks bytes in place into `out` (appending); returns whether anything was masked.
    pub fn mask_bytes_into(&self, text: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok(i) = self.inner.read() else {
            out.extend_from_slice(text);
            return false;
        };
        let Some(m) = &i.matcher else {
            out.extend_from_slice(text);
            return false;
        };
        let mut last = 0;
        let mut any = false;
        for found in m.find_iter(text) {
            out.extend_from_slice(&text[last..found.start()]);
            out.extend_from_slice(MASK.as_bytes());
            last = found.end();
            any = true;
        }
        out.extend_from_slice(&text[last..]);
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_longest_and_lines() {
        let m = Masker::new();
        assert_eq!(m.mask("nothing"), "nothing");
        m.add("abc");
        m.add("abcdef");
        m.add("line1\nline2");
        m.add("   ");
        assert_eq!(m.mask("x abcdef abc y"), "x *** *** y");
        assert_eq!(m.mask("line2 only"), "*** only");
        let mut out = Vec::new();
        assert!(m.mask_bytes_into(b"see line1!", &mut out));
        assert_eq!(out, b"see ***!");
        assert!(m.contains_secret("zabcz"));
        assert!(!m.contains_secret("ab"));
    }
}
