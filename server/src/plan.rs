//! Planning a submitted workflow into the server's job rows (one row per workflow job; the
//! agent expands its matrix legs, as `pipe run -j JOB` would).

use pipe_runner::context::Contexts;
use pipe_runner::plan::{Selection, plan_unchecked};
use pipe_runner::source::SourceFile;
use pipe_runner::workflow::load_str;

/// A job row to insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    /// The workflow job id.
    pub key: String,
    /// The ids of its needs.
    pub needs: Vec<String>,
    /// Its `runs-on` labels.
    pub labels: Vec<String>,
}

/// Plans a workflow's text into jobs; an invalid workflow gives `PATH:LINE:COL: message`
/// lines, one per error.
pub fn plan_jobs(path: &str, text: &str) -> Result<Vec<NewJob>, String> {
    let (wf, mut diags) = load_str(text);
    if let Some(wf) = &wf {
        // The checks that make a workflow invalid for GitHub itself (`needs` cycles and
        // unknown needs among them); lint findings do not stop a run.
        pipe_runner::check::check_needs(wf, &mut diags);
    }
    let file = SourceFile::new(path, text);
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| {
            let lc = file.line_col(d.span.start);
            format!("{path}:{}:{}: {} [{}]", lc.line, lc.col, d.message, d.rule)
        })
        .collect();
    let wf = match wf {
        Some(wf) if errors.is_empty() => wf,
        _ if !errors.is_empty() => return Err(errors.join("\n")),
        _ => return Err(format!("{path}: the workflow could not be read")),
    };
    let ctx = Contexts::new();
    let plan = plan_unchecked(
        &pipe_runner::plan::PlanInput {
            workflow: &wf,
            path,
            contexts: &ctx,
            selection: &Selection::default(),
        },
        &[],
    );
    Ok(plan
        .jobs
        .iter()
        .map(|j| {
            let mut labels = j.runs_on.clone();
            labels.sort();
            labels.dedup();
            let mut needs = j.needs_ids.clone();
            needs.sort();
            needs.dedup();
            NewJob {
                key: j.id.clone(),
                needs,
                labels,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_carry_needs_and_labels() {
        let jobs = plan_jobs(
            "ci.yml",
            "on: push\njobs:\n  a:\n    runs-on: [self-hosted, gpu]\n    steps: [{run: 'true'}]\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n",
        )
        .expect("valid");
        assert_eq!(
            jobs,
            vec![
                NewJob {
                    key: "a".into(),
                    needs: vec![],
                    labels: vec!["gpu".into(), "self-hosted".into()]
                },
                NewJob {
                    key: "b".into(),
                    needs: vec!["a".into()],
                    labels: vec!["ubuntu-latest".into()]
                },
            ]
        );
    }

    #[test]
    fn an_invalid_workflow_names_line_and_column() {
        let err = plan_jobs(
            "ci.yml",
            "on: push\njobs:\n  a:\n    needs: nope\n    runs-on: x\n    steps: [{run: 'true'}]\n",
        )
        .expect_err("unknown need");
        assert!(err.starts_with("ci.yml:4:"), "{err}");
        assert!(err.contains("nope"), "{err}");
    }
}
