//! Where each context and special function may be used: GitHub's "Context availability" table.
//!
//! GitHub refuses, at load time, a context that is not available at a workflow key (it reports
//! "Unrecognized named-value"), and the status functions and `hashFiles` only exist at some keys.
//! The table below is data copied from GitHub's documentation so it can be compared and updated
//! in one place when GitHub changes it (stale copies of this table are a known source of false
//! positives in other linters).
//!
//! Source: docs.github.com, "Contexts reference" → "Context availability"
//! (github/docs `content/actions/reference/workflows-and-actions/contexts.md`), as published in
//! 2026 and checked on 2026-11-26; it agrees with actionlint's generated `availability.go`.

use std::fmt;

/// The contexts (named values) of GitHub expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContextName {
    /// `github`
    Github,
    /// `env`
    Env,
    /// `vars`
    Vars,
    /// `job`
    Job,
    /// `jobs` (reusable workflow outputs)
    Jobs,
    /// `steps`
    Steps,
    /// `runner`
    Runner,
    /// `secrets`
    Secrets,
    /// `strategy`
    Strategy,
    /// `matrix`
    Matrix,
    /// `needs`
    Needs,
    /// `inputs`
    Inputs,
}

impl ContextName {
    /// Every context, in alphabetical order.
    pub const ALL: [ContextName; 12] = [
        ContextName::Env,
        ContextName::Github,
        ContextName::Inputs,
        ContextName::Job,
        ContextName::Jobs,
        ContextName::Matrix,
        ContextName::Needs,
        ContextName::Runner,
        ContextName::Secrets,
        ContextName::Steps,
        ContextName::Strategy,
        ContextName::Vars,
    ];

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContextName::Github => "github",
            ContextName::Env => "env",
            ContextName::Vars => "vars",
            ContextName::Job => "job",
            ContextName::Jobs => "jobs",
            ContextName::Steps => "steps",
            ContextName::Runner => "runner",
            ContextName::Secrets => "secrets",
            ContextName::Strategy => "strategy",
            ContextName::Matrix => "matrix",
            ContextName::Needs => "needs",
            ContextName::Inputs => "inputs",
        }
    }

    /// Looks a context up by name, ignoring case.
    pub fn from_name(name: &str) -> Option<ContextName> {
        ContextName::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(name))
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for ContextName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of contexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ContextSet(u16);

impl ContextSet {
    /// No context.
    pub const NONE: ContextSet = ContextSet(0);
    /// Every context.
    pub const ALL: ContextSet = ContextSet((1 << 12) - 1);

    /// The set of the given contexts.
    pub fn of(names: &[ContextName]) -> ContextSet {
        ContextSet(names.iter().fold(0, |acc, c| acc | c.bit()))
    }

    /// Whether `c` is in the set.
    pub fn contains(self, c: ContextName) -> bool {
        self.0 & c.bit() != 0
    }

    /// The set with `c` added.
    pub fn with(self, c: ContextName) -> ContextSet {
        ContextSet(self.0 | c.bit())
    }

    /// The set without `c`.
    pub fn without(self, c: ContextName) -> ContextSet {
        ContextSet(self.0 & !c.bit())
    }

    /// The members in alphabetical order.
    pub fn iter(self) -> impl Iterator<Item = ContextName> {
        ContextName::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

/// Functions that are only available at some workflow keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpecialFunction {
    /// `always()`
    Always,
    /// `cancelled()`
    Cancelled,
    /// `failure()`
    Failure,
    /// `hashFiles()`
    HashFiles,
    /// `success()`
    Success,
}

impl SpecialFunction {
    /// Every special function.
    pub const ALL: [SpecialFunction; 5] = [
        SpecialFunction::Always,
        SpecialFunction::Cancelled,
        SpecialFunction::Failure,
        SpecialFunction::HashFiles,
        SpecialFunction::Success,
    ];

    /// The documented spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialFunction::Always => "always",
            SpecialFunction::Cancelled => "cancelled",
            SpecialFunction::Failure => "failure",
            SpecialFunction::HashFiles => "hashFiles",
            SpecialFunction::Success => "success",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of special functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FunctionSet(u8);

impl FunctionSet {
    /// No special function.
    pub const NONE: FunctionSet = FunctionSet(0);
    /// Every special function.
    pub const ALL: FunctionSet = FunctionSet((1 << 5) - 1);
    /// The status functions (allowed in `if:`).
    pub const STATUS: FunctionSet = FunctionSet(
        (1 << SpecialFunction::Always as u8)
            | (1 << SpecialFunction::Cancelled as u8)
            | (1 << SpecialFunction::Failure as u8)
            | (1 << SpecialFunction::Success as u8),
    );

