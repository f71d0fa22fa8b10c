//! Lexer and parser for the text inside `${{ }}`, accepting exactly what GitHub accepts.
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

use super::ast::{BinOp, Call, Expr, ExprKind, Func, LogicalOp, Name};
use super::number::parse_number;

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

/// GitHub's token kinds; the legality table is written in terms of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    StartGroup,
    StartIndex,
    StartParameters,
    EndGroup,
    EndIndex,
    EndParameters,
    Separator,
    Dereference,
    Wildcard,
    Operator,
    Null,
    Boolean,
    Number,
    String,
    PropertyName,
    Function,
    NamedValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Not,
    Bin(BinOp),
    Logical(LogicalOp),
}

impl Op {
    fn precedence(self) -> u8 {
        match self {
            Op::Not => 16,
            Op::Bin(b) => b.precedence(),
            Op::Logical(l) => l.precedence(),
        }
    }
}

#[derive(Clone, Debug)]
enum Val {
    None,
    Bool(bool),
    Num(f64),
    Str(Arc<str>),
    Op(Op),
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    val: Val,
}

/// Whether `c` ends a name or number token (GitHub's `TestTokenBoundary`).
fn is_boundary(c: char) -> bool {
    matches!(
        c,
        '(' | '[' | ')' | ']' | ',' | '.' | '!' | '>' | '<' | '=' | '&' | '|'
    ) || c.is_whitespace()
}

