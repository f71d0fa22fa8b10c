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

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;
use tokio_postgres::types::Json;

use crate::api::{
    Artifact, ArtifactFile, ArtifactList, ArtifactUpload, ClaimedJob, JobStatus, NeedResult,
    RunStatus, SubmitRequest,
};
use crate::plan::NewJob;
use crate::secret::ServerKey;

/// The migrations, in order; `pipe server migrate` and server start apply the missing ones.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        10,
        "agent_tokens_secrets_legs",
        include_str!("../migrations/0010_agent_tokens_secrets_legs.sql"),
    ),
    (
        11,
        "artifact_blobs",
        include_str!("../migrations/0011_artifact_blobs.sql"),
    ),
    (12, "web", include_str!("../migrations/0012_web.sql")),
    (
        13,
        "job_results",
        include_str!("../migrations/0013_job_results.sql"),
    ),
];

/// The notification channel woken when jobs become claimable.
pub const CHANNEL: &str = "pipe_jobs";

/// The notification channel told when a token is revoked (servers drop their token caches).
pub const TOKENS_CHANNEL: &str = "pipe_tokens";

/// A token as `pipe server token list` shows it (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// Its id.
    pub id: i64,
    /// `agent` or `user`.
    pub kind: String,
    /// Who holds it.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// When it was revoked, if it was.
    pub revoked: Option<String>,
}

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
    /// The request conflicts with what is stored.
    #[error("{0}")]
    Conflict(String),
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
    key: ServerKey,
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
        Ok(Db {
            pool,
            config,
            key: ServerKey::ephemeral(),
        })
    }

    /// The same pool sealing and opening secrets with `key` (the server's key file; without
    /// one, a key of this process only).
    pub fn with_key(mut self, key: ServerKey) -> Db {
        self.key = key;
        self
    }

    /// The server key.
    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    /// Opens sealed secrets; a value that does not open (another server key) is left out
    /// with a warning, never delivered sealed.
    fn open_secrets(&self, sealed: BTreeMap<String, String>) -> BTreeMap<String, String> {
        sealed
            .into_iter()
            .filter_map(|(k, v)| match self.key.open(&k, &v) {
                Some(plain) => Some((k, plain)),
                None => {
                    tracing::warn!(
                        "secret `{k}` does not open with this server's key; is `server.key` shared by every server?"
                    );
                    None
                }
            })
            .collect()
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

    /// The id and owner's name of the token when it is valid (and not revoked) for `kind`.
    pub async fn check_token(
        &self,
        kind: TokenKind,
        token: &str,
    ) -> DbResult<Option<(i64, String)>> {
        let c = self.pool.get().await?;
        let row = c
            .query_opt(
                "SELECT id, name FROM tokens
                 WHERE hash = $1 AND kind = $2 AND revoked_at IS NULL",
                &[&hash_token(token), &kind.as_str()],
            )
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> DbResult<Vec<TokenInfo>> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT id, kind, name,
                        to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                 FROM tokens ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| TokenInfo {
                id: r.get(0),
                kind: r.get(1),
                name: r.get(2),
                created: r.get(3),
                revoked: r.get(4),
            })
            .collect())
    }

    /// Revokes the token with id `which`, or every token named `which`; returns the ids
    /// revoked now. Jobs leased with a revoked agent token are re-queued at once (their agent's
    /// next heartbeat is refused), and every server drops its cache of checked tokens.
    pub async fn revoke_token(&self, which: &str) -> DbResult<Vec<i64>> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let id: Option<i64> = which.parse().ok();
        let rows = tx
            .query(
                "UPDATE tokens SET revoked_at = now()
                 WHERE (id = $1 OR ($1 IS NULL AND name = $2)) AND revoked_at IS NULL
                 RETURNING id",
                &[&id, &which],
            )
            .await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if ids.is_empty() {
            let known = tx
                .query_opt(
                    "SELECT 1 FROM tokens WHERE id = $1 OR ($1 IS NULL AND name = $2)",
                    &[&id, &which],
                )
                .await?;
            if known.is_none() {
                return Err(DbError::NotFound(format!("token `{which}`")));
            }
        }
        tx.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second'
             WHERE state = 'leased' AND lease_agent_token = ANY($1)",
            &[&ids],
        )
        .await?;
        tx.execute(&format!("NOTIFY {TOKENS_CHANNEL}"), &[]).await?;
        tx.commit().await?;
        self.reap().await?;
        Ok(ids)
    }

    /// Stores a run and its jobs; jobs without needs are queued at once. With a request id
    /// already used, returns that run instead (`false`: nothing new was stored).
    pub async fn submit(
        &self,
        req: &SubmitRequest,
        jobs: &[NewJob],
        request_id: Option<&str>,
    ) -> DbResult<(i64, bool)> {
        let sealed: BTreeMap<String, String> = req
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), self.key.seal(k, v)))
            .collect();
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
                    &Json(&sealed),
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
        // A dependant waits for every row of each need: all the legs of a matrix job.
        let pending: Vec<i32> = jobs
            .iter()
            .map(|j| {
                let n = jobs.iter().filter(|o| j.needs.contains(&o.key)).count();
                i32::try_from(n).unwrap_or(i32::MAX)
            })
            .collect();
        let legs: Vec<Option<i32>> = jobs.iter().map(|j| j.leg).collect();
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        let matrices: Vec<String> = jobs
            .iter()
            .map(|j| serde_json::to_string(&j.matrix).unwrap_or_else(|_| "[]".into()))
            .collect();
        let fail_fast: Vec<bool> = jobs.iter().map(|j| j.fail_fast).collect();
        let all_secrets: Vec<bool> = jobs.iter().map(|j| j.secrets.is_none()).collect();
        let secret_names: Vec<String> = jobs
            .iter()
            .map(|j| {
                serde_json::to_string(&j.secrets.clone().unwrap_or_default())
                    .unwrap_or_else(|_| "[]".into())
            })
            .collect();
        tx.execute(
            "INSERT INTO jobs (run_id, job_key, position, needs, labels, state, pending_deps,
                               queued_at, leg, name, matrix, fail_fast, all_secrets,
                               secret_names)
             SELECT $1, k, p,
                    ARRAY(SELECT jsonb_array_elements_text(n::jsonb)),
                    l::jsonb,
                    CASE WHEN pd = 0 THEN 'queued' ELSE 'blocked' END,
                    pd,
                    CASE WHEN pd = 0 THEN now() END,
                    lg, nm, mx::jsonb, ff, al,
                    ARRAY(SELECT jsonb_array_elements_text(sn::jsonb))
             FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::int[], $7::int[],
                         $8::text[], $9::text[], $10::bool[], $11::bool[], $12::text[])
                  AS u(k, p, n, l, pd, lg, nm, mx, ff, al, sn)",
            &[
                &run,
                &keys,
                &positions,
                &needs,
                &labels,
                &pending,
                &legs,
                &names,
                &matrices,
                &fail_fast,
                &all_secrets,
                &secret_names,
            ],
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
    /// One statement (one round trip, its own transaction, prepared once per connection)
    /// leases the jobs, records the attempts and reads the runs; only a job with needs costs a
    /// second query for its ancestors' results, which are final and need no transaction.
    pub async fn claim(
        &self,
        agent: &str,
        agent_token: Option<i64>,
        labels: &[String],
        slots: u32,
        lease: Duration,
    ) -> DbResult<Vec<ClaimedJob>> {
        let c = self.pool.get().await?;
        let claimed = self
            .claim_on(&c, agent, agent_token, labels, slots, lease)
            .await?;
        Ok(record_claims(claimed))
    }

    /// Leases jobs on `c` (a connection, or a transaction the caller commits); returns them
    /// with the seconds each waited in the queue (for the metrics, counted once committed).
    async fn claim_on<C: GenericClient>(
        &self,
        c: &C,
        agent: &str,
        agent_token: Option<i64>,
        labels: &[String],
        slots: u32,
        lease: Duration,
    ) -> DbResult<Vec<(ClaimedJob, f64)>> {
        let slots = i64::from(slots.clamp(1, 64));
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let tokens: Vec<String> = (0..slots).map(|_| new_token("pipj_")).collect();
        let hashes: Vec<String> = tokens.iter().map(|t| hash_token(t)).collect();
        let stmt = c.prepare_cached(CLAIM_SQL).await?;
        let rows = c
            .query(
                &stmt,
                &[
                    &Json(labels),
                    &slots,
                    &agent,
                    &lease_ms,
                    &hashes,
                    &agent_token,
                ],
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
                let anc = c.prepare_cached(ANCESTORS_SQL).await?;
                c.query(&anc, &[&run, &job])
                    .await?
                    .iter()
                    .map(|r| {
                        let outputs: Option<Json<BTreeMap<String, String>>> = r.get(2);
                        (
                            r.get::<_, String>(0),
                            r.get::<_, Option<String>>(1).unwrap_or_default(),
                            outputs.map(|j| j.0).unwrap_or_default(),
                        )
                    })
                    .fold(BTreeMap::new(), merge_leg)
            };
            let secrets: Json<BTreeMap<String, String>> = r.get(11);
            let matrix: Json<Vec<(String, String)>> = r.get(14);
            let waited = r.get::<_, f64>(15);
            out.push((
                ClaimedJob {
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
                    secrets: self.open_secrets(secrets.0),
                    lease_ms: u64::try_from(lease_ms).unwrap_or(0),
                    leg: r.get(12),
                    name: r.get(13),
                    matrix: matrix.0.into_iter().collect(),
                    cache_path: None,
                },
                waited,
            ));
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
        let stmt = c
            .prepare_cached(
                "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4::bigint / 1000.0)
                 WHERE id = $1 AND attempt = $2 AND state = 'leased' AND lease_token_hash = $3
                 RETURNING cancel_requested",
            )
            .await?;
        let row = c
            .query_opt(&stmt, &[&job, &attempt, &hash_token(token), &lease_ms])
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
        Ok(self
            .open_secrets(secrets.0)
            .into_values()
            .filter(|v| !v.is_empty())
            .collect())
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
        self.complete_and_claim(job, attempt, token, result, outputs, None)
            .await
            .map(|(recorded, _)| recorded)
    }

    /// [`Db::complete`], then, when the result was recorded now and `next` is given, leases
    /// the agent's next jobs right after the commit (a claim of its own: claiming inside the
    /// completion's transaction would hold the run's row, which every completion of the run
    /// updates, for the claim's time too). They go to the agent token that claimed the
    /// completed job; none when that token is unknown or revoked. If the answer never reaches
    /// the agent, their leases expire and they are re-queued like any lost job.
    pub async fn complete_and_claim(
        &self,
        job: i64,
        attempt: i32,
        token: &str,
        result: &str,
        outputs: &BTreeMap<String, String>,
        next: Option<&Next>,
    ) -> Completed {
        let (recorded, agent_token) = self.record(job, attempt, token, result, outputs).await?;
        let jobs = if recorded {
            self.claim_next(next, agent_token).await
        } else {
            Vec::new()
        };
        Ok((recorded, jobs))
    }

    /// Records one result in its own transaction: whether it was recorded now, and the agent
    /// token to claim the agent's next jobs with.
    async fn record(
        &self,
        job: i64,
        attempt: i32,
        token: &str,
        result: &str,
        outputs: &BTreeMap<String, String>,
    ) -> Recorded {
        check_result(result)?;
        let hash = hash_token(token);
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let stmt = tx.prepare_cached(COMPLETE_SQL).await?;
        let row = tx
            .query_one(&stmt, &[&job, &attempt, &hash, &result, &Json(outputs)])
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
                Some(_) => Ok((false, None)),
                None => Err(DbError::Fenced { job, attempt }),
            };
        };
        let remaining: Option<i32> = row.get(1);
        let released: i64 = row.get(2);
        let fail_fast_key: Option<String> = row.get(3);
        let agent_token: Option<i64> = row.get(5);
        if released > 0 {
            tx.execute(&format!("NOTIFY {CHANNEL}"), &[]).await?;
        }
        if remaining == Some(0) {
            conclude_run(&tx, run).await?;
        } else if result == "failure"
            && let Some(key) = fail_fast_key
        {
            cancel_siblings(&tx, run, &key, job).await?;
        }
        tx.commit().await?;
        crate::metrics::global().completed(result, row.get::<_, Option<f64>>(4).unwrap_or(0.0));
        Ok((true, agent_token))
    }

    /// The next jobs of an agent that just completed one, claimed with the agent token that
    /// claimed the completed job (none when that token is unknown or revoked). The completion
    /// is committed by then: a failed claim answers no jobs (the agent claims again).
    pub async fn claim_next(
        &self,
        next: Option<&Next>,
        agent_token: Option<i64>,
    ) -> Vec<ClaimedJob> {
        let (Some(n), Some(t)) = (next, agent_token) else {
            return Vec::new();
        };
        if n.slots == 0 {
            return Vec::new();
        }
        match self
            .claim(&n.agent, Some(t), &n.labels, n.slots, n.lease)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!("claiming the next job of agent `{}`: {e}", n.agent);
                Vec::new()
            }
        }
    }

    /// [`Db::record_batch`], then each recorded completion's next claim, side by side.
    pub async fn complete_batch(&self, items: &[Completion]) -> Vec<Completed> {
        let recorded = self.record_batch(items).await;
        futures_util::future::join_all(recorded.into_iter().zip(items).map(|(r, it)| async move {
            let (recorded, agent_token) = r?;
            let jobs = if recorded {
                self.claim_next(it.next.as_ref(), agent_token).await
            } else {
                Vec::new()
            };
            Ok((recorded, jobs))
        }))
        .await
    }

    /// Records several results in one transaction (one commit, one WAL flush), each exactly as
    /// [`Db::complete`] would, and answers each with what [`Db::claim_next`] needs (`next` is
    /// not claimed here: a claim of each agent's own, after the commit, neither holds the run's
    /// row nor waits for the others). The server batches the completions that arrive while
    /// earlier ones commit (group commit); every answer is sent after the commit, so an
    /// answered result is durable. If the batch fails as a whole (a deadlock with another
    /// server, say), each result is recorded on its own.
    pub async fn record_batch(&self, items: &[Completion]) -> Vec<Recorded> {
        if let [one] = items {
            return vec![self.record_one(one).await];
        }
        match self.try_complete_batch(items).await {
            Ok(out) => out,
            Err(e) => {
                tracing::debug!(
                    "a batch of {} completions failed ({e}); one by one",
                    items.len()
                );
                let mut out = Vec::with_capacity(items.len());
                for it in items {
                    out.push(self.record_one(it).await);
                }
                out
            }
        }
    }

    async fn record_one(&self, it: &Completion) -> Recorded {
        self.record(it.job, it.attempt, &it.token, &it.result, &it.outputs)
            .await
    }

    async fn try_complete_batch(&self, items: &[Completion]) -> DbResult<Vec<Recorded>> {
        let mut out: Vec<Option<Recorded>> = items
            .iter()
            .map(|it| check_result(&it.result).err().map(Err))
            .collect();
        let todo: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
        let hashes: Vec<String> = items.iter().map(|it| hash_token(&it.token)).collect();
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let stmt = tx.prepare_cached(COMPLETE_SQL).await?;
        // Sent together (pipelined), run in order.
        let rows = futures_util::future::try_join_all(todo.iter().map(|&i| {
            let (it, hash, stmt, tx) = (&items[i], &hashes[i], &stmt, &tx);
            async move {
                let outputs = Json(&it.outputs);
                tx.query_one(stmt, &[&it.job, &it.attempt, hash, &it.result, &outputs])
                    .await
            }
        }))
        .await?;
        let mut released = false;
        let mut recorded = Vec::new();
        let mut fenced = Vec::new();
        for (&i, row) in todo.iter().zip(&rows) {
            let it = &items[i];
            let Some(run) = row.get::<_, Option<i64>>(0) else {
                fenced.push(i);
                continue;
            };
            released |= row.get::<_, i64>(2) > 0;
            if row.get::<_, Option<i32>>(1) == Some(0) {
                conclude_run(&tx, run).await?;
            } else if it.result == "failure"
                && let Some(key) = row.get::<_, Option<String>>(3)
            {
                cancel_siblings(&tx, run, &key, it.job).await?;
            }
            recorded.push((
                i,
                row.get::<_, Option<f64>>(4),
                row.get::<_, Option<i64>>(5),
            ));
        }
        if released {
            tx.execute(&format!("NOTIFY {CHANNEL}"), &[]).await?;
        }
        tx.commit().await?;
        for (i, secs, agent_token) in recorded {
            crate::metrics::global().completed(&items[i].result, secs.unwrap_or(0.0));
            out[i] = Some(Ok((true, agent_token)));
        }
        // Not recorded now: a retried call of a recorded attempt, or a lease not held.
        for i in fenced {
            let it = &items[i];
            let again = c
                .query_opt(
                    "SELECT 1 FROM jobs WHERE id = $1 AND state = 'done'
                       AND accepted_attempt = $2 AND lease_token_hash = $3",
                    &[&it.job, &it.attempt, &hashes[i]],
                )
                .await;
            out[i] = Some(match again {
                Ok(Some(_)) => Ok((false, None)),
                Ok(None) => Err(DbError::Fenced {
                    job: it.job,
                    attempt: it.attempt,
                }),
                Err(e) => Err(e.into()),
            });
        }
        Ok(out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(DbError::Invalid("not processed".to_owned()))))
            .collect())
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
                "SELECT j.id, j.job_key, j.state, j.attempt, j.result, j.accepted_attempt,
                        j.outputs, j.needs, j.leg, j.name, r.results
                 FROM jobs j LEFT JOIN web_job_results r
                   ON r.job_id = j.id AND r.attempt = coalesce(j.accepted_attempt, j.attempt)
                 WHERE j.run_id = $1 ORDER BY j.position, j.leg NULLS FIRST",
                &[&run],
            )
            .await?
            .iter()
            .map(|r| {
                let outputs: Option<Json<BTreeMap<String, String>>> = r.get(6);
                let results: Option<Json<serde_json::Value>> = r.get(10);
                JobStatus {
                    id: r.get(0),
                    key: r.get(1),
                    state: r.get(2),
                    attempt: r.get(3),
                    result: r.get(4),
                    accepted_attempt: r.get(5),
                    outputs: outputs.map(|j| j.0).unwrap_or_default(),
                    needs: r.get(7),
                    leg: r.get(8),
                    name: r.get(9),
                    results: results.map(|j| j.0),
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

    /// The run of the job whose lease `token` holds.
    pub async fn lease_run(&self, job: i64, attempt: i32, token: &str) -> DbResult<i64> {
        let c = self.pool.get().await?;
        c.query_opt(
            "SELECT run_id FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'leased'
               AND lease_token_hash = $3",
            &[&job, &attempt, &hash_token(token)],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or(DbError::Fenced { job, attempt })
    }

    /// Records a stored blob.
    pub async fn add_blob(&self, digest: &str, size: u64) -> DbResult<()> {
        let c = self.pool.get().await?;
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        c.execute(
            // `created_at` is when it was last stored: a fresh upload of an old blob is not
            // collected before what refers to it is recorded (see `gc`).
            "INSERT INTO blobs (digest, size) VALUES ($1, $2)
             ON CONFLICT (digest) DO UPDATE SET created_at = now()",
            &[&digest, &size],
        )
        .await?;
        Ok(())
    }

    /// Records an artifact of the job's run (its blobs stored before). A name is unique per
    /// run: a later attempt of the same job replaces its artifact, another job's is refused.
    pub async fn add_artifact(
        &self,
        job: i64,
        attempt: i32,
        token: &str,
        up: &ArtifactUpload,
    ) -> DbResult<Artifact> {
        if up.name.is_empty() || up.name.len() > 256 {
            return Err(DbError::Invalid(
                "`name` must have 1 to 256 characters".to_owned(),
            ));
        }
        for f in &up.files {
            let bad_path = f.path.is_empty()
                || f.path.starts_with('/')
                || f.path.split('/').any(|c| c == ".." || c.is_empty());
            if bad_path {
                return Err(DbError::Invalid(format!(
                    "file path `{}` must be relative, `/`-separated, without `..`",
                    f.path
                )));
            }
            if !crate::blobs::valid_digest(&f.digest) {
                return Err(DbError::Invalid(format!(
                    "`{}` is not a SHA-256 digest (64 lower-case hex digits)",
                    f.digest
                )));
            }
        }
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let run: i64 = tx
            .query_opt(
                "SELECT run_id FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'leased'
                   AND lease_token_hash = $3 FOR SHARE",
                &[&job, &attempt, &hash_token(token)],
            )
            .await?
            .map(|r| r.get(0))
            .ok_or(DbError::Fenced { job, attempt })?;
        let digests: Vec<&str> = up.files.iter().map(|f| f.digest.as_str()).collect();
        let missing: Vec<String> = tx
            .query(
                "SELECT d FROM unnest($1::text[]) AS d
                 WHERE NOT EXISTS (SELECT 1 FROM blobs WHERE digest = d)",
                &[&digests],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(m) = missing.first() {
            return Err(DbError::Invalid(format!(
                "blob `{m}` was not uploaded; upload every file's blob first"
            )));
        }
        let row = tx
            .query_opt(
                "INSERT INTO artifacts (run_id, name, job_id, attempt, info)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (run_id, name) DO UPDATE
                     SET attempt = excluded.attempt, info = excluded.info, created_at = now()
                     WHERE artifacts.job_id = excluded.job_id
                 RETURNING id",
                &[&run, &up.name, &job, &attempt, &Json(&up.info)],
            )
            .await?;
        let Some(row) = row else {
            return Err(DbError::Conflict(format!(
                "artifact `{}` already exists in run {run} (uploaded by another job)",
                up.name
            )));
        };
        let id: i64 = row.get(0);
        tx.execute("DELETE FROM artifact_files WHERE artifact_id = $1", &[&id])
            .await?;
        let paths: Vec<&str> = up.files.iter().map(|f| f.path.as_str()).collect();
        let sizes: Vec<i64> = up.files.iter().map(|f| f.size).collect();
        let modes: Vec<i32> = up.files.iter().map(|f| f.mode).collect();
        tx.execute(
            "INSERT INTO artifact_files (artifact_id, path, digest, size, mode)
             SELECT $1, p, d, s, m FROM unnest($2::text[], $3::text[], $4::bigint[], $5::int[])
                  AS u(p, d, s, m)
             ON CONFLICT (artifact_id, path) DO NOTHING",
            &[&id, &paths, &digests, &sizes, &modes],
        )
        .await?;
        tx.commit().await?;
        Ok(Artifact {
            name: up.name.clone(),
            job_id: job,
            attempt,
            info: up.info.clone(),
            files: up.files.clone(),
        })
    }

    /// A run's artifacts, by name.
    pub async fn artifacts(&self, run: i64) -> DbResult<ArtifactList> {
        let c = self.pool.get().await?;
        let rows = c
            .query(
                "SELECT a.name, a.job_id, a.attempt, a.info,
                        coalesce(jsonb_agg(jsonb_build_object('path', f.path, 'digest', f.digest,
                                 'size', f.size, 'mode', f.mode) ORDER BY f.path)
                                 FILTER (WHERE f.path IS NOT NULL), '[]'),
                        a.id
                 FROM artifacts a LEFT JOIN artifact_files f ON f.artifact_id = a.id
                 WHERE a.run_id = $1 GROUP BY a.id ORDER BY a.name",
                &[&run],
            )
            .await?;
        let mut artifacts = Vec::with_capacity(rows.len());
        for r in rows {
            let mut info: Json<serde_json::Value> = r.get(3);
            let files: Json<Vec<ArtifactFile>> = r.get(4);
            // Ids are the server's (unique in the run across agents), not the uploading job's.
            let id: i64 = r.get(5);
            if let Some(o) = info.0.as_object_mut() {
                o.insert("id".to_owned(), serde_json::json!(id));
            }
            artifacts.push(Artifact {
                name: r.get(0),
                job_id: r.get(1),
                attempt: r.get(2),
                info: info.0,
                files: files.0,
            });
        }
        Ok(ArtifactList { artifacts })
    }

    /// Whether `digest` is a file of an artifact of `run`.
    pub async fn run_has_blob(&self, run: i64, digest: &str) -> DbResult<bool> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT 1 FROM artifact_files f JOIN artifacts a ON a.id = f.artifact_id
             WHERE a.run_id = $1 AND f.digest = $2 LIMIT 1",
            &[&run, &digest],
        )
        .await?
        .is_some())
    }

    /// The cache scope of a run (its repository) while the run is running.
    pub async fn cache_scope(&self, run: i64) -> DbResult<Option<String>> {
        let c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT coalesce(repo, '') FROM runs WHERE id = $1 AND state = 'running'",
            &[&run],
        )
        .await?
        .map(|r| r.get(0)))
    }

    /// The blob holding an action-cache entry.
    pub async fn cache_ac_get(&self, scope: &str, digest: &str) -> DbResult<Option<String>> {
        let c = self.pool.get().await?;
        // A read keeps the entry (cache retention counts from the last use); the row is
        // written at most once an hour.
        let row = c
            .query_opt(
                "SELECT blob, updated_at < now() - interval '1 hour' FROM cache_ac
                  WHERE scope = $1 AND digest = $2",
                &[&scope, &digest],
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        if row.get::<_, bool>(1) {
            c.execute(
                "UPDATE cache_ac SET updated_at = now() WHERE scope = $1 AND digest = $2",
                &[&scope, &digest],
            )
            .await?;
        }
        Ok(Some(row.get(0)))
    }

    /// Sets an action-cache entry to a stored blob.
    pub async fn cache_ac_put(&self, scope: &str, digest: &str, blob: &str) -> DbResult<()> {
        let c = self.pool.get().await?;
        c.execute(
            "INSERT INTO cache_ac (scope, digest, blob) VALUES ($1, $2, $3)
             ON CONFLICT (scope, digest) DO UPDATE SET blob = excluded.blob, updated_at = now()",
            &[&scope, &digest, &blob],
        )
        .await?;
        Ok(())
    }

    /// A connection from the pool (tests and tools).
    pub async fn client(&self) -> DbResult<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

/// What a completing agent claims next ([`Db::complete_and_claim`]).
#[derive(Clone, Debug)]
pub struct Next {
    /// The agent's name.
    pub agent: String,
    /// Its labels.
    pub labels: Vec<String>,
    /// How many jobs to take (0: none).
    pub slots: u32,
    /// The lease of each.
    pub lease: Duration,
}

/// One completion of a batch ([`Db::complete_batch`]).
#[derive(Clone, Debug)]
pub struct Completion {
    /// The job.
    pub job: i64,
    /// The attempt.
    pub attempt: i32,
    /// The job token.
    pub token: String,
    /// The result.
    pub result: String,
    /// The outputs.
    pub outputs: BTreeMap<String, String>,
    /// The agent's next claim, if it asked for one.
    pub next: Option<Next>,
}

/// What a completion answers: whether it was recorded now, and the jobs leased with it.
pub type Completed = DbResult<(bool, Vec<ClaimedJob>)>;

/// A result's answer before any next claim: whether it was recorded now, and the agent token
/// that claimed the job (unless revoked), for [`Db::claim_next`].
pub type Recorded = DbResult<(bool, Option<i64>)>;

/// Refuses a result that is not one of [`crate::api::RESULTS`].
fn check_result(result: &str) -> DbResult<()> {
    if crate::api::RESULTS.contains(&result) {
        Ok(())
    } else {
        Err(DbError::Invalid(format!(
            "`result` must be one of {}, not `{result}`",
            crate::api::RESULTS.join(", ")
        )))
    }
}

/// Counts claimed jobs (and their time in the queue) in the metrics, once committed.
fn record_claims(claimed: Vec<(ClaimedJob, f64)>) -> Vec<ClaimedJob> {
    claimed
        .into_iter()
        .map(|(job, waited)| {
            crate::metrics::global().claimed(waited);
            job
        })
        .collect()
}

/// Leases queued jobs: `$1` labels (jsonb), `$2` slots, `$3` agent name, `$4` lease in ms,
/// `$5` the job tokens' hashes, `$6` the agent token's id. One statement leases the jobs,
/// records the attempts and reads the runs.
const CLAIM_SQL: &str = "WITH c AS (
         SELECT id, row_number() OVER (ORDER BY id) AS n FROM (
             SELECT id FROM jobs
             WHERE state = 'queued' AND labels <@ $1::jsonb
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) s),
     u AS (
         UPDATE jobs j SET state = 'leased', attempt = j.attempt + 1,
                lease_owner = $3,
                lease_expires_at = now() + make_interval(secs => $4::bigint / 1000.0),
                lease_token_hash = ($5::text[])[c.n],
                lease_agent_token = $6
         FROM c WHERE j.id = c.id
         RETURNING j.id, j.attempt, j.run_id, j.job_key, c.n,
                   cardinality(j.needs) AS nn, j.leg, j.name, j.matrix,
                   j.all_secrets, j.secret_names, j.queued_at),
     a AS (
         INSERT INTO attempts (job_id, attempt, agent)
         SELECT id, attempt, $3 FROM u ON CONFLICT DO NOTHING)
     SELECT u.id, u.attempt, u.run_id, u.job_key, u.n, u.nn,
            r.workflow_path, r.workflow, r.event, r.repo, r.sha,
            coalesce((SELECT jsonb_object_agg(s.key, s.value)
                      FROM jsonb_each(r.secrets) s
                      WHERE u.all_secrets OR upper(s.key) = ANY(u.secret_names)),
                     '{}'::jsonb),
            u.leg, u.name, u.matrix,
            coalesce(extract(epoch FROM now() - u.queued_at)::float8, 0)
     FROM u JOIN runs r ON r.id = u.run_id ORDER BY u.n";

