//! Expression engine benchmark: time and heap allocations per evaluation.
//!
//! Every step and job condition, every `env`, `with` and `run` value goes through the evaluator,
//! often once per matrix leg, so per-evaluation cost and allocations matter more than parse cost.
//! This program evaluates small, realistic expressions against a realistic context (a `push`
//! event payload, matrix, steps, needs) one million times each — parsed once, and parsed on every
//! iteration — and prints a Markdown table. A counting global allocator gives exact allocation
//! counts; no external benchmark framework is needed. Run it with the command in
//! `bench/expr/README.md`.
#![expect(
    unsafe_code,
    reason = "a counting global allocator has to implement the unsafe `GlobalAlloc` trait"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use pipe_runner::expr::{Context, Object, StatusFn, Template, Value, eval, parse, parse_condition};

/// Counts allocations (including reallocations) made through the global allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is upheld by `System`; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; see the impl comment.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; see the impl comment.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; see the impl comment.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; see the impl comment.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The contexts of a matrix job on a `push`, built once and shared like the runner would.
struct BenchCtx {
    github: Value,
    env: Value,
    matrix: Value,
    steps: Value,
    needs: Value,
    strategy: Value,
    runner: Value,
}

impl Context for BenchCtx {
    fn named_value(&self, name: &str) -> Option<Value> {
        Some(match name {
            "github" => self.github.clone(),
            "env" => self.env.clone(),
            "matrix" => self.matrix.clone(),
            "steps" => self.steps.clone(),
            "needs" => self.needs.clone(),
            "strategy" => self.strategy.clone(),
            "runner" => self.runner.clone(),
            _ => return None,
        })
    }

    fn status(&self, f: StatusFn) -> bool {
        matches!(f, StatusFn::Success | StatusFn::Always)
    }
}

fn context() -> BenchCtx {
    let event = serde_json::json!({
        "after": "c27d339ee6075c1f744c5d4b200f7901aad2c369",
        "before": "0000000000000000000000000000000000000000",
        "ref": "refs/heads/main",
        "created": false,
        "deleted": false,
        "forced": false,
        "compare": "https://github.com/octocat/hello-world/compare/0000...c27d",
        "head_commit": {
            "id": "c27d339ee6075c1f744c5d4b200f7901aad2c369",
            "message": "Fix the build (#12)",
            "timestamp": "2026-11-26T10:00:00Z",
            "author": { "name": "Mona Lisa", "email": "mona@example.com", "username": "mona" },
            "added": [], "removed": [], "modified": ["src/main.rs"]
        },
        "commits": [
            { "id": "c27d339e", "message": "Fix the build (#12)", "author": { "name": "Mona Lisa" } }
        ],
        "pull_request": {
            "number": 12,
            "labels": [ { "name": "bug" }, { "name": "deploy" }, { "name": "ci" } ]
        },
        "pusher": { "name": "mona", "email": "mona@example.com" },
        "repository": {
            "id": 1296269, "name": "hello-world", "full_name": "octocat/hello-world",
            "private": false, "default_branch": "main", "topics": ["ci", "rust"],
            "owner": { "login": "octocat", "id": 1, "type": "User" }
        },
        "sender": { "login": "mona", "id": 2, "type": "User" }
    });
    let mut github = Object::new();
    for (k, v) in [
        ("token", "***"),
        ("job", "build"),
        ("ref", "refs/heads/main"),
        ("ref_name", "main"),
        ("ref_type", "branch"),
        ("sha", "c27d339ee6075c1f744c5d4b200f7901aad2c369"),
        ("repository", "octocat/hello-world"),
        ("repository_owner", "octocat"),
        ("repositoryUrl", "git://github.com/octocat/hello-world.git"),
        ("run_id", "1536140711"),
        ("run_number", "314"),
        ("run_attempt", "1"),
        ("retention_days", "90"),
        ("actor", "mona"),
        ("triggering_actor", "mona"),
        ("workflow", "CI"),
        ("head_ref", ""),
        ("base_ref", ""),
        ("event_name", "push"),
        ("server_url", "https://github.com"),
        ("api_url", "https://api.github.com"),
        ("graphql_url", "https://api.github.com/graphql"),
        ("workspace", "/home/runner/work/hello-world/hello-world"),
        ("action", "__run"),
        (
            "event_path",
            "/home/runner/work/_temp/_github_workflow/event.json",
        ),
        (
            "path",
            "/home/runner/work/_temp/_runner_file_commands/add_path",
        ),
        (
            "env",
            "/home/runner/work/_temp/_runner_file_commands/set_env",
        ),
    ] {
        github.insert(k, Value::from(v));
    }
    github.insert("ref_protected", Value::Bool(false));
    github.insert("event", Value::from_json(event));
    let mut env = Object::case_sensitive();
    env.insert("CI", Value::from("true"));
    env.insert("RUST_LOG", Value::from("info"));
    env.insert("CARGO_TERM_COLOR", Value::from("always"));
    let steps = serde_json::json!({
        "checkout": { "outputs": {}, "outcome": "success", "conclusion": "success" },
        "build": { "outputs": { "version": "1.2.3", "artifact": "app.tar.gz" },
                   "outcome": "success", "conclusion": "success" }
    });
    BenchCtx {
        github: Value::from_object(github),
        env: Value::from_object(env),
        matrix: Value::object([
            ("os", Value::from("ubuntu-24.04")),
            ("node", Value::from(20)),
        ]),
        steps: Value::from_json(steps),
        needs: Value::from_json(serde_json::json!({
            "setup": { "result": "success", "outputs": { "cache-key": "abc" } }
        })),
        strategy: Value::from_json(serde_json::json!({
            "fail-fast": true, "job-index": 1, "job-total": 4, "max-parallel": 4
        })),
        runner: Value::from_json(serde_json::json!({
            "os": "Linux", "arch": "X64", "temp": "/tmp", "tool_cache": "/opt/hostedtoolcache"
        })),
    }
}

