//! Deploy → verify → automatic rollback, and manual rollback, under the environment lock.
//!
//! [`deploy`] and [`rollback`] never print: they hand [`Event`]s to an observer (the CLI
//! prints them, the promotion crate writes them to the ledger) and return an [`Outcome`].
//!
//! Rules (promotion.md §3.3, §5.8):
//! - one deploy or rollback per environment at a time, FIFO ([`crate::lock`]);
//! - an environment with an interrupted deploy refuses new deploys until a rollback
//!   recovers it; a rollback is always allowed (hard locks are the caller's business);
//! - a failed or inconclusive verify rolls back automatically (unless `rollback.auto:
//!   false`, or `on_inconclusive: hold`) to the last *verified* release, replaying its
//!   recorded configuration and plan, and sets a hold on automatic promotion;
//! - a rollback is never rolled back: when its own verify fails the environment stays
//!   failed for a human;
//! - blue-green: the new build goes to the idle slot, pre-switch checks run against that
//!   slot, the proxy switches only when they pass; a verify failure after the switch
//!   switches back to the previous slot, which kept running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::health::{Probe, ProbeContext};
use crate::lock::{self, EnvLock, InFlight, LockError, Waiting};
use crate::proc::Ended;
use crate::proxy::{Nginx, ProxyError};
use crate::release::{
    BuildRef, EnvState, EnvStore, Plan, Release, ReleaseState, StoreError, VerifySummary,
    subject_var,
};
use crate::spec::{BlueGreenSpec, EnvDeploy, OnInconclusive, SpecError, Strategy};
use crate::verify::{self, Sample, Verdict, Verification};
use crate::{Cancel, now_rfc3339};

/// Where things are.
#[derive(Clone, Debug)]
pub struct Context {
    /// The repository's state folder (records live in `deploy/<env>/` below it).
    pub state_dir: PathBuf,
    /// The project root: deploy and check commands run here, relative paths start here.
    pub project_root: PathBuf,
    /// Who is acting (`user.name`, `$USER`).
    pub actor: String,
    /// Ctrl-C.
    pub cancel: Cancel,
}

/// A deploy request.
#[derive(Clone, Debug)]
pub struct DeployRequest {
    /// The environment.
    pub env: String,
    /// The build.
    pub build: BuildRef,
    /// The environment's configuration (read from the trusted policy by the caller).
    pub config: EnvDeploy,
    /// Why.
    pub reason: Option<String>,
}

/// Which release a manual rollback returns to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The last verified release before the current one (`--steps 1`).
    Previous,
    /// The N-th distinct verified build before the current one.
    Steps(u32),
    /// The latest verified release of this build (id, prefix or alias).
    Build(String),
}

/// What happened, as it happens. Serialized with a `kind` tag (`deploy.started`, …) so a
/// ledger can store the body as is.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind")]
pub enum Event {
    /// Another deploy holds the environment; we wait in line.
    #[serde(rename = "lock.waiting")]
    LockWaiting {
        /// Env.
        env: String,
        /// Waiters ahead.
        ahead: usize,
        /// The holder's in-flight record.
        holder: Option<InFlight>,
    },
    /// We hold the environment.
    #[serde(rename = "lock.acquired")]
    LockAcquired {
        /// Env.
        env: String,
    },
    /// A release started (a deploy, or a rollback when `rollback` is set).
    #[serde(rename = "deploy.started")]
    Started {
        /// The release record as it starts.
        release: Box<Release>,
    },
    /// The deploy command finished successfully.
    #[serde(rename = "deploy.succeeded")]
    Deployed {
        /// Env.
        env: String,
        /// Release number.
        release: u64,
        /// Milliseconds.
        duration_ms: u64,
    },
    /// The deploy failed (command, pre-switch checks or proxy switch).
    #[serde(rename = "deploy.failed")]
    DeployFailed {
        /// Env.
        env: String,
        /// Release number.
        release: u64,
        /// Why.
        reason: String,
        /// The last lines of the deploy command's output.
        output: String,
    },
    /// Pre-switch checks against the idle slot.
    #[serde(rename = "verify.pre_switch")]
    PreSwitch {
        /// Env.
        env: String,
        /// The slot checked.
        slot: String,
        /// The verdict.
        verdict: Verdict,
        /// The last probes.
        probes: Vec<Probe>,
    },
    /// The proxy now serves `to`.
    #[serde(rename = "proxy.switched")]
    Switched {
        /// Env.
        env: String,
        /// The slot served before.
        from: Option<String>,
        /// The slot served now.
        to: String,
        /// The release now served.
        release: u64,
    },
    /// One verify sample.
    #[serde(rename = "verify.sample")]
    Sample {
        /// Env.
        env: String,
        /// Release number.
        release: u64,
        /// The sample.
        sample: Sample,
    },
    /// The verification finished.
    #[serde(rename = "verify.finished")]
    Verified {
        /// Env.
        env: String,
        /// Release number.
        release: u64,
        /// The summary.
        summary: VerifySummary,
    },
    /// A rollback starts.
    #[serde(rename = "rollback.started")]
    RollbackStarted {
        /// Env.
        env: String,
        /// The release being replaced.
        from: Option<u64>,
        /// The release being restored.
        to: u64,
        /// The build being restored.
        build: String,
        /// `auto` or `manual`.
        trigger: String,
        /// Why.
        reason: String,
    },
    /// A rollback finished.
    #[serde(rename = "rollback.finished")]
    RollbackFinished {
        /// Env.
        env: String,
        /// The release restored.
        to: u64,
        /// Whether the environment is healthy on it.
        ok: bool,
        /// How (`switched back to slot blue`, `redeployed as release 4`).
        how: String,
    },
    /// The operation ended; the release's final record.
    #[serde(rename = "deploy.finished")]
    Finished {
        /// The release record.
        release: Box<Release>,
    },
}

