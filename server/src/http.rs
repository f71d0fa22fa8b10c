//! The HTTP API (axum). Stateless: every request goes to PostgreSQL, so several servers can
//! share one database. Each server keeps one `LISTEN` connection to wake its long-polling
//! claimers, with a one-second poll as the fallback (a missed notification, a database
//! restart), and runs the lease reaper.
//!
//! Authentication (bearer tokens): user tokens submit and read runs, agent tokens claim jobs,
//! and the job token a claim returns is the only credential for that attempt's heartbeat, log,
//! artifact and complete calls. Webhooks carry an HMAC signature instead. The step and action
//! cache is reached through a signed path (a grant, see [`cache_grant`]) handed out with each
//! claimed job: it names the run, the methods allowed and an expiry, and stops working when the
//! run ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

use crate::api::{
    ArtifactUpload, ClaimRequest, ClaimResponse, ClaimedJob, CompleteRequest, CompleteResponse,
    ErrorBody, HeartbeatResponse, SubmitRequest,
};
use crate::blobs::{BlobError, BlobStore, valid_digest};
use crate::db::{Completion, Db, DbError, Next, Recorded, TokenKind};
use crate::secret::ServerKey;

/// The OpenAPI document (kept by hand; a test checks it against the routes and types).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Server settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a lease lasts without a heartbeat.
    pub lease: Duration,
    /// The longest a claim waits.
    pub max_wait: Duration,
    /// Requests per second per client address on the public endpoints (0: unlimited).
    pub rate_limit: u32,
    /// The shared secret of the webhook endpoint (none: the endpoint answers 404).
    pub webhook_secret: Option<String>,
    /// Where the server keeps git mirrors for webhooks.
    pub git_cache: std::path::PathBuf,
    /// Serve HTTPS with this certificate chain and private key (PEM files).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Where blobs (artifact files, cache entries) are stored.
    pub blob_dir: std::path::PathBuf,
    /// How long a job's cache grant works (at most; it also ends with the run).
    pub cache_grant_ttl: Duration,
    /// The repository whose promotion ledger the web UI shows and approves in.
    pub promotion: Option<crate::web::promote::Promotion>,
    /// Retention, and how often to collect what it lets go (none: never).
    pub gc: Option<(crate::gc::Policy, Duration)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease: Duration::from_secs(30),
            max_wait: Duration::from_secs(30),
            rate_limit: 50,
            webhook_secret: None,
            git_cache: std::env::temp_dir().join("pipe-server-git"),
            tls: None,
            blob_dir: std::env::temp_dir().join("pipe-server-blobs"),
            cache_grant_ttl: Duration::from_secs(6 * 3600),
            promotion: None,
            gc: None,
        }
    }
}

/// Shared state of the handlers.
pub struct AppState {
    db: Db,
    settings: Settings,
    wake: Arc<Notify>,
    limiter: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    /// Recently checked tokens (hash → id and owner), so a busy agent costs one query per
    /// minute, not one per request. Emptied when any server revokes a token.
    tokens: TokenCache,
    blobs: BlobStore,
    /// Completions waiting for the batcher ([`complete_batches`]).
    completions: tokio::sync::mpsc::Sender<(Completion, CompletionReply)>,
}

type CompletionReply = tokio::sync::oneshot::Sender<Recorded>;
type CompletionQueue =
    Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(Completion, CompletionReply)>>>;

/// How many batches of completions may be in flight at once (one commits while the next is
/// gathered and run), and the most completions in one batch.
const COMPLETERS: usize = 2;
const MAX_BATCH: usize = 64;

type TokenCache = Arc<Mutex<HashMap<(bool, String), ((i64, String), Instant)>>>;

impl AppState {
    /// The database.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }
    /// The settings.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }
    /// The blob store (artifact files, cache entries).
    pub(crate) fn blobs(&self) -> &BlobStore {
        &self.blobs
    }
}

