//! The promotion ledger: append-only, hash-chained, signed.
//!
//! - [`entry`]: the entry format, RFC 8785 canonical form and hash.
//! - [`keys`]: the ledger's ed25519 key and SSH signatures checked against `allowed_signers`.
//! - [`store`]: the [`LedgerStore`] trait (compare-and-swap appends) and SQLite.
//! - [`pg`]: the same store in PostgreSQL (the server's database), selected by
//!   [`Ledger::open_with`] when a database URL is configured.
//!
//! Integrity: every entry links to the previous entry's hash; entries signed by a person carry
//! an SSH signature over their hash; every [`CHECKPOINT_EVERY`] entries a `checkpoint` entry
//! signed by the ledger key commits to the chain; the store keeps a head signed by the ledger
//! key, so removing entries at the tail is detected too. The genesis entry names the ledger
//! key. [`Ledger::verify`] reports the first entry that fails any of these checks.

pub mod entry;
pub mod keys;
pub mod pg;
pub mod store;

use std::sync::Arc;

pub use entry::{Actor, Entry, GENESIS_PREV, Sig, kind};
pub use keys::{AllowedSigners, SshSigner, SystemKey, SystemPublic};
pub use pg::PgStore;
pub use store::{Filter, Head, LedgerStore, NewRow, Row, SqliteStore, StoreError};

/// A checkpoint entry follows every this many entries.
pub const CHECKPOINT_EVERY: u64 = 1000;

/// How many times an append is retried when another writer got there first.
const MAX_RETRIES: usize = 1000;

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Canonicalisation failed.
    #[error(transparent)]
    Canon(#[from] entry::CanonError),
    /// A key or signature problem.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// An entry is not what it should be.
    #[error("ledger entry #{seq}: {message}")]
    Corrupt {
        /// Which.
        seq: u64,
        /// What is wrong.
        message: String,
    },
    /// The caller refused to append (its own check failed after a retry).
    #[error("{0}")]
    Refused(String),
}

/// What to append; the ledger fills in `v`, `seq`, `prev`, `time` and `hash`.
#[derive(Clone, Debug)]
pub struct Draft {
    /// Kind.
    pub kind: String,
    /// Who.
    pub actor: Actor,
    /// Environment.
    pub env: Option<String>,
    /// Build.
    pub build: Option<String>,
    /// Body.
    pub body: serde_json::Value,
}

impl Draft {
    /// A draft of `kind` by `actor` with `body`.
    pub fn new(kind: &str, actor: Actor, body: serde_json::Value) -> Draft {
        Draft {
            kind: kind.to_owned(),
            actor,
            env: None,
            build: None,
            body,
        }
    }

    /// Sets the environment.
    pub fn env(mut self, env: &str) -> Draft {
        self.env = Some(env.to_owned());
        self
    }

    /// Sets the build.
    pub fn build(mut self, build: &str) -> Draft {
        self.build = Some(build.to_owned());
        self
    }
}

/// The clock entries are stamped with.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// RFC 3339 UTC, whole seconds.
pub fn format_time(t: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(t.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// The ledger.
pub struct Ledger {
    store: Box<dyn LedgerStore>,
    key: SystemKey,
    clock: Clock,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("key", &self.key).finish()
    }
}

/// What [`Ledger::verify`] found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// The head.
    pub head: Option<String>,
    /// Signatures checked (SSH, system).
    pub signatures: u64,
    /// The first failure, if any.
    pub failure: Option<VerifyFailure>,
}

/// The first entry that failed verification.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VerifyFailure {
    /// The position where the chain breaks.
    pub seq: u64,
    /// Why.
    pub message: String,
}

impl Ledger {
    /// A ledger over `store`, signing with `key`.
    pub fn new(store: Box<dyn LedgerStore>, key: SystemKey, clock: Clock) -> Ledger {
        Ledger { store, key, clock }
    }

    /// Opens the SQLite ledger of a repository state folder (`ledger.db`, key
    /// `promote/ledger.key`).
    pub fn open_in(state_dir: &std::path::Path, clock: Clock) -> Result<Ledger, LedgerError> {
        Ledger::open_with(state_dir, None, clock)
    }

