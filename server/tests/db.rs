//! The database layer against a real PostgreSQL (skips without one unless `CI=true`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use pipe_server::api::SubmitRequest;
use pipe_server::db::{Db, DbError, TokenKind};
use pipe_server::plan::plan_jobs;
use pipe_server::testing::PgCluster;

async fn db() -> Option<Db> {
    let cluster = PgCluster::shared()?;
    let url = cluster.fresh_db();
    let db = Db::connect(&url, 16).expect("pool");
    db.migrate().await.expect("migrate");
    Some(db)
}

fn request(workflow: &str) -> SubmitRequest {
    SubmitRequest {
        workflow_path: ".github/workflows/ci.yml".into(),
        workflow: workflow.into(),
        ..SubmitRequest::default()
    }
}

async fn submit(db: &Db, workflow: &str) -> i64 {
    let jobs = plan_jobs("ci.yml", workflow).expect("plan");
    db.submit(&request(workflow), &jobs, None)
        .await
        .expect("submit")
        .0
}

const DIAMOND: &str = "on: push
jobs:
  a: {runs-on: ubuntu-latest, steps: [{run: 'true'}]}
  b: {needs: a, runs-on: ubuntu-latest, steps: [{run: 'true'}]}
  c: {needs: a, runs-on: ubuntu-latest, steps: [{run: 'true'}]}
  d: {needs: [b, c], runs-on: ubuntu-latest, steps: [{run: 'true'}]}
";

fn labels() -> Vec<String> {
    vec!["ubuntu-latest".into(), "self-hosted".into()]
}

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn migrations_apply_once() {
    let Some(db) = db().await else { return };
    assert_eq!(db.migrate().await.expect("again"), Vec::<i32>::new());
    let c = db.client().await.expect("client");
    let n: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, pipe_server::db::MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_checked_by_kind() {
    let Some(db) = db().await else { return };
    let t = db
        .create_token(TokenKind::Agent, "a1")
        .await
        .expect("token");
    assert!(t.starts_with("pipa_"));
    let c = db.client().await.expect("client");
    let stored: String = c
        .query_one("SELECT hash FROM tokens", &[])
        .await
        .expect("row")
        .get(0);
    assert_ne!(stored, t);
    assert!(!stored.contains(&t[5..]));
    assert_eq!(
        db.check_token(TokenKind::Agent, &t)
            .await
            .expect("check")
            .map(|(_, n)| n),
        Some("a1".to_owned())
    );
    assert_eq!(
        db.check_token(TokenKind::User, &t).await.expect("check"),
        None
    );
    assert_eq!(
        db.check_token(TokenKind::Agent, "pipa_nope")
            .await
            .expect("check"),
        None
    );
    // A revoked token checks no more; revoking it again changes nothing.
    assert_eq!(db.revoke_token("a1").await.expect("revoke").len(), 1);
    assert_eq!(
        db.check_token(TokenKind::Agent, &t).await.expect("check"),
        None
    );
    assert!(db.revoke_token("a1").await.expect("again").is_empty());
    assert!(matches!(
        db.revoke_token("nobody").await,
        Err(pipe_server::db::DbError::NotFound(_))
    ));
    let listed = db.list_tokens().await.expect("list");
    assert!(listed.iter().any(|t| t.name == "a1" && t.revoked.is_some()));
}

#[tokio::test]
async fn needs_release_dependants_in_order_and_the_run_concludes() {
    let Some(db) = db().await else { return };
    let run = submit(&db, DIAMOND).await;
    let first = db
        .claim("ag", None, &labels(), 8, LEASE)
        .await
        .expect("claim");
    assert_eq!(first.len(), 1, "only `a` is queued at first");
    assert_eq!(first[0].job_key, "a");
    assert_eq!(first[0].attempt, 1);
    let outs = BTreeMap::from([("v".to_owned(), "42".to_owned())]);
    assert!(
        db.complete(first[0].job_id, 1, &first[0].token, "success", &outs)
            .await
            .expect("complete")
    );
    let mid = db
        .claim("ag", None, &labels(), 8, LEASE)
        .await
        .expect("claim");
    let mut keys: Vec<_> = mid.iter().map(|j| j.job_key.clone()).collect();
    keys.sort();
    assert_eq!(keys, ["b", "c"]);
    assert_eq!(mid[0].needs["a"].outputs["v"], "42");
    db.complete(mid[0].job_id, 1, &mid[0].token, "success", &BTreeMap::new())
        .await
        .expect("b");
    assert!(
        db.claim("ag", None, &labels(), 8, LEASE)
            .await
            .expect("claim")
            .is_empty(),
        "d waits for both"
    );
    db.complete(mid[1].job_id, 1, &mid[1].token, "failure", &BTreeMap::new())
        .await
        .expect("c");
    let last = db
        .claim("ag", None, &labels(), 8, LEASE)
        .await
        .expect("claim");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].job_key, "d");
    assert_eq!(last[0].needs.len(), 3);
    assert_eq!(db.run_status(run).await.expect("status").state, "running");
    db.complete(
        last[0].job_id,
        1,
        &last[0].token,
        "skipped",
        &BTreeMap::new(),
    )
    .await
    .expect("d");
    let st = db.run_status(run).await.expect("status");
    assert_eq!(st.state, "done");
    assert_eq!(st.conclusion.as_deref(), Some("failure"));
}

