//! Case-insensitive string operations with .NET's `OrdinalIgnoreCase` semantics.
//!
//! GitHub compares strings (`==`, `<`, `contains`, `startsWith`, property lookup) with
//! `StringComparison.OrdinalIgnoreCase`: both sides are upper-cased character by character with the
//! invariant simple case mapping and then compared as UTF-16 code units. Upper-casing (not
//! lower-casing) matters for ordering: `'_' > 'a'` because `_` (0x5F) sorts after `A` (0x41).
//! Every helper has an ASCII fast path, since nearly all workflow strings are ASCII and these run
//! on every evaluation.

use std::cmp::Ordering;

/// The invariant simple upper-case mapping of one character. Characters whose upper case is
/// several characters (`ß` → `SS`) have no simple mapping and stay as they are.
fn upper(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    let mut it = c.to_uppercase();
    match (it.next(), it.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// `a == b` ignoring case.
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars().map(upper).eq(b.chars().map(upper))
}

/// Orders `a` and `b` ignoring case, by UTF-16 code units of the upper-cased text.
pub(crate) fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        let x = a.bytes().map(|c| c.to_ascii_uppercase());
        let y = b.bytes().map(|c| c.to_ascii_uppercase());
        return x.cmp(y);
    }
    utf16_upper(a).cmp(utf16_upper(b))
}

/// The UTF-16 code units of `s` upper-cased, the sequence .NET compares.
fn utf16_upper(s: &str) -> impl Iterator<Item = u16> + '_ {
    s.chars().flat_map(|c| {
        let mut buf = [0u16; 2];
        let len = upper(c).encode_utf16(&mut buf).len();
        buf.into_iter().take(len)
    })
}

/// Whether `hay` contains `needle` ignoring case (an empty needle is always found).
pub(crate) fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        if n.len() > h.len() {
            return false;
        }
        return h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    let h: Vec<char> = hay.chars().map(upper).collect();
    let n: Vec<char> = needle.chars().map(upper).collect();
    n.len() <= h.len() && h.windows(n.len()).any(|w| w == n.as_slice())
}

/// Whether `s` starts with `prefix` ignoring case.
pub(crate) fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    if s.is_ascii() && prefix.is_ascii() {
        return s.len() >= prefix.len()
            && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes());
    }
    let mut it = s.chars().map(upper);
    prefix.chars().map(upper).all(|p| it.next() == Some(p))
}

/// Whether `s` ends with `suffix` ignoring case.
pub(crate) fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    if s.is_ascii() && suffix.is_ascii() {
        return s.len() >= suffix.len()
            && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes());
    }
    let mut it = s.chars().rev().map(upper);
    suffix
        .chars()
        .rev()
        .map(upper)
        .all(|p| it.next() == Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons() {
        assert!(eq_ignore_case("Push", "pUSH"));
        assert!(eq_ignore_case("Straße", "STRAßE"));
        assert!(eq_ignore_case("ÉCOLE", "école"));
        assert!(!eq_ignore_case("a", "ab"));
        assert_eq!(cmp_ignore_case("a", "B"), Ordering::Less);
        assert_eq!(cmp_ignore_case("_", "a"), Ordering::Greater);
        assert_eq!(cmp_ignore_case("10", "9"), Ordering::Less);
        assert_eq!(cmp_ignore_case("é", "É"), Ordering::Equal);
        assert_eq!(cmp_ignore_case("", "a"), Ordering::Less);
        // UTF-16 order: a supplementary character (surrogates D800..) sorts before U+FFFD.
        assert_eq!(cmp_ignore_case("😀", "\u{FFFD}"), Ordering::Less);
    }

    #[test]
    fn searching() {
        assert!(contains_ignore_case("Hello World", "LO w"));
        assert!(contains_ignore_case("abc", ""));
        assert!(!contains_ignore_case("ab", "abc"));
        assert!(contains_ignore_case("Größe", "RÖß"));
        assert!(starts_with_ignore_case("Hello", "hE"));
        assert!(starts_with_ignore_case("Éa", "é"));
        assert!(!starts_with_ignore_case("He", "hello"));
        assert!(ends_with_ignore_case("Hello", "LO"));
        assert!(ends_with_ignore_case("aÉ", "é"));
        assert!(!ends_with_ignore_case("lo", "hello"));
    }
}
