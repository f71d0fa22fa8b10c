//! Test and coverage results, and the per-run results record (`results.json` in the run's
//! folder and `results` in the `--summary` JSON) that promotion gates read.
//!
//! - [`junit`]: JUnit XML (cargo-nextest, pytest, jest, Surefire, go-junit-report);
//! - [`coverage`]: LCOV, Cobertura XML, `cargo llvm-cov --json`;
//! - [`Collector`]: the runner's [`ResultsCollector`] for the job `reports:` key — it reads
//!   each leg's files into one [`RunResults`], and records benchmark files in the history.
//!
//! A bad or missing report file is a warning in the job's log naming the file and line; it
//! never fails the job (the job's own test step does that).

pub mod coverage;
pub mod junit;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pipe_runner::run::results::{LegResults, ResultsCollector};
use serde::{Deserialize, Serialize};

use crate::bench;

/// A report file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ReportError {
    /// The file.
    pub path: PathBuf,
    /// The line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ReportError {
    /// An error at a line of a file.
    pub fn at(path: &Path, line: Option<usize>, message: String) -> Self {
        ReportError {
            path: path.to_path_buf(),
            line,
            message,
        }
    }
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> Option<usize> {
    let end = offset.min(text.len());
    Some(memchr::memchr_iter(b'\n', &text.as_bytes()[..end]).count() + 1)
}

/// Test counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TestTotals {
    /// Test cases.
    pub tests: u64,
    /// Passed (flaky ones included).
    pub passed: u64,
    /// Failed or errored.
    pub failed: u64,
    /// Skipped.
    pub skipped: u64,
    /// Passed after a failed attempt.
    pub flaky: u64,
    /// Sum of the cases' times.
    pub duration_s: f64,
}

impl TestTotals {
    fn add(&mut self, o: &TestTotals) {
        self.tests += o.tests;
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
        self.flaky += o.flaky;
        self.duration_s += o.duration_s;
    }
}

/// One failed test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedTest {
    /// Suite name.
    pub suite: String,
    /// Class name (module, package).
    pub classname: String,
    /// Test name.
    pub name: String,
    /// First line of the failure message.
    pub message: String,
    /// Source file, when the report names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// Coverage counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageTotals {
    /// Lines that can be covered.
    pub lines_total: u64,
    /// Lines covered.
    pub lines_covered: u64,
    /// Branches.
    pub branches_total: u64,
    /// Branches taken.
    pub branches_covered: u64,
    /// Source files.
    pub files: u64,
}

impl CoverageTotals {
    /// Line coverage in percent (None without lines).
    pub fn line_percent(&self) -> Option<f64> {
        (self.lines_total > 0).then(|| self.lines_covered as f64 * 100.0 / self.lines_total as f64)
    }

    /// Branch coverage in percent (None without branches).
    pub fn branch_percent(&self) -> Option<f64> {
        (self.branches_total > 0)
            .then(|| self.branches_covered as f64 * 100.0 / self.branches_total as f64)
    }

    fn add(&mut self, o: &CoverageTotals) {
        self.lines_total += o.lines_total;
        self.lines_covered += o.lines_covered;
        self.branches_total += o.branches_total;
        self.branches_covered += o.branches_covered;
        self.files += o.files;
    }
}

/// Coverage with its percentages, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoverageSummary {
    /// Counts.
    #[serde(flatten)]
    pub totals: CoverageTotals,
    /// Line coverage, percent.
    pub line_percent: Option<f64>,
    /// Branch coverage, percent.
    pub branch_percent: Option<f64>,
    /// Line coverage minus the baseline's (the previous run that recorded coverage), points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_delta: Option<f64>,
    /// The run the delta is against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_run: Option<u64>,
}

impl CoverageSummary {
    fn of(t: CoverageTotals) -> Self {
        CoverageSummary {
            totals: t,
            line_percent: t.line_percent(),
            branch_percent: t.branch_percent(),
            line_delta: None,
            baseline_run: None,
        }
    }
}

/// A benchmark seen in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchmarkSummary {
    /// Name.
    pub name: String,
    /// Producing tool.
    pub source: String,
    /// Samples.
    pub n: usize,
    /// Median, seconds.
    pub median: f64,
    /// Mean, seconds.
    pub mean: f64,
}

/// One leg's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobResults {
    /// Job id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Test totals (None without JUnit files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestTotals>,
    /// Failed tests.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub failed_tests: Vec<FailedTest>,
    /// Coverage (None without coverage files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoverageSummary>,
    /// Benchmarks.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub benchmarks: Vec<BenchmarkSummary>,
    /// Files read (relative to the workspace).
    pub files: Vec<String>,
    /// Problems with the files.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub warnings: Vec<String>,
}

