//! The Prometheus text exposition format (version 0.0.4): a parser for what `/metrics`
//! endpoints serve, the small query language of `metric:` checks, and the writer `pipe`'s
//! own metrics use.
//!
//! Queries are a series selector (`name` or `name{label="value",other!="x"}`; matching
//! samples are summed) or the ratio of two (`errors_total / requests_total`). Conditions
//! are a comparison with a number (`<= 0.01`, `value > 5`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The metric name (with `_bucket`/`_sum`/`_count` suffixes as written).
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// The value (`NaN`, `+Inf` and `-Inf` allowed).
    pub value: f64,
    /// The optional timestamp in milliseconds.
    pub timestamp: Option<i64>,
}

/// A line of the exposition that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a whole exposition. Comments (`# HELP`, `# TYPE`, others) and blank lines are
/// skipped; the first bad line is an error naming line and column.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut p = Cursor {
            chars: line.chars().collect(),
            pos: line.len() - trimmed.len(),
        };
        match p.sample() {
            Ok(s) => out.push(s),
            Err((col, message)) => {
                return Err(ParseError {
                    line: i + 1,
                    column: col + 1,
                    message,
                });
            }
        }
    }
    Ok(out)
}

struct Cursor {
    chars: Vec<char>,
    pos: usize,
}

type PResult<T> = Result<T, (usize, String)>;

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    fn name(&mut self, what: &str, colon: bool) -> PResult<String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (colon && c == ':')
                || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err((start, format!("expected a {what}")));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn labels(&mut self) -> PResult<BTreeMap<String, String>> {
        let mut labels = BTreeMap::new();
        if self.peek() != Some('{') {
            return Ok(labels);
        }
        self.pos += 1;
        loop {
            self.skip_ws();
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(labels);
            }
            let at = self.pos;
            let k = self.name("label name", false)?;
            self.skip_ws();
            if self.peek() != Some('=') {
                return Err((self.pos, format!("expected `=` after label `{k}`")));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.quoted()?;
            if labels.insert(k.clone(), v).is_some() {
                return Err((at, format!("label `{k}` appears twice")));
            }
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {}
                _ => return Err((self.pos, "expected `,` or `}` in the label set".to_owned())),
            }
        }
    }

    fn quoted(&mut self) -> PResult<String> {
        if self.peek() != Some('"') {
            return Err((self.pos, "expected a quoted label value".to_owned()));
        }
        let open = self.pos;
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err((open, "unterminated label value".to_owned())),
                Some('"') => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some('n') => s.push('\n'),
                        Some('\\') => s.push('\\'),
                        Some('"') => s.push('"'),
                        other => {
                            return Err((
                                self.pos - 1,
                                format!(
                                    "unknown escape `\\{}` (only `\\\\`, `\\\"` and `\\n`)",
                                    other.map(String::from).unwrap_or_default()
                                ),
                            ));
                        }
                    }
                    self.pos += 1;
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn word(&mut self) -> (usize, String) {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' {
                break;
            }
            self.pos += 1;
        }
        (start, self.chars[start..self.pos].iter().collect())
    }

    fn sample(&mut self) -> PResult<Sample> {
        let name = self.name("metric name", true)?;
        let labels = self.labels()?;
        if !matches!(self.peek(), Some(' ' | '\t')) {
            return Err((self.pos, "expected a space before the value".to_owned()));
        }
        self.skip_ws();
        let (at, v) = self.word();
        let value = parse_value(&v).ok_or((at, format!("`{v}` is not a number")))?;
        self.skip_ws();
        let timestamp = if self.peek().is_some() {
            let (at, t) = self.word();
            Some(
                t.parse::<i64>()
                    .map_err(|_| (at, format!("`{t}` is not a timestamp in milliseconds")))?,
            )
        } else {
            None
        };
        self.skip_ws();
        if self.peek().is_some() {
            return Err((self.pos, "unexpected text after the sample".to_owned()));
        }
        Ok(Sample {
            name,
            labels,
            value,
            timestamp,
        })
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => {
            // Rust's parser takes "inf"/"nan" spellings the format does not allow.
            if s.chars()
                .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
            {
                return None;
            }
            s.parse().ok()
        }
    }
}

/// Formats a value the way the format spells it.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

/// Writes one sample line (label values escaped).
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", format_value(value));
}

/// A label matcher of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    /// Label name.
    pub label: String,
    /// `!=` instead of `=`.
    pub negated: bool,
    /// The value compared.
    pub value: String,
}

