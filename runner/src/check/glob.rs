//! Filter patterns of `branches`, `tags` and `paths` (and their `-ignore` forms): GitHub's glob
//! syntax, the checks of rule `glob`, and a matcher with GitHub's semantics for
//! `pipe run --respect-filters`.
//!
//! The syntax is GitHub's "filter pattern cheat sheet": `*` matches any characters except `/`,
//! `**` any characters, `**/` zero or more whole directories, `?` zero or one and `+` one or
//! more of the preceding character or class, `[...]` one character of a class with ranges,
//! `\` escapes the next character, and a leading `!` negates the pattern. Patterns match the
//! whole value. In a list, every matching pattern decides in turn: a positive one includes the
//! value, a later matching `!` pattern excludes it again, and so on.
//!
//! Severity: a pattern that cannot be parsed (unclosed `[`, `!` alone, `?` or `+` with nothing
//! to repeat, an empty class or a backwards range) is an error; a pattern that parses but can
//! never match what GitHub compares it with (characters that no git ref name holds, `./` or
//! `..` in a path) or that looks like a regular expression is a lint, because GitHub accepts
//! the workflow and silently never triggers.

use std::ops::Range;

use crate::diag::Diagnostic;
use crate::source::SourceFile;
use crate::workflow::{Workflow, YStr};

/// What a filter's values are compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Branch or tag names (`main`, `v1.2.3`): git ref names.
    Ref,
    /// Changed file paths relative to the repository root (`src/main.rs`).
    Path,
}

