//! HTML of the UI's pages. Every value from the database or a user is escaped with [`esc`].

use std::collections::HashMap;
use std::fmt::Write as _;

use super::User;
use super::queries::RunRow;
use crate::api::{Artifact, JobStatus, RunStatus};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page around `body`.
pub fn layout(title: &str, user: Option<&User>, body: &str) -> String {
    let nav = match user {
        Some(u) => format!(
            "<nav><a href=\"/\">Runs</a><a href=\"/ui/promotions\">Promotions</a>\
             <span class=\"who\">{}</span>\
             <form method=\"post\" action=\"/ui/logout\"><button class=\"link\">Sign out</button></form></nav>",
            esc(&u.name)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · pipe</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/ui/static/app.css\">\
         <script src=\"/ui/static/app.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"/\">pipe</a>{nav}</header><main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// The sign-in page.
pub fn login(failed: bool) -> String {
    let flash = if failed {
        "<p class=\"flash error\" id=\"login-error\">that token is not a valid user token</p>"
    } else {
        ""
    };
    layout(
        "sign in",
        None,
        &format!(
            "<h1>Sign in</h1>{flash}<form method=\"post\" action=\"/ui/login\" class=\"login\">\
             <label for=\"token\">User token (<code>pipe server token --kind user --name NAME</code>)</label>\
             <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required>\
             <button type=\"submit\" id=\"sign-in\">Sign in</button></form>"
        ),
    )
}

/// A state badge.
pub fn badge(state: &str, conclusion: Option<&str>) -> String {
    let (class, text) = match (state, conclusion) {
        ("done", Some(c)) => (c.to_owned(), c.to_owned()),
        (s, _) => (s.to_owned(), s.to_owned()),
    };
    format!(
        "<span class=\"badge {}\">{}</span>",
        esc(&class),
        esc(&text)
    )
}

fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let s = secs.round();
        format!("{}m {:02}s", (s / 60.0).floor(), s % 60.0)
    }
}

/// The rows of the runs table.
pub fn runs_rows(runs: &[RunRow]) -> String {
    let mut out = String::new();
    for r in runs {
        let _ = write!(
            out,
            "<tr data-run=\"{id}\"><td><a href=\"/ui/runs/{id}\">#{id}</a></td><td>{wf}</td>\
             <td>{ev}</td><td>{badge}</td><td>{done}/{jobs}</td><td><time>{created}</time></td>\
             <td>{dur}</td></tr>",
            id = r.id,
            wf = esc(&r.workflow),
            ev = esc(&r.event),
            badge = badge(&r.state, r.conclusion.as_deref()),
            done = r.done,
            jobs = r.jobs,
            created = esc(&r.created),
            dur = duration(r.seconds),
        );
    }
    if runs.is_empty() {
        out.push_str(
            "<tr><td colspan=\"7\" class=\"empty\">no runs yet: <code>pipe submit</code> sends one</td></tr>",
        );
    }
    out
}

/// The runs list.
pub fn runs(user: &User, runs: &[RunRow]) -> String {
    layout(
        "runs",
        Some(user),
        &format!(
            "<h1>Runs</h1><table class=\"runs\"><thead><tr><th>run</th><th>workflow</th>\
             <th>event</th><th>state</th><th>jobs</th><th>submitted</th><th>duration</th></tr>\
             </thead><tbody id=\"runs\" data-live=\"/ui/api/runs\">{}</tbody></table>",
            runs_rows(runs)
        ),
    )
}

/// Each job's level in the DAG: 0 without needs, else one more than its deepest need.
pub fn levels(jobs: &[JobStatus]) -> Vec<usize> {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.key.as_str(), i))
        .collect();
    let mut memo: Vec<Option<usize>> = vec![None; jobs.len()];
    fn level(
        i: usize,
        jobs: &[JobStatus],
        index: &HashMap<&str, usize>,
        memo: &mut Vec<Option<usize>>,
        depth: usize,
    ) -> usize {
        if let Some(Some(l)) = memo.get(i) {
            return *l;
        }
        // The plan has no cycles; the depth bound only guards against a corrupt row.
        if depth > jobs.len() {
            return 0;
        }
        let l = jobs.get(i).map_or(0, |j| {
            j.needs
                .iter()
                .filter_map(|n| index.get(n.as_str()))
                .map(|&n| level(n, jobs, index, memo, depth + 1) + 1)
                .max()
                .unwrap_or(0)
        });
        if let Some(m) = memo.get_mut(i) {
            *m = Some(l);
        }
        l
    }
    (0..jobs.len())
        .map(|i| level(i, jobs, &index, &mut memo, 0))
        .collect()
}

