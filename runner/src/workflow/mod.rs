//! The workflow model: GitHub's workflow schema (plus pipe's extension keys) with a span on
//! every user-written value.
//!
//! [`load`] turns a [`crate::yaml::Node`] tree into a [`Workflow`] and reports every schema and
//! type problem it meets, never only the first. Values that may hold expressions are kept as
//! [`YStr`] (the scalar's string form, its span and how it was written) and are parsed and
//! checked by [`crate::check`]; the plan evaluates them. Free-form data (matrix values, `with:`
//! of reusable workflows, pipe's `environments:`) stays a [`Node`].

mod caseless;
mod load;
pub mod tables;

use indexmap::IndexMap;

pub use caseless::{Caseless, CaselessMap, CaselessSet};
pub use load::{list as list_names, load, load_action, load_str};

use crate::expr::number::format_g15;
use crate::source::{SourceFile, Span};
use crate::yaml::{Node, ScalarValue, Style};

/// A value with the span it was written at.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Sp<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Sp<T> {
    /// Wraps a value with its span.
    pub fn new(value: T, span: Span) -> Self {
        Sp { value, span }
    }
}

/// A scalar as a string: GitHub converts non-string scalars where a string is required (`3.10`
/// becomes `3.1`, `true` stays `true`, null becomes the empty string). May contain `${{ }}`.
#[derive(Clone, Debug, PartialEq)]
pub struct YStr {
    /// The string form.
    pub text: String,
    /// Where the scalar was written.
    pub span: Span,
    /// How it was written (needed to map offsets inside it to the file).
    pub style: Style,
    /// The scalar's core-schema value.
    pub value: ScalarValue,
}

impl YStr {
    /// Builds the string form of a scalar node; `None` for mappings and sequences.
    pub fn from_node(node: &Node) -> Option<YStr> {
        let s = node.as_scalar()?;
        let text = match s.value {
            ScalarValue::Null => String::new(),
            ScalarValue::Bool(b) => b.to_string(),
            ScalarValue::Number(n) => format_g15(n),
            ScalarValue::Str => s.text.clone(),
        };
        Some(YStr {
            text,
            span: node.span,
            style: s.style,
            value: s.value,
        })
    }

    /// A synthetic value (for defaults that were not written in a file).
    pub fn synthetic(text: impl Into<String>, span: Span) -> YStr {
        YStr {
            text: text.into(),
            span,
            style: Style::DoubleQuoted,
            value: ScalarValue::Str,
        }
    }

    /// Whether the text contains an expression.
    pub fn has_expr(&self) -> bool {
        self.text.contains("${{")
    }

    /// The file span of a byte range of the text.
    pub fn span_of(&self, source: &SourceFile, range: std::ops::Range<usize>) -> Span {
        if self.value != ScalarValue::Str {
            return self.span;
        }
        let node = Node {
            kind: crate::yaml::NodeKind::Scalar(crate::yaml::Scalar {
                text: self.text.clone(),
                style: self.style,
                value: self.value,
            }),
            span: self.span,
        };
        node.text_span(source.text(), range)
    }
}

impl std::fmt::Display for YStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// An ordered string map (`env:`, `with:`, `outputs:`), keys with their spans.
pub type StrMap = IndexMap<String, (Span, YStr)>;

/// `env:` — a mapping, or one expression that yields an object.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Env {
    /// No `env:`.
    #[default]
    None,
    /// A mapping of names to values.
    Map(StrMap),
    /// `env: ${{ fromJSON(...) }}`.
    Expr(YStr),
}

impl Env {
    /// The mapping entries, if any.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &YStr)> {
        let map = match self {
            Env::Map(m) => Some(m),
            _ => None,
        };
        map.into_iter()
            .flat_map(|m| m.iter().map(|(k, (_, v))| (k, v)))
    }
}

