//! Command-line arguments (clap derive). Every command takes the global `-q/-v` and `--color`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::ColorMode;

/// pipe — a GitHub Actions-compatible CI pipeline runner.
#[derive(Debug, Parser)]
#[command(name = "pipe", version, about, propagate_version = true)]
pub struct Cli {
    /// Print less (only errors).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more (repeat for more detail; `PIPE_LOG` sets a tracing filter).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// When to use colour (`NO_COLOR` is honoured with `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorMode::Auto)]
    pub color: ColorMode,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files (and action.yml files) for errors and likely mistakes.
    Validate(ValidateArgs),
}

/// Output format of diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// `FILE:LINE:COL: message [rule]` with the source line.
    #[default]
    Human,
    /// A JSON array of findings.
    Json,
    /// SARIF 2.1.0 (GitHub code scanning).
    Sarif,
}

/// `pipe validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories to check (default: `.github/workflows/` and `pipelines/`).
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Also report pipe's extension keys, which GitHub rejects.
    #[arg(long)]
    pub strict_github: bool,
}
