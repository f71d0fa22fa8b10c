//! The `pipe` command line: argument parsing, dispatch and exit codes.
//!
//! Only this crate prints and exits. Commands return an exit code from
//! [`pipe_runner::exit`]; a broken pipe on stdout exits quietly.

mod args;
mod commands;
mod heap;
mod output;
mod render;
mod reporter;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// mimalloc (its v2 line): a run allocates and frees small objects on two threads per job
/// (contexts, env, events), where glibc's arenas cost about 7 % of a 1,000-job run; v3 reserved
/// and zeroed huge pages at start-up and made a one-job run 1 ms slower, v2 does not.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // No huge pages while parsing the command line; only large workflows get them back in
    // `run`, every other command at once (see `heap`).
    heap::huge_pages(false);
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = args::parse_run(&argv).map_or_else(|| Cli::try_parse_from(&argv), Ok);
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2).
            let code = if e.use_stderr() {
                pipe_runner::exit::USAGE
            } else {
                0
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if !matches!(cli.command, Command::Run(_)) {
        heap::huge_pages(true);
    }
    init_tracing(&cli);
    let code = match &cli.command {
        Command::Run(a) => commands::run::run(&cli, a),
        Command::Validate(a) => commands::validate::run(&cli, a),
        Command::List(a) => commands::list::run(&cli, a),
        Command::Graph(a) => commands::graph::run(&cli, a),
        Command::Runs(a) => commands::runs::run(&cli, a),
        Command::Logs(a) => commands::logs::run(&cli, a),
        Command::Why(a) => commands::why::run(&cli, a),
        Command::Artifacts(a) => commands::artifacts::run(&cli, a),
        Command::Cache(a) => commands::cache::run(&cli, a),
        Command::Scan(a) => commands::scan::run(&cli, a),
        Command::Bench(a) => commands::bench::run(&cli, a),
        Command::Image(a) => commands::image::run(&cli, a),
        Command::Prune(a) => commands::prune::run(&cli, a),
        Command::Builds(a) => commands::promote::builds::builds(&cli, a),
        Command::Show(a) => commands::promote::builds::show(&cli, a),
        Command::Gates(a) => commands::promote::gates::gates(&cli, a),
        Command::Promote(a) => commands::promote::gates::promote(&cli, a),
        Command::Approve(a) => commands::promote::gates::approve(&cli, a),
        Command::Reject(a) => commands::promote::gates::reject(&cli, a),
        Command::Status(a) => commands::promote::status::status(&cli, a),
        Command::History(a) => commands::promote::status::history(&cli, a),
        Command::Lock(a) => commands::promote::status::lock(&cli, a),
        Command::Unlock(a) => commands::promote::status::unlock(&cli, a),
        Command::Metrics(a) => match commands::promote::status::metrics(&cli, a) {
            0 => commands::deploy::metrics(&cli, &commands::deploy::MetricsArgs {}),
            code => code,
        },
        Command::Ledger(a) => commands::promote::ledger::run(&cli, a),
        Command::Rollback(a) => commands::deploy::rollback(&cli, a),
        Command::Evidence(a) => commands::deploy::evidence(&cli, a),
        Command::Server(a) => commands::server::run(&cli, a),
        Command::Agent(a) => commands::agent::run(&cli, a),
        Command::Submit(a) => commands::submit::run(&cli, a),
    };
    exit_now(code)
}

/// Ends the process with `code` once stdout and stderr are flushed, without the C library's
/// exit handlers: the one that costs is mimalloc's, which returns every page of the heap to the
/// kernel (a dozen `madvise` calls, about 3 % of a one-job run's CPU in `perf`) just
/// before the kernel takes the whole address space back anyway. Every file pipe writes is
/// written through and closed by then (run records are flushed by their owners).
#[allow(unsafe_code)]
fn exit_now(code: u8) -> ExitCode {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process at once; nothing of pipe's is left unflushed above.
    unsafe { libc::_exit(i32::from(code)) }
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match cli.globals.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("PIPE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    if cli.globals.log_format == args::LogFormat::Json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(output::use_color(
            cli.globals.color,
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ))
        .try_init();
}

#[cfg(test)]
mod tests {
    /// The unwinder is linked in from `libgcc_eh.a` (`cli/build.rs`): panics still unwind
    /// through frames and run their drops, and backtraces still walk the stack.
    #[test]
    fn panics_unwind_and_backtraces_walk_with_the_static_unwinder() {
        struct Flag<'a>(&'a std::cell::Cell<bool>);
        impl Drop for Flag<'_> {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let dropped = std::cell::Cell::new(false);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _flag = Flag(&dropped);
            std::panic::resume_unwind(Box::new("on purpose"));
        }));
        assert!(caught.is_err());
        assert!(dropped.get(), "the frame's drop did not run");
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        assert!(
            trace.contains("panics_unwind_and_backtraces_walk"),
            "no frame of this test in:\n{trace}"
        );
    }

    /// With the static unwinder (the default on Linux with glibc) `libgcc_s.so.1` is not
    /// loaded at all: `--as-needed` dropped it from the link.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn libgcc_s_is_not_loaded() {
        if option_env!("PIPE_STATIC_UNWIND") == Some("0") {
            return;
        }
        let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
        assert!(!maps.contains("libgcc_s"), "libgcc_s is mapped:\n{maps}");
    }
}