#[tokio::test]
async fn labels_route_jobs_to_agents_that_have_them() {
    let Some(db) = db().await else { return };
    submit(
        &db,
        "on: push\njobs:\n  gpu: {runs-on: [self-hosted, gpu], steps: [{run: 'true'}]}\n",
    )
    .await;
    assert!(
        db.claim("cpu", None, &labels(), 1, LEASE)
            .await
            .expect("claim")
            .is_empty()
    );
    let mut with_gpu = labels();
    with_gpu.push("gpu".into());
    assert_eq!(
        db.claim("gpu", None, &with_gpu, 1, LEASE)
            .await
            .expect("claim")
            .len(),
        1
    );
}

#[tokio::test]
async fn an_expired_lease_is_requeued_and_the_stale_attempt_is_refused() {
    let Some(db) = db().await else { return };
    let run = submit(
        &db,
        "on: push\njobs:\n  a: {runs-on: ubuntu-latest, steps: [{run: 'true'}]}\n",
    )
    .await;
    let short = Duration::from_millis(300);
    let one = db
        .claim("dead", None, &labels(), 1, short)
        .await
        .expect("claim")
        .remove(0);
    db.append_log(one.job_id, 1, &one.token, 0, "from attempt 1\n")
        .await
        .expect("log");
    // Still leased: not reaped, not claimable.
    assert!(db.reap().await.expect("reap").is_empty());
    assert!(
        db.claim("b", None, &labels(), 1, LEASE)
            .await
            .expect("claim")
            .is_empty()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.reap().await.expect("reap"), vec![(one.job_id, 1)]);
    let two = db
        .claim("alive", None, &labels(), 1, LEASE)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!((two.job_id, two.attempt), (one.job_id, 2));
    // The first agent comes back: every write it makes is fenced.
    assert!(matches!(
        db.heartbeat(one.job_id, 1, &one.token, LEASE).await,
        Err(DbError::Fenced { .. })
    ));
    assert!(matches!(
        db.append_log(one.job_id, 1, &one.token, 15, "late\n").await,
        Err(DbError::Fenced { .. })
    ));
    assert!(matches!(
        db.complete(one.job_id, 1, &one.token, "success", &BTreeMap::new())
            .await,
        Err(DbError::Fenced { .. })
    ));
    // Its token does not work for the new attempt either.
    assert!(matches!(
        db.complete(one.job_id, 2, &one.token, "success", &BTreeMap::new())
            .await,
        Err(DbError::Fenced { .. })
    ));
    assert!(
        !db.heartbeat(two.job_id, 2, &two.token, LEASE)
            .await
            .expect("hb")
    );
    db.append_log(two.job_id, 2, &two.token, 0, "from attempt 2\n")
        .await
        .expect("log");
    db.append_log(two.job_id, 2, &two.token, 0, "from attempt 2\n")
        .await
        .expect("retried chunk");
    assert!(
        db.complete(two.job_id, 2, &two.token, "success", &BTreeMap::new())
            .await
            .expect("ok")
    );
    // A retried complete (the answer was lost) is accepted without recording twice.
    assert!(
        !db.complete(two.job_id, 2, &two.token, "success", &BTreeMap::new())
            .await
            .expect("retry")
    );
    let st = db.run_status(run).await.expect("status");
    assert_eq!(
        (st.jobs[0].accepted_attempt, st.conclusion.as_deref()),
        (Some(2), Some("success"))
    );
    assert_eq!(
        db.job_log(two.job_id).await.expect("log"),
        "from attempt 2\n"
    );
    let c = db.client().await.expect("client");
    let outcomes: Vec<(i32, String)> = c
        .query(
            "SELECT attempt, outcome FROM attempts ORDER BY attempt",
            &[],
        )
        .await
        .expect("attempts")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        outcomes,
        vec![(1, "lost".to_owned()), (2, "accepted".to_owned())]
    );
}

