//! The expression syntax tree and its canonical printed form.
//!
//! The tree mirrors the nodes GitHub's parser builds, because some limits and behaviours depend
//! on that shape: `&&` and `||` chains are flattened into one n-ary node (GitHub's parser does the
//! same, so `a && b && … ` never counts towards the depth limit and evaluation never recurses per
//! operand), `a.b` and `a['b']` stay distinct only for printing and diagnostics, and `a.*` and
//! `a[*]` are the same filter node. Every node carries the byte range it covers in the parsed
//! source; the caller maps it to a file position.
//!
//! `Display` prints a canonical form that parses back to an equal tree (ignoring spans), which
//! the property tests rely on and diagnostics use to name sub-expressions.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// One node of an expression.
#[derive(Clone, Debug)]
pub struct Expr {
    /// What the node is.
    pub kind: ExprKind,
    /// Byte range in the source string the expression was parsed from.
    pub span: Range<usize>,
}

/// The kinds of expression nodes.
#[derive(Clone, Debug)]
pub enum ExprKind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number literal (`1`, `-2.5e3`, `0xff`, `NaN`, `Infinity`).
    Number(f64),
    /// A single-quoted string literal, unescaped.
    String(Arc<str>),
    /// A named value (context) such as `github`; matched ignoring case.
    Context(Name),
    /// `receiver.name`.
    Property {
        /// The object.
        receiver: Box<Expr>,
        /// The property name as written.
        name: Name,
    },
    /// `receiver[index]`.
    Index {
        /// The object or array.
        receiver: Box<Expr>,
        /// The key or position.
        index: Box<Expr>,
    },
    /// `receiver.*` or `receiver[*]` (object filter).
    Filter {
        /// The filtered collection.
        receiver: Box<Expr>,
    },
    /// A function call.
    Call(Call),
    /// `!operand`.
    Not(Box<Expr>),
    /// A comparison.
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// A chain of `&&` or of `||`, flattened: at least two operands, none of them another
    /// `Logical` with the same operator.
    Logical {
        /// `And` or `Or`.
        op: LogicalOp,
        /// The operands, left to right.
        operands: Vec<Expr>,
    },
}

/// A name as written in the source plus its lower-case form, which lookups use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// As written.
    pub text: Box<str>,
    /// ASCII lower case of `text` (names are ASCII by syntax).
    pub lower: Box<str>,
}

impl Name {
    /// A name from its source text.
    pub fn new(text: &str) -> Name {
        Name {
            text: text.into(),
            lower: text.to_ascii_lowercase().into(),
        }
    }
}

/// A function call.
#[derive(Clone, Debug)]
pub struct Call {
    /// The function name as written (matched ignoring case).
    pub name: Name,
    /// The built-in function, if the name is one.
    pub func: Option<Func>,
    /// The arguments.
    pub args: Vec<Expr>,
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl BinOp {
    /// The operator's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }

    /// GitHub's precedence (higher binds tighter): ordering 11, equality 10.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinOp::Eq | BinOp::Ne => 10,
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 11,
        }
    }
}

/// `&&` and `||`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogicalOp {
    /// `&&`
    And,
    /// `||`
    Or,
}

impl LogicalOp {
    /// The operator's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogicalOp::And => "&&",
            LogicalOp::Or => "||",
        }
    }

    /// GitHub's precedence: `&&` 6, `||` 5.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            LogicalOp::And => 6,
            LogicalOp::Or => 5,
        }
    }
}

/// The built-in functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `contains(search, item)`
    Contains,
    /// `startsWith(string, prefix)`
    StartsWith,
    /// `endsWith(string, suffix)`
    EndsWith,
    /// `format(fmt, args…)`
    Format,
    /// `join(array, separator?)`
    Join,
    /// `toJSON(value)`
    ToJson,
    /// `fromJSON(text)`
    FromJson,
    /// `hashFiles(patterns…)`
    HashFiles,
    /// `case(pred, value, …, default)`
    Case,
    /// `success()`
    Success,
    /// `always()`
    Always,
    /// `cancelled()`
    Cancelled,
    /// `failure()`
    Failure,
}

