//! pipe's built-in actions (checkout, cache, artifacts, scan, bench, image, deploy).
//!
//! The runner defines the action registry; this crate fills it. `scan` (`pipe/scan@v1`, also behind `pipe scan`) is the first built-in.

pub mod bench;
pub mod reports;
pub mod scan;
