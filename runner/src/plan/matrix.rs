//! Matrix expansion, exactly as GitHub does it (gha-semantics §5.4; GitHub's `MatrixBuilder`,
//! `JobNameBuilder` and `ConvertToStrategy`).
//!
//! Expansion has two stages, kept apart so each can be tested on its own:
//!
//! 1. [`evaluate`] turns the written matrix into a [`MatrixSpec`] of plain values: expressions
//!    are evaluated (a whole matrix, a vector, an `include`/`exclude` list, or single values), and
//!    a sequence item that is exactly one expression returning an array is spliced into its
//!    sequence.
//! 2. [`build`] expands a [`MatrixSpec`] into legs:
//!    - the vectors form a cross product, the first declared key varying slowest; that creation
//!      order is `strategy.job-index` order;
//!    - every product combination matching an `exclude` entry is dropped;
//!    - each `include` entry is split into *filter* keys (the vector keys) and *extra* keys; its
//!      extras are merged into every remaining product combination its filter matches (later
//!      entries may overwrite extras of earlier ones; original values are never touched);
//!    - entries that matched no combination are appended, in order, as new legs (filter keys
//!      first, then extras); they never receive other entries' extras.
//!
//! Matching (for `include` and `exclude` alike) is GitHub's: the filter is walked down to its
//! leaves, and each leaf is compared with the value at the same path in the combination using the
//! expression language's `==` — so strings compare ignoring case, `'3.10'` matches the number
//! `3.1`, a nested mapping matches any object holding at least those leaves, and a missing key
//! is `null`.
//!
//! Display names come from the leaf values of the *original* vector values, in key order (extras
//! are not shown; appended `include` legs show all their values), numbers in G15, empty and null
//! leaves skipped, and the whole name cut to 100 UTF-16 units as 97 and `...` (see
//! [`display_name`]).
//!
//! A matrix whose every combination is excluded (and that has no `include`) yields no legs;
//! GitHub then runs the job once without a matrix, which the caller reproduces. More than
//! [`MAX_LEGS`] legs is an error.

use std::sync::Arc;

use crate::expr::{Object, Template, Value};
use crate::source::Span;
use crate::workflow::{Matrix, MatrixList, MatrixVector, YStr};
use crate::yaml::{Node, NodeKind, ScalarValue};

/// GitHub's maximum number of legs of one matrix.
pub const MAX_LEGS: usize = 256;

/// Longest display name, in UTF-16 code units (GitHub measures .NET string lengths).
const MAX_NAME_UTF16: usize = 100;

/// The largest cross product enumerated. Without `exclude` anything above [`MAX_LEGS`] fails at
/// once; with it, every combination must be visited, and this bounds that work.
const MAX_PRODUCT: usize = 1 << 20;

/// One leg of an expanded matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Leg {
    /// The matrix values (an object): vector values in key order, then extras.
    pub values: Value,
    /// What the display name shows after the job name: the non-empty leaves of the shown values,
    /// joined with `, ` (empty: nothing is appended).
    pub segments: String,
}

/// Why a matrix could not be expanded.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixError {
    /// What is wrong.
    pub message: String,
    /// Where (the value that caused it).
    pub span: Span,
}

impl MatrixError {
    fn new(message: impl Into<String>, span: Span) -> Self {
        MatrixError {
            message: message.into(),
            span,
        }
    }
}

/// Evaluates a templated string in the strategy's context.
pub type Eval<'a> = dyn Fn(&YStr) -> Result<Value, MatrixError> + 'a;

/// A matrix with every expression evaluated: what [`build`] expands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MatrixSpec {
    /// Vectors in declaration order: key as written, where it was written, values.
    pub vectors: Vec<(String, Span, Vec<Value>)>,
    /// `include` entries with where each came from.
    pub include: Vec<(Value, Span)>,
    /// `exclude` entries with where each came from.
    pub exclude: Vec<(Value, Span)>,
    /// Where the matrix was written (for errors about the whole matrix).
    pub span: Span,
}

impl MatrixSpec {
    /// A spec from plain values (tests, benchmarks, dynamic matrices).
    pub fn from_values(
        vectors: Vec<(String, Vec<Value>)>,
        include: Vec<Value>,
        exclude: Vec<Value>,
    ) -> Self {
        MatrixSpec {
            vectors: vectors
                .into_iter()
                .map(|(k, v)| (k, Span::default(), v))
                .collect(),
            include: include.into_iter().map(|v| (v, Span::default())).collect(),
            exclude: exclude.into_iter().map(|v| (v, Span::default())).collect(),
            span: Span::default(),
        }
    }
}

