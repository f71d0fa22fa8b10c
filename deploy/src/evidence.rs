//! Evidence: in-toto Statement v1 documents (SLSA provenance v1 for a build, a deployment
//! predicate per release, and whatever statements the promotion crate adds for its gate
//! decisions) in DSSE envelopes signed with ed25519, exported to a folder and verifiable
//! offline — by `pipe evidence verify` or by any DSSE verifier with the exported public key
//! (`openssl pkeyutl -verify -rawin` over the PAE bytes works too).
//!
//! Export layout: `<name>.intoto.json` (one DSSE envelope each), `pipe-evidence.pub.pem`
//! (the signer's public key, SPKI PEM), `index.json` (file → sha256, keyid).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::release::{BuildRef, Release};

/// in-toto Statement v1 `_type`.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// DSSE payload type of in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// pipe's deployment predicate.
pub const DEPLOYMENT_V1: &str = "https://pipe.dev/attestation/deployment/v1";
/// pipe's build type for provenance.
pub const BUILD_TYPE: &str = "https://pipe.dev/build/v1";

/// A ResourceDescriptor (the fields pipe uses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Algorithm → hex.
    pub digest: BTreeMap<String, String>,
}

/// An in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// Always [`STATEMENT_V1`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// What the statement is about (matched by digest).
    pub subject: Vec<ResourceDescriptor>,
    /// The predicate's type URI.
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The predicate.
    pub predicate: Value,
}

/// Splits `sha256:<hex>` into a digest map.
pub fn digest_map(d: &str) -> BTreeMap<String, String> {
    match d.split_once(':') {
        Some((alg, hex)) => BTreeMap::from([(alg.to_owned(), hex.to_owned())]),
        None => BTreeMap::from([("sha256".to_owned(), d.to_owned())]),
    }
}

/// The build's subjects as ResourceDescriptors.
pub fn subjects(build: &BuildRef) -> Vec<ResourceDescriptor> {
    build
        .subjects
        .iter()
        .map(|s| ResourceDescriptor {
            name: Some(s.name.clone()),
            uri: s.uri.clone(),
            digest: digest_map(&s.digest),
        })
        .collect()
}

/// What pipe knows about how a build was made (from its run record).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// The workflow file.
    pub workflow: Option<String>,
    /// The git ref.
    pub git_ref: Option<String>,
    /// The commit.
    pub commit: Option<String>,
    /// The repository (`owner/name`).
    pub repository: Option<String>,
    /// The run number.
    pub run: Option<u64>,
    /// Jobs that produced the subjects.
    pub jobs: Vec<String>,
    /// Start and end (RFC 3339).
    pub started: Option<String>,
    /// End.
    pub finished: Option<String>,
}

/// SLSA provenance v1 for a build.
pub fn provenance(build: &BuildRef, info: &BuildInfo) -> Statement {
    let mut deps = Vec::new();
    if let Some(c) = &info.commit {
        deps.push(json!({
            "uri": info.repository.as_ref().map(|r| format!("git+https://github.com/{r}")),
            "digest": { "gitCommit": c },
        }));
    }
    Statement {
        type_: STATEMENT_V1.to_owned(),
        subject: subjects(build),
        predicate_type: SLSA_PROVENANCE_V1.to_owned(),
        predicate: json!({
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "workflow": info.workflow,
                    "ref": info.git_ref,
                    "repository": info.repository,
                    "jobs": info.jobs,
                },
                "internalParameters": { "build": build.id, "alias": build.alias },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": { "id": "https://pipe.dev/runner/local", "version": { "pipe": env!("CARGO_PKG_VERSION") } },
                "metadata": {
                    "invocationId": info.run.map(|r| format!("run/{r}")),
                    "startedOn": info.started,
                    "finishedOn": info.finished,
                },
            },
        }),
    }
}

/// The deployment statement of one release.
pub fn deployment(r: &Release) -> Statement {
    Statement {
        type_: STATEMENT_V1.to_owned(),
        subject: subjects(&r.build),
        predicate_type: DEPLOYMENT_V1.to_owned(),
        predicate: json!({
            "build": r.build.id,
            "environment": r.env,
            "release": r.seq.to_string(),
            "state": r.state,
            "rollback": r.rollback,
            "restores": r.restores.map(|s| s.to_string()),
            "rolledBackTo": r.rolled_back_to.map(|s| s.to_string()),
            "previous": r.previous.map(|s| s.to_string()),
            "actor": r.actor,
            "reason": r.reason,
            "failure": r.failure,
            "config": { "digest": digest_map(&r.config_digest) },
            "plan": { "digest": digest_map(&r.plan_digest), "strategy": r.plan.strategy, "slot": r.plan.slot },
            "verification": r.verify,
            "startedOn": r.started,
            "finishedOn": r.finished,
            "deployer": { "id": "pipe", "version": env!("CARGO_PKG_VERSION") },
        }),
    }
}

