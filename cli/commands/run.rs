//! `pipe run`: runs workflows on this machine with GitHub's semantics (decisions.md's local
//! run model), records them in the state directory and exits with the run's result.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use pipe_runner::event::{Conclusion, RunEvent, SCHEMA_VERSION, Summary};
use pipe_runner::executor::Cancel;
use pipe_runner::executor::docker::{self, DockerExecutor, DockerOptions, PullPolicy};
use pipe_runner::executor::host::{self, HostExecutor};
use pipe_runner::expr::{Object, Value};
use pipe_runner::plan::Plan;
use pipe_runner::run::concurrency;
use pipe_runner::run::job::{Placement, Shared};
use pipe_runner::run::mask::Masker;
use pipe_runner::run::report::{Fanout, NoticeLevel, Reporter};
use pipe_runner::run::scheduler::{RunOptions, RunResult, run_plan};
use pipe_runner::run::setup;
use pipe_runner::run::stepcache::StepCache;
use pipe_runner::store::{self, Recording, Store};
use pipe_runner::{dirs, exit};

use super::{Loaded, Project, error, io_reason};
use crate::args::{Cli, RunArgs};
use crate::output::{self, Styles};
use crate::reporter::{ProgressMode, Terminal, human_ms};

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &RunArgs) -> u8 {
    let p = match super::project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let loaded = match super::load_workflows(cli, &p, &args.select) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let vars = match read_pairs(cli, &args.select.var, &args.select.var_file, "--var") {
        Ok(v) => v,
        Err(code) => return code,
    };
    let secrets = match read_secrets(cli, args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let placement = match placement(cli, args, &p) {
        Ok(x) => x,
        Err(code) => return code,
    };
    // Plan every selected workflow first: `-j` and `--matrix` are judged across all of them
    // (`-j deploy` names a job of one workflow), and a workflow with no selected job is left out.
    let mut planned = Vec::with_capacity(loaded.len());
    for l in &loaded {
        let (ctx, inputs, payload) =
            match super::plan_contexts(cli, &p, l, &args.select, vars.clone()) {
                Ok(x) => x,
                Err(code) => return code,
            };
        let plan = match super::plan_one(cli, l, &args.select, &ctx) {
            Ok(p) => p,
            Err(code) => return code,
        };
        planned.push((l, plan, inputs, payload));
    }
    let plans: Vec<Plan> = planned.iter().map(|(_, p, _, _)| p.clone()).collect();
    if let Err(code) = super::check_selection(cli, &args.select, &plans) {
        return code;
    }
    if !args.select.job.is_empty() {
        planned.retain(|(_, p, _, _)| p.jobs.iter().any(|j| j.selected));
    }
    // Branch, tag and path filters: reported, enforced only with --respect-filters.
    let mut kept = Vec::with_capacity(planned.len());
    for item in planned {
        match filter_reason(&p, item.0, &args.select.event, &item.3) {
            Some(reason) if args.respect_filters => {
                notice(
                    cli,
                    &format!(
                        "skipping `{}`: it would not trigger on GitHub: {reason}",
                        item.0.path
                    ),
                );
            }
            Some(reason) => {
                notice(
                    cli,
                    &format!(
                        "`{}` would not trigger on GitHub: {reason} (running it anyway; `--respect-filters` skips it)",
                        item.0.path
                    ),
                );
                kept.push(item);
            }
            None => kept.push(item),
        }
    }
    let planned = kept;
    let runtime = if single_threaded(args, &p, &loaded, &planned) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            error(cli, &format!("cannot start the async runtime: {e}"), None);
            return exit::INFRA;
        }
    };
    let signal = Arc::new(AtomicU8::new(0));
    let cancel = Cancel::default();
    {
        // Register the handlers now, before anything runs: registered inside the task they
        // could miss a signal that arrives before the task is first polled.
        use tokio::signal::unix::{SignalKind, signal as sig};
        let _guard = runtime.enter();
        let handlers =
            sig(SignalKind::interrupt()).and_then(|i| Ok((i, sig(SignalKind::terminate())?)));
        let signal = signal.clone();
        let cancel = cancel.clone();
        if let Ok((int, term)) = handlers {
            runtime.spawn(async move { watch_signals(int, term, signal, cancel).await });
        }
    }
    let mut worst = exit::SUCCESS;
    for (l, plan, inputs, payload) in planned {
        let code = runtime.block_on(run_one(
            cli,
            args,
            &p,
            RunInput {
                l,
                plan,
                inputs,
                payload,
            },
            &vars,
            &secrets,
            &placement,
            cancel.clone(),
        ));
        worst = worst.max(code);
        if cancel.soft.is_cancelled() {
            break;
        }
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match signal.load(Ordering::SeqCst) {
        2 => exit::SIGINT,
        15 => exit::SIGTERM,
        _ => worst,
    }
}

