//! The run's event stream and the run summary: the only serialised, versioned types of a run.
//!
//! One stream of [`RunEvent`]s feeds the terminal reporter, `--json` (one object a line), the
//! store and the [`Summary`] (`--summary FILE`, schema version 1, decisions.md). Event and
//! summary fields are a public contract: add fields, never rename or remove them within a
//! version.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// Version of the event stream and of the summary schema.
pub const SCHEMA_VERSION: u32 = 1;

/// How a job or step ended (GitHub's conclusions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Conclusion {
    /// It succeeded.
    Success,
    /// It failed.
    Failure,
    /// It was cancelled.
    Cancelled,
    /// It did not run because its condition was false.
    Skipped,
}

impl Conclusion {
    /// GitHub's spelling (`success`, `failure`, `cancelled`, `skipped`).
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Skipped => "skipped",
        }
    }
}

/// Identifies one job (one matrix leg) in events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRef {
    /// The job id (`<caller>/<callee>` inside a called reusable workflow).
    pub id: String,
    /// The display name (`test (linux, 1.5)`).
    pub name: String,
    /// Matrix values, null for a non-matrix job.
    pub matrix: Option<serde_json::Value>,
    /// A key unique within the run (the job id, plus `-N` for matrix leg N); names the leg's
    /// log folder.
    #[serde(default)]
    pub key: String,
}

/// Identifies one step in events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRef {
    /// The step id (generated ids like `__run` for steps without one).
    pub id: String,
    /// The display name.
    pub name: String,
    /// Position in the job, 0-based.
    pub index: usize,
}

/// One event of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run began.
    RunStarted {
        /// Schema version.
        version: u32,
        /// Run number (`github.run_number`).
        run: u64,
        /// Workflow file.
        workflow: String,
        /// Workflow name.
        name: String,
        /// Triggering event.
        #[serde(rename = "trigger")]
        event: String,
    },
    /// A job started running (after its condition was true).
    JobStarted {
        /// Which job.
        job: JobRef,
    },
    /// A step started.
    StepStarted {
        /// Which job.
        job: JobRef,
        /// Which step.
        step: StepRef,
    },
    /// A line of output (masked).
    Log {
        /// Which job.
        job: JobRef,
        /// Which step, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<usize>,
        /// The line, without its line break.
        line: String,
    },
    /// A step finished.
    StepFinished {
        /// Which job.
        job: JobRef,
        /// Which step.
        step: StepRef,
        /// Outcome before `continue-on-error`.
        outcome: Conclusion,
        /// Conclusion after `continue-on-error`.
        conclusion: Conclusion,
        /// Outputs set by the step.
        outputs: IndexMap<String, String>,
        /// Wall time.
        duration_ms: u64,
        /// Why it failed, when it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The step cache's verdict, for steps with pipe's `cache:`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache: Option<Box<StepCacheInfo>>,
    },
    /// A job finished (or was skipped or cancelled without running).
    JobFinished {
        /// Which job.
        job: JobRef,
        /// Its conclusion.
        conclusion: Conclusion,
        /// Its outputs.
        outputs: IndexMap<String, String>,
        /// Wall time.
        duration_ms: u64,
    },
    /// The run finished.
    RunFinished {
        /// Its conclusion.
        conclusion: Conclusion,
        /// Wall time.
        duration_ms: u64,
    },
}

/// `--summary FILE`: the run's result as data (schema version 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Schema version (1).
    pub version: u32,
    /// Run number.
    pub run: u64,
    /// Workflow file as given.
    pub workflow: String,
    /// Triggering event.
    pub event: String,
    /// `success`, `failure` or `cancelled`.
    pub conclusion: Conclusion,
    /// Every job and matrix leg, in plan order.
    pub jobs: Vec<JobSummary>,
    /// What the jobs' `reports:` files held (tests, coverage, benchmarks); absent when no job
    /// declares any. The shape is `pipe_actions::reports::RunResults`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<serde_json::Value>,
}

/// One job (one matrix leg) in the summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Job id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Matrix values, null for a non-matrix job.
    pub matrix: Option<serde_json::Value>,
    /// Conclusion.
    pub conclusion: Conclusion,
    /// Outputs.
    pub outputs: IndexMap<String, String>,
    /// Wall time.
    pub duration_ms: u64,
    /// Steps, including skipped ones.
    pub steps: Vec<StepSummary>,
}

/// One step in the summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// Step id (generated when absent).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Outcome.
    pub outcome: Conclusion,
    /// Conclusion.
    pub conclusion: Conclusion,
    /// Outputs.
    pub outputs: IndexMap<String, String>,
    /// Wall time.
    pub duration_ms: u64,
    /// The step cache's verdict, for steps with pipe's `cache:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<StepCacheInfo>,
}

/// Whether a cached step was replayed or ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// Replayed from the cache.
    Hit,
    /// Ran (and was stored if it succeeded).
    Miss,
}

/// The step cache's verdict on one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCacheInfo {
    /// Hit or miss.
    pub status: CacheStatus,
    /// The key (64 hex digits).
    pub key: String,
    /// Where a hit came from (`local`, `remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What changed since the step's last stored result (a miss).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Whether a miss's result was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<bool>,
    /// Why a result was not stored, or a cache warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// How long the step took when it ran (a hit saved that much).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_their_name() {
        let e = RunEvent::RunFinished {
            conclusion: Conclusion::Success,
            duration_ms: 3,
        };
        let s = serde_json::to_string(&e).expect("json");
        assert_eq!(
            s,
            r#"{"event":"run_finished","conclusion":"success","duration_ms":3}"#
        );
        let back: RunEvent = serde_json::from_str(&s).expect("parse");
        assert_eq!(back, e);
    }
}
