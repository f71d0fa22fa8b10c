//! Promotion in the web UI: environments, pending requests with their gates, approve and
//! reject. Promotion state lives in the repository's SQLite ledger (`ledger.db` in its state
//! folder); the server opens the ledger of `--promotion-repo` in its own `PIPE_STATE_DIR` and
//! calls the `pipe-promote` engine exactly as the CLI does. An approval given here is signed
//! by the server's web key (`promote/web.key` in that state folder, created on first use) for
//! the signed-in user, whose token name is the approver's principal; it then re-decides the
//! open request, as a waiting `pipe promote` would.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use pipe_promote::build::{self, Build};
use pipe_promote::engine::{self, Engine, PolicyRef};
use pipe_promote::gates::{Decision, Evaluation, Outcome};
use pipe_promote::ledger::{Actor, AllowedSigners, Ledger, SshSigner, system_clock};
use pipe_promote::policy::Mode;
use pipe_promote::policy::source;
use serde::Deserialize;

use super::pages::{esc, layout};
use super::{User, csrf_ok, user};
use crate::http::AppState;

/// Where the server finds promotion state.
#[derive(Clone, Debug)]
pub struct Promotion {
    /// The repository (its trusted ref holds the policy and `allowed_signers`).
    pub root: PathBuf,
    /// Its state folder (`ledger.db`, `promote/`).
    pub state: PathBuf,
}

impl Promotion {
    /// The promotion state of `repo` under the state root (`PIPE_STATE_DIR` or the XDG
    /// default), as `pipe promote` run in that repository finds it.
    pub fn of_repo(repo: &std::path::Path) -> Result<Promotion, String> {
        let root = repo
            .canonicalize()
            .map_err(|e| format!("`{}`: {e}", repo.display()))?;
        let state_root = pipe_runner::dirs::state_root(&pipe_runner::dirs::process_env)
            .map_err(|e| e.to_string())?;
        Ok(Promotion {
            state: pipe_runner::dirs::repo_state_dir(&state_root, &root),
            root,
        })
    }
}

/// What an operation on the ledger needs, opened per request (the ledger is a file other
/// processes append to as well).
struct Opened {
    ledger: Ledger,
    loaded: source::Loaded,
    policy: pipe_promote::policy::Policy,
    allowed: Option<AllowedSigners>,
}

fn open(p: &Promotion) -> Result<Opened, String> {
    let ledger = Ledger::open_in(&p.state, system_clock()).map_err(|e| e.to_string())?;
    let mut loaded = source::load_from_ref(&p.root, None).map_err(|e| e.to_string())?;
    let policy = loaded
        .policy
        .take()
        .ok_or_else(|| format!("the policy `{}` is invalid", loaded.origin))?;
    let allowed = loaded
        .allowed_signers
        .as_deref()
        .map(AllowedSigners::parse)
        .transpose()
        .map_err(|e| format!("`.pipe/allowed_signers` at `{}`: {e}", loaded.origin))?;
    Ok(Opened {
        ledger,
        loaded,
        policy,
        allowed,
    })
}

impl Opened {
    fn engine<'a>(&'a self, p: &'a Promotion) -> Engine<'a> {
        Engine {
            ledger: &self.ledger,
            state_dir: &p.state,
            root: &p.root,
            policy: PolicyRef {
                policy: &self.policy,
                origin: &self.loaded.origin,
                commit: self.loaded.commit.as_deref(),
                allowed: self.allowed.as_ref(),
            },
        }
    }
}

#[derive(Deserialize)]
pub(super) struct Flash {
    ok: Option<String>,
    error: Option<String>,
}

/// `GET /ui/promotions`.
pub(super) async fn page(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(flash): Query<Flash>,
) -> Response {
    let u = match user(&app, &headers, true).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut body = String::from("<h1>Promotions</h1>");
    if let Some(m) = &flash.ok {
        let _ = write!(body, "<p class=\"flash ok\" id=\"flash\">{}</p>", esc(m));
    }
    if let Some(m) = &flash.error {
        let _ = write!(body, "<p class=\"flash error\" id=\"flash\">{}</p>", esc(m));
    }
    let Some(p) = app.settings().promotion.clone() else {
        body.push_str(
            "<p class=\"empty\">promotion is not configured on this server: start it with \
             <code>--promotion-repo DIR</code></p>",
        );
        return Html(layout("promotions", Some(&u), &body)).into_response();
    };
    let csrf = u.csrf.clone();
    let me = u.name.clone();
    let html = tokio::task::spawn_blocking(move || render(&p, &csrf, &me)).await;
    match html {
        Ok(Ok(h)) => body.push_str(&h),
        Ok(Err(e)) => {
            let _ = write!(body, "<p class=\"flash error\">{}</p>", esc(&e));
        }
        Err(e) => {
            let _ = write!(body, "<p class=\"flash error\">{}</p>", esc(&e.to_string()));
        }
    }
    Html(layout("promotions", Some(&u), &body)).into_response()
}

