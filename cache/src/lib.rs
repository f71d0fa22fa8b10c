//! pipe's content-addressed store and hashing.
//!
//! This crate knows nothing about workflows or jobs: it hashes files, builds keys from parts
//! the caller supplies, stores blobs by digest and maps keys to manifests, locally and on
//! remote caches. The step cache and `actions/cache` build on it.
//!
//! - [`hash`]: SHA-256 of files and trees, with a persistent stat cache and git's index as
//!   fast paths.
//! - [`key`]: [`KeyBuilder`], the canonical, versioned key encoding, and [`Preimage`] diffs.
//! - [`store`]: [`LocalStore`], the `cas-v1/` folder: blobs, entries, locks, gc, verify.
//! - [`manifest`]: [`Manifest`], what an entry holds; [`restore`]: writing it back safely.
//! - [`remote`]: the Bazel HTTP remote-cache protocol (and S3 with the `s3` feature), and
//!   [`Cache`], the local store with an optional remote that only ever costs a warning.

pub mod cache;
pub mod digest;
pub mod fsutil;
pub mod hash;
pub mod key;
pub mod lock;
pub mod manifest;
pub mod pack;
pub mod remote;
pub mod restore;
pub mod store;

pub use cache::{Cache, Lookup, MissReason, RemoteMode, SaveOutcome, Source};
pub use digest::{Digest, Hasher};
pub use hash::{FileDigest, TreeHasher, TreeSnapshot};
pub use key::{Key, KeyBuilder, Preimage};
pub use manifest::{Attachment, BlobRef, FileEntry, FileKind, Manifest, PackRef};
pub use restore::{RestoreError, RestoreReport};
pub use store::{EntryBuilder, EntryKey, GcLimits, LocalStore, StoreError, StoreOptions};