const N: u64 = 1_000_000;

struct Row {
    name: String,
    /// Mean over all iterations.
    mean_ns: f64,
    /// Mean within the fastest batch: the machine may be shared, and the fastest of several
    /// batches is the best estimate of the uncontended cost.
    best_ns: f64,
    allocs: f64,
}

const BATCHES: u64 = 10;

/// Runs `f` `N` times in `BATCHES` batches (after a warm-up) and reports ns and allocations
/// per call.
fn measure(name: &str, mut f: impl FnMut() -> bool) -> Row {
    let mut ok = true;
    for _ in 0..N / 10 {
        ok &= black_box(f());
    }
    let a0 = ALLOCATIONS.load(Ordering::Relaxed);
    let mut total = 0.0;
    let mut best = f64::INFINITY;
    for _ in 0..BATCHES {
        let t0 = Instant::now();
        for _ in 0..N / BATCHES {
            ok &= black_box(f());
        }
        let secs = t0.elapsed().as_secs_f64();
        total += secs;
        best = best.min(secs);
    }
    let a1 = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(ok, "`{name}` failed to evaluate");
    #[expect(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
    let (n, batch, allocs) = (N as f64, (N / BATCHES) as f64, (a1 - a0) as f64);
    Row {
        name: name.to_owned(),
        mean_ns: total * 1e9 / n,
        best_ns: best * 1e9 / batch,
        allocs: allocs / n,
    }
}

fn main() {
    let ctx = context();
    let exprs = [
        "github.event_name == 'push' && contains(matrix.os, 'ubuntu')",
        "github.ref == 'refs/heads/main'",
        "steps.build.outputs.version",
        "startsWith(github.ref, 'refs/tags/') || github.event.repository.private",
        "contains(github.event.pull_request.labels.*.name, 'deploy')",
        "format('{0}-{1}', matrix.os, matrix.node)",
        "fromJSON('[\"push\",\"pull_request\"]')[0] == github.event_name",
        "toJSON(strategy)",
    ];
    let mut rows = Vec::new();
    for src in exprs {
        let e = parse(src).expect("benchmark expression parses");
        rows.push(measure(&format!("eval `{src}`"), || {
            eval(black_box(&e), &ctx).is_ok()
        }));
    }
    let headline = exprs[0];
    rows.push(measure(&format!("parse+eval `{headline}`"), || {
        parse(black_box(headline)).is_ok_and(|e| eval(&e, &ctx).is_ok())
    }));
    let cond = parse_condition("github.event_name == 'push' && runner.os == 'Linux'")
        .expect("condition parses");
    rows.push(measure(
        "condition `github.event_name == 'push' && runner.os == 'Linux'` (implicit `success()`)",
        || cond.eval(black_box(&ctx)).is_ok_and(|b| b),
    ));
    let tpl =
        Template::parse("build-${{ matrix.os }}-node${{ matrix.node }}").expect("template parses");
    rows.push(measure(
        "template `build-${{ matrix.os }}-node${{ matrix.node }}`",
        || tpl.eval(black_box(&ctx)).is_ok(),
    ));

    println!("| case | ns/eval (best batch) | ns/eval (mean) | allocations/eval |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} |",
            r.name.replace('|', "\\|"),
            r.best_ns,
            r.mean_ns,
            r.allocs
        );
    }
    println!("\n{N} iterations per case in {BATCHES} batches");
}
