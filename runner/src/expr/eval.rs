//! Evaluation of expression trees against a [`Context`].
//!
//! The rules follow GitHub's evaluator node by node (actions/runner `Expressions2/Sdk`), including
//! its laziness, because laziness decides which errors surface: `&&`/`||` stop early and return
//! an operand, `case()` evaluates only the chosen branch, an index expression is evaluated only
//! when the receiver is a collection, `format()` checks its format string before it evaluates any
//! argument and only evaluates referenced arguments, `contains()` and `startsWith()` skip their
//! second argument when the first cannot match.
//!
//! Object filters produce GitHub's "filtered array": an array that, unlike a plain array, maps a
//! following `.name`, `[i]` or `.*` over its items. That property belongs to the value, not to the
//! syntax (`(a.*).b` and `case(x, a.*, b).name` map too), so the evaluator carries a flag next to
//! each intermediate value; the flag disappears when the final value is returned.

use std::fmt;
use std::sync::Arc;

use super::ast::{BinOp, Call, Expr, ExprKind, Func, LogicalOp};
use super::json;
use super::number::parse_number;
use super::text::{contains_ignore_case, ends_with_ignore_case, starts_with_ignore_case};
use super::value::Value;

/// Largest string a function may build (bytes). GitHub bounds expression memory (about 10 MB per
/// template); without a bound, nested `format()` calls could grow a string exponentially.
pub const MAX_STRING_BYTES: usize = 10 * 1024 * 1024;

/// The status functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusFn {
    /// `success()`
    Success,
    /// `failure()`
    Failure,
    /// `cancelled()`
    Cancelled,
    /// `always()`
    Always,
}

/// What an expression can see while it is evaluated.
pub trait Context {
    /// The value of a named value (context), by lower-case name: `github`, `env`, `vars`, `job`,
    /// `jobs`, `steps`, `runner`, `secrets`, `strategy`, `matrix`, `needs`, `inputs`. `None` means
    /// the name is not available here, which is an evaluation error.
    ///
    /// Return clones of long-lived values (cloning a [`Value`] only bumps a reference count):
    /// `==` compares arrays and objects by identity, so `github.event == github.event` is true
    /// only if both lookups return the same allocation.
    fn named_value(&self, name: &str) -> Option<Value>;

    /// The result of a status function. The default is a run where nothing failed or was
    /// cancelled: `success()` and `always()` are true.
    fn status(&self, f: StatusFn) -> bool {
        matches!(f, StatusFn::Success | StatusFn::Always)
    }

    /// `hashFiles(patterns…)`: the hash of the files matching `patterns` (GitHub's algorithm;
    /// `''` when nothing matches). The default refuses, as GitHub does outside a runner.
    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        let _ = patterns;
        Err("`hashFiles` is only available while a job runs on a runner".to_owned())
    }
}

/// An evaluation error, located by byte offsets in the parsed string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    /// Byte offset of the sub-expression that failed.
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
    /// Lowercase description without a trailing period.
    pub message: String,
}

impl EvalError {
    fn at(e: &Expr, message: impl Into<String>) -> Self {
        EvalError {
            offset: e.span.start,
            len: e.span.end - e.span.start,
            message: message.into(),
        }
    }

    /// The same error moved `by` bytes to the right (for expressions embedded in larger text).
    pub fn shifted(mut self, by: usize) -> Self {
        self.offset += by;
        self
    }
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

/// Evaluates `expr` against `ctx`.
pub fn eval(expr: &Expr, ctx: &dyn Context) -> Result<Value, EvalError> {
    Evaluator { ctx }.eval(expr).map(|r| r.value)
}

/// An intermediate result: a value plus whether it is a filtered array.
struct Res {
    value: Value,
    filtered: bool,
}

impl Res {
    fn plain(value: Value) -> Res {
        Res {
            value,
            filtered: false,
        }
    }