/// Expands a matrix into legs. `eval` evaluates expressions in the strategy's context.
pub fn expand(matrix: &Matrix, eval: &Eval<'_>) -> Result<Vec<Leg>, MatrixError> {
    build(&evaluate(matrix, eval)?)
}

/// Evaluates a written matrix into a [`MatrixSpec`].
pub fn evaluate(matrix: &Matrix, eval: &Eval<'_>) -> Result<MatrixSpec, MatrixError> {
    match matrix {
        Matrix::Expr(y) => {
            let v = eval(y)?;
            spec_from_value(&v, y.span)
        }
        Matrix::Map(m) => {
            let mut spec = MatrixSpec {
                span: m.span,
                ..MatrixSpec::default()
            };
            for (name, vector) in &m.vectors {
                let values = match vector {
                    MatrixVector::Values(items) => seq_values(items, eval)?,
                    MatrixVector::Expr(y) => match eval(y)? {
                        Value::Array(a) => a.as_ref().clone(),
                        other => {
                            return Err(MatrixError::new(
                                format!(
                                    "matrix vector `{}` must be an array, the expression returned {}",
                                    name.value,
                                    kind(&other)
                                ),
                                y.span,
                            ));
                        }
                    },
                };
                spec.vectors.push((name.value.clone(), name.span, values));
            }
            spec.include = list_values(m.include.as_ref(), eval, "include")?;
            spec.exclude = list_values(m.exclude.as_ref(), eval, "exclude")?;
            Ok(spec)
        }
    }
}

/// A kind name for messages (`an object`, `null`, …).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A whole matrix given as one value (`matrix: ${{ fromJSON(...) }}`). `include` and `exclude`
/// are recognised with their exact spelling, as GitHub's converter does.
fn spec_from_value(v: &Value, span: Span) -> Result<MatrixSpec, MatrixError> {
    let Value::Object(o) = v else {
        return Err(MatrixError::new(
            format!(
                "the matrix expression must return an object, it returned {}",
                kind(v)
            ),
            span,
        ));
    };
    let mut spec = MatrixSpec {
        span,
        ..MatrixSpec::default()
    };
    for (k, val) in o.iter() {
        let list = |what: &str| -> Result<Vec<Value>, MatrixError> {
            match val {
                Value::Array(a) => Ok(a.as_ref().clone()),
                other => Err(MatrixError::new(
                    format!("matrix {what} must be an array, found {}", kind(other)),
                    span,
                )),
            }
        };
        match k {
            "include" => {
                spec.include = list("`include`")?.into_iter().map(|e| (e, span)).collect();
            }
            "exclude" => {
                spec.exclude = list("`exclude`")?.into_iter().map(|e| (e, span)).collect();
            }
            _ => {
                let values = list(&format!("vector `{k}`"))?;
                spec.vectors.push((k.to_owned(), span, values));
            }
        }
    }
    Ok(spec)
}

fn list_values(
    list: Option<&MatrixList>,
    eval: &Eval<'_>,
    what: &str,
) -> Result<Vec<(Value, Span)>, MatrixError> {
    match list {
        None => Ok(Vec::new()),
        Some(MatrixList::Entries(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                if is_single_expr_node(item) {
                    // Spliced items carry the span of the expression that produced them.
                    for v in seq_values(std::slice::from_ref(item), eval)? {
                        out.push((v, item.span));
                    }
                } else {
                    out.push((node_to_value(item, eval)?, item.span));
                }
            }
            Ok(out)
        }
        Some(MatrixList::Expr(y)) => match eval(y)? {
            Value::Array(a) => Ok(a.iter().map(|v| (v.clone(), y.span)).collect()),
            other => Err(MatrixError::new(
                format!(
                    "matrix `{what}` must be an array, the expression returned {}",
                    kind(&other)
                ),
                y.span,
            )),
        },
    }
}

