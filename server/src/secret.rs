//! Masking secrets in stored logs, HMAC signatures of webhooks, the server key (secrets
//! encrypted at rest, signed cache grants) and which secrets a job references.
//!
//! - [`ServerKey`]: 32 random bytes in a file created `0600` on the server's first start
//!   (`server.key` in its data folder). Two keys are derived from it: one seals run secrets
//!   (XChaCha20-Poly1305, a random 24-byte nonce each, the secret's name as associated data,
//!   stored as `pipe1:BASE64(nonce ‖ ciphertext)`), one signs cache grants (HMAC-SHA-256).
//!   Servers sharing a database must share the key file.
//! - [`referenced`]: the secret names a job's text reads inside `${{ }}` (or every secret, for
//!   `toJSON(secrets)`, `secrets[expr]` and `secrets: inherit`); a claimed job receives only
//!   those.

use std::collections::BTreeSet;
use std::path::Path;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{KeyInit, Mac};
use rand::RngExt;
use sha2::{Digest, Sha256};

/// The prefix of a sealed secret value.
const SEALED: &str = "pipe1:";

/// The server's key (see the module docs).
#[derive(Clone)]
pub struct ServerKey {
    seal: [u8; 32],
    sign: [u8; 32],
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(…)")
    }
}

fn derive(root: &[u8], label: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update([0]);
    h.update(root);
    h.finalize().into()
}

impl ServerKey {
    /// A key from 32 root bytes.
    pub fn from_bytes(root: &[u8; 32]) -> ServerKey {
        ServerKey {
            seal: derive(root, "pipe server secrets"),
            sign: derive(root, "pipe server grants"),
        }
    }

    /// A random key that lives only in this process (tests, tools that seal nothing durable).
    pub fn ephemeral() -> ServerKey {
        let mut root = [0u8; 32];
        rand::rng().fill(&mut root);
        ServerKey::from_bytes(&root)
    }

    /// Reads the key file, creating it (`0600`, 32 random bytes as hex) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<ServerKey, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|_| {
                    format!(
                        "`{}`: not a pipe server key (64 hex digits)",
                        path.display()
                    )
                })?;
                let root: [u8; 32] = bytes.try_into().map_err(|_| {
                    format!(
                        "`{}`: not a pipe server key (64 hex digits)",
                        path.display()
                    )
                })?;
                Ok(ServerKey::from_bytes(&root))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
                }
                let mut root = [0u8; 32];
                rand::rng().fill(&mut root);
                // Written under a temporary name and linked into place, so two servers starting
                // at once agree on one key (the loser reads the winner's).
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| format!("cannot create `{}`: {e}", tmp.display()))?;
                f.write_all(format!("{}\n", hex::encode(root)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("cannot write `{}`: {e}", tmp.display()))?;
                let linked = std::fs::hard_link(&tmp, path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(ServerKey::from_bytes(&root)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        ServerKey::load_or_create(path)
                    }
                    Err(e) => Err(format!("cannot create `{}`: {e}", path.display())),
                }
            }
            Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
        }
    }

    /// Seals a secret's value (`name` is bound to it: a sealed value moved to another name
    /// does not open).
    pub fn seal(&self, name: &str, value: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill(&mut nonce);
        let Ok(cipher) =
            <XChaCha20Poly1305 as chacha20poly1305::KeyInit>::new_from_slice(&self.seal)
        else {
            return String::new();
        };
        let nonce_arr = XNonce::from(nonce);
        match cipher.encrypt(
            &nonce_arr,
            Payload {
                msg: value.as_bytes(),
                aad: name.as_bytes(),
            },
        ) {
            Ok(ct) => {
                let mut out = nonce.to_vec();
                out.extend_from_slice(&ct);
                format!(
                    "{SEALED}{}",
                    base64::engine::general_purpose::STANDARD.encode(out)
                )
            }
            Err(_) => String::new(),
        }
    }

    /// Opens a sealed value; `None` when it was sealed with another key, under another name,
    /// or altered.
    pub fn open(&self, name: &str, sealed: &str) -> Option<String> {
        let b64 = sealed.strip_prefix(SEALED)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, ct) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let cipher =
            <XChaCha20Poly1305 as chacha20poly1305::KeyInit>::new_from_slice(&self.seal).ok()?;
        let pt = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: name.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(pt).ok()
    }

    /// HMAC-SHA-256 of `message` with the grant key, hex.
    pub fn sign(&self, message: &str) -> String {
        match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.sign) {
            Ok(mut mac) => {
                mac.update(message.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    /// Whether `sig` is [`ServerKey::sign`] of `message` (constant time).
    pub fn verify(&self, message: &str, sig: &str) -> bool {
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.sign) else {
            return false;
        };
        mac.update(message.as_bytes());
        mac.verify_slice(&sig).is_ok()
    }
}

/// The secrets a piece of workflow text reads: `Some(names)` (upper-cased, as GitHub compares
/// them), or `None` when it reads them all (`toJSON(secrets)`, `secrets[expr]`).
pub fn referenced(text: &str) -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find("${{") {
        let after = &rest[open + 3..];
        let close = after.find("}}").unwrap_or(after.len());
        let expr = &after[..close];
        if !scan_expr(expr, &mut names) {
            return None;
        }
        rest = &after[close..];
    }
    Some(names)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Adds the names `expr` reads; false when it reads every secret.
fn scan_expr(expr: &str, names: &mut BTreeSet<String>) -> bool {
    let b = expr.as_bytes();
    let lower = expr.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("secrets").map(|i| i + from) {
        from = i + 7;
        if i > 0 && (is_ident(b[i - 1]) || b[i - 1] == b'.') {
            continue;
        }
        if b.get(i + 7).is_some_and(|&c| is_ident(c)) {
            continue;
        }
        let mut j = i + 7;
        while b.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
            j += 1;
        }
        match b.get(j) {
            Some(b'.') => {
                let start = j + 1;
                let mut end = start;
                while b.get(end).is_some_and(|&c| is_ident(c)) {
                    end += 1;
                }
                if end == start {
                    return false;
                }
                names.insert(expr[start..end].to_ascii_uppercase());
            }
            Some(b'[') => {
                let mut k = j + 1;
                while b.get(k).is_some_and(|c| c.is_ascii_whitespace()) {
                    k += 1;
                }
                let Some(&q) = b.get(k).filter(|&&c| c == b'\'' || c == b'"') else {
                    return false;
                };
                let start = k + 1;
                let Some(len) = expr[start..].find(q as char) else {
                    return false;
                };
                names.insert(expr[start..start + len].to_ascii_uppercase());
            }
            _ => return false,
        }
    }
    true
}

