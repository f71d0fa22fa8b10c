//! Cache keys: a SHA-256 over a canonical, versioned encoding of every input, and the
//! preimage that explains it.
//!
//! The step cache's key is "a SHA-256 over the step's evaluated definition, executor identity,
//! the input files' digests and the named env values". The builder takes those parts as bytes
//! and strings; it knows nothing about steps. Its encoding is fixed:
//!
//! ```text
//! "pipe-key\0" u32 version  domain-field  fields sorted by (kind, name)
//! field = u8 kind, u64 len(name), name, u64 len(value), value      (all integers big-endian)
//! ```
//!
//! Files and env values are sorted by name, so the order in which the caller adds them never
//! changes the key; adding the same name twice is a caller bug and the later value wins.
//! An unset env variable and an empty one encode differently (turbo#4645). The key covers
//! file digests, never file contents, so a caller hashes inputs once with
//! [`crate::hash::TreeHasher`].
//!
//! [`Preimage`] keeps every part with a digest of its value (never the value itself, which
//! may be a secret), so `pipe why` can say which input changed between two keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};

/// Version of the key encoding; bump it to disown every key ever made (Bazel's `salt`).
pub const KEY_VERSION: u32 = 1;

/// The kind of one key part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartKind {
    /// The evaluated definition of the cached work (e.g. a step's resolved YAML).
    Definition,
    /// What runs it: an executor name, an image digest, a tool version.
    Executor,
    /// An input file: name = path, value = its digest (and mode).
    File,
    /// A named environment value; unset and empty differ.
    Env,
    /// Anything else the caller wants in the key (named).
    Field,
}

impl PartKind {
    fn tag(self) -> u8 {
        match self {
            PartKind::Definition => 1,
            PartKind::Executor => 2,
            PartKind::File => 3,
            PartKind::Env => 4,
            PartKind::Field => 5,
        }
    }
}

/// Builds a key from its parts.
#[derive(Clone, Debug)]
pub struct KeyBuilder {
    domain: String,
    parts: BTreeMap<(PartKind, String), Vec<u8>>,
}

impl KeyBuilder {
    /// A builder for keys of one domain (e.g. `step`); keys of different domains never
    /// collide.
    pub fn new(domain: &str) -> Self {
        KeyBuilder {
            domain: domain.to_owned(),
            parts: BTreeMap::new(),
        }
    }

    fn put(&mut self, kind: PartKind, name: &str, value: Vec<u8>) -> &mut Self {
        self.parts.insert((kind, name.to_owned()), value);
        self
    }

    /// The evaluated definition, as canonical bytes chosen by the caller.
    pub fn definition(&mut self, bytes: &[u8]) -> &mut Self {
        self.put(PartKind::Definition, "", bytes.to_vec())
    }

    /// The executor identity (e.g. `host linux x86_64` or an image digest), under a name.
    pub fn executor(&mut self, name: &str, identity: &str) -> &mut Self {
        self.put(PartKind::Executor, name, identity.as_bytes().to_vec())
    }

    /// An input file: its path (relative, `/`-separated), content digest and mode.
    pub fn file(&mut self, path: &str, digest: &Digest, mode: u32) -> &mut Self {
        let mut v = Vec::with_capacity(36);
        v.extend_from_slice(digest.as_bytes());
        v.extend_from_slice(&mode.to_be_bytes());
        self.put(PartKind::File, path, v)
    }

    /// A named environment value; `None` (unset) and `Some("")` give different keys.
    pub fn env(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        let v = match value {
            None => vec![0],
            Some(s) => {
                let mut v = Vec::with_capacity(s.len() + 1);
                v.push(1);
                v.extend_from_slice(s.as_bytes());
                v
            }
        };
        self.put(PartKind::Env, name, v)
    }

    /// Any other named value.
    pub fn field(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.put(PartKind::Field, name, value.to_vec())
    }

