//! The DAG scheduler: a job starts the moment its needs finish (no stage barriers).
//!
//! - Job `if:` is evaluated once per job (matrix is not available there) with the `needs`
//!   context and job-level status functions: `success()` only when every ancestor,
//!   transitively, succeeded; `failure()` when any failed; `cancelled()` when the run was.
//! - Matrix legs run under the run's parallelism and the job's `max-parallel`; `fail-fast`
//!   cancels the other legs of the matrix (queued ones never start, running ones are stopped).
//! - Dynamic matrices are expanded when their needs finish.
//! - A job's result as its dependants see it aggregates its legs; job-level
//!   `continue-on-error` turns a failure into success for dependants and for the run.
//! - Job-level `concurrency` groups: at most one running and one pending job per group; a newer
//!   pending job cancels the older pending one; `cancel-in-progress` cancels the running one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::{Contexts, Status};
use crate::event::{Conclusion, JobRef, JobSummary, RunEvent, StepSummary};
use crate::executor::Cancel;
use crate::expr::{Object, Value, parse_condition};
use crate::plan::{Legs, Plan, PlannedLeg, expand_job_matrix};
use crate::run::job::{LegOutcome, LegRunner, LegSpec, Shared, default_step_name, step_ids};
use crate::run::report::NoticeLevel;
use crate::workflow::YStr;

/// Results of jobs that ran elsewhere: job id → (result, outputs).
pub type GivenResults = HashMap<String, (Conclusion, IndexMap<String, String>)>;

/// How to run a plan.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Legs running at once (`-p`).
    pub parallel: usize,
    /// Results of jobs that ran elsewhere, by job id: a job that is not selected and has an
    /// entry here is done with that result and those outputs (its dependants' `needs` and
    /// status functions see them); without one it counts as a success with no outputs. This is
    /// how an agent of `pipe server` runs one job of a workflow whose needs other agents ran.
    pub given: GivenResults,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The run's conclusion.
    pub conclusion: Conclusion,
    /// Every job and leg, in plan order.
    pub jobs: Vec<JobSummary>,
    /// Step summaries per job display name, in plan order.
    pub step_summaries: Vec<(String, String)>,
    /// Each finished job's result as dependants see it and its merged outputs, by the job's
    /// position in the workflow (the `jobs` context of a called workflow).
    pub job_results: Vec<(usize, Conclusion, IndexMap<String, String>)>,
    /// Wall time.
    pub duration: Duration,
}

#[derive(Clone, Debug)]
enum JobState {
    Waiting,
    Running,
    Done {
        /// Aggregated result as dependants see it.
        result: Conclusion,
        outputs: IndexMap<String, String>,
        /// Its entry in dependants' `needs` context (`{result, outputs}`), built once and
        /// shared by every dependant.
        entry: Value,
    },
}

impl JobState {
    fn done(result: Conclusion, outputs: IndexMap<String, String>) -> JobState {
        let entry = needs_entry(result, &outputs);
        JobState::Done {
            result,
            outputs,
            entry,
        }
    }
}

/// A finished job's entry in the `needs` context: `{result, outputs}`.
fn needs_entry(result: Conclusion, outputs: &IndexMap<String, String>) -> Value {
    let outs: Object = outputs
        .iter()
        .map(|(k, v)| (k.clone(), Value::str(v)))
        .collect();
    Value::object(vec![
        ("result".to_owned(), Value::str(result.as_str())),
        ("outputs".to_owned(), Value::from_object(outs)),
    ])
}

/// The `needs` context of a job whose direct needs are `needs` (workflow job ids and their
/// entries, in the order written). Jobs with the same needs list share one object: each
/// entry is built once when its job finishes, and the object once per distinct list (every
/// job of a fully connected layer has the same one).
#[derive(Default)]
struct NeedsContexts {
    by_list: HashMap<Vec<usize>, Value>,
}

impl NeedsContexts {
    fn get(&mut self, needs: &[usize], entry: impl Fn(usize) -> Option<(String, Value)>) -> Value {
        if needs.is_empty() {
            return Value::from_object(Object::new());
        }
        if let Some(v) = self.by_list.get(needs) {
            return v.clone();
        }
        let obj: Object = needs.iter().filter_map(|&d| entry(d)).collect();
        let v = Value::from_object(obj);
        self.by_list.insert(needs.to_vec(), v.clone());
        v
    }
}

