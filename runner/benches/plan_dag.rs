//! Benchmark: planning a large workflow in-process — the same work `pipe list` does after
//! reading the file: YAML → model (`workflow::load`), the checks `pipe list` runs before planning
//! (`check::check_workflow`), and the plan itself (`plan::plan`).
//!
//! The workflow comes from `PIPE_BENCH_WORKFLOW` (e.g. the `workflow.yml` written by
//! `/work/shared/bench/peers/gen_dag.py indep /tmp/d -n 5000`); without it, the same 5,000
//! independent jobs are generated in memory in gen_dag.py's format.
//! `cargo bench -p pipe-runner --bench plan_dag` prints median and minimum times of each stage.

use std::hint::black_box;
use std::time::{Duration, Instant};

use pipe_runner::check::{self, CheckOptions};
use pipe_runner::context::Contexts;
use pipe_runner::expr::Value;
use pipe_runner::plan::{self, PlanInput, Selection};
use pipe_runner::source::{FileId, SourceFile};
use pipe_runner::workflow;

fn time<T>(budget: Duration, mut f: impl FnMut() -> T) -> (Duration, Duration, usize) {
    black_box(f());
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 10 {
        let t = Instant::now();
        black_box(f());
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    (samples[samples.len() / 2], samples[0], samples.len())
}

fn generated(n: usize) -> String {
    let mut s = String::from("name: dag-indep\non: push\njobs:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  t{i}:\n    runs-on: ubuntu-latest\n    steps:\n      - shell: sh\n        run: \"true\"\n"
        ));
    }
    s
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let (label, text) = match std::env::var("PIPE_BENCH_WORKFLOW") {
        Ok(path) => {
            let text = std::fs::read_to_string(&path).expect("read PIPE_BENCH_WORKFLOW");
            (path, text)
        }
        Err(_) => ("generated indep 5000".to_owned(), generated(5000)),
    };
    let source = SourceFile::new("workflow.yml", text.clone());
    let (wf, diags) = workflow::load(FileId(0), &text);
    let wf = wf.expect("the workflow loads");
    assert!(diags.iter().all(|d| !d.is_error()));
    let opts = CheckOptions {
        root: std::env::temp_dir(),
        labels: Vec::new(),
        strict_github: false,
        action_dir: None,
    };
    let ctx = Contexts::new()
        .with(
            "github",
            Value::object([("event_name", Value::str("push"))]),
        )
        .with("vars", Value::object(Vec::<(String, Value)>::new()))
        .with("inputs", Value::object(Vec::<(String, Value)>::new()));
    let sel = Selection::default();
    let input = PlanInput {
        workflow: &wf,
        path: "workflow.yml",
        contexts: &ctx,
        selection: &sel,
    };
    let jobs = wf.jobs.len();
    println!("workflow: {label} ({jobs} jobs, {} bytes)", text.len());
    let budget = Duration::from_secs(3);
    let (m, lo, n) = time(budget, || workflow::load(FileId(0), &text));
    println!(
        "load (YAML → model):   median {:.2} ms, min {:.2} ms ({n} runs)",
        ms(m),
        ms(lo)
    );
    let (m, lo, n) = time(budget, || check::check_workflow(&wf, &source, &opts));
    println!(
        "check (errors, lints): median {:.2} ms, min {:.2} ms ({n} runs)",
        ms(m),
        ms(lo)
    );
    let (m, lo, n) = time(budget, || plan::plan(&input).expect("plans"));
    println!(
        "plan::plan:            median {:.2} ms, min {:.2} ms ({n} runs)",
        ms(m),
        ms(lo)
    );
    let p = plan::plan(&input).expect("plans");
    let (m, lo, n) = time(budget, || serde_json::to_string_pretty(&p).expect("json"));
    println!(
        "plan JSON:             median {:.2} ms, min {:.2} ms ({n} runs)",
        ms(m),
        ms(lo)
    );
    let (m, lo, n) = time(budget, || {
        let (wf, _) = workflow::load(FileId(0), &text);
        let wf = wf.expect("loads");
        let d = check::check_workflow(&wf, &source, &opts);
        let input = PlanInput {
            workflow: &wf,
            path: "workflow.yml",
            contexts: &ctx,
            selection: &sel,
        };
        let p = plan::plan(&input).expect("plans");
        (
            d.len(),
            serde_json::to_string_pretty(&p).expect("json").len(),
        )
    });
    println!(
        "all of it:             median {:.2} ms, min {:.2} ms ({n} runs)",
        ms(m),
        ms(lo)
    );
}