impl Event {
    /// The ledger entry kind (promotion.md §5.5): `verify.finished` is split into
    /// `verify.passed|failed|inconclusive|interrupted`.
    pub fn ledger_kind(&self) -> String {
        match self {
            Event::LockWaiting { .. } => "queue.entered".to_owned(),
            Event::Verified { summary, .. } => format!(
                "verify.{}",
                match summary.verdict {
                    Verdict::Passed => "passed",
                    Verdict::Failed => "failed",
                    Verdict::Inconclusive => "inconclusive",
                    Verdict::Interrupted => "interrupted",
                }
            ),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                .unwrap_or_default(),
        }
    }

    /// The event as a JSON body without its `kind` (no floats: a ledger can hash it with JCS).
    pub fn body(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("kind");
        }
        v
    }

    /// The environment the event is about.
    pub fn env(&self) -> &str {
        match self {
            Event::LockWaiting { env, .. }
            | Event::LockAcquired { env }
            | Event::Deployed { env, .. }
            | Event::DeployFailed { env, .. }
            | Event::PreSwitch { env, .. }
            | Event::Switched { env, .. }
            | Event::Sample { env, .. }
            | Event::Verified { env, .. }
            | Event::RollbackStarted { env, .. }
            | Event::RollbackFinished { env, .. } => env,
            Event::Started { release } | Event::Finished { release } => &release.env,
        }
    }
}

/// How a deploy or rollback ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Deployed and verified.
    Verified,
    /// Failed, and the environment is back on `to` (healthy).
    RolledBack {
        /// The release restored.
        to: u64,
        /// Why the new release failed.
        reason: String,
    },
    /// Failed and not (successfully) rolled back: needs a human.
    Failed {
        /// Why.
        reason: String,
    },
    /// Inconclusive and held (`on_inconclusive: hold`).
    Held {
        /// Why.
        reason: String,
    },
    /// Ctrl-C: the environment is left locked with its in-flight record.
    Interrupted,
}

/// What [`deploy`] or [`rollback`] returns.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The release this operation created.
    pub release: Release,
    /// How it ended.
    pub result: Ending,
    /// An interrupted operation this one recovered from.
    pub recovered: Option<InFlight>,
}

/// Errors that stop a deploy before or outside its release record.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The configuration is invalid.
    #[error("invalid deploy configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<SpecError>),
    /// The lock.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Records.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the in-flight record.
    #[error("writing the in-flight record: {0}")]
    Io(#[from] std::io::Error),
    /// A deploy or rollback was interrupted earlier; this deploy refuses to start.
    #[error("{}", interrupted_message(.0))]
    NeedsRecovery(Box<InFlight>),
    /// No verified release to roll back to.
    #[error("{0}")]
    NoTarget(String),
}

/// The explanation an interrupted environment gives (also the `hint:`).
pub fn interrupted_message(r: &InFlight) -> String {
    let slots = match (&r.from_slot, &r.to_slot) {
        (Some(f), Some(t)) => format!("; the proxy was on slot `{f}`, switching to `{t}`"),
        _ => String::new(),
    };
    format!(
        "environment `{}` is locked: a {} of build {} (release {}, pid {}, started {}) was interrupted while {}{slots}\nhint: run `pipe rollback {} --reason TEXT` to restore the last verified release, then promote again",
        r.env,
        r.op,
        short(&r.build),
        r.release,
        r.pid,
        r.started,
        r.phase,
        r.env
    )
}

