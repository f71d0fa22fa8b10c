//! Promotion wired to the deploy engine (`pipe-deploy`): once a promotion is ALLOWED, the
//! environment's `deploy:`/`verify:`/`rollback:` run through [`pipe_deploy::engine`], every
//! deploy [`Event`] becomes a ledger entry (one ledger for decisions, deploys, verifies and
//! rollbacks), and the environment's release is recorded only once verify passed.
//!
//! Also here: manual rollbacks (refused under a hard `pipe lock`), the automatic-promotion
//! hold, and the in-toto statements `pipe evidence` exports for a build (SLSA provenance from
//! the build's run, one statement per gate decision, one per deployment).

use std::path::{Path, PathBuf};

use pipe_deploy::engine::{self as deng, Context, DeployRequest, Event, Outcome};
use pipe_deploy::evidence::{self, BuildInfo, Statement};
use pipe_deploy::release::{self as drel, BuildRef, EnvStore};
use pipe_deploy::spec::{EnvDeploy, SpecError};
use serde_json::json;

use crate::build::{self, Build};
use crate::engine::{self, Engine};
use crate::gates::LockFact;
use crate::ledger::{Actor, Draft, Entry, Filter, Ledger, LedgerError, kind};
use crate::policy::Environment;
use crate::state;

/// The predicate type of a promotion decision statement.
pub const DECISION_V1: &str = "https://pipe.dev/attestation/promotion-decision/v1";

/// A deploy or rollback could not be done.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The environment's `deploy:`/`verify:`/`rollback:` are invalid.
    #[error("the deploy configuration of `{env}` is invalid: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config {
        /// The environment.
        env: String,
        /// Each problem, naming its field.
        errors: Vec<SpecError>,
    },
    /// The deploy engine stopped before or outside a release record.
    #[error(transparent)]
    Engine(#[from] deng::EngineError),
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// `pipe lock ENV --hard` blocks rollbacks.
    #[error("`{env}` is hard-locked by {by}: {reason}")]
    HardLocked {
        /// The environment.
        env: String,
        /// Who locked it.
        by: String,
        /// Why.
        reason: String,
    },
}

/// The typed deploy configuration of an environment; `None` when it has no `deploy:` (a
/// promotion then only records the decision and the release, as before deploys existed).
pub fn config(env: &Environment) -> Option<Result<EnvDeploy, DeployError>> {
    env.deploy.as_ref()?;
    Some(
        EnvDeploy::from_json_parts(
            env.deploy.as_ref(),
            env.verify.as_ref(),
            env.rollback.as_ref(),
        )
        .map_err(|errors| DeployError::Config {
            env: env.name.clone(),
            errors,
        }),
    )
}

/// The build as the deploy engine sees it.
pub fn build_ref(b: &Build) -> BuildRef {
    BuildRef {
        id: b.id.clone(),
        alias: Some(b.body.alias.clone()),
        subjects: b
            .body
            .subjects
            .iter()
            .map(|s| drel::Subject {
                name: s.name.clone(),
                digest: s.digest.clone(),
                uri: None,
            })
            .collect(),
    }
}

/// The automatic-promotion hold an automatic rollback left on `env` (cleared by the next
/// verified deploy, which a person starts with `pipe promote`).
pub fn hold(state_dir: &Path, env: &str) -> Option<String> {
    EnvStore::open(state_dir, env)
        .state()
        .ok()
        .and_then(|s| s.hold)
}

/// Writes deploy events to the ledger as they happen, and the release when an operation
/// finishes on a verified release — at `deploy.finished`, while the environment lock is still
/// held, so a later deploy cannot record its release first.
struct Recorder<'a> {
    ledger: &'a Ledger,
    state_dir: &'a Path,
    actor: Actor,
    /// The build of the operation in progress (a rollback's events name the build restored).
    build: Option<String>,
    /// The body of the `release.recorded` entry.
    release_body: serde_json::Value,
    /// The `release.recorded` entry appended.
    release: Option<Entry>,
    error: Option<LedgerError>,
}