/// The results of a job's ancestors (`$1` run, `$2` job), in the order they finished.
const ANCESTORS_SQL: &str = "WITH RECURSIVE anc(key) AS (
         SELECT unnest(needs) FROM jobs WHERE id = $2
         UNION
         SELECT unnest(j.needs) FROM jobs j JOIN anc ON j.job_key = anc.key
         WHERE j.run_id = $1)
     SELECT job_key, result, outputs FROM jobs
     WHERE run_id = $1 AND state = 'done' AND job_key IN (SELECT key FROM anc)
     ORDER BY finished_at, id";

/// Records a result (`$1` job, `$2` attempt, `$3` job token hash, `$4` result, `$5` outputs)
/// in one statement: the job is done, its attempt accepted, its dependants' counters drop
/// (those at zero are queued) and the run's count of unfinished jobs drops. Answers the run
/// (null: the lease is not held), the jobs left, the dependants released, the job key when it
/// is a fail-fast leg, the attempt's seconds, and the id of the agent token that claimed the
/// job when that token is not revoked.
const COMPLETE_SQL: &str = "WITH j AS (
         UPDATE jobs SET state = 'done', result = $4, outputs = $5,
                accepted_attempt = attempt, finished_at = now(),
                lease_expires_at = NULL
         WHERE id = $1 AND attempt = $2 AND state = 'leased'
           AND lease_token_hash = $3
         RETURNING id, attempt, run_id, job_key, leg, fail_fast, lease_agent_token),
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
            (SELECT job_key FROM j WHERE leg IS NOT NULL AND fail_fast),
            (SELECT secs FROM a),
            (SELECT t.id FROM tokens t JOIN j ON t.id = j.lease_agent_token
             WHERE t.revoked_at IS NULL)";

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

