//! Checks that run on a loaded [`Workflow`]: the rule passes of `pipe validate` beyond schema
//! and types (which [`crate::workflow::load`] reports).
//!
//! Each pass adds diagnostics; errors are what GitHub itself rejects (unknown or cyclic
//! `needs`, malformed `uses`, …), everything else is a lint finding. Passes read local action
//! metadata and local reusable workflows from disk when present; they never touch the network.

pub mod cron;
pub mod exprs;
pub mod glob;

use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, did_you_mean};
use crate::source::{SourceFile, Span};
use crate::workflow::tables::{self, GITHUB_HOSTED_LABELS, SELF_HOSTED_LABELS};
use crate::workflow::{
    self, ActionMeta, CallSecrets, Caseless, CaselessMap, InputType, Job, Step, Workflow, YStr,
};

/// What the checks need to know about the project.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// The repository root (local actions and reusable workflows resolve against it).
    pub root: PathBuf,
    /// Extra valid runner labels (config and actionlint.yaml).
    pub labels: Vec<String>,
    /// Report pipe's extension keys (`--strict-github`).
    pub strict_github: bool,
    /// The offline action folder (`owner/repo@ref/…`): remote actions found there are checked
    /// like local ones.
    pub action_dir: Option<PathBuf>,
}

/// Runs every pass over a workflow.
pub fn check_workflow(wf: &Workflow, source: &SourceFile, opts: &CheckOptions) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    check_needs(wf, &mut out);
    exprs::check_expressions(wf, source, &mut out);
    glob::check_globs(wf, source, &mut out);
    crate::run::stepcache::check(wf, &mut out);
    for t in &wf.on {
        t.crons
            .iter()
            .for_each(|c| cron::check_cron(c, source, &mut out));
        t.timezones
            .iter()
            .for_each(|z| cron::check_timezone(z, &mut out));
    }
    if let Some(shell) = wf.defaults.as_ref().and_then(|d| d.shell.as_ref()) {
        // Workflow defaults apply to every job, so only a shell no runner has is wrong here.
        let all_windows = !wf.jobs.is_empty() && wf.jobs.iter().all(job_on_windows);
        check_shell(shell, all_windows, &mut out);
    }
    // Jobs that call a reusable workflow (few: looked up by the jobs that need them).
    let callers: Vec<&Job> = wf.jobs.iter().filter(|j| j.uses.is_some()).collect();
    for job in &wf.jobs {
        check_runs_on(job, opts, &mut out);
        check_matrix(job, &mut out);
        check_job_uses(job, opts, &mut out);
        let windows = job_on_windows(job);
        if let Some(shell) = job.defaults.as_ref().and_then(|d| d.shell.as_ref()) {
            check_shell(shell, windows, &mut out);
        }
        for step in &job.steps {
            check_step(step, windows, source, opts, &mut out);
        }
        check_step_outputs(job, source, opts, &mut out);
        if !callers.is_empty() {
            check_call_outputs(&callers, job, source, opts, &mut out);
        }
        for y in [&job.if_].into_iter().flatten() {
            check_if(y, &mut out);
        }
    }
    if opts.strict_github {
        for k in &wf.extension_keys {
            out.push(
                Diagnostic::lint(
                    "pipe-extension",
                    k.span,
                    format!("`{}` is a pipe extension that GitHub rejects", k.value),
                )
                .with_hint("remove it, or validate without `--strict-github`"),
            );
        }
    }
    out
}

/// Whether a job runs on a Windows runner, judged from its literal `runs-on` labels.
fn job_on_windows(job: &Job) -> bool {
    job.runs_on.as_ref().is_some_and(|r| {
        r.labels
            .iter()
            .any(|l| l.text.to_ascii_lowercase().starts_with("windows"))
    })
}

/// `needs`: unknown jobs and cycles, reported at the entry (decisions.md).
pub fn check_needs(wf: &Workflow, out: &mut Vec<Diagnostic>) {
    // Id (ignoring case) → index; the first job wins, as duplicates are reported by the loader.
    let mut ids: CaselessMap<'_, usize> =
        CaselessMap::with_capacity_and_hasher(wf.jobs.len(), Default::default());
    for (i, j) in wf.jobs.iter().enumerate() {
        ids.entry(Caseless(&j.id.value)).or_insert(i);
    }
    // Every entry resolved once, in order: job `j`'s entries are `targets[first[j]..first[j + 1]]`.
    let mut first: Vec<usize> = Vec::with_capacity(wf.jobs.len() + 1);
    let mut targets: Vec<Option<usize>> = Vec::new();
    for job in &wf.jobs {
        first.push(targets.len());
        targets.extend(
            job.needs
                .iter()
                .map(|n| ids.get(&Caseless(&n.value)).copied()),
        );
    }
    first.push(targets.len());
    for (j, job) in wf.jobs.iter().enumerate() {
        for (n, target) in job.needs.iter().zip(&targets[first[j]..]) {
            if target.is_none() {
                let mut d = Diagnostic::error(
                    "job-needs",
                    n.span,
                    format!(
                        "job `{}` needs job `{}`, which is not defined",
                        job.id.value, n.value
                    ),
                );
                let others = wf
                    .jobs
                    .iter()
                    .filter(|j| j.id.value != job.id.value)
                    .map(|j| j.id.value.as_str());
                if let Some(s) = did_you_mean(&n.value, others) {
                    d = d.with_hint(format!("did you mean `{s}`?"));
                }
                out.push(d);
            } else if n.value.eq_ignore_ascii_case(&job.id.value) {
                out.push(Diagnostic::error(
                    "job-needs",
                    n.span,
                    format!("job `{}` needs itself", job.id.value),
                ));
            }
        }
    }
    // Depth-first search in file order; an edge to a job on the stack closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let n = wf.jobs.len();
    let mut marks = vec![Mark::New; n];
    let mut reported: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if marks[start] != Mark::New {
            continue;
        }
        // Explicit stack of (job, next needs index) so deep graphs cannot overflow.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::Active;
        while let Some(&mut (job, ref mut next)) = stack.last_mut() {
            let needs = &wf.jobs[job].needs;
            if *next >= needs.len() {
                marks[job] = Mark::Done;
                stack.pop();
                continue;
            }
            let entry = &needs[*next];
            let resolved = targets[first[job] + *next];
            *next += 1;
            let Some(target) = resolved else {
                continue;
            };
            if target == job {
                continue;
            }
            match marks[target] {
                Mark::New => {
                    marks[target] = Mark::Active;
                    stack.push((target, 0));
                }
                Mark::Active => {
                    let pos = stack.iter().position(|(j, _)| *j == target).unwrap_or(0);
                    let mut cycle: Vec<usize> = stack[pos..].iter().map(|(j, _)| *j).collect();
                    let mut key = cycle.clone();
                    key.sort_unstable();
                    if reported.contains(&key) {
                        continue;
                    }
                    reported.push(key);
                    cycle.push(target);
                    let names: Vec<&str> = cycle
                        .iter()
                        .map(|&j| wf.jobs[j].id.value.as_str())
                        .collect();
                    out.push(
                        Diagnostic::error(
                            "job-needs",
                            entry.span,
                            format!("cyclic dependency in `needs`: {}", names.join(" -> ")),
                        )
                        .with_hint("remove one of these `needs` entries to break the cycle"),
                    );
                }
                Mark::Done => {}
            }
        }
    }
}

