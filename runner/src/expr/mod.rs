//! GitHub Actions expressions: parsing, evaluation, templates, `if:` conditions and static checks.
//!
//! Workflows behave the same under `pipe` as on github.com only if expressions do, down to the
//! corner cases people rely on without knowing it: loose comparisons that ignore case, `&&`/`||`
//! returning an operand, `G15` number formatting, `toJSON`'s exact layout, object filters, the
//! implicit `success() &&` of conditions. Each submodule reproduces one part of GitHub's .NET
//! implementation (actions/runner `DTExpressions2`, `DTObjectTemplating`) and says which:
//!
//! - [`parse`](mod@parse): text → [`Expr`], with GitHub's token rules and its length and depth
//!   limits;
//! - [`value`]: runtime [`Value`]s and coercions; [`number`]: `G15` and string → number;
//! - [`eval`](mod@eval): evaluation against a [`Context`] supplied by the caller;
//! - [`template`]: strings with `${{ }}` parts and `if:` conditions;
//! - [`check`](mod@check) and [`availability`](mod@availability): what `pipe validate` reports
//!   before anything runs.
//!
//! Offsets in errors are byte offsets into the string that was parsed; callers map them to file
//! positions.
//!
//! ```
//! use pipe_runner::expr::{Context, Template, Value, eval, parse};
//!
//! struct Ctx(Value);
//! impl Context for Ctx {
//!     fn named_value(&self, name: &str) -> Option<Value> {
//!         (name == "github").then(|| self.0.clone())
//!     }
//! }
//! let ctx = Ctx(Value::object([("event_name", Value::from("push"))]));
//!
//! let e = parse("github.event_name == 'PUSH' && 'deploy' || 'skip'")?;
//! assert_eq!(eval(&e, &ctx)?, Value::from("deploy"));
//!
//! let t = Template::parse("event: ${{ github.event_name }}, n=${{ 1.50 }}")?;
//! assert_eq!(t.eval(&ctx)?, Value::from("event: push, n=1.5"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod ast;
pub mod availability;
pub mod check;
pub mod eval;
mod json;
mod lexer;
pub mod number;
pub mod parse;
pub mod template;
mod text;
pub mod value;

pub use ast::{BinOp, Call, Expr, ExprKind, Func, LogicalOp, Name};
pub use availability::{
    ContextName, ContextSet, FunctionSet, SpecialFunction, WorkflowKey, availability,
};
pub use check::{Issue, JobRef, Scope, check};
pub use eval::{Context, EvalError, StatusFn, eval};
pub use parse::{MAX_DEPTH, MAX_LENGTH, ParseError, parse};
pub use template::{Condition, Part, Template, parse_condition};
pub use value::{Object, Value};
