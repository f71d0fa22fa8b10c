//! `pipe graph`: the job graph as text (jobs grouped in stages, each with the jobs it needs,
//! readable for wide DAGs too) or as Graphviz DOT (`--dot`). Planning is shared with
//! `pipe list`, so both show the same jobs, legs and reusable-workflow calls.

use pipe_runner::exit;
use pipe_runner::plan::render;

use crate::args::{Cli, GraphArgs};
use crate::output;

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &GraphArgs) -> u8 {
    let plans = match super::list::plans(cli, &args.select) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let text = plans
        .iter()
        .map(|p| {
            if args.dot {
                render::dot(p)
            } else {
                render::ascii(p)
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    // A closed stdout (`pipe graph | head`) is not an error.
    let _ = output::stdout_write(text.as_bytes());
    exit::SUCCESS
}