    /// The set of the given functions.
    pub fn of(fns: &[SpecialFunction]) -> FunctionSet {
        FunctionSet(fns.iter().fold(0, |acc, f| acc | f.bit()))
    }

    /// Whether `f` is in the set.
    pub fn contains(self, f: SpecialFunction) -> bool {
        self.0 & f.bit() != 0
    }

    /// The members in alphabetical order.
    pub fn iter(self) -> impl Iterator<Item = SpecialFunction> {
        SpecialFunction::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
}

/// The workflow keys of GitHub's availability table, one per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkflowKey {
    /// `run-name`
    RunName,
    /// `concurrency`
    Concurrency,
    /// `env`
    Env,
    /// `jobs.<job_id>.concurrency`
    JobConcurrency,
    /// `jobs.<job_id>.container`
    JobContainer,
    /// `jobs.<job_id>.container.credentials`
    JobContainerCredentials,
    /// `jobs.<job_id>.container.env.<env_id>`
    JobContainerEnv,
    /// `jobs.<job_id>.container.image`
    JobContainerImage,
    /// `jobs.<job_id>.continue-on-error`
    JobContinueOnError,
    /// `jobs.<job_id>.defaults.run`
    JobDefaultsRun,
    /// `jobs.<job_id>.env`
    JobEnv,
    /// `jobs.<job_id>.environment`
    JobEnvironment,
    /// `jobs.<job_id>.environment.url`
    JobEnvironmentUrl,
    /// `jobs.<job_id>.if`
    JobIf,
    /// `jobs.<job_id>.name`
    JobName,
    /// `jobs.<job_id>.outputs.<output_id>`
    JobOutputs,
    /// `jobs.<job_id>.runs-on`
    JobRunsOn,
    /// `jobs.<job_id>.secrets.<secrets_id>`
    JobSecrets,
    /// `jobs.<job_id>.services`
    JobServices,
    /// `jobs.<job_id>.services.<service_id>.credentials`
    JobServiceCredentials,
    /// `jobs.<job_id>.services.<service_id>.env.<env_id>`
    JobServiceEnv,
    /// `jobs.<job_id>.steps.continue-on-error`
    StepContinueOnError,
    /// `jobs.<job_id>.steps.env`
    StepEnv,
    /// `jobs.<job_id>.steps.if`
    StepIf,
    /// `jobs.<job_id>.steps.name`
    StepName,
    /// `jobs.<job_id>.steps.run`
    StepRun,
    /// `jobs.<job_id>.steps.timeout-minutes`
    StepTimeoutMinutes,
    /// `jobs.<job_id>.steps.with`
    StepWith,
    /// `jobs.<job_id>.steps.working-directory`
    StepWorkingDirectory,
    /// `jobs.<job_id>.strategy`
    JobStrategy,
    /// `jobs.<job_id>.timeout-minutes`
    JobTimeoutMinutes,
    /// `jobs.<job_id>.with.<with_id>`
    JobWith,
    /// `on.workflow_call.inputs.<inputs_id>.default`
    WorkflowCallInputDefault,
    /// `on.workflow_call.outputs.<output_id>.value`
    WorkflowCallOutputValue,
}

impl WorkflowKey {
    /// Every row of the table, in the documentation's order.
    pub const ALL: [WorkflowKey; 34] = [
        WorkflowKey::RunName,
        WorkflowKey::Concurrency,
        WorkflowKey::Env,
        WorkflowKey::JobConcurrency,
        WorkflowKey::JobContainer,
        WorkflowKey::JobContainerCredentials,
        WorkflowKey::JobContainerEnv,
        WorkflowKey::JobContainerImage,
        WorkflowKey::JobContinueOnError,
        WorkflowKey::JobDefaultsRun,
        WorkflowKey::JobEnv,
        WorkflowKey::JobEnvironment,
        WorkflowKey::JobEnvironmentUrl,
        WorkflowKey::JobIf,
        WorkflowKey::JobName,
        WorkflowKey::JobOutputs,
        WorkflowKey::JobRunsOn,
        WorkflowKey::JobSecrets,
        WorkflowKey::JobServices,
        WorkflowKey::JobServiceCredentials,
        WorkflowKey::JobServiceEnv,
        WorkflowKey::StepContinueOnError,
        WorkflowKey::StepEnv,
        WorkflowKey::StepIf,
        WorkflowKey::StepName,
        WorkflowKey::StepRun,
        WorkflowKey::StepTimeoutMinutes,
        WorkflowKey::StepWith,
        WorkflowKey::StepWorkingDirectory,
        WorkflowKey::JobStrategy,
        WorkflowKey::JobTimeoutMinutes,
        WorkflowKey::JobWith,
        WorkflowKey::WorkflowCallInputDefault,
        WorkflowKey::WorkflowCallOutputValue,
    ];

