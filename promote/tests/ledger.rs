//! Ledger integrity: a 10,000-entry ledger with system, signed and checkpoint entries;
//! flipping any byte, deleting any entry or swapping any two is found by `verify`, at the
//! right entry; concurrent writers never fork the chain.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use pipe_promote::ledger::{
    Actor, AllowedSigners, Draft, Ledger, LedgerStore, SqliteStore, SshSigner, SystemKey, kind,
    system_clock, verify_store,
};
use proptest::prelude::*;

const N: u64 = 10_000;

fn signer(seed: u8) -> SshSigner {
    let pair = ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]);
    SshSigner::from_key(ssh_key::PrivateKey::from(pair))
}

fn ledger_at(path: &Path, key: &SystemKey) -> Ledger {
    let store = SqliteStore::open(path).expect("open store");
    Ledger::new(Box::new(store), key.clone(), system_clock())
}

fn fill(ledger: &Ledger, n: u64) {
    let alice = signer(1);
    let mut i = 0u64;
    while ledger.head().expect("head").map_or(0, |h| h.seq + 1) < n {
        let draft = Draft::new(
            if i % 10 == 3 {
                kind::APPROVAL_GRANTED
            } else {
                kind::BUILD_REGISTERED
            },
            Actor {
                id: "alice".into(),
                auth: None,
                via: "cli".into(),
            },
            serde_json::json!({ "i": i, "note": format!("entry é {i}") }),
        )
        .env("staging")
        .build(&format!("sha256:{i:064x}"));
        let s = (i % 10 == 3).then_some(&alice);
        ledger
            .append_with(|_| Ok(draft.clone()), s)
            .expect("append");
        i += 1;
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Mutex<SqliteStore>,
    last: u64,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.db");
        let key = SystemKey::from_seed([9; 32]);
        let ledger = ledger_at(&path, &key);
        fill(&ledger, N);
        let report = ledger.verify().expect("verify");
        assert_eq!(report.failure, None);
        assert!(report.entries >= N, "{report:?}");
        assert!(report.signatures > 1000, "{report:?}");
        let store = SqliteStore::open(&path).expect("reopen");
        Fixture {
            _dir: dir,
            store: Mutex::new(store),
            last: report.entries - 1,
        }
    })
}

fn text_of(store: &SqliteStore, seq: u64) -> String {
    store.get(seq).expect("get").expect("row").text
}

fn set_text(store: &SqliteStore, seq: u64, bytes: &[u8]) {
    let hexed = hex::encode(bytes);
    store
        .execute_raw(&format!(
            "UPDATE entries SET text = CAST(X'{hexed}' AS TEXT) WHERE seq = {seq}"
        ))
        .expect("tamper");
}

fn first_failure(store: &SqliteStore) -> Option<u64> {
    let report = verify_store(store, None).expect("verify runs");
    report.failure.map(|f| f.seq)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn flipping_any_byte_is_detected(seq in 0..N, pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let f = fixture();
        let store = f.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let original = text_of(&store, seq);
        let mut bytes = original.clone().into_bytes();
        let i = pos.index(bytes.len());
        bytes[i] ^= x;
        set_text(&store, seq, &bytes);
        let found = first_failure(&store);
        set_text(&store, seq, original.as_bytes());
        prop_assert_eq!(found, Some(seq), "flip of byte {} in entry {}", i, seq);
    }

    #[test]
    fn deleting_any_entry_is_detected(seq in 0..N) {
        let f = fixture();
        let store = f.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let row = store.get(seq).expect("get").expect("row");
        store.execute_raw(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS saved AS SELECT * FROM entries WHERE 0;
             DELETE FROM saved;
             INSERT INTO saved SELECT * FROM entries WHERE seq = {seq};
             DELETE FROM entries WHERE seq = {seq};"
        )).expect("delete");
        let found = first_failure(&store);
        store.execute_raw("INSERT INTO entries SELECT * FROM saved;").expect("restore");
        prop_assert_eq!(text_of(&store, seq), row.text);
        prop_assert_eq!(found, Some(seq.min(f.last)), "deleting entry {}", seq);
    }

    #[test]
    fn swapping_any_two_entries_is_detected(a in 0..N, b in 0..N) {
        prop_assume!(a != b);
        let f = fixture();
        let store = f.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (ta, tb) = (text_of(&store, a), text_of(&store, b));
        set_text(&store, a, tb.as_bytes());
        set_text(&store, b, ta.as_bytes());
        let found = first_failure(&store);
        set_text(&store, a, ta.as_bytes());
        set_text(&store, b, tb.as_bytes());
        prop_assert_eq!(found, Some(a.min(b)));
    }
}