/// Whether the run gets a current-thread runtime: when at most one job can run at a time (one
/// workflow of one job without a matrix, workflows whose jobs form a chain, or `-p 1`) and no
/// job or step has `uses:`.
///
/// On the multi-thread runtime a job's hand-offs (the scheduler, the job's task, the I/O
/// driver) may cross threads, and each crossing wakes a thread and waits for a core; on one
/// thread they do not (a 100-job chain: 91 → 89 ms, one-job runs: fewer wake-ups). Built-in actions (`actions/cache`, artifacts) and
/// remote caches block inside their step with `block_in_place`, which only the multi-thread
/// runtime allows, and reusable workflows may run several jobs: those keep it.
fn single_threaded(
    args: &RunArgs,
    p: &Project,
    loaded: &[Loaded],
    planned: &[(&Loaded, Plan, Value, Value)],
) -> bool {
    let uses = loaded.iter().any(|l| {
        l.workflow
            .jobs
            .iter()
            .any(|j| j.uses.is_some() || j.steps.iter().any(|s| s.uses.is_some()))
    });
    if uses {
        return false;
    }
    let one_at_a_time = args.parallel.or(p.config.run.parallel) == Some(1);
    let one_job = loaded.len() == 1
        && loaded[0].workflow.jobs.len() == 1
        && loaded[0].workflow.jobs[0].strategy.is_none();
    // Workflows run one after another, so a run whose every workflow is a chain (each job
    // needs the one before it, no matrix) never has two jobs running either.
    let chains = !planned.is_empty() && planned.iter().all(|(_, plan, _, _)| sequential(plan));
    one_at_a_time || one_job || chains
}

/// Whether the plan's jobs can only run one at a time: no matrix, and each job in dependency
/// order needs the one before it.
fn sequential(plan: &Plan) -> bool {
    !plan.jobs.iter().any(|j| j.has_matrix)
        && plan
            .order
            .windows(2)
            .all(|w| plan.jobs[w[1]].needs.contains(&w[0]))
}

