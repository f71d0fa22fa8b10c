//! Promotion of builds through environments (issue 14; design in promotion.md §5).
//!
//! - [`ledger`]: the append-only, hash-chained, signed record of everything that happens.
//! - [`policy`]: environments, their gates and what makes a build, read from the trusted ref.
//! - [`build`]: builds registered from runs (subjects, evidence), listing and resolving.
//! - [`deploy`]: an ALLOWED promotion deployed and verified through `pipe-deploy`, its events
//!   in the ledger; rollbacks, the automatic-promotion hold and evidence statements.
//!
//! Nothing here prints or exits: the CLI renders results and maps errors to exit codes.

pub mod build;
pub mod deploy;
pub mod engine;

pub use jiff;
pub mod gates;
pub mod ledger;
pub mod policy;
pub mod state;