impl Target {
    /// The target of a filter key, if that filter holds globs.
    pub fn of_filter(name: &str) -> Option<Target> {
        match name {
            "branches" | "branches-ignore" | "tags" | "tags-ignore" => Some(Target::Ref),
            "paths" | "paths-ignore" => Some(Target::Path),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Atom {
    /// One literal character.
    Char(char),
    /// One character of a class: inclusive ranges (a single character is `(c, c)`).
    Class(Vec<(char, char)>),
    /// `*`: any characters but `/`.
    Star,
    /// `**`: any characters.
    DoubleStar,
    /// `**/`: zero or more directories, i.e. `(.+/)?`.
    Dirs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rep {
    One,
    /// `?`: zero or one.
    Opt,
    /// Zero or more (the tail of `+`, which is stored as `One` followed by `Many`).
    Many,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Tok {
    atom: Atom,
    rep: Rep,
}

/// A parse problem: byte range inside the pattern text and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobError {
    /// Byte range inside the pattern as written (including a leading `!`).
    pub range: Range<usize>,
    /// Lowercase message, no trailing period.
    pub message: String,
    /// An optional hint.
    pub hint: Option<String>,
}

/// A compiled filter pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    negated: bool,
    toks: Vec<Tok>,
}

impl Pattern {
    /// Parses a pattern as written in a filter (a leading `!` negates it).
    pub fn parse(text: &str) -> Result<Pattern, GlobError> {
        let (negated, body, base) = match text.strip_prefix('!') {
            Some(rest) => (true, rest, 1),
            None => (false, text, 0),
        };
        let err = |range: Range<usize>, message: String, hint: Option<&str>| GlobError {
            range: range.start + base..range.end + base,
            message,
            hint: hint.map(str::to_owned),
        };
        if body.is_empty() {
            return Err(if negated {
                err(
                    0..0,
                    "`!` alone is not a filter pattern: nothing follows the negation".to_owned(),
                    Some("write the pattern to exclude after `!`, as in `!docs/**`"),
                )
            } else {
                GlobError {
                    range: 0..0,
                    message: "a filter pattern must not be empty".to_owned(),
                    hint: None,
                }
            });
        }
        let chars: Vec<(usize, char)> = body.char_indices().collect();
        let mut toks: Vec<Tok> = Vec::new();
        // Whether the last token may take `?` or `+`: a character or a class without one yet.
        let mut repeatable = false;
        let mut i = 0;
        while i < chars.len() {
            let (off, c) = chars[i];
            let next = chars.get(i + 1).map(|&(_, c)| c);
            match c {
                '*' => {
                    if next == Some('*') {
                        if chars.get(i + 2).map(|&(_, c)| c) == Some('/') {
                            toks.push(tok(Atom::Dirs));
                            i += 3;
                        } else {
                            toks.push(tok(Atom::DoubleStar));
                            i += 2;
                        }
                    } else {
                        toks.push(tok(Atom::Star));
                        i += 1;
                    }
                    repeatable = false;
                    continue;
                }
                '?' | '+' => {
                    if !repeatable {
                        let what = if c == '?' {
                            "zero or one"
                        } else {
                            "one or more"
                        };
                        return Err(err(
                            off..off + 1,
                            format!(
                                "`{c}` in filter pattern `{text}` has no preceding character to repeat"
                            ),
                            Some(&format!(
                                "`{c}` matches {what} of the preceding character; write `\\{c}` for a literal `{c}`"
                            )),
                        ));
                    }
                    if let Some(last) = toks.last_mut() {
                        if c == '?' {
                            last.rep = Rep::Opt;
                        } else {
                            let atom = last.atom.clone();
                            toks.push(Tok {
                                atom,
                                rep: Rep::Many,
                            });
                        }
                    }
                    repeatable = false;
                }
                '[' => {
                    let (class, end) = parse_class(&chars, i, text, base)?;
                    toks.push(tok(Atom::Class(class)));
                    repeatable = true;
                    i = end;
                    continue;
                }
                '\\' => match next {
                    Some(n) => {
                        toks.push(tok(Atom::Char(n)));
                        repeatable = true;
                        i += 2;
                        continue;
                    }
                    None => {
                        return Err(err(
                            off..off + 1,
                            format!("filter pattern `{text}` ends with an unfinished escape `\\`"),
                            Some("write `\\\\` for a literal backslash"),
                        ));
                    }
                },
                _ => {
                    toks.push(tok(Atom::Char(c)));
                    repeatable = true;
                }
            }
            i += 1;
        }
        Ok(Pattern { negated, toks })
    }

    /// Whether the pattern starts with `!`.
    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// Whether the pattern (ignoring a leading `!`) matches the whole of `value`.
    pub fn matches(&self, value: &str) -> bool {
        // A simulation of the pattern's automaton: state `2*t` is "before token t", state
        // `2*t+1` is "inside the `(.+/)?` of a `**/` token t, at least one character eaten".
        // Linear in `value` times the pattern length, whatever the pattern.
        let n = self.toks.len();
        let mut cur = vec![false; 2 * n + 2];
        let mut next = vec![false; 2 * n + 2];
        cur[0] = true;
        self.close(&mut cur);
        for c in value.chars() {
            next.iter_mut().for_each(|s| *s = false);
            let mut any = false;
            for t in 0..n {
                let tok = &self.toks[t];
                if cur[2 * t] {
                    match (&tok.atom, tok.rep) {
                        (Atom::Star, _) if c != '/' => next[2 * t] = true,
                        (Atom::DoubleStar, _) => next[2 * t] = true,
                        (Atom::Dirs, _) => next[2 * t + 1] = true,
                        (Atom::Char(_) | Atom::Class(_), Rep::Many) if tok.atom.accepts(c) => {
                            next[2 * t] = true
                        }
                        (Atom::Char(_) | Atom::Class(_), Rep::One | Rep::Opt)
                            if tok.atom.accepts(c) =>
                        {
                            next[2 * (t + 1)] = true
                        }
                        _ => {}
                    }
                }
                if cur[2 * t + 1] {
                    next[2 * t + 1] = true;
                    if c == '/' {
                        next[2 * (t + 1)] = true;
                    }
                }
            }
            self.close(&mut next);
            for s in &next {
                any |= *s;
            }
            if !any {
                return false;
            }
            std::mem::swap(&mut cur, &mut next);
        }
        cur[2 * n]
    }

    /// Adds the states reachable without consuming a character.
    fn close(&self, states: &mut [bool]) {
        for t in 0..self.toks.len() {
            let tok = &self.toks[t];
            let skippable = matches!(tok.atom, Atom::Star | Atom::DoubleStar | Atom::Dirs)
                || matches!(tok.rep, Rep::Opt | Rep::Many);
            if states[2 * t] && skippable {
                states[2 * (t + 1)] = true;
            }
        }
    }
}

impl Atom {
    fn accepts(&self, c: char) -> bool {
        match self {
            Atom::Char(x) => *x == c,
            Atom::Class(ranges) => ranges.iter().any(|&(a, b)| a <= c && c <= b),
            Atom::Star => c != '/',
            Atom::DoubleStar | Atom::Dirs => true,
        }
    }
}

fn tok(atom: Atom) -> Tok {
    Tok {
        atom,
        rep: Rep::One,
    }
}

/// Parses `[...]` starting at `chars[i] == '['`; returns the ranges and the index after `]`.
fn parse_class(
    chars: &[(usize, char)],
    i: usize,
    text: &str,
    base: usize,
) -> Result<(Vec<(char, char)>, usize), GlobError> {
    let open = chars[i].0;
    let mut j = i + 1;
    let mut ranges = Vec::new();
    loop {
        let Some(&(off, c)) = chars.get(j) else {
            return Err(GlobError {
                range: open + base..open + base + 1,
                message: format!("`[` in filter pattern `{text}` is never closed"),
                hint: Some("add the closing `]`, or write `\\[` for a literal `[`".to_owned()),
            });
        };
        if c == ']' {
            if ranges.is_empty() {
                return Err(GlobError {
                    range: open + base..off + base + 1,
                    message: format!("empty character class `[]` in filter pattern `{text}`"),
                    hint: None,
                });
            }
            return Ok((ranges, j + 1));
        }
        let lo = c;
        if chars.get(j + 1).map(|&(_, c)| c) == Some('-')
            && let Some(&(hoff, hi)) = chars.get(j + 2)
            && hi != ']'
        {
            if lo > hi {
                return Err(GlobError {
                    range: off + base..hoff + base + hi.len_utf8(),
                    message: format!("range `{lo}-{hi}` in filter pattern `{text}` is backwards"),
                    hint: Some(format!("write `{hi}-{lo}`")),
                });
            }
            ranges.push((lo, hi));
            j += 3;
        } else {
            ranges.push((lo, lo));
            j += 1;
        }
    }
}

/// Applies a filter list to a value the way GitHub does: each matching pattern in order
/// includes the value (positive) or excludes it again (`!`). Unparsable patterns match
/// nothing. For `*-ignore` lists the caller negates the result.
pub fn filter_matches(patterns: &[String], value: &str) -> bool {
    let mut included = false;
    for p in patterns {
        if let Ok(p) = Pattern::parse(p)
            && p.matches(value)
        {
            included = !p.is_negated();
        }
    }
    included
}

/// Runs the `glob` rule over every filter of every event.
pub fn check_globs(wf: &Workflow, source: &SourceFile, out: &mut Vec<Diagnostic>) {
    for trigger in &wf.on {
        for (name, patterns) in &trigger.filters {
            let Some(target) = Target::of_filter(&name.value) else {
                continue;
            };
            let ignore = name.value.ends_with("-ignore");
            for (i, p) in patterns.iter().enumerate() {
                check_pattern(p, target, source, out);
                if i == 0 && p.text.starts_with('!') && p.text.len() > 1 && !p.has_expr() {
                    let base = name.value.trim_end_matches("-ignore");
                    let hint = if ignore {
                        "a `!` pattern only excludes what an earlier pattern matched; list the patterns to ignore first".to_owned()
                    } else {
                        format!(
                            "a `!` pattern only excludes what an earlier pattern matched; add a positive pattern such as `'**'` first, or use `{base}-ignore`"
                        )
                    };
                    out.push(
                        Diagnostic::lint(
                            "glob",
                            p.span,
                            format!(
                                "the first pattern `{}` of `{}` is negated, so it has nothing to exclude",
                                p.text, name.value
                            ),
                        )
                        .with_hint(hint),
                    );
                }
            }
        }
    }
}

/// Checks one pattern: syntax (errors), then what can never match and regex look-alikes (lints).
pub fn check_pattern(p: &YStr, target: Target, source: &SourceFile, out: &mut Vec<Diagnostic>) {
    if p.has_expr() {
        return;
    }
    let text = p.text.as_str();
    if let Err(e) = Pattern::parse(text) {
        let mut d = Diagnostic::error("glob", p.span_of(source, e.range), e.message);
        if let Some(h) = e.hint {
            d = d.with_hint(h);
        }
        out.push(d);
        return;
    }
    let body_off = usize::from(text.starts_with('!'));
    let body = &text[body_off..];
    let at = |r: Range<usize>| p.span_of(source, r.start + body_off..r.end + body_off);
    if let Some(regex) = regex_look_alike(body) {
        out.push(
            Diagnostic::lint(
                "glob",
                at(regex),
                format!("filter pattern `{text}` looks like a regular expression, but filters are globs"),
            )
            .with_hint("use `*` for any characters within a path segment and `**` across segments; `^`, `$`, `(`, `|` and `.` are literal"),
        );
        return;
    }
    match target {
        Target::Ref => {
            if let Some((r, what)) = bad_ref_part(body) {
                out.push(
                    Diagnostic::lint(
                        "glob",
                        at(r),
                        format!("{what}, so filter pattern `{text}` can never match"),
                    )
                    .with_hint("see `git check-ref-format` for the characters a branch or tag name may hold"),
                );
            }
        }
        Target::Path => {
            let (r, what) = if body.starts_with("./") {
                (0..2, "starts with `./`")
            } else if body.starts_with('/') {
                (0..1, "starts with `/`")
            } else if let Some(pos) = dotdot_segment(body) {
                (pos..pos + 2, "has a `..` segment")
            } else {
                return;
            };
            let fixed = body.trim_start_matches("./").trim_start_matches('/');
            out.push(
                Diagnostic::lint(
                    "glob",
                    at(r),
                    format!("path pattern `{text}` {what}, but changed paths are relative to the repository root, so it never matches"),
                )
                .with_hint(if fixed != body && !fixed.is_empty() {
                    format!("write `{fixed}`")
                } else {
                    "write paths as they appear in the repository, like `src/**`".to_owned()
                }),
            );
        }
    }
}

/// The byte offset of a `..` path segment.
fn dotdot_segment(path: &str) -> Option<usize> {
    let mut off = 0;
    for seg in path.split('/') {
        if seg == ".." {
            return Some(off);
        }
        off += seg.len() + 1;
    }
    None
}

/// Something no git ref name contains (`git check-ref-format`), outside glob syntax: the byte
/// range in the pattern body and a description.
fn bad_ref_part(body: &str) -> Option<(Range<usize>, String)> {
    if body.starts_with('/') {
        return Some((0..1, "a git ref name never starts with `/`".to_owned()));
    }
    let chars: Vec<(usize, char)> = body.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (off, c) = chars[i];
        let next = chars.get(i + 1).map(|&(_, c)| c);
        match c {
            '\\' => {
                // Escaping glob syntax is fine, but `[`, `?`, `*` and `\\` are not ref characters
                // either; any other escaped character is just that character.
                if let Some(n) = next
                    && matches!(n, '[' | '?' | '*' | '\\')
                {
                    return Some((off..off + 2, format!("a git ref name never contains `{n}`")));
                }
                i += 2;
                continue;
            }
            ' ' | '\t' | '~' | '^' | ':' => {
                let shown = if c == '\t' {
                    "a tab".to_owned()
                } else if c == ' ' {
                    "a space".to_owned()
                } else {
                    format!("`{c}`")
                };
                return Some((
                    off..off + 1,
                    format!("a git ref name never contains {shown}"),
                ));
            }
            '.' if next == Some('.') => {
                return Some((
                    off..off + 2,
                    "a git ref name never contains `..`".to_owned(),
                ));
            }
            '@' if next == Some('{') => {
                return Some((
                    off..off + 2,
                    "a git ref name never contains `@{`".to_owned(),
                ));
            }
            '/' if next == Some('/') => {
                return Some((
                    off..off + 2,
                    "a git ref name never contains `//`".to_owned(),
                ));
            }
            c if c.is_control() => {
                return Some((
                    off..off + c.len_utf8(),
                    "a git ref name never contains control characters".to_owned(),
                ));
            }
            _ => {}
        }
        i += 1;
    }
    if let Some(last) = body.chars().last()
        && (last == '/' || last == '.')
        && !body.ends_with("\\.")
    {
        let off = body.len() - 1;
        return Some((
            off..off + 1,
            format!("a git ref name never ends with `{last}`"),
        ));
    }
    if body.ends_with(".lock") {
        let off = body.len() - 5;
        return Some((
            off..body.len(),
            "a git ref name never ends with `.lock`".to_owned(),
        ));
    }
    None
}

/// Signs that a pattern was written as a regular expression: anchors, `.*` at the start,
/// escapes such as `\d`, groups with `|`, or `{n,m}` counts. Returns the byte range of the
/// first sign.
fn regex_look_alike(body: &str) -> Option<Range<usize>> {
    if body.starts_with('^') {
        return Some(0..1);
    }
    if body.ends_with('$') && !body.ends_with("\\$") {
        return Some(body.len() - 1..body.len());
    }
    if body.starts_with(".*") || body.starts_with(".+") {
        return Some(0..2);
    }
    for esc in ["\\d", "\\w", "\\s", "\\D", "\\W", "\\S", "\\b"] {
        if let Some(pos) = body.find(esc) {
            return Some(pos..pos + 2);
        }
    }
    if let Some(open) = body.find('(')
        && let Some(close) = body[open..].find(')')
        && body[open..open + close].contains('|')
    {
        return Some(open..open + close + 1);
    }
    // `{n,m}` counts; `@{` is reported as a ref character instead.
    if let Some(open) = body.find('{')
        && !body[..open].ends_with('@')
        && let Some(close) = body[open..].find('}')
    {
        let inner = &body[open + 1..open + close];
        if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit() || c == ',') {
            return Some(open..open + close + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, value: &str) -> bool {
        Pattern::parse(pattern).expect(pattern).matches(value)
    }

    /// Every example of GitHub's "Filter pattern cheat sheet" (branches and tags).
    #[test]
    fn cheat_sheet_refs() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "feature/*",
                &["feature/my-branch", "feature/your-branch"],
                &["feature/a/b", "feature"],
            ),
            (
                "feature/**",
                &[
                    "feature/beta-a/my-branch",
                    "feature/your-branch",
                    "feature/mona/the/octocat",
                ],
                &["features/x"],
            ),
            ("main", &["main"], &["main2", "xmain"]),
            (
                "releases/mona-the-octocat",
                &["releases/mona-the-octocat"],
                &["releases/mona"],
            ),
            ("*", &["main", "releases"], &["all/the/branches"]),
            ("**", &["all/the/branches", "every/tag", "main"], &[]),
            (
                "*feature",
                &["mona-feature", "feature", "ver-10-feature"],
                &["feature-x", "a/feature"],
            ),
            ("v2*", &["v2", "v2.0", "v2.9"], &["v1", "v2/x"]),
            (
                "v[12].[0-9]+.[0-9]+",
                &["v1.10.1", "v2.0.0"],
                &["v3.0.0", "v1.a.1", "v1..1", "v1.1"],
            ),
        ];
        for (p, yes, no) in cases {
            for v in *yes {
                assert!(m(p, v), "{p} should match {v}");
            }
            for v in *no {
                assert!(!m(p, v), "{p} should not match {v}");
            }
        }
    }

