//! Matrix expansion, exactly as GitHub does it (gha-semantics §5.4, actions/runner
//! `MatrixBuilder`).
//!
//! - Vectors form a cross product; the first declared key varies slowest, and that creation
//!   order is `strategy.job-index` order.
//! - `exclude` entries remove every combination matching all of their keys (partial match);
//!   excludes apply before includes.
//! - `include` entries are merged into every original combination whose original values they
//!   do not contradict (added values may be overwritten, original ones never); an entry that
//!   fits no combination becomes a new combination, appended in order, and new combinations
//!   never receive later includes.
//! - A sequence item that is one expression returning an array is spliced into the vector; one
//!   returning null is dropped.
//! - Display names use the leaf values of the original vector values in key order (include
//!   extras are not shown; new include combinations show all their values), numbers in G15,
//!   truncated to 100 characters with `...`.

use crate::expr::{Template, Value};
use crate::workflow::{Matrix, MatrixList, MatrixVector, YStr};
use crate::yaml::{Node, NodeKind, ScalarValue};

/// GitHub's maximum number of legs.
pub const MAX_LEGS: usize = 256;
/// Longest display name before truncation.
const MAX_NAME: usize = 100;

/// One leg of an expanded matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Leg {
    /// The matrix values (an object).
    pub values: Value,
    /// The values shown in the display name, in order.
    pub shown: Vec<String>,
}

/// Why a matrix could not be expanded.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixError {
    /// What is wrong.
    pub message: String,
    /// Where (the value that caused it).
    pub span: crate::source::Span,
}

/// Evaluates a templated string in the strategy's context.
pub type Eval<'a> = dyn Fn(&YStr) -> Result<Value, MatrixError> + 'a;

fn node_to_value(node: &Node, eval: &Eval<'_>) -> Result<Value, MatrixError> {
    Ok(match &node.kind {
        NodeKind::Scalar(s) => match s.value {
            ScalarValue::Null => Value::Null,
            ScalarValue::Bool(b) => Value::Bool(b),
            ScalarValue::Number(n) => Value::Number(n),
            ScalarValue::Str => {
                if s.text.contains("${{") {
                    let y = YStr::from_node(node).ok_or_else(|| MatrixError {
                        message: "invalid matrix value".into(),
                        span: node.span,
                    })?;
                    eval(&y)?
                } else {
                    Value::str(&s.text)
                }
            }
        },
        NodeKind::Seq(items) => Value::array(seq_values(items, eval)?),
        NodeKind::Map(entries) => {
            let mut pairs = Vec::with_capacity(entries.len());
            for e in entries {
                let k = e.key.as_str().unwrap_or_default().to_owned();
                pairs.push((k, node_to_value(&e.value, eval)?));
            }
            Value::object(pairs)
        }
    })
}

/// Values of a sequence: an item that is one expression returning an array is spliced, one
/// returning null is dropped.
fn seq_values(items: &[Node], eval: &Eval<'_>) -> Result<Vec<Value>, MatrixError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let single_expr = item
            .as_scalar()
            .is_some_and(|s| s.value == ScalarValue::Str && is_single_expr(&s.text));
        let v = node_to_value(item, eval)?;
        if single_expr {
            match v {
                Value::Array(a) => out.extend(a.iter().cloned()),
                Value::Null => {}
                other => out.push(other),
            }
        } else {
            out.push(v);
        }
    }
    Ok(out)
}

fn is_single_expr(t: &str) -> bool {
    let t = t.trim();
    t.starts_with("${{") && t.ends_with("}}") && t[3..].find("${{").is_none()
}

/// Deep equality used for matching matrix values (strings compare case-sensitively here:
/// GitHub matches include/exclude values with ordinal string equality).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => false,
    }
}

/// Leaf values of a value, for display names.
fn leaves(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| leaves(i, out)),
        Value::Object(o) => o.values().for_each(|i| leaves(i, out)),
        other => out.push(other.to_gh_string().unwrap_or_default()),
    }
}

/// A combination under construction: ordered key/value pairs, and how many of the first pairs
/// are original vector values.
#[derive(Clone, Debug)]
struct Combo {
    pairs: Vec<(String, Value)>,
    original: usize,
}

impl Combo {
    fn get(&self, key: &str) -> Option<&Value> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }

    fn set(&mut self, key: &str, value: Value) {
        match self
            .pairs
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            Some(slot) => slot.1 = value,
            None => self.pairs.push((key.to_owned(), value)),
        }
    }
}

