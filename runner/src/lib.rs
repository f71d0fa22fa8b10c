//! pipe's engine.
//!
//! Data flows one way: YAML text → [`yaml`] node tree with spans → [`workflow`] model (with
//! diagnostics) → plan (pure) → run → outcome, with one event stream feeding the reporter, the
//! summary and the store. See ARCHITECTURE.md at the repository root for the map and invariants.

pub mod check;
pub mod context;
pub mod diag;
pub mod dirs;
pub mod event;
pub mod executor;
pub mod exit;
pub mod expr;
pub mod gitinfo;
pub mod hashfiles;
pub mod plan;
pub mod project;
pub mod run;
pub mod source;
pub mod store;
pub mod workflow;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use source::{FileId, SourceFile, SourceMap, Span};