#[test]
fn the_untouched_fixture_verifies_and_truncating_the_tail_is_detected() {
    let f = fixture();
    let store = f
        .store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert_eq!(first_failure(&store), None);
    // An attacker who also moves the head row back cannot sign it.
    store
        .execute_raw(
            "CREATE TEMP TABLE tail AS SELECT * FROM entries WHERE seq >= 9990;
             CREATE TEMP TABLE oldhead AS SELECT * FROM head;
             DELETE FROM entries WHERE seq >= 9990;
             UPDATE head SET seq = 9989, hash = (SELECT hash FROM entries WHERE seq = 9989);",
        )
        .expect("truncate");
    let found = first_failure(&store);
    store
        .execute_raw(
            "INSERT INTO entries SELECT * FROM tail; DELETE FROM head;
             INSERT INTO head SELECT * FROM oldhead; DROP TABLE tail; DROP TABLE oldhead;",
        )
        .expect("restore");
    assert_eq!(found, Some(9989));
    assert_eq!(first_failure(&store), None);
}

#[test]
fn allowed_signers_check_names_an_unknown_signer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = ledger_at(&dir.path().join("l.db"), &SystemKey::from_seed([1; 32]));
    let bob = signer(2);
    let draft = Draft::new(
        kind::APPROVAL_GRANTED,
        Actor {
            id: "bob".into(),
            auth: None,
            via: "cli".into(),
        },
        serde_json::json!({}),
    );
    ledger
        .append_with(|_| Ok(draft.clone()), Some(&bob))
        .expect("append");
    let line =
        |who: &str, s: &SshSigner| format!("{who} {}\n", s.public().to_openssh().expect("openssh"));
    let ok = AllowedSigners::parse(&line("bob", &bob)).expect("parse");
    assert_eq!(
        verify_store(ledger.store(), Some(&ok))
            .expect("verify")
            .failure,
        None
    );
    let other = AllowedSigners::parse(&line("carol", &signer(3))).expect("parse");
    let failure = verify_store(ledger.store(), Some(&other))
        .expect("verify")
        .failure
        .expect("a failure");
    assert_eq!(failure.seq, 1);
    assert!(
        failure.message.contains("not in the allowed signers"),
        "{failure:?}"
    );
}

#[test]
fn concurrent_writers_never_fork_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Arc::new(dir.path().join("ledger.db"));
    let key = SystemKey::from_seed([4; 32]);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let path = Arc::clone(&path);
            let key = key.clone();
            std::thread::spawn(move || {
                let ledger = ledger_at(&path, &key);
                for i in 0..150 {
                    ledger
                        .append(Draft::new(
                            kind::BUILD_REGISTERED,
                            Actor::system(),
                            serde_json::json!({ "writer": t, "i": i }),
                        ))
                        .expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    let ledger = ledger_at(&path, &key);
    let report = ledger.verify().expect("verify");
    assert_eq!(report.failure, None);
    // 600 entries, one genesis, no checkpoint below 1000.
    assert_eq!(report.entries, 601);
    let mut seen = std::collections::HashSet::new();
    ledger
        .export(1, &mut |text| {
            let v: serde_json::Value = serde_json::from_str(text).expect("json");
            seen.insert((v["body"]["writer"].clone(), v["body"]["i"].clone()));
            true
        })
        .expect("export");
    assert_eq!(seen.len(), 600, "every append landed exactly once");
}