/// Whether a node is a string scalar that is exactly one expression (so its value keeps its
/// type and, in a sequence, an array is spliced).
fn is_single_expr_node(node: &Node) -> bool {
    node.as_scalar().is_some_and(|s| {
        s.value == ScalarValue::Str
            && s.text.contains("${{")
            && Template::parse(&s.text).is_ok_and(|t| t.as_single_expr().is_some())
    })
}

fn eval_scalar(node: &Node, eval: &Eval<'_>) -> Result<Value, MatrixError> {
    let y =
        YStr::from_node(node).ok_or_else(|| MatrixError::new("invalid matrix value", node.span))?;
    eval(&y)
}

fn node_to_value(node: &Node, eval: &Eval<'_>) -> Result<Value, MatrixError> {
    Ok(match &node.kind {
        NodeKind::Scalar(s) => match s.value {
            ScalarValue::Null => Value::Null,
            ScalarValue::Bool(b) => Value::Bool(b),
            ScalarValue::Number(n) => Value::Number(n),
            ScalarValue::Str if s.text.contains("${{") => eval_scalar(node, eval)?,
            ScalarValue::Str => Value::str(&s.text),
        },
        NodeKind::Seq(items) => Value::array(seq_values(items, eval)?),
        NodeKind::Map(entries) => {
            let mut o = Object::new();
            for e in entries {
                // A key may be an expression too; it becomes its string form.
                let k = match e.key.as_scalar() {
                    Some(s) if s.value == ScalarValue::Str && s.text.contains("${{") => {
                        eval_scalar(&e.key, eval)?.as_gh_str().into_owned()
                    }
                    Some(_) => YStr::from_node(&e.key).map(|y| y.text).unwrap_or_default(),
                    None => String::new(),
                };
                o.insert_merging_case(k, node_to_value(&e.value, eval)?);
            }
            Value::from_object(o)
        }
    })
}

/// Values of a sequence. An item that is exactly one expression returning an array is spliced
/// into the sequence; any other value (null included) is one item, as GitHub's template
/// unraveler does.
fn seq_values(items: &[Node], eval: &Eval<'_>) -> Result<Vec<Value>, MatrixError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let v = node_to_value(item, eval)?;
        match v {
            Value::Array(a) if is_single_expr_node(item) => out.extend(a.iter().cloned()),
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Whether `filter` matches `actual` the way GitHub's include/exclude filters do: every leaf of
/// the filter equals (expression `==`) the value at the same path; a missing path is null.
pub fn filter_matches(actual: Option<&Value>, filter: &Value) -> bool {
    match filter {
        Value::Object(f) => f
            .iter()
            .all(|(k, fv)| filter_matches(actual.and_then(|a| a.get(k)), fv)),
        Value::Array(f) => f.iter().enumerate().all(|(i, fv)| {
            let item = actual.and_then(Value::as_array).and_then(|a| a.get(i));
            filter_matches(item, fv)
        }),
        leaf => actual.unwrap_or(&Value::Null).loose_eq(leaf),
    }
}

/// Appends the non-empty leaves of a value in document order (GitHub's display-name segments:
/// strings, booleans and G15 numbers; null and empty strings are left out), `, `-separated.
fn push_segments(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| push_segments(i, out)),
        Value::Object(o) => o.values().for_each(|i| push_segments(i, out)),
        other => {
            let s = other.as_gh_str();
            if !s.is_empty() {
                if !out.is_empty() {
                    out.push_str(", ");
                }
                out.push_str(&s);
            }
        }
    }
}

/// Joins precomputed segment strings, skipping empty ones.
fn join_segments<'a>(parts: impl Iterator<Item = &'a str> + Clone) -> String {
    let len: usize = parts.clone().map(|p| p.len() + 2).sum();
    let mut out = String::with_capacity(len);
    for p in parts.filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(p);
    }
    out
}

/// An `include` entry split into filter (vector keys, by vector index) and extras.
struct Include<'a> {
    filter: Vec<(usize, &'a Value)>,
    /// Filter pairs as written (for an appended leg).
    filter_pairs: Vec<(&'a str, &'a Value)>,
    extra: Vec<(&'a str, &'a Value)>,
    matched: bool,
}

/// Finds a vector by key, ignoring case (GitHub's dictionaries are case-insensitive).
fn vector_index(spec: &MatrixSpec, key: &str) -> Option<usize> {
    spec.vectors
        .iter()
        .position(|(k, _, _)| k.eq_ignore_ascii_case(key))
}

