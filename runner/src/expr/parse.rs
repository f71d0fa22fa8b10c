//! Parser for the text inside `${{ }}` (tokens come from `lexer`), accepting exactly what GitHub
//! accepts.
//!
//! GitHub's parser (actions/runner `LexicalAnalyzer` + `ExpressionParser`) decides which token may
//! follow which with an explicit table keyed on the previous token, then builds the tree with a
//! shunting-yard algorithm. Reproducing that table is what makes the corner cases agree: `.5` is a
//! number only where an operand may start, a literal can never be indexed (`'a'[0]` is an error but
//! `('a')[0]` is fine), `1-2` is one (invalid) number token, `a-b` is one name, `True` is a name
//! and not a boolean, and `-Infinity` is a number.
//!
//! The parser keeps its own operator stack instead of recursing, so hostile input such as 100k
//! `(` cannot overflow the stack; the tree it builds is limited to GitHub's maximum depth (50)
//! and the source to GitHub's maximum length (21,000 UTF-16 code units), which bounds every later
//! recursive walk (evaluation, printing, checking, dropping).

use std::fmt;
use std::sync::Arc;

use super::ast::{Call, Expr, ExprKind, Func, Name};
use super::lexer::{Kind, Lexer, Op, Token, Val};

/// Longest expression GitHub accepts, in UTF-16 code units (`ExpressionConstants.MaxLength`).
pub const MAX_LENGTH: usize = 21_000;

/// Deepest tree GitHub accepts (`ExpressionConstants.MaxDepth`); the root is at depth 1.
pub const MAX_DEPTH: usize = 50;

/// A syntax error, located by byte offsets in the parsed string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset of the problem.
    pub offset: usize,
    /// Length in bytes of the offending text (0 at the end of input).
    pub len: usize,
    /// Lowercase description without a trailing period.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(offset: usize, len: usize, message: impl Into<String>) -> Self {
        ParseError {
            offset,
            len,
            message: message.into(),
        }
    }

    /// The same error moved `by` bytes to the right (for expressions embedded in larger text).
    pub fn shifted(mut self, by: usize) -> Self {
        self.offset += by;
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses an expression (the text inside `${{ }}`).
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let trimmed = src.trim();
    let units = if trimmed.is_ascii() {
        trimmed.len()
    } else {
        trimmed.encode_utf16().count()
    };
    if units > MAX_LENGTH {
        return Err(ParseError::new(
            0,
            src.len(),
            format!("expression is too long: {units} characters, the maximum is {MAX_LENGTH}"),
        ));
    }
    Parser::new(src).run()
}

/// A tree node under construction with its height (GitHub's depth count).
struct Node {
    expr: Expr,
    height: usize,
}

/// An entry of the operator stack: a pending operator or an open bracket.
enum Entry {
    Op {
        op: Op,
        start: usize,
    },
    Group,
    Index,
    Call {
        name: Name,
        start: usize,
        base: usize,
    },
}

struct Parser<'a> {
    lex: Lexer<'a>,
    operands: Vec<Node>,
    ops: Vec<Entry>,
    pending_function: Option<(Name, usize)>,
}