/// Every job's transitive ancestors as a bit set over plan indices (empty for a job without
/// needs), computed in dependency order from the direct needs' sets: O(edges × jobs / 64)
/// instead of a walk of every ancestor's needs per job.
fn ancestor_sets<'a>(
    n: usize,
    order: &[usize],
    needs: impl Fn(usize) -> &'a [usize],
) -> Vec<Box<[u64]>> {
    let words = n.div_ceil(64);
    let mut sets: Vec<Box<[u64]>> = vec![Box::default(); n];
    for &j in order {
        if needs(j).is_empty() {
            continue;
        }
        let mut set = vec![0u64; words].into_boxed_slice();
        for &d in needs(j) {
            set[d / 64] |= 1 << (d % 64);
            for (w, dw) in set.iter_mut().zip(sets[d].iter()) {
                *w |= *dw;
            }
        }
        sets[j] = set;
    }
    sets
}

/// The members of a bit set.
fn members(set: &[u64]) -> impl Iterator<Item = usize> + '_ {
    set.iter().enumerate().flat_map(|(w, &bits)| {
        let mut bits = bits;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(w * 64 + b)
        })
    })
}

struct LegSlot {
    name: String,
    matrix: Value,
    outcome: Option<LegOutcome>,
    cancel: Cancel,
}

struct JobRun {
    legs: Vec<LegSlot>,
    pending: usize,
    fail_fast: bool,
    /// Legs' results in finish order (for output merging: last finisher wins).
    finished_order: Vec<usize>,
}