/// Expands an evaluated matrix into legs (see the module docs). An empty result means every
/// combination was excluded: the job then runs once without a matrix.
pub fn build(spec: &MatrixSpec) -> Result<Vec<Leg>, MatrixError> {
    // Vectors: each must have values, and keys are unique ignoring case.
    for (i, (k, span, values)) in spec.vectors.iter().enumerate() {
        if values.is_empty() {
            return Err(MatrixError::new(
                format!("matrix vector `{k}` does not contain any values"),
                *span,
            ));
        }
        if spec.vectors[..i]
            .iter()
            .any(|(p, _, _)| p.eq_ignore_ascii_case(k))
        {
            return Err(MatrixError::new(
                format!("matrix key `{k}` is defined twice (matrix keys are case-insensitive)"),
                *span,
            ));
        }
    }
    if spec.vectors.is_empty() && spec.include.is_empty() {
        return Err(MatrixError::new(
            "the matrix must define at least one vector or `include` entry",
            spec.span,
        ));
    }
    // Excludes: non-empty mappings whose top-level keys are vector keys.
    let mut excludes: Vec<Vec<(usize, &Value)>> = Vec::with_capacity(spec.exclude.len());
    for (e, span) in &spec.exclude {
        let Value::Object(o) = e else {
            return Err(MatrixError::new(
                format!(
                    "a matrix `exclude` entry must be a mapping, found {}",
                    kind(e)
                ),
                *span,
            ));
        };
        if o.is_empty() {
            return Err(MatrixError::new(
                "a matrix `exclude` entry must not be empty",
                *span,
            ));
        }
        let mut filter = Vec::with_capacity(o.len());
        for (k, v) in o.iter() {
            let Some(vi) = vector_index(spec, k) else {
                return Err(MatrixError::new(
                    format!("matrix `exclude` key `{k}` does not match any key of the matrix"),
                    *span,
                ));
            };
            filter.push((vi, v));
        }
        excludes.push(filter);
    }
    // Includes: non-empty mappings, split into filter and extras.
    let mut includes: Vec<Include<'_>> = Vec::with_capacity(spec.include.len());
    for (e, span) in &spec.include {
        let Value::Object(o) = e else {
            return Err(MatrixError::new(
                format!(
                    "a matrix `include` entry must be a mapping, found {}",
                    kind(e)
                ),
                *span,
            ));
        };
        if o.is_empty() {
            return Err(MatrixError::new(
                "a matrix `include` entry must contain at least one value",
                *span,
            ));
        }
        let mut inc = Include {
            filter: Vec::new(),
            filter_pairs: Vec::new(),
            extra: Vec::new(),
            matched: false,
        };
        for (k, v) in o.iter() {
            match vector_index(spec, k) {
                Some(vi) => {
                    inc.filter.push((vi, v));
                    inc.filter_pairs.push((k, v));
                }
                None => inc.extra.push((k, v)),
            }
        }
        includes.push(inc);
    }

    // The cross product size (none without vectors: an include-only matrix).
    let product = if spec.vectors.is_empty() {
        0
    } else {
        spec.vectors
            .iter()
            .try_fold(1usize, |acc, (_, _, v)| acc.checked_mul(v.len()))
            .unwrap_or(usize::MAX)
    };
    if product > MAX_PRODUCT {
        return Err(MatrixError::new(
            format!(
                "the matrix has {} combinations before `exclude`; GitHub allows at most {MAX_LEGS} jobs per matrix",
                product_text(product)
            ),
            spec.span,
        ));
    }
    if excludes.is_empty() && product > MAX_LEGS {
        return Err(too_many(product_text(product), spec.span));
    }

    let keys: Vec<&str> = spec.vectors.iter().map(|(k, _, _)| k.as_str()).collect();
    // Each vector value's display segments, computed once instead of once per leg.
    let segments: Vec<Vec<String>> = spec
        .vectors
        .iter()
        .map(|(_, _, values)| {
            values
                .iter()
                .map(|v| {
                    let mut s = String::new();
                    push_segments(v, &mut s);
                    s
                })
                .collect()
        })
        .collect();
    let mut legs: Vec<Leg> = Vec::with_capacity(product.min(MAX_LEGS) + includes.len());
    let mut count = 0usize;
    let mut combo: Vec<&Value> = Vec::with_capacity(spec.vectors.len());
    let mut digits: Vec<usize> = Vec::with_capacity(spec.vectors.len());
    // Extras of the current leg, merged ignoring key case (first spelling and position kept).
    let mut extra: Vec<(&str, &Value)> = Vec::new();
    for index in 0..product {
        // Mixed-radix digits, first vector most significant (varies slowest).
        combo.clear();
        digits.clear();
        let mut block = product;
        for (_, _, values) in &spec.vectors {
            block /= values.len();
            let d = (index / block) % values.len();
            digits.push(d);
            combo.push(&values[d]);
        }
        let excluded = excludes.iter().any(|f| {
            f.iter()
                .all(|&(vi, fv)| filter_matches(Some(combo[vi]), fv))
        });
        if excluded {
            continue;
        }
        count += 1;
        let building = count <= MAX_LEGS;
        // Extras of every matching include, later ones overwriting earlier ones.
        extra.clear();
        for inc in &mut includes {
            let fits = inc
                .filter
                .iter()
                .all(|&(vi, fv)| filter_matches(Some(combo[vi]), fv));
            if fits {
                inc.matched = true;
                if building {
                    for &(k, v) in &inc.extra {
                        match extra.iter_mut().find(|(x, _)| x.eq_ignore_ascii_case(k)) {
                            Some(slot) => slot.1 = v,
                            None => extra.push((k, v)),
                        }
                    }
                }
            }
        }
        if !building {
            continue;
        }
        let mut values = Object::new();
        for (k, v) in keys.iter().zip(&combo) {
            values.insert(*k, (*v).clone());
        }
        for &(k, v) in &extra {
            values.insert(k, v.clone());
        }
        legs.push(Leg {
            values: Value::Object(Arc::new(values)),
            segments: join_segments(
                digits
                    .iter()
                    .zip(&segments)
                    .map(|(&d, segs)| segs[d].as_str()),
            ),
        });
    }
    // Entries that matched nothing become legs of their own.
    for inc in includes.iter().filter(|i| !i.matched) {
        count += 1;
        if count > MAX_LEGS {
            continue;
        }
        let mut values = Object::new();
        for &(k, v) in inc.filter_pairs.iter().chain(&inc.extra) {
            values.insert_merging_case(k, v.clone());
        }
        let mut segments = String::new();
        for v in values.values() {
            push_segments(v, &mut segments);
        }
        legs.push(Leg {
            values: Value::from_object(values),
            segments,
        });
    }
    if count > MAX_LEGS {
        return Err(too_many(count.to_string(), spec.span));
    }
    Ok(legs)
}