#[tokio::test]
async fn a_job_lost_on_every_attempt_fails_and_releases_its_dependants() {
    let Some(db) = db().await else { return };
    let run = submit(&db, "on: push\njobs:\n  a: {runs-on: ubuntu-latest, steps: [{run: 'true'}]}\n  b: {needs: a, if: always(), runs-on: ubuntu-latest, steps: [{run: 'true'}]}\n").await;
    for attempt in 1..=3 {
        let j = db
            .claim("dead", None, &labels(), 1, Duration::from_millis(50))
            .await
            .expect("claim")
            .remove(0);
        assert_eq!((j.job_key.as_str(), j.attempt), ("a", attempt));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(db.reap().await.expect("reap").len(), 1);
    }
    let b = db
        .claim("x", None, &labels(), 1, LEASE)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(b.job_key, "b");
    assert_eq!(b.needs["a"].result, "failure");
    db.complete(b.job_id, 1, &b.token, "success", &BTreeMap::new())
        .await
        .expect("b");
    assert_eq!(
        db.run_status(run).await.expect("st").conclusion.as_deref(),
        Some("failure")
    );
}

#[tokio::test]
async fn secrets_are_masked_in_stored_logs() {
    let Some(db) = db().await else { return };
    let wf = "on: push\njobs:\n  a: {runs-on: ubuntu-latest, steps: [{run: 'echo ${{ secrets.TOKEN }}'}]}\n";
    let mut req = request(wf);
    req.secrets
        .insert("TOKEN".into(), "hunter2-very-secret".into());
    let jobs = plan_jobs("ci.yml", wf).expect("plan");
    db.submit(&req, &jobs, None).await.expect("submit");
    let j = db
        .claim("a", None, &labels(), 1, LEASE)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(j.secrets["TOKEN"], "hunter2-very-secret");
    db.append_log(j.job_id, 1, &j.token, 0, "token is hunter2-very-secret!\n")
        .await
        .expect("log");
    assert_eq!(db.job_log(j.job_id).await.expect("log"), "token is ***!\n");
}

#[tokio::test]
async fn a_request_id_makes_submit_idempotent() {
    let Some(db) = db().await else { return };
    let wf = "on: push\njobs:\n  a: {runs-on: ubuntu-latest, steps: [{run: 'true'}]}\n";
    let jobs = plan_jobs("ci.yml", wf).expect("plan");
    let (r1, new1) = db
        .submit(&request(wf), &jobs, Some("req-1"))
        .await
        .expect("1");
    let (r2, new2) = db
        .submit(&request(wf), &jobs, Some("req-1"))
        .await
        .expect("2");
    assert_eq!((r1, new1, new2), (r2, true, false));
    assert_eq!(
        db.claim("a", None, &labels(), 8, LEASE)
            .await
            .expect("claim")
            .len(),
        1
    );
}

