//! Table-driven expression cases: `tests/data/expr_cases.txt` against the context in
//! `tests/data/expr_context.json`.
//!
//! The cases are data so that GitHub's behaviour can be read (and extended) as a list of facts,
//! one expression per line, without Rust around it. Each line is `expression => expected`, split
//! at the first ` => ` outside a quoted string (the last one if quotes do not balance); `expected` is a JSON value (plus `NaN`, `Infinity`, `-Infinity`, `-0`),
//! `error: <text>` for an evaluation error containing `<text>`, or `parse error: <text>`. A line
//! `@status success|failure|cancelled` sets what the status functions see for the lines after
//! it. Every case that parses is also printed canonically, re-parsed and re-evaluated, which
//! must give the same tree and the same result.

mod common;

use common::TestCtx;
use pipe_runner::expr::{Value, eval, parse};

enum Expected {
    Value(serde_json::Value),
    Special(f64),
    EvalError(String),
    ParseError(String),
}

fn parse_expected(s: &str) -> Expected {
    if let Some(rest) = s.strip_prefix("parse error:") {
        return Expected::ParseError(rest.trim().to_owned());
    }
    if let Some(rest) = s.strip_prefix("error:") {
        return Expected::EvalError(rest.trim().to_owned());
    }
    match s {
        "NaN" => return Expected::Special(f64::NAN),
        "Infinity" => return Expected::Special(f64::INFINITY),
        "-Infinity" => return Expected::Special(f64::NEG_INFINITY),
        "-0" => return Expected::Special(-0.0),
        _ => {}
    }
    Expected::Value(serde_json::from_str(s).unwrap_or_else(|e| panic!("bad expected `{s}`: {e}")))
}

fn same_number(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a == b && a.is_sign_negative() == b.is_sign_negative())
}

fn matches(v: &Value, j: &serde_json::Value) -> bool {
    match (v, j) {
        (Value::Null, serde_json::Value::Null) => true,
        (Value::Bool(a), serde_json::Value::Bool(b)) => a == b,
        (Value::Number(a), serde_json::Value::Number(b)) => {
            b.as_f64().is_some_and(|b| same_number(*a, b))
        }
        (Value::String(a), serde_json::Value::String(b)) => **a == **b,
        (Value::Array(a), serde_json::Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| matches(x, y))
        }
        (Value::Object(a), serde_json::Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ka, va), (kb, vb))| ka == kb && matches(va, vb))
        }
        _ => false,
    }
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(*x, *y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| same_value(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((kp, p), (kq, q))| kp == kq && same_value(p, q))
        }
        _ => a == b,
    }
}

fn same_result(a: &Result<Value, String>, b: &Result<Value, String>) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => same_value(x, y),
        (Err(x), Err(y)) => x == y,
        _ => false,
    }
}

/// The first ` => ` outside a single-quoted string literal, or the last one when quotes do not
/// balance (cases with unterminated strings).
fn separator(line: &str) -> Option<usize> {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        if c == '\'' {
            in_string = !in_string;
        } else if !in_string && line[i..].starts_with(" => ") {
            return Some(i);
        }
    }
    line.rfind(" => ")
}

#[test]
fn expression_cases() {
    let text = include_str!("data/expr_cases.txt");
    let mut ctx = TestCtx::new();
    let mut failures = Vec::new();
    let mut count = 0;
    for (lineno, line) in text.lines().enumerate() {
        let line_no = lineno + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(status) = trimmed.strip_prefix("@status ") {
            ctx.status = match status.trim() {
                "success" => "success",
                "failure" => "failure",
                "cancelled" => "cancelled",
                other => panic!("line {line_no}: unknown status `{other}`"),
            };
            continue;
        }
        let Some(at) = separator(line) else {
            panic!("line {line_no}: no ` => ` in `{line}`");
        };
        let (src, expected) = (&line[..at], line[at + 4..].trim());
        count += 1;
        let expected = parse_expected(expected);
        let parsed = parse(src);
        let mut fail = |msg: String| failures.push(format!("line {line_no}: `{src}`: {msg}"));
        let expr = match (parsed, &expected) {
            (Err(e), Expected::ParseError(want)) => {
                if !e.message.contains(want.as_str()) {
                    fail(format!(
                        "parse error `{}` does not contain `{want}`",
                        e.message
                    ));
                }
                continue;
            }
            (Err(e), _) => {
                fail(format!(
                    "unexpected parse error: {} at {}",
                    e.message, e.offset
                ));
                continue;
            }
            (Ok(e), Expected::ParseError(want)) => {
                fail(format!("parsed as `{e}`, expected parse error `{want}`"));
                continue;
            }
            (Ok(e), _) => e,
        };
        let result = eval(&expr, &ctx);
        match (&result, &expected) {
            (Ok(v), Expected::Value(j)) if matches(v, j) => {}
            (Ok(Value::Number(n)), Expected::Special(want)) if same_number(*n, *want) => {}
            (Err(e), Expected::EvalError(want)) if e.message.contains(want.as_str()) => {}
            (Ok(v), _) => fail(format!("got {}", v.to_json_pretty())),
            (Err(e), _) => fail(format!("got error `{}`", e.message)),
        }
        // The canonical form must parse back to the same tree and evaluate the same way.
        let printed = expr.to_string();
        match parse(&printed) {
            Ok(again) if again == expr => {
                let a = result.clone().map_err(|e| e.message);
                let b = eval(&again, &ctx).map_err(|e| e.message);
                if !same_result(&a, &b) {
                    fail(format!("canonical form `{printed}` evaluates differently"));
                }
            }
            Ok(again) => fail(format!("canonical form `{printed}` re-parses as `{again}`")),
            Err(e) => fail(format!(
                "canonical form `{printed}` does not parse: {}",
                e.message
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(count >= 400, "only {count} cases");
    println!("{count} expression cases passed");
}
