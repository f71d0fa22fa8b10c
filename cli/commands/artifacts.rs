//! `pipe artifacts [RUN]`: the artifacts a recorded run uploaded (`actions/upload-artifact`);
//! `--extract NAME [--to DIR]` writes one artifact's files out.

use pipe_runner::exit;

use crate::args::{ArtifactsArgs, Cli};
use crate::output;

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &ArtifactsArgs) -> u8 {
    let st = match super::runs::open_store(cli) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let number = match super::runs::run_or_latest(cli, &st, args.run.as_deref()) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let dir = st.run_dir(number);
    if !dir.is_dir() {
        super::error(
            cli,
            &format!("run #{number} is not recorded"),
            Some("use `pipe runs` to list them"),
        );
        return exit::USAGE;
    }
    let list = pipe_actions::artifact::list(&dir);
    if let Some(name) = &args.extract {
        let Some((_, files)) = list.iter().find(|(a, _)| &a.name == name) else {
            let names: Vec<String> = list.iter().map(|(a, _)| format!("`{}`", a.name)).collect();
            let hint = if names.is_empty() {
                format!("run #{number} has no artifacts")
            } else {
                format!("run #{number} has {}", names.join(", "))
            };
            super::error(
                cli,
                &format!("run #{number} has no artifact named `{name}`"),
                Some(&hint),
            );
            return exit::USAGE;
        };
        let to = args
            .to
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from(name));
        return match pipe_actions::artifact::extract(files, &to) {
            Ok(()) => {
                output::stderr_write(
                    format!(
                        "extracted `{name}` of run #{number} to `{}`\n",
                        to.display()
                    )
                    .as_bytes(),
                );
                exit::SUCCESS
            }
            Err(e) => {
                super::error(cli, &format!("cannot extract `{name}`: {e}"), None);
                exit::INFRA
            }
        };
    }
    let text = if args.json {
        let items: Vec<serde_json::Value> = list
            .iter()
            .map(|(a, files)| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                v["path"] = serde_json::Value::from(files.to_string_lossy().into_owned());
                v
            })
            .collect();
        format!(
            "{}\n",
            serde_json::to_string_pretty(&items).unwrap_or_default()
        )
    } else if list.is_empty() {
        format!("run #{number} has no artifacts\n")
    } else {
        let mut out = format!(
            "{:<4}  {:<24}  {:>12}  {:>6}  {:<12}  {}\n",
            "ID", "NAME", "SIZE", "FILES", "JOB", "PATH"
        );
        for (a, files) in &list {
            out.push_str(&format!(
                "{:<4}  {:<24}  {:>12}  {:>6}  {:<12}  {}\n",
                a.id,
                a.name,
                a.size,
                a.files,
                a.job,
                files.display()
            ));
        }
        out
    };
    let _ = output::stdout_write(text.as_bytes());
    exit::SUCCESS
}