impl Recorder<'_> {
    fn record(&mut self, e: &Event) {
        match e {
            Event::Started { release } => self.build = Some(release.build.id.clone()),
            Event::RollbackStarted { build, .. } => self.build = Some(build.clone()),
            _ => {}
        }
        if self.error.is_some() {
            return;
        }
        let mut d = Draft::new(&e.ledger_kind(), self.actor.clone(), e.body()).env(e.env());
        if let Some(b) = &self.build {
            d = d.build(b);
        }
        if let Err(err) = self.ledger.append(d) {
            self.error = Some(err);
            return;
        }
        if let Event::Finished { release } = e {
            match record_release(
                self.ledger,
                self.state_dir,
                &release.env,
                &self.actor,
                self.release_body.clone(),
            ) {
                Ok(Some(entry)) => self.release = Some(entry),
                Ok(None) => {}
                Err(err) => self.error = Some(err),
            }
        }
    }
}

/// What [`deploy`] and [`rollback`] return.
#[derive(Debug)]
pub struct Deployed {
    /// The deploy engine's outcome.
    pub outcome: Outcome,
    /// The `release.recorded` entry, when the environment now runs a different verified build.
    pub release: Option<Entry>,
}

/// Records the environment's release in the ledger when the deploy records say it now runs a
/// verified build other than the ledger's current release.
fn record_release(
    ledger: &Ledger,
    state_dir: &Path,
    env: &str,
    actor: &Actor,
    mut body: serde_json::Value,
) -> Result<Option<Entry>, LedgerError> {
    let store = EnvStore::open(state_dir, env);
    let Ok(st) = store.state() else {
        return Ok(None);
    };
    let (Some(cur), Some(verified)) = (st.current, st.last_verified) else {
        return Ok(None);
    };
    if cur != verified {
        return Ok(None);
    }
    let Ok(rel) = store.load(cur) else {
        return Ok(None);
    };
    let previous = state::releases(ledger, env)?.pop();
    if previous.as_ref().is_some_and(|p| p.build == rel.build.id) {
        return Ok(None);
    }
    body["previous"] = previous.map(|p| p.build).into();
    body["deploy"] = json!({
        "release": rel.seq,
        "rollback": rel.rollback,
        "restores": rel.restores,
        "config": rel.config_digest,
        "plan": rel.plan_digest,
    });
    let e = ledger.append(
        Draft::new(kind::RELEASE_RECORDED, actor.clone(), body)
            .env(env)
            .build(&rel.build.id),
    )?;
    Ok(Some(e))
}

/// An ALLOWED promotion to deploy.
#[derive(Clone, Copy, Debug)]
pub struct Allowed<'a> {
    /// The environment.
    pub env: &'a Environment,
    /// The build.
    pub build: &'a Build,
    /// Who promoted it.
    pub actor: &'a Actor,
    /// Its `promotion.requested` entry.
    pub request: u64,
    /// Why (recorded with the release).
    pub reason: Option<&'a str>,
}

/// Deploys an ALLOWED promotion and verifies it; a failed verify rolls back automatically.
/// Every event is appended to the ledger and handed to `obs`; the release is recorded only
/// after verify passed.
pub fn deploy(
    eng: &Engine<'_>,
    a: Allowed<'_>,
    ctx: &Context,
    obs: &mut dyn FnMut(&Event),
) -> Result<Deployed, DeployError> {
    let Allowed {
        env,
        build: b,
        actor,
        request,
        reason,
    } = a;
    let config = match config(env) {
        Some(c) => c?,
        None => {
            return Err(DeployError::Config {
                env: env.name.clone(),
                errors: vec![SpecError {
                    field: "deploy".to_owned(),
                    message: "missing: the environment has no `deploy:`".to_owned(),
                }],
            });
        }
    };
    let req = DeployRequest {
        env: env.name.clone(),
        build: build_ref(b),
        config,
        reason: reason.map(str::to_owned),
    };
    let mut rec = Recorder {
        ledger: eng.ledger,
        state_dir: &ctx.state_dir,
        actor: actor.clone(),
        build: Some(b.id.clone()),
        release_body: json!({ "request": request, "policy": env.digest }),
        release: None,
        error: None,
    };
    let result = deng::deploy(ctx, &req, &mut |e| {
        rec.record(e);
        obs(e);
    });
    if let Some(e) = rec.error {
        return Err(e.into());
    }
    Ok(Deployed {
        outcome: result?,
        release: rec.release,
    })
}

/// The lock on `env`, if any (`pipe lock`).
pub fn lock_of(ledger: &Ledger, env: &str) -> Result<Option<LockFact>, LedgerError> {
    engine::lock_fact(ledger, env)
}