    fn filtered(items: Vec<Value>) -> Res {
        Res {
            value: Value::Array(Arc::new(items)),
            filtered: true,
        }
    }
}

/// How an index or property name selects from a collection (GitHub's `IndexHelper`): objects
/// by the key's string form, arrays by its number value floored (negative, NaN or beyond
/// `Int32.MaxValue` selects nothing).
enum Key<'a> {
    /// A property name (`.name` or `['name']`); arrays parse it as a number.
    Str(std::borrow::Cow<'a, str>),
    /// A primitive index value: its string form and its array position.
    Both(std::borrow::Cow<'a, str>, Option<usize>),
    /// An array or object used as an index: selects nothing.
    Nothing,
}

impl<'a> Key<'a> {
    fn of(v: &'a Value) -> Key<'a> {
        if v.is_primitive() {
            Key::Both(v.as_gh_str(), array_position(v.to_number()))
        } else {
            Key::Nothing
        }
    }

    fn name(name: &'a str) -> Key<'a> {
        Key::Str(std::borrow::Cow::Borrowed(name))
    }

    fn get_in_object(&self, v: &Value) -> Option<Value> {
        let o = v.as_object()?;
        match self {
            Key::Str(k) | Key::Both(k, _) => o.get(k).cloned(),
            Key::Nothing => None,
        }
    }

    fn get_in_array(&self, v: &Value) -> Option<Value> {
        let a = v.as_array()?;
        let i = match self {
            Key::Both(_, i) => *i,
            Key::Str(k) => array_position(parse_number(k)),
            Key::Nothing => None,
        }?;
        a.get(i).cloned()
    }

    fn get(&self, v: &Value) -> Option<Value> {
        match v {
            Value::Object(_) => self.get_in_object(v),
            Value::Array(_) => self.get_in_array(v),
            _ => None,
        }
    }
}

fn array_position(n: f64) -> Option<usize> {
    if n.is_nan() || n < 0.0 {
        return None;
    }
    let n = n.floor();
    if n > f64::from(i32::MAX) {
        return None;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "n is integral and within 0..=i32::MAX"
    )]
    Some(n as usize)
}

struct Evaluator<'a> {
    ctx: &'a dyn Context,
}

impl Evaluator<'_> {
    fn eval(&self, e: &Expr) -> Result<Res, EvalError> {
        Ok(match &e.kind {
            ExprKind::Null => Res::plain(Value::Null),
            ExprKind::Bool(b) => Res::plain(Value::Bool(*b)),
            ExprKind::Number(n) => Res::plain(Value::Number(*n)),
            ExprKind::String(s) => Res::plain(Value::String(Arc::clone(s))),
            ExprKind::Context(name) => match self.ctx.named_value(&name.lower) {
                Some(v) => Res::plain(v),
                None => return Err(unrecognized(e, &name.text)),
            },
            ExprKind::Property { receiver, name } => {
                let mut root = None;
                if let Some(found) = self.chain(e, &mut root) {
                    return Ok(Res::plain(found?.cloned().unwrap_or(Value::Null)));
                }
                let recv = self.eval(receiver)?;
                select(recv, &Key::name(&name.text))
            }
            ExprKind::Index { receiver, index } => {
                let recv = self.eval(receiver)?;
                if !matches!(recv.value, Value::Array(_) | Value::Object(_)) {
                    // GitHub does not evaluate the index of a non-collection.
                    return Ok(Res::plain(Value::Null));
                }
                let idx = self.eval(index)?.value;
                select(recv, &Key::of(&idx))
            }
            ExprKind::Filter { receiver } => filter(self.eval(receiver)?),
            ExprKind::Not(x) => Res::plain(Value::Bool(!self.eval(x)?.value.is_truthy())),
            ExprKind::Binary { op, left, right } => {
                let l = self.eval(left)?.value;
                let r = self.eval(right)?.value;
                Res::plain(Value::Bool(match op {
                    BinOp::Eq => l.loose_eq(&r),
                    BinOp::Ne => !l.loose_eq(&r),
                    BinOp::Lt => l.loose_lt(&r),
                    BinOp::Le => l.loose_le(&r),
                    BinOp::Gt => l.loose_gt(&r),
                    BinOp::Ge => l.loose_ge(&r),
                }))
            }
            ExprKind::Logical { op, operands } => {
                let want = *op == LogicalOp::Or;
                let mut last = Res::plain(Value::Null);
                for x in operands {
                    last = self.eval(x)?;
                    if last.value.is_truthy() == want {
                        break;
                    }
                }
                last
            }
            ExprKind::Call(call) => self.call(e, call)?,
        })
    }

    /// Resolves a chain of property accesses on a context (`github.event.head_commit.id`,
    /// `steps['x'].outputs.y`) by reference, cloning only the final value: the common case of
    /// every workflow expression, where cloning each intermediate object would cost a reference
    /// count update per step. `None` when `e` is not such a chain; the normal path then applies
    /// (it gives the same result, since a context value is never a filtered array).
    fn chain<'v>(
        &self,
        e: &Expr,
        root: &'v mut Option<Value>,
    ) -> Option<Result<Option<&'v Value>, EvalError>> {
        let (receiver, key) = match &e.kind {
            ExprKind::Context(name) => {
                let Some(v) = self.ctx.named_value(&name.lower) else {
                    return Some(Err(unrecognized(e, &name.text)));
                };
                *root = Some(v);
                return Some(Ok(root.as_ref()));
            }
            ExprKind::Property { receiver, name } => (receiver, &*name.text),
            ExprKind::Index { receiver, index } => match &index.kind {
                ExprKind::String(s) => (receiver, &**s),
                _ => return None,
            },
            _ => return None,
        };
        let found = self.chain(receiver, root)?;
        Some(found.map(|v| v.and_then(|v| step(v, key))))
    }

    fn call(&self, e: &Expr, call: &Call) -> Result<Res, EvalError> {
        let Some(func) = call.func else {
            return Err(EvalError::at(
                e,
                format!("unrecognized function `{}`", call.name.text),
            ));
        };
        let args = &call.args;
        if args.len() < func.min_args() || args.len() > func.max_args() {
            return Err(EvalError::at(e, arity_message(func, args.len())));
        }
        let arg = |i: usize| -> Result<Value, EvalError> {
            match args.get(i) {
                Some(a) => Ok(self.eval(a)?.value),
                None => Err(EvalError::at(e, arity_message(func, args.len()))),
            }
        };
        let string = |s: String| -> Result<Res, EvalError> {
            if s.len() > MAX_STRING_BYTES {
                return Err(EvalError::at(e, too_big(func)));
            }
            Ok(Res::plain(Value::String(Arc::from(s))))
        };
        let status = |f| Ok(Res::plain(Value::Bool(self.ctx.status(f))));
        match func {
            Func::Success => status(StatusFn::Success),
            Func::Failure => status(StatusFn::Failure),
            Func::Cancelled => status(StatusFn::Cancelled),
            Func::Always => status(StatusFn::Always),
            Func::Contains => {
                let search = arg(0)?;
                let found = match &search {
                    Value::Array(items) if !items.is_empty() => {
                        let item = arg(1)?;
                        items.iter().any(|x| item.loose_eq(x))
                    }
                    Value::Array(_) | Value::Object(_) => false,
                    prim => {
                        let item = arg(1)?;
                        item.is_primitive()
                            && contains_ignore_case(&prim.as_gh_str(), &item.as_gh_str())
                    }
                };
                Ok(Res::plain(Value::Bool(found)))
            }
            Func::StartsWith | Func::EndsWith => {
                let s = arg(0)?;
                let yes = if s.is_primitive() {
                    let t = arg(1)?;
                    t.is_primitive() && {
                        let (s, t) = (s.as_gh_str(), t.as_gh_str());
                        if func == Func::StartsWith {
                            starts_with_ignore_case(&s, &t)
                        } else {
                            ends_with_ignore_case(&s, &t)
                        }
                    }
                } else {
                    false
                };
                Ok(Res::plain(Value::Bool(yes)))
            }
            Func::Format => self.format(e, args).and_then(string),
            Func::Join => {
                let items = arg(0)?;
                match &items {
                    Value::Array(a) if !a.is_empty() => {
                        let sep = if a.len() > 1 && args.len() > 1 {
                            let s = arg(1)?;
                            if s.is_primitive() {
                                s.as_gh_str().into_owned()
                            } else {
                                ",".to_owned()
                            }
                        } else {
                            ",".to_owned()
                        };
                        let mut out = String::new();
                        for (i, x) in a.iter().enumerate() {
                            if i > 0 {
                                out.push_str(&sep);
                            }
                            out.push_str(&x.as_gh_str());
                            if out.len() > MAX_STRING_BYTES {
                                return Err(EvalError::at(e, too_big(func)));
                            }
                        }
                        string(out)
                    }
                    v if v.is_primitive() => string(v.as_gh_str().into_owned()),
                    _ => string(String::new()),
                }
            }
            Func::ToJson => string(arg(0)?.to_json_pretty()),
            Func::FromJson => {
                let text = arg(0)?;
                let text = text.as_gh_str();
                json::read(&text).map(Res::plain).map_err(|err| {
                    EvalError::at(
                        e,
                        format!(
                            "`fromJSON` input is not valid JSON: {} (at byte {})",
                            err.message, err.offset
                        ),
                    )
                })
            }
            Func::HashFiles => {
                let mut patterns = Vec::with_capacity(args.len());
                for i in 0..args.len() {
                    patterns.push(arg(i)?.as_gh_str().into_owned());
                }
                match self.ctx.hash_files(&patterns) {
                    Ok(h) => Ok(Res::plain(Value::str(h))),
                    Err(msg) => Err(EvalError::at(e, msg)),
                }
            }
            Func::Case => {
                if args.len().is_multiple_of(2) {
                    return Err(EvalError::at(
                        e,
                        format!(
                            "`case` needs an odd number of arguments (predicate and value pairs, then a default), got {}",
                            args.len()
                        ),
                    ));
                }
                for pair in args.chunks(2) {
                    let [pred, val] = pair else {
                        return self.eval(&pair[0]);
                    };
                    match self.eval(pred)?.value {
                        Value::Bool(true) => return self.eval(val),
                        Value::Bool(false) => {}
                        other => {
                            return Err(EvalError::at(
                                pred,
                                format!(
                                    "`case` predicate must evaluate to a boolean, got {}",
                                    other.kind_name().to_ascii_lowercase()
                                ),
                            ));
                        }
                    }
                }
                Err(EvalError::at(e, "`case` has no default value"))
            }
        }
    }

    /// `format()`: the format string is scanned completely before any argument is evaluated,
    /// then referenced arguments are evaluated once each, in order of first use.
    fn format(&self, e: &Expr, args: &[Expr]) -> Result<String, EvalError> {
        let fmt_value = self.eval(&args[0])?.value;
        let fmt = fmt_value.as_gh_str();
        let segments = parse_format(&fmt, args.len() - 1).map_err(|m| EvalError::at(e, m))?;
        let mut cache: Vec<Option<Value>> = vec![None; args.len() - 1];
        let mut out = String::new();
        for seg in segments {
            match seg {
                Segment::Text(t) => out.push_str(t),
                Segment::Arg(i, spec) => {
                    if cache[i].is_none() {
                        cache[i] = Some(self.eval(&args[i + 1])?.value);
                    }
                    let v = cache[i].as_ref().map_or(Value::Null, Value::clone);
                    if !spec.is_empty() {
                        return Err(EvalError::at(
                            e,
                            format!(
                                "format specifiers are not supported: `{spec}` for a value of type {}",
                                v.kind_name().to_ascii_lowercase()
                            ),
                        ));
                    }
                    out.push_str(&v.as_gh_str());
                }
            }
            if out.len() > MAX_STRING_BYTES {
                return Err(EvalError::at(e, too_big(Func::Format)));
            }
        }
        Ok(out)
    }
}

