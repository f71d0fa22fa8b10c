//! Times appending and verifying (a development aid; bench/promote has the benchmark).
use pipe_promote::ledger::{Actor, Draft, Ledger, SqliteStore, SystemKey, kind, system_clock};
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("l.db")).expect("open");
    let ledger = Ledger::new(
        Box::new(store),
        SystemKey::from_seed([1; 32]),
        system_clock(),
    );
    let t = std::time::Instant::now();
    for i in 0..n {
        ledger
            .append(
                Draft::new(
                    kind::BUILD_REGISTERED,
                    Actor::system(),
                    serde_json::json!({"i": i}),
                )
                .env("staging"),
            )
            .expect("append");
    }
    eprintln!("append {n}: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let r = ledger.verify().expect("verify");
    eprintln!("verify {}: {:?} ({:?})", r.entries, t.elapsed(), r.failure);
}