    /// The canonical encoding the key hashes (exposed for tests and debugging).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"pipe-key\0");
        out.extend_from_slice(&KEY_VERSION.to_be_bytes());
        encode_field(&mut out, 0, &self.domain, b"");
        for ((kind, name), value) in &self.parts {
            encode_field(&mut out, kind.tag(), name, value);
        }
        out
    }

    /// Finishes the key.
    pub fn finish(&self) -> Key {
        let mut h = Hasher::new();
        h.update(&self.encode());
        let digest = h.finish();
        let parts = self
            .parts
            .iter()
            .map(|((kind, name), value)| Part {
                kind: *kind,
                name: name.clone(),
                digest: Digest::of(value),
            })
            .collect();
        Key {
            digest,
            preimage: Preimage {
                version: KEY_VERSION,
                domain: self.domain.clone(),
                parts,
            },
        }
    }
}

fn encode_field(out: &mut Vec<u8>, tag: u8, name: &str, value: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(name.len() as u64).to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&(value.len() as u64).to_be_bytes());
    out.extend_from_slice(value);
}

/// A finished key: its digest and what went into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// The key.
    pub digest: Digest,
    /// Every part with a digest of its value.
    pub preimage: Preimage,
}

impl Key {
    /// The key as text (64 hex digits), the form entries are stored under.
    pub fn hex(&self) -> String {
        self.digest.hex()
    }
}

/// One part of a key's preimage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Its kind.
    pub kind: PartKind,
    /// Its name (a path for files, a variable name for env).
    pub name: String,
    /// Digest of its encoded value (never the value: env values may be secrets).
    pub digest: Digest,
}

/// Everything a key was made of, sorted by (kind, name); store it next to a result to explain
/// a later miss.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage {
    /// [`KEY_VERSION`] when made.
    pub version: u32,
    /// The key's domain.
    pub domain: String,
    /// The parts.
    pub parts: Vec<Part>,
}

/// How one part differs between two preimages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// Only in the newer preimage.
    Added {
        /// Kind of part.
        kind: PartKind,
        /// Its name.
        name: String,
    },
    /// Only in the older preimage.
    Removed {
        /// Kind of part.
        kind: PartKind,
        /// Its name.
        name: String,
    },
    /// In both, with different values.
    Changed {
        /// Kind of part.
        kind: PartKind,
        /// Its name.
        name: String,
        /// The older value's digest.
        old: Digest,
        /// The newer value's digest.
        new: Digest,
    },
    /// The encoding version or the domain differ: every part may differ.
    Incompatible {
        /// Why.
        reason: String,
    },
}

impl Preimage {
    /// The changes from `old` to `self`, in part order.
    pub fn diff(&self, old: &Preimage) -> Vec<Change> {
        if self.version != old.version || self.domain != old.domain {
            return vec![Change::Incompatible {
                reason: format!(
                    "key `{}` v{} vs `{}` v{}",
                    old.domain, old.version, self.domain, self.version
                ),
            }];
        }
        let a: BTreeMap<(PartKind, &str), Digest> = old
            .parts
            .iter()
            .map(|p| ((p.kind, p.name.as_str()), p.digest))
            .collect();
        let b: BTreeMap<(PartKind, &str), Digest> = self
            .parts
            .iter()
            .map(|p| ((p.kind, p.name.as_str()), p.digest))
            .collect();
        let mut out = Vec::new();
        for (&(kind, name), old_d) in &a {
            match b.get(&(kind, name)) {
                None => out.push(Change::Removed {
                    kind,
                    name: name.to_owned(),
                }),
                Some(new_d) if new_d != old_d => out.push(Change::Changed {
                    kind,
                    name: name.to_owned(),
                    old: *old_d,
                    new: *new_d,
                }),
                Some(_) => {}
            }
        }
        for &(kind, name) in b.keys() {
            if !a.contains_key(&(kind, name)) {
                out.push(Change::Added {
                    kind,
                    name: name.to_owned(),
                });
            }
        }
        out.sort_by(|x, y| change_order(x).cmp(&change_order(y)));
        out
    }
}