/// The run's results record (version 1).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// Schema version (1).
    pub version: u32,
    /// Tests over every leg.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestTotals>,
    /// Coverage over every leg (counts added; legs should cover disjoint code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoverageSummary>,
    /// Benchmarks over every leg.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub benchmarks: Vec<BenchmarkSummary>,
    /// Per leg, in the order they finished.
    pub jobs: Vec<JobResults>,
}

impl RunResults {
    /// Recomputes the run totals from the legs.
    pub fn total(&mut self) {
        self.version = 1;
        let mut tests: Option<TestTotals> = None;
        let mut cov: Option<CoverageTotals> = None;
        let mut benches = Vec::new();
        for j in &self.jobs {
            if let Some(t) = &j.tests {
                tests.get_or_insert_default().add(t);
            }
            if let Some(c) = &j.coverage {
                cov.get_or_insert_default().add(&c.totals);
            }
            benches.extend(j.benchmarks.iter().cloned());
        }
        self.tests = tests;
        self.coverage = cov.map(CoverageSummary::of);
        self.benchmarks = benches;
    }

    /// Sets the coverage delta against an earlier run's record.
    pub fn set_baseline(&mut self, run: u64, earlier: &RunResults) {
        if let (Some(c), Some(b)) = (self.coverage.as_mut(), earlier.coverage.as_ref())
            && let (Some(now), Some(then)) = (c.line_percent, b.line_percent)
        {
            c.line_delta = Some(now - then);
            c.baseline_run = Some(run);
        }
    }

    /// Markdown for the step summary: totals, failed tests, coverage, benchmarks.
    pub fn markdown(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::from("## Results\n\n");
        if let Some(t) = &self.tests {
            let _ = writeln!(
                s,
                "**Tests:** {} passed, {} failed, {} skipped{}\n",
                t.passed,
                t.failed,
                t.skipped,
                if t.flaky > 0 {
                    format!(" ({} flaky)", t.flaky)
                } else {
                    String::new()
                }
            );
            let failed: Vec<&FailedTest> = self.jobs.iter().flat_map(|j| &j.failed_tests).collect();
            if !failed.is_empty() {
                s.push_str("| Failed test | Message |\n|:---|:---|\n");
                for f in failed.iter().take(50) {
                    let _ = writeln!(
                        s,
                        "| `{}` | {} |",
                        test_id(f).replace('|', "\\|"),
                        f.message.replace('|', "\\|")
                    );
                }
                s.push('\n');
            }
        }
        if let Some(c) = &self.coverage {
            let _ = writeln!(
                s,
                "**Coverage:** lines {}{}{}\n",
                c.line_percent
                    .map_or_else(|| "n/a".to_string(), |p| format!("{p:.1}%")),
                c.line_delta
                    .map(|d| format!(" ({d:+.1} points)"))
                    .unwrap_or_default(),
                c.branch_percent
                    .map(|p| format!(", branches {p:.1}%"))
                    .unwrap_or_default()
            );
        }
        if !self.benchmarks.is_empty() {
            s.push_str("| Benchmark | Median | Samples |\n|:---|---:|---:|\n");
            for b in &self.benchmarks {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} |",
                    b.name.replace('|', "\\|"),
                    bench::render::format_time(b.median),
                    b.n
                );
            }
        }
        s
    }
}

/// `suite::classname::name` without empty or repeated parts.
pub fn test_id(f: &FailedTest) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in [f.classname.as_str(), f.name.as_str()] {
        if !p.is_empty() && !parts.contains(&p) {
            parts.push(p);
        }
    }
    parts.join("::")
}

/// Coverage file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoverageFormat {
    /// LCOV tracefile.
    Lcov,
    /// Cobertura XML.
    Cobertura,
    /// llvm-cov JSON export.
    LlvmCov,
}

/// Guesses a coverage file's format from its content.
pub fn detect_coverage(text: &str) -> Option<CoverageFormat> {
    let t = text.trim_start();
    if t.starts_with('<') {
        Some(CoverageFormat::Cobertura)
    } else if t.starts_with('{') {
        Some(CoverageFormat::LlvmCov)
    } else if t.starts_with("TN:") || t.starts_with("SF:") || t.starts_with("VER:") {
        Some(CoverageFormat::Lcov)
    } else {
        None
    }
}