fn unrecognized(e: &Expr, name: &str) -> EvalError {
    EvalError::at(e, format!("unrecognized named-value `{name}`"))
}

/// One step of a property chain on a plain (not filtered) value, by reference.
fn step<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    match v {
        Value::Object(o) => o.get(key),
        Value::Array(a) => a.get(array_position(parse_number(key))?),
        _ => None,
    }
}

fn too_big(func: Func) -> String {
    format!(
        "`{}` result exceeds the maximum size of {MAX_STRING_BYTES} bytes",
        func.name()
    )
}

/// The arity error message for `func` called with `n` arguments.
pub(crate) fn arity_message(func: Func, n: usize) -> String {
    let (min, max) = (func.min_args(), func.max_args());
    let plural = |k: usize| if k == 1 { "argument" } else { "arguments" };
    let takes = if min == max {
        format!("exactly {min} {}", plural(min))
    } else if max == 255 {
        format!("at least {min} {}", plural(min))
    } else {
        format!("{min} to {max} arguments")
    };
    format!(
        "function `{}` takes {takes} but {n} {} given",
        func.name(),
        if n == 1 { "was" } else { "were" }
    )
}

/// A piece of a `format()` string.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    Text(&'a str),
    /// Argument index (0-based, after the format string) and format specifiers (after `:`).
    Arg(usize, String),
}

