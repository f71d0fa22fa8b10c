//! pipe's content-addressed store.
//!
//! This crate knows nothing about workflows or jobs: it stores blobs by digest and maps keys
//! to manifests. The step cache, `actions/cache` and remote backends build on it.

pub mod digest;

pub use digest::{Digest, Hasher};
