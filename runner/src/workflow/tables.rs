//! Data taken from GitHub's documentation, in one place so it is easy to keep current.
//!
//! Sources (read 2026-11-24): "Events that trigger workflows", "Workflow syntax"
//! (`permissions`, `runs-on`, `shell`), "GitHub-hosted runners" (labels). actionlint's users
//! complain most about stale tables like these (validate.md §4), so an unknown event or label
//! is a lint finding, never an error.

/// Which filters an event accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filters {
    /// None.
    None,
    /// `branches`, `branches-ignore`, `tags`, `tags-ignore`, `paths`, `paths-ignore` (push).
    Push,
    /// `branches`, `branches-ignore`, `paths`, `paths-ignore` (pull_request*).
    PullRequest,
    /// `workflows`, `branches`, `branches-ignore` (workflow_run).
    WorkflowRun,
    /// `names`, `versions` (image_version).
    ImageVersion,
}

impl Filters {
    /// The filter keys this kind accepts.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Filters::None => &[],
            Filters::Push => &[
                "branches",
                "branches-ignore",
                "tags",
                "tags-ignore",
                "paths",
                "paths-ignore",
            ],
            Filters::PullRequest => &["branches", "branches-ignore", "paths", "paths-ignore"],
            Filters::WorkflowRun => &["workflows", "branches", "branches-ignore"],
            Filters::ImageVersion => &["names", "versions"],
        }
    }
}

/// An event GitHub can trigger workflows on.
#[derive(Debug)]
pub struct EventInfo {
    /// The event name.
    pub name: &'static str,
    /// Activity types; `None` when the event has no `types` filter, `Some(&[])` when any type
    /// is allowed (repository_dispatch).
    pub types: Option<&'static [&'static str]>,
    /// Which filters apply.
    pub filters: Filters,
}

const PR_TYPES: &[&str] = &[
    "assigned",
    "unassigned",
    "labeled",
    "unlabeled",
    "opened",
    "edited",
    "closed",
    "reopened",
    "synchronize",
    "converted_to_draft",
    "ready_for_review",
    "locked",
    "unlocked",
    "review_requested",
    "review_request_removed",
    "auto_merge_enabled",
    "auto_merge_disabled",
    "enqueued",
    "dequeued",
    "milestoned",
    "demilestoned",
];

macro_rules! ev {
    ($name:literal) => {
        EventInfo { name: $name, types: None, filters: Filters::None }
    };
    ($name:literal, [$($t:literal),*]) => {
        EventInfo { name: $name, types: Some(&[$($t),*]), filters: Filters::None }
    };
}