/// A gate evaluation: the decision and each gate's result with its reasons.
fn gates_html(ev: &Evaluation) -> String {
    let mut out = format!(
        "<p>decision: <span class=\"badge {d}\">{d}</span></p><ul class=\"gates\">",
        d = match ev.decision {
            Decision::Allowed => "success",
            Decision::Denied => "failure",
            Decision::Pending => "queued",
        }
    );
    for g in &ev.gates {
        let _ = write!(
            out,
            "<li><b>{}</b> {} — {}</li>",
            esc(&g.gate),
            esc(g.result.as_str()),
            esc(&g.reasons.join("; "))
        );
    }
    out.push_str("</ul>");
    out
}

/// The approve and reject forms of an open request; `back` is the page to return to (the
/// promotions page when `None`).
fn decide_forms(env: &str, build_id: &str, csrf: &str, back: Option<&str>) -> String {
    let back = back.map_or_else(String::new, |b| {
        format!("<input type=\"hidden\" name=\"back\" value=\"{}\">", esc(b))
    });
    format!(
        "<form method=\"post\" action=\"/ui/promotions/approve\" class=\"inline\">\
         <input type=\"hidden\" name=\"env\" value=\"{env}\">\
         <input type=\"hidden\" name=\"build\" value=\"{bid}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{back}\
         <input name=\"comment\" placeholder=\"comment\">\
         <button class=\"approve\" id=\"approve-{env}\">Approve</button></form>\
         <form method=\"post\" action=\"/ui/promotions/reject\" class=\"inline\">\
         <input type=\"hidden\" name=\"env\" value=\"{env}\">\
         <input type=\"hidden\" name=\"build\" value=\"{bid}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{back}\
         <input name=\"reason\" placeholder=\"reason\" required>\
         <button class=\"reject\" id=\"reject-{env}\">Reject</button></form>",
        env = esc(env),
        bid = esc(build_id),
        csrf = esc(csrf),
    )
}

fn render(p: &Promotion, csrf: &str, me: &str) -> Result<String, String> {
    let o = open(p)?;
    let eng = o.engine(p);
    let envs = engine::status(&eng, None).map_err(|e| e.to_string())?;
    let mut out = format!(
        "<p class=\"muted\">policy <code>{}</code>; you approve as <code>{}</code></p>",
        esc(&o.loaded.origin),
        esc(me)
    );
    for s in &envs {
        let _ = write!(
            out,
            "<section class=\"env\" id=\"env-{name}\"><h2>{name}</h2><p>release: <span class=\"release\">{rel}</span>{lock}</p>",
            name = esc(&s.env),
            rel = match (&s.alias, &s.release) {
                (Some(a), Some(r)) => format!("<code>{}</code> since {}", esc(a), esc(&r.since)),
                _ => "none".to_owned(),
            },
            lock = if s.locked.is_some() {
                " <span class=\"badge failure\">locked</span>"
            } else {
                ""
            },
        );
        if s.pending.is_empty() {
            out.push_str("<p class=\"empty\">no pending requests</p>");
        }
        for req in &s.pending {
            let build_id = req["build"].as_str().unwrap_or_default();
            let alias = req["alias"].as_str().unwrap_or_default();
            let by = req["requested_by"].as_str().unwrap_or_default();
            let gates = eng.env(&s.env).ok().and_then(|env| {
                build::resolve(&o.ledger, build_id)
                    .ok()
                    .and_then(|b| eng.gates(env, &b).ok())
            });
            let _ = write!(
                out,
                "<div class=\"request\" data-build=\"{bid}\"><h3><code>{alias}</code> requested by {by}</h3>",
                bid = esc(build_id),
                alias = esc(alias),
                by = esc(by),
            );
            if let Some(ev) = gates {
                out.push_str(&gates_html(&ev));
            }
            out.push_str(&decide_forms(&s.env, build_id, csrf, None));
            out.push_str("</div>");
        }
        out.push_str("</section>");
    }
    Ok(out)
}

