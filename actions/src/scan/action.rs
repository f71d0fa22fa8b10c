//! `uses: pipe/scan@v1`: `pipe scan fs` as a step. Inputs mirror the flags
//! ([`super::ACTION_INPUTS`]); relative paths are relative to the workspace.
//!
//! The table goes to the step's log, the markdown report to the step summary, and the JSON
//! report (`pipe.scan/v1`) to the run's evidence folder (`runs/<N>/evidence/scan-<step>.json`,
//! where promotion gates read it). Outputs: `result` (`pass`/`fail`), `findings` (unsuppressed
//! findings), `gated` (findings that fail the policy), `report` (the evidence file). The step
//! fails when the policy fails (exit 1), the options are wrong (2) or the database is
//! missing or stale (3), with the scanner's message.

use async_trait::async_trait;
use indexmap::IndexMap;
use pipe_runner::executor::OutputSink;
use pipe_runner::run::action::{BuiltinAction, BuiltinCall, BuiltinResult};
use std::collections::BTreeMap;

use super::{Format, Level, OutputSpec, ScanOptions, render, run_scan};

/// `pipe/scan`.
pub struct ScanAction;

#[async_trait]
impl BuiltinAction for ScanAction {
    async fn run(&self, call: BuiltinCall<'_>, out: &mut dyn OutputSink) -> BuiltinResult {
        let inputs: BTreeMap<String, String> = call
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut opts = ScanOptions::from_inputs(&inputs)?;
        opts.cwd = Some(call.workspace.to_path_buf());
        if opts.target.is_relative() {
            opts.target = call.workspace.join(&opts.target);
        }
        // The step's log gets the table; explicit stdout outputs are replaced by it.
        opts.outputs.retain(|o| o.path.is_some());
        opts.outputs.push(OutputSpec {
            format: Format::Table,
            path: None,
        });
        let outcome = tokio::task::spawn_blocking(move || run_scan(&opts))
            .await
            .map_err(|e| format!("the scan task failed: {e}"))?;
        for m in &outcome.messages {
            let kind = match m.level {
                Level::Error => "error",
                Level::Warning => "warning",
            };
            let hint = m
                .hint
                .as_deref()
                .map(|h| format!(" (hint: {h})"))
                .unwrap_or_default();
            out.write(format!("::{kind}::{}{hint}\n", m.text).as_bytes());
        }
        let mut table = Vec::new();
        let _ = outcome.write_stdout(&mut table);
        out.write(&table);
        let Some(report) = &outcome.report else {
            let why = outcome
                .messages
                .iter()
                .find(|m| m.level == Level::Error)
                .map(|m| m.text.clone())
                .unwrap_or_else(|| format!("the scan failed (exit {})", outcome.exit_code));
            return Err(why);
        };
        // Markdown to the step summary.
        let mut md = Vec::new();
        if render::write(Format::Markdown, report, false, &mut md).is_ok() {
            crate::util::append_step_summary(&call, &md);
        }
        // JSON to the run's evidence.
        let mut outputs = IndexMap::new();
        let mut json = Vec::new();
        let written = render::write(Format::Json, report, false, &mut json)
            .map_err(|e| e.to_string())
            .map(|()| crate::util::write_evidence(&call, "scan", &json));
        match written {
            Ok(None) => {}
            Ok(Some(Ok(file))) => {
                outputs.insert("report".to_owned(), file.to_string_lossy().into_owned());
            }
            Ok(Some(Err(e))) | Err(e) => out.write(
                format!("::warning::the scan report was not kept as evidence: {e}\n").as_bytes(),
            ),
        }
        let unsuppressed: usize = report.summary.by_severity.values().sum();
        outputs.insert("result".to_owned(), report.result.clone());
        outputs.insert("findings".to_owned(), unsuppressed.to_string());
        outputs.insert("gated".to_owned(), report.summary.gated.to_string());
        match outcome.exit_code {
            0 => Ok(outputs),
            1 => Err(format!(
                "the scan policy failed: {} finding(s) at or above the `fail-on` threshold",
                report.summary.gated
            )),
            code => Err(outcome
                .messages
                .iter()
                .find(|m| m.level == Level::Error)
                .map(|m| m.text.clone())
                .unwrap_or_else(|| format!("the scan failed (exit {code})"))),
        }
    }
}
