//! pipe's built-in actions (checkout, cache, artifacts, scan, bench, image, deploy).
//!
//! The runner defines the action registry; this crate fills it. Nothing is built in yet.
