//! Running one job leg: GitHub's step semantics (gha-semantics §5.3, §5.5–§5.8).
//!
//! For each step, in the runner's order (StepsRunner): the step env evaluated with the env
//! context as it was before the step, then the `if:` condition (implicit `success() &&`), which
//! already sees the step env, then the display name and `run`/`shell`/`working-directory`. The
//! command runs through the executor with fresh per-step OUTPUT/ENV/PATH/STEP_SUMMARY/STATE
//! files, which are applied even when the step failed; `continue-on-error` is evaluated after a
//! failure. A cancelled job stops the running step unless its condition still holds with the
//! cancelled status (`always()`). Job outputs are evaluated at the end, even after a failure.
//! Evaluation errors carry the expression's file, line and column.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::context::{Contexts, Status};
use crate::event::{Conclusion, JobRef, RunEvent, StepCacheInfo, StepRef, StepSummary};
use crate::executor::{
    Cancel, ContainerSpec, Executor, JobHandle, JobSetup, OutputSink, ServiceSpec, ShellTemplate,
    StepCommand,
};
use crate::expr::{Object, Template, Value, parse_condition};
use crate::run::action::{ActionRegistry, LoadedAction};
use crate::run::commands::{Annotation, Level};
use crate::run::envfile;
use crate::run::mask::Masker;
use crate::run::output::StepOutput;
use crate::run::report::{NoticeLevel, Reporter};
use crate::run::stepcache::{self, StepCache};
use crate::source::SourceFile;
use crate::workflow::{Env, Job, Step, Workflow, YStr};
use crate::yaml::ScalarValue;
use pipe_cache::Lookup;

mod actions;

use actions::StepAt;

/// Job timeout when `timeout-minutes` is not set (GitHub's default).
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(360 * 60);

/// What every job of a run shares.
pub struct Shared {
    /// The workflow.
    pub workflow: Arc<Workflow>,
    /// Its source (for positions in runtime errors).
    pub source: Arc<SourceFile>,
    /// Where jobs run.
    pub executor: Arc<dyn Executor>,
    /// Who observes the run.
    pub reporter: Arc<dyn Reporter>,
    /// Secrets and `::add-mask::` values.
    pub masker: Masker,
    /// The `github` context (without per-job fields).
    pub github: Value,
    /// The `vars` context.
    pub vars: Value,
    /// The `secrets` context.
    pub secrets: Value,
    /// The `inputs` context.
    pub inputs: Value,
    /// Scratch space of the run (job temp dirs go below).
    pub run_temp: PathBuf,
    /// `GITHUB_WORKSPACE` on the host.
    pub workspace: PathBuf,
    /// Environment every step gets (`CI`, `GITHUB_*` of the run).
    pub default_env: Arc<[(String, String)]>,
    /// Folder for per-step log files (`<job>/<step>.log`), if recording.
    pub log_dir: Option<PathBuf>,
    /// Show `::debug::` lines.
    pub debug: bool,
    /// Whether `bash` is on PATH (the default shell falls back to `sh`).
    pub has_bash: bool,
    /// `--isolate`: each job gets a fresh copy of the committed tree instead of `workspace`.
    pub isolate: bool,
    /// Where `uses:` steps find their actions.
    pub actions: Arc<ActionRegistry>,
    /// Depth of reusable-workflow calls (0 for the workflow `pipe run` started).
    pub call_depth: usize,
    /// Legs running at once (`-p`), for the jobs of called workflows.
    pub parallel: usize,
    /// Prefix of leg keys (temp and log folders): empty, or the calling leg's key and `/`.
    pub key_prefix: String,
    /// The step cache, when the workflow uses pipe's `cache:` and caching is on.
    pub step_cache: Option<Arc<StepCache>>,
    /// `--dry-run`: evaluate and key every step, look cached ones up, run nothing.
    pub dry_run: bool,
    /// Reads the files a job's `reports:` declares (none: they are not read).
    pub results: Option<Arc<dyn crate::run::results::ResultsCollector>>,
    /// Where jobs run: `--host`, label → image mappings, `--container-platform`.
    pub placement: Placement,
}

/// Where jobs run (`--host`, `-P LABEL=IMAGE` and `[runners.images]`).
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// `--host`: every job's steps run on the host (services still run in containers).
    pub force_host: bool,
    /// `runs-on` label → image; the first label of a job with a mapping wins.
    pub images: Vec<(String, String)>,
    /// `--container-platform`: the platform of containers that name none.
    pub platform: Option<String>,
}

impl Placement {
    /// The image mapped to one of `labels`, if any.
    pub fn image_for<'a>(&'a self, labels: &[String]) -> Option<&'a str> {
        labels.iter().find_map(|l| {
            self.images
                .iter()
                .rev()
                .find(|(k, _)| k == l)
                .map(|(_, v)| v.as_str())
        })
    }
}

/// One leg to run.
#[derive(Clone, Debug)]
pub struct LegSpec {
    /// Index of the job in the workflow.
    pub job_index: usize,
    /// Unique key within the run (temp and log folder names).
    pub key: String,
    /// How events name it.
    pub job_ref: JobRef,
    /// The `matrix` context (null without a matrix).
    pub matrix: Value,
    /// The `strategy` context.
    pub strategy: Value,
    /// The `needs` context.
    pub needs: Value,
}

/// The jobs of a called reusable workflow and their step summaries (job name, Markdown).
pub type Called = (Vec<crate::event::JobSummary>, Vec<(String, String)>);