/// Many concurrent claimers (each its own connection) over hundreds of jobs: every job is
/// claimed exactly once and every result is accepted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_double_claim() {
    let Some(db) = db().await else { return };
    let mut wf = String::from("on: push\njobs:\n");
    for i in 0..400 {
        wf.push_str(&format!(
            "  j{i}: {{runs-on: ubuntu-latest, steps: [{{run: 'true'}}]}}\n"
        ));
    }
    let run = submit(&db, &wf).await;
    let seen = Arc::new(std::sync::Mutex::new(HashMap::<i64, u32>::new()));
    let mut tasks = Vec::new();
    for a in 0..12 {
        let db = db.clone();
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("agent-{a}");
            loop {
                let jobs = db
                    .claim(&name, None, &labels(), 1 + a % 3, LEASE)
                    .await
                    .expect("claim");
                if jobs.is_empty() {
                    break;
                }
                for j in jobs {
                    *seen.lock().expect("lock").entry(j.job_id).or_default() += 1;
                    assert!(
                        db.complete(j.job_id, j.attempt, &j.token, "success", &BTreeMap::new())
                            .await
                            .expect("complete")
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 400);
    assert!(seen.values().all(|&n| n == 1), "a job was claimed twice");
    let st = db.run_status(run).await.expect("status");
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    assert!(st.jobs.iter().all(|j| j.accepted_attempt == Some(1)));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// A random DAG: job i may need any of the jobs before it.
    fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
        (1usize..12).prop_flat_map(|n| {
            (0..n)
                .map(|i| proptest::collection::vec(0..i.max(1), 0..=i.min(3)))
                .collect::<Vec<_>>()
                .prop_map(|mut needs| {
                    for (i, n) in needs.iter_mut().enumerate() {
                        n.retain(|&d| d < i);
                        n.sort_unstable();
                        n.dedup();
                    }
                    needs
                })
        })
    }

    fn workflow(needs: &[Vec<usize>]) -> String {
        let mut wf = String::from("on: push\njobs:\n");
        for (i, n) in needs.iter().enumerate() {
            let list: Vec<String> = n.iter().map(|d| format!("j{d}")).collect();
            wf.push_str(&format!(
                "  j{i}: {{needs: [{}], runs-on: ubuntu-latest, steps: [{{run: 'true'}}]}}\n",
                list.join(", ")
            ));
        }
        wf
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever the DAG, the order of completion and the results, and with leases that
        /// expire on the way: a job is only ever claimable once all its needs are done, each
        /// job's result is accepted exactly once, and the run concludes with the worst result.
        #[test]
        fn jobs_are_released_only_after_their_needs_and_accepted_once(
            needs in dag(),
            results in proptest::collection::vec(0usize..3, 12),
            lose in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let Some(db) = db().await else { return };
                let wf = workflow(&needs);
                let run = submit(&db, &wf).await;
                let mut done: HashMap<String, &str> = HashMap::new();
                let mut lost_once: std::collections::HashSet<String> = Default::default();
                let names = ["success", "failure", "skipped"];
                let mut guard = 0;
                while done.len() < needs.len() {
                    guard += 1;
                    assert!(guard < 200, "no progress");
                    let claimed = db.claim("p", None, &labels(), 3, Duration::from_millis(150)).await.expect("claim");
                    if claimed.is_empty() {
                        // Only lost leases can be pending: let them expire.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        db.reap().await.expect("reap");
                        continue;
                    }
                    for j in claimed {
                        let i: usize = j.job_key[1..].parse().expect("index");
                        for d in &needs[i] {
                            assert!(done.contains_key(&format!("j{d}")), "j{i} was released before j{d}");
                            assert_eq!(j.needs[&format!("j{d}")].result, done[&format!("j{d}")]);
                        }
                        if lose[i] && lost_once.insert(j.job_key.clone()) {
                            continue; // this agent dies: the lease will expire
                        }
                        let r = names[results[i]];
                        assert!(db.complete(j.job_id, j.attempt, &j.token, r, &BTreeMap::new()).await.expect("complete"));
                        assert!(done.insert(j.job_key.clone(), r).is_none(), "accepted twice");
                    }
                }
                let st = db.run_status(run).await.expect("status");
                let want = if done.values().any(|r| *r == "failure") { "failure" } else { "success" };
                assert_eq!(st.conclusion.as_deref(), Some(want));
                for j in &st.jobs {
                    let expected = if lost_once.contains(&j.key) { 2 } else { 1 };
                    assert_eq!(j.accepted_attempt, Some(expected), "{}", j.key);
                }
            });
        }
    }
}