fn internal(at: usize) -> ParseError {
    ParseError::new(at, 0, "internal parser error: unbalanced expression")
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            lex: Lexer::new(src),
            operands: Vec::new(),
            ops: Vec::new(),
            pending_function: None,
        }
    }

    fn node(
        &self,
        kind: ExprKind,
        span: std::ops::Range<usize>,
        height: usize,
    ) -> Result<Node, ParseError> {
        if height > MAX_DEPTH {
            return Err(ParseError::new(
                span.start,
                span.end - span.start,
                format!("expression is nested too deeply: the maximum depth is {MAX_DEPTH}"),
            ));
        }
        Ok(Node {
            expr: Expr { kind, span },
            height,
        })
    }

    fn pop(&mut self) -> Result<Node, ParseError> {
        self.operands.pop().ok_or_else(|| internal(self.lex.pos))
    }

    fn push_leaf(&mut self, kind: ExprKind, tok: &Token) {
        self.operands.push(Node {
            expr: Expr {
                kind,
                span: tok.start..tok.end,
            },
            height: 1,
        });
    }

    fn next(&mut self) -> Result<Option<Token>, ParseError> {
        self.lex.next()
    }

    fn run(mut self) -> Result<Expr, ParseError> {
        let mut any = false;
        while let Some(tok) = self.next()? {
            any = true;
            self.token(tok)?;
        }
        if !any {
            return Err(ParseError::new(0, 0, "expected an expression"));
        }
        if let Some(e) = self.lex.end_error() {
            return Err(e);
        }
        while let Some(entry) = self.ops.pop() {
            match entry {
                Entry::Op { op, start } => self.reduce(op, start)?,
                _ => return Err(internal(self.lex.pos)),
            }
        }
        let root = self.pop()?;
        if !self.operands.is_empty() {
            return Err(internal(self.lex.pos));
        }
        Ok(root.expr)
    }

    fn token(&mut self, tok: Token) -> Result<(), ParseError> {
        let src = self.lex.src;
        match tok.kind {
            Kind::Null => self.push_leaf(ExprKind::Null, &tok),
            Kind::Boolean | Kind::Number | Kind::String => {
                let kind = match tok.val {
                    Val::Bool(b) => ExprKind::Bool(b),
                    Val::Num(n) => ExprKind::Number(n),
                    Val::Str(ref s) => ExprKind::String(Arc::clone(s)),
                    _ => return Err(internal(tok.start)),
                };
                self.push_leaf(kind, &tok);
            }
            Kind::NamedValue => {
                let name = Name::new(&src[tok.start..tok.end]);
                self.push_leaf(ExprKind::Context(name), &tok);
            }
            Kind::Function => {
                self.pending_function = Some((Name::new(&src[tok.start..tok.end]), tok.start));
            }
            Kind::StartParameters => {
                let (name, start) = self
                    .pending_function
                    .take()
                    .ok_or_else(|| internal(tok.start))?;
                self.ops.push(Entry::Call {
                    name,
                    start,
                    base: self.operands.len(),
                });
            }
            Kind::StartGroup => self.ops.push(Entry::Group),
            Kind::StartIndex => {
                let Some(next) = self.next()? else {
                    return Err(self.lex.end_error().unwrap_or_else(|| internal(tok.start)));
                };
                if next.kind == Kind::Wildcard {
                    let close = self.next()?;
                    match close {
                        Some(c) if c.kind == Kind::EndIndex => self.filter(c.end)?,
                        Some(c) => {
                            return Err(ParseError::new(
                                c.start,
                                c.end - c.start,
                                "expected `]` after `[*`",
                            ));
                        }
                        None => {
                            return Err(self
                                .lex
                                .end_error()
                                .unwrap_or_else(|| internal(tok.start)));
                        }
                    }
                } else {
                    self.ops.push(Entry::Index);
                    self.token(next)?;
                }
            }
            Kind::Dereference => {
                let Some(next) = self.next()? else {
                    return Err(self.lex.end_error().unwrap_or_else(|| internal(tok.start)));
                };
                match next.kind {
                    Kind::Wildcard => self.filter(next.end)?,
                    Kind::PropertyName => {
                        let recv = self.pop()?;
                        let name = Name::new(&src[next.start..next.end]);
                        let span = recv.expr.span.start..next.end;
                        let height = recv.height + 1;
                        let kind = ExprKind::Property {
                            receiver: Box::new(recv.expr),
                            name,
                        };
                        let n = self.node(kind, span, height)?;
                        self.operands.push(n);
                    }
                    _ => return Err(internal(next.start)),
                }
            }
            Kind::EndIndex => {
                self.reduce_to_bracket()?;
                match self.ops.pop() {
                    Some(Entry::Index) => {}
                    _ => return Err(internal(tok.start)),
                }
                let index = self.pop()?;
                let recv = self.pop()?;
                let span = recv.expr.span.start..tok.end;
                let height = recv.height.max(index.height) + 1;
                let kind = ExprKind::Index {
                    receiver: Box::new(recv.expr),
                    index: Box::new(index.expr),
                };
                let n = self.node(kind, span, height)?;
                self.operands.push(n);
            }
            Kind::EndGroup => {
                self.reduce_to_bracket()?;
                match self.ops.pop() {
                    Some(Entry::Group) => {}
                    _ => return Err(internal(tok.start)),
                }
            }
            Kind::EndParameters => {
                self.reduce_to_bracket()?;
                let Some(Entry::Call { name, start, base }) = self.ops.pop() else {
                    return Err(internal(tok.start));
                };
                if base > self.operands.len() {
                    return Err(internal(tok.start));
                }
                let args: Vec<Node> = self.operands.split_off(base);
                let height = args.iter().map(|a| a.height).max().unwrap_or(0) + 1;
                let func = Func::from_name(&name.text);
                let kind = ExprKind::Call(Call {
                    name,
                    func,
                    args: args.into_iter().map(|a| a.expr).collect(),
                });
                let n = self.node(kind, start..tok.end, height)?;
                self.operands.push(n);
            }
            Kind::Separator => self.reduce_to_bracket()?,
            Kind::Operator => {
                let Val::Op(op) = tok.val else {
                    return Err(internal(tok.start));
                };
                if op != Op::Not {
                    // Left-associative: first apply pending operators that bind at least as
                    // tightly.
                    let p = op.precedence();
                    while let Some(Entry::Op { op: top, start }) = self.ops.last() {
                        if top.precedence() < p {
                            break;
                        }
                        let (top, start) = (*top, *start);
                        self.ops.pop();
                        self.reduce(top, start)?;
                    }
                }
                self.ops.push(Entry::Op {
                    op,
                    start: tok.start,
                });
            }
            Kind::Wildcard | Kind::PropertyName => return Err(internal(tok.start)),
        }
        Ok(())
    }

    /// Applies `.*` / `[*]` to the operand on top of the stack.
    fn filter(&mut self, end: usize) -> Result<(), ParseError> {
        let recv = self.pop()?;
        let span = recv.expr.span.start..end;
        let height = recv.height + 1;
        let kind = ExprKind::Filter {
            receiver: Box::new(recv.expr),
        };
        let n = self.node(kind, span, height)?;
        self.operands.push(n);
        Ok(())
    }

    /// Applies pending operators down to the innermost open bracket.
    fn reduce_to_bracket(&mut self) -> Result<(), ParseError> {
        while let Some(Entry::Op { op, start }) = self.ops.last() {
            let (op, start) = (*op, *start);
            self.ops.pop();
            self.reduce(op, start)?;
        }
        Ok(())
    }

    fn reduce(&mut self, op: Op, start: usize) -> Result<(), ParseError> {
        let node = match op {
            Op::Not => {
                let e = self.pop()?;
                let span = start..e.expr.span.end;
                let height = e.height + 1;
                self.node(ExprKind::Not(Box::new(e.expr)), span, height)?
            }
            Op::Bin(op) => {
                let right = self.pop()?;
                let left = self.pop()?;
                let span = left.expr.span.start..right.expr.span.end;
                let height = left.height.max(right.height) + 1;
                let kind = ExprKind::Binary {
                    op,
                    left: Box::new(left.expr),
                    right: Box::new(right.expr),
                };
                self.node(kind, span, height)?
            }
            Op::Logical(op) => {
                let right = self.pop()?;
                let left = self.pop()?;
                let span = left.expr.span.start..right.expr.span.end;
                // Nested chains of the same operator are spliced in, as GitHub does; a spliced
                // node's children sit one level higher than the node itself did.
                let mut height = 0;
                let mut operands = Vec::new();
                for side in [left, right] {
                    match side.expr.kind {
                        ExprKind::Logical {
                            op: o,
                            operands: inner,
                        } if o == op => {
                            height = height.max(side.height);
                            operands.extend(inner);
                        }
                        kind => {
                            height = height.max(side.height + 1);
                            operands.push(Expr {
                                kind,
                                span: side.expr.span,
                            });
                        }
                    }
                }
                self.node(ExprKind::Logical { op, operands }, span, height)?
            }
        };
        self.operands.push(node);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        match parse(s) {
            Ok(e) => e.to_string(),
            Err(e) => format!("error at {}+{}: {}", e.offset, e.len, e.message),
        }
    }

    #[test]
    fn precedence_and_printing() {
        assert_eq!(p("a || b && c"), "a || b && c");
        assert_eq!(p("(a || b) && c"), "(a || b) && c");
        assert_eq!(p("a == b < c"), "a == b < c");
        assert_eq!(p("(a == b) < c"), "(a == b) < c");
        assert_eq!(p("a == b == c"), "a == b == c");
        assert_eq!(p("a == (b == c)"), "a == (b == c)");
        assert_eq!(p("!a.b"), "!a.b");
        assert_eq!(p("!(a == b)"), "!(a == b)");
        assert_eq!(p("a[*].b"), "a.*.b");
        assert_eq!(p("('abc')[0]"), "('abc')[0.0]");
        assert_eq!(p("fromJSON('[1]')[0]"), "fromJSON('[1]')[0.0]");
        assert_eq!(p("a && (b && c)"), "a && b && c");
        assert_eq!(p("'it''s'"), "'it''s'");
        assert_eq!(p("-Infinity"), "-Infinity");
        assert_eq!(p(".5"), "0.5");
        assert_eq!(p("a-b.c-d"), "a-b.c-d");
        assert_eq!(p("format ( 'x' )"), "format('x')");
    }

    #[test]
    fn errors() {
        assert_eq!(
            p("\"a\""),
            "error at 0+1: string literals must use single quotes"
        );
        assert_eq!(
            p("1 + 2"),
            "error at 2+1: `+` is not a valid operator; expressions have no arithmetic"
        );
        assert_eq!(
            p("contains(a, 'b'"),
            "error at 15+0: unexpected end of input while parsing arguments of function call"
        );
        assert!(p("'a'[0]").contains("a literal cannot be indexed"));
        assert!(p("a.b(1)").contains("only built-in functions can be called"));
        assert!(p("a b").contains("unexpected name `b` after name `a`"));
        assert!(p("a ==").contains("unexpected end of input after `==`"));
        assert!(p("a = b").contains("`=` is not a valid operator"));
        assert!(p("1x").contains("invalid number `1x`"));
        assert!(p("'abc").contains("unterminated string literal"));
        assert!(p("a)").contains("without a matching"));
        assert!(p("(a, b)").contains("outside of function call"));
        assert!(p("a.").contains("end of input after `.`"));
        assert!(p("").contains("expected an expression"));
    }

    #[test]
    fn limits() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(p(&deep), "1.0");
        let nots = format!("{}a", "!".repeat(49));
        assert!(parse(&nots).is_ok());
        let nots = format!("{}a", "!".repeat(50));
        assert!(p(&nots).contains("nested too deeply"));
        let long = "a".repeat(MAX_LENGTH + 1);
        assert!(p(&long).contains("too long"));
        let chain = vec!["a"; 4000].join(" && ");
        assert!(parse(&chain).is_ok());
        let opens = "(".repeat(100_000);
        assert!(parse(&opens).is_err());
    }
}