fn short(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

fn ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

struct Run<'a> {
    ctx: &'a Context,
    store: EnvStore,
    lock: EnvLock,
    obs: &'a mut dyn FnMut(&Event),
    state: EnvState,
}

impl Run<'_> {
    fn emit(&mut self, e: Event) {
        (self.obs)(&e);
    }

    fn save_state(&self) -> Result<(), EngineError> {
        Ok(self.store.save_state(&self.state)?)
    }
}

fn take_lock(
    ctx: &Context,
    env: &str,
    obs: &mut dyn FnMut(&Event),
) -> Result<(EnvStore, EnvLock), EngineError> {
    let store = EnvStore::open(&ctx.state_dir, env);
    std::fs::create_dir_all(&store.dir)?;
    let lock = lock::acquire(&store.dir, &ctx.cancel, &mut |w: &Waiting| {
        obs(&Event::LockWaiting {
            env: env.to_owned(),
            ahead: w.ahead,
            holder: w.holder.clone(),
        })
    })?;
    obs(&Event::LockAcquired {
        env: env.to_owned(),
    });
    Ok((store, lock))
}

/// Deploys `req.build` to `req.env`, verifies it and rolls back automatically on failure.
pub fn deploy(
    ctx: &Context,
    req: &DeployRequest,
    obs: &mut dyn FnMut(&Event),
) -> Result<Outcome, EngineError> {
    let errs = req.config.validate();
    if !errs.is_empty() {
        return Err(EngineError::Invalid(errs));
    }
    let (store, lock) = take_lock(ctx, &req.env, obs)?;
    if let Some(r) = lock.interrupted() {
        return Err(EngineError::NeedsRecovery(Box::new(r)));
    }
    let state = store.state()?;
    let mut run = Run {
        ctx,
        store,
        lock,
        obs,
        state,
    };
    let previous = run.state.current;
    let rel = new_release(&run, &req.build, &req.config, previous, req.reason.clone())?;
    let out = execute(&mut run, rel, None)?;
    Ok(out)
}

/// Rolls `env` back to an earlier verified release (`pipe rollback`). Allowed while an
/// interrupted deploy holds the environment: that is how it is recovered.
pub fn rollback(
    ctx: &Context,
    env: &str,
    target: &RollbackTarget,
    reason: &str,
    obs: &mut dyn FnMut(&Event),
) -> Result<Outcome, EngineError> {
    let (store, lock) = take_lock(ctx, env, obs)?;
    let recovered = lock.interrupted();
    let state = store.state()?;
    let releases = store.list()?;
    let to = pick_target(env, &releases, &state, target, recovered.is_some())?;
    let mut run = Run {
        ctx,
        store,
        lock,
        obs,
        state,
    };
    if let Some(r) = &recovered {
        // the interrupted release is over: say so in its record
        if let Ok(mut old) = run.store.load(r.release)
            && matches!(old.state, ReleaseState::Deploying | ReleaseState::Verifying)
        {
            old.state = ReleaseState::Interrupted;
            old.failure = Some(format!("interrupted while {}", r.phase));
            old.finished = Some(now_rfc3339());
            run.store.save(&old)?;
        }
    }
    let from = run.state.current;
    run.emit(Event::RollbackStarted {
        env: env.to_owned(),
        from,
        to: to.seq,
        build: to.build.id.clone(),
        trigger: "manual".to_owned(),
        reason: reason.to_owned(),
    });
    let mut out = restore(&mut run, &to, from, "manual", reason)?;
    out.recovered = recovered;
    Ok(out)
}

fn pick_target(
    env: &str,
    releases: &[Release],
    state: &EnvState,
    target: &RollbackTarget,
    recovering: bool,
) -> Result<Release, EngineError> {
    // recovering from an interrupted deploy, the last verified release itself is the target
    let current_build = state
        .current
        .and_then(|c| releases.iter().find(|r| r.seq == c))
        .filter(|_| !recovering)
        .map(|r| r.build.id.clone());
    // verified releases, newest first, one per build, excluding the current build
    let mut seen = Vec::new();
    let mut cands: Vec<&Release> = Vec::new();
    for r in releases.iter().rev() {
        if r.state != ReleaseState::Verified || Some(&r.build.id) == current_build.as_ref() {
            continue;
        }
        if seen.contains(&&r.build.id) {
            continue;
        }
        seen.push(&r.build.id);
        cands.push(r);
    }
    let none = || {
        EngineError::NoTarget(format!(
            "environment `{env}` has no earlier verified release to roll back to"
        ))
    };
    match target {
        RollbackTarget::Previous => cands.first().map(|r| (*r).clone()).ok_or_else(none),
        RollbackTarget::Steps(n) => {
            let n = (*n).max(1) as usize;
            cands.get(n - 1).map(|r| (*r).clone()).ok_or_else(|| {
                EngineError::NoTarget(format!(
                    "environment `{env}` has {} earlier verified build{}, `--steps {n}` goes past them",
                    cands.len(),
                    if cands.len() == 1 { "" } else { "s" }
                ))
            })
        }
        RollbackTarget::Build(q) => {
            if let Some(r) = cands.iter().find(|r| r.build.matches(q)) {
                return Ok((*r).clone());
            }
            if current_build.as_deref().is_some_and(|c| {
                releases
                    .iter()
                    .any(|r| r.build.id == c && r.build.matches(q))
            }) {
                return Err(EngineError::NoTarget(format!(
                    "build `{q}` is the current release of `{env}`; nothing to roll back"
                )));
            }
            Err(EngineError::NoTarget(format!(
                "build `{q}` was never verified in `{env}`; `pipe rollback` only returns to a release verified there"
            )))
        }
    }
}