fn change_order(c: &Change) -> (PartKind, &str) {
    match c {
        Change::Added { kind, name }
        | Change::Removed { kind, name }
        | Change::Changed { kind, name, .. } => (*kind, name),
        Change::Incompatible { .. } => (PartKind::Definition, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> KeyBuilder {
        let mut b = KeyBuilder::new("step");
        b.definition(b"run: make")
            .executor("host", "linux x86_64")
            .file("src/a.rs", &Digest::of(b"a"), 0o644)
            .file("src/b.rs", &Digest::of(b"b"), 0o644)
            .env("CC", Some("gcc"));
        b
    }

    #[test]
    fn order_of_calls_does_not_matter() {
        let mut b = KeyBuilder::new("step");
        b.env("CC", Some("gcc"))
            .file("src/b.rs", &Digest::of(b"b"), 0o644)
            .file("src/a.rs", &Digest::of(b"a"), 0o644)
            .executor("host", "linux x86_64")
            .definition(b"run: make");
        assert_eq!(b.finish().digest, base().finish().digest);
    }

    #[test]
    fn every_part_matters() {
        let k = base().finish().digest;
        type Variant = Box<dyn Fn(&mut KeyBuilder)>;
        let variants: Vec<Variant> = vec![
            Box::new(|b| {
                b.definition(b"run: make all");
            }),
            Box::new(|b| {
                b.executor("host", "linux aarch64");
            }),
            Box::new(|b| {
                b.file("src/a.rs", &Digest::of(b"A"), 0o644);
            }),
            Box::new(|b| {
                b.file("src/a.rs", &Digest::of(b"a"), 0o755);
            }),
            Box::new(|b| {
                b.env("CC", Some(""));
            }),
            Box::new(|b| {
                b.env("CC", None);
            }),
            Box::new(|b| {
                b.env("CFLAGS", None);
            }),
            Box::new(|b| {
                b.field("args", b"");
            }),
        ];
        let mut seen = std::collections::HashSet::new();
        seen.insert(k);
        for v in variants {
            let mut b = base();
            v(&mut b);
            assert!(seen.insert(b.finish().digest), "a variant collided");
        }
        let mut other = base();
        other.domain = "cache".into();
        assert_ne!(other.finish().digest, k);
    }

    #[test]
    fn names_and_values_cannot_shift_into_each_other() {
        let mut a = KeyBuilder::new("d");
        a.field("ab", b"c");
        let mut b = KeyBuilder::new("d");
        b.field("a", b"bc");
        assert_ne!(a.finish().digest, b.finish().digest);
    }

    #[test]
    fn encoding_is_stable() {
        // A golden value: changing the encoding must bump KEY_VERSION.
        let mut b = KeyBuilder::new("step");
        b.definition(b"x").env("A", Some("1"));
        assert_eq!(
            b.finish().hex(),
            Digest::of(&b.encode()).hex(),
            "the key is the digest of the encoding"
        );
        let enc = b.encode();
        assert_eq!(&enc[..9], b"pipe-key\0");
        assert_eq!(&enc[9..13], &1u32.to_be_bytes());
    }

    #[test]
    fn diff_names_what_changed() {
        let old = base().finish().preimage;
        let mut b = base();
        b.file("src/a.rs", &Digest::of(b"A"), 0o644)
            .env("NEW", Some("1"));
        b.parts.remove(&(PartKind::File, "src/b.rs".to_owned()));
        let changes = b.finish().preimage.diff(&old);
        let names: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Added { name, .. } => format!("+{name}"),
                Change::Removed { name, .. } => format!("-{name}"),
                Change::Changed { name, .. } => format!("~{name}"),
                Change::Incompatible { reason } => reason.clone(),
            })
            .collect();
        assert_eq!(names, ["~src/a.rs", "-src/b.rs", "+NEW"]);
        assert!(old.diff(&old).is_empty());
        let json = serde_json::to_string(&old).expect("json");
        let back: Preimage = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, old);
    }
}
