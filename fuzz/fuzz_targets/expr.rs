//! Fuzz target: parsing, checking and evaluating any expression text never panics, never
//! overflows the stack and stays bounded in memory (templates and `if:` conditions included).

#![no_main]

use libfuzzer_sys::fuzz_target;
use pipe_runner::context::Contexts;
use pipe_runner::expr::{self, Scope, Template, Value, parse_condition};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let ctx = Contexts::new()
        .with(
            "github",
            Value::object(vec![
                ("event_name", Value::str("push")),
                ("event", Value::object(vec![("ref", Value::str("refs/heads/main"))])),
            ]),
        )
        .with("matrix", Value::object(vec![("os", Value::str("linux"))]))
        .with("env", Value::object(vec![("A", Value::str("1"))]));
    if let Ok(e) = expr::parse(&text) {
        let _ = expr::check(&e, &Scope::default());
        let _ = expr::eval(&e, &ctx);
        // Printing and re-parsing must not panic either.
        let _ = expr::parse(&e.to_string());
    }
    if let Ok(t) = Template::parse(&text) {
        let _ = t.check(&Scope::default());
        let _ = t.eval(&ctx);
    }
    if let Ok(c) = parse_condition(&text) {
        let _ = c.eval(&ctx);
    }
});
