//! The PostgreSQL layer: migrations and every statement the server runs.
//!
//! **Invariants**
//! - Every write an agent causes names `(job, attempt, job token)` and is a conditional
//!   `UPDATE … WHERE attempt = $a AND state = 'leased' AND lease_token_hash = $h`: zero rows
//!   means the lease is gone (expired and re-queued, or the job finished) and the call is
//!   refused. Time is the database's `now()`, never an agent's clock.
//! - A job's result is accepted once: the row goes `leased → done` in the transaction that
//!   records it, together with releasing its dependants and finishing the run.
//! - Claims use `FOR UPDATE SKIP LOCKED`, so concurrent claimers never take the same job.
//! - Tokens are stored as SHA-256 hashes only.

use std::collections::BTreeMap;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;
use tokio_postgres::types::Json;

use crate::api::{ClaimedJob, JobStatus, NeedResult, RunStatus, SubmitRequest};
use crate::plan::NewJob;

/// The migrations, in order; `pipe server migrate` and server start apply the missing ones.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (10, "web", include_str!("../migrations/0010_web.sql")),
];

/// The notification channel woken when jobs become claimable.
pub const CHANNEL: &str = "pipe_jobs";

/// A database error, or a refusal.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The lease named is not held any more (stale attempt, expired lease, wrong token).
    #[error("the lease of job {job} attempt {attempt} is not held")]
    Fenced {
        /// The job.
        job: i64,
        /// The attempt.
        attempt: i32,
    },
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// Not found.
    #[error("{0} not found")]
    NotFound(String),
    /// PostgreSQL.
    #[error("database: {0}")]
    Pg(#[from] tokio_postgres::Error),
    /// The pool.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// Result alias.
pub type DbResult<T> = Result<T, DbError>;

/// The kinds of token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An agent token: claims jobs.
    Agent,
    /// A user token: submits runs and reads them.
    User,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Agent => "agent",
            TokenKind::User => "user",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Agent => "pipa_",
            TokenKind::User => "pipu_",
        }
    }
}

/// SHA-256 of a token, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token with a prefix.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A connection pool to the server's database.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    config: tokio_postgres::Config,
}

