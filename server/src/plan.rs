//! Planning a submitted workflow into the server's job rows: one row per matrix leg (so legs
//! spread over agents), or one row for the whole job when its legs are not known yet (a
//! dynamic matrix) or cannot each be selected alone with `pipe run --matrix`. Each row also
//! records the secrets its job reads (see [`crate::secret::referenced`]).

use std::collections::BTreeSet;

use pipe_runner::context::Contexts;
use pipe_runner::plan::{Legs, PlannedLeg, Selection, plan_unchecked, select_legs};
use pipe_runner::source::SourceFile;
use pipe_runner::workflow::{CallSecrets, Workflow, load_str};

/// A job row to insert.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NewJob {
    /// The workflow job id.
    pub key: String,
    /// The ids of its needs.
    pub needs: Vec<String>,
    /// Its `runs-on` labels.
    pub labels: Vec<String>,
    /// The leg's `strategy.job-index` when the row is one matrix leg.
    pub leg: Option<i32>,
    /// The leg's display name (`test (linux, 2)`).
    pub name: String,
    /// The `--matrix KEY=VALUE` filters that select exactly this leg.
    pub matrix: Vec<(String, String)>,
    /// Whether a failed leg cancels its sibling legs (`strategy.fail-fast`, default true).
    pub fail_fast: bool,
    /// The secret names the job reads (upper-case); `None`: all of them.
    pub secrets: Option<BTreeSet<String>>,
}

/// The `--matrix` filters of each leg, when every leg can be selected alone with them.
fn leg_filters(legs: &[PlannedLeg]) -> Option<Vec<Vec<(String, String)>>> {
    let mut all = Vec::with_capacity(legs.len());
    for leg in legs {
        let json = leg.matrix.to_json();
        let obj = json.as_object()?;
        let filters: Vec<(String, String)> = obj
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k.clone(), s.clone()),
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                    (k.clone(), v.to_string())
                }
                other => (k.clone(), serde_json::to_string(other).unwrap_or_default()),
            })
            .collect();
        if filters.iter().any(|(k, v)| k.contains('=') || v.is_empty()) {
            return None;
        }
        let mut trial = legs.to_vec();
        select_legs(&mut trial, &filters);
        let chosen: Vec<usize> = trial
            .iter()
            .filter(|l| l.selected)
            .map(|l| l.job_index)
            .collect();
        if chosen != [leg.job_index] {
            return None;
        }
        all.push(filters);
    }
    Some(all)
}

