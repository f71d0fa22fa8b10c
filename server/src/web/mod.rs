//! The web UI `pipe server` serves: server-rendered HTML with an embedded stylesheet and
//! script (no external network, a strict Content-Security-Policy), refreshed by polling small
//! JSON endpoints.
//!
//! - `/` lists the latest runs; `/ui/runs/{id}` shows a run: its jobs as a DAG (columns by
//!   dependency level, live states), the selected job's log streamed while it runs (ANSI
//!   colours rendered, `::group::` blocks folded), its outputs and step summaries, the run's
//!   test results (totals per job and overall, failed cases with their messages, coverage,
//!   benchmarks with their change against the previous run of the workflow), the promotion
//!   status of the build it produced per environment (promoted, pending approval with the
//!   approve and reject buttons of the promotions page, blocked with the gate) and its
//!   artifacts.
//! - `/ui/promotions` shows every environment of the promotion policy (current release,
//!   lock, pending requests with their gates) with approve and reject buttons. They call the
//!   same `pipe-promote` engine as `pipe approve`/`pipe reject` on the ledger in the server's
//!   state folder (`--promotion-repo`), so the same rules hold.
//! - Sign-in is a user token (`pipe server token --kind user`) pasted once; it is kept in an
//!   `HttpOnly`, `SameSite=Strict` cookie. Every form carries a CSRF field derived from it.
//!
//! The agents' step summaries reach the server through
//! `PUT /api/v1/jobs/{job}/attempts/{attempt}/summary` and their `reports:` results through
//! `PUT /api/v1/jobs/{job}/attempts/{attempt}/results` (job token), stored per attempt.

mod pages;
pub mod promote;
mod queries;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::db::TokenKind;
use crate::http::AppState;

/// The session cookie.
const COOKIE: &str = "pipe_session";

const CSS: &str = include_str!("app.css");
const JS: &str = include_str!("app.js");

/// The UI's routes.
pub fn routes(app: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(runs_page))
        .route("/ui", get(|| async { Redirect::to("/") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/runs/{run}", get(run_page))
        .route("/ui/runs/{run}/blobs/{digest}", get(artifact_file))
        .route("/ui/runs/{run}/results", get(results_fragment))
        .route("/ui/runs/{run}/promotion", get(promotion_fragment))
        .route("/ui/api/runs", get(runs_fragment))
        .route("/ui/api/runs/{run}", get(run_json))
        .route("/ui/api/jobs/{job}/log", get(job_log))
        .route("/ui/jobs/{job}/summary", get(job_summary))
        .route("/ui/promotions", get(promote::page))
        .route("/ui/promotions/approve", post(promote::approve))
        .route("/ui/promotions/reject", post(promote::reject))
        .route("/ui/static/app.css", get(css))
        .route("/ui/static/app.js", get(js))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// The UI's part of the agent API (merged into the API router, whose errors are JSON).
pub fn api_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/jobs/{job}/attempts/{attempt}/summary",
            put(put_summary),
        )
        .route(
            "/api/v1/jobs/{job}/attempts/{attempt}/results",
            put(put_results),
        )
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
        .into_response()
}

/// A signed-in user.
pub(crate) struct User {
    /// The token's name (the principal for approvals).
    pub name: String,
    /// The CSRF value of this session.
    pub csrf: String,
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn csrf_of(token: &str) -> String {
    hex::encode(Sha256::digest(format!("pipe-web-csrf\n{token}").as_bytes()))
}

/// The user of a request (cookie, or a bearer token for scripts), or an error answer: a
/// redirect to the sign-in page for pages, 401 for the JSON endpoints.
async fn user(app: &AppState, headers: &HeaderMap, page: bool) -> Result<User, Response> {
    let token = cookie_token(headers).or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|v| v.trim().to_owned())
    });
    let deny = || {
        if page {
            Redirect::to("/ui/login").into_response()
        } else {
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": "sign in with a user token"})),
            )
                .into_response()
        }
    };
    let Some(token) = token else {
        return Err(deny());
    };
    match app.check_user(&token).await {
        Ok(Some(name)) => Ok(User {
            name,
            csrf: csrf_of(&token),
        }),
        Ok(None) => Err(deny()),
        Err(e) => Err(unavailable(&e)),
    }
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "web: database");
    html_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is unavailable; retry",
    )
}

fn html_error(status: StatusCode, message: &str) -> Response {
    let body = pages::layout(
        "error",
        None,
        &format!("<p class=\"flash error\">{}</p>", pages::esc(message)),
    );
    (status, axum::response::Html(body)).into_response()
}

