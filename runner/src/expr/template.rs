//! Strings with embedded `${{ }}` expressions, and `if:` conditions.
//!
//! GitHub's template reader (`TemplateReader.ParseScalar`) splits a YAML string into literal text
//! and expressions: an expression ends at the first `}}` outside a single-quoted string, an empty
//! expression or an unclosed `${{` is an error, a value that is exactly one expression keeps the
//! expression's type, a value that is exactly one string literal (`${{ 'x' }}`) becomes that
//! string, and anything else is rewritten to a `format()` call — so objects and arrays inside
//! mixed text come out as `Object` and `Array`, not JSON.
//!
//! Conditions add the rules of `if:` (gha-semantics §5.3): the braces are optional, empty means
//! `success()`, and a condition calling no status function is evaluated as
//! `success() && (<condition>)`. Text outside the braces makes the condition a (practically always
//! truthy) string; [`Condition::is_template`] exposes that for the `if-cond` lint.

use std::ops::Range;

use super::ast::{Expr, ExprKind};
use super::check::{Issue, Scope, check};
use super::eval::{Context, EvalError, MAX_STRING_BYTES, StatusFn, eval};
use super::parse::{ParseError, parse};
use super::value::Value;

/// One piece of a [`Template`].
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// Text outside `${{ }}`.
    Literal(String),
    /// An embedded expression.
    Expr {
        /// The parsed expression; its spans are relative to `offset`.
        expr: Expr,
        /// Byte offset in the template text where the expression source starts (just after
        /// `${{`).
        offset: usize,
    },
}

/// A string value that may contain `${{ }}` expressions.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A raw segment of template text before folding.
enum Seg<'a> {
    Text(&'a str),
    Expr {
        expr: Expr,
        src: &'a str,
        offset: usize,
        open: usize,
    },
}

/// Splits `text` into literal text and parsed expressions, without GitHub's folding rules.
fn split(text: &str) -> Result<Vec<Seg<'_>>, ParseError> {
    let b = text.as_bytes();
    let mut segs: Vec<Seg<'_>> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let Some(open) = text[i..].find("${{").map(|x| x + i) else {
            segs.push(Seg::Text(&text[i..]));
            break;
        };
        if open > i {
            segs.push(Seg::Text(&text[i..open]));
        }
        let start = open + 3;
        let mut in_string = false;
        let mut close = None;
        let mut j = start;
        while j < b.len() {
            match b[j] {
                b'\'' => in_string = !in_string,
                b'}' if !in_string && j > start && b[j - 1] == b'}' => {
                    close = Some(j - 1);
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let Some(close) = close else {
            return Err(ParseError::new(
                open,
                text.len() - open,
                "`${{` is not closed with `}}`",
            ));
        };
        let src = &text[start..close];
        if src.trim().is_empty() {
            return Err(ParseError::new(
                open,
                close + 2 - open,
                "expected an expression inside `${{ }}`",
            ));
        }
        let expr = parse(src).map_err(|e| e.shifted(start))?;
        segs.push(Seg::Expr {
            expr,
            src,
            offset: start,
            open,
        });
        i = close + 2;
    }
    Ok(segs)
}

impl Template {
    /// Parses a string that may contain `${{ }}` expressions. Error offsets are relative to
    /// `text`.
    pub fn parse(text: &str) -> Result<Template, ParseError> {
        let segs = split(text)?;
        // GitHub folds a lone string literal into plain text (the way to write a literal `${{`).
        if let [Seg::Expr { expr, .. }] = segs.as_slice()
            && let ExprKind::String(s) = &expr.kind
        {
            return Ok(Template {
                parts: vec![Part::Literal(s.to_string())],
            });
        }
        let parts = segs
            .into_iter()
            .map(|s| match s {
                Seg::Text(t) => Part::Literal(t.to_owned()),
                Seg::Expr { expr, offset, .. } => Part::Expr { expr, offset },
            })
            .collect();
        Ok(Template { parts })
    }

    /// A template that is just `text`, with no expressions.
    pub fn literal(text: impl Into<String>) -> Template {
        Template {
            parts: vec![Part::Literal(text.into())],
        }
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether there is no expression (the value is fixed text).
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The fixed text, if there is no expression.
    pub fn as_literal(&self) -> Option<String> {
        self.is_literal().then(|| {
            self.parts
                .iter()
                .map(|p| match p {
                    Part::Literal(t) => t.as_str(),
                    Part::Expr { .. } => "",
                })
                .collect()
        })
    }

    /// The expression, if the template is exactly one expression with no text around it (its
    /// value then keeps its type), with its offset.
    pub fn as_single_expr(&self) -> Option<(&Expr, usize)> {
        match self.parts.as_slice() {
            [Part::Expr { expr, offset }] => Some((expr, *offset)),
            _ => None,
        }
    }

    /// The embedded expressions with their offsets in the template text.
    pub fn expressions(&self) -> impl Iterator<Item = (&Expr, usize)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr { expr, offset } => Some((expr, *offset)),
            Part::Literal(_) => None,
        })
    }

    /// Runs [`check`] on every expression; offsets are relative to the template text.
    pub fn check(&self, scope: &Scope) -> Vec<Issue> {
        check_all(self.expressions(), scope)
    }

    /// Evaluates the template: a single expression keeps its value's type; otherwise the result is
    /// the string of the parts joined, each value in GitHub's string form. Error offsets are
    /// relative to the template text.
    pub fn eval(&self, ctx: &dyn Context) -> Result<Value, EvalError> {
        if let Some((expr, offset)) = self.as_single_expr() {
            return eval(expr, ctx).map_err(|e| e.shifted(offset));
        }
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Literal(t) => out.push_str(t),
                Part::Expr { expr, offset } => {
                    let v = eval(expr, ctx).map_err(|e| e.shifted(*offset))?;
                    out.push_str(&v.as_gh_str());
                }
            }
            if out.len() > MAX_STRING_BYTES {
                return Err(EvalError {
                    offset: 0,
                    len: 0,
                    message: format!(
                        "template result exceeds the maximum size of {MAX_STRING_BYTES} bytes"
                    ),
                });
            }
        }
        Ok(Value::from(out))
    }
}