/// A DSSE signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsseSignature {
    /// The key's id.
    pub keyid: String,
    /// base64 signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// base64 of the statement's JSON.
    pub payload: String,
    /// [`PAYLOAD_TYPE`].
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Signatures.
    pub signatures: Vec<DsseSignature>,
}

/// DSSE's pre-authentication encoding.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Evidence errors.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// I/O.
    #[error("`{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A bad key file.
    #[error("`{path}`: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An ed25519 signing key kept in the state folder.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("keyid", &self.keyid())
            .finish()
    }
}

const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl Signer {
    /// Loads the key at `path` (hex of the 32-byte seed), creating it (mode 0600) when absent.
    pub fn load_or_create(path: &Path) -> Result<Signer, EvidenceError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|e| EvidenceError::Key {
                    path: path.to_owned(),
                    message: format!("not a hex ed25519 seed: {e}"),
                })?;
                let seed: [u8; 32] = bytes.try_into().map_err(|_| EvidenceError::Key {
                    path: path.to_owned(),
                    message: "an ed25519 seed is 32 bytes".to_owned(),
                })?;
                Ok(Signer {
                    key: SigningKey::from_bytes(&seed),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| EvidenceError::Key {
                    path: path.to_owned(),
                    message: format!("no randomness for a new key: {e}"),
                })?;
                let dir = path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                let tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
                // NamedTempFile is created 0600
                std::fs::write(tmp.path(), hex::encode(seed)).map_err(io(tmp.path()))?;
                tmp.persist_noclobber(path).map_err(|e| io(path)(e.error))?;
                Signer::load_or_create(path)
            }
            Err(e) => Err(io(path)(e)),
        }
    }

    /// The key from a seed (tests).
    pub fn from_seed(seed: [u8; 32]) -> Signer {
        Signer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// `SHA256:<hex>` of the raw public key.
    pub fn keyid(&self) -> String {
        keyid(&self.key.verifying_key())
    }

    /// The public key as SPKI PEM.
    pub fn public_pem(&self) -> String {
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(self.key.verifying_key().as_bytes());
        let b = B64.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b}\n-----END PUBLIC KEY-----\n")
    }

    /// Signs a statement into a DSSE envelope.
    pub fn sign(&self, st: &Statement) -> Envelope {
        let body = serde_json::to_vec(st).unwrap_or_default();
        let sig = self.key.sign(&pae(PAYLOAD_TYPE, &body));
        Envelope {
            payload: B64.encode(&body),
            payload_type: PAYLOAD_TYPE.to_owned(),
            signatures: vec![DsseSignature {
                keyid: self.keyid(),
                sig: B64.encode(sig.to_bytes()),
            }],
        }
    }
}

fn keyid(k: &VerifyingKey) -> String {
    format!("SHA256:{}", crate::spec::sha256_hex(k.as_bytes()))
}

/// Reads an SPKI PEM ed25519 public key.
pub fn read_public_pem(path: &Path) -> Result<VerifyingKey, EvidenceError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = |m: &str| EvidenceError::Key {
        path: path.to_owned(),
        message: m.to_owned(),
    };
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = B64
        .decode(b64)
        .map_err(|_| bad("not a PEM public key (bad base64)"))?;
    let raw = der
        .strip_prefix(&SPKI_ED25519_PREFIX[..])
        .ok_or_else(|| bad("not an ed25519 public key (SPKI)"))?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| bad("an ed25519 key is 32 bytes"))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| bad(&format!("invalid ed25519 key: {e}")))
}

/// Writes the envelopes, the public key and an index to `dir`. `items` are
/// (file stem, statement). Returns the files written.
pub fn export(
    dir: &Path,
    items: &[(String, Statement)],
    signer: &Signer,
) -> Result<Vec<PathBuf>, EvidenceError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    let mut index = BTreeMap::new();
    for (name, st) in items {
        let env = signer.sign(st);
        let path = dir.join(format!("{name}.intoto.json"));
        let mut bytes = serde_json::to_vec_pretty(&env).unwrap_or_default();
        bytes.push(b'\n');
        crate::write_atomic(&path, &bytes).map_err(io(&path))?;
        index.insert(
            format!("{name}.intoto.json"),
            json!({ "sha256": crate::spec::sha256_hex(&bytes), "predicateType": st.predicate_type }),
        );
        written.push(path);
    }
    let key = dir.join("pipe-evidence.pub.pem");
    crate::write_atomic(&key, signer.public_pem().as_bytes()).map_err(io(&key))?;
    written.push(key);
    let idx = dir.join("index.json");
    crate::write_json(&idx, &json!({ "keyid": signer.keyid(), "files": index }))
        .map_err(io(&idx))?;
    written.push(idx);
    Ok(written)
}

/// The check of one exported envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileCheck {
    /// The file name.
    pub file: String,
    /// The predicate type, when the payload parsed.
    pub predicate_type: Option<String>,
    /// Subjects (`name@sha256:…`).
    pub subjects: Vec<String>,
    /// `None` when valid, else why not.
    pub error: Option<String>,
}