/// How a leg ended.
#[derive(Clone, Debug)]
pub struct LegOutcome {
    /// Its conclusion (before job-level `continue-on-error`).
    pub conclusion: Conclusion,
    /// Whether job-level `continue-on-error` was true.
    pub continue_on_error: bool,
    /// Job outputs.
    pub outputs: IndexMap<String, String>,
    /// Step results.
    pub steps: Vec<StepSummary>,
    /// Concatenated step summaries (Markdown).
    pub step_summary: String,
    /// Wall time.
    pub duration: Duration,
    /// For a call of a reusable workflow: the callee's jobs, which replace the caller's entry
    /// in the summary, and their step summaries.
    pub called: Option<Called>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// GitHub's generated id for a step without `id:` (`__run`, `__actions_checkout`).
pub fn generated_step_id(step: &Step) -> String {
    match &step.uses {
        None => "__run".to_owned(),
        Some(u) => {
            let t = u.text.as_str();
            if t.starts_with("./") || t.starts_with("$/") {
                "__self".to_owned()
            } else if let Some(img) = t.strip_prefix("docker://") {
                // The whole image reference, tag included (`__alpine_3_19`).
                format!("__{}", sanitize(img))
            } else {
                // `owner/repo` only: the path inside the repository is not part of the id.
                let reference = t.split('@').next().unwrap_or(t);
                let repo: Vec<&str> = reference.splitn(3, '/').take(2).collect();
                format!("__{}", sanitize(&repo.join("/")))
            }
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Ids of every step of a job: explicit ids, or generated ones made unique with `_2`, `_3`…
pub fn step_ids(steps: &[Step]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(steps.len());
    for s in steps {
        match &s.id {
            Some(id) => out.push(id.value.clone()),
            None => {
                let base = generated_step_id(s);
                let mut id = base.clone();
                let mut n = 2;
                while out.iter().any(|o| o.eq_ignore_ascii_case(&id))
                    || steps.iter().any(|o| {
                        o.id.as_ref()
                            .is_some_and(|i| i.value.eq_ignore_ascii_case(&id))
                    })
                {
                    id = format!("{base}_{n}");
                    n += 1;
                }
                out.push(id);
            }
        }
    }
    out
}

/// The display name of a step before evaluation: `name:`, else `Run <first line>` or
/// `Run <action>` (the runner's `FormatStepName`).
pub fn default_step_name(step: &Step) -> String {
    if let Some(n) = &step.name {
        return first_line(&n.text);
    }
    let what = match &step.uses {
        Some(u) => u.text.as_str(),
        None => first_line_of(step.run.as_ref().map(|r| r.text.as_str()).unwrap_or("")),
    };
    let mut name = String::with_capacity(4 + what.len());
    name.push_str("Run ");
    name.push_str(what);
    name
}

/// Leading blanks and line breaks removed, then everything up to the next line break.
fn first_line(text: &str) -> String {
    first_line_of(text).to_owned()
}

fn first_line_of(text: &str) -> &str {
    let t = text.trim_start_matches([' ', '\t', '\r', '\n']);
    t.split(['\r', '\n']).next().unwrap_or("")
}

/// Resolves a shell name (or custom template) to an invocation, as GitHub does on Linux.
pub fn shell_template(shell: Option<&str>, has_bash: bool) -> Result<ShellTemplate, String> {
    let t = |argv: &[&str], ext: &'static str| ShellTemplate {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        ext,
    };
    Ok(match shell.map(str::trim) {
        None | Some("") => {
            if has_bash {
                t(&["bash", "-e", "{0}"], ".sh")
            } else {
                t(&["sh", "-e", "{0}"], ".sh")
            }
        }
        Some("bash") => t(
            &["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
            ".sh",
        ),
        Some("sh") => t(&["sh", "-e", "{0}"], ".sh"),
        Some("python") => t(&["python", "{0}"], ".py"),
        Some("pwsh") => t(&["pwsh", "-command", ". '{0}'"], ".ps1"),
        Some("powershell") => t(&["powershell", "-command", ". '{0}'"], ".ps1"),
        Some("cmd") => t(
            &["cmd", "/D", "/E:ON", "/V:OFF", "/S", "/C", "CALL \"{0}\""],
            ".cmd",
        ),
        Some(custom) => {
            if !custom.contains("{0}") {
                return Err(format!(
                    "shell `{custom}` is not supported: use `bash`, `sh`, `python`, `pwsh` or a command containing `{{0}}`"
                ));
            }
            let mut argv = split_args(custom);
            if argv.is_empty() {
                return Err("the shell command is empty".to_owned());
            }
            argv.retain(|a| !a.is_empty());
            ShellTemplate { argv, ext: "" }
        }
    })
}

/// Splits a command line on whitespace, honouring double quotes.
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Wraps PowerShell scripts the way GitHub does.
fn script_for(shell: &ShellTemplate, script: &str) -> String {
    if shell.ext == ".ps1" {
        format!(
            "$ErrorActionPreference = 'stop'\n{script}\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) {{ exit $LASTEXITCODE }}\n"
        )
    } else {
        script.to_owned()
    }
}

/// Copies the tree of `HEAD` of the repository at `root` into `target` (`git archive | tar`),
/// the fresh workspace of `--isolate`.
pub fn copy_committed_tree(root: &Path, target: &Path) -> Result<(), String> {
    use std::process::{Command, Stdio};
    std::fs::create_dir_all(target)
        .map_err(|e| format!("cannot create `{}`: {e}", target.display()))?;
    let mut archive = Command::new("git")
        .args(["archive", "--format=tar", "HEAD"])
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `git archive`: {e}"))?;
    let Some(out) = archive.stdout.take() else {
        return Err("`git archive` has no output".to_owned());
    };
    let tar = Command::new("tar")
        .args(["-x", "-C"])
        .arg(target)
        .stdin(out)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run `tar`: {e}"))?;
    let git = archive
        .wait_with_output()
        .map_err(|e| format!("`git archive` failed: {e}"))?;
    if !git.status.success() {
        let msg = String::from_utf8_lossy(&git.stderr).trim().to_lowercase();
        return Err(format!(
            "`git archive HEAD` failed ({msg}); `--isolate` needs a git repository with at least one commit"
        ));
    }
    if !tar.status.success() {
        return Err(format!(
            "`tar -x` failed: {}",
            String::from_utf8_lossy(&tar.stderr).trim()
        ));
    }
    Ok(())
}

/// Runs one leg of a job.
pub struct LegRunner<'a> {
    shared: &'a Shared,
    job: &'a Job,
    spec: &'a LegSpec,
    cancel: Cancel,
    /// workflow env + job env + GITHUB_ENV (the env context before a step's own env).
    env: Vec<(String, String)>,
    path_additions: Vec<String>,
    steps_ctx: Object,
    status: Status,
    summaries: String,
    /// This leg's `GITHUB_WORKSPACE` on the host (the shared one, or its own copy).
    workspace: PathBuf,
    /// The steps being run: the job's, or a composite action's.
    scope: Scope,
    /// Post steps of actions, in the order their main steps ran.
    posts: Vec<PostStep>,
    /// State saved by pre steps, by step id.
    states: std::collections::HashMap<String, IndexMap<String, String>>,
    /// Every `GITHUB_ENV` value applied (composite steps hand theirs to the job).
    env_log: Vec<(String, String)>,
    /// Results of pre and post steps.
    extra_steps: Vec<StepSummary>,
    /// The step cache's verdict on the step being finished (taken by `finish_step`).
    cache_info: Option<StepCacheInfo>,
    /// The `runner` context last built, with the `RUNNER_TEMP` it was built for: the same for
    /// every step of the leg, so built once.
    runner_cache: std::sync::Mutex<Option<(PathBuf, Value)>>,
}

/// Which steps are running: the job's own (`outer` is `None`) or a composite action's.
#[derive(Clone)]
struct Scope {
    /// The file the steps come from (positions in runtime errors).
    source: Arc<SourceFile>,
    /// The `inputs` context inside a composite action.
    inputs: Option<Value>,
    /// The composite action whose steps run.
    action: Option<Arc<LoadedAction>>,
    /// Composite nesting depth.
    depth: usize,
    /// The job's step that runs the composite action: index, id and name (its log and
    /// events carry the nested steps).
    outer: Option<(usize, String, String)>,
}

/// A JavaScript action's `post` script, run at the end of the job.
struct PostStep {
    kind: PostKind,
    inputs: IndexMap<String, String>,
    env: Vec<(String, String)>,
    state: IndexMap<String, String>,
    id: String,
    name: String,
}

/// What a post step runs.
enum PostKind {
    /// A JavaScript action's `post` script, with its `post-if`.
    Node {
        action: Arc<LoadedAction>,
        script: String,
        condition: Option<YStr>,
    },
    /// A built-in action's post phase ([`crate::run::action::BuiltinAction::post`]).
    Builtin {
        action: Arc<dyn crate::run::action::BuiltinAction>,
        uses: String,
        git_ref: String,
        condition: &'static str,
    },
}

/// How one process of a step ended, after its environment files were applied.
struct Exec {
    outcome: Conclusion,
    error: Option<String>,
    outputs: IndexMap<String, String>,
    state: IndexMap<String, String>,
    /// The raw output, when capture was asked for and it stayed under
    /// [`stepcache::MAX_LOG`].
    captured: Option<Vec<u8>>,
    /// What the process wrote to its environment files.
    contents: FileContents,
}

/// The typed value of a YAML boolean, number or null (`continue-on-error: false` is the
/// boolean false, not the truthy string `'false'`); `None` for strings, which are templates.
pub fn literal(y: &YStr) -> Option<Value> {
    match y.value {
        ScalarValue::Bool(b) => Some(Value::Bool(b)),
        ScalarValue::Number(n) => Some(Value::Number(n)),
        ScalarValue::Null => Some(Value::Null),
        ScalarValue::Str => None,
    }
}

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
}

fn env_object(env: &[(String, String)]) -> Value {
    let mut o = Object::case_sensitive();
    for (k, v) in env {
        o.insert(k.clone(), Value::str(v));
    }
    Value::from_object(o)
}

fn set_env(env: &mut Vec<(String, String)>, k: &str, v: String) {
    match env.iter_mut().find(|(n, _)| n == k) {
        Some(slot) => slot.1 = v,
        None => env.push((k.to_owned(), v)),
    }
}

impl<'a> LegRunner<'a> {
    /// Prepares to run `spec` of `job`.
    pub fn new(shared: &'a Shared, job: &'a Job, spec: &'a LegSpec, cancel: Cancel) -> Self {
        LegRunner {
            shared,
            job,
            spec,
            cancel,
            env: Vec::new(),
            path_additions: Vec::new(),
            steps_ctx: Object::new(),
            status: Status::default(),
            summaries: String::new(),
            workspace: shared.workspace.clone(),
            scope: Scope {
                source: shared.source.clone(),
                inputs: None,
                action: None,
                depth: 0,
                outer: None,
            },
            posts: Vec::new(),
            states: std::collections::HashMap::new(),
            env_log: Vec::new(),
            extra_steps: Vec::new(),
            cache_info: None,
            runner_cache: std::sync::Mutex::new(None),
        }
    }

    fn github(&self, action: Option<&str>) -> Value {
        let mut o = match &self.shared.github {
            Value::Object(o) => o.as_ref().clone(),
            _ => Object::new(),
        };
        o.insert("job", Value::str(&self.job.id.value));
        o.insert("workspace", Value::str(self.workspace.to_string_lossy()));
        if let Some(a) = action {
            o.insert("action", Value::str(a));
        }
        if let Some(a) = &self.scope.action {
            o.insert("action_path", Value::str(a.dir.to_string_lossy()));
            o.insert("action_repository", Value::str(&a.repository));
            o.insert("action_ref", Value::str(&a.git_ref));
        }
        Value::from_object(o)
    }

    fn runner_ctx(&self, paths: Option<&crate::executor::JobPaths>) -> Value {
        let Some(p) = paths else {
            return self.make_runner_ctx(None);
        };
        if let Ok(mut cache) = self.runner_cache.lock() {
            if let Some((temp, v)) = &*cache
                && *temp == p.temp_exec
            {
                return v.clone();
            }
            let v = self.make_runner_ctx(Some(p));
            *cache = Some((p.temp_exec.clone(), v.clone()));
            return v;
        }
        self.make_runner_ctx(Some(p))
    }

    fn make_runner_ctx(&self, paths: Option<&crate::executor::JobPaths>) -> Value {
        let (os, arch, temp) = match paths {
            Some(p) => (p.os, p.arch, p.temp_exec.to_string_lossy().into_owned()),
            None => (
                crate::executor::host_os(),
                crate::executor::host_arch(),
                String::new(),
            ),
        };
        obj(vec![
            ("name", Value::str("pipe")),
            ("os", Value::str(os)),
            ("arch", Value::str(arch)),
            ("temp", Value::str(&temp)),
            ("tool_cache", Value::str(&temp)),
            (
                "debug",
                if self.shared.debug {
                    Value::str("1")
                } else {
                    Value::str("")
                },
            ),
            ("environment", Value::str("self-hosted")),
        ])
    }

    /// Contexts for job-level values (env, runs-on, container…): no steps, env or job yet.
    /// Inside a composite action there is no `secrets` context (GitHub's rule: secrets reach
    /// an action only through its inputs).
    fn job_contexts(&self) -> Contexts {
        self.contexts_with(self.github(None))
    }

    /// [`LegRunner::job_contexts`] with this `github` context (a step's names its action).
    fn contexts_with(&self, github: Value) -> Contexts {
        let c = Contexts::new()
            .with("github", github)
            .with("needs", self.spec.needs.clone())
            .with("strategy", self.spec.strategy.clone())
            .with("matrix", self.spec.matrix.clone())
            .with("vars", self.shared.vars.clone())
            .with(
                "inputs",
                self.scope
                    .inputs
                    .clone()
                    .unwrap_or_else(|| self.shared.inputs.clone()),
            );
        if self.scope.depth == 0 {
            c.with("secrets", self.shared.secrets.clone())
        } else {
            c
        }
    }

    fn step_contexts(
        &self,
        action: &str,
        env: &[(String, String)],
        paths: &crate::executor::JobPaths,
    ) -> Contexts {
        let job_status = if self.status.cancelled {
            "cancelled"
        } else if self.status.failed {
            "failure"
        } else {
            "success"
        };
        let mut c = self.contexts_with(self.github(Some(action)));
        c.set("env", env_object(env));
        c.set("steps", Value::from_object(self.steps_ctx.clone()));
        c.set("runner", self.runner_ctx(Some(paths)));
        let services: Vec<(String, Value)> = paths
            .services
            .iter()
            .map(|s| {
                let ports: Vec<(String, Value)> = s
                    .ports
                    .iter()
                    .map(|(c, h)| (c.clone(), Value::str(h)))
                    .collect();
                (
                    s.id.clone(),
                    obj(vec![
                        ("id", Value::str(&s.container_id)),
                        ("network", Value::str(&s.network)),
                        ("ports", Value::object(ports)),
                    ]),
                )
            })
            .collect();
        let mut job = vec![
            ("status", Value::str(job_status)),
            ("services", Value::object(services)),
        ];
        if let Some((id, network)) = &paths.container {
            job.push((
                "container",
                obj(vec![
                    ("id", Value::str(id)),
                    ("network", Value::str(network)),
                ]),
            ));
        }
        c.set("job", obj(job));
        // One job status at a time, as `job.status`: once the job is cancelled, `failure()` is
        // false even if a step failed before.
        c.status = Status {
            failed: self.status.failed && !self.status.cancelled,
            ..self.status
        };
        c.workspace = Some(self.workspace.clone());
        c
    }

    /// Evaluates a templated value, with errors located in the file.
    fn eval(&self, y: &YStr, ctx: &Contexts) -> Result<Value, String> {
        if let Some(v) = literal(y) {
            return Ok(v);
        }
        let t =
            Template::parse(&y.text).map_err(|e| self.locate(y, e.offset, e.len, &e.message))?;
        t.eval(ctx)
            .map_err(|e| self.locate(y, e.offset, e.len, &e.message))
    }

    fn eval_string(&self, y: &YStr, ctx: &Contexts) -> Result<String, String> {
        let v = self.eval(y, ctx)?;
        Ok(v.to_gh_string().unwrap_or_else(|| v.to_json_pretty()))
    }

    fn locate(&self, y: &YStr, offset: usize, len: usize, message: &str) -> String {
        let source = &self.scope.source;
        let span = y.span_of(source, offset..offset + len);
        let lc = source.line_col(span.start);
        format!(
            "{}:{}:{}: {message}",
            source.path().display(),
            lc.line,
            lc.col
        )
    }

    fn eval_env(
        &self,
        env: &Env,
        ctx: &Contexts,
        into: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        match env {
            Env::None => Ok(()),
            Env::Map(m) => {
                for (k, (_, v)) in m {
                    let s = self.eval_string(v, ctx)?;
                    set_env(into, k, s);
                }
                Ok(())
            }
            Env::Expr(y) => match self.eval(y, ctx)? {
                Value::Object(o) => {
                    for (k, v) in o.iter() {
                        set_env(
                            into,
                            k,
                            v.to_gh_string().unwrap_or_else(|| v.to_json_pretty()),
                        );
                    }
                    Ok(())
                }
                other => Err(self.locate(
                    y,
                    0,
                    y.text.len(),
                    &format!(
                        "`env` must evaluate to an object, got {}",
                        other.kind_name()
                    ),
                )),
            },
        }
    }

    /// Where the job runs: its `container:`, else the image mapped to one of its `runs-on`
    /// labels, else the host (`None`); and its services.
    fn placement(
        &self,
        jcell: &std::cell::OnceCell<Contexts>,
    ) -> Result<(Option<ContainerSpec>, Vec<ServiceSpec>), String> {
        // The job's contexts, built only if something here is evaluated.
        let ctx = || jcell.get_or_init(|| self.job_contexts());
        let job = self.job;
        let placement = &self.shared.placement;
        let mut services = Vec::new();
        for (id, c) in &job.services {
            if let Some(spec) = self.container_spec(c, ctx(), true)? {
                services.push(ServiceSpec {
                    id: id.value.clone(),
                    command: c
                        .command
                        .as_ref()
                        .map(|y| self.eval_string(y, ctx()))
                        .transpose()?,
                    entrypoint: c
                        .entrypoint
                        .as_ref()
                        .map(|y| self.eval_string(y, ctx()))
                        .transpose()?,
                    container: spec,
                });
            }
        }
        if placement.force_host {
            return Ok((None, services));
        }
        if let Some(c) = &job.container {
            let spec = self.container_spec(c, ctx(), true)?;
            if spec.is_some() {
                return Ok((spec, services));
            }
        }
        if placement.images.is_empty() {
            return Ok((None, services));
        }
        let mut labels = Vec::new();
        for y in job.runs_on.iter().flat_map(|r| r.labels.iter()) {
            match self.eval(y, ctx())? {
                Value::Array(items) => labels.extend(items.iter().filter_map(Value::to_gh_string)),
                v => labels.extend(v.to_gh_string()),
            }
        }
        Ok((
            placement.image_for(&labels).map(|image| ContainerSpec {
                image: image.to_owned(),
                job_container: false,
                platform: placement.platform.clone(),
                ..Default::default()
            }),
            services,
        ))
    }

    /// A `container:` or service value, evaluated; `None` when its image is empty (GitHub
    /// then runs the job on the runner).
    fn container_spec(
        &self,
        c: &crate::workflow::Container,
        ctx: &Contexts,
        job_container: bool,
    ) -> Result<Option<ContainerSpec>, String> {
        let Some(image) = &c.image else {
            return Ok(None);
        };
        let image = self.eval_string(image, ctx)?;
        if image.trim().is_empty() {
            return Ok(None);
        }
        let mut env = Vec::new();
        self.eval_env(&c.env, ctx, &mut env)?;
        let strings = |ys: &[YStr]| -> Result<Vec<String>, String> {
            ys.iter().map(|y| self.eval_string(y, ctx)).collect()
        };
        let credentials = match (&c.username, &c.password) {
            (Some(u), Some(p)) => Some((self.eval_string(u, ctx)?, self.eval_string(p, ctx)?)),
            _ => None,
        };
        Ok(Some(ContainerSpec {
            image: image.trim().to_owned(),
            job_container,
            env,
            ports: strings(&c.ports)?,
            volumes: strings(&c.volumes)?,
            options: c
                .options
                .as_ref()
                .map(|y| self.eval_string(y, ctx))
                .transpose()?
                .unwrap_or_default(),
            credentials,
            platform: match &c.platform {
                Some(y) => Some(self.eval_string(y, ctx)?),
                None => self.shared.placement.platform.clone(),
            },
        }))
    }

    fn notice(&self, level: NoticeLevel, msg: &str) {
        self.shared.reporter.notice(
            Some(&self.spec.job_ref),
            level,
            &self.shared.masker.mask(msg),
        );
    }

    /// Passes the cache's warnings on (a dead remote, a corrupt entry).
    fn cache_warnings(&self, sc: &StepCache) {
        for w in sc.cache.take_warnings() {
            self.notice(NoticeLevel::Warning, &format!("cache: {w}"));
        }
    }

    /// Computes a cached step's key on a blocking thread.
    async fn cache_key(
        &self,
        sc: &Arc<StepCache>,
        spec: &stepcache::CacheSpec,
        identity: &str,
        command: &StepCommand,
        step_env: &[(String, String)],
        paths: &crate::executor::JobPaths,
    ) -> Result<stepcache::Computed, String> {
        #[derive(serde::Serialize)]
        struct Definition<'a> {
            shell: &'a [String],
            script: &'a str,
            cwd: String,
            env: &'a [(String, String)],
            path: &'a [String],
        }
        let cwd = match command.cwd.strip_prefix(&paths.workspace_exec) {
            Ok(rel) => rel.to_string_lossy().into_owned(),
            Err(_) => command.cwd.to_string_lossy().into_owned(),
        };
        let definition = serde_json::to_vec(&Definition {
            shell: &command.shell.argv,
            script: &command.script,
            cwd,
            env: step_env,
            path: &self.path_additions,
        })
        .map_err(|e| e.to_string())?;
        let path = command.var("PATH").map(str::to_owned);
        let input = stepcache::KeyInput {
            identity: identity.to_owned(),
            spec: spec.clone(),
            definition,
            executor: vec![
                ("os".to_owned(), paths.os.to_owned()),
                ("arch".to_owned(), paths.arch.to_owned()),
            ],
            env: command.full_env(),
            workspace: self.workspace.clone(),
            path,
        };
        // A key over the definition and env alone is a few microseconds of hashing and one
        // small read: done here, since a hop to the blocking pool and back costs more. Input
        // files (any number of them) and tool versions (a process each) are hashed there.
        let r = if spec.inputs.is_empty() && spec.tools.is_empty() {
            sc.compute(&input)
        } else {
            let sc2 = sc.clone();
            tokio::task::spawn_blocking(move || sc2.compute(&input))
                .await
                .map_err(|e| format!("the cache task failed: {e}"))?
        };
        self.cache_warnings(sc);
        r
    }

    /// Looks the key up and, on a hit, restores the outputs and replays the step. `None`: run
    /// the step.
    #[allow(clippy::too_many_arguments)]
    async fn replay_hit(
        &mut self,
        sc: &Arc<StepCache>,
        identity: &str,
        computed: &stepcache::Computed,
        step: &StepRef,
        summary: StepSummary,
        started: Instant,
    ) -> Option<StepSummary> {
        let ws = self.workspace.clone();
        let same = computed.same_as_last;
        // With only the local store, the lookup is one small manifest read, and restoring an
        // entry whose blobs are all inlined in it writes a few small files: both are done here
        // rather than on the blocking pool (two thread hand-offs cost more than the work). A
        // remote lookup, or an entry with blobs to read from the store, goes to the pool.
        let looked = if sc.cache.has_remote() {
            let (sc2, ident, key) = (sc.clone(), identity.to_owned(), computed.key.clone());
            tokio::task::spawn_blocking(move || sc2.lookup(&ident, &key, same))
                .await
                .ok()?
        } else {
            sc.lookup(identity, &computed.key, same)
        };
        let got = match looked {
            Lookup::Miss { .. } => Ok(None),
            Lookup::Hit { manifest, source } if all_inline(&manifest) => sc
                .restore(&manifest, &ws)
                .map(|(log, rec)| Some((log, rec, source))),
            Lookup::Hit { manifest, source } => {
                let sc2 = sc.clone();
                tokio::task::spawn_blocking(move || {
                    sc2.restore(&manifest, &ws)
                        .map(|(log, rec)| Some((log, rec, source)))
                })
                .await
                .ok()?
            }
        };
        self.cache_warnings(sc);
        let (log, recorded, source) = match got {
            Ok(Some(x)) => x,
            Ok(None) => return None,
            Err(e) => {
                self.notice(
                    NoticeLevel::Warning,
                    &format!("cache entry unusable ({e}); running the step"),
                );
                return None;
            }
        };
        let mut sink = self.sink(step.index);
        sink.write(&log);
        sink.finish();
        let mut outcome = Conclusion::Success;
        let mut error = None;
        if let Some(e) = sink.command_error.take() {
            outcome = Conclusion::Failure;
            error = Some(e);
        }
        let mut outputs = sink.outputs.clone();
        let mut state = sink.state.clone();
        let ran_ms = recorded.duration_ms;
        let contents = FileContents::from(recorded);
        if let Err(e) = self.apply_files(&contents, &mut outputs, &mut state) {
            outcome = Conclusion::Failure;
            error = Some(e);
        }
        self.cache_info = Some(stepcache::hit_info(&computed.key, source, ran_ms));
        Some(self.finish_step(
            summary,
            step.clone(),
            outcome,
            false,
            outputs,
            started,
            error,
        ))
    }

    /// Stores a successful cached step; `Err` says why it was not stored.
    async fn cache_save(
        &self,
        sc: Arc<StepCache>,
        spec: stepcache::CacheSpec,
        identity: String,
        computed: stepcache::Computed,
        captured: Option<Vec<u8>>,
        recorded: stepcache::Recorded,
    ) -> Result<Vec<String>, String> {
        let Some(log) = captured else {
            return Err("the step printed more than 64 MiB; the result was not cached".to_owned());
        };
        let masker = &self.shared.masker;
        let secret = masker.contains_secret(&String::from_utf8_lossy(&log))
            || [
                &recorded.output,
                &recorded.env,
                &recorded.path,
                &recorded.summary,
                &recorded.state,
            ]
            .iter()
            .any(|t| masker.contains_secret(t));
        if secret {
            return Err(
                "the step's output or environment files contain a secret; the result was not cached"
                    .to_owned(),
            );
        }
        let ws = self.workspace.clone();
        let sc2 = sc.clone();
        let r = tokio::task::spawn_blocking(move || {
            sc2.save(&identity, &computed, &spec, &ws, &log, &recorded)
        })
        .await
        .map_err(|e| format!("the cache task failed: {e}"))?;
        self.cache_warnings(&sc);
        r
    }

    fn error_annotation(&self, step: Option<usize>, msg: &str) {
        let step = step.map(|i| self.log_index(i));
        self.shared.reporter.annotation(
            &self.spec.job_ref,
            step,
            &Annotation {
                level: Level::Error,
                message: self.shared.masker.mask(msg),
                file: None,
                line: None,
                end_line: None,
                col: None,
                end_col: None,
                title: None,
            },
        );
    }

    /// Runs the leg: job env, every step, job outputs, cleanup.
    pub async fn run(mut self) -> LegOutcome {
        let started = Instant::now();
        let shared = self.shared;
        let job = self.job;
        shared.reporter.event(&RunEvent::JobStarted {
            job: self.spec.job_ref.clone(),
        });
        let ids = step_ids(&job.steps);
        let mut step_results: Vec<StepSummary> = job
            .steps
            .iter()
            .zip(&ids)
            .map(|(s, id)| StepSummary {
                id: id.clone(),
                name: default_step_name(s),
                outcome: Conclusion::Skipped,
                conclusion: Conclusion::Skipped,
                outputs: IndexMap::new(),
                duration_ms: 0,
                cache: None,
            })
            .collect();

        // Job-level values. The contexts are built only when something is evaluated: a job
        // without `env`, `timeout-minutes` or a container needs none of them.
        let jcell = std::cell::OnceCell::new();
        // (Jobs that call a reusable workflow never get here: the scheduler runs the callee.)
        let mut setup_error: Option<String> = None;
        let mut continue_on_error = false;
        if let Some(c) = &job.continue_on_error {
            match self.eval(c, jcell.get_or_init(|| self.job_contexts())) {
                Ok(v) => continue_on_error = v.is_truthy(),
                Err(e) => setup_error = Some(e),
            }
        }
        let mut timeout = DEFAULT_JOB_TIMEOUT;
        if let Some(t) = &job.timeout_minutes {
            match self
                .eval(t, jcell.get_or_init(|| self.job_contexts()))
                .map(|v| v.to_number())
            {
                Ok(m) if m > 0.0 && m.is_finite() => timeout = Duration::from_secs_f64(m * 60.0),
                Ok(_) => {}
                Err(e) => setup_error = setup_error.or(Some(e)),
            }
        }
        let mut env = Vec::new();
        if setup_error.is_none() {
            let workflow_env = if matches!(shared.workflow.env, Env::None) {
                Ok(())
            } else {
                let wctx = Contexts::new()
                    .with("github", self.github(None))
                    .with("vars", shared.vars.clone())
                    .with("secrets", shared.secrets.clone())
                    .with("inputs", shared.inputs.clone());
                self.eval_env(&shared.workflow.env, &wctx, &mut env)
            };
            if let Err(e) = workflow_env {
                setup_error = Some(e);
            } else if !matches!(job.env, Env::None)
                && let Err(e) = self.eval_env(
                    &job.env,
                    jcell.get_or_init(|| self.job_contexts()),
                    &mut env,
                )
            {
                setup_error = Some(e);
            }
        }
        self.env = env;

        let mut isolated: Option<PathBuf> = None;
        if shared.isolate && setup_error.is_none() {
            let dir = shared
                .run_temp
                .join(format!("ws-{}", crate::store::safe_name(&self.spec.key)));
            let root = shared.workspace.clone();
            let target = dir.clone();
            let copied = tokio::task::spawn_blocking(move || copy_committed_tree(&root, &target))
                .await
                .unwrap_or_else(|e| Err(format!("the copy task failed: {e}")));
            match copied {
                Ok(()) => {
                    self.workspace = dir.clone();
                    isolated = Some(dir);
                }
                Err(e) => setup_error = Some(format!("cannot give the job its own workspace: {e}")),
            }
        }
        let mut placed = (None, Vec::new());
        if setup_error.is_none() {
            match self.placement(&jcell) {
                Ok(p) => placed = p,
                Err(e) => setup_error = Some(e),
            }
        }
        let mut handle: Option<Box<dyn JobHandle>> = None;
        if setup_error.is_none() {
            let (container, services) = placed;
            match shared
                .executor
                .prepare(&JobSetup {
                    key: self.spec.key.clone(),
                    run_temp: shared.run_temp.clone(),
                    workspace: self.workspace.clone(),
                    container,
                    services,
                    log_dir: shared
                        .log_dir
                        .as_ref()
                        .map(|d| d.join(crate::store::safe_name(&self.spec.key))),
                    cancel: self.cancel.clone(),
                    extra_mounts: {
                        let mut m: Vec<PathBuf> = Vec::new();
                        if let Some(d) = shared.actions.action_dir() {
                            if d.is_absolute() {
                                m.push(d.to_path_buf());
                            }
                            if let Ok(c) = d.canonicalize()
                                && !m.contains(&c)
                            {
                                m.push(c);
                            }
                        }
                        m
                    },
                })
                .await
            {
                Ok(h) => handle = Some(h),
                Err(e) => setup_error = Some(format!("cannot set up the job: {e}")),
            }
        }

        // The job timeout cancels the job.
        let job_cancel = self.cancel.clone();
        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let timer = {
            let c = job_cancel.clone();
            let flag = timed_out.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                c.soft.cancel();
            })
        };