/// A parsed `if:` condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    kind: CondKind,
    has_status: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum CondKind {
    /// Empty: `success()`.
    Default,
    /// One expression, at `offset` in the condition text.
    Expr { expr: Expr, offset: usize },
    /// Text mixed with expressions: the condition's value is the template's string.
    Template(Template),
}

/// Parses an `if:` condition (the YAML value as text; a YAML boolean arrives as `true`/`false`).
///
/// The whole condition may or may not be wrapped in `${{ }}`. Error offsets are relative to
/// `text`, except inside a `${{ 'string' }}` whose content GitHub re-reads as the condition: those
/// point at the `${{ }}`.
pub fn parse_condition(text: &str) -> Result<Condition, ParseError> {
    if !text.contains("${{") {
        if text.trim().is_empty() {
            return Ok(Condition::new(CondKind::Default));
        }
        let expr = parse(text)?;
        return Ok(Condition::new(CondKind::Expr { expr, offset: 0 }));
    }
    let segs = split(text)?;
    match segs.as_slice() {
        [Seg::Expr { expr, offset, .. }] => {
            if let ExprKind::String(s) = &expr.kind {
                // GitHub folds `${{ 'x' }}` to the text `x` and then reads that as the condition.
                let (open, len) = match &segs[0] {
                    Seg::Expr { open, src, .. } => (*open, src.len() + 5),
                    Seg::Text(_) => (0, text.len()),
                };
                if s.trim().is_empty() {
                    return Ok(Condition::new(CondKind::Default));
                }
                let expr = parse(s).map_err(|e| ParseError::new(open, len, e.message))?;
                return Ok(Condition::new(CondKind::Expr { expr, offset: open }));
            }
            let (expr, offset) = (expr.clone(), *offset);
            Ok(Condition::new(CondKind::Expr { expr, offset }))
        }
        _ => {
            let parts = segs
                .into_iter()
                .map(|s| match s {
                    Seg::Text(t) => Part::Literal(t.to_owned()),
                    Seg::Expr { expr, offset, .. } => Part::Expr { expr, offset },
                })
                .collect();
            Ok(Condition::new(CondKind::Template(Template { parts })))
        }
    }
}