/// Expands a matrix into legs. `eval` evaluates expressions in the strategy's context.
pub fn expand(matrix: &Matrix, eval: &Eval<'_>) -> Result<Vec<Leg>, MatrixError> {
    match matrix {
        Matrix::Expr(y) => {
            let v = eval(y)?;
            expand_value(&v, y.span)
        }
        Matrix::Map(m) => {
            // Vectors.
            let mut vectors: Vec<(String, Vec<Value>)> = Vec::new();
            for (name, vector) in &m.vectors {
                let values = match vector {
                    MatrixVector::Values(items) => seq_values(items, eval)?,
                    MatrixVector::Expr(y) => match eval(y)? {
                        Value::Array(a) => a.as_ref().clone(),
                        other => {
                            return Err(MatrixError {
                                message: format!(
                                    "matrix vector `{}` must be an array, the expression returned {}",
                                    name.value,
                                    other.kind_name()
                                ),
                                span: y.span,
                            });
                        }
                    },
                };
                if values.is_empty() {
                    return Err(MatrixError {
                        message: format!(
                            "matrix vector `{}` does not contain any values",
                            name.value
                        ),
                        span: name.span,
                    });
                }
                vectors.push((name.value.clone(), values));
            }
            let include = list_values(m.include.as_ref(), eval, "include")?;
            let exclude = list_values(m.exclude.as_ref(), eval, "exclude")?;
            build(&vectors, &include, &exclude, m.span)
        }
    }
}

/// A whole matrix given as one value (`matrix: ${{ fromJSON(...) }}`).
fn expand_value(v: &Value, span: crate::source::Span) -> Result<Vec<Leg>, MatrixError> {
    let Value::Object(o) = v else {
        return Err(MatrixError {
            message: format!(
                "the matrix expression must return an object, it returned {}",
                v.kind_name()
            ),
            span,
        });
    };
    let mut vectors = Vec::new();
    let mut include = Vec::new();
    let mut exclude = Vec::new();
    for (k, val) in o.iter() {
        let as_list = |what: &str| -> Result<Vec<Value>, MatrixError> {
            match val {
                Value::Array(a) => Ok(a.as_ref().clone()),
                other => Err(MatrixError {
                    message: format!(
                        "matrix `{what}` must be an array, found {}",
                        other.kind_name()
                    ),
                    span,
                }),
            }
        };
        if k.eq_ignore_ascii_case("include") {
            include = as_list("include")?;
        } else if k.eq_ignore_ascii_case("exclude") {
            exclude = as_list("exclude")?;
        } else {
            let values = as_list(k)?;
            if values.is_empty() {
                return Err(MatrixError {
                    message: format!("matrix vector `{k}` does not contain any values"),
                    span,
                });
            }
            vectors.push((k.to_owned(), values));
        }
    }
    build(&vectors, &include, &exclude, span)
}

fn list_values(
    list: Option<&MatrixList>,
    eval: &Eval<'_>,
    what: &str,
) -> Result<Vec<Value>, MatrixError> {
    match list {
        None => Ok(Vec::new()),
        Some(MatrixList::Entries(items)) => seq_values(items, eval),
        Some(MatrixList::Expr(y)) => match eval(y)? {
            Value::Array(a) => Ok(a.as_ref().clone()),
            Value::Null => Ok(Vec::new()),
            other => Err(MatrixError {
                message: format!(
                    "matrix `{what}` must be an array, the expression returned {}",
                    other.kind_name()
                ),
                span: y.span,
            }),
        },
    }
}

