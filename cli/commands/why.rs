//! `pipe why JOB[/STEP]`: the step cache's verdict on a job's cached steps in the newest run
//! that has them, and on a miss what changed since the step's last stored result.

use pipe_runner::event::{CacheStatus, StepCacheInfo};
use pipe_runner::exit;

use crate::args::{Cli, WhyArgs};
use crate::output;
use crate::reporter::human_ms;

#[derive(serde::Serialize)]
struct Verdict<'a> {
    run: u64,
    workflow: &'a str,
    job: &'a str,
    step: &'a str,
    step_name: &'a str,
    cache: &'a StepCacheInfo,
}

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &WhyArgs) -> u8 {
    let st = match super::runs::open_store(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (job_filter, step_filter) = match args.target.split_once('/') {
        Some((a, b)) => (a.to_owned(), Some(b.to_owned())),
        None => (args.target.clone(), None),
    };
    let numbers: Vec<u64> = match &args.run {
        Some(r) => match super::runs::parse_run(cli, r) {
            Ok(n) => vec![n],
            Err(code) => return code,
        },
        None => match st.list(usize::MAX) {
            Ok(runs) => runs.into_iter().map(|r| r.number).collect(),
            Err(e) => {
                super::error(cli, &e.to_string(), None);
                return exit::INFRA;
            }
        },
    };
    for n in numbers {
        let Ok(Some(summary)) = st.summary(n) else {
            continue;
        };
        let mut found = Vec::new();
        for job in &summary.jobs {
            if job.id != job_filter && job.name != job_filter {
                continue;
            }
            for (i, step) in job.steps.iter().enumerate() {
                if let Some(f) = &step_filter
                    && i.to_string() != *f
                    && step.id != *f
                    && step.name != *f
                {
                    continue;
                }
                if let Some(c) = &step.cache {
                    found.push(Verdict {
                        run: n,
                        workflow: &summary.workflow,
                        job: &job.name,
                        step: &step.id,
                        step_name: &step.name,
                        cache: c,
                    });
                }
            }
        }
        if found.is_empty() {
            continue;
        }
        if args.json {
            let text = serde_json::to_string_pretty(&found).unwrap_or_default();
            let _ = output::stdout_write(format!("{text}\n").as_bytes());
            return exit::SUCCESS;
        }
        let mut out = String::new();
        for v in &found {
            let c = v.cache;
            let short = &c.key[..12.min(c.key.len())];
            match c.status {
                CacheStatus::Hit => {
                    let saved = c
                        .saved_ms
                        .map(|ms| format!(", saved {}", human_ms(ms)))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "run #{} {} / {}: hit from the {} cache (key {short}{saved})\n",
                        v.run,
                        v.job,
                        v.step_name,
                        c.source.as_deref().unwrap_or("local")
                    ));
                }
                CacheStatus::Miss => {
                    out.push_str(&format!(
                        "run #{} {} / {}: miss (key {short})\n",
                        v.run, v.job, v.step_name
                    ));
                    if c.changes.is_empty() {
                        out.push_str("  no earlier result of this step was stored\n");
                    }
                    for ch in &c.changes {
                        out.push_str(&format!("  - {ch}\n"));
                    }
                    match (c.saved, &c.note) {
                        (Some(true), _) => out.push_str("  the result was stored\n"),
                        (_, Some(note)) => out.push_str(&format!("  not stored: {note}\n")),
                        _ => {}
                    }
                }
            }
        }
        let _ = output::stdout_write(out.as_bytes());
        return exit::SUCCESS;
    }
    super::error(
        cli,
        &format!("no recorded run has cached steps in `{}`", args.target),
        Some("steps are cached with pipe's `cache:` key; `pipe runs` lists the runs"),
    );
    exit::FAILURE
}
