//! Pads a repository's promotion ledger with realistic entries, for bench/promote.
//!
//! `ledger_gen STATE_DIR N`: appends entries until the ledger holds N, cycling through build
//! registrations of other builds, requests, evaluations, decisions, releases and approvals
//! in other environments, so that queries for one (build, environment) have to skip them.

use pipe_promote::ledger::{Actor, Draft, Ledger, kind, system_clock};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(state), Some(n)) = (args.next(), args.next().and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: ledger_gen STATE_DIR N");
        std::process::exit(2);
    };
    let ledger =
        Ledger::open_in(std::path::Path::new(&state), system_clock()).expect("open the ledger");
    let start = std::time::Instant::now();
    let mut i: u64 = ledger.head().expect("head").map_or(0, |h| h.seq + 1);
    let first = i;
    while i < n {
        let build = format!("sha256:{:064x}", i / 8);
        let env = ["dev", "qa", "canary"][(i % 3) as usize];
        let who = Actor {
            id: format!("user{}", i % 17),
            auth: None,
            via: "cli".into(),
        };
        let (k, body) = match i % 8 {
            0 => (
                kind::BUILD_REGISTERED,
                serde_json::json!({ "subjects": [{ "name": "app", "digest": build }], "run": i, "jobs": [], "evidence": [] }),
            ),
            1 => (
                kind::PROMOTION_REQUESTED,
                serde_json::json!({ "policy": "sha256:p", "reason": null }),
            ),
            2 | 3 => (
                kind::APPROVAL_GRANTED,
                serde_json::json!({ "policy": "sha256:p", "comment": "ok" }),
            ),
            4 => (
                kind::GATE_EVALUATED,
                serde_json::json!({ "request": i - 3, "evaluation": { "decision": "PENDING", "gates": [] } }),
            ),
            5 => (
                kind::PROMOTION_DECIDED,
                serde_json::json!({ "request": i - 4, "decision": "ALLOWED" }),
            ),
            6 => (
                kind::RELEASE_RECORDED,
                serde_json::json!({ "decision": i - 1 }),
            ),
            _ => (
                kind::ENV_LOCKED,
                serde_json::json!({ "reason": "drill", "hard": false }),
            ),
        };
        let mut d = Draft::new(k, who, body).env(env);
        if k != kind::ENV_LOCKED {
            d = d.build(&build);
        }
        let e = ledger.append(d).expect("append");
        i = e.seq + 1;
        // A checkpoint may follow.
        if let Some(h) = ledger.head().expect("head") {
            i = h.seq + 1;
        }
    }
    eprintln!("appended {} entries in {:.2?}", i - first, start.elapsed());
}