/// How long a checked token is trusted without asking the database again.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// An error answer.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Fenced { .. } => ApiError(StatusCode::CONFLICT, e.to_string()),
            DbError::Invalid(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
            DbError::NotFound(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            // 409 means "the lease is not held" to agents; a conflicting request is a 422.
            DbError::Conflict(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
            DbError::Pg(_) | DbError::Pool(_) => {
                tracing::warn!("{e}");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable; retry".to_owned(),
                )
            }
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn require(
    state: &AppState,
    headers: &HeaderMap,
    kind: TokenKind,
) -> ApiResult<(i64, String)> {
    let unauthorized = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            format!(
                "a valid {} token is required (`Authorization: Bearer …`)",
                match kind {
                    TokenKind::Agent => "agent",
                    TokenKind::User => "user",
                }
            ),
        )
    };
    let token = bearer(headers).ok_or_else(unauthorized)?;
    let key = (kind == TokenKind::Agent, crate::db::hash_token(token));
    if let Ok(cache) = state.tokens.lock()
        && let Some((who, at)) = cache.get(&key)
        && at.elapsed() < TOKEN_TTL
    {
        return Ok(who.clone());
    }
    let who = state
        .db
        .check_token(kind, token)
        .await?
        .ok_or_else(unauthorized)?;
    if let Ok(mut cache) = state.tokens.lock() {
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(key, (who.clone(), Instant::now()));
    }
    Ok(who)
}

fn job_token(headers: &HeaderMap) -> ApiResult<&str> {
    bearer(headers).ok_or_else(|| {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "the job token from the claim is required (`Authorization: Bearer …`)".to_owned(),
        )
    })
}

/// A token bucket per client address: `rate` requests per second, bursts of `2 × rate`.
fn rate_limited(state: &AppState, addr: IpAddr) -> ApiResult<()> {
    let rate = f64::from(state.settings.rate_limit);
    if rate <= 0.0 {
        return Ok(());
    }
    let mut map = state
        .limiter
        .lock()
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "poisoned".into()))?;
    let now = Instant::now();
    if map.len() > 10_000 {
        map.retain(|_, (_, t)| now.duration_since(*t) < Duration::from_secs(60));
    }
    let (tokens, last) = map.entry(addr).or_insert((rate * 2.0, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate * 2.0);
    *last = now;
    if *tokens < 1.0 {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests; slow down".to_owned(),
        ));
    }
    *tokens -= 1.0;
    Ok(())
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    let ops = Router::new()
        .route("/healthz", get(crate::metrics::healthz))
        .route("/readyz", get(crate::metrics::readyz))
        .route("/metrics", get(crate::metrics::metrics))
        .with_state(state.db.clone());
    let web = crate::web::routes(state.clone());
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/api/v1/runs", post(submit))
        .route("/api/v1/runs/{run}", get(run_status))
        .route("/api/v1/runs/{run}/cancel", post(cancel_run))
        .route("/api/v1/jobs/{job}/log", get(job_log))
        .route("/api/v1/agent/claim", post(claim))
        .route(
            "/api/v1/jobs/{job}/attempts/{attempt}/heartbeat",
            post(heartbeat),
        )
        .route("/api/v1/jobs/{job}/attempts/{attempt}/log", put(append_log))
        .route(
            "/api/v1/jobs/{job}/attempts/{attempt}/complete",
            post(complete),
        )
        .route("/api/v1/webhooks/github", post(webhook))
        .route("/api/v1/runs/{run}/artifacts", get(run_artifacts))
        .route(
            "/api/v1/jobs/{job}/attempts/{attempt}/artifacts",
            get(job_artifacts).post(add_artifact),
        )
        .route(
            "/api/v1/jobs/{job}/attempts/{attempt}/blobs/{digest}",
            get(get_blob)
                .put(put_blob)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/v1/cache/{grant}/{kind}/{digest}",
            get(cache_get)
                .put(cache_put)
                .layer(DefaultBodyLimit::disable()),
        )
        .merge(crate::web::api_routes())
        .layer(DefaultBodyLimit::max(8 * 1024 * 1024))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
        .merge(ops)
        .merge(web)
        .layer(axum::middleware::from_fn(crate::metrics::track))
}

