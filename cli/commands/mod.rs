//! One module per command, plus what `run`, `list` and `graph` share: selecting, loading and
//! planning workflows.

pub mod agent;
pub mod artifacts;
pub mod bench;
pub mod cache;
pub mod deploy;
pub mod graph;
pub mod image;
pub mod list;
pub mod logs;
pub mod promote;
pub mod prune;
pub mod run;
pub mod runs;
pub mod scan;
pub mod server;
pub mod submit;
pub mod validate;
pub mod why;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pipe_runner::check::{self, CheckOptions};
use pipe_runner::context::Contexts;
use pipe_runner::diag::{self, Diagnostic};
use pipe_runner::exit;
use pipe_runner::plan::{self, Plan, Selection};
use pipe_runner::project::{self, Config};
use pipe_runner::source::{SourceFile, SourceMap};
use pipe_runner::workflow::{self, Workflow};

use crate::args::{Cli, SelectArgs};
use crate::output::{self, Styles};
use crate::render;

/// A workflow loaded for `run`, `list` or `graph`.
pub struct Loaded {
    /// Path as shown (relative to the repository root where possible).
    pub path: String,
    /// The source text.
    pub source: Arc<SourceFile>,
    /// The model.
    pub workflow: Arc<Workflow>,
}

/// The project a command works in.
pub struct Project {
    /// The current directory.
    pub cwd: PathBuf,
    /// The repository root.
    pub root: PathBuf,
    /// `.pipe/config.toml`.
    pub config: Config,
    /// The repository's git facts, read once on first use.
    git: std::sync::OnceLock<pipe_runner::gitinfo::GitInfo>,
}

impl Project {
    /// The repository's git facts (HEAD, origin, user), read on first use.
    pub fn git(&self) -> &pipe_runner::gitinfo::GitInfo {
        self.git
            .get_or_init(|| pipe_runner::gitinfo::read(&self.root, &pipe_runner::dirs::process_env))
    }
}

/// Styles for stderr.
pub fn err_styles(cli: &Cli) -> Styles {
    Styles::new(output::use_color(
        cli.globals.color,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    ))
}

/// Prints `error: message` (and an optional hint) on stderr.
pub fn error(cli: &Cli, message: &str, hint: Option<&str>) {
    let s = err_styles(cli);
    let mut text = format!("{} {message}\n", s.paint(s.error, "error:"));
    if let Some(h) = hint {
        text.push_str(&format!("  {} {h}\n", s.paint(s.hint, "hint:")));
    }
    output::stderr_write(text.as_bytes());
}

/// Finds the project; a broken config file is a usage error.
/// The offline action folder: `--action-dir` (relative to the current directory), else `dir`
/// under `[actions]` in `.pipe/config.toml` (relative to the repository root).
pub fn action_dir(p: &Project, sel: &crate::args::SelectArgs) -> Option<PathBuf> {
    sel.action_dir
        .as_ref()
        .map(|d| p.cwd.join(d))
        .or_else(|| p.config.actions.dir.as_ref().map(|d| p.root.join(d)))
}

pub fn project(cli: &Cli) -> Result<Project, u8> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let root = project::find_root(&cwd);
    let config = Config::load(&root).map_err(|e| {
        error(cli, &e.to_string(), None);
        exit::USAGE
    })?;
    Ok(Project {
        cwd,
        root,
        config,
        git: std::sync::OnceLock::new(),
    })
}

fn triggers(wf: &Workflow, event: &str) -> bool {
    wf.on.iter().any(|t| t.name.value == event)
}

