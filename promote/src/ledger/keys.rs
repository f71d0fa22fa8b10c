//! Keys: the ledger's own ed25519 key (system entries, checkpoints, the signed head) and
//! people's SSH keys (approvals), checked against an `allowed_signers` file in git's format.

use std::io::Read as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};

use super::entry::Sig;

/// The SSH signature namespace of ledger entries (`ssh-keygen -Y sign -n pipe-ledger`).
pub const SSH_NAMESPACE: &str = "pipe-ledger";

/// A key problem.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("{what} `{path}`: {message}")]
    File {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A key or signature is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// Random bytes from `/dev/urandom`.
pub fn random<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut out = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut out))
        .map_err(|e| KeyError::File {
            what: "cannot read",
            path: "/dev/urandom".into(),
            message: e.to_string(),
        })?;
    Ok(out)
}

/// The ledger's own signing key.
#[derive(Clone)]
pub struct SystemKey {
    key: SigningKey,
}

impl std::fmt::Debug for SystemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemKey")
            .field("public", &self.public_id())
            .finish()
    }
}

impl SystemKey {
    /// A key from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> SystemKey {
        SystemKey {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh random key.
    pub fn generate() -> Result<SystemKey, KeyError> {
        Ok(SystemKey::from_seed(random()?))
    }

    /// Loads the key at `path`, creating it (mode 0600, atomically) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<SystemKey, KeyError> {
        let err = |what: &'static str| {
            move |e: std::io::Error| KeyError::File {
                what,
                path: path.display().to_string(),
                message: e.to_string(),
            }
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|e| KeyError::File {
                    what: "malformed key",
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::File {
                    what: "malformed key",
                    path: path.display().to_string(),
                    message: "expected 32 bytes of hex".into(),
                })?;
                Ok(SystemKey::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt as _;
                let key = SystemKey::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(err("cannot create"))?;
                }
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(err("cannot write"))?;
                f.write_all(hex::encode(key.key.to_bytes()).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(err("cannot write"))?;
                // Two processes creating the key at once: the first link wins, the other reads it.
                let linked = std::fs::hard_link(&tmp, path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(key),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        SystemKey::load_or_create(path)
                    }
                    Err(e) => Err(err("cannot write")(e)),
                }
            }
            Err(e) => Err(err("cannot read")(e)),
        }
    }

    /// `ed25519:<base64 public key>`.
    pub fn public_id(&self) -> String {
        format!(
            "ed25519:{}",
            B64.encode(self.key.verifying_key().to_bytes())
        )
    }

    /// Signs a message.
    pub fn sign(&self, msg: &[u8]) -> Sig {
        Sig {
            keyid: self.public_id(),
            alg: "ed25519".to_owned(),
            sig: B64.encode(self.key.sign(msg).to_bytes()),
        }
    }
}

/// A public system key, parsed from `ed25519:<base64>`.
#[derive(Clone, Debug)]
pub struct SystemPublic {
    id: String,
    key: VerifyingKey,
}

impl SystemPublic {
    /// Parses `ed25519:<base64>`.
    pub fn parse(id: &str) -> Result<SystemPublic, KeyError> {
        let b64 = id
            .strip_prefix("ed25519:")
            .ok_or_else(|| KeyError::Invalid(format!("unknown key type in `{id}`")))?;
        let bytes = B64
            .decode(b64)
            .map_err(|e| KeyError::Invalid(format!("bad key `{id}`: {e}")))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Invalid(format!("bad key `{id}`: not 32 bytes")))?;
        let key = VerifyingKey::from_bytes(&arr)
            .map_err(|e| KeyError::Invalid(format!("bad key `{id}`: {e}")))?;
        Ok(SystemPublic {
            id: id.to_owned(),
            key,
        })
    }

    /// Checks an `ed25519` signature by this key over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &Sig) -> Result<(), KeyError> {
        if sig.alg != "ed25519" {
            return Err(KeyError::Invalid(format!(
                "expected an `ed25519` signature, found `{}`",
                sig.alg
            )));
        }
        if sig.keyid != self.id {
            return Err(KeyError::Invalid(format!(
                "signed by `{}`, not by the ledger key",
                sig.keyid
            )));
        }
        let bytes = B64
            .decode(&sig.sig)
            .map_err(|e| KeyError::Invalid(format!("bad signature encoding: {e}")))?;
        let s = ed25519_dalek::Signature::from_slice(&bytes)
            .map_err(|e| KeyError::Invalid(format!("bad signature: {e}")))?;
        self.key
            .verify(msg, &s)
            .map_err(|_| KeyError::Invalid("signature does not match".into()))
    }
}