/// Every error answer is a JSON `{"error": …}`, including axum's own rejections (a path or
/// query that does not parse, a body too large) which are plain text.
async fn json_errors(resp: Response) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if resp.status().as_u16() < 400 || is_json {
        return resp;
    }
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = if body.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        body.trim().to_owned()
    };
    ApiError(status, message).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let bad = |e: String| ApiError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"));
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    // PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database.
    fn has_nul(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(a) => a.iter().any(has_nul),
            serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    if has_nul(&v) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "strings must not contain NUL characters".to_owned(),
        ));
    }
    serde_json::from_value(v).map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid request: {e}"),
        )
    })
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .or_else(|| headers.get("x-request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|s| !s.is_empty() && s.len() <= 200)
}

async fn submit(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    rate_limited(&state, addr.ip())?;
    require(&state, &headers, TokenKind::User).await?;
    let req: SubmitRequest = json_body(&body)?;
    let (run, created) = submit_run(&state, &req, request_id(&headers).as_deref()).await?;
    let status = state.db.run_status(run).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, axum::Json(status)).into_response())
}

async fn submit_run(
    state: &AppState,
    req: &SubmitRequest,
    request_id: Option<&str>,
) -> ApiResult<(i64, bool)> {
    if req.workflow_path.is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`workflow_path` must not be empty".to_owned(),
        ));
    }
    let jobs = crate::plan::plan_jobs(&req.workflow_path, &req.workflow)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(state.db.submit(req, &jobs, request_id).await?)
}

async fn run_status(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(run): Path<i64>,
) -> ApiResult<Response> {
    rate_limited(&state, addr.ip())?;
    require(&state, &headers, TokenKind::User).await?;
    Ok(axum::Json(state.db.run_status(run).await?).into_response())
}

async fn cancel_run(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(run): Path<i64>,
) -> ApiResult<Response> {
    rate_limited(&state, addr.ip())?;
    require(&state, &headers, TokenKind::User).await?;
    state.db.run_status(run).await?;
    state.db.cancel_run(run).await?;
    Ok(axum::Json(state.db.run_status(run).await?).into_response())
}

async fn job_log(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(job): Path<i64>,
) -> ApiResult<Response> {
    rate_limited(&state, addr.ip())?;
    require(&state, &headers, TokenKind::User).await?;
    let log = state.db.job_log(job).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log).into_response())
}

async fn claim(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (token_id, _) = require(&state, &headers, TokenKind::Agent).await?;
    let req: ClaimRequest = json_body(&body)?;
    if req.agent.is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`agent` must not be empty".to_owned(),
        ));
    }
    crate::metrics::global().agent_seen(&req.agent);
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(0)).min(state.settings.max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    let slots = req.slots.unwrap_or(1).clamp(1, 64);
    loop {
        // Register for the wake-up before looking, so a job queued in between is not missed.
        let notified = state.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let mut jobs = state
            .db
            .claim(
                &req.agent,
                Some(token_id),
                &req.labels,
                slots,
                state.settings.lease,
            )
            .await?;
        let now = tokio::time::Instant::now();
        if !jobs.is_empty() || now >= deadline {
            grant_caches(&state, &mut jobs);
            return Ok(axum::Json(ClaimResponse { jobs }).into_response());
        }
        let poll = (deadline - now).min(Duration::from_secs(1));
        let _ = tokio::time::timeout(poll, notified).await;
    }
}