fn new_release(
    run: &Run<'_>,
    build: &BuildRef,
    config: &EnvDeploy,
    previous: Option<u64>,
    reason: Option<String>,
) -> Result<Release, EngineError> {
    let seq = run.store.next_seq()?;
    let plan = Plan {
        strategy: config.deploy.as_ref().map(|d| d.strategy),
        slot: None,
        slot_addr: None,
        env: BTreeMap::new(),
    };
    Ok(Release {
        v: 1,
        seq,
        env: run.store.env.clone(),
        build: build.clone(),
        config: config.clone(),
        config_digest: config.digest(),
        plan_digest: crate::digest_json(&plan),
        plan,
        previous,
        restores: None,
        rollback: None,
        actor: run.ctx.actor.clone(),
        reason,
        state: ReleaseState::Deploying,
        failure: None,
        rolled_back_to: None,
        verify: None,
        started: now_rfc3339(),
        finished: None,
        duration_ms: None,
    })
}

/// What went wrong in a release, and whether the environment changed.
struct Failure {
    reason: String,
    /// The environment may run the new release (in-place deploy ran, or the proxy switched).
    changed: bool,
    verdict: Option<Verdict>,
}

fn pick_slots(bg: &BlueGreenSpec, state: &EnvState, nginx: &Nginx) -> (Option<String>, String) {
    let active = state
        .active_slot
        .clone()
        .or_else(|| nginx.current_slot())
        .filter(|s| bg.slots.contains_key(s));
    let idle = bg
        .slots
        .keys()
        .find(|s| Some(*s) != active.as_ref())
        .cloned()
        .unwrap_or_default();
    (active, idle)
}

fn base_env(rel: &Release) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PIPE_ENV".to_owned(), rel.env.clone());
    env.insert("PIPE_RELEASE".to_owned(), rel.seq.to_string());
    env.insert("PIPE_BUILD".to_owned(), rel.build.id.clone());
    if let Some(a) = &rel.build.alias {
        env.insert("PIPE_BUILD_ALIAS".to_owned(), a.clone());
    }
    env.insert(
        "PIPE_SUBJECTS".to_owned(),
        serde_json::to_string(&rel.build.subjects).unwrap_or_default(),
    );
    for s in &rel.build.subjects {
        env.insert(subject_var(&s.name), s.digest.clone());
        if let Some(u) = &s.uri {
            env.insert(format!("{}_URI", subject_var(&s.name)), u.clone());
        }
    }
    env.insert(
        "PIPE_ROLLBACK".to_owned(),
        rel.rollback.is_some().to_string(),
    );
    env
}