#[derive(Deserialize)]
pub(super) struct Decide {
    env: String,
    build: String,
    csrf: String,
    comment: Option<String>,
    reason: Option<String>,
    /// The page the form came from (a run page), where the answer is shown.
    back: Option<String>,
}

fn back(to: Option<&str>, result: Result<String, String>) -> Response {
    let q = match result {
        Ok(m) => format!("ok={}", pct(&m)),
        Err(m) => format!("error={}", pct(&m)),
    };
    Redirect::to(&format!("{}?{q}", return_page(to))).into_response()
}

/// Where a decision returns to: a run page (`/ui/runs/N`) when the form says so, else the
/// promotions page (never anywhere else: no open redirect).
fn return_page(to: Option<&str>) -> &str {
    match to {
        Some(t)
            if t.strip_prefix("/ui/runs/").is_some_and(|n| {
                !n.is_empty() && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit())
            }) =>
        {
            t
        }
        _ => "/ui/promotions",
    }
}

/// Percent-encodes a query value.
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

async fn decide(app: Arc<AppState>, headers: HeaderMap, f: Decide, approve: bool) -> Response {
    let u: User = match user(&app, &headers, true).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    if !csrf_ok(&u, &f.csrf) {
        return super::html_error(
            StatusCode::FORBIDDEN,
            "the form is stale or forged (CSRF check failed); reload the page",
        );
    }
    let to = f.back.clone();
    let Some(p) = app.settings().promotion.clone() else {
        return back(
            to.as_deref(),
            Err("promotion is not configured on this server".into()),
        );
    };
    let name = u.name.clone();
    let r = tokio::task::spawn_blocking(move || {
        let o = open(&p)?;
        let eng = o.engine(&p);
        let env = eng.env(&f.env).map_err(|e| e.to_string())?;
        let b: Build = build::resolve(&o.ledger, &f.build).map_err(|e| e.to_string())?;
        if approve {
            approve_web(&p, &eng, env, &b, &name, f.comment.as_deref())
        } else {
            let reason = f.reason.as_deref().unwrap_or_default().trim().to_owned();
            if reason.is_empty() {
                return Err("a rejection needs a reason".into());
            }
            let actor = Actor {
                id: name.clone(),
                auth: None,
                via: "web".into(),
            };
            let e = eng
                .reject(env, &b, actor, None, &reason)
                .map_err(|e| e.to_string())?;
            tracing::info!(user = %name, env = %env.name, build = %b.id, seq = e.seq, "web rejection");
            Ok(format!(
                "rejected `{}` for `{}` (ledger #{})",
                b.body.alias, env.name, e.seq
            ))
        }
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    back(to.as_deref(), r)
}

fn approve_web(
    p: &Promotion,
    eng: &Engine<'_>,
    env: &pipe_promote::policy::Environment,
    b: &Build,
    name: &str,
    comment: Option<&str>,
) -> Result<String, String> {
    let signer = SshSigner::load_or_create_seed(&p.state.join("promote").join("web.key"))
        .map_err(|e| e.to_string())?;
    let actor = Actor {
        id: name.to_owned(),
        auth: Some(format!("ssh:{}", signer.fingerprint())),
        via: "web".into(),
    };
    let e = eng
        .approve_as(env, b, actor, Some(&signer), None, comment)
        .map_err(|e| e.to_string())?;
    tracing::info!(user = %name, env = %env.name, build = %b.id, seq = e.seq, "web approval");
    let mut msg = format!(
        "approved `{}` for `{}` as `{name}` (ledger #{})",
        b.body.alias, env.name, e.seq
    );
    // Re-decide the open request, as a waiting `pipe promote` would on its next poll.
    if eng
        .open_request(env, &b.id, eng.ledger.now())
        .map_err(|e| e.to_string())?
        .is_some()
    {
        let actor = Actor {
            id: name.to_owned(),
            auth: None,
            via: "web".into(),
        };
        let out = eng
            .promote(env, b, &actor, None, None)
            .map_err(|e| e.to_string())?;
        let _ = match out.decision {
            Decision::Allowed => write!(
                msg,
                "; `{}` is now the release of `{}`",
                b.body.alias, env.name
            ),
            Decision::Denied => write!(msg, "; the promotion was denied"),
            Decision::Pending => write!(msg, "; the promotion still waits"),
        };
    }
    Ok(msg)
}

/// `POST /ui/promotions/approve`.
pub(super) async fn approve(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(f): Form<Decide>,
) -> Response {
    decide(app, headers, f, true).await
}

/// `POST /ui/promotions/reject`.
pub(super) async fn reject(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(f): Form<Decide>,
) -> Response {
    decide(app, headers, f, false).await
}

// ---- the run page's promotion section ---------------------------------------------------

/// Where the build a run produced stands in one environment.
#[derive(Clone, Debug)]
pub(super) enum EnvState {
    /// It is the environment's current release.
    Promoted {
        /// Since when.
        since: String,
    },
    /// A request waits for approvals (the buttons are shown).
    PendingApproval(Evaluation),
    /// A request waits on another gate (lock, soak, window).
    Waiting {
        /// The gate.
        gate: String,
        /// Why.
        reasons: Vec<String>,
        /// Every gate.
        eval: Evaluation,
    },
    /// A gate denies it (the first failing enforced gate).
    Blocked {
        /// The gate.
        gate: String,
        /// Why.
        reasons: Vec<String>,
        /// Every gate, when a request is open.
        eval: Option<Evaluation>,
    },
    /// A request is allowed and not yet released (a deploy may be under way).
    Allowed,
    /// Nobody asked to promote it.
    NotRequested,
}

/// The first enforced gate with one of `results`, skipping custom gates when they did not run.
fn first_gate<'e>(
    ev: &'e Evaluation,
    results: &[Outcome],
    customs_ran: bool,
) -> Option<&'e pipe_promote::gates::GateResult> {
    ev.gates.iter().find(|g| {
        g.mode == Mode::Enforce
            && results.contains(&g.result)
            && (customs_ran || !g.gate.starts_with("custom:"))
    })
}