/// The step cache, when the workflow uses pipe's `cache:` and `--no-cache` is not given. A
/// cache that cannot be opened is a warning: the steps then run uncached.
fn open_step_cache(
    cli: &Cli,
    styles: &Styles,
    args: &RunArgs,
    p: &Project,
    l: &Loaded,
    store: Option<&Store>,
    run_temp: &std::path::Path,
) -> Option<Arc<StepCache>> {
    let wf = &l.workflow;
    let uses = wf
        .jobs
        .iter()
        .any(|j| j.cache.is_some() || j.steps.iter().any(|s| s.cache.is_some()));
    if !uses || args.no_cache {
        return None;
    }
    let opened = dirs::cache_root(&dirs::process_env)
        .map_err(|e| e.to_string())
        .and_then(|dir| {
            // `PIPE_CACHE_MAX_SIZE`/`_AGE` win over `[cache] max-size`/`max-age`.
            let cfg = &p.config.cache;
            let env = |k: &str| {
                dirs::process_env(k).or_else(|| match k {
                    "PIPE_CACHE_MAX_SIZE" => cfg.max_size.clone(),
                    "PIPE_CACHE_MAX_AGE" => cfg.max_age.clone(),
                    _ => None,
                })
            };
            let opts = pipe_cache::StoreOptions::from_env(&env).map_err(|e| {
                let mut e = e;
                for (var, key) in [
                    ("PIPE_CACHE_MAX_SIZE", "max-size"),
                    ("PIPE_CACHE_MAX_AGE", "max-age"),
                ] {
                    if dirs::process_env(var).is_none() {
                        e = e.replace(
                            &format!("`{var}="),
                            &format!("`.pipe/config.toml` `[cache] {key} = "),
                        );
                    }
                }
                e
            })?;
            pipe_cache::LocalStore::open(&dir, opts).map_err(|e| e.to_string())
        });
    let local = match opened {
        Ok(l) => l,
        Err(e) => {
            warn(cli, styles, &format!("steps run uncached: {e}"));
            return None;
        }
    };
    let mut cache = pipe_cache::Cache::new(local);
    if let Some(url) = args.cache_remote.clone().or(p.config.cache.remote.clone()) {
        let mut rc = pipe_cache::remote::RemoteConfig::new(&url);
        rc.token = std::env::var("PIPE_CACHE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        rc.s3_endpoint = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|t| !t.is_empty());
        let mode = if args.cache_read_only || p.config.cache.read_only {
            pipe_cache::RemoteMode::ReadOnly
        } else {
            pipe_cache::RemoteMode::ReadWrite
        };
        match pipe_cache::remote::open(&rc) {
            Ok(r) => cache = cache.with_remote(r, mode),
            Err(e) => warn(cli, styles, &format!("the remote cache is not used: {e}")),
        }
    }
    let why_dir = store
        .map(|s| s.dir().join("stepcache"))
        .unwrap_or_else(|| run_temp.join("stepcache"));
    Some(Arc::new(StepCache::new(cache, why_dir)))
}

/// `--host`, `-P` (over `[runners.images]`), `--container-platform` and `--pull`.
fn placement(cli: &Cli, args: &RunArgs, p: &Project) -> Result<(Placement, PullPolicy), u8> {
    let pull = args.pull.parse::<PullPolicy>().map_err(|e| {
        error(cli, &format!("`--pull`: {e}"), None);
        exit::USAGE
    })?;
    let mut images: Vec<(String, String)> = p
        .config
        .runners
        .images
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for m in &args.platform_map {
        match m.split_once('=') {
            Some((l, i)) if !l.trim().is_empty() && !i.trim().is_empty() => {
                images.push((l.trim().to_owned(), i.trim().to_owned()));
            }
            _ => {
                error(
                    cli,
                    &format!("`-P {m}` must be `LABEL=IMAGE`"),
                    Some("for example `-P ubuntu-latest=debian:12`"),
                );
                return Err(exit::USAGE);
            }
        }
    }
    if let Some(pl) = &args.container_platform
        && !pl.contains('/')
    {
        error(
            cli,
            &format!("`--container-platform {pl}` must be `OS/ARCH`, like `linux/arm64`"),
            None,
        );
        return Err(exit::USAGE);
    }
    Ok((
        Placement {
            force_host: args.host,
            images,
            platform: args.container_platform.clone(),
        },
        pull,
    ))
}

fn notice(cli: &Cli, message: &str) {
    if !cli.globals.quiet {
        let s = super::err_styles(cli);
        output::stderr_write(format!("{} {message}\n", s.paint(s.hint, "note:")).as_bytes());
    }
}

/// Why the event would not trigger this workflow on GitHub (its filters), if it would not.
fn filter_reason(p: &Project, l: &Loaded, event: &str, payload: &Value) -> Option<String> {
    use pipe_runner::run::filters;
    let trigger = l.workflow.trigger(event)?;
    let git_ref = if event.starts_with("pull_request") {
        let base = match payload {
            Value::Object(o) => match o.get("pull_request") {
                Some(Value::Object(pr)) => match pr.get("base") {
                    Some(Value::Object(b)) => b.get("ref").and_then(Value::to_gh_string),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        format!("refs/heads/{}", base.unwrap_or_else(|| "main".to_owned()))
    } else {
        p.git().git_ref.clone()
    };
    let changed = if filters::has_path_filters(trigger) {
        changed_files(&p.root)
    } else {
        None
    };
    filters::not_triggered_because(trigger, &git_ref, changed.as_deref())
}

/// The files a push of HEAD (plus uncommitted changes) would change: the difference between
/// HEAD's parent and the working tree, or every tracked file in a repository's first commit.
fn changed_files(root: &std::path::Path) -> Option<Vec<String>> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
    };
    git(&["diff", "--name-only", "HEAD~1"]).or_else(|| git(&["ls-files"]))
}

async fn watch_signals(
    mut int: tokio::signal::unix::Signal,
    mut term: tokio::signal::unix::Signal,
    signal: Arc<AtomicU8>,
    cancel: Cancel,
) {
    let mut count = 0;
    loop {
        let which = tokio::select! {
            _ = int.recv() => 2u8,
            _ = term.recv() => 15u8,
        };
        count += 1;
        let _ = signal.compare_exchange(0, which, Ordering::SeqCst, Ordering::SeqCst);
        if count == 1 {
            output::stderr_write(
                b"\ncancelling: stopping running steps (press Ctrl-C again to kill them at once)\n",
            );
            cancel.soft.cancel();
        } else {
            cancel.hard.cancel();
        }
    }
}

/// `NAME=VALUE` items after dotenv files, as an object (later values win): `--var`/`--var-file`
/// and `--secret`/`--secret-file`.
pub(super) fn read_pairs(
    cli: &Cli,
    items: &[String],
    files: &[PathBuf],
    flag: &str,
) -> Result<Value, u8> {
    let mut o = Object::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            error(
                cli,
                &format!("cannot read `{}`: {}", f.display(), io_reason(&e)),
                None,
            );
            exit::USAGE
        })?;
        let pairs = setup::parse_dotenv(&text).map_err(|e| {
            error(cli, &format!("`{}`: {e}", f.display()), None);
            exit::USAGE
        })?;
        for (k, v) in pairs {
            o.insert(k, Value::str(v));
        }
    }
    for i in items {
        let Some((k, v)) = i.split_once('=') else {
            error(cli, &format!("`{flag} {i}` must be `NAME=VALUE`"), None);
            return Err(exit::USAGE);
        };
        o.insert(k, Value::str(v));
    }
    Ok(Value::from_object(o))
}