/// Gives each claimed job its signed cache path.
fn grant_caches(state: &AppState, jobs: &mut [ClaimedJob]) {
    for job in jobs {
        // Pull requests read the cache but never write it (their content is untrusted).
        let write = !job.event.starts_with("pull_request");
        job.cache_path = Some(cache_grant(
            state.db.key(),
            job.run_id,
            unix_now() + state.settings.cache_grant_ttl.as_secs(),
            write,
        ));
    }
}

#[derive(Deserialize)]
struct AttemptPath {
    job: i64,
    attempt: i32,
}

async fn heartbeat(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(p): Path<AttemptPath>,
) -> ApiResult<Response> {
    let token = job_token(&headers)?;
    let cancel = state
        .db
        .heartbeat(p.job, p.attempt, token, state.settings.lease)
        .await?;
    Ok(axum::Json(HeartbeatResponse { cancel }).into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    offset: i64,
}

async fn append_log(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(p): Path<AttemptPath>,
    Query(q): Query<LogQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let token = job_token(&headers)?;
    if q.offset < 0 {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`offset` must not be negative".to_owned(),
        ));
    }
    let text = String::from_utf8_lossy(&body);
    if text.contains('\0') {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a log chunk must not contain NUL bytes".to_owned(),
        ));
    }
    state
        .db
        .append_log(p.job, p.attempt, token, q.offset, &text)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn complete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(p): Path<AttemptPath>,
    body: Bytes,
) -> ApiResult<Response> {
    let token = job_token(&headers)?;
    let req: CompleteRequest = json_body(&body)?;
    let next = match req.next {
        Some(n) if n.agent.is_empty() => {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`next.agent` must not be empty".to_owned(),
            ));
        }
        Some(n) => {
            crate::metrics::global().agent_seen(&n.agent);
            Some(Next {
                slots: n.slots.unwrap_or(1).min(64),
                agent: n.agent,
                labels: n.labels,
                lease: state.settings.lease,
            })
        }
        None => None,
    };
    let item = Completion {
        job: p.job,
        attempt: p.attempt,
        token: token.to_owned(),
        result: req.result,
        outputs: req.outputs,
        next: None,
    };
    // The batcher answers after its transaction commits.
    let (reply, answer) = tokio::sync::oneshot::channel();
    let unavailable = || {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down; retry".to_owned(),
        )
    };
    state
        .completions
        .send((item, reply))
        .await
        .map_err(|_| unavailable())?;
    let (recorded, agent_token) = answer.await.map_err(|_| unavailable())??;
    // The next jobs: a claim of this agent's own once its result is committed.
    let mut jobs = if recorded {
        state.db.claim_next(next.as_ref(), agent_token).await
    } else {
        Vec::new()
    };
    grant_caches(&state, &mut jobs);
    Ok(axum::Json(CompleteResponse { recorded, jobs }).into_response())
}

async fn webhook(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    rate_limited(&state, addr.ip())?;
    let Some(secret) = &state.settings.webhook_secret else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "webhooks are not enabled on this server (`--webhook-secret`)".to_owned(),
        ));
    };
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !crate::secret::verify_signature(secret.as_bytes(), &body, sig) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "the `X-Hub-Signature-256` signature does not match".to_owned(),
        ));
    }
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("push")
        .to_owned();
    if event == "ping" {
        return Ok((StatusCode::OK, axum::Json(serde_json::json!({"runs": []}))).into_response());
    }
    let payload: crate::git::PushPayload = json_body(&body)?;
    let delivery = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cache = state.settings.git_cache.clone();
    let ev = event.clone();
    let requests =
        tokio::task::spawn_blocking(move || crate::git::push_requests(&cache, &payload, &ev))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let mut runs = Vec::new();
    for req in &requests {
        let rid = delivery
            .as_ref()
            .map(|d| format!("gh:{d}:{}", req.workflow_path));
        let (run, _) = submit_run(&state, req, rid.as_deref()).await?;
        runs.push(run);
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "runs": runs })),
    )
        .into_response())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The methods a grant allows.
