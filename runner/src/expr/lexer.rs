//! The tokenizer for expressions, with GitHub's rule of which token may follow which.
//!
//! GitHub's `LexicalAnalyzer` classifies each token using the previous one (`(` after a function
//! name opens an argument list, `.` starts a number only where an operand may start, a name after
//! `.` is a property) and rejects a token that may not follow the previous one. That table is the
//! real grammar of GitHub expressions, so it is reproduced here verbatim in intent; the parser
//! only has to build the tree.

use std::sync::Arc;

use super::ast::{BinOp, LogicalOp};
use super::number::parse_number;
use super::parse::ParseError;

/// GitHub's token kinds; the legality table is written in terms of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) enum Op {
    Not,
    Bin(BinOp),
    Logical(LogicalOp),
}

impl Op {
    pub(super) fn precedence(self) -> u8 {
        match self {
            Op::Not => 16,
            Op::Bin(b) => b.precedence(),
            Op::Logical(l) => l.precedence(),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) enum Val {
    None,
    Bool(bool),
    Num(f64),
    Str(Arc<str>),
    Op(Op),
}

#[derive(Clone, Debug)]
pub(super) struct Token {
    pub(super) kind: Kind,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) val: Val,
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

pub(super) struct Lexer<'a> {
    pub(super) src: &'a str,
    pub(super) pos: usize,
    last: Option<Kind>,
    last_text: (usize, usize),
    unclosed: Vec<Kind>,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str) -> Self {
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
    pub(super) fn next(&mut self) -> Result<Option<Token>, ParseError> {
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
    pub(super) fn end_error(&self) -> Option<ParseError> {
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
