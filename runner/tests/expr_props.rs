//! Property tests of the expression engine: algebraic laws GitHub's semantics guarantee, the
//! printer/parser round trip, and robustness (nothing panics on arbitrary input).
//!
//! Random trees come from a generator of well-formed ASTs (so the round trip covers every node
//! kind and precedence combination); random text comes both from arbitrary strings and from a
//! "token soup" of expression fragments, which reaches far more parser states than random bytes.

mod common;

use std::sync::Arc;

use common::TestCtx;
use pipe_runner::expr::{
    BinOp, Call, Expr, ExprKind, Func, LogicalOp, Name, Scope, Template, Value, check, eval, parse,
    parse_condition,
};
use proptest::prelude::*;

fn node(kind: ExprKind) -> Expr {
    Expr { kind, span: 0..0 }
}

/// Legal names that are not literal keywords.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_-]{0,6}".prop_filter("not a literal keyword", |s| {
        !matches!(s.as_str(), "null" | "true" | "false" | "NaN" | "Infinity")
    })
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("NaN has many bit patterns", |f| !f.is_nan()),
        Just(f64::NAN),
        Just(-0.0),
        (-1000i32..1000).prop_map(f64::from),
        (0u32..1000, 0u32..100).prop_map(|(a, b)| f64::from(a) / f64::from(b.max(1))),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        Just(node(ExprKind::Null)),
        any::<bool>().prop_map(|b| node(ExprKind::Bool(b))),
        number().prop_map(|n| node(ExprKind::Number(n))),
        ".{0,8}".prop_map(|s| node(ExprKind::String(Arc::from(s)))),
        name().prop_map(|n| node(ExprKind::Context(Name::new(&n)))),
    ]
}

fn binop() -> impl Strategy<Value = BinOp> {
    prop_oneof![
        Just(BinOp::Eq),
        Just(BinOp::Ne),
        Just(BinOp::Lt),
        Just(BinOp::Le),
        Just(BinOp::Gt),
        Just(BinOp::Ge),
    ]
}

/// Builds a flattened `&&`/`||` node the way the parser does.
fn logical(op: LogicalOp, parts: Vec<Expr>) -> Expr {
    let mut operands = Vec::new();
    for p in parts {
        match p.kind {
            ExprKind::Logical {
                op: o,
                operands: inner,
            } if o == op => operands.extend(inner),
            kind => operands.push(node(kind)),
        }
    }
    node(ExprKind::Logical { op, operands })
}

/// Arbitrary well-formed trees.
fn tree() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            (inner.clone(), name()).prop_map(|(r, n)| node(ExprKind::Property {
                receiver: Box::new(r),
                name: Name::new(&n),
            })),
            (inner.clone(), inner.clone()).prop_map(|(r, i)| node(ExprKind::Index {
                receiver: Box::new(r),
                index: Box::new(i),
            })),
            inner.clone().prop_map(|r| node(ExprKind::Filter {
                receiver: Box::new(r)
            })),
            inner.clone().prop_map(|e| node(ExprKind::Not(Box::new(e)))),
            (binop(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| node(ExprKind::Binary {
                op,
                left: Box::new(l),
                right: Box::new(r),
            })),
            (prop::bool::ANY, prop::collection::vec(inner.clone(), 2..4)).prop_map(
                |(and, parts)| logical(if and { LogicalOp::And } else { LogicalOp::Or }, parts)
            ),
            (name(), prop::collection::vec(inner, 0..3)).prop_map(|(n, args)| {
                let name = Name::new(&n);
                let func = Func::from_name(&n);
                node(ExprKind::Call(Call { name, func, args }))
            }),
        ]
    })
}

/// Trees that mostly evaluate: literals, real context paths and built-in calls.
fn value_expr() -> impl Strategy<Value = Expr> {
    let paths = prop::sample::select(vec![
        "inputs.words",
        "inputs.fruits.*.name",
        "inputs.nothing",
        "inputs.num",
        "inputs.empty_list",
        "inputs.empty_obj",
        "inputs.mixed",
        "github.event_name",
        "github.event",
        "env.CI",
        "env.EMPTY",
        "matrix.node",
        "steps.build.outputs.count",
        "strategy.fail-fast",
        "inputs.words[1]",
        "inputs.numbers.*",
    ]);
    let base = prop_oneof![
        Just(node(ExprKind::Null)),
        any::<bool>().prop_map(|b| node(ExprKind::Bool(b))),
        number().prop_map(|n| node(ExprKind::Number(n))),
        "[ -~]{0,6}".prop_map(|s| node(ExprKind::String(Arc::from(s)))),
        paths.prop_map(|p| parse(p).expect("path parses")),
    ];
    base.prop_recursive(3, 16, 3, |inner| {
        let call = |f: Func, args: Vec<Expr>| {
            node(ExprKind::Call(Call {
                name: Name::new(f.name()),
                func: Some(f),
                args,
            }))
        };
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(move |(a, b)| call(Func::Contains, vec![a, b])),
            inner.clone().prop_map(move |a| call(Func::ToJson, vec![a])),
            inner.clone().prop_map(move |a| call(Func::Join, vec![a])),
            inner.clone().prop_map(|e| node(ExprKind::Not(Box::new(e)))),
            (binop(), inner.clone(), inner.clone()).prop_map(|(op, l, r)| node(ExprKind::Binary {
                op,
                left: Box::new(l),
                right: Box::new(r),
            })),
            (prop::bool::ANY, inner.clone(), inner).prop_map(|(and, a, b)| logical(
                if and { LogicalOp::And } else { LogicalOp::Or },
                vec![a, b]
            )),
        ]
    })
}

