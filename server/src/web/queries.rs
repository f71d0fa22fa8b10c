//! The UI's reads (and the step-summary and results writes), kept apart from the queue's
//! statements in `db`.

use serde::Serialize;

use crate::db::{Db, DbResult, hash_token};

/// A row of the runs list.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    /// Id.
    pub id: i64,
    /// Workflow path.
    pub workflow: String,
    /// Event.
    pub event: String,
    /// `running` or `done`.
    pub state: String,
    /// Conclusion when done.
    pub conclusion: Option<String>,
    /// Jobs in all.
    pub jobs: i64,
    /// Jobs done.
    pub done: i64,
    /// Submitted (RFC 3339, UTC).
    pub created: String,
    /// Seconds from submission to the end (or now).
    pub seconds: f64,
}

/// The latest `limit` runs.
pub async fn runs(db: &Db, limit: i64) -> DbResult<Vec<RunRow>> {
    let c = db.client().await?;
    let rows = c
        .query(
            "SELECT r.id, r.workflow_path, r.event, r.state, r.conclusion,
                    (SELECT count(*) FROM jobs j WHERE j.run_id = r.id),
                    (SELECT count(*) FROM jobs j WHERE j.run_id = r.id AND j.state = 'done'),
                    to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    extract(epoch FROM coalesce(r.finished_at, now()) - r.created_at)::float8
             FROM runs r ORDER BY r.id DESC LIMIT $1",
            &[&limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RunRow {
            id: r.get(0),
            workflow: r.get(1),
            event: r.get(2),
            state: r.get(3),
            conclusion: r.get(4),
            jobs: r.get(5),
            done: r.get(6),
            created: r.get(7),
            seconds: r.get(8),
        })
        .collect())
}

/// New log text of a job.
#[derive(Clone, Debug, Serialize)]
pub struct LogSince {
    /// The attempt shown (the accepted one, else the latest).
    pub attempt: i32,
    /// Whether the client must drop what it showed (the attempt changed).
    pub reset: bool,
    /// Chunks after the offset asked for, in order: `[offset, text]`.
    pub chunks: Vec<(i64, String)>,
    /// The job is done: no more text will come.
    pub done: bool,
    /// The job's state.
    pub state: String,
}

