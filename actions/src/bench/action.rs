//! `uses: pipe/bench@v1`: `pipe bench` as a step.
//!
//! Inputs: `commands` (one shell command per line; the first is the baseline the others are
//! compared with), `names` (display names, one per line), `warmup`, `runs`, `min-runs`,
//! `prepare`, `metric` (`wall` or `cpu`), `gate` (`true`: a FAIL fails the step) and
//! `export-json` (a file, relative to the workspace). The table of results goes to the log,
//! the markdown to the step summary, and the hyperfine-compatible JSON to the run's evidence
//! (`runs/<N>/evidence/bench-<job>-<step>.json`). Outputs: `report` (the evidence file),
//! `verdict` (`PASS`, `FAIL`, `INCONCLUSIVE` or `NONE` with one command) and `mean` (the
//! first command's mean in seconds).

use std::time::Duration;

use async_trait::async_trait;
use indexmap::IndexMap;
use pipe_runner::executor::OutputSink;
use pipe_runner::run::action::{BuiltinAction, BuiltinCall, BuiltinResult};

use super::compare::Verdict;
use super::run::{BenchOptions, Metric, NoProgress, run_bench};

/// `pipe/bench`.
pub struct BenchAction;

/// The inputs `pipe/bench@v1` knows.
pub const INPUTS: &[&str] = &[
    "commands",
    "names",
    "warmup",
    "runs",
    "min-runs",
    "prepare",
    "metric",
    "gate",
    "export-json",
];

fn lines(v: &str) -> Vec<String> {
    v.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn number(name: &str, v: &str) -> Result<u32, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("input `{name}` must be a whole number, not `{v}`"))
}

/// Options from the action's inputs.
pub fn options(
    inputs: &IndexMap<String, String>,
) -> Result<(BenchOptions, bool, Option<String>), String> {
    let mut o = BenchOptions::default();
    let mut gate = false;
    let mut export = None;
    for (k, v) in inputs {
        match k.as_str() {
            "commands" => o.commands = lines(v),
            "names" => o.names = lines(v),
            "warmup" => o.warmup = number(k, v)?,
            "runs" => o.runs = Some(number(k, v)?),
            "min-runs" => o.min_runs = number(k, v)?,
            "prepare" => o.prepare = Some(v.clone()).filter(|p| !p.trim().is_empty()),
            "metric" => {
                o.metric = match v.trim() {
                    "wall" => Metric::Wall,
                    "cpu" => Metric::Cpu,
                    other => {
                        return Err(format!(
                            "input `metric` must be `wall` or `cpu`, not `{other}`"
                        ));
                    }
                }
            }
            "gate" => {
                gate = match v.trim() {
                    "true" => true,
                    "false" | "" => false,
                    other => {
                        return Err(format!(
                            "input `gate` must be `true` or `false`, not `{other}`"
                        ));
                    }
                }
            }
            "export-json" => export = Some(v.trim().to_owned()).filter(|p| !p.is_empty()),
            other => {
                return Err(format!(
                    "unknown input `{other}` (known: {})",
                    INPUTS.join(", ")
                ));
            }
        }
    }
    if o.commands.is_empty() {
        return Err("input `commands` names no command (one shell command per line)".to_owned());
    }
    // A step should not take hyperfine's 3 s per command unless asked to.
    if o.runs.is_none() && !inputs.contains_key("min-runs") {
        o.min_time = Duration::from_millis(500);
    }
    Ok((o, gate, export))
}

#[async_trait]
impl BuiltinAction for BenchAction {
    async fn run(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> BuiltinResult {
        let (mut opts, gate, export) = options(call.inputs)?;
        opts.cwd = Some(call.workspace.to_path_buf());
        let cancel = call.cancel.clone();
        let report = tokio::task::spawn_blocking(move || {
            let cancelled = || cancel.soft.is_cancelled() || cancel.hard.is_cancelled();
            run_bench(&opts, &NoProgress, &cancelled)
        })
        .await
        .map_err(|e| format!("the benchmark task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        let md = super::render::markdown(&report);
        out.write(md.as_bytes());
        out.write(b"\n");
        crate::util::append_step_summary(&call, md.as_bytes());
        let json = serde_json::to_vec_pretty(&report).map_err(|e| e.to_string())?;
        let mut outputs = IndexMap::new();
        if let Some(file) = export {
            let p = call.workspace.join(file);
            pipe_runner::store::write_atomic(&p, &json)
                .map_err(|e| format!("cannot write `{}`: {e}", p.display()))?;
        }
        match crate::util::write_evidence(&call, "bench", &json) {
            None => {}
            Some(Ok(file)) => {
                outputs.insert("report".to_owned(), file.to_string_lossy().into_owned());
            }
            Some(Err(e)) => out.write(
                format!("::warning::the benchmark report was not kept as evidence: {e}\n")
                    .as_bytes(),
            ),
        }
        let verdict = if report.pipe.comparisons.is_empty() {
            "NONE"
        } else if report
            .pipe
            .comparisons
            .iter()
            .any(|c| c.verdict == Verdict::Fail)
        {
            "FAIL"
        } else if report
            .pipe
            .comparisons
            .iter()
            .all(|c| c.verdict == Verdict::Pass)
        {
            "PASS"
        } else {
            "INCONCLUSIVE"
        };
        outputs.insert("verdict".to_owned(), verdict.to_owned());
        if let Some(first) = report.results.first() {
            outputs.insert("mean".to_owned(), format!("{}", first.mean));
        }
        if gate && verdict == "FAIL" {
            let names: Vec<String> = report
                .pipe
                .comparisons
                .iter()
                .filter(|c| c.verdict == Verdict::Fail)
                .map(|c| format!("`{}` ({})", c.name, c.reason))
                .collect();
            return Err(format!("benchmark regression: {}", names.join(", ")));
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> IndexMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn inputs_become_options() {
        let (o, gate, export) = options(&inputs(&[
            ("commands", "sleep 0\n\ntrue\n"),
            ("runs", "5"),
            ("metric", "cpu"),
            ("gate", "true"),
            ("export-json", "b.json"),
        ]))
        .expect("valid");
        assert_eq!(o.commands, vec!["sleep 0", "true"]);
        assert_eq!(o.runs, Some(5));
        assert_eq!(o.metric, Metric::Cpu);
        assert!(gate);
        assert_eq!(export.as_deref(), Some("b.json"));
    }

    #[test]
    fn bad_inputs_are_named() {
        let e = options(&inputs(&[("commands", "true"), ("runs", "many")])).expect_err("bad");
        assert!(e.contains("`runs`"), "{e}");
        let e = options(&inputs(&[("command", "true")])).expect_err("unknown");
        assert!(e.contains("unknown input `command`"), "{e}");
        let e = options(&inputs(&[])).expect_err("none");
        assert!(e.contains("names no command"), "{e}");
    }
}
