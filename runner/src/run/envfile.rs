//! Parsing of the per-step environment files: `GITHUB_OUTPUT`, `GITHUB_ENV`, `GITHUB_STATE`
//! and `GITHUB_PATH` (gha-semantics §5.7), exactly as the GitHub runner reads them.
//!
//! Lines end with LF: off Windows the runner does not treat CRLF specially, so a `\r` stays
//! part of names, values and delimiters (`EnvFileKeyValuePairs.ReadLine`). Empty lines are
//! ignored. If `=` comes before any `<<`, the line is `NAME=VALUE` split at the first `=` (the
//! value is kept verbatim). Otherwise it is `NAME<<DELIM`: the value is every following line up
//! to one exactly equal to `DELIM`, joined with LF. An empty name or delimiter, a missing
//! delimiter, or a line of neither form is an error that fails the step; the pairs before the
//! bad line still apply, because the runner applies them as it reads. Later writes to the same
//! name win.

use indexmap::IndexMap;

/// A malformed environment file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    /// A line is neither `NAME=VALUE` nor `NAME<<DELIM`.
    #[error("line {line} of `{file}` is invalid: expected `NAME=VALUE` or `NAME<<DELIMITER`")]
    InvalidLine {
        /// Which file (`GITHUB_OUTPUT`…).
        file: &'static str,
        /// 1-based line.
        line: usize,
    },
    /// A name is empty.
    #[error("line {line} of `{file}` has an empty name")]
    EmptyName {
        /// Which file.
        file: &'static str,
        /// 1-based line.
        line: usize,
    },
    /// A heredoc delimiter is empty.
    #[error("line {line} of `{file}` has an empty delimiter after `<<`")]
    EmptyDelimiter {
        /// Which file.
        file: &'static str,
        /// 1-based line.
        line: usize,
    },
    /// The heredoc delimiter never came.
    #[error("matching delimiter `{delimiter}` not found in `{file}` (opened on line {line})")]
    MissingDelimiter {
        /// Which file.
        file: &'static str,
        /// 1-based line of `NAME<<DELIM`.
        line: usize,
        /// The delimiter looked for.
        delimiter: String,
    },
}

/// Parses `NAME=VALUE` / `NAME<<DELIM` content; `file` names the file in errors.
pub fn parse_key_values(
    content: &str,
    file: &'static str,
) -> Result<IndexMap<String, String>, EnvFileError> {
    match parse_key_values_partial(content, file) {
        (out, None) => Ok(out),
        (_, Some(e)) => Err(e),
    }
}

/// Like [`parse_key_values`], but also returns the pairs read before an error: the runner
/// applies each pair as it reads it, so they take effect even when a later line is malformed.
pub fn parse_key_values_partial(
    content: &str,
    file: &'static str,
) -> (IndexMap<String, String>, Option<EnvFileError>) {
    let mut out = IndexMap::new();
    match parse_into(content, file, &mut out) {
        Ok(()) => (out, None),
        Err(e) => (out, Some(e)),
    }
}

fn parse_into(
    content: &str,
    file: &'static str,
    out: &mut IndexMap<String, String>,
) -> Result<(), EnvFileError> {
    let lines: Vec<&str> = content.split('\n').collect();
    // A trailing newline produces one empty last element, which is skipped like any empty line.
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let line_no = i + 1;
        i += 1;
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let name = &line[..e];
                if name.is_empty() {
                    return Err(EnvFileError::EmptyName {
                        file,
                        line: line_no,
                    });
                }
                out.shift_remove(name);
                out.insert(name.to_owned(), line[e + 1..].to_owned());
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delimiter = &line[h + 2..];
                if name.is_empty() {
                    return Err(EnvFileError::EmptyName {
                        file,
                        line: line_no,
                    });
                }
                if delimiter.is_empty() {
                    return Err(EnvFileError::EmptyDelimiter {
                        file,
                        line: line_no,
                    });
                }
                let mut value_lines: Vec<&str> = Vec::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    if l == delimiter {
                        closed = true;
                        break;
                    }
                    value_lines.push(l);
                }
                if !closed {
                    return Err(EnvFileError::MissingDelimiter {
                        file,
                        line: line_no,
                        delimiter: delimiter.to_owned(),
                    });
                }
                out.shift_remove(name);
                out.insert(name.to_owned(), value_lines.join("\n"));
            }
            _ => {
                return Err(EnvFileError::InvalidLine {
                    file,
                    line: line_no,
                });
            }
        }
    }
    Ok(())
}

