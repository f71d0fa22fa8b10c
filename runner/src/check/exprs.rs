//! Expressions in a workflow: every `${{ }}` (and every `if:`) parsed at load time, then
//! checked against what is available at its key (GitHub's context-availability table), the
//! step ids before it, the job's direct needs, the matrix keys and the declared inputs.
//!
//! Syntax errors, unknown contexts and functions, wrong arity and contexts or functions used
//! where GitHub does not allow them make the workflow invalid (GitHub rejects it when it loads
//! the file); the rest (`github.foo`, a step output before the step, an undeclared input) are
//! lint findings. Positions point at the exact column inside the YAML value, also in block
//! scalars.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::diag::Diagnostic;
use crate::expr::{Issue, JobRef, Scope, Template, WorkflowKey, parse_condition};
use crate::source::SourceFile;
use crate::workflow::{
    Caseless, CaselessMap, Container, Env, Job, Matrix, MatrixList, Permissions, Workflow, YStr,
};

const RULE: &str = "expression";

struct Walker<'a> {
    source: &'a SourceFile,
    out: &'a mut Vec<Diagnostic>,
}

impl Walker<'_> {
    fn issue(&mut self, y: &YStr, offset: usize, i: Issue) {
        let span = y.span_of(self.source, offset + i.offset..offset + i.offset + i.len);
        let d = if i.error {
            Diagnostic::error(RULE, span, i.message)
        } else {
            Diagnostic::lint(RULE, span, i.message)
        };
        self.out.push(d);
    }

    /// A value that may contain `${{ }}`.
    fn template(&mut self, y: &YStr, scope: &Scope) {
        if !y.has_expr() {
            return;
        }
        match Template::parse(&y.text) {
            Err(e) => {
                let span = y.span_of(self.source, e.offset..e.offset + e.len.max(1));
                self.out.push(Diagnostic::error(RULE, span, e.message));
            }
            Ok(t) => {
                for i in t.check(scope) {
                    self.issue(y, 0, i);
                }
            }
        }
    }

    /// An `if:` condition: `${{ }}` optional.
    fn condition(&mut self, y: &YStr, scope: &Scope) {
        match parse_condition(&y.text) {
            Err(e) => {
                let span = y.span_of(self.source, e.offset..e.offset + e.len.max(1));
                self.out.push(Diagnostic::error(RULE, span, e.message));
            }
            Ok(c) => {
                for i in c.check(scope) {
                    self.issue(y, 0, i);
                }
            }
        }
    }

    fn env(&mut self, env: &Env, scope: &Scope) {
        match env {
            Env::None => {}
            Env::Map(m) => {
                for (_, v) in m.values() {
                    self.template(v, scope);
                }
            }
            Env::Expr(y) => self.template(y, scope),
        }
    }

    fn container(&mut self, c: &Container, scope: &mut Scope, service: bool) {
        let (image_key, env_key, cred_key) = if service {
            (
                WorkflowKey::JobServices,
                WorkflowKey::JobServiceEnv,
                WorkflowKey::JobServiceCredentials,
            )
        } else {
            (
                WorkflowKey::JobContainerImage,
                WorkflowKey::JobContainerEnv,
                WorkflowKey::JobContainerCredentials,
            )
        };
        let other_key = if service {
            WorkflowKey::JobServices
        } else {
            WorkflowKey::JobContainer
        };
        if let Some(i) = &c.image {
            self.template(i, at(scope, image_key));
        }
        for y in [&c.username, &c.password].into_iter().flatten() {
            self.template(y, at(scope, cred_key));
        }
        self.env(&c.env, at(scope, env_key));
        for y in c.ports.iter().chain(&c.volumes) {
            self.template(y, at(scope, other_key));
        }
        for y in [&c.options, &c.command, &c.entrypoint, &c.platform]
            .into_iter()
            .flatten()
        {
            self.template(y, at(scope, other_key));
        }
    }
}

/// Points `scope` at `key` (contexts and functions from the availability table), keeping what
/// it knows about steps, needs, matrix and inputs. One scope is reused and re-keyed for every
/// value: cloning its lists per value made large workflows allocation-bound.
fn at(scope: &mut Scope, key: WorkflowKey) -> &Scope {
    let (contexts, functions) = crate::expr::availability(key);
    scope.contexts = contexts;
    scope.functions = functions;
    scope
}