    /// The key as the documentation writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowKey::RunName => "run-name",
            WorkflowKey::Concurrency => "concurrency",
            WorkflowKey::Env => "env",
            WorkflowKey::JobConcurrency => "jobs.<job_id>.concurrency",
            WorkflowKey::JobContainer => "jobs.<job_id>.container",
            WorkflowKey::JobContainerCredentials => "jobs.<job_id>.container.credentials",
            WorkflowKey::JobContainerEnv => "jobs.<job_id>.container.env.<env_id>",
            WorkflowKey::JobContainerImage => "jobs.<job_id>.container.image",
            WorkflowKey::JobContinueOnError => "jobs.<job_id>.continue-on-error",
            WorkflowKey::JobDefaultsRun => "jobs.<job_id>.defaults.run",
            WorkflowKey::JobEnv => "jobs.<job_id>.env",
            WorkflowKey::JobEnvironment => "jobs.<job_id>.environment",
            WorkflowKey::JobEnvironmentUrl => "jobs.<job_id>.environment.url",
            WorkflowKey::JobIf => "jobs.<job_id>.if",
            WorkflowKey::JobName => "jobs.<job_id>.name",
            WorkflowKey::JobOutputs => "jobs.<job_id>.outputs.<output_id>",
            WorkflowKey::JobRunsOn => "jobs.<job_id>.runs-on",
            WorkflowKey::JobSecrets => "jobs.<job_id>.secrets.<secrets_id>",
            WorkflowKey::JobServices => "jobs.<job_id>.services",
            WorkflowKey::JobServiceCredentials => "jobs.<job_id>.services.<service_id>.credentials",
            WorkflowKey::JobServiceEnv => "jobs.<job_id>.services.<service_id>.env.<env_id>",
            WorkflowKey::StepContinueOnError => "jobs.<job_id>.steps.continue-on-error",
            WorkflowKey::StepEnv => "jobs.<job_id>.steps.env",
            WorkflowKey::StepIf => "jobs.<job_id>.steps.if",
            WorkflowKey::StepName => "jobs.<job_id>.steps.name",
            WorkflowKey::StepRun => "jobs.<job_id>.steps.run",
            WorkflowKey::StepTimeoutMinutes => "jobs.<job_id>.steps.timeout-minutes",
            WorkflowKey::StepWith => "jobs.<job_id>.steps.with",
            WorkflowKey::StepWorkingDirectory => "jobs.<job_id>.steps.working-directory",
            WorkflowKey::JobStrategy => "jobs.<job_id>.strategy",
            WorkflowKey::JobTimeoutMinutes => "jobs.<job_id>.timeout-minutes",
            WorkflowKey::JobWith => "jobs.<job_id>.with.<with_id>",
            WorkflowKey::WorkflowCallInputDefault => "on.workflow_call.inputs.<inputs_id>.default",
            WorkflowKey::WorkflowCallOutputValue => "on.workflow_call.outputs.<output_id>.value",
        }
    }
}