/// The secrets each job reads, by job index: what its own text reads plus what the
/// workflow's text outside every job reads (`env:`, `defaults:`).
fn job_secrets(wf: &Workflow, text: &str) -> Vec<Option<BTreeSet<String>>> {
    let mut outside = String::new();
    let mut at = 0usize;
    let mut spans: Vec<(usize, usize)> = wf
        .jobs
        .iter()
        .map(|j| (j.span.start as usize, j.span.end as usize))
        .collect();
    spans.sort();
    for (start, end) in &spans {
        if let Some(t) = text.get(at..*start) {
            outside.push_str(t);
        }
        at = at.max(*end);
    }
    if let Some(t) = text.get(at..) {
        outside.push_str(t);
    }
    let global = crate::secret::referenced(&outside);
    wf.jobs
        .iter()
        .map(|j| {
            if matches!(j.secrets, Some(CallSecrets::Inherit(_))) {
                return None;
            }
            let own = text
                .get(j.span.start as usize..j.span.end as usize)
                .unwrap_or(text);
            let mut own = crate::secret::referenced(own)?;
            own.extend(global.clone()?);
            Some(own)
        })
        .collect()
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
    let secrets = job_secrets(&wf, text);
    let mut rows = Vec::new();
    for j in &plan.jobs {
        let mut labels = j.runs_on.clone();
        labels.sort();
        labels.dedup();
        let mut needs = j.needs_ids.to_vec();
        needs.sort();
        needs.dedup();
        let widx = wf.jobs.iter().position(|w| w.id.value == j.id);
        let wjob = widx.and_then(|i| wf.jobs.get(i));
        let fail_fast = wjob
            .and_then(|w| w.strategy.as_ref())
            .and_then(|s| s.fail_fast.as_ref())
            .is_none_or(|f| f.text.trim() != "false");
        let base = NewJob {
            key: j.id.clone(),
            needs,
            labels,
            leg: None,
            name: j.name.clone(),
            matrix: Vec::new(),
            fail_fast,
            secrets: widx.and_then(|i| secrets.get(i)).cloned().unwrap_or(None),
        };
        match &j.legs {
            Legs::Expanded { legs } if j.has_matrix && legs.len() > 1 && j.call.is_none() => {
                match leg_filters(legs) {
                    Some(filters) => {
                        for (leg, matrix) in legs.iter().zip(filters) {
                            rows.push(NewJob {
                                leg: i32::try_from(leg.job_index).ok(),
                                name: leg.name.clone(),
                                matrix,
                                ..base.clone()
                            });
                        }
                    }
                    None => rows.push(base),
                }
            }
            _ => rows.push(base),
        }
    }
    Ok(rows)
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
                    labels: vec!["gpu".into(), "self-hosted".into()],
                    name: "a".into(),
                    fail_fast: true,
                    secrets: Some(BTreeSet::new()),
                    ..NewJob::default()
                },
                NewJob {
                    key: "b".into(),
                    needs: vec!["a".into()],
                    labels: vec!["ubuntu-latest".into()],
                    name: "b".into(),
                    fail_fast: true,
                    secrets: Some(BTreeSet::new()),
                    ..NewJob::default()
                },
            ]
        );
    }

    #[test]
    fn matrix_legs_are_rows_of_their_own_with_filters_selecting_each() {
        let jobs = plan_jobs(
            "ci.yml",
            "on: push\njobs:\n  t:\n    runs-on: x\n    strategy:\n      fail-fast: false\n      matrix:\n        os: [a, b]\n        v: [1, 2]\n        include: [{os: c, v: 3, extra: {k: 1}}]\n    steps: [{run: 'true'}]\n",
        )
        .expect("valid");
        assert_eq!(jobs.len(), 5, "{jobs:?}");
        assert!(jobs.iter().all(|j| j.key == "t" && !j.fail_fast));
        let legs: Vec<Option<i32>> = jobs.iter().map(|j| j.leg).collect();
        assert_eq!(legs, vec![Some(0), Some(1), Some(2), Some(3), Some(4)]);
        assert!(
            jobs[4]
                .matrix
                .contains(&("extra".to_owned(), r#"{"k":1}"#.to_owned()))
        );
        assert_eq!(jobs[0].name, "t (a, 1)");
    }

    #[test]
    fn a_dynamic_matrix_stays_one_row() {
        let jobs = plan_jobs(
            "ci.yml",
            "on: push\njobs:\n  a:\n    runs-on: x\n    outputs: {m: '${{ steps.s.outputs.m }}'}\n    steps: [{id: s, run: 'true'}]\n  t:\n    needs: a\n    runs-on: x\n    strategy:\n      matrix: ${{ fromJSON(needs.a.outputs.m) }}\n    steps: [{run: 'true'}]\n",
        )
        .expect("valid");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[1].leg, None);
    }

    #[test]
    fn each_job_gets_the_secrets_it_and_the_workflow_read() {
        let jobs = plan_jobs(
            "ci.yml",
            "on: push\nenv:\n  G: ${{ secrets.global }}\njobs:\n  a:\n    runs-on: x\n    steps: [{run: 'echo ${{ secrets.A_KEY }}'}]\n  b:\n    runs-on: x\n    steps: [{run: 'echo ${{ toJSON(secrets) }}'}]\n  c:\n    runs-on: x\n    steps: [{run: 'echo none'}]\n",
        )
        .expect("valid");
        let names = |i: usize| {
            jobs[i]
                .secrets
                .as_ref()
                .map(|s| s.iter().cloned().collect::<Vec<_>>())
        };
        assert_eq!(
            names(0),
            Some(vec!["A_KEY".to_owned(), "GLOBAL".to_owned()])
        );
        assert_eq!(names(1), None);
        assert_eq!(names(2), Some(vec!["GLOBAL".to_owned()]));
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
