//! `pipe rollback`, `pipe evidence` and `pipe metrics`: the deploy side of promotion
//! (crate `pipe-deploy`), plus what `pipe promote` shares with them: the state folder,
//! Ctrl-C handling and the rendering of deploy events.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use clap::Args;
use pipe_deploy::Cancel;
use pipe_deploy::engine::{self, Ending, EngineError, Event, Outcome, RollbackTarget};
use pipe_deploy::release::{BuildRef, EnvStore, Release, environments};
use pipe_runner::{dirs, exit};

use crate::args::Cli;
use crate::output;

// `pipe rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The environment.
    pub env: String,
    /// Return to the latest verified release of this build (digest, prefix or alias).
    #[arg(long, value_name = "BUILD", conflicts_with = "steps")]
    pub to: Option<String>,
    /// Go back N distinct verified builds (default 1).
    #[arg(long, value_name = "N")]
    pub steps: Option<u32>,
    /// Why (recorded with the release).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Print the resulting release record as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

// `pipe evidence`.
#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// The build (digest, prefix or alias).
    #[arg(required_unless_present = "verify")]
    pub build: Option<String>,
    /// Write signed DSSE envelopes, the public key and an index to this folder.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Verify an exported folder offline instead.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["build", "export"])]
    pub verify: Option<PathBuf>,
    /// The trusted public key (SPKI PEM) for `--verify` (default: the exported one, which
    /// proves integrity but not who signed).
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pipe metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {}

/// The repository's state folder.
pub fn state_dir(cli: &Cli) -> Result<(super::Project, PathBuf), u8> {
    let p = super::project(cli)?;
    let root = dirs::state_root(&dirs::process_env).map_err(|e| {
        super::error(cli, &e.to_string(), None);
        exit::INFRA
    })?;
    let canonical = p.root.canonicalize().unwrap_or_else(|_| p.root.clone());
    let dir = dirs::repo_state_dir(&root, &canonical);
    Ok((p, dir))
}

/// The evidence signing key (in the state root, shared by the repository's commands).
pub fn signing_key_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("keys").join("evidence.ed25519")
}

/// Ctrl-C and SIGTERM set `cancel`; the returned cell says which (2 or 15) arrived.
pub fn watch_signals(cancel: &Cancel) -> Arc<AtomicU8> {
    let which = Arc::new(AtomicU8::new(0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        return which;
    };
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        let _guard = runtime.enter();
        signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)))
    };
    let Ok((mut int, mut term)) = handlers else {
        return which;
    };
    let (w, c) = (which.clone(), cancel.clone());
    std::thread::spawn(move || {
        runtime.block_on(async move {
            let n = tokio::select! {
                _ = int.recv() => 2u8,
                _ = term.recv() => 15u8,
            };
            w.store(n, Ordering::SeqCst);
            output::stderr_write(
                b"\ninterrupted: stopping the deploy; the environment stays locked for recovery\n",
            );
            c.cancel();
        });
    });
    which
}

/// The exit code of an interrupted command.
pub fn interrupted_code(which: &AtomicU8) -> u8 {
    match which.load(Ordering::SeqCst) {
        15 => exit::SIGTERM,
        _ => exit::SIGINT,
    }
}

/// One human line per event (on stderr), `None` for events shown only with `-v`.
pub fn render_event(e: &Event, verbose: bool) -> Option<String> {
    Some(match e {
        Event::LockWaiting { env, ahead, holder } => {
            let who = holder
                .as_ref()
                .map(|h| {
                    format!(
                        ": a {} of build {} (pid {}) holds it",
                        h.op,
                        short(&h.build),
                        h.pid
                    )
                })
                .unwrap_or_default();
            format!("waiting for `{env}`{who}; {ahead} ahead in the queue")
        }
        Event::LockAcquired { .. } => return None,
        Event::Started { release } => {
            let what = match &release.rollback {
                Some(t) => format!("rollback ({t})"),
                None => "deploy".to_owned(),
            };
            let slot = release
                .plan
                .slot
                .as_ref()
                .map(|s| format!(" to slot `{s}`"))
                .unwrap_or_default();
            format!(
                "{what} of {} to `{}` started{slot} (release {})",
                release.build.short(),
                release.env,
                release.seq
            )
        }
        Event::Deployed { duration_ms, .. } => {
            format!(
                "  deploy command done in {}",
                crate::reporter::human_ms(*duration_ms)
            )
        }
        Event::DeployFailed { reason, output, .. } => {
            let mut s = format!("  {reason}");
            for l in output
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                s.push_str(&format!("\n  | {l}"));
            }
            s
        }
        Event::PreSwitch {
            slot,
            verdict,
            probes,
            ..
        } => {
            let mut s = format!("  pre-switch checks on slot `{slot}`: {verdict}");
            for p in probes {
                s.push_str(&format!("\n    {}: {} ({})", p.check, p.health, p.detail));
            }
            s
        }
        Event::Switched { from, to, .. } => match from {
            Some(f) => format!("  proxy switched from slot `{f}` to `{to}`"),
            None => format!("  proxy switched to slot `{to}`"),
        },
        Event::Sample { sample, .. } => {
            if !verbose {
                return None;
            }
            let probes: Vec<String> = sample
                .probes
                .iter()
                .map(|p| format!("{}: {} ({})", p.check, p.health, p.detail))
                .collect();
            format!(
                "  sample {}: {}; {}",
                sample.n,
                sample.health,
                probes.join("; ")
            )
        }
        Event::Verified { summary, .. } => {
            format!("  verify {}: {}", summary.verdict, summary.reason)
        }
        Event::RollbackStarted {
            to,
            build,
            trigger,
            reason,
            ..
        } => format!(
            "rolling back ({trigger}) to release {to} (build {}): {reason}",
            short(build)
        ),
        Event::RollbackFinished { ok, how, .. } => {
            format!("  rollback {}: {how}", if *ok { "done" } else { "failed" })
        }
        Event::Finished { .. } => return None,
    })
}