fn grant_methods(write: bool) -> &'static str {
    if write { "GET,HEAD,PUT" } else { "GET,HEAD" }
}

/// A signed cache path for `run`: `/api/v1/cache/RUN.EXPIRY.MODE.SIG`, where SIG is an
/// HMAC-SHA-256 (server key) over the methods allowed, the path prefix and the expiry.
pub fn cache_grant(key: &ServerKey, run: i64, expiry: u64, write: bool) -> String {
    let mode = if write { "rw" } else { "ro" };
    let prefix = format!("/api/v1/cache/{run}.{expiry}.{mode}");
    let sig = key.sign(&format!("{}\n{prefix}\n{expiry}", grant_methods(write)));
    format!("{prefix}.{sig}")
}

/// Checks a grant for `method`; returns its run.
fn check_grant(key: &ServerKey, grant: &str, method: &str) -> ApiResult<i64> {
    let denied = |m: &str| ApiError(StatusCode::FORBIDDEN, m.to_owned());
    let parts: Vec<&str> = grant.split('.').collect();
    let [run, expiry, mode, sig] = parts.as_slice() else {
        return Err(denied("not a cache grant"));
    };
    let (Ok(run_id), Ok(exp)) = (run.parse::<i64>(), expiry.parse::<u64>()) else {
        return Err(denied("not a cache grant"));
    };
    let write = match *mode {
        "rw" => true,
        "ro" => false,
        _ => return Err(denied("not a cache grant")),
    };
    let prefix = format!("/api/v1/cache/{run}.{expiry}.{mode}");
    if !key.verify(&format!("{}\n{prefix}\n{exp}", grant_methods(write)), sig) {
        return Err(denied("the cache grant's signature does not match"));
    }
    if exp < unix_now() {
        return Err(denied("the cache grant has expired"));
    }
    if !grant_methods(write).split(',').any(|m| m == method) {
        return Err(denied("this cache grant is read-only"));
    }
    Ok(run_id)
}

/// The run's scope for the action cache while the run is running.
async fn grant_scope(state: &AppState, run: i64) -> ApiResult<String> {
    state.db.cache_scope(run).await?.ok_or_else(|| {
        ApiError(
            StatusCode::FORBIDDEN,
            "the cache grant's run has ended".to_owned(),
        )
    })
}

fn blob_response(body: axum::body::Body, size: u64) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        body,
    )
        .into_response()
}

fn blob_error(e: BlobError) -> ApiError {
    match e {
        BlobError::Mismatch { .. } => ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        BlobError::TooLarge => ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        BlobError::Body(_) => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
        BlobError::Io(_) => {
            tracing::warn!("{e}");
            ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the blob store is unavailable; retry".to_owned(),
            )
        }
    }
}