    /// Opens the repository's ledger: with `database = Some((url, name))`, the ledger `name`
    /// (the repository's `owner/name`) in PostgreSQL at `url`; else the SQLite `ledger.db`.
    /// The key is `promote/ledger.key` in the state folder either way; every machine writing
    /// one PostgreSQL ledger needs a copy of it.
    pub fn open_with(
        state_dir: &std::path::Path,
        database: Option<(&str, &str)>,
        clock: Clock,
    ) -> Result<Ledger, LedgerError> {
        let store: Box<dyn LedgerStore> = match database {
            Some((url, name)) => Box::new(PgStore::connect(url, name)?),
            None => Box::new(SqliteStore::open(&state_dir.join("ledger.db"))?),
        };
        let key_path = state_dir.join("promote").join("ledger.key");
        let key = SystemKey::load_or_create(&key_path)?;
        // A ledger can only be continued with the key its genesis names.
        if let Some(g) = store.get(0)?
            && let Ok(e) = parse_row(&g)
            && e.body.get("key").and_then(|k| k.as_str()) != Some(key.public_id().as_str())
        {
            return Err(LedgerError::Corrupt {
                seq: 0,
                message: format!(
                    "the ledger key `{}` is not the key the genesis entry names; restore it",
                    key_path.display()
                ),
            });
        }
        Ok(Ledger::new(store, key, clock))
    }

    /// The store.
    pub fn store(&self) -> &dyn LedgerStore {
        self.store.as_ref()
    }

    /// The current time.
    pub fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }

    /// The head.
    pub fn head(&self) -> Result<Option<Head>, LedgerError> {
        Ok(self.store.head()?)
    }

    fn seal(
        &self,
        draft: Draft,
        seq: u64,
        prev: &str,
        signer: Option<&SshSigner>,
    ) -> Result<Entry, LedgerError> {
        let mut e = Entry {
            v: entry::VERSION,
            seq,
            prev: prev.to_owned(),
            time: format_time(self.now()),
            kind: draft.kind,
            actor: draft.actor,
            env: draft.env,
            build: draft.build,
            body: draft.body,
            sig: None,
            hash: String::new(),
        };
        e.hash = e.compute_hash()?;
        e.sig = match signer {
            Some(s) => Some(s.sign(e.hash.as_bytes())?),
            None if e.kind == kind::GENESIS || e.kind == kind::CHECKPOINT => {
                Some(self.key.sign(e.hash.as_bytes()))
            }
            None => None,
        };
        Ok(e)
    }

    fn row(e: &Entry) -> Result<NewRow, LedgerError> {
        Ok(NewRow {
            head: Head {
                seq: e.seq,
                hash: e.hash.clone(),
            },
            kind: e.kind.clone(),
            env: e.env.clone(),
            build: e.build.clone(),
            text: e.to_canonical()?,
        })
    }

    fn head_sig(&self, head: &Head) -> Result<String, LedgerError> {
        let sig = self.key.sign(head_message(head).as_bytes());
        serde_json::to_string(&sig).map_err(|e| LedgerError::Refused(e.to_string()))
    }

    fn genesis(&self) -> Result<Entry, LedgerError> {
        let id: [u8; 16] = keys::random()?;
        let body = serde_json::json!({
            "ledger": hex::encode(id),
            "key": self.key.public_id(),
            "hash": "sha256",
            "canonical": "rfc8785",
            "checkpoint_every": CHECKPOINT_EVERY,
        });
        self.seal(
            Draft::new(kind::GENESIS, Actor::system(), body),
            0,
            GENESIS_PREV,
            None,
        )
    }

    /// Appends one entry.
    pub fn append(&self, draft: Draft) -> Result<Entry, LedgerError> {
        self.append_with(|_| Ok(draft.clone()), None)
    }

    /// Appends the entry `make` returns for the current head, signed by `signer` when given.
    /// When another writer appends first, `make` is called again with the new head (so a
    /// decision can be re-taken on fresh facts); it may refuse with an error.
    pub fn append_with(
        &self,
        mut make: impl FnMut(Option<&Head>) -> Result<Draft, LedgerError>,
        signer: Option<&SshSigner>,
    ) -> Result<Entry, LedgerError> {
        let mut entries = self.append_all_with(|h| Ok(vec![make(h)?]), signer)?;
        entries
            .pop()
            .ok_or_else(|| LedgerError::Refused("nothing to append".into()))
    }

    /// Appends the entries `make` returns for the current head, atomically and consecutively
    /// (a checkpoint may fall between them); `signer` signs the first. Retried like
    /// [`Ledger::append_with`].
    pub fn append_all_with(
        &self,
        mut make: impl FnMut(Option<&Head>) -> Result<Vec<Draft>, LedgerError>,
        signer: Option<&SshSigner>,
    ) -> Result<Vec<Entry>, LedgerError> {
        let mut expected = self.store.head()?;
        for _ in 0..MAX_RETRIES {
            let mut rows = Vec::new();
            let (mut seq, mut prev) = match &expected {
                Some(h) => (h.seq + 1, h.hash.clone()),
                None => {
                    let g = self.genesis()?;
                    let next = (1, g.hash.clone());
                    rows.push(Self::row(&g)?);
                    next
                }
            };
            let drafts = make(expected.as_ref())?;
            let mut out = Vec::new();
            for (i, draft) in drafts.into_iter().enumerate() {
                let e = self.seal(draft, seq, &prev, if i == 0 { signer } else { None })?;
                rows.push(Self::row(&e)?);
                prev = e.hash.clone();
                seq += 1;
                out.push(e);
                if seq % CHECKPOINT_EVERY == 0 {
                    let body = serde_json::json!({ "size": seq, "head": prev });
                    let c = self.seal(
                        Draft::new(kind::CHECKPOINT, Actor::system(), body),
                        seq,
                        &prev,
                        None,
                    )?;
                    rows.push(Self::row(&c)?);
                    prev = c.hash;
                    seq += 1;
                }
            }
            let last = rows
                .last()
                .map(|r| r.head.clone())
                .ok_or_else(|| LedgerError::Refused("nothing to append".into()))?;
            let sig = self.head_sig(&last)?;
            match self.store.append(expected.as_ref(), &rows, &sig) {
                Ok(_) => return Ok(out),
                Err(StoreError::Conflict(now)) => expected = now,
                Err(err) => return Err(err.into()),
            }
        }
        Err(LedgerError::Refused(
            "the ledger is too busy: gave up after many concurrent appends".into(),
        ))
    }

    /// Entries matching `filter`, parsed (not verified: see [`Ledger::verify`]).
    pub fn select(&self, filter: &Filter) -> Result<Vec<Entry>, LedgerError> {
        self.store
            .select(filter)?
            .into_iter()
            .map(|r| parse_row(&r))
            .collect()
    }

    /// One entry.
    pub fn get(&self, seq: u64) -> Result<Option<Entry>, LedgerError> {
        self.store.get(seq)?.map(|r| parse_row(&r)).transpose()
    }

    /// Recomputes the whole chain; see the module docs for what is checked.
    pub fn verify(&self) -> Result<VerifyReport, LedgerError> {
        verify_store(self.store.as_ref(), None)
    }

    /// Calls `f` with each stored row's text from `from` on.
    pub fn export(&self, from: u64, f: &mut dyn FnMut(&str) -> bool) -> Result<(), LedgerError> {
        self.store.scan(from, &mut |r| f(&r.text))?;
        Ok(())
    }
}