/// Replaces every occurrence of a secret (longest first) with `***`.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if secrets.is_empty() {
        return text.to_owned();
    }
    match AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(&secrets)
    {
        Ok(ac) => ac.replace_all(text, &vec!["***"; secrets.len()]),
        // Building only fails on absurd sizes: mask nothing rather than lose the log line.
        Err(_) => text.to_owned(),
    }
}

/// Checks a GitHub-style `X-Hub-Signature-256` header (`sha256=HEX`) over the body.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The `X-Hub-Signature-256` value for a body.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_name() {
        let k = ServerKey::ephemeral();
        let sealed = k.seal("TOKEN", "hunter2");
        assert!(sealed.starts_with("pipe1:"), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            k.seal("TOKEN", "hunter2"),
            "a fresh nonce each time"
        );
        assert_eq!(k.open("TOKEN", &sealed).as_deref(), Some("hunter2"));
        assert_eq!(k.open("OTHER", &sealed), None);
        assert_eq!(ServerKey::ephemeral().open("TOKEN", &sealed), None);
        assert_eq!(k.open("TOKEN", "hunter2"), None);
    }

    #[test]
    fn the_key_file_is_created_private_once_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("d").join("server.key");
        let a = ServerKey::load_or_create(&p).expect("create");
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = ServerKey::load_or_create(&p).expect("read");
        assert_eq!(b.open("X", &a.seal("X", "v")).as_deref(), Some("v"));
        std::fs::write(&p, "nope").expect("write");
        let err = ServerKey::load_or_create(&p).expect_err("bad key");
        assert!(err.contains("server.key"), "{err}");
    }

    #[test]
    fn referenced_secrets_are_found_in_expressions_only() {
        let names = |t: &str| referenced(t).map(|s| s.into_iter().collect::<Vec<_>>());
        assert_eq!(
            names("run: echo ${{ secrets.Deploy_Key }} ${{ secrets['B'] }} secrets.C"),
            Some(vec!["B".to_owned(), "DEPLOY_KEY".to_owned()])
        );
        assert_eq!(names("run: echo no secrets here"), Some(vec![]));
        assert_eq!(names("x: ${{ toJSON(secrets) }}"), None);
        assert_eq!(names("x: ${{ secrets[matrix.k] }}"), None);
        assert_eq!(
            names("x: ${{ github.secrets_x || mysecrets.y }}"),
            Some(vec![])
        );
    }

    #[test]
    fn masks_longest_first() {
        let s = vec!["abc".to_owned(), "abcdef".to_owned()];
        assert_eq!(mask("x abcdef y abc", &s), "x *** y ***");
    }

    #[test]
    fn signatures_round_trip_and_reject_tampering() {
        let sig = sign(b"k", b"body");
        assert!(verify_signature(b"k", b"body", &sig));
        assert!(!verify_signature(b"k", b"body!", &sig));
        assert!(!verify_signature(b"other", b"body", &sig));
        assert!(!verify_signature(b"k", b"body", "sha1=00"));
    }

    proptest! {
        #[test]
        fn a_masked_text_never_contains_the_secret(
            pre in "[a-z ]{0,20}", secret in "[a-z]{4,12}", post in "[a-z ]{0,20}") {
            let out = mask(&format!("{pre}{secret}{post}"), std::slice::from_ref(&secret));
            prop_assert!(!out.contains(&secret));
        }
    }
}
