//! Promotion commands (`pipe builds`, `show`, `ledger`, …) and what they share: the ledger of
//! the repository's state folder, the policy at the trusted ref, and build registration at the
//! end of `pipe run`.

pub mod builds;
pub mod gates;
pub mod ledger;
pub mod status;

use std::path::{Path, PathBuf};

use pipe_promote::build::{self, Build, BuildError, RunFacts};
use pipe_promote::ledger::{Actor, Ledger, LedgerError, system_clock};
use pipe_promote::policy::Policy;
use pipe_promote::policy::source::{self, Loaded};
use pipe_runner::event::Summary;
use pipe_runner::{dirs, exit};

use crate::args::Cli;
use crate::output;
use crate::render;

/// `promote` exits 3 while the request waits (approvals, soak, window, queue).
pub const PENDING: u8 = exit::INFRA;

/// What every promotion command opens.
pub struct Ctx {
    /// The project.
    pub project: super::Project,
    /// The repository's state folder.
    pub state: PathBuf,
    /// The ledger.
    pub ledger: Ledger,
}

/// The repository's state folder.
pub fn state_dir(cli: &Cli, root: &Path) -> Result<PathBuf, u8> {
    let state_root = dirs::state_root(&dirs::process_env).map_err(|e| {
        super::error(cli, &e.to_string(), None);
        exit::INFRA
    })?;
    let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    Ok(dirs::repo_state_dir(&state_root, &canonical))
}

/// The repository's ledger: in PostgreSQL when `PIPE_DATABASE_URL` is set (the server's
/// database; the ledger is named by the repository's `owner/name`), else SQLite in the state
/// folder.
pub fn open_ledger(state: &Path, root: &Path) -> Result<Ledger, LedgerError> {
    match std::env::var("PIPE_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => {
            let repo = pipe_runner::gitinfo::read(root, &dirs::process_env).repository;
            Ledger::open_with(state, Some((&url, &repo)), system_clock())
        }
        None => Ledger::open_in(state, system_clock()),
    }
}

/// Opens the project, its state folder and ledger.
pub fn open(cli: &Cli) -> Result<Ctx, u8> {
    let project = super::project(cli)?;
    let state = state_dir(cli, &project.root)?;
    let ledger = open_ledger(&state, &project.root).map_err(|e| ledger_error(cli, &e))?;
    Ok(Ctx {
        project,
        state,
        ledger,
    })
}

/// Prints a ledger error; the exit code (integrity problems are 4, the rest 3).
pub fn ledger_error(cli: &Cli, e: &LedgerError) -> u8 {
    super::error(cli, &e.to_string(), None);
    match e {
        LedgerError::Corrupt { .. } => exit::INTEGRITY,
        _ => exit::INFRA,
    }
}

/// Prints a build error; the exit code.
pub fn build_error(cli: &Cli, e: &BuildError) -> u8 {
    match e {
        BuildError::NotFound(_) => {
            super::error(cli, &e.to_string(), Some("`pipe builds` lists them"));
            exit::USAGE
        }
        BuildError::Ambiguous(..) => {
            super::error(cli, &e.to_string(), Some("give more of the digest"));
            exit::USAGE
        }
        BuildError::Ledger(l) => ledger_error(cli, l),
        _ => {
            super::error(cli, &e.to_string(), None);
            exit::INFRA
        }
    }
}

/// Finds a build.
pub fn resolve(cli: &Cli, ctx: &Ctx, text: &str) -> Result<Build, u8> {
    build::resolve(&ctx.ledger, text).map_err(|e| build_error(cli, &e))
}

/// Reads the policy at the trusted ref; problems are printed (exit 2).
pub fn policy(cli: &Cli, root: &Path, policy_ref: Option<&str>) -> Result<(Loaded, Policy), u8> {
    let mut loaded = source::load_from_ref(root, policy_ref).map_err(|e| {
        super::error(cli, &e.to_string(), e.hint());
        exit::USAGE
    })?;
    print_diagnostics(cli, &loaded);
    match loaded.policy.take() {
        Some(p) => Ok((loaded, p)),
        None => {
            super::error(
                cli,
                &format!("the policy `{}` is invalid", loaded.origin),
                None,
            );
            Err(exit::USAGE)
        }
    }
}