/// Reads a coverage file.
pub fn read_coverage(path: &Path) -> Result<CoverageTotals, ReportError> {
    let text = read(path)?;
    match detect_coverage(&text) {
        Some(CoverageFormat::Lcov) => coverage::lcov(path, &text),
        Some(CoverageFormat::Cobertura) => coverage::cobertura(path, &text),
        Some(CoverageFormat::LlvmCov) => coverage::llvm_cov(path, &text),
        None => Err(ReportError::at(
            path,
            Some(1),
            "unknown coverage format (expected LCOV, Cobertura XML or llvm-cov JSON)".into(),
        )),
    }
}

/// Reads a JUnit file.
pub fn read_junit(path: &Path) -> Result<junit::JunitReport, ReportError> {
    let text = read(path)?;
    junit::parse(path, &text)
}

fn read(path: &Path) -> Result<String, ReportError> {
    let bytes = std::fs::read(path).map_err(|e| ReportError::at(path, None, e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        let line = line_of(
            &String::from_utf8_lossy(e.as_bytes()),
            e.utf8_error().valid_up_to(),
        );
        ReportError::at(path, line, "not UTF-8 text".into())
    })
}

/// Expands a pattern relative to `root`: a plain path, or a glob walked from its literal
/// prefix (hidden and ignored files included: reports live in `target/` and the like).
pub fn expand(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let is_glob = pattern.contains(['*', '?', '[', '{']);
    if !is_glob {
        let p = root.join(pattern);
        return if p.exists() { vec![p] } else { Vec::new() };
    }
    let Ok(glob) = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
    else {
        return Vec::new();
    };
    let prefix: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| {
            !c.as_os_str()
                .to_string_lossy()
                .contains(['*', '?', '[', '{'])
        })
        .collect();
    let mut out = Vec::new();
    let mut stack = vec![root.join(&prefix)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(rel) = p.strip_prefix(root) else {
                continue;
            };
            let ft = e.file_type();
            if ft.as_ref().is_ok_and(|t| t.is_dir()) {
                if glob.is_match(rel) {
                    out.push(p.clone());
                }
                stack.push(p);
            } else if glob.is_match(rel) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads one leg's declared files into a [`JobResults`]; benchmark series are returned for
/// recording.
pub fn collect_leg(
    id: &str,
    name: &str,
    workspace: &Path,
    reports: &[pipe_runner::run::results::ReportFiles],
) -> (JobResults, Vec<bench::ingest::BenchSeries>) {
    let mut j = JobResults {
        id: id.to_string(),
        name: name.to_string(),
        ..JobResults::default()
    };
    let mut series = Vec::new();
    for r in reports {
        for pat in &r.patterns {
            let files = expand(workspace, pat);
            if files.is_empty() {
                j.warnings
                    .push(format!("`reports.{}`: no file matches `{pat}`", r.kind));
                continue;
            }
            for f in files {
                let rel = f
                    .strip_prefix(workspace)
                    .unwrap_or(&f)
                    .display()
                    .to_string();
                let shown = |e: String| e.replacen(&f.display().to_string(), &rel, 1);
                match r.kind.as_str() {
                    "junit" => match read_junit(&f) {
                        Ok(rep) => {
                            j.tests.get_or_insert_default().add(&rep.totals);
                            j.failed_tests.extend(rep.failed);
                            j.files.push(rel);
                        }
                        Err(e) => j.warnings.push(shown(e.to_string())),
                    },
                    "coverage" => match read_coverage(&f) {
                        Ok(t) => {
                            let mut c = j.coverage.take().map(|c| c.totals).unwrap_or_default();
                            c.add(&t);
                            j.coverage = Some(CoverageSummary::of(c));
                            j.files.push(rel);
                        }
                        Err(e) => j.warnings.push(shown(e.to_string())),
                    },
                    "benchmark" => match bench::ingest::read_path(&f, None) {
                        Ok(s) => {
                            for b in &s {
                                j.benchmarks.push(BenchmarkSummary {
                                    name: b.name.clone(),
                                    source: b.source.clone(),
                                    n: b.samples.len(),
                                    median: bench::stats::median(&b.samples),
                                    mean: bench::stats::mean(&b.samples),
                                });
                            }
                            series.extend(s);
                            j.files.push(rel);
                        }
                        Err(e) => j.warnings.push(shown(e.to_string())),
                    },
                    _ => j.files.push(rel),
                }
            }
        }
    }
    (j, series)
}

/// The runner's collector: gathers every leg into one [`RunResults`] and records benchmark
/// series in the history (when given one).
pub struct Collector {
    results: Mutex<RunResults>,
    history: Option<(PathBuf, bench::history::Provenance)>,
}

impl Collector {
    /// A collector; `history` is the bench database and the run's provenance.
    pub fn new(history: Option<(PathBuf, bench::history::Provenance)>) -> Self {
        Collector {
            results: Mutex::new(RunResults {
                version: 1,
                ..RunResults::default()
            }),
            history,
        }
    }

    /// The record so far (None when no leg declared reports).
    pub fn results(&self) -> Option<RunResults> {
        let r = self.results.lock().ok()?.clone();
        (!r.jobs.is_empty()).then_some(r)
    }
}

impl ResultsCollector for Collector {
    fn collect(&self, leg: &LegResults<'_>) -> Vec<String> {
        let (j, series) = collect_leg(leg.job_id, leg.name, leg.workspace, leg.reports);
        let mut warnings = j.warnings.clone();
        if !series.is_empty()
            && let Some((db, prov)) = &self.history
        {
            let fp = bench::fingerprint::Fingerprint::current();
            if let Err(e) =
                bench::history::History::open(db).and_then(|mut h| h.record(&series, &fp, prov))
            {
                warnings.push(e.to_string());
            }
        }
        if let Ok(mut r) = self.results.lock() {
            r.jobs.push(j);
            r.total();
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/reports")
            .join(name)
    }

    fn junit(name: &str) -> junit::JunitReport {
        read_junit(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn nextest_junit_from_a_real_run() {
        let r = junit("nextest-junit.xml");
        assert_eq!(
            (r.totals.tests, r.totals.passed, r.totals.failed),
            (4, 3, 1)
        );
        assert_eq!(r.failed[0].name, "tests::fails");
        assert_eq!(r.failed[0].classname, "tiny");
        assert!(
            r.failed[0].message.starts_with("thread 'tests::fails'"),
            "{}",
            r.failed[0].message
        );
    }

    #[test]
    fn pytest_junit_from_a_real_run() {
        let r = junit("pytest-junit.xml");
        assert_eq!(
            (
                r.totals.tests,
                r.totals.passed,
                r.totals.failed,
                r.totals.skipped
            ),
            (4, 2, 1, 1)
        );
        assert_eq!(test_id(&r.failed[0]), "test_calc::test_fails");
        assert_eq!(r.failed[0].message, "AssertionError: two and two");
    }

    #[test]
    fn jest_surefire_and_go_samples() {
        let j = junit("jest-junit.xml");
        assert_eq!(
            (j.totals.tests, j.totals.failed, j.totals.skipped),
            (4, 1, 1)
        );
        assert_eq!(j.failed[0].suite, "math");
        assert_eq!(
            j.failed[0].message,
            "Error: expect(received).toBe(expected) // Object.is equality"
        );
        assert_eq!(test_id(&j.failed[0]), "math divides by zero");
        let s = junit("surefire.xml");
        assert_eq!(
            (
                s.totals.tests,
                s.totals.passed,
                s.totals.failed,
                s.totals.skipped,
                s.totals.flaky
            ),
            (5, 2, 2, 1, 1)
        );
        assert_eq!(s.failed[0].message, "expected: <Infinity> but was: <NaN>");
        assert_eq!(
            s.failed[1].message,
            "config.properties (No such file or directory)"
        );
        let g = junit("go-junit-report.xml");
        assert_eq!(
            (g.totals.tests, g.totals.failed, g.totals.skipped),
            (3, 1, 1)
        );
        assert_eq!(test_id(&g.failed[0]), "example.com/calc::TestDiv");
    }

    #[test]
    fn coverage_py_lcov_and_cobertura_agree() {
        let l = read_coverage(&fixture("coverage.lcov")).expect("lcov");
        let c = read_coverage(&fixture("coverage.xml")).expect("cobertura");
        assert_eq!((c.lines_total, c.lines_covered), (17, 14));
        assert_eq!((c.branches_total, c.branches_covered), (2, 1));
        assert_eq!(
            (
                l.lines_total,
                l.lines_covered,
                l.branches_total,
                l.branches_covered
            ),
            (
                c.lines_total,
                c.lines_covered,
                c.branches_total,
                c.branches_covered
            )
        );
        assert_eq!((l.files, c.files), (2, 2));
    }

    #[test]
    fn llvm_cov_sample() {
        let t = read_coverage(&fixture("llvm-cov.json")).expect("llvm-cov");
        assert_eq!((t.lines_total, t.lines_covered), (25, 20));
        assert_eq!(t.line_percent(), Some(80.0));
        assert_eq!(t.branch_percent(), Some(75.0));
        assert_eq!(t.files, 2);
    }

    #[test]
    fn malformed_files_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            (
                "bad-time.xml",
                "bad-time.xml:4: `time` `abc` is not a number of seconds",
            ),
            ("unclosed.xml", "unclosed.xml:5: invalid XML"),
            ("bad.lcov", "bad.lcov:4: `two` is not a line number"),
            (
                "bad-cobertura.xml",
                "bad-cobertura.xml:2: `lines-valid` `x` is not a count",
            ),
            (
                "bad-llvm-cov.json",
                "bad-llvm-cov.json: `data[0].totals.lines.count` is not a count",
            ),
        ];
        for (f, want) in cases {
            let p = fixture(&format!("malformed/{f}"));
            let e = if f.ends_with(".xml") && !f.contains("cobertura") {
                read_junit(&p).map(|_| ()).expect_err(f).to_string()
            } else {
                read_coverage(&p).map(|_| ()).expect_err(f).to_string()
            };
            assert!(e.contains(want), "{e}\n  wanted {want}");
        }
    }

    #[test]
    fn bench_results_from_real_tools() {
        let read = |f: &str| bench::ingest::read_path(&fixture(f), None).expect(f);
        let h = read("hyperfine.json");
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].name, "sleep 0.001");
        assert_eq!(h[1].samples.len(), 12);
        let p = read("pytest-benchmark.json");
        assert_eq!(p[0].name, "test_calc.py::test_bench");
        assert_eq!(p[0].samples.len(), 20);
        assert!(!p[0].aggregate);
        let c = read("cargo-bench.txt");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "tests::bench_add");
        assert!((c[0].samples[0] - 0.24e-9).abs() < 1e-20);
        let g = read("google-benchmark.json");
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].samples, vec![3.5e-5, 3.6e-5, 3.4e-5]);
    }

    #[test]
    fn collects_a_leg_into_the_run_record() {
        let d = tempfile::tempdir().expect("tmp");
        let ws = d.path();
        std::fs::create_dir_all(ws.join("target/nextest/ci")).expect("mkdir");
        std::fs::copy(
            fixture("nextest-junit.xml"),
            ws.join("target/nextest/ci/junit.xml"),
        )
        .expect("copy");
        std::fs::copy(fixture("coverage.lcov"), ws.join("lcov.info")).expect("copy");
        std::fs::copy(fixture("hyperfine.json"), ws.join("bench.json")).expect("copy");
        let spec = vec![
            pipe_runner::run::results::ReportFiles {
                kind: "junit".into(),
                patterns: vec!["target/**/junit.xml".into()],
            },
            pipe_runner::run::results::ReportFiles {
                kind: "coverage".into(),
                patterns: vec!["lcov.info".into(), "missing.xml".into()],
            },
            pipe_runner::run::results::ReportFiles {
                kind: "benchmark".into(),
                patterns: vec!["bench.json".into()],
            },
        ];
        let hist = ws.join("state/bench.db");
        let c = Collector::new(Some((
            hist.clone(),
            bench::history::Provenance {
                commit: "c0ffee0".into(),
                branch: "main".into(),
                run: Some(7),
            },
        )));
        let w = c.collect(&LegResults {
            job_id: "test",
            name: "test",
            workspace: ws,
            reports: &spec,
        });
        assert_eq!(w, vec!["`reports.coverage`: no file matches `missing.xml`"]);
        let r = c.results().expect("results");
        let t = r.tests.expect("tests");
        assert_eq!((t.passed, t.failed), (3, 1));
        assert_eq!(
            r.coverage.as_ref().and_then(|c| c.totals.files.into()),
            Some(2)
        );
        assert_eq!(r.benchmarks.len(), 2);
        assert_eq!(
            r.jobs[0].files,
            vec!["target/nextest/ci/junit.xml", "lcov.info", "bench.json"]
        );
        let md = r.markdown();
        assert!(
            md.contains("**Tests:** 3 passed, 1 failed, 0 skipped"),
            "{md}"
        );
        assert!(md.contains("| `tiny::tests::fails` |"), "{md}");
        let h = bench::history::History::open(&hist).expect("db");
        assert_eq!(h.latest_for_commit("c0ffee0").expect("q").len(), 2);
        let mut later = r.clone();
        later.coverage = Some(CoverageSummary::of(CoverageTotals {
            lines_total: 17,
            lines_covered: 17,
            ..CoverageTotals::default()
        }));
        later.set_baseline(6, &r);
        let delta = later.coverage.and_then(|c| c.line_delta).expect("delta");
        assert!((delta - (100.0 - 1400.0 / 17.0)).abs() < 1e-9);
    }
}