/// Verifies every `*.intoto.json` in `dir` against `key` (default: the exported
/// `pipe-evidence.pub.pem`; pass a trusted copy to check authenticity, not only integrity).
pub fn verify_dir(dir: &Path, key: Option<&Path>) -> Result<Vec<FileCheck>, EvidenceError> {
    let key_path = key.map_or_else(|| dir.join("pipe-evidence.pub.pem"), Path::to_owned);
    let vk = read_public_pem(&key_path)?;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".intoto.json"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let path = dir.join(&n);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        out.push(check_envelope(&n, &text, &vk));
    }
    Ok(out)
}

fn check_envelope(file: &str, text: &str, vk: &VerifyingKey) -> FileCheck {
    let mut fc = FileCheck {
        file: file.to_owned(),
        predicate_type: None,
        subjects: Vec::new(),
        error: None,
    };
    let env: Envelope = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => {
            fc.error = Some(format!("not a DSSE envelope: {e}"));
            return fc;
        }
    };
    let body = match B64.decode(&env.payload) {
        Ok(b) => b,
        Err(e) => {
            fc.error = Some(format!("payload is not base64: {e}"));
            return fc;
        }
    };
    let want = keyid(vk);
    let msg = pae(&env.payload_type, &body);
    let good = env.signatures.iter().any(|s| {
        s.keyid == want
            && B64
                .decode(&s.sig)
                .ok()
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .is_some_and(|b| vk.verify_strict(&msg, &Signature::from_bytes(&b)).is_ok())
    });
    if !good {
        fc.error = Some(format!("no valid signature by key {want}"));
        return fc;
    }
    if env.payload_type != PAYLOAD_TYPE {
        fc.error = Some(format!(
            "payload type `{}` is not in-toto",
            env.payload_type
        ));
        return fc;
    }
    match serde_json::from_slice::<Statement>(&body) {
        Ok(st)
            if st.type_ == STATEMENT_V1
                && !st.subject.is_empty()
                && st.subject.iter().all(|s| !s.digest.is_empty()) =>
        {
            fc.subjects = st
                .subject
                .iter()
                .map(|s| {
                    let d: Vec<String> = s.digest.iter().map(|(a, h)| format!("{a}:{h}")).collect();
                    format!("{}@{}", s.name.as_deref().unwrap_or(""), d.join(","))
                })
                .collect();
            fc.predicate_type = Some(st.predicate_type);
        }
        Ok(_) => fc.error = Some("not an in-toto Statement v1 with digested subjects".to_owned()),
        Err(e) => fc.error = Some(format!("payload is not a statement: {e}")),
    }
    fc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::Subject;

    fn build() -> BuildRef {
        BuildRef {
            id: "sha256:aa".into(),
            alias: Some("bold-otter".into()),
            subjects: vec![Subject {
                name: "app.tar.gz".into(),
                digest: format!("sha256:{}", "b".repeat(64)),
                uri: None,
            }],
        }
    }

    #[test]
    fn exported_envelopes_verify_and_any_flipped_byte_is_caught() {
        let dir = tempfile::tempdir().expect("tmp");
        let signer = Signer::from_seed([7; 32]);
        let st = provenance(&build(), &BuildInfo::default());
        export(dir.path(), &[("provenance".into(), st)], &signer).expect("export");
        let checks = verify_dir(dir.path(), None).expect("verify");
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].error, None);
        assert_eq!(
            checks[0].predicate_type.as_deref(),
            Some(SLSA_PROVENANCE_V1)
        );
        assert_eq!(
            checks[0].subjects,
            [format!("app.tar.gz@sha256:{}", "b".repeat(64))]
        );

        // change the statement inside the envelope: the signature no longer holds
        let path = dir.path().join("provenance.intoto.json");
        let mut env: Envelope =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        let mut body = B64.decode(&env.payload).expect("b64");
        let at = body.iter().position(|b| *b == b'b').expect("a b");
        body[at] = b'c';
        env.payload = B64.encode(&body);
        std::fs::write(&path, serde_json::to_string(&env).expect("json")).expect("write");
        let checks = verify_dir(dir.path(), None).expect("verify");
        assert!(
            checks[0]
                .error
                .as_deref()
                .expect("error")
                .starts_with("no valid signature")
        );

        // another key is not the signer
        let other = tempfile::tempdir().expect("tmp");
        std::fs::write(
            other.path().join("k.pem"),
            Signer::from_seed([8; 32]).public_pem(),
        )
        .expect("write");
        export(
            dir.path(),
            &[(
                "provenance".into(),
                provenance(&build(), &BuildInfo::default()),
            )],
            &signer,
        )
        .expect("export");
        let checks = verify_dir(dir.path(), Some(&other.path().join("k.pem"))).expect("verify");
        assert!(checks[0].error.is_some());
    }

    #[test]
    fn a_key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("keys").join("evidence.ed25519");
        let a = Signer::load_or_create(&p).expect("create");
        let b = Signer::load_or_create(&p).expect("load");
        assert_eq!(a.keyid(), b.keyid());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::write(&p, "zz").expect("write");
        assert!(Signer::load_or_create(&p).is_err());
    }
}
