//! `pipe ledger verify|export|show`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use pipe_promote::ledger::{AllowedSigners, verify_store};
use pipe_runner::exit;

use super::{open, print_json};
use crate::args::Cli;
use crate::output;

// `pipe ledger`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LedgerCommand,
}

// `pipe ledger` subcommands (a plain comment: see `args::Command`).
#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute the chain, hashes and signatures; report the first bad entry (exit 4).
    Verify(VerifyArgs),
    /// Print entries as JSON lines (canonical form, as stored).
    Export(ExportArgs),
    /// Print one entry.
    Show(ShowEntryArgs),
}

/// `pipe ledger verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also check that every SSH-signed entry's key belongs to its actor in this
    /// `allowed_signers` file (default: the trusted ref's `.pipe/allowed_signers`, if any).
    #[arg(long, value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,
    /// The trusted ref the default `allowed_signers` is read from.
    #[arg(long, env = "PIPE_POLICY_REF", value_name = "REF")]
    pub policy_ref: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pipe ledger export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Start at this entry.
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    pub since: u64,
}

/// `pipe ledger show`.
#[derive(Debug, Args)]
pub struct ShowEntryArgs {
    /// The entry's position or hash.
    pub entry: String,
}

/// Runs `pipe ledger`.
pub fn run(cli: &Cli, args: &LedgerArgs) -> u8 {
    let ctx = match open(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match &args.command {
        LedgerCommand::Verify(a) => {
            let text = match &a.allowed_signers {
                Some(path) => match std::fs::read_to_string(ctx.project.cwd.join(path)) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        super::super::error(
                            cli,
                            &format!("cannot read `{}`: {e}", path.display()),
                            None,
                        );
                        return exit::USAGE;
                    }
                },
                None => pipe_promote::policy::source::load_from_ref(
                    &ctx.project.root,
                    a.policy_ref.as_deref(),
                )
                .ok()
                .and_then(|l| l.allowed_signers),
            };
            let allowed = match text.as_deref().map(AllowedSigners::parse).transpose() {
                Ok(a) => a,
                Err(e) => {
                    super::super::error(cli, &format!("allowed signers: {e}"), None);
                    return exit::USAGE;
                }
            };
            let start = std::time::Instant::now();
            let report = match verify_store(ctx.ledger.store(), allowed.as_ref()) {
                Ok(r) => r,
                Err(e) => return super::ledger_error(cli, &e),
            };
            let secs = start.elapsed().as_secs_f64();
            if a.json {
                print_json(&report);
            } else if let Some(f) = &report.failure {
                super::super::error(
                    cli,
                    &format!("ledger entry #{}: {}", f.seq, f.message),
                    Some("entries before it are intact; nothing after it can be trusted"),
                );
            } else {
                let _ = output::stdout_write(
                    format!(
                        "ledger ok: {} entries, {} signatures, head {} ({:.0} entries/s)\n",
                        report.entries,
                        report.signatures,
                        report.head.as_deref().unwrap_or("-"),
                        report.entries as f64 / secs.max(1e-9)
                    )
                    .as_bytes(),
                );
            }
            if report.failure.is_some() {
                exit::INTEGRITY
            } else {
                exit::SUCCESS
            }
        }
        LedgerCommand::Export(a) => {
            // A closed stdout stops the export quietly.
            let r = ctx.ledger.export(a.since, &mut |text| {
                output::stdout_write(format!("{text}\n").as_bytes()).is_ok()
            });
            match r {
                Ok(()) => exit::SUCCESS,
                Err(e) => super::ledger_error(cli, &e),
            }
        }
        LedgerCommand::Show(a) => {
            let seq = a.entry.trim_start_matches('#').parse::<u64>().ok();
            let found = match seq {
                Some(n) => ctx.ledger.get(n),
                None => {
                    let mut hit = None;
                    let want = a.entry.clone();
                    let r = ctx.ledger.export(0, &mut |text| {
                        if text.contains(&format!("\"hash\":\"{want}")) {
                            hit = serde_json::from_str(text).ok();
                            return false;
                        }
                        true
                    });
                    r.map(|()| hit)
                }
            };
            match found {
                Ok(Some(e)) => {
                    print_json(&e);
                    exit::SUCCESS
                }
                Ok(None) => {
                    super::super::error(cli, &format!("no ledger entry `{}`", a.entry), None);
                    exit::USAGE
                }
                Err(e) => super::ledger_error(cli, &e),
            }
        }
    }
}