/// A person's SSH private key, for signing approvals.
pub struct SshSigner {
    key: ssh_key::PrivateKey,
}

impl SshSigner {
    /// A signer from an in-memory key.
    pub fn from_key(key: ssh_key::PrivateKey) -> SshSigner {
        SshSigner { key }
    }

    /// Reads an OpenSSH private key (unencrypted; use an agent-less key for signing).
    pub fn from_file(path: &Path) -> Result<SshSigner, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::File {
            what: "cannot read",
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let key = ssh_key::PrivateKey::from_openssh(&text).map_err(|e| KeyError::File {
            what: "not an OpenSSH private key",
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if key.is_encrypted() {
            return Err(KeyError::File {
                what: "encrypted key",
                path: path.display().to_string(),
                message: "pipe signs with unencrypted keys only; use a dedicated signing key"
                    .into(),
            });
        }
        Ok(SshSigner { key })
    }

    /// The signer `pipe server` uses for approvals given in its web UI: an ed25519 key whose
    /// seed lives at `path` (created 0600 on first use, like the ledger key). The approval's
    /// actor is the user the server authenticated; this key vouches for that.
    pub fn load_or_create_seed(path: &Path) -> Result<SshSigner, KeyError> {
        let seed = SystemKey::load_or_create(path)?.key.to_bytes();
        let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let key = ssh_key::PrivateKey::new(
            ssh_key::private::KeypairData::Ed25519(pair),
            "pipe-server-web",
        )
        .map_err(|e| KeyError::File {
            what: "cannot derive an SSH key from",
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(SshSigner { key })
    }

    /// The public key.
    pub fn public(&self) -> &ssh_key::PublicKey {
        self.key.public_key()
    }

    /// `SHA256:…` fingerprint.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string()
    }

    /// Signs a message (an SSH signature, namespace [`SSH_NAMESPACE`]).
    pub fn sign(&self, msg: &[u8]) -> Result<Sig, KeyError> {
        let sig = self
            .key
            .sign(SSH_NAMESPACE, ssh_key::HashAlg::Sha512, msg)
            .map_err(|e| KeyError::Invalid(format!("cannot sign: {e}")))?;
        let pem = sig
            .to_pem(ssh_key::LineEnding::LF)
            .map_err(|e| KeyError::Invalid(format!("cannot encode the signature: {e}")))?;
        Ok(Sig {
            keyid: self.fingerprint(),
            alg: "sshsig".to_owned(),
            sig: pem,
        })
    }
}

/// Checks an `sshsig` signature over `msg`; returns the signing public key.
pub fn verify_ssh(msg: &[u8], sig: &Sig) -> Result<ssh_key::PublicKey, KeyError> {
    if sig.alg != "sshsig" {
        return Err(KeyError::Invalid(format!(
            "expected an `sshsig` signature, found `{}`",
            sig.alg
        )));
    }
    let s = ssh_key::SshSig::from_pem(&sig.sig)
        .map_err(|e| KeyError::Invalid(format!("bad SSH signature: {e}")))?;
    // The stored text must be exactly the signature's encoding (no slack in base64 or lines).
    if s.to_pem(ssh_key::LineEnding::LF).ok().as_deref() != Some(sig.sig.as_str()) {
        return Err(KeyError::Invalid(
            "SSH signature is not in canonical form".into(),
        ));
    }
    let public = ssh_key::PublicKey::from(s.public_key().clone());
    let fp = public.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    if fp != sig.keyid {
        return Err(KeyError::Invalid(format!(
            "signature made by `{fp}`, entry names `{}`",
            sig.keyid
        )));
    }
    public
        .verify(SSH_NAMESPACE, msg, &s)
        .map_err(|_| KeyError::Invalid("SSH signature does not match".into()))?;
    Ok(public)
}

/// One line of an `allowed_signers` file.
#[derive(Clone, Debug)]
pub struct AllowedSigner {
    /// Principals (patterns are taken literally).
    pub principals: Vec<String>,
    /// `namespaces="…"`, when given.
    pub namespaces: Option<Vec<String>>,
    /// The key.
    pub key: ssh_key::PublicKey,
    /// 1-based line.
    pub line: usize,
}

/// An `allowed_signers` file (git's and `ssh-keygen -Y`'s format).
#[derive(Clone, Debug, Default)]
pub struct AllowedSigners {
    /// The entries.
    pub signers: Vec<AllowedSigner>,
}

impl AllowedSigners {
    /// Parses the file's text. Errors name the line.
    pub fn parse(text: &str) -> Result<AllowedSigners, String> {
        let mut signers = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut tokens = tokenize(line);
            if tokens.len() < 3 {
                return Err(format!(
                    "line {}: expected `PRINCIPALS [OPTIONS] KEYTYPE KEY`",
                    i + 1
                ));
            }
            let principals: Vec<String> = tokens.remove(0).split(',').map(str::to_owned).collect();
            let mut namespaces = None;
            if !is_key_type(&tokens[0]) {
                let opts = tokens.remove(0);
                for opt in split_options(&opts) {
                    if let Some(v) = opt.strip_prefix("namespaces=") {
                        namespaces =
                            Some(v.trim_matches('"').split(',').map(str::to_owned).collect());
                    }
                }
            }
            if tokens.len() < 2 {
                return Err(format!("line {}: missing key", i + 1));
            }
            let key_text = format!("{} {}", tokens[0], tokens[1]);
            let key = ssh_key::PublicKey::from_openssh(&key_text)
                .map_err(|e| format!("line {}: bad public key: {e}", i + 1))?;
            signers.push(AllowedSigner {
                principals,
                namespaces,
                key,
                line: i + 1,
            });
        }
        Ok(AllowedSigners { signers })
    }

    /// The principal a key belongs to (the first listed), if it is allowed for ledger entries.
    pub fn principal_of(&self, key: &ssh_key::PublicKey) -> Option<&str> {
        self.signers
            .iter()
            .find(|s| {
                s.key.key_data() == key.key_data()
                    && s.namespaces
                        .as_ref()
                        .is_none_or(|ns| ns.iter().any(|n| n == SSH_NAMESPACE || n == "*"))
            })
            .and_then(|s| s.principals.first().map(String::as_str))
    }
}

fn is_key_type(t: &str) -> bool {
    t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-")
}

fn tokenize(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn split_options(opts: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in opts.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_signatures_verify_and_reject_changes() {
        let k = SystemKey::from_seed([7; 32]);
        let sig = k.sign(b"hello");
        let p = SystemPublic::parse(&k.public_id()).expect("public");
        p.verify(b"hello", &sig).expect("valid");
        assert!(p.verify(b"hellp", &sig).is_err());
        let other = SystemKey::from_seed([8; 32]).sign(b"hello");
        assert!(p.verify(b"hello", &other).is_err());
    }

    #[test]
    fn allowed_signers_lines_with_and_without_options() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let text = format!(
            "# comment\nalice@example.test {key} alice\nbob,bobby namespaces=\"git,pipe-ledger\" {key}\n"
        );
        let s = AllowedSigners::parse(&text).expect("parse");
        assert_eq!(s.signers.len(), 2);
        assert_eq!(s.signers[1].principals, ["bob", "bobby"]);
        assert_eq!(
            s.signers[1].namespaces.as_deref(),
            Some(&["git".to_owned(), "pipe-ledger".to_owned()][..])
        );
        assert_eq!(
            s.principal_of(&s.signers[0].key),
            Some("alice@example.test")
        );
        let err = AllowedSigners::parse("alice ssh-ed25519 AAAA\n").expect_err("bad");
        assert!(err.starts_with("line 1:"), "{err}");
    }
}
