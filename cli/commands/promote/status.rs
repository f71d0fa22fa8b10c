//! `pipe status`, `pipe history`, `pipe lock`/`unlock`, `pipe metrics`.

use clap::Args;
use pipe_promote::engine;
use pipe_promote::ledger::{Filter, kind};
use pipe_promote::state::HistoryItem;
use pipe_runner::exit;

use super::gates::{PolicyArgs, engine, engine_error, load};
use super::{open, print_json};
use crate::args::Cli;
use crate::output;

// `pipe status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this environment.
    pub env: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

// `pipe history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this environment.
    pub env: Option<String>,
    /// Only this build.
    #[arg(long, value_name = "BUILD")]
    pub build: Option<String>,
    /// Only entries newer than this (`30d`, `12h`).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

// `pipe lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// The environment.
    pub env: String,
    /// Why (required, recorded).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Also block rollbacks.
    #[arg(long)]
    pub hard: bool,
    /// Who (default: `PIPE_ACTOR`, git's `user.name`, `$USER`).
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

// `pipe unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The environment.
    pub env: String,
    /// Who.
    #[arg(long = "as", value_name = "NAME")]
    pub actor: Option<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

// `pipe metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {}

/// Runs `pipe status`.
pub fn status(cli: &Cli, args: &StatusArgs) -> u8 {
    let ctx = match open(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let l = match load(cli, &ctx, &args.policy) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let eng = engine(&ctx, &l);
    if let Some(e) = &args.env
        && let Err(err) = eng.env(e)
    {
        return engine_error(cli, &err);
    }
    let st = match engine::status(&eng, args.env.as_deref()) {
        Ok(s) => s,
        Err(e) => return engine_error(cli, &e),
    };
    if args.json {
        print_json(&st);
        return exit::SUCCESS;
    }
    let mut out = String::new();
    for s in &st {
        out.push_str(&format!("{}\n", s.env));
        match (&s.release, &s.alias) {
            (Some(r), alias) => out.push_str(&format!(
                "  release  {} ({}) since {}\n",
                alias.as_deref().unwrap_or("?"),
                r.build.get(..19).unwrap_or(&r.build),
                r.since
            )),
            (None, _) => out.push_str("  release  none\n"),
        }
        if let Some(l) = &s.locked {
            out.push_str(&format!(
                "  locked   by {}{}: {}\n",
                l["by"].as_str().unwrap_or("?"),
                if l["hard"].as_bool() == Some(true) {
                    " (hard: rollbacks blocked too)"
                } else {
                    ""
                },
                l["reason"].as_str().unwrap_or("")
            ));
        }
        if !s.window_open {
            out.push_str("  window   closed now\n");
        }
        if let Some(h) = &s.hold {
            out.push_str(&format!(
                "  hold     {h} (automatic promotion waits for `pipe promote`)\n"
            ));
        }
        if let Some(f) = &s.in_flight {
            out.push_str(&format!(
                "  inflight a {} of {} (release {}, pid {}) since {}, {}; if that process is gone: `pipe rollback {} --reason TEXT`\n",
                f.op,
                f.build.get(..19).unwrap_or(&f.build),
                f.release,
                f.pid,
                f.started,
                f.phase,
                s.env
            ));
        }
        for p in &s.pending {
            out.push_str(&format!(
                "  pending  {} requested by {} at {} (request #{})\n",
                p["alias"].as_str().unwrap_or("?"),
                p["requested_by"].as_str().unwrap_or("?"),
                p["time"].as_str().unwrap_or("?"),
                p["request"]
            ));
        }
    }
    let _ = output::stdout_write(out.as_bytes());
    exit::SUCCESS
}

/// Runs `pipe history`.
pub fn history(cli: &Cli, args: &HistoryArgs) -> u8 {
    let ctx = match open(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let build = match &args.build {
        Some(b) => match super::resolve(cli, &ctx, b) {
            Ok(b) => Some(b.id),
            Err(code) => return code,
        },
        None => None,
    };
    let since = match &args.since {
        Some(s) => match pipe_promote::policy::parse_duration(s) {
            Some(d) => Some(ctx.ledger.now() - d),
            None => {
                super::super::error(
                    cli,
                    &format!("`--since {s}` is not a duration"),
                    Some("write it like `12h` or `30d`"),
                );
                return exit::USAGE;
            }
        },
        None => None,
    };
    let entries = match ctx.ledger.select(&Filter {
        kinds: vec![],
        env: args.env.clone(),
        build,
    }) {
        Ok(e) => e,
        Err(e) => return super::ledger_error(cli, &e),
    };
    let items: Vec<HistoryItem> = entries
        .into_iter()
        .filter(|e| e.kind != kind::GENESIS && e.kind != kind::CHECKPOINT)
        .filter(|e| {
            since.is_none_or(|s| {
                e.time
                    .parse::<pipe_promote::jiff::Timestamp>()
                    .is_ok_and(|t| t >= s)
            })
        })
        .map(HistoryItem::from)
        .collect();
    if args.json {
        print_json(&items);
        return exit::SUCCESS;
    }
    let mut out = String::new();
    for h in &items {
        let detail = match h.kind.as_str() {
            kind::PROMOTION_DECIDED => h.body["decision"].as_str().unwrap_or("").to_owned(),
            kind::PROMOTION_REJECTED | kind::ENV_LOCKED => {
                h.body["reason"].as_str().unwrap_or("").to_owned()
            }
            kind::BUILD_REGISTERED => format!(
                "{} from run #{}",
                h.body["alias"].as_str().unwrap_or(""),
                h.body["run"]
            ),
            k if k.starts_with("verify.") && k != "verify.sample" => h.body["summary"]["reason"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            "deploy.started" => format!(
                "release {}{}",
                h.body["release"]["seq"],
                h.body["release"]["rollback"]
                    .as_str()
                    .map(|t| format!(" (rollback: {t})"))
                    .unwrap_or_default()
            ),
            "deploy.failed" | "rollback.started" => {
                h.body["reason"].as_str().unwrap_or("").to_owned()
            }
            "rollback.finished" => h.body["how"].as_str().unwrap_or("").to_owned(),
            "proxy.switched" => format!("to slot `{}`", h.body["to"].as_str().unwrap_or("")),
            _ => String::new(),
        };
        out.push_str(&format!(
            "#{:<6} {}  {:<20}  {:<12}  {:<12}  {:<19}  {}\n",
            h.seq,
            h.time,
            h.kind,
            h.env.as_deref().unwrap_or("-"),
            h.actor,
            h.build
                .as_deref()
                .map(|b| b.get(..19).unwrap_or(b))
                .unwrap_or("-"),
            detail
        ));
    }
    let _ = output::stdout_write(out.as_bytes());
    exit::SUCCESS
}

fn set_lock(
    cli: &Cli,
    env: &str,
    policy: &PolicyArgs,
    actor: Option<&str>,
    lock: Option<(&str, bool)>,
) -> u8 {
    let ctx = match open(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let l = match load(cli, &ctx, policy) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let eng = engine(&ctx, &l);
    let e = match eng.env(env) {
        Ok(e) => e,
        Err(err) => return engine_error(cli, &err),
    };
    let actor = super::actor(&ctx.project.root, actor);
    match eng.set_lock(e, actor, lock) {
        Ok(entry) => {
            if !cli.globals.quiet {
                output::stderr_write(
                    format!(
                        "{} `{env}` (ledger #{})\n",
                        if lock.is_some() { "locked" } else { "unlocked" },
                        entry.seq
                    )
                    .as_bytes(),
                );
            }
            exit::SUCCESS
        }
        Err(err) => engine_error(cli, &err),
    }
}

/// Runs `pipe lock`.
pub fn lock(cli: &Cli, args: &LockArgs) -> u8 {
    set_lock(
        cli,
        &args.env,
        &args.policy,
        args.actor.as_deref(),
        Some((&args.reason, args.hard)),
    )
}

/// Runs `pipe unlock`.
pub fn unlock(cli: &Cli, args: &UnlockArgs) -> u8 {
    set_lock(cli, &args.env, &args.policy, args.actor.as_deref(), None)
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Runs `pipe metrics`: promotion metrics in Prometheus text format.
pub fn metrics(cli: &Cli, _args: &MetricsArgs) -> u8 {
    use std::collections::BTreeMap;
    let ctx = match open(cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut entries: u64 = 0;
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut decisions: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut approvals: BTreeMap<String, u64> = BTreeMap::new();
    let mut gate_results: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut releases: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut locked: BTreeMap<String, bool> = BTreeMap::new();
    let r = ctx.ledger.export(0, &mut |text| {
        entries += 1;
        let Ok(e) = serde_json::from_str::<pipe_promote::ledger::Entry>(text) else {
            return true;
        };
        *kinds.entry(e.kind.clone()).or_default() += 1;
        let env = e.env.clone().unwrap_or_default();
        if matches!(
            e.kind.as_str(),
            kind::PROMOTION_DECIDED | kind::GATE_EVALUATED
        ) {
            for g in e.body["evaluation"]["gates"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let key = (
                    env.clone(),
                    g["gate"].as_str().unwrap_or("").to_owned(),
                    g["result"].as_str().unwrap_or("").to_ascii_lowercase(),
                );
                *gate_results.entry(key).or_default() += 1;
            }
        }
        match e.kind.as_str() {
            kind::PROMOTION_DECIDED => {
                let d = e.body["decision"]
                    .as_str()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                *decisions.entry((env, d)).or_default() += 1;
            }
            kind::APPROVAL_GRANTED => *approvals.entry(env).or_default() += 1,
            kind::RELEASE_RECORDED => {
                let t = e
                    .time
                    .parse::<pipe_promote::jiff::Timestamp>()
                    .map(|t| t.as_second())
                    .unwrap_or(0);
                releases.insert(env, (e.build.unwrap_or_default(), t));
            }
            kind::ENV_LOCKED => {
                locked.insert(env, true);
            }
            kind::ENV_UNLOCKED => {
                locked.insert(env, false);
            }
            _ => {}
        }
        true
    });
    if let Err(e) = r {
        return super::ledger_error(cli, &e);
    }
    let mut out = String::new();
    out.push_str("# HELP pipe_ledger_entries Entries in the promotion ledger.\n# TYPE pipe_ledger_entries gauge\n");
    out.push_str(&format!("pipe_ledger_entries {entries}\n"));
    out.push_str("# HELP pipe_ledger_entries_by_kind Ledger entries by kind.\n# TYPE pipe_ledger_entries_by_kind gauge\n");
    for (k, n) in &kinds {
        out.push_str(&format!(
            "pipe_ledger_entries_by_kind{{kind=\"{}\"}} {n}\n",
            label(k)
        ));
    }
    out.push_str("# HELP pipe_promotions_total Promotion decisions by environment and decision.\n# TYPE pipe_promotions_total counter\n");
    for ((env, d), n) in &decisions {
        out.push_str(&format!(
            "pipe_promotions_total{{environment=\"{}\",decision=\"{}\"}} {n}\n",
            label(env),
            label(d)
        ));
    }
    out.push_str("# HELP pipe_gate_results_total Gate results recorded with promotion decisions and pending evaluations.\n# TYPE pipe_gate_results_total counter\n");
    for ((env, gate, result), n) in &gate_results {
        out.push_str(&format!(
            "pipe_gate_results_total{{environment=\"{}\",gate=\"{}\",result=\"{}\"}} {n}\n",
            label(env),
            label(gate),
            label(result)
        ));
    }
    out.push_str("# HELP pipe_approvals_total Approvals recorded by environment.\n# TYPE pipe_approvals_total counter\n");
    for (env, n) in &approvals {
        out.push_str(&format!(
            "pipe_approvals_total{{environment=\"{}\"}} {n}\n",
            label(env)
        ));
    }
    out.push_str("# HELP pipe_release_info The current release of each environment.\n# TYPE pipe_release_info gauge\n");
    for (env, (b, _)) in &releases {
        out.push_str(&format!(
            "pipe_release_info{{environment=\"{}\",build=\"{}\"}} 1\n",
            label(env),
            label(b)
        ));
    }
    out.push_str("# HELP pipe_release_timestamp_seconds When the current release was recorded.\n# TYPE pipe_release_timestamp_seconds gauge\n");
    for (env, (_, t)) in &releases {
        out.push_str(&format!(
            "pipe_release_timestamp_seconds{{environment=\"{}\"}} {t}\n",
            label(env)
        ));
    }
    out.push_str("# HELP pipe_environment_locked Whether the environment is locked.\n# TYPE pipe_environment_locked gauge\n");
    for (env, l) in &locked {
        out.push_str(&format!(
            "pipe_environment_locked{{environment=\"{}\"}} {}\n",
            label(env),
            u8::from(*l)
        ));
    }
    let _ = output::stdout_write(out.as_bytes());
    exit::SUCCESS
}