fn parse_row(r: &Row) -> Result<Entry, LedgerError> {
    serde_json::from_str(&r.text).map_err(|e| LedgerError::Corrupt {
        seq: r.seq,
        message: format!("not a valid entry: {e}"),
    })
}

/// The message the signed head signs.
pub fn head_message(h: &Head) -> String {
    format!("pipe-ledger-head-v1 {} {}", h.seq, h.hash)
}

/// What the per-entry checks keep for the in-order pass.
struct Checked {
    seq: u64,
    prev: String,
    hash: String,
    kind: String,
    sig: Option<Sig>,
    key: Option<String>,
    checkpoint: (Option<u64>, Option<String>),
}

/// The checks one stored entry can pass on its own: JSON, hash, canonical form, SSH signature.
fn check_row(text: &str, allowed: Option<&AllowedSigners>) -> Result<Checked, String> {
    let e: Entry = serde_json::from_str(text).map_err(|e| format!("not a valid entry: {e}"))?;
    let hash = e.compute_hash().map_err(|e| e.to_string())?;
    if hash != e.hash {
        return Err("hash does not match the content (altered)".into());
    }
    let canon = e.to_canonical().map_err(|e| e.to_string())?;
    if canon != text {
        return Err("stored text is not the entry's canonical form (altered)".into());
    }
    if let Some(sig) = &e.sig
        && sig.alg == "sshsig"
    {
        let key = keys::verify_ssh(e.hash.as_bytes(), sig).map_err(|e| e.to_string())?;
        if let Some(a) = allowed {
            match a.principal_of(&key) {
                Some(p) if p == e.actor.id => {}
                Some(p) => return Err(format!("signed by `{p}`, entry names `{}`", e.actor.id)),
                None => {
                    return Err(format!(
                        "signed by `{}`, which is not in the allowed signers",
                        sig.keyid
                    ));
                }
            }
        }
    }
    let key = e
        .body
        .get("key")
        .and_then(|k| k.as_str())
        .map(str::to_owned);
    let checkpoint = (
        e.body.get("size").and_then(|v| v.as_u64()),
        e.body
            .get("head")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    );
    Ok(Checked {
        seq: e.seq,
        prev: e.prev,
        hash: e.hash,
        kind: e.kind,
        sig: e.sig,
        key,
        checkpoint,
    })
}