    /// Every example of the cheat sheet for paths.
    #[test]
    fn cheat_sheet_paths() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("*", &["README.md", "server.rb"], &["docs/a.md"]),
            (
                "*.jsx?",
                &["page.js", "page.jsx"],
                &["page.jsxx", "a/page.js"],
            ),
            ("**", &["all/the/files.md"], &[]),
            ("*.js", &["app.js", "index.js"], &["js/index.js"]),
            (
                "**.js",
                &["index.js", "js/index.js", "src/js/app.js"],
                &["index.ts"],
            ),
            (
                "docs/*",
                &["docs/README.md", "docs/file.txt"],
                &["docs/mona/octocat.txt"],
            ),
            (
                "docs/**",
                &["docs/README.md", "docs/mona/octocat.txt"],
                &["doc/x"],
            ),
            (
                "docs/**/*.md",
                &[
                    "docs/README.md",
                    "docs/mona/hello-world.md",
                    "docs/a/markdown/file.md",
                ],
                &["docs/a.txt", "README.md"],
            ),
            (
                "**/docs/**",
                &[
                    "docs/hello.md",
                    "dir/docs/my-file.txt",
                    "space/docs/plan/space.doc",
                ],
                &["mydocs/x"],
            ),
            (
                "**/README.md",
                &["README.md", "js/README.md"],
                &["README.mdx", "xREADME.md"],
            ),
            (
                "**/*src/**",
                &["a/src/app.js", "my-src/code/js/app.js"],
                &["src"],
            ),
            (
                "**/*-post.md",
                &["my-post.md", "path/their-post.md"],
                &["post.md"],
            ),
            (
                "**/migrate-*.sql",
                &[
                    "migrate-10909.sql",
                    "db/migrate-v1.0.sql",
                    "db/sept/migrate-v1.sql",
                ],
                &["db/migrate.sql"],
            ),
        ];
        for (p, yes, no) in cases {
            for v in *yes {
                assert!(m(p, v), "{p} should match {v}");
            }
            for v in *no {
                assert!(!m(p, v), "{p} should not match {v}");
            }
        }
    }

    #[test]
    fn negation_in_order() {
        let list = |ps: &[&str]| ps.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // Cheat sheet: `*.md` then `!README.md`.
        let a = list(&["*.md", "!README.md"]);
        assert!(filter_matches(&a, "hello.md"));
        assert!(!filter_matches(&a, "README.md"));
        assert!(!filter_matches(&a, "docs/hello.md"));
        // `*.md`, `!README.md`, `README*`: the last positive pattern includes it again.
        let b = list(&["*.md", "!README.md", "README*"]);
        assert!(filter_matches(&b, "hello.md"));
        assert!(filter_matches(&b, "README.md"));
        assert!(filter_matches(&b, "README.doc"));
        // Branches example from the docs.
        let c = list(&["releases/**", "!releases/**-alpha"]);
        assert!(filter_matches(&c, "releases/10"));
        assert!(filter_matches(&c, "releases/beta/mona"));
        assert!(!filter_matches(&c, "releases/10-alpha"));
        assert!(!filter_matches(&c, "releases/beta/3-alpha"));
        // A list of only negations includes nothing.
        assert!(!filter_matches(&list(&["!main"]), "dev"));
        assert!(!filter_matches(&list(&[]), "main"));
    }

    #[test]
    fn escapes_and_classes() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("[CB]at", "Cat"));
        assert!(m("[CB]at", "Bat"));
        assert!(!m("[CB]at", "Hat"));
        assert!(m("[1-2]00", "100"));
        assert!(m("[1-2]00", "200"));
        assert!(!m("[1-2]00", "300"));
        assert!(m("a+b", "aaab"));
        assert!(!m("a+b", "b"));
        assert!(m("[0-9]+x", "123x"));
        assert!(m("!main", "main"));
        assert!(Pattern::parse("!main").expect("ok").is_negated());
    }

    #[test]
    fn parse_errors_and_positions() {
        let e = |p: &str| Pattern::parse(p).expect_err(p);
        assert_eq!(e("v[0-9").range, 1..2);
        assert!(e("v[0-9").message.contains("never closed"));
        assert!(e("!").message.contains("`!` alone"));
        assert_eq!(e("?abc").range, 0..1);
        assert_eq!(e("!+abc").range, 1..2);
        assert_eq!(e("a*?").range, 2..3);
        assert_eq!(e("a[]").range, 1..3);
        assert_eq!(e("[z-a]").range, 1..4);
        assert_eq!(e("ab\\").range, 2..3);
        assert!(e("").message.contains("empty"));
    }

    #[test]
    fn lints() {
        assert_eq!(regex_look_alike("^main$"), Some(0..1));
        assert_eq!(regex_look_alike("release-.*"), None);
        assert_eq!(regex_look_alike(".*-rc"), Some(0..2));
        assert_eq!(regex_look_alike("v\\d+"), Some(1..3));
        assert_eq!(regex_look_alike("(main|dev)"), Some(0..10));
        assert_eq!(regex_look_alike("v[0-9]{1,3}"), Some(6..11));
        assert_eq!(regex_look_alike("v[12].[0-9]+.[0-9]+"), None);
        assert!(bad_ref_part("feature branch").is_some());
        assert!(bad_ref_part("a..b").is_some());
        assert!(bad_ref_part("a@{b").is_some());
        assert!(bad_ref_part("release/").is_some());
        assert!(bad_ref_part("a\\b").is_none());
        assert!(bad_ref_part("a\\*").is_some());
        assert!(bad_ref_part("a\\\\b").is_some());
        assert!(bad_ref_part("releases/**-alpha").is_none());
        assert!(bad_ref_part("v1.*").is_none());
        assert_eq!(dotdot_segment("src/../x"), Some(4));
        assert_eq!(dotdot_segment("src/..x"), None);
    }

    #[test]
    fn long_values_are_linear() {
        let p = Pattern::parse("**a**a**a**a**b").expect("ok");
        let v = "a".repeat(20_000);
        assert!(!p.matches(&v));
    }
}