fn read_secrets(cli: &Cli, args: &RunArgs) -> Result<Vec<(String, String)>, u8> {
    let mut out = Vec::new();
    for f in &args.secret_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            error(
                cli,
                &format!("cannot read `{}`: {}", f.display(), io_reason(&e)),
                None,
            );
            exit::USAGE
        })?;
        out.extend(setup::parse_dotenv(&text).map_err(|e| {
            error(cli, &format!("`{}`: {e}", f.display()), None);
            exit::USAGE
        })?);
    }
    for s in &args.secret {
        match s.split_once('=') {
            Some((k, v)) => out.push((k.to_owned(), v.to_owned())),
            None => match std::env::var(s) {
                Ok(v) => out.push((s.clone(), v)),
                Err(_) => {
                    error(
                        cli,
                        &format!("secret `{s}` is not set in the environment"),
                        Some("pass `-s NAME=VALUE`, or export the variable first"),
                    );
                    return Err(exit::USAGE);
                }
            },
        }
    }
    Ok(out)
}

/// Whether `name` is an executable on `PATH` (through the executor's lookup, which remembers
/// it for the steps that spawn it).
fn has_program(name: &str) -> bool {
    std::env::var("PATH")
        .is_ok_and(|path| pipe_runner::executor::host::find_program(name, &path).is_some())
}