/// One workflow file.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Workflow {
    /// `name:`.
    pub name: Option<YStr>,
    /// `run-name:`.
    pub run_name: Option<YStr>,
    /// `on:` — the events in file order.
    pub on: Vec<EventTrigger>,
    /// Span of the `on` key (or of the first key when it is missing).
    pub on_span: Span,
    /// `env:`.
    pub env: Env,
    /// `defaults:`.
    pub defaults: Option<Defaults>,
    /// `concurrency:`.
    pub concurrency: Option<Concurrency>,
    /// `permissions:`.
    pub permissions: Option<Permissions>,
    /// `jobs:` in file order.
    pub jobs: Vec<Job>,
    /// pipe's `environments:` (promotion), kept as data.
    pub environments: Option<Node>,
    /// Spans of pipe extension keys used (for `--strict-github`).
    pub extension_keys: Vec<Sp<String>>,
}

impl Workflow {
    /// Finds a job by id, case-insensitively (as GitHub matches `needs`).
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs
            .iter()
            .find(|j| j.id.value.eq_ignore_ascii_case(id))
    }

    /// The trigger for an event name, if the workflow has one.
    pub fn trigger(&self, event: &str) -> Option<&EventTrigger> {
        self.on.iter().find(|t| t.name.value == event)
    }

    /// The `workflow_call` trigger, if this workflow is reusable.
    pub fn workflow_call(&self) -> Option<&WorkflowCall> {
        self.on.iter().find_map(|t| t.workflow_call.as_ref())
    }
}

/// One entry of `on:`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct EventTrigger {
    /// The event name.
    pub name: Sp<String>,
    /// `types:`.
    pub types: Vec<YStr>,
    /// Filters by name (`branches`, `branches-ignore`, `tags`, `tags-ignore`, `paths`,
    /// `paths-ignore`, `workflows`, `names`, `versions`), in file order.
    pub filters: Vec<(Sp<String>, Vec<YStr>)>,
    /// `schedule:` cron entries.
    pub crons: Vec<YStr>,
    /// `timezone:` values of `schedule:` entries (checked by `pipe validate`).
    pub timezones: Vec<YStr>,
    /// `workflow_dispatch.inputs`.
    pub dispatch_inputs: Vec<DispatchInput>,
    /// `workflow_call` configuration.
    pub workflow_call: Option<WorkflowCall>,
}

impl EventTrigger {
    /// A filter's patterns, if present.
    pub fn filter(&self, name: &str) -> Option<&[YStr]> {
        self.filters
            .iter()
            .find(|(n, _)| n.value == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Input types of `workflow_dispatch` and `workflow_call`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputType {
    /// `string`.
    String,
    /// `boolean`.
    Boolean,
    /// `number`.
    Number,
    /// `choice` (dispatch only).
    Choice,
    /// `environment` (dispatch only).
    Environment,
}

impl InputType {
    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Boolean => "boolean",
            InputType::Number => "number",
            InputType::Choice => "choice",
            InputType::Environment => "environment",
        }
    }
}

/// A `workflow_dispatch` input.
#[derive(Clone, Debug, PartialEq)]
pub struct DispatchInput {
    /// The input id.
    pub id: Sp<String>,
    /// `description:`.
    pub description: Option<YStr>,
    /// `required:`.
    pub required: bool,
    /// `default:`.
    pub default: Option<YStr>,
    /// `type:` (string when absent).
    pub ty: InputType,
    /// `options:` for `choice`.
    pub options: Vec<YStr>,
}

/// A `workflow_call` input.
#[derive(Clone, Debug, PartialEq)]
pub struct CallInput {
    /// The input id.
    pub id: Sp<String>,
    /// `required:`.
    pub required: bool,
    /// `type:` (required by GitHub).
    pub ty: InputType,
    /// `default:`.
    pub default: Option<YStr>,
}

/// A `workflow_call` output.
#[derive(Clone, Debug, PartialEq)]
pub struct CallOutput {
    /// The output id.
    pub id: Sp<String>,
    /// `value:`.
    pub value: YStr,
}

/// A `workflow_call` secret.
#[derive(Clone, Debug, PartialEq)]
pub struct CallSecret {
    /// The secret id.
    pub id: Sp<String>,
    /// `required:`.
    pub required: bool,
}

/// `on.workflow_call`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct WorkflowCall {
    /// Declared inputs.
    pub inputs: Vec<CallInput>,
    /// Declared outputs.
    pub outputs: Vec<CallOutput>,
    /// Declared secrets.
    pub secrets: Vec<CallSecret>,
}