/// What a job's card says about its state.
pub fn job_label(j: &JobStatus) -> String {
    match (j.state.as_str(), j.result.as_deref()) {
        ("done", Some(r)) => r.to_owned(),
        ("leased", _) => "running".to_owned(),
        (s, _) => s.to_owned(),
    }
}

fn job_class(j: &JobStatus) -> String {
    match (j.state.as_str(), j.result.as_deref()) {
        ("done", Some(r)) => r.to_owned(),
        ("leased", _) => "running".to_owned(),
        (s, _) => s.to_owned(),
    }
}

/// The parts of a run page its handler renders: the results and promotion sections, and the
/// answer of a decision taken on the page.
#[derive(Clone, Debug, Default)]
pub struct RunSections {
    /// [`results_section`].
    pub results: String,
    /// The promotion section.
    pub promotion: String,
    /// A decision's success message.
    pub ok: Option<String>,
    /// A decision's error.
    pub error: Option<String>,
}

/// A run's page: the DAG, then the selected job's panel (filled by the script), the results,
/// the promotion status and the artifacts.
pub fn run(user: &User, run: &RunStatus, artifacts: &[Artifact], sections: &RunSections) -> String {
    let levels = levels(&run.jobs);
    let depth = levels.iter().copied().max().map_or(0, |m| m + 1);
    let mut dag = String::from("<div class=\"dag\" id=\"dag\">");
    for level in 0..depth {
        let _ = write!(dag, "<ol class=\"level\" data-level=\"{level}\">");
        for (j, _) in run.jobs.iter().zip(&levels).filter(|(_, l)| **l == level) {
            let needs = if j.needs.is_empty() {
                String::new()
            } else {
                format!(
                    "<span class=\"needs\">needs {}</span>",
                    esc(&j.needs.join(", "))
                )
            };
            let _ = write!(
                dag,
                "<li><a class=\"job {class}\" href=\"?job={id}\" data-job=\"{id}\" data-key=\"{key}\" \
                 id=\"job-{id}\"><span class=\"dot\"></span><span class=\"name\">{name}</span>\
                 <span class=\"state\">{label}</span>{needs}</a></li>",
                class = esc(&job_class(j)),
                id = j.id,
                key = esc(&j.key),
                name = esc(j.name.as_deref().unwrap_or(&j.key)),
                label = esc(&job_label(j)),
            );
        }
        dag.push_str("</ol>");
    }
    dag.push_str("</div>");
    let mut flash = String::new();
    if let Some(m) = &sections.ok {
        let _ = write!(flash, "<p class=\"flash ok\" id=\"flash\">{}</p>", esc(m));
    }
    if let Some(m) = &sections.error {
        let _ = write!(
            flash,
            "<p class=\"flash error\" id=\"flash\">{}</p>",
            esc(m)
        );
    }
    let body = format!(
        "<h1>Run #{id} <small>{wf} · {ev}</small> <span id=\"run-state\">{badge}</span></h1>\
         {flash}{dag}\
         <section class=\"panel\" id=\"panel\" hidden>\
           <h2><span id=\"panel-title\"></span> <span id=\"panel-state\" class=\"badge\"></span>\
             <small id=\"panel-attempt\"></small></h2>\
           <div class=\"log\" id=\"log\" role=\"log\" aria-live=\"polite\"></div>\
           <h3>Outputs</h3><table class=\"outputs\" id=\"outputs\"><tbody></tbody></table>\
           <h3>Step summaries</h3><div class=\"summary\" id=\"summary\"><p class=\"empty\">none yet</p></div>\
         </section>{results}{promotion}{artifacts}",
        id = run.id,
        results = sections.results,
        promotion = sections.promotion,
        artifacts = artifacts_section(run.id, artifacts),
        wf = esc(&run.workflow_path),
        ev = esc(&run.event),
        badge = badge(&run.state, run.conclusion.as_deref()),
    );
    layout(
        &format!("run #{}", run.id),
        Some(user),
        &format!("<div id=\"run\" data-run=\"{}\">{body}</div>", run.id),
    )
}

/// How many files of one artifact the run page links to (the rest are counted).
const ARTIFACT_FILES_SHOWN: usize = 50;