impl Condition {
    fn new(kind: CondKind) -> Condition {
        let has_status = match &kind {
            CondKind::Default => false,
            CondKind::Expr { expr, .. } => expr.calls_status_function(),
            CondKind::Template(t) => t.expressions().any(|(e, _)| e.calls_status_function()),
        };
        Condition { kind, has_status }
    }

    /// Whether text outside `${{ }}` turned the condition into a string (the `if-cond` lint:
    /// such a condition is true whenever the string is non-empty).
    pub fn is_template(&self) -> bool {
        matches!(self.kind, CondKind::Template(_))
    }

    /// Whether the condition calls a status function itself; if not, it is evaluated as
    /// `success() && (<condition>)`.
    pub fn has_status_function(&self) -> bool {
        self.has_status
    }

    /// Whether the condition is empty (plain `success()`).
    pub fn is_default(&self) -> bool {
        matches!(self.kind, CondKind::Default)
    }

    /// The expressions in the condition, with their offsets in the condition text (for checks).
    pub fn expressions(&self) -> Vec<(&Expr, usize)> {
        match &self.kind {
            CondKind::Default => Vec::new(),
            CondKind::Expr { expr, offset } => vec![(expr, *offset)],
            CondKind::Template(t) => t.expressions().collect(),
        }
    }

    /// Runs [`check`] on the condition's expressions; offsets are relative to the condition
    /// text.
    pub fn check(&self, scope: &Scope) -> Vec<Issue> {
        check_all(self.expressions().into_iter(), scope)
    }

    /// The span of the whole condition expression, if it is a single expression.
    pub fn span(&self) -> Option<Range<usize>> {
        match &self.kind {
            CondKind::Expr { expr, offset } => {
                Some(expr.span.start + offset..expr.span.end + offset)
            }
            _ => None,
        }
    }

    /// Evaluates the condition: `success()` first when no status function is called (the
    /// condition itself is then not evaluated if it is false), then the condition's truthiness.
    pub fn eval(&self, ctx: &dyn Context) -> Result<bool, EvalError> {
        if !self.has_status && !ctx.status(StatusFn::Success) {
            return Ok(false);
        }
        match &self.kind {
            CondKind::Default => Ok(true),
            CondKind::Expr { expr, offset } => eval(expr, ctx)
                .map(|v| v.is_truthy())
                .map_err(|e| e.shifted(*offset)),
            CondKind::Template(t) => t.eval(ctx).map(|v| v.is_truthy()),
        }
    }
}

fn check_all<'a>(exprs: impl Iterator<Item = (&'a Expr, usize)>, scope: &Scope) -> Vec<Issue> {
    let mut out = Vec::new();
    for (expr, offset) in exprs {
        out.extend(check(expr, scope).into_iter().map(|mut i| {
            i.offset += offset;
            i
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        let t = Template::parse("a ${{ x }} b ${{ 'c}}' }}").expect("parses");
        assert_eq!(t.parts().len(), 4);
        assert_eq!(t.expressions().map(|(_, o)| o).collect::<Vec<_>>(), [5, 16]);
        let t = Template::parse("${{ 'it''s ${{ literal }}' }}").expect("parses");
        assert_eq!(t.as_literal().as_deref(), Some("it's ${{ literal }}"));
        assert!(Template::parse("plain").expect("parses").is_literal());
        let e = Template::parse("ab ${{ x").expect_err("unclosed");
        assert_eq!((e.offset, e.len), (3, 5));
        let e = Template::parse("ab ${{  }} c").expect_err("empty");
        assert_eq!(e.offset, 3);
        let e = Template::parse("ab ${{ a b }}").expect_err("bad");
        assert_eq!(e.offset, 9);
    }

    #[test]
    fn conditions() {
        let c = parse_condition("github.ref == 'x'").expect("parses");
        assert!(!c.has_status_function() && !c.is_template());
        let c = parse_condition("${{ always() }}").expect("parses");
        assert!(c.has_status_function());
        let c = parse_condition("${{ a }} && b").expect("parses");
        assert!(c.is_template());
        assert!(parse_condition("  ").expect("parses").is_default());
        let c = parse_condition("${{ 'Failure()' }}").expect("parses");
        assert!(c.has_status_function());
    }
}
