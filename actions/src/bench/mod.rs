//! `pipe bench`: timing commands, ingesting other tools' results, history and the regression
//! gate. The CLI and the future `pipe/bench@v1` action call these functions; nothing here
//! prints or exits.

pub mod compare;
pub mod fingerprint;
pub mod history;
pub mod ingest;
pub mod run;
pub mod stats;