/// Splits a `format()` string as GitHub's `Format` does: `{{`/`}}` are literal braces, `{N}` and
/// `{N:spec}` are placeholders with `N` at most 255; anything else with a brace is invalid, and a
/// placeholder past the last argument is an error. Messages are returned ready to report.
pub(crate) fn parse_format(fmt: &str, nargs: usize) -> Result<Vec<Segment<'_>>, String> {
    let b = fmt.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let invalid = || format!("the format string is invalid: `{fmt}`");
    while i < b.len() {
        let lb = fmt[i..].find('{').map(|x| x + i);
        let rb = fmt[i..].find('}').map(|x| x + i);
        match (lb, rb) {
            (Some(l), r) if r.is_none_or(|r| r > l) => {
                if b.get(l + 1) == Some(&b'{') {
                    out.push(Segment::Text(&fmt[i..=l]));
                    i = l + 2;
                    continue;
                }
                let digits = b[l + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                let ok_shape = r.is_some_and(|r| r > l + 1) && digits > 0;
                let idx = fmt[l + 1..l + 1 + digits].parse::<u8>().ok();
                let (Some(idx), true) = (idx, ok_shape) else {
                    return Err(invalid());
                };
                let (spec, close) = read_specifiers(fmt, l + 1 + digits).ok_or_else(invalid)?;
                if usize::from(idx) >= nargs {
                    return Err(format!(
                        "the format string references more arguments than were supplied: `{fmt}`"
                    ));
                }
                if l > i {
                    out.push(Segment::Text(&fmt[i..l]));
                }
                out.push(Segment::Arg(usize::from(idx), spec));
                i = close + 1;
            }
            (_, Some(r)) => {
                if b.get(r + 1) == Some(&b'}') {
                    out.push(Segment::Text(&fmt[i..=r]));
                    i = r + 2;
                } else {
                    return Err(invalid());
                }
            }
            _ => {
                out.push(Segment::Text(&fmt[i..]));
                break;
            }
        }
    }
    Ok(out)
}