/// `NAME` when `text` is exactly `${{ matrix.NAME }}`.
fn matrix_ref(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("${{")?.strip_suffix("}}")?.trim();
    let name = inner.strip_prefix("matrix.")?;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        .then_some(name)
}

/// The literal scalar values a matrix gives `name`: the vector's values and `include` entries.
fn matrix_values(job: &Job, name: &str) -> Vec<YStr> {
    let Some(workflow::Matrix::Map(m)) = job.strategy.as_ref().and_then(|s| s.matrix.as_ref())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (n, v) in &m.vectors {
        if let workflow::MatrixVector::Values(items) = v
            && n.value == name
        {
            out.extend(items.iter().filter_map(YStr::from_node));
        }
    }
    if let Some(workflow::MatrixList::Entries(entries)) = &m.include {
        out.extend(
            entries
                .iter()
                .filter_map(|e| e.get(name))
                .filter_map(YStr::from_node),
        );
    }
    out
}

fn check_runs_on(job: &Job, opts: &CheckOptions, out: &mut Vec<Diagnostic>) {
    let Some(r) = &job.runs_on else { return };
    // `runs-on: ${{ matrix.os }}` takes its labels from the matrix: check those values where
    // they are written.
    let mut labels: Vec<YStr> = Vec::new();
    for l in &r.labels {
        match matrix_ref(&l.text) {
            Some(name) => labels.extend(matrix_values(job, name)),
            None => labels.push(l.clone()),
        }
    }
    for l in &labels {
        if l.has_expr() || l.text.is_empty() {
            continue;
        }
        let known = GITHUB_HOSTED_LABELS
            .iter()
            .chain(SELF_HOSTED_LABELS)
            .any(|k| k.eq_ignore_ascii_case(&l.text))
            || opts.labels.iter().any(|k| k.eq_ignore_ascii_case(&l.text));
        if !known {
            let candidates = GITHUB_HOSTED_LABELS
                .iter()
                .copied()
                .chain(opts.labels.iter().map(String::as_str));
            let mut d = Diagnostic::lint(
                "runner-label",
                l.span,
                format!("unknown runner label `{}`", l.text),
            );
            d = d.with_hint(match did_you_mean(&l.text, candidates) {
                Some(s) => format!("did you mean `{s}`? self-hosted labels go in `[runners] labels` of `.pipe/config.toml`"),
                None => "list self-hosted labels in `[runners] labels` of `.pipe/config.toml` or `self-hosted-runner.labels` of `.github/actionlint.yaml`".to_owned(),
            });
            out.push(d);
        }
    }
    // Labels of different operating systems cannot all match one runner.
    let os_of = |t: &str| {
        let t = t.to_ascii_lowercase();
        if t.starts_with("ubuntu") {
            Some("linux")
        } else if t.starts_with("windows") {
            Some("windows")
        } else if t.starts_with("macos") {
            Some("macos")
        } else {
            None
        }
    };
    let hosted: Vec<&YStr> = r
        .labels
        .iter()
        .filter(|l| {
            GITHUB_HOSTED_LABELS
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&l.text))
        })
        .collect();
    if let Some(first) = hosted.first() {
        for other in &hosted[1..] {
            if os_of(&first.text) != os_of(&other.text)
                || !first.text.eq_ignore_ascii_case(&other.text)
            {
                out.push(Diagnostic::lint(
                    "runner-label",
                    other.span,
                    format!(
                        "runner labels `{}` and `{}` conflict: no runner has both",
                        first.text, other.text
                    ),
                ));
            }
        }
    }
}