impl Db {
    /// A pool for a `postgres://` URL or `key=value` connection string (connections are made
    /// lazily).
    pub fn connect(url: &str, max_size: usize) -> DbResult<Db> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| DbError::Invalid(format!("invalid database URL: {e}")))?;
        let mgr = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(max_size.max(1))
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Invalid(format!("cannot build the pool: {e}")))?;
        Ok(Db { pool, config })
    }

    /// The connection settings (for the `LISTEN` connection).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Applies the missing migrations under an advisory lock (several servers may start at
    /// once); returns the versions applied.
    pub async fn migrate(&self) -> DbResult<Vec<i32>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock(7316001)", &[])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let done: Vec<i32> = tx
            .query("SELECT version FROM schema_migrations", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
            applied.push(*version);
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Creates a token and returns it (only its hash is stored).
    pub async fn create_token(&self, kind: TokenKind, name: &str) -> DbResult<String> {
        let token = new_token(kind.prefix());
        let c = self.pool.get().await?;
        c.execute(
            "INSERT INTO tokens (kind, name, hash) VALUES ($1, $2, $3)",
            &[&kind.as_str(), &name, &hash_token(&token)],
        )
        .await?;
        Ok(token)
    }

    /// The name of the token's owner when the token is valid for `kind`.
    pub async fn check_token(&self, kind: TokenKind, token: &str) -> DbResult<Option<String>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT name FROM tokens WHERE hash = $1 AND kind = $2",
                &[&hash_token(token), &kind.as_str()],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Stores a run and its jobs; jobs without needs are queued at once. With a request id
    /// already used, returns that run instead (`false`: nothing new was stored).
    pub async fn submit(
        &self,
        req: &SubmitRequest,
        jobs: &[NewJob],
        request_id: Option<&str>,
    ) -> DbResult<(i64, bool)> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let event = req.event.clone().unwrap_or_else(|| "push".to_owned());
        let n = i32::try_from(jobs.len()).map_err(|_| DbError::Invalid("too many jobs".into()))?;
        let row = tx
            .query_opt(
                "INSERT INTO runs (request_id, workflow_path, workflow, event, repo, sha, git_ref,
                                   secrets, jobs_remaining)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (request_id) DO NOTHING RETURNING id",
                &[
                    &request_id,
                    &req.workflow_path,
                    &req.workflow,
                    &event,
                    &req.repo,
                    &req.sha,
                    &req.git_ref,
                    &Json(&req.secrets),
                    &n,
                ],
            )
            .await?;
        let Some(row) = row else {
            let row = tx
                .query_one("SELECT id FROM runs WHERE request_id = $1", &[&request_id])
                .await?;
            return Ok((row.get(0), false));
        };
        let run: i64 = row.get(0);
        let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
        let positions: Vec<i32> = (0..n).collect();
        let needs: Vec<String> = jobs
            .iter()
            .map(|j| serde_json::to_string(&j.needs).unwrap_or_else(|_| "[]".into()))
            .collect();
        let labels: Vec<String> = jobs
            .iter()
            .map(|j| serde_json::to_string(&j.labels).unwrap_or_else(|_| "[]".into()))
            .collect();
        tx.execute(
            "INSERT INTO jobs (run_id, job_key, position, needs, labels, state, pending_deps,
                               queued_at)
             SELECT $1, k, p,
                    ARRAY(SELECT jsonb_array_elements_text(n::jsonb)),
                    l::jsonb,
                    CASE WHEN jsonb_array_length(n::jsonb) = 0 THEN 'queued' ELSE 'blocked' END,
                    jsonb_array_length(n::jsonb),
                    CASE WHEN jsonb_array_length(n::jsonb) = 0 THEN now() END
             FROM unnest($2::text[], $3::int[], $4::text[], $5::text[]) AS u(k, p, n, l)",
            &[&run, &keys, &positions, &needs, &labels],
        )
        .await?;
        if n == 0 {
            tx.execute(
                "UPDATE runs SET state = 'done', conclusion = 'success', finished_at = now()
                 WHERE id = $1",
                &[&run],
            )
            .await?;
        }
        tx.execute(&format!("NOTIFY {CHANNEL}"), &[]).await?;
        tx.commit().await?;
        Ok((run, true))
    }

    /// Leases up to `slots` queued jobs whose labels are a subset of `labels` to `agent`.
    ///
    /// One statement (one round trip, its own transaction) leases the jobs, records the
    /// attempts and reads the runs; only a job with needs costs a second query for its
    /// ancestors' results, which are final and need no transaction.
    pub async fn claim(
        &self,
        agent: &str,
        labels: &[String],
        slots: u32,
        lease: Duration,
    ) -> DbResult<Vec<ClaimedJob>> {
        let c = self.pool.get().await?;
        let slots = i64::from(slots.clamp(1, 64));
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let tokens: Vec<String> = (0..slots).map(|_| new_token("pipj_")).collect();
        let hashes: Vec<String> = tokens.iter().map(|t| hash_token(t)).collect();
        let rows = c
            .query(
                "WITH c AS (
                     SELECT id, row_number() OVER (ORDER BY id) AS n FROM (
                         SELECT id FROM jobs
                         WHERE state = 'queued' AND labels <@ $1::jsonb
                         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) s),
                 u AS (
                     UPDATE jobs j SET state = 'leased', attempt = j.attempt + 1,
                            lease_owner = $3,
                            lease_expires_at = now() + make_interval(secs => $4::bigint / 1000.0),
                            lease_token_hash = ($5::text[])[c.n]
                     FROM c WHERE j.id = c.id
                     RETURNING j.id, j.attempt, j.run_id, j.job_key, c.n,
                               cardinality(j.needs) AS nn, j.queued_at),
                 a AS (
                     INSERT INTO attempts (job_id, attempt, agent)
                     SELECT id, attempt, $3 FROM u ON CONFLICT DO NOTHING)
                 SELECT u.id, u.attempt, u.run_id, u.job_key, u.n, u.nn,
                        r.workflow_path, r.workflow, r.event, r.repo, r.sha, r.secrets,
                        coalesce(extract(epoch FROM now() - u.queued_at)::float8, 0)
                 FROM u JOIN runs r ON r.id = u.run_id ORDER BY u.n",
                &[&Json(labels), &slots, &agent, &lease_ms, &hashes],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let job: i64 = r.get(0);
            let attempt: i32 = r.get(1);
            let run: i64 = r.get(2);
            let key: String = r.get(3);
            let n: i64 = r.get(4);
            let has_needs = r.get::<_, Option<i32>>(5).unwrap_or(0) > 0;
            let token = usize::try_from(n - 1)
                .ok()
                .and_then(|i| tokens.get(i))
                .cloned()
                .ok_or_else(|| DbError::Invalid("token index out of range".into()))?;
            // The results of the job's ancestors (its needs, theirs, …): the `needs` context
            // and the status functions read them.
            let needs = if !has_needs {
                BTreeMap::new()
            } else {
                c.query(
                    "WITH RECURSIVE anc(key) AS (
                         SELECT unnest(needs) FROM jobs WHERE id = $2
                         UNION
                         SELECT unnest(j.needs) FROM jobs j JOIN anc ON j.job_key = anc.key
                         WHERE j.run_id = $1)
                     SELECT job_key, result, outputs FROM jobs
                     WHERE run_id = $1 AND state = 'done' AND job_key IN (SELECT key FROM anc)",
                    &[&run, &job],
                )
                .await?
                .iter()
                .map(|r| {
                    let outputs: Option<Json<BTreeMap<String, String>>> = r.get(2);
                    (
                        r.get::<_, String>(0),
                        NeedResult {
                            result: r.get::<_, Option<String>>(1).unwrap_or_default(),
                            outputs: outputs.map(|j| j.0).unwrap_or_default(),
                        },
                    )
                })
                .collect()
            };
            let secrets: Json<BTreeMap<String, String>> = r.get(11);
            crate::metrics::global().claimed(r.get::<_, f64>(12));
            out.push(ClaimedJob {
                job_id: job,
                attempt,
                token,
                run_id: run,
                job_key: key,
                workflow_path: r.get(6),
                workflow: r.get(7),
                event: r.get(8),
                repo: r.get(9),
                sha: r.get(10),
                needs,
                secrets: secrets.0,
                lease_ms: u64::try_from(lease_ms).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Extends a lease; returns whether the job should be cancelled.
    pub async fn heartbeat(
        &self,
        job: i64,
        attempt: i32,
        token: &str,
        lease: Duration,
    ) -> DbResult<bool> {
        let c = self.pool.get().await?;
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let row = c
            .query_opt(
                "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4::bigint / 1000.0)
                 WHERE id = $1 AND attempt = $2 AND state = 'leased' AND lease_token_hash = $3
                 RETURNING cancel_requested",
                &[&job, &attempt, &hash_token(token), &lease_ms],
            )
            .await?;
        row.map(|r| r.get(0))
            .ok_or(DbError::Fenced { job, attempt })
    }

    /// The secrets of the job's run, when `token` holds the job's lease.
    pub async fn lease_secrets(
        &self,
        job: i64,
        attempt: i32,
        token: &str,
    ) -> DbResult<Vec<String>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT r.secrets FROM jobs j JOIN runs r ON r.id = j.run_id
                 WHERE j.id = $1 AND j.attempt = $2 AND j.state = 'leased'
                   AND j.lease_token_hash = $3",
                &[&job, &attempt, &hash_token(token)],
            )
            .await?;
        let Some(row) = row else {
            return Err(DbError::Fenced { job, attempt });
        };
        let secrets: Json<BTreeMap<String, String>> = row.get(0);
        Ok(secrets.0.into_values().filter(|v| !v.is_empty()).collect())
    }

    /// Stores a log chunk at its byte offset with the run's secrets masked (idempotent: the
    /// same offset twice stores it once). The lease must be held.
    pub async fn append_log(
        &self,
        job: i64,
        attempt: i32,
        token: &str,
        offset: i64,
        data: &str,
    ) -> DbResult<()> {
        let secrets = self.lease_secrets(job, attempt, token).await?;
        let data = crate::secret::mask(data, &secrets);
        let c = self.pool.get().await?;
        c.execute(
            "INSERT INTO log_chunks (job_id, attempt, \"offset\", data) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&job, &attempt, &offset, &data],
        )
        .await?;
        Ok(())
    }

    /// Records the attempt's result: the job is done, its dependants whose needs are all done
    /// are queued, and the run finishes with its last job. Returns `false` when the same
    /// attempt had already been recorded (a retried call).
    pub async fn complete(
        &self,
        job: i64,
        attempt: i32,
        token: &str,
        result: &str,
        outputs: &BTreeMap<String, String>,
    ) -> DbResult<bool> {
        if !crate::api::RESULTS.contains(&result) {
            return Err(DbError::Invalid(format!(
                "`result` must be one of {}, not `{result}`",
                crate::api::RESULTS.join(", ")
            )));
        }
        let hash = hash_token(token);
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        // One statement: the job is done, its attempt accepted, its dependants' counters drop
        // (those at zero are queued and announced), and the run's count of unfinished jobs
        // drops.
        let row = tx
            .query_one(
                "WITH j AS (
                     UPDATE jobs SET state = 'done', result = $4, outputs = $5,
                            accepted_attempt = attempt, finished_at = now(),
                            lease_expires_at = NULL
                     WHERE id = $1 AND attempt = $2 AND state = 'leased'
                       AND lease_token_hash = $3
                     RETURNING id, attempt, run_id, job_key),
                 a AS (
                     UPDATE attempts SET outcome = 'accepted', ended_at = now()
                     FROM j WHERE attempts.job_id = j.id AND attempts.attempt = j.attempt
                     RETURNING extract(epoch FROM now() - attempts.started_at)::float8 AS secs),
                 d AS (
                     UPDATE jobs SET pending_deps = jobs.pending_deps - 1,
                            state = CASE WHEN jobs.pending_deps = 1 THEN 'queued'
                                         ELSE jobs.state END,
                            queued_at = CASE WHEN jobs.pending_deps = 1 THEN now()
                                             ELSE jobs.queued_at END
                     FROM j
                     WHERE jobs.run_id = j.run_id AND jobs.needs @> ARRAY[j.job_key]
                       AND jobs.state = 'blocked'
                     RETURNING jobs.pending_deps),
                 r AS (
                     UPDATE runs SET jobs_remaining = runs.jobs_remaining - 1
                     FROM j WHERE runs.id = j.run_id
                     RETURNING runs.id, runs.jobs_remaining)
                 SELECT (SELECT id FROM r), (SELECT jobs_remaining FROM r),
                        (SELECT count(*) FROM d WHERE pending_deps = 0),
                        (SELECT secs FROM a)",
                &[&job, &attempt, &hash, &result, &Json(outputs)],
            )
            .await?;
        let run: Option<i64> = row.get(0);
        let Some(run) = run else {
            tx.rollback().await?;
            let again = c
                .query_opt(
                    "SELECT 1 FROM jobs WHERE id = $1 AND state = 'done'
                       AND accepted_attempt = $2 AND lease_token_hash = $3",
                    &[&job, &attempt, &hash],
                )
                .await?;
            return match again {
                Some(_) => Ok(false),
                None => Err(DbError::Fenced { job, attempt }),
            };
        };
        let remaining: Option<i32> = row.get(1);
        let released: i64 = row.get(2);
        if released > 0 {
            tx.execute(&format!("NOTIFY {CHANNEL}"), &[]).await?;
        }
        if remaining == Some(0) {
            conclude_run(&tx, run).await?;
        }
        tx.commit().await?;
        crate::metrics::global().completed(result, row.get::<_, Option<f64>>(3).unwrap_or(0.0));
        Ok(true)
    }

    /// Re-queues the jobs whose lease expired (or fails them after their last attempt);
    /// returns `(job, attempt)` of each expired lease.
    pub async fn reap(&self) -> DbResult<Vec<(i64, i32)>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let rows = tx
            .query(
                "SELECT id, attempt, max_attempts, run_id, job_key FROM jobs
                 WHERE state = 'leased' AND lease_expires_at < now()
                 ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut requeued = false;
        for r in &rows {
            let job: i64 = r.get(0);
            let attempt: i32 = r.get(1);
            let max: i32 = r.get(2);
            tx.execute(
                "UPDATE attempts SET outcome = 'lost', ended_at = now()
                 WHERE job_id = $1 AND attempt = $2",
                &[&job, &attempt],
            )
            .await?;
            if attempt < max {
                tx.execute(
                    "UPDATE jobs SET state = 'queued', queued_at = now(), lease_owner = NULL,
                            lease_expires_at = NULL, lease_token_hash = NULL
                     WHERE id = $1",
                    &[&job],
                )
                .await?;
                requeued = true;
            } else {
                let run: i64 = r.get(3);
                let key: String = r.get(4);
                tx.execute(
                    "UPDATE jobs SET state = 'done', result = 'failure', finished_at = now(),
                            lease_expires_at = NULL, lease_token_hash = NULL
                     WHERE id = $1",
                    &[&job],
                )
                .await?;
                finish_job(&tx, run, &key).await?;
            }
            out.push((job, attempt));
        }
        if requeued {
            tx.execute(&format!("NOTIFY {CHANNEL}"), &[]).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Asks a run's unfinished jobs to stop: queued and blocked ones finish as cancelled,
    /// leased ones see `cancel: true` on their next heartbeat.
    pub async fn cancel_run(&self, run: i64) -> DbResult<()> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        tx.execute(
            "UPDATE jobs SET cancel_requested = true WHERE run_id = $1 AND state = 'leased'",
            &[&run],
        )
        .await?;
        let rows = tx
            .query(
                "UPDATE jobs SET state = 'done', result = 'cancelled', finished_at = now()
                 WHERE run_id = $1 AND state IN ('queued', 'blocked') RETURNING job_key",
                &[&run],
            )
            .await?;
        for r in rows {
            let key: String = r.get(0);
            finish_job(&tx, run, &key).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A run and its jobs.
    pub async fn run_status(&self, run: i64) -> DbResult<RunStatus> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT id, workflow_path, event, state, conclusion FROM runs WHERE id = $1",
                &[&run],
            )
            .await?
            .ok_or_else(|| DbError::NotFound(format!("run {run}")))?;
        let jobs = c
            .query(
                "SELECT id, job_key, state, attempt, result, accepted_attempt, outputs, needs
                 FROM jobs WHERE run_id = $1 ORDER BY position",
                &[&run],
            )
            .await?
            .iter()
            .map(|r| {
                let outputs: Option<Json<BTreeMap<String, String>>> = r.get(6);
                JobStatus {
                    id: r.get(0),
                    key: r.get(1),
                    state: r.get(2),
                    attempt: r.get(3),
                    result: r.get(4),
                    accepted_attempt: r.get(5),
                    outputs: outputs.map(|j| j.0).unwrap_or_default(),
                    needs: r.get(7),
                }
            })
            .collect();
        Ok(RunStatus {
            id: row.get(0),
            workflow_path: row.get(1),
            event: row.get(2),
            state: row.get(3),
            conclusion: row.get(4),
            jobs,
        })
    }

    /// The log of a job's accepted attempt (or of its latest attempt while it runs).
    pub async fn job_log(&self, job: i64) -> DbResult<String> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT coalesce(accepted_attempt, attempt) FROM jobs WHERE id = $1",
                &[&job],
            )
            .await?
            .ok_or_else(|| DbError::NotFound(format!("job {job}")))?;
        let attempt: i32 = row.get(0);
        let rows = c
            .query(
                "SELECT data FROM log_chunks WHERE job_id = $1 AND attempt = $2
                 ORDER BY \"offset\"",
                &[&job, &attempt],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    /// A connection from the pool (tests and tools).
    pub async fn client(&self) -> DbResult<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

/// After a job is done: decrements its dependants' pending needs, queues those with none
/// left, and finishes the run when it was the last job.
async fn finish_job(tx: &deadpool_postgres::Transaction<'_>, run: i64, key: &str) -> DbResult<()> {
    let released = tx
        .query(
            "UPDATE jobs SET pending_deps = pending_deps - 1,
                    state = CASE WHEN pending_deps = 1 THEN 'queued' ELSE state END,
                    queued_at = CASE WHEN pending_deps = 1 THEN now() ELSE queued_at END
             WHERE run_id = $1 AND needs @> ARRAY[$2::text] AND state = 'blocked'
             RETURNING pending_deps",
            &[&run, &key],
        )
        .await?
        .iter()
        .filter(|r| r.get::<_, i32>(0) == 0)
        .count();
    if released > 0 {
        tx.execute(&format!("NOTIFY {CHANNEL}"), &[]).await?;
    }
    let row = tx
        .query_one(
            "UPDATE runs SET jobs_remaining = jobs_remaining - 1 WHERE id = $1
             RETURNING jobs_remaining",
            &[&run],
        )
        .await?;
    let remaining: i32 = row.get(0);
    if remaining == 0 {
        conclude_run(tx, run).await?;
    }
    Ok(())
}

/// Sets a finished run's conclusion from its jobs' results.
async fn conclude_run(tx: &deadpool_postgres::Transaction<'_>, run: i64) -> DbResult<()> {
    {
        tx.execute(
            "UPDATE runs SET state = 'done', finished_at = now(), conclusion = (
                 SELECT CASE WHEN bool_or(result = 'failure') THEN 'failure'
                             WHEN bool_or(result = 'cancelled') THEN 'cancelled'
                             ELSE 'success' END
                 FROM jobs WHERE run_id = $1)
             WHERE id = $1",
            &[&run],
        )
        .await?;
    }
    Ok(())
}