/// GitHub's `IsLegalKeyword`: a letter or `_`, then letters, digits, `_` or `-`.
fn is_legal_name(s: &str) -> bool {
    let mut it = s.chars();
    matches!(it.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && it.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    last: Option<Kind>,
    last_text: (usize, usize),
    unclosed: Vec<Kind>,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            last: None,
            last_text: (0, 0),
            unclosed: Vec::new(),
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    /// The next token, or `None` at the end of input.
    fn next(&mut self) -> Result<Option<Token>, ParseError> {
        while let Some(c) = self.peek_char() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
        let Some(c) = self.peek_char() else {
            return Ok(None);
        };
        let start = self.pos;
        let tok = match c {
            '(' => {
                self.pos += 1;
                let kind = if self.last == Some(Kind::Function) {
                    Kind::StartParameters
                } else {
                    Kind::StartGroup
                };
                self.simple(kind, start)
            }
            '[' => {
                self.pos += 1;
                self.simple(Kind::StartIndex, start)
            }
            ')' => {
                self.pos += 1;
                let kind = if self.unclosed.last() == Some(&Kind::StartParameters) {
                    Kind::EndParameters
                } else {
                    Kind::EndGroup
                };
                self.simple(kind, start)
            }
            ']' => {
                self.pos += 1;
                self.simple(Kind::EndIndex, start)
            }
            ',' => {
                self.pos += 1;
                self.simple(Kind::Separator, start)
            }
            '*' => {
                self.pos += 1;
                self.simple(Kind::Wildcard, start)
            }
            '\'' => self.string(start)?,
            '!' | '>' | '<' | '=' | '&' | '|' => self.operator(start)?,
            '.' if !matches!(
                self.last,
                None | Some(
                    Kind::Separator
                        | Kind::StartGroup
                        | Kind::StartIndex
                        | Kind::StartParameters
                        | Kind::Operator
                )
            ) =>
            {
                self.pos += 1;
                self.simple(Kind::Dereference, start)
            }
            '.' | '-' | '+' | '0'..='9' => self.number(start)?,
            _ => self.keyword(start)?,
        };
        self.accept(&tok)?;
        self.last = Some(tok.kind);
        self.last_text = (tok.start, tok.end);
        Ok(Some(tok))
    }

    fn simple(&self, kind: Kind, start: usize) -> Token {
        Token {
            kind,
            start,
            end: self.pos,
            val: Val::None,
        }
    }

    /// Reads to the next token boundary (numbers also swallow `.`).
    fn read_word(&mut self, dots: bool) {
        let mut first = true;
        while let Some(c) = self.peek_char() {
            if !first && is_boundary(c) && !(dots && c == '.') {
                break;
            }
            first = false;
            self.pos += c.len_utf8();
        }
    }

    fn string(&mut self, start: usize) -> Result<Token, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.src[self.pos..];
            let Some(i) = rest.find('\'') else {
                return Err(ParseError::new(
                    start,
                    self.src.len() - start,
                    "unterminated string literal: a string must end with `'`",
                ));
            };
            out.push_str(&rest[..i]);
            self.pos += i + 1;
            if self.src[self.pos..].starts_with('\'') {
                out.push('\'');
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(Token {
            kind: Kind::String,
            start,
            end: self.pos,
            val: Val::Str(Arc::from(out)),
        })
    }

    fn operator(&mut self, start: usize) -> Result<Token, ParseError> {
        let two = self.src.get(start..start + 2);
        let op = match two {
            Some("!=") => Some(Op::Bin(BinOp::Ne)),
            Some(">=") => Some(Op::Bin(BinOp::Ge)),
            Some("<=") => Some(Op::Bin(BinOp::Le)),
            Some("==") => Some(Op::Bin(BinOp::Eq)),
            Some("&&") => Some(Op::Logical(LogicalOp::And)),
            Some("||") => Some(Op::Logical(LogicalOp::Or)),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 2;
            return Ok(self.op_token(op, start));
        }
        let op = match &self.src[start..start + 1] {
            "!" => Op::Not,
            ">" => Op::Bin(BinOp::Gt),
            "<" => Op::Bin(BinOp::Lt),
            one => {
                let hint = match one {
                    "=" => "; use `==` to compare",
                    "&" => "; use `&&`",
                    _ => "; use `||`",
                };
                return Err(ParseError::new(
                    start,
                    1,
                    format!("`{one}` is not a valid operator{hint}"),
                ));
            }
        };
        self.pos += 1;
        Ok(self.op_token(op, start))
    }

    fn op_token(&self, op: Op, start: usize) -> Token {
        Token {
            kind: Kind::Operator,
            start,
            end: self.pos,
            val: Val::Op(op),
        }
    }

    fn number(&mut self, start: usize) -> Result<Token, ParseError> {
        self.read_word(true);
        let text = &self.src[start..self.pos];
        let n = parse_number(text);
        if n.is_nan() {
            let message = match text {
                "-" | "+" => {
                    format!("`{text}` is not a valid operator; expressions have no arithmetic")
                }
                "." => "unexpected `.`".to_owned(),
                _ => format!("invalid number `{text}`"),
            };
            return Err(ParseError::new(start, text.len(), message));
        }
        Ok(Token {
            kind: Kind::Number,
            start,
            end: self.pos,
            val: Val::Num(n),
        })
    }

    fn keyword(&mut self, start: usize) -> Result<Token, ParseError> {
        self.read_word(false);
        let text = &self.src[start..self.pos];
        if !is_legal_name(text) {
            return Err(bad_name(text, start));
        }
        if self.last == Some(Kind::Dereference) {
            return Ok(self.word_token(Kind::PropertyName, start, Val::None));
        }
        let (kind, val) = match text {
            "null" => (Kind::Null, Val::None),
            "true" => (Kind::Boolean, Val::Bool(true)),
            "false" => (Kind::Boolean, Val::Bool(false)),
            "NaN" => (Kind::Number, Val::Num(f64::NAN)),
            "Infinity" => (Kind::Number, Val::Num(f64::INFINITY)),
            _ => {
                let after = self.src[self.pos..].trim_start();
                if after.starts_with('(') {
                    (Kind::Function, Val::None)
                } else {
                    (Kind::NamedValue, Val::None)
                }
            }
        };
        Ok(self.word_token(kind, start, val))
    }

    fn word_token(&self, kind: Kind, start: usize, val: Val) -> Token {
        Token {
            kind,
            start,
            end: self.pos,
            val,
        }
    }

    /// GitHub's legality check of a token against the previous one, plus bracket matching.
    fn accept(&mut self, tok: &Token) -> Result<(), ParseError> {
        use Kind as K;
        let last = self.last;
        let starts_operand = matches!(
            last,
            None | Some(
                K::Separator | K::StartGroup | K::StartParameters | K::StartIndex | K::Operator
            )
        );
        let ends_operand = matches!(
            last,
            Some(
                K::EndGroup
                    | K::EndParameters
                    | K::EndIndex
                    | K::Wildcard
                    | K::Null
                    | K::Boolean
                    | K::Number
                    | K::String
                    | K::PropertyName
                    | K::NamedValue
            )
        );
        let postfix_ok = matches!(
            last,
            Some(
                K::EndGroup
                    | K::EndParameters
                    | K::EndIndex
                    | K::Wildcard
                    | K::PropertyName
                    | K::NamedValue
            )
        );
        let legal = match tok.kind {
            K::StartGroup => starts_operand,
            K::StartIndex | K::Dereference => postfix_ok,
            K::StartParameters => last == Some(K::Function),
            K::EndGroup | K::EndIndex | K::Separator => ends_operand,
            K::EndParameters => ends_operand || last == Some(K::StartParameters),
            K::Wildcard => matches!(last, Some(K::StartIndex | K::Dereference)),
            K::Operator => match tok.val {
                Val::Op(Op::Not) => starts_operand,
                _ => ends_operand,
            },
            K::Null | K::Boolean | K::Number | K::String | K::Function | K::NamedValue => {
                starts_operand
            }
            K::PropertyName => last == Some(K::Dereference),
        };
        if !legal {
            return Err(self.illegal(tok));
        }
        match tok.kind {
            K::StartGroup | K::StartIndex | K::StartParameters => self.unclosed.push(tok.kind),
            K::EndGroup | K::EndIndex | K::EndParameters => {
                let want = match tok.kind {
                    K::EndGroup => K::StartGroup,
                    K::EndIndex => K::StartIndex,
                    _ => K::StartParameters,
                };
                if self.unclosed.last() != Some(&want) {
                    let what = &self.src[tok.start..tok.end];
                    let message = match self.unclosed.last() {
                        Some(K::StartIndex) => format!("unexpected `{what}`: expected `]`"),
                        Some(K::StartGroup) => format!("unexpected `{what}`: expected `)`"),
                        _ => format!("unexpected `{what}` without a matching opening bracket"),
                    };
                    return Err(ParseError::new(tok.start, tok.end - tok.start, message));
                }
                self.unclosed.pop();
            }
            K::Separator if self.unclosed.last() != Some(&K::StartParameters) => {
                return Err(ParseError::new(
                    tok.start,
                    1,
                    "unexpected `,` outside of function call arguments",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn describe(&self, kind: Kind, start: usize, end: usize) -> String {
        let text = &self.src[start..end];
        match kind {
            Kind::Number => format!("number `{text}`"),
            Kind::String => format!("string `{text}`"),
            Kind::Function => format!("function `{text}`"),
            Kind::NamedValue => format!("name `{text}`"),
            Kind::PropertyName => format!("property `{text}`"),
            _ => format!("`{text}`"),
        }
    }

    fn illegal(&self, tok: &Token) -> ParseError {
        let what = self.describe(tok.kind, tok.start, tok.end);
        let len = tok.end - tok.start;
        let last = self.last.map(|k| {
            let (s, e) = self.last_text;
            (k, self.describe(k, s, e))
        });
        let message = match (tok.kind, &last) {
            (Kind::Wildcard, _) => {
                "`*` is only allowed in an object filter `.*` or `[*]`".to_owned()
            }
            (_, None) => format!("unexpected {what} at the start of the expression"),
            (Kind::StartGroup, Some((Kind::PropertyName, l))) => {
                format!("unexpected `(` after {l}: only built-in functions can be called")
            }
            (
                Kind::StartIndex | Kind::Dereference,
                Some((Kind::Null | Kind::Boolean | Kind::Number | Kind::String, l)),
            ) => format!(
                "unexpected {what} after {l}: a literal cannot be indexed unless it is in `( )`"
            ),
            (_, Some((_, l))) => format!("unexpected {what} after {l}"),
        };
        ParseError::new(tok.start, len, message)
    }

    /// The error for running out of input, or `None` if ending here is fine.
    fn end_error(&self) -> Option<ParseError> {
        let at = self.src.len();
        let message = match self.unclosed.last() {
            Some(Kind::StartParameters) => {
                "unexpected end of input while parsing arguments of function call".to_owned()
            }
            Some(Kind::StartIndex) => {
                "unexpected end of input while parsing index access: expected `]`".to_owned()
            }
            Some(_) => "unexpected end of input while parsing `( )`: expected `)`".to_owned(),
            None => match self.last {
                Some(Kind::Operator | Kind::Dereference | Kind::Function) => {
                    let (s, e) = self.last_text;
                    format!("unexpected end of input after `{}`", &self.src[s..e])
                }
                _ => return None,
            },
        };
        Some(ParseError::new(at, 0, message))
    }
}

/// The error for a word that is not a legal name.
fn bad_name(text: &str, start: usize) -> ParseError {
    let (i, c) = text
        .char_indices()
        .enumerate()
        .find(|&(n, (_, c))| {
            let ok = if n == 0 {
                c.is_ascii_alphabetic() || c == '_'
            } else {
                c.is_ascii_alphanumeric() || c == '_' || c == '-'
            };
            !ok
        })
        .map_or((0, '?'), |(_, ic)| ic);
    let at = start + i;
    let len = c.len_utf8();
    let message = match c {
        '"' => "string literals must use single quotes".to_owned(),
        '+' | '*' | '/' | '%' | '^' | '~' => {
            format!("`{c}` is not a valid operator; expressions have no arithmetic")
        }
        _ if i == 0 => format!("unexpected character `{c}`"),
        _ => format!("unexpected character `{c}` in name `{text}`"),
    };
    ParseError::new(at, len, message)
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