/// The run's artifacts: name, uploading job, size, and a download link per file.
pub fn artifacts_section(run: i64, artifacts: &[Artifact]) -> String {
    let mut out = String::from("<section class=\"artifacts\" id=\"artifacts\"><h2>Artifacts</h2>");
    if artifacts.is_empty() {
        out.push_str("<p class=\"empty\">none</p></section>");
        return out;
    }
    out.push_str("<ul>");
    for a in artifacts {
        let bytes: i64 = a.files.iter().map(|f| f.size).sum();
        let _ = write!(
            out,
            "<li class=\"artifact\" data-artifact=\"{name}\"><strong>{name}</strong> \
             <small>{n} file{s}, {size} · job {job} attempt {attempt}</small><ul>",
            name = esc(&a.name),
            n = a.files.len(),
            s = if a.files.len() == 1 { "" } else { "s" },
            size = human_size(bytes),
            job = a.job_id,
            attempt = a.attempt,
        );
        for f in a.files.iter().take(ARTIFACT_FILES_SHOWN) {
            let _ = write!(
                out,
                "<li><a href=\"/ui/runs/{run}/blobs/{digest}?file={file}\">{path}</a> \
                 <small>{size}</small></li>",
                digest = esc(&f.digest),
                file = esc(&query_escape(f.path.rsplit('/').next().unwrap_or(&f.path))),
                path = esc(&f.path),
                size = human_size(f.size),
            );
        }
        if a.files.len() > ARTIFACT_FILES_SHOWN {
            let _ = write!(
                out,
                "<li><small>and {} more</small></li>",
                a.files.len() - ARTIFACT_FILES_SHOWN
            );
        }
        out.push_str("</ul></li>");
    }
    out.push_str("</ul></section>");
    out
}

/// Bytes as `12.3 KiB`.
fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = bytes.max(0) as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986) for a query value.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The parts of a job's results record (`results.json` of `pipe run`, version 1) the run page
/// shows; unknown fields are ignored and missing ones are empty, so a newer agent's record
/// still renders.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct ResultsView {
    /// Per leg.
    pub jobs: Vec<LegResults>,
}

/// One leg's results.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct LegResults {
    /// Display name.
    pub name: String,
    /// Test totals.
    pub tests: Option<TestCounts>,
    /// Failed tests.
    pub failed_tests: Vec<FailedCase>,
    /// Coverage.
    pub coverage: Option<Coverage>,
    /// Benchmarks.
    pub benchmarks: Vec<Benchmark>,
    /// Problems with the report files.
    pub warnings: Vec<String>,
}

/// Test counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct TestCounts {
    /// Test cases.
    pub tests: u64,
    /// Passed.
    pub passed: u64,
    /// Failed or errored.
    pub failed: u64,
    /// Skipped.
    pub skipped: u64,
}

impl TestCounts {
    fn add(&mut self, o: &TestCounts) {
        self.tests += o.tests;
        self.passed += o.passed;
        self.failed += o.failed;
        self.skipped += o.skipped;
    }
}

/// A failed test case.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct FailedCase {
    /// Class name (module, package).
    pub classname: String,
    /// Test name.
    pub name: String,
    /// First line of the failure message.
    pub message: String,
    /// Source file.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u64>,
}

/// Coverage counts.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Coverage {
    /// Lines that can be covered.
    pub lines_total: u64,
    /// Lines covered.
    pub lines_covered: u64,
    /// Line coverage, percent.
    pub line_percent: Option<f64>,
    /// Branch coverage, percent.
    pub branch_percent: Option<f64>,
}

/// A benchmark's summary (times in seconds).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Benchmark {
    /// Name.
    pub name: String,
    /// Producing tool.
    pub source: String,
    /// Samples.
    pub n: u64,
    /// Median, seconds.
    pub median: f64,
}

/// One benchmark as the run page and the run JSON show it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    /// The server job.
    pub job: String,
    /// Name.
    pub name: String,
    /// The median in `unit`.
    pub value: f64,
    /// `s`, `ms`, `µs` or `ns`.
    pub unit: &'static str,
    /// Samples.
    pub samples: u64,
    /// The median of the same benchmark in the baseline run, seconds.
    pub baseline: Option<f64>,
    /// Change of the median against the baseline, percent (positive: slower).
    pub change_percent: Option<f64>,
}

