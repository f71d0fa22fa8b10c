//! GitHub Actions expressions: lexer, parser, values, evaluation and templates.
//!
//! (Being built; see issue "Semantics".)

pub mod number;