const MATRIX: &str = "on: push
jobs:
  m:
    runs-on: ubuntu-latest
    strategy: {matrix: {n: [1, 2, 3]}}
    steps: [{run: 'true'}]
  after: {needs: m, runs-on: ubuntu-latest, steps: [{run: 'true'}]}
";

#[tokio::test]
async fn matrix_legs_are_rows_a_dependant_waits_for_all_and_fail_fast_cancels_the_rest() {
    let Some(db) = db().await else { return };
    let run = submit(&db, MATRIX).await;
    let st = db.run_status(run).await.expect("st");
    let states: Vec<(&str, Option<i32>, &str)> = st
        .jobs
        .iter()
        .map(|j| (j.key.as_str(), j.leg, j.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("m", Some(0), "queued"),
            ("m", Some(1), "queued"),
            ("m", Some(2), "queued"),
            ("after", None, "blocked"),
        ]
    );
    let legs = db
        .claim("a", None, &labels(), 2, LEASE)
        .await
        .expect("claim");
    assert_eq!(legs.len(), 2);
    assert_eq!(legs[0].matrix.get("n").map(String::as_str), Some("1"));
    assert_eq!(legs[1].leg, Some(1));
    // Leg 0 succeeds: the dependant still waits for the other two.
    let mut out = BTreeMap::new();
    out.insert("v".to_owned(), "0".to_owned());
    db.complete(legs[0].job_id, 1, &legs[0].token, "success", &out)
        .await
        .expect("leg 0");
    let st = db.run_status(run).await.expect("st");
    assert_eq!(st.jobs[3].state, "blocked");
    // Leg 1 fails: leg 2 (queued) is cancelled, a leased sibling would see `cancel`.
    db.complete(
        legs[1].job_id,
        1,
        &legs[1].token,
        "failure",
        &BTreeMap::new(),
    )
    .await
    .expect("leg 1");
    let st = db.run_status(run).await.expect("st");
    assert_eq!(st.jobs[2].result.as_deref(), Some("cancelled"));
    assert_eq!(st.jobs[3].state, "queued");
    let after = db
        .claim("a", None, &labels(), 1, LEASE)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(after.job_key, "after");
    // The needs result merges the legs: one failed, so the matrix job failed.
    assert_eq!(after.needs["m"].result, "failure");
    assert_eq!(after.needs["m"].outputs["v"], "0");
}

#[tokio::test]
async fn a_failed_leg_asks_its_running_siblings_to_cancel() {
    let Some(db) = db().await else { return };
    submit(&db, MATRIX).await;
    let legs = db
        .claim("a", None, &labels(), 3, LEASE)
        .await
        .expect("claim");
    assert_eq!(legs.len(), 3);
    db.complete(
        legs[0].job_id,
        1,
        &legs[0].token,
        "failure",
        &BTreeMap::new(),
    )
    .await
    .expect("leg 0");
    for leg in &legs[1..] {
        assert!(
            db.heartbeat(leg.job_id, 1, &leg.token, LEASE)
                .await
                .expect("hb"),
            "leg {:?} was not asked to cancel",
            leg.leg
        );
    }
}

#[tokio::test]
async fn revoking_an_agent_token_requeues_its_leases() {
    let Some(db) = db().await else { return };
    let t = db
        .create_token(TokenKind::Agent, "gone")
        .await
        .expect("token");
    let (id, _) = db
        .check_token(TokenKind::Agent, &t)
        .await
        .expect("check")
        .expect("valid");
    submit(
        &db,
        "on: push\njobs:\n  a: {runs-on: ubuntu-latest, steps: [{run: 'true'}]}\n",
    )
    .await;
    let j = db
        .claim("gone-agent", Some(id), &labels(), 1, LEASE)
        .await
        .expect("claim")
        .remove(0);
    db.revoke_token("gone").await.expect("revoke");
    assert!(matches!(
        db.heartbeat(j.job_id, 1, &j.token, LEASE).await,
        Err(DbError::Fenced { .. })
    ));
    let again = db
        .claim("other", None, &labels(), 1, LEASE)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempt, 2);
}