impl fmt::Display for WorkflowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contexts and special functions GitHub allows at `key` (its "Context availability"
/// table). Functions not listed as special (`contains`, `format`, …) are allowed everywhere.
pub fn availability(key: WorkflowKey) -> (ContextSet, FunctionSet) {
    use ContextName::{
        Env, Github, Inputs, Job, Jobs, Matrix, Needs, Runner, Secrets, Steps, Strategy, Vars,
    };
    use SpecialFunction::{Always, Cancelled, Failure, HashFiles, Success};
    use WorkflowKey as K;
    let (contexts, functions): (&[ContextName], &[SpecialFunction]) = match key {
        K::RunName | K::Concurrency | K::WorkflowCallInputDefault => (&[Github, Inputs, Vars], &[]),
        K::Env => (&[Github, Secrets, Inputs, Vars], &[]),
        K::JobConcurrency
        | K::JobContainer
        | K::JobContainerImage
        | K::JobContinueOnError
        | K::JobEnvironment
        | K::JobName
        | K::JobRunsOn
        | K::JobServices
        | K::JobTimeoutMinutes
        | K::JobWith => (&[Github, Needs, Strategy, Matrix, Vars, Inputs], &[]),
        K::JobContainerCredentials | K::JobServiceCredentials => (
            &[Github, Needs, Strategy, Matrix, Env, Vars, Secrets, Inputs],
            &[],
        ),
        K::JobContainerEnv | K::JobServiceEnv => (
            &[
                Github, Needs, Strategy, Matrix, Job, Runner, Env, Vars, Secrets, Inputs,
            ],
            &[],
        ),
        K::JobDefaultsRun => (&[Github, Needs, Strategy, Matrix, Env, Vars, Inputs], &[]),
        K::JobEnv | K::JobSecrets => (
            &[Github, Needs, Strategy, Matrix, Vars, Secrets, Inputs],
            &[],
        ),
        K::JobEnvironmentUrl => (
            &[
                Github, Needs, Strategy, Matrix, Job, Runner, Env, Vars, Steps, Inputs,
            ],
            &[],
        ),
        K::JobIf => (
            &[Github, Needs, Vars, Inputs],
            &[Always, Cancelled, Success, Failure],
        ),
        K::JobOutputs => (
            &[
                Github, Needs, Strategy, Matrix, Job, Runner, Env, Vars, Secrets, Steps, Inputs,
            ],
            &[],
        ),
        K::StepContinueOnError
        | K::StepEnv
        | K::StepName
        | K::StepRun
        | K::StepTimeoutMinutes
        | K::StepWith
        | K::StepWorkingDirectory => (
            &[
                Github, Needs, Strategy, Matrix, Job, Runner, Env, Vars, Secrets, Steps, Inputs,
            ],
            &[HashFiles],
        ),
        K::StepIf => (
            &[
                Github, Needs, Strategy, Matrix, Job, Runner, Env, Vars, Steps, Inputs,
            ],
            &[Always, Cancelled, Success, Failure, HashFiles],
        ),
        K::JobStrategy => (&[Github, Needs, Vars, Inputs], &[]),
        K::WorkflowCallOutputValue => (&[Github, Jobs, Vars, Inputs], &[]),
    };
    (ContextSet::of(contexts), FunctionSet::of(functions))
}

/// The keys where `f` may be used.
pub fn keys_allowing(f: SpecialFunction) -> impl Iterator<Item = WorkflowKey> {
    WorkflowKey::ALL
        .into_iter()
        .filter(move |k| availability(*k).1.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_spot_checks() {
        let (c, f) = availability(WorkflowKey::Env);
        assert_eq!(
            c.iter().map(ContextName::as_str).collect::<Vec<_>>(),
            ["github", "inputs", "secrets", "vars"]
        );
        assert_eq!(f, FunctionSet::NONE);
        let (c, f) = availability(WorkflowKey::StepIf);
        assert!(!c.contains(ContextName::Secrets));
        assert!(f.contains(SpecialFunction::HashFiles) && f.contains(SpecialFunction::Always));
        let (c, f) = availability(WorkflowKey::JobIf);
        assert!(!c.contains(ContextName::Runner) && !c.contains(ContextName::Matrix));
        assert_eq!(f, FunctionSet::STATUS);
        assert_eq!(keys_allowing(SpecialFunction::Success).count(), 2);
        assert_eq!(keys_allowing(SpecialFunction::HashFiles).count(), 8);
        assert!(
            availability(WorkflowKey::WorkflowCallOutputValue)
                .0
                .contains(ContextName::Jobs)
        );
        for k in WorkflowKey::ALL {
            assert!(availability(k).0.contains(ContextName::Github), "{k}");
            assert!(availability(k).0.contains(ContextName::Vars), "{k}");
        }
    }
}
