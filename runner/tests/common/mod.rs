//! Shared fixtures for the expression tests: a realistic context loaded from
//! `tests/data/expr_context.json`, with settable status and a `hashFiles` stub that echoes its
//! patterns so tests can see what was passed.

use std::sync::Arc;

use pipe_runner::expr::{Context, Object, StatusFn, Value};

/// The test context.
pub struct TestCtx {
    pub values: Object,
    /// `success`, `failure` or `cancelled`.
    pub status: &'static str,
}

impl Default for TestCtx {
    fn default() -> Self {
        TestCtx::new()
    }
}

impl TestCtx {
    /// The context from the data file, in a successful run.
    pub fn new() -> Self {
        TestCtx {
            values: load_context(),
            status: "success",
        }
    }
}

impl Context for TestCtx {
    fn named_value(&self, name: &str) -> Option<Value> {
        self.values.get(name).cloned()
    }

    fn status(&self, f: StatusFn) -> bool {
        match f {
            StatusFn::Always => true,
            StatusFn::Success => self.status == "success",
            StatusFn::Failure => self.status == "failure",
            StatusFn::Cancelled => self.status == "cancelled",
        }
    }

    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        Ok(format!("hash:{}", patterns.join("|")))
    }
}

/// The contexts from the data file; `env` is made case-sensitive.
pub fn load_context() -> Object {
    let text = include_str!("../data/expr_context.json");
    let json: serde_json::Value = serde_json::from_str(text).expect("context JSON is valid");
    let Value::Object(top) = Value::from_json(json) else {
        panic!("context must be an object");
    };
    let mut values = Object::new();
    for (name, v) in top.iter() {
        // `env` is the one case-sensitive context.
        let v = match (name, v) {
            ("env", Value::Object(o)) => {
                let mut env = Object::case_sensitive();
                for (k, x) in o.iter() {
                    env.insert(k, x.clone());
                }
                Value::Object(Arc::new(env))
            }
            _ => v.clone(),
        };
        values.insert(name, v);
    }
    values
}