/// Complete-and-claim-next: the result and the agent's next lease commit together; a lost
/// answer (the agent died between its completion and running the next job) loses nothing:
/// the lease expires and the job is re-queued; a revoked agent token gets no next job.
#[tokio::test]
async fn a_completion_leases_the_next_job_and_a_lost_answer_requeues_it() {
    let Some(db) = db().await else { return };
    let token = db
        .create_token(TokenKind::Agent, "ag")
        .await
        .expect("token");
    let (token_id, _) = db
        .check_token(TokenKind::Agent, &token)
        .await
        .expect("check")
        .expect("valid");
    let run = submit(&db, DIAMOND).await;
    let labels = labels();
    let next = |lease| pipe_server::db::Next {
        agent: "ag".to_owned(),
        labels: labels.clone(),
        slots: 1,
        lease,
    };
    let a = db
        .claim("ag", Some(token_id), &labels, 1, LEASE)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(a.job_key, "a");
    // `a` done releases `b` and `c`; the same transaction leases `b` (short lease).
    let short = Duration::from_millis(300);
    let (recorded, got) = db
        .complete_and_claim(
            a.job_id,
            1,
            &a.token,
            "success",
            &BTreeMap::from([("v".to_owned(), "1".to_owned())]),
            Some(&next(short)),
        )
        .await
        .expect("complete and claim");
    assert!(recorded);
    assert_eq!(got.len(), 1);
    let b = &got[0];
    assert_eq!((b.job_key.as_str(), b.attempt), ("b", 1));
    assert_eq!(
        b.needs["a"].outputs["v"], "1",
        "needs see the result just recorded"
    );
    // A retried completion (its answer was lost) records nothing and leases nothing.
    assert_eq!(
        db.complete_and_claim(
            a.job_id,
            1,
            &a.token,
            "success",
            &BTreeMap::new(),
            Some(&next(LEASE))
        )
        .await
        .expect("retry"),
        (false, Vec::new())
    );
    // The agent died before it saw `b`: `b` is leased, then expires and is queued again.
    assert!(db.reap().await.expect("reap").is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.reap().await.expect("reap"), vec![(b.job_id, 1)]);
    let again = db
        .claim("ag", Some(token_id), &labels, 2, LEASE)
        .await
        .expect("claim");
    let keys: Vec<(&str, i32)> = again
        .iter()
        .map(|j| (j.job_key.as_str(), j.attempt))
        .collect();
    assert_eq!(keys, [("b", 2), ("c", 1)]);
    // The dead agent's late result is refused.
    assert!(matches!(
        db.complete_and_claim(
            b.job_id,
            1,
            &b.token,
            "success",
            &BTreeMap::new(),
            Some(&next(LEASE))
        )
        .await,
        Err(DbError::Fenced { .. })
    ));
    let (b2, c) = (&again[0], &again[1]);
    assert_eq!(
        db.complete_and_claim(
            b2.job_id,
            2,
            &b2.token,
            "success",
            &BTreeMap::new(),
            Some(&next(LEASE))
        )
        .await
        .expect("b"),
        (true, Vec::new()),
        "`d` still waits for `c`"
    );
    // An agent token revoked while the job ran (before the reaper re-queued the job) gets no
    // next job, though the result counts.
    db.client()
        .await
        .expect("client")
        .execute("UPDATE tokens SET revoked_at = now()", &[])
        .await
        .expect("revoke");
    let (recorded, got) = db
        .complete_and_claim(
            c.job_id,
            1,
            &c.token,
            "success",
            &BTreeMap::new(),
            Some(&next(LEASE)),
        )
        .await
        .expect("c");
    assert!(recorded);
    assert!(got.is_empty());
    let d = db
        .claim("other", None, &labels, 1, LEASE)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(d.job_key, "d");
    assert!(
        db.complete(d.job_id, 1, &d.token, "success", &BTreeMap::new())
            .await
            .expect("d")
    );
    let st = db.run_status(run).await.expect("status");
    assert_eq!(st.conclusion.as_deref(), Some("success"));
    let c = db.client().await.expect("client");
    let attempts: Vec<String> = c
        .query(
            "SELECT j.job_key || ':' || a.attempt || ':' || a.outcome FROM attempts a
             JOIN jobs j ON j.id = a.job_id ORDER BY j.job_key, a.attempt",
            &[],
        )
        .await
        .expect("attempts")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        attempts,
        [
            "a:1:accepted",
            "b:1:lost",
            "b:2:accepted",
            "c:1:accepted",
            "d:1:accepted"
        ]
    );
}