/// Every event, alphabetically.
pub const EVENTS: &[EventInfo] = &[
    ev!("branch_protection_rule", ["created", "edited", "deleted"]),
    ev!(
        "check_run",
        ["created", "rerequested", "completed", "requested_action"]
    ),
    ev!("check_suite", ["completed"]),
    ev!("create"),
    ev!("delete"),
    ev!("deployment"),
    ev!("deployment_status"),
    ev!(
        "discussion",
        [
            "created",
            "edited",
            "deleted",
            "transferred",
            "pinned",
            "unpinned",
            "labeled",
            "unlabeled",
            "locked",
            "unlocked",
            "category_changed",
            "answered",
            "unanswered"
        ]
    ),
    ev!("discussion_comment", ["created", "edited", "deleted"]),
    ev!("fork"),
    ev!("gollum"),
    EventInfo {
        name: "image_version",
        types: None,
        filters: Filters::ImageVersion,
    },
    ev!("issue_comment", ["created", "edited", "deleted"]),
    ev!(
        "issues",
        [
            "opened",
            "edited",
            "deleted",
            "transferred",
            "pinned",
            "unpinned",
            "closed",
            "reopened",
            "assigned",
            "unassigned",
            "labeled",
            "unlabeled",
            "locked",
            "unlocked",
            "milestoned",
            "demilestoned",
            "typed",
            "untyped"
        ]
    ),
    ev!("label", ["created", "edited", "deleted"]),
    ev!("merge_group", ["checks_requested"]),
    ev!(
        "milestone",
        ["created", "closed", "opened", "edited", "deleted"]
    ),
    ev!("page_build"),
    ev!(
        "project",
        ["created", "closed", "reopened", "edited", "deleted"]
    ),
    ev!(
        "project_card",
        ["created", "moved", "converted", "edited", "deleted"]
    ),
    ev!("project_column", ["created", "updated", "moved", "deleted"]),
    ev!("public"),
    EventInfo {
        name: "pull_request",
        types: Some(PR_TYPES),
        filters: Filters::PullRequest,
    },
    ev!("pull_request_review", ["submitted", "edited", "dismissed"]),
    ev!(
        "pull_request_review_comment",
        ["created", "edited", "deleted"]
    ),
    ev!("pull_request_review_thread", ["resolved", "unresolved"]),
    EventInfo {
        name: "pull_request_target",
        types: Some(PR_TYPES),
        filters: Filters::PullRequest,
    },
    EventInfo {
        name: "push",
        types: None,
        filters: Filters::Push,
    },
    ev!("registry_package", ["published", "updated"]),
    ev!(
        "release",
        [
            "published",
            "unpublished",
            "created",
            "edited",
            "deleted",
            "prereleased",
            "released"
        ]
    ),
    EventInfo {
        name: "repository_dispatch",
        types: Some(&[]),
        filters: Filters::None,
    },
    ev!("schedule"),
    ev!("status"),
    ev!("watch", ["started"]),
    ev!("workflow_call"),
    ev!("workflow_dispatch"),
    EventInfo {
        name: "workflow_run",
        types: Some(&["completed", "requested", "in_progress"]),
        filters: Filters::WorkflowRun,
    },
];

/// Looks an event up by name.
pub fn event(name: &str) -> Option<&'static EventInfo> {
    EVENTS.iter().find(|e| e.name == name)
}

/// Permission scopes and the levels each accepts.
pub const PERMISSION_SCOPES: &[(&str, &[&str])] = &[
    ("actions", &["read", "write", "none"]),
    ("artifact-metadata", &["read", "write", "none"]),
    ("attestations", &["read", "write", "none"]),
    ("checks", &["read", "write", "none"]),
    ("contents", &["read", "write", "none"]),
    ("deployments", &["read", "write", "none"]),
    ("discussions", &["read", "write", "none"]),
    ("id-token", &["write", "none"]),
    ("issues", &["read", "write", "none"]),
    ("models", &["read", "none"]),
    ("packages", &["read", "write", "none"]),
    ("pages", &["read", "write", "none"]),
    ("pull-requests", &["read", "write", "none"]),
    ("repository-projects", &["read", "write", "none"]),
    ("security-events", &["read", "write", "none"]),
    ("statuses", &["read", "write", "none"]),
];

/// Labels of GitHub-hosted runners and the generic self-hosted labels.
pub const GITHUB_HOSTED_LABELS: &[&str] = &[
    "ubuntu-latest",
    "ubuntu-24.04",
    "ubuntu-22.04",
    "ubuntu-20.04",
    "ubuntu-24.04-arm",
    "ubuntu-22.04-arm",
    "ubuntu-slim",
    "windows-latest",
    "windows-2025",
    "windows-2022",
    "windows-2019",
    "windows-11-arm",
    "macos-latest",
    "macos-26",
    "macos-15",
    "macos-14",
    "macos-13",
    "macos-15-intel",
    "macos-latest-large",
    "macos-26-large",
    "macos-15-large",
    "macos-14-large",
    "macos-13-large",
    "macos-latest-xlarge",
    "macos-26-xlarge",
    "macos-15-xlarge",
    "macos-14-xlarge",
    "macos-13-xlarge",
];

/// Labels every self-hosted runner has.
pub const SELF_HOSTED_LABELS: &[&str] = &[
    "self-hosted",
    "linux",
    "macos",
    "windows",
    "x64",
    "x86",
    "arm",
    "arm64",
];

/// Shells a `run:` step may name on Linux and macOS runners.
pub const SHELLS_UNIX: &[&str] = &["bash", "pwsh", "python", "sh"];
/// Shells a `run:` step may name on Windows runners.
pub const SHELLS_WINDOWS: &[&str] = &["bash", "pwsh", "python", "cmd", "powershell"];

