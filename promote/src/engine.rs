//! Promotion operations over the ledger: gather the facts gates read, request and decide a
//! promotion, approve, reject, lock and unlock.
//!
//! Every write is a ledger entry. A decision is appended only if the ledger head is still the
//! one its facts were read at (compare-and-swap); otherwise the facts are read again and the
//! gates re-evaluated, so two concurrent promoters never decide on stale state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;

use crate::build::{self, Build, BuildError};
use crate::gates::{
    self, ApprovalFact, Decision, Evaluation, Facts, LockFact, RequestFact, VetoFact,
};
use crate::ledger::{
    Actor, AllowedSigners, Draft, Entry, Filter, Ledger, LedgerError, SshSigner, kind,
};
use crate::policy::{Environment, Policy};
use crate::state;

/// An operation could not be done.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A build problem.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The environment is not in the policy.
    #[error("no environment `{name}` in the policy")]
    UnknownEnv {
        /// The name given.
        name: String,
        /// A close name.
        suggestion: Option<String>,
    },
    /// The request is refused (self-approval, not an approver, locked…).
    #[error("{0}")]
    Refused(String),
}

/// The policy as read, with where it came from.
#[derive(Debug)]
pub struct PolicyRef<'a> {
    /// The policy.
    pub policy: &'a Policy,
    /// `REF:PATH`.
    pub origin: &'a str,
    /// The commit.
    pub commit: Option<&'a str>,
    /// The approvers' keys.
    pub allowed: Option<&'a AllowedSigners>,
}

/// Promotion operations.
pub struct Engine<'a> {
    /// The ledger.
    pub ledger: &'a Ledger,
    /// The repository's state folder (evidence).
    pub state_dir: &'a Path,
    /// The repository root (custom gate commands run there).
    pub root: &'a Path,
    /// The policy.
    pub policy: PolicyRef<'a>,
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("origin", &self.policy.origin)
            .finish()
    }
}

/// The result of `promote`.
#[derive(Clone, Debug, Serialize)]
pub struct PromoteOutcome {
    /// The decision.
    pub decision: Decision,
    /// The gates.
    pub evaluation: Evaluation,
    /// The request entry.
    pub request: u64,
    /// The decision entry (allowed or denied; none while pending).
    pub decided: Option<u64>,
    /// The release entry (allowed; for an environment with `deploy:`, recorded only after
    /// the deploy verified, see `crate::deploy`).
    pub release: Option<u64>,
    /// The build must now be deployed (`crate::deploy::deploy`): allowed, the environment has
    /// `deploy:` and the build is not its release already.
    pub deploy: bool,
}

fn parse_time(e: &Entry) -> Timestamp {
    e.time.parse().unwrap_or(Timestamp::UNIX_EPOCH)
}

fn body_str<'e>(e: &'e Entry, key: &str) -> Option<&'e str> {
    e.body.get(key).and_then(|v| v.as_str())
}