fn check_matrix(job: &Job, out: &mut Vec<Diagnostic>) {
    let Some(workflow::Matrix::Map(m)) = job.strategy.as_ref().and_then(|s| s.matrix.as_ref())
    else {
        return;
    };
    let dynamic = m
        .vectors
        .iter()
        .any(|(_, v)| matches!(v, workflow::MatrixVector::Expr(_)));
    for (name, v) in &m.vectors {
        if let workflow::MatrixVector::Values(items) = v {
            for (i, item) in items.iter().enumerate() {
                if items[..i].iter().any(|p| same_value(p, item)) {
                    out.push(Diagnostic::lint(
                        "matrix",
                        item.span,
                        format!("duplicate value in matrix vector `{}`", name.value),
                    ));
                }
            }
        }
    }
    if let Some(workflow::MatrixList::Entries(entries)) = &m.exclude {
        for e in entries {
            let Some(map) = e.as_map() else { continue };
            for kv in map {
                let Some(k) = kv.key.as_str() else { continue };
                let vector = m
                    .vectors
                    .iter()
                    .find(|(n, _)| n.value.eq_ignore_ascii_case(k));
                match vector {
                    None if !dynamic => {
                        let names: Vec<&str> =
                            m.vectors.iter().map(|(n, _)| n.value.as_str()).collect();
                        let mut d = Diagnostic::error(
                            "matrix",
                            kv.key.span,
                            format!("`exclude` key `{k}` is not a key of the matrix"),
                        );
                        if let Some(s) = did_you_mean(k, names.iter().copied()) {
                            d = d.with_hint(format!("did you mean `{s}`?"));
                        }
                        out.push(d);
                    }
                    Some((_, workflow::MatrixVector::Values(items))) => {
                        let has_expr =
                            |n: &crate::yaml::Node| n.as_str().is_some_and(|s| s.contains("${{"));
                        if kv.value.as_scalar().is_some()
                            && !has_expr(&kv.value)
                            && !items.iter().any(has_expr)
                            && !items.iter().any(|i| same_value(i, &kv.value))
                        {
                            out.push(Diagnostic::lint(
                                "matrix",
                                kv.value.span,
                                format!(
                                    "value `{}` in `exclude` does not exist in matrix vector `{k}`",
                                    kv.value.as_str().unwrap_or("")
                                ),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Structural equality of YAML values (ignoring spans and quoting).
fn same_value(a: &crate::yaml::Node, b: &crate::yaml::Node) -> bool {
    use crate::yaml::NodeKind;
    match (&a.kind, &b.kind) {
        (NodeKind::Scalar(_), NodeKind::Scalar(_)) => {
            YStr::from_node(a).map(|y| (y.text, y.value == crate::yaml::ScalarValue::Str))
                == YStr::from_node(b).map(|y| (y.text, y.value == crate::yaml::ScalarValue::Str))
        }
        (NodeKind::Seq(x), NodeKind::Seq(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (NodeKind::Map(x), NodeKind::Map(y)) => {
            x.len() == y.len()
                && x.iter().all(|e| {
                    y.iter()
                        .any(|f| f.key.as_str() == e.key.as_str() && same_value(&e.value, &f.value))
                })
        }
        _ => false,
    }
}

/// What a step's `uses:` refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsesRef {
    /// `./path` in the repository.
    Local(String),
    /// `docker://image`.
    Docker(String),
    /// `owner/repo[/path]@ref`.
    Remote {
        /// Owner.
        owner: String,
        /// Repository.
        repo: String,
        /// Path inside the repository (may be empty).
        path: String,
        /// Git ref.
        git_ref: String,
    },
}

/// Parses a step's `uses:`; `Err` explains what is wrong.
pub fn parse_uses(text: &str) -> Result<UsesRef, String> {
    if let Some(rest) = text.strip_prefix("docker://") {
        if rest.is_empty() {
            return Err("`docker://` needs an image".to_owned());
        }
        return Ok(UsesRef::Docker(rest.to_owned()));
    }
    if text.starts_with("./") || text == "." || text.starts_with("$/") {
        return Ok(UsesRef::Local(text.to_owned()));
    }
    let Some((repo_path, git_ref)) = text.split_once('@') else {
        return Err(format!(
            "`{text}` is not a valid action reference: expected `owner/repo@ref`, `owner/repo/path@ref`, `./path` or `docker://image`"
        ));
    };
    let mut parts = repo_path.splitn(3, '/');
    let owner = parts.next().unwrap_or("");
    let repo = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    if owner.is_empty() || repo.is_empty() || git_ref.is_empty() {
        return Err(format!(
            "`{text}` is not a valid action reference: expected `owner/repo@ref`, `owner/repo/path@ref`, `./path` or `docker://image`"
        ));
    }
    Ok(UsesRef::Remote {
        owner: owner.to_owned(),
        repo: repo.to_owned(),
        path: path.to_owned(),
        git_ref: git_ref.to_owned(),
    })
}

/// Reads local action metadata under `root/path` (`action.yml` or `action.yaml`).
pub fn read_local_action(root: &Path, path: &str) -> Option<(PathBuf, ActionMeta)> {
    let rel = path.trim_start_matches("./").trim_start_matches("$/");
    let dir = root.join(rel);
    for name in ["action.yml", "action.yaml"] {
        let p = dir.join(name);
        if let Ok(text) = std::fs::read_to_string(&p) {
            let (meta, _) = workflow::load_action(crate::source::FileId(0), &text);
            return meta.map(|m| (p, m));
        }
    }
    None
}

fn check_step(
    step: &Step,
    windows: bool,
    source: &SourceFile,
    opts: &CheckOptions,
    out: &mut Vec<Diagnostic>,
) {
    // An empty `uses` is reported by the loader.
    if let Some(uses) = step
        .uses
        .as_ref()
        .filter(|u| !u.has_expr() && !u.text.is_empty())
    {
        match parse_uses(&uses.text) {
            Err(msg) => out.push(Diagnostic::error("action", uses.span, msg)),
            Ok(UsesRef::Local(path)) => {
                if let Some((file, meta)) = read_local_action(&opts.root, &path) {
                    // Name the action file relative to the root: the same words on every machine.
                    let shown = file.strip_prefix(&opts.root).unwrap_or(&file);
                    check_action_inputs(step, &meta, shown, out);
                }
            }
            Ok(UsesRef::Remote { .. }) => {
                if let Some((_, meta)) = read_step_action(step, opts) {
                    check_action_inputs(step, &meta, Path::new(&uses.text), out);
                }
            }
            Ok(_) => {}
        }
    }
    if let Some(shell) = &step.shell {
        check_shell(shell, windows, out);
    }
    if let Some(y) = &step.if_ {
        check_if(y, out);
    }
    if let Some(run) = &step.run {
        check_deprecated_commands(run, source, out);
    }
}

/// Metadata of the action a step uses: a local one, or a remote one in the action folder.
fn read_step_action(step: &Step, opts: &CheckOptions) -> Option<(String, ActionMeta)> {
    let uses = step.uses.as_ref().filter(|u| !u.has_expr())?;
    match parse_uses(&uses.text).ok()? {
        UsesRef::Local(path) => read_local_action(&opts.root, &path).map(|(file, meta)| {
            let shown = file.strip_prefix(&opts.root).unwrap_or(&file);
            (shown.display().to_string(), meta)
        }),
        UsesRef::Remote {
            owner,
            repo,
            path,
            git_ref,
        } => {
            let dir = opts
                .action_dir
                .as_ref()?
                .join(&owner)
                .join(format!("{repo}@{git_ref}"));
            let rel = if path.is_empty() {
                ".".to_owned()
            } else {
                path
            };
            read_local_action(&dir, &rel).map(|(_, meta)| (uses.text.clone(), meta))
        }
        UsesRef::Docker(_) => None,
    }
}

/// Every `<prefix><id>.outputs.<name>` in the text (inside `${{ }}` unless `bare`): the id, the
/// name and the byte range of the name.
fn output_refs<'t>(
    text: &'t str,
    prefix: &str,
    bare: bool,
) -> Vec<(&'t str, &'t str, std::ops::Range<usize>)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut regions: Vec<std::ops::Range<usize>> = Vec::new();
    if bare {
        regions.push(0..text.len());
    } else {
        let mut from = 0;
        while let Some(i) = text[from..].find("${{") {
            let start = from + i + 3;
            let end = text[start..]
                .find("}}")
                .map(|j| start + j)
                .unwrap_or(text.len());
            regions.push(start..end);
            from = end;
        }
    }
    let mut out = Vec::new();
    let lower = text.to_ascii_lowercase();
    for r in regions {
        let mut from = r.start;
        while let Some(i) = lower[from..r.end].find(prefix) {
            let at = from + i;
            from = at + prefix.len();
            // Not the tail of a longer name (`mysteps.`).
            if at > 0
                && text[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| is_name(c) || c == '.')
            {
                continue;
            }
            let id_start = at + prefix.len();
            let id_len = text[id_start..r.end]
                .find(|c: char| !is_name(c))
                .unwrap_or(r.end - id_start);
            let rest = id_start + id_len;
            if id_len == 0 || !lower[rest..r.end].starts_with(".outputs.") {
                continue;
            }
            let name_start = rest + ".outputs.".len();
            let name_len = text[name_start..r.end]
                .find(|c: char| !is_name(c))
                .unwrap_or(r.end - name_start);
            if name_len == 0 {
                continue;
            }
            out.push((
                &text[id_start..rest],
                &text[name_start..name_start + name_len],
                name_start..name_start + name_len,
            ));
        }
    }
    out
}

/// The values of a job that may read `steps` or `needs` (`if:` conditions are bare).
fn job_texts(job: &Job) -> Vec<(&YStr, bool)> {
    let mut v: Vec<(&YStr, bool)> = Vec::new();
    for step in &job.steps {
        for y in [&step.run, &step.name, &step.working_directory, &step.shell]
            .into_iter()
            .flatten()
        {
            v.push((y, false));
        }
        if let Some(y) = &step.if_ {
            v.push((y, true));
        }
        v.extend(step.with.values().map(|(_, y)| (y, false)));
        v.extend(step.env.entries().map(|(_, y)| (y, false)));
    }
    v.extend(job.outputs.values().map(|(_, y)| (y, false)));
    v.extend(job.env.entries().map(|(_, y)| (y, false)));
    if let Some(y) = &job.if_ {
        v.push((y, true));
    }
    v
}

/// `steps.<id>.outputs.<name>` naming an output that the step's composite action does not
/// declare (a composite action has exactly its declared outputs).
fn check_step_outputs(
    job: &Job,
    source: &SourceFile,
    opts: &CheckOptions,
    out: &mut Vec<Diagnostic>,
) {
    // Only steps whose metadata can be read: local actions, or any with an action folder.
    let readable = |s: &Step| {
        s.uses.as_ref().is_some_and(|u| {
            opts.action_dir.is_some() || u.text.starts_with("./") || u.text.starts_with("$/")
        })
    };
    if !job.steps.iter().any(readable) {
        return;
    }
    let ids = crate::run::job::step_ids(&job.steps);
    let mut declared: Vec<(&str, String, Vec<String>)> = Vec::new();
    for (step, id) in job.steps.iter().zip(&ids) {
        if !readable(step) {
            continue;
        }
        if let Some((shown, meta)) = read_step_action(step, opts)
            && matches!(meta.runs, workflow::ActionRuns::Composite { .. })
        {
            let names = meta.outputs.iter().map(|(n, _)| n.value.clone()).collect();
            declared.push((id.as_str(), shown, names));
        }
    }
    if declared.is_empty() {
        return;
    }
    for (y, bare) in job_texts(job) {
        for (id, name, range) in output_refs(&y.text, "steps.", bare) {
            let Some((_, shown, names)) =
                declared.iter().find(|(i, _, _)| i.eq_ignore_ascii_case(id))
            else {
                continue;
            };
            if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            out.push(unknown_output(
                "action",
                y.span_of(source, range),
                name,
                &format!("action `{shown}`"),
                names,
            ));
        }
    }
}

fn unknown_output(
    rule: &'static str,
    span: Span,
    name: &str,
    what: &str,
    names: &[String],
) -> Diagnostic {
    let d = Diagnostic::lint(
        rule,
        span,
        format!("output `{name}` is not defined in {what}"),
    );
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    d.with_hint(match did_you_mean(name, refs.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if refs.is_empty() => "it declares no outputs".to_owned(),
        None => format!("its outputs are {}", crate::workflow::list_names(&refs)),
    })
}

/// `needs.<id>.outputs.<name>` naming an output that the local reusable workflow job `<id>`
/// calls does not declare.
fn check_call_outputs(
    callers: &[&Job],
    job: &Job,
    source: &SourceFile,
    opts: &CheckOptions,
    out: &mut Vec<Diagnostic>,
) {
    let mut declared: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for n in &job.needs {
        let Some(callee_job) = callers
            .iter()
            .find(|j| j.id.value.eq_ignore_ascii_case(&n.value))
        else {
            continue;
        };
        let Some(uses) = callee_job.uses.as_ref().filter(|u| !u.has_expr()) else {
            continue;
        };
        let file = match uses.text.strip_prefix("./") {
            Some(local) => opts.root.join(local),
            None => match remote_callee_file(&uses.text, opts) {
                Some(f) => f,
                None => continue,
            },
        };
        let Ok(src) = std::fs::read_to_string(file) else {
            continue;
        };
        let (callee, _) = workflow::load(crate::source::FileId(0), &src);
        let Some(callee) = callee else { continue };
        let names = callee
            .workflow_call()
            .map(|c| c.outputs.iter().map(|o| o.id.value.clone()).collect())
            .unwrap_or_default();
        declared.push((callee_job.id.value.as_str(), uses.text.as_str(), names));
    }
    if declared.is_empty() {
        return;
    }
    let mut with_strs = Vec::new();
    for (_, node) in &job.with {
        collect_ystrs(node, &mut with_strs);
    }
    let mut texts = job_texts(job);
    texts.extend(with_strs.iter().map(|y| (y, false)));
    for (y, bare) in texts {
        for (id, name, range) in output_refs(&y.text, "needs.", bare) {
            let Some((_, uses, names)) =
                declared.iter().find(|(i, _, _)| i.eq_ignore_ascii_case(id))
            else {
                continue;
            };
            if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            out.push(unknown_output(
                "workflow-call",
                y.span_of(source, range),
                name,
                &format!("reusable workflow `{uses}`"),
                names,
            ));
        }
    }
}

/// The string scalars of a YAML value, as `YStr`s.
fn collect_ystrs(node: &crate::yaml::Node, out: &mut Vec<YStr>) {
    use crate::yaml::NodeKind;
    match &node.kind {
        NodeKind::Scalar(_) => out.extend(YStr::from_node(node)),
        NodeKind::Seq(items) => items.iter().for_each(|i| collect_ystrs(i, out)),
        NodeKind::Map(entries) => entries.iter().for_each(|e| collect_ystrs(&e.value, out)),
    }
}

fn check_action_inputs(step: &Step, meta: &ActionMeta, file: &Path, out: &mut Vec<Diagnostic>) {
    let rel = file.display();
    for (k, (span, _)) in &step.with {
        if !meta
            .inputs
            .iter()
            .any(|i| i.id.value.eq_ignore_ascii_case(k))
        {
            let mut d = Diagnostic::lint(
                "action",
                *span,
                format!("input `{k}` is not defined in action `{rel}`"),
            );
            let names: Vec<&str> = meta.inputs.iter().map(|i| i.id.value.as_str()).collect();
            d = d.with_hint(match did_you_mean(k, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if names.is_empty() => "the action declares no inputs".to_owned(),
                None => format!(
                    "the action's inputs are {}",
                    crate::workflow::list_names(&names)
                ),
            });
            out.push(d);
        }
    }
    for input in &meta.inputs {
        if input.required
            && input.default.is_none()
            && !step
                .with
                .keys()
                .any(|k| k.eq_ignore_ascii_case(&input.id.value))
        {
            let at = step.uses.as_ref().map(|u| u.span).unwrap_or(step.span);
            out.push(Diagnostic::lint(
                "action",
                at,
                format!(
                    "missing input `{}`, which action `{rel}` requires",
                    input.id.value
                ),
            ));
        }
    }
}

fn check_shell(shell: &YStr, windows: bool, out: &mut Vec<Diagnostic>) {
    if shell.has_expr() || shell.text.contains("{0}") {
        return;
    }
    let allowed = if windows {
        tables::SHELLS_WINDOWS
    } else {
        tables::SHELLS_UNIX
    };
    if !allowed.contains(&shell.text.as_str()) {
        let mut d = Diagnostic::lint(
            "shell-name",
            shell.span,
            format!("shell `{}` is not available", shell.text),
        );
        d = d.with_hint(match did_you_mean(&shell.text, allowed.iter().copied()) {
            Some(s) => format!(
                "did you mean `{s}`? a custom shell must contain `{{0}}`, as in `perl {{0}}`"
            ),
            None => format!(
                "use {} or a custom command containing `{{0}}`",
                crate::workflow::list_names(allowed)
            ),
        });
        out.push(d);
    }
}

/// `if:` with text outside `${{ }}` is a non-empty string, so it is always true.
fn check_if(cond: &YStr, out: &mut Vec<Diagnostic>) {
    // No trimming: GitHub evaluates `if: |` (text plus a newline) as a template, whose result
    // is a non-empty string, so surrounding whitespace makes the condition always true too.
    let t = cond.text.as_str();
    if !t.contains("${{") {
        return;
    }
    let single = t.starts_with("${{") && t.ends_with("}}") && t[3..].find("${{").is_none();
    if !single {
        out.push(
            Diagnostic::lint(
                "if-cond",
                cond.span,
                "this condition is always true: text outside `${{ }}` makes it a non-empty string",
            )
            .with_hint("put the whole condition inside one `${{ }}`, or drop the braces"),
        );
    }
}

fn check_deprecated_commands(run: &YStr, source: &SourceFile, out: &mut Vec<Diagnostic>) {
    // Most scripts hold no workflow command at all: one scan instead of eight searches (this
    // check runs on every `pipe run`).
    if !run.text.contains("::") {
        return;
    }
    for (cmd, needle, needle2, instead) in [
        (
            "set-output",
            "::set-output ",
            "::set-output::",
            "`echo \"name=value\" >> \"$GITHUB_OUTPUT\"`",
        ),
        (
            "save-state",
            "::save-state ",
            "::save-state::",
            "`echo \"name=value\" >> \"$GITHUB_STATE\"`",
        ),
        (
            "set-env",
            "::set-env ",
            "::set-env::",
            "`echo \"NAME=value\" >> \"$GITHUB_ENV\"`",
        ),
        (
            "add-path",
            "::add-path ",
            "::add-path::",
            "`echo \"/dir\" >> \"$GITHUB_PATH\"`",
        ),
    ] {
        let found = [run.text.find(needle), run.text.find(needle2)]
            .into_iter()
            .flatten()
            .min();
        if let Some(pos) = found {
            out.push(
                Diagnostic::lint(
                    "deprecated-commands",
                    run.span_of(source, pos..pos + 2 + cmd.len()),
                    format!("workflow command `{cmd}` is deprecated and disabled on GitHub"),
                )
                .with_hint(format!("use {instead}")),
            );
        }
    }
}

fn check_job_uses(job: &Job, opts: &CheckOptions, out: &mut Vec<Diagnostic>) {
    let Some(uses) = &job.uses else { return };
    if uses.has_expr() {
        out.push(Diagnostic::error(
            "workflow-call",
            uses.span,
            "the `uses` of a reusable workflow call cannot contain expressions",
        ));
        return;
    }
    let text = uses.text.as_str();
    // `$/path` names a workflow of the calling repository itself, like `./path`.
    if let Some(local) = text.strip_prefix("./").or_else(|| text.strip_prefix("$/")) {
        if text.contains('@') {
            out.push(
                Diagnostic::error(
                    "workflow-call",
                    uses.span,
                    format!("local reusable workflow `{text}` must not have a ref"),
                )
                .with_hint(
                    "remove the `@…` part: a local workflow always comes from the same commit",
                ),
            );
            return;
        }
        if !local.starts_with(".github/workflows/") || !crate::project::is_yaml(Path::new(local)) {
            out.push(Diagnostic::error(
                "workflow-call",
                uses.span,
                format!("reusable workflow `{text}` must be a `.yml` or `.yaml` file in `.github/workflows/`"),
            ));
            return;
        }
        let path = opts.root.join(local);
        match std::fs::read_to_string(&path) {
            Err(_) => out.push(Diagnostic::lint(
                "workflow-call",
                uses.span,
                format!("reusable workflow `{text}` does not exist"),
            )),
            Ok(src) => {
                let (callee, _) = workflow::load(crate::source::FileId(0), &src);
                // `on: workflow_call` without settings declares no inputs, outputs or secrets.
                let no_settings = workflow::WorkflowCall::default();
                let call = callee.as_ref().and_then(|c| {
                    c.workflow_call()
                        .or_else(|| c.trigger("workflow_call").is_some().then_some(&no_settings))
                });
                match call {
                    None => out.push(Diagnostic::error(
                        "workflow-call",
                        uses.span,
                        format!(
                            "workflow `{text}` cannot be called: its `on` has no `workflow_call`"
                        ),
                    )),
                    Some(call) => check_call_inputs(job, call, text, out),
                }
            }
        }
        return;
    }
    let ok = text.split_once('@').is_some_and(|(path, r)| {
        let parts: Vec<&str> = path.splitn(3, '/').collect();
        !r.is_empty()
            && parts.len() == 3
            && !parts[0].is_empty()
            && !parts[1].is_empty()
            && parts[2].starts_with(".github/workflows/")
            && crate::project::is_yaml(Path::new(parts[2]))
    });
    if !ok {
        out.push(Diagnostic::error(
            "workflow-call",
            uses.span,
            format!("`{text}` is not a valid reusable workflow reference: expected `owner/repo/.github/workflows/file.yml@ref` or `./.github/workflows/file.yml`"),
        ));
        return;
    }
    // A copy in the offline action folder is checked like a local callee (lint findings only:
    // the folder is this machine's, not part of the workflow).
    if let Some(file) = remote_callee_file(text, opts)
        && let Ok(src) = std::fs::read_to_string(&file)
        && let (Some(callee), _) = workflow::load(crate::source::FileId(0), &src)
    {
        let no_settings = workflow::WorkflowCall::default();
        let call = callee.workflow_call().or_else(|| {
            callee
                .trigger("workflow_call")
                .is_some()
                .then_some(&no_settings)
        });
        if let Some(call) = call {
            let mut found = Vec::new();
            check_call_inputs(job, call, text, &mut found);
            out.extend(found.into_iter().map(|mut d| {
                d.severity = crate::Severity::Lint;
                d
            }));
        }
    }
}

/// The file of a remote reusable workflow in the offline action folder, if it is there.
fn remote_callee_file(text: &str, opts: &CheckOptions) -> Option<PathBuf> {
    let dir = opts.action_dir.as_ref()?;
    match parse_uses(text).ok()? {
        UsesRef::Remote {
            owner,
            repo,
            path,
            git_ref,
        } => {
            let f = dir.join(owner).join(format!("{repo}@{git_ref}")).join(path);
            f.is_file().then_some(f)
        }
        _ => None,
    }
}

fn check_call_inputs(
    job: &Job,
    call: &workflow::WorkflowCall,
    callee: &str,
    out: &mut Vec<Diagnostic>,
) {
    for (k, v) in &job.with {
        match call
            .inputs
            .iter()
            .find(|i| i.id.value.eq_ignore_ascii_case(&k.value))
        {
            None => {
                let names: Vec<&str> = call.inputs.iter().map(|i| i.id.value.as_str()).collect();
                let mut d = Diagnostic::error(
                    "workflow-call",
                    k.span,
                    format!(
                        "input `{}` is not defined in reusable workflow `{callee}`",
                        k.value
                    ),
                );
                if let Some(s) = did_you_mean(&k.value, names.iter().copied()) {
                    d = d.with_hint(format!("did you mean `{s}`?"));
                }
                out.push(d);
            }
            Some(input) => {
                let Some(y) = YStr::from_node(v) else {
                    continue;
                };
                if y.has_expr() {
                    continue;
                }
                let ok = match input.ty {
                    InputType::Boolean => matches!(y.value, crate::yaml::ScalarValue::Bool(_)),
                    InputType::Number => matches!(y.value, crate::yaml::ScalarValue::Number(_)),
                    _ => true,
                };
                if !ok {
                    out.push(Diagnostic::error(
                        "workflow-call",
                        v.span,
                        format!(
                            "input `{}` of reusable workflow `{callee}` is a {}, but `{}` is {}",
                            k.value,
                            input.ty.as_str(),
                            y.text,
                            v.describe()
                        ),
                    ));
                }
            }
        }
    }
    for input in &call.inputs {
        if input.required
            && input.default.is_none()
            && !job
                .with
                .iter()
                .any(|(k, _)| k.value.eq_ignore_ascii_case(&input.id.value))
        {
            out.push(Diagnostic::error(
                "workflow-call",
                job.uses.as_ref().map(|u| u.span).unwrap_or(job.id.span),
                format!(
                    "input `{}` is required by reusable workflow `{callee}` but not given",
                    input.id.value
                ),
            ));
        }
    }
    match &job.secrets {
        Some(CallSecrets::Inherit(_)) => {}
        secrets => {
            let given: Vec<(&String, Span)> = match secrets {
                Some(CallSecrets::Map(m)) => m.iter().map(|(k, (s, _))| (k, *s)).collect(),
                _ => Vec::new(),
            };
            for (k, span) in &given {
                if !call
                    .secrets
                    .iter()
                    .any(|s| s.id.value.eq_ignore_ascii_case(k))
                {
                    out.push(Diagnostic::error(
                        "workflow-call",
                        *span,
                        format!("secret `{k}` is not defined in reusable workflow `{callee}`"),
                    ));
                }
            }
            for s in &call.secrets {
                if s.required
                    && !given
                        .iter()
                        .any(|(k, _)| k.eq_ignore_ascii_case(&s.id.value))
                {
                    out.push(Diagnostic::error(
                        "workflow-call",
                        job.uses.as_ref().map(|u| u.span).unwrap_or(job.id.span),
                        format!(
                            "secret `{}` is required by reusable workflow `{callee}` but not given",
                            s.id.value
                        ),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str) -> Vec<String> {
        let (wf, d) = workflow::load_str(src);
        assert!(d.is_empty(), "{d:?}");
        let f = crate::source::SourceFile::new("t.yml", src);
        let mut diags = check_workflow(&wf.expect("wf"), &f, &CheckOptions::default());
        crate::diag::sort_and_dedup(&mut diags);
        diags
            .iter()
            .map(|d| {
                let lc = f.line_col(d.span.start);
                format!("{}:{}: {} [{}]", lc.line, lc.col, d.message, d.rule)
            })
            .collect()
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn action_and_call_metadata() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("repo");
        let mirror = t.path().join("mirror");
        write(
            &root,
            ".github/actions/c/action.yml",
            "name: c\noutputs:\n  msg:\n    value: x\nruns:\n  using: composite\n  steps:\n    - run: echo\n      shell: bash\n",
        );
        write(
            &root,
            ".github/workflows/called.yml",
            "on:\n  workflow_call:\n    outputs:\n      url:\n        value: x\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n",
        );
        write(
            &root,
            ".github/workflows/bare.yml",
            "on: workflow_call\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n",
        );
        write(
            &mirror,
            "o/r@v1/action.yml",
            "name: r\ninputs:\n  level:\n    required: true\nruns:\n  using: node20\n  main: m.js\n",
        );
        write(
            &mirror,
            "o/w@v1/.github/workflows/x.yml",
            "on:\n  workflow_call:\n    inputs:\n      n:\n        type: number\n    outputs:\n      out:\n        value: x\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n",
        );
        let src = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - id: c\n        uses: ./.github/actions/c\n      - run: echo ${{ steps.c.outputs.mgs }} ${{ steps.c.outputs.msg }}\n        if: steps.C.outputs.other\n      - uses: o/r@v1\n        with:\n          levl: 1\n  call:\n    uses: ./.github/workflows/called.yml\n  bare:\n    uses: ./.github/workflows/bare.yml\n  after:\n    needs: [call, bare]\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ needs.call.outputs.url }} ${{ needs.call.outputs.ulr }}\n  remote:\n    uses: o/w/.github/workflows/x.yml@v1\n    with:\n      m: 1\n  uses-remote:\n    needs: remote\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ needs.remote.outputs.out }} ${{ needs.remote.outputs.uot }}\n";
        let (wf, d) = workflow::load_str(src);
        assert!(d.is_empty(), "{d:?}");
        let f = crate::source::SourceFile::new("t.yml", src);
        let opts = CheckOptions {
            root: root.clone(),
            action_dir: Some(mirror),
            ..CheckOptions::default()
        };
        let mut diags = check_workflow(&wf.expect("wf"), &f, &opts);
        crate::diag::sort_and_dedup(&mut diags);
        let got: Vec<String> = diags
            .iter()
            .map(|d| {
                let lc = f.line_col(d.span.start);
                format!("{}:{}: {} [{}]", lc.line, lc.col, d.message, d.rule)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                "8:39: output `mgs` is not defined in action `.github/actions/c/action.yml` [action]",
                "9:29: output `other` is not defined in action `.github/actions/c/action.yml` [action]",
                "10:15: missing input `level`, which action `o/r@v1` requires [action]",
                "12:11: input `levl` is not defined in action `o/r@v1` [action]",
                "21:72: output `ulr` is not defined in reusable workflow `./.github/workflows/called.yml` [workflow-call]",
                "25:7: input `m` is not defined in reusable workflow `o/w/.github/workflows/x.yml@v1` [workflow-call]",
                "30:76: output `uot` is not defined in reusable workflow `o/w/.github/workflows/x.yml@v1` [workflow-call]",
            ]
        );
    }

    #[test]
    fn output_refs_are_found_inside_expressions() {
        let r = output_refs(
            "a steps.x.outputs.y ${{ steps.id-1.outputs.o_2 }} ${{ mysteps.z.outputs.w }}",
            "steps.",
            false,
        );
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].0, r[0].1), ("id-1", "o_2"));
        let r = output_refs("steps.a.outputs.b == 'x'", "steps.", true);
        assert_eq!((r[0].0, r[0].1, r[0].2.clone()), ("a", "b", 16..17));
    }

    #[test]
    fn needs_unknown_and_cycles() {
        let src = "on: push\njobs:\n  build:\n    needs: test\n    runs-on: ubuntu-latest\n    steps: [{run: a}]\n  test:\n    needs: [build, biuld]\n    runs-on: ubuntu-latest\n    steps: [{run: a}]\n";
        assert_eq!(
            run(src),
            vec![
                "8:13: cyclic dependency in `needs`: build -> test -> build [job-needs]",
                "8:20: job `test` needs job `biuld`, which is not defined [job-needs]",
            ]
        );
    }

    #[test]
    fn labels_shells_uses_if() {
        let src = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latst\n    if: ${{ true }} && x\n    steps:\n      - uses: actions/checkout\n      - run: echo\n        shell: bsh\n      - run: echo \"::set-output name=x::y\"\n";
        let d = run(src);
        assert_eq!(d.len(), 5, "{d:?}");
        assert!(d[0].contains("unknown runner label `ubuntu-latst`"));
        assert!(d[1].contains("always true"));
        assert!(d[2].contains("not a valid action reference"));
        assert!(d[3].contains("shell `bsh`"));
        assert!(
            d[4].starts_with("10:20: workflow command `set-output` is deprecated"),
            "{}",
            d[4]
        );
    }

    #[test]
    fn cron_and_glob_are_wired() {
        let src = "on:\n  push:\n    branches: ['!main', 'v[0-9']\n    paths: ['./src/**']\n  schedule:\n    - cron: '0 0 * * 8'\n      timezone: Mars/Olympus\n    - cron: '* * * * *'\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: [{run: a}]\n";
        assert_eq!(
            run(src),
            vec![
                "3:16: the first pattern `!main` of `branches` is negated, so it has nothing to exclude [glob]",
                "3:27: `[` in filter pattern `v[0-9` is never closed [glob]",
                "4:14: path pattern `./src/**` starts with `./`, but changed paths are relative to the repository root, so it never matches [glob]",
                "6:22: day of week `8` is out of range: it must be between 0 and 6 in cron `0 0 * * 8` [events]",
                "7:17: `Mars/Olympus` is not an IANA time zone name [events]",
                "8:13: schedule `* * * * *` runs every minute, but GitHub runs schedules at most once every 5 minutes [events]",
            ]
        );
    }

    #[test]
    fn matrix_exclude_keys() {
        let src = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        os: [a, b, a]\n        exclude:\n          - os: c\n          - oss: a\n    steps: [{run: a}]\n";
        let d = run(src);
        assert_eq!(
            d,
            vec![
                "7:20: duplicate value in matrix vector `os` [matrix]",
                "9:17: value `c` in `exclude` does not exist in matrix vector `os` [matrix]",
                "10:13: `exclude` key `oss` is not a key of the matrix [matrix]",
            ]
        );
    }
}