/// After `{N`: either `}` or `:` then specifier text (with `}}` as an escaped brace) up to `}`.
fn read_specifiers(fmt: &str, at: usize) -> Option<(String, usize)> {
    let b = fmt.as_bytes();
    match b.get(at) {
        Some(b'}') => return Some((String::new(), at)),
        Some(b':') => {}
        _ => return None,
    }
    let mut spec = String::new();
    let mut i = at + 1;
    loop {
        let rest = fmt.get(i..)?;
        let c = rest.chars().next()?;
        if c != '}' {
            spec.push(c);
            i += c.len_utf8();
        } else if b.get(i + 1) == Some(&b'}') {
            spec.push('}');
            i += 2;
        } else {
            return Some((spec, i));
        }
    }
}

/// Applies a property name or index to an intermediate result (GitHub's `Index` operator).
fn select(recv: Res, key: &Key<'_>) -> Res {
    if recv.filtered {
        let Value::Array(items) = &recv.value else {
            return Res::filtered(Vec::new());
        };
        let out = items.iter().filter_map(|x| key.get(x)).collect();
        return Res::filtered(out);
    }
    Res::plain(key.get(&recv.value).unwrap_or(Value::Null))
}

/// Applies `.*`: objects give their values, arrays their items, a filtered array the items and
/// values of its members (one level flattened), anything else an empty filtered array.
fn filter(recv: Res) -> Res {
    match (&recv.value, recv.filtered) {
        (Value::Array(items), true) => {
            let mut out = Vec::new();
            for x in items.iter() {
                match x {
                    Value::Object(o) => out.extend(o.values().cloned()),
                    Value::Array(a) => out.extend(a.iter().cloned()),
                    _ => {}
                }
            }
            Res::filtered(out)
        }
        (Value::Array(items), false) => Res::filtered(items.as_ref().clone()),
        (Value::Object(o), _) => Res::filtered(o.values().cloned().collect()),
        _ => Res::filtered(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_strings() {
        let segs = parse_format;
        assert!(segs("{0}", 1).is_ok());
        assert!(segs("{{0}}", 0).is_ok());
        assert!(segs("{0", 1).is_err());
        assert!(segs("{}", 1).is_err());
        assert!(segs("}", 0).is_err());
        assert!(segs("{a}", 1).is_err());
        assert!(segs("{256}", 300).is_err());
        assert_eq!(
            segs("{1}", 1).err(),
            Some("the format string references more arguments than were supplied: `{1}`".into())
        );
        assert_eq!(
            segs("a{0:x}}}b", 1).ok(),
            Some(vec![
                Segment::Text("a"),
                Segment::Arg(0, "x}".into()),
                Segment::Text("b")
            ])
        );
    }
}