/// The state of build `b` in `env`. With an open request the gates are evaluated as the
/// promotions page does (custom gates run); without one they are dry-run without custom gates,
/// to name what would block it.
fn env_state(
    eng: &Engine<'_>,
    env: &pipe_promote::policy::Environment,
    b: &Build,
    current: Option<&pipe_promote::state::Release>,
) -> Result<EnvState, String> {
    if let Some(r) = current.filter(|r| r.build == b.id) {
        return Ok(EnvState::Promoted {
            since: r.since.clone(),
        });
    }
    let now = eng.ledger.now();
    let open = eng
        .open_request(env, &b.id, now)
        .map_err(|e| e.to_string())?;
    if open.is_none() {
        let facts = eng
            .facts(env, b, now, None, false)
            .map_err(|e| e.to_string())?;
        let ev = pipe_promote::gates::evaluate(eng.policy.policy, env, b, &facts);
        return Ok(
            match first_gate(&ev, &[Outcome::Fail, Outcome::Inconclusive], false) {
                Some(g) => EnvState::Blocked {
                    gate: g.gate.clone(),
                    reasons: g.reasons.clone(),
                    eval: None,
                },
                None => EnvState::NotRequested,
            },
        );
    }
    let ev = eng.gates(env, b).map_err(|e| e.to_string())?;
    Ok(match ev.decision {
        Decision::Allowed => EnvState::Allowed,
        Decision::Denied => {
            let (gate, reasons) = first_gate(&ev, &[Outcome::Fail, Outcome::Inconclusive], true)
                .map(|g| (g.gate.clone(), g.reasons.clone()))
                .unwrap_or_default();
            EnvState::Blocked {
                gate,
                reasons,
                eval: Some(ev),
            }
        }
        Decision::Pending => {
            // Anything but approvals pending (a lock, a soak, a window) comes first: an
            // approval would not release the build yet.
            match ev
                .gates
                .iter()
                .find(|g| {
                    g.mode == Mode::Enforce && g.result == Outcome::Pending && g.gate != "approvals"
                })
                .map(|g| (g.gate.clone(), g.reasons.clone()))
            {
                Some((gate, reasons)) => EnvState::Waiting {
                    gate,
                    reasons,
                    eval: ev,
                },
                None => EnvState::PendingApproval(ev),
            }
        }
    })
}