/// `name{label="v"}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// Metric name.
    pub name: String,
    /// Label matchers (all must hold).
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// The sum of the matching samples, `None` when nothing matches.
    pub fn eval(&self, samples: &[Sample]) -> Option<f64> {
        let mut sum = None;
        for s in samples.iter().filter(|s| s.name == self.name) {
            let ok = self.matchers.iter().all(|m| {
                let v = s.labels.get(&m.label).map(String::as_str).unwrap_or("");
                (v == m.value) != m.negated
            });
            if ok {
                *sum.get_or_insert(0.0) += s.value;
            }
        }
        sum
    }
}

/// A `metric:` check's query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// One selector.
    One(Selector),
    /// Numerator / denominator.
    Ratio(Selector, Selector),
}

impl Query {
    /// The value, or why there is none (a missing series, a zero denominator).
    pub fn eval(&self, samples: &[Sample]) -> Result<f64, String> {
        let get = |s: &Selector| {
            s.eval(samples)
                .ok_or_else(|| format!("no series matches `{}`", s.name))
        };
        match self {
            Query::One(s) => get(s),
            Query::Ratio(a, b) => {
                let (a, b) = (get(a)?, get(b)?);
                if b == 0.0 {
                    return Err("the denominator is 0".to_owned());
                }
                Ok(a / b)
            }
        }
    }
}

impl FromStr for Query {
    type Err = String;

    fn from_str(s: &str) -> Result<Query, String> {
        let mut c = Cursor {
            chars: s.chars().collect(),
            pos: 0,
        };
        c.skip_ws();
        let a = selector(&mut c)?;
        c.skip_ws();
        if c.peek().is_none() {
            return Ok(Query::One(a));
        }
        if c.peek() != Some('/') {
            return Err(format!("expected `/` or the end at column {}", c.pos + 1));
        }
        c.pos += 1;
        c.skip_ws();
        let b = selector(&mut c)?;
        c.skip_ws();
        if c.peek().is_some() {
            return Err(format!("unexpected text at column {}", c.pos + 1));
        }
        Ok(Query::Ratio(a, b))
    }
}

fn selector(c: &mut Cursor) -> Result<Selector, String> {
    let name = c
        .name("metric name", true)
        .map_err(|(col, m)| format!("{m} at column {}", col + 1))?;
    let mut matchers = Vec::new();
    c.skip_ws();
    if c.peek() == Some('{') {
        c.pos += 1;
        loop {
            c.skip_ws();
            if c.peek() == Some('}') {
                c.pos += 1;
                break;
            }
            let label = c
                .name("label name", false)
                .map_err(|(col, m)| format!("{m} at column {}", col + 1))?;
            c.skip_ws();
            let negated = match (c.peek(), c.chars.get(c.pos + 1)) {
                (Some('!'), Some('=')) => {
                    c.pos += 2;
                    true
                }
                (Some('='), _) => {
                    c.pos += 1;
                    false
                }
                _ => return Err(format!("expected `=` or `!=` at column {}", c.pos + 1)),
            };
            c.skip_ws();
            let value = c
                .quoted()
                .map_err(|(col, m)| format!("{m} at column {}", col + 1))?;
            matchers.push(Matcher {
                label,
                negated,
                value,
            });
            c.skip_ws();
            match c.peek() {
                Some(',') => c.pos += 1,
                Some('}') => {}
                _ => return Err(format!("expected `,` or `}}` at column {}", c.pos + 1)),
            }
        }
    }
    Ok(Selector { name, matchers })
}

/// A comparison with a number: `<= 0.01`, `value > 5`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Condition {
    op: Op,
    rhs: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Condition {
    /// Whether `v` satisfies it (NaN satisfies nothing).
    pub fn holds(&self, v: f64) -> bool {
        match self.op {
            Op::Lt => v < self.rhs,
            Op::Le => v <= self.rhs,
            Op::Gt => v > self.rhs,
            Op::Ge => v >= self.rhs,
            Op::Eq => v == self.rhs,
            Op::Ne => !v.is_nan() && v != self.rhs,
        }
    }
}

impl FromStr for Condition {
    type Err = String;

