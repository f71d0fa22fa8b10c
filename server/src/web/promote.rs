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
use pipe_promote::gates::Decision;
use pipe_promote::ledger::{Actor, AllowedSigners, Ledger, SshSigner, system_clock};
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
                let _ = write!(
                    out,
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
            }
            let _ = write!(
                out,
                "<form method=\"post\" action=\"/ui/promotions/approve\" class=\"inline\">\
                 <input type=\"hidden\" name=\"env\" value=\"{env}\">\
                 <input type=\"hidden\" name=\"build\" value=\"{bid}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input name=\"comment\" placeholder=\"comment\">\
                 <button class=\"approve\" id=\"approve-{env}\">Approve</button></form>\
                 <form method=\"post\" action=\"/ui/promotions/reject\" class=\"inline\">\
                 <input type=\"hidden\" name=\"env\" value=\"{env}\">\
                 <input type=\"hidden\" name=\"build\" value=\"{bid}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input name=\"reason\" placeholder=\"reason\" required>\
                 <button class=\"reject\" id=\"reject-{env}\">Reject</button></form></div>",
                env = esc(&s.env),
                bid = esc(build_id),
                csrf = esc(csrf),
            );
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
}

fn back(result: Result<String, String>) -> Response {
    let q = match result {
        Ok(m) => format!("ok={}", pct(&m)),
        Err(m) => format!("error={}", pct(&m)),
    };
    Redirect::to(&format!("/ui/promotions?{q}")).into_response()
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
    let Some(p) = app.settings().promotion.clone() else {
        return back(Err("promotion is not configured on this server".into()));
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
    back(r)
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

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(super::pct("a b&c=`d`/é"), "a%20b%26c%3D%60d%60%2F%C3%A9");
    }
}