/// Runs a release (fresh or rollback) to its end; on failure of a fresh release, rolls back.
fn execute(
    run: &mut Run<'_>,
    mut rel: Release,
    restoring: Option<&Release>,
) -> Result<Outcome, EngineError> {
    let start = Instant::now();
    let ctx = run.ctx.clone();
    let config = rel.config.clone();
    let mut env = base_env(&rel);
    let mut vars = BTreeMap::new();
    let mut flight = InFlight {
        op: if rel.rollback.is_some() {
            "rollback"
        } else {
            "deploy"
        }
        .to_owned(),
        env: rel.env.clone(),
        build: rel.build.id.clone(),
        release: rel.seq,
        pid: std::process::id(),
        started: rel.started.clone(),
        phase: "deploying".to_owned(),
        from_slot: None,
        to_slot: None,
    };
    let bg = config
        .deploy
        .as_ref()
        .filter(|d| d.strategy == Strategy::BlueGreen)
        .and_then(|d| d.blue_green.clone());
    let nginx = bg
        .as_ref()
        .map(|b| Nginx::from_spec(&b.proxy, &ctx.project_root));
    let mut from_slot = None;
    if let (Some(bg), Some(nginx)) = (&bg, &nginx) {
        let (active, idle) = pick_slots(bg, &run.state, nginx);
        let addr = bg.slots.get(&idle).cloned().unwrap_or_default();
        env.insert("PIPE_SLOT".to_owned(), idle.clone());
        env.insert("PIPE_SLOT_ADDR".to_owned(), addr.clone());
        if let Some((_, port)) = addr.rsplit_once(':') {
            env.insert("PIPE_SLOT_PORT".to_owned(), port.to_owned());
        }
        vars.insert("slot".to_owned(), idle.clone());
        vars.insert("slot_addr".to_owned(), addr.clone());
        rel.plan.slot = Some(idle.clone());
        rel.plan.slot_addr = Some(addr);
        flight.from_slot = active.clone();
        flight.to_slot = Some(idle);
        from_slot = active;
    }
    if let Some(d) = &config.deploy {
        env.extend(d.env.clone());
    }
    rel.plan.env = env.clone();
    rel.plan_digest = crate::digest_json(&rel.plan);
    run.lock.begin(&flight)?;
    run.store.save(&rel)?;
    run.emit(Event::Started {
        release: Box::new(rel.clone()),
    });

    let probe_ctx = ProbeContext {
        cwd: ctx.project_root.clone(),
        env: env.clone(),
        vars: vars.clone(),
        log_dir: Some(run.store.dir.join("logs")),
        cancel: ctx.cancel.clone(),
    };
    std::fs::create_dir_all(run.store.dir.join("logs"))?;

    // 1. deploy
    let mut failure: Option<Failure> = None;
    if let Some(d) = &config.deploy {
        let log = run.store.log_path(rel.seq);
        let t = Instant::now();
        let f = crate::proc::run_shell(
            &d.run,
            &ctx.project_root,
            &env,
            d.timeout(),
            &ctx.cancel,
            &log,
        )?;
        if bg.is_some()
            && let Some(slot) = &rel.plan.slot
        {
            // whatever ran in the idle slot before is gone now
            run.state.slots.insert(slot.clone(), rel.seq);
            run.save_state()?;
        }
        match f.ended {
            Ended::Exited(0) => run.emit(Event::Deployed {
                env: rel.env.clone(),
                release: rel.seq,
                duration_ms: ms(t),
            }),
            Ended::Cancelled => return interrupted(run, rel, start),
            other => {
                let reason = match other {
                    Ended::Exited(c) => format!("the deploy command exited with {c}"),
                    Ended::Signalled(s) => format!("the deploy command was killed by signal {s}"),
                    _ => format!(
                        "the deploy command ran past its {} limit",
                        humantime::format_duration(d.timeout())
                    ),
                };
                run.emit(Event::DeployFailed {
                    env: rel.env.clone(),
                    release: rel.seq,
                    reason: reason.clone(),
                    output: f.tail.clone(),
                });
                failure = Some(Failure {
                    reason,
                    changed: bg.is_none(),
                    verdict: None,
                });
            }
        }
    }

    // 2. blue-green: pre-switch checks on the idle slot, then the switch
    if failure.is_none()
        && let (Some(bg), Some(nginx)) = (&bg, &nginx)
    {
        let slot = rel.plan.slot.clone().unwrap_or_default();
        let addr = rel.plan.slot_addr.clone().unwrap_or_default();
        if !bg.pre_switch.is_empty() {
            run.lock.phase(&mut flight, "running pre-switch checks")?;
            let interval = config
                .verify
                .as_ref()
                .map(|v| v.interval())
                .unwrap_or(std::time::Duration::from_millis(500));
            let (verdict, probes) = verify::wait_healthy(
                &bg.pre_switch,
                &probe_ctx,
                bg.pre_switch_timeout(),
                interval,
            );
            run.emit(Event::PreSwitch {
                env: rel.env.clone(),
                slot: slot.clone(),
                verdict,
                probes: probes.clone(),
            });
            match verdict {
                Verdict::Passed => {}
                Verdict::Interrupted => return interrupted(run, rel, start),
                v => {
                    let why: Vec<String> = probes
                        .iter()
                        .filter(|p| p.health != crate::health::Health::Healthy)
                        .map(|p| format!("{}: {} ({})", p.check, p.health, p.detail))
                        .collect();
                    failure = Some(Failure {
                        reason: format!(
                            "pre-switch checks on slot `{slot}` {v}: {}",
                            why.join("; ")
                        ),
                        changed: false,
                        verdict: Some(v),
                    });
                }
            }
        }
        if failure.is_none() {
            run.lock.phase(&mut flight, "switching the proxy")?;
            match nginx.switch(&slot, &addr) {
                Ok(()) => {
                    run.state.active_slot = Some(slot.clone());
                    run.state.current = Some(rel.seq);
                    run.save_state()?;
                    run.emit(Event::Switched {
                        env: rel.env.clone(),
                        from: from_slot.clone(),
                        to: slot,
                        release: rel.seq,
                    });
                }
                Err(e) => {
                    failure = Some(Failure {
                        reason: format!("proxy switch failed: {e}"),
                        changed: false,
                        verdict: None,
                    })
                }
            }
        }
    } else if failure.is_none() {
        run.state.current = Some(rel.seq);
        run.save_state()?;
    }

    // 3. verify
    if failure.is_none() {
        rel.state = ReleaseState::Verifying;
        run.store.save(&rel)?;
        run.lock.phase(&mut flight, "verifying")?;
        if let Some(v) = &config.verify {
            let env_name = rel.env.clone();
            let seq = rel.seq;
            let obs = &mut run.obs;
            let verification: Verification = verify::verify(v, &probe_ctx, &mut |s: &Sample| {
                obs(&Event::Sample {
                    env: env_name.clone(),
                    release: seq,
                    sample: s.clone(),
                });
            });
            let summary = summarize(&verification);
            rel.verify = Some(summary.clone());
            run.emit(Event::Verified {
                env: env_name,
                release: seq,
                summary,
            });
            match verification.verdict {
                Verdict::Passed => {}
                Verdict::Interrupted => return interrupted(run, rel, start),
                Verdict::Inconclusive
                    if config.rollback.on_inconclusive == OnInconclusive::Hold
                        && restoring.is_none() =>
                {
                    rel.state = ReleaseState::Held;
                    let reason = format!("verify inconclusive: {}", verification.reason);
                    rel.failure = Some(reason.clone());
                    run.state.hold =
                        Some(format!("release {} is held unverified: {reason}", rel.seq));
                    return finish(run, rel, start, Ending::Held { reason });
                }
                v => {
                    failure = Some(Failure {
                        reason: format!("verify {v}: {}", verification.reason),
                        changed: true,
                        verdict: Some(v),
                    })
                }
            }
        }
    }

    let Some(f) = failure else {
        rel.state = ReleaseState::Verified;
        run.state.current = Some(rel.seq);
        run.state.last_verified = Some(rel.seq);
        if restoring.is_none() {
            run.state.hold = None;
        }
        return finish(run, rel, start, Ending::Verified);
    };
    let _ = f.verdict;

    // 4. failure: roll back (never a rollback of a rollback)
    rel.state = ReleaseState::Failed;
    rel.failure = Some(f.reason.clone());
    if restoring.is_some() || !config.rollback.auto {
        if f.changed {
            run.state.current = Some(rel.seq);
        }
        return finish(run, rel, start, Ending::Failed { reason: f.reason });
    }
    let target = run
        .state
        .last_verified
        .filter(|s| *s != rel.seq)
        .map(|s| run.store.load(s))
        .transpose()?;
    let Some(target) = target else {
        if f.changed {
            run.state.current = Some(rel.seq);
        }
        let reason = format!("{}; no earlier verified release to roll back to", f.reason);
        rel.failure = Some(reason.clone());
        return finish(run, rel, start, Ending::Failed { reason });
    };
    run.lock.phase(&mut flight, "rolling back")?;
    run.emit(Event::RollbackStarted {
        env: rel.env.clone(),
        from: Some(rel.seq),
        to: target.seq,
        build: target.build.id.clone(),
        trigger: "auto".to_owned(),
        reason: f.reason.clone(),
    });
    run.state.hold = Some(format!(
        "automatic rollback of release {} to release {}: {}",
        rel.seq, target.seq, f.reason
    ));
    if !f.changed {
        // nothing switched: the previous release kept serving
        run.state.current = Some(target.seq);
        rel.state = ReleaseState::RolledBack;
        rel.rolled_back_to = Some(target.seq);
        run.emit(Event::RollbackFinished {
            env: rel.env.clone(),
            to: target.seq,
            ok: true,
            how: format!(
                "nothing was switched; release {} ({}) kept serving",
                target.seq,
                target.build.short()
            ),
        });
        let reason = f.reason;
        return finish(
            run,
            rel,
            start,
            Ending::RolledBack {
                to: target.seq,
                reason,
            },
        );
    }
    // close this release first, then restore
    rel.state = ReleaseState::RolledBack;
    rel.rolled_back_to = Some(target.seq);
    rel.finished = Some(now_rfc3339());
    rel.duration_ms = Some(ms(start));
    run.store.save(&rel)?;
    let restored = restore(run, &target, Some(rel.seq), "auto", &f.reason)?;
    let ok = restored.result == Ending::Verified;
    if !ok {
        rel.state = ReleaseState::Failed;
        rel.rolled_back_to = None;
        run.store.save(&rel)?;
    }
    let result = if ok {
        Ending::RolledBack {
            to: target.seq,
            reason: f.reason,
        }
    } else {
        Ending::Failed {
            reason: format!(
                "{}; the automatic rollback to release {} failed too",
                f.reason, target.seq
            ),
        }
    };
    run.emit(Event::Finished {
        release: Box::new(rel.clone()),
    });
    Ok(Outcome {
        release: rel,
        result,
        recovered: None,
    })
}