    fn from_str(s: &str) -> Result<Condition, String> {
        let t = s.trim();
        let t = t.strip_prefix("value").map(str::trim_start).unwrap_or(t);
        let (op, rest) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find_map(|(p, op)| t.strip_prefix(p).map(|r| (*op, r)))
        .ok_or_else(|| {
            format!("`{s}` is not a condition; write a comparison such as `<= 0.01` or `> 5`")
        })?;
        let rhs = parse_value(rest.trim())
            .filter(|v| !v.is_nan())
            .ok_or_else(|| format!("`{}` in `{s}` is not a number", rest.trim()))?;
        Ok(Condition { op, rhs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEXT: &str = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",path="/"} 1027 1395066363000
http_requests_total{code="500",path="/"} 3
  http_requests_total{code="500",path="/x",} 2
# a comment
go_goroutines 12
latency_seconds_bucket{le="+Inf"} 7
weird{msg="a \"quoted\" \\ line\nbreak"} -Inf
up NaN
"#;

    #[test]
    fn parses_samples_labels_escapes_and_timestamps() {
        let s = parse(TEXT).expect("parse");
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].timestamp, Some(1_395_066_363_000));
        assert_eq!(s[2].labels["path"], "/x");
        assert_eq!(s[4].labels["le"], "+Inf");
        assert_eq!(s[5].labels["msg"], "a \"quoted\" \\ line\nbreak");
        assert_eq!(s[5].value, f64::NEG_INFINITY);
        assert!(s[6].value.is_nan());
    }

    #[test]
    fn bad_lines_name_line_and_column() {
        let cases = [
            ("ok 1\nbad{x=1} 2\n", 2, 7, "expected a quoted label value"),
            ("m{a=\"1\"} one\n", 1, 10, "`one` is not a number"),
            ("m 1 2 3\n", 1, 7, "unexpected text after the sample"),
            ("m{a=\"1\",a=\"2\"} 1", 1, 9, "label `a` appears twice"),
            ("m{a=\"\\t\"} 1", 1, 6, "unknown escape `\\t`"),
            ("9m 1", 1, 1, "expected a metric name"),
            ("m inf", 1, 3, "`inf` is not a number"),
        ];
        for (text, line, column, msg) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!((e.line, e.column), (line, column), "{text}: {e}");
            assert!(e.message.starts_with(msg), "{text}: {e}");
        }
    }

    #[test]
    fn queries_sum_matching_series_and_divide() {
        let s = parse(TEXT).expect("parse");
        let q: Query = r#"http_requests_total{code="500"}"#.parse().expect("query");
        assert_eq!(q.eval(&s), Ok(5.0));
        let q: Query = r#"http_requests_total{code="500", path!="/x"} / http_requests_total"#
            .parse()
            .expect("query");
        assert_eq!(q.eval(&s), Ok(3.0 / 1032.0));
        let q: Query = "nope_total".parse().expect("query");
        assert_eq!(q.eval(&s), Err("no series matches `nope_total`".to_owned()));
        let zero = parse("a 1\nb 0\n").expect("parse");
        let q: Query = "a / b".parse().expect("query");
        assert!(q.eval(&zero).is_err());
        assert!("a /".parse::<Query>().is_err());
        assert!("a{x=1}".parse::<Query>().is_err());
        assert!("a b".parse::<Query>().is_err());
    }

    #[test]
    fn conditions_compare() {
        let c: Condition = "<= 0.01".parse().expect("cond");
        assert!(c.holds(0.01) && c.holds(0.0) && !c.holds(0.02) && !c.holds(f64::NAN));
        let c: Condition = "value > 5".parse().expect("cond");
        assert!(c.holds(6.0) && !c.holds(5.0));
        let c: Condition = "!= 0".parse().expect("cond");
        assert!(c.holds(1.0) && !c.holds(0.0) && !c.holds(f64::NAN));
        assert!("about 3".parse::<Condition>().is_err());
        assert!("< NaN".parse::<Condition>().is_err());
        assert!("< x".parse::<Condition>().is_err());
    }

    fn label_value() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-z0-9 _\"\\\\\n{},=/.-]{0,12}").expect("regex")
    }

    proptest! {
        /// Whatever `write_sample` writes, `parse` reads back.
        #[test]
        fn written_samples_parse_back(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,6}", label_value(), 0..4),
            value in prop_oneof![any::<f64>(), Just(f64::INFINITY), Just(f64::NEG_INFINITY), -1e9f64..1e9],
        ) {
            let mut out = String::new();
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            write_sample(&mut out, &name, &pairs, value);
            let s = parse(&out).map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
            prop_assert_eq!(s.len(), 1);
            prop_assert_eq!(&s[0].name, &name);
            prop_assert_eq!(&s[0].labels, &labels);
            if value.is_nan() { prop_assert!(s[0].value.is_nan()); } else { prop_assert_eq!(s[0].value, value); }
        }

        /// The parser never panics, and an error points inside the text.
        #[test]
        fn arbitrary_text_never_panics(text in "[ -~\n]{0,80}") {
            if let Err(e) = parse(&text) {
                let line = text.lines().nth(e.line - 1).unwrap_or("");
                prop_assert!(e.column <= line.chars().count() + 1);
            }
        }
    }
}
