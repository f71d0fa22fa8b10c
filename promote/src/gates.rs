//! Gate evaluation (promotion.md §5.3): a pure function of the policy, the build's recorded
//! evidence, facts from the ledger and the clock.
//!
//! Each gate returns PASS, FAIL, INCONCLUSIVE, WAIVED or PENDING with the reasons a person
//! needs ("needs 2 approvals from `release-managers`, has 1: alice") and the digests or ledger
//! entries it read. The decision takes only enforced gates: any FAIL or INCONCLUSIVE denies
//! (INCONCLUSIVE never silently passes), else any PENDING waits, else the build may go.
//! Shadow gates are evaluated and recorded, never block.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::build::Build;
use crate::policy::{ApprovalGate, Environment, Mode, OnInconclusive, Policy, Severity, When};
use crate::state::Release;

/// A gate's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Met.
    Pass,
    /// Not met.
    Fail,
    /// The evidence cannot tell (treated as not met).
    Inconclusive,
    /// Met thanks to a waiver or an override.
    Waived,
    /// Not met yet; waiting can meet it (approvals, soak, window, lock).
    Pending,
}

impl Outcome {
    /// `PASS`, `FAIL`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Inconclusive => "INCONCLUSIVE",
            Outcome::Waived => "WAIVED",
            Outcome::Pending => "PENDING",
        }
    }
}

/// One gate's evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The gate (`jobs`, `approvals`, `custom:NAME`, …).
    pub gate: String,
    /// Enforce or shadow.
    pub mode: Mode,
    /// The result.
    pub result: Outcome,
    /// What is met or unmet, one line each.
    pub reasons: Vec<String>,
    /// What it read: evidence digests and `ledger#SEQ`.
    pub inputs: Vec<String>,
}

/// The decision over all gates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    /// Every enforced gate passed.
    Allowed,
    /// An enforced gate failed or was inconclusive.
    Denied,
    /// Waiting for approvals, soak, a window or a lock.
    Pending,
}

/// The evaluation of every gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// Per gate, in a fixed order.
    pub gates: Vec<GateResult>,
}

/// An approval as the ledger has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalFact {
    /// Its entry.
    pub seq: u64,
    /// The approver (an authenticated principal).
    pub approver: String,
    /// Whether the entry carries a verified SSH identity.
    pub authenticated: bool,
    /// The environment policy digest it is bound to.
    pub policy: String,
    /// The rule it names, if any.
    pub rule: Option<String>,
    /// When.
    pub time: Timestamp,
}

/// A veto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VetoFact {
    /// Its entry.
    pub seq: u64,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// A lock on the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockFact {
    /// Its entry.
    pub seq: u64,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
    /// Whether rollbacks are blocked too.
    pub hard: bool,
}

/// The open request for (build, env), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFact {
    /// Its entry.
    pub seq: u64,
    /// Who asked.
    pub requester: String,
    /// The environment policy digest when it was asked.
    pub policy: String,
    /// When.
    pub time: Timestamp,
}

/// Everything gates read besides the policy and the build.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The clock.
    pub now: Option<Timestamp>,
    /// Releases per environment, oldest first.
    pub releases: BTreeMap<String, Vec<Release>>,
    /// Approvals for (build, env) since the last veto.
    pub approvals: Vec<ApprovalFact>,
    /// Approvals revoked: (approver, entry of the approval).
    pub revoked: BTreeSet<u64>,
    /// A veto that no later request has lifted.
    pub veto: Option<VetoFact>,
    /// The lock, if the environment is locked.
    pub lock: Option<LockFact>,
    /// The request being decided.
    pub request: Option<RequestFact>,
    /// Scan reports (digest, JSON) recorded with the build.
    pub scans: Vec<(String, serde_json::Value)>,
    /// Benchmark reports (digest, JSON).
    pub benches: Vec<(String, serde_json::Value)>,
    /// The run summary (digest, JSON) with its `results`.
    pub summary: Option<(String, serde_json::Value)>,
    /// Line coverage of the environment's current release, percent, when known.
    pub release_coverage: Option<(String, f64)>,
    /// Results of custom gate commands by name: exit status (None = could not run/timed out).
    pub custom: BTreeMap<String, Option<i32>>,
    /// A break-glass override of the windows (who, reason).
    pub window_override: Option<(String, String)>,
}

fn fmt_dur(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().max(0);
    match (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, 0, s) => format!("{s}s"),
        (0, 0, m, s) => format!("{m}m{s:02}s"),
        (0, h, m, _) => format!("{h}h{m:02}m"),
        (d, h, _, _) => format!("{d}d{h}h"),
    }
}

