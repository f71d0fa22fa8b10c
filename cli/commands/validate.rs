//! `pipe validate [FILE|DIR ...]`: every finding in every file, exit 1 if any (decisions.md).

use std::path::{Path, PathBuf};

use pipe_runner::check::{self, CheckOptions};
use pipe_runner::diag::{self, Diagnostic};
use pipe_runner::exit;
use pipe_runner::project::{self, Config};
use pipe_runner::source::{SourceFile, SourceMap, Span};
use pipe_runner::workflow;

use crate::args::{Cli, Format, ValidateArgs};
use crate::output::{self, Styles};
use crate::render;

/// Runs the command and returns its exit code.
pub fn run(cli: &Cli, args: &ValidateArgs) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let root = project::find_root(&cwd);
    let err_styles = Styles::new(output::use_color(
        cli.globals.color,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    ));
    let config = match Config::load(&root) {
        Ok(c) => c,
        Err(e) => {
            output::stderr_write(
                format!("{}: {e}\n", err_styles.paint(err_styles.error, "error")).as_bytes(),
            );
            return exit::USAGE;
        }
    };
    let mut labels = config.runners.labels.clone();
    labels.extend(config.runners.images.keys().cloned());
    labels.extend(project::actionlint_labels(&root));
    let opts = CheckOptions {
        root: root.clone(),
        labels,
        strict_github: args.strict_github,
        action_dir: args
            .action_dir
            .as_ref()
            .map(|d| std::env::current_dir().unwrap_or_default().join(d))
            .or_else(|| config.actions.dir.as_ref().map(|d| root.join(d))),
    };

    // Collect targets; an unreadable path is a usage error (exit 2), reported after the rest.
    let mut files: Vec<PathBuf> = Vec::new();
    let mut unreadable: Vec<String> = Vec::new();
    let targets: Vec<PathBuf> = if args.paths.is_empty() {
        let mut defaults: Vec<PathBuf> = [
            root.join(".github").join("workflows"),
            root.join("pipelines"),
        ]
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
        // The promotion policy too, when the repository has one.
        if !defaults.is_empty() {
            defaults.extend(
                pipe_promote::policy::source::POLICY_FILES
                    .iter()
                    .map(|f| root.join(f))
                    .filter(|p| p.is_file()),
            );
        }
        if defaults.is_empty() {
            output::stderr_write(
                format!(
                    "{}: no workflows found: neither `.github/workflows/` nor `pipelines/` exists under `{}`\n  hint: pass files or directories to check\n",
                    err_styles.paint(err_styles.error, "error"),
                    root.display()
                )
                .as_bytes(),
            );
            return exit::USAGE;
        }
        defaults
    } else {
        args.paths.clone()
    };
    for t in &targets {
        match std::fs::metadata(t) {
            Ok(m) if m.is_dir() => match project::yaml_files_in(t) {
                Ok(found) => files.extend(found),
                Err(e) => unreadable.push(format!("cannot read directory `{}`: {e}", t.display())),
            },
            Ok(_) => files.push(t.clone()),
            Err(e) => unreadable.push(format!("cannot read `{}`: {}", t.display(), io_reason(&e))),
        }
    }

    let mut sources = SourceMap::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    for path in &files {
        let shown = project::display_path(path, &cwd);
        let read = match project::read_text(path) {
            Ok(r) => r,
            Err(e) => {
                unreadable.push(format!(
                    "cannot read `{}`: {}",
                    shown.display(),
                    io_reason(&e)
                ));
                continue;
            }
        };
        let file = sources.add(SourceFile::new(shown, read.text));
        let source = sources.get(file).clone();
        if let Some(at) = read.invalid_utf8_at {
            diags.push(
                Diagnostic::error(
                    "syntax-check",
                    Span::point(file, at),
                    "file is not valid UTF-8",
                )
                .with_hint("workflow files must be UTF-8 text"),
            );
            continue;
        }
        diags.extend(check_file(path, &source, file, &opts));
    }
    diag::sort_and_dedup(&mut diags);

    let styles = Styles::new(output::use_color(
        cli.globals.color,
        std::io::IsTerminal::is_terminal(&std::io::stdout()),
    ));
    let text = match args.format {
        Format::Human => diags
            .iter()
            .map(|d| render::human(d, &sources, &styles))
            .collect::<String>(),
        Format::Json => format!("{}\n", pretty(&render::json_all(&diags, &sources))),
        Format::Sarif => format!("{}\n", pretty(&render::sarif(&diags, &sources))),
    };
    if output::stdout_write(text.as_bytes()).is_err() {
        return if diags.is_empty() {
            exit::SUCCESS
        } else {
            exit::FAILURE
        };
    }
    for u in &unreadable {
        output::stderr_write(
            format!("{}: {u}\n", err_styles.paint(err_styles.error, "error")).as_bytes(),
        );
    }
    if !cli.globals.quiet && args.format == Format::Human {
        let summary = match (diags.len(), files.len()) {
            (0, n) => format!(
                "{} no problems in {n} file{}\n",
                err_styles.paint(err_styles.success, "ok:"),
                plural(n)
            ),
            (d, n) => format!("found {d} problem{} in {n} file{}\n", plural(d), plural(n)),
        };
        if unreadable.is_empty() {
            output::stderr_write(summary.as_bytes());
        }
    }
    if !unreadable.is_empty() {
        exit::USAGE
    } else if diags.is_empty() {
        exit::SUCCESS
    } else {
        exit::FAILURE
    }
}

/// Loads and checks one file: action metadata or a workflow.
pub fn check_file(
    path: &Path,
    source: &SourceFile,
    file: pipe_runner::FileId,
    opts: &CheckOptions,
) -> Vec<Diagnostic> {
    if project::is_action_file(path) {
        let (_, d) = workflow::load_action(file, source.text());
        return d;
    }
    if is_policy_file(path) {
        return check_policy(source, file);
    }
    let (wf, mut d) = workflow::load(file, source.text());
    if let Some(wf) = wf {
        d.extend(check::check_workflow(&wf, source, opts));
        // pipe's top-level `environments:` is a promotion policy: checked like the file.
        if let Some(envs) = &wf.environments {
            let shown = source.path().display().to_string();
            d.extend(
                pipe_promote::policy::parse_embedded(file, envs, source.text().as_bytes(), &shown)
                    .1,
            );
        }
    }
    d
}

/// `.pipe/environments.yml` (or `.yaml`): the promotion policy.
pub fn is_policy_file(path: &Path) -> bool {
    path.parent()
        .and_then(|p| p.file_name())
        .is_some_and(|d| d == ".pipe")
        && path
            .file_name()
            .is_some_and(|f| f == "environments.yml" || f == "environments.yaml")
}

/// Checks a promotion policy: YAML syntax, unknown keys (did-you-mean), `from:` references
/// and cycles, window syntax, gate kinds, and the `deploy:`/`verify:`/`rollback:` fields.
fn check_policy(source: &SourceFile, file: pipe_runner::FileId) -> Vec<Diagnostic> {
    let loaded = pipe_runner::yaml::load(file, source.text());
    let mut d = loaded.diagnostics;
    if d.iter().any(Diagnostic::is_error) {
        return d;
    }
    match loaded.root {
        Some(root) => {
            d.extend(pipe_promote::policy::parse(file, &root, source.text().as_bytes()).1)
        }
        None => d.push(Diagnostic::error(
            pipe_promote::policy::RULE,
            Span::point(file, 0),
            "the policy file is empty",
        )),
    }
    d
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string().to_lowercase(),
    }
}