/// Group commit: a batch of completions in one transaction answers each as if it were alone
/// (recorded, a retry, a lease not held, an invalid result), and the next jobs it leases are
/// all different.
#[tokio::test]
async fn a_batch_of_completions_answers_each_and_leases_distinct_next_jobs() {
    use pipe_server::db::{Completion, Next};
    let Some(db) = db().await else { return };
    let token = db
        .create_token(TokenKind::Agent, "ag")
        .await
        .expect("token");
    let (token_id, _) = db
        .check_token(TokenKind::Agent, &token)
        .await
        .expect("check")
        .expect("valid");
    let wf = (1..=8).fold("on: push\njobs:\n".to_owned(), |mut w, i| {
        w.push_str(&format!(
            "  j{i}: {{runs-on: ubuntu-latest, steps: [{{run: 'true'}}]}}\n"
        ));
        w
    });
    let run = submit(&db, &wf).await;
    let held = db
        .claim("ag", Some(token_id), &labels(), 4, LEASE)
        .await
        .expect("claim");
    assert_eq!(held.len(), 4);
    let done = |j: &pipe_server::api::ClaimedJob, result: &str, next: bool| Completion {
        job: j.job_id,
        attempt: j.attempt,
        token: j.token.clone(),
        result: result.to_owned(),
        outputs: BTreeMap::new(),
        next: next.then(|| Next {
            agent: "ag".to_owned(),
            labels: labels(),
            slots: 1,
            lease: LEASE,
        }),
    };
    let mut wrong_token = done(&held[2], "success", true);
    wrong_token.token = "pipj_wrong".to_owned();
    let batch = [
        done(&held[0], "success", true),
        done(&held[1], "success", true),
        done(&held[0], "success", true),
        wrong_token,
        done(&held[3], "maybe", true),
        done(&held[3], "success", false),
    ];
    let answers = db.complete_batch(&batch).await;
    assert_eq!(answers.len(), batch.len());
    let got = |i: usize| answers[i].as_ref().expect("answer");
    assert!(got(0).0 && got(1).0 && got(5).0, "recorded");
    assert_eq!((got(0).1.len(), got(1).1.len(), got(5).1.len()), (1, 1, 0));
    assert_eq!(
        *got(2),
        (false, Vec::new()),
        "the same completion again is a retry"
    );
    assert!(matches!(answers[3], Err(DbError::Fenced { .. })));
    assert!(matches!(answers[4], Err(DbError::Invalid(_))));
    let next: Vec<i64> = [0, 1].iter().map(|&i| got(i).1[0].job_id).collect();
    assert_ne!(next[0], next[1]);
    assert!(held.iter().all(|h| !next.contains(&h.job_id)));
    // The rest runs to the end, the last batch concluding the run.
    let rest = db
        .claim("ag", Some(token_id), &labels(), 8, LEASE)
        .await
        .expect("claim");
    let mut last: Vec<Completion> = rest.iter().map(|j| done(j, "success", false)).collect();
    last.push(done(&held[2], "success", false));
    last.extend([0, 1].iter().map(|&i| done(&got(i).1[0], "success", true)));
    assert_eq!(last.len(), 5);
    for a in db.complete_batch(&last).await {
        assert_eq!(a.expect("recorded"), (true, Vec::new()));
    }
    let st = db.run_status(run).await.expect("status");
    assert_eq!(st.state, "done");
    assert_eq!(st.conclusion.as_deref(), Some("success"));
}