/// A concurrency group's running and pending leg (job index, leg index).
type GroupSlots = (Option<(usize, usize)>, Option<(usize, usize)>);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs a plan to completion.
pub async fn run_plan(
    shared: Arc<Shared>,
    plan: &Plan,
    opts: &RunOptions,
    run_cancel: Cancel,
) -> RunResult {
    let started = Instant::now();
    let wf = shared.workflow.clone();
    let n = plan.jobs.len();
    let mut state: Vec<JobState> = vec![JobState::Waiting; n];
    let mut runs: HashMap<usize, JobRun> = HashMap::new();
    let mut summaries: HashMap<usize, Vec<JobSummary>> = HashMap::new();
    let mut step_summaries: HashMap<usize, Vec<(String, String)>> = HashMap::new();
    // Legs waiting for a slot, in the order they became ready (plan order, then job-index):
    // the scheduler starts them itself, so legs start in GitHub's order and a queued leg never
    // starts before fail-fast had its say.
    let mut queue: VecDeque<LegLaunch> = VecDeque::new();
    let parallel = opts.parallel.max(1);
    let mut running_global = 0usize;
    let mut running_per_job: HashMap<usize, usize> = HashMap::new();
    let mut max_parallel_of: HashMap<usize, usize> = HashMap::new();
    // Legs that took a slot when they started.
    let mut holding_slot: std::collections::HashSet<(usize, usize)> =
        std::collections::HashSet::new();
    let mut tasks: JoinSet<LegDone> = JoinSet::new();
    // Concurrency groups: group -> (running leg, pending leg).
    let mut groups: HashMap<String, GroupSlots> = HashMap::new();
    let mut waiting_for_group: Vec<(usize, usize, String)> = Vec::new();
    let mut leg_group: HashMap<(usize, usize), String> = HashMap::new();
    // Legs waiting for their concurrency group.
    let mut pending: Vec<LegLaunch> = Vec::new();
    // Whether this loop cancelled a leg since the queue was last scanned.
    let mut cancelled_since_scan = false;

    // Transitive ancestors, computed once.
    let ancestors = ancestor_sets(n, &plan.order, |j| &plan.jobs[j].needs);
    let mut needs_contexts = NeedsContexts::default();

    // Readiness bookkeeping: how many distinct needs of each job are unfinished, who needs
    // whom, and the plan positions of waiting jobs that may start (all needs done, or not
    // selected). A finished job only touches its dependants, so a 1,000-job run with 90,000
    // edges does 90,000 decrements, not a scan of every job's needs per finished job.
    let mut pos_of = vec![0usize; n];
    for (p, &j) in plan.order.iter().enumerate() {
        pos_of[j] = p;
    }
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut remaining: Vec<usize> = vec![0; n];
    for (j, pj) in plan.jobs.iter().enumerate() {
        let mut needs = pj.needs.clone();
        needs.sort_unstable();
        needs.dedup();
        remaining[j] = needs.len();
        for d in needs {
            dependants[d].push(j);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = plan
        .order
        .iter()
        .enumerate()
        .filter(|&(_, &j)| remaining[j] == 0 || !plan.jobs[j].selected)
        .map(|(p, _)| p)
        .collect();
    let mark_done =
        |j: usize, remaining: &mut Vec<usize>, ready: &mut std::collections::BTreeSet<usize>| {
            for &dd in &dependants[j] {
                remaining[dd] = remaining[dd].saturating_sub(1);
                if remaining[dd] == 0 {
                    ready.insert(pos_of[dd]);
                }
            }
        };

    loop {
        // Start every job whose needs are done, in plan order; a job that finishes at once
        // (skipped, not selected) readies its dependants for this pass or the next.
        let mut progressed = true;
        while progressed {
            progressed = false;
            let mut cursor = 0usize;
            while let Some(&p) = ready.range(cursor..).next() {
                ready.remove(&p);
                cursor = p + 1;
                let j = plan.order[p];
                if !matches!(state[j], JobState::Waiting) {
                    continue;
                }
                let pj = &plan.jobs[j];
                if !pj.selected {
                    // Not selected: its dependants see the given result, or success with no
                    // outputs.
                    let (result, outputs) = opts
                        .given
                        .get(&pj.id)
                        .cloned()
                        .unwrap_or((Conclusion::Success, IndexMap::new()));
                    state[j] = JobState::done(result, outputs);
                    mark_done(j, &mut remaining, &mut ready);
                    progressed = true;
                    continue;
                }
                if !pj
                    .needs
                    .iter()
                    .all(|&d| matches!(state[d], JobState::Done { .. }))
                {
                    continue;
                }
                progressed = true;
                let job = &wf.jobs[pj.index];
                // The needs context: direct needs only.
                let needs = needs_contexts.get(&pj.needs, |d| match &state[d] {
                    JobState::Done { entry, .. } => {
                        Some((wf.jobs[plan.jobs[d].index].id.value.clone(), entry.clone()))
                    }
                    _ => None,
                });
                let mut status = Status {
                    cancelled: run_cancel.soft.is_cancelled(),
                    ..Status::default()
                };
                for a in members(&ancestors[j]) {
                    if let JobState::Done { result, .. } = &state[a] {
                        match result {
                            Conclusion::Failure => status.failed = true,
                            Conclusion::Cancelled => status.cancelled = true,
                            Conclusion::Skipped => status.skipped_ancestor = true,
                            Conclusion::Success => {}
                        }
                    }
                }
                let mut ctx = Contexts::new()
                    .with("github", shared.github.clone())
                    .with("needs", needs.clone())
                    .with("vars", shared.vars.clone())
                    .with("inputs", shared.inputs.clone());
                ctx.status = status;
                let cond = match &job.if_ {
                    None => Ok(!status.failed && !status.cancelled && !status.skipped_ancestor),
                    Some(c) => parse_condition(&c.text)
                        .map_err(|e| locate(&shared, c, e.offset, e.len, &e.message))
                        .and_then(|cond| {
                            cond.eval(&ctx)
                                .map_err(|e| locate(&shared, c, e.offset, e.len, &e.message))
                        }),
                };
                let base_ref = JobRef {
                    id: pj.id.clone(),
                    name: pj.name.clone(),
                    matrix: None,
                    key: pj.id.clone(),
                };
                match cond {
                    Err(e) => {
                        shared
                            .reporter
                            .notice(Some(&base_ref), NoticeLevel::Error, &e);
                        finish_unstarted(
                            &shared,
                            j,
                            &base_ref,
                            Conclusion::Failure,
                            &mut summaries,
                            job,
                        );
                        state[j] = JobState::done(Conclusion::Failure, IndexMap::new());
                        mark_done(j, &mut remaining, &mut ready);
                        continue;
                    }
                    Ok(false) => {
                        // Not run: skipped, or cancelled when the run was cancelled.
                        let c = if run_cancel.soft.is_cancelled() {
                            Conclusion::Cancelled
                        } else {
                            Conclusion::Skipped
                        };
                        finish_unstarted(&shared, j, &base_ref, c, &mut summaries, job);
                        state[j] = JobState::done(c, IndexMap::new());
                        mark_done(j, &mut remaining, &mut ready);
                        continue;
                    }
                    Ok(true) => {}
                }
                // Legs: planned, or expanded now for dynamic matrices and for names that read
                // `needs` (the plan could only show those as written).
                let name_reads_needs = job
                    .name
                    .as_ref()
                    .is_some_and(|n| crate::plan::mentions_context(&n.text, "needs"));
                let expand_now = || {
                    let sctx = Contexts::new()
                        .with("github", shared.github.clone())
                        .with("needs", needs.clone())
                        .with("vars", shared.vars.clone())
                        .with("inputs", shared.inputs.clone());
                    expand_job_matrix(job, &sctx)
                        .map(|mut legs| {
                            if !plan.matrix_filter.is_empty() {
                                crate::plan::select_legs(&mut legs, &plan.matrix_filter);
                            }
                            legs
                        })
                        .map_err(|e| locate_span(&shared, e.span, &e.message))
                };
                let legs: Result<Vec<PlannedLeg>, String> = match &pj.legs {
                    Legs::Expanded { .. } if name_reads_needs => expand_now(),
                    Legs::Expanded { legs } => Ok(legs.clone()),
                    Legs::Dynamic => expand_now(),
                    Legs::Error { message, span } => Err(locate_span(&shared, *span, message)),
                };
                let legs = match legs {
                    Ok(l) => l,
                    Err(e) => {
                        shared
                            .reporter
                            .notice(Some(&base_ref), NoticeLevel::Error, &e);
                        finish_unstarted(
                            &shared,
                            j,
                            &base_ref,
                            Conclusion::Failure,
                            &mut summaries,
                            job,
                        );
                        state[j] = JobState::done(Conclusion::Failure, IndexMap::new());
                        mark_done(j, &mut remaining, &mut ready);
                        continue;
                    }
                };
                let selected: Vec<PlannedLeg> =
                    legs.iter().filter(|l| l.selected).cloned().collect();
                if selected.is_empty() {
                    finish_unstarted(
                        &shared,
                        j,
                        &base_ref,
                        Conclusion::Skipped,
                        &mut summaries,
                        job,
                    );
                    state[j] = JobState::done(Conclusion::Skipped, IndexMap::new());
                    mark_done(j, &mut remaining, &mut ready);
                    continue;
                }
                // Strategy values.
                let sctx = Contexts::new()
                    .with("github", shared.github.clone())
                    .with("needs", needs.clone())
                    .with("vars", shared.vars.clone())
                    .with("inputs", shared.inputs.clone());
                let strategy = job.strategy.as_ref();
                let fail_fast = strategy
                    .and_then(|s| s.fail_fast.as_ref())
                    .map(|y| {
                        eval_value(&shared, y, &sctx)
                            .map(|v| v.is_truthy())
                            .unwrap_or(true)
                    })
                    .unwrap_or(true);
                let total = legs.len();
                let max_parallel = strategy
                    .and_then(|s| s.max_parallel.as_ref())
                    .and_then(|y| eval_value(&shared, y, &sctx).ok())
                    .map(|v| v.to_number())
                    .filter(|v| *v >= 1.0 && v.is_finite())
                    .map(|v| v as usize)
                    .unwrap_or(total);
                max_parallel_of.insert(j, max_parallel.max(1));
                let mut slots = Vec::with_capacity(selected.len());
                for (li, leg) in selected.iter().enumerate() {
                    // A job whose condition held although the run is cancelled (`always()`)
                    // runs as on GitHub: the run's cancellation does not stop it, only a hard
                    // cancel does.
                    let soft = if run_cancel.soft.is_cancelled() {
                        CancellationToken::new()
                    } else {
                        run_cancel.soft.child_token()
                    };
                    let cancel = Cancel {
                        soft,
                        hard: run_cancel.hard.clone(),
                    };
                    slots.push(LegSlot {
                        name: leg.name.clone(),
                        matrix: leg.matrix.clone(),
                        outcome: None,
                        cancel: cancel.clone(),
                    });
                    let matrix_json = if pj.has_matrix {
                        Some(leg.matrix.to_json())
                    } else {
                        None
                    };
                    let raw_id = &job.id.value;
                    let key = if pj.has_matrix {
                        format!("{}{raw_id}-{}", shared.key_prefix, leg.job_index)
                    } else {
                        format!("{}{raw_id}", shared.key_prefix)
                    };
                    let strategy_ctx = Value::object(vec![
                        ("fail-fast".to_owned(), Value::Bool(fail_fast)),
                        ("job-index".to_owned(), Value::Number(leg.job_index as f64)),
                        ("job-total".to_owned(), Value::Number(total as f64)),
                        (
                            "max-parallel".to_owned(),
                            Value::Number(max_parallel as f64),
                        ),
                    ]);
                    let spec = LegSpec {
                        job_index: pj.index,
                        key: key.clone(),
                        job_ref: JobRef {
                            id: pj.id.clone(),
                            name: leg.name.clone(),
                            matrix: matrix_json,
                            key: key.clone(),
                        },
                        matrix: if pj.has_matrix {
                            leg.matrix.clone()
                        } else {
                            Value::Null
                        },
                        strategy: strategy_ctx,
                        needs: needs.clone(),
                    };
                    // Concurrency group of this leg.
                    let group = job.concurrency.as_ref().and_then(|c| {
                        let gctx = Contexts::new()
                            .with("github", shared.github.clone())
                            .with("needs", needs.clone())
                            .with("strategy", spec.strategy.clone())
                            .with("matrix", spec.matrix.clone())
                            .with("vars", shared.vars.clone())
                            .with("inputs", shared.inputs.clone());
                        let g = eval_value(&shared, &c.group, &gctx).ok()?.to_gh_string()?;
                        let cancel_running = c
                            .cancel_in_progress
                            .as_ref()
                            .and_then(|y| eval_value(&shared, y, &gctx).ok())
                            .is_some_and(|v| v.is_truthy());
                        Some((g, cancel_running))
                    });
                    let launch = LegLaunch {
                        shared: shared.clone(),
                        spec,
                        cancel,
                        job: j,
                        leg: li,
                    };
                    match group {
                        None => queue.push_back(launch),
                        Some((g, cancel_running)) => {
                            leg_group.insert((j, li), g.clone());
                            let entry = groups.entry(g.clone()).or_insert((None, None));
                            if entry.0.is_none() {
                                entry.0 = Some((j, li));
                                queue.push_back(launch);
                            } else {
                                if let Some((pj_, pl)) = entry.1.take() {
                                    // The older pending leg is cancelled.
                                    if let Some(r) = runs.get(&pj_) {
                                        r.legs[pl].cancel.soft.cancel();
                                        cancelled_since_scan = true;
                                    }
                                    waiting_for_group.retain(|(a, b, _)| !(*a == pj_ && *b == pl));
                                    // Its token is cancelled: the task reports it cancelled
                                    // without running.
                                    if let Some(i) =
                                        pending.iter().position(|l| l.job == pj_ && l.leg == pl)
                                    {
                                        let l = pending.remove(i);
                                        l.cancel.soft.cancel();
                                        cancelled_since_scan = true;
                                        queue.push_back(l);
                                    }
                                }
                                if cancel_running
                                    && let Some((rj, rl)) = entry.0
                                    && let Some(r) = runs.get(&rj)
                                {
                                    r.legs[rl].cancel.soft.cancel();
                                    cancelled_since_scan = true;
                                }
                                entry.1 = Some((j, li));
                                waiting_for_group.push((j, li, g));
                                pending.push(launch);
                            }
                        }
                    }
                }
                runs.insert(
                    j,
                    JobRun {
                        pending: slots.len(),
                        legs: slots,
                        fail_fast,
                        finished_order: Vec::new(),
                    },
                );
                state[j] = JobState::Running;
            }
        }

        // Start queued legs while there are slots; cancelled ones end at once without a slot.
        // With every slot taken only a cancelled leg can leave the queue, and a queued leg is
        // only cancelled by this loop or with the run: otherwise the scan stops at once (it
        // runs once per finished leg; over a queue of 1,000 legs that was 500,000 token checks,
        // each taking a lock).
        let scan_all = std::mem::take(&mut cancelled_since_scan) || run_cancel.soft.is_cancelled();
        let mut k = 0;
        while k < queue.len() {
            if running_global >= parallel && !scan_all {
                break;
            }
            let (qj, qleg, cancelled) = {
                let l = &queue[k];
                (l.job, l.leg, l.cancel.soft.is_cancelled())
            };
            // All slots taken: only cancelled legs can leave the queue. Said before the
            // per-job lookups, as this scan runs once per finished leg over every queued one.
            if !cancelled && running_global >= parallel {
                k += 1;
                continue;
            }
            let job_running = running_per_job.get(&qj).copied().unwrap_or(0);
            let job_limit = max_parallel_of.get(&qj).copied().unwrap_or(1);
            if cancelled {
                if let Some(l) = queue.remove(k) {
                    l.spawn(&mut tasks);
                }
            } else if running_global < parallel && job_running < job_limit {
                if let Some(l) = queue.remove(k) {
                    running_global += 1;
                    *running_per_job.entry(qj).or_default() += 1;
                    holding_slot.insert((qj, qleg));
                    l.spawn(&mut tasks);
                }
            } else {
                k += 1;
            }
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let Ok(LegDone {
            job: j,
            leg: li,
            outcome,
        }) = joined
        else {
            continue;
        };
        // Its slot frees up once this iteration is done with it (the queue is looked at only
        // after fail-fast below had its say).
        if holding_slot.remove(&(j, li)) {
            running_global = running_global.saturating_sub(1);
            if let Some(n) = running_per_job.get_mut(&j) {
                *n = n.saturating_sub(1);
            }
        }
        // Concurrency: a finished leg frees its group for the pending one.
        if let Some(g) = leg_group.remove(&(j, li))
            && let Some(entry) = groups.get_mut(&g)
        {
            if entry.0 == Some((j, li)) {
                entry.0 = entry.1.take();
                if let Some((nj, nl)) = entry.0 {
                    waiting_for_group.retain(|(a, b, _)| !(*a == nj && *b == nl));
                    let launch = pending
                        .iter()
                        .position(|l| l.job == nj && l.leg == nl)
                        .map(|i| pending.remove(i));
                    if let Some(l) = launch {
                        l.spawn(&mut tasks);
                    }
                }
            } else if entry.1 == Some((j, li)) {
                entry.1 = None;
            }
        }
        let Some(run) = runs.get_mut(&j) else {
            continue;
        };
        let failed_hard = outcome.conclusion == Conclusion::Failure && !outcome.continue_on_error;
        if !outcome.step_summary.is_empty() {
            step_summaries
                .entry(j)
                .or_default()
                .push((run.legs[li].name.clone(), outcome.step_summary.clone()));
        }
        run.legs[li].outcome = Some(outcome);
        run.finished_order.push(li);
        run.pending -= 1;
        if failed_hard && run.fail_fast && run.legs.len() > 1 {
            for (k, leg) in run.legs.iter().enumerate() {
                if k != li && leg.outcome.is_none() {
                    leg.cancel.soft.cancel();
                    cancelled_since_scan = true;
                }
            }
        }
        if run.pending == 0 {
            let (result, outputs) = aggregate(run);
            let pj = &plan.jobs[j];
            let job = &wf.jobs[pj.index];
            let ids = step_ids(&job.steps);
            let mut entries = Vec::new();
            for leg in &run.legs {
                let Some(o) = &leg.outcome else { continue };
                if let Some((jobs, sums)) = &o.called {
                    entries.extend(jobs.iter().cloned());
                    step_summaries
                        .entry(j)
                        .or_default()
                        .extend(sums.iter().cloned());
                    continue;
                }
                entries.push(JobSummary {
                    id: pj.id.clone(),
                    name: leg.name.clone(),
                    matrix: if pj.has_matrix {
                        Some(leg.matrix.to_json())
                    } else {
                        None
                    },
                    conclusion: o.conclusion,
                    outputs: o.outputs.clone(),
                    duration_ms: ms(o.duration),
                    steps: if o.steps.is_empty() {
                        skipped_steps(job, &ids)
                    } else {
                        o.steps.clone()
                    },
                });
            }
            summaries.insert(j, entries);
            state[j] = JobState::done(result, outputs);
            mark_done(j, &mut remaining, &mut ready);
        }
    }

    // Anything never started (cannot normally happen: cycles are rejected at load).
    for (j, st) in state.iter().enumerate() {
        if matches!(st, JobState::Waiting) && plan.jobs[j].selected {
            let pj = &plan.jobs[j];
            let job = &wf.jobs[pj.index];
            let r = JobRef {
                id: pj.id.clone(),
                name: pj.name.clone(),
                matrix: None,
                key: pj.id.clone(),
            };
            finish_unstarted(&shared, j, &r, Conclusion::Cancelled, &mut summaries, job);
        }
    }

    let mut jobs = Vec::new();
    let mut summaries_out = Vec::new();
    let mut any_failure = false;
    let mut any_cancelled = run_cancel.soft.is_cancelled();
    let mut job_results = Vec::new();
    for &j in &plan.order {
        if let Some(entries) = summaries.remove(&j) {
            jobs.extend(entries);
        }
        if let Some(s) = step_summaries.remove(&j) {
            summaries_out.extend(s);
        }
        if let JobState::Done {
            result, outputs, ..
        } = &state[j]
        {
            job_results.push((plan.jobs[j].index, *result, outputs.clone()));
            // Jobs that were not selected (or ran elsewhere, `given`) do not decide this run.
            if !plan.jobs[j].selected {
                continue;
            }
            match result {
                Conclusion::Failure => any_failure = true,
                Conclusion::Cancelled => any_cancelled = true,
                _ => {}
            }
        }
    }
    let conclusion = if any_failure {
        Conclusion::Failure
    } else if any_cancelled {
        Conclusion::Cancelled
    } else {
        Conclusion::Success
    };
    RunResult {
        conclusion,
        jobs,
        step_summaries: summaries_out,
        job_results,
        duration: started.elapsed(),
    }
}

struct LegLaunch {
    shared: Arc<Shared>,
    spec: LegSpec,
    cancel: Cancel,
    job: usize,
    leg: usize,
}

/// A finished leg.
struct LegDone {
    job: usize,
    leg: usize,
    outcome: LegOutcome,
}

impl LegLaunch {
    fn spawn(self, tasks: &mut JoinSet<LegDone>) {
        let LegLaunch {
            shared,
            spec,
            cancel,
            job,
            leg,
        } = self;
        tasks.spawn(async move {
            let outcome = run_leg(shared, spec, cancel).await;
            LegDone { job, leg, outcome }
        });
    }
}

async fn run_leg(shared: Arc<Shared>, spec: LegSpec, cancel: Cancel) -> LegOutcome {
    let cancelled_before_start = |shared: &Shared, spec: &LegSpec| {
        let job = &shared.workflow.jobs[spec.job_index];
        let ids = step_ids(&job.steps);
        shared.reporter.event(&RunEvent::JobFinished {
            job: spec.job_ref.clone(),
            conclusion: Conclusion::Cancelled,
            outputs: IndexMap::new(),
            duration_ms: 0,
        });
        LegOutcome {
            conclusion: Conclusion::Cancelled,
            continue_on_error: false,
            outputs: IndexMap::new(),
            steps: skipped_steps(job, &ids),
            step_summary: String::new(),
            duration: Duration::ZERO,
            called: None,
        }
    };
    let token: CancellationToken = cancel.soft.clone();
    if token.is_cancelled() {
        return cancelled_before_start(&shared, &spec);
    }
    let job = &shared.workflow.jobs[spec.job_index];
    if job.uses.is_some() {
        return crate::run::call::run_call(shared.clone(), spec, cancel).await;
    }
    LegRunner::new(&shared, job, &spec, cancel).run().await
}

fn skipped_steps(job: &crate::workflow::Job, ids: &[String]) -> Vec<StepSummary> {
    job.steps
        .iter()
        .zip(ids)
        .map(|(s, id)| StepSummary {
            id: id.clone(),
            name: default_step_name(s),
            outcome: Conclusion::Skipped,
            conclusion: Conclusion::Skipped,
            outputs: IndexMap::new(),
            duration_ms: 0,
            cache: None,
        })
        .collect()
}

fn finish_unstarted(
    shared: &Shared,
    j: usize,
    job_ref: &JobRef,
    conclusion: Conclusion,
    summaries: &mut HashMap<usize, Vec<JobSummary>>,
    job: &crate::workflow::Job,
) {
    shared.reporter.event(&RunEvent::JobFinished {
        job: job_ref.clone(),
        conclusion,
        outputs: IndexMap::new(),
        duration_ms: 0,
    });
    let ids = step_ids(&job.steps);
    summaries.insert(
        j,
        vec![JobSummary {
            id: job_ref.id.clone(),
            name: job_ref.name.clone(),
            matrix: None,
            conclusion,
            outputs: IndexMap::new(),
            duration_ms: 0,
            steps: skipped_steps(job, &ids),
        }],
    );
}

/// A job's result as its dependants see it, and its merged outputs.
fn aggregate(run: &JobRun) -> (Conclusion, IndexMap<String, String>) {
    let mut any_failed = false;
    let mut any_cancelled = false;
    let mut all_skipped = true;
    for leg in &run.legs {
        let Some(o) = &leg.outcome else { continue };
        match o.conclusion {
            Conclusion::Failure if !o.continue_on_error => any_failed = true,
            Conclusion::Cancelled => any_cancelled = true,
            _ => {}
        }
        if o.conclusion != Conclusion::Skipped {
            all_skipped = false;
        }
    }
    let result = if any_failed {
        Conclusion::Failure
    } else if any_cancelled {
        Conclusion::Cancelled
    } else if all_skipped {
        Conclusion::Skipped
    } else {
        Conclusion::Success
    };
    let mut outputs = IndexMap::new();
    for &li in &run.finished_order {
        if let Some(o) = &run.legs[li].outcome {
            for (k, v) in &o.outputs {
                if !v.is_empty() {
                    outputs.insert(k.clone(), v.clone());
                }
            }
        }
    }
    (result, outputs)
}

fn eval_value(shared: &Shared, y: &YStr, ctx: &Contexts) -> Result<Value, String> {
    // `fail-fast: false` is the boolean false, not the truthy string 'false'.
    if let Some(v) = crate::run::job::literal(y) {
        return Ok(v);
    }
    let t = crate::expr::Template::parse(&y.text)
        .map_err(|e| locate(shared, y, e.offset, e.len, &e.message))?;
    t.eval(ctx)
        .map_err(|e| locate(shared, y, e.offset, e.len, &e.message))
}

fn locate(shared: &Shared, y: &YStr, offset: usize, len: usize, message: &str) -> String {
    let span = y.span_of(&shared.source, offset..offset + len);
    locate_span(shared, span, message)
}

fn locate_span(shared: &Shared, span: crate::source::Span, message: &str) -> String {
    let lc = shared.source.line_col(span.start);
    format!(
        "{}:{}:{}: {message}",
        shared.source.path().display(),
        lc.line,
        lc.col
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The old construction: every job's `needs` object built from scratch.
    fn needs_naive(
        needs: &[usize],
        ids: &[&str],
        done: &[(Conclusion, IndexMap<String, String>)],
    ) -> Value {
        let mut needs_obj = Object::new();
        for &d in needs {
            let (result, outputs) = &done[d];
            let mut outs = Object::new();
            for (k, v) in outputs {
                outs.insert(k.clone(), Value::str(v));
            }
            needs_obj.insert(
                ids[d],
                Value::object(vec![
                    ("result".to_owned(), Value::str(result.as_str())),
                    ("outputs".to_owned(), Value::from_object(outs)),
                ]),
            );
        }
        Value::from_object(needs_obj)
    }

    #[test]
    fn shared_needs_context_equals_the_one_built_per_job() {
        let ids = ["build", "Lint", "test", "docs"];
        let outs = |pairs: &[(&str, &str)]| -> IndexMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let done = vec![
            (Conclusion::Success, outs(&[("a", "1"), ("B", "two")])),
            (Conclusion::Failure, outs(&[])),
            (Conclusion::Skipped, outs(&[])),
            (Conclusion::Cancelled, outs(&[("x", "")])),
        ];
        let state: Vec<JobState> = done
            .iter()
            .map(|(r, o)| JobState::done(*r, o.clone()))
            .collect();
        let mut cache = NeedsContexts::default();
        let lists: [&[usize]; 6] = [
            &[],
            &[0],
            &[0, 1, 2, 3],
            &[3, 2, 1, 0],
            &[1, 1],
            &[0, 1, 2, 3],
        ];
        for needs in lists {
            let got = cache.get(needs, |d| match &state[d] {
                JobState::Done { entry, .. } => Some((ids[d].to_owned(), entry.clone())),
                _ => None,
            });
            let want = needs_naive(needs, &ids, &done);
            assert_eq!(got, want, "{needs:?}");
            assert_eq!(got.to_json(), want.to_json(), "{needs:?}");
            // Lookups see the same values, ignoring case as GitHub does.
            if let (Value::Object(g), Some(&first)) = (&got, needs.first()) {
                let upper = ids[first].to_uppercase();
                assert_eq!(
                    g.get(&upper),
                    want_entry(&want, ids[first]).as_ref(),
                    "{needs:?}"
                );
            }
        }
        // One object per distinct non-empty list, order included.
        assert_eq!(cache.by_list.len(), 4);
    }

    fn want_entry(v: &Value, id: &str) -> Option<Value> {
        match v {
            Value::Object(o) => o.get(id).cloned(),
            _ => None,
        }
    }

    #[test]
    fn ancestor_sets_match_a_walk_of_the_graph() {
        // A pseudo-random DAG (needs only point at earlier jobs) of 150 jobs: more than two
        // words of bits.
        let n = 150;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let needs: Vec<Vec<usize>> = (0..n)
            .map(|j| {
                if j == 0 {
                    return Vec::new();
                }
                let k = (rnd() % 4) as usize;
                (0..k).map(|_| (rnd() % j as u64) as usize).collect()
            })
            .collect();
        let order: Vec<usize> = (0..n).collect();
        let sets = ancestor_sets(n, &order, |j| &needs[j]);
        for j in 0..n {
            let mut seen = vec![false; n];
            let mut stack = needs[j].clone();
            while let Some(d) = stack.pop() {
                if !seen[d] {
                    seen[d] = true;
                    stack.extend(needs[d].iter().copied());
                }
            }
            let want: Vec<usize> = (0..n).filter(|&d| seen[d]).collect();
            let got: Vec<usize> = members(&sets[j]).collect();
            assert_eq!(got, want, "job {j}");
        }
    }
}