/// A run's results over its jobs.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunResultsView {
    /// Test counts over every job (None when no job reported tests).
    pub tests: Option<TestCounts>,
    /// Line coverage over every job, percent.
    pub line_percent: Option<f64>,
    /// Benchmarks of every job.
    pub benchmarks: Vec<BenchRow>,
    /// The run the benchmark changes are against.
    pub baseline_run: Option<i64>,
}

/// A job's results record, when it sent one.
pub fn job_results(j: &JobStatus) -> Option<ResultsView> {
    j.results
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// A job's test counts over its legs, and its coverage (lines covered, lines).
fn job_totals(r: &ResultsView) -> (Option<TestCounts>, Option<(u64, u64)>) {
    let mut tests: Option<TestCounts> = None;
    let mut cov: Option<(u64, u64)> = None;
    for l in &r.jobs {
        if let Some(t) = &l.tests {
            tests.get_or_insert_default().add(t);
        }
        if let Some(c) = &l.coverage {
            let e = cov.get_or_insert((0, 0));
            e.0 += c.lines_covered;
            e.1 += c.lines_total;
        }
    }
    (tests, cov)
}

#[allow(clippy::cast_precision_loss)]
fn percent(covered: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| covered as f64 * 100.0 / total as f64)
}

/// Seconds in the unit that keeps the value readable.
fn time_unit(secs: f64) -> (f64, &'static str) {
    let a = secs.abs();
    if a >= 1.0 || a == 0.0 {
        (secs, "s")
    } else if a >= 1e-3 {
        (secs * 1e3, "ms")
    } else if a >= 1e-6 {
        (secs * 1e6, "µs")
    } else {
        (secs * 1e9, "ns")
    }
}

/// The run's results: totals over the jobs and every benchmark with its change against
/// `baseline` (benchmark name → median seconds in run `baseline_run`).
pub fn run_results(
    jobs: &[JobStatus],
    baseline: &HashMap<String, f64>,
    baseline_run: Option<i64>,
) -> RunResultsView {
    let mut out = RunResultsView {
        baseline_run,
        ..RunResultsView::default()
    };
    let mut cov: Option<(u64, u64)> = None;
    for j in jobs {
        let Some(r) = job_results(j) else { continue };
        let (t, c) = job_totals(&r);
        if let Some(t) = t {
            out.tests.get_or_insert_default().add(&t);
        }
        if let Some((a, b)) = c {
            let e = cov.get_or_insert((0, 0));
            e.0 += a;
            e.1 += b;
        }
        for b in r.jobs.iter().flat_map(|l| &l.benchmarks) {
            let (value, unit) = time_unit(b.median);
            let base = baseline.get(&b.name).copied().filter(|v| *v > 0.0);
            out.benchmarks.push(BenchRow {
                job: j.name.clone().unwrap_or_else(|| j.key.clone()),
                name: b.name.clone(),
                value,
                unit,
                samples: b.n,
                baseline: base,
                change_percent: base.map(|v| (b.median / v - 1.0) * 100.0),
            });
        }
    }
    out.line_percent = cov.and_then(|(a, b)| percent(a, b));
    out
}

fn counts_cells(t: Option<&TestCounts>) -> String {
    match t {
        Some(t) => format!(
            "<td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num{}\">{}</td><td class=\"num\">{}</td>",
            t.tests,
            t.passed,
            if t.failed > 0 { " failed" } else { "" },
            t.failed,
            t.skipped
        ),
        None => "<td class=\"empty\" colspan=\"4\">no tests reported</td>".to_owned(),
    }
}

