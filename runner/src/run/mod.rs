//! Running a plan: the scheduler, the step runner and what steps talk to the runner through
//! (environment files, workflow commands) and masking.

pub mod action;
pub mod call;
pub mod commands;
pub mod concurrency;
pub mod envfile;
pub mod filters;
pub mod job;
pub mod mask;
pub mod output;
pub mod report;
pub mod results;
pub mod scheduler;
pub mod setup;
pub mod stepcache;
