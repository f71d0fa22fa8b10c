//! Promotion of builds through environments (issue 14; design in promotion.md §5).
//!
//! - [`ledger`]: the append-only, hash-chained, signed record of everything that happens.
//!
//! Nothing here prints or exits: the CLI renders results and maps errors to exit codes.

pub mod ledger;