/// Fragments that combine into plausible (and implausible) expression text.
fn token_soup() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "github",
        "inputs",
        "env",
        ".",
        ".*",
        "[*]",
        "[",
        "]",
        "(",
        ")",
        ",",
        "!",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "&&",
        "||",
        "'a'",
        "''",
        "'",
        "1",
        "-1",
        ".5",
        "0xff",
        "1e3",
        "NaN",
        "null",
        "true",
        "false",
        "words",
        "fruits",
        "name",
        "0",
        "contains(",
        "format(",
        "fromJSON(",
        "toJSON(",
        "join(",
        "case(",
        "success()",
        "hashFiles(",
        "'{0}'",
        "'{'",
        "'[1,2]'",
        "'{\"a\":1}'",
        " ",
        "${{",
        "}}",
        "+",
        "\"",
        "*",
        "=",
    ]);
    prop::collection::vec(tokens, 0..24).prop_map(|v| v.concat())
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Value::Array(x), Value::Array(y)) => {
            Arc::ptr_eq(x, y)
                || x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same_value(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            Arc::ptr_eq(x, y)
                || x.len() == y.len()
                    && x.iter()
                        .zip(y.iter())
                        .all(|((kp, p), (kq, q))| kp == kq && same_value(p, q))
        }
        _ => a == b,
    }
}

fn not(e: &Expr) -> Expr {
    node(ExprKind::Not(Box::new(e.clone())))
}

