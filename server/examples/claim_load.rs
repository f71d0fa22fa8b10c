//! Load generator for `pipe server`'s dispatch path: N simulated agents (threads with the real
//! HTTP client, no executor) claim one job at a time and complete it at once, until no job is
//! left; each completion asks for the agent's next job in the same request, as `pipe agent`
//! does (`CLAIM_LOAD_SEPARATE=1`: a claim request per job instead). Prints jobs, seconds, jobs
//! per second and the claim latency percentiles (of every answer that handed out a job) as
//! JSON.
//!
//! `cargo run -p pipe-server --example claim_load -- URL AGENT_TOKEN AGENTS`

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipe_server::api::{ClaimRequest, CompleteRequest, NextClaim};
use pipe_server::client::Client;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(token)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: claim_load URL AGENT_TOKEN [AGENTS]");
        std::process::exit(2);
    };
    let agents: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(8);
    // `CLAIM_LOAD_SEPARATE=1`: claim and complete in separate requests (the old protocol).
    let one_request = std::env::var_os("CLAIM_LOAD_SEPARATE").is_none_or(|v| v.is_empty());
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..agents)
        .map(|i| {
            let client = Client::new(url, token);
            let latencies = latencies.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let agent = format!("load-{i}");
                let labels = vec!["ubuntu-latest".to_owned()];
                let mut mine = Vec::new();
                let mut last = Instant::now();
                let mut empty = 0;
                // Jobs in hand; claimed by a plain claim (long poll) when there are none.
                let mut jobs = Vec::new();
                while empty < 2 {
                    if jobs.is_empty() {
                        let t = Instant::now();
                        let r = client.claim(&ClaimRequest {
                            agent: agent.clone(),
                            labels: labels.clone(),
                            slots: Some(1),
                            wait_ms: Some(200),
                        });
                        match r {
                            Ok(r) if r.jobs.is_empty() => empty += 1,
                            Ok(r) => {
                                mine.push(t.elapsed().as_secs_f64() * 1000.0);
                                jobs = r.jobs;
                            }
                            Err(e) => {
                                eprintln!("claim: {e}");
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                        continue;
                    }
                    empty = 0;
                    let mut next = Vec::new();
                    for j in jobs.drain(..) {
                        let c = client.with_token(&j.token);
                        let req = CompleteRequest {
                            result: "success".into(),
                            outputs: BTreeMap::new(),
                            // The next job with the result, in the same request.
                            next: one_request.then(|| NextClaim {
                                agent: agent.clone(),
                                labels: labels.clone(),
                                slots: Some(1),
                            }),
                        };
                        let t = Instant::now();
                        match c.complete(j.job_id, j.attempt, &req) {
                            Ok(r) => {
                                done.fetch_add(1, Ordering::Relaxed);
                                if !r.jobs.is_empty() {
                                    // A claim answered: its latency counts as a claim's.
                                    mine.push(t.elapsed().as_secs_f64() * 1000.0);
                                    next.extend(r.jobs);
                                }
                            }
                            Err(e) => eprintln!("complete: {e}"),
                        }
                    }
                    jobs = next;
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
    let jobs = done.load(Ordering::Relaxed);
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
            "one_request": one_request,
            "jobs": jobs,
            "claims": l.len(),
            "seconds": secs,
            "jobs_per_second": jobs as f64 / secs.max(1e-9),
            "claim_ms_p50": pct(0.5),
            "claim_ms_p99": pct(0.99),
            "claim_ms_max": pct(1.0),
        })
    );
}