/// The documented keys of each section, for unknown-key checks and did-you-mean hints.
pub mod keys {
    /// Top level.
    pub const WORKFLOW: &[&str] = &[
        "name",
        "run-name",
        "on",
        "env",
        "defaults",
        "concurrency",
        "permissions",
        "jobs",
    ];
    /// pipe's top-level extension keys.
    pub const WORKFLOW_EXT: &[&str] = &["environments"];
    /// A job with steps.
    pub const JOB: &[&str] = &[
        "name",
        "needs",
        "if",
        "runs-on",
        "environment",
        "env",
        "defaults",
        "concurrency",
        "permissions",
        "outputs",
        "timeout-minutes",
        "continue-on-error",
        "strategy",
        "container",
        "services",
        "steps",
        "snapshot",
    ];
    /// A job that calls a reusable workflow.
    pub const CALL_JOB: &[&str] = &[
        "name",
        "needs",
        "if",
        "uses",
        "with",
        "secrets",
        "permissions",
        "strategy",
        "concurrency",
    ];
    /// pipe's job extension keys.
    pub const JOB_EXT: &[&str] = &["cache", "reports"];
    /// A step.
    pub const STEP: &[&str] = &[
        "id",
        "if",
        "name",
        "uses",
        "run",
        "working-directory",
        "shell",
        "with",
        "env",
        "continue-on-error",
        "timeout-minutes",
    ];
    /// pipe's step extension keys.
    pub const STEP_EXT: &[&str] = &["cache"];
    /// `container:` and services.
    pub const CONTAINER: &[&str] = &["image", "credentials", "env", "ports", "volumes", "options"];
    /// Extra keys of a service container.
    pub const SERVICE_EXTRA: &[&str] = &["command", "entrypoint"];
    /// pipe's container extension keys.
    pub const CONTAINER_EXT: &[&str] = &["platform"];
    /// `strategy:`.
    pub const STRATEGY: &[&str] = &["matrix", "fail-fast", "max-parallel"];
    /// `concurrency:`.
    pub const CONCURRENCY: &[&str] = &["group", "cancel-in-progress"];
    /// `defaults:`.
    pub const DEFAULTS: &[&str] = &["run"];
    /// `defaults.run:`.
    pub const DEFAULTS_RUN: &[&str] = &["shell", "working-directory"];
    /// `environment:`.
    pub const ENVIRONMENT: &[&str] = &["name", "url", "deployment"];
    /// `runs-on:` mapping form.
    pub const RUNS_ON: &[&str] = &["group", "labels"];
    /// `workflow_dispatch` input.
    pub const DISPATCH_INPUT: &[&str] = &["description", "required", "default", "type", "options"];
    /// `workflow_call` input.
    pub const CALL_INPUT: &[&str] = &["description", "required", "default", "type"];
    /// `workflow_call` output.
    pub const CALL_OUTPUT: &[&str] = &["description", "value"];
    /// `workflow_call` secret.
    pub const CALL_SECRET: &[&str] = &["description", "required"];
    /// `credentials:`.
    pub const CREDENTIALS: &[&str] = &["username", "password"];
    /// Action metadata top level.
    pub const ACTION: &[&str] = &[
        "name",
        "author",
        "description",
        "inputs",
        "outputs",
        "runs",
        "branding",
    ];
    /// Action input.
    pub const ACTION_INPUT: &[&str] = &["description", "required", "default", "deprecationMessage"];
    /// Action output.
    pub const ACTION_OUTPUT: &[&str] = &["description", "value"];
    /// `runs:` of a composite action.
    pub const RUNS_COMPOSITE: &[&str] = &["using", "steps"];
    /// `runs:` of a JavaScript action.
    pub const RUNS_NODE: &[&str] = &["using", "main", "pre", "pre-if", "post", "post-if"];
    /// `runs:` of a Docker action.
    pub const RUNS_DOCKER: &[&str] = &[
        "using",
        "image",
        "args",
        "entrypoint",
        "env",
        "pre-entrypoint",
        "post-entrypoint",
        "pre-if",
        "post-if",
    ];
}