impl<'a> Engine<'a> {
    /// An environment by name.
    pub fn env(&self, name: &str) -> Result<&'a Environment, EngineError> {
        self.policy
            .policy
            .env(name)
            .ok_or_else(|| EngineError::UnknownEnv {
                name: name.to_owned(),
                suggestion: pipe_runner::diag::did_you_mean(
                    name,
                    self.policy
                        .policy
                        .environments
                        .iter()
                        .map(|e| e.name.as_str()),
                )
                .map(str::to_owned),
            })
    }

    fn entries(
        &self,
        env: &str,
        build: Option<&str>,
        kinds: &[&str],
    ) -> Result<Vec<Entry>, LedgerError> {
        self.ledger.select(&Filter {
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            env: Some(env.to_owned()),
            build: build.map(str::to_owned),
        })
    }

    /// The lock on an environment, if any.
    pub fn lock_of(&self, env: &str) -> Result<Option<LockFact>, LedgerError> {
        lock_fact(self.ledger, env)
    }

    /// The open request for (build, env): the latest one not yet decided and not lapsed.
    pub fn open_request(
        &self,
        env: &Environment,
        build: &str,
        now: Timestamp,
    ) -> Result<Option<RequestFact>, LedgerError> {
        let es = self.entries(
            &env.name,
            Some(build),
            &[kind::PROMOTION_REQUESTED, kind::PROMOTION_DECIDED],
        )?;
        let Some(last) = es.last() else {
            return Ok(None);
        };
        if last.kind != kind::PROMOTION_REQUESTED {
            return Ok(None);
        }
        let time = parse_time(last);
        if let Some(exp) = env.expires_after
            && now.duration_since(time) > exp
        {
            return Ok(None);
        }
        Ok(Some(RequestFact {
            seq: last.seq,
            requester: last.actor.id.clone(),
            policy: body_str(last, "policy").unwrap_or_default().to_owned(),
            time,
        }))
    }

    /// Reads every fact the gates of `env` need for `build` (custom gates are run when `run_custom`).
    pub fn facts(
        &self,
        env: &Environment,
        b: &Build,
        now: Timestamp,
        request: Option<RequestFact>,
        run_custom: bool,
    ) -> Result<Facts, EngineError> {
        let mut facts = Facts {
            now: Some(now),
            request,
            ..Facts::default()
        };
        // Releases of every environment gates may look at.
        for e in &self.policy.policy.environments {
            facts
                .releases
                .insert(e.name.clone(), state::releases(self.ledger, &e.name)?);
        }
        // Approvals, revocations, vetoes and requests for (build, env), in order.
        let es = self.entries(
            &env.name,
            Some(&b.id),
            &[
                kind::APPROVAL_GRANTED,
                kind::APPROVAL_REVOKED,
                kind::PROMOTION_REJECTED,
                kind::PROMOTION_REQUESTED,
                kind::WINDOW_OVERRIDDEN,
            ],
        )?;
        for e in &es {
            match e.kind.as_str() {
                kind::APPROVAL_GRANTED => facts.approvals.push(ApprovalFact {
                    seq: e.seq,
                    approver: e.actor.id.clone(),
                    authenticated: e.sig.as_ref().is_some_and(|s| s.alg == "sshsig")
                        && e.actor.auth.as_deref()
                            == e.sig
                                .as_ref()
                                .map(|s| format!("ssh:{}", s.keyid))
                                .as_deref(),
                    policy: body_str(e, "policy").unwrap_or_default().to_owned(),
                    rule: body_str(e, "rule").map(str::to_owned),
                    time: parse_time(e),
                }),
                kind::APPROVAL_REVOKED => {
                    if let Some(s) = e.body.get("approval").and_then(|v| v.as_u64()) {
                        facts.revoked.insert(s);
                    }
                }
                kind::PROMOTION_REJECTED => {
                    // A veto voids the approvals before it.
                    facts.approvals.clear();
                    facts.veto = Some(VetoFact {
                        seq: e.seq,
                        by: e.actor.id.clone(),
                        reason: body_str(e, "reason").unwrap_or_default().to_owned(),
                    });
                }
                kind::PROMOTION_REQUESTED => facts.veto = None,
                _ => {
                    if facts.request.as_ref().is_some_and(|r| {
                        e.body.get("request").and_then(|v| v.as_u64()) == Some(r.seq)
                    }) {
                        facts.window_override = Some((
                            e.actor.id.clone(),
                            body_str(e, "reason").unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
        }
        facts.lock = self.lock_of(&env.name)?;
        // Evidence, read back through its digests.
        for ev in &b.body.evidence {
            let read = || -> Result<serde_json::Value, BuildError> {
                let bytes = build::read_evidence(self.state_dir, &ev.digest)?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| BuildError::Subject(format!("evidence `{}`: {e}", ev.name)))
            };
            match ev.kind.as_str() {
                "scan" => facts.scans.push((ev.digest.clone(), read()?)),
                "bench" => facts.benches.push((ev.digest.clone(), read()?)),
                "summary" => facts.summary = Some((ev.digest.clone(), read()?)),
                _ => {}
            }
        }
        // Coverage of the environment's current release, for `max_drop`.
        if let Some(r) = facts.releases.get(&env.name).and_then(|rs| rs.last())
            && r.build != b.id
            && let Ok(rb) = build::resolve(self.ledger, &r.build)
            && let Some(ev) = rb.body.evidence.iter().find(|e| e.kind == "summary")
            && let Ok(bytes) = build::read_evidence(self.state_dir, &ev.digest)
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(pct) = v
                .pointer("/results/coverage/line_percent")
                .and_then(|p| p.as_f64())
        {
            facts.release_coverage = Some((r.build.clone(), pct));
        }
        if run_custom {
            for c in &env.gates.custom {
                facts.custom.insert(
                    c.spec.name.clone(),
                    match &c.spec.image {
                        Some(image) => run_container_gate(
                            self.root,
                            image,
                            &c.spec.command,
                            &b.id,
                            &env.name,
                            c.spec.timeout_secs,
                        ),
                        None => run_custom_gate(
                            self.root,
                            &c.spec.command,
                            &b.id,
                            &env.name,
                            c.spec.timeout_secs,
                        ),
                    },
                );
            }
        }
        Ok(facts)
    }

    /// Dry-runs every gate (custom gates run; nothing is written).
    pub fn gates(&self, env: &Environment, b: &Build) -> Result<Evaluation, EngineError> {
        let now = self.ledger.now();
        let request = self.open_request(env, &b.id, now)?;
        let facts = self.facts(env, b, now, request, true)?;
        Ok(gates::evaluate(self.policy.policy, env, b, &facts))
    }

    fn policy_body(&self, env: &Environment) -> serde_json::Value {
        serde_json::json!({
            "policy": env.digest,
            "source": self.policy.origin,
            "commit": self.policy.commit,
        })
    }

    /// The last policy digest the ledger saw for an environment.
    fn last_policy(&self, env: &str) -> Result<Option<String>, LedgerError> {
        let es = self.entries(
            env,
            None,
            &[
                kind::PROMOTION_REQUESTED,
                kind::PROMOTION_DECIDED,
                kind::POLICY_CHANGED,
            ],
        )?;
        Ok(es.last().and_then(|e| {
            body_str(
                e,
                if e.kind == kind::POLICY_CHANGED {
                    "to"
                } else {
                    "policy"
                },
            )
            .map(str::to_owned)
        }))
    }

    fn note_policy(&self, env: &Environment, actor: &Actor) -> Result<(), LedgerError> {
        if let Some(old) = self.last_policy(&env.name)?
            && old != env.digest
        {
            self.ledger.append(
                Draft::new(kind::POLICY_CHANGED, actor.clone(), serde_json::json!({ "from": old, "to": env.digest, "source": self.policy.origin, "commit": self.policy.commit }))
                    .env(&env.name),
            )?;
        }
        Ok(())
    }

    /// Requests (if no request is open) and decides a promotion.
    pub fn promote(
        &self,
        env: &Environment,
        b: &Build,
        actor: &Actor,
        reason: Option<&str>,
        override_window: Option<&str>,
    ) -> Result<PromoteOutcome, EngineError> {
        let now = self.ledger.now();
        self.note_policy(env, actor)?;
        let request = match self.open_request(env, &b.id, now)? {
            Some(r) => r,
            None => {
                let mut body = self.policy_body(env);
                body["reason"] = reason.into();
                let e = self.ledger.append(
                    Draft::new(kind::PROMOTION_REQUESTED, actor.clone(), body)
                        .env(&env.name)
                        .build(&b.id),
                )?;
                RequestFact {
                    seq: e.seq,
                    requester: e.actor.id.clone(),
                    policy: env.digest.clone(),
                    time: parse_time(&e),
                }
            }
        };
        if let Some(why) = override_window {
            self.ledger.append(
                Draft::new(
                    kind::WINDOW_OVERRIDDEN,
                    actor.clone(),
                    serde_json::json!({ "request": request.seq, "reason": why }),
                )
                .env(&env.name)
                .build(&b.id),
            )?;
        }
        for _ in 0..20 {
            let head = self.ledger.head()?;
            let now = self.ledger.now();
            let facts = self.facts(env, b, now, Some(request.clone()), true)?;
            let mut evaluation = gates::evaluate(self.policy.policy, env, b, &facts);
            // Never move an environment back to an older build (that is a rollback).
            if let Some(cur) = facts.releases.get(&env.name).and_then(|rs| rs.last())
                && cur.build != b.id
                && let Ok(cb) = build::resolve(self.ledger, &cur.build)
                && cb.seq > b.seq
            {
                evaluation.gates.push(gates::GateResult {
                    gate: "order".into(),
                    mode: crate::policy::Mode::Enforce,
                    result: gates::Outcome::Fail,
                    reasons: vec![format!(
                        "older than the current release `{}` (use `pipe rollback` to go back)",
                        cb.body.alias
                    )],
                    inputs: vec![format!("ledger#{}", cur.seq)],
                });
                evaluation.decision = Decision::Denied;
            }
            let eval_json = serde_json::to_value(&evaluation).unwrap_or_default();
            let decision = evaluation.decision;
            let current = facts
                .releases
                .get(&env.name)
                .and_then(|rs| rs.last())
                .cloned();
            // While pending, record the evaluation only when a gate's result changed (so
            // `--wait` does not fill the ledger with identical entries).
            if decision == Decision::Pending
                && self.last_evaluation(&env.name, &b.id, request.seq)?
                    == Some(results_of(&evaluation))
            {
                return Ok(PromoteOutcome {
                    decision,
                    evaluation,
                    request: request.seq,
                    decided: None,
                    release: None,
                    deploy: false,
                });
            }
            let mut drafts = vec![match decision {
                Decision::Pending => Draft::new(kind::GATE_EVALUATED, actor.clone(), serde_json::json!({ "request": request.seq, "policy": env.digest, "evaluation": eval_json })),
                _ => {
                    let mut body = self.policy_body(env);
                    body["request"] = request.seq.into();
                    body["decision"] = serde_json::to_value(decision).unwrap_or_default();
                    body["requested_by"] = request.requester.clone().into();
                    body["evaluation"] = eval_json;
                    Draft::new(kind::PROMOTION_DECIDED, actor.clone(), body)
                }
            }
            .env(&env.name)
            .build(&b.id)];
            // The decision and the release it makes are one atomic append, so no other
            // promoter can decide between them. Promoting the current release changes nothing.
            // An environment with `deploy:` records its release only after verify passed
            // (`crate::deploy`); the caller deploys when `deploy` is set in the outcome.
            let already = current.as_ref().is_some_and(|r| r.build == b.id);
            let deploys = env.deploy.is_some();
            if decision == Decision::Allowed && !already && !deploys {
                drafts.push(
                    Draft::new(kind::RELEASE_RECORDED, actor.clone(), serde_json::json!({ "request": request.seq, "previous": current.as_ref().map(|r| r.build.clone()), "policy": env.digest }))
                        .env(&env.name)
                        .build(&b.id),
                );
            }
            match self.ledger.append_all_with(
                |h| {
                    if h == head.as_ref() {
                        Ok(drafts.clone())
                    } else {
                        Err(LedgerError::Refused("stale".into()))
                    }
                },
                None,
            ) {
                Ok(es) => {
                    let mut out = PromoteOutcome {
                        decision,
                        evaluation,
                        request: request.seq,
                        decided: None,
                        release: None,
                        deploy: decision == Decision::Allowed && !already && deploys,
                    };
                    if decision != Decision::Pending {
                        out.decided = es.first().map(|e| e.seq);
                    }
                    if decision == Decision::Allowed && !out.deploy {
                        out.release = es.get(1).map(|e| e.seq).or(current.map(|r| r.seq));
                    }
                    return Ok(out);
                }
                Err(LedgerError::Refused(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Refused(
            "the ledger kept changing while deciding; try again".into(),
        ))
    }

    /// The gate results of the last `gate.evaluated` entry of a request.
    fn last_evaluation(
        &self,
        env: &str,
        build: &str,
        request: u64,
    ) -> Result<Option<Vec<(String, String)>>, LedgerError> {
        let es = self.entries(env, Some(build), &[kind::GATE_EVALUATED])?;
        Ok(es
            .iter()
            .rev()
            .find(|e| e.body.get("request").and_then(|v| v.as_u64()) == Some(request))
            .and_then(|e| serde_json::from_value::<Evaluation>(e.body["evaluation"].clone()).ok())
            .map(|ev| results_of(&ev)))
    }

    /// Records a signed approval.
    pub fn approve(
        &self,
        env: &Environment,
        b: &Build,
        signer: &SshSigner,
        rule: Option<&str>,
        comment: Option<&str>,
    ) -> Result<Entry, EngineError> {
        let Some(allowed) = self.policy.allowed else {
            return Err(EngineError::Refused(format!(
                "no `.pipe/allowed_signers` at `{}`: approvals must be signed by a listed key",
                self.policy.origin
            )));
        };
        let Some(principal) = allowed.principal_of(signer.public()).map(str::to_owned) else {
            return Err(EngineError::Refused(format!(
                "the key `{}` is not in `.pipe/allowed_signers` (for namespace `pipe-ledger`)",
                signer.fingerprint()
            )));
        };
        let actor = Actor {
            id: principal,
            auth: Some(format!("ssh:{}", signer.fingerprint())),
            via: "cli".into(),
        };
        self.approve_as(env, b, actor, Some(signer), rule, comment)
    }

    /// Records an approval by an identity established elsewhere (the web UI: a user token of
    /// the server, whose name is the principal; the entry is signed by the ledger key only).
    /// The same rules as [`Engine::approve`]: the principal must be in a group of an approval
    /// rule of `env`, and may not approve its own request unless `self_approval` allows it.
    pub fn approve_as(
        &self,
        env: &Environment,
        b: &Build,
        actor: Actor,
        signer: Option<&SshSigner>,
        rule: Option<&str>,
        comment: Option<&str>,
    ) -> Result<Entry, EngineError> {
        let principal = actor.id.clone();
        let Some(gate) = &env.gates.approvals else {
            return Err(EngineError::Refused(format!(
                "`{}` asks for no approvals",
                env.name
            )));
        };
        let rules: Vec<_> = gate
            .spec
            .rules
            .iter()
            .filter(|r| rule.is_none_or(|n| n == r.name))
            .filter(|r| self.policy.policy.members(&r.from).contains(&principal))
            .collect();
        if rules.is_empty() {
            return Err(EngineError::Refused(match rule {
                Some(r) => format!(
                    "`{principal}` is not an approver of rule `{r}` of `{}`",
                    env.name
                ),
                None => format!("`{principal}` is not an approver of `{}`", env.name),
            }));
        }
        let now = self.ledger.now();
        if !gate.spec.self_approval
            && let Some(req) = self.open_request(env, &b.id, now)?
            && req.requester == principal
        {
            return Err(EngineError::Refused(format!(
                "`{principal}` requested this promotion and may not approve it (`self_approval: false`)"
            )));
        }
        let draft = Draft::new(
            kind::APPROVAL_GRANTED,
            actor,
            serde_json::json!({ "policy": env.digest, "rule": rule, "comment": comment, "source": self.policy.origin }),
        )
        .env(&env.name)
        .build(&b.id);
        Ok(self.ledger.append_with(|_| Ok(draft.clone()), signer)?)
    }

    /// Records a veto.
    pub fn reject(
        &self,
        env: &Environment,
        b: &Build,
        actor: Actor,
        signer: Option<&SshSigner>,
        reason: &str,
    ) -> Result<Entry, EngineError> {
        let actor = match (signer, self.policy.allowed) {
            (Some(s), Some(a)) => match a.principal_of(s.public()) {
                Some(p) => Actor {
                    id: p.to_owned(),
                    auth: Some(format!("ssh:{}", s.fingerprint())),
                    via: "cli".into(),
                },
                None => {
                    return Err(EngineError::Refused(format!(
                        "the key `{}` is not in `.pipe/allowed_signers`",
                        s.fingerprint()
                    )));
                }
            },
            _ => actor,
        };
        let draft = Draft::new(
            kind::PROMOTION_REJECTED,
            actor,
            serde_json::json!({ "reason": reason, "policy": env.digest }),
        )
        .env(&env.name)
        .build(&b.id);
        Ok(self.ledger.append_with(|_| Ok(draft.clone()), signer)?)
    }

    /// Locks or unlocks an environment.
    pub fn set_lock(
        &self,
        env: &Environment,
        actor: Actor,
        lock: Option<(&str, bool)>,
    ) -> Result<Entry, EngineError> {
        let current = self.lock_of(&env.name)?;
        let draft = match (lock, &current) {
            (Some((reason, hard)), _) => Draft::new(
                kind::ENV_LOCKED,
                actor,
                serde_json::json!({ "reason": reason, "hard": hard }),
            ),
            (None, Some(_)) => Draft::new(kind::ENV_UNLOCKED, actor, serde_json::json!({})),
            (None, None) => {
                return Err(EngineError::Refused(format!(
                    "`{}` is not locked",
                    env.name
                )));
            }
        };
        Ok(self.ledger.append(draft.env(&env.name))?)
    }
}

/// The lock on an environment, if any: the last `env.locked` not followed by `env.unlocked`.
pub fn lock_fact(ledger: &Ledger, env: &str) -> Result<Option<LockFact>, LedgerError> {
    let es = ledger.select(&Filter {
        kinds: vec![kind::ENV_LOCKED.to_owned(), kind::ENV_UNLOCKED.to_owned()],
        env: Some(env.to_owned()),
        build: None,
    })?;
    Ok(es
        .last()
        .filter(|e| e.kind == kind::ENV_LOCKED)
        .map(|e| LockFact {
            seq: e.seq,
            by: e.actor.id.clone(),
            reason: body_str(e, "reason").unwrap_or_default().to_owned(),
            hard: e
                .body
                .get("hard")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        }))
}

fn results_of(ev: &Evaluation) -> Vec<(String, String)> {
    ev.gates
        .iter()
        .map(|g| (g.gate.clone(), g.result.as_str().to_owned()))
        .collect()
}

/// Runs a custom gate command; its exit status, or None when it could not run or timed out.
pub fn run_custom_gate(
    root: &Path,
    command: &[String],
    build: &str,
    env: &str,
    timeout_secs: u64,
) -> Option<i32> {
    let subst = |s: &str| s.replace("${build}", build).replace("${env}", env);
    let (prog, args) = command.split_first()?;
    let prog = subst(prog);
    let prog_path: PathBuf = if prog.contains('/') {
        root.join(&prog)
    } else {
        PathBuf::from(&prog)
    };
    let child = std::process::Command::new(prog_path)
        .args(args.iter().map(|a| subst(a)))
        .current_dir(root)
        .env("PIPE_BUILD", build)
        .env("PIPE_ENV", env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    wait_for(child, timeout_secs, || {})
}

/// Waits for a child up to `timeout_secs`; its exit code, or None on timeout (after `on_timeout`).
fn wait_for(
    mut child: std::process::Child,
    timeout_secs: u64,
    on_timeout: impl FnOnce(),
) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                on_timeout();
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Runs a custom gate in a container of `image` with the docker CLI (`$PIPE_DOCKER` or
/// `docker`): no network, never pulled (the image must be local), the repository mounted
/// read-only at `/repo` (the working folder), `PIPE_BUILD`/`PIPE_ENV` set. Its exit status,
/// or None when it could not run (docker's own 125–127), or timed out (the container is
/// removed).
pub fn run_container_gate(
    root: &Path,
    image: &str,
    command: &[String],
    build: &str,
    env: &str,
    timeout_secs: u64,
) -> Option<i32> {
    let subst = |s: &str| s.replace("${build}", build).replace("${env}", env);
    let docker = std::env::var("PIPE_DOCKER").unwrap_or_else(|_| "docker".to_owned());
    let name = format!(
        "pipe-gate-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let mut mount = std::ffi::OsString::from(root.as_os_str());
    mount.push(":/repo:ro");
    let child = std::process::Command::new(&docker)
        .args([
            "run",
            "--rm",
            "--pull",
            "never",
            "--network",
            "none",
            "--name",
            &name,
        ])
        .args([
            "-e",
            &format!("PIPE_BUILD={build}"),
            "-e",
            &format!("PIPE_ENV={env}"),
        ])
        .arg("-v")
        .arg(mount)
        .args(["-w", "/repo", "--", image])
        .args(command.iter().map(|a| subst(a)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let code = wait_for(child, timeout_secs, || {
        let _ = std::process::Command::new(&docker)
            .args(["rm", "-f", &name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    })?;
    // 125: docker itself failed (no daemon, no such image); 126/127: the command cannot run.
    (!(125..=127).contains(&code)).then_some(code)
}

/// The current state of every environment, for `pipe status`.
#[derive(Clone, Debug, Serialize)]
pub struct EnvStatus {
    /// Name.
    pub env: String,
    /// Current release.
    pub release: Option<state::Release>,
    /// Its alias.
    pub alias: Option<String>,
    /// The lock.
    pub locked: Option<serde_json::Value>,
    /// Builds with an open request: (build, alias, requester, entry).
    pub pending: Vec<serde_json::Value>,
    /// Whether the windows are open now.
    pub window_open: bool,
    /// The automatic-promotion hold an automatic rollback set (environments with `deploy:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// A deploy or rollback in flight — or interrupted, if its process is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<pipe_deploy::lock::InFlight>,
}

/// Status of every environment (or one).
pub fn status(engine: &Engine<'_>, only: Option<&str>) -> Result<Vec<EnvStatus>, EngineError> {
    let now = engine.ledger.now();
    let releases = state::current_releases(engine.ledger)?;
    let mut out = Vec::new();
    for env in &engine.policy.policy.environments {
        if only.is_some_and(|o| o != env.name) {
            continue;
        }
        let release = releases.get(&env.name).cloned();
        let alias = release
            .as_ref()
            .and_then(|r| build::resolve(engine.ledger, &r.build).ok())
            .map(|b| b.body.alias);
        let locked = engine.lock_of(&env.name)?.map(
            |l| serde_json::json!({ "by": l.by, "reason": l.reason, "hard": l.hard, "seq": l.seq }),
        );
        let mut open: BTreeMap<String, Entry> = BTreeMap::new();
        for e in engine.entries(
            &env.name,
            None,
            &[kind::PROMOTION_REQUESTED, kind::PROMOTION_DECIDED],
        )? {
            if let Some(b) = e.build.clone() {
                if e.kind == kind::PROMOTION_REQUESTED {
                    open.insert(b, e);
                } else {
                    open.remove(&b);
                }
            }
        }
        let pending = open
            .values()
            .filter(|e| env.expires_after.is_none_or(|x| now.duration_since(parse_time(e)) <= x))
            .map(|e| {
                let b = e.build.clone().unwrap_or_default();
                let alias = build::resolve(engine.ledger, &b).map(|b| b.body.alias).unwrap_or_default();
                serde_json::json!({ "build": b, "alias": alias, "requested_by": e.actor.id, "request": e.seq, "time": e.time })
            })
            .collect();
        let window_open = env
            .gates
            .windows
            .as_ref()
            .is_none_or(|w| crate::policy::window::open_at(&w.spec.deny, &w.spec.allow, now).0);
        let (hold, in_flight) = match env.deploy {
            Some(_) => match pipe_deploy::engine::status(engine.state_dir, &env.name) {
                Ok((st, _, f)) => (st.hold, f),
                Err(_) => (None, None),
            },
            None => (None, None),
        };
        out.push(EnvStatus {
            env: env.name.clone(),
            release,
            alias,
            locked,
            pending,
            window_open,
            hold,
            in_flight,
        });
    }
    Ok(out)
}