impl Func {
    /// Every built-in function.
    pub const ALL: [Func; 13] = [
        Func::Always,
        Func::Cancelled,
        Func::Case,
        Func::Contains,
        Func::EndsWith,
        Func::Failure,
        Func::Format,
        Func::FromJson,
        Func::HashFiles,
        Func::Join,
        Func::StartsWith,
        Func::Success,
        Func::ToJson,
    ];

    /// The documented spelling.
    pub fn name(self) -> &'static str {
        match self {
            Func::Contains => "contains",
            Func::StartsWith => "startsWith",
            Func::EndsWith => "endsWith",
            Func::Format => "format",
            Func::Join => "join",
            Func::ToJson => "toJSON",
            Func::FromJson => "fromJSON",
            Func::HashFiles => "hashFiles",
            Func::Case => "case",
            Func::Success => "success",
            Func::Always => "always",
            Func::Cancelled => "cancelled",
            Func::Failure => "failure",
        }
    }

    /// Looks a function up by name, ignoring case.
    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Fewest arguments GitHub accepts.
    pub fn min_args(self) -> usize {
        match self {
            Func::Success | Func::Always | Func::Cancelled | Func::Failure => 0,
            Func::Format | Func::Join | Func::ToJson | Func::FromJson | Func::HashFiles => 1,
            Func::Contains | Func::StartsWith | Func::EndsWith => 2,
            Func::Case => 3,
        }
    }

    /// Most arguments GitHub accepts (`Byte.MaxValue` for the variadic ones).
    pub fn max_args(self) -> usize {
        match self {
            Func::Success | Func::Always | Func::Cancelled | Func::Failure => 0,
            Func::ToJson | Func::FromJson => 1,
            Func::Contains | Func::StartsWith | Func::EndsWith | Func::Join => 2,
            Func::Format | Func::HashFiles | Func::Case => 255,
        }
    }

    /// Whether this is one of the status functions (`success`, `always`, `cancelled`,
    /// `failure`).
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Func::Success | Func::Always | Func::Cancelled | Func::Failure
        )
    }
}

impl Expr {
    /// Whether a status function is called anywhere in the expression (the test that decides
    /// whether an `if:` gets an implicit `success() &&`).
    pub fn calls_status_function(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| {
            if let ExprKind::Call(c) = &e.kind {
                found |= c.func.is_some_and(Func::is_status);
            }
        });
        found
    }

    /// Calls `f` on this node and every node below it, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Null
            | ExprKind::Bool(_)
            | ExprKind::Number(_)
            | ExprKind::String(_)
            | ExprKind::Context(_) => {}
            ExprKind::Property { receiver, .. } | ExprKind::Filter { receiver } => {
                receiver.walk(f);
            }
            ExprKind::Index { receiver, index } => {
                receiver.walk(f);
                index.walk(f);
            }
            ExprKind::Call(c) => c.args.iter().for_each(|a| a.walk(f)),
            ExprKind::Not(e) => e.walk(f),
            ExprKind::Binary { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
            ExprKind::Logical { operands, .. } => operands.iter().for_each(|a| a.walk(f)),
        }
    }

    /// Precedence of the node for printing: literals, names and postfix forms bind tightest.
    fn print_precedence(&self) -> u8 {
        match &self.kind {
            ExprKind::Logical { op, .. } => op.precedence(),
            ExprKind::Binary { op, .. } => op.precedence(),
            ExprKind::Not(_) => 16,
            _ => 20,
        }
    }

    /// Whether the node can take `.x`, `[i]` or `.*` directly: GitHub only allows those after a
    /// name, a call, a closing `)`/`]` or a filter, never after a literal.
    fn is_postfix_receiver(&self) -> bool {
        matches!(
            self.kind,
            ExprKind::Context(_)
                | ExprKind::Property { .. }
                | ExprKind::Index { .. }
                | ExprKind::Filter { .. }
                | ExprKind::Call(_)
        )
    }
}