fn product_text(product: usize) -> String {
    if product == usize::MAX {
        "too many".to_owned()
    } else {
        product.to_string()
    }
}

fn too_many(n: String, span: Span) -> MatrixError {
    MatrixError::new(
        format!("the matrix expands to {n} jobs; GitHub allows at most {MAX_LEGS} jobs per matrix"),
        span,
    )
}

/// The display name of a leg: `name (v1, v2)` with empty values left out, the whole name cut to
/// 100 characters (97 and `...`), as GitHub's `JobNameBuilder` does.
pub fn display_name(base: &str, leg: &Leg) -> String {
    if leg.segments.is_empty() {
        return truncate_name(base.to_owned());
    }
    let mut name = String::with_capacity(base.len() + leg.segments.len() + 3);
    name.push_str(base);
    name.push_str(" (");
    name.push_str(&leg.segments);
    name.push(')');
    truncate_name(name)
}

/// Cuts a display name longer than 100 UTF-16 code units to 97 and `...`. GitHub measures .NET
/// string lengths, so a character outside the Basic Multilingual Plane counts twice; one that
/// would be split in half is left out.
pub fn truncate_name(name: String) -> String {
    // Fast path: 100 bytes or fewer means 100 UTF-16 units or fewer.
    if name.len() <= MAX_NAME_UTF16 || name.encode_utf16().count() <= MAX_NAME_UTF16 {
        return name;
    }
    let mut units = 0;
    let mut end = 0;
    for (i, c) in name.char_indices() {
        units += c.len_utf16();
        if units > MAX_NAME_UTF16 - 3 {
            break;
        }
        end = i + c.len_utf8();
    }
    let mut out = name[..end].to_owned();
    out.push_str("...");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::str(v)
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::object(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
    }

    fn names(legs: &[Leg]) -> Vec<String> {
        legs.iter().map(|l| display_name("j", l)).collect()
    }

    #[test]
    fn docs_fruit_animal_example_has_six_legs() {
        let spec = MatrixSpec::from_values(
            vec![
                ("fruit".into(), vec![s("apple"), s("pear")]),
                ("animal".into(), vec![s("cat"), s("dog")]),
            ],
            vec![
                obj(&[("color", s("green"))]),
                obj(&[("color", s("pink")), ("animal", s("cat"))]),
                obj(&[("fruit", s("apple")), ("shape", s("circle"))]),
                obj(&[("fruit", s("banana"))]),
                obj(&[("fruit", s("banana")), ("animal", s("cat"))]),
            ],
            vec![],
        );
        let legs = build(&spec).expect("expands");
        let json: Vec<String> = legs
            .iter()
            .map(|l| l.values.to_json().to_string())
            .collect();
        assert_eq!(
            json,
            [
                r#"{"fruit":"apple","animal":"cat","color":"pink","shape":"circle"}"#,
                r#"{"fruit":"apple","animal":"dog","color":"green","shape":"circle"}"#,
                r#"{"fruit":"pear","animal":"cat","color":"pink"}"#,
                r#"{"fruit":"pear","animal":"dog","color":"green"}"#,
                r#"{"fruit":"banana"}"#,
                r#"{"fruit":"banana","animal":"cat"}"#,
            ]
        );
        assert_eq!(
            names(&legs),
            [
                "j (apple, cat)",
                "j (apple, dog)",
                "j (pear, cat)",
                "j (pear, dog)",
                "j (banana)",
                "j (banana, cat)",
            ]
        );
    }

    #[test]
    fn appended_include_puts_filter_keys_first() {
        let spec = MatrixSpec::from_values(
            vec![("os".into(), vec![s("a")])],
            vec![obj(&[("extra", s("x")), ("os", s("b"))])],
            vec![],
        );
        let legs = build(&spec).expect("expands");
        assert_eq!(
            legs[1].values.to_json().to_string(),
            r#"{"os":"b","extra":"x"}"#
        );
        assert_eq!(display_name("j", &legs[1]), "j (b, x)");
    }

    #[test]
    fn filters_compare_like_expressions() {
        // Strings ignore case, '3.10' equals 3.1, nested mappings match by their leaves.
        assert!(filter_matches(Some(&s("Ubuntu")), &s("ubuntu")));
        assert!(filter_matches(Some(&Value::Number(3.1)), &s("3.10")));
        let actual = obj(&[("name", s("linux")), ("arch", s("x64"))]);
        assert!(filter_matches(Some(&actual), &obj(&[("name", s("LINUX"))])));
        assert!(!filter_matches(Some(&actual), &obj(&[("name", s("mac"))])));
        assert!(filter_matches(None, &Value::Null));
    }

    #[test]
    fn everything_excluded_gives_no_legs() {
        let spec = MatrixSpec::from_values(
            vec![("os".into(), vec![s("a")])],
            vec![],
            vec![obj(&[("os", s("a"))])],
        );
        assert_eq!(build(&spec).expect("expands"), vec![]);
    }

    #[test]
    fn limits() {
        let many: Vec<Value> = (0..17).map(|i| Value::Number(f64::from(i))).collect();
        let spec = MatrixSpec::from_values(
            vec![("a".into(), many.clone()), ("b".into(), many)],
            vec![],
            vec![],
        );
        let e = build(&spec).expect_err("too many");
        assert!(e.message.contains("289 jobs"), "{}", e.message);
        let empty = MatrixSpec::from_values(vec![("a".into(), vec![])], vec![], vec![]);
        assert_eq!(
            build(&empty).expect_err("empty").message,
            "matrix vector `a` does not contain any values"
        );
    }

    #[test]
    fn names_are_cut_at_100_utf16_units() {
        let long = "x".repeat(120);
        let cut = truncate_name(long);
        assert_eq!(cut.len(), 100);
        assert!(cut.ends_with("..."));
        // An emoji counts two units; one that would straddle unit 97 is dropped.
        let emoji = format!("{}😀{}", "a".repeat(96), "b".repeat(10));
        assert_eq!(truncate_name(emoji), format!("{}...", "a".repeat(96)));
    }
}
