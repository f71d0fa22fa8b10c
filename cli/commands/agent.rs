//! `pipe agent`: claims jobs from a `pipe server` and runs them (see `pipe_server::agent`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use clap::Args;
use pipe_runner::exit;
use pipe_server::agent::{AgentOptions, DEFAULT_LABELS, Stopped};

use crate::args::Cli;

// `pipe agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The server's URL.
    #[arg(long, env = "PIPE_SERVER", value_name = "URL")]
    pub server: String,
    /// The agent token (`pipe server token --kind agent`).
    #[arg(
        long,
        env = "PIPE_AGENT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: String,
    /// The agent's name (default: host name and process id).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The agent's labels, comma-separated: it takes the jobs whose `runs-on` labels are all
    /// among them.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LABELS",
        default_value = DEFAULT_LABELS
    )]
    pub labels: Vec<String>,
    /// Jobs running at once.
    #[arg(short = 'c', long, default_value_t = 1, value_name = "N")]
    pub concurrency: usize,
    /// Where job workspaces live (default: `agent/NAME` in the state directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Exit after this many jobs.
    #[arg(long, value_name = "N")]
    pub max_jobs: Option<usize>,
    /// Run every job on the host.
    #[arg(long)]
    pub host: bool,
    /// Run jobs whose `runs-on` is LABEL in a container of IMAGE (repeatable).
    #[arg(short = 'P', long = "platform-map", value_name = "LABEL=IMAGE")]
    pub platform_map: Vec<String>,
}

/// Runs the command.
pub fn run(cli: &Cli, args: &AgentArgs) -> u8 {
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "agent".to_owned());
        format!("{host}-{}", std::process::id())
    });
    let work_dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => match pipe_runner::dirs::state_root(&pipe_runner::dirs::process_env) {
            Ok(root) => root.join("agent").join(&name),
            Err(e) => {
                super::error(
                    cli,
                    &format!("no state directory: {e}"),
                    Some("pass `--work-dir`"),
                );
                return exit::USAGE;
            }
        },
    };
    let pipe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            super::error(cli, &format!("cannot find the `pipe` binary: {e}"), None);
            return exit::INFRA;
        }
    };
    let mut run_args = Vec::new();
    if args.host {
        run_args.push("--host".to_owned());
    }
    for p in &args.platform_map {
        run_args.push("-P".to_owned());
        run_args.push(p.clone());
    }
    let opts = AgentOptions {
        server: args.server.clone(),
        token: args.token.clone(),
        name,
        labels: args
            .labels
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect(),
        concurrency: args.concurrency.max(1),
        work_dir,
        pipe,
        run_args,
        max_jobs: args.max_jobs.unwrap_or(0),
    };
    // SIGTERM/SIGINT: drain (finish running jobs, take no new ones).
    let stop = Arc::new(AtomicBool::new(false));
    let signal_code = Arc::new(AtomicU8::new(0));
    {
        let (stop, signal_code) = (stop.clone(), signal_code.clone());
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut term), Ok(mut int)) = (
                    signal(SignalKind::terminate()),
                    signal(SignalKind::interrupt()),
                ) else {
                    return;
                };
                let code = tokio::select! {
                    _ = term.recv() => exit::SIGTERM,
                    _ = int.recv() => exit::SIGINT,
                };
                signal_code.store(code, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
                tracing::warn!("draining: finishing running jobs, taking no new ones");
            });
        });
    }
    match pipe_server::agent::run(&opts, stop) {
        Ok(Stopped::Done) => exit::SUCCESS,
        Ok(Stopped::Drained) => match signal_code.load(Ordering::SeqCst) {
            0 => exit::SUCCESS,
            c => c,
        },
        Err(e) => {
            super::error(cli, &e, None);
            exit::INFRA
        }
    }
}