fn bin(op: BinOp, a: &Expr, b: &Expr) -> Expr {
    node(ExprKind::Binary {
        op,
        left: Box::new(a.clone()),
        right: Box::new(b.clone()),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn print_then_parse_round_trips(e in tree()) {
        let printed = e.to_string();
        let again = parse(&printed);
        prop_assert!(again.is_ok(), "`{}` does not parse: {:?}", printed, again.err());
        let again = again.expect("checked");
        prop_assert_eq!(&again, &e, "`{}` re-parses as `{}`", printed, again);
        prop_assert_eq!(again.to_string(), printed);
    }

    #[test]
    fn not_is_negated_truthiness(e in value_expr()) {
        let ctx = TestCtx::new();
        if let Ok(v) = eval(&e, &ctx) {
            let n = eval(&not(&e), &ctx).expect("`!` of a value that evaluates");
            prop_assert_eq!(n, Value::Bool(!v.is_truthy()));
        }
    }

    #[test]
    fn equality_is_symmetric(a in value_expr(), b in value_expr()) {
        let ctx = TestCtx::new();
        let ab = eval(&bin(BinOp::Eq, &a, &b), &ctx).map_err(|e| e.message);
        let ba = eval(&bin(BinOp::Eq, &b, &a), &ctx).map_err(|e| e.message);
        if let (Ok(x), Ok(y)) = (&ab, &ba) {
            prop_assert_eq!(x, y, "`{}` vs `{}`", a, b);
            let ne = eval(&bin(BinOp::Ne, &a, &b), &ctx).expect("`!=` evaluates like `==`");
            prop_assert_eq!(ne, Value::Bool(x != &Value::Bool(true)));
        }
    }

    #[test]
    fn and_or_return_an_operand(a in value_expr(), b in value_expr(), and in any::<bool>()) {
        let ctx = TestCtx::new();
        let op = if and { LogicalOp::And } else { LogicalOp::Or };
        let e = logical(op, vec![a.clone(), b.clone()]);
        if let Ok(v) = eval(&e, &ctx) {
            let va = eval(&a, &ctx).expect("left evaluated already");
            let picks_left = va.is_truthy() != and;
            if picks_left {
                prop_assert!(same_value(&v, &va), "`{}` gave {:?}, left is {:?}", e, v, va);
            } else {
                let vb = eval(&b, &ctx).expect("right evaluated already");
                prop_assert!(same_value(&v, &vb), "`{}` gave {:?}, right is {:?}", e, v, vb);
            }
        }
    }

    #[test]
    fn ordering_is_consistent(a in value_expr(), b in value_expr()) {
        let ctx = TestCtx::new();
        let get = |op| eval(&bin(op, &a, &b), &ctx).ok().and_then(|v| v.as_bool());
        if let (Some(lt), Some(gt), Some(le), Some(ge), Some(eq)) =
            (get(BinOp::Lt), get(BinOp::Gt), get(BinOp::Le), get(BinOp::Ge), get(BinOp::Eq))
        {
            prop_assert!(!(lt && gt));
            prop_assert_eq!(le, lt || eq);
            prop_assert_eq!(ge, gt || eq);
        }
    }

    #[test]
    fn parse_never_panics(s in ".{0,64}") {
        let _ = parse(&s);
        let _ = Template::parse(&s);
        let _ = parse_condition(&s);
    }

    #[test]
    fn nothing_panics_on_token_soup(s in token_soup()) {
        let ctx = TestCtx::new();
        if let Ok(e) = parse(&s) {
            let _ = eval(&e, &ctx);
            let _ = check(&e, &Scope::default());
            let again = parse(&e.to_string());
            prop_assert!(again.is_ok(), "`{}` prints as unparsable `{}`", s, e);
        }
        if let Ok(t) = Template::parse(&s) {
            let _ = t.eval(&ctx);
        }
        if let Ok(c) = parse_condition(&s) {
            let _ = c.eval(&ctx);
        }
    }

    #[test]
    fn eval_never_panics_on_trees(e in tree()) {
        let ctx = TestCtx::new();
        let _ = eval(&e, &ctx);
        let _ = check(&e, &Scope::default());
    }
}

#[test]
fn hostile_inputs_are_rejected_without_overflow() {
    for s in [
        "(".repeat(100_000),
        "(".repeat(20_000),
        "!".repeat(20_000),
        format!("{}a", "!".repeat(20_000)),
        "a[".repeat(10_000),
        "f(".repeat(10_000),
        "a.".repeat(10_000),
        format!("{}1{}", "[".repeat(5000), "]".repeat(5000)),
        "'".repeat(30_000),
        "${{".repeat(7000),
    ] {
        assert!(parse(&s).is_err());
        let _ = Template::parse(&s);
        let _ = parse_condition(&s);
    }
    // Long but legal: a flat chain and deep redundant grouping.
    let chain = vec!["true"; 2000].join(" && ");
    let e = parse(&chain).expect("a flat chain is within the depth limit");
    assert_eq!(eval(&e, &TestCtx::new()), Ok(Value::Bool(true)));
    let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(parse(&deep).is_ok());
}

#[test]
fn exponential_format_is_bounded() {
    let mut src = "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'".to_owned();
    for _ in 0..40 {
        src = format!("format('{{0}}{{0}}{{0}}{{0}}', {src})");
    }
    let e = parse(&src).expect("within limits");
    let err = eval(&e, &TestCtx::new()).expect_err("grows past the size limit");
    assert!(err.message.contains("maximum size"), "{}", err.message);
}

/// Parsing uses explicit stacks and the tree depth is capped at 50, so even the worst legal and
/// illegal inputs fit in a small thread stack (debug builds have large frames; 512 KiB is a
/// quarter of Rust's default).
#[test]
fn fits_in_a_small_stack() {
    let worker = std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(|| {
            let ctx = TestCtx::new();
            let deepest = format!("{}true", "!".repeat(49));
            let e = parse(&deepest).expect("depth 50 is allowed");
            assert_eq!(eval(&e, &ctx), Ok(Value::Bool(false)));
            let _ = check(&e, &Scope::default());
            let _ = e.to_string();
            let nested_calls = format!("{}1{}", "join(".repeat(49), ")".repeat(49));
            let e = parse(&nested_calls).expect("depth 50 is allowed");
            assert!(eval(&e, &ctx).is_ok());
            let json = format!("fromJSON('{}{}')", "[".repeat(64), "]".repeat(64));
            let e = parse(&json).expect("parses");
            let v = eval(&e, &ctx).expect("64 levels of JSON are allowed");
            let _ = v.to_json_pretty();
            for s in [
                "(".repeat(20_000),
                format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000)),
                "!".repeat(20_000),
                "a[".repeat(10_000),
                format!("fromJSON('{}')", "[".repeat(20_000)),
            ] {
                if let Ok(e) = parse(&s) {
                    let _ = eval(&e, &ctx);
                }
            }
        })
        .expect("spawns");
    worker.join().expect("no stack overflow");
}