/// Matrix keys known statically (vectors and literal include keys); `None` when an expression
/// builds any part of the matrix.
fn matrix_keys(job: &Job) -> Option<Vec<String>> {
    let Some(strategy) = &job.strategy else {
        return Some(Vec::new());
    };
    match &strategy.matrix {
        None => Some(Vec::new()),
        Some(Matrix::Expr(_)) => None,
        Some(Matrix::Map(m)) => {
            let mut keys: Vec<String> = Vec::new();
            for (name, _) in &m.vectors {
                if name.value.contains("${{") {
                    return None;
                }
                keys.push(name.value.clone());
            }
            match &m.include {
                None => {}
                Some(MatrixList::Expr(_)) => return None,
                Some(MatrixList::Entries(entries)) => {
                    for e in entries {
                        let map = e.as_map()?;
                        for kv in map {
                            let k = kv.key.as_str().unwrap_or_default();
                            if k.contains("${{") {
                                return None;
                            }
                            if !keys.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                                keys.push(k.to_owned());
                            }
                        }
                    }
                }
            }
            Some(keys)
        }
    }
}

fn job_ref(job: &Job) -> JobRef {
    if job.uses.is_some() {
        // A called workflow's outputs are declared in another file.
        return JobRef::new(job.id.value.clone());
    }
    let names: Vec<&str> = job.outputs.keys().map(String::as_str).collect();
    JobRef::with_outputs(job.id.value.clone(), &names)
}

