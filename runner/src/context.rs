//! Expression contexts: the named values (`github`, `env`, `matrix`, …) an expression sees,
//! and the status and `hashFiles` functions, as one [`crate::expr::Context`] implementation.
//!
//! Which contexts exist at a place is decided by the caller (the plan, the job runner), who
//! fills only those; an expression naming a missing one fails to evaluate.

use std::path::PathBuf;

use crate::expr::{Context, StatusFn, Value};

/// The job status functions see (step level: the job so far; job level: the ancestors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Status {
    /// Something failed (the job so far, or an ancestor job).
    pub failed: bool,
    /// The run or job was cancelled.
    pub cancelled: bool,
    /// An ancestor job was skipped (job level): `success()` is false, `failure()` too.
    pub skipped_ancestor: bool,
}

/// A set of contexts for evaluating expressions.
#[derive(Clone, Debug, Default)]
pub struct Contexts {
    values: Vec<(&'static str, Value)>,
    /// What `success()`, `failure()` and `cancelled()` see.
    pub status: Status,
    /// Workspace for `hashFiles`; `None` where `hashFiles` is not available.
    pub workspace: Option<PathBuf>,
}

impl Contexts {
    /// No contexts (room for the dozen a step has, so filling them does not regrow).
    pub fn new() -> Self {
        Contexts {
            values: Vec::with_capacity(12),
            ..Self::default()
        }
    }

    /// Sets (or replaces) a named context.
    pub fn set(&mut self, name: &'static str, value: Value) -> &mut Self {
        match self.values.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name, value)),
        }
        self
    }

    /// Builder form of [`Contexts::set`].
    #[must_use]
    pub fn with(mut self, name: &'static str, value: Value) -> Self {
        self.set(name, value);
        self
    }

    /// A named context.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl Context for Contexts {
    fn named_value(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
    }

    fn status(&self, f: StatusFn) -> bool {
        match f {
            StatusFn::Always => true,
            StatusFn::Success => {
                !self.status.failed && !self.status.cancelled && !self.status.skipped_ancestor
            }
            StatusFn::Failure => self.status.failed,
            StatusFn::Cancelled => self.status.cancelled,
        }
    }

    fn hash_files(&self, patterns: &[String]) -> Result<String, String> {
        match &self.workspace {
            Some(ws) => crate::hashfiles::hash_files(ws, patterns),
            None => Err("`hashFiles` is not available here".to_owned()),
        }
    }
}