/// Brings `target` back: a blue-green switch back when its slot still runs it, else a
/// redeploy of its recorded plan as a new release (`rollback: auto|manual`).
fn restore(
    run: &mut Run<'_>,
    target: &Release,
    from: Option<u64>,
    trigger: &str,
    reason: &str,
) -> Result<Outcome, EngineError> {
    let bg = target
        .config
        .deploy
        .as_ref()
        .filter(|d| d.strategy == Strategy::BlueGreen)
        .and_then(|d| d.blue_green.clone());
    if let (Some(bg), Some(slot)) = (&bg, &target.plan.slot)
        && run.state.slots.get(slot) == Some(&target.seq)
        && let Some(addr) = bg.slots.get(slot)
    {
        // the previous slot still runs the target: switch back, instantly
        let start = Instant::now();
        let nginx = Nginx::from_spec(&bg.proxy, &run.ctx.project_root);
        let mut rel = target.clone();
        rel.seq = run.store.next_seq()?;
        rel.previous = from;
        rel.restores = Some(target.seq);
        rel.rollback = Some(trigger.to_owned());
        rel.actor = run.ctx.actor.clone();
        rel.reason = Some(reason.to_owned());
        rel.state = ReleaseState::Verifying;
        rel.failure = None;
        rel.rolled_back_to = None;
        rel.verify = None;
        rel.started = now_rfc3339();
        rel.finished = None;
        rel.duration_ms = None;
        rel.plan
            .env
            .insert("PIPE_ROLLBACK".to_owned(), "true".to_owned());
        rel.plan_digest = crate::digest_json(&rel.plan);
        let mut flight = InFlight {
            op: "rollback".to_owned(),
            env: rel.env.clone(),
            build: rel.build.id.clone(),
            release: rel.seq,
            pid: std::process::id(),
            started: rel.started.clone(),
            phase: "switching the proxy back".to_owned(),
            from_slot: run.state.active_slot.clone(),
            to_slot: Some(slot.clone()),
        };
        run.lock.begin(&flight)?;
        run.store.save(&rel)?;
        run.emit(Event::Started {
            release: Box::new(rel.clone()),
        });
        let before = run.state.active_slot.clone();
        let switched = nginx.switch(slot, addr);
        if let Err(e) = switched {
            return proxy_failed(run, rel, start, &e);
        }
        run.state.active_slot = Some(slot.clone());
        run.state.current = Some(rel.seq);
        run.save_state()?;
        run.emit(Event::Switched {
            env: rel.env.clone(),
            from: before,
            to: slot.clone(),
            release: rel.seq,
        });
        let mut ok = true;
        if let Some(v) = &target.config.verify {
            run.lock.phase(&mut flight, "verifying")?;
            let probe_ctx = ProbeContext {
                cwd: run.ctx.project_root.clone(),
                env: rel.plan.env.clone(),
                vars: BTreeMap::from([
                    ("slot".to_owned(), slot.clone()),
                    ("slot_addr".to_owned(), addr.clone()),
                ]),
                log_dir: Some(run.store.dir.join("logs")),
                cancel: run.ctx.cancel.clone(),
            };
            let verification = verify::verify(v, &probe_ctx, &mut |_| {});
            if verification.verdict == Verdict::Interrupted {
                return interrupted(run, rel, start);
            }
            let summary = summarize(&verification);
            ok = summary.verdict == Verdict::Passed;
            rel.verify = Some(summary.clone());
            run.emit(Event::Verified {
                env: rel.env.clone(),
                release: rel.seq,
                summary,
            });
        }
        run.state.slots.insert(slot.clone(), rel.seq);
        let how = format!("switched the proxy back to slot `{slot}`");
        return close_rollback(run, rel, target, start, ok, how);
    }
    // redeploy the target's recorded plan
    let mut rel = new_release(
        run,
        &target.build,
        &target.config,
        from,
        Some(reason.to_owned()),
    )?;
    rel.restores = Some(target.seq);
    rel.rollback = Some(trigger.to_owned());
    let out = execute(run, rel, Some(target))?;
    let ok = out.result == Ending::Verified;
    run.emit(Event::RollbackFinished {
        env: out.release.env.clone(),
        to: target.seq,
        ok,
        how: format!("redeployed as release {}", out.release.seq),
    });
    Ok(Outcome {
        result: if ok { Ending::Verified } else { out.result },
        ..out
    })
}

