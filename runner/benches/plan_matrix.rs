//! Benchmark: expanding a 256-leg matrix (16 × 16 with an `include` adding an extra value to
//! every leg and one that matches nothing being excluded first), with the heap allocations of one
//! expansion counted by a counting global allocator.
//!
//! `cargo bench -p pipe-runner --bench plan_matrix` prints, for the bare builder
//! (`matrix::build` on evaluated values) and for the whole job expansion the plan and the
//! scheduler use (`plan::expand_job_matrix`: evaluation, expansion, display names), the median
//! and minimum time per expansion and the allocations (count and bytes) of one expansion.

// A global allocator is an `unsafe` trait; this is the only unsafe code, and it only counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pipe_runner::context::Contexts;
use pipe_runner::expr::Value;
use pipe_runner::plan::{self, matrix};
use pipe_runner::source::FileId;
use pipe_runner::workflow;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same layout, same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64, u64) {
    let (a0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    let out = f();
    let (a1, b1) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    (out, a1 - a0, b1 - b0)
}

/// Runs `f` for about `budget`, returns (median, min) of per-call times.
fn time<T>(budget: Duration, mut f: impl FnMut() -> T) -> (Duration, Duration, usize) {
    for _ in 0..20 {
        black_box(f());
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 50 {
        let t = Instant::now();
        black_box(f());
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    (samples[samples.len() / 2], samples[0], samples.len())
}

fn workflow_text() -> String {
    let values: Vec<String> = (0..16).map(|i| format!("v{i}")).collect();
    format!(
        "on: push
jobs:
  test:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [{v}]
        node: [{n}]
        exclude:
          - os: none
        include:
          - experimental: true
    steps: [{{run: echo}}]
",
        v = values.join(", "),
        n = (0..16)
            .map(|i| (i * 2 + 10).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn main() {
    let text = workflow_text();
    let (wf, diags) = workflow::load(FileId(0), &text);
    let wf = wf.expect("the benchmark workflow loads");
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let job = &wf.jobs[0];
    let ctx = Contexts::new();

    let spec = matrix::MatrixSpec::from_values(
        vec![
            (
                "os".into(),
                (0..16).map(|i| Value::str(format!("v{i}"))).collect(),
            ),
            (
                "node".into(),
                (0..16)
                    .map(|i| Value::Number(f64::from(i * 2 + 10)))
                    .collect(),
            ),
        ],
        vec![Value::object([("experimental", Value::Bool(true))])],
        vec![Value::object([("os", Value::str("none"))])],
    );

    let (legs, allocs, bytes) = counted(|| matrix::build(&spec).expect("expands"));
    assert_eq!(legs.len(), 256);
    let (median, min, n) = time(Duration::from_secs(2), || matrix::build(&spec));
    println!(
        "matrix::build, 256 legs: median {:.1} µs, min {:.1} µs ({n} runs); {allocs} allocations, {bytes} bytes per expansion",
        median.as_secs_f64() * 1e6,
        min.as_secs_f64() * 1e6,
    );

    let (legs, allocs, bytes) = counted(|| plan::expand_job_matrix(job, &ctx).expect("expands"));
    assert_eq!(legs.len(), 256);
    assert_eq!(legs[255].name, "test (v15, 40)");
    let (median, min, n) = time(Duration::from_secs(2), || {
        plan::expand_job_matrix(job, &ctx)
    });
    println!(
        "plan::expand_job_matrix (YAML values, names), 256 legs: median {:.1} µs, min {:.1} µs ({n} runs); {allocs} allocations, {bytes} bytes per expansion",
        median.as_secs_f64() * 1e6,
        min.as_secs_f64() * 1e6,
    );
}