/// One environment's row of the run page's promotion section.
pub(super) fn env_html(
    env: &str,
    state: &EnvState,
    build_id: &str,
    alias: &str,
    csrf: &str,
    run: i64,
) -> String {
    let (class, label) = match state {
        EnvState::Promoted { .. } => ("success", "promoted"),
        EnvState::PendingApproval(_) => ("queued", "pending approval"),
        EnvState::Waiting { .. } => ("queued", "pending"),
        EnvState::Blocked { .. } => ("failure", "blocked"),
        EnvState::Allowed => ("running", "allowed"),
        EnvState::NotRequested => ("skipped", "not requested"),
    };
    let mut out = format!(
        "<li class=\"env-status\" id=\"promotion-{env}\" data-state=\"{label}\"><b>{env}</b> \
         <span class=\"badge {class}\">{label}</span> ",
        env = esc(env),
    );
    match state {
        EnvState::Promoted { since } => {
            let _ = write!(out, "<small>the release since {}</small>", esc(since));
        }
        EnvState::Waiting { gate, reasons, .. } | EnvState::Blocked { gate, reasons, .. } => {
            let _ = write!(
                out,
                "<small>{} <code class=\"gate\">{}</code>: {}</small>",
                if matches!(state, EnvState::Blocked { .. }) {
                    "blocked by"
                } else {
                    "waits on"
                },
                esc(gate),
                esc(&reasons.join("; "))
            );
        }
        EnvState::Allowed => out.push_str("<small>the gates allow it; not released yet</small>"),
        EnvState::NotRequested => {
            let _ = write!(
                out,
                "<small><code>pipe promote {} --to {}</code> requests it</small>",
                esc(alias),
                esc(env)
            );
        }
        EnvState::PendingApproval(_) => {}
    }
    match state {
        EnvState::PendingApproval(ev) => {
            out.push_str(&gates_html(ev));
            out.push_str(&decide_forms(
                env,
                build_id,
                csrf,
                Some(&format!("/ui/runs/{run}")),
            ));
        }
        EnvState::Waiting { eval, .. }
        | EnvState::Blocked {
            eval: Some(eval), ..
        } => out.push_str(&gates_html(eval)),
        _ => {}
    }
    out.push_str("</li>");
    out
}

/// What a server run produced that names its build: each job's outputs and each artifact's
/// files (path, hex SHA-256, mode).
#[derive(Clone, Debug, Default)]
pub(super) struct RunBuildFacts {
    /// The run.
    pub run: i64,
    /// Its workflow file.
    pub workflow: String,
    /// Whether it finished.
    pub done: bool,
    /// (job id, outputs) in job order.
    pub outputs: Vec<(String, std::collections::BTreeMap<String, String>)>,
    /// (artifact, files).
    pub artifacts: Vec<(String, Vec<crate::api::ArtifactFile>)>,
}

impl RunBuildFacts {
    /// The facts of a run and its artifacts.
    pub fn of(run: &crate::api::RunStatus, artifacts: &[crate::api::Artifact]) -> Self {
        RunBuildFacts {
            run: run.id,
            workflow: run.workflow_path.clone(),
            done: run.state == "done",
            outputs: run
                .jobs
                .iter()
                .map(|j| (j.key.clone(), j.outputs.clone()))
                .collect(),
            artifacts: artifacts
                .iter()
                .map(|a| (a.name.clone(), a.files.clone()))
                .collect(),
        }
    }

    /// The subjects of the build the run produced under `spec`, as `pipe run` names them.
    fn subjects(
        &self,
        spec: &pipe_promote::policy::BuildSpec,
    ) -> Result<Vec<build::Subject>, build::BuildError> {
        build::subjects_from(
            spec,
            u64::try_from(self.run).unwrap_or_default(),
            |job, name| {
                self.outputs
                    .iter()
                    .filter(|(k, _)| k == job)
                    .filter_map(|(_, o)| o.get(name))
                    .find(|v| !v.is_empty())
                    .cloned()
            },
            |name| {
                Ok(self
                    .artifacts
                    .iter()
                    .filter(|(n, _)| n == name)
                    .flat_map(|(_, files)| files)
                    // Regular files only, as `pipe run` counts them (links are not subjects).
                    .filter(|f| f.mode & 0o170_000 != 0o120_000)
                    .map(|f| (f.path.clone(), format!("sha256:{}", f.digest)))
                    .collect())
            },
        )
    }
}