fn close_rollback(
    run: &mut Run<'_>,
    mut rel: Release,
    target: &Release,
    start: Instant,
    ok: bool,
    how: String,
) -> Result<Outcome, EngineError> {
    let result = if ok {
        rel.state = ReleaseState::Verified;
        run.state.current = Some(rel.seq);
        run.state.last_verified = Some(rel.seq);
        Ending::Verified
    } else {
        rel.state = ReleaseState::Failed;
        let reason = format!(
            "rollback to release {}: {}",
            target.seq,
            rel.verify
                .as_ref()
                .map(|v| v.reason.as_str())
                .unwrap_or("failed")
        );
        rel.failure = Some(reason.clone());
        Ending::Failed { reason }
    };
    run.emit(Event::RollbackFinished {
        env: rel.env.clone(),
        to: target.seq,
        ok,
        how,
    });
    let mut out = finish(run, rel, start, result)?;
    out.recovered = None;
    Ok(out)
}

fn proxy_failed(
    run: &mut Run<'_>,
    mut rel: Release,
    start: Instant,
    e: &ProxyError,
) -> Result<Outcome, EngineError> {
    rel.state = ReleaseState::Failed;
    let reason = format!("proxy switch failed: {e}");
    rel.failure = Some(reason.clone());
    finish(run, rel, start, Ending::Failed { reason })
}

