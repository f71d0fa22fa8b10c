//! The HTTP API's request and response bodies (JSON). `openapi.json` describes the same shapes;
//! a test checks that the two agree.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /api/v1/runs`: a workflow to run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The workflow's path in the repository (`.github/workflows/ci.yml`).
    pub workflow_path: String,
    /// The workflow file's text.
    pub workflow: String,
    /// The triggering event (`push` when absent).
    #[serde(default)]
    pub event: Option<String>,
    /// A git repository the agents clone (a path or URL they can reach), if any.
    #[serde(default)]
    pub repo: Option<String>,
    /// The commit to check out.
    #[serde(default)]
    pub sha: Option<String>,
    /// The ref that was pushed (`refs/heads/main`).
    #[serde(default, rename = "ref")]
    pub git_ref: Option<String>,
    /// Secrets for the run's jobs (delivered only with a claimed job, masked in stored logs).
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// A job of a run as `GET /api/v1/runs/{id}` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobStatus {
    /// The job's server id.
    pub id: i64,
    /// The workflow job id.
    pub key: String,
    /// `blocked`, `queued`, `leased` or `done`.
    pub state: String,
    /// The latest attempt number (0 before the first claim).
    pub attempt: i32,
    /// `success`, `failure`, `cancelled` or `skipped` when done.
    pub result: Option<String>,
    /// The attempt whose result was accepted.
    pub accepted_attempt: Option<i32>,
    /// The job's outputs when done.
    pub outputs: BTreeMap<String, String>,
    /// The ids of the jobs it needs.
    pub needs: Vec<String>,
    /// The matrix leg's `strategy.job-index` when the row is one leg of a matrix job.
    #[serde(default)]
    pub leg: Option<i32>,
    /// The display name (`test (linux, 2)` for a leg).
    #[serde(default)]
    pub name: Option<String>,
    /// The test, coverage and benchmark results of the job's `reports:` (the accepted or
    /// latest attempt's), as `pipe run` records them in `results.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<serde_json::Value>,
}

/// A run as `POST` and `GET /api/v1/runs…` return it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunStatus {
    /// The run id.
    pub id: i64,
    /// The workflow path.
    pub workflow_path: String,
    /// The event.
    pub event: String,
    /// `running` or `done`.
    pub state: String,
    /// `success`, `failure` or `cancelled` when done.
    pub conclusion: Option<String>,
    /// Its jobs in workflow order.
    pub jobs: Vec<JobStatus>,
}

/// `POST /api/v1/agent/claim`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The agent's name (unique per agent process).
    pub agent: String,
    /// The agent's labels; a job is offered when its `runs-on` labels are a subset.
    pub labels: Vec<String>,
    /// How many jobs the agent can take now (1 when absent).
    #[serde(default)]
    pub slots: Option<u32>,
    /// How long to wait for a job, in milliseconds (at most 30,000; 0 answers at once).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// The result of a need as the claimed job sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NeedResult {
    /// `success`, `failure`, `cancelled` or `skipped`.
    pub result: String,
    /// Its outputs.
    pub outputs: BTreeMap<String, String>,
}

/// A job handed to an agent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClaimedJob {
    /// The job's server id.
    pub job_id: i64,
    /// This attempt's number; every later call names it.
    pub attempt: i32,
    /// The job token: the bearer token for this attempt's heartbeat, log and complete calls.
    pub token: String,
    /// The run id.
    pub run_id: i64,
    /// The workflow job id to run.
    pub job_key: String,
    /// The workflow's path.
    pub workflow_path: String,
    /// The workflow's text.
    pub workflow: String,
    /// The event.
    pub event: String,
    /// The repository to clone, if any.
    pub repo: Option<String>,
    /// The commit.
    pub sha: Option<String>,
    /// Results of every finished job of the run, by workflow job id (the job's needs, and
    /// their ancestors, are among them).
    pub needs: BTreeMap<String, NeedResult>,
    /// The run's secrets.
    pub secrets: BTreeMap<String, String>,
    /// The lease's length in milliseconds; heartbeat well within it.
    pub lease_ms: u64,
    /// The matrix leg to run (`strategy.job-index`), when the job is one leg of a matrix.
    #[serde(default)]
    pub leg: Option<i32>,
    /// The display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The `--matrix KEY=VALUE` filters that select exactly this leg (empty: every leg).
    #[serde(default)]
    pub matrix: BTreeMap<String, String>,
    /// The step and action cache for this job (Bazel HTTP protocol, relative to the server):
    /// a path signed by the server that works until it expires or the run ends.
    #[serde(default)]
    pub cache_path: Option<String>,
}

/// `POST /api/v1/agent/claim`'s answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClaimResponse {
    /// The jobs now leased to the agent (empty when none came before the wait ended).
    pub jobs: Vec<ClaimedJob>,
}

/// `POST …/heartbeat`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HeartbeatResponse {
    /// Whether the job should be cancelled.
    pub cancel: bool,
}

/// `POST …/complete`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// `success`, `failure`, `cancelled` or `skipped`.
    pub result: String,
    /// The job's outputs.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Claim the agent's next jobs in the same request (and the same database transaction)
    /// once the result is recorded: the answer's `jobs` are leased to the agent that claimed
    /// this one (its agent token, which must not be revoked). Never waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextClaim>,
}

/// What a completing agent claims next (`CompleteRequest::next`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NextClaim {
    /// The agent's name, as in a claim.
    pub agent: String,
    /// The agent's labels, as in a claim.
    pub labels: Vec<String>,
    /// How many jobs to take (1 when absent; 0 takes none).
    #[serde(default)]
    pub slots: Option<u32>,
}

/// `POST …/complete`'s answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CompleteResponse {
    /// True when this call recorded the result, false when it had been recorded before (a
    /// retried call).
    pub recorded: bool,
    /// The jobs now leased to the agent when the request had `next` (empty when none was
    /// queued, when the result was not recorded now, or when the agent token is revoked).
    #[serde(default)]
    pub jobs: Vec<ClaimedJob>,
}

/// An error body.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// The results a job may report.
pub const RESULTS: [&str; 4] = ["success", "failure", "cancelled", "skipped"];

/// One file of an artifact.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArtifactFile {
    /// Its path inside the artifact (`/`-separated, relative).
    pub path: String,
    /// SHA-256 of its content, hex (the blob uploaded before).
    pub digest: String,
    /// Its size in bytes.
    pub size: i64,
    /// Its Unix permission bits.
    pub mode: i32,
}

/// `POST …/artifacts`: an artifact the job uploaded (its blobs uploaded first).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArtifactUpload {
    /// The name, unique within the run.
    pub name: String,
    /// What `actions/upload-artifact` recorded about it (`artifact.json`).
    pub info: serde_json::Value,
    /// Its files.
    pub files: Vec<ArtifactFile>,
}

/// An artifact of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Artifact {
    /// The name.
    pub name: String,
    /// The server id of the job that uploaded it.
    pub job_id: i64,
    /// The attempt that uploaded it.
    pub attempt: i32,
    /// What `actions/upload-artifact` recorded about it.
    pub info: serde_json::Value,
    /// Its files.
    pub files: Vec<ArtifactFile>,
}

/// The artifacts of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ArtifactList {
    /// By name.
    pub artifacts: Vec<Artifact>,
}