/// Verifies a store; `allowed` (when given) must list every SSH key that signed an entry.
/// The per-entry checks run on every core; the chain is then walked in order.
pub fn verify_store(
    store: &dyn LedgerStore,
    allowed: Option<&AllowedSigners>,
) -> Result<VerifyReport, LedgerError> {
    let mut report = VerifyReport {
        entries: 0,
        head: None,
        signatures: 0,
        failure: None,
    };
    let mut rows: Vec<Row> = Vec::new();
    store.scan(0, &mut |row| {
        rows.push(row);
        true
    })?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = rows.len().div_ceil(threads).max(1);
    let checked: Vec<Result<Checked, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|r| check_row(&r.text, allowed))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err("verification thread failed".to_owned())])
            })
            .collect()
    });
    let mut system: Option<SystemPublic> = None;
    let mut prev = GENESIS_PREV.to_owned();
    let mut expect = 0u64;
    let mut failure: Option<VerifyFailure> = None;
    let fail = |seq: u64, message: String| Some(VerifyFailure { seq, message });
    for (row, c) in rows.iter().zip(checked) {
        let seq = expect;
        let check = (|| -> Result<(), String> {
            if row.seq != seq {
                return Err(format!(
                    "expected entry #{seq}, found #{} (an entry was removed or reordered)",
                    row.seq
                ));
            }
            let e = c?;
            if e.seq != seq {
                return Err(format!(
                    "entry says it is #{}, stored as #{seq} (reordered)",
                    e.seq
                ));
            }
            if e.prev != prev {
                return Err("does not link to the previous entry's hash (an entry was removed, reordered or altered)".into());
            }
            if seq == 0 {
                if e.kind != kind::GENESIS {
                    return Err(format!(
                        "first entry is `{}`, not `{}`",
                        e.kind,
                        kind::GENESIS
                    ));
                }
                let key = e.key.as_deref().ok_or("genesis names no key")?;
                system = Some(SystemPublic::parse(key).map_err(|e| e.to_string())?);
            }
            match &e.sig {
                Some(sig) => {
                    if sig.alg != "sshsig" {
                        system
                            .as_ref()
                            .ok_or("no ledger key")?
                            .verify(e.hash.as_bytes(), sig)
                            .map_err(|e| e.to_string())?;
                    }
                    report.signatures += 1;
                }
                None if e.kind == kind::GENESIS || e.kind == kind::CHECKPOINT => {
                    return Err(format!("`{}` entry is not signed", e.kind));
                }
                None => {}
            }
            if e.kind == kind::CHECKPOINT
                && (e.checkpoint.0 != Some(seq) || e.checkpoint.1.as_deref() != Some(prev.as_str()))
            {
                return Err("checkpoint does not commit to the chain before it".into());
            }
            prev = e.hash;
            Ok(())
        })();
        match check {
            Ok(()) => expect += 1,
            Err(m) => {
                failure = fail(seq, m);
                break;
            }
        }
    }
    report.entries = expect;
    if failure.is_none() {
        let head = store.signed_head()?;
        match (head, expect) {
            (None, 0) => {}
            (None, _) => {
                failure = fail(
                    expect.saturating_sub(1),
                    "the signed head is missing".into(),
                )
            }
            (Some(h), _) => {
                let sig: Result<Sig, _> = serde_json::from_str(&h.sig);
                let ok = match (&system, sig) {
                    (Some(k), Ok(sig)) => k.verify(head_message(&h.head).as_bytes(), &sig).is_ok(),
                    _ => false,
                };
                if !ok {
                    failure = fail(h.head.seq, "the head signature is not valid".into());
                } else if h.head.seq + 1 != expect || h.head.hash != prev {
                    failure = fail(
                        expect.min(h.head.seq),
                        format!(
                            "the signed head is #{} but the chain ends at #{} (entries were removed at the end)",
                            h.head.seq,
                            expect.saturating_sub(1)
                        ),
                    );
                }
            }
        }
    }
    if failure.is_none() && expect > 0 {
        report.head = Some(prev);
    }
    report.failure = failure;
    Ok(report)
}