fn short(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

/// Prints events on stderr (unless `-q`).
pub fn event_printer(cli: &Cli) -> impl FnMut(&Event) + '_ {
    move |e| {
        if cli.globals.quiet {
            return;
        }
        if let Some(line) = render_event(e, cli.globals.verbose > 0) {
            output::stderr_write(format!("{line}\n").as_bytes());
        }
    }
}

/// Maps an engine error to a message and exit code.
pub fn engine_error(cli: &Cli, e: &EngineError, which: &AtomicU8) -> u8 {
    match e {
        EngineError::NeedsRecovery(_) => {
            let text = e.to_string();
            let (msg, hint) = text.split_once("\nhint: ").unwrap_or((&text, ""));
            super::error(cli, msg, (!hint.is_empty()).then_some(hint));
            exit::FAILURE
        }
        EngineError::NoTarget(m) => {
            super::error(
                cli,
                m,
                Some(
                    "a rollback returns only to a release deployed and verified in that environment",
                ),
            );
            exit::FAILURE
        }
        EngineError::Invalid(_) => {
            super::error(cli, &e.to_string(), None);
            exit::USAGE
        }
        EngineError::Lock(pipe_deploy::lock::LockError::Cancelled) => interrupted_code(which),
        _ => {
            super::error(cli, &e.to_string(), None);
            exit::INFRA
        }
    }
}

/// The exit code and a last line for an outcome.
pub fn outcome_code(cli: &Cli, out: &Outcome, which: &AtomicU8) -> u8 {
    let r = &out.release;
    match &out.result {
        Ending::Verified => exit::SUCCESS,
        Ending::RolledBack { to, reason } => {
            super::error(
                cli,
                &format!(
                    "release {} of `{}` failed and was rolled back to release {to}: {reason}",
                    r.seq, r.env
                ),
                Some(
                    "automatic promotion to this environment is on hold until someone promotes again",
                ),
            );
            exit::FAILURE
        }
        Ending::Failed { reason } => {
            super::error(
                cli,
                &format!("release {} of `{}` failed: {reason}", r.seq, r.env),
                Some(&format!(
                    "the deploy log is `deploy/{}/logs/{:06}.log` in the state folder",
                    r.env, r.seq
                )),
            );
            exit::FAILURE
        }
        Ending::Held { reason } => {
            super::warn(
                cli,
                &format!(
                    "release {} of `{}` is held unverified: {reason}; decide with `pipe rollback {} --reason TEXT` or promote again",
                    r.seq, r.env, r.env
                ),
            );
            exit::INFRA
        }
        Ending::Interrupted => {
            super::error(
                cli,
                &format!(
                    "interrupted: `{}` stays locked with release {} in flight",
                    r.env, r.seq
                ),
                Some(&format!(
                    "run `pipe rollback {} --reason TEXT` to restore the last verified release",
                    r.env
                )),
            );
            interrupted_code(which)
        }
    }
}