fn print_diagnostics(cli: &Cli, loaded: &Loaded) {
    let styles = super::err_styles(cli);
    for d in &loaded.diagnostics {
        output::stderr_write(render::human(d, &loaded.sources, &styles).as_bytes());
    }
}

/// Prints data on stdout (JSON pretty-printed with a newline).
pub fn print_json<T: serde::Serialize>(value: &T) {
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
    let _ = output::stdout_write(text.as_bytes());
}

/// The acting person: `--as`, else `PIPE_ACTOR`, else git's `user.name`/`$USER`.
pub fn actor(root: &Path, explicit: Option<&str>) -> Actor {
    let id = explicit
        .map(str::to_owned)
        .or_else(|| std::env::var("PIPE_ACTOR").ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| pipe_runner::gitinfo::read(root, &dirs::process_env).actor);
    Actor {
        id,
        auth: None,
        via: "cli".to_owned(),
    }
}

/// After `pipe run`: registers the build the run produced when the trusted ref's policy
/// declares one. Never fails the run: problems are warnings.
pub fn after_run(
    cli: &Cli,
    root: &Path,
    state: &Path,
    run_dir: &Path,
    summary: &Summary,
    git: &pipe_runner::gitinfo::GitInfo,
) {
    // Cheap check first: most repositories have no promotion policy at all.
    if !source::has_policy(root) {
        return;
    }
    let warn = |msg: &str| {
        let s = super::err_styles(cli);
        output::stderr_write(format!("{} {msg}\n", s.paint(s.warning, "warning:")).as_bytes());
    };
    let policy_ref = std::env::var("PIPE_POLICY_REF").ok();
    let loaded = match source::load_from_ref(root, policy_ref.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            warn(&format!("no build registered: {e}"));
            return;
        }
    };
    let Some(spec) = loaded.policy.as_ref().and_then(|p| p.build.clone()) else {
        if loaded.policy.is_none() {
            warn(&format!(
                "no build registered: the policy `{}` is invalid (see `pipe gates`)",
                loaded.origin
            ));
        }
        return;
    };
    let ledger = match open_ledger(state, root) {
        Ok(l) => l,
        Err(e) => {
            warn(&format!("no build registered: {e}"));
            return;
        }
    };
    let facts = RunFacts {
        run_dir,
        summary,
        sha: &git.sha,
        git_ref: &git.git_ref,
    };
    let actor = Actor {
        id: git.actor.clone(),
        auth: None,
        via: "run".to_owned(),
    };
    let b = match build::register(&ledger, state, &spec, &facts, actor.clone()) {
        Ok(Some(b)) => b,
        Ok(None) => return,
        Err(e) => {
            warn(&format!("no build registered: {e}"));
            return;
        }
    };
    let s = super::err_styles(cli);
    if !cli.globals.quiet {
        output::stderr_write(
            format!(
                "{} build `{}` ({})\n",
                s.paint(s.bold, "registered"),
                b.body.alias,
                b.id
            )
            .as_bytes(),
        );
    }
    // Environments with `auto: true` that take builds straight from runs.
    let Some(policy) = loaded.policy.as_ref() else {
        return;
    };
    let allowed = loaded
        .allowed_signers
        .as_deref()
        .and_then(|t| pipe_promote::ledger::AllowedSigners::parse(t).ok());
    let eng = pipe_promote::engine::Engine {
        ledger: &ledger,
        state_dir: state,
        root,
        policy: pipe_promote::engine::PolicyRef {
            policy,
            origin: &loaded.origin,
            commit: loaded.commit.as_deref(),
            allowed: allowed.as_ref(),
        },
    };
    for env in policy
        .environments
        .iter()
        .filter(|e| e.auto && e.from.iter().any(|f| f == "build"))
    {
        // An automatic rollback holds automatic promotion until a person promotes.
        if env.deploy.is_some()
            && let Some(why) = pipe_promote::deploy::hold(state, &env.name)
        {
            warn(&format!(
                "auto-promotion of `{}` to `{}` skipped: the environment is on hold ({why}); `pipe promote {} --to {}` lifts it",
                b.body.alias, env.name, b.body.alias, env.name
            ));
            continue;
        }
        let out = match eng.promote(env, &b, &actor, Some("auto"), None) {
            Ok(out) => out,
            Err(e) => {
                warn(&format!("auto-promotion to `{}`: {e}", env.name));
                continue;
            }
        };
        if !cli.globals.quiet {
            output::stderr_write(
                format!(
                    "{} `{}` -> `{}`: {}\n",
                    s.paint(s.bold, "auto-promotion"),
                    b.body.alias,
                    env.name,
                    match out.decision {
                        pipe_promote::gates::Decision::Allowed if out.deploy =>
                            "allowed, deploying",
                        pipe_promote::gates::Decision::Allowed => "promoted",
                        pipe_promote::gates::Decision::Denied => "denied (see `pipe gates`)",
                        pipe_promote::gates::Decision::Pending => "pending (see `pipe gates`)",
                    }
                )
                .as_bytes(),
            );
        }
        if out.deploy {
            auto_deploy(cli, &eng, env, &b, &actor, out.request, root, state);
        }
    }
}

