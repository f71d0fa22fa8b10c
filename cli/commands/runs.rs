//! `pipe runs`: recorded runs of this repository, newest first.

use pipe_runner::store::Store;
use pipe_runner::{dirs, exit};

use crate::args::{Cli, RunsArgs};
use crate::output;
use crate::reporter::human_ms;

/// Opens the store of the current repository.
pub fn open_store(cli: &Cli) -> Result<Store, u8> {
    let p = super::project(cli)?;
    let root = dirs::state_root(&dirs::process_env).map_err(|e| {
        super::error(cli, &e.to_string(), None);
        exit::INFRA
    })?;
    let canonical = p.root.canonicalize().unwrap_or_else(|_| p.root.clone());
    Store::open(&dirs::repo_state_dir(&root, &canonical)).map_err(|e| {
        super::error(cli, &e.to_string(), None);
        exit::INFRA
    })
}

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &RunsArgs) -> u8 {
    let store = match open_store(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let runs = match store.list(args.limit) {
        Ok(r) => r,
        Err(e) => {
            super::error(cli, &e.to_string(), None);
            return exit::INFRA;
        }
    };
    let text = if args.json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        )
    } else if runs.is_empty() {
        "no runs recorded yet\n".to_owned()
    } else {
        let mut out = format!(
            "{:<6}  {:<10}  {:<10}  {:<8}  {}\n",
            "RUN", "RESULT", "EVENT", "TIME", "WORKFLOW"
        );
        for r in &runs {
            let result = r.conclusion.map(|c| c.as_str()).unwrap_or("unfinished");
            let time = r
                .duration_ms
                .map(human_ms)
                .unwrap_or_else(|| "-".to_owned());
            out.push_str(&format!(
                "{:<6}  {:<10}  {:<10}  {:<8}  {}\n",
                format!("#{}", r.number),
                result,
                r.event,
                time,
                r.workflow
            ));
        }
        out
    };
    let _ = output::stdout_write(text.as_bytes());
    exit::SUCCESS
}

/// A run number as given on the command line (`42` or `#42`); a usage error otherwise.
pub fn parse_run(cli: &Cli, r: &str) -> Result<u64, u8> {
    r.trim_start_matches('#').parse::<u64>().map_err(|_| {
        super::error(
            cli,
            &format!("`{r}` is not a run number"),
            Some("use `pipe runs` to list them"),
        );
        exit::USAGE
    })
}

/// The run `run` names, or the newest recorded one.
pub fn run_or_latest(cli: &Cli, st: &Store, run: Option<&str>) -> Result<u64, u8> {
    match run {
        Some(r) => parse_run(cli, r),
        None => match st.latest() {
            Ok(Some(n)) => Ok(n),
            _ => {
                super::error(cli, "no runs recorded yet", None);
                Err(exit::USAGE)
            }
        },
    }
}