        if let Some(e) = &setup_error {
            self.error_annotation(None, e);
            self.status.failed = true;
        }
        let mut n_pre = 0;
        if let Some(h) = handle.as_mut() {
            self.run_pre_steps(h.as_mut(), &ids).await;
            n_pre = self.extra_steps.len();
            for (i, step) in job.steps.iter().enumerate() {
                if job_cancel.soft.is_cancelled() || job_cancel.hard.is_cancelled() {
                    self.status.cancelled = true;
                }
                let r = self.run_step(h.as_mut(), step, i, &ids[i]).await;
                step_results[i] = r;
            }
            // A cancellation during the last step (one that ran on, like `always()`) still
            // cancels the job.
            if job_cancel.soft.is_cancelled() || job_cancel.hard.is_cancelled() {
                self.status.cancelled = true;
            }
            self.run_post_steps(h.as_mut()).await;
        }
        if !self.extra_steps.is_empty() {
            let mut all = std::mem::take(&mut self.extra_steps);
            let posts = all.split_off(n_pre);
            all.append(&mut step_results);
            all.extend(posts);
            step_results = all;
        }

        // Job outputs: evaluated at the end, even after a failure.
        let mut outputs = IndexMap::new();
        if setup_error.is_none() && !job.outputs.is_empty() {
            let paths = handle.as_ref().map(|h| h.paths().clone());
            let mut ctx = self.job_contexts();
            ctx.set("env", env_object(&self.env));
            ctx.set("steps", Value::from_object(self.steps_ctx.clone()));
            ctx.set("runner", self.runner_ctx(paths.as_ref()));
            for (name, (_, y)) in &job.outputs {
                match self.eval_string(y, &ctx) {
                    Ok(v) if v.is_empty() => {}
                    Ok(v) => {
                        if shared.masker.contains_secret(&v) {
                            self.notice(
                                NoticeLevel::Warning,
                                &format!("skip output `{name}` since it may contain secret"),
                            );
                        } else {
                            outputs.insert(name.clone(), v);
                        }
                    }
                    Err(e) => {
                        self.error_annotation(None, &e);
                        self.status.failed = true;
                    }
                }
            }
        }
        timer.abort();
        // `reports:`: read before the workspace is cleaned up, whatever the conclusion.
        if let (Some(collector), Some(node)) = (&shared.results, &job.reports) {
            match crate::run::results::parse_reports(node) {
                Ok(reports) => {
                    let warnings = collector.collect(&crate::run::results::LegResults {
                        job_id: &job.id.value,
                        name: &self.spec.job_ref.name,
                        workspace: &self.workspace,
                        reports: &reports,
                    });
                    for w in warnings {
                        self.notice(NoticeLevel::Warning, &w);
                    }
                }
                Err(e) => self.notice(NoticeLevel::Warning, &e),
            }
        }
        if let Some(mut h) = handle
            && let Err(e) = h.cleanup().await
        {
            self.notice(NoticeLevel::Warning, &format!("cleanup failed: {e}"));
        }
        if let Some(dir) = isolated {
            let _ = std::fs::remove_dir_all(dir);
        }
        let timed = timed_out.load(std::sync::atomic::Ordering::SeqCst);
        if timed {
            self.error_annotation(
                None,
                &format!(
                    "the job has exceeded its maximum execution time of {} minutes",
                    crate::expr::number::format_g15(timeout.as_secs_f64() / 60.0)
                ),
            );
        }
        let conclusion = if self.status.cancelled || timed {
            Conclusion::Cancelled
        } else if self.status.failed {
            Conclusion::Failure
        } else {
            Conclusion::Success
        };
        let duration = started.elapsed();
        shared.reporter.event(&RunEvent::JobFinished {
            job: self.spec.job_ref.clone(),
            conclusion,
            outputs: outputs.clone(),
            duration_ms: ms(duration),
        });
        LegOutcome {
            conclusion,
            continue_on_error,
            outputs,
            steps: step_results,
            step_summary: self.summaries,
            duration,
            called: None,
        }
    }

    fn record_step(
        &mut self,
        id: &str,
        outcome: Conclusion,
        conclusion: Conclusion,
        outputs: &IndexMap<String, String>,
    ) {
        let mut out = Object::new();
        for (k, v) in outputs {
            out.insert(k.clone(), Value::str(v));
        }
        self.steps_ctx.insert(
            id,
            obj(vec![
                ("outputs", Value::from_object(out)),
                ("outcome", Value::str(outcome.as_str())),
                ("conclusion", Value::str(conclusion.as_str())),
            ]),
        );
    }

    async fn run_step(
        &mut self,
        h: &mut dyn JobHandle,
        step: &Step,
        index: usize,
        id: &str,
    ) -> StepSummary {
        let paths = h.paths().clone();
        let started = Instant::now();
        let mut summary = StepSummary {
            id: id.to_owned(),
            name: default_step_name(step),
            outcome: Conclusion::Skipped,
            conclusion: Conclusion::Skipped,
            outputs: IndexMap::new(),
            duration_ms: 0,
            cache: None,
        };
        let step_ref = |name: &str| StepRef {
            id: id.to_owned(),
            name: name.to_owned(),
            index,
        };

        // As in the runner's StepsRunner, the step's env comes first: it is evaluated with the
        // env context as it was before the step, and the condition already sees the result. An
        // error here fails the step without consulting its condition or continue-on-error.
        // (Without an `env:` of its own, the step's contexts are built once, below.)
        let mut step_env = self.env.clone();
        let own_env = match &step.env {
            Env::None => false,
            Env::Map(m) => !m.is_empty(),
            Env::Expr(_) => true,
        };
        if own_env
            && let Err(e) = self.eval_env(
                &step.env,
                &self.step_contexts(id, &self.env, &paths),
                &mut step_env,
            )
        {
            let name = summary.name.clone();
            self.step_started(step_ref(&name));
            self.error_annotation(Some(index), &e);
            return self.finish_step(
                summary,
                step_ref(&name),
                Conclusion::Failure,
                false,
                IndexMap::new(),
                started,
                Some(e),
            );
        }
        let sctx = self.step_contexts(id, &step_env, &paths);
        let cond_ok = match &step.if_ {
            None => Ok(!self.status.failed && !self.status.cancelled),
            Some(c) => match parse_condition(&c.text) {
                Ok(cond) => cond
                    .eval(&sctx)
                    .map_err(|e| self.locate(c, e.offset, e.len, &e.message)),
                Err(e) => Err(self.locate(c, e.offset, e.len, &e.message)),
            },
        };
        let run_it = match cond_ok {
            Ok(b) => b,
            Err(e) => {
                // A failing condition fails the step without consulting continue-on-error.
                let name = summary.name.clone();
                self.step_started(step_ref(&name));
                self.error_annotation(Some(index), &e);
                return self.finish_step(
                    summary,
                    step_ref(&name),
                    Conclusion::Failure,
                    false,
                    IndexMap::new(),
                    started,
                    Some(e),
                );
            }
        };
        let name = self.display_name(step, &sctx);
        summary.name = name.clone();
        if !run_it {
            self.record_step(
                id,
                Conclusion::Skipped,
                Conclusion::Skipped,
                &IndexMap::new(),
            );
            return summary;
        }
        // When the job is cancelled, the runner re-evaluates the running step's condition with
        // the cancelled status and stops the step only if it is false: an `always()` step runs
        // on. Such a step gets its own soft token; a hard cancel still stops it.
        let cancel = if self.survives_cancellation(step, &sctx) {
            Cancel {
                soft: tokio_util::sync::CancellationToken::new(),
                hard: self.cancel.hard.clone(),
            }
        } else {
            self.cancel.clone()
        };
        self.step_started(step_ref(&name));
        if step.uses.is_some() && self.shared.dry_run {
            // `--dry-run` runs nothing: not an action, a built-in or a container either.
            return self.finish_step(
                summary,
                step_ref(&name),
                Conclusion::Success,
                false,
                IndexMap::new(),
                started,
                None,
            );
        }
        if step.uses.is_some() {
            return self
                .run_action(
                    h,
                    step,
                    StepAt {
                        index,
                        id: id.to_owned(),
                        name,
                    },
                    sctx,
                    step_env,
                    cancel,
                    summary,
                    started,
                )
                .await;
        }

        let prepared = self.prepare_command(step, &sctx, &step_env, &paths, id, index);
        let (command, files) = match prepared {
            Ok(x) => x,
            Err(e) => {
                self.error_annotation(Some(index), &e);
                let coe = self.continue_on_error(step, &sctx, index);
                return self.finish_step(
                    summary,
                    step_ref(&name),
                    Conclusion::Failure,
                    coe,
                    IndexMap::new(),
                    started,
                    Some(e),
                );
            }
        };

        // pipe's `cache:`: compute the key, and replay a hit instead of running.
        let shared = self.shared;
        let mut cached: Option<(
            Arc<StepCache>,
            stepcache::CacheSpec,
            String,
            stepcache::Computed,
        )> = None;
        let own_step = self.scope.outer.is_none();
        if let (true, Some(sc), Some(spec)) = (
            own_step,
            shared.step_cache.clone(),
            stepcache::effective(
                self.job.cache.as_ref(),
                step.cache.as_ref(),
                step.run.is_some(),
            ),
        ) {
            let identity = format!(
                "{}\n{}\n{}",
                shared.source.path().display(),
                self.spec.key,
                id
            );
            match self
                .cache_key(&sc, &spec, &identity, &command, &step_env, &paths)
                .await
            {
                Ok(computed) => cached = Some((sc, spec, identity, computed)),
                Err(e) => self.notice(
                    NoticeLevel::Warning,
                    &format!("step `{name}` runs uncached: {e}"),
                ),
            }
        }
        if shared.dry_run {
            // Look up without restoring or remembering: report what a real run would do.
            let mut dry_outputs = IndexMap::new();
            if let Some((sc, _, identity, computed)) = &cached {
                let entry = pipe_cache::EntryKey::new(stepcache::NAMESPACE, &computed.key.hex());
                // One small manifest read in the local store: done here (see `replay_hit`).
                let (looked, previous) = match sc.cache.local().get_entry(&entry).ok().flatten() {
                    Some(m) => (Some(m), None),
                    None => (None, sc.last_recorded(identity)),
                };
                let (info, recorded) = match looked {
                    Some(m) => {
                        let recorded: stepcache::Recorded =
                            serde_json::from_slice(&m.metadata).unwrap_or_default();
                        let info = stepcache::hit_info(
                            &computed.key,
                            pipe_cache::Source::Local,
                            recorded.duration_ms,
                        );
                        (info, Some(recorded))
                    }
                    // A miss cannot run here: predict its effects from its previous result.
                    None => (
                        stepcache::miss_info(&computed.key, computed.changes.clone()),
                        previous,
                    ),
                };
                if let Some(recorded) = recorded {
                    // Later steps see the effects, as in a real run.
                    let contents = FileContents::from(recorded);
                    let mut dry_state = IndexMap::new();
                    let _ = self.apply_files(&contents, &mut dry_outputs, &mut dry_state);
                }
                self.cache_info = Some(info);
            }
            return self.finish_step(
                summary,
                step_ref(&name),
                Conclusion::Success,
                false,
                dry_outputs,
                started,
                None,
            );
        }
        if let Some((sc, _, identity, computed)) = &cached
            && let Some(summary) = self
                .replay_hit(
                    sc,
                    identity,
                    computed,
                    &step_ref(&name),
                    summary.clone(),
                    started,
                )
                .await
        {
            return summary;
        }

        let ran = self
            .exec(h, &command, &files, index, &cancel, cached.is_some())
            .await;
        let outcome = ran.outcome;
        let error = ran.error;
        let outputs = ran.outputs;
        if let Some((sc, spec, identity, computed)) = cached {
            let mut changes = computed.changes.clone();
            if computed.same_as_last {
                changes.push(
                    "nothing: the result stored under this key is gone (evicted, cleared or corrupt)"
                        .to_owned(),
                );
            }
            let mut info = stepcache::miss_info(&computed.key, changes);
            if outcome == Conclusion::Success {
                let recorded = stepcache::Recorded {
                    version: 1,
                    exit: 0,
                    output: ran.contents.output,
                    env: ran.contents.env,
                    path: ran.contents.path,
                    summary: ran.contents.summary,
                    state: ran.contents.state,
                    duration_ms: ms(started.elapsed()),
                };
                match self
                    .cache_save(sc, spec, identity, computed, ran.captured, recorded)
                    .await
                {
                    Ok(warnings) => {
                        info.saved = Some(true);
                        info.note = warnings.into_iter().next();
                    }
                    Err(why) => info.note = Some(why),
                }
            } else {
                info.note = Some("failed steps are not cached".to_owned());
            }
            self.cache_info = Some(info);
        }

        // continue-on-error is evaluated after a failure, as the runner does; an error while
        // evaluating it counts as false.
        let coe = outcome == Conclusion::Failure && self.continue_on_error(step, &sctx, index);
        self.finish_step(
            summary,
            step_ref(&name),
            outcome,
            coe,
            outputs,
            started,
            error,
        )
    }

    /// The step's display name, as the runner makes it: `name:` evaluated, else `Run ` and the
    /// first line of the evaluated script (or the action); the raw text when evaluation fails;
    /// masked.
    fn display_name(&self, step: &Step, ctx: &Contexts) -> String {
        let evaluated = match (&step.name, &step.run) {
            (Some(n), _) if n.has_expr() => self.eval_string(n, ctx).ok().map(|v| first_line(&v)),
            (None, Some(r)) if r.has_expr() => self
                .eval_string(r, ctx)
                .ok()
                .map(|v| format!("Run {}", first_line(&v))),
            _ => None,
        };
        self.shared
            .masker
            .mask(&evaluated.unwrap_or_else(|| default_step_name(step)))
    }

    /// Whether the step's condition still holds once the job is cancelled.
    fn survives_cancellation(&self, step: &Step, ctx: &Contexts) -> bool {
        let Some(c) = &step.if_ else {
            return false;
        };
        let Ok(cond) = parse_condition(&c.text) else {
            return false;
        };
        let mut ctx = ctx.clone();
        ctx.status = Status {
            failed: false,
            cancelled: true,
            skipped_ancestor: false,
        };
        ctx.set(
            "job",
            obj(vec![
                ("status", Value::str("cancelled")),
                ("services", Value::object(Vec::<(String, Value)>::new())),
            ]),
        );
        cond.eval(&ctx).unwrap_or(false)
    }

    /// The step's `continue-on-error`; an evaluation error is reported and counts as false.
    fn continue_on_error(&self, step: &Step, ctx: &Contexts, index: usize) -> bool {
        let Some(c) = &step.continue_on_error else {
            return false;
        };
        match self.eval(c, ctx) {
            Ok(v) => v.is_truthy(),
            Err(e) => {
                self.error_annotation(
                    Some(index),
                    &format!("cannot evaluate `continue-on-error`: {e}"),
                );
                false
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_step(
        &mut self,
        mut summary: StepSummary,
        step: StepRef,
        outcome: Conclusion,
        continue_on_error: bool,
        outputs: IndexMap<String, String>,
        started: Instant,
        error: Option<String>,
    ) -> StepSummary {
        let conclusion = if outcome == Conclusion::Failure && continue_on_error {
            Conclusion::Success
        } else {
            outcome
        };
        match conclusion {
            Conclusion::Failure => self.status.failed = true,
            Conclusion::Cancelled => self.status.cancelled = true,
            _ => {}
        }
        self.record_step(&summary.id, outcome, conclusion, &outputs);
        // Later steps read the real values; what leaves the job (events, the summary) is masked.
        let outputs: IndexMap<String, String> = outputs
            .into_iter()
            .map(|(k, v)| (k, self.shared.masker.mask(&v)))
            .collect();
        summary.outcome = outcome;
        summary.conclusion = conclusion;
        summary.outputs = outputs.clone();
        summary.duration_ms = ms(started.elapsed());
        summary.cache = self.cache_info.take();
        if self.scope.outer.is_some() {
            // A composite action's step: a line in the outer step's log.
            if outcome == Conclusion::Failure {
                let mut line = format!("{} failed", step.name);
                if conclusion == Conclusion::Success {
                    line.push_str(" (continue-on-error)");
                }
                if let Some(e) = &error {
                    line.push_str(&format!(": {e}"));
                }
                self.nested_line(&line);
            }
            return summary;
        }
        self.shared.reporter.event(&RunEvent::StepFinished {
            job: self.spec.job_ref.clone(),
            step,
            outcome,
            conclusion,
            outputs,
            duration_ms: summary.duration_ms,
            error: error.map(|e| self.shared.masker.mask(&e)),
            cache: summary.cache.clone().map(Box::new),
        });
        summary
    }

    fn prepare_command(
        &self,
        step: &Step,
        ctx: &Contexts,
        step_env: &[(String, String)],
        paths: &crate::executor::JobPaths,
        id: &str,
        index: usize,
    ) -> Result<(StepCommand, StepFiles), String> {
        let shared = self.shared;
        let timeout = match &step.timeout_minutes {
            Some(t) => {
                let m = self.eval(t, ctx)?.to_number();
                (m > 0.0 && m.is_finite()).then(|| Duration::from_secs_f64(m * 60.0))
            }
            None => None,
        };
        let Some(run) = &step.run else {
            // `uses:` steps go through `run_action`; the loader rejects steps with neither.
            return Err("the step has no `run`".to_owned());
        };
        let script = self.eval_string(run, ctx)?;
        // `defaults.run` applies to the job's own steps, not to a composite action's.
        let defaults = if self.scope.depth == 0 {
            [
                self.job.defaults.as_ref(),
                shared.workflow.defaults.as_ref(),
            ]
        } else {
            [None, None]
        };
        let shell_y = step
            .shell
            .as_ref()
            .or_else(|| defaults.iter().flatten().find_map(|d| d.shell.as_ref()));
        let shell = match shell_y {
            Some(y) => Some(self.eval_string(y, ctx)?),
            None => None,
        };
        let template = shell_template(shell.as_deref(), paths.has_bash.unwrap_or(shared.has_bash))?;
        let wd_y = step.working_directory.as_ref().or_else(|| {
            defaults
                .iter()
                .flatten()
                .find_map(|d| d.working_directory.as_ref())
        });
        let cwd = match wd_y {
            Some(y) => {
                let wd = self.eval_string(y, ctx)?;
                let p = Path::new(&wd);
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    paths.workspace_exec.join(p)
                }
            }
            None => paths.workspace_exec.clone(),
        };
        let (env, files) = self.step_vars(step_env, paths, id, index);
        Ok((
            StepCommand {
                script: script_for(&template, &script),
                shell: template,
                env,
                run_env: shared.default_env.clone(),
                cwd,
                timeout,
                action: None,
            },
            files,
        ))
    }

    /// A step's whole process environment (the run's variables under its own, see
    /// [`LegRunner::step_vars`]) and its fresh env files.
    fn command_env(
        &self,
        step_env: &[(String, String)],
        paths: &crate::executor::JobPaths,
        id: &str,
        index: usize,
    ) -> (Vec<(String, String)>, StepFiles) {
        let (own, files) = self.step_vars(step_env, paths, id, index);
        let mut env = self.shared.default_env.to_vec();
        for (k, v) in own {
            set_env(&mut env, &k, v);
        }
        (env, files)
    }

    /// A step's own variables, which go over the run's (`Shared::default_env`, the same for
    /// every step): the job's and step's `env`, `GITHUB_JOB`, `RUNNER_TEMP`, the env files…
    /// Copying the run's 32 variables into every step's list, and the executor turning them
    /// into an environment block again each time, was a tenth of pipe's instructions on a
    /// chain of 100 trivial jobs (callgrind: 31.5 → 28.2 million without it).
    fn step_vars(
        &self,
        step_env: &[(String, String)],
        paths: &crate::executor::JobPaths,
        id: &str,
        index: usize,
    ) -> (Vec<(String, String)>, StepFiles) {
        let shared = self.shared;
        // Fresh per-step files: unique names that do not exist yet (`>>` creates them).
        let stem = format!("{}-{index}", crate::store::safe_name(id));
        // Each file's path on the host (read by pipe) and in the executor (given to the step),
        // each built at its final size: five `format!`s and ten `join`s regrew their buffers.
        let exec_dir = paths.temp_exec.to_string_lossy();
        let file = |kind: &str| {
            let mut exec = String::with_capacity(exec_dir.len() + kind.len() + stem.len() + 2);
            exec.push_str(&exec_dir);
            if !exec.is_empty() && !exec.ends_with('/') {
                exec.push('/');
            }
            let name_at = exec.len();
            exec.push_str(kind);
            exec.push('_');
            exec.push_str(&stem);
            let name = exec.get(name_at..).unwrap_or_default();
            let mut host =
                PathBuf::with_capacity(paths.temp_host.as_os_str().len() + name.len() + 1);
            host.push(&paths.temp_host);
            host.push(name);
            (host, exec)
        };
        let (output, output_exec) = file("output");
        let (env_file, env_exec) = file("env");
        let (path_file, path_exec) = file("path");
        let (summary, summary_exec) = file("step_summary");
        let (state, state_exec) = file("state");
        let files = StepFiles {
            output,
            env: env_file,
            path: path_file,
            summary,
            state,
        };
        // No need to remove leftovers first: the names are unique within the job's fresh temp
        // folder, and `apply_files` removes them after each step.
        let mut env: Vec<(String, String)> = Vec::with_capacity(16 + step_env.len());
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        env.push(("GITHUB_JOB".into(), self.job.id.value.clone()));
        env.push(("GITHUB_ACTION".into(), id.to_owned()));
        env.push(("RUNNER_OS".into(), paths.os.to_owned()));
        env.push(("RUNNER_ARCH".into(), paths.arch.to_owned()));
        env.push(("RUNNER_TEMP".into(), s(paths.temp_exec.clone())));
        env.push((
            "RUNNER_TOOL_CACHE".into(),
            s(paths.temp_exec.join("tool-cache")),
        ));
        env.push(("GITHUB_WORKSPACE".into(), s(paths.workspace_exec.clone())));
        if shared.debug {
            env.push(("RUNNER_DEBUG".into(), "1".into()));
        }
        for (k, v) in step_env {
            set_env(&mut env, k, v.clone());
        }
        set_env(&mut env, "GITHUB_OUTPUT", output_exec);
        set_env(&mut env, "GITHUB_ENV", env_exec);
        set_env(&mut env, "GITHUB_PATH", path_exec);
        set_env(&mut env, "GITHUB_STEP_SUMMARY", summary_exec);
        set_env(&mut env, "GITHUB_STATE", state_exec);
        if !self.path_additions.is_empty() {
            let base = step_env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .or_else(|| paths.path.clone())
                .or_else(|| std::env::var("PATH").ok())
                .unwrap_or_default();
            let mut parts = self.path_additions.clone();
            parts.extend(base.split(':').filter(|p| !p.is_empty()).map(str::to_owned));
            set_env(&mut env, "PATH", parts.join(":"));
        }
        if let Some(a) = &self.scope.action {
            set_env(&mut env, "GITHUB_ACTION_PATH", s(a.dir.clone()));
            set_env(&mut env, "GITHUB_ACTION_REPOSITORY", a.repository.clone());
            set_env(&mut env, "GITHUB_ACTION_REF", a.git_ref.clone());
        }
        (env, files)
    }

    fn apply_files(
        &mut self,
        contents: &FileContents,
        outputs: &mut IndexMap<String, String>,
        state: &mut IndexMap<String, String>,
    ) -> Result<(), String> {
        let mut errors = Vec::new();
        // Pairs before a malformed line apply: the runner applies them as it reads.
        let (kv, err) = envfile::parse_key_values_partial(&contents.output, "GITHUB_OUTPUT");
        outputs.extend(kv);
        errors.extend(err.map(|e| e.to_string()));
        let (kv, err) = envfile::parse_key_values_partial(&contents.env, "GITHUB_ENV");
        for (k, v) in kv {
            if k == "NODE_OPTIONS" {
                self.notice(
                    NoticeLevel::Warning,
                    "`NODE_OPTIONS` cannot be set through `GITHUB_ENV`",
                );
                continue;
            }
            set_env(&mut self.env, &k, v.clone());
            self.env_log.push((k, v));
        }
        errors.extend(err.map(|e| e.to_string()));
        let added = envfile::parse_path_file(&contents.path);
        envfile::prepend_paths(&mut self.path_additions, &added);
        let summary = &contents.summary;
        if !summary.is_empty() {
            if summary.len() > 1024 * 1024 {
                self.notice(
                    NoticeLevel::Warning,
                    "the step summary is larger than 1 MiB and was not kept",
                );
            } else {
                self.summaries.push_str(&self.shared.masker.mask(summary));
                if !summary.ends_with('\n') {
                    self.summaries.push('\n');
                }
            }
        }
        match envfile::parse_key_values(&contents.state, "GITHUB_STATE") {
            Ok(kv) => state.extend(kv),
            Err(e) => errors.push(e.to_string()),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// Whether every blob of a cache entry is inlined in its manifest (a small entry).
fn all_inline(m: &pipe_cache::Manifest) -> bool {
    m.attachments.iter().all(|a| a.blob.inline.is_some())
        && m.files.iter().all(|f| match &f.kind {
            pipe_cache::manifest::FileKind::File { blob, .. } => blob.inline.is_some(),
            _ => true,
        })
}

struct StepFiles {
    output: PathBuf,
    env: PathBuf,
    path: PathBuf,
    summary: PathBuf,
    state: PathBuf,
}

/// What a step wrote to its environment files.
#[derive(Default)]
struct FileContents {
    output: String,
    env: String,
    path: String,
    summary: String,
    state: String,
}

impl From<stepcache::Recorded> for FileContents {
    fn from(r: stepcache::Recorded) -> Self {
        FileContents {
            output: r.output,
            env: r.env,
            path: r.path,
            summary: r.summary,
            state: r.state,
        }
    }
}

fn read_files(files: &StepFiles) -> FileContents {
    // Read, then remove, each file the step created; a file it never wrote costs one failed
    // open and nothing more (most steps write none of the five).
    let read = |p: &Path| match std::fs::read(p) {
        Ok(b) => {
            let _ = std::fs::remove_file(p);
            String::from_utf8_lossy(&b).into_owned()
        }
        Err(_) => String::new(),
    };
    FileContents {
        output: read(&files.output),
        env: read(&files.env),
        path: read(&files.path),
        summary: read(&files.summary),
        state: read(&files.state),
    }
}

/// Passes output on and keeps a copy (up to [`stepcache::MAX_LOG`]) for the step cache.
struct Tee<'a> {
    inner: &'a mut StepOutput,
    buf: Option<Vec<u8>>,
}

impl OutputSink for Tee<'_> {
    fn write(&mut self, bytes: &[u8]) {
        if let Some(b) = &mut self.buf {
            if b.len() + bytes.len() > stepcache::MAX_LOG {
                self.buf = None;
            } else {
                b.extend_from_slice(bytes);
            }
        }
        self.inner.write(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::actions::node_runtime_with;
    use super::*;

    #[test]
    fn node_versions() {
        assert!(node_runtime_with("node20", Some(20)).is_ok());
        assert!(node_runtime_with("node16", Some(20)).is_ok());
        assert!(node_runtime_with("node24", Some(24)).is_ok());
        let e = node_runtime_with("node24", Some(20))
            .err()
            .unwrap_or_default();
        assert!(e.contains("needs node 24 or later"), "{e}");
        let e = node_runtime_with("node20", None).err().unwrap_or_default();
        assert!(e.contains("need `node` on PATH"), "{e}");
    }

    #[test]
    fn generated_ids_of_actions() {
        let step = |uses: &str| Step {
            uses: Some(YStr::synthetic(uses, crate::source::Span::default())),
            ..Step::default()
        };
        let steps = vec![
            step("./.github/actions/a"),
            step("pipe-test/js/sub@v1"),
            step("pipe-test/js@v1"),
        ];
        assert_eq!(
            step_ids(&steps),
            vec!["__self", "__pipe-test_js", "__pipe-test_js_2"]
        );
    }
}