/// Checks every expression of a workflow.
pub fn check_expressions(wf: &Workflow, source: &SourceFile, out: &mut Vec<Diagnostic>) {
    let mut w = Walker { source, out };
    let mut inputs: Vec<String> = Vec::new();
    for t in &wf.on {
        inputs.extend(t.dispatch_inputs.iter().map(|i| i.id.value.clone()));
        if let Some(c) = &t.workflow_call {
            inputs.extend(c.inputs.iter().map(|i| i.id.value.clone()));
        }
    }
    let mut sc = Scope {
        inputs: Some(inputs),
        ..Scope::default()
    };

    if let Some(y) = &wf.run_name {
        w.template(y, at(&mut sc, WorkflowKey::RunName));
    }
    w.env(&wf.env, at(&mut sc, WorkflowKey::Env));
    if let Some(c) = &wf.concurrency {
        w.template(&c.group, at(&mut sc, WorkflowKey::Concurrency));
        if let Some(y) = &c.cancel_in_progress {
            w.template(y, at(&mut sc, WorkflowKey::Concurrency));
        }
    }
    if let Some(call) = wf.workflow_call() {
        for i in &call.inputs {
            if let Some(d) = &i.default {
                w.template(d, at(&mut sc, WorkflowKey::WorkflowCallInputDefault));
            }
        }
        sc.jobs = Some(wf.jobs.iter().map(job_ref).collect());
        for o in &call.outputs {
            w.template(&o.value, at(&mut sc, WorkflowKey::WorkflowCallOutputValue));
        }
        sc.jobs = None;
    }
    if let Some(Permissions::All(y)) = &wf.permissions {
        w.template(y, at(&mut sc, WorkflowKey::Env));
    }

    // Job lookup ignoring case (`needs` matches case-insensitively; names are reported as the
    // job writes its id); a linear search per entry would make large workflows quadratic.
    let mut by_id: CaselessMap<'_, usize> =
        CaselessMap::with_capacity_and_hasher(wf.jobs.len(), Default::default());
    for (i, j) in wf.jobs.iter().enumerate() {
        by_id.entry(Caseless(&j.id.value)).or_insert(i);
    }
    // The `needs` scope of each distinct list of needed jobs, built once and shared: in a
    // layered graph every job of a layer needs the same hundred jobs.
    let mut refs: Vec<Option<JobRef>> = vec![None; wf.jobs.len()];
    let mut needs_scopes: FxHashMap<Vec<usize>, Arc<[JobRef]>> = FxHashMap::default();
    for job in &wf.jobs {
        let needed: Vec<usize> = job
            .needs
            .iter()
            .filter_map(|n| by_id.get(&Caseless(&n.value)).copied())
            .collect();
        let needs = match needs_scopes.get(&needed) {
            Some(n) => n.clone(),
            None => {
                let list: Arc<[JobRef]> = needed
                    .iter()
                    .map(|&i| refs[i].get_or_insert_with(|| job_ref(&wf.jobs[i])).clone())
                    .collect();
                needs_scopes.insert(needed, list.clone());
                list
            }
        };
        sc.needs = Some(needs);
        sc.matrix = matrix_keys(job);
        sc.steps = None;

        if let Some(y) = &job.name {
            w.template(y, at(&mut sc, WorkflowKey::JobName));
        }
        if let Some(y) = &job.if_ {
            w.condition(y, at(&mut sc, WorkflowKey::JobIf));
        }
        if let Some(r) = &job.runs_on {
            for y in r.labels.iter().chain(&r.group) {
                w.template(y, at(&mut sc, WorkflowKey::JobRunsOn));
            }
        }
        if let Some(e) = &job.environment {
            w.template(&e.name, at(&mut sc, WorkflowKey::JobEnvironment));
            if let Some(u) = &e.url {
                w.template(u, at(&mut sc, WorkflowKey::JobEnvironmentUrl));
            }
        }
        w.env(&job.env, at(&mut sc, WorkflowKey::JobEnv));
        if let Some(d) = &job.defaults {
            for y in [&d.shell, &d.working_directory].into_iter().flatten() {
                w.template(y, at(&mut sc, WorkflowKey::JobDefaultsRun));
            }
        }
        if let Some(c) = &job.concurrency {
            w.template(&c.group, at(&mut sc, WorkflowKey::JobConcurrency));
            if let Some(y) = &c.cancel_in_progress {
                w.template(y, at(&mut sc, WorkflowKey::JobConcurrency));
            }
        }
        if let Some(y) = &job.timeout_minutes {
            w.template(y, at(&mut sc, WorkflowKey::JobTimeoutMinutes));
        }
        if let Some(y) = &job.continue_on_error {
            w.template(y, at(&mut sc, WorkflowKey::JobContinueOnError));
        }
        if let Some(s) = &job.strategy {
            at(&mut sc, WorkflowKey::JobStrategy);
            for y in [&s.fail_fast, &s.max_parallel].into_iter().flatten() {
                w.template(y, &sc);
            }
            match &s.matrix {
                Some(Matrix::Expr(y)) => w.template(y, &sc),
                Some(Matrix::Map(m)) => {
                    let mut nodes: Vec<&crate::yaml::Node> = Vec::new();
                    for (_, v) in &m.vectors {
                        match v {
                            crate::workflow::MatrixVector::Values(items) => nodes.extend(items),
                            crate::workflow::MatrixVector::Expr(y) => w.template(y, &sc),
                        }
                    }
                    for l in [&m.include, &m.exclude].into_iter().flatten() {
                        match l {
                            MatrixList::Entries(items) => nodes.extend(items),
                            MatrixList::Expr(y) => w.template(y, &sc),
                        }
                    }
                    let mut stack = nodes;
                    while let Some(n) = stack.pop() {
                        match &n.kind {
                            crate::yaml::NodeKind::Scalar(_) => {
                                if let Some(y) = YStr::from_node(n) {
                                    w.template(&y, &sc);
                                }
                            }
                            crate::yaml::NodeKind::Seq(items) => stack.extend(items),
                            crate::yaml::NodeKind::Map(entries) => {
                                stack.extend(entries.iter().map(|e| &e.value));
                            }
                        }
                    }
                }
                None => {}
            }
        }
        if let Some(c) = &job.container {
            w.container(c, &mut sc, false);
        }
        for (_, c) in &job.services {
            w.container(c, &mut sc, true);
        }
        for (_, node) in &job.with {
            if let Some(y) = YStr::from_node(node) {
                w.template(&y, at(&mut sc, WorkflowKey::JobWith));
            }
        }
        if let Some(crate::workflow::CallSecrets::Map(m)) = &job.secrets {
            for (_, y) in m.values() {
                w.template(y, at(&mut sc, WorkflowKey::JobSecrets));
            }
        }
        // Job outputs see every step.
        let all_steps: Vec<String> = job
            .steps
            .iter()
            .filter_map(|s| s.id.as_ref().map(|i| i.value.clone()))
            .collect();
        sc.steps = Some(all_steps);
        for (_, y) in job.outputs.values() {
            w.template(y, at(&mut sc, WorkflowKey::JobOutputs));
        }
        // Steps see the steps before them.
        sc.steps = Some(Vec::new());
        for step in &job.steps {
            if let Some(y) = &step.if_ {
                w.condition(y, at(&mut sc, WorkflowKey::StepIf));
            }
            if let Some(y) = &step.name {
                w.template(y, at(&mut sc, WorkflowKey::StepName));
            }
            w.env(&step.env, at(&mut sc, WorkflowKey::StepEnv));
            for (_, y) in step.with.values() {
                w.template(y, at(&mut sc, WorkflowKey::StepWith));
            }
            for y in [&step.run, &step.shell].into_iter().flatten() {
                w.template(y, at(&mut sc, WorkflowKey::StepRun));
            }
            if let Some(y) = &step.working_directory {
                w.template(y, at(&mut sc, WorkflowKey::StepWorkingDirectory));
            }
            if let Some(y) = &step.continue_on_error {
                w.template(y, at(&mut sc, WorkflowKey::StepContinueOnError));
            }
            if let Some(y) = &step.timeout_minutes {
                w.template(y, at(&mut sc, WorkflowKey::StepTimeoutMinutes));
            }
            if let (Some(id), Some(before)) = (&step.id, sc.steps.as_mut()) {
                before.push(id.value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str) -> Vec<String> {
        let (wf, d) = crate::workflow::load_str(src);
        assert!(d.is_empty(), "{d:?}");
        let f = SourceFile::new("t.yml", src);
        let mut out = Vec::new();
        check_expressions(&wf.expect("wf"), &f, &mut out);
        out.iter()
            .map(|d| {
                let lc = f.line_col(d.span.start);
                format!("{}:{}: {:?} {}", lc.line, lc.col, d.severity, d.message)
            })
            .collect()
    }

    #[test]
    fn syntax_and_availability_at_their_columns() {
        let src = "on: push\nenv:\n  A: ${{ env.X }}\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: |\n          echo ok\n          echo ${{ github.sha == }}\n      - run: echo ${{ steps.later.outputs.x }} ${{ foo(1) }}\n        id: now\n      - id: later\n        run: echo\n";
        let d = run(src);
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(
            d[0].starts_with("3:10: Error context `env` is not allowed here"),
            "{}",
            d[0]
        );
        assert!(d[1].starts_with("10:34: Error"), "{}", d[1]);
        assert!(d[2].starts_with("11:23: Lint property `later`"), "{}", d[2]);
        assert!(
            d[3].starts_with("11:52: Error unknown function `foo`"),
            "{}",
            d[3]
        );
    }

    #[test]
    fn conditions_needs_and_matrix() {
        let src = "on: push\njobs:\n  a:\n    runs-on: x\n    outputs:\n      o: ${{ steps.s.outputs.v }}\n    steps: [{id: s, run: echo}]\n  b:\n    needs: a\n    if: needs.a.outputs.o == 'x' && needs.c.result\n    runs-on: x\n    strategy:\n      matrix:\n        os: [l]\n    steps:\n      - run: echo ${{ matrix.os }} ${{ matrix.nope }}\n";
        let d = run(src);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("property `c`"), "{}", d[0]);
        assert!(d[1].contains("property `nope`"), "{}", d[1]);
    }

    #[test]
    fn needs_scopes_shared_only_between_equal_needs_lists() {
        // `c` and `d` need the same jobs (spelled in another case: one shared scope); `e`
        // needs only `a`, so `needs.b` is unknown there, and `f` needs them in another order.
        let job = |id: &str, needs: &str, run: &str| {
            format!(
                "  {id}:\n    needs: [{needs}]\n    runs-on: x\n    steps:\n      - run: {run}\n"
            )
        };
        let src = [
            "on: push\njobs:\n  a:\n    runs-on: x\n    outputs: {o: x}\n    steps: [{run: echo}]\n".to_owned(),
            "  b:\n    runs-on: x\n    outputs: {p: x}\n    steps: [{run: echo}]\n".to_owned(),
            job("c", "a, b", "echo ${{ needs.b.outputs.p }}"),
            job("d", "A, B", "echo ${{ needs.a.outputs.o }} ${{ needs.b.outputs.q }}"),
            job("e", "a", "echo ${{ needs.a.outputs.o }} ${{ needs.b.outputs.p }} e"),
            job("f", "b, a", "echo ${{ needs.b.outputs.p }} ${{ needs.a.outputs.p }}"),
        ]
        .concat();
        let line_of = |needle: &str| {
            src.lines()
                .position(|l| l.contains(needle))
                .map(|i| i + 1)
                .unwrap_or(0)
        };
        let d = run(&src);
        assert_eq!(d.len(), 3, "{d:?}");
        let at = |i: usize, needle: &str, what: &str| {
            assert!(
                d[i].starts_with(&format!("{}:", line_of(needle))) && d[i].contains(what),
                "{}",
                d[i]
            );
        };
        at(0, "outputs.q", "property `q`");
        at(1, "}} e", "property `b`");
        at(2, "needs.a.outputs.p", "property `p`");
    }
}
