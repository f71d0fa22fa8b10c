//! Load generator for `pipe server`'s dispatch path: N simulated agents (threads with the real
//! HTTP client, no executor) claim one job at a time and complete it at once, until no job is
//! left. Prints jobs, seconds, jobs per second and the claim latency percentiles as JSON.
//!
//! `cargo run -p pipe-server --example claim_load -- URL AGENT_TOKEN AGENTS`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipe_server::api::{ClaimRequest, CompleteRequest};
use pipe_server::client::Client;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(token)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: claim_load URL AGENT_TOKEN [AGENTS]");
        std::process::exit(2);
    };
    let agents: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(8);
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..agents)
        .map(|i| {
            let client = Client::new(url, token);
            let latencies = latencies.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut last = Instant::now();
                let mut empty = 0;
                while empty < 2 {
                    let t = Instant::now();
                    let r = client.claim(&ClaimRequest {
                        agent: format!("load-{i}"),
                        labels: vec!["ubuntu-latest".into()],
                        slots: Some(1),
                        wait_ms: Some(200),
                    });
                    let jobs = match r {
                        Ok(r) => r.jobs,
                        Err(e) => {
                            eprintln!("claim: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                            continue;
                        }
                    };
                    if jobs.is_empty() {
                        empty += 1;
                        continue;
                    }
                    mine.push(t.elapsed().as_secs_f64() * 1000.0);
                    for j in jobs {
                        let c = client.with_token(&j.token);
                        let req = CompleteRequest {
                            result: "success".into(),
                            outputs: BTreeMap::new(),
                        };
                        if let Err(e) = c.complete(j.job_id, j.attempt, &req) {
                            eprintln!("complete: {e}");
                        }
                    }
                    last = Instant::now();
                }
                if let Ok(mut l) = latencies.lock() {
                    l.extend(mine);
                }
                last
            })
        })
        .collect();
    // Until the last job was completed (the final empty polls are not work).
    let end = threads
        .into_iter()
        .filter_map(|t| t.join().ok())
        .max()
        .unwrap_or(started);
    let secs = end.duration_since(started).as_secs_f64();
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if l.is_empty() {
            0.0
        } else {
            l[((l.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "agents": agents,
            "jobs": l.len(),
            "seconds": secs,
            "jobs_per_second": l.len() as f64 / secs.max(1e-9),
            "claim_ms_p50": pct(0.5),
            "claim_ms_p99": pct(0.99),
            "claim_ms_max": pct(1.0),
        })
    );
}