/// The run page's results: test totals per job and overall, failed cases with their
/// messages, coverage, benchmarks.
pub fn results_section(jobs: &[JobStatus], view: &RunResultsView) -> String {
    let mut out = String::from("<section class=\"results\" id=\"results\"><h2>Test results</h2>");
    let reported: Vec<(&JobStatus, ResultsView)> = jobs
        .iter()
        .filter_map(|j| job_results(j).map(|r| (j, r)))
        .collect();
    if reported.is_empty() {
        out.push_str(
            "<p class=\"empty\">no results: jobs report tests, coverage and benchmarks \
             through the <code>reports:</code> key</p></section>",
        );
        return out;
    }
    if let Some(t) = &view.tests {
        let _ = write!(
            out,
            "<p class=\"totals {cls}\" id=\"results-totals\"><b>{p}</b> passed, <b>{f}</b> failed, \
             <b>{s}</b> skipped of {n} tests</p>",
            cls = if t.failed > 0 { "failure" } else { "success" },
            p = t.passed,
            f = t.failed,
            s = t.skipped,
            n = t.tests,
        );
    }
    out.push_str(
        "<table class=\"tests\" id=\"results-jobs\"><thead><tr><th>job</th><th>tests</th>\
         <th>passed</th><th>failed</th><th>skipped</th><th>line coverage</th></tr></thead><tbody>",
    );
    for (j, r) in &reported {
        let (t, c) = job_totals(r);
        let _ = write!(
            out,
            "<tr data-job=\"{id}\"><td>{name}</td>{counts}<td class=\"num coverage\">{cov}</td></tr>",
            id = j.id,
            name = esc(j.name.as_deref().unwrap_or(&j.key)),
            counts = counts_cells(t.as_ref()),
            cov = c
                .and_then(|(a, b)| percent(a, b))
                .map_or_else(|| "—".to_owned(), |p| format!("{p:.1}%")),
        );
    }
    if reported.len() > 1 {
        let _ = write!(
            out,
            "<tr class=\"overall\"><td>all jobs</td>{counts}<td class=\"num coverage\">{cov}</td></tr>",
            counts = counts_cells(view.tests.as_ref()),
            cov = view
                .line_percent
                .map_or_else(|| "—".to_owned(), |p| format!("{p:.1}%")),
        );
    }
    out.push_str("</tbody></table>");
    let failed: Vec<(&JobStatus, &FailedCase)> = reported
        .iter()
        .flat_map(|(j, r)| {
            r.jobs
                .iter()
                .flat_map(|l| &l.failed_tests)
                .map(move |f| (*j, f))
        })
        .collect();
    if !failed.is_empty() {
        out.push_str("<h3>Failed tests</h3><ul class=\"failed-tests\" id=\"failed-tests\">");
        for (j, f) in failed.iter().take(FAILED_SHOWN) {
            let id = if f.classname.is_empty() || f.classname == f.name {
                f.name.clone()
            } else {
                format!("{}::{}", f.classname, f.name)
            };
            let at = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!(" <small>{}:{line}</small>", esc(file)),
                (Some(file), None) => format!(" <small>{}</small>", esc(file)),
                _ => String::new(),
            };
            let _ = write!(
                out,
                "<li><span class=\"badge failure\">failed</span> <code class=\"case\">{id}</code> \
                 <small>in {job}</small>{at}<pre class=\"message\">{msg}</pre></li>",
                id = esc(&id),
                job = esc(j.name.as_deref().unwrap_or(&j.key)),
                msg = esc(&f.message),
            );
        }
        if failed.len() > FAILED_SHOWN {
            let _ = write!(
                out,
                "<li><small>and {} more</small></li>",
                failed.len() - FAILED_SHOWN
            );
        }
        out.push_str("</ul>");
    }
    if !view.benchmarks.is_empty() {
        let against = view
            .baseline_run
            .map_or_else(String::new, |r| format!(" vs run #{r}"));
        let _ = write!(
            out,
            "<h3>Benchmarks</h3><table class=\"benchmarks\" id=\"benchmarks\"><thead><tr>\
             <th>benchmark</th><th>job</th><th>median</th><th>unit</th><th>samples</th>\
             <th>change{}</th></tr></thead><tbody>",
            esc(&against)
        );
        for b in &view.benchmarks {
            let change = match b.change_percent {
                Some(c) => format!(
                    "<span class=\"change {}\">{c:+.1}%</span>",
                    if c > 0.0 { "slower" } else { "faster" }
                ),
                None => "<span class=\"empty\">no baseline</span>".to_owned(),
            };
            let _ = write!(
                out,
                "<tr><td><code>{name}</code></td><td>{job}</td><td class=\"num\">{value}</td>\
                 <td>{unit}</td><td class=\"num\">{n}</td><td>{change}</td></tr>",
                name = esc(&b.name),
                job = esc(&b.job),
                value = significant(b.value),
                unit = b.unit,
                n = b.samples,
            );
        }
        out.push_str("</tbody></table>");
    }
    let warnings: Vec<&String> = reported
        .iter()
        .flat_map(|(_, r)| r.jobs.iter().flat_map(|l| &l.warnings))
        .collect();
    if !warnings.is_empty() {
        out.push_str("<h3>Report problems</h3><ul class=\"warnings\">");
        for w in warnings.iter().take(FAILED_SHOWN) {
            let _ = write!(out, "<li>{}</li>", esc(w));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
    out
}

/// How many failed tests the run page lists (the rest are counted).
const FAILED_SHOWN: usize = 100;

/// A value with about four significant digits.
fn significant(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Markdown (a step summary) as HTML; raw HTML in it is shown as text, never interpreted,
/// and links keep only `http`, `https` and `mailto` targets.
pub fn markdown(md: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    if md.trim().is_empty() {
        return "<p class=\"empty\">none</p>".to_owned();
    }
    let safe_url = |u: &str| {
        let l = u.trim().to_ascii_lowercase();
        l.starts_with("http://")
            || l.starts_with("https://")
            || l.starts_with("mailto:")
            || l.starts_with('#')
            || l.starts_with('/')
    };
    let parser =
        Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).map(|ev| {
            match ev {
                Event::Html(h) | Event::InlineHtml(h) => Event::Text(h),
                // Column alignment would be a `style` attribute, which the page's CSP blocks
                // (and reports as an error in the browser's console).
                Event::Start(Tag::Table(cols)) => Event::Start(Tag::Table(
                    cols.iter()
                        .map(|_| pulldown_cmark::Alignment::None)
                        .collect(),
                )),
                Event::Start(Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                }) if !safe_url(&dest_url) => Event::Start(Tag::Link {
                    link_type,
                    dest_url: "#".into(),
                    title,
                    id,
                }),
                Event::Start(Tag::Image {
                    link_type,
                    dest_url,
                    title,
                    id,
                }) if !safe_url(&dest_url) => Event::Start(Tag::Image {
                    link_type,
                    dest_url: "#".into(),
                    title,
                    id,
                }),
                e => e,
            }
        });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, parser);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(key: &str, needs: &[&str]) -> JobStatus {
        JobStatus {
            id: 1,
            key: key.into(),
            state: "queued".into(),
            attempt: 0,
            result: None,
            accepted_attempt: None,
            outputs: Default::default(),
            needs: needs.iter().map(|s| (*s).to_owned()).collect(),
            leg: None,
            name: None,
            results: None,
        }
    }

    fn reported(id: i64, key: &str, results: serde_json::Value) -> JobStatus {
        JobStatus {
            id,
            state: "done".into(),
            result: Some("failure".into()),
            results: Some(results),
            ..job(key, &[])
        }
    }

    #[test]
    fn results_show_totals_failed_cases_escaped_coverage_and_benchmarks() {
        let unit = reported(
            4,
            "unit",
            serde_json::json!({"version": 1, "jobs": [{
                "id": "unit", "name": "unit",
                "tests": {"tests": 3, "passed": 1, "failed": 1, "skipped": 1, "flaky": 0, "duration_s": 0.1},
                "failed_tests": [{"suite": "s", "classname": "<img src=x onerror=alert(1)>",
                                  "name": "adds", "message": "expected <b>2</b> & got \"3\"",
                                  "file": "src/<lib>.rs", "line": 7}],
                "coverage": {"lines_total": 200, "lines_covered": 150, "line_percent": 75.0},
                "files": [], "future_field": true}]}),
        );
        let bench = reported(
            5,
            "bench",
            serde_json::json!({"version": 1, "benchmarks": [], "jobs": [{
                "id": "bench", "name": "bench <x>",
                "tests": {"tests": 2, "passed": 2},
                "benchmarks": [{"name": "parse<1>", "source": "hyperfine", "n": 10,
                                "median": 0.0125, "mean": 0.013},
                               {"name": "new", "source": "hyperfine", "n": 5, "median": 2.0, "mean": 2.0}],
                "files": []}]}),
        );
        let jobs = vec![unit, bench, job("lint", &[])];
        let mut baseline = HashMap::new();
        baseline.insert("parse<1>".to_owned(), 0.010);
        let view = run_results(&jobs, &baseline, Some(3));
        assert_eq!(
            view.tests,
            Some(TestCounts {
                tests: 5,
                passed: 3,
                failed: 1,
                skipped: 1
            })
        );
        assert_eq!(view.line_percent, Some(75.0));
        let parse = &view.benchmarks[0];
        assert_eq!((parse.unit, parse.samples), ("ms", 10));
        assert!((parse.value - 12.5).abs() < 1e-9, "{parse:?}");
        assert!((parse.change_percent.expect("change") - 25.0).abs() < 1e-9);
        assert_eq!(view.benchmarks[1].change_percent, None);

        let html = results_section(&jobs, &view);
        // Nothing from a report reaches the page unescaped.
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>2</b>"), "{html}");
        assert!(!html.contains("<lib>") && !html.contains("<x>") && !html.contains("parse<1>"));
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;::adds"),
            "{html}"
        );
        assert!(
            html.contains("expected &lt;b&gt;2&lt;/b&gt; &amp; got &quot;3&quot;"),
            "{html}"
        );
        assert!(html.contains("src/&lt;lib&gt;.rs:7"), "{html}");
        assert!(
            html.contains("<b>3</b> passed, <b>1</b> failed, <b>1</b> skipped of 5 tests"),
            "{html}"
        );
        assert!(html.contains("75.0%"), "{html}");
        assert!(html.contains("<code>parse&lt;1&gt;</code>"), "{html}");
        assert!(html.contains("12.50</td><td>ms</td>"), "{html}");
        assert!(
            html.contains("+25.0%") && html.contains("vs run #3"),
            "{html}"
        );
        assert!(html.contains("no baseline"), "{html}");
        // The overall row appears with more than one reporting job.
        assert!(html.contains("all jobs"), "{html}");

        let none = results_section(&[job("lint", &[])], &RunResultsView::default());
        assert!(none.contains("no results"), "{none}");
    }

    #[test]
    fn a_malformed_results_record_renders_as_none() {
        let j = reported(1, "x", serde_json::json!({"jobs": "not a list"}));
        let view = run_results(std::slice::from_ref(&j), &HashMap::new(), None);
        assert_eq!(view.tests, None);
        assert!(results_section(&[j], &view).contains("no results"));
    }

    #[test]
    fn times_take_a_readable_unit() {
        assert_eq!(time_unit(2.5), (2.5, "s"));
        assert_eq!(time_unit(0.0).1, "s");
        assert_eq!(time_unit(3e-3).1, "ms");
        assert_eq!(time_unit(4e-6).1, "µs");
        assert_eq!(time_unit(5e-9).1, "ns");
    }

    #[test]
    fn artifacts_link_each_file_by_digest_and_escape_names() {
        let a = Artifact {
            name: "<b>bundle".into(),
            job_id: 7,
            attempt: 2,
            info: serde_json::json!({}),
            files: vec![crate::api::ArtifactFile {
                path: "sub/a b.txt".into(),
                digest: "ab".repeat(32),
                size: 2048,
                mode: 0o644,
            }],
        };
        let html = artifacts_section(3, &[a]);
        assert!(html.contains("&lt;b&gt;bundle"), "{html}");
        assert!(!html.contains("<b>bundle"), "{html}");
        assert!(
            html.contains(&format!(
                "/ui/runs/3/blobs/{}?file=a%20b.txt",
                "ab".repeat(32)
            )),
            "{html}"
        );
        assert!(html.contains("1 file, 2.0 KiB · job 7 attempt 2"), "{html}");
        assert!(artifacts_section(3, &[]).contains("none"));
    }

    #[test]
    fn levels_follow_the_longest_path() {
        let jobs = vec![
            job("build", &[]),
            job("lint", &[]),
            job("test", &["build"]),
            job("deploy", &["test", "lint"]),
            job("notify", &["build", "deploy"]),
        ];
        assert_eq!(levels(&jobs), vec![0, 0, 1, 2, 3]);
    }

    #[test]
    fn markdown_never_passes_html_or_script_links() {
        let html =
            markdown("# Done\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1)) | a |\n");
        assert!(html.contains("<h1>Done</h1>"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        // Aligned columns (as `pipe run`'s results summary has) carry no inline style.
        let table = markdown("| a | b |\n|:---|---:|\n| 1 | 2 |\n");
        assert!(table.contains("<td>2</td>"), "{table}");
        assert!(!table.contains("style="), "{table}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let row = runs_rows(&[RunRow {
            id: 3,
            workflow: "<b>.yml".into(),
            event: "push".into(),
            state: "done".into(),
            conclusion: Some("success".into()),
            jobs: 2,
            done: 2,
            created: "2026-11-26T10:00:00Z".into(),
            seconds: 75.0,
        }]);
        assert!(row.contains("&lt;b&gt;.yml"), "{row}");
        assert!(
            row.contains("<span class=\"badge success\">success</span>"),
            "{row}"
        );
        assert!(row.contains("1m 15s"), "{row}");
    }
}