/// `pipe rollback ENV [--to BUILD|--steps N] --reason TEXT`.
pub fn rollback(cli: &Cli, args: &RollbackArgs) -> u8 {
    if args.reason.trim().is_empty() {
        super::error(cli, "`--reason` must not be empty", None);
        return exit::USAGE;
    }
    if args.steps == Some(0) {
        super::error(cli, "`--steps` must be at least 1", None);
        return exit::USAGE;
    }
    let (p, state) = match state_dir(cli) {
        Ok(x) => x,
        Err(c) => return c,
    };
    if !environments(&state).contains(&args.env) {
        super::error(
            cli,
            &format!("environment `{}` has no releases to roll back", args.env),
            Some("`pipe rollback` returns to a release deployed and verified in that environment"),
        );
        return exit::USAGE;
    }
    let target = match (&args.to, args.steps) {
        (Some(b), _) => RollbackTarget::Build(b.clone()),
        (None, Some(n)) => RollbackTarget::Steps(n),
        (None, None) => RollbackTarget::Previous,
    };
    // One ledger: the rollback's events and the restored release are recorded with the
    // promotions, and `pipe lock ENV --hard` is read from it.
    let ledger =
        match pipe_promote::ledger::Ledger::open_in(&state, pipe_promote::ledger::system_clock()) {
            Ok(l) => l,
            Err(e) => return super::promote::ledger_error(cli, &e),
        };
    let who = super::promote::actor(&p.root, None);
    let cancel = Cancel::new();
    let which = watch_signals(&cancel);
    let ctx = engine::Context {
        state_dir: state,
        project_root: p.root.clone(),
        actor: who.id.clone(),
        cancel,
    };
    let mut print = event_printer(cli);
    let out = match pipe_promote::deploy::rollback(
        &ledger,
        &ctx,
        &args.env,
        &target,
        &args.reason,
        &who,
        &mut print,
    ) {
        Ok(d) => d.outcome,
        Err(e) => return super::promote::gates::deploy_error(cli, &e, &which),
    };
    if let Some(r) = &out.recovered
        && !cli.globals.quiet
    {
        output::stderr_write(
            format!(
                "recovered `{}` from the interrupted {} of build {} (release {})\n",
                r.env,
                r.op,
                short(&r.build),
                r.release
            )
            .as_bytes(),
        );
    }
    if args.json {
        let _ = output::stdout_write(
            format!(
                "{}\n",
                serde_json::to_string_pretty(&out.release).unwrap_or_default()
            )
            .as_bytes(),
        );
    } else if out.result == Ending::Verified {
        let _ = output::stdout_write(
            format!(
                "`{}` is back on {} (release {}, restoring release {})\n",
                out.release.env,
                out.release.build.short(),
                out.release.seq,
                out.release.restores.unwrap_or_default()
            )
            .as_bytes(),
        );
    }
    outcome_code(cli, &out, &which)
}