/// Parses `GITHUB_PATH`: each non-empty line is a directory, in the order written.
pub fn parse_path_file(content: &str) -> Vec<String> {
    content
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Prepends `added` (in the order written) to `existing` PATH entries: the most recently added
/// directory comes first, and re-adding a directory moves it to the front.
pub fn prepend_paths(existing: &mut Vec<String>, added: &[String]) {
    for dir in added {
        existing.retain(|d| d != dir);
        existing.insert(0, dir.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str) -> Vec<(String, String)> {
        parse_key_values(s, "GITHUB_OUTPUT")
            .expect("valid")
            .into_iter()
            .collect()
    }

    #[test]
    fn simple_and_verbatim_values() {
        assert_eq!(
            kv("a=1\nb= spaced = \"q\" \n\nc=\n"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), " spaced = \"q\" ".into()),
                ("c".into(), "".into())
            ]
        );
    }

    #[test]
    fn heredocs() {
        assert_eq!(
            kv("x<<EOF\nl1\nl2\nEOF\n"),
            vec![("x".into(), "l1\nl2".into())]
        );
        assert_eq!(kv("x<<EOF\nEOF\n"), vec![("x".into(), "".into())]);
        // CRLF is not special off Windows: `\r` belongs to the delimiter and the values.
        assert_eq!(
            kv("x<<EOF\r\nl1\r\n\r\nEOF\r\n"),
            vec![("x".into(), "l1\r\n\r".into())]
        );
        assert_eq!(kv("a=1\r\n"), vec![("a".into(), "1\r".into())]);
        // `=` before `<<` means a plain value containing `<<`.
        assert_eq!(kv("a=b<<c\n"), vec![("a".into(), "b<<c".into())]);
        // `<<` before `=` is a heredoc whose delimiter contains `=`.
        assert_eq!(kv("a<<d=e\nv\nd=e\n"), vec![("a".into(), "v".into())]);
    }

    #[test]
    fn pairs_before_an_error_are_kept() {
        let (kv, err) = parse_key_values_partial("a=1\nbad\nb=2\n", "GITHUB_OUTPUT");
        assert_eq!(kv.get("a").map(String::as_str), Some("1"));
        assert!(!kv.contains_key("b"));
        assert_eq!(
            err,
            Some(EnvFileError::InvalidLine {
                file: "GITHUB_OUTPUT",
                line: 2
            })
        );
    }

    #[test]
    fn later_writes_win() {
        assert_eq!(
            kv("a=1\nb=2\na=3\n"),
            vec![("b".into(), "2".into()), ("a".into(), "3".into())]
        );
    }

    #[test]
    fn errors() {
        let e = |s| parse_key_values(s, "GITHUB_ENV").expect_err("invalid");
        assert_eq!(
            e("novalue\n"),
            EnvFileError::InvalidLine {
                file: "GITHUB_ENV",
                line: 1
            }
        );
        assert_eq!(
            e("a=1\n=2\n"),
            EnvFileError::EmptyName {
                file: "GITHUB_ENV",
                line: 2
            }
        );
        assert_eq!(
            e("x<<\n"),
            EnvFileError::EmptyDelimiter {
                file: "GITHUB_ENV",
                line: 1
            }
        );
        assert!(matches!(
            e("x<<EOF\nabc\n"),
            EnvFileError::MissingDelimiter { line: 1, .. }
        ));
        assert!(matches!(
            e("  \n"),
            EnvFileError::InvalidLine { line: 1, .. }
        ));
    }

    #[test]
    fn paths() {
        let mut p = vec!["/usr/bin".to_owned(), "/a".to_owned()];
        prepend_paths(&mut p, &parse_path_file("/a\n\n/b\r\n"));
        assert_eq!(p, vec!["/b", "/a", "/usr/bin"]);
    }
}