/// `pipe rollback`: refused while `env` is hard-locked; otherwise the deploy engine's
/// rollback, every event in the ledger, and the restored build recorded as the release.
pub fn rollback(
    ledger: &Ledger,
    ctx: &Context,
    env: &str,
    target: &deng::RollbackTarget,
    reason: &str,
    actor: &Actor,
    obs: &mut dyn FnMut(&Event),
) -> Result<Deployed, DeployError> {
    if let Some(l) = lock_of(ledger, env)?
        && l.hard
    {
        return Err(DeployError::HardLocked {
            env: env.to_owned(),
            by: l.by,
            reason: l.reason,
        });
    }
    let mut rec = Recorder {
        ledger,
        state_dir: &ctx.state_dir,
        actor: actor.clone(),
        build: None,
        release_body: json!({ "rollback": "manual", "reason": reason }),
        release: None,
        error: None,
    };
    let result = deng::rollback(ctx, env, target, reason, &mut |e| {
        rec.record(e);
        obs(e);
    });
    if let Some(e) = rec.error {
        return Err(e.into());
    }
    Ok(Deployed {
        outcome: result?,
        release: rec.release,
    })
}

/// How a build was made, from its `build.registered` entry.
pub fn build_info(b: &Build) -> BuildInfo {
    let mut jobs: Vec<String> = b.body.jobs.iter().map(|j| j.id.clone()).collect();
    jobs.dedup();
    BuildInfo {
        workflow: Some(b.body.workflow.clone()),
        git_ref: Some(b.body.git_ref.clone()),
        commit: Some(b.body.sha.clone()).filter(|s| !s.is_empty()),
        repository: None,
        run: Some(b.body.run),
        jobs,
        started: None,
        finished: Some(b.registered.clone()),
    }
}

/// The in-toto statement of one `promotion.decided` entry.
pub fn decision_statement(build: &BuildRef, e: &Entry) -> Statement {
    let gates: Vec<serde_json::Value> = e.body["evaluation"]["gates"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|g| {
            json!({
                "gate": g["gate"], "mode": g["mode"], "result": g["result"],
                "reasons": g["reasons"], "inputs": g["inputs"],
            })
        })
        .collect();
    Statement {
        type_: evidence::STATEMENT_V1.to_owned(),
        subject: evidence::subjects(build),
        predicate_type: DECISION_V1.to_owned(),
        predicate: json!({
            "build": build.id,
            "environment": e.env,
            "decision": e.body["decision"],
            "policy": {
                "digest": evidence::digest_map(e.body["policy"].as_str().unwrap_or_default()),
                "source": e.body["source"],
                "commit": e.body["commit"],
            },
            "request": e.body["request"].as_u64().map(|s| s.to_string()),
            "requestedBy": e.body["requested_by"],
            "decidedBy": e.actor.id,
            "timeDecided": e.time,
            "gates": gates,
            "ledger": { "seq": e.seq.to_string(), "hash": e.hash },
        }),
    }
}

/// Every statement pipe makes about a registered build: SLSA provenance from its run, one
/// decision statement per `promotion.decided` entry, one deployment statement per release.
pub fn statements(
    ledger: &Ledger,
    state_dir: &Path,
    b: &Build,
) -> Result<Vec<(String, Statement)>, DeployError> {
    let br = build_ref(b);
    let mut items = vec![(
        "provenance".to_owned(),
        evidence::provenance(&br, &build_info(b)),
    )];
    for e in ledger.select(&Filter {
        kinds: vec![kind::PROMOTION_DECIDED.to_owned()],
        env: None,
        build: Some(b.id.clone()),
    })? {
        items.push((
            format!(
                "decision-{}-{:06}",
                e.env.as_deref().unwrap_or("none"),
                e.seq
            ),
            decision_statement(&br, &e),
        ));
    }
    for env in drel::environments(state_dir) {
        let store = EnvStore::open(state_dir, &env);
        for r in store.list().map_err(deng::EngineError::from)? {
            if r.build.id == b.id {
                items.push((
                    format!("deployment-{}-{:06}", r.env, r.seq),
                    evidence::deployment(&r),
                ));
            }
        }
    }
    Ok(items)
}

/// A deploy context for the repository.
pub fn context(state_dir: &Path, root: &Path, actor: &str, cancel: pipe_deploy::Cancel) -> Context {
    Context {
        state_dir: PathBuf::from(state_dir),
        project_root: PathBuf::from(root),
        actor: actor.to_owned(),
        cancel,
    }
}

/// Resolves a build for evidence: a registered build, if the ledger knows it.
pub fn registered(ledger: &Ledger, query: &str) -> Option<Build> {
    build::resolve(ledger, query).ok()
}
