//! Ledger entries: the record, its canonical form and its hash.
//!
//! `hash = SHA-256("pipe-ledger-v1\n" ‖ JCS(entry without "hash" and "sig"))`, written
//! `sha256:<hex>`; `prev` is the previous entry's `hash` (the genesis entry's `prev` is
//! [`GENESIS_PREV`]). The stored form of an entry is the RFC 8785 (JCS) serialisation of the
//! whole entry, so any change to the stored bytes either breaks the JSON, changes the canonical
//! form or changes the hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Entry format version.
pub const VERSION: u32 = 1;

/// Domain separation prefix of entry hashes.
pub const HASH_PREFIX: &[u8] = b"pipe-ledger-v1\n";

/// The `prev` of the genesis entry.
pub const GENESIS_PREV: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// Entry kinds written by this crate. Kinds are plain strings so that later issues (deploy,
/// verify, rollback) add their own without changing the format.
pub mod kind {
    /// The first entry: ledger id and the system key.
    pub const GENESIS: &str = "ledger.genesis";
    /// A signed checkpoint over the chain so far.
    pub const CHECKPOINT: &str = "checkpoint";
    /// A run registered a build.
    pub const BUILD_REGISTERED: &str = "build.registered";
    /// Someone asked for a build in an environment.
    pub const PROMOTION_REQUESTED: &str = "promotion.requested";
    /// The gates were evaluated for a request.
    pub const GATE_EVALUATED: &str = "gate.evaluated";
    /// An approval (signed by the approver).
    pub const APPROVAL_GRANTED: &str = "approval.granted";
    /// An approval withdrawn.
    pub const APPROVAL_REVOKED: &str = "approval.revoked";
    /// A veto: the build may not enter the environment until a new request.
    pub const PROMOTION_REJECTED: &str = "promotion.rejected";
    /// The decision on a request (allowed or denied).
    pub const PROMOTION_DECIDED: &str = "promotion.decided";
    /// The environment's target release changed (until deploys exist, a promotion does this).
    pub const RELEASE_RECORDED: &str = "release.recorded";
    /// The environment was locked.
    pub const ENV_LOCKED: &str = "env.locked";
    /// The environment was unlocked.
    pub const ENV_UNLOCKED: &str = "env.unlocked";
    /// The policy digest differs from the last one recorded.
    pub const POLICY_CHANGED: &str = "policy.changed";
    /// A deny window was overridden (break glass).
    pub const WINDOW_OVERRIDDEN: &str = "window.overridden";
}

/// Who wrote an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The identity: an `allowed_signers` principal for signed entries, else a user name.
    pub id: String,
    /// How the identity was established (`ssh:SHA256:…`), absent when claimed only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auth: Option<String>,
    /// Through what: `cli`, `run`, `system`.
    pub via: String,
}

impl Actor {
    /// The system itself (entries written on behalf of no person).
    pub fn system() -> Actor {
        Actor {
            id: "pipe".to_owned(),
            auth: None,
            via: "system".to_owned(),
        }
    }
}

/// A signature over the entry's `hash` string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sig {
    /// The key: `ed25519:<base64 public key>` for the system key, the SSH fingerprint
    /// (`SHA256:…`) for SSH signatures.
    pub keyid: String,
    /// `ed25519` (raw signature, base64) or `sshsig` (an armored SSH signature, namespace
    /// `pipe-ledger`).
    pub alg: String,
    /// The signature.
    pub sig: String,
}

/// One ledger entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Format version.
    pub v: u32,
    /// Position, from 0 (genesis).
    pub seq: u64,
    /// The previous entry's hash.
    pub prev: String,
    /// When, RFC 3339 UTC with seconds.
    pub time: String,
    /// What happened (see [`kind`]).
    pub kind: String,
    /// Who.
    pub actor: Actor,
    /// The environment concerned.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub env: Option<String>,
    /// The build concerned (`sha256:…`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub build: Option<String>,
    /// Kind-specific facts (digests and small values; no floats).
    pub body: serde_json::Value,
    /// Signature over `hash`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sig: Option<Sig>,
    /// This entry's hash.
    pub hash: String,
}

/// The hashed part of an entry (everything but `hash` and `sig`).
#[derive(Serialize)]
struct Core<'a> {
    v: u32,
    seq: u64,
    prev: &'a str,
    time: &'a str,
    kind: &'a str,
    actor: &'a Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    env: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build: Option<&'a str>,
    body: &'a serde_json::Value,
}

/// A value could not be canonicalised.
#[derive(Debug, thiserror::Error)]
#[error("cannot canonicalise a ledger entry: {0}")]
pub struct CanonError(String);

/// RFC 8785 canonical JSON of any value.
pub fn canonical<T: Serialize>(value: &T) -> Result<Vec<u8>, CanonError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| CanonError(e.to_string()))
}

/// `sha256:<hex>` of bytes.
pub fn sha256_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Entry {
    /// Computes the hash the entry should have.
    pub fn compute_hash(&self) -> Result<String, CanonError> {
        let core = Core {
            v: self.v,
            seq: self.seq,
            prev: &self.prev,
            time: &self.time,
            kind: &self.kind,
            actor: &self.actor,
            env: self.env.as_deref(),
            build: self.build.as_deref(),
            body: &self.body,
        };
        let mut h = Sha256::new();
        h.update(HASH_PREFIX);
        h.update(canonical(&core)?);
        Ok(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The stored form: canonical JSON of the whole entry.
    pub fn to_canonical(&self) -> Result<String, CanonError> {
        let bytes = canonical(self)?;
        String::from_utf8(bytes).map_err(|e| CanonError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            v: VERSION,
            seq: 1,
            prev: GENESIS_PREV.to_owned(),
            time: "2026-09-01T14:03:22Z".to_owned(),
            kind: kind::APPROVAL_GRANTED.to_owned(),
            actor: Actor {
                id: "alice".to_owned(),
                auth: None,
                via: "cli".to_owned(),
            },
            env: Some("production".to_owned()),
            build: None,
            body: serde_json::json!({"rule": "r", "a": [1, 2]}),
            sig: None,
            hash: String::new(),
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_skips_absent_fields() {
        let mut e = entry();
        e.hash = e.compute_hash().expect("hash");
        let text = e.to_canonical().expect("canonical");
        assert!(text.starts_with(r#"{"actor":{"id":"alice","via":"cli"},"body":{"a":[1,2],"rule":"r"},"env":"production","hash":"sha256:"#), "{text}");
        let back: Entry = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, e);
    }

    #[test]
    fn hash_covers_every_field_but_hash_and_sig() {
        let base = entry();
        let h = base.compute_hash().expect("hash");
        let mut e = base.clone();
        e.sig = Some(Sig {
            keyid: "k".into(),
            alg: "ed25519".into(),
            sig: "s".into(),
        });
        e.hash = "x".into();
        assert_eq!(e.compute_hash().expect("hash"), h);
        let changes: [fn(&mut Entry); 8] = [
            |e| e.seq = 2,
            |e| e.prev.push('0'),
            |e| e.time = "2026-09-01T14:03:23Z".into(),
            |e| e.kind = "x".into(),
            |e| e.actor.id = "bob".into(),
            |e| e.env = None,
            |e| e.build = Some("b".into()),
            |e| e.body = serde_json::json!({"rule": "r", "a": [2, 1]}),
        ];
        for change in changes {
            let mut e = base.clone();
            change(&mut e);
            assert_ne!(e.compute_hash().expect("hash"), h);
        }
    }
}