/// The run page's promotion section: the build the run produced and, per environment,
/// whether it is promoted, pending approval (with the buttons) or blocked.
pub(super) async fn run_section(app: &AppState, facts: RunBuildFacts, csrf: &str) -> String {
    let head = "<section class=\"promotion\" id=\"promotion\"><h2>Promotion</h2>";
    let Some(p) = app.settings().promotion.clone() else {
        return format!(
            "{head}<p class=\"empty\">promotion is not configured on this server \
             (<code>--promotion-repo DIR</code>)</p></section>"
        );
    };
    let csrf = csrf.to_owned();
    let body = tokio::task::spawn_blocking(move || run_body(&p, &facts, &csrf))
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
        .unwrap_or_else(|e| format!("<p class=\"flash error\">{}</p>", esc(&e)));
    format!("{head}{body}</section>")
}

fn run_body(p: &Promotion, facts: &RunBuildFacts, csrf: &str) -> Result<String, String> {
    let o = open(p)?;
    let Some(spec) = &o.policy.build else {
        return Ok(format!(
            "<p class=\"empty\">the policy <code>{}</code> declares no <code>build:</code></p>",
            esc(&o.loaded.origin)
        ));
    };
    if !build::spec_applies(spec, &facts.workflow) {
        return Ok(format!(
            "<p class=\"empty\">runs of <code>{}</code> produce no builds (the policy's builds \
             come from <code>{}</code>)</p>",
            esc(&facts.workflow),
            esc(spec.workflow.as_deref().unwrap_or_default())
        ));
    }
    if !facts.done {
        return Ok("<p class=\"empty\">the build is known when the run has finished</p>".into());
    }
    let subjects = match facts.subjects(spec) {
        Ok(s) => s,
        Err(e) => {
            return Ok(format!(
                "<p class=\"empty\">this run produced no build: {}</p>",
                esc(&e.to_string())
            ));
        }
    };
    let id = build::build_id(&subjects);
    let alias = build::alias(&id);
    let mut out = format!(
        "<p>build <code class=\"alias\" id=\"build-alias\">{}</code> <small><code>{}</code></small></p>",
        esc(&alias),
        esc(&id)
    );
    let b = match build::resolve(&o.ledger, &id) {
        Ok(b) => b,
        Err(build::BuildError::NotFound(_)) => {
            out.push_str(
                "<p class=\"empty\">not registered in the ledger: a <code>pipe run</code> of \
                 this commit registers it</p>",
            );
            return Ok(out);
        }
        Err(e) => return Err(e.to_string()),
    };
    let eng = o.engine(p);
    let releases = pipe_promote::state::current_releases(&o.ledger).map_err(|e| e.to_string())?;
    out.push_str("<ul class=\"env-states\">");
    for env in &o.policy.environments {
        let state = env_state(&eng, env, &b, releases.get(&env.name))?;
        out.push_str(&env_html(&env.name, &state, &b.id, &alias, csrf, facts.run));
    }
    out.push_str("</ul>");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_return_only_to_run_pages_or_the_promotions_page() {
        use super::return_page;
        assert_eq!(return_page(Some("/ui/runs/12")), "/ui/runs/12");
        assert_eq!(return_page(None), "/ui/promotions");
        for bad in [
            "//evil.example/ui/runs/1",
            "https://evil.example/",
            "/ui/runs/",
            "/ui/runs/1/../../x",
            "/ui/runs/1?x=1",
        ] {
            assert_eq!(return_page(Some(bad)), "/ui/promotions", "{bad}");
        }
    }

    fn eval(gates: &[(&str, Outcome)]) -> Evaluation {
        Evaluation {
            decision: Decision::Pending,
            gates: gates
                .iter()
                .map(|(g, r)| pipe_promote::gates::GateResult {
                    gate: (*g).to_owned(),
                    mode: Mode::Enforce,
                    result: *r,
                    reasons: vec![format!("<i>{g}</i> reason")],
                    inputs: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_pending_approval_has_the_buttons_and_returns_to_the_run_page() {
        let html = env_html(
            "prod<1>",
            &EnvState::PendingApproval(eval(&[("approvals", Outcome::Pending)])),
            "sha256:ab",
            "bold-otter-abcd",
            "c\"srf",
            42,
        );
        assert!(html.contains("data-state=\"pending approval\""), "{html}");
        assert!(html.contains("id=\"approve-prod&lt;1&gt;\""), "{html}");
        assert!(html.contains("id=\"reject-prod&lt;1&gt;\""), "{html}");
        assert!(
            html.contains("name=\"back\" value=\"/ui/runs/42\""),
            "{html}"
        );
        assert!(html.contains("value=\"c&quot;srf\""), "{html}");
        assert!(!html.contains("<i>") && !html.contains("prod<1>"), "{html}");
    }

    #[test]
    fn other_states_name_the_gate_and_have_no_buttons() {
        let blocked = env_html(
            "production",
            &EnvState::Blocked {
                gate: "jobs".into(),
                reasons: vec!["job `test` <failed>".into()],
                eval: None,
            },
            "sha256:ab",
            "bold-otter-abcd",
            "x",
            1,
        );
        assert!(blocked.contains("data-state=\"blocked\""), "{blocked}");
        assert!(
            blocked
                .contains("blocked by <code class=\"gate\">jobs</code>: job `test` &lt;failed&gt;"),
            "{blocked}"
        );
        assert!(!blocked.contains("<form"), "{blocked}");
        let waiting = env_html(
            "production",
            &EnvState::Waiting {
                gate: "lock".into(),
                reasons: vec!["locked".into()],
                eval: eval(&[("lock", Outcome::Pending), ("approvals", Outcome::Pending)]),
            },
            "sha256:ab",
            "a",
            "x",
            1,
        );
        assert!(waiting.contains("waits on <code class=\"gate\">lock</code>"));
        assert!(!waiting.contains("<form"), "{waiting}");
        let promoted = env_html(
            "staging",
            &EnvState::Promoted {
                since: "2026-11-26T10:00:00Z".into(),
            },
            "sha256:ab",
            "a",
            "x",
            1,
        );
        assert!(promoted.contains("badge success\">promoted"), "{promoted}");
        let asked = env_html(
            "staging",
            &EnvState::NotRequested,
            "i",
            "bold-otter-abcd",
            "x",
            1,
        );
        assert!(
            asked.contains("<code>pipe promote bold-otter-abcd --to staging</code>"),
            "{asked}"
        );
    }

    #[test]
    fn server_facts_name_the_same_subjects_as_a_run_folder() {
        let spec = pipe_promote::policy::BuildSpec {
            workflow: None,
            subjects: vec![
                pipe_promote::policy::SubjectSpec {
                    name: "app".into(),
                    source: pipe_promote::policy::SubjectSource::Output {
                        job: "build".into(),
                        output: "image".into(),
                    },
                },
                pipe_promote::policy::SubjectSpec {
                    name: "dist".into(),
                    source: pipe_promote::policy::SubjectSource::Artifact("dist".into()),
                },
            ],
        };
        let hex = "ab".repeat(32);
        let facts = RunBuildFacts {
            run: 7,
            workflow: ".github/workflows/ci.yml".into(),
            done: true,
            outputs: vec![
                ("build".into(), [("image".to_owned(), String::new())].into()),
                (
                    "build".into(),
                    [("image".to_owned(), format!("reg/app@sha256:{hex}"))].into(),
                ),
            ],
            artifacts: vec![(
                "dist".into(),
                vec![
                    crate::api::ArtifactFile {
                        path: "a/b.txt".into(),
                        digest: "cd".repeat(32),
                        size: 1,
                        mode: 0o644,
                    },
                    crate::api::ArtifactFile {
                        path: "link".into(),
                        digest: "ef".repeat(32),
                        size: 1,
                        mode: 0o120_777,
                    },
                ],
            )],
        };
        let subjects = facts.subjects(&spec).expect("subjects");
        let names: Vec<(&str, &str)> = subjects
            .iter()
            .map(|s| (s.name.as_str(), s.digest.as_str()))
            .collect();
        let app = format!("sha256:{hex}");
        let file = format!("sha256:{}", "cd".repeat(32));
        assert_eq!(
            names,
            [("app", app.as_str()), ("dist/a/b.txt", file.as_str())]
        );
        let none = RunBuildFacts {
            outputs: Vec::new(),
            ..facts
        };
        assert!(none.subjects(&spec).is_err());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::pct("a b&c=`d`/é"), "a%20b%26c%3D%60d%60%2F%C3%A9");
    }
}