/// `defaults:`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Defaults {
    /// `defaults.run.shell`.
    pub shell: Option<YStr>,
    /// `defaults.run.working-directory`.
    pub working_directory: Option<YStr>,
}

/// `concurrency:`.
#[derive(Clone, Debug, PartialEq)]
pub struct Concurrency {
    /// The group name (may contain expressions).
    pub group: YStr,
    /// `cancel-in-progress:` (bool literal or expression).
    pub cancel_in_progress: Option<YStr>,
}

/// `permissions:`.
#[derive(Clone, Debug, PartialEq)]
pub enum Permissions {
    /// `read-all`, `write-all` or an expression.
    All(YStr),
    /// Per-scope levels.
    Scopes(Vec<(Sp<String>, YStr)>),
}

/// `runs-on:`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RunsOn {
    /// Labels (each may be an expression).
    pub labels: Vec<YStr>,
    /// `group:` of the mapping form.
    pub group: Option<YStr>,
    /// Span of the whole value.
    pub span: Span,
}

/// `environment:` of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct Environment {
    /// The environment name.
    pub name: YStr,
    /// `url:`.
    pub url: Option<YStr>,
}

/// `strategy:`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Strategy {
    /// `matrix:`.
    pub matrix: Option<Matrix>,
    /// `fail-fast:` (default true).
    pub fail_fast: Option<YStr>,
    /// `max-parallel:`.
    pub max_parallel: Option<YStr>,
    /// Span of `strategy:`.
    pub span: Span,
}

/// `strategy.matrix`.
#[derive(Clone, Debug, PartialEq)]
pub enum Matrix {
    /// The whole matrix is one expression.
    Expr(YStr),
    /// A mapping of vectors plus include/exclude.
    Map(MatrixMap),
}

/// A matrix written as a mapping.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MatrixMap {
    /// Vectors in declaration order.
    pub vectors: Vec<(Sp<String>, MatrixVector)>,
    /// `include:`.
    pub include: Option<MatrixList>,
    /// `exclude:`.
    pub exclude: Option<MatrixList>,
    /// Span of the mapping.
    pub span: Span,
}

/// One vector's values.
#[derive(Clone, Debug, PartialEq)]
pub enum MatrixVector {
    /// Literal values (each may be any YAML value; a value may be an expression).
    Values(Vec<Node>),
    /// One expression yielding an array.
    Expr(YStr),
}

/// `include:` or `exclude:`.
#[derive(Clone, Debug, PartialEq)]
pub enum MatrixList {
    /// Entries, each a mapping (kept as nodes).
    Entries(Vec<Node>),
    /// One expression yielding an array of objects.
    Expr(YStr),
}

/// A job container or a service container.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Container {
    /// `image:` (or the string form).
    pub image: Option<YStr>,
    /// `credentials.username`.
    pub username: Option<YStr>,
    /// `credentials.password`.
    pub password: Option<YStr>,
    /// `env:`.
    pub env: Env,
    /// `ports:`.
    pub ports: Vec<YStr>,
    /// `volumes:`.
    pub volumes: Vec<YStr>,
    /// `options:`.
    pub options: Option<YStr>,
    /// `command:` (services).
    pub command: Option<YStr>,
    /// `entrypoint:` (services).
    pub entrypoint: Option<YStr>,
    /// pipe's `platform:` extension (e.g. `linux/arm64`).
    pub platform: Option<YStr>,
    /// Span of the container value.
    pub span: Span,
}

/// `secrets:` of a reusable-workflow call.
#[derive(Clone, Debug, PartialEq)]
pub enum CallSecrets {
    /// `secrets: inherit`.
    Inherit(Span),
    /// Explicit secrets.
    Map(StrMap),
}