fn glob(p: &str) -> Option<globset::GlobMatcher> {
    globset::Glob::new(p).ok().map(|g| g.compile_matcher())
}

/// Evaluates every gate of `env` for `build`.
pub fn evaluate(policy: &Policy, env: &Environment, build: &Build, facts: &Facts) -> Evaluation {
    let now = facts.now.unwrap_or_else(Timestamp::now);
    let mut gates: Vec<GateResult> = Vec::new();
    let mut push =
        |gate: &str, mode: Mode, result: Outcome, reasons: Vec<String>, inputs: Vec<String>| {
            gates.push(GateResult {
                gate: gate.to_owned(),
                mode,
                result,
                reasons,
                inputs,
            })
        };

    // The lock and a veto come first: they stop everything.
    if let Some(l) = &facts.lock {
        push(
            "lock",
            Mode::Enforce,
            Outcome::Pending,
            vec![format!(
                "`{}` is locked by {}: {}",
                env.name, l.by, l.reason
            )],
            vec![format!("ledger#{}", l.seq)],
        );
    }
    if let Some(v) = &facts.veto {
        push(
            "veto",
            Mode::Enforce,
            Outcome::Fail,
            vec![format!(
                "rejected by {}: {} (a new `pipe promote` request lifts it)",
                v.by, v.reason
            )],
            vec![format!("ledger#{}", v.seq)],
        );
    }

    // Upstream: the build must have been released in one of `from` (unless it comes from a run).
    if !env.from.iter().any(|f| f == "build") {
        let mut inputs = Vec::new();
        let found = env.from.iter().find(|f| {
            facts.releases.get(f.as_str()).is_some_and(|rs| {
                rs.iter().any(|r| {
                    let hit = r.build == build.id;
                    if hit {
                        inputs.push(format!("ledger#{}", r.seq));
                    }
                    hit
                })
            })
        });
        match found {
            Some(f) => push(
                "from",
                Mode::Enforce,
                Outcome::Pass,
                vec![format!("released in `{f}`")],
                inputs,
            ),
            None => push(
                "from",
                Mode::Enforce,
                Outcome::Fail,
                vec![format!(
                    "never released in {}",
                    env.from
                        .iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )],
                inputs,
            ),
        }
    }

    if let Some(g) = &env.gates.jobs {
        let mut reasons = Vec::new();
        let mut ok = true;
        for pat in &g.spec {
            let m = glob(pat);
            let matched: Vec<_> = build
                .body
                .jobs
                .iter()
                .filter(|j| m.as_ref().is_some_and(|m| m.is_match(&j.id)) || j.id == *pat)
                .collect();
            if matched.is_empty() {
                ok = false;
                reasons.push(format!("no job matches `{pat}` in run #{}", build.body.run));
            }
            for j in matched {
                if j.conclusion == "success" {
                    reasons.push(format!("`{}` succeeded", j.name));
                } else {
                    ok = false;
                    reasons.push(format!("`{}` did not succeed: {}", j.name, j.conclusion));
                }
            }
        }
        let inputs = facts.summary.iter().map(|(d, _)| d.clone()).collect();
        push(
            "jobs",
            g.mode,
            if ok { Outcome::Pass } else { Outcome::Fail },
            reasons,
            inputs,
        );
    }

    if let Some(g) = &env.gates.refs {
        let r = &build.body.git_ref;
        let (ok, what) = if let Some(b) = r.strip_prefix("refs/heads/") {
            (
                g.spec
                    .branches
                    .iter()
                    .any(|p| glob(p).is_some_and(|m| m.is_match(b))),
                format!("branch `{b}`"),
            )
        } else if let Some(t) = r.strip_prefix("refs/tags/") {
            (
                g.spec
                    .tags
                    .iter()
                    .any(|p| glob(p).is_some_and(|m| m.is_match(t))),
                format!("tag `{t}`"),
            )
        } else {
            (false, format!("ref `{r}`"))
        };
        let reason = if ok {
            format!("built from {what}")
        } else {
            format!(
                "built from {what}, which is not allowed (branches: {}; tags: {})",
                list_or_none(&g.spec.branches),
                list_or_none(&g.spec.tags)
            )
        };
        push(
            "refs",
            g.mode,
            if ok { Outcome::Pass } else { Outcome::Fail },
            vec![reason],
            vec![],
        );
    }

    let mut waivers_used = false;
    if let Some(g) = &env.gates.vulnerabilities {
        let (result, reasons, inputs, used) =
            vulnerabilities(g.spec.block_at, &g.spec, build, facts, now);
        waivers_used = used;
        push("vulnerabilities", g.mode, result, reasons, inputs);
    }

    if let Some(g) = &env.gates.coverage {
        let line = facts.summary.as_ref().and_then(|(_, s)| {
            s.pointer("/results/coverage/line_percent")
                .and_then(serde_json::Value::as_f64)
        });
        let inputs: Vec<String> = facts.summary.iter().map(|(d, _)| d.clone()).collect();
        match line {
            None => push(
                "coverage",
                g.mode,
                Outcome::Inconclusive,
                vec!["the run recorded no coverage report".into()],
                inputs,
            ),
            Some(pct) => {
                let mut reasons = Vec::new();
                let mut ok = true;
                if let Some(min) = g.spec.min_lines {
                    let met = pct + 1e-9 >= min;
                    ok &= met;
                    reasons.push(format!(
                        "line coverage {pct:.2}% {} minimum {min:.2}%",
                        if met { "meets" } else { "is below the" }
                    ));
                }
                if let Some(max) = g.spec.max_drop {
                    match &facts.release_coverage {
                        Some((b, base)) => {
                            let drop = base - pct;
                            let met = drop <= max + 1e-9;
                            ok &= met;
                            reasons.push(format!(
                                "{} {:.2} points against the release of `{}` ({base:.2}%, build {}); at most {max:.2} allowed",
                                if drop > 0.0 { "drops" } else { "rises" },
                                drop.abs(),
                                env.name,
                                b.get(..19).unwrap_or(b)
                            ));
                        }
                        None => reasons.push(format!(
                            "no release of `{}` with coverage to compare with",
                            env.name
                        )),
                    }
                }
                push(
                    "coverage",
                    g.mode,
                    if ok { Outcome::Pass } else { Outcome::Fail },
                    reasons,
                    inputs,
                );
            }
        }
    }

    let mut bench_inconclusive = false;
    if let Some(g) = &env.gates.benchmarks {
        let mut reasons = Vec::new();
        let mut fail = false;
        let mut inconclusive = false;
        let mut n = 0;
        for (_, report) in &facts.benches {
            for c in report
                .pointer("/pipe/comparisons")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
            {
                n += 1;
                let name = c.get("name").and_then(|v| v.as_str()).unwrap_or("?");
                let verdict = c
                    .get("verdict")
                    .and_then(|v| v.as_str())
                    .unwrap_or("INCONCLUSIVE");
                let why = c.get("reason").and_then(|v| v.as_str()).unwrap_or("");
                match verdict {
                    "PASS" => {}
                    "FAIL" => fail = true,
                    _ => inconclusive = true,
                }
                reasons.push(format!("`{name}`: {verdict} ({why})"));
            }
        }
        let inputs = facts.benches.iter().map(|(d, _)| d.clone()).collect();
        let result = if n == 0 {
            reasons.push("the run recorded no benchmark comparison".into());
            Outcome::Inconclusive
        } else if fail {
            Outcome::Fail
        } else if inconclusive {
            bench_inconclusive = true;
            match g.spec.on_inconclusive {
                OnInconclusive::Fail => Outcome::Inconclusive,
                OnInconclusive::RequireApproval => {
                    reasons
                        .push("inconclusive: the `bench_inconclusive` approval rules apply".into());
                    Outcome::Waived
                }
                OnInconclusive::Pass => {
                    reasons.push("inconclusive, passed by policy (`on_inconclusive: pass`)".into());
                    Outcome::Waived
                }
            }
        } else {
            Outcome::Pass
        };
        push("benchmarks", g.mode, result, reasons, inputs);
    }

    if let Some(g) = &env.gates.soak {
        let rs = facts
            .releases
            .get(&g.spec.in_env)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let (result, reason, inputs) = match rs.last() {
            Some(r) if r.build == build.id => {
                let since: Option<Timestamp> = r.since.parse().ok();
                let held = since.map(|s| now.duration_since(s)).unwrap_or_default();
                if held >= g.spec.min {
                    (
                        Outcome::Pass,
                        format!(
                            "the release of `{}` for {} (at least {})",
                            g.spec.in_env,
                            fmt_dur(held),
                            fmt_dur(g.spec.min)
                        ),
                        vec![format!("ledger#{}", r.seq)],
                    )
                } else {
                    let ready = since
                        .and_then(|s| s.checked_add(g.spec.min).ok())
                        .map(crate::ledger::format_time)
                        .unwrap_or_default();
                    (
                        Outcome::Pending,
                        format!(
                            "soaking in `{}`: {} of {} (ready at {ready})",
                            g.spec.in_env,
                            fmt_dur(held),
                            fmt_dur(g.spec.min)
                        ),
                        vec![format!("ledger#{}", r.seq)],
                    )
                }
            }
            Some(r) => (
                Outcome::Fail,
                format!(
                    "not the current release of `{}` (that is {})",
                    g.spec.in_env,
                    r.build.get(..19).unwrap_or(&r.build)
                ),
                vec![format!("ledger#{}", r.seq)],
            ),
            None => (
                Outcome::Fail,
                format!("`{}` has no release yet", g.spec.in_env),
                vec![],
            ),
        };
        push("soak", g.mode, result, vec![reason], inputs);
    }

    if let Some(g) = &env.gates.approvals {
        let (result, reasons, inputs) = approvals(
            policy,
            env,
            &g.spec,
            facts,
            now,
            waivers_used,
            bench_inconclusive,
        );
        push("approvals", g.mode, result, reasons, inputs);
    }

    if let Some(g) = &env.gates.windows {
        let (open, names) = crate::policy::window::open_at(&g.spec.deny, &g.spec.allow, now);
        let (result, reason) = match (&facts.window_override, open) {
            (_, true) if names.is_empty() => {
                (Outcome::Pass, "no window restricts this time".to_owned())
            }
            (_, true) => (Outcome::Pass, format!("open: {}", names.join(", "))),
            (Some((by, why)), false) => (
                Outcome::Waived,
                format!(
                    "closed ({}), overridden by {by}: {why}",
                    closed_reason(&names, g.spec.allow.is_empty())
                ),
            ),
            (None, false) => (
                Outcome::Pending,
                format!("closed: {}", closed_reason(&names, g.spec.allow.is_empty())),
            ),
        };
        push("windows", g.mode, result, vec![reason], vec![]);
    }

    for c in &env.gates.custom {
        let status = facts.custom.get(&c.spec.name).copied().flatten();
        let (result, reason) = match status {
            Some(0) => (Outcome::Pass, "exited 0".to_owned()),
            Some(75) => (Outcome::Inconclusive, "exited 75 (inconclusive)".to_owned()),
            Some(s) => (Outcome::Fail, format!("exited {s}")),
            None => (
                Outcome::Fail,
                "did not run to completion (not found, killed or timed out)".to_owned(),
            ),
        };
        push(
            &format!("custom:{}", c.spec.name),
            c.mode,
            result,
            vec![reason],
            vec![],
        );
    }

    let enforced = || gates.iter().filter(|g| g.mode == Mode::Enforce);
    let decision = if enforced().any(|g| matches!(g.result, Outcome::Fail | Outcome::Inconclusive))
    {
        Decision::Denied
    } else if enforced().any(|g| g.result == Outcome::Pending) {
        Decision::Pending
    } else {
        Decision::Allowed
    };
    Evaluation { decision, gates }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn closed_reason(names: &[String], no_allow: bool) -> String {
    if !names.is_empty() {
        format!(
            "deny window {} active",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else if no_allow {
        "closed".into()
    } else {
        "no allow window is open".into()
    }
}

type GateOut = (Outcome, Vec<String>, Vec<String>);

fn vulnerabilities(
    block_at: Severity,
    spec: &crate::policy::VulnGate,
    build: &Build,
    facts: &Facts,
    now: Timestamp,
) -> (Outcome, Vec<String>, Vec<String>, bool) {
    let inputs: Vec<String> = facts.scans.iter().map(|(d, _)| d.clone()).collect();
    if facts.scans.is_empty() {
        return (
            Outcome::Inconclusive,
            vec!["the run recorded no scan report (`uses: pipe/scan@v1`)".into()],
            inputs,
            false,
        );
    }
    let mut reasons = Vec::new();
    if let Some(max) = spec.max_age
        && let Ok(at) = build.registered.parse::<Timestamp>()
        && now.duration_since(at) > max
    {
        reasons.push(format!(
            "the scan is {} old, more than `max_age` {}: run the pipeline again",
            fmt_dur(now.duration_since(at)),
            fmt_dur(max)
        ));
        return (Outcome::Fail, reasons, inputs, false);
    }
    let mut blocking = 0;
    let mut waived = 0;
    let mut highest = Severity::Unknown;
    for (_, report) in &facts.scans {
        for f in report
            .get("findings")
            .and_then(|f| f.as_array())
            .into_iter()
            .flatten()
        {
            if f.get("kind").and_then(|k| k.as_str()) != Some("vulnerability") {
                continue;
            }
            let sev = f
                .get("severity")
                .and_then(|s| s.as_str())
                .and_then(Severity::parse)
                .unwrap_or(Severity::Unknown);
            highest = highest.max(sev);
            if sev < block_at {
                continue;
            }
            let id = f.get("id").and_then(|s| s.as_str()).unwrap_or("?");
            let ids: Vec<&str> = std::iter::once(id)
                .chain(
                    f.get("aliases")
                        .and_then(|a| a.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str()),
                )
                .collect();
            let pkg = f
                .pointer("/package/name")
                .and_then(|s| s.as_str())
                .unwrap_or("");
            let waiver = spec.waivers.iter().find(|w| ids.contains(&w.id.as_str()));
            match waiver {
                Some(w) if w.expires > now => {
                    waived += 1;
                    reasons.push(format!(
                        "{} {id} in `{pkg}` waived until {}: {}",
                        sev.name(),
                        crate::ledger::format_time(w.expires),
                        w.justification
                    ));
                }
                Some(w) => {
                    blocking += 1;
                    reasons.push(format!(
                        "{} {id} in `{pkg}`: its waiver expired on {}",
                        sev.name(),
                        crate::ledger::format_time(w.expires)
                    ));
                }
                None => {
                    blocking += 1;
                    reasons.push(format!(
                        "{} {id} in `{pkg}` is at or above `{}`",
                        sev.name(),
                        block_at.name()
                    ));
                }
            }
        }
    }
    let result = if blocking > 0 {
        Outcome::Fail
    } else if waived > 0 {
        Outcome::Waived
    } else {
        reasons.push(format!(
            "no finding at or above `{}` (highest: {})",
            block_at.name(),
            highest.name()
        ));
        Outcome::Pass
    };
    (result, reasons, inputs, waived > 0)
}

fn approvals(
    policy: &Policy,
    env: &Environment,
    spec: &ApprovalGate,
    facts: &Facts,
    now: Timestamp,
    waivers_used: bool,
    bench_inconclusive: bool,
) -> GateOut {
    let mut reasons = Vec::new();
    let mut inputs = Vec::new();
    let requester = facts.request.as_ref().map(|r| r.requester.as_str());
    // Which approvals count at all.
    let mut valid: Vec<&ApprovalFact> = Vec::new();
    let mut seen = BTreeSet::new();
    for a in facts.approvals.iter().rev() {
        if facts.revoked.contains(&a.seq) || !a.authenticated {
            continue;
        }
        if a.policy != env.digest {
            reasons.push(format!(
                "{}'s approval (ledger#{}) was for an earlier policy of `{}`",
                a.approver, a.seq, env.name
            ));
            continue;
        }
        if let Some(exp) = spec.expires_after
            && now.duration_since(a.time) > exp
        {
            reasons.push(format!(
                "{}'s approval (ledger#{}) expired",
                a.approver, a.seq
            ));
            continue;
        }
        if !spec.self_approval && Some(a.approver.as_str()) == requester {
            reasons.push(format!(
                "{}'s approval does not count: they requested this promotion",
                a.approver
            ));
            continue;
        }
        // One person counts once, with their latest approval.
        if seen.insert(a.approver.clone()) {
            valid.push(a);
        }
    }
    valid.reverse();
    let mut met = true;
    let mut active = 0;
    for rule in &spec.rules {
        let applies = match rule.when {
            When::Always => true,
            When::WaiversUsed => waivers_used,
            When::BenchInconclusive => bench_inconclusive,
        };
        if !applies {
            continue;
        }
        active += 1;
        let members = policy.members(&rule.from);
        let got: Vec<&ApprovalFact> = valid
            .iter()
            .copied()
            .filter(|a| {
                members.contains(&a.approver) && a.rule.as_ref().is_none_or(|r| *r == rule.name)
            })
            .collect();
        for a in &got {
            inputs.push(format!("ledger#{}", a.seq));
        }
        let names: Vec<&str> = got.iter().map(|a| a.approver.as_str()).collect();
        if got.len() >= rule.count as usize {
            reasons.push(format!(
                "`{}`: {} of {} ({})",
                rule.name,
                got.len().min(rule.count as usize),
                rule.count,
                names.join(", ")
            ));
        } else {
            met = false;
            let eligible: Vec<&str> = members
                .iter()
                .map(String::as_str)
                .filter(|m| Some(*m) != requester || spec.self_approval)
                .collect();
            reasons.push(format!(
                "`{}`: needs {} approval{} from {}, has {}{}",
                rule.name,
                rule.count,
                if rule.count == 1 { "" } else { "s" },
                eligible.join(", "),
                got.len(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", names.join(", "))
                }
            ));
        }
    }
    inputs.sort();
    inputs.dedup();
    if active == 0 {
        reasons.push("no approval rule applies".into());
    }
    (
        if met { Outcome::Pass } else { Outcome::Pending },
        reasons,
        inputs,
    )
}
