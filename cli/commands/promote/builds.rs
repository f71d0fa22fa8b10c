//! `pipe builds` (registered builds) and `pipe show BUILD` (subjects, jobs, evidence, releases).

use clap::Args;
use pipe_promote::build;
use pipe_runner::exit;

use super::{Ctx, open, print_json, resolve};
use crate::args::Cli;
use crate::output;

// `pipe builds`.
#[derive(Debug, Args)]
pub struct BuildsArgs {
    /// Only builds that are (or were) the release of this environment.
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

// `pipe show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The build: a digest, a unique prefix of at least 12 hex digits, or its alias.
    pub build: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn short(id: &str) -> &str {
    id.get(..19).unwrap_or(id)
}

/// Where each build is the release: build id → environments.
fn releases(ctx: &Ctx) -> Result<Vec<(String, String)>, pipe_promote::ledger::LedgerError> {
    Ok(pipe_promote::state::current_releases(&ctx.ledger)?
        .into_iter()
        .map(|(env, r)| (r.build, env))
        .collect())
}

/// Runs `pipe builds`.
pub fn builds(cli: &Cli, args: &BuildsArgs) -> u8 {
    let ctx = match open(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut all = match build::list(&ctx.ledger) {
        Ok(b) => b,
        Err(e) => return super::build_error(cli, &e),
    };
    let rel = match releases(&ctx) {
        Ok(r) => r,
        Err(e) => return super::ledger_error(cli, &e),
    };
    if let Some(env) = &args.env {
        let ever = match pipe_promote::state::released_in(&ctx.ledger, env) {
            Ok(v) => v,
            Err(e) => return super::ledger_error(cli, &e),
        };
        all.retain(|b| ever.contains(&b.id));
    }
    all.reverse();
    if args.json {
        let items: Vec<serde_json::Value> = all
            .iter()
            .map(|b| {
                let mut v = serde_json::to_value(b).unwrap_or_default();
                v["environments"] = rel
                    .iter()
                    .filter(|(id, _)| *id == b.id)
                    .map(|(_, e)| e.clone())
                    .collect::<Vec<_>>()
                    .into();
                v
            })
            .collect();
        print_json(&items);
        return exit::SUCCESS;
    }
    if all.is_empty() {
        let _ = output::stdout_write(
            b"no builds registered yet (a run registers one when `.pipe/environments.yml` declares `build:`)\n",
        );
        return exit::SUCCESS;
    }
    let mut out = format!(
        "{:<19}  {:<24}  {:<6}  {:<9}  {:<20}  {}\n",
        "BUILD", "ALIAS", "RUN", "RESULT", "REF", "RELEASED IN"
    );
    for b in &all {
        let envs: Vec<&str> = rel
            .iter()
            .filter(|(id, _)| *id == b.id)
            .map(|(_, e)| e.as_str())
            .collect();
        out.push_str(&format!(
            "{:<19}  {:<24}  {:<6}  {:<9}  {:<20}  {}\n",
            short(&b.id),
            b.body.alias,
            format!("#{}", b.body.run),
            b.body.conclusion,
            b.body
                .git_ref
                .trim_start_matches("refs/heads/")
                .trim_start_matches("refs/"),
            if envs.is_empty() {
                "-".to_owned()
            } else {
                envs.join(", ")
            }
        ));
    }
    let _ = output::stdout_write(out.as_bytes());
    exit::SUCCESS
}

/// Runs `pipe show`.
pub fn show(cli: &Cli, args: &ShowArgs) -> u8 {
    let ctx = match open(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let b = match resolve(cli, &ctx, &args.build) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let history = match pipe_promote::state::build_history(&ctx.ledger, &b.id) {
        Ok(h) => h,
        Err(e) => return super::ledger_error(cli, &e),
    };
    if args.json {
        let mut v = serde_json::to_value(&b).unwrap_or_default();
        v["history"] = serde_json::to_value(&history).unwrap_or_default();
        print_json(&v);
        return exit::SUCCESS;
    }
    let mut out = format!(
        "build {}\nalias {}\nrun #{} ({}) of {}\ncommit {} on {}\nregistered {} (ledger #{})\n\nsubjects:\n",
        b.id,
        b.body.alias,
        b.body.run,
        b.body.conclusion,
        b.body.workflow,
        b.body.sha,
        b.body.git_ref,
        b.registered,
        b.seq
    );
    for s in &b.body.subjects {
        out.push_str(&format!("  {}  {}\n", s.digest, s.name));
    }
    out.push_str("\njobs:\n");
    for j in &b.body.jobs {
        out.push_str(&format!("  {:<9}  {}\n", j.conclusion, j.name));
    }
    out.push_str("\nevidence:\n");
    for e in &b.body.evidence {
        out.push_str(&format!("  {:<8}  {}  {}\n", e.kind, e.digest, e.name));
    }
    if !history.is_empty() {
        out.push_str("\nhistory:\n");
        for h in &history {
            out.push_str(&format!(
                "  #{:<6} {}  {:<20}  {:<12}  {}\n",
                h.seq,
                h.time,
                h.kind,
                h.env.as_deref().unwrap_or("-"),
                h.actor
            ));
        }
    }
    let _ = output::stdout_write(out.as_bytes());
    exit::SUCCESS
}
