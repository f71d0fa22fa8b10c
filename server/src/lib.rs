//! `pipe server` and `pipe agent`: a PostgreSQL job queue behind a stateless HTTP API, and the
//! agent process that claims jobs from it and runs them with the runner.
//!
//! - [`db`]: the schema (versioned, embedded migrations) and every SQL statement: submit, claim
//!   (`FOR UPDATE SKIP LOCKED`), heartbeat, complete and the lease reaper, all fenced by
//!   `(job, attempt, job token)`.
//! - [`api`]: the request and response types of the HTTP API (`openapi.json` documents them).
//! - [`http`]: the axum server: authentication, long-poll claims, rate limits.
//! - [`agent`]: the agent: claim, run, heartbeat, stream logs, complete.
//! - [`client`]: the blocking HTTP client `pipe submit` and the tests use.
//! - [`gc`]: retention (artifacts, cache entries) and collection of unreferenced blobs.
//! - [`metrics`]: `/metrics` (Prometheus text), `/healthz` and `/readyz`.
//! - [`web`]: the web UI (runs, live logs, promotion approvals).

pub mod agent;
pub mod api;
pub mod blobs;
pub mod client;
pub mod db;
pub mod gc;
pub mod git;
pub mod http;
pub mod metrics;
pub mod plan;
pub mod secret;
pub mod testing;
pub mod web;
