//! `pipe logs [RUN] [JOB[/STEP]]`: prints a recorded run's step logs.

use pipe_runner::event::RunEvent;
use pipe_runner::{exit, store};

use crate::args::{Cli, LogsArgs};
use crate::output;

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &LogsArgs) -> u8 {
    let st = match super::runs::open_store(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let number = match super::runs::run_or_latest(cli, &st, args.run.as_deref()) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let dir = st.run_dir(number);
    let events = match std::fs::read_to_string(dir.join("events.jsonl")) {
        Ok(t) => t,
        Err(_) => {
            super::error(
                cli,
                &format!("run #{number} is not recorded"),
                Some("use `pipe runs` to list them"),
            );
            return exit::USAGE;
        }
    };
    let (job_filter, step_filter) = match &args.job {
        Some(j) => match j.split_once('/') {
            Some((a, b)) => (Some(a.to_owned()), Some(b.to_owned())),
            None => (Some(j.clone()), None),
        },
        None => (None, None),
    };
    // Steps that started, in order, with the folder their logs live in.
    let mut out = String::new();
    let mut matched = false;
    // Jobs seen, in order (their service containers' logs follow their steps).
    let mut jobs: Vec<(String, String)> = Vec::new();
    for line in events.lines() {
        let Ok(ev) = serde_json::from_str::<RunEvent>(line) else {
            continue;
        };
        let RunEvent::StepStarted { job, step } = ev else {
            continue;
        };
        if let Some(f) = &job_filter
            && job.name != *f
            && job.id != *f
        {
            continue;
        }
        if let Some(f) = &step_filter
            && step.index.to_string() != *f
            && step.id != *f
            && step.name != *f
        {
            continue;
        }
        matched = true;
        // The log folder is the leg's key: the job id, plus the matrix index for legs.
        let key = if job.key.is_empty() {
            job.id.clone()
        } else {
            job.key.clone()
        };
        let logs = dir.join("logs");
        let folder = store::safe_name(&key);
        if step_filter.is_none() && !jobs.iter().any(|(k, _)| *k == key) {
            jobs.push((key.clone(), job.name.clone()));
        }
        out.push_str(&format!("── {} / {} ──\n", job.name, step.name));
        // Records of earlier versions keep a folder per job.
        let text = std::fs::read_to_string(store::step_log_path(&logs, &folder, step.index))
            .or_else(|_| {
                std::fs::read_to_string(store::legacy_step_log_path(&logs, &folder, step.index))
            });
        match text {
            Ok(t) => out.push_str(&t),
            Err(_) => out.push_str("(no output)\n"),
        }
    }
    for (key, name) in &jobs {
        let folder = dir.join("logs").join(store::safe_name(key));
        let mut services: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                let id = file
                    .strip_prefix("service-")?
                    .strip_suffix(".log")?
                    .to_owned();
                Some((id, e.path()))
            })
            .collect();
        services.sort();
        for (id, path) in services {
            out.push_str(&format!("── {name} / service {id} ──\n"));
            match std::fs::read_to_string(&path) {
                Ok(t) if !t.is_empty() => out.push_str(&t),
                _ => out.push_str("(no output)\n"),
            }
        }
    }
    if !matched {
        super::error(cli, &format!("run #{number} has no matching step"), None);
        return exit::USAGE;
    }
    let _ = output::stdout_write(out.as_bytes());
    exit::SUCCESS
}