/// Folds one finished row into the results of needs by job id: a matrix job is `failure` when
/// a leg failed, else `cancelled` when one was, `skipped` when all were, else `success`; its
/// outputs merge over its legs in the order they finished.
fn merge_leg(
    mut acc: BTreeMap<String, NeedResult>,
    (key, result, outputs): (String, String, BTreeMap<String, String>),
) -> BTreeMap<String, NeedResult> {
    fn rank(r: &str) -> u8 {
        match r {
            "failure" => 3,
            "cancelled" => 2,
            "success" => 1,
            _ => 0,
        }
    }
    match acc.get_mut(&key) {
        None => {
            acc.insert(key, NeedResult { result, outputs });
        }
        Some(n) => {
            if rank(&result) > rank(&n.result) {
                n.result = result;
            }
            n.outputs.extend(outputs);
        }
    }
    acc
}

/// Fail-fast: the other legs of a failed leg's job are cancelled, on every agent (leased legs
/// see `cancel: true` on their next heartbeat; queued and blocked ones finish as cancelled).
async fn cancel_siblings(
    tx: &deadpool_postgres::Transaction<'_>,
    run: i64,
    key: &str,
    failed: i64,
) -> DbResult<()> {
    tx.execute(
        "UPDATE jobs SET cancel_requested = true
         WHERE run_id = $1 AND job_key = $2 AND id <> $3 AND state = 'leased'",
        &[&run, &key, &failed],
    )
    .await?;
    let rows = tx
        .query(
            "UPDATE jobs SET state = 'done', result = 'cancelled', finished_at = now()
             WHERE run_id = $1 AND job_key = $2 AND id <> $3 AND state IN ('queued', 'blocked')
             RETURNING job_key",
            &[&run, &key, &failed],
        )
        .await?;
    for r in rows {
        let key: String = r.get(0);
        finish_job(tx, run, &key).await?;
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
