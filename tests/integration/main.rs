//! Integration tests that drive the real `pipe` binary.
//!
//! `common` runs the binary and lays out the validation corpus; `corpus` checks pipe against
//! the expected findings in `tests/validate/` and against actionlint's recorded verdicts;
//! `snapshots` pins the rendered output of every rule and format; `bad_input` feeds files no
//! workflow should be; `plan` drives `list` and `graph`; `conformance` runs the end-to-end
//! workflows of `tests/conformance/` and the interrupt tests; `builtins` runs the built-in
//! GitHub actions across runs; `cache` drives `pipe cache` and its fault tests; `scan` drives
//! `pipe scan` (vulnerabilities); `scan_targets` drives secrets, misconfiguration, rootfs and
//! image targets; `bench` drives `pipe bench` and the job `reports:` key; `promote` drives builds, gates,
//! approvals and the ledger end to end; `promote_deploy` drives deploys, verifies and
//! rollbacks through `pipe run` and `pipe promote` behind real nginx; `deploy` drives `pipe rollback`, `evidence` and `metrics`;
//! `server` drives `pipe server`, `pipe agent` and `pipe submit` on a real PostgreSQL with their
//! failure cases; `web` drives the server's metrics, readiness, web UI (headless Chromium) and
//! the Compose deployment; `docker` runs jobs in containers on the real engine; `image` drives `pipe image`
//! against skopeo, umoci, a real registry and the engine, and runs `pipelines/release.yml`.

mod bad_input;
mod bench;
mod builtins;
mod cache;
mod common;
mod conformance;
mod corpus;
mod deploy;
mod docker;
mod help;
mod image;
mod plan;
mod promote;
mod promote_deploy;
mod run_cli;
mod scan;
mod scan_targets;
mod server;
mod server_gc;
mod snapshots;
mod stepcache;
mod web;