/// Selects, loads and checks workflows. Errors (invalid for GitHub) are printed and make the
/// command exit 2; lint findings are printed as warnings.
pub fn load_workflows(cli: &Cli, p: &Project, sel: &SelectArgs) -> Result<Vec<Loaded>, u8> {
    let paths: Vec<PathBuf> = match &sel.workflow {
        Some(w) => {
            let path = if w.is_absolute() {
                w.clone()
            } else {
                p.cwd.join(w)
            };
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    error(
                        cli,
                        &format!("`{}` is a directory", w.display()),
                        Some(
                            "give one workflow file to `-W`, or run without `-W` to use `.github/workflows/`",
                        ),
                    );
                    return Err(exit::USAGE);
                }
                Ok(_) => vec![path],
                Err(e) => {
                    error(
                        cli,
                        &format!("cannot read `{}`: {}", w.display(), io_reason(&e)),
                        None,
                    );
                    return Err(exit::USAGE);
                }
            }
        }
        None => {
            let dir = p.root.join(".github").join("workflows");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_file() && project::is_yaml(p))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            if files.is_empty() {
                error(
                    cli,
                    &format!(
                        "no workflows in `{}`",
                        project::display_path(&dir, &p.cwd).display()
                    ),
                    Some(
                        "pass a workflow file with `-W`, e.g. `pipe run -W pipelines/test-matrix.yml`",
                    ),
                );
                return Err(exit::USAGE);
            }
            files
        }
    };
    // Large workflows make a large heap, which huge pages serve better (see `heap`); decided
    // before parsing, which builds most of it.
    let bytes: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    crate::heap::for_workflows(bytes);
    let mut labels = p.config.runners.labels.clone();
    labels.extend(p.config.runners.images.keys().cloned());
    labels.extend(project::actionlint_labels(&p.root));
    let opts = CheckOptions {
        root: p.root.clone(),
        labels,
        strict_github: false,
        action_dir: p.config.actions.dir.as_ref().map(|d| p.root.join(d)),
    };
    let mut sources = SourceMap::new();
    let mut all_errors: Vec<Diagnostic> = Vec::new();
    let mut lints: Vec<Diagnostic> = Vec::new();
    let mut out = Vec::new();
    for path in &paths {
        let shown = project::display_path(path, &p.cwd);
        let read = match project::read_text(path) {
            Ok(r) => r,
            Err(e) => {
                error(
                    cli,
                    &format!("cannot read `{}`: {}", shown.display(), io_reason(&e)),
                    None,
                );
                return Err(exit::USAGE);
            }
        };
        let file = sources.add(SourceFile::new(shown.clone(), read.text));
        let source = sources.get(file).clone();
        if let Some(at) = read.invalid_utf8_at {
            all_errors.push(Diagnostic::error(
                "syntax-check",
                pipe_runner::source::Span::point(file, at),
                "file is not valid UTF-8",
            ));
            continue;
        }
        let (wf, mut d) = workflow::load(file, source.text());
        let Some(wf) = wf else {
            all_errors.extend(d);
            continue;
        };
        // Without -W only workflows triggered by the event run; with -W the file runs.
        if sel.workflow.is_none() && !triggers(&wf, &sel.event) {
            continue;
        }
        d.extend(check::check_workflow(&wf, &source, &opts));
        let (errs, ls): (Vec<_>, Vec<_>) = d.into_iter().partition(Diagnostic::is_error);
        all_errors.extend(errs);
        lints.extend(ls);
        let rel = project::display_path(path, &p.root).display().to_string();
        out.push(Loaded {
            path: rel,
            source,
            workflow: Arc::new(wf),
        });
    }
    let styles = err_styles(cli);
    diag::sort_and_dedup(&mut lints);
    if !cli.globals.quiet {
        for l in &lints {
            let text = render::human(l, &sources, &styles);
            output::stderr_write(
                format!("{} {text}", styles.paint(styles.warning, "warning:")).as_bytes(),
            );
        }
    }
    if !all_errors.is_empty() {
        diag::sort_and_dedup(&mut all_errors);
        for e in &all_errors {
            output::stderr_write(render::human(e, &sources, &styles).as_bytes());
        }
        let n = all_errors.len();
        error(
            cli,
            &format!(
                "the workflow is invalid ({n} error{}); nothing ran",
                if n == 1 { "" } else { "s" }
            ),
            Some("`pipe validate` lists every finding"),
        );
        return Err(exit::USAGE);
    }
    if out.is_empty() {
        error(
            cli,
            &format!(
                "no workflow in `.github/workflows/` triggers on `{}`",
                sel.event
            ),
            Some("choose the event with `--event`, or a file with `-W`"),
        );
        return Err(exit::USAGE);
    }
    Ok(out)
}