fn build(
    vectors: &[(String, Vec<Value>)],
    include: &[Value],
    exclude: &[Value],
    span: crate::source::Span,
) -> Result<Vec<Leg>, MatrixError> {
    // Cross product, first key slowest. Guard the size before building it.
    let mut total: usize = if vectors.is_empty() { 0 } else { 1 };
    for (_, vals) in vectors {
        total = total.saturating_mul(vals.len());
    }
    if total > 16 * MAX_LEGS {
        return Err(MatrixError {
            message: format!(
                "the matrix has {total} combinations; GitHub allows at most {MAX_LEGS} jobs per matrix"
            ),
            span,
        });
    }
    let mut combos: Vec<Combo> = Vec::with_capacity(total);
    if !vectors.is_empty() {
        let mut idx = vec![0usize; vectors.len()];
        'outer: loop {
            combos.push(Combo {
                pairs: vectors
                    .iter()
                    .zip(&idx)
                    .map(|((k, vals), &i)| (k.clone(), vals[i].clone()))
                    .collect(),
                original: vectors.len(),
            });
            // Increment the last index first (the first key varies slowest).
            let mut pos = vectors.len();
            loop {
                if pos == 0 {
                    break 'outer;
                }
                pos -= 1;
                idx[pos] += 1;
                if idx[pos] < vectors[pos].1.len() {
                    break;
                }
                idx[pos] = 0;
            }
        }
    }
    // Excludes: remove combinations matching every key of an entry.
    for ex in exclude {
        let Value::Object(ex) = ex else {
            return Err(MatrixError {
                message: format!(
                    "a matrix `exclude` entry must be an object, found {}",
                    ex.kind_name()
                ),
                span,
            });
        };
        for (k, _) in ex.iter() {
            if !vectors.iter().any(|(name, _)| name.eq_ignore_ascii_case(k)) {
                return Err(MatrixError {
                    message: format!(
                        "matrix `exclude` key `{k}` does not match any key of the matrix"
                    ),
                    span,
                });
            }
        }
        combos.retain(|c| {
            !ex.iter()
                .all(|(k, v)| c.get(k).is_some_and(|cv| same(cv, v)))
        });
    }
    // Includes.
    let product_len = combos.len();
    let mut extra: Vec<Combo> = Vec::new();
    for inc in include {
        let Value::Object(inc) = inc else {
            return Err(MatrixError {
                message: format!(
                    "a matrix `include` entry must be an object, found {}",
                    inc.kind_name()
                ),
                span,
            });
        };
        let mut matched = false;
        for c in combos[..product_len].iter_mut() {
            let fits = inc.iter().all(|(k, v)| {
                match c.pairs[..c.original]
                    .iter()
                    .find(|(ck, _)| ck.eq_ignore_ascii_case(k))
                {
                    Some((_, orig)) => same(orig, v),
                    None => true,
                }
            });
            if fits {
                matched = true;
                for (k, v) in inc.iter() {
                    let is_original = c.pairs[..c.original]
                        .iter()
                        .any(|(ck, _)| ck.eq_ignore_ascii_case(k));
                    if !is_original {
                        c.set(k, v.clone());
                    }
                }
            }
        }
        if !matched {
            extra.push(Combo {
                pairs: inc.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect(),
                original: 0,
            });
        }
    }
    combos.extend(extra);
    if combos.is_empty() {
        return Err(MatrixError {
            message: "the matrix has no combinations (every combination was excluded)".into(),
            span,
        });
    }
    if combos.len() > MAX_LEGS {
        return Err(MatrixError {
            message: format!(
                "the matrix has {} combinations; GitHub allows at most {MAX_LEGS} jobs per matrix",
                combos.len()
            ),
            span,
        });
    }
    Ok(combos
        .into_iter()
        .map(|c| {
            let mut shown = Vec::new();
            let n = if c.original == 0 {
                c.pairs.len()
            } else {
                c.original
            };
            for (_, v) in &c.pairs[..n] {
                leaves(v, &mut shown);
            }
            Leg {
                values: Value::object(c.pairs),
                shown,
            }
        })
        .collect())
}

/// The display name of a leg: `name (v1, v2)` with empty values left out, the whole name
/// truncated to 100 characters (97 and `...`), as GitHub's `JobNameBuilder` does.
pub fn display_name(base: &str, leg: &Leg) -> String {
    let segments: Vec<&str> = leg
        .shown
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    let name = if segments.is_empty() {
        base.to_owned()
    } else {
        format!("{base} ({})", segments.join(", "))
    };
    truncate_name(name)
}

/// Truncates a display name to 100 characters.
pub fn truncate_name(name: String) -> String {
    if name.chars().count() > MAX_NAME {
        name.chars().take(MAX_NAME - 3).collect::<String>() + "..."
    } else {
        name
    }
}

/// Parses a template for evaluation (helper for callers building `Eval`).
pub fn template(y: &YStr) -> Result<Template, MatrixError> {
    Template::parse(&y.text).map_err(|e| MatrixError {
        message: e.message,
        span: y.span,
    })
}
