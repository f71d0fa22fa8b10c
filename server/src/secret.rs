//! Masking secrets in stored logs, and HMAC signatures of webhooks.

use aho_corasick::{AhoCorasick, MatchKind};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

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