/// Parses `--matrix key=value` filters.
pub fn matrix_filters(cli: &Cli, sel: &SelectArgs) -> Result<Vec<(String, String)>, u8> {
    sel.matrix
        .iter()
        .map(|m| {
            m.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    error(cli, &format!("`--matrix {m}` must be `key=value`"), None);
                    exit::USAGE
                })
        })
        .collect()
}

/// Parses `--input key=value`.
pub fn inputs(cli: &Cli, sel: &SelectArgs) -> Result<Vec<(String, String)>, u8> {
    sel.input
        .iter()
        .map(|m| {
            m.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .ok_or_else(|| {
                    error(cli, &format!("`--input {m}` must be `name=value`"), None);
                    exit::USAGE
                })
        })
        .collect()
}

/// Plans a loaded workflow with the contexts known before the run; the selection is checked
/// across all planned workflows with [`check_selection`].
pub fn plan_one(cli: &Cli, l: &Loaded, sel: &SelectArgs, contexts: &Contexts) -> Result<Plan, u8> {
    let selection = Selection {
        jobs: sel.job.clone(),
        no_deps: sel.no_deps,
        matrix: matrix_filters(cli, sel)?,
    };
    Ok(plan::plan_unchecked(
        &plan::PlanInput {
            workflow: &l.workflow,
            path: &l.path,
            contexts,
            selection: &selection,
        },
        &[],
    ))
}

/// Checks `-j` and `--matrix` against every planned workflow (exit 2 with a hint).
pub fn check_selection(cli: &Cli, sel: &SelectArgs, plans: &[Plan]) -> Result<(), u8> {
    let selection = Selection {
        jobs: sel.job.clone(),
        no_deps: sel.no_deps,
        matrix: matrix_filters(cli, sel)?,
    };
    plan::check_selection(plans, &selection).map_err(|e| {
        error(cli, &e.message, None);
        exit::USAGE
    })
}

/// Contexts available when planning (`strategy` sees `github`, `vars`, `inputs`).
pub fn plan_contexts(
    cli: &Cli,
    p: &Project,
    l: &Loaded,
    sel: &SelectArgs,
    vars: pipe_runner::expr::Value,
) -> Result<(Contexts, pipe_runner::expr::Value, pipe_runner::expr::Value), u8> {
    use pipe_runner::run::setup;
    let git = p.git();
    let given = inputs(cli, sel)?;
    let inputs = setup::inputs_context(&l.workflow, &sel.event, &given).map_err(|e| {
        error(cli, &e.0, None);
        exit::USAGE
    })?;
    let payload = match &sel.eventpath {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                error(
                    cli,
                    &format!("cannot read `{}`: {}", path.display(), io_reason(&e)),
                    None,
                );
                exit::USAGE
            })?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                error(
                    cli,
                    &format!("`{}` is not valid JSON: {e}", path.display()),
                    None,
                );
                exit::USAGE
            })?;
            pipe_runner::expr::Value::from_json(json)
        }
        None => setup::default_payload(&sel.event, git, &inputs),
    };
    let name = l
        .workflow
        .name
        .as_ref()
        .map(|n| n.text.clone())
        .unwrap_or_else(|| l.path.clone());
    let github = setup::github_context(&setup::RunFacts {
        git,
        event: &sel.event,
        payload: &payload,
        event_path: Path::new(""),
        workflow_path: &l.path,
        workflow_name: &name,
        run_number: 0,
        workspace: &p.root,
    });
    let ctx = Contexts::new()
        .with("github", github)
        .with("vars", vars)
        .with("inputs", inputs.clone());
    Ok((ctx, inputs, payload))
}

/// A short reason for an I/O error.
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string().to_lowercase(),
    }
}

/// Prints `warning: message` on stderr.
pub fn warn(cli: &Cli, message: &str) {
    let s = err_styles(cli);
    output::stderr_write(format!("{} {message}\n", s.paint(s.warning, "warning:")).as_bytes());
}