/// The chunks of a job's current attempt after byte offset `after`; `None` when there is no
/// such job.
pub async fn log_since(
    db: &Db,
    job: i64,
    shown_attempt: Option<i32>,
    after: i64,
) -> DbResult<Option<LogSince>> {
    let c = db.client().await?;
    let Some(row) = c
        .query_opt(
            "SELECT coalesce(accepted_attempt, attempt), state FROM jobs WHERE id = $1",
            &[&job],
        )
        .await?
    else {
        return Ok(None);
    };
    let attempt: i32 = row.get(0);
    let state: String = row.get(1);
    let reset = shown_attempt.is_some_and(|a| a != attempt);
    let after = if reset { -1 } else { after };
    let chunks = c
        .query(
            "SELECT \"offset\", data FROM log_chunks
             WHERE job_id = $1 AND attempt = $2 AND \"offset\" > $3
             ORDER BY \"offset\" LIMIT 500",
            &[&job, &attempt, &after],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
        .collect::<Vec<_>>();
    // Done once the job is done and this answer holds the last chunk.
    let done = state == "done" && chunks.len() < 500;
    Ok(Some(LogSince {
        attempt,
        reset,
        chunks,
        done,
        state,
    }))
}

/// The step summaries of a job's accepted (or latest) attempt.
pub async fn summary(db: &Db, job: i64) -> DbResult<Option<String>> {
    let c = db.client().await?;
    let row = c
        .query_opt(
            "SELECT s.markdown FROM jobs j JOIN web_step_summaries s
               ON s.job_id = j.id AND s.attempt = coalesce(j.accepted_attempt, j.attempt)
             WHERE j.id = $1",
            &[&job],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The secrets to mask in what the attempt sends, or `None` when the caller no longer holds
/// the job's lease (the write is refused).
async fn leased_secrets(
    db: &Db,
    job: i64,
    attempt: i32,
    token: &str,
) -> DbResult<Option<Vec<String>>> {
    match db.lease_secrets(job, attempt, token).await {
        Ok(s) => Ok(Some(s)),
        Err(crate::db::DbError::Fenced { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores an attempt's step summaries while its lease is held; `false` when it is not.
pub async fn put_summary(
    db: &Db,
    job: i64,
    attempt: i32,
    token: &str,
    markdown: &str,
) -> DbResult<bool> {
    let Some(secrets) = leased_secrets(db, job, attempt, token).await? else {
        return Ok(false);
    };
    let markdown = crate::secret::mask(markdown, &secrets);
    let c = db.client().await?;
    let n = c
        .execute(
            "INSERT INTO web_step_summaries (job_id, attempt, markdown)
             SELECT id, attempt, $4 FROM jobs
             WHERE id = $1 AND attempt = $2 AND state = 'leased' AND lease_token_hash = $3
             ON CONFLICT (job_id, attempt) DO UPDATE SET markdown = excluded.markdown",
            &[&job, &attempt, &hash_token(token), &markdown],
        )
        .await?;
    Ok(n > 0)
}

/// The benchmark medians (seconds, by name) of the latest finished run of `workflow` before
/// `run` that recorded benchmarks, and that run: the baseline of the run page's changes.
pub async fn bench_baseline(
    db: &Db,
    run: i64,
    workflow: &str,
) -> DbResult<(Option<i64>, std::collections::HashMap<String, f64>)> {
    let c = db.client().await?;
    let rows = c
        .query(
            "SELECT ru.id, r.results FROM runs ru
               JOIN jobs j ON j.run_id = ru.id
               JOIN web_job_results r
                 ON r.job_id = j.id AND r.attempt = coalesce(j.accepted_attempt, j.attempt)
             WHERE ru.workflow_path = $1 AND ru.id < $2 AND ru.state = 'done'
               AND jsonb_typeof(r.results -> 'benchmarks') = 'array'
               AND jsonb_array_length(r.results -> 'benchmarks') > 0
               AND ru.id = (SELECT max(ru2.id) FROM runs ru2
                              JOIN jobs j2 ON j2.run_id = ru2.id
                              JOIN web_job_results r2 ON r2.job_id = j2.id
                                AND r2.attempt = coalesce(j2.accepted_attempt, j2.attempt)
                            WHERE ru2.workflow_path = $1 AND ru2.id < $2 AND ru2.state = 'done'
                              AND jsonb_typeof(r2.results -> 'benchmarks') = 'array'
                              AND jsonb_array_length(r2.results -> 'benchmarks') > 0)",
            &[&workflow, &run],
        )
        .await?;
    let mut medians = std::collections::HashMap::new();
    let mut from = None;
    for r in &rows {
        from = Some(r.get::<_, i64>(0));
        let v: tokio_postgres::types::Json<serde_json::Value> = r.get(1);
        for b in v.0["benchmarks"].as_array().into_iter().flatten() {
            if let (Some(name), Some(m)) = (b["name"].as_str(), b["median"].as_f64()) {
                medians.entry(name.to_owned()).or_insert(m);
            }
        }
    }
    Ok((from, medians))
}

/// Every string in a JSON value with the secrets masked and NUL characters (which `jsonb`
/// refuses) dropped, keys included.
fn mask_json(v: &mut serde_json::Value, secrets: &[String]) {
    let clean = |s: &str| crate::secret::mask(&s.replace('\0', ""), secrets);
    match v {
        serde_json::Value::String(s) => *s = clean(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| mask_json(x, secrets)),
        serde_json::Value::Object(o) => {
            let old = std::mem::take(o);
            for (k, mut x) in old {
                mask_json(&mut x, secrets);
                o.insert(clean(&k), x);
            }
        }
        _ => {}
    }
}

/// Stores an attempt's results record while its lease is held (secrets masked in every
/// string); `false` when the lease is not held.
pub async fn put_results(
    db: &Db,
    job: i64,
    attempt: i32,
    token: &str,
    mut results: serde_json::Value,
) -> DbResult<bool> {
    let Some(secrets) = leased_secrets(db, job, attempt, token).await? else {
        return Ok(false);
    };
    mask_json(&mut results, &secrets);
    let c = db.client().await?;
    let n = c
        .execute(
            "INSERT INTO web_job_results (job_id, attempt, results)
             SELECT id, attempt, $4 FROM jobs
             WHERE id = $1 AND attempt = $2 AND state = 'leased' AND lease_token_hash = $3
             ON CONFLICT (job_id, attempt) DO UPDATE SET results = excluded.results",
            &[
                &job,
                &attempt,
                &hash_token(token),
                &tokio_postgres::types::Json(&results),
            ],
        )
        .await?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_every_string_of_a_results_record() {
        let mut v = serde_json::json!({
            "jobs": [{"failed_tests": [{"name": "uses hunter2", "message": "hunter2 leaked"}]}],
            "hunter2": 1, "n": 3, "nul": "a\u{0}b"
        });
        mask_json(&mut v, &["hunter2".to_owned()]);
        let text = v.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(v["n"], 3);
        assert_eq!(v["nul"], "ab");
        assert_eq!(v["jobs"][0]["failed_tests"][0]["message"], "*** leaked");
    }
}