/// Deploys an automatic promotion at the end of `pipe run`; a failure is a warning (the run's
/// own result stands), and an automatic rollback sets the hold read above.
#[allow(clippy::too_many_arguments)]
fn auto_deploy(
    cli: &Cli,
    eng: &pipe_promote::engine::Engine<'_>,
    env: &pipe_promote::policy::Environment,
    b: &Build,
    actor: &Actor,
    request: u64,
    root: &Path,
    state: &Path,
) {
    use crate::commands::deploy as dcli;
    let cancel = pipe_deploy::Cancel::new();
    // Ctrl-C stops the deploy and leaves the environment locked for `pipe rollback`.
    let _which = dcli::watch_signals(&cancel);
    let dctx = pipe_promote::deploy::context(state, root, &actor.id, cancel);
    let mut print = dcli::event_printer(cli);
    let s = super::err_styles(cli);
    let warn = |msg: &str| {
        output::stderr_write(format!("{} {msg}\n", s.paint(s.warning, "warning:")).as_bytes());
    };
    let allowed = pipe_promote::deploy::Allowed {
        env,
        build: b,
        actor,
        request,
        reason: Some("auto"),
    };
    match pipe_promote::deploy::deploy(eng, allowed, &dctx, &mut print) {
        Ok(d) => match &d.outcome.result {
            pipe_deploy::engine::Ending::Verified => {
                if !cli.globals.quiet {
                    output::stderr_write(
                        format!(
                            "{} `{}` is now the release of `{}`\n",
                            s.paint(s.success, "promoted:"),
                            b.body.alias,
                            env.name
                        )
                        .as_bytes(),
                    );
                }
            }
            pipe_deploy::engine::Ending::RolledBack { to, reason } => warn(&format!(
                "the deploy of `{}` to `{}` failed and was rolled back to release {to}: {reason}",
                b.body.alias, env.name
            )),
            pipe_deploy::engine::Ending::Failed { reason }
            | pipe_deploy::engine::Ending::Held { reason } => warn(&format!(
                "the deploy of `{}` to `{}` did not verify: {reason}; `pipe rollback {} --reason TEXT` restores the last verified release",
                b.body.alias, env.name, env.name
            )),
            pipe_deploy::engine::Ending::Interrupted => warn(&format!(
                "the deploy of `{}` to `{}` was interrupted; `pipe rollback {} --reason TEXT` recovers it",
                b.body.alias, env.name, env.name
            )),
        },
        Err(e) => warn(&format!("auto-deploy to `{}`: {e}", env.name)),
    }
}
