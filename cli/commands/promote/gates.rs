//! `pipe gates`, `pipe promote`, `pipe approve`, `pipe reject`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use pipe_promote::build::Build;
use pipe_promote::engine::{Engine, EngineError, PolicyRef};
use pipe_promote::gates::{Decision, Evaluation, Outcome};
use pipe_promote::ledger::{AllowedSigners, SshSigner};
use pipe_promote::policy::{Environment, Mode};
use pipe_runner::exit;

use super::{Ctx, PENDING, open, print_json, resolve};
use crate::args::Cli;
use crate::output::{self, Styles};

// Where the policy comes from (a plain comment: see `args::Command`).
#[derive(Debug, Args, Clone)]
pub struct PolicyArgs {
    /// The trusted ref the policy is read from (default: `origin/HEAD`'s branch, `main`, `master`).
    #[arg(long, env = "PIPE_POLICY_REF", value_name = "REF")]
    pub policy_ref: Option<String>,
}

// `pipe gates`.
#[derive(Debug, Args)]
pub struct GatesArgs {
    /// The build (digest, unique prefix of 12+ hex digits, or alias).
    pub build: String,
    /// The environment.
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

// `pipe promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The build (digest, unique prefix of 12+ hex digits, or alias).
    pub build: String,
    /// The environment.
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// Why (recorded).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Wait while the request is pending (approvals, soak, window, lock), re-evaluating.
    #[arg(long)]
    pub wait: bool,
    /// With `--wait`: give up after this long (`30m`, `24h`).
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub timeout: String,
    /// With `--wait`: how often to re-evaluate.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub poll: String,
    /// Break glass: promote although a window is closed (the reason is recorded).
    #[arg(long, value_name = "REASON")]
    pub override_window: Option<String>,
    /// Who is asking (default: `PIPE_ACTOR`, git's `user.name`, `$USER`).
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

// `pipe approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The build.
    pub build: String,
    /// The environment.
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// The OpenSSH private key to sign with (its public key must be in `.pipe/allowed_signers`).
    #[arg(long, env = "PIPE_SIGNING_KEY", value_name = "FILE")]
    pub key: PathBuf,
    /// Count only for this rule.
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// A comment (recorded).
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

// `pipe reject`.
#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The build.
    pub build: String,
    /// The environment.
    #[arg(long, value_name = "ENV")]
    pub to: String,
    /// Why (required, recorded).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Sign the veto with this OpenSSH private key.
    #[arg(long, env = "PIPE_SIGNING_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Who is rejecting, when not signing.
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// The policy and the allowed signers, read once per command.
pub struct Loaded {
    /// As read.
    pub source: pipe_promote::policy::source::Loaded,
    /// Parsed.
    pub policy: pipe_promote::policy::Policy,
    /// The allowed signers.
    pub allowed: Option<AllowedSigners>,
}

/// Reads the policy and `allowed_signers` at the trusted ref.
pub fn load(cli: &Cli, ctx: &Ctx, args: &PolicyArgs) -> Result<Loaded, u8> {
    let (source, policy) = super::policy(cli, &ctx.project.root, args.policy_ref.as_deref())?;
    let allowed = match source
        .allowed_signers
        .as_deref()
        .map(AllowedSigners::parse)
        .transpose()
    {
        Ok(a) => a,
        Err(e) => {
            super::super::error(
                cli,
                &format!("`.pipe/allowed_signers` at `{}`: {e}", source.origin),
                None,
            );
            return Err(exit::USAGE);
        }
    };
    Ok(Loaded {
        source,
        policy,
        allowed,
    })
}

/// An engine over a loaded policy.
pub fn engine<'a>(ctx: &'a Ctx, l: &'a Loaded) -> Engine<'a> {
    Engine {
        ledger: &ctx.ledger,
        state_dir: &ctx.state,
        root: &ctx.project.root,
        policy: PolicyRef {
            policy: &l.policy,
            origin: &l.source.origin,
            commit: l.source.commit.as_deref(),
            allowed: l.allowed.as_ref(),
        },
    }
}

/// Prints an engine error; its exit code.
pub fn engine_error(cli: &Cli, e: &EngineError) -> u8 {
    match e {
        EngineError::Ledger(l) => super::ledger_error(cli, l),
        EngineError::Build(b) => super::build_error(cli, b),
        EngineError::UnknownEnv { suggestion, .. } => {
            let hint = suggestion.as_ref().map(|s| format!("did you mean `{s}`?"));
            super::super::error(cli, &e.to_string(), hint.as_deref());
            exit::USAGE
        }
        EngineError::Refused(_) => {
            super::super::error(cli, &e.to_string(), None);
            exit::FAILURE
        }
    }
}

fn code_of(d: Decision) -> u8 {
    match d {
        Decision::Allowed => exit::SUCCESS,
        Decision::Denied => exit::FAILURE,
        Decision::Pending => PENDING,
    }
}

/// The human rendering of an evaluation.
pub fn render(cli: &Cli, title: &str, ev: &Evaluation) -> String {
    let s = Styles::new(output::use_color(
        cli.globals.color,
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
    ));
    let paint = |o: Outcome| {
        let style = match o {
            Outcome::Pass => s.success,
            Outcome::Waived => s.warning,
            Outcome::Pending => s.warning,
            Outcome::Fail | Outcome::Inconclusive => s.error,
        };
        s.paint(style, &format!("{:<12}", o.as_str()))
    };
    let decision = match ev.decision {
        Decision::Allowed => s.paint(s.success, "ALLOWED"),
        Decision::Denied => s.paint(s.error, "DENIED"),
        Decision::Pending => s.paint(s.warning, "PENDING"),
    };
    let mut out = format!("{title}: {decision}\n");
    if ev.gates.is_empty() {
        out.push_str("  (no gates)\n");
    }
    for g in &ev.gates {
        let shadow = if g.mode == Mode::Shadow {
            " (shadow: does not block)"
        } else {
            ""
        };
        out.push_str(&format!("  {} {}{shadow}\n", paint(g.result), g.gate));
        for r in &g.reasons {
            out.push_str(&format!("      {r}\n"));
        }
    }
    out
}

/// Opens the ledger, loads the trusted policy, finds the environment `to` and the build, and
/// runs `f` with them; a problem on the way is printed and its exit code returned.
fn with_target(
    cli: &Cli,
    policy: &PolicyArgs,
    to: &str,
    build: &str,
    f: impl FnOnce(&Ctx, &Loaded, &Engine<'_>, &Environment, Build) -> u8,
) -> u8 {
    let ctx = match open(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let l = match load(cli, &ctx, policy) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let eng = engine(&ctx, &l);
    let env = match eng.env(to) {
        Ok(e) => e,
        Err(e) => return engine_error(cli, &e),
    };
    match resolve(cli, &ctx, build) {
        Ok(b) => f(&ctx, &l, &eng, env, b),
        Err(code) => code,
    }
}

/// Runs `pipe gates`.
pub fn gates(cli: &Cli, args: &GatesArgs) -> u8 {
    with_target(
        cli,
        &args.policy,
        &args.to,
        &args.build,
        |_, l, eng, env, b| {
            let ev = match eng.gates(env, &b) {
                Ok(ev) => ev,
                Err(e) => return engine_error(cli, &e),
            };
            if args.json {
                print_json(&serde_json::json!({
                    "build": b.id, "alias": b.body.alias, "environment": env.name,
                    "policy": { "source": l.source.origin, "digest": env.digest },
                    "decision": ev.decision, "gates": ev.gates,
                }));
            } else {
                let title = format!("{} ({}) -> `{}`", b.body.alias, short(&b.id), env.name);
                let _ = output::stdout_write(render(cli, &title, &ev).as_bytes());
            }
            code_of(ev.decision)
        },
    )
}

fn short(id: &str) -> &str {
    id.get(..19).unwrap_or(id)
}

fn duration(cli: &Cli, flag: &str, text: &str) -> Result<Duration, u8> {
    pipe_promote::policy::parse_duration(text)
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| {
            super::super::error(
                cli,
                &format!("`{flag} {text}` is not a duration"),
                Some("write it like `30s`, `10m` or `24h`"),
            );
            exit::USAGE
        })
}

/// Runs `pipe promote`.
pub fn promote(cli: &Cli, args: &PromoteArgs) -> u8 {
    let (timeout, poll) = match (
        duration(cli, "--timeout", &args.timeout),
        duration(cli, "--poll", &args.poll),
    ) {
        (Ok(t), Ok(p)) => (t, p),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    with_target(
        cli,
        &args.policy,
        &args.to,
        &args.build,
        |ctx, _, eng, env, b| {
            let actor = super::actor(&ctx.project.root, args.actor.as_deref());
            let start = Instant::now();
            let mut override_window = args.override_window.as_deref();
            let mut last_reasons = String::new();
            loop {
                let out =
                    match eng.promote(env, &b, &actor, args.reason.as_deref(), override_window) {
                        Ok(o) => o,
                        Err(e) => return engine_error(cli, &e),
                    };
                // The override is recorded once.
                override_window = None;
                let waiting =
                    out.decision == Decision::Pending && args.wait && start.elapsed() < timeout;
                let title = format!("{} ({}) -> `{}`", b.body.alias, short(&b.id), env.name);
                let text = render(cli, &title, &out.evaluation);
                if args.json {
                    if !waiting && !out.deploy {
                        print_json(&out);
                    }
                } else if !waiting || text != last_reasons {
                    // While waiting, print the gates only when they change.
                    let _ = output::stdout_write(text.as_bytes());
                    last_reasons = text;
                }
                if !waiting && out.deploy {
                    return deploy_allowed(
                        cli,
                        ctx,
                        eng,
                        env,
                        &b,
                        &actor,
                        &out,
                        args.reason.as_deref(),
                        args.json,
                    );
                }
                if !waiting {
                    if !args.json && !cli.globals.quiet {
                        let s = super::super::err_styles(cli);
                        let msg = match out.decision {
                            Decision::Allowed => format!(
                                "{} `{}` is now the release of `{}` (ledger #{})\n",
                                s.paint(s.success, "promoted:"),
                                b.body.alias,
                                env.name,
                                out.release.unwrap_or_default()
                            ),
                            Decision::Denied => format!(
                                "{} the promotion of `{}` to `{}` was denied (ledger #{})\n",
                                s.paint(s.error, "denied:"),
                                b.body.alias,
                                env.name,
                                out.decided.unwrap_or_default()
                            ),
                            Decision::Pending => format!(
                                "{} request #{} waits; run `pipe promote --wait` or promote again later\n",
                                s.paint(s.warning, "pending:"),
                                out.request
                            ),
                        };
                        output::stderr_write(msg.as_bytes());
                    }
                    return code_of(out.decision);
                }
                std::thread::sleep(poll.min(timeout.saturating_sub(start.elapsed())));
            }
        },
    )
}

/// Deploys an ALLOWED promotion through the deploy engine (events on stderr and in the
/// ledger); the exit code: 0 verified, 1 failed or rolled back, 3 held, 130/143 interrupted.
#[allow(clippy::too_many_arguments)]
pub fn deploy_allowed(
    cli: &Cli,
    ctx: &Ctx,
    eng: &Engine<'_>,
    env: &Environment,
    b: &Build,
    actor: &pipe_promote::ledger::Actor,
    out: &pipe_promote::engine::PromoteOutcome,
    reason: Option<&str>,
    json: bool,
) -> u8 {
    use crate::commands::deploy as dcli;
    let cancel = pipe_deploy::Cancel::new();
    let which = dcli::watch_signals(&cancel);
    let dctx = pipe_promote::deploy::context(&ctx.state, &ctx.project.root, &actor.id, cancel);
    let mut print = dcli::event_printer(cli);
    let allowed = pipe_promote::deploy::Allowed {
        env,
        build: b,
        actor,
        request: out.request,
        reason,
    };
    let deployed = match pipe_promote::deploy::deploy(eng, allowed, &dctx, &mut print) {
        Ok(d) => d,
        Err(e) => return deploy_error(cli, &e, &which),
    };
    if json {
        let mut v = serde_json::to_value(out).unwrap_or_default();
        v["release"] = deployed.release.as_ref().map(|e| e.seq).into();
        v["deploy"] = serde_json::json!({
            "release": deployed.outcome.release.seq,
            "state": deployed.outcome.release.state,
            "failure": deployed.outcome.release.failure,
        });
        print_json(&v);
    }
    let code = dcli::outcome_code(cli, &deployed.outcome, &which);
    if code == exit::SUCCESS && !json && !cli.globals.quiet {
        let s = super::super::err_styles(cli);
        output::stderr_write(
            format!(
                "{} `{}` is now the release of `{}` (deploy release {}{})\n",
                s.paint(s.success, "promoted:"),
                b.body.alias,
                env.name,
                deployed.outcome.release.seq,
                deployed
                    .release
                    .as_ref()
                    .map(|e| format!(", ledger #{}", e.seq))
                    .unwrap_or_default()
            )
            .as_bytes(),
        );
    }
    code
}

/// Prints a deploy error; its exit code.
pub fn deploy_error(
    cli: &Cli,
    e: &pipe_promote::deploy::DeployError,
    which: &std::sync::atomic::AtomicU8,
) -> u8 {
    use pipe_promote::deploy::DeployError;
    match e {
        DeployError::Engine(e) => crate::commands::deploy::engine_error(cli, e, which),
        DeployError::Ledger(l) => super::ledger_error(cli, l),
        DeployError::Config { env, .. } => {
            super::super::error(
                cli,
                &e.to_string(),
                Some(&format!(
                    "fix `environments.{env}` in the policy at the trusted ref (`pipe validate .pipe/environments.yml`)"
                )),
            );
            exit::USAGE
        }
        DeployError::HardLocked { env, .. } => {
            super::super::error(
                cli,
                &format!("{e}; a hard lock blocks rollbacks too"),
                Some(&format!(
                    "`pipe unlock {env}` first, if the rollback should go ahead"
                )),
            );
            exit::FAILURE
        }
    }
}

fn signer(cli: &Cli, cwd: &std::path::Path, key: &std::path::Path) -> Result<SshSigner, u8> {
    SshSigner::from_file(&cwd.join(key)).map_err(|e| {
        super::super::error(cli, &e.to_string(), None);
        exit::USAGE
    })
}

/// Runs `pipe approve`.
pub fn approve(cli: &Cli, args: &ApproveArgs) -> u8 {
    with_target(
        cli,
        &args.policy,
        &args.to,
        &args.build,
        |ctx, _, eng, env, b| {
            let key = match signer(cli, &ctx.project.cwd, &args.key) {
                Ok(k) => k,
                Err(code) => return code,
            };
            match eng.approve(env, &b, &key, args.rule.as_deref(), args.comment.as_deref()) {
                Ok(e) => {
                    if !cli.globals.quiet {
                        output::stderr_write(
                            format!(
                                "approved `{}` for `{}` as `{}` (ledger #{})\n",
                                b.body.alias, env.name, e.actor.id, e.seq
                            )
                            .as_bytes(),
                        );
                    }
                    exit::SUCCESS
                }
                Err(e) => engine_error(cli, &e),
            }
        },
    )
}

/// Runs `pipe reject`.
pub fn reject(cli: &Cli, args: &RejectArgs) -> u8 {
    with_target(
        cli,
        &args.policy,
        &args.to,
        &args.build,
        |ctx, _, eng, env, b| {
            let key = match &args.key {
                Some(k) => match signer(cli, &ctx.project.cwd, k) {
                    Ok(k) => Some(k),
                    Err(code) => return code,
                },
                None => None,
            };
            let actor = super::actor(&ctx.project.root, args.actor.as_deref());
            match eng.reject(env, &b, actor, key.as_ref(), &args.reason) {
                Ok(e) => {
                    if !cli.globals.quiet {
                        output::stderr_write(
                    format!(
                        "rejected `{}` for `{}` (ledger #{}); a new `pipe promote` request lifts the veto\n",
                        b.body.alias, env.name, e.seq
                    )
                    .as_bytes(),
                );
                    }
                    exit::SUCCESS
                }
                Err(e) => engine_error(cli, &e),
            }
        },
    )
}