async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    axum::response::Html(pages::login(q.error.is_some())).into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    error: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(app): State<Arc<AppState>>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim().to_owned();
    match app.check_user(&token).await {
        Ok(Some(name)) => {
            tracing::info!(user = %name, "web sign-in");
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Ok(None) => Redirect::to("/ui/login?error=1").into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn logout() -> Response {
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response()
}

async fn runs_page(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let u = match user(&app, &headers, true).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match queries::runs(app.db(), 100).await {
        Ok(runs) => axum::response::Html(pages::runs(&u, &runs)).into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn runs_fragment(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = user(&app, &headers, false).await {
        return r;
    }
    match queries::runs(app.db(), 100).await {
        Ok(runs) => axum::response::Html(pages::runs_rows(&runs)).into_response(),
        Err(e) => unavailable(&e),
    }
}

#[derive(Deserialize)]
struct RunQuery {
    /// What a decision taken on the page answered.
    ok: Option<String>,
    error: Option<String>,
}

async fn run_page(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run): Path<i64>,
    Query(flash): Query<RunQuery>,
) -> Response {
    let u = match user(&app, &headers, true).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match app.db().run_status(run).await {
        Ok(status) => {
            let artifacts = run_artifacts(&app, run).await;
            let results = results_view(&app, &status).await;
            let promotion = promote::run_section(
                &app,
                promote::RunBuildFacts::of(&status, &artifacts),
                &u.csrf,
            )
            .await;
            let sections = pages::RunSections {
                results: pages::results_section(&status.jobs, &results),
                promotion,
                ok: flash.ok,
                error: flash.error,
            };
            axum::response::Html(pages::run(&u, &status, &artifacts, &sections)).into_response()
        }
        Err(crate::db::DbError::NotFound(_)) => {
            html_error(StatusCode::NOT_FOUND, &format!("run {run} not found"))
        }
        Err(e) => unavailable(&e),
    }
}

/// A run's artifacts; the page still shows the run when they cannot be read.
async fn run_artifacts(app: &AppState, run: i64) -> Vec<crate::api::Artifact> {
    match app.db().artifacts(run).await {
        Ok(list) => list.artifacts,
        Err(e) => {
            tracing::warn!(run, error = %e, "cannot read the run's artifacts");
            Vec::new()
        }
    }
}

/// A run's results over its jobs, benchmarks compared with the previous run of its workflow
/// that recorded some (without a baseline when it cannot be read).
async fn results_view(app: &AppState, status: &crate::api::RunStatus) -> pages::RunResultsView {
    let any_bench = status
        .jobs
        .iter()
        .filter_map(pages::job_results)
        .any(|r| r.jobs.iter().any(|l| !l.benchmarks.is_empty()));
    let (from, baseline) = if any_bench {
        match queries::bench_baseline(app.db(), status.id, &status.workflow_path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(run = status.id, error = %e, "cannot read the benchmark baseline");
                Default::default()
            }
        }
    } else {
        Default::default()
    };
    pages::run_results(&status.jobs, &baseline, from)
}

/// The run page's results section, refreshed by the script as jobs finish.
async fn results_fragment(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run): Path<i64>,
) -> Response {
    if let Err(r) = user(&app, &headers, false).await {
        return r;
    }
    match app.db().run_status(run).await {
        Ok(status) => {
            let view = results_view(&app, &status).await;
            axum::response::Html(pages::results_section(&status.jobs, &view)).into_response()
        }
        Err(crate::db::DbError::NotFound(_)) => {
            html_error(StatusCode::NOT_FOUND, &format!("run {run} not found"))
        }
        Err(e) => unavailable(&e),
    }
}

/// The run page's promotion section, loaded by the script when the run finishes.
async fn promotion_fragment(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run): Path<i64>,
) -> Response {
    let u = match user(&app, &headers, false).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match app.db().run_status(run).await {
        Ok(status) => {
            let artifacts = run_artifacts(&app, run).await;
            let html = promote::run_section(
                &app,
                promote::RunBuildFacts::of(&status, &artifacts),
                &u.csrf,
            )
            .await;
            axum::response::Html(html).into_response()
        }
        Err(crate::db::DbError::NotFound(_)) => {
            html_error(StatusCode::NOT_FOUND, &format!("run {run} not found"))
        }
        Err(e) => unavailable(&e),
    }
}

#[derive(serde::Deserialize)]
struct FileQuery {
    file: Option<String>,
}

/// One file of a run's artifacts, by its SHA-256, as a download.
async fn artifact_file(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((run, digest)): Path<(i64, String)>,
    axum::extract::Query(q): axum::extract::Query<FileQuery>,
) -> Response {
    if let Err(r) = user(&app, &headers, true).await {
        return r;
    }
    let not_found = || {
        html_error(
            StatusCode::NOT_FOUND,
            &format!("`{digest}` is not a file of run {run}'s artifacts"),
        )
    };
    if !crate::blobs::valid_digest(&digest) {
        return not_found();
    }
    match app.db().run_has_blob(run, &digest).await {
        Ok(true) => {}
        Ok(false) => return not_found(),
        Err(e) => return unavailable(&e),
    }
    let Some((body, size)) = app.blobs().open(&digest).await else {
        return not_found();
    };
    // Only a plain file name goes into the header; anything else downloads as the digest.
    let name = q
        .file
        .filter(|f| {
            !f.is_empty()
                && f.len() <= 255
                && f.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | ' '))
        })
        .unwrap_or_else(|| digest.clone());
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .header("x-content-type-options", "nosniff")
        .body(body)
        .unwrap_or_else(|_| html_error(StatusCode::INTERNAL_SERVER_ERROR, "cannot send the file"))
}