fn summarize(v: &Verification) -> VerifySummary {
    let count =
        |h| u32::try_from(v.samples.iter().filter(|s| s.health == h).count()).unwrap_or(u32::MAX);
    VerifySummary {
        verdict: v.verdict,
        reason: v.reason.clone(),
        samples: u32::try_from(v.samples.len()).unwrap_or(u32::MAX),
        healthy: count(crate::health::Health::Healthy),
        unhealthy: count(crate::health::Health::Unhealthy),
        unknown: count(crate::health::Health::Unknown),
    }
}

fn finish(
    run: &mut Run<'_>,
    mut rel: Release,
    start: Instant,
    result: Ending,
) -> Result<Outcome, EngineError> {
    rel.finished = Some(now_rfc3339());
    rel.duration_ms = Some(ms(start));
    run.store.save(&rel)?;
    run.save_state()?;
    run.lock.finish()?;
    run.emit(Event::Finished {
        release: Box::new(rel.clone()),
    });
    Ok(Outcome {
        release: rel,
        result,
        recovered: None,
    })
}

/// Ctrl-C: the record says interrupted, the in-flight record stays, the lock is released
/// by the caller dropping it (or the process exiting).
fn interrupted(
    run: &mut Run<'_>,
    mut rel: Release,
    start: Instant,
) -> Result<Outcome, EngineError> {
    rel.state = ReleaseState::Interrupted;
    rel.failure = Some("interrupted".to_owned());
    rel.finished = Some(now_rfc3339());
    rel.duration_ms = Some(ms(start));
    run.store.save(&rel)?;
    run.save_state()?;
    Ok(Outcome {
        release: rel,
        result: Ending::Interrupted,
        recovered: None,
    })
}

/// The environment's state and its current release, for `status` displays.
pub fn status(
    state_dir: &Path,
    env: &str,
) -> Result<(EnvState, Option<Release>, Option<InFlight>), StoreError> {
    let store = EnvStore::open(state_dir, env);
    let state = store.state()?;
    let current = state.current.map(|c| store.load(c)).transpose()?;
    Ok((state, current, lock::read_inflight(&store.dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_their_ledger_kind_and_carry_no_kind_in_the_body() {
        let e = Event::Verified {
            env: "production".into(),
            release: 3,
            summary: VerifySummary {
                verdict: Verdict::Failed,
                reason: "1 unhealthy sample (limit 0)".into(),
                samples: 1,
                healthy: 0,
                unhealthy: 1,
                unknown: 0,
            },
        };
        assert_eq!(e.ledger_kind(), "verify.failed");
        assert_eq!(e.env(), "production");
        let body = e.body();
        assert!(body.get("kind").is_none());
        assert_eq!(body["summary"]["verdict"], "FAILED");
        let s = Event::Switched {
            env: "production".into(),
            from: Some("blue".into()),
            to: "green".into(),
            release: 4,
        };
        assert_eq!(s.ledger_kind(), "proxy.switched");
        let w = Event::LockWaiting {
            env: "staging".into(),
            ahead: 1,
            holder: None,
        };
        assert_eq!(w.ledger_kind(), "queue.entered");
    }
}