#[allow(clippy::too_many_arguments)]
/// One planned workflow to run.
struct RunInput<'a> {
    l: &'a Loaded,
    plan: Plan,
    inputs: Value,
    payload: Value,
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    cli: &Cli,
    args: &RunArgs,
    p: &Project,
    input: RunInput<'_>,
    vars: &Value,
    secrets: &[(String, String)],
    placement: &(Placement, PullPolicy),
    cancel: Cancel,
) -> u8 {
    let (placement, pull) = placement;
    let RunInput {
        l,
        plan,
        inputs,
        payload,
    } = input;
    let styles = super::err_styles(cli);

    // The store: a failure to record is a warning, never a failed run.
    let store = dirs::state_root(&dirs::process_env)
        .map_err(|e| e.to_string())
        .and_then(|root| {
            let canonical = p.root.canonicalize().unwrap_or_else(|_| p.root.clone());
            Store::open(&dirs::repo_state_dir(&root, &canonical)).map_err(|e| e.to_string())
        });
    let (store, record) = match store {
        Ok(s) => match s.begin_run(&l.path, &args.select.event) {
            Ok(r) => (Some(s), Some(r)),
            Err(e) => {
                warn(cli, &styles, &format!("this run is not recorded: {e}"));
                (Some(s), None)
            }
        },
        Err(e) => {
            warn(cli, &styles, &format!("this run is not recorded: {e}"));
            (None, None)
        }
    };
    let run_number = record.as_ref().map(|r| r.number).unwrap_or(0);
    let run_dir = record.as_ref().map(|r| r.dir.clone());
    // Old runs are deleted on a thread of their own while this one runs: removing a run folder
    // costs milliseconds of disk time, which should not add to the run. The thread is started
    // once the run first waits (`Prune::start_when_idle`).
    let prune = Arc::new(Prune(std::sync::Mutex::new(
        store.as_ref().map(|s| s.dir().to_path_buf()),
    )));

    // Scratch space for the run, taken from the spare folders an earlier run left when there are
    // any (see `host::Spares`).
    let spares = Arc::new(host::Spares::new(&std::env::temp_dir()));
    let run_temp = std::env::temp_dir().join(format!("pipe-{}-{run_number}", std::process::id()));
    if let Err(e) = host::make_scratch(&run_temp, &spares) {
        error(
            cli,
            &format!("cannot create `{}`: {}", run_temp.display(), io_reason(&e)),
            None,
        );
        return exit::INFRA;
    }
    // Held until the folder is handed on at the end: a later run's sweep leaves it alone.
    let scratch_lock = host::hold_scratch(&run_temp);
    let event_path = run_temp.join(host::SCRATCH_EVENT);
    let _ = host::write_in_place(&event_path, payload.to_json_pretty().as_bytes());

    let git = p.git();
    let name = l
        .workflow
        .name
        .as_ref()
        .map(|n| n.text.clone())
        .unwrap_or_else(|| l.path.clone());
    let facts = setup::RunFacts {
        git,
        event: &args.select.event,
        payload: &payload,
        event_path: &event_path,
        workflow_path: &l.path,
        workflow_name: &name,
        run_number,
        workspace: &p.root,
    };
    let github = setup::github_context(&facts);
    let default_env = setup::default_env(&facts, &github);

    // `reports:`: only when some job declares result files.
    let collector = l
        .workflow
        .jobs
        .iter()
        .any(|j| j.reports.is_some())
        .then(|| {
            let db = store
                .as_ref()
                .map(|s| pipe_actions::bench::history::path_in(s.dir()));
            let prov = pipe_actions::bench::history::Provenance {
                commit: git.sha.clone(),
                branch: git
                    .git_ref
                    .strip_prefix("refs/heads/")
                    .unwrap_or_default()
                    .to_string(),
                run: Some(run_number),
            };
            Arc::new(pipe_actions::reports::Collector::new(db.map(|d| (d, prov))))
        });

    let masker = Masker::new();
    let mut secrets_obj = Object::new();
    for (k, v) in secrets {
        masker.add(v);
        secrets_obj.insert(k.clone(), Value::str(v));
    }

    let live = args.progress == ProgressMode::Auto
        && !args.json
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && !cli.globals.quiet;
    let terminal = Arc::new(Terminal::new(
        styles,
        cli.globals.quiet,
        cli.globals.verbose > 0,
        args.json,
        live,
    ));
    let recording = record.map(|r| Arc::new(Recording::new(r)));
    let mut fan: Vec<Arc<dyn Reporter>> = vec![terminal.clone()];
    if let Some(r) = &recording {
        fan.push(r.clone());
    }
    let reporter: Arc<dyn Reporter> = Arc::new(Fanout(fan));

    // One notice for labels that run on the host.
    let mut host_labels: Vec<String> = Vec::new();
    for job in &l.workflow.jobs {
        if !placement.force_host && job.container.is_some() {
            continue;
        }
        let texts: Vec<String> = job
            .runs_on
            .iter()
            .flat_map(|r| r.labels.iter())
            .filter(|lb| !lb.has_expr())
            .map(|lb| lb.text.clone())
            .collect();
        if !placement.force_host && placement.image_for(&texts).is_some() {
            continue;
        }
        for label in texts {
            if !host_labels.contains(&label) {
                host_labels.push(label);
            }
        }
    }
    if !host_labels.is_empty() && !args.json {
        let described: Vec<String> = host_labels
            .iter()
            .map(|lb| {
                let lower = lb.to_ascii_lowercase();
                if lower.starts_with("windows") {
                    format!("`{lb}` (a Windows label)")
                } else if lower.starts_with("macos") {
                    format!("`{lb}` (a macOS label)")
                } else {
                    format!("`{lb}`")
                }
            })
            .collect();
        reporter.notice(
            None,
            NoticeLevel::Info,
            &format!(
                "runs-on {} ran on this host ({} {})",
                described.join(", "),
                pipe_runner::executor::host_os(),
                pipe_runner::executor::host_arch()
            ),
        );
    }

    // On the current-thread runtime at most one job runs at a time (`single_threaded`), so
    // the number of cores, which costs reading the cgroup's CPU quota files, changes nothing.
    let parallel = args.parallel.or(p.config.run.parallel).unwrap_or_else(|| {
        use tokio::runtime::{Handle, RuntimeFlavor};
        if Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread {
            return 1;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let actions = Arc::new(pipe_actions::registry(super::action_dir(p, &args.select)));
    let step_cache = open_step_cache(cli, &styles, args, p, l, store.as_ref(), &run_temp);
    let progress: Option<docker::Progress> = if cli.globals.quiet || args.json {
        None
    } else {
        let cli_color = super::err_styles(cli);
        Some(Arc::new(move |line: &str| {
            output::stderr_write(
                format!("{} {line}\n", cli_color.paint(cli_color.hint, "note:")).as_bytes(),
            );
        }))
    };
    let run_id = format!("{}-{run_number}", std::process::id());
    // Step scripts go to a memory file system when the scratch folder is on disk; the guard
    // removes the folder however the run ends.
    let scripts = host::memory_scratch_dir(&format!("pipe-{run_id}")).map(RemoveOnDrop);
    let host = match &scripts {
        Some(dir) => HostExecutor::new().with_script_dir(dir.0.clone()),
        None => HostExecutor::new(),
    }
    .with_spares(spares.clone());
    let empty_temps = host.empty_temps();
    let executor = Arc::new(DockerExecutor::new(
        host,
        DockerOptions {
            run_id: run_id.clone(),
            pull: *pull,
            platform: placement.platform.clone(),
            progress,
            ..DockerOptions::default()
        },
    ));
    let shared = Arc::new(Shared {
        workflow: l.workflow.clone(),
        source: l.source.clone(),
        executor: executor.clone(),
        reporter: reporter.clone(),
        masker: masker.clone(),
        github,
        vars: vars.clone(),
        secrets: Value::from_object(secrets_obj),
        inputs,
        run_temp: run_temp.clone(),
        workspace: p.root.clone(),
        default_env: default_env.into(),
        log_dir: run_dir.as_ref().map(|d| d.join("logs")),
        debug: cli.globals.verbose > 0,
        has_bash: has_program("bash"),
        isolate: args.isolate,
        step_cache,
        dry_run: args.dry_run,
        actions: actions.clone(),
        call_depth: 0,
        parallel,
        key_prefix: String::new(),
        results: collector
            .clone()
            .map(|c| c as Arc<dyn pipe_runner::run::results::ResultsCollector>),
        placement: placement.clone(),
    });
    reporter.event(&RunEvent::RunStarted {
        version: SCHEMA_VERSION,
        run: run_number,
        workflow: l.path.clone(),
        name: name.clone(),
        event: args.select.event.clone(),
    });
    // Workflow-level `concurrency`: wait for the group (across pipe processes of this
    // repository); a run cancelled while pending runs no job.
    let group = match l.workflow.concurrency.as_ref() {
        None => Ok(None),
        Some(c) => {
            let ctx = pipe_runner::context::Contexts::new()
                .with("github", shared.github.clone())
                .with("inputs", shared.inputs.clone())
                .with("vars", shared.vars.clone());
            let eval = |y: &pipe_runner::workflow::YStr| pipe_runner::plan::eval_ystr(y, &ctx);
            match (
                eval(&c.group),
                c.cancel_in_progress.as_ref().map(eval).transpose(),
            ) {
                (Ok(g), Ok(cip)) => Ok(Some((
                    g.to_gh_string().unwrap_or_default(),
                    cip.is_some_and(|v| v.is_truthy()),
                ))),
                (Err(e), _) | (_, Err(e)) => Err(e.message),
            }
        }
    };
    let mut _group_guard = None;
    let mut cancelled_pending = false;
    match (group, store.as_ref()) {
        (Err(e), _) => {
            error(
                cli,
                &format!("cannot evaluate the workflow's `concurrency`: {e}"),
                None,
            );
            return exit::FAILURE;
        }
        (Ok(Some((g, cancel_in_progress))), Some(st)) if !g.is_empty() => {
            let mut on_wait = |running: Option<i32>| {
                notice(
                    cli,
                    &format!(
                        "waiting for concurrency group `{g}`{}",
                        running
                            .map(|p| format!(" (held by pipe process {p})"))
                            .unwrap_or_default()
                    ),
                )
            };
            match concurrency::acquire(st.dir(), &g, cancel_in_progress, &cancel.soft, &mut on_wait)
                .await
            {
                Ok(concurrency::Acquired::Run(guard)) => _group_guard = Some(guard),
                Ok(concurrency::Acquired::Cancelled) => cancelled_pending = true,
                Err(e) => warn(
                    cli,
                    &styles,
                    &format!("concurrency group `{g}` is not enforced: {e}"),
                ),
            }
        }
        _ => {}
    }
    let result = if cancelled_pending {
        notice(
            cli,
            "the run was cancelled while waiting for its concurrency group",
        );
        RunResult {
            conclusion: Conclusion::Cancelled,
            jobs: Vec::new(),
            step_summaries: Vec::new(),
            job_results: Vec::new(),
            duration: std::time::Duration::ZERO,
        }
    } else {
        let given = match &args.needs_results {
            Some(path) => match read_needs_results(path) {
                Ok(g) => g,
                Err(e) => {
                    error(cli, &e, None);
                    return exit::USAGE;
                }
            },
            None => Default::default(),
        };
        // The scheduler runs as a task on a worker thread, not on the thread that blocks on
        // the run: a finished leg then wakes it on the same worker (tokio's LIFO slot) and the
        // next leg it spawns starts there too, instead of two cross-thread wake-ups per job.
        let owned = plan.clone();
        let opts = RunOptions { parallel, given };
        let scheduler = tokio::spawn(async move { run_plan(shared, &owned, &opts, cancel).await });
        prune.clone().start_when_idle();
        match scheduler.await {
            Ok(r) => r,
            Err(e) => {
                // A panic in the scheduler: what its jobs made still goes.
                error(cli, &format!("the scheduler stopped: {e}"), None);
                executor.finish().await;
                if let Some(engine) = executor.engine_if_connected() {
                    let _ = docker::sweep_run(&engine, &run_id).await;
                }
                let _ = std::fs::remove_dir_all(&run_temp);
                return exit::INFRA;
            }
        }
    };
    // Whatever the jobs did not remove (a panic, a job killed mid-setup) goes now.
    executor.finish().await;
    if executor.needs_sweep()
        && let Some(engine) = executor.engine_if_connected()
        && let Err(e) = docker::sweep_run(&engine, &run_id).await
    {
        warn(
            cli,
            &styles,
            &format!("cannot remove the run's containers: {e}"),
        );
    }
    drop(_group_guard);
    reporter.event(&RunEvent::RunFinished {
        conclusion: result.conclusion,
        duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
    });
    terminal.finish();
    host::retire_scratch(&run_temp, scratch_lock, &spares, empty_temps.take());

    let mut results = collector.as_ref().and_then(|c| c.results());
    if let (Some(r), Some(s)) = (results.as_mut(), &store)
        && let Some((n, prev)) = previous_results(s, run_number)
    {
        r.set_baseline(n, &prev);
    }
    let summary = Summary {
        version: SCHEMA_VERSION,
        run: run_number,
        workflow: l.path.clone(),
        event: args.select.event.clone(),
        conclusion: result.conclusion,
        jobs: result.jobs.clone(),
        results: results.as_ref().and_then(|r| serde_json::to_value(r).ok()),
    };
    let summary_json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    if let Some(r) = &recording {
        let ok = r
            .with(|rec| {
                let mut ok = rec.flush().is_ok();
                ok &= rec.write_file("summary.json", &summary_json).is_ok();
                for (i, (job, md)) in result.step_summaries.iter().enumerate() {
                    let name = format!("summaries/{i}-{}.md", store::safe_name(job));
                    ok &= rec.write_file(&name, md.as_bytes()).is_ok();
                }
                if let Some(r) = &results {
                    let json = serde_json::to_vec_pretty(r).unwrap_or_default();
                    ok &= rec.write_file("results.json", &json).is_ok();
                    ok &= rec
                        .write_file("summaries/results.md", r.markdown().as_bytes())
                        .is_ok();
                }
                ok
            })
            .unwrap_or(false);
        if !ok || r.failed() {
            warn(
                cli,
                &super::err_styles(cli),
                "the run record could not be written completely",
            );
        }
    }
    if let Some(s) = &store {
        let _ = s.finish_run(
            run_number,
            result.conclusion,
            u64::try_from(result.duration.as_millis()).unwrap_or(0),
        );
    }
    // Promotion: the run registers the build its policy declares (never fails the run).
    if let Some(s) = &store
        && recording.as_ref().is_some_and(|r| !r.failed())
    {
        super::promote::after_run(cli, &p.root, s.dir(), &s.run_dir(run_number), &summary, git);
    }
    // A prune still busy when the command ends is cut short; the next run finishes it (a
    // half-removed folder has lost its `run.json` first and is no longer listed). A run that
    // never waited (every job skipped) prunes now.
    prune.run_here();
    if let Some(path) = &args.summary
        && let Err(e) = store::write_atomic(path, &summary_json)
    {
        error(
            cli,
            &format!("cannot write `{}`: {}", path.display(), io_reason(&e)),
            None,
        );
        return exit::INFRA;
    }
    if !args.json && !cli.globals.quiet {
        print_final(cli, &result, run_number, &l.path);
        if let Some(r) = &results {
            print_results(cli, r);
        }
    }
    // A job that needed Docker and found no engine is an infrastructure failure.
    if let Some(e) = executor.engine_error() {
        error(cli, &e, None);
        return exit::INFRA;
    }
    match result.conclusion {
        Conclusion::Success => exit::SUCCESS,
        _ => exit::FAILURE,
    }
}

/// The folder of the store whose old runs are to be pruned, until the pruning starts.
///
/// Starting a thread costs the thread that starts it about 0.15 ms (`clone3`, its stack, its
/// signal stack): at the start of a run that is on the way to the first step. Started from a
/// task queued behind the scheduler's, it starts when the scheduler first waits, on a
/// current-thread runtime while the first step's process is starting on the other core.
struct Prune(std::sync::Mutex<Option<std::path::PathBuf>>);

impl Prune {
    fn take(&self) -> Option<std::path::PathBuf> {
        self.0.lock().map(|mut dir| dir.take()).unwrap_or_default()
    }

    fn work(dir: &std::path::Path) {
        // Scratch folders of pipe processes that were killed outright go too.
        host::sweep_stale_scratch(&std::env::temp_dir());
        let _ = Store::open(dir).and_then(|s| s.prune(store::DEFAULT_KEEP));
    }

    /// Starts the pruning thread from a task that yields once first: the tasks queued before
    /// it (the scheduler) run until they wait.
    fn start_when_idle(self: Arc<Self>) {
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            if let Some(dir) = self.take() {
                let _ = std::thread::Builder::new()
                    .name("prune".to_owned())
                    .spawn(move || Prune::work(&dir));
            }
        });
    }

    /// Prunes on this thread if no thread was started.
    fn run_here(&self) {
        if let Some(dir) = self.take() {
            Prune::work(&dir);
        }
    }
}

/// Reads `--needs-results`: `{"job": {"result": "success", "outputs": {"k": "v"}}}`.
fn read_needs_results(
    path: &std::path::Path,
) -> Result<pipe_runner::run::scheduler::GivenResults, String> {
    #[derive(serde::Deserialize)]
    struct Given {
        result: String,
        #[serde(default)]
        outputs: indexmap::IndexMap<String, String>,
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {}", path.display(), io_reason(&e)))?;
    let map: indexmap::IndexMap<String, Given> = serde_json::from_str(&text)
        .map_err(|e| format!("`{}` is not valid needs results: {e}", path.display()))?;
    map.into_iter()
        .map(|(job, g)| {
            let c = match g.result.as_str() {
                "success" => Conclusion::Success,
                "failure" => Conclusion::Failure,
                "cancelled" => Conclusion::Cancelled,
                "skipped" => Conclusion::Skipped,
                other => {
                    return Err(format!(
                        "`{}`: job `{job}` has an unknown result `{other}`",
                        path.display()
                    ));
                }
            };
            Ok((job, (c, g.outputs)))
        })
        .collect()
}

fn warn(cli: &Cli, s: &Styles, message: &str) {
    if !cli.globals.quiet {
        output::stderr_write(format!("{} {message}\n", s.paint(s.warning, "warning:")).as_bytes());
    }
}

/// The newest earlier run's results record that has coverage (the coverage baseline).
fn previous_results(store: &Store, run: u64) -> Option<(u64, pipe_actions::reports::RunResults)> {
    store
        .list(20)
        .ok()?
        .into_iter()
        .filter(|i| i.number < run)
        .find_map(|i| {
            let bytes = std::fs::read(store.run_dir(i.number).join("results.json")).ok()?;
            let r: pipe_actions::reports::RunResults = serde_json::from_slice(&bytes).ok()?;
            r.coverage.is_some().then_some((i.number, r))
        })
}

/// Tests, failed tests and coverage after the job table (stderr).
fn print_results(cli: &Cli, r: &pipe_actions::reports::RunResults) {
    let s = super::err_styles(cli);
    let mut out = String::new();
    if let Some(t) = &r.tests {
        let word = if t.failed > 0 {
            s.paint(s.error, &format!("{} failed", t.failed))
        } else {
            format!("{} failed", t.failed)
        };
        out.push_str(&format!(
            "tests: {} passed, {word}, {} skipped\n",
            t.passed, t.skipped
        ));
        for j in &r.jobs {
            for f in &j.failed_tests {
                out.push_str(&format!(
                    "  {} {}  {}  {}\n",
                    s.paint(s.error, "✗"),
                    j.name,
                    pipe_actions::reports::test_id(f),
                    s.paint(s.dim, &f.message)
                ));
            }
        }
    }
    if let Some(c) = &r.coverage
        && let Some(p) = c.line_percent
    {
        out.push_str(&format!(
            "coverage: lines {p:.1}%{}{}\n",
            c.branch_percent
                .map(|b| format!(", branches {b:.1}%"))
                .unwrap_or_default(),
            c.line_delta
                .map(|d| format!(
                    " ({d:+.1} points since run #{})",
                    c.baseline_run.unwrap_or(0)
                ))
                .unwrap_or_default()
        ));
    }
    output::stderr_write(out.as_bytes());
}

fn print_final(cli: &Cli, result: &RunResult, run: u64, path: &str) {
    let s = super::err_styles(cli);
    let mut out = String::new();
    for (job, md) in &result.step_summaries {
        out.push_str(&format!(
            "\n{}\n",
            s.paint(s.bold, &format!("── summary: {job} ──"))
        ));
        out.push_str(md);
    }
    let width = result
        .jobs
        .iter()
        .map(|j| j.name.chars().count())
        .max()
        .unwrap_or(3)
        .clamp(3, 60);
    out.push_str(&format!(
        "\n{}\n",
        s.paint(
            s.bold,
            &format!("{:<width$}  {:<9}  {}", "JOB", "RESULT", "TIME")
        )
    ));
    let mut counts = [0usize; 4];
    for j in &result.jobs {
        let (word, style) = match j.conclusion {
            Conclusion::Success => ("success", s.success),
            Conclusion::Failure => ("failure", s.error),
            Conclusion::Cancelled => ("cancelled", s.warning),
            Conclusion::Skipped => ("skipped", s.dim),
        };
        counts[j.conclusion as usize] += 1;
        let name: String = j.name.chars().take(width).collect();
        out.push_str(&format!(
            "{name:<width$}  {}  {}\n",
            s.paint(style, &format!("{word:<9}")),
            human_ms(j.duration_ms)
        ));
    }
    let (word, style) = match result.conclusion {
        Conclusion::Success => ("succeeded", s.success),
        Conclusion::Failure => ("failed", s.error),
        _ => ("was cancelled", s.warning),
    };
    let mut parts = Vec::new();
    for (i, label) in ["succeeded", "failed", "cancelled", "skipped"]
        .iter()
        .enumerate()
    {
        if counts[i] > 0 {
            parts.push(format!("{} {label}", counts[i]));
        }
    }
    out.push_str(&format!(
        "{} {} in {} ({})\n",
        s.paint(s.bold, &format!("run #{run} of {path}")),
        s.paint(style, word),
        human_ms(u64::try_from(result.duration.as_millis()).unwrap_or(0)),
        parts.join(", ")
    ));
    output::stderr_write(out.as_bytes());
}

/// A folder removed (with what it holds) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