async fn run_json(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(run): Path<i64>,
) -> Response {
    if let Err(r) = user(&app, &headers, false).await {
        return r;
    }
    match app.db().run_status(run).await {
        Ok(status) => {
            let levels = pages::levels(&status.jobs);
            let jobs: Vec<serde_json::Value> = status
                .jobs
                .iter()
                .zip(&levels)
                .map(|(j, l)| {
                    serde_json::json!({
                        "id": j.id, "key": j.key, "state": j.state, "result": j.result,
                        "attempt": j.attempt, "level": l, "outputs": j.outputs,
                        "label": pages::job_label(j), "results": j.results,
                    })
                })
                .collect();
            let results = results_view(&app, &status).await;
            axum::Json(serde_json::json!({
                "id": status.id, "state": status.state, "conclusion": status.conclusion,
                "jobs": jobs, "results": results,
            }))
            .into_response()
        }
        Err(crate::db::DbError::NotFound(m)) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": format!("{m} not found")})),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

#[derive(Deserialize)]
struct LogQuery {
    /// Chunks after this byte offset (-1: from the start).
    after: Option<i64>,
    /// The attempt the client has shown so far.
    attempt: Option<i32>,
}

async fn job_log(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(job): Path<i64>,
    Query(q): Query<LogQuery>,
) -> Response {
    if let Err(r) = user(&app, &headers, false).await {
        return r;
    }
    match queries::log_since(app.db(), job, q.attempt, q.after.unwrap_or(-1)).await {
        Ok(Some(l)) => axum::Json(l).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": format!("job {job} not found")})),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn job_summary(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(job): Path<i64>,
) -> Response {
    if let Err(r) = user(&app, &headers, false).await {
        return r;
    }
    match queries::summary(app.db(), job).await {
        Ok(md) => {
            axum::response::Html(pages::markdown(md.as_deref().unwrap_or_default())).into_response()
        }
        Err(e) => unavailable(&e),
    }
}

#[derive(Deserialize)]
struct AttemptPath {
    job: i64,
    attempt: i32,
}

/// `PUT /api/v1/jobs/{job}/attempts/{attempt}/summary`: the attempt's step summaries
/// (Markdown), while the job token's lease is held.
async fn put_summary(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(p): Path<AttemptPath>,
    body: Bytes,
) -> Response {
    let Some(token) = job_token(&headers) else {
        return no_job_token();
    };
    let text = String::from_utf8_lossy(&body);
    if text.contains('\0') {
        return api_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a summary must not contain NUL bytes".into(),
        );
    }
    stored(
        queries::put_summary(app.db(), p.job, p.attempt, token, &text).await,
        &p,
        "summary upload",
    )
}

fn api_error(status: StatusCode, m: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": m }))).into_response()
}

/// The job token of an agent request.
fn job_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The answer to an agent request without a job token.
fn no_job_token() -> Response {
    api_error(
        StatusCode::UNAUTHORIZED,
        "the job token from the claim is required (`Authorization: Bearer …`)".into(),
    )
}

/// The answer to a write under a job's lease.
fn stored(r: crate::db::DbResult<bool>, p: &AttemptPath, what: &str) -> Response {
    match r {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => api_error(
            StatusCode::CONFLICT,
            format!(
                "the lease of job {} attempt {} is not held",
                p.job, p.attempt
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "{what}");
            api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; retry".into(),
            )
        }
    }
}

/// `PUT /api/v1/jobs/{job}/attempts/{attempt}/results`: the attempt's test, coverage and
/// benchmark results (the `results` record of `pipe run --summary`, a JSON object), while the
/// job token's lease is held.
async fn put_results(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(p): Path<AttemptPath>,
    body: Bytes,
) -> Response {
    let Some(token) = job_token(&headers) else {
        return no_job_token();
    };
    let results = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.is_object() => v,
        Ok(_) => {
            return api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the results must be a JSON object".into(),
            );
        }
        Err(e) => {
            return api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the results are not JSON: {e}"),
            );
        }
    };
    stored(
        queries::put_results(app.db(), p.job, p.attempt, token, results).await,
        &p,
        "results upload",
    )
}

/// Checks a form's CSRF field against the session.
fn csrf_ok(u: &User, given: &str) -> bool {
    // Constant time is not needed against a value the attacker cannot read, but costs nothing.
    let a = u.csrf.as_bytes();
    let b = given.as_bytes();
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AppState {
    /// The name of a valid user token.
    pub(crate) async fn check_user(&self, token: &str) -> crate::db::DbResult<Option<String>> {
        Ok(self
            .db()
            .check_token(TokenKind::User, token)
            .await?
            .map(|(_, name)| name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; pipe_session=pipu_abc ; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("pipu_abc"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("pipe_session="));
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn csrf_depends_on_the_token() {
        let u = User {
            name: "alice".into(),
            csrf: csrf_of("pipu_1"),
        };
        assert!(csrf_ok(&u, &csrf_of("pipu_1")));
        assert!(!csrf_ok(&u, &csrf_of("pipu_2")));
        assert!(!csrf_ok(&u, ""));
    }
}