/// One job.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Job {
    /// The job id as written.
    pub id: Sp<String>,
    /// Position of the job in `jobs:` (file order), used to break ties.
    pub index: usize,
    /// `name:`.
    pub name: Option<YStr>,
    /// `needs:` entries as written.
    pub needs: Vec<Sp<String>>,
    /// `if:`.
    pub if_: Option<YStr>,
    /// `runs-on:`.
    pub runs_on: Option<RunsOn>,
    /// `environment:`.
    pub environment: Option<Environment>,
    /// `env:`.
    pub env: Env,
    /// `defaults:`.
    pub defaults: Option<Defaults>,
    /// `concurrency:`.
    pub concurrency: Option<Concurrency>,
    /// `permissions:`.
    pub permissions: Option<Permissions>,
    /// `outputs:`.
    pub outputs: StrMap,
    /// `timeout-minutes:`.
    pub timeout_minutes: Option<YStr>,
    /// `continue-on-error:`.
    pub continue_on_error: Option<YStr>,
    /// `strategy:`.
    pub strategy: Option<Strategy>,
    /// `container:`.
    pub container: Option<Container>,
    /// `services:`.
    pub services: Vec<(Sp<String>, Container)>,
    /// `steps:`.
    pub steps: Vec<Step>,
    /// `uses:` of a reusable-workflow call.
    pub uses: Option<YStr>,
    /// `with:` of a reusable-workflow call (values kept as nodes: they keep their types).
    pub with: Vec<(Sp<String>, Node)>,
    /// `secrets:` of a reusable-workflow call.
    pub secrets: Option<CallSecrets>,
    /// pipe's `cache:` extension.
    pub cache: Option<Node>,
    /// pipe's `reports:` extension.
    pub reports: Option<Node>,
    /// Span of the job's mapping.
    pub span: Span,
}

impl Job {
    /// The name shown to users before matrix expansion: `name:` or the id.
    pub fn display_name(&self) -> &str {
        self.name
            .as_ref()
            .map(|n| n.text.as_str())
            .unwrap_or(&self.id.value)
    }
}

/// One step.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Step {
    /// Position in the job (0-based).
    pub index: usize,
    /// `id:`.
    pub id: Option<Sp<String>>,
    /// `name:`.
    pub name: Option<YStr>,
    /// `if:`.
    pub if_: Option<YStr>,
    /// `uses:`.
    pub uses: Option<YStr>,
    /// `run:`.
    pub run: Option<YStr>,
    /// `shell:`.
    pub shell: Option<YStr>,
    /// `working-directory:`.
    pub working_directory: Option<YStr>,
    /// `with:` (string values; `args` and `entrypoint` included).
    pub with: StrMap,
    /// `env:`.
    pub env: Env,
    /// `continue-on-error:`.
    pub continue_on_error: Option<YStr>,
    /// `timeout-minutes:`.
    pub timeout_minutes: Option<YStr>,
    /// pipe's `cache:` extension.
    pub cache: Option<Node>,
    /// Span of the step's mapping.
    pub span: Span,
}

/// Metadata of an action (`action.yml`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ActionMeta {
    /// `name:`.
    pub name: Option<YStr>,
    /// `description:`.
    pub description: Option<YStr>,
    /// `inputs:` in declaration order.
    pub inputs: Vec<ActionInput>,
    /// `outputs:` (value expressions for composite actions).
    pub outputs: Vec<(Sp<String>, Option<YStr>)>,
    /// `runs:`.
    pub runs: ActionRuns,
}

/// An action input.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionInput {
    /// The input id.
    pub id: Sp<String>,
    /// `required:`.
    pub required: bool,
    /// `default:`.
    pub default: Option<YStr>,
    /// `deprecationMessage:`.
    pub deprecation: Option<YStr>,
}

/// `runs:` of an action.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum ActionRuns {
    /// Not given or invalid.
    #[default]
    Invalid,
    /// `using: composite`.
    Composite {
        /// The steps.
        steps: Vec<Step>,
    },
    /// `using: node20` and friends.
    Node {
        /// `using:`.
        using: YStr,
        /// `main:`.
        main: YStr,
        /// `pre:`.
        pre: Option<YStr>,
        /// `pre-if:`.
        pre_if: Option<YStr>,
        /// `post:`.
        post: Option<YStr>,
        /// `post-if:`.
        post_if: Option<YStr>,
    },
    /// `using: docker`.
    Docker {
        /// `image:` (`Dockerfile` or `docker://…`).
        image: YStr,
        /// `args:`.
        args: Vec<YStr>,
        /// `entrypoint:`.
        entrypoint: Option<YStr>,
        /// `env:`.
        env: Env,
        /// `pre-entrypoint:`.
        pre_entrypoint: Option<YStr>,
        /// `post-entrypoint:`.
        post_entrypoint: Option<YStr>,
    },
}