/// Structural equality that ignores spans; numbers compare by bit pattern so that `NaN` equals
/// `NaN` and `-0` differs from `0`, which is what "the same tree" means for literals.
impl PartialEq for Expr {
    fn eq(&self, other: &Expr) -> bool {
        use ExprKind as K;
        match (&self.kind, &other.kind) {
            (K::Null, K::Null) => true,
            (K::Bool(a), K::Bool(b)) => a == b,
            (K::Number(a), K::Number(b)) => a.to_bits() == b.to_bits(),
            (K::String(a), K::String(b)) => a == b,
            (K::Context(a), K::Context(b)) => a == b,
            (
                K::Property {
                    receiver: r1,
                    name: n1,
                },
                K::Property {
                    receiver: r2,
                    name: n2,
                },
            ) => n1 == n2 && r1 == r2,
            (
                K::Index {
                    receiver: r1,
                    index: i1,
                },
                K::Index {
                    receiver: r2,
                    index: i2,
                },
            ) => r1 == r2 && i1 == i2,
            (K::Filter { receiver: a }, K::Filter { receiver: b }) => a == b,
            (K::Call(a), K::Call(b)) => a.name == b.name && a.func == b.func && a.args == b.args,
            (K::Not(a), K::Not(b)) => a == b,
            (
                K::Binary {
                    op: o1,
                    left: l1,
                    right: r1,
                },
                K::Binary {
                    op: o2,
                    left: l2,
                    right: r2,
                },
            ) => o1 == o2 && l1 == l2 && r1 == r2,
            (
                K::Logical {
                    op: o1,
                    operands: a,
                },
                K::Logical {
                    op: o2,
                    operands: b,
                },
            ) => o1 == o2 && a == b,
            _ => false,
        }
    }
}

/// Prints a number literal so that it reads back as the same `f64`.
fn write_number(n: f64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if n.is_nan() {
        f.write_str("NaN")
    } else if n == f64::INFINITY {
        f.write_str("Infinity")
    } else if n == f64::NEG_INFINITY {
        f.write_str("-Infinity")
    } else {
        // `{:?}` is the shortest representation that round-trips, with an exponent for very
        // large and small magnitudes, and keeps the sign of `-0.0`.
        write!(f, "{n:?}")
    }
}

fn write_string_literal(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("'")?;
    for part in s.split('\'').enumerate() {
        if part.0 > 0 {
            f.write_str("''")?;
        }
        f.write_str(part.1)?;
    }
    f.write_str("'")
}

/// Writes `e`, in parentheses when its precedence is below `min`.
fn write_operand(e: &Expr, min: u8, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if e.print_precedence() < min {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

fn write_receiver(e: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if e.is_postfix_receiver() {
        write!(f, "{e}")
    } else {
        write!(f, "({e})")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Null => f.write_str("null"),
            ExprKind::Bool(b) => write!(f, "{b}"),
            ExprKind::Number(n) => write_number(*n, f),
            ExprKind::String(s) => write_string_literal(s, f),
            ExprKind::Context(n) => f.write_str(&n.text),
            ExprKind::Property { receiver, name } => {
                write_receiver(receiver, f)?;
                write!(f, ".{}", name.text)
            }
            ExprKind::Index { receiver, index } => {
                write_receiver(receiver, f)?;
                write!(f, "[{index}]")
            }
            ExprKind::Filter { receiver } => {
                write_receiver(receiver, f)?;
                f.write_str(".*")
            }
            ExprKind::Call(c) => {
                write!(f, "{}(", c.name.text)?;
                for (i, a) in c.args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            ExprKind::Not(e) => {
                f.write_str("!")?;
                write_operand(e, 16, f)
            }
            ExprKind::Binary { op, left, right } => {
                // Left-associative: the left side may have the same precedence, the right side
                // must bind tighter.
                let p = op.precedence();
                write_operand(left, p, f)?;
                write!(f, " {} ", op.as_str())?;
                write_operand(right, p + 1, f)
            }
            ExprKind::Logical { op, operands } => {
                let p = op.precedence();
                for (i, e) in operands.iter().enumerate() {
                    if i > 0 {
                        write!(f, " {} ", op.as_str())?;
                    }
                    write_operand(e, p + 1, f)?;
                }
                Ok(())
            }
        }
    }
}