fn check_digest(digest: &str) -> ApiResult<()> {
    if valid_digest(digest) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{digest}` is not a SHA-256 digest (64 lower-case hex digits)"),
        ))
    }
}

#[derive(Deserialize)]
struct CachePath {
    grant: String,
    kind: String,
    digest: String,
}

fn cache_kind(kind: &str) -> ApiResult<bool> {
    match kind {
        "ac" => Ok(true),
        "cas" => Ok(false),
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("unknown cache namespace `{kind}` (`ac` or `cas`)"),
        )),
    }
}

async fn cache_get(
    State(state): State<Arc<AppState>>,
    method: axum::http::Method,
    Path(p): Path<CachePath>,
) -> ApiResult<Response> {
    let ac = cache_kind(&p.kind)?;
    let run = check_grant(state.db.key(), &p.grant, method.as_str())?;
    check_digest(&p.digest)?;
    let scope = grant_scope(&state, run).await?;
    let blob = if ac {
        state.db.cache_ac_get(&scope, &p.digest).await?
    } else {
        Some(p.digest.clone())
    };
    let not_found = || ApiError(StatusCode::NOT_FOUND, "not in the cache".to_owned());
    let blob = blob.ok_or_else(not_found)?;
    let (body, size) = state.blobs.open(&blob).await.ok_or_else(not_found)?;
    Ok(blob_response(body, size))
}

async fn cache_put(
    State(state): State<Arc<AppState>>,
    Path(p): Path<CachePath>,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let ac = cache_kind(&p.kind)?;
    let run = check_grant(state.db.key(), &p.grant, "PUT")?;
    check_digest(&p.digest)?;
    let scope = grant_scope(&state, run).await?;
    let expected = if ac { None } else { Some(p.digest.as_str()) };
    let (digest, size) = state.blobs.put(body, expected).await.map_err(blob_error)?;
    state.db.add_blob(&digest, size).await?;
    if ac {
        state.db.cache_ac_put(&scope, &p.digest, &digest).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct BlobPath {
    job: i64,
    attempt: i32,
    digest: String,
}

async fn put_blob(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(p): Path<BlobPath>,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let token = job_token(&headers)?;
    check_digest(&p.digest)?;
    state.db.lease_run(p.job, p.attempt, token).await?;
    let (digest, size) = state
        .blobs
        .put(body, Some(&p.digest))
        .await
        .map_err(blob_error)?;
    state.db.add_blob(&digest, size).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_blob(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(p): Path<BlobPath>,
) -> ApiResult<Response> {
    let token = job_token(&headers)?;
    check_digest(&p.digest)?;
    let run = state.db.lease_run(p.job, p.attempt, token).await?;
    let not_found = || {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("blob `{}` is not a file of this run's artifacts", p.digest),
        )
    };
    if !state.db.run_has_blob(run, &p.digest).await? {
        return Err(not_found());
    }
    let (body, size) = state.blobs.open(&p.digest).await.ok_or_else(not_found)?;
    Ok(blob_response(body, size))
}

async fn add_artifact(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(p): Path<AttemptPath>,
    body: Bytes,
) -> ApiResult<Response> {
    let token = job_token(&headers)?;
    let req: ArtifactUpload = json_body(&body)?;
    let a = state.db.add_artifact(p.job, p.attempt, token, &req).await?;
    Ok((StatusCode::CREATED, axum::Json(a)).into_response())
}

async fn job_artifacts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(p): Path<AttemptPath>,
) -> ApiResult<Response> {
    let token = job_token(&headers)?;
    let run = state.db.lease_run(p.job, p.attempt, token).await?;
    Ok(axum::Json(state.db.artifacts(run).await?).into_response())
}

async fn run_artifacts(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(run): Path<i64>,
) -> ApiResult<Response> {
    rate_limited(&state, addr.ip())?;
    require(&state, &headers, TokenKind::User).await?;
    state.db.run_status(run).await?;
    Ok(axum::Json(state.db.artifacts(run).await?).into_response())
}

/// Keeps one `LISTEN` connection open (reconnecting after a database restart) and wakes the
/// long-polling claimers on every notification.
async fn listen(db: Db, wake: Arc<Notify>, tokens: TokenCache) {
    use tokio_postgres::AsyncMessage;
    loop {
        match db.config().connect(tokio_postgres::NoTls).await {
            Ok((client, mut conn)) => {
                let w = wake.clone();
                let t = tokens.clone();
                let driver = tokio::spawn(async move {
                    loop {
                        let msg = std::future::poll_fn(|cx| conn.poll_message(cx)).await;
                        match msg {
                            Some(Ok(AsyncMessage::Notification(n)))
                                if n.channel() == crate::db::TOKENS_CHANNEL =>
                            {
                                if let Ok(mut cache) = t.lock() {
                                    cache.clear();
                                }
                            }
                            Some(Ok(AsyncMessage::Notification(_))) => w.notify_waiters(),
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break,
                        }
                    }
                });
                if client
                    .batch_execute(&format!(
                        "LISTEN {}; LISTEN {}",
                        crate::db::CHANNEL,
                        crate::db::TOKENS_CHANNEL
                    ))
                    .await
                    .is_ok()
                {
                    // Jobs queued and tokens revoked while we were away.
                    wake.notify_waiters();
                    if let Ok(mut cache) = tokens.lock() {
                        cache.clear();
                    }
                    let _ = driver.await;
                } else {
                    driver.abort();
                }
            }
            Err(e) => tracing::debug!("LISTEN connection: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Group commit: takes every completion waiting (up to [`MAX_BATCH`]), records them in one
/// transaction and answers each after the commit. Completions that arrive while a batch
/// commits make the next batch, so under load one WAL flush (and one lock of a run's row)
/// serves many jobs; alone, a completion is a batch of one and waits for nothing.
async fn complete_batches(db: Db, queue: CompletionQueue) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = queue.lock().await;
            let Some(first) = rx.recv().await else { return };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.push(more),
                    Err(_) => break,
                }
            }
        }
        let (items, replies): (Vec<Completion>, Vec<CompletionReply>) = batch.into_iter().unzip();
        let answers = db.record_batch(&items).await;
        for (answer, reply) in answers.into_iter().zip(replies) {
            // The agent may have gone; its leases expire then.
            let _ = reply.send(answer);
        }
    }
}

/// Re-queues expired leases every quarter lease.
async fn reaper(db: Db, wake: Arc<Notify>, lease: Duration) {
    let every = (lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::time::sleep(every).await;
        match db.reap().await {
            Ok(expired) if !expired.is_empty() => {
                crate::metrics::global().expired(expired.len());
                for (job, attempt) in &expired {
                    tracing::info!(job, attempt, "lease expired");
                }
                wake.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("reaper: {e}"),
        }
    }
}

/// A TLS acceptor from PEM files; the error names the file.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("`{}`: not a PEM certificate chain: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("`{}`: not a PEM private key: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Migrates the database, then serves on `listener` (HTTPS when `settings.tls` is set) until
/// `shutdown` resolves.
pub async fn serve(
    db: Db,
    settings: Settings,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = match &settings.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key).map_err(std::io::Error::other)?),
        None => None,
    };
    let wake = Arc::new(Notify::new());
    let tokens: TokenCache = Arc::new(Mutex::new(HashMap::new()));
    let listen_task = tokio::spawn(listen(db.clone(), wake.clone(), tokens.clone()));
    let reap_task = tokio::spawn(reaper(db.clone(), wake.clone(), settings.lease));
    let gc_task = settings.gc.clone().map(|(policy, every)| {
        tokio::spawn(crate::gc::periodically(
            db.clone(),
            BlobStore::new(&settings.blob_dir),
            policy,
            every,
        ))
    });
    let (completions, queue) = tokio::sync::mpsc::channel(1024);
    let queue: CompletionQueue = Arc::new(tokio::sync::Mutex::new(queue));
    let completers: Vec<_> = (0..COMPLETERS)
        .map(|_| tokio::spawn(complete_batches(db.clone(), queue.clone())))
        .collect();
    let state = Arc::new(AppState {
        db,
        completions,
        wake,
        limiter: Mutex::new(HashMap::new()),
        tokens,
        blobs: BlobStore::new(&settings.blob_dir),
        settings,
    });
    let app = router(state);
    let r = match tls {
        None => {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
        }
        Some(acceptor) => serve_tls(listener, acceptor, app, shutdown).await,
    };
    listen_task.abort();
    reap_task.abort();
    if let Some(t) = gc_task {
        t.abort();
    }
    for t in completers {
        t.abort();
    }
    r
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!("accept: {e}");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let svc = app.clone().layer(axum::Extension(ConnectInfo(addr)));
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .await;
        });
    }
}