/// Every release of a build, across environments.
fn releases_of(state: &std::path::Path, query: &str) -> Result<Vec<Release>, String> {
    let mut out = Vec::new();
    for env in environments(state) {
        let store = EnvStore::open(state, &env);
        for r in store.list().map_err(|e| e.to_string())? {
            if r.build.matches(query) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// The statements pipe can make about a build from its release records.
pub fn statements(
    build: &BuildRef,
    releases: &[Release],
) -> Vec<(String, pipe_deploy::evidence::Statement)> {
    use pipe_deploy::evidence;
    let mut items = vec![(
        "provenance".to_owned(),
        evidence::provenance(build, &evidence::BuildInfo::default()),
    )];
    for r in releases {
        items.push((
            format!("deployment-{}-{:06}", r.env, r.seq),
            evidence::deployment(r),
        ));
    }
    items
}

/// `pipe evidence BUILD [--export DIR]` and `pipe evidence --verify DIR [--key FILE]`.
pub fn evidence(cli: &Cli, args: &EvidenceArgs) -> u8 {
    if let Some(dir) = &args.verify {
        return verify(cli, dir, args.key.as_deref(), args.json);
    }
    let Some(query) = &args.build else {
        return exit::USAGE;
    };
    let (_, state) = match state_dir(cli) {
        Ok(x) => x,
        Err(c) => return c,
    };
    // A build the ledger knows: provenance from its run, its gate decisions, its deployments.
    let ledger_path = state.join("ledger.db");
    if ledger_path.exists() {
        let ledger = match pipe_promote::ledger::Ledger::open_in(
            &state,
            pipe_promote::ledger::system_clock(),
        ) {
            Ok(l) => l,
            Err(e) => return super::promote::ledger_error(cli, &e),
        };
        if let Some(b) = pipe_promote::deploy::registered(&ledger, query) {
            let items = match pipe_promote::deploy::statements(&ledger, &state, &b) {
                Ok(i) => i,
                Err(e) => {
                    super::error(cli, &e.to_string(), None);
                    return exit::INFRA;
                }
            };
            return emit_evidence(
                cli,
                args,
                &state,
                &pipe_promote::deploy::build_ref(&b),
                &items,
            );
        }
    }
    let releases = match releases_of(&state, query) {
        Ok(r) => r,
        Err(e) => {
            super::error(cli, &e, None);
            return exit::INFRA;
        }
    };
    let mut builds: Vec<&BuildRef> = Vec::new();
    for r in &releases {
        if !builds.iter().any(|b| b.id == r.build.id) {
            builds.push(&r.build);
        }
    }
    let build = match builds.as_slice() {
        [b] => (*b).clone(),
        [] => {
            super::error(
                cli,
                &format!("no build `{query}` has been deployed here"),
                Some("give a digest, a unique prefix of at least 7 hex digits, or an alias"),
            );
            return exit::USAGE;
        }
        many => {
            let ids: Vec<String> = many.iter().map(|b| b.short()).collect();
            super::error(
                cli,
                &format!("`{query}` names {} builds: {}", many.len(), ids.join(", ")),
                Some("give more digits"),
            );
            return exit::USAGE;
        }
    };
    let items = statements(&build, &releases);
    emit_evidence(cli, args, &state, &build, &items)
}

/// Prints or exports (signed) the statements about a build.
fn emit_evidence(
    cli: &Cli,
    args: &EvidenceArgs,
    state: &std::path::Path,
    build: &BuildRef,
    items: &[(String, pipe_deploy::evidence::Statement)],
) -> u8 {
    if let Some(dir) = &args.export {
        let signer = match pipe_deploy::evidence::Signer::load_or_create(&signing_key_path(state)) {
            Ok(s) => s,
            Err(e) => {
                super::error(cli, &e.to_string(), None);
                return exit::INFRA;
            }
        };
        match pipe_deploy::evidence::export(dir, items, &signer) {
            Ok(files) => {
                if !cli.globals.quiet {
                    output::stderr_write(
                        format!(
                            "wrote {} statements for {} to `{}` (key {})\n",
                            items.len(),
                            build.short(),
                            dir.display(),
                            signer.keyid()
                        )
                        .as_bytes(),
                    );
                }
                if args.json {
                    let files: Vec<String> =
                        files.iter().map(|f| f.display().to_string()).collect();
                    let _ = output::stdout_write(
                        format!(
                            "{}\n",
                            serde_json::to_string_pretty(&files).unwrap_or_default()
                        )
                        .as_bytes(),
                    );
                }
                exit::SUCCESS
            }
            Err(e) => {
                super::error(cli, &e.to_string(), None);
                exit::INFRA
            }
        }
    } else {
        let text = if args.json {
            let sts: Vec<&pipe_deploy::evidence::Statement> =
                items.iter().map(|(_, s)| s).collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(&sts).unwrap_or_default()
            )
        } else {
            let mut s = format!("{}\n", build.short());
            for (name, st) in items {
                s.push_str(&format!("  {name:<32} {}\n", st.predicate_type));
            }
            s
        };
        let _ = output::stdout_write(text.as_bytes());
        exit::SUCCESS
    }
}

fn verify(cli: &Cli, dir: &std::path::Path, key: Option<&std::path::Path>, json: bool) -> u8 {
    let checks = match pipe_deploy::evidence::verify_dir(dir, key) {
        Ok(c) => c,
        Err(e) => {
            super::error(cli, &e.to_string(), None);
            return exit::USAGE;
        }
    };
    if checks.is_empty() {
        super::error(
            cli,
            &format!("`{}` holds no `*.intoto.json` envelopes", dir.display()),
            None,
        );
        return exit::USAGE;
    }
    let bad = checks.iter().filter(|c| c.error.is_some()).count();
    let text = if json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        )
    } else {
        let mut s = String::new();
        for c in &checks {
            match &c.error {
                None => s.push_str(&format!(
                    "ok    {}  {}\n",
                    c.file,
                    c.predicate_type.as_deref().unwrap_or("")
                )),
                Some(e) => s.push_str(&format!("FAIL  {}  {e}\n", c.file)),
            }
        }
        s
    };
    let _ = output::stdout_write(text.as_bytes());
    if bad > 0 {
        super::error(
            cli,
            &format!("{bad} of {} envelopes failed verification", checks.len()),
            None,
        );
        exit::INTEGRITY
    } else {
        exit::SUCCESS
    }
}

/// `pipe metrics`: Prometheus text on stdout.
pub fn metrics(cli: &Cli, _args: &MetricsArgs) -> u8 {
    let (_, state) = match state_dir(cli) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match pipe_deploy::metrics::render(&state) {
        Ok(text) => {
            let _ = output::stdout_write(text.as_bytes());
            exit::SUCCESS
        }
        Err(e) => {
            super::error(cli, &e.to_string(), None);
            exit::INFRA
        }
    }
}
